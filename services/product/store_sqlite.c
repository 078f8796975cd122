/* store_sqlite.c - the product store on an embedded SQLite file (see store.h).
 *
 * One connection per event-loop thread (WAL, so readers never wait for the writer). Products
 * are rows with their free-form attributes as JSON text, filtered with json_each/json_extract;
 * product and variant SKUs share one unique table; documents are assembled by SQLite's JSON
 * functions so a read is one statement and no re-encoding. Every write runs in one
 * BEGIN IMMEDIATE transaction that also appends its outbox events; stock is decremented with
 * "UPDATE ... WHERE stock >= ?", and a CHECK (stock >= 0) backs that up, so stock cannot go
 * below zero whatever the interleaving of threads or processes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/json.h"
#include "polyshop/log.h"
#include "polyshop/metrics.h"
#include "polyshop/sqlite.h"
#include "store.h"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS categories ("
    " slug TEXT PRIMARY KEY, name TEXT NOT NULL, parent TEXT REFERENCES categories(slug));"
    "CREATE INDEX IF NOT EXISTS categories_parent ON categories(parent);"
    "CREATE TABLE IF NOT EXISTS products ("
    " id TEXT PRIMARY KEY, sku TEXT NOT NULL UNIQUE, name TEXT NOT NULL COLLATE NOCASE,"
    " description TEXT NOT NULL, kind TEXT NOT NULL, brand TEXT NOT NULL COLLATE NOCASE,"
    " category TEXT NOT NULL, price INTEGER NOT NULL CHECK (price >= 0),"
    " currency TEXT NOT NULL, stock INTEGER NOT NULL CHECK (stock >= 0),"
    " attributes TEXT NOT NULL, images TEXT NOT NULL, popularity INTEGER NOT NULL DEFAULT 0,"
    " created_ms INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS products_price ON products(price, id);"
    "CREATE INDEX IF NOT EXISTS products_name ON products(name, id);"
    "CREATE INDEX IF NOT EXISTS products_newest ON products(created_ms, id);"
    "CREATE INDEX IF NOT EXISTS products_popularity ON products(popularity, id);"
    "DROP INDEX IF EXISTS products_brand;"
    "CREATE INDEX IF NOT EXISTS products_brand_newest ON products(brand, created_ms, id);"
    "CREATE INDEX IF NOT EXISTS products_brand_price ON products(brand, price, id);"
    "CREATE INDEX IF NOT EXISTS products_brand_name ON products(brand, name, id);"
    "CREATE INDEX IF NOT EXISTS products_brand_popularity ON products(brand, popularity, id);"
    /* One ordered index per sort within a category: a category page is a merge of short
     * index scans, one per category of the subtree (see sq_product_list). */
    "DROP INDEX IF EXISTS products_category;"
    "CREATE INDEX IF NOT EXISTS products_cat_newest ON products(category, created_ms, id);"
    "CREATE INDEX IF NOT EXISTS products_cat_price ON products(category, price, id);"
    "CREATE INDEX IF NOT EXISTS products_cat_name ON products(category, name, id);"
    "CREATE INDEX IF NOT EXISTS products_cat_popularity ON products(category, popularity, id);"
    /* Product and variant SKUs in one key space: a SKU names exactly one sellable thing. */
    "CREATE TABLE IF NOT EXISTS skus (sku TEXT PRIMARY KEY, product_id TEXT NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS skus_product ON skus(product_id);"
    "CREATE TABLE IF NOT EXISTS variants ("
    " product_id TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,"
    " position INTEGER NOT NULL, sku TEXT NOT NULL UNIQUE, attributes TEXT NOT NULL,"
    " stock INTEGER NOT NULL CHECK (stock >= 0), price INTEGER CHECK (price >= 0),"
    " PRIMARY KEY (product_id, position));"
    /* Every attribute value of a product, its lists' elements and its variants' attributes,
     * one row each: attr.NAME=VALUE filters become an index lookup instead of parsing every
     * product's JSON. Kept in step by attrs_fill() in each write's transaction. */
    "CREATE TABLE IF NOT EXISTS product_attrs ("
    " name TEXT NOT NULL, value NOT NULL,"
    " product_id TEXT NOT NULL REFERENCES products(id) ON DELETE CASCADE,"
    " PRIMARY KEY (name, value, product_id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS product_attrs_product ON product_attrs(product_id);"
    /* items: the reservation's items as its answer shows them (a JSON array of {product_id,
     * variant, quantity, price, currency}), written once with the row. Reservations made
     * before that column existed (NULL there) keep their items in reservation_items. */
    "CREATE TABLE IF NOT EXISTS reservations ("
    " id TEXT PRIMARY KEY, status TEXT NOT NULL, items_key TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    " items TEXT) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS reservations_held ON reservations(expires_at)"
    " WHERE status = 'held';"
    /* Only read now: the items of reservations made before reservations.items existed. */
    "CREATE TABLE IF NOT EXISTS reservation_items ("
    " reservation_id TEXT NOT NULL, idx INTEGER NOT NULL, product_id TEXT NOT NULL,"
    " variant TEXT, quantity INTEGER NOT NULL, price INTEGER NOT NULL, currency TEXT NOT NULL,"
    " PRIMARY KEY (reservation_id, idx)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS outbox ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, product_id TEXT NOT NULL,"
    " payload TEXT NOT NULL, created_at INTEGER NOT NULL);";

/* The product document, assembled by SQLite (p is the products row). Subquery results lose
 * their JSON subtype, hence json() around them. */
#define DOC_SQL                                                                               \
  "json_object('id',p.id,'sku',p.sku,'name',p.name,'description',p.description,"             \
  "'kind',p.kind,'brand',p.brand,'category',p.category,'price',p.price,"                      \
  "'currency',p.currency,'stock',p.stock,'attributes',json(p.attributes),"                    \
  "'variants',json((SELECT json_group_array(CASE WHEN v.price IS NULL"                        \
  " THEN json_object('sku',v.sku,'attributes',json(v.attributes),'stock',v.stock)"            \
  " ELSE json_object('sku',v.sku,'attributes',json(v.attributes),'stock',v.stock,"            \
  "'price',v.price) END) FROM (SELECT * FROM variants WHERE product_id = p.id"                \
  " ORDER BY position) v)),"                                                                  \
  "'images',json(p.images),'popularity',p.popularity,"                                        \
  "'created_at',strftime('%Y-%m-%dT%H:%M:%SZ',p.created_ms / 1000,'unixepoch'),"              \
  "'updated_at',strftime('%Y-%m-%dT%H:%M:%SZ',p.updated_at,'unixepoch'))"

/* The documents of a lookup in one statement (one read transaction, however many ids): ?1
 * is the JSON array of the ids asked; a row per id, in the order asked (json_each is the
 * outer loop of the LEFT JOIN), with its position and the document or NULL. */
#define LOOKUP_SQL(doc)                                                                       \
  "SELECT j.key, CASE WHEN p.id IS NULL THEN NULL ELSE " doc " END"                            \
  " FROM json_each(?1) j LEFT JOIN products p ON p.id = j.value"

/* The product_attrs rows of the products p for which cond holds. */
#define ATTRS_FILL_SQL(cond)                                                                  \
  "INSERT OR IGNORE INTO product_attrs(name, value, product_id)"                              \
  " SELECT j.key, CASE WHEN j.type = 'array' THEN e.value ELSE j.value END, p.id"             \
  " FROM products p JOIN json_each(p.attributes) j"                                           \
  " LEFT JOIN json_each(CASE WHEN j.type = 'array' THEN j.value ELSE '[]' END) e"             \
  " WHERE " cond " AND j.type NOT IN ('object', 'null')"                                      \
  " AND (j.type != 'array' OR e.type NOT IN ('object', 'array', 'null'))"                     \
  " UNION ALL SELECT j.key, j.value, p.id FROM products p JOIN variants v"                    \
  " ON v.product_id = p.id JOIN json_each(v.attributes) j"                                    \
  " WHERE " cond " AND j.type NOT IN ('object', 'array', 'null')"

/* The items of reservation ?1 (product_id, variant, quantity, then the position), wherever they
 * are kept: the reservation's items column, or reservation_items for reservations made before
 * that column existed. */
#define RES_ITEMS_SQL                                                                         \
  "SELECT product_id, variant, quantity, idx FROM reservation_items WHERE reservation_id = ?1" \
  " UNION ALL SELECT json_extract(j.value, '$.product_id'), json_extract(j.value, '$.variant')," \
  " json_extract(j.value, '$.quantity'), j.key FROM reservations r, json_each(r.items) j"      \
  " WHERE r.id = ?1"

#define RESERVATION_SQL                                                                       \
  "SELECT json_object('reservation_id',r.id,'status',"                                        \
  " CASE WHEN r.status = 'held' AND r.expires_at <= ?2 THEN 'expired' ELSE r.status END,"     \
  " 'created_at',r.created_at,'expires_at',r.expires_at,'items',json(coalesce(r.items,(SELECT" \
  " json_group_array(json_object('product_id',i.product_id,'variant',i.variant,"              \
  " 'quantity',i.quantity,'price',i.price,'currency',i.currency)) FROM (SELECT * FROM"        \
  " reservation_items WHERE reservation_id = r.id ORDER BY idx) i))))"                         \
  " FROM reservations r WHERE r.id = ?1"

