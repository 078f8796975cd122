/* routes.c - the product service's HTTP handlers and its route table: the public catalog
 * (listing, detail, categories), admin CRUD, and the internal routes the order service and
 * the search service call (reservations, lookup, outbox). */
#include <errno.h>
#include <event2/http.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "polyshop/error.h"
#include "polyshop/json.h"
#include "polyshop/log.h"
#include "polyshop/problem.h"
#include "polyshop/uuid.h"
#include "product.h"
#include "store.h"

static product_store_t *store_of(ps_req_t *req) {
  return ((product_thread_t *)req->thread_ctx)->store;
}

static int64_t now_s(void) { return (int64_t)time(NULL); }

static void reply_doc(ps_req_t *req, int status, const char *json) {
  ps_reply_raw(req, status, "application/json", json, strlen(json));
}

/* Store failures that are not about the input: 503 for an unreachable or busy store. */
static void reply_store_error(ps_req_t *req, int rc) {
  ps_reply_error(req, rc, rc == PS_ENOTFOUND ? "no product has this id" : NULL);
}

/* Internal routes: the shared secret (X-Internal-Token) or an admin token, by the core's one
 * rule (ps_auth_internal_or_reply; docs/design.md, Authentication). */
static int internal_or_reply(ps_req_t *req) {
  const product_service_t *svc = req->service_ctx;
  return ps_auth_internal_or_reply(req, svc->internal_token);
}

/* --- GET /api/v1/products --------------------------------------------------------------- */

typedef struct {
  ps_req_t *req;
  product_query_t *q;
  const char *sort, *cursor, *limit, *price_min, *price_max, *in_stock;
  const char *bad_key, *bad_why;
} list_parse_t;

static int set_once(list_parse_t *p, const char **slot, const char *key, const char *value) {
  if (*slot) {
    p->bad_key = key;
    p->bad_why = "is given more than once";
    return 0;
  }
  *slot = value;
  return 1;
}

static void list_param_cb(void *arg, const char *key, const char *value) {
  list_parse_t *p = arg;
  product_query_t *q = p->q;
  if (p->bad_key) return;
  ps_arena_t *a = &p->req->arena;
  /* libevent decodes query values but not keys: decode them here, so "brand%5B%24ne%5D" is
   * seen (and named in the answer) as "brand[$ne]". */
  if (strchr(key, '%') || strchr(key, '+')) {
    size_t len = 0;
    char *dec = evhttp_uridecode(key, 1, &len);
    if (!dec || strlen(dec) != len) {
      free(dec);
      p->bad_key = "?";
      p->bad_why = "parameter name is not valid";
      return;
    }
    key = ps_arena_strdup(a, dec);
    free(dec); /* libevent allocated it */
  }
  if (strchr(key, '$') || strchr(key, '[')) {
    /* brand[$ne]=x and friends: operators are never read from a query string. */
    p->bad_key = ps_arena_strdup(a, key);
    p->bad_why = "is not a parameter of this listing (operators are not supported)";
    return;
  }
  if (strcmp(key, "q") == 0) {
    if (set_once(p, &q->q, key, value) && strlen(value) > 200)
      p->bad_key = "q", p->bad_why = "must have at most 200 characters";
  } else if (strcmp(key, "category") == 0) {
    if (set_once(p, &q->category, key, value) && !product_sku_ok(value))
      p->bad_key = "category", p->bad_why = "must be a category slug";
  } else if (strcmp(key, "brand") == 0) {
    if (set_once(p, &q->brand, key, value) && (!*value || strlen(value) > PRODUCT_BRAND_MAX))
      p->bad_key = "brand", p->bad_why = "must have 1 to 100 characters";
  } else if (strcmp(key, "price_min") == 0) {
    set_once(p, &p->price_min, key, value);
  } else if (strcmp(key, "price_max") == 0) {
    set_once(p, &p->price_max, key, value);
  } else if (strcmp(key, "in_stock") == 0) {
    set_once(p, &p->in_stock, key, value);
  } else if (strcmp(key, "sort") == 0) {
    set_once(p, &p->sort, key, value);
  } else if (strcmp(key, "limit") == 0) {
    set_once(p, &p->limit, key, value);
  } else if (strcmp(key, "cursor") == 0) {
    set_once(p, &p->cursor, key, value);
  } else if (strncmp(key, "attr.", 5) == 0) {
    if (!product_attr_name_ok(key + 5)) {
      p->bad_key = ps_arena_strdup(a, key);
      p->bad_why = "must name an attribute: attr.NAME with NAME made of letters, digits, '_'";
    } else if (q->nattrs == PRODUCT_QUERY_ATTRS_MAX) {
      p->bad_key = ps_arena_strdup(a, key);
      p->bad_why = "is one attribute filter too many (at most 8)";
    } else if (strlen(value) > PRODUCT_ATTR_VALUE_MAX) {
      p->bad_key = ps_arena_strdup(a, key);
      p->bad_why = "is too long";
    } else {
      q->attrs[q->nattrs].name = key + 5;
      q->attrs[q->nattrs].value = value;
      q->nattrs++;
    }
  } else {
    p->bad_key = ps_arena_strdup(a, key);
    p->bad_why = "is not a parameter of this listing";
  }
}

