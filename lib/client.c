/* client.c - the one HTTP client between services (see client.h), its front: URL and header
 * checks, a deadline on every call, retries with exponential backoff and jitter for idempotent
 * calls only, a circuit breaker per origin, and W3C traceparent propagation. Everything runs
 * on the client's event loop as timers and callbacks; the transports are client_h1.c (our
 * HTTP/1.1 on bufferevents, for http://) and client_curl.c (libcurl multi, for https:// and
 * URLs with userinfo). ps_client_call runs the same machinery on a private loop. */
#include "polyshop/client.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "client_internal.h"
#include "polyshop/alloc.h"
#include "polyshop/error.h"

enum {
  CLIENT_MAX_BACKOFF_MS = 10000,
  CLIENT_MAX_HOST = 255,            /* longest host name accepted in a URL */
  CLIENT_STACK_HEADERS = 16,        /* header entries held on the stack before the arena */
};

typedef enum { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN } breaker_state_t;

typedef struct breaker {
  struct breaker *next;
  char *origin; /* "scheme://host:port", owned */
  breaker_state_t state;
  int failures; /* consecutive */
  int trial;    /* half-open: the one trial call is in flight */
  int64_t opened_at_ms;
} breaker_t;

typedef struct call call_t;

struct ps_client {
  ps_client_opts_t opts;
  struct event_base *base;
  int own_base;      /* made by ps_client_new: run by ps_client_call, freed with the client */
  int closing;       /* in ps_client_free: no new calls */
  ps__h1_t *h1;      /* http:// */
  ps__curl_t *curl;  /* https:// and userinfo, made on first use */
  breaker_t *breakers;
  call_t *calls;     /* in flight, to end them in ps_client_free */
  char *scratch;     /* request heads are built here, then copied into their call */
  size_t scratch_cap;
};

/* One call in flight. One allocation: this, then the URL, then the request's bytes. */
struct call {
  call_t *prev, *next;
  ps_client_t *c;
  ps_arena_t *a;
  ps_client_cb cb;
  void *arg;
  ps_response_t *resp; /* in the arena; holds the last answer while a retry waits */
  int last_rc;         /* outcome of the last attempt */
  breaker_t *b;
  ps__url_t u;
  int idempotent, use_curl, trial, n;
  int in_attempt;      /* an attempt is in a transport */
  int64_t deadline;
  struct event deadline_ev;
  struct event aux_ev; /* backoff before a retry, or an outcome delivered from the loop */
  int aux_retry;       /* aux_ev is a backoff (else it delivers last_rc) */
  ps__h1_req_t h1;
  ps__curl_req_t *cr;
  struct curl_slist *curl_hd;
  const char *method;  /* in the request bytes' block */
  char *url;
  const char *body;    /* for libcurl: in the block */
  size_t body_len;
};

/* ---- process-wide initialisation ---- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_ok;

static void global_init(void) {
  /* curl_global_init is not thread-safe in every libcurl build; once per process is. */
  global_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK && sodium_init() >= 0;
}

static int ensure_global(void) {
  pthread_once(&global_once, global_init);
  return global_ok;
}

void ps_client_global_cleanup(void) {
  if (global_ok) curl_global_cleanup();
  global_ok = 0;
}

/* ---- client ---- */

void ps_client_opts_default(ps_client_opts_t *opts) {
  opts->timeout_ms = 2000;
  opts->connect_timeout_ms = 500;
  opts->max_retries = 2;
  opts->backoff_base_ms = 50;
  opts->breaker_failures = 5;
  opts->breaker_open_ms = 5000;
}

ps_client_t *ps_client_new_loop(struct event_base *base, const ps_client_opts_t *opts) {
  if (!base || !ensure_global()) return NULL;
  ps_client_t *c = ps_calloc(1, sizeof(*c));
  c->base = base;
  c->h1 = ps__h1_new(base);
  ps_client_opts_t d;
  ps_client_opts_default(&d);
  c->opts = opts ? *opts : d;
  /* Nonsense values fall back to the defaults rather than disabling a safeguard. */
  if (c->opts.timeout_ms <= 0) c->opts.timeout_ms = d.timeout_ms;
  if (c->opts.connect_timeout_ms <= 0) c->opts.connect_timeout_ms = d.connect_timeout_ms;
  if (c->opts.max_retries < 0) c->opts.max_retries = 0;
  if (c->opts.backoff_base_ms <= 0) c->opts.backoff_base_ms = d.backoff_base_ms;
  if (c->opts.breaker_failures <= 0) c->opts.breaker_failures = d.breaker_failures;
  if (c->opts.breaker_open_ms <= 0) c->opts.breaker_open_ms = d.breaker_open_ms;
  return c;
}

