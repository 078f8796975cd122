/* store_mongo.c - the product store on MongoDB (libmongoc), see store.h.
 *
 * One mongoc client per event-loop thread. Written to the subset FerretDB also speaks: no
 * multi-document transactions, no aggregation, no positional "$" updates. So every stock
 * change is one conditional single-document update ({stock: {$gte: q}} with $inc -q, on the
 * product and, through its array index, the variant), which keeps stock from ever going below
 * zero; a reservation of several items is a small saga: the reservation document is written
 * first ("pending", with how many items were taken so far), each item is taken in turn, and a
 * failure gives the taken ones back. The sweeper finishes pending reservations left by a
 * crash. SKUs of products and variants share the unique _id of the "skus" collection.
 *
 * FerretDB (1.24, SQLite backend) does not apply a conditional update atomically: measured,
 * 1,000 concurrent {stock: {$gte: 1}} / $inc -1 updates of stock 100 all "succeed" and leave
 * 89. An insert under a unique _id is atomic there, so every read-modify-write of a product
 * or a reservation runs under a lock document (insert to take, delete to give, stale after
 * 10 s), and outbox sequence numbers are claimed by inserting the next number under the unique _id. On MongoDB proper the
 * conditional updates alone would suffice; the locks cost two round trips and keep one code
 * path for both.
 *
 * Differences from the SQLite store, documented in docs/product.md: outbox events are written
 * right after their change (not in the same transaction), and a concurrent buyer may see a
 * unit briefly taken by a reservation that then fails on a later item.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/json.h"
#include "polyshop/log.h"
#include "polyshop/mongo.h"
#include "polyshop/timestamp.h"
#include "polyshop/url.h"
#include "store.h"

typedef struct {
  product_store_t base;
  ps_mongo_t mongo; /* client and database: lib/drivers/mongo.c */
  mongoc_collection_t *products, *skus, *categories, *reservations, *outbox, *locks;
  int64_t next_seq; /* the outbox number to try next; 0 until the first event */
} mongo_store_t;

#define M(s) ((mongo_store_t *)(s))

enum { PENDING_GRACE_SECONDS = 60 }; /* a pending reservation older than this was orphaned */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ASCII lower-case copy: the same folding as SQLite's NOCASE, so both stores sort alike. */
static char *fold(const char *s) {
  char *out = ps_strdup(s);
  for (char *p = out; *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
  return out;
}

static const char *str_of(const bson_t *doc, const char *key, ps_arena_t *a) {
  return ps_mongo_str(a, doc, key);
}

/* --- small wrappers ---------------------------------------------------------------------- */

/* update_one; *modified (may be NULL) tells whether a document matched and changed. Takes
 * ownership of filter and update. */
static int update_one(mongoc_collection_t *c, bson_t *filter, bson_t *update, int upsert,
                      int *matched) {
  bson_t reply;
  bson_error_t err;
  bson_t *opts = upsert ? BCON_NEW("upsert", BCON_BOOL(true)) : NULL;
  bool ok = mongoc_collection_update_one(c, filter, update, opts, &reply, &err);
  if (matched) *matched = ok ? (int)ps_mongo_int(&reply, "matchedCount") : 0;
  bson_destroy(&reply);
  if (opts) bson_destroy(opts);
  bson_destroy(filter);
  bson_destroy(update);
  return ok ? 0 : ps_mongo_err(&err);
}

/* Inserts doc and destroys it. */
static int insert_one(mongoc_collection_t *c, bson_t *doc) {
  int rc = ps_mongo_insert(c, doc);
  bson_destroy(doc);
  return rc;
}

static int delete_where(mongoc_collection_t *c, bson_t *filter, int many, int64_t *deleted) {
  bson_t reply;
  bson_error_t err;
  bool ok = many ? mongoc_collection_delete_many(c, filter, NULL, &reply, &err)
                 : mongoc_collection_delete_one(c, filter, NULL, &reply, &err);
  if (deleted) *deleted = ok ? ps_mongo_int(&reply, "deletedCount") : 0;
  bson_destroy(&reply);
  bson_destroy(filter);
  return ok ? 0 : ps_mongo_err(&err);
}

/* --- locks ------------------------------------------------------------------------------- */

enum { LOCK_STALE_MS = 10000, LOCK_WAIT_MS = 5000 };

typedef struct {
  char key[160];
  char owner[33];
} lock_t;

/* Takes the lock named key (a product id or "r:" + a reservation id). Returns PS_EUNAVAIL
 * when it could not within LOCK_WAIT_MS. */
static int lock_take(product_store_t *s, const char *key, lock_t *l) {
  snprintf(l->key, sizeof(l->key), "%s", key);
  unsigned char rnd[16];
  randombytes_buf(rnd, sizeof(rnd));
  for (size_t i = 0; i < sizeof(rnd); i++) snprintf(l->owner + 2 * i, 3, "%02x", rnd[i]);
  int64_t start = now_ms();
  long sleep_us = 100;
  for (;;) {
    int64_t now = now_ms();
    int rc = insert_one(M(s)->locks, BCON_NEW("_id", BCON_UTF8(l->key), "owner",
                                              BCON_UTF8(l->owner), "at", BCON_INT64(now)));
    if (rc != PS_EEXISTS) return rc;
    bson_t *held;
    if (ps_mongo_find_id(M(s)->locks, l->key, &held) == 0) {
      /* A holder that died leaves its lock behind: take it over once it is stale. */
      if (ps_mongo_int(held, "at") < now - LOCK_STALE_MS) {
        const char *owner = str_of(held, "owner", NULL);
        ps_log_warn("mongodb: breaking the stale lock %s", l->key);
        delete_where(M(s)->locks, BCON_NEW("_id", BCON_UTF8(l->key), "owner",
                                           BCON_UTF8(owner ? owner : "")), 0, NULL);
      }
      bson_destroy(held);
    }
    if (now - start > LOCK_WAIT_MS) return PS_EUNAVAIL;
    struct timespec ts = {0, sleep_us * 1000};
    nanosleep(&ts, NULL);
    if (sleep_us < 5000) sleep_us *= 2;
  }
}

static void lock_give(product_store_t *s, lock_t *l) {
  delete_where(M(s)->locks, BCON_NEW("_id", BCON_UTF8(l->key), "owner", BCON_UTF8(l->owner)), 0,
               NULL);
}

/* --- documents --------------------------------------------------------------------------- */

/* The public product document from a stored one (field names as in store.h). */
static void product_out(const bson_t *d, bson_t *out) {
  static const char *const keys[] = {"sku",      "name",  "description", "kind",
                                     "brand",    "category", "price",    "currency",
                                     "stock",    "attributes", "variants", "images",
                                     "popularity"};
  bson_iter_t it;
  bson_init(out);
  if (bson_iter_init_find(&it, d, "_id")) bson_append_iter(out, "id", -1, &it);
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    if (bson_iter_init_find(&it, d, keys[i])) bson_append_iter(out, keys[i], -1, &it);
  /* RFC 3339 like every public timestamp of the shop (timestamp.h). */
  char created[PS_TIME_RFC3339_SIZE], updated[PS_TIME_RFC3339_SIZE];
  BSON_APPEND_UTF8(out, "created_at", ps_time_rfc3339_buf(created, ps_mongo_int(d, "created_ms") / 1000));
  BSON_APPEND_UTF8(out, "updated_at", ps_time_rfc3339_buf(updated, ps_mongo_int(d, "updated_at")));
}

/* BSON to jansson, for the value types our documents hold. */
static json_t *to_json(bson_iter_t *it);

static json_t *doc_to_json(bson_iter_t *child, int array) {
  json_t *out = array ? json_array() : json_object();
  while (bson_iter_next(child)) {
    json_t *v = to_json(child);
    if (array)
      json_array_append_new(out, v);
    else
      json_object_set_new(out, bson_iter_key(child), v);
  }
  return out;
}

static json_t *to_json(bson_iter_t *it) {
  bson_iter_t child;
  switch (bson_iter_type(it)) {
    case BSON_TYPE_UTF8: {
      uint32_t len;
      const char *s = bson_iter_utf8(it, &len);
      return json_stringn(s, len);
    }
    case BSON_TYPE_INT32: return json_integer(bson_iter_int32(it));
    case BSON_TYPE_INT64: return json_integer(bson_iter_int64(it));
    case BSON_TYPE_DOUBLE: return json_real(bson_iter_double(it));
    case BSON_TYPE_BOOL: return json_boolean(bson_iter_bool(it));
    case BSON_TYPE_DOCUMENT:
      return bson_iter_recurse(it, &child) ? doc_to_json(&child, 0) : json_object();
    case BSON_TYPE_ARRAY:
      return bson_iter_recurse(it, &child) ? doc_to_json(&child, 1) : json_array();
    default: return json_null();
  }
}

/* A document as compact JSON text in the arena (the same shape the SQLite store sends). */
static char *bson_json(ps_arena_t *a, const bson_t *b) {
  bson_iter_t it;
  json_t *j = bson_iter_init(&it, b) ? doc_to_json(&it, 0) : json_object();
  char *out = ps_json_dump(a, j);
  json_decref(j);
  return out;
}

static char *product_json(ps_arena_t *a, const bson_t *d) {
  bson_t out;
  product_out(d, &out);
  char *json = bson_json(a, &out);
  bson_destroy(&out);
  return json;
}

/* Appends validated JSON text as a sub-document or array. */
static void append_json(bson_t *b, const char *key, const char *json, int array) {
  bson_error_t err;
  if (!json) json = array ? "[]" : "{}";
  if (array) {
    /* libbson parses only objects: wrap the array and copy its member. */
    size_t n = strlen(json);
    char *wrapped = ps_malloc(n + 8);
    snprintf(wrapped, n + 8, "{\"a\":%s}", json);
    bson_t *w = bson_new_from_json((const uint8_t *)wrapped, -1, &err);
    ps_free(wrapped);
    bson_iter_t it;
    if (w && bson_iter_init_find(&it, w, "a")) {
      bson_append_iter(b, key, -1, &it);
    } else {
      bson_t empty = BSON_INITIALIZER;
      BSON_APPEND_ARRAY(b, key, &empty);
    }
    if (w) bson_destroy(w);
    return;
  }
  bson_t *sub = bson_new_from_json((const uint8_t *)json, -1, &err);
  if (sub) {
    BSON_APPEND_DOCUMENT(b, key, sub);
    bson_destroy(sub);
  } else {
    bson_t empty = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT(b, key, &empty);
  }
}

static void append_variants(bson_t *b, const product_in_t *in, int64_t *sum) {
  bson_t arr, v;
  char idx[16];
  const char *key;
  *sum = 0;
  bson_append_array_begin(b, "variants", -1, &arr);
  for (size_t i = 0; i < in->nvariants; i++) {
    bson_uint32_to_string((uint32_t)i, &key, idx, sizeof(idx));
    bson_append_document_begin(&arr, key, -1, &v);
    BSON_APPEND_UTF8(&v, "sku", in->variants[i].sku);
    append_json(&v, "attributes", in->variants[i].attributes, 0);
    BSON_APPEND_INT64(&v, "stock", in->variants[i].stock);
    if (in->variants[i].price >= 0) BSON_APPEND_INT64(&v, "price", in->variants[i].price);
    bson_append_document_end(&arr, &v);
    *sum += in->variants[i].stock;
  }
  bson_append_array_end(b, &arr);
}

/* Index of the variant with this SKU in a stored product, or -1. */
static int variant_index(const bson_t *d, const char *sku, int64_t *stock, int64_t *price) {
  bson_iter_t it, arr;
  if (!bson_iter_init_find(&it, d, "variants") || !BSON_ITER_HOLDS_ARRAY(&it) ||
      !bson_iter_recurse(&it, &arr))
    return -1;
  int i = 0;
  while (bson_iter_next(&arr)) {
    if (BSON_ITER_HOLDS_DOCUMENT(&arr)) {
      uint32_t len;
      const uint8_t *data;
      bson_iter_document(&arr, &len, &data);
      bson_t v;
      if (bson_init_static(&v, data, len)) {
        const char *vs = str_of(&v, "sku", NULL);
        if (vs && strcmp(vs, sku) == 0) {
          if (stock) *stock = ps_mongo_int(&v, "stock");
          bson_iter_t p;
          if (price) *price = bson_iter_init_find(&p, &v, "price") ? bson_iter_as_int64(&p) : -1;
          return i;
        }
      }
    }
    i++;
  }
  return -1;
}

static int variant_count(const bson_t *d) {
  bson_iter_t it, arr;
  int n = 0;
  if (bson_iter_init_find(&it, d, "variants") && BSON_ITER_HOLDS_ARRAY(&it) &&
      bson_iter_recurse(&it, &arr))
    while (bson_iter_next(&arr)) n++;
  return n;
}

/* --- outbox ------------------------------------------------------------------------------ */

/* The highest outbox sequence number (0 when empty). FerretDB answers this with a scan, so it
 * is asked once per connection and after repeated collisions, not per event. */
static int outbox_max(product_store_t *s, int64_t *max) {
  bson_t *filter = bson_new();
  bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(-1), "}", "limit", BCON_INT64(1));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(M(s)->outbox, filter, opts, NULL);
  const bson_t *last;
  *max = 0;
  if (mongoc_cursor_next(cur, &last)) *max = ps_mongo_int(last, "_id");
  bson_error_t err;
  int rc = mongoc_cursor_error(cur, &err) ? ps_mongo_err(&err) : 0;
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
  bson_destroy(opts);
  return rc;
}

