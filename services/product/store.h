/* store.h - what the product service needs from its store, whatever the engine (SQLite in
 * store_sqlite.c; a MongoDB adapter implements the same operations).
 *
 * One product_store_t is opened per event-loop thread (SQLite: one connection each), so calls
 * need no locking of their own. Products come back as complete JSON documents (text in the
 * arena passed in), ready to send:
 *   {id, sku, name, description, kind, brand, category, price, currency, stock,
 *    attributes{}, variants[{sku, attributes, stock, price?}], images[], popularity,
 *    created_at, updated_at}
 * Every call returns 0 or a PS_E* code: PS_ENOTFOUND, PS_EEXISTS (a SKU taken, by a product
 * or a variant), PS_EINSUFFICIENT (stock), PS_ECONFLICT (a reservation in the wrong state),
 * PS_ESTORE / PS_EUNAVAIL for engine failures. A failed call changes nothing.
 *
 * Every change to a product (created, updated, deleted, stock changed) also appends an event
 * to the outbox in the same transaction, for the search service to follow.
 */
#ifndef POLYSHOP_PRODUCT_STORE_H
#define POLYSHOP_PRODUCT_STORE_H
#include <stddef.h>
#include <stdint.h>

#include "polyshop/arena.h"
#include "product.h"

/* One listed product: its document and the sort key the next cursor is made of. */
typedef struct {
  const char *json;
  const char *id;
  int64_t key_i;
  const char *key_s;
} product_row_t;

/* What a reservation call tells the caller when it fails on one item. */
typedef struct {
  size_t index;      /* the item that failed */
  int64_t available; /* for PS_EINSUFFICIENT */
  const char *why;   /* for PS_EINVAL / PS_ENOTFOUND: a static sentence */
} reservation_fail_t;

typedef struct {
  int (*ping)(product_store_t *s);
  void (*close)(product_store_t *s);

  /* Categories. tree_json is the whole tree: [{slug, name, children:[...]}]. */
  int (*category_exists)(product_store_t *s, const char *slug);
  /* PS_EINVAL when parent is slug itself or one of its descendants (a cycle). */
  int (*category_put)(product_store_t *s, const char *slug, const char *name, const char *parent);
  int (*categories_json)(product_store_t *s, ps_arena_t *a, char **tree_json);

  /* Products. create needs every required field of in; update changes only in->fields. */
  int (*product_get)(product_store_t *s, ps_arena_t *a, const char *id, char **json);
  int (*product_create)(product_store_t *s, ps_arena_t *a, const char *id,
                        const product_in_t *in, int64_t now, char **json);
  /* PS_EINVAL with *why when in->stock is given for a product that has variants. */
  int (*product_update)(product_store_t *s, ps_arena_t *a, const char *id,
                        const product_in_t *in, int64_t now, char **json, const char **why);
  /* Creates n products at once (the demo loader): ids[i] for in[i], updated_at from
   * in[i].created_ms when set. All or nothing on SQLite; on MongoDB a failure may leave the
   * products created before it. */
  int (*product_create_many)(product_store_t *s, ps_arena_t *a, const char *const *ids,
                             const product_in_t *in, size_t n, int64_t now);
  int (*product_delete)(product_store_t *s, const char *id, int64_t now);
  /* Up to q->limit + 1 rows (one more than asked tells the caller there is a next page). */
  int (*product_list)(product_store_t *s, ps_arena_t *a, const product_query_t *q,
                      product_row_t **rows, size_t *nrows);
  /* The documents of the ids that exist (JSON array text), in the order asked; fields is a
   * mask of product_doc_fields (product.h): only those keys, in document order (0: all). */
  int (*product_lookup)(product_store_t *s, ps_arena_t *a, const char *const *ids, size_t n,
                        unsigned fields, char **items_json, char **missing_json);
  int (*product_count)(product_store_t *s, int64_t *n);

  /* Reservations. reserve takes every item or none; a reservation_id already used with the
   * same items answers that reservation again (*existing = 1) while it is held or committed;
   * once released or expired, and with other items, it is PS_ECONFLICT (fail->why set in the
   * first case).
   * *json is {reservation_id, status, expires_at, items[{product_id, variant, quantity,
   * price, currency}]}. */
  int (*reserve)(product_store_t *s, ps_arena_t *a, const char *reservation_id,
                 const reservation_item_t *items, size_t n, int64_t now, int64_t ttl,
                 char **json, int *existing, reservation_fail_t *fail);
  /* held -> committed (idempotent on committed); PS_ECONFLICT when released or expired. */
  int (*reservation_commit)(product_store_t *s, ps_arena_t *a, const char *id, int64_t now,
                            char **json);
  /* held or committed -> released, returning the stock (idempotent on released/expired). */
  int (*reservation_release)(product_store_t *s, ps_arena_t *a, const char *id, int64_t now,
                             char **json);
  int (*reservation_get)(product_store_t *s, ps_arena_t *a, const char *id, int64_t now,
                         char **json);
  /* Returns the stock of up to max held reservations past their expiry; *count says how many. */
  int (*sweep)(product_store_t *s, int64_t now, int max, int *count);

  /* Outbox events after seq (JSON array text of {seq, type, product_id, payload, created_at}). */
  int (*outbox_read)(product_store_t *s, ps_arena_t *a, int64_t after, int limit, char **json);
} product_store_ops_t;

struct product_store {
  const product_store_ops_t *ops;
};

/* 1 when url names a store this build knows: "sqlite://PATH" or "mongodb://..." (store.c). */
int product_store_url_ok(const char *url);
/* Prepares the schema (tables, indexes) once at start; may take a while on a new file. */
int product_store_migrate(const char *url);
/* Opens a store for the calling thread from its URL. Returns 0 or PS_ECONFIG / PS_ESTORE /
 * PS_EUNAVAIL. The caller closes it with s->ops->close(s). */
int product_store_open(const char *url, product_store_t **out);

/* Registers the polyshop_store_call_seconds{engine,op} histograms (store.c); call once
 * before the server starts. */
void product_store_metrics_register(const char *engine);
/* Wraps inner so every call is timed into those histograms; the wrapper owns inner. */
product_store_t *product_store_timed(product_store_t *inner);

/* The SQLite adapter (store_sqlite.c). */
int product_sqlite_migrate(const char *path);
int product_sqlite_open(const char *path, product_store_t **out);
/* The MongoDB adapter (store_mongo.c); the database is the URL's, "polyshop_product" if none. */
int product_mongo_migrate(const char *url);
int product_mongo_open(const char *url, product_store_t **out);

#endif