static int parse_int_param(const char *s, long long min, long long max, long long *out) {
  if (!s || !*s) return PS_EINVAL;
  char *end;
  errno = 0;
  long long n = strtoll(s, &end, 10);
  if (errno || *end || n < min || n > max) return PS_EINVAL;
  *out = n;
  return 0;
}

/* One price bound in minor units; an absent one leaves *out as it is (-1: no bound). */
static int price_param_or_reply(ps_req_t *req, const char *name, const char *s, int64_t *out) {
  long long n;
  if (!s) return 0;
  if (parse_int_param(s, 0, PS_MONEY_MAX, &n)) {
    ps_reply_problem(req, PS_PROBLEM_BAD_QUERY, name,
                     "%s must be a whole number of minor units, 0 to %lld", name,
                     (long long)PS_MONEY_MAX);
    return PS_EINVAL;
  }
  *out = n;
  return 0;
}

/* sort, limit and cursor. The sort is parsed first because a cursor carries the key of one
 * ordering: a cursor given out for another sort is refused, not misread. */
static int page_params_or_reply(ps_req_t *req, const list_parse_t *p, product_query_t *q) {
  long long n;
  q->sort = SORT_NEWEST;
  if (p->sort && product_sort_parse(p->sort, &q->sort)) {
    ps_reply_problem(req, PS_PROBLEM_BAD_QUERY, "sort",
                     "sort must be one of price, -price, name, newest, popularity");
    return PS_EINVAL;
  }
  q->limit = PRODUCT_LIST_LIMIT_DEFAULT;
  if (p->limit) {
    if (parse_int_param(p->limit, 1, PRODUCT_LIST_LIMIT_MAX, &n)) {
      ps_reply_problem(req, PS_PROBLEM_BAD_QUERY, "limit",
                       "limit must be a whole number from 1 to %d", PRODUCT_LIST_LIMIT_MAX);
      return PS_EINVAL;
    }
    q->limit = (int)n;
  }
  if (p->cursor) {
    if (cursor_decode(&req->arena, p->cursor, q->sort, &q->cursor)) {
      ps_reply_problem(req, PS_PROBLEM_BAD_QUERY, "cursor",
                       "cursor is not one this listing gave out for sort=%s",
                       product_sort_name(q->sort));
      return PS_EINVAL;
    }
    q->has_cursor = 1;
  }
  return 0;
}

/* Reads the query string into q (its strings point into the request), or answers 400
 * naming the first bad parameter and returns PS_EINVAL. */