static int outbox_add(product_store_t *s, const char *type, const char *id, const bson_t *payload,
                      int64_t now) {
  /* Sequence numbers are claimed by inserting under the unique _id. A number is only tried
   * when the one before it exists (it was the maximum, or our own or someone's insert that
   * collided), so the sequence has no gaps and a follower reading "after N" misses nothing. */
  int rc;
  for (int attempt = 0; attempt < 1000; attempt++) {
    if (M(s)->next_seq == 0 || (attempt && attempt % 8 == 0)) {
      int64_t max;
      if ((rc = outbox_max(s, &max))) return rc;
      M(s)->next_seq = max + 1;
    }
    bson_t *doc = BCON_NEW("_id", BCON_INT64(M(s)->next_seq), "type", BCON_UTF8(type),
                           "product_id", BCON_UTF8(id), "payload", BCON_DOCUMENT(payload),
                           "created_at", BCON_INT64(now));
    rc = insert_one(M(s)->outbox, doc);
    M(s)->next_seq++; /* taken, by us or by someone else */
    if (rc != PS_EEXISTS) return rc;
  }
  return PS_EUNAVAIL;
}

/* An event carrying the product's current document. */
static int outbox_doc(product_store_t *s, const char *type, const char *id, int64_t now) {
  bson_t *d;
  int rc = ps_mongo_find_id(M(s)->products, id, &d);
  if (rc) return rc == PS_ENOTFOUND ? 0 : rc;
  bson_t out;
  product_out(d, &out);
  rc = outbox_add(s, type, id, &out, now);
  bson_destroy(&out);
  bson_destroy(d);
  return rc;
}

/* --- basics and categories ------------------------------------------------------------- */

static int mg_ping(product_store_t *s) { return ps_mongo_ping(&M(s)->mongo); }

static void mg_close(product_store_t *s) {
  if (!s) return;
  mongoc_collection_t *cs[] = {M(s)->products,     M(s)->skus,   M(s)->categories,
                               M(s)->reservations, M(s)->outbox, M(s)->locks};
  for (size_t i = 0; i < sizeof(cs) / sizeof(cs[0]); i++)
    if (cs[i]) mongoc_collection_destroy(cs[i]);
  ps_mongo_close(&M(s)->mongo);
  ps_free(s);
}

static int mg_category_exists(product_store_t *s, const char *slug) {
  bson_t *d;
  int rc = ps_mongo_find_id(M(s)->categories, slug, &d);
  if (!rc) bson_destroy(d);
  return rc;
}

static int mg_category_put(product_store_t *s, const char *slug, const char *name,
                           const char *parent) {
  /* The parent's ancestors (itself included) must not include the category. */
  char cur[128];
  snprintf(cur, sizeof(cur), "%s", parent ? parent : "");
  for (int depth = 0; parent && depth < 1000; depth++) {
    if (strcmp(cur, slug) == 0) return PS_EINVAL;
    bson_t *c;
    int rc = ps_mongo_find_id(M(s)->categories, cur, &c);
    if (rc == PS_ENOTFOUND) break;
    if (rc) return rc;
    const char *up = str_of(c, "parent", NULL);
    if (up) snprintf(cur, sizeof(cur), "%s", up);
    bson_destroy(c);
    if (!up) break;
  }
  bson_t *u = parent ? BCON_NEW("$set", "{", "name", BCON_UTF8(name), "parent", BCON_UTF8(parent), "}")
                     : BCON_NEW("$set", "{", "name", BCON_UTF8(name), "parent", BCON_NULL, "}");
  return update_one(M(s)->categories, BCON_NEW("_id", BCON_UTF8(slug)), u, 1, NULL);
}