enum {
  Q_BEGIN, Q_COMMIT, Q_ROLLBACK, Q_PING,
  Q_CAT_EXISTS, Q_CAT_PUT, Q_CAT_ALL, Q_CAT_ANCESTOR, Q_CAT_SUBTREE,
  Q_GET, Q_LOOKUP, Q_EXISTS, Q_COUNT, Q_HAS_VARIANTS,
  Q_SKU_ADD, Q_SKU_DEL_PRODUCT, Q_SKU_DEL, Q_SKU_DEL_VARIANTS,
  Q_INSERT, Q_VARIANT_ADD, Q_VARIANTS_DEL, Q_STOCK_SUM, Q_DELETE, Q_ATTRS_DEL, Q_ATTRS_FILL, Q_ATTR_COUNT,
  Q_OUTBOX_DOC, Q_OUTBOX_RAW, Q_OUTBOX_READ,
  Q_ITEM_PRODUCT, Q_TAKE_PRODUCT, Q_TAKE_VARIANT, Q_VARIANT_INFO, Q_PRODUCT_STOCK,
  Q_TAKE_PLAIN, Q_RES_GET, Q_RES_INSERT, Q_RES_DOC, Q_RES_ITEMS, Q_RES_STATUS,
  Q_GIVE_PRODUCT, Q_GIVE_VARIANT, Q_POPULARITY, Q_EXPIRED,
  Q__COUNT
};

static const char *const sql[Q__COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_PING] = "SELECT 1",
    [Q_CAT_EXISTS] = "SELECT 1 FROM categories WHERE slug = ?",
    [Q_CAT_PUT] = "INSERT INTO categories(slug, name, parent) VALUES(?, ?, ?)"
                  " ON CONFLICT(slug) DO UPDATE SET name = excluded.name, parent = excluded.parent",
    [Q_CAT_ALL] = "SELECT slug, name, parent FROM categories ORDER BY name, slug",
    [Q_CAT_SUBTREE] = "WITH RECURSIVE sub(slug) AS (SELECT ?1 UNION SELECT c.slug FROM"
                      " categories c JOIN sub ON c.parent = sub.slug) SELECT slug FROM sub"
                      " LIMIT 65",
    [Q_CAT_ANCESTOR] = "WITH RECURSIVE up(slug) AS (SELECT ?1 UNION SELECT c.parent FROM"
                       " categories c JOIN up ON c.slug = up.slug WHERE c.parent IS NOT NULL)"
                       " SELECT 1 FROM up WHERE slug = ?2",
    [Q_GET] = "SELECT " DOC_SQL " FROM products p WHERE p.id = ?",
    [Q_LOOKUP] = LOOKUP_SQL(DOC_SQL),
    [Q_EXISTS] = "SELECT sku FROM products WHERE id = ?",
    [Q_COUNT] = "SELECT count(*) FROM products",
    [Q_HAS_VARIANTS] = "SELECT count(*) FROM variants WHERE product_id = ?",
    [Q_SKU_ADD] = "INSERT INTO skus(sku, product_id) VALUES(?, ?)",
    [Q_SKU_DEL_PRODUCT] = "DELETE FROM skus WHERE product_id = ?",
    [Q_SKU_DEL] = "DELETE FROM skus WHERE sku = ?",
    [Q_SKU_DEL_VARIANTS] = "DELETE FROM skus WHERE sku IN (SELECT sku FROM variants"
                           " WHERE product_id = ?)",
    [Q_INSERT] = "INSERT INTO products(id, sku, name, description, kind, brand, category, price,"
                 " currency, stock, attributes, images, popularity, created_ms, updated_at)"
                 " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [Q_VARIANT_ADD] = "INSERT INTO variants(product_id, position, sku, attributes, stock, price)"
                      " VALUES(?,?,?,?,?,?)",
    [Q_VARIANTS_DEL] = "DELETE FROM variants WHERE product_id = ?",
    [Q_STOCK_SUM] = "UPDATE products SET stock = (SELECT coalesce(sum(stock), 0) FROM variants"
                    " WHERE product_id = ?1) WHERE id = ?1",
    [Q_DELETE] = "DELETE FROM products WHERE id = ?",
    [Q_ATTRS_DEL] = "DELETE FROM product_attrs WHERE product_id = ?",
    [Q_ATTRS_FILL] = ATTRS_FILL_SQL("p.id = ?1"),
    [Q_ATTR_COUNT] = "SELECT count(*) FROM product_attrs WHERE name = ?1 AND value IN (?2, ?3)",
    [Q_OUTBOX_DOC] = "INSERT INTO outbox(type, product_id, payload, created_at)"
                     " SELECT ?1, p.id, " DOC_SQL ", ?3 FROM products p WHERE p.id = ?2",
    [Q_OUTBOX_RAW] = "INSERT INTO outbox(type, product_id, payload, created_at)"
                     " VALUES(?1, ?2, ?4, ?3)",
    [Q_OUTBOX_READ] = "SELECT json_group_array(json_object('seq',seq,'type',type,"
                      "'product_id',product_id,'payload',json(payload),'created_at',created_at))"
                      " FROM (SELECT * FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?)",
    [Q_ITEM_PRODUCT] = "SELECT p.price, p.currency, (SELECT count(*) FROM variants v"
                       " WHERE v.product_id = p.id) FROM products p WHERE p.id = ?",
    /* The atomic step of a reservation: it changes a row only when enough stock is left. */
    [Q_TAKE_PRODUCT] = "UPDATE products SET stock = stock - ?2, updated_at = ?3"
                       " WHERE id = ?1 AND stock >= ?2",
    [Q_TAKE_VARIANT] = "UPDATE variants SET stock = stock - ?3"
                       " WHERE product_id = ?1 AND sku = ?2 AND stock >= ?3",
    /* The same step for a product without variants, its checks folded in (the general path
     * reads the product first). No change: not found, has variants or too little stock;
     * the general path then tells which. (RETURNING price, currency measured dearer than
     * reading them after: it buffers its rows in an ephemeral table.) */
    [Q_TAKE_PLAIN] = "UPDATE products SET stock = stock - ?2, updated_at = ?3"
                     " WHERE id = ?1 AND stock >= ?2"
                     " AND NOT EXISTS (SELECT 1 FROM variants WHERE product_id = ?1)",
    [Q_VARIANT_INFO] = "SELECT v.stock, coalesce(v.price, p.price) FROM variants v"
                       " JOIN products p ON p.id = v.product_id"
                       " WHERE v.product_id = ? AND v.sku = ?",
    [Q_PRODUCT_STOCK] = "SELECT stock FROM products WHERE id = ?",
    [Q_RES_GET] = "SELECT status, items_key, expires_at, created_at, items FROM reservations"
                  " WHERE id = ?",
    [Q_RES_INSERT] = "INSERT INTO reservations(id, status, items_key, created_at, expires_at,"
                     " updated_at, items) VALUES(?1, 'held', ?2, ?3, ?4, ?3, ?5)",
    [Q_RES_DOC] = RESERVATION_SQL,
    [Q_RES_ITEMS] = RES_ITEMS_SQL " ORDER BY 4",
    [Q_RES_STATUS] = "UPDATE reservations SET status = ?2, updated_at = ?3 WHERE id = ?1",
    [Q_GIVE_PRODUCT] = "UPDATE products SET stock = stock + ?2, updated_at = ?3 WHERE id = ?1",
    [Q_GIVE_VARIANT] = "UPDATE variants SET stock = stock + ?3 WHERE product_id = ?1 AND sku = ?2",
    /* Units sold make a product popular: one statement per item (see add_popularity). */
    [Q_POPULARITY] = "UPDATE products SET popularity = popularity + ?2 WHERE id = ?1",
    [Q_EXPIRED] = "SELECT id FROM reservations WHERE status = 'held' AND expires_at <= ?"
                  " ORDER BY expires_at LIMIT ?",
};

/* The value of each key of the product document (product_doc_fields order), as DOC_SQL has
 * it: a lookup of some fields selects only these. DOC_SQL stays one literal (the bench's bare
 * reference copies it out of this file); the unit suite checks that all of these together
 * give DOC_SQL's document byte for byte. */
static const char *const doc_field_sql[PRODUCT_DOC_NFIELDS] = {
    "p.id", "p.sku", "p.name", "p.description", "p.kind", "p.brand", "p.category", "p.price",
    "p.currency", "p.stock", "json(p.attributes)",
    "json((SELECT json_group_array(CASE WHEN v.price IS NULL"
    " THEN json_object('sku',v.sku,'attributes',json(v.attributes),'stock',v.stock)"
    " ELSE json_object('sku',v.sku,'attributes',json(v.attributes),'stock',v.stock,"
    "'price',v.price) END) FROM (SELECT * FROM variants WHERE product_id = p.id"
    " ORDER BY position) v))",
    "json(p.images)", "p.popularity",
    "strftime('%Y-%m-%dT%H:%M:%SZ',p.created_ms / 1000,'unixepoch')",
    "strftime('%Y-%m-%dT%H:%M:%SZ',p.updated_at,'unixepoch')"};

enum { LOOKUP_CACHE = 4 }; /* field sets whose statements a connection keeps */

typedef struct {
  product_store_t base;
  sqlite3 *db;
  sqlite3_stmt *st[Q__COUNT];
  struct {
    unsigned mask;
    sqlite3_stmt *st;
  } lookup[LOOKUP_CACHE]; /* "SELECT <some fields> FROM products p WHERE p.id = ?" */
  unsigned lookup_next;   /* the slot the next new field set takes */
} sqlite_store_t;

