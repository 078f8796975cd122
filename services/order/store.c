/* store.c - picks the order store adapter from the store URL, and the wrapper that times
 * every call of it. */
#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/store_timing.h"
#include "polyshop/sqlite.h"
#include "store.h"

int order_store_is_pg(const char *url) {
  return url && (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0);
}

int order_store_open(const char *url, const char *pg_schema, order_store_t **out) {
  const char *path = ps_sqlite_url_path(url);
  if (path) return order_store_sqlite_open(path, out);
#ifdef ORDER_HAVE_PG
  if (order_store_is_pg(url)) return order_store_pg_open(url, pg_schema, out);
#else
  (void)pg_schema;
#endif
  return PS_ECONFIG;
}

/* --- timing: every call through polyshop_store_call_seconds{engine,op} ------------------- */

enum {
  T_CREATE, T_GET, T_GET_BY_KEY, T_LIST, T_CHANGE, T_UNFINISHED, T_DUE, T_SENT, T_RETRY,
  T_PENDING, T_PRUNE, T_PING, T__COUNT
};

static const char *const op_names[T__COUNT] = {
    [T_CREATE] = "create", [T_GET] = "get", [T_GET_BY_KEY] = "get_by_key", [T_LIST] = "list",
    [T_CHANGE] = "change", [T_UNFINISHED] = "unfinished", [T_DUE] = "outbox_due",
    [T_SENT] = "outbox_sent", [T_RETRY] = "outbox_retry", [T_PENDING] = "outbox_pending",
    [T_PRUNE] = "outbox_prune", [T_PING] = "ping"};

static ps_store_timing_t timing; /* registered once, before the server's threads start */

typedef struct {
  order_store_t base;
  order_store_t *inner;
  int owns_inner;
} timed_t;

#define IN(s) (((timed_t *)(s))->inner)

static int t_create(order_store_t *s, const order_t *o, const outbox_event_t *e, size_t n) {
  PS_STORE_TIMED(&timing, T_CREATE, IN(s)->ops->create(IN(s), o, e, n));
}
static int t_get(order_store_t *s, ps_arena_t *a, const char *id, order_t *out) {
  PS_STORE_TIMED(&timing, T_GET, IN(s)->ops->get(IN(s), a, id, out));
}
static int t_get_by_key(order_store_t *s, ps_arena_t *a, const char *user_id, const char *key,
                        order_t *out) {
  PS_STORE_TIMED(&timing, T_GET_BY_KEY, IN(s)->ops->get_by_key(IN(s), a, user_id, key, out));
}
static int t_list(order_store_t *s, ps_arena_t *a, const char *user_id, const order_cursor_t *after,
                  int limit, order_t **out, size_t *n) {
  PS_STORE_TIMED(&timing, T_LIST, IN(s)->ops->list(IN(s), a, user_id, after, limit, out, n));
}
static int t_change(order_store_t *s, const order_change_t *c) {
  PS_STORE_TIMED(&timing, T_CHANGE, IN(s)->ops->change(IN(s), c));
}
static int t_unfinished(order_store_t *s, ps_arena_t *a, int64_t before, int limit,
                        const char ***ids, size_t *n) {
  PS_STORE_TIMED(&timing, T_UNFINISHED, IN(s)->ops->unfinished(IN(s), a, before, limit, ids, n));
}
static int t_outbox_due(order_store_t *s, ps_arena_t *a, int64_t now, const char *const *dests,
                        int limit, outbox_event_t **out, size_t *n) {
  PS_STORE_TIMED(&timing, T_DUE, IN(s)->ops->outbox_due(IN(s), a, now, dests, limit, out, n));
}
static int t_outbox_sent(order_store_t *s, const char *id, const char *dest, int64_t now) {
  PS_STORE_TIMED(&timing, T_SENT, IN(s)->ops->outbox_sent(IN(s), id, dest, now));
}
static int t_outbox_retry(order_store_t *s, const char *id, const char *dest, int64_t next) {
  PS_STORE_TIMED(&timing, T_RETRY, IN(s)->ops->outbox_retry(IN(s), id, dest, next));
}
static int t_outbox_pending(order_store_t *s, int64_t *n) {
  PS_STORE_TIMED(&timing, T_PENDING, IN(s)->ops->outbox_pending(IN(s), n));
}
static int t_outbox_prune(order_store_t *s, int64_t before, int64_t *n) {
  PS_STORE_TIMED(&timing, T_PRUNE, IN(s)->ops->outbox_prune(IN(s), before, n));
}
static int t_ping(order_store_t *s) { PS_STORE_TIMED(&timing, T_PING, IN(s)->ops->ping(IN(s))); }

static void t_close(order_store_t *s) {
  if (((timed_t *)s)->owns_inner) IN(s)->ops->close(IN(s));
  ps_free(s);
}

static const order_store_ops_t timed_ops = {
    .create = t_create, .get = t_get, .get_by_key = t_get_by_key, .list = t_list,
    .change = t_change, .unfinished = t_unfinished, .outbox_due = t_outbox_due,
    .outbox_sent = t_outbox_sent, .outbox_retry = t_outbox_retry,
    .outbox_pending = t_outbox_pending, .outbox_prune = t_outbox_prune, .ping = t_ping,
    .close = t_close,
};

void order_store_metrics_register(const char *engine, pthread_mutex_t *shared_lock) {
  ps_store_timing_register(&timing, engine, op_names, T__COUNT, "Latency of order store calls");
  timing.lock = shared_lock;
}

order_store_t *order_store_timed(order_store_t *inner, int owns_inner) {
  timed_t *t = ps_calloc(1, sizeof(*t));
  t->base.ops = &timed_ops;
  t->inner = inner;
  t->owns_inner = owns_inner;
  return &t->base;
}