/* Every category as (slug, name, parent) in name order; the caller frees with json_decref. */
static int all_categories(product_store_t *s, json_t **out) {
  bson_t *filter = bson_new();
  bson_t *opts = BCON_NEW("sort", "{", "name", BCON_INT32(1), "_id", BCON_INT32(1), "}");
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(M(s)->categories, filter, opts, NULL);
  const bson_t *doc;
  json_t *arr = json_array();
  while (mongoc_cursor_next(cur, &doc)) {
    const char *parent = str_of(doc, "parent", NULL);
    json_array_append_new(arr, json_pack("{s:s, s:s, s:s?}", "slug", str_of(doc, "_id", NULL),
                                         "name", str_of(doc, "name", NULL), "parent", parent));
  }
  bson_error_t err;
  int rc = mongoc_cursor_error(cur, &err) ? ps_mongo_err(&err) : 0;
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
  bson_destroy(opts);
  if (rc) {
    json_decref(arr);
    return rc;
  }
  *out = arr;
  return 0;
}

static int mg_categories_json(product_store_t *s, ps_arena_t *a, char **tree_json) {
  json_t *all;
  int rc = all_categories(s, &all);
  if (rc) return rc;
  json_t *nodes = json_object(), *roots = json_array();
  size_t i;
  json_t *c;
  json_array_foreach(all, i, c) {
    json_object_set_new(nodes, json_string_value(json_object_get(c, "slug")),
                        json_pack("{s:O, s:O, s:[], s:O}", "slug", json_object_get(c, "slug"),
                                  "name", json_object_get(c, "name"), "children", "parent",
                                  json_object_get(c, "parent")));
  }
  json_array_foreach(all, i, c) {
    json_t *node = json_object_get(nodes, json_string_value(json_object_get(c, "slug")));
    json_t *parent = json_object_get(nodes, json_string_value(json_object_get(c, "parent")));
    json_array_append(parent ? json_object_get(parent, "children") : roots, node);
  }
  *tree_json = ps_json_dump(a, roots);
  json_decref(roots);
  json_decref(nodes);
  json_decref(all);
  return 0;
}

/* The slug and every descendant of it, as a BSON array for $in. */
static int category_subtree(product_store_t *s, const char *slug, bson_t *arr) {
  json_t *all;
  int rc = all_categories(s, &all);
  if (rc) return rc;
  json_t *set = json_array();
  json_array_append_new(set, json_string(slug));
  /* Breadth-first over the flat list; the tree is small. */
  for (size_t k = 0; k < json_array_size(set); k++) {
    const char *cur = json_string_value(json_array_get(set, k));
    size_t i;
    json_t *c;
    json_array_foreach(all, i, c) {
      const char *p = json_string_value(json_object_get(c, "parent"));
      if (p && strcmp(p, cur) == 0 && json_array_size(set) < 10000)
        json_array_append(set, json_object_get(c, "slug"));
    }
  }
  char idx[16];
  const char *key;
  for (size_t k = 0; k < json_array_size(set); k++) {
    bson_uint32_to_string((uint32_t)k, &key, idx, sizeof(idx));
    BSON_APPEND_UTF8(arr, key, json_string_value(json_array_get(set, k)));
  }
  json_decref(set);
  json_decref(all);
  return 0;
}

/* --- products ---------------------------------------------------------------------------- */

static int mg_product_get(product_store_t *s, ps_arena_t *a, const char *id, char **json) {
  bson_t *d;
  int rc = ps_mongo_find_id(M(s)->products, id, &d);
  if (rc) return rc;
  *json = product_json(a, d);
  bson_destroy(d);
  return 0;
}

static int mg_product_count(product_store_t *s, int64_t *n) {
  bson_t *filter = bson_new();
  bson_error_t err;
  int64_t c = mongoc_collection_count_documents(M(s)->products, filter, NULL, NULL, NULL, &err);
  bson_destroy(filter);
  if (c < 0) return ps_mongo_err(&err);
  *n = c;
  return 0;
}

/* Claims SKUs for product id in one ordered insert; on a clash gives back the ones it
 * claimed (those before the clash; the claims of other products are never touched). */
static int claim_skus(product_store_t *s, const char *id, const char *const *skus, size_t n) {
  if (!n) return 0;
  bson_t **docs = ps_calloc(n, sizeof(bson_t *));
  for (size_t i = 0; i < n; i++)
    docs[i] = BCON_NEW("_id", BCON_UTF8(skus[i]), "product_id", BCON_UTF8(id));
  bson_error_t err;
  bool ok = mongoc_collection_insert_many(M(s)->skus, (const bson_t **)docs, n, NULL, NULL, &err);
  for (size_t i = 0; i < n; i++) bson_destroy(docs[i]);
  ps_free(docs);
  if (ok) return 0;
  int rc = ps_mongo_err(&err);
  for (size_t k = 0; k < n; k++)
    delete_where(M(s)->skus, BCON_NEW("_id", BCON_UTF8(skus[k]), "product_id", BCON_UTF8(id)), 0,
                 NULL);
  return rc;
}

static void set_product_fields(bson_t *b, const product_in_t *in, int64_t *vsum) {
  char *f;
  if (in->fields & PF_SKU) BSON_APPEND_UTF8(b, "sku", in->sku);
  if (in->fields & PF_NAME) {
    BSON_APPEND_UTF8(b, "name", in->name);
    f = fold(in->name);
    BSON_APPEND_UTF8(b, "name_lc", f);
    ps_free(f);
  }
  if (in->fields & PF_DESCRIPTION)
    BSON_APPEND_UTF8(b, "description", in->description ? in->description : "");
  if (in->fields & PF_KIND) BSON_APPEND_UTF8(b, "kind", in->kind);
  if (in->fields & PF_BRAND) {
    BSON_APPEND_UTF8(b, "brand", in->brand);
    f = fold(in->brand);
    BSON_APPEND_UTF8(b, "brand_lc", f);
    ps_free(f);
  }
  if (in->fields & PF_CATEGORY) BSON_APPEND_UTF8(b, "category", in->category);
  if (in->fields & PF_PRICE) BSON_APPEND_INT64(b, "price", in->price);
  if (in->fields & PF_CURRENCY) BSON_APPEND_UTF8(b, "currency", in->currency);
  if (in->fields & PF_ATTRIBUTES) append_json(b, "attributes", in->attributes, 0);
  if (in->fields & PF_IMAGES) append_json(b, "images", in->images, 1);
  if (in->fields & PF_POPULARITY) BSON_APPEND_INT64(b, "popularity", in->popularity);
  *vsum = -1;
  if (in->fields & PF_VARIANTS) append_variants(b, in, vsum);
  if ((in->fields & PF_VARIANTS) && in->nvariants)
    BSON_APPEND_INT64(b, "stock", *vsum);
  else if (in->fields & PF_STOCK)
    BSON_APPEND_INT64(b, "stock", in->stock);
}

static int mg_product_create(product_store_t *s, ps_arena_t *a, const char *id,
                             const product_in_t *in, int64_t now, char **json) {
  const char **skus = ps_arena_alloc(a, (in->nvariants + 1) * sizeof(char *));
  skus[0] = in->sku;
  for (size_t i = 0; i < in->nvariants; i++) skus[i + 1] = in->variants[i].sku;
  int rc = claim_skus(s, id, skus, in->nvariants + 1);
  if (rc) return rc;
  bson_t *doc = bson_new();
  BSON_APPEND_UTF8(doc, "_id", id);
  product_in_t all = *in;
  all.fields |= PF_DESCRIPTION | PF_STOCK | PF_ATTRIBUTES | PF_IMAGES | PF_VARIANTS;
  int64_t vsum;
  set_product_fields(doc, &all, &vsum);
  if (!(in->fields & PF_POPULARITY)) BSON_APPEND_INT64(doc, "popularity", 0);
  BSON_APPEND_INT64(doc, "created_ms", in->created_ms ? in->created_ms : now_ms());
  BSON_APPEND_INT64(doc, "updated_at", now);
  rc = insert_one(M(s)->products, doc);
  if (rc) {
    delete_where(M(s)->skus, BCON_NEW("product_id", BCON_UTF8(id)), 1, NULL);
    return rc;
  }
  if ((rc = outbox_doc(s, "product.created", id, now))) return rc;
  return mg_product_get(s, a, id, json);
}