/* Wall-clock milliseconds: the "newest" order of products created within one second. */
static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static sqlite_store_t *S(product_store_t *s) { return (sqlite_store_t *)s; }

/* Returns statement q reset and with its bindings cleared, ready to bind. */
static sqlite3_stmt *stmt(product_store_t *s, int q) {
  return ps_sqlite_fresh(S(s)->st[q]);
}

static int log_err(product_store_t *s, int rc, const char *what) {
  int err = ps_sqlite_err(rc);
  if (err && err != PS_EEXISTS)
    ps_log_error("sqlite: %s: %s", what, sqlite3_errmsg(S(s)->db));
  return err;
}

/* Steps once: 1 with a row, 0 without, or a PS_E* code. The caller resets. */
static int step_row(product_store_t *s, sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) return 1;
  if (rc == SQLITE_DONE) return 0;
  return log_err(s, rc, sqlite3_sql(st));
}

static int tx_begin(product_store_t *s) { return ps_sqlite_exec_done(stmt(s, Q_BEGIN)); }
static int tx_commit(product_store_t *s) { return ps_sqlite_exec_done(stmt(s, Q_COMMIT)); }
static void tx_rollback(product_store_t *s) {
  if (!sqlite3_get_autocommit(S(s)->db)) ps_sqlite_exec_done(stmt(s, Q_ROLLBACK));
}
/* Ends a transaction: commits when rc is 0 (a failed commit becomes the result), rolls back
 * otherwise. */
static int tx_end(product_store_t *s, int rc) {
  if (rc == 0) rc = tx_commit(s);
  if (rc) tx_rollback(s);
  return rc;
}

/* The single text column of a one-row query, copied into the arena. */
static int one_text(product_store_t *s, ps_arena_t *a, sqlite3_stmt *st, char **out) {
  int rc = step_row(s, st);
  if (rc == 1) {
    *out = ps_sqlite_text(a, st, 0);
    rc = 0;
  } else if (rc == 0) {
    rc = PS_ENOTFOUND;
  }
  sqlite3_reset(st);
  return rc;
}

/* --- basics ---------------------------------------------------------------------------- */

static int sq_ping(product_store_t *s) {
  sqlite3_stmt *st = stmt(s, Q_PING);
  int rc = step_row(s, st);
  sqlite3_reset(st);
  return rc == 1 ? 0 : (rc ? rc : PS_ESTORE);
}

static void sq_close(product_store_t *s) {
  if (!s) return;
  ps_sqlite_finalize_all(S(s)->st, Q__COUNT);
  for (int i = 0; i < LOOKUP_CACHE; i++) sqlite3_finalize(S(s)->lookup[i].st);
  sqlite3_close_v2(S(s)->db);
  ps_free(s);
}

/* --- categories ------------------------------------------------------------------------ */

static int sq_category_exists(product_store_t *s, const char *slug) {
  sqlite3_stmt *st = stmt(s, Q_CAT_EXISTS);
  ps_sqlite_bind_text(st, 1, slug);
  int rc = step_row(s, st);
  sqlite3_reset(st);
  return rc == 1 ? 0 : (rc ? rc : PS_ENOTFOUND);
}

static int sq_category_put(product_store_t *s, const char *slug, const char *name,
                           const char *parent) {
  if (parent) {
    /* The parent's ancestors (itself included) must not include the category. */
    sqlite3_stmt *up = stmt(s, Q_CAT_ANCESTOR);
    ps_sqlite_bind_text(up, 1, parent);
    ps_sqlite_bind_text(up, 2, slug);
    int rc = step_row(s, up);
    sqlite3_reset(up);
    if (rc < 0) return rc;
    if (rc == 1) return PS_EINVAL;
  }
  sqlite3_stmt *st = stmt(s, Q_CAT_PUT);
  ps_sqlite_bind_text(st, 1, slug);
  ps_sqlite_bind_text(st, 2, name);
  ps_sqlite_bind_text(st, 3, parent);
  return ps_sqlite_exec_done(st);
}

static int sq_categories_json(product_store_t *s, ps_arena_t *a, char **tree_json) {
  sqlite3_stmt *st = stmt(s, Q_CAT_ALL);
  json_t *nodes = json_object(); /* slug -> node */
  json_t *order = json_array();  /* slugs in name order */
  json_t *parents = json_object();
  int rc;
  while ((rc = step_row(s, st)) == 1) {
    const char *slug = (const char *)sqlite3_column_text(st, 0);
    json_t *node = json_pack("{s:s, s:s, s:[]}", "slug", slug, "name",
                             (const char *)sqlite3_column_text(st, 1), "children");
    json_object_set_new(nodes, slug, node);
    json_array_append_new(order, json_string(slug));
    if (sqlite3_column_type(st, 2) != SQLITE_NULL)
      json_object_set_new(parents, slug, json_string((const char *)sqlite3_column_text(st, 2)));
  }
  sqlite3_reset(st);
  json_t *roots = json_array();
  if (rc == 0) {
    size_t i;
    json_t *slug;
    json_array_foreach(order, i, slug) {
      const char *k = json_string_value(slug);
      json_t *node = json_object_get(nodes, k);
      json_t *parent = json_object_get(nodes, json_string_value(json_object_get(parents, k)));
      json_t *pslug = json_object_get(parents, k);
      json_object_set(node, "parent", pslug ? pslug : json_null());
      json_array_append(parent ? json_object_get(parent, "children") : roots, node);
    }
    *tree_json = ps_json_dump(a, roots);
  }
  json_decref(roots);
  json_decref(nodes);
  json_decref(order);
  json_decref(parents);
  return rc;
}

/* --- products -------------------------------------------------------------------------- */

static int sq_product_get(product_store_t *s, ps_arena_t *a, const char *id, char **json) {
  sqlite3_stmt *st = stmt(s, Q_GET);
  ps_sqlite_bind_text(st, 1, id);
  return one_text(s, a, st, json);
}

static int sq_product_count(product_store_t *s, int64_t *n) {
  sqlite3_stmt *st = stmt(s, Q_COUNT);
  int rc = step_row(s, st);
  if (rc == 1) *n = sqlite3_column_int64(st, 0), rc = 0;
  sqlite3_reset(st);
  return rc;
}

static int outbox_doc(product_store_t *s, const char *type, const char *id, int64_t now) {
  sqlite3_stmt *st = stmt(s, Q_OUTBOX_DOC);
  ps_sqlite_bind_text(st, 1, type);
  ps_sqlite_bind_text(st, 2, id);
  sqlite3_bind_int64(st, 3, now);
  return ps_sqlite_exec_done(st);
}

static int sku_add(product_store_t *s, const char *sku, const char *id) {
  sqlite3_stmt *st = stmt(s, Q_SKU_ADD);
  ps_sqlite_bind_text(st, 1, sku);
  ps_sqlite_bind_text(st, 2, id);
  return ps_sqlite_exec_done(st);
}

/* Replaces the variants of product id (their SKUs too) and recomputes its stock. */
static int put_variants(product_store_t *s, const char *id, const product_in_t *in) {
  int rc;
  sqlite3_stmt *st;
  /* Old variant SKUs leave the SKU table; the product's own SKU stays. */
  st = stmt(s, Q_SKU_DEL_VARIANTS);
  ps_sqlite_bind_text(st, 1, id);
  if ((rc = ps_sqlite_exec_done(st))) return rc;
  st = stmt(s, Q_VARIANTS_DEL);
  ps_sqlite_bind_text(st, 1, id);
  if ((rc = ps_sqlite_exec_done(st))) return rc;
  for (size_t i = 0; i < in->nvariants; i++) {
    const variant_in_t *v = &in->variants[i];
    if ((rc = sku_add(s, v->sku, id))) return rc;
    st = stmt(s, Q_VARIANT_ADD);
    ps_sqlite_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, (int64_t)i);
    ps_sqlite_bind_text(st, 3, v->sku);
    ps_sqlite_bind_text(st, 4, v->attributes);
    sqlite3_bind_int64(st, 5, v->stock);
    if (v->price >= 0)
      sqlite3_bind_int64(st, 6, v->price);
    else
      sqlite3_bind_null(st, 6);
    if ((rc = ps_sqlite_exec_done(st))) return rc;
  }
  if (in->nvariants) {
    st = stmt(s, Q_STOCK_SUM);
    ps_sqlite_bind_text(st, 1, id);
    if ((rc = ps_sqlite_exec_done(st))) return rc;
  }
  return 0;
}

/* Rewrites the product_attrs rows of product id from its attributes and variants. */
static int attrs_fill(product_store_t *s, const char *id) {
  sqlite3_stmt *st = stmt(s, Q_ATTRS_DEL);
  ps_sqlite_bind_text(st, 1, id);
  int rc = ps_sqlite_exec_done(st);
  if (rc) return rc;
  st = stmt(s, Q_ATTRS_FILL);
  ps_sqlite_bind_text(st, 1, id);
  return ps_sqlite_exec_done(st);
}

