/* validate.c - checking a product create or update body into a product_in_t, and the small
 * parsers of listing parameters (sort names, SKUs, attribute names). Pure functions: no
 * store, no HTTP, so unit tests call them directly. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "polyshop/error.h"
#include "polyshop/json.h"
#include "product.h"

const char *const product_kinds[] = {"phone",  "laptop", "electronics", "clothing", "shoes",
                                      "food",   "drink",  "book",        "home",     "other",
                                      NULL};

const char *const product_doc_fields[PRODUCT_DOC_NFIELDS] = {
    "id",       "sku",   "name",     "description", "kind",   "brand",
    "category", "price", "currency", "stock",       "attributes", "variants",
    "images",   "popularity", "created_at", "updated_at"};

unsigned product_doc_field_bit(const char *name) {
  for (int i = 0; i < PRODUCT_DOC_NFIELDS; i++)
    if (strcmp(product_doc_fields[i], name) == 0) return 1u << i;
  return 0;
}

typedef struct {
  ps_arena_t *a;
  const char **field;
  char *msg;
  size_t msglen;
} vctx_t;

static int fail(vctx_t *v, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(vctx_t *v, const char *field, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->msg, v->msglen, fmt, ap);
  va_end(ap);
  *v->field = field;
  return PS_EINVAL;
}

int product_sku_ok(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > PRODUCT_SKU_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_' || c == '.'))
      return 0;
  }
  return 1;
}

int product_attr_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > PRODUCT_ATTR_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
      return 0;
  }
  return 1;
}

/* A string member: present (1), absent or null (0), or an error. Checks length in bytes and
 * refuses embedded NUL bytes. */
static int get_str(vctx_t *v, json_t *obj, const char *key, const char *field, size_t min,
                   size_t max, const char **out) {
  json_t *j = json_object_get(obj, key);
  if (!j || json_is_null(j)) return 0;
  if (!json_is_string(j)) return fail(v, field, "%s must be a string", field);
  size_t len = json_string_length(j);
  if (strlen(json_string_value(j)) != len)
    return fail(v, field, "%s must not contain NUL characters", field);
  if (len < min || len > max)
    return fail(v, field, "%s must have %zu to %zu characters", field, min, max);
  *out = json_string_value(j);
  return 1;
}

static int get_int(vctx_t *v, json_t *obj, const char *key, const char *field, int64_t min,
                   int64_t max, int64_t *out) {
  json_t *j = json_object_get(obj, key);
  if (!j || json_is_null(j)) return 0;
  if (!json_is_integer(j)) return fail(v, field, "%s must be a whole number", field);
  json_int_t n = json_integer_value(j);
  if (n < min || n > max)
    return fail(v, field, "%s must be between %lld and %lld", field, (long long)min,
                (long long)max);
  *out = (int64_t)n;
  return 1;
}

static int scalar_ok(json_t *j) {
  return json_is_string(j) || json_is_integer(j) || json_is_real(j) || json_is_boolean(j);
}

/* Free-form attributes: an object of scalars or arrays of scalars, names [A-Za-z0-9_]. The
 * text is re-serialised (sorted keys) so the store gets canonical JSON. */
static int check_attributes(vctx_t *v, json_t *j, const char *field, const char **out) {
  if (!json_is_object(j)) return fail(v, field, "%s must be an object", field);
  if (json_object_size(j) > PRODUCT_ATTRS_MAX)
    return fail(v, field, "%s may have at most %d entries", field, PRODUCT_ATTRS_MAX);
  const char *key;
  json_t *val;
  json_object_foreach(j, key, val) {
    char *f = ps_arena_sprintf(v->a, "%s.%s", field, key);
    if (!product_attr_name_ok(key))
      return fail(v, f, "attribute names are 1 to %d letters, digits or '_'",
                  PRODUCT_ATTR_NAME_MAX);
    json_t *items = json_is_array(val) ? val : NULL;
    if (items && json_array_size(items) > PRODUCT_ATTR_ARRAY_MAX)
      return fail(v, f, "%s may list at most %d values", f, PRODUCT_ATTR_ARRAY_MAX);
    size_t i, n = items ? json_array_size(items) : 1;
    for (i = 0; i < n; i++) {
      json_t *x = items ? json_array_get(items, i) : val;
      if (!scalar_ok(x))
        return fail(v, f, "%s must be a string, number, boolean or a list of them", f);
      if (json_is_string(x) && (json_string_length(x) > PRODUCT_ATTR_VALUE_MAX ||
                                strlen(json_string_value(x)) != json_string_length(x)))
        return fail(v, f, "%s values have at most %d characters", f, PRODUCT_ATTR_VALUE_MAX);
    }
  }
  *out = ps_json_dump(v->a, j);
  return 0;
}