static int mg_product_create_many(product_store_t *s, ps_arena_t *a, const char *const *ids,
                                  const product_in_t *in, size_t n, int64_t now) {
  /* One insert for the batch's SKUs and one for its products (the per-product path costs a
   * dozen round trips, which FerretDB makes slow); the events follow one by one. */
  size_t nskus = 0;
  for (size_t i = 0; i < n; i++) nskus += 1 + in[i].nvariants;
  bson_t **skus = ps_arena_alloc(a, (nskus ? nskus : 1) * sizeof(bson_t *));
  bson_t **docs = ps_arena_alloc(a, (n ? n : 1) * sizeof(bson_t *));
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    skus[k++] = BCON_NEW("_id", BCON_UTF8(in[i].sku), "product_id", BCON_UTF8(ids[i]));
    for (size_t v = 0; v < in[i].nvariants; v++)
      skus[k++] = BCON_NEW("_id", BCON_UTF8(in[i].variants[v].sku), "product_id", BCON_UTF8(ids[i]));
    bson_t *doc = bson_new();
    BSON_APPEND_UTF8(doc, "_id", ids[i]);
    product_in_t all = in[i];
    all.fields |= PF_DESCRIPTION | PF_STOCK | PF_ATTRIBUTES | PF_IMAGES | PF_VARIANTS;
    int64_t vsum;
    set_product_fields(doc, &all, &vsum);
    if (!(in[i].fields & PF_POPULARITY)) BSON_APPEND_INT64(doc, "popularity", 0);
    BSON_APPEND_INT64(doc, "created_ms", in[i].created_ms ? in[i].created_ms : now_ms());
    BSON_APPEND_INT64(doc, "updated_at", in[i].created_ms ? in[i].created_ms / 1000 : now);
    docs[i] = doc;
  }
  bson_error_t err;
  int rc = 0;
  if (!mongoc_collection_insert_many(M(s)->skus, (const bson_t **)skus, nskus, NULL, NULL, &err))
    rc = ps_mongo_err(&err);
  if (!rc && !mongoc_collection_insert_many(M(s)->products, (const bson_t **)docs, n, NULL, NULL,
                                            &err)) {
    rc = ps_mongo_err(&err);
    /* Free the SKUs this batch claimed for products that were not written. */
    for (size_t i = 0; i < n; i++) {
      bson_t *d;
      if (ps_mongo_find_id(M(s)->products, ids[i], &d) == 0) {
        bson_destroy(d);
        continue;
      }
      delete_where(M(s)->skus, BCON_NEW("product_id", BCON_UTF8(ids[i])), 1, NULL);
    }
  }
  for (size_t i = 0; i < n && !rc; i++) {
    bson_t out;
    product_out(docs[i], &out);
    rc = outbox_add(s, "product.created", ids[i], &out,
                    in[i].created_ms ? in[i].created_ms / 1000 : now);
    bson_destroy(&out);
  }
  for (size_t i = 0; i < nskus; i++) bson_destroy(skus[i]);
  for (size_t i = 0; i < n; i++) bson_destroy(docs[i]);
  return rc;
}

/* What an update does to the SKU collection: the old document's SKUs (its own first, then
 * its variants'), which of them the update keeps, and the SKUs it must claim. */
typedef struct {
  const char **old;
  size_t nold;
  int keeps[PRODUCT_VARIANTS_MAX + 1];
  const char **claim;
  size_t nclaim;
} sku_plan_t;

/* Reads the SKUs the old document owns into plan->old. */
static void old_skus(const bson_t *old, ps_arena_t *a, const char *old_sku, sku_plan_t *plan) {
  size_t nold = (size_t)variant_count(old) + 1;
  plan->old = ps_arena_alloc(a, nold * sizeof(char *));
  plan->old[0] = old_sku;
  bson_iter_t it, arr;
  size_t k = 1;
  if (bson_iter_init_find(&it, old, "variants") && bson_iter_recurse(&it, &arr))
    while (bson_iter_next(&arr) && k < nold) {
      bson_iter_t v;
      if (BSON_ITER_HOLDS_DOCUMENT(&arr) && bson_iter_recurse(&arr, &v) &&
          bson_iter_find(&v, "sku") && BSON_ITER_HOLDS_UTF8(&v))
        plan->old[k++] = ps_arena_strdup(a, bson_iter_utf8(&v, NULL));
    }
  plan->nold = k;
}

/* Sorts the SKUs the updated product will own into kept (owned already) and to claim. An
 * update that leaves the variants alone keeps all of theirs. */
static void plan_skus(const product_in_t *in, const char *old_sku, ps_arena_t *a,
                      sku_plan_t *plan) {
  plan->nclaim = 0;
  plan->claim = ps_arena_alloc(a, (in->nvariants + 1) * sizeof(char *));
  const char *want_sku = (in->fields & PF_SKU) ? in->sku : old_sku;
  for (size_t k = 0; k < plan->nold; k++) plan->keeps[k] = 0;
  size_t ncand = (in->fields & PF_VARIANTS) ? in->nvariants + 1 : 1;
  for (size_t i = 0; i < ncand; i++) {
    const char *sku = i == 0 ? want_sku : in->variants[i - 1].sku;
    int owned = 0;
    for (size_t k = 0; k < plan->nold; k++)
      if (strcmp(plan->old[k], sku) == 0) owned = 1, plan->keeps[k] = 1;
    if (!owned) plan->claim[plan->nclaim++] = sku;
  }
  if (!(in->fields & PF_VARIANTS))
    for (size_t k = 1; k < plan->nold; k++) plan->keeps[k] = 1;
}

/* $sets the given fields of document id under the product's lock (reservations change its
 * stock under the same lock). *matched is 0 when the document has gone. */
static int update_doc(product_store_t *s, const char *id, const product_in_t *in, int64_t now,
                      int *matched) {
  bson_t *u = bson_new(), set;
  bson_append_document_begin(u, "$set", -1, &set);
  int64_t vsum;
  set_product_fields(&set, in, &vsum);
  BSON_APPEND_INT64(&set, "updated_at", now);
  bson_append_document_end(u, &set);
  *matched = 0;
  lock_t lk;
  int rc = lock_take(s, id, &lk);
  if (rc) {
    bson_destroy(u);
    return rc;
  }
  rc = update_one(M(s)->products, BCON_NEW("_id", BCON_UTF8(id)), u, 0, matched);
  lock_give(s, &lk);
  return rc;
}

static int mg_product_update(product_store_t *s, ps_arena_t *a, const char *id,
                             const product_in_t *in, int64_t now, char **json,
                             const char **why) {
  *why = NULL;
  bson_t *old;
  int rc = ps_mongo_find_id(M(s)->products, id, &old);
  if (rc) return rc;
  int nvariants = variant_count(old);
  const char *old_sku = str_of(old, "sku", a);
  sku_plan_t plan;
  old_skus(old, a, old_sku, &plan);
  bson_destroy(old);
  if ((in->fields & PF_STOCK) && nvariants && !((in->fields & PF_VARIANTS) && !in->nvariants)) {
    *why = "this product has variants: its stock is theirs; change each variant's stock";
    return PS_EINVAL;
  }
  /* New SKUs first (a clash changes nothing), then the document, then free dropped SKUs. */
  plan_skus(in, old_sku, a, &plan);
  if ((rc = claim_skus(s, id, plan.claim, plan.nclaim))) return rc;
  int matched;
  rc = update_doc(s, id, in, now, &matched);
  if (rc || !matched) {
    for (size_t i = 0; i < plan.nclaim; i++)
      delete_where(M(s)->skus, BCON_NEW("_id", BCON_UTF8(plan.claim[i])), 0, NULL);
    return rc ? rc : PS_ENOTFOUND;
  }
  for (size_t k = 0; k < plan.nold; k++)
    if (!plan.keeps[k])
      delete_where(M(s)->skus, BCON_NEW("_id", BCON_UTF8(plan.old[k])), 0, NULL);
  if ((rc = outbox_doc(s, "product.updated", id, now))) return rc;
  if ((in->fields & (PF_STOCK | PF_VARIANTS)) &&
      (rc = outbox_doc(s, "product.stock_changed", id, now)))
    return rc;
  return mg_product_get(s, a, id, json);
}

static int mg_product_delete(product_store_t *s, const char *id, int64_t now) {
  int64_t n;
  int rc = delete_where(M(s)->products, BCON_NEW("_id", BCON_UTF8(id)), 0, &n);
  if (rc) return rc;
  if (!n) return PS_ENOTFOUND;
  if ((rc = delete_where(M(s)->skus, BCON_NEW("product_id", BCON_UTF8(id)), 1, NULL))) return rc;
  bson_t *payload = BCON_NEW("id", BCON_UTF8(id));
  rc = outbox_add(s, "product.deleted", id, payload, now);
  bson_destroy(payload);
  return rc;
}

/* Appends the attribute value both as text and, when it reads as one, as a number or
 * boolean (the same rule as the SQLite store). */
static void append_attr_values(bson_t *in_arr, const char *v) {
  BSON_APPEND_UTF8(in_arr, "0", v);
  char *end;
  if (strcmp(v, "true") == 0) {
    BSON_APPEND_BOOL(in_arr, "1", true);
  } else if (strcmp(v, "false") == 0) {
    BSON_APPEND_BOOL(in_arr, "1", false);
  } else if (*v) {
    long long n = strtoll(v, &end, 10);
    if (!*end) {
      BSON_APPEND_INT64(in_arr, "1", n);
      return;
    }
    double d = strtod(v, &end);
    if (!*end) BSON_APPEND_DOUBLE(in_arr, "1", d);
  }
}