/* Inserts one product inside the caller's transaction. */
static int create_in_tx(product_store_t *s, const char *id, const product_in_t *in, int64_t now) {
  int rc;
  if ((rc = sku_add(s, in->sku, id))) return rc;
  sqlite3_stmt *st = stmt(s, Q_INSERT);
  ps_sqlite_bind_text(st, 1, id);
  ps_sqlite_bind_text(st, 2, in->sku);
  ps_sqlite_bind_text(st, 3, in->name);
  ps_sqlite_bind_text(st, 4, in->description ? in->description : "");
  ps_sqlite_bind_text(st, 5, in->kind);
  ps_sqlite_bind_text(st, 6, in->brand);
  ps_sqlite_bind_text(st, 7, in->category);
  sqlite3_bind_int64(st, 8, in->price);
  ps_sqlite_bind_text(st, 9, in->currency);
  sqlite3_bind_int64(st, 10, in->stock);
  ps_sqlite_bind_text(st, 11, in->attributes ? in->attributes : "{}");
  ps_sqlite_bind_text(st, 12, in->images ? in->images : "[]");
  sqlite3_bind_int64(st, 13, (in->fields & PF_POPULARITY) ? in->popularity : 0);
  sqlite3_bind_int64(st, 14, in->created_ms ? in->created_ms : now_ms());
  sqlite3_bind_int64(st, 15, now);
  if ((rc = ps_sqlite_exec_done(st))) return rc;
  if (in->nvariants && (rc = put_variants(s, id, in))) return rc;
  if ((rc = attrs_fill(s, id))) return rc;
  return outbox_doc(s, "product.created", id, now);
}

static int sq_product_create(product_store_t *s, ps_arena_t *a, const char *id,
                             const product_in_t *in, int64_t now, char **json) {
  int rc = tx_begin(s);
  if (rc) return rc;
  if (!(rc = create_in_tx(s, id, in, now))) rc = sq_product_get(s, a, id, json);
  return tx_end(s, rc);
}

static int sq_product_create_many(product_store_t *s, ps_arena_t *a, const char *const *ids,
                                  const product_in_t *in, size_t n, int64_t now) {
  int rc = tx_begin(s);
  if (rc) return rc;
  for (size_t i = 0; i < n && !rc; i++)
    rc = create_in_tx(s, ids[i], &in[i], in[i].created_ms ? in[i].created_ms / 1000 : now);
  return tx_end(s, rc);
}

/* Reads the SKU of product id (PS_ENOTFOUND when there is none) and refuses, with *why, a
 * PATCH that sets the stock of a product whose variants hold it (unless the same PATCH
 * removes every variant). */
static int update_allowed(product_store_t *s, ps_arena_t *a, const char *id,
                          const product_in_t *in, char **old_sku, const char **why) {
  sqlite3_stmt *st = stmt(s, Q_EXISTS);
  ps_sqlite_bind_text(st, 1, id);
  int rc = one_text(s, a, st, old_sku);
  if (rc) return rc;
  st = stmt(s, Q_HAS_VARIANTS);
  ps_sqlite_bind_text(st, 1, id);
  int64_t nvariants = 0;
  if ((rc = step_row(s, st)) == 1) nvariants = sqlite3_column_int64(st, 0), rc = 0;
  sqlite3_reset(st);
  if (rc) return rc;
  if ((in->fields & PF_STOCK) && nvariants && !((in->fields & PF_VARIANTS) && !in->nvariants)) {
    *why = "this product has variants: its stock is theirs; change each variant's stock";
    return PS_EINVAL;
  }
  return 0;
}

/* The columns a PATCH may set, in the order the UPDATE lists them. */
static const struct {
  unsigned bit;
  const char *col;
} update_cols[] = {{PF_SKU, "sku"},         {PF_NAME, "name"},
                   {PF_DESCRIPTION, "description"}, {PF_KIND, "kind"},
                   {PF_BRAND, "brand"},     {PF_CATEGORY, "category"},
                   {PF_PRICE, "price"},     {PF_CURRENCY, "currency"},
                   {PF_STOCK, "stock"},     {PF_ATTRIBUTES, "attributes"},
                   {PF_IMAGES, "images"},   {PF_POPULARITY, "popularity"}};

/* Binds the value of field bit of in to parameter nb. */
static void bind_update_col(sqlite3_stmt *up, int nb, unsigned bit, const product_in_t *in) {
  switch (bit) {
    case PF_SKU: ps_sqlite_bind_text(up, nb, in->sku); break;
    case PF_NAME: ps_sqlite_bind_text(up, nb, in->name); break;
    case PF_DESCRIPTION: ps_sqlite_bind_text(up, nb, in->description ? in->description : ""); break;
    case PF_KIND: ps_sqlite_bind_text(up, nb, in->kind); break;
    case PF_BRAND: ps_sqlite_bind_text(up, nb, in->brand); break;
    case PF_CATEGORY: ps_sqlite_bind_text(up, nb, in->category); break;
    case PF_PRICE: sqlite3_bind_int64(up, nb, in->price); break;
    case PF_CURRENCY: ps_sqlite_bind_text(up, nb, in->currency); break;
    case PF_STOCK: sqlite3_bind_int64(up, nb, in->stock); break;
    case PF_ATTRIBUTES: ps_sqlite_bind_text(up, nb, in->attributes); break;
    case PF_IMAGES: ps_sqlite_bind_text(up, nb, in->images); break;
    case PF_POPULARITY: sqlite3_bind_int64(up, nb, in->popularity); break;
  }
}

/* Writes the given fields of row id and its updated_at. Only the fields given are written,
 * so a PATCH never overwrites a stock level that a reservation changed in the meantime; the
 * statement is therefore built and prepared for each call. */
static int update_row(product_store_t *s, const char *id, const product_in_t *in, int64_t now) {
  char buf[1024];
  size_t used = (size_t)snprintf(buf, sizeof(buf), "UPDATE products SET updated_at = ?1");
  int nb = 2;
  for (size_t i = 0; i < sizeof(update_cols) / sizeof(update_cols[0]); i++)
    if (in->fields & update_cols[i].bit)
      used += (size_t)snprintf(buf + used, sizeof(buf) - used, ", %s = ?%d", update_cols[i].col,
                               nb++);
  snprintf(buf + used, sizeof(buf) - used, " WHERE id = ?%d", nb);
  sqlite3_stmt *up = NULL;
  if (sqlite3_prepare_v2(S(s)->db, buf, -1, &up, NULL) != SQLITE_OK)
    return log_err(s, sqlite3_errcode(S(s)->db), "preparing an update");
  sqlite3_bind_int64(up, 1, now);
  nb = 2;
  for (size_t i = 0; i < sizeof(update_cols) / sizeof(update_cols[0]); i++)
    if (in->fields & update_cols[i].bit) bind_update_col(up, nb++, update_cols[i].bit, in);
  ps_sqlite_bind_text(up, nb, id);
  int rc = ps_sqlite_exec_done(up);
  sqlite3_finalize(up);
  return rc;
}

static int sq_product_update(product_store_t *s, ps_arena_t *a, const char *id,
                             const product_in_t *in, int64_t now, char **json,
                             const char **why) {
  *why = NULL;
  int rc = tx_begin(s);
  if (rc) return rc;
  char *old_sku = NULL;
  if ((rc = update_allowed(s, a, id, in, &old_sku, why))) goto out;
  if ((in->fields & PF_SKU) && strcmp(old_sku, in->sku) != 0) {
    sqlite3_stmt *st = stmt(s, Q_SKU_DEL);
    ps_sqlite_bind_text(st, 1, old_sku);
    if ((rc = ps_sqlite_exec_done(st)) || (rc = sku_add(s, in->sku, id))) goto out;
  }
  if ((rc = update_row(s, id, in, now))) goto out;
  if ((in->fields & PF_VARIANTS) && (rc = put_variants(s, id, in))) goto out;
  if ((in->fields & (PF_ATTRIBUTES | PF_VARIANTS)) && (rc = attrs_fill(s, id))) goto out;
  if ((rc = outbox_doc(s, "product.updated", id, now))) goto out;
  if ((in->fields & (PF_STOCK | PF_VARIANTS)) &&
      (rc = outbox_doc(s, "product.stock_changed", id, now)))
    goto out;
  rc = sq_product_get(s, a, id, json);
out:
  return tx_end(s, rc);
}

static int sq_product_delete(product_store_t *s, const char *id, int64_t now) {
  int rc = tx_begin(s);
  if (rc) return rc;
  sqlite3_stmt *st = stmt(s, Q_SKU_DEL_PRODUCT);
  ps_sqlite_bind_text(st, 1, id);
  if ((rc = ps_sqlite_exec_done(st))) goto out;
  st = stmt(s, Q_DELETE);
  ps_sqlite_bind_text(st, 1, id);
  if ((rc = ps_sqlite_exec_done(st))) goto out;
  if (sqlite3_changes(S(s)->db) == 0) {
    rc = PS_ENOTFOUND;
    goto out;
  }
  char payload[128];
  snprintf(payload, sizeof(payload), "{\"id\":\"%.64s\"}", id); /* ids are UUIDs: no escaping */
  st = stmt(s, Q_OUTBOX_RAW);
  ps_sqlite_bind_text(st, 1, "product.deleted");
  ps_sqlite_bind_text(st, 2, id);
  sqlite3_bind_int64(st, 3, now);
  ps_sqlite_bind_text(st, 4, payload);
  rc = ps_sqlite_exec_done(st);
out:
  return tx_end(s, rc);
}

/* Appends s to a growing SQL text in the arena. */
typedef struct {
  ps_arena_t *a;
  char *buf;
  size_t len, cap;
} sqlbuf_t;

