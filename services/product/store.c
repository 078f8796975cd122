/* store.c - picks the product store adapter from the store URL's scheme, and the wrapper
 * that times every call of it. */
#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/sqlite.h"
#include "polyshop/url.h"
#include "polyshop/store_timing.h"
#include "store.h"

int product_store_url_ok(const char *url) {
  return ps_sqlite_url_path(url) != NULL || strncmp(url, "mongodb://", 10) == 0;
}

int product_store_migrate(const char *url) {
  const char *path = ps_sqlite_url_path(url);
  if (path) return product_sqlite_migrate(path);
  if (strncmp(url, "mongodb://", 10) == 0) return product_mongo_migrate(url);
  char shown[PS_URL_REDACT_MAX];
  ps_log_error("PRODUCT_STORE=%s: use sqlite:// or mongodb://", ps_url_redact(shown, sizeof(shown), url));
  return PS_ECONFIG;
}

int product_store_open(const char *url, product_store_t **out) {
  const char *path = ps_sqlite_url_path(url);
  if (path) return product_sqlite_open(path, out);
  if (strncmp(url, "mongodb://", 10) == 0) return product_mongo_open(url, out);
  return PS_ECONFIG;
}

/* --- timing: every call through polyshop_store_call_seconds{engine,op} ------------------- */

enum {
  T_PING, T_CREATE_MANY, T_CAT_EXISTS, T_CAT_PUT, T_CATEGORIES, T_GET, T_CREATE, T_UPDATE, T_DELETE, T_LIST,
  T_LOOKUP, T_COUNT, T_RESERVE, T_COMMIT, T_RELEASE, T_RES_GET, T_SWEEP, T_OUTBOX, T__COUNT
};

static const char *const op_names[T__COUNT] = {
    [T_PING] = "ping",           [T_CREATE_MANY] = "product_create_many",           [T_CAT_EXISTS] = "category_exists", [T_CAT_PUT] = "category_put",
    [T_CATEGORIES] = "categories", [T_GET] = "product_get",          [T_CREATE] = "product_create",
    [T_UPDATE] = "product_update", [T_DELETE] = "product_delete",    [T_LIST] = "product_list",
    [T_LOOKUP] = "product_lookup", [T_COUNT] = "product_count",      [T_RESERVE] = "reserve",
    [T_COMMIT] = "reservation_commit", [T_RELEASE] = "reservation_release",
    [T_RES_GET] = "reservation_get", [T_SWEEP] = "sweep",            [T_OUTBOX] = "outbox_read"};

static ps_store_timing_t timing; /* registered once, before the server's threads start */

typedef struct {
  product_store_t base;
  product_store_t *inner; /* owned: closed with this one */
} timed_t;

#define INNER(s) (((timed_t *)(s))->inner)

static int t_ping(product_store_t *s) { PS_STORE_TIMED(&timing, T_PING, INNER(s)->ops->ping(INNER(s))); }

static void t_close(product_store_t *s) {
  INNER(s)->ops->close(INNER(s));
  ps_free(s);
}