/* A regular expression matching q literally. */
static char *regex_escape(ps_arena_t *a, const char *q) {
  size_t n = strlen(q);
  char *out = ps_arena_alloc(a, n * 2 + 1), *o = out;
  for (const char *p = q; *p; p++) {
    if (strchr("\\^$.|?*+()[]{}", *p)) *o++ = '\\';
    *o++ = *p;
  }
  *o = '\0';
  return out;
}

static const char *sort_field(sort_t s) {
  switch (s) {
    case SORT_PRICE:
    case SORT_PRICE_DESC: return "price";
    case SORT_NAME: return "name_lc";
    case SORT_POPULARITY: return "popularity";
    case SORT_NEWEST: break;
  }
  return "created_ms";
}

/* The clauses of a listing's filter, {$and: [...]}, appended one by one. */
typedef struct {
  bson_t arr;
  uint32_t n;
} and_t;

static void and_begin(and_t *and, bson_t *clause) {
  char idx[16];
  const char *key;
  bson_uint32_to_string(and->n++, &key, idx, sizeof(idx));
  bson_append_document_begin(&and->arr, key, -1, clause);
}

static void and_end(and_t *and, bson_t *clause) { bson_append_document_end(&and->arr, clause); }

/* q in the name or the brand, as literal text, any case. */
static void filter_text(and_t *and, ps_arena_t *a, const char *q) {
  const char *re = regex_escape(a, q);
  bson_t clause, or_arr, c;
  and_begin(and, &clause);
  bson_append_array_begin(&clause, "$or", -1, &or_arr);
  bson_append_document_begin(&or_arr, "0", -1, &c);
  BSON_APPEND_REGEX(&c, "name", re, "i");
  bson_append_document_end(&or_arr, &c);
  bson_append_document_begin(&or_arr, "1", -1, &c);
  BSON_APPEND_REGEX(&c, "brand", re, "i");
  bson_append_document_end(&or_arr, &c);
  bson_append_array_end(&clause, &or_arr);
  and_end(and, &clause);
}

/* Category (with its subcategories), brand, price range and in-stock. */
static int filter_fields(product_store_t *s, and_t *and, const product_query_t *q) {
  bson_t clause, cond, in_arr;
  int rc = 0;
  if (q->category) {
    and_begin(and, &clause);
    bson_append_document_begin(&clause, "category", -1, &cond);
    bson_append_array_begin(&cond, "$in", -1, &in_arr);
    rc = category_subtree(s, q->category, &in_arr);
    bson_append_array_end(&cond, &in_arr);
    bson_append_document_end(&clause, &cond);
    and_end(and, &clause);
  }
  if (q->brand) {
    char *b = fold(q->brand);
    and_begin(and, &clause);
    BSON_APPEND_UTF8(&clause, "brand_lc", b);
    and_end(and, &clause);
    ps_free(b);
  }
  if (q->price_min >= 0 || q->price_max >= 0) {
    and_begin(and, &clause);
    bson_append_document_begin(&clause, "price", -1, &cond);
    if (q->price_min >= 0) BSON_APPEND_INT64(&cond, "$gte", q->price_min);
    if (q->price_max >= 0) BSON_APPEND_INT64(&cond, "$lte", q->price_max);
    bson_append_document_end(&clause, &cond);
    and_end(and, &clause);
  }
  if (q->in_stock) {
    and_begin(and, &clause);
    bson_append_document_begin(&clause, "stock", -1, &cond);
    BSON_APPEND_INT64(&cond, "$gt", 0);
    bson_append_document_end(&clause, &cond);
    and_end(and, &clause);
  }
  return rc;
}

/* Each attr.NAME=VALUE: the product's attribute (a list attribute matches any element) or a
 * variant's. */
static void filter_attrs(and_t *and, ps_arena_t *a, const product_query_t *q) {
  for (int i = 0; i < q->nattrs; i++) {
    bson_t clause, or_arr, c, cond, in_arr;
    and_begin(and, &clause);
    bson_append_array_begin(&clause, "$or", -1, &or_arr);
    for (int k = 0; k < 2; k++) {
      char *path = ps_arena_sprintf(a, "%sattributes.%s", k ? "variants." : "", q->attrs[i].name);
      bson_append_document_begin(&or_arr, k ? "1" : "0", -1, &c);
      bson_append_document_begin(&c, path, -1, &cond);
      bson_append_array_begin(&cond, "$in", -1, &in_arr);
      append_attr_values(&in_arr, q->attrs[i].value);
      bson_append_array_end(&cond, &in_arr);
      bson_append_document_end(&c, &cond);
      bson_append_document_end(&or_arr, &c);
    }
    bson_append_array_end(&clause, &or_arr);
    and_end(and, &clause);
  }
}

/* Appends field: cursor's key under op ({field: {op: key}}), or equal to it (op NULL). */
static void append_cursor_key(bson_t *c, const product_query_t *q, const char *field,
                              const char *op) {
  bson_t cond;
  if (op) bson_append_document_begin(c, field, -1, &cond);
  bson_t *to = op ? &cond : c;
  const char *key = op ? op : field;
  if (q->sort == SORT_NAME)
    BSON_APPEND_UTF8(to, key, q->cursor.key_s);
  else
    BSON_APPEND_INT64(to, key, q->cursor.key_i);
  if (op) bson_append_document_end(c, &cond);
}

/* (key, _id) strictly after the cursor in the sort direction. */
static void filter_cursor(and_t *and, const product_query_t *q, const char *field, int desc) {
  const char *op = desc ? "$lt" : "$gt";
  bson_t clause, or_arr, c, cond;
  and_begin(and, &clause);
  bson_append_array_begin(&clause, "$or", -1, &or_arr);
  bson_append_document_begin(&or_arr, "0", -1, &c);
  append_cursor_key(&c, q, field, op);
  bson_append_document_end(&or_arr, &c);
  bson_append_document_begin(&or_arr, "1", -1, &c);
  append_cursor_key(&c, q, field, NULL);
  bson_append_document_begin(&c, "_id", -1, &cond);
  BSON_APPEND_UTF8(&cond, op, q->cursor.id);
  bson_append_document_end(&c, &cond);
  bson_append_document_end(&or_arr, &c);
  bson_append_array_end(&clause, &or_arr);
  and_end(and, &clause);
}

/* The listing's filter (the caller destroys it), or NULL with *rc set. */
static bson_t *list_filter(product_store_t *s, ps_arena_t *a, const product_query_t *q,
                           const char *field, int desc, int *rc) {
  bson_t *filter = bson_new(), empty;
  and_t and = {.n = 0};
  bson_append_array_begin(filter, "$and", -1, &and.arr);
  and_begin(&and, &empty);
  and_end(&and, &empty); /* an empty clause: $and needs at least one */
  if (q->q) filter_text(&and, a, q->q);
  *rc = filter_fields(s, &and, q);
  filter_attrs(&and, a, q);
  if (q->has_cursor) filter_cursor(&and, q, field, desc);
  bson_append_array_end(filter, &and.arr);
  if (*rc) {
    bson_destroy(filter);
    return NULL;
  }
  return filter;
}

static int mg_product_list(product_store_t *s, ps_arena_t *a, const product_query_t *q,
                           product_row_t **rows, size_t *nrows) {
  const char *field = sort_field(q->sort);
  int desc = q->sort == SORT_PRICE_DESC || q->sort == SORT_NEWEST || q->sort == SORT_POPULARITY;
  int rc;
  bson_t *filter = list_filter(s, a, q, field, desc, &rc);
  if (!filter) return rc;
  bson_t *opts = BCON_NEW("sort", "{", field, BCON_INT32(desc ? -1 : 1), "_id",
                          BCON_INT32(desc ? -1 : 1), "}", "limit", BCON_INT64(q->limit + 1));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(M(s)->products, filter, opts, NULL);
  size_t cap = (size_t)q->limit + 1, n = 0;
  product_row_t *out = ps_arena_alloc(a, cap * sizeof(*out));
  const bson_t *doc;
  while (n < cap && mongoc_cursor_next(cur, &doc)) {
    out[n].json = product_json(a, doc);
    out[n].id = str_of(doc, "_id", a);
    if (q->sort == SORT_NAME)
      out[n].key_s = str_of(doc, "name_lc", a);
    else
      out[n].key_i = ps_mongo_int(doc, field);
    n++;
  }
  bson_error_t err;
  if (mongoc_cursor_error(cur, &err)) rc = ps_mongo_err(&err);
  mongoc_cursor_destroy(cur);
  bson_destroy(opts);
  bson_destroy(filter);
  if (rc) return rc;
  *rows = out;
  *nrows = n;
  return 0;
}

