/* store_timed.c - an order store that times every call of another one into the
 * polyshop_store_call_seconds{engine="...",op="..."} histograms of /metrics, whatever the
 * engine underneath. */
#include <stdio.h>

#include "polyshop/alloc.h"
#include "polyshop/metrics.h"
#include "store.h"

enum {
  T_CREATE, T_GET, T_GET_BY_KEY, T_LIST, T_CHANGE, T_UNFINISHED, T_DUE, T_SENT, T_RETRY,
  T_PENDING, T_PRUNE, T_PING, T__COUNT
};

static const char *const op_names[T__COUNT] = {
    [T_CREATE] = "create", [T_GET] = "get", [T_GET_BY_KEY] = "get_by_key", [T_LIST] = "list",
    [T_CHANGE] = "change", [T_UNFINISHED] = "unfinished", [T_DUE] = "outbox_due",
    [T_SENT] = "outbox_sent", [T_RETRY] = "outbox_retry", [T_PENDING] = "outbox_pending",
    [T_PRUNE] = "outbox_prune",
    [T_PING] = "ping"};

static ps_histogram_t *hist[T__COUNT]; /* registered once, before the server's threads start */

typedef struct {
  order_store_t base;
  order_store_t *inner;  /* owned (closed with this one) unless lock is set */
  pthread_mutex_t *lock; /* held through every call of a shared inner store */
} timed_t;

#define INNER(s) (((timed_t *)(s))->inner)
#define LOCK(s) (((timed_t *)(s))->lock)

#define TIMED(op, expr)                                                              \
  do {                                                                               \
    unsigned long long t0_ = ps_now_ns();                                            \
    if (LOCK(s)) pthread_mutex_lock(LOCK(s));                                        \
    int rc_ = (expr);                                                                \
    if (LOCK(s)) pthread_mutex_unlock(LOCK(s));                                      \
    if (hist[op]) ps_histogram_observe(hist[op], (double)(ps_now_ns() - t0_) / 1e9); \
    return rc_;                                                                      \
  } while (0)

static int t_create(order_store_t *s, const order_t *o, const outbox_event_t *e, size_t n) {
  TIMED(T_CREATE, INNER(s)->ops->create(INNER(s), o, e, n));
}
static int t_get(order_store_t *s, ps_arena_t *a, const char *id, order_t *out) {
  TIMED(T_GET, INNER(s)->ops->get(INNER(s), a, id, out));
}
static int t_get_by_key(order_store_t *s, ps_arena_t *a, const char *user_id, const char *key,
                        order_t *out) {
  TIMED(T_GET_BY_KEY, INNER(s)->ops->get_by_key(INNER(s), a, user_id, key, out));
}
static int t_list(order_store_t *s, ps_arena_t *a, const char *user_id, const order_cursor_t *after,
                  int limit, order_t **out, size_t *n) {
  TIMED(T_LIST, INNER(s)->ops->list(INNER(s), a, user_id, after, limit, out, n));
}
static int t_change(order_store_t *s, const order_change_t *c) {
  TIMED(T_CHANGE, INNER(s)->ops->change(INNER(s), c));
}
static int t_unfinished(order_store_t *s, ps_arena_t *a, int64_t before, int limit,
                        const char ***ids, size_t *n) {
  TIMED(T_UNFINISHED, INNER(s)->ops->unfinished(INNER(s), a, before, limit, ids, n));
}
static int t_outbox_due(order_store_t *s, ps_arena_t *a, int64_t now, const char *const *dests,
                        int limit, outbox_event_t **out, size_t *n) {
  TIMED(T_DUE, INNER(s)->ops->outbox_due(INNER(s), a, now, dests, limit, out, n));
}
static int t_outbox_sent(order_store_t *s, const char *id, const char *dest, int64_t now) {
  TIMED(T_SENT, INNER(s)->ops->outbox_sent(INNER(s), id, dest, now));
}
static int t_outbox_retry(order_store_t *s, const char *id, const char *dest, int64_t next) {
  TIMED(T_RETRY, INNER(s)->ops->outbox_retry(INNER(s), id, dest, next));
}
static int t_outbox_pending(order_store_t *s, int64_t *n) {
  TIMED(T_PENDING, INNER(s)->ops->outbox_pending(INNER(s), n));
}
static int t_outbox_prune(order_store_t *s, int64_t before, int64_t *n) {
  TIMED(T_PRUNE, INNER(s)->ops->outbox_prune(INNER(s), before, n));
}
static int t_ping(order_store_t *s) { TIMED(T_PING, INNER(s)->ops->ping(INNER(s))); }

static void t_close(order_store_t *s) {
  if (!LOCK(s)) INNER(s)->ops->close(INNER(s));
  ps_free(s);
}

static const order_store_ops_t timed_ops = {
    .create = t_create,
    .get = t_get,
    .get_by_key = t_get_by_key,
    .list = t_list,
    .change = t_change,
    .unfinished = t_unfinished,
    .outbox_due = t_outbox_due,
    .outbox_sent = t_outbox_sent,
    .outbox_retry = t_outbox_retry,
    .outbox_pending = t_outbox_pending,
    .outbox_prune = t_outbox_prune,
    .ping = t_ping,
    .close = t_close,
};

void order_store_metrics_register(const char *engine) {
  ps_metrics_store_calls(engine, op_names, T__COUNT, "Latency of order store calls", hist);
}

order_store_t *order_store_timed(order_store_t *inner, pthread_mutex_t *lock) {
  timed_t *t = ps_calloc(1, sizeof(*t));
  t->base.ops = &timed_ops;
  t->inner = inner;
  t->lock = lock;
  return &t->base;
}