static void sb_addn(sqlbuf_t *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = (b->cap ? b->cap * 2 : 1024) + n;
    char *nb = ps_arena_alloc(b->a, cap);
    if (b->len) memcpy(nb, b->buf, b->len);
    b->buf = nb;
    b->cap = cap;
  }
  memcpy(b->buf + b->len, s, n);
  b->len += n;
  b->buf[b->len] = '\0';
}

static void sb_add(sqlbuf_t *b, const char *s) { sb_addn(b, s, strlen(s)); }

/* Appends v as a JSON string escaped the way SQLite's JSON functions escape ("null" for NULL),
 * so documents built here read the same as the ones SQLite builds. */
static void sb_json_str(sqlbuf_t *b, const char *v) {
  if (!v) {
    sb_add(b, "null");
    return;
  }
  sb_add(b, "\"");
  const char *run = v;
  for (const char *p = v;; p++) {
    unsigned char c = (unsigned char)*p;
    if (c && c != '"' && c != '\\' && c >= 0x20) continue;
    sb_addn(b, run, (size_t)(p - run));
    if (!c) break;
    char esc[8];
    if (c == '"' || c == '\\')
      snprintf(esc, sizeof(esc), "\\%c", c);
    else if (c == '\b' || c == '\t' || c == '\n' || c == '\f' || c == '\r')
      snprintf(esc, sizeof(esc), "\\%c", "btn?fr"[c - '\b']);
    else
      snprintf(esc, sizeof(esc), "\\u%04x", c);
    sb_add(b, esc);
    run = p + 1;
  }
  sb_add(b, "\"");
}

/* Escapes LIKE wildcards so that q is matched as a plain substring. */
static char *like_pattern(ps_arena_t *a, const char *q) {
  size_t n = strlen(q);
  char *out = ps_arena_alloc(a, n * 2 + 3), *o = out;
  *o++ = '%';
  for (const char *p = q; *p; p++) {
    if (*p == '%' || *p == '_' || *p == '\\') *o++ = '\\';
    *o++ = *p;
  }
  *o++ = '%';
  *o = '\0';
  return out;
}

static const char *sort_column(sort_t s) {
  switch (s) {
    case SORT_PRICE:
    case SORT_PRICE_DESC: return "p.price";
    case SORT_NAME: return "p.name";
    case SORT_POPULARITY: return "p.popularity";
    case SORT_NEWEST: break;
  }
  return "p.created_ms";
}

static int sort_desc(sort_t s) {
  return s == SORT_PRICE_DESC || s == SORT_NEWEST || s == SORT_POPULARITY;
}

/* Binds an attribute value both as text and, when it reads as one, as a number or boolean,
 * since "attr.memory=8" should match {"memory": 8} as well as {"memory": "8"}. */
static void bind_attr_value(sqlite3_stmt *st, int i, const char *v) {
  ps_sqlite_bind_text(st, i, v);
  char *end;
  if (strcmp(v, "true") == 0) {
    sqlite3_bind_int(st, i + 1, 1);
  } else if (strcmp(v, "false") == 0) {
    sqlite3_bind_int(st, i + 1, 0);
  } else if (*v) {
    long long n = strtoll(v, &end, 10);
    if (!*end) {
      sqlite3_bind_int64(st, i + 1, n);
      return;
    }
    double d = strtod(v, &end);
    if (!*end)
      sqlite3_bind_double(st, i + 1, d);
    else
      ps_sqlite_bind_text(st, i + 1, v);
  } else {
    ps_sqlite_bind_text(st, i + 1, v);
  }
}

enum { LIST_MERGE_MAX = 64 }; /* categories in a subtree merged branch by branch */

/* How many products an attribute filter matches (an index range count), or a PS_E* code. */
static int64_t attr_matches(product_store_t *s, const attr_filter_t *f) {
  sqlite3_stmt *st = stmt(s, Q_ATTR_COUNT);
  ps_sqlite_bind_text(st, 1, f->name);
  bind_attr_value(st, 2, f->value);
  int rc = step_row(s, st);
  int64_t n = rc == 1 ? sqlite3_column_int64(st, 0) : rc;
  sqlite3_reset(st);
  return n;
}

/* Every filter but the category, then the cursor, as SQL text added to f: the same text goes
 * into each branch of the listing (named parameters bind every occurrence at once). Returns 0
 * or a PS_E* code. */
static int list_where(product_store_t *s, ps_arena_t *a, const product_query_t *q,
                      const char *col, int desc, sqlbuf_t *f) {
  sb_add(f, "");
  if (q->q) sb_add(f, " AND (p.name LIKE :q ESCAPE '\\' OR p.brand LIKE :q ESCAPE '\\')");
  if (q->brand) sb_add(f, " AND p.brand = :brand");
  if (q->price_min >= 0) sb_add(f, " AND p.price >= :pmin");
  if (q->price_max >= 0) sb_add(f, " AND p.price <= :pmax");
  if (q->in_stock) sb_add(f, " AND p.stock > 0");
  /* Attribute filters: the rarest value drives the query from product_attrs (its cost is
   * bounded by its matches; walking a sort index instead can scan the whole table when the
   * matches sort last); the others are checked per candidate with a primary-key lookup.
   * Names are checked to be [A-Za-z0-9_]{1,64}, so they can sit inside the literal; values
   * are always bound parameters. product_attrs holds list elements (a food's ingredients)
   * and variants' attributes (a shirt's sizes) too. */
  int driver = -1;
  int64_t fewest = 0;
  for (int i = 0; i < q->nattrs; i++) {
    int64_t matches = attr_matches(s, &q->attrs[i]);
    if (matches < 0) return (int)matches;
    if (driver < 0 || matches < fewest) driver = i, fewest = matches;
  }
  for (int i = 0; i < q->nattrs; i++) {
    char *part = ps_arena_sprintf(
        a,
        i == driver
            ? " AND p.id IN (SELECT product_id FROM product_attrs WHERE"
              " name = '%s' AND value IN (:a%dt, :a%dn))"
            : " AND EXISTS (SELECT 1 FROM product_attrs x WHERE x.name = '%s' AND"
              " x.value IN (:a%dt, :a%dn) AND x.product_id = p.id)",
        q->attrs[i].name, i, i);
    sb_add(f, part);
  }
  if (q->has_cursor)
    sb_add(f, ps_arena_sprintf(a, " AND (%s, p.id) %s (:ck, :cid)", col, desc ? "<" : ">"));
  return 0;
}

/* The categories of the subtree of q->category (at most LIST_MERGE_MAX + 1 of them). */
static int list_slugs(product_store_t *s, ps_arena_t *a, const char *category, char ***slugs,
                      int *nslugs) {
  sqlite3_stmt *cs = stmt(s, Q_CAT_SUBTREE);
  ps_sqlite_bind_text(cs, 1, category);
  *slugs = ps_arena_alloc(a, (LIST_MERGE_MAX + 1) * sizeof(char *));
  *nslugs = 0;
  int rc;
  while ((rc = step_row(s, cs)) == 1 && *nslugs <= LIST_MERGE_MAX)
    (*slugs)[(*nslugs)++] = ps_sqlite_text(a, cs, 0);
  sqlite3_reset(cs);
  return rc < 0 ? rc : 0;
}

/* The listing's SQL. The page's ids are chosen first and only they are turned into
 * documents: with the documents inside, a sort that cannot use an index would build one for
 * every match. */
static const char *list_sql(ps_arena_t *a, const product_query_t *q, const char *col, int desc,
                            const char *where, int nslugs) {
  const char *dir = desc ? "DESC" : "ASC";
  const char *order = ps_arena_sprintf(a, " ORDER BY %s %s, p.id %s LIMIT :limit", col, dir, dir);
  sqlbuf_t b = {a, NULL, 0, 0};
  sb_add(&b, "SELECT " DOC_SQL ", p.id, ");
  sb_add(&b, col);
  sb_add(&b, " FROM (");
  if (q->category && nslugs <= LIST_MERGE_MAX) {
    /* One short ordered index scan per category (index (category, sort key, id)), merged:
     * the cost follows the page size, not the size of the category. */
    sb_add(&b, "SELECT pid FROM (");
    for (int i = 0; i < nslugs; i++) {
      if (i) sb_add(&b, " UNION ALL ");
      sb_add(&b, ps_arena_sprintf(a,
                                  "SELECT * FROM (SELECT p.id AS pid, %s AS k FROM products p"
                                  " WHERE p.category = :c%d",
                                  col, i));
      sb_add(&b, where);
      sb_add(&b, order);
      sb_add(&b, ")");
    }
    sb_add(&b, ps_arena_sprintf(a, ") ORDER BY k%s %s, pid %s LIMIT :limit",
                                q->sort == SORT_NAME ? " COLLATE NOCASE" : "", dir, dir));
  } else {
    sb_add(&b, "SELECT p.id AS pid FROM products p WHERE 1");
    if (q->category)
      sb_add(&b, " AND p.category IN (WITH RECURSIVE sub(slug) AS (SELECT :cat UNION"
                 " SELECT c.slug FROM categories c JOIN sub ON c.parent = sub.slug)"
                 " SELECT slug FROM sub)");
    sb_add(&b, where);
    sb_add(&b, order);
  }
  sb_add(&b, ps_arena_sprintf(a,
                              ") page JOIN products p ON p.id = page.pid ORDER BY %s %s, p.id %s",
                              col, dir, dir));
  return b.buf;
}