/* doc with only the keys of mask (product_doc_fields), in document order. */
static char *doc_only(ps_arena_t *a, char *doc, unsigned mask) {
  json_t *in = json_loads(doc, 0, NULL);
  if (!in) return doc;
  json_t *out = json_object();
  for (int i = 0; i < PRODUCT_DOC_NFIELDS; i++) {
    json_t *v = (mask & (1u << i)) ? json_object_get(in, product_doc_fields[i]) : NULL;
    if (v) json_object_set(out, product_doc_fields[i], v);
  }
  char *text = ps_json_dump(a, out);
  json_decref(out);
  json_decref(in);
  return text;
}

static int mg_product_lookup(product_store_t *s, ps_arena_t *a, const char *const *ids, size_t n,
                             unsigned fields, char **items_json, char **missing_json) {
  json_t *missing = json_array();
  size_t total = 3;
  char **docs = ps_arena_alloc(a, (n ? n : 1) * sizeof(char *));
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    rc = mg_product_get(s, a, ids[i], &docs[i]);
    if (rc == PS_ENOTFOUND) {
      json_array_append_new(missing, json_string(ids[i]));
      docs[i] = NULL;
      rc = 0;
    } else if (!rc) {
      if (fields) docs[i] = doc_only(a, docs[i], fields);
      total += strlen(docs[i]) + 1;
    }
  }
  char *out = ps_arena_alloc(a, total), *o = out;
  *o++ = '[';
  for (size_t i = 0; i < n && !rc; i++) {
    if (!docs[i]) continue;
    if (o > out + 1) *o++ = ',';
    size_t len = strlen(docs[i]);
    memcpy(o, docs[i], len);
    o += len;
  }
  *o++ = ']';
  *o = '\0';
  *items_json = out;
  *missing_json = ps_json_dump(a, missing);
  json_decref(missing);
  return rc;
}

/* --- reservations ----------------------------------------------------------------------- */

static char *reservation_json(ps_arena_t *a, const bson_t *r, int64_t now) {
  const char *status = str_of(r, "status", NULL);
  int64_t expires = ps_mongo_int(r, "expires_at");
  if (status && strcmp(status, "held") == 0 && expires <= now) status = "expired";
  if (status && strcmp(status, "pending") == 0) status = "held"; /* still being taken */
  bson_t out = BSON_INITIALIZER;
  bson_iter_t it;
  if (bson_iter_init_find(&it, r, "_id")) bson_append_iter(&out, "reservation_id", -1, &it);
  BSON_APPEND_UTF8(&out, "status", status ? status : "unknown");
  BSON_APPEND_INT64(&out, "created_at", ps_mongo_int(r, "created_at"));
  BSON_APPEND_INT64(&out, "expires_at", expires);
  if (bson_iter_init_find(&it, r, "items")) bson_append_iter(&out, "items", -1, &it);
  char *json = bson_json(a, &out);
  bson_destroy(&out);
  return json;
}

typedef struct {
  const char *product_id, *variant;
  int64_t qty;
} item_t;

/* The items of a stored reservation (arena strings). */
static size_t stored_items(ps_arena_t *a, const bson_t *r, item_t **out) {
  bson_iter_t it, arr;
  size_t n = 0, cap = 0;
  item_t *items = NULL;
  if (bson_iter_init_find(&it, r, "items") && bson_iter_recurse(&it, &arr)) {
    while (bson_iter_next(&arr)) {
      if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) continue;
      uint32_t len;
      const uint8_t *data;
      bson_iter_document(&arr, &len, &data);
      bson_t d;
      if (!bson_init_static(&d, data, len)) continue;
      if (n == cap) {
        cap = cap ? cap * 2 : 8;
        item_t *nb = ps_arena_alloc(a, cap * sizeof(*nb));
        if (n) memcpy(nb, items, n * sizeof(*nb));
        items = nb;
      }
      items[n].product_id = str_of(&d, "product_id", a);
      items[n].variant = str_of(&d, "variant", a);
      items[n].qty = ps_mongo_int(&d, "quantity");
      n++;
    }
  }
  *out = items;
  return n;
}

/* Gives q units back to a product (and its variant). Unknown products and variants replaced
 * meanwhile get nothing, as in the SQLite store. */
static int give_item_locked(product_store_t *s, const item_t *it, int64_t now) {
  int rc;
  if (it->variant) {
    for (int attempt = 0; attempt < 5; attempt++) {
      bson_t *d;
      if ((rc = ps_mongo_find_id(M(s)->products, it->product_id, &d)))
        return rc == PS_ENOTFOUND ? 0 : rc;
      int i = variant_index(d, it->variant, NULL, NULL);
      bson_destroy(d);
      if (i < 0) return 0;
      char *sku_path = bson_strdup_printf("variants.%d.sku", i);
      char *stock_path = bson_strdup_printf("variants.%d.stock", i);
      int matched;
      rc = update_one(M(s)->products,
                      BCON_NEW("_id", BCON_UTF8(it->product_id), sku_path, BCON_UTF8(it->variant)),
                      BCON_NEW("$inc", "{", stock_path, BCON_INT64(it->qty), "stock",
                               BCON_INT64(it->qty), "}", "$set", "{", "updated_at",
                               BCON_INT64(now), "}"),
                      0, &matched);
      bson_free(sku_path);
      bson_free(stock_path);
      if (rc || matched) return rc ? rc : outbox_doc(s, "product.stock_changed", it->product_id, now);
    }
    return 0;
  }
  int matched;
  rc = update_one(M(s)->products, BCON_NEW("_id", BCON_UTF8(it->product_id)),
                  BCON_NEW("$inc", "{", "stock", BCON_INT64(it->qty), "}", "$set", "{",
                           "updated_at", BCON_INT64(now), "}"),
                  0, &matched);
  if (rc || !matched) return rc;
  return outbox_doc(s, "product.stock_changed", it->product_id, now);
}

static int give_item(product_store_t *s, const item_t *it, int64_t now) {
  lock_t lk;
  int rc = lock_take(s, it->product_id, &lk);
  if (rc) return rc;
  rc = give_item_locked(s, it, now);
  lock_give(s, &lk);
  return rc;
}

static int give_back(product_store_t *s, ps_arena_t *a, const bson_t *r, size_t upto, int64_t now) {
  item_t *items;
  size_t n = stored_items(a, r, &items);
  if (upto < n) n = upto;
  for (size_t i = 0; i < n; i++) {
    int rc = give_item(s, &items[i], now);
    if (rc) return rc;
  }
  return 0;
}

/* Takes the units of one item: the conditional $inc is the atomic step. */
static int take_item_locked(product_store_t *s, ps_arena_t *a, const reservation_item_t *it,
                            int64_t now, int64_t *price, const char **currency,
                            reservation_fail_t *fail) {
  for (int attempt = 0; attempt < 5; attempt++) {
    bson_t *d;
    int rc = ps_mongo_find_id(M(s)->products, it->product_id, &d);
    if (rc == PS_ENOTFOUND) fail->why = "no product has this id";
    if (rc) return rc;
    int nvariants = variant_count(d);
    *price = ps_mongo_int(d, "price");
    *currency = str_of(d, "currency", a);
    int64_t available = ps_mongo_int(d, "stock"), vprice = -1;
    int vi = -1;
    if (it->variant) vi = variant_index(d, it->variant, &available, &vprice);
    bson_destroy(d);
    if (nvariants && !it->variant) {
      fail->why = "this product has variants: name one in variant";
      return PS_EINVAL;
    }
    if (it->variant && vi < 0) {
      fail->why = nvariants ? "this product has no variant with this SKU"
                            : "this product has no variants";
      return PS_ENOTFOUND;
    }
    if (available < it->quantity) {
      fail->available = available;
      return PS_EINSUFFICIENT;
    }
    if (vprice >= 0) *price = vprice;
    bson_t *filter, *update;
    char *sku_path = NULL, *stock_path = NULL;
    if (vi >= 0) {
      sku_path = bson_strdup_printf("variants.%d.sku", vi);
      stock_path = bson_strdup_printf("variants.%d.stock", vi);
      filter = BCON_NEW("_id", BCON_UTF8(it->product_id), sku_path, BCON_UTF8(it->variant),
                        stock_path, "{", "$gte", BCON_INT64(it->quantity), "}", "stock", "{",
                        "$gte", BCON_INT64(it->quantity), "}");
      update = BCON_NEW("$inc", "{", stock_path, BCON_INT64(-it->quantity), "stock",
                        BCON_INT64(-it->quantity), "}", "$set", "{", "updated_at",
                        BCON_INT64(now), "}");
    } else {
      filter = BCON_NEW("_id", BCON_UTF8(it->product_id), "stock", "{", "$gte",
                        BCON_INT64(it->quantity), "}");
      update = BCON_NEW("$inc", "{", "stock", BCON_INT64(-it->quantity), "}", "$set", "{",
                        "updated_at", BCON_INT64(now), "}");
    }
    int matched;
    rc = update_one(M(s)->products, filter, update, 0, &matched);
    bson_free(sku_path);
    bson_free(stock_path);
    if (rc) return rc;
    if (matched) return 0;
    /* Someone took units (or moved the variant) between the read and the update: look again. */
  }
  fail->available = 0;
  return PS_EINSUFFICIENT;
}