static int check_images(vctx_t *v, json_t *j, const char **out) {
  if (!json_is_array(j)) return fail(v, "images", "images must be an array of strings");
  if (json_array_size(j) > PRODUCT_IMAGES_MAX)
    return fail(v, "images", "images may list at most %d entries", PRODUCT_IMAGES_MAX);
  size_t i;
  json_t *x;
  json_array_foreach(j, i, x) {
    size_t len = json_is_string(x) ? json_string_length(x) : 0;
    if (!len || len > PRODUCT_IMAGE_MAX || strlen(json_string_value(x)) != len)
      return fail(v, ps_arena_sprintf(v->a, "images[%zu]", i),
                  "images[%zu] must be a string of 1 to %d characters", i, PRODUCT_IMAGE_MAX);
  }
  *out = ps_json_dump(v->a, j);
  return 0;
}

static int check_variants(vctx_t *v, json_t *j, product_in_t *out) {
  static const char *const allowed[] = {"sku", "attributes", "stock", "price", NULL};
  if (!json_is_array(j)) return fail(v, "variants", "variants must be an array");
  size_t n = json_array_size(j);
  if (n > PRODUCT_VARIANTS_MAX)
    return fail(v, "variants", "variants may list at most %d entries", PRODUCT_VARIANTS_MAX);
  out->variants = ps_arena_alloc(v->a, (n ? n : 1) * sizeof(variant_in_t));
  out->nvariants = n;
  for (size_t i = 0; i < n; i++) {
    json_t *x = json_array_get(j, i);
    char *base = ps_arena_sprintf(v->a, "variants[%zu]", i);
    if (!json_is_object(x)) return fail(v, base, "%s must be an object", base);
    const char *key;
    json_t *val;
    json_object_foreach(x, key, val) {
      int ok = 0;
      for (const char *const *p = allowed; *p && !ok; p++) ok = strcmp(*p, key) == 0;
      if (!ok) {
        char *f = ps_arena_sprintf(v->a, "%s.%s", base, key);
        return fail(v, f, "%s is not a field of a variant", f);
      }
    }
    variant_in_t *vi = &out->variants[i];
    char *f = ps_arena_sprintf(v->a, "%s.sku", base);
    int rc = get_str(v, x, "sku", f, 1, PRODUCT_SKU_MAX, &vi->sku);
    if (rc < 0) return rc;
    if (rc == 0) return fail(v, f, "%s is required", f);
    if (!product_sku_ok(vi->sku))
      return fail(v, f, "a SKU is 1 to %d letters, digits, '-', '_' or '.'", PRODUCT_SKU_MAX);
    for (size_t k = 0; k < i; k++)
      if (strcmp(out->variants[k].sku, vi->sku) == 0)
        return fail(v, f, "%s repeats the SKU of variants[%zu]", f, k);
    f = ps_arena_sprintf(v->a, "%s.stock", base);
    vi->stock = 0;
    if ((rc = get_int(v, x, "stock", f, 0, PRODUCT_STOCK_MAX, &vi->stock)) < 0) return rc;
    f = ps_arena_sprintf(v->a, "%s.price", base);
    vi->price = -1;
    if ((rc = get_int(v, x, "price", f, 0, PS_MONEY_MAX, &vi->price)) < 0) return rc;
    json_t *attrs = json_object_get(x, "attributes");
    vi->attributes = "{}";
    if (attrs && !json_is_null(attrs)) {
      f = ps_arena_sprintf(v->a, "%s.attributes", base);
      if ((rc = check_attributes(v, attrs, f, &vi->attributes))) return rc;
    }
  }
  return 0;
}

