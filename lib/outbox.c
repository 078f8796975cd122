/* outbox.c - event routes (POLYSHOP_EVENT_ROUTES) and the outbox relay (see outbox.h): a
 * round runs on the worker pool, so a slow or dead subscriber never holds an event loop. */
#include "polyshop/outbox.h"

#include <ctype.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "polyshop/alloc.h"
#include "polyshop/client.h"
#include "polyshop/error.h"
#include "polyshop/json.h"
#include "polyshop/log.h"
#include "polyshop/metrics.h"
#include "polyshop/service.h"
#include "polyshop/work.h"

enum { ROUTES_MAX = 32 };

typedef struct {
  char *name;       /* "notification" */
  char *var;        /* "NOTIFICATION_URL" */
  char *path;       /* "/internal/events" */
  const char *base; /* the variable's value, NULL when unset */
} dest_t;

typedef struct {
  char *pattern;
  unsigned dests; /* bit i: dests[i] */
} route_t;

struct ps_event_routes {
  dest_t dests[PS_EVENT_DESTS_MAX];
  size_t ndests;
  route_t routes[ROUTES_MAX];
  size_t nroutes;
};

void ps_event_routes_free(ps_event_routes_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->ndests; i++) {
    ps_free(r->dests[i].name);
    ps_free(r->dests[i].var);
    ps_free(r->dests[i].path);
  }
  for (size_t i = 0; i < r->nroutes; i++) ps_free(r->routes[i].pattern);
  ps_free(r);
}

static int pattern_ok(const char *p) {
  size_t n = strlen(p);
  if (n == 0 || n > 64) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (c == '*' && i == n - 1) continue;
    if (!isalnum((unsigned char)c) && c != '_' && c != '.' && c != '-') return 0;
  }
  return 1;
}

/* "NOTIFICATION_URL/internal/events": the destination's index in r, added when new. */
static int add_dest(ps_config_t *cfg, ps_event_routes_t *r, const char *t, char *err,
                    size_t errlen) {
  const char *slash = strchr(t, '/');
  size_t vlen = slash ? (size_t)(slash - t) : 0;
  int var_ok = vlen > 4 && vlen <= 48 && strncmp(t + vlen - 4, "_URL", 4) == 0;
  for (size_t i = 0; var_ok && i < vlen; i++)
    var_ok = isupper((unsigned char)t[i]) || isdigit((unsigned char)t[i]) || t[i] == '_';
  if (!var_ok || strlen(slash) > 200 || strpbrk(slash, " ?#\t")) {
    snprintf(err, errlen, "target \"%s\" must be VARIABLE_URL/path", t);
    return PS_EPARSE;
  }
  for (size_t i = 0; i < r->ndests; i++) {
    if (strncmp(r->dests[i].var, t, vlen) || r->dests[i].var[vlen]) continue;
    if (strcmp(r->dests[i].path, slash) == 0) return (int)i;
    snprintf(err, errlen, "%.*s is given two paths", (int)vlen, t);
    return PS_EPARSE;
  }
  if (r->ndests == PS_EVENT_DESTS_MAX) {
    snprintf(err, errlen, "more than %d destinations", PS_EVENT_DESTS_MAX);
    return PS_EPARSE;
  }
  dest_t *d = &r->dests[r->ndests];
  d->var = ps_strndup(t, vlen);
  d->name = ps_strndup(t, vlen - 4);
  for (char *p = d->name; *p; p++) *p = (char)tolower((unsigned char)*p);
  d->path = ps_strdup(slash);
  d->base = ps_config_url(cfg, d->var, 0);
  return (int)r->ndests++;
}