static int take_item(product_store_t *s, ps_arena_t *a, const reservation_item_t *it, int64_t now,
                     int64_t *price, const char **currency, reservation_fail_t *fail) {
  lock_t lk;
  int rc = lock_take(s, it->product_id, &lk);
  if (rc) return rc;
  rc = take_item_locked(s, a, it, now, price, currency, fail);
  lock_give(s, &lk);
  return rc;
}

static char *items_key(ps_arena_t *a, const reservation_item_t *items, size_t n) {
  char *key = ps_arena_strdup(a, "");
  for (size_t i = 0; i < n; i++)
    key = ps_arena_sprintf(a, "%s%s\x1f%s\x1f%lld\x1e", key, items[i].product_id,
                           items[i].variant ? items[i].variant : "", (long long)items[i].quantity);
  return key;
}

static void append_items(bson_t *b, const reservation_item_t *items, size_t n,
                         const int64_t *prices, const char *const *currencies) {
  bson_t arr, d;
  char idx[16];
  const char *key;
  bson_append_array_begin(b, "items", -1, &arr);
  for (size_t i = 0; i < n; i++) {
    bson_uint32_to_string((uint32_t)i, &key, idx, sizeof(idx));
    bson_append_document_begin(&arr, key, -1, &d);
    BSON_APPEND_UTF8(&d, "product_id", items[i].product_id);
    if (items[i].variant)
      BSON_APPEND_UTF8(&d, "variant", items[i].variant);
    else
      BSON_APPEND_NULL(&d, "variant");
    BSON_APPEND_INT64(&d, "quantity", items[i].quantity);
    if (prices) {
      BSON_APPEND_INT64(&d, "price", prices[i]);
      BSON_APPEND_UTF8(&d, "currency", currencies[i]);
    }
    bson_append_document_end(&arr, &d);
  }
  bson_append_array_end(b, &arr);
}

static int mg_reserve(product_store_t *s, ps_arena_t *a, const char *rid,
                      const reservation_item_t *items, size_t n, int64_t now, int64_t ttl,
                      char **json, int *existing, reservation_fail_t *fail) {
  *existing = 0;
  memset(fail, 0, sizeof(*fail));
  const char *key = items_key(a, items, n);
  bson_t *doc = BCON_NEW("_id", BCON_UTF8(rid), "status", BCON_UTF8("pending"), "items_key",
                         BCON_UTF8(key), "taken", BCON_INT64(0), "created_at", BCON_INT64(now),
                         "expires_at", BCON_INT64(now + ttl), "updated_at", BCON_INT64(now));
  append_items(doc, items, n, NULL, NULL);
  int rc = insert_one(M(s)->reservations, doc);
  if (rc == PS_EEXISTS) {
    bson_t *old;
    if ((rc = ps_mongo_find_id(M(s)->reservations, rid, &old))) return rc;
    const char *old_key = str_of(old, "items_key", NULL);
    const char *status = str_of(old, "status", NULL);
    int live = status && (strcmp(status, "committed") == 0 || strcmp(status, "pending") == 0 ||
                          (strcmp(status, "held") == 0 && ps_mongo_int(old, "expires_at") > now));
    if (old_key && strcmp(old_key, key) == 0 && !live) {
      fail->why = "this reservation was released or has expired; reserve under a new id";
      rc = PS_ECONFLICT;
    } else if (old_key && strcmp(old_key, key) == 0) {
      *existing = 1;
      *json = reservation_json(a, old, now);
    } else {
      rc = PS_ECONFLICT;
    }
    bson_destroy(old);
    return rc;
  }
  if (rc) return rc;
  int64_t *prices = ps_arena_alloc(a, n * sizeof(int64_t));
  const char **currencies = ps_arena_alloc(a, n * sizeof(char *));
  size_t taken = 0;
  for (; taken < n; taken++) {
    fail->index = taken;
    if ((rc = take_item(s, a, &items[taken], now, &prices[taken], &currencies[taken], fail)))
      break;
    update_one(M(s)->reservations, BCON_NEW("_id", BCON_UTF8(rid)),
               BCON_NEW("$set", "{", "taken", BCON_INT64((int64_t)taken + 1), "}"), 0, NULL);
    outbox_doc(s, "product.stock_changed", items[taken].product_id, now);
  }
  if (rc) {
    /* Give back what was taken, then forget the reservation. */
    for (size_t i = 0; i < taken; i++) {
      item_t it = {items[i].product_id, items[i].variant, items[i].quantity};
      give_item(s, &it, now);
    }
    delete_where(M(s)->reservations, BCON_NEW("_id", BCON_UTF8(rid)), 0, NULL);
    return rc;
  }
  bson_t *u = bson_new(), set;
  bson_append_document_begin(u, "$set", -1, &set);
  BSON_APPEND_UTF8(&set, "status", "held");
  append_items(&set, items, n, prices, currencies);
  bson_append_document_end(u, &set);
  if ((rc = update_one(M(s)->reservations, BCON_NEW("_id", BCON_UTF8(rid)), u, 0, NULL)))
    return rc;
  bson_t *r;
  if ((rc = ps_mongo_find_id(M(s)->reservations, rid, &r))) return rc;
  *json = reservation_json(a, r, now);
  bson_destroy(r);
  return 0;
}

/* Moves a reservation from one of the states in from[] to `to` (when expires_before is not 0,
 * only if it expired by then), under the reservation's lock: only one caller wins the
 * transition. *won says whether this one did; *before (when won) is the document before. */
static int transition(product_store_t *s, const char *id, const char *const *from, size_t nfrom,
                      int64_t expires_before, const char *to, int64_t now, bson_t **before,
                      int *won) {
  *won = 0;
  char key[160];
  snprintf(key, sizeof(key), "r:%s", id);
  lock_t lk;
  int rc = lock_take(s, key, &lk);
  if (rc) return rc;
  bson_t *r;
  if ((rc = ps_mongo_find_id(M(s)->reservations, id, &r))) goto out;
  const char *status = str_of(r, "status", NULL);
  int ok = 0;
  for (size_t i = 0; i < nfrom && status; i++) ok |= strcmp(status, from[i]) == 0;
  if (ok && expires_before && ps_mongo_int(r, "expires_at") > expires_before) ok = 0;
  if (ok) {
    rc = update_one(M(s)->reservations, BCON_NEW("_id", BCON_UTF8(id)),
                    BCON_NEW("$set", "{", "status", BCON_UTF8(to), "updated_at", BCON_INT64(now),
                             "}"),
                    0, NULL);
    if (!rc) {
      *before = r;
      *won = 1;
      r = NULL;
    }
  }
  if (r) bson_destroy(r);
out:
  lock_give(s, &lk);
  return rc;
}

static int expire_one(product_store_t *s, ps_arena_t *a, const char *id, int64_t now, int *won) {
  static const char *const held[] = {"held"};
  bson_t *before;
  int rc = transition(s, id, held, 1, now, "expired", now, &before, won);
  if (rc || !*won) return rc;
  rc = give_back(s, a, before, SIZE_MAX, now);
  bson_destroy(before);
  return rc;
}

static int read_reservation(product_store_t *s, ps_arena_t *a, const char *id, int64_t now,
                            char **json, const char **status) {
  bson_t *r;
  int rc = ps_mongo_find_id(M(s)->reservations, id, &r);
  if (rc) return rc;
  if (json) *json = reservation_json(a, r, now);
  if (status) *status = str_of(r, "status", a);
  bson_destroy(r);
  return 0;
}

static int mg_reservation_commit(product_store_t *s, ps_arena_t *a, const char *id, int64_t now,
                                 char **json) {
  /* held and not yet expired -> committed. */
  static const char *const held[] = {"held"};
  bson_t *before;
  int won;
  int rc = transition(s, id, held, 1, 0, "committed", now, &before, &won);
  if (rc) return rc;
  if (won && ps_mongo_int(before, "expires_at") <= now) {
    /* Too late: put it back to expired and return its units, as the SQLite store does. */
    rc = update_one(M(s)->reservations, BCON_NEW("_id", BCON_UTF8(id)),
                    BCON_NEW("$set", "{", "status", BCON_UTF8("expired"), "}"), 0, NULL);
    if (!rc) rc = give_back(s, a, before, SIZE_MAX, now);
    bson_destroy(before);
    return rc ? rc : PS_ECONFLICT;
  }
  if (won) {
    item_t *items;
    size_t n = stored_items(a, before, &items);
    bson_destroy(before);
    for (size_t i = 0; i < n && !rc; i++) {
      lock_t lk;
      if ((rc = lock_take(s, items[i].product_id, &lk))) break;
      rc = update_one(M(s)->products, BCON_NEW("_id", BCON_UTF8(items[i].product_id)),
                      BCON_NEW("$inc", "{", "popularity", BCON_INT64(items[i].qty), "}"), 0,
                      NULL);
      lock_give(s, &lk);
    }
    if (rc) return rc;
    return read_reservation(s, a, id, now, json, NULL);
  }
  const char *status;
  if ((rc = read_reservation(s, a, id, now, json, &status))) return rc;
  return strcmp(status, "committed") == 0 ? 0 : PS_ECONFLICT;
}