static int nonblank(const char *s) {
  for (; *s; s++)
    if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') return 1;
  return 0;
}

/* Refuses '$' keys at any depth (query operators have no place in a product) and any
 * top-level key that is not a field a client can set. */
static int check_keys(vctx_t *v, json_t *body) {
  static const char *const allowed[] = {"sku",   "name",     "description", "kind",
                                        "brand", "category", "price",       "currency",
                                        "stock", "attributes", "variants",  "images",
                                        "popularity", NULL};
  const char *key;
  json_t *val;
  json_object_foreach(body, key, val) {
    if (key[0] == '$' || ps_json_has_operator_key(val))
      return fail(v, ps_arena_strdup(v->a, key), "keys starting with '$' are not allowed");
  }
  json_object_foreach(body, key, val) {
    int ok = 0;
    for (const char *const *p = allowed; *p && !ok; p++) ok = strcmp(*p, key) == 0;
    /* id, created_at... are the server's: a client may echo a document back, but a
     * PATCH that tries to set them is refused rather than silently ignored. */
    if (!ok)
      return fail(v, ps_arena_strdup(v->a, key), "%s is not a field a client can set", key);
  }
  return 0;
}

/* The string fields: type and length, and presence (a PATCH may leave out any of them but
 * cannot null a required one). Sets their bits in out->fields. */
static int get_strings(vctx_t *v, json_t *body, int partial, product_in_t *out) {
  struct {
    const char *key;
    unsigned bit;
    size_t min, max;
    const char **dst;
    int required;
  } strs[] = {
      {"sku", PF_SKU, 1, PRODUCT_SKU_MAX, &out->sku, 1},
      {"name", PF_NAME, 1, PRODUCT_NAME_MAX, &out->name, 1},
      {"description", PF_DESCRIPTION, 0, PRODUCT_DESCRIPTION_MAX, &out->description, 0},
      {"kind", PF_KIND, 1, 32, &out->kind, 1},
      {"brand", PF_BRAND, 1, PRODUCT_BRAND_MAX, &out->brand, 1},
      {"category", PF_CATEGORY, 1, 64, &out->category, 1},
      {"currency", PF_CURRENCY, 3, 3, &out->currency, 1},
  };
  for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
    int rc = get_str(v, body, strs[i].key, strs[i].key, strs[i].min, strs[i].max, strs[i].dst);
    if (rc < 0) return rc;
    json_t *j = json_object_get(body, strs[i].key);
    if (rc == 0 && j && json_is_null(j) && strs[i].required)
      return fail(v, strs[i].key, "%s cannot be null", strs[i].key);
    if (rc == 0 && !partial && strs[i].required)
      return fail(v, strs[i].key, "%s is required", strs[i].key);
    if (rc == 1) out->fields |= strs[i].bit;
  }
  return 0;
}

/* What the given strings must say, once their type and length are known good. */
static int check_string_values(vctx_t *v, const product_in_t *out) {
  if ((out->fields & PF_SKU) && !product_sku_ok(out->sku))
    return fail(v, "sku", "a SKU is 1 to %d letters, digits, '-', '_' or '.'", PRODUCT_SKU_MAX);
  if ((out->fields & PF_NAME) && !nonblank(out->name))
    return fail(v, "name", "name must not be blank");
  if ((out->fields & PF_BRAND) && !nonblank(out->brand))
    return fail(v, "brand", "brand must not be blank");
  if (out->fields & PF_KIND) {
    int ok = 0;
    for (const char *const *k = product_kinds; *k && !ok; k++) ok = strcmp(*k, out->kind) == 0;
    if (!ok)
      return fail(v, "kind",
                  "kind must be one of phone, laptop, electronics, clothing, shoes, food, "
                  "drink, book, home, other");
  }
  if ((out->fields & PF_CURRENCY) && !ps_currency_valid(out->currency))
    return fail(v, "currency", "currency must be an upper-case ISO 4217 code the shop takes (EUR, USD, GBP, ...)");
  if ((out->fields & PF_CATEGORY) && !product_sku_ok(out->category))
    return fail(v, "category", "category must be a category slug");
  return 0;
}