static int list_query_or_reply(ps_req_t *req, product_query_t *q) {
  memset(q, 0, sizeof(*q));
  q->price_min = q->price_max = -1;
  list_parse_t p = {.req = req, .q = q};
  ps_req_query_each(req, list_param_cb, &p);
  if (p.bad_key) {
    ps_reply_problem(req, PS_PROBLEM_BAD_QUERY, p.bad_key, "%s %s", p.bad_key, p.bad_why);
    return PS_EINVAL;
  }
  if (price_param_or_reply(req, "price_min", p.price_min, &q->price_min) ||
      price_param_or_reply(req, "price_max", p.price_max, &q->price_max))
    return PS_EINVAL;
  if (q->price_min >= 0 && q->price_max >= 0 && q->price_min > q->price_max) {
    ps_reply_problem(req, PS_PROBLEM_BAD_QUERY, "price_min", "price_min is above price_max");
    return PS_EINVAL;
  }
  if (p.in_stock) {
    if (strcmp(p.in_stock, "true") == 0 || strcmp(p.in_stock, "1") == 0) {
      q->in_stock = 1;
    } else if (strcmp(p.in_stock, "false") != 0 && strcmp(p.in_stock, "0") != 0) {
      ps_reply_problem(req, PS_PROBLEM_BAD_QUERY, "in_stock", "in_stock must be true or false");
      return PS_EINVAL;
    }
  }
  return page_params_or_reply(req, &p, q);
}

/* The page: the stored documents are already JSON, so they are copied side by side rather
 * than parsed and dumped again. The store returns one row past the limit when there is a
 * next page; the cursor then points after the last row shown. */
static void reply_list(ps_req_t *req, const product_query_t *q, const product_row_t *rows,
                       size_t nrows) {
  size_t shown = nrows > (size_t)q->limit ? (size_t)q->limit : nrows;
  size_t total = 64;
  for (size_t i = 0; i < shown; i++) total += strlen(rows[i].json) + 1;
  const char *next = NULL;
  if (nrows > shown) {
    cursor_t c = {q->sort, rows[shown - 1].key_i, rows[shown - 1].key_s, rows[shown - 1].id};
    next = cursor_encode(&req->arena, &c);
    total += strlen(next);
  }
  char *out = ps_arena_alloc(&req->arena, total), *o = out;
  o += sprintf(o, "{\"items\":[");
  for (size_t i = 0; i < shown; i++) {
    if (i) *o++ = ',';
    size_t len = strlen(rows[i].json);
    memcpy(o, rows[i].json, len);
    o += len;
  }
  if (next)
    o += sprintf(o, "],\"next_cursor\":\"%s\"}", next); /* base64url: nothing to escape */
  else
    o += sprintf(o, "],\"next_cursor\":null}");
  ps_reply_raw(req, 200, "application/json", out, (size_t)(o - out));
}

static void handle_list(ps_req_t *req) {
  product_query_t q;
  if (list_query_or_reply(req, &q)) return;
  product_row_t *rows;
  size_t nrows;
  product_store_t *s = store_of(req);
  int rc = s->ops->product_list(s, &req->arena, &q, &rows, &nrows);
  if (rc) {
    reply_store_error(req, rc);
    return;
  }
  reply_list(req, &q, rows, nrows);
}

/* --- product CRUD ---------------------------------------------------------------------- */

static void handle_get(ps_req_t *req) {
  const char *id = ps_req_param(req, "id");
  char *doc;
  product_store_t *s = store_of(req);
  int rc = id ? s->ops->product_get(s, &req->arena, id, &doc) : PS_ENOTFOUND;
  if (rc) {
    reply_store_error(req, rc);
    return;
  }
  reply_doc(req, 200, doc);
}

/* Validates a create (partial 0) or PATCH (partial 1) body, the category included. */
static int product_in_or_reply(ps_req_t *req, int partial, product_in_t *in) {
  json_t *body;
  if (ps_json_body_or_reply(req, &body)) return PS_EINVAL;
  const char *field;
  char msg[256];
  if (product_validate(body, partial, &req->arena, in, &field, msg, sizeof(msg))) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, field, "%s", msg);
    return PS_EINVAL;
  }
  if (in->fields & PF_CATEGORY) {
    product_store_t *s = store_of(req);
    int rc = s->ops->category_exists(s, in->category);
    if (rc == PS_ENOTFOUND) {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, "category",
                       "category %s does not exist (see GET /api/v1/categories)", in->category);
      return PS_EINVAL;
    }
    if (rc) {
      reply_store_error(req, rc);
      return rc;
    }
  }
  return 0;
}