static int mg_reservation_release(product_store_t *s, ps_arena_t *a, const char *id, int64_t now,
                                  char **json) {
  static const char *const from[] = {"held", "committed"};
  bson_t *before;
  int won;
  int rc = transition(s, id, from, 2, 0, "released", now, &before, &won);
  if (rc) return rc;
  if (won) {
    rc = give_back(s, a, before, SIZE_MAX, now);
    bson_destroy(before);
    if (rc) return rc;
  }
  return read_reservation(s, a, id, now, json, NULL);
}

static int mg_reservation_get(product_store_t *s, ps_arena_t *a, const char *id, int64_t now,
                              char **json) {
  return read_reservation(s, a, id, now, json, NULL);
}

static int mg_sweep(product_store_t *s, int64_t now, int max, int *count) {
  *count = 0;
  ps_arena_t a;
  ps_arena_init(&a);
  /* Held past their expiry, and pending ones a crashed reserve left behind. */
  bson_t *filter = BCON_NEW("$or", "[", "{", "status", BCON_UTF8("held"), "expires_at", "{",
                            "$lte", BCON_INT64(now), "}", "}", "{", "status", BCON_UTF8("pending"),
                            "created_at", "{", "$lte", BCON_INT64(now - PENDING_GRACE_SECONDS),
                            "}", "}", "]");
  bson_t *opts = BCON_NEW("limit", BCON_INT64(max));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(M(s)->reservations, filter, opts, NULL);
  const bson_t *doc;
  size_t n = 0;
  char **ids = ps_arena_alloc(&a, (size_t)max * sizeof(char *));
  int *pending = ps_arena_alloc(&a, (size_t)max * sizeof(int));
  while (n < (size_t)max && mongoc_cursor_next(cur, &doc)) {
    ids[n] = (char *)str_of(doc, "_id", &a);
    pending[n] = strcmp(str_of(doc, "status", &a), "pending") == 0;
    if (ids[n]) n++;
  }
  bson_error_t err;
  int rc = mongoc_cursor_error(cur, &err) ? ps_mongo_err(&err) : 0;
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
  bson_destroy(opts);
  for (size_t i = 0; i < n && !rc; i++) {
    int won = 0;
    if (pending[i]) {
      static const char *const from[] = {"pending"};
      bson_t *before;
      rc = transition(s, ids[i], from, 1, 0, "failed", now, &before, &won);
      if (!rc && won) {
        rc = give_back(s, &a, before, (size_t)ps_mongo_int(before, "taken"), now);
        bson_destroy(before);
      }
    } else {
      rc = expire_one(s, &a, ids[i], now, &won);
    }
    if (!rc && won) (*count)++;
  }
  ps_arena_reset(&a);
  return rc;
}

static int mg_outbox_read(product_store_t *s, ps_arena_t *a, int64_t after, int limit,
                          char **json) {
  bson_t *filter = BCON_NEW("_id", "{", "$gt", BCON_INT64(after), "}");
  bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64(limit));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(M(s)->outbox, filter, opts, NULL);
  const bson_t *doc;
  char *out = ps_arena_strdup(a, "[");
  int first = 1;
  while (mongoc_cursor_next(cur, &doc)) {
    bson_t e = BSON_INITIALIZER;
    bson_iter_t it;
    BSON_APPEND_INT64(&e, "seq", ps_mongo_int(doc, "_id"));
    if (bson_iter_init_find(&it, doc, "type")) bson_append_iter(&e, "type", -1, &it);
    if (bson_iter_init_find(&it, doc, "product_id")) bson_append_iter(&e, "product_id", -1, &it);
    if (bson_iter_init_find(&it, doc, "payload")) bson_append_iter(&e, "payload", -1, &it);
    BSON_APPEND_INT64(&e, "created_at", ps_mongo_int(doc, "created_at"));
    out = ps_arena_sprintf(a, "%s%s%s", out, first ? "" : ",", bson_json(a, &e));
    bson_destroy(&e);
    first = 0;
  }
  bson_error_t err;
  int rc = mongoc_cursor_error(cur, &err) ? ps_mongo_err(&err) : 0;
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
  bson_destroy(opts);
  if (rc) return rc;
  *json = ps_arena_sprintf(a, "%s]", out);
  return 0;
}

static const product_store_ops_t mongo_ops = {
    .ping = mg_ping,
    .close = mg_close,
    .category_exists = mg_category_exists,
    .category_put = mg_category_put,
    .categories_json = mg_categories_json,
    .product_get = mg_product_get,
    .product_create = mg_product_create,
    .product_update = mg_product_update,
    .product_create_many = mg_product_create_many,
    .product_delete = mg_product_delete,
    .product_list = mg_product_list,
    .product_lookup = mg_product_lookup,
    .product_count = mg_product_count,
    .reserve = mg_reserve,
    .reservation_commit = mg_reservation_commit,
    .reservation_release = mg_reservation_release,
    .reservation_get = mg_reservation_get,
    .sweep = mg_sweep,
    .outbox_read = mg_outbox_read,
};

int product_mongo_open(const char *url, product_store_t **out) {
  mongo_store_t *s = ps_calloc(1, sizeof(*s));
  int rc = ps_mongo_open(&s->mongo, url, "polyshop-product", "polyshop_product");
  if (rc) {
    ps_free(s);
    return rc;
  }
  s->base.ops = &mongo_ops;
  s->products = ps_mongo_collection(&s->mongo, "products");
  s->skus = ps_mongo_collection(&s->mongo, "skus");
  s->categories = ps_mongo_collection(&s->mongo, "categories");
  s->reservations = ps_mongo_collection(&s->mongo, "reservations");
  s->outbox = ps_mongo_collection(&s->mongo, "outbox");
  s->locks = ps_mongo_collection(&s->mongo, "locks");
  *out = &s->base;
  return 0;
}

/* Creates the indexes of one collection: keys[i] is a BCON-built key document (consumed). */
static int create_indexes(mongo_store_t *s, const char *coll, bson_t **keys, const char **names,
                          const int *unique, size_t n) {
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    if (!rc) rc = ps_mongo_create_index(&s->mongo, coll, keys[i], names[i], unique[i]);
    bson_destroy(keys[i]);
  }
  return rc;
}

int product_mongo_migrate(const char *url) {
  product_store_t *st;
  int rc = product_mongo_open(url, &st);
  if (rc) return rc;
  mongo_store_t *s = M(st);
  if ((rc = mg_ping(st))) {
    char shown[PS_URL_REDACT_MAX];
    ps_log_error("mongodb: %s is not reachable", ps_url_redact(shown, sizeof(shown), url));
    goto out;
  }
  bson_t *keys[] = {
      BCON_NEW("sku", BCON_INT32(1)),
      BCON_NEW("category", BCON_INT32(1), "created_ms", BCON_INT32(1)),
      BCON_NEW("brand_lc", BCON_INT32(1), "price", BCON_INT32(1)),
      BCON_NEW("price", BCON_INT32(1), "_id", BCON_INT32(1)),
      BCON_NEW("name_lc", BCON_INT32(1), "_id", BCON_INT32(1)),
      BCON_NEW("created_ms", BCON_INT32(1), "_id", BCON_INT32(1)),
      BCON_NEW("popularity", BCON_INT32(1), "_id", BCON_INT32(1)),
  };
  const char *names[] = {"sku_unique", "category_newest", "brand_price", "price_id",
                         "name_id",    "newest_id",       "popularity_id"};
  const int unique[] = {1, 0, 0, 0, 0, 0, 0};
  if ((rc = create_indexes(s, "products", keys, names, unique, 7))) goto out;
  bson_t *skeys[] = {BCON_NEW("product_id", BCON_INT32(1))};
  const char *snames[] = {"product"};
  const int sunique[] = {0};
  if ((rc = create_indexes(s, "skus", skeys, snames, sunique, 1))) goto out;
  bson_t *rkeys[] = {BCON_NEW("status", BCON_INT32(1), "expires_at", BCON_INT32(1))};
  const char *rnames[] = {"status_expiry"};
  rc = create_indexes(s, "reservations", rkeys, rnames, sunique, 1);
out:
  mg_close(st);
  return rc;
}