ps_client_t *ps_client_new(const ps_client_opts_t *opts) {
  if (!ensure_global()) return NULL;
  struct event_base *base = event_base_new();
  if (!base) return NULL;
  ps_client_t *c = ps_client_new_loop(base, opts);
  if (!c) {
    event_base_free(base);
    return NULL;
  }
  c->own_base = 1;
  return c;
}

static void call_end(call_t *cs, int rc);

void ps_client_free(ps_client_t *c) {
  if (!c) return;
  c->closing = 1;
  while (c->calls) call_end(c->calls, PS_ECANCELED); /* each callback, once */
  ps__curl_free(c->curl);
  ps__h1_free(c->h1, c->own_base);
  while (c->breakers) {
    breaker_t *b = c->breakers;
    c->breakers = b->next;
    ps_free(b->origin);
    ps_free(b);
  }
  if (c->own_base) event_base_free(c->base);
  ps_free(c->scratch);
  ps_free(c);
}

/* ---- URLs ---- */

static int is_alnum(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* Splits an absolute http(s) URL; PS_EINVAL when it is not one we can call. */
static int parse_url(const char *url, ps__url_t *u) {
  memset(u, 0, sizeof(*u));
  const char *p;
  if (strncasecmp(url, "http://", 7) == 0) {
    p = url + 7;
    u->port = 80;
  } else if (strncasecmp(url, "https://", 8) == 0) {
    p = url + 8;
    u->https = 1;
    u->port = 443;
  } else {
    return PS_EINVAL;
  }
  /* No spaces or control characters: they would split the request line. */
  for (const char *q = p; *q; q++)
    if ((unsigned char)*q <= 0x20 || *q == 0x7f) return PS_EINVAL;
  const char *auth_end = p + strcspn(p, "/?#");
  for (const char *q = p; q < auth_end; q++) {
    if (*q == '@') {
      u->userinfo = 1;
      p = q + 1;
    }
  }
  u->authority = p;
  u->authority_len = (size_t)(auth_end - p);
  if (*p == '[') { /* IPv6 literal */
    const char *close = memchr(p, ']', (size_t)(auth_end - p));
    if (!close) return PS_EINVAL;
    u->host = p + 1;
    u->host_len = (size_t)(close - p - 1);
    for (const char *q = u->host; q < close; q++)
      if (!is_alnum(*q) && *q != ':' && *q != '.' && *q != '%') return PS_EINVAL;
    p = close + 1;
  } else {
    u->host = p;
    while (p < auth_end && *p != ':') {
      if (!is_alnum(*p) && *p != '-' && *p != '.' && *p != '_') return PS_EINVAL;
      p++;
    }
    u->host_len = (size_t)(p - u->host);
  }
  if (u->host_len == 0 || u->host_len > CLIENT_MAX_HOST) return PS_EINVAL;
  if (p < auth_end) {
    if (*p++ != ':') return PS_EINVAL;
    if (p < auth_end) { /* "host:" keeps the default port */
      unsigned port = 0;
      for (; p < auth_end; p++) {
        if (*p < '0' || *p > '9' || port > 65535) return PS_EINVAL;
        port = port * 10 + (unsigned)(*p - '0');
      }
      if (port == 0 || port > 65535) return PS_EINVAL;
      u->port = port;
    }
  }
  u->target = auth_end;
  u->target_len = strcspn(auth_end, "#");
  return 0;
}

/* "scheme://host:port", lower-cased, into out (at least CLIENT_MAX_HOST + 20 bytes). */
static void origin_of(const ps__url_t *u, char *out) {
  char *o = out;
  memcpy(o, u->https ? "https://" : "http://", u->https ? 8 : 7);
  o += u->https ? 8 : 7;
  int v6 = memchr(u->host, ':', u->host_len) != NULL;
  if (v6) *o++ = '[';
  for (size_t i = 0; i < u->host_len; i++) {
    char ch = u->host[i];
    *o++ = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
  }
  if (v6) *o++ = ']';
  snprintf(o, 8, ":%u", u->port);
}

/* ---- circuit breaker ---- */

/* The breaker of origin, created closed on first use. */
static breaker_t *breaker_for(ps_client_t *c, const char *origin) {
  for (breaker_t *b = c->breakers; b; b = b->next)
    if (strcmp(b->origin, origin) == 0) return b;
  breaker_t *b = ps_calloc(1, sizeof(*b));
  b->origin = ps_strdup(origin);
  b->state = BREAKER_CLOSED;
  b->next = c->breakers;
  c->breakers = b;
  return b;
}

/* Whether an attempt may go out now. An open breaker whose interval has passed turns
 * half-open and lets this one call through as the single trial (*trial set); while the trial
 * is in flight, the breaker stays half-open and refuses every other call. */
static int breaker_allow(const ps_client_t *c, breaker_t *b, int64_t now, int *trial) {
  *trial = 0;
  if (b->state == BREAKER_CLOSED) return 1;
  if (b->state == BREAKER_HALF_OPEN) return 0;
  if (now - b->opened_at_ms < c->opts.breaker_open_ms) return 0;
  b->state = BREAKER_HALF_OPEN;
  *trial = 1;
  return 1;
}

static void breaker_record(const ps_client_t *c, breaker_t *b, int failed, int64_t now) {
  if (!failed) {
    b->failures = 0;
    b->state = BREAKER_CLOSED;
    return;
  }
  b->failures++;
  if (b->state == BREAKER_HALF_OPEN || b->failures >= c->opts.breaker_failures) {
    b->state = BREAKER_OPEN;
    b->opened_at_ms = now;
  }
}

/* ---- headers ---- */

static int method_has_body(const char *m) {
  return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

/* libcurl's header list from ours; in the arena except the list cells. */
static int curl_headers(const ps_call_t *call, ps_arena_t *a, const ps__header_t *hd,
                        size_t nh, struct curl_slist **out) {
  struct curl_slist *h = NULL, *l;
  for (size_t i = 0; i <= nh + 1; i++) {
    const char *line;
    if (i < nh)
      line = hd[i].name ? ps_arena_sprintf(a, "%s: %s", hd[i].name, hd[i].value) : hd[i].value;
    else if (i == nh)
      /* No "Expect: 100-continue" round trip before bodies: our services answer at once. */
      line = "Expect:";
    else if (!call->body && method_has_body(call->method))
      line = "Content-Type:"; /* drop curl's form-urlencoded default */
    else
      continue;
    if (!(l = curl_slist_append(h, line))) {
      curl_slist_free_all(h);
      return PS_ENOMEM;
    }
    h = l;
  }
  *out = h;
  return 0;
}

/* ---- calls ---- */

static int is_idempotent(const ps_call_t *call) {
  static const char *const methods[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"};
  if (call->idempotent || (call->idempotency_key && *call->idempotency_key)) return 1;
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
    if (strcmp(call->method, methods[i]) == 0) return 1;
  return 0;
}

static int valid_method(const char *m) {
  if (!*m) return 0;
  for (; *m; m++)
    if (*m < 'A' || *m > 'Z') return 0;
  return 1;
}

/* Appends "name: value"; refuses values that would split the header block. */
static int add_header(ps__header_t *hd, size_t *nh, const char *name, const char *value) {
  if (strpbrk(value, "\r\n")) return PS_EINVAL;
  hd[(*nh)++] = (ps__header_t){name, value};
  return 0;
}

/* The call's headers, checked, into hd (room for 4 + the extra lines). */
static int build_headers(const ps_call_t *call, ps__header_t *hd, size_t *nh) {
  int rc = 0;
  *nh = 0;
  if (call->request_id && *call->request_id)
    rc = add_header(hd, nh, "X-Request-Id", call->request_id);
  if (!rc && call->traceparent && *call->traceparent)
    rc = add_header(hd, nh, "traceparent", call->traceparent);
  if (!rc && call->idempotency_key && *call->idempotency_key)
    rc = add_header(hd, nh, "Idempotency-Key", call->idempotency_key);
  if (!rc && call->body)
    rc = add_header(hd, nh, "Content-Type",
                    call->content_type ? call->content_type : "application/json");
  for (const char *const *x = call->headers; !rc && x && *x; x++) {
    if (strpbrk(*x, "\r\n") || !strchr(*x, ':')) return PS_EINVAL;
    hd[(*nh)++] = (ps__header_t){NULL, *x};
  }
  return rc;
}

/* Delay before retry number n (0-based): base * 2^n, half of it fixed and half random
 * ("equal jitter"), so a fleet of callers does not retry in lockstep. */
static long backoff_ms(const ps_client_t *c, int n) {
  long d = c->opts.backoff_base_ms;
  for (int i = 0; i < n && d < CLIENT_MAX_BACKOFF_MS; i++) d *= 2;
  if (d > CLIENT_MAX_BACKOFF_MS) d = CLIENT_MAX_BACKOFF_MS;
  return d / 2 + (long)randombytes_uniform((uint32_t)(d / 2) + 1);
}


/* ---- the life of a call ---- */

static void attempt_start(call_t *cs);

/* Copies an answer into the call's response, in the arena. */
static void keep_answer(call_t *cs, const ps__answer_t *ans) {
  ps_response_t *r = cs->resp;
  memset(r, 0, sizeof(*r));
  r->status = ans->status;
  r->body = ps_arena_strndup(cs->a, ans->body ? ans->body : "", ans->body_len);
  r->body_len = ans->body_len;
  if (ans->content_type)
    r->content_type = ps_arena_strndup(cs->a, ans->content_type, ans->content_type_len);
  if (ans->retry_after)
    r->retry_after = ps_arena_strndup(cs->a, ans->retry_after, ans->retry_after_len);
}

/* Stops whatever the call has in a transport; its callback is not called by it. */
static void attempt_abandon(call_t *cs) {
  if (!cs->in_attempt) return;
  cs->in_attempt = 0;
  if (cs->use_curl) {
    ps__curl_cancel(cs->c->curl, cs->cr);
    cs->cr = NULL;
  } else {
    ps__h1_cancel(cs->c->h1, &cs->h1);
  }
}

/* Ends the call: rc 0 with cs->resp filled, else an error and an empty response. The call's
 * memory is released before the callback, which may start other calls. */
static void call_end(call_t *cs, int rc) {
  ps_client_t *c = cs->c;
  attempt_abandon(cs);
  event_del(&cs->deadline_ev);
  event_del(&cs->aux_ev);
  if (cs->trial && cs->b->state == BREAKER_HALF_OPEN && rc == PS_ECANCELED)
    cs->b->state = BREAKER_OPEN; /* a trial that never ended: the next call is the trial */
  if (cs->prev) cs->prev->next = cs->next;
  else c->calls = cs->next;
  if (cs->next) cs->next->prev = cs->prev;
  ps_response_t *resp = cs->resp;
  if (rc) memset(resp, 0, sizeof(*resp));
  ps_client_cb cb = cs->cb;
  void *arg = cs->arg;
  curl_slist_free_all(cs->curl_hd);
  ps_free(cs);
  cb(rc, resp, arg);
}

/* Delivers rc as the attempt's outcome from the loop, never from inside ps_client_start. */
static void deliver_soon(call_t *cs, int rc) {
  static const struct timeval zero = {0, 0};
  cs->last_rc = rc;
  cs->aux_retry = 0;
  evtimer_add(&cs->aux_ev, &zero);
}

/* One attempt's outcome: the breaker hears of it, then the call retries or ends. */
static void on_attempt_done(void *arg, int rc, const ps__answer_t *ans) {
  call_t *cs = arg;
  ps_client_t *c = cs->c;
  cs->in_attempt = 0;
  cs->cr = NULL;
  int transport = rc == PS_ETIMEOUT || rc == PS_EUNAVAIL;
  int failed = transport || (rc == 0 && ans->status >= 500);
  int64_t now = ps__client_now_ms();
  breaker_record(c, cs->b, failed, now);
  if (rc == 0) keep_answer(cs, ans);
  int retryable =
      transport || (rc == 0 && (ans->status == 502 || ans->status == 503 || ans->status == 504));
  /* A breaker that just opened, or a trial that failed, ends the retries too. */
  if (!cs->idempotent || !retryable || cs->n >= c->opts.max_retries ||
      cs->b->state != BREAKER_CLOSED) {
    call_end(cs, rc);
    return;
  }
  long delay = backoff_ms(c, cs->n);
  if (now + delay >= cs->deadline) { /* no time left for another try */
    call_end(cs, rc);
    return;
  }
  cs->last_rc = rc;
  cs->aux_retry = 1;
  struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
  evtimer_add(&cs->aux_ev, &tv);
}

static void on_aux(evutil_socket_t fd, short what, void *arg) {
  call_t *cs = arg;
  if (!cs->aux_retry) {
    if (cs->last_rc == PS_EBREAKER) call_end(cs, PS_EBREAKER);
    else on_attempt_done(cs, cs->last_rc, NULL); /* a transport that failed to start */
    return;
  }
  /* Other calls may have opened the breaker meanwhile: the last outcome stands. */
  if (cs->b->state != BREAKER_CLOSED) {
    call_end(cs, cs->last_rc);
    return;
  }
  cs->n++;
  attempt_start(cs);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg) {
  call_t *cs = arg;
  if (cs->in_attempt) {
    attempt_abandon(cs);
    breaker_record(cs->c, cs->b, 1, ps__client_now_ms());
  }
  call_end(cs, PS_ETIMEOUT);
}

static void attempt_start(call_t *cs) {
  ps_client_t *c = cs->c;
  cs->in_attempt = 1;
  if (!cs->use_curl) {
    ps__h1_start(c->h1, &cs->h1);
    return;
  }
  int64_t left = cs->deadline - ps__client_now_ms();
  if (!c->curl) c->curl = ps__curl_new(c->base);
  if (c->curl)
    cs->cr = ps__curl_start(c->curl, cs->method, cs->url, cs->body, cs->body_len, cs->curl_hd,
                            (long)(left > 1 ? left : 1), c->opts.connect_timeout_ms,
                            on_attempt_done, cs);
  if (!cs->cr) {
    cs->in_attempt = 0;
    deliver_soon(cs, PS_EUNAVAIL);
  }
}

/* ---- starting calls ---- */

/* The call's block: the struct, the URL, the method and the request bytes (for http://, the
 * head and the body; for libcurl, the body). u is parsed again on the copy. */
static call_t *call_alloc(ps_client_t *c, const ps_call_t *call, size_t head_len) {
  size_t url_len = strlen(call->url), m_len = strlen(call->method);
  size_t body_len = call->body ? call->body_len : 0;
  call_t *cs = ps_malloc(sizeof(*cs) + url_len + 1 + m_len + 1 + head_len + body_len);
  memset(cs, 0, sizeof(*cs));
  char *p = (char *)(cs + 1);
  cs->url = memcpy(p, call->url, url_len + 1);
  p += url_len + 1;
  cs->method = memcpy(p, call->method, m_len + 1);
  p += m_len + 1;
  memcpy(p, c->scratch, head_len);
  if (body_len) memcpy(p + head_len, call->body, body_len);
  cs->body = call->body ? p + head_len : NULL;
  cs->body_len = body_len;
  cs->h1.data = p;
  cs->h1.len = head_len + body_len;
  parse_url(cs->url, &cs->u);
  return cs;
}

/* Checks the call and builds its block; PS_EINVAL (nothing allocated) when it is bad. */
static int call_prepare(ps_client_t *c, ps_arena_t *a, const ps_call_t *call, call_t **out) {
  if (!call || !call->url || !call->method || !valid_method(call->method)) return PS_EINVAL;
  ps__url_t u;
  if (parse_url(call->url, &u)) return PS_EINVAL;
  size_t nx = 0;
  for (const char *const *x = call->headers; x && *x; x++) nx++;
  ps__header_t stack_hd[CLIENT_STACK_HEADERS];
  ps__header_t *hd = nx + 4 <= CLIENT_STACK_HEADERS
                         ? stack_hd
                         : ps_arena_alloc(a, (nx + 4) * sizeof(ps__header_t));
  size_t nh;
  int rc = build_headers(call, hd, &nh);
  if (rc) return rc;
  /* userinfo (basic auth in the URL) is left to libcurl, like TLS. */
  int use_curl = u.https || u.userinfo;
  struct curl_slist *curl_hd = NULL;
  if (use_curl && (rc = curl_headers(call, a, hd, nh, &curl_hd))) return rc;
  size_t head_len = 0;
  if (!use_curl)
    head_len = ps__h1_build_head(&c->scratch, &c->scratch_cap, &u, call->method, hd, nh,
                                 call->body ? call->body_len : 0,
                                 call->body || method_has_body(call->method));
  call_t *cs = call_alloc(c, call, head_len);
  cs->use_curl = use_curl;
  cs->curl_hd = curl_hd;
  *out = cs;
  return 0;
}

int ps_client_start(ps_client_t *c, ps_arena_t *a, const ps_call_t *call, ps_client_cb cb,
                    void *arg) {
  if (!c || !a || !cb) return PS_EINVAL;
  if (c->closing) return PS_ECANCELED;
  call_t *cs;
  int rc = call_prepare(c, a, call, &cs);
  if (rc) return rc;
  cs->c = c;
  cs->a = a;
  cs->cb = cb;
  cs->arg = arg;
  cs->resp = ps_arena_alloc(a, sizeof(ps_response_t));
  memset(cs->resp, 0, sizeof(*cs->resp));
  cs->idempotent = is_idempotent(call);
  cs->h1.u = &cs->u;
  cs->h1.is_head = strcmp(call->method, "HEAD") == 0;
  cs->h1.connect_timeout_ms = c->opts.connect_timeout_ms;
  cs->h1.done = on_attempt_done;
  cs->h1.arg = cs;
  char origin[CLIENT_MAX_HOST + 24];
  origin_of(&cs->u, origin);
  cs->b = breaker_for(c, origin);
  cs->next = c->calls;
  if (c->calls) c->calls->prev = cs;
  c->calls = cs;
  evtimer_assign(&cs->deadline_ev, c->base, on_deadline, cs);
  evtimer_assign(&cs->aux_ev, c->base, on_aux, cs);
  long timeout = call->timeout_ms > 0 ? call->timeout_ms : c->opts.timeout_ms;
  int64_t now = ps__client_now_ms();
  cs->deadline = now + timeout;
  struct timeval tv = {timeout / 1000, (timeout % 1000) * 1000};
  evtimer_add(&cs->deadline_ev, &tv);
  if (!breaker_allow(c, cs->b, now, &cs->trial)) deliver_soon(cs, PS_EBREAKER);
  else attempt_start(cs);
  return 0;
}

/* ---- blocking calls ---- */

typedef struct {
  int fired, rc;
  ps_response_t *resp;
} sync_t;

static void on_sync_done(int rc, ps_response_t *resp, void *arg) {
  sync_t *s = arg;
  s->fired = 1;
  s->rc = rc;
  s->resp = resp;
}

int ps_client_call(ps_client_t *c, ps_arena_t *a, const ps_call_t *call, ps_response_t *resp) {
  memset(resp, 0, sizeof(*resp));
  if (!c || !c->own_base) return PS_EINVAL;
  sync_t s = {0};
  int rc = ps_client_start(c, a, call, on_sync_done, &s);
  if (rc) return rc;
  /* Every call has a deadline timer, so each turn of the loop ends. */
  while (!s.fired) event_base_loop(c->base, EVLOOP_ONCE);
  *resp = *s.resp;
  return s.rc;
}

/* ---- W3C trace context ---- */

static int is_lower_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

static int all_zero(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != '0') return 0;
  return 1;
}

/* version "-" trace-id(32) "-" parent-id(16) "-" flags(2), lower-case hex; version ff and
 * all-zero ids are invalid; a future version may append "-..." fields, version 00 may not. */
static int traceparent_valid(const char *tp) {
  size_t len = strnlen(tp, 512);
  if (len < 55) return 0;
  if (!is_lower_hex(tp, 2) || memcmp(tp, "ff", 2) == 0 || tp[2] != '-') return 0;
  if (!is_lower_hex(tp + 3, 32) || all_zero(tp + 3, 32) || tp[35] != '-') return 0;
  if (!is_lower_hex(tp + 36, 16) || all_zero(tp + 36, 16) || tp[52] != '-') return 0;
  if (!is_lower_hex(tp + 53, 2)) return 0;
  if (len == 55) return 1;
  return memcmp(tp, "00", 2) != 0 && tp[55] == '-';
}

static void random_hex(char *out, size_t nbytes) {
  unsigned char raw[16];
  do {
    randombytes_buf(raw, nbytes);
  } while (sodium_is_zero(raw, nbytes)); /* all-zero ids are invalid */
  sodium_bin2hex(out, nbytes * 2 + 1, raw, nbytes);
}

char *ps_trace_child(ps_arena_t *a, const char *incoming_traceparent) {
  ensure_global(); /* libsodium's random generator */
  char trace[33], span[17];
  if (incoming_traceparent && traceparent_valid(incoming_traceparent)) {
    memcpy(trace, incoming_traceparent + 3, 32);
    trace[32] = '\0';
  } else {
    random_hex(trace, 16);
  }
  random_hex(span, 8);
  return ps_arena_sprintf(a, "00-%s-%s-01", trace, span);
}