static void handle_create(ps_req_t *req) {
  if (ps_auth_admin_or_reply(req)) return;
  product_in_t in;
  if (product_in_or_reply(req, 0, &in)) return;
  const char *id = ps_uuid_v4(&req->arena);
  char *doc;
  product_store_t *s = store_of(req);
  int rc = s->ops->product_create(s, &req->arena, id, &in, now_s(), &doc);
  if (rc == PS_EEXISTS) {
    ps_reply_problem(req, PS_PROBLEM_DUPLICATE, "sku",
                     "a product or variant already has one of these SKUs");
    return;
  }
  if (rc) {
    reply_store_error(req, rc);
    return;
  }
  ps_reply_header(req, "Location", ps_arena_sprintf(&req->arena, "/api/v1/products/%s", id));
  reply_doc(req, 201, doc);
}

static void handle_update(ps_req_t *req) {
  if (ps_auth_admin_or_reply(req)) return;
  product_in_t in;
  if (product_in_or_reply(req, 1, &in)) return;
  const char *id = ps_req_param(req, "id");
  char *doc;
  const char *why = NULL;
  product_store_t *s = store_of(req);
  int rc = id ? s->ops->product_update(s, &req->arena, id, &in, now_s(), &doc, &why)
              : PS_ENOTFOUND;
  if (rc == PS_EEXISTS) {
    ps_reply_problem(req, PS_PROBLEM_DUPLICATE, "sku",
                     "a product or variant already has one of these SKUs");
  } else if (rc == PS_EINVAL) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "stock", "%s", why ? why : "invalid update");
  } else if (rc) {
    reply_store_error(req, rc);
  } else {
    reply_doc(req, 200, doc);
  }
}

static void handle_delete(ps_req_t *req) {
  if (ps_auth_admin_or_reply(req)) return;
  const char *id = ps_req_param(req, "id");
  product_store_t *s = store_of(req);
  int rc = id ? s->ops->product_delete(s, id, now_s()) : PS_ENOTFOUND;
  if (rc) {
    reply_store_error(req, rc);
    return;
  }
  ps_reply_json(req, 204, NULL);
}

/* --- categories ------------------------------------------------------------------------ */

static void handle_categories(ps_req_t *req) {
  char *tree;
  product_store_t *s = store_of(req);
  int rc = s->ops->categories_json(s, &req->arena, &tree);
  if (rc) {
    reply_store_error(req, rc);
    return;
  }
  reply_doc(req, 200, ps_arena_sprintf(&req->arena, "{\"items\":%s}", tree));
}

static void handle_category_put(ps_req_t *req) {
  static const char *const allowed[] = {"slug", "name", "parent", NULL};
  if (ps_auth_admin_or_reply(req)) return;
  json_t *body;
  const char *slug, *name, *parent;
  if (ps_json_body_or_reply(req, &body) || ps_json_only_keys_or_reply(req, body, allowed) ||
      ps_json_str_or_reply(req, body, "slug", 1, 64, &slug) ||
      ps_json_str_or_reply(req, body, "name", 1, 100, &name) ||
      ps_json_opt_str_or_reply(req, body, "parent", 1, 64, &parent))
    return;
  if (!product_sku_ok(slug)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "slug",
                     "a slug is letters, digits, '-', '_' or '.'");
    return;
  }
  product_store_t *s = store_of(req);
  if (parent) {
    int rc = s->ops->category_exists(s, parent);
    if (rc == PS_ENOTFOUND) {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, "parent", "parent %s is not a category",
                       parent);
      return;
    }
    if (rc) {
      reply_store_error(req, rc);
      return;
    }
  }
  int rc = s->ops->category_put(s, slug, name, parent);
  if (rc == PS_EINVAL) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "parent",
                     "%s is %s itself or one of its subcategories: that would make a cycle",
                     parent, slug);
    return;
  }
  if (rc) {
    reply_store_error(req, rc);
    return;
  }
  json_t *out = json_pack("{s:s, s:s, s:s?}", "slug", slug, "name", name, "parent", parent);
  ps_reply_json(req, 201, out);
}