static void bind_named_text(sqlite3_stmt *st, const char *name, const char *v) {
  ps_sqlite_bind_text(st, sqlite3_bind_parameter_index(st, name), v);
}

/* Binds the listing's parameters (see list_where and list_sql). */
static void list_bind(sqlite3_stmt *st, ps_arena_t *a, const product_query_t *q,
                      char *const *slugs, int nslugs) {
  char name[16];
  if (q->q) bind_named_text(st, ":q", like_pattern(a, q->q));
  if (q->category && nslugs > LIST_MERGE_MAX) bind_named_text(st, ":cat", q->category);
  for (int i = 0; q->category && i < nslugs && nslugs <= LIST_MERGE_MAX; i++) {
    snprintf(name, sizeof(name), ":c%d", i);
    bind_named_text(st, name, slugs[i]);
  }
  if (q->brand) bind_named_text(st, ":brand", q->brand);
  if (q->price_min >= 0)
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":pmin"), q->price_min);
  if (q->price_max >= 0)
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":pmax"), q->price_max);
  for (int i = 0; i < q->nattrs; i++) {
    snprintf(name, sizeof(name), ":a%dt", i);
    bind_attr_value(st, sqlite3_bind_parameter_index(st, name), q->attrs[i].value);
  }
  if (q->has_cursor) {
    int k = sqlite3_bind_parameter_index(st, ":ck");
    if (product_sort_key_is_text(q->sort))
      ps_sqlite_bind_text(st, k, q->cursor.key_s);
    else
      sqlite3_bind_int64(st, k, q->cursor.key_i);
    bind_named_text(st, ":cid", q->cursor.id);
  }
  sqlite3_bind_int(st, sqlite3_bind_parameter_index(st, ":limit"), q->limit + 1);
}

static int sq_product_list(product_store_t *s, ps_arena_t *a, const product_query_t *q,
                           product_row_t **rows, size_t *nrows) {
  const char *col = sort_column(q->sort);
  int desc = sort_desc(q->sort);
  sqlbuf_t where = {a, NULL, 0, 0};
  char **slugs = NULL;
  int nslugs = 0;
  int rc = list_where(s, a, q, col, desc, &where);
  if (!rc && q->category) rc = list_slugs(s, a, q->category, &slugs, &nslugs);
  if (rc) return rc;
  sqlite3_stmt *st = NULL;
  const char *text = list_sql(a, q, col, desc, where.buf, nslugs);
  if (sqlite3_prepare_v2(S(s)->db, text, -1, &st, NULL) != SQLITE_OK)
    return log_err(s, sqlite3_errcode(S(s)->db), "preparing a listing");
  list_bind(st, a, q, slugs, nslugs);

  size_t cap = (size_t)q->limit + 1, n = 0;
  product_row_t *out = ps_arena_alloc(a, cap * sizeof(*out));
  while ((rc = step_row(s, st)) == 1 && n < cap) {
    out[n].json = ps_sqlite_text(a, st, 0);
    out[n].id = ps_sqlite_text(a, st, 1);
    if (product_sort_key_is_text(q->sort))
      out[n].key_s = ps_sqlite_text(a, st, 2);
    else
      out[n].key_i = sqlite3_column_int64(st, 2);
    n++;
  }
  sqlite3_finalize(st);
  if (rc < 0) return rc;
  *rows = out;
  *nrows = n;
  return 0;
}

/* The lookup statement for the fields of mask (0: Q_LOOKUP, whole documents), prepared once
 * per field set and kept (a few sets per connection). */
static sqlite3_stmt *lookup_stmt(product_store_t *s, unsigned mask) {
  sqlite_store_t *ss = S(s);
  if (!mask) return stmt(s, Q_LOOKUP);
  for (int i = 0; i < LOOKUP_CACHE; i++)
    if (ss->lookup[i].st && ss->lookup[i].mask == mask) return ps_sqlite_fresh(ss->lookup[i].st);
  char doc[2048], text[2560];
  size_t used = (size_t)snprintf(doc, sizeof(doc), "json_object(");
  for (int i = 0; i < PRODUCT_DOC_NFIELDS; i++)
    if (mask & (1u << i))
      used += (size_t)snprintf(doc + used, sizeof(doc) - used, "%s'%s',%s",
                               used > sizeof("json_object(") - 1 ? "," : "",
                               product_doc_fields[i], doc_field_sql[i]);
  snprintf(doc + used, sizeof(doc) - used, ")");
  snprintf(text, sizeof(text), LOOKUP_SQL("%s"), doc);
  sqlite3_stmt *st = ps_sqlite_prepare(ss->db, text);
  if (!st) return NULL;
  unsigned slot = ss->lookup_next++ % LOOKUP_CACHE;
  sqlite3_finalize(ss->lookup[slot].st);
  ss->lookup[slot].mask = mask;
  ss->lookup[slot].st = st;
  return st;
}

static int sq_product_lookup(product_store_t *s, ps_arena_t *a, const char *const *ids,
                             size_t n, unsigned fields, char **items_json, char **missing_json) {
  sqlite3_stmt *st = lookup_stmt(s, fields);
  if (!st) return PS_ESTORE;
  sqlbuf_t asked = {a, NULL, 0, 0};
  sb_add(&asked, "[");
  for (size_t i = 0; i < n; i++) {
    if (i) sb_add(&asked, ",");
    sb_json_str(&asked, ids[i]);
  }
  sb_add(&asked, "]");
  sqlite3_bind_text(st, 1, asked.buf, (int)asked.len, SQLITE_STATIC);
  sqlbuf_t b = {a, NULL, 0, 0};
  json_t *missing = json_array();
  int rc, first = 1;
  sb_add(&b, "[");
  while ((rc = step_row(s, st)) == 1) {
    int64_t i = sqlite3_column_int64(st, 0);
    if (sqlite3_column_type(st, 1) == SQLITE_NULL) {
      if (i >= 0 && (size_t)i < n) json_array_append_new(missing, json_string(ids[i]));
      continue;
    }
    if (!first) sb_add(&b, ",");
    sb_addn(&b, (const char *)sqlite3_column_text(st, 1), (size_t)sqlite3_column_bytes(st, 1));
    first = 0;
  }
  sqlite3_reset(st);
  sb_add(&b, "]");
  *items_json = b.buf;
  *missing_json = ps_json_dump(a, missing);
  json_decref(missing);
  return rc < 0 ? rc : 0;
}

/* --- reservations ---------------------------------------------------------------------- */

static int reservation_doc(product_store_t *s, ps_arena_t *a, const char *id, int64_t now,
                           char **json) {
  sqlite3_stmt *st = stmt(s, Q_RES_DOC);
  ps_sqlite_bind_text(st, 1, id);
  sqlite3_bind_int64(st, 2, now);
  return one_text(s, a, st, json);
}

/* A reservation's answer from what the caller already has, in RESERVATION_SQL's shape and key
 * order (items is the JSON array text of the items column). */
static char *reservation_json(ps_arena_t *a, const char *id, const char *status,
                              int64_t created_at, int64_t expires_at, const char *items) {
  sqlbuf_t b = {a, NULL, 0, 0};
  char num[96];
  sb_add(&b, "{\"reservation_id\":");
  sb_json_str(&b, id);
  sb_add(&b, ",\"status\":");
  sb_json_str(&b, status);
  snprintf(num, sizeof(num), ",\"created_at\":%lld,\"expires_at\":%lld,\"items\":",
           (long long)created_at, (long long)expires_at);
  sb_add(&b, num);
  sb_add(&b, items);
  sb_add(&b, "}");
  return b.buf;
}

/* One element of a reservation's items, as RESERVATION_SQL's json_object writes it. */
static void item_json(sqlbuf_t *b, const reservation_item_t *it, int64_t price,
                      const char *currency) {
  char num[96];
  sb_add(b, "{\"product_id\":");
  sb_json_str(b, it->product_id);
  sb_add(b, ",\"variant\":");
  sb_json_str(b, it->variant);
  snprintf(num, sizeof(num), ",\"quantity\":%lld,\"price\":%lld,\"currency\":",
           (long long)it->quantity, (long long)price);
  sb_add(b, num);
  sb_json_str(b, currency);
  sb_add(b, "}");
}

/* A reservation's row: status ("held", "committed", "released", "expired"), items_key,
 * times, and items (NULL for reservations made before that column). */
typedef struct {
  char *status, *items_key;
  const char *items;
  int64_t created_at, expires_at;
} res_row_t;

static int reservation_state(product_store_t *s, ps_arena_t *a, const char *id, res_row_t *r) {
  sqlite3_stmt *st = stmt(s, Q_RES_GET);
  ps_sqlite_bind_text(st, 1, id);
  int rc = step_row(s, st);
  if (rc == 1) {
    r->status = ps_sqlite_text(a, st, 0);
    r->items_key = ps_sqlite_text(a, st, 1);
    r->expires_at = sqlite3_column_int64(st, 2);
    r->created_at = sqlite3_column_int64(st, 3);
    r->items = ps_sqlite_text_or_null(a, st, 4);
    rc = 0;
  } else if (rc == 0) {
    rc = PS_ENOTFOUND;
  }
  sqlite3_reset(st);
  return rc;
}