/* price (required on create, never nullable), stock and popularity. */
static int get_numbers(vctx_t *v, json_t *body, int partial, product_in_t *out) {
  int rc = get_int(v, body, "price", "price", 0, PS_MONEY_MAX, &out->price);
  if (rc < 0) return rc;
  if (rc == 1) out->fields |= PF_PRICE;
  else if (json_is_null(json_object_get(body, "price")) || !partial)
    return fail(v, "price", "price is required (an integer in minor units)");
  if ((rc = get_int(v, body, "stock", "stock", 0, PRODUCT_STOCK_MAX, &out->stock)) < 0)
    return rc;
  if (rc == 1) out->fields |= PF_STOCK;
  if ((rc = get_int(v, body, "popularity", "popularity", 0, 1000000000000ll,
                    &out->popularity)) < 0)
    return rc;
  if (rc == 1) out->fields |= PF_POPULARITY;
  return 0;
}

/* attributes, images and variants: a null one counts as absent. Runs after get_numbers,
 * since a product with variants must not also set its own stock. */
static int get_structures(vctx_t *v, json_t *body, product_in_t *out) {
  int rc;
  json_t *j = json_object_get(body, "attributes");
  out->attributes = "{}";
  if (j && !json_is_null(j)) {
    if ((rc = check_attributes(v, j, "attributes", &out->attributes))) return rc;
    out->fields |= PF_ATTRIBUTES;
  }
  j = json_object_get(body, "images");
  out->images = "[]";
  if (j && !json_is_null(j)) {
    if ((rc = check_images(v, j, &out->images))) return rc;
    out->fields |= PF_IMAGES;
  }
  j = json_object_get(body, "variants");
  if (j && !json_is_null(j)) {
    if ((rc = check_variants(v, j, out))) return rc;
    out->fields |= PF_VARIANTS;
    for (size_t i = 0; i < out->nvariants; i++)
      if (out->sku && strcmp(out->variants[i].sku, out->sku) == 0)
        return fail(v, ps_arena_sprintf(v->a, "variants[%zu].sku", i),
                    "a variant cannot share the product's SKU");
    if (out->nvariants && (out->fields & PF_STOCK))
      return fail(v, "stock",
                  "a product with variants has the sum of their stock; set each variant's stock");
  }
  return 0;
}

/* The checks run in a fixed order (keys, strings, numbers, structures) so a body with
 * several faults always names the same field first. */
int product_validate(json_t *body, int partial, ps_arena_t *a, product_in_t *out,
                     const char **field, char *msg, size_t msglen) {
  vctx_t v = {a, field, msg, msglen};
  memset(out, 0, sizeof(*out));
  *field = NULL;
  msg[0] = '\0';
  if (!json_is_object(body)) return fail(&v, NULL, "the body must be a JSON object");
  int rc;
  if ((rc = check_keys(&v, body)) || (rc = get_strings(&v, body, partial, out)) ||
      (rc = check_string_values(&v, out)))
    return rc;
  if (!(out->fields & PF_DESCRIPTION) && !partial) out->description = "";
  if ((rc = get_numbers(&v, body, partial, out)) || (rc = get_structures(&v, body, out)))
    return rc;
  /* A create stores every optional field, with its default when the body left it out. */
  if (!partial && !(out->fields & PF_STOCK)) out->stock = 0;
  if (!partial) out->fields |= PF_DESCRIPTION | PF_STOCK | PF_ATTRIBUTES | PF_IMAGES;
  return 0;
}

/* --- listing parameters ---------------------------------------------------------------- */

static const char *const sort_names[] = {
    [SORT_NEWEST] = "newest", [SORT_PRICE] = "price", [SORT_PRICE_DESC] = "-price",
    [SORT_NAME] = "name", [SORT_POPULARITY] = "popularity"};

int product_sort_parse(const char *s, sort_t *out) {
  for (size_t i = 0; i < sizeof(sort_names) / sizeof(sort_names[0]); i++) {
    if (strcmp(s, sort_names[i]) == 0) {
      *out = (sort_t)i;
      return 0;
    }
  }
  return PS_EINVAL;
}

const char *product_sort_name(sort_t s) { return sort_names[s]; }

int product_sort_key_is_text(sort_t s) { return s == SORT_NAME; }