static int t_category_exists(product_store_t *s, const char *slug) {
  PS_STORE_TIMED(&timing, T_CAT_EXISTS, INNER(s)->ops->category_exists(INNER(s), slug));
}
static int t_category_put(product_store_t *s, const char *slug, const char *name,
                          const char *parent) {
  PS_STORE_TIMED(&timing, T_CAT_PUT, INNER(s)->ops->category_put(INNER(s), slug, name, parent));
}
static int t_categories_json(product_store_t *s, ps_arena_t *a, char **tree) {
  PS_STORE_TIMED(&timing, T_CATEGORIES, INNER(s)->ops->categories_json(INNER(s), a, tree));
}
static int t_product_get(product_store_t *s, ps_arena_t *a, const char *id, char **json) {
  PS_STORE_TIMED(&timing, T_GET, INNER(s)->ops->product_get(INNER(s), a, id, json));
}
static int t_product_create(product_store_t *s, ps_arena_t *a, const char *id,
                            const product_in_t *in, int64_t now, char **json) {
  PS_STORE_TIMED(&timing, T_CREATE, INNER(s)->ops->product_create(INNER(s), a, id, in, now, json));
}
static int t_product_update(product_store_t *s, ps_arena_t *a, const char *id,
                            const product_in_t *in, int64_t now, char **json, const char **why) {
  PS_STORE_TIMED(&timing, T_UPDATE, INNER(s)->ops->product_update(INNER(s), a, id, in, now, json, why));
}
static int t_product_create_many(product_store_t *s, ps_arena_t *a, const char *const *ids,
                                 const product_in_t *in, size_t n, int64_t now) {
  PS_STORE_TIMED(&timing, T_CREATE_MANY, INNER(s)->ops->product_create_many(INNER(s), a, ids, in, n, now));
}
static int t_product_delete(product_store_t *s, const char *id, int64_t now) {
  PS_STORE_TIMED(&timing, T_DELETE, INNER(s)->ops->product_delete(INNER(s), id, now));
}
static int t_product_list(product_store_t *s, ps_arena_t *a, const product_query_t *q,
                          product_row_t **rows, size_t *n) {
  PS_STORE_TIMED(&timing, T_LIST, INNER(s)->ops->product_list(INNER(s), a, q, rows, n));
}
static int t_product_lookup(product_store_t *s, ps_arena_t *a, const char *const *ids, size_t n,
                            unsigned fields, char **items, char **missing) {
  PS_STORE_TIMED(&timing, T_LOOKUP, INNER(s)->ops->product_lookup(INNER(s), a, ids, n, fields, items, missing));
}
static int t_product_count(product_store_t *s, int64_t *n) {
  PS_STORE_TIMED(&timing, T_COUNT, INNER(s)->ops->product_count(INNER(s), n));
}
static int t_reserve(product_store_t *s, ps_arena_t *a, const char *rid,
                     const reservation_item_t *items, size_t n, int64_t now, int64_t ttl,
                     char **json, int *existing, reservation_fail_t *fail) {
  PS_STORE_TIMED(&timing, T_RESERVE,
        INNER(s)->ops->reserve(INNER(s), a, rid, items, n, now, ttl, json, existing, fail));
}
static int t_commit(product_store_t *s, ps_arena_t *a, const char *id, int64_t now, char **json) {
  PS_STORE_TIMED(&timing, T_COMMIT, INNER(s)->ops->reservation_commit(INNER(s), a, id, now, json));
}
static int t_release(product_store_t *s, ps_arena_t *a, const char *id, int64_t now, char **json) {
  PS_STORE_TIMED(&timing, T_RELEASE, INNER(s)->ops->reservation_release(INNER(s), a, id, now, json));
}
static int t_res_get(product_store_t *s, ps_arena_t *a, const char *id, int64_t now, char **json) {
  PS_STORE_TIMED(&timing, T_RES_GET, INNER(s)->ops->reservation_get(INNER(s), a, id, now, json));
}
static int t_sweep(product_store_t *s, int64_t now, int max, int *count) {
  PS_STORE_TIMED(&timing, T_SWEEP, INNER(s)->ops->sweep(INNER(s), now, max, count));
}
static int t_outbox_read(product_store_t *s, ps_arena_t *a, int64_t after, int limit,
                         char **json) {
  PS_STORE_TIMED(&timing, T_OUTBOX, INNER(s)->ops->outbox_read(INNER(s), a, after, limit, json));
}

static const product_store_ops_t timed_ops = {
    .ping = t_ping,
    .close = t_close,
    .category_exists = t_category_exists,
    .category_put = t_category_put,
    .categories_json = t_categories_json,
    .product_get = t_product_get,
    .product_create = t_product_create,
    .product_update = t_product_update,
    .product_create_many = t_product_create_many,
    .product_delete = t_product_delete,
    .product_list = t_product_list,
    .product_lookup = t_product_lookup,
    .product_count = t_product_count,
    .reserve = t_reserve,
    .reservation_commit = t_commit,
    .reservation_release = t_release,
    .reservation_get = t_res_get,
    .sweep = t_sweep,
    .outbox_read = t_outbox_read,
};

void product_store_metrics_register(const char *engine) {
  ps_store_timing_register(&timing, engine, op_names, T__COUNT, "Latency of product store calls");
}

product_store_t *product_store_timed(product_store_t *inner) {
  timed_t *t = ps_calloc(1, sizeof(*t));
  t->base.ops = &timed_ops;
  t->inner = inner;
  return &t->base;
}