/* The canonical text of a reservation's items: the same request gives the same key. */
static char *items_key(ps_arena_t *a, const reservation_item_t *items, size_t n) {
  sqlbuf_t b = {a, NULL, 0, 0};
  sb_add(&b, "");
  for (size_t i = 0; i < n; i++) {
    char qty[32];
    snprintf(qty, sizeof(qty), "\x1f%lld\x1e", (long long)items[i].quantity);
    sb_add(&b, items[i].product_id);
    sb_add(&b, "\x1f");
    sb_add(&b, items[i].variant ? items[i].variant : "");
    sb_add(&b, qty);
  }
  return b.buf;
}

static int set_status(product_store_t *s, const char *id, const char *status, int64_t now) {
  sqlite3_stmt *st = stmt(s, Q_RES_STATUS);
  ps_sqlite_bind_text(st, 1, id);
  ps_sqlite_bind_text(st, 2, status);
  sqlite3_bind_int64(st, 3, now);
  return ps_sqlite_exec_done(st);
}

/* The items of reservation id (from its items column, or reservation_items for one made
 * before that column), in the arena. */
typedef struct {
  char *product_id, *variant;
  int64_t qty;
} res_item_t;

static int load_items(product_store_t *s, ps_arena_t *a, const char *id, res_item_t **out,
                      size_t *nout) {
  sqlite3_stmt *st = stmt(s, Q_RES_ITEMS);
  ps_sqlite_bind_text(st, 1, id);
  res_item_t *items = NULL;
  size_t n = 0, cap = 0;
  int rc;
  while ((rc = step_row(s, st)) == 1) {
    if (n == cap) {
      cap = cap ? cap * 2 : 8;
      res_item_t *nb = ps_arena_alloc(a, cap * sizeof(*nb));
      if (n) memcpy(nb, items, n * sizeof(*nb));
      items = nb;
    }
    items[n].product_id = ps_sqlite_text(a, st, 0);
    items[n].variant =
        sqlite3_column_type(st, 1) == SQLITE_NULL ? NULL : ps_sqlite_text(a, st, 1);
    items[n].qty = sqlite3_column_int64(st, 2);
    n++;
  }
  sqlite3_reset(st);
  *out = items;
  *nout = n;
  return rc < 0 ? rc : 0;
}

/* Adds each item's units to its product's popularity (units sold make a product popular).
 * A product deleted meanwhile gains nothing. */
static int add_popularity(product_store_t *s, ps_arena_t *a, const char *id) {
  res_item_t *items;
  size_t n;
  int rc = load_items(s, a, id, &items, &n);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    sqlite3_stmt *st = stmt(s, Q_POPULARITY);
    ps_sqlite_bind_text(st, 1, items[i].product_id);
    sqlite3_bind_int64(st, 2, items[i].qty);
    rc = ps_sqlite_exec_done(st);
  }
  return rc;
}

/* Gives the units of reservation id back to their products (and variants), inside the
 * caller's transaction. A product deleted meanwhile simply gets nothing back. */
static int give_back(product_store_t *s, ps_arena_t *a, const char *id, int64_t now) {
  res_item_t *items;
  size_t n;
  sqlite3_stmt *st;
  int rc = load_items(s, a, id, &items, &n);
  if (rc) return rc;
  for (size_t i = 0; i < n; i++) {
    if (items[i].variant) {
      st = stmt(s, Q_GIVE_VARIANT);
      ps_sqlite_bind_text(st, 1, items[i].product_id);
      ps_sqlite_bind_text(st, 2, items[i].variant);
      sqlite3_bind_int64(st, 3, items[i].qty);
      if ((rc = ps_sqlite_exec_done(st))) return rc;
      /* The variant may have been replaced by a PATCH: then its units are gone with it. */
      if (sqlite3_changes(S(s)->db) == 0) continue;
    }
    st = stmt(s, Q_GIVE_PRODUCT);
    ps_sqlite_bind_text(st, 1, items[i].product_id);
    sqlite3_bind_int64(st, 2, items[i].qty);
    sqlite3_bind_int64(st, 3, now);
    if ((rc = ps_sqlite_exec_done(st))) return rc;
    if (sqlite3_changes(S(s)->db) &&
        (rc = outbox_doc(s, "product.stock_changed", items[i].product_id, now)))
      return rc;
  }
  return 0;
}

/* The usual case, an item without a variant: its units are taken at once, then its price
 * read. Returns 1 when nothing was taken (too few units, no such product, or a product with
 * variants): take_item's general path then finds out why. */
static int take_plain(product_store_t *s, ps_arena_t *a, const reservation_item_t *it,
                      int64_t now, int64_t *price_out, char **currency_out) {
  sqlite3_stmt *st = stmt(s, Q_TAKE_PLAIN);
  ps_sqlite_bind_text(st, 1, it->product_id);
  sqlite3_bind_int64(st, 2, it->quantity);
  sqlite3_bind_int64(st, 3, now);
  int rc = ps_sqlite_exec_done(st);
  if (rc) return rc;
  if (sqlite3_changes(S(s)->db) != 1) return 1;
  st = stmt(s, Q_ITEM_PRODUCT);
  ps_sqlite_bind_text(st, 1, it->product_id);
  rc = step_row(s, st);
  if (rc == 1) {
    *price_out = sqlite3_column_int64(st, 0);
    *currency_out = ps_sqlite_text(a, st, 1);
  }
  sqlite3_reset(st);
  if (rc <= 0) return rc < 0 ? rc : PS_ESTORE; /* taken, so it exists */
  return outbox_doc(s, "product.stock_changed", it->product_id, now);
}

/* Reads the item's product (price, currency) and checks that the item names a variant
 * exactly when the product has some; fail->why says what is wrong. */
static int item_product(product_store_t *s, ps_arena_t *a, const reservation_item_t *it,
                        reservation_fail_t *fail, int64_t *price, char **currency) {
  sqlite3_stmt *st = stmt(s, Q_ITEM_PRODUCT);
  ps_sqlite_bind_text(st, 1, it->product_id);
  int rc = step_row(s, st);
  if (rc <= 0) {
    sqlite3_reset(st);
    if (rc == 0) fail->why = "no product has this id";
    return rc ? rc : PS_ENOTFOUND;
  }
  *price = sqlite3_column_int64(st, 0);
  *currency = ps_sqlite_text(a, st, 1);
  int64_t nvariants = sqlite3_column_int64(st, 2);
  sqlite3_reset(st);
  if (nvariants && !it->variant) {
    fail->why = "this product has variants: name one in variant";
    return PS_EINVAL;
  }
  if (!nvariants && it->variant) {
    fail->why = "this product has no variants";
    return PS_ENOTFOUND;
  }
  return 0;
}

/* Takes the item's units from its variant, whose own price (when it has one) replaces
 * *price. Too few units: PS_EINSUFFICIENT with fail->available. */
static int take_from_variant(product_store_t *s, const reservation_item_t *it,
                             reservation_fail_t *fail, int64_t *price) {
  sqlite3_stmt *st = stmt(s, Q_VARIANT_INFO);
  ps_sqlite_bind_text(st, 1, it->product_id);
  ps_sqlite_bind_text(st, 2, it->variant);
  int rc = step_row(s, st);
  int64_t available = rc == 1 ? sqlite3_column_int64(st, 0) : 0;
  if (rc == 1) *price = sqlite3_column_int64(st, 1);
  sqlite3_reset(st);
  if (rc <= 0) {
    if (rc == 0) fail->why = "this product has no variant with this SKU";
    return rc ? rc : PS_ENOTFOUND;
  }
  st = stmt(s, Q_TAKE_VARIANT);
  ps_sqlite_bind_text(st, 1, it->product_id);
  ps_sqlite_bind_text(st, 2, it->variant);
  sqlite3_bind_int64(st, 3, it->quantity);
  if ((rc = ps_sqlite_exec_done(st))) return rc;
  if (sqlite3_changes(S(s)->db) == 0) {
    fail->available = available;
    return PS_EINSUFFICIENT;
  }
  return 0;
}

/* Takes the item's units from its product's stock (a variant's units count there too). Too
 * few units: PS_EINSUFFICIENT with fail->available. */
static int take_from_product(product_store_t *s, const reservation_item_t *it, int64_t now,
                             reservation_fail_t *fail) {
  sqlite3_stmt *st = stmt(s, Q_TAKE_PRODUCT);
  ps_sqlite_bind_text(st, 1, it->product_id);
  sqlite3_bind_int64(st, 2, it->quantity);
  sqlite3_bind_int64(st, 3, now);
  int rc = ps_sqlite_exec_done(st);
  if (rc) return rc;
  if (sqlite3_changes(S(s)->db) == 0) {
    st = stmt(s, Q_PRODUCT_STOCK);
    ps_sqlite_bind_text(st, 1, it->product_id);
    if (step_row(s, st) == 1) fail->available = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return PS_EINSUFFICIENT;
  }
  return 0;
}

/* Takes one item's units inside the caller's transaction and appends its outbox event; *price
 * and *currency are what the item sells at. */
static int take_item(product_store_t *s, ps_arena_t *a, const reservation_item_t *it,
                     int64_t now, reservation_fail_t *fail, int64_t *price_out,
                     char **currency_out) {
  int rc;
  *price_out = 0;
  *currency_out = "";
  if (!it->variant && (rc = take_plain(s, a, it, now, price_out, currency_out)) <= 0) return rc;
  int64_t price;
  char *currency;
  if ((rc = item_product(s, a, it, fail, &price, &currency))) return rc;
  if (it->variant && (rc = take_from_variant(s, it, fail, &price))) return rc;
  if ((rc = take_from_product(s, it, now, fail))) return rc;
  *price_out = price;
  *currency_out = currency;
  return outbox_doc(s, "product.stock_changed", it->product_id, now);
}