/* --- internal: reservations ------------------------------------------------------------ */

static int item_or_reply(ps_req_t *req, json_t *x, size_t i, reservation_item_t *it) {
  static const char *const allowed[] = {"product_id", "variant", "quantity", NULL};
  ps_arena_t *a = &req->arena;
  char base[32];
  snprintf(base, sizeof(base), "items[%zu]", i);
  if (ps_json_only_keys_at_or_reply(req, x, allowed, base)) return PS_EINVAL;
  json_t *pid = json_object_get(x, "product_id");
  if (!json_is_string(pid) || json_string_length(pid) < 1 || json_string_length(pid) > 64 ||
      strlen(json_string_value(pid)) != json_string_length(pid)) {
    const char *f = ps_arena_sprintf(a, "%s.product_id", base);
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s must be a product id", f);
    return PS_EINVAL;
  }
  it->product_id = json_string_value(pid);
  json_t *var = json_object_get(x, "variant");
  it->variant = NULL;
  if (var && !json_is_null(var)) {
    if (!json_is_string(var) || !product_sku_ok(json_string_value(var)) ||
        strlen(json_string_value(var)) != json_string_length(var)) {
      const char *f = ps_arena_sprintf(a, "%s.variant", base);
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s must be a variant SKU", f);
      return PS_EINVAL;
    }
    it->variant = json_string_value(var);
  }
  json_t *q = json_object_get(x, "quantity");
  if (!json_is_integer(q) || json_integer_value(q) < 1 ||
      json_integer_value(q) > RESERVATION_QTY_MAX) {
    const char *f = ps_arena_sprintf(a, "%s.quantity", base);
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s must be a whole number from 1 to %d", f,
                     RESERVATION_QTY_MAX);
    return PS_EINVAL;
  }
  it->quantity = json_integer_value(q);
  return 0;
}