/* One "PATTERN=TARGET,TARGET" (modified in place). */
static int parse_route(ps_config_t *cfg, ps_event_routes_t *r, char *s, char *err,
                       size_t errlen) {
  char *eq = strchr(s, '=');
  if (!eq) {
    snprintf(err, errlen, "route \"%s\" must be PATTERN=TARGET[,TARGET...]", s);
    return PS_EPARSE;
  }
  *eq = '\0';
  if (!pattern_ok(s)) {
    snprintf(err, errlen, "pattern \"%s\" must be an event type or a prefix ending in *", s);
    return PS_EPARSE;
  }
  if (r->nroutes == ROUTES_MAX) {
    snprintf(err, errlen, "more than %d routes", ROUTES_MAX);
    return PS_EPARSE;
  }
  route_t *rt = &r->routes[r->nroutes++];
  rt->pattern = ps_strdup(s);
  char *save = NULL;
  for (char *t = strtok_r(eq + 1, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    int i = add_dest(cfg, r, t, err, errlen);
    if (i < 0) return i;
    rt->dests |= 1u << i;
  }
  if (!rt->dests) {
    snprintf(err, errlen, "pattern \"%s\" has no target", s);
    return PS_EPARSE;
  }
  return 0;
}

int ps_event_routes_parse(ps_config_t *cfg, const char *spec, ps_event_routes_t **out,
                          char *err, size_t errlen) {
  *out = NULL;
  ps_event_routes_t *r = ps_calloc(1, sizeof(*r));
  char *copy = ps_strdup(spec);
  int rc = 0;
  char *save = NULL;
  for (char *s = strtok_r(copy, ";", &save); s && !rc; s = strtok_r(NULL, ";", &save))
    rc = parse_route(cfg, r, s, err, errlen);
  ps_free(copy);
  if (rc == 0 && r->nroutes == 0) {
    snprintf(err, errlen, "no route");
    rc = PS_EPARSE;
  }
  if (rc) {
    ps_event_routes_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

void ps_event_routes_from_env(ps_config_t *cfg, const char *def, ps_event_routes_t **out) {
  const char *spec = ps_config_str(cfg, "POLYSHOP_EVENT_ROUTES", def);
  char err[200];
  if (ps_event_routes_parse(cfg, spec ? spec : "", out, err, sizeof(err)))
    ps_config_error(cfg, "POLYSHOP_EVENT_ROUTES: %s", err);
}

static int pattern_match(const char *pattern, const char *type) {
  size_t n = strlen(pattern);
  if (n && pattern[n - 1] == '*') return strncmp(pattern, type, n - 1) == 0;
  return strcmp(pattern, type) == 0;
}

size_t ps_event_routes_match(const ps_event_routes_t *r, const char *type, const char **dests,
                             size_t max) {
  unsigned set = 0;
  for (size_t i = 0; i < r->nroutes; i++)
    if (pattern_match(r->routes[i].pattern, type)) set |= r->routes[i].dests;
  size_t n = 0;
  for (size_t i = 0; i < r->ndests && n < max; i++)
    if (set & (1u << i)) dests[n++] = r->dests[i].name;
  return n;
}

/* --- the relay ------------------------------------------------------------------------- */

struct ps_outbox_relay {
  const ps_event_routes_t *routes;
  ps_outbox_source_t src;
  ps_client_t *client; /* used by one pool thread at a time: rounds never overlap */
  atomic_int busy;
};

ps_outbox_relay_t *ps_outbox_relay_new(const ps_event_routes_t *routes,
                                       const ps_outbox_source_t *src) {
  ps_outbox_relay_t *r = ps_calloc(1, sizeof(*r));
  r->routes = routes;
  r->src = *src;
  return r;
}

void ps_outbox_relay_free(ps_outbox_relay_t *r) {
  if (!r) return;
  if (r->client) ps_client_free(r->client);
  ps_free(r);
}

static const dest_t *dest_named(const ps_event_routes_t *routes, const char *name) {
  for (size_t i = 0; i < routes->ndests; i++)
    if (strcmp(routes->dests[i].name, name) == 0) return &routes->dests[i];
  return NULL;
}

/* The body to send: the payload, with "id" added when it lacks one. */
static const char *body_with_id(ps_arena_t *a, const ps_event_t *e) {
  json_t *doc = json_loads(e->payload, 0, NULL);
  const char *body = e->payload;
  if (json_is_object(doc) && !json_object_get(doc, "id")) {
    json_object_set_new(doc, "id", json_string(e->id));
    body = ps_json_dump(a, doc);
  }
  json_decref(doc);
  return body;
}

/* Sends one event; 1 when the destination has it (2xx, or 409: it had it already). */
static int send_one(ps_outbox_relay_t *r, ps_arena_t *a, const dest_t *d, const ps_event_t *e,
                    const char *const *auth) {
  const char *headers[8];
  size_t nh = 0;
  headers[nh++] = ps_arena_sprintf(a, "X-Event-Id: %s", e->id);
  for (size_t i = 0; auth && auth[i] && nh < 7; i++) headers[nh++] = auth[i];
  headers[nh] = NULL;
  const char *body = body_with_id(a, e);
  char *url = ps_arena_sprintf(a, "%s%s", d->base, d->path);
  ps_call_t call = {.method = "POST", .url = url, .body = body, .body_len = strlen(body),
                    .headers = headers, .idempotency_key = e->id, .idempotent = 1,
                    .timeout_ms = 1000};
  ps_response_t resp;
  unsigned long long t0 = ps_now_ns();
  int rc = ps_client_call(r->client, a, &call, &resp);
  if (r->src.observe_cb) r->src.observe_cb(r->src.ctx, url, t0);
  return rc == 0 && ((resp.status >= 200 && resp.status < 300) || resp.status == 409);
}

/* On a pool thread: one round over the due events of the destinations that are set. */
static void round_work(void *arg) {
  ps_outbox_relay_t *r = arg;
  const char *names[PS_EVENT_DESTS_MAX];
  size_t nd = 0;
  for (size_t i = 0; i < r->routes->ndests; i++)
    if (r->routes->dests[i].base) names[nd++] = r->routes->dests[i].name;
  if (nd == 0) return;
  if (!r->client && !(r->client = ps_client_new(NULL))) return;
  ps_arena_t a;
  ps_arena_init(&a);
  ps_event_t *ev;
  size_t n = 0;
  int64_t now = (int64_t)time(NULL);
  unsigned down = 0;
  const char *const *auth = r->src.headers_cb ? r->src.headers_cb(r->src.ctx, &a) : NULL;
  if (r->src.due(r->src.ctx, &a, now, names, nd, 100, &ev, &n) == 0) {
    for (size_t i = 0; i < n; i++) {
      const dest_t *d = dest_named(r->routes, ev[i].destination);
      unsigned bit = d ? 1u << (d - r->routes->dests) : 0;
      /* One failure per destination and round is enough: the rest wait for the next round
       * instead of one timeout each. */
      if (!d || !d->base || (down & bit)) continue;
      if (send_one(r, &a, d, &ev[i], auth)) {
        r->src.delivered(r->src.ctx, ev[i].id, ev[i].destination, (int64_t)time(NULL));
        continue;
      }
      down |= bit;
      int64_t shift = ev[i].attempts < 8 ? ev[i].attempts : 8;
      r->src.failed(r->src.ctx, ev[i].id, ev[i].destination, now + ((int64_t)1 << shift));
    }
  }
  ps_arena_reset(&a);
}

static void round_done(void *arg, int status) {
  ps_outbox_relay_t *r = arg;
  atomic_store(&r->busy, 0);
}

void ps_outbox_relay_run(ps_outbox_relay_t *r, struct event_base *base) {
  int idle = 0;
  if (!atomic_compare_exchange_strong(&r->busy, &idle, 1)) return;
  int rc = ps_work_queue(base, round_work, round_done, r);
  if (rc) {
    ps_log_warn("outbox relay round not started: %s", ps_strerror(rc));
    atomic_store(&r->busy, 0);
  }
}