static int sq_reserve(product_store_t *s, ps_arena_t *a, const char *reservation_id,
                      const reservation_item_t *items, size_t n, int64_t now, int64_t ttl,
                      char **json, int *existing, reservation_fail_t *fail) {
  *existing = 0;
  memset(fail, 0, sizeof(*fail));
  char *key = items_key(a, items, n);
  int rc = tx_begin(s);
  if (rc) return rc;
  res_row_t old;
  rc = reservation_state(s, a, reservation_id, &old);
  if (rc == 0) {
    const char *status = old.status, *old_key = old.items_key;
    int64_t expires_at = old.expires_at;
    /* The same request again (a retry): answer what the first one did, unless its units
     * have gone back since (the caller must not go on as if they were held). */
    if (strcmp(old_key, key) != 0) {
      rc = PS_ECONFLICT;
      goto out;
    }
    if (!(strcmp(status, "committed") == 0 || (strcmp(status, "held") == 0 && expires_at > now))) {
      fail->why = "this reservation was released or has expired; reserve under a new id";
      rc = PS_ECONFLICT;
      goto out;
    }
    *existing = 1;
    rc = reservation_doc(s, a, reservation_id, now, json);
    goto out;
  }
  if (rc != PS_ENOTFOUND) goto out;
  /* The items as the answer shows them, kept in the reservation's row. */
  sqlbuf_t ib = {a, NULL, 0, 0};
  sb_add(&ib, "[");
  for (size_t i = 0; i < n; i++) {
    int64_t price;
    char *currency;
    fail->index = i;
    if ((rc = take_item(s, a, &items[i], now, fail, &price, &currency))) goto out;
    if (i) sb_add(&ib, ",");
    item_json(&ib, &items[i], price, currency);
  }
  sb_add(&ib, "]");
  sqlite3_stmt *st = stmt(s, Q_RES_INSERT);
  ps_sqlite_bind_text(st, 1, reservation_id);
  ps_sqlite_bind_text(st, 2, key);
  sqlite3_bind_int64(st, 3, now);
  sqlite3_bind_int64(st, 4, now + ttl);
  ps_sqlite_bind_text(st, 5, ib.buf);
  if ((rc = ps_sqlite_exec_done(st))) goto out;
  *json = reservation_json(a, reservation_id, "held", now, now + ttl, ib.buf);
out:
  return tx_end(s, rc);
}

/* Expires a held reservation past its time inside the caller's transaction. */
static int expire(product_store_t *s, ps_arena_t *a, const char *id, int64_t now) {
  int rc = give_back(s, a, id, now);
  return rc ? rc : set_status(s, id, "expired", now);
}

static int sq_reservation_commit(product_store_t *s, ps_arena_t *a, const char *id, int64_t now,
                                 char **json) {
  int rc = tx_begin(s);
  if (rc) return rc;
  res_row_t r;
  if ((rc = reservation_state(s, a, id, &r))) goto out;
  if (strcmp(r.status, "held") == 0 && r.expires_at <= now) {
    /* Too late: the units go back now rather than at the next sweep, and the commit fails. */
    if ((rc = expire(s, a, id, now)) || (rc = tx_commit(s))) goto out;
    return PS_ECONFLICT;
  }
  if (strcmp(r.status, "held") == 0) {
    if ((rc = set_status(s, id, "committed", now)) || (rc = add_popularity(s, a, id)))
      goto out;
  } else if (strcmp(r.status, "committed") != 0) {
    rc = PS_ECONFLICT;
    goto out;
  }
  /* Committed now: the answer from the row when it has its items (RESERVATION_SQL's). */
  if (r.items)
    *json = reservation_json(a, id, "committed", r.created_at, r.expires_at, r.items);
  else
    rc = reservation_doc(s, a, id, now, json);
out:
  return tx_end(s, rc);
}

static int sq_reservation_release(product_store_t *s, ps_arena_t *a, const char *id,
                                  int64_t now, char **json) {
  int rc = tx_begin(s);
  if (rc) return rc;
  res_row_t r;
  if ((rc = reservation_state(s, a, id, &r))) goto out;
  if (strcmp(r.status, "held") == 0 || strcmp(r.status, "committed") == 0) {
    if ((rc = give_back(s, a, id, now)) || (rc = set_status(s, id, "released", now))) goto out;
  }
  rc = reservation_doc(s, a, id, now, json);
out:
  return tx_end(s, rc);
}

static int sq_reservation_get(product_store_t *s, ps_arena_t *a, const char *id, int64_t now,
                              char **json) {
  return reservation_doc(s, a, id, now, json);
}

static int sq_sweep(product_store_t *s, int64_t now, int max, int *count) {
  *count = 0;
  /* A read first: an idle sweep does not take the write lock. */
  sqlite3_stmt *st = stmt(s, Q_EXPIRED);
  sqlite3_bind_int64(st, 1, now);
  sqlite3_bind_int(st, 2, 1);
  int rc = step_row(s, st);
  sqlite3_reset(st);
  if (rc <= 0) return rc;
  ps_arena_t a;
  ps_arena_init(&a);
  rc = tx_begin(s);
  if (rc) goto done;
  st = stmt(s, Q_EXPIRED);
  sqlite3_bind_int64(st, 1, now);
  sqlite3_bind_int(st, 2, max);
  char **ids = ps_arena_alloc(&a, (size_t)max * sizeof(char *));
  int n = 0;
  while (n < max && (rc = step_row(s, st)) == 1) ids[n++] = ps_sqlite_text(&a, st, 0);
  sqlite3_reset(st);
  if (rc < 0) goto out;
  rc = 0;
  for (int i = 0; i < n && !rc; i++) rc = expire(s, &a, ids[i], now);
  if (!rc) *count = n;
out:
  rc = tx_end(s, rc);
  if (rc) *count = 0;
done:
  ps_arena_reset(&a);
  return rc;
}

static int sq_outbox_read(product_store_t *s, ps_arena_t *a, int64_t after, int limit,
                          char **json) {
  sqlite3_stmt *st = stmt(s, Q_OUTBOX_READ);
  sqlite3_bind_int64(st, 1, after);
  sqlite3_bind_int(st, 2, limit);
  return one_text(s, a, st, json);
}

static const product_store_ops_t sqlite_ops = {
    .ping = sq_ping,
    .close = sq_close,
    .category_exists = sq_category_exists,
    .category_put = sq_category_put,
    .categories_json = sq_categories_json,
    .product_get = sq_product_get,
    .product_create = sq_product_create,
    .product_update = sq_product_update,
    .product_create_many = sq_product_create_many,
    .product_delete = sq_product_delete,
    .product_list = sq_product_list,
    .product_lookup = sq_product_lookup,
    .product_count = sq_product_count,
    .reserve = sq_reserve,
    .reservation_commit = sq_reservation_commit,
    .reservation_release = sq_reservation_release,
    .reservation_get = sq_reservation_get,
    .sweep = sq_sweep,
    .outbox_read = sq_outbox_read,
};

/* A store made before reservations kept their items in their row gets the column, under the
 * write lock so that two processes starting together do not both add it. */
static int add_reservation_items(sqlite3 *db) {
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return PS_ESTORE;
  sqlite3_stmt *st = NULL;
  int rc = PS_ESTORE, has = 0;
  if (sqlite3_prepare_v2(db,
                         "SELECT count(*) FROM pragma_table_info('reservations')"
                         " WHERE name = 'items'",
                         -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    has = sqlite3_column_int(st, 0);
    rc = 0;
  }
  sqlite3_finalize(st);
  if (!rc && !has &&
      sqlite3_exec(db, "ALTER TABLE reservations ADD COLUMN items TEXT", NULL, NULL, NULL) !=
          SQLITE_OK)
    rc = PS_ESTORE;
  if (rc) ps_log_error("sqlite: adding reservations.items: %s", sqlite3_errmsg(db));
  sqlite3_exec(db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL);
  return rc;
}

int product_sqlite_migrate(const char *path) {
  sqlite3 *db;
  int rc = ps_sqlite_open(path, schema, &db);
  if (rc) return rc;
  /* A store made before product_attrs existed gets its rows once. */
  char *err = NULL;
  if (sqlite3_exec(db,
                   "BEGIN IMMEDIATE;"
                   ATTRS_FILL_SQL("NOT EXISTS (SELECT 1 FROM product_attrs LIMIT 1)") ";"
                   "COMMIT;",
                   NULL, NULL, &err) != SQLITE_OK) {
    ps_log_error("sqlite: filling product_attrs: %s", err ? err : "?");
    sqlite3_free(err);
    rc = PS_ESTORE;
  }
  if (!rc) rc = add_reservation_items(db);
  sqlite3_close_v2(db);
  return rc;
}

int product_sqlite_open(const char *path, product_store_t **out) {
  sqlite_store_t *s = ps_calloc(1, sizeof(*s));
  s->base.ops = &sqlite_ops;
  int rc = ps_sqlite_open(path, NULL, &s->db);
  if (rc) {
    ps_free(s);
    return rc;
  }
  if (ps_sqlite_prepare_all(s->db, sql, Q__COUNT, s->st)) {
    sq_close(&s->base);
    return PS_ESTORE;
  }
  *out = &s->base;
  return 0;
}