static void handle_reserve(ps_req_t *req) {
  static const char *const allowed[] = {"items", "ttl_seconds", "reservation_id", NULL};
  if (internal_or_reply(req)) return;
  json_t *body, *items;
  long long ttl;
  int has_ttl;
  const char *rid;
  if (ps_json_body_or_reply(req, &body) || ps_json_only_keys_or_reply(req, body, allowed) ||
      ps_json_array_or_reply(req, body, "items", 1, RESERVATION_ITEMS_MAX, &items) ||
      ps_json_opt_int_or_reply(req, body, "ttl_seconds", 1, RESERVATION_TTL_MAX, &ttl,
                               &has_ttl) ||
      ps_json_opt_str_or_reply(req, body, "reservation_id", 1, 64, &rid))
    return;
  if (rid && !product_sku_ok(rid)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "reservation_id",
                     "reservation_id is letters, digits, '-', '_' or '.'");
    return;
  }
  size_t n = json_array_size(items);
  reservation_item_t *its = ps_arena_alloc(&req->arena, n * sizeof(*its));
  for (size_t i = 0; i < n; i++)
    if (item_or_reply(req, json_array_get(items, i), i, &its[i])) return;
  if (!rid) rid = ps_uuid_v4(&req->arena);
  char *doc;
  int existing;
  reservation_fail_t fail;
  product_store_t *s = store_of(req);
  int rc = s->ops->reserve(s, &req->arena, rid, its, n, now_s(),
                           has_ttl ? ttl : RESERVATION_TTL_DEFAULT, &doc, &existing, &fail);
  const reservation_item_t *bad = &its[fail.index < n ? fail.index : 0];
  switch (rc) {
    case 0:
      reply_doc(req, existing ? 200 : 201, doc);
      return;
    case PS_EINSUFFICIENT:
      ps_reply_problem(req, PS_PROBLEM_INSUFFICIENT_STOCK,
                       ps_arena_sprintf(&req->arena, "items[%zu].quantity", fail.index),
                       "product %s%s%s has %lld left; %lld asked", bad->product_id,
                       bad->variant ? " variant " : "", bad->variant ? bad->variant : "",
                       (long long)fail.available, (long long)bad->quantity);
      return;
    case PS_ENOTFOUND:
      ps_reply_problem(req, PS_PROBLEM_NOT_FOUND,
                       ps_arena_sprintf(&req->arena, "items[%zu].%s", fail.index,
                                        bad->variant ? "variant" : "product_id"),
                       "items[%zu]: %s", fail.index, fail.why ? fail.why : "not found");
      return;
    case PS_EINVAL:
      ps_reply_problem(req, PS_PROBLEM_VALIDATION,
                       ps_arena_sprintf(&req->arena, "items[%zu].variant", fail.index),
                       "items[%zu]: %s", fail.index, fail.why ? fail.why : "invalid");
      return;
    case PS_ECONFLICT:
      if (fail.why)
        ps_reply_problem(req, PS_PROBLEM_CONFLICT, "reservation_id", "reservation %s: %s", rid,
                         fail.why);
      else
        ps_reply_problem(req, PS_PROBLEM_CONFLICT, "reservation_id",
                         "reservation %s already exists with other items", rid);
      return;
    default:
      reply_store_error(req, rc);
  }
}

typedef int (*reservation_op_cb)(product_store_t *s, ps_arena_t *a, const char *id, int64_t now,
                                 char **json);

static void reservation_op(ps_req_t *req, reservation_op_cb op, const char *verb) {
  if (internal_or_reply(req)) return;
  const char *id = ps_req_param(req, "id");
  char *doc;
  int rc = id ? op(store_of(req), &req->arena, id, now_s(), &doc) : PS_ENOTFOUND;
  if (rc == PS_ENOTFOUND)
    ps_reply_problem(req, PS_PROBLEM_NOT_FOUND, NULL, "no reservation has this id");
  else if (rc == PS_ECONFLICT)
    ps_reply_problem(req, PS_PROBLEM_CONFLICT, NULL,
                     "the reservation cannot be %s: it was released or it expired", verb);
  else if (rc)
    reply_store_error(req, rc);
  else
    reply_doc(req, 200, doc);
}

static int op_commit(product_store_t *s, ps_arena_t *a, const char *id, int64_t now, char **j) {
  return s->ops->reservation_commit(s, a, id, now, j);
}
static int op_release(product_store_t *s, ps_arena_t *a, const char *id, int64_t now,
                      char **j) {
  return s->ops->reservation_release(s, a, id, now, j);
}
static int op_get(product_store_t *s, ps_arena_t *a, const char *id, int64_t now, char **j) {
  return s->ops->reservation_get(s, a, id, now, j);
}

static void handle_commit(ps_req_t *req) { reservation_op(req, op_commit, "committed"); }
static void handle_release(ps_req_t *req) { reservation_op(req, op_release, "released"); }
static void handle_reservation_get(ps_req_t *req) { reservation_op(req, op_get, "read"); }

/* --- internal: lookup and outbox ------------------------------------------------------- */

/* The optional "fields" of a lookup: 1..16 keys of the product document, as a mask (0 when
 * absent: whole documents). */
