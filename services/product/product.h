/* product.h - what the product service's files share: validated input shapes, the listing
 * query, the pagination cursor, per-thread state and the demo catalog generator. */
#ifndef POLYSHOP_PRODUCT_H
#define POLYSHOP_PRODUCT_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "polyshop/arena.h"
#include "polyshop/http.h"
#include "polyshop/money.h"

/* Limits of a product, checked by product_validate and documented in docs/product.md. */
enum {
  PRODUCT_STOCK_MAX = 10000000,
  PRODUCT_SKU_MAX = 64,
  PRODUCT_NAME_MAX = 200,
  PRODUCT_DESCRIPTION_MAX = 5000,
  PRODUCT_BRAND_MAX = 100,
  PRODUCT_ATTRS_MAX = 50,           /* keys per attributes object */
  PRODUCT_ATTR_NAME_MAX = 64,
  PRODUCT_ATTR_VALUE_MAX = 500,     /* bytes of a string value */
  PRODUCT_ATTR_ARRAY_MAX = 50,
  PRODUCT_VARIANTS_MAX = 100,
  PRODUCT_IMAGES_MAX = 20,
  PRODUCT_IMAGE_MAX = 500,
  PRODUCT_LIST_LIMIT_MAX = 100,
  PRODUCT_LIST_LIMIT_DEFAULT = 20,
  PRODUCT_QUERY_ATTRS_MAX = 8,
  RESERVATION_ITEMS_MAX = 100,
  RESERVATION_QTY_MAX = 10000,
  RESERVATION_TTL_MAX = 86400,
  RESERVATION_TTL_DEFAULT = 900,
  LOOKUP_IDS_MAX = 100,
};

/* Which fields of a product_in_t were given (create: all required ones; PATCH: any). */
enum {
  PF_SKU = 1u << 0, PF_NAME = 1u << 1, PF_DESCRIPTION = 1u << 2, PF_KIND = 1u << 3,
  PF_BRAND = 1u << 4, PF_CATEGORY = 1u << 5, PF_PRICE = 1u << 6, PF_CURRENCY = 1u << 7,
  PF_STOCK = 1u << 8, PF_ATTRIBUTES = 1u << 9, PF_VARIANTS = 1u << 10, PF_IMAGES = 1u << 11,
  PF_POPULARITY = 1u << 12,
};

typedef struct {
  const char *sku;
  const char *attributes; /* JSON object text */
  int64_t stock;
  int64_t price;          /* -1: the product's price */
} variant_in_t;

/* A validated create or update. Strings and JSON texts live in the arena given to
 * product_validate (or point into the request's JSON, which lives as long). */
typedef struct {
  unsigned fields; /* PF_* bits */
  const char *sku, *name, *description, *kind, *brand, *category, *currency;
  int64_t price, stock, popularity;
  const char *attributes; /* JSON object text */
  const char *images;     /* JSON array text */
  variant_in_t *variants;
  size_t nvariants;
  int64_t created_ms;     /* 0: now (set by the demo loader only) */
} product_in_t;

/* Checks a create (partial = 0: sku, name, kind, brand, category, price and currency are
 * required) or a PATCH body (partial = 1: any subset). Refuses unknown fields, wrong types,
 * values out of range and '$' keys. On success fills *out (arena-owned) and returns 0; on
 * failure returns PS_EINVAL with *field naming the offending input (static or arena string)
 * and msg holding a sentence. Whether the category exists is the caller's check. */
int product_validate(json_t *body, int partial, ps_arena_t *a, product_in_t *out,
                     const char **field, char *msg, size_t msglen);

/* The known product kinds, NULL-terminated. */
extern const char *const product_kinds[];

/* Returns 1 when s is a well-formed SKU: 1..64 of [A-Za-z0-9._-]. */
int product_sku_ok(const char *s);
/* Returns 1 when s is a well-formed attribute name: 1..64 of [A-Za-z0-9_]. */
int product_attr_name_ok(const char *s);

/* The keys of a product document, in the order documents have them. A lookup may ask for a
 * subset: bit i of a field mask stands for product_doc_fields[i]; mask 0 is the whole
 * document (validate.c). */
enum { PRODUCT_DOC_NFIELDS = 16 };
extern const char *const product_doc_fields[PRODUCT_DOC_NFIELDS];
/* The bit of name in a field mask, or 0 when name is not a key of the document. */
unsigned product_doc_field_bit(const char *name);

/* --- listing ---------------------------------------------------------------------------- */

typedef enum { SORT_NEWEST = 0, SORT_PRICE, SORT_PRICE_DESC, SORT_NAME, SORT_POPULARITY } sort_t;

/* Parses "price", "-price", "name", "newest", "popularity"; returns 0 or PS_EINVAL. */
int product_sort_parse(const char *s, sort_t *out);
const char *product_sort_name(sort_t s);
/* 1 when the sort key is a string (name), 0 when an integer. */
int product_sort_key_is_text(sort_t s);

/* Where a page ends: the last item's sort key and id. */
typedef struct {
  sort_t sort;
  int64_t key_i;
  const char *key_s; /* for SORT_NAME */
  const char *id;
} cursor_t;

/* Encodes c as opaque base64url text in the arena. */
char *cursor_encode(ps_arena_t *a, const cursor_t *c);
/* Decodes text; PS_EINVAL when it is not a cursor we made or was made for another sort. */
int cursor_decode(ps_arena_t *a, const char *text, sort_t sort, cursor_t *out);

typedef struct {
  const char *name, *value;
} attr_filter_t;

typedef struct {
  const char *q;        /* substring of name or brand, or NULL */
  const char *category; /* slug: the category and its subcategories, or NULL */
  const char *brand;    /* exact, or NULL */
  int64_t price_min, price_max; /* -1 when absent */
  attr_filter_t attrs[PRODUCT_QUERY_ATTRS_MAX];
  int nattrs;
  int in_stock;
  sort_t sort;
  int limit;
  int has_cursor;
  cursor_t cursor;
} product_query_t;

/* --- reservations ----------------------------------------------------------------------- */

typedef struct {
  const char *product_id;
  const char *variant; /* variant SKU or NULL */
  int64_t quantity;
} reservation_item_t;

/* --- service state ---------------------------------------------------------------------- */

typedef struct product_store product_store_t;

typedef struct {
  const char *store_url;
  ps_jwt_keys_t keys;
  const char *internal_token; /* X-Internal-Token secret, or NULL */
  long long sweep_interval_ms;
} product_service_t;

typedef struct {
  product_store_t *store;
} product_thread_t;

extern const ps_route_t product_routes[];
extern const size_t product_nroutes;

/* Runs one sweep of expired reservations on this thread's store (main.c's timer). */
void product_sweep(product_store_t *s);

/* Fills an empty store with the demo catalog (demo.c): n products, a category tree,
 * deterministic for a given seed. Returns 0 or a PS_E* code. */
int product_demo_load(product_store_t *s, int n, uint32_t seed);


#endif