static int lookup_fields_or_reply(ps_req_t *req, json_t *body, unsigned *mask) {
  *mask = 0;
  json_t *fields;
  if (!json_object_get(body, "fields")) return 0;
  if (ps_json_array_or_reply(req, body, "fields", 1, PRODUCT_DOC_NFIELDS, &fields))
    return PS_EINVAL;
  size_t i;
  json_t *x;
  json_array_foreach(fields, i, x) {
    unsigned bit = json_is_string(x) ? product_doc_field_bit(json_string_value(x)) : 0;
    if (!bit) {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION,
                       ps_arena_sprintf(&req->arena, "fields[%zu]", i),
                       "fields[%zu] must be a key of a product document (id, sku, name, "
                       "description, kind, brand, category, price, currency, stock, attributes, "
                       "variants, images, popularity, created_at, updated_at)",
                       i);
      return PS_EINVAL;
    }
    *mask |= bit;
  }
  return 0;
}

static void handle_lookup(ps_req_t *req) {
  static const char *const allowed[] = {"ids", "fields", NULL};
  if (internal_or_reply(req)) return;
  json_t *body, *ids;
  unsigned fields;
  if (ps_json_body_or_reply(req, &body) || ps_json_only_keys_or_reply(req, body, allowed) ||
      ps_json_array_or_reply(req, body, "ids", 1, LOOKUP_IDS_MAX, &ids) ||
      lookup_fields_or_reply(req, body, &fields))
    return;
  size_t n = json_array_size(ids);
  const char **v = ps_arena_alloc(&req->arena, n * sizeof(*v));
  for (size_t i = 0; i < n; i++) {
    json_t *x = json_array_get(ids, i);
    if (!json_is_string(x) || !json_string_length(x) || json_string_length(x) > 64) {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, ps_arena_sprintf(&req->arena, "ids[%zu]", i),
                       "ids[%zu] must be a product id", i);
      return;
    }
    v[i] = json_string_value(x);
  }
  char *items, *missing;
  product_store_t *s = store_of(req);
  int rc = s->ops->product_lookup(s, &req->arena, v, n, fields, &items, &missing);
  if (rc) {
    reply_store_error(req, rc);
    return;
  }
  /* Concatenated rather than printed: vsnprintf copies %s arguments a byte at a time. */
  size_t ni = strlen(items), nm = strlen(missing);
  char *out = ps_arena_alloc(&req->arena, ni + nm + 24), *o = out;
  memcpy(o, "{\"items\":", 9);
  o += 9;
  memcpy(o, items, ni);
  o += ni;
  memcpy(o, ",\"missing\":", 11);
  o += 11;
  memcpy(o, missing, nm);
  o += nm;
  *o++ = '}';
  ps_reply_raw(req, 200, "application/json", out, (size_t)(o - out));
}

static void handle_outbox(ps_req_t *req) {
  if (internal_or_reply(req)) return;
  long long after, limit;
  if (ps_query_int_or_reply(req, "after", 0, 0, INT64_MAX, &after) ||
      ps_query_int_or_reply(req, "limit", 100, 1, 1000, &limit))
    return;
  char *items;
  product_store_t *s = store_of(req);
  int rc = s->ops->outbox_read(s, &req->arena, after, (int)limit, &items);
  if (rc) {
    reply_store_error(req, rc);
    return;
  }
  reply_doc(req, 200, ps_arena_sprintf(&req->arena, "{\"items\":%s}", items));
}

const ps_route_t product_routes[] = {
    {"GET", "/api/v1/products", handle_list},
    {"POST", "/api/v1/products", handle_create},
    {"GET", "/api/v1/products/{id}", handle_get},
    {"PATCH", "/api/v1/products/{id}", handle_update},
    {"DELETE", "/api/v1/products/{id}", handle_delete},
    {"GET", "/api/v1/categories", handle_categories},
    {"POST", "/api/v1/categories", handle_category_put},
    {"POST", "/internal/reservations", handle_reserve},
    {"GET", "/internal/reservations/{id}", handle_reservation_get},
    {"POST", "/internal/reservations/{id}/commit", handle_commit},
    {"POST", "/internal/reservations/{id}/release", handle_release},
    {"POST", "/internal/products/lookup", handle_lookup},
    {"GET", "/internal/outbox", handle_outbox},
};
const size_t product_nroutes = sizeof(product_routes) / sizeof(product_routes[0]);
