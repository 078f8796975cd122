/* routes.c - the order service's HTTP handlers: checkout (POST /orders, the saga's happy path
 * and its immediate compensations), history, detail, cancel and the admin status change.
 * The route table is at the bottom. */
#include <stdio.h>
#include <string.h>

#include "order.h"
#include "polyshop/error.h"
#include "polyshop/idempotency.h"
#include "polyshop/json.h"
#include "polyshop/log.h"
#include "polyshop/metrics.h"
#include "polyshop/problem.h"
#include "polyshop/uuid.h"

#define SVC(req) ((order_service_t *)(req)->service_ctx)
#define THREAD(req) ((order_thread_t *)(req)->thread_ctx)
#define STORE(req) (THREAD(req)->store)

/* --- small helpers ---------------------------------------------------------------------- */

/* A problem document as text, for answers that are stored and replayed. */
static char *problem_text(ps_req_t *req, ps_problem_t problem, const char *field,
                          const char *detail) {
  json_t *p = ps_problem_json(req, problem, field, detail);
  char *text = ps_json_dump(&req->arena, p);
  json_decref(p);
  return text;
}

/* Sends a stored answer; errors leave through the core's problem sender. */
static void reply_text(ps_req_t *req, int status, const char *text) {
  if (status >= 400)
    ps_reply_problem_text(req, status, text);
  else
    ps_reply_raw(req, status, "application/json", text, strlen(text));
}

static void reply_order(ps_req_t *req, int status, const order_t *o) {
  ps_reply_json(req, status, order_json(o));
}

/* The owner's (or an admin's) order; 404 for anyone else, so ids of other users' orders
 * reveal nothing. */
static int order_or_reply(ps_req_t *req, order_t *o) {
  const char *id = ps_req_param(req, "id");
  int rc = id ? STORE(req)->ops->get(STORE(req), &req->arena, id, o) : PS_ENOTFOUND;
  if (rc == 0 && strcmp(o->user_id, req->claims.sub) != 0 && req->claims.role != PS_ROLE_ADMIN)
    rc = PS_ENOTFOUND;
  if (rc == PS_ENOTFOUND) {
    ps_reply_problem(req, PS_PROBLEM_NOT_FOUND, NULL, "no order has this id");
    return rc;
  }
  if (rc) ps_reply_error(req, rc, NULL);
  return rc;
}

/* The answer for an order whose first request is over, from its current state. */
static void reply_from_state(ps_req_t *req, const order_t *o) {
  if (strcmp(o->saga_step, ORDER_STEP_RELEASING) == 0 ||
      strcmp(o->saga_step, ORDER_STEP_RELEASED) == 0) {
    reply_text(req, 409, problem_text(req, PS_PROBLEM_ORDER_FAILED, NULL,
                                      o->failure ? o->failure : "the order failed"));
  } else if (strcmp(o->saga_step, ORDER_STEP_PENDING) == 0 ||
             strcmp(o->saga_step, ORDER_STEP_RESERVED) == 0) {
    ps_reply_header(req, "Retry-After", "1");
    ps_reply_problem(req, PS_PROBLEM_CONFLICT, "Idempotency-Key",
                     "a request with this Idempotency-Key is still being processed");
  } else {
    reply_order(req, 201, o);
  }
}

/* Same key again: the stored answer when the body is the same, 422 when it is not. */
static void replay(ps_req_t *req, const order_t *o, const char *hash) {
  if (strcmp(o->request_hash, hash) != 0) {
    ps_reply_problem(req, PS_PROBLEM_IDEMPOTENCY_MISMATCH, "Idempotency-Key",
                     "this Idempotency-Key was used with another request body");
    return;
  }
  if (o->response_status > 0 && o->response_body) {
    ps_reply_header(req, "Idempotent-Replayed", "true");
    reply_text(req, o->response_status, o->response_body);
    return;
  }
  reply_from_state(req, o);
}

/* --- input ------------------------------------------------------------------------------ */

typedef struct {
  const char *product_id, *variant;
  int64_t quantity;
} item_in_t;

static int text_ok(const char *s, size_t min, size_t max) {
  size_t n = strlen(s);
  if (n < min || n > max) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
  return 1;
}

/* A JSON string of min..max bytes without control characters or embedded NULs. */
static const char *json_text(json_t *v, size_t min, size_t max) {
  if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) return NULL;
  return text_ok(json_string_value(v), min, max) ? json_string_value(v) : NULL;
}

static int items_or_reply(ps_req_t *req, json_t *body, item_in_t **out, size_t *n) {
  /* Client prices and totals are accepted and ignored: the server prices every line. */
  static const char *const allowed[] = {"product_id", "variant", "quantity", "price",
                                        "unit_price", "name", "line_total", "total", NULL};
  ps_arena_t *a = &req->arena;
  json_t *items = json_object_get(body, "items");
  if (!json_is_array(items) || json_array_size(items) < 1 ||
      json_array_size(items) > ORDER_ITEMS_MAX) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "items",
                     "items must be an array of 1 to %d lines", ORDER_ITEMS_MAX);
    return PS_EINVAL;
  }
  size_t count = json_array_size(items);
  item_in_t *its = ps_arena_alloc(a, count * sizeof(*its));
  for (size_t i = 0; i < count; i++) {
    json_t *x = json_array_get(items, i);
    const char *base = ps_arena_sprintf(a, "items[%zu]", i);
    if (ps_json_only_keys_at_or_reply(req, x, allowed, base)) return PS_EINVAL;
    if (!(its[i].product_id = json_text(json_object_get(x, "product_id"), 1, ORDER_PRODUCT_ID_MAX))) {
      const char *f = ps_arena_sprintf(a, "%s.product_id", base);
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s must be a product id (1 to %d characters)",
                       f, ORDER_PRODUCT_ID_MAX);
      return PS_EINVAL;
    }
    json_t *var = json_object_get(x, "variant");
    if (var && !json_is_null(var) && !(its[i].variant = json_text(var, 1, ORDER_VARIANT_MAX))) {
      const char *f = ps_arena_sprintf(a, "%s.variant", base);
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s must be a variant SKU", f);
      return PS_EINVAL;
    }
    json_t *q = json_object_get(x, "quantity");
    if (!json_is_integer(q) || json_integer_value(q) < 1 || json_integer_value(q) > ORDER_QTY_MAX) {
      const char *f = ps_arena_sprintf(a, "%s.quantity", base);
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s must be a whole number from 1 to %d", f,
                       ORDER_QTY_MAX);
      return PS_EINVAL;
    }
    its[i].quantity = json_integer_value(q);
    for (size_t j = 0; j < i; j++) {
      if (strcmp(its[j].product_id, its[i].product_id) == 0 &&
          (its[j].variant == its[i].variant ||
           (its[j].variant && its[i].variant && strcmp(its[j].variant, its[i].variant) == 0))) {
        ps_reply_problem(req, PS_PROBLEM_VALIDATION, base,
                         "%s repeats items[%zu]: give one line per product and variant", base, j);
        return PS_EINVAL;
      }
    }
  }
  *out = its;
  *n = count;
  return 0;
}

static int address_or_reply(ps_req_t *req, json_t *body, const char **out) {
  static const char *const fields[] = {"name", "line1", "line2", "city", "region",
                                       "postal_code", "country", "phone", NULL};
  static const char *const required[] = {"name", "line1", "city", "postal_code", "country", NULL};
  json_t *addr = json_object_get(body, "address");
  if (!json_is_object(addr)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "address",
                     "address must be an object with name, line1, city, postal_code and country");
    return PS_EINVAL;
  }
  const char *key;
  json_t *v;
  json_object_foreach(addr, key, v) {
    int ok = 0;
    for (const char *const *k = fields; *k && !ok; k++) ok = strcmp(*k, key) == 0;
    const char *f = ps_arena_sprintf(&req->arena, "address.%s", key);
    if (!ok) {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s is not a field of an address", f);
      return PS_EINVAL;
    }
    if (!json_text(v, 1, ORDER_ADDRESS_FIELD_MAX)) {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s must be a string of 1 to %d characters",
                       f, ORDER_ADDRESS_FIELD_MAX);
      return PS_EINVAL;
    }
  }
  for (const char *const *k = required; *k; k++) {
    if (!json_object_get(addr, *k)) {
      const char *f = ps_arena_sprintf(&req->arena, "address.%s", *k);
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, f, "%s is required", f);
      return PS_EINVAL;
    }
  }
  const char *country = json_string_value(json_object_get(addr, "country"));
  if (strlen(country) != 2 || country[0] < 'A' || country[0] > 'Z' || country[1] < 'A' ||
      country[1] > 'Z') {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "address.country",
                     "address.country must be an ISO 3166-1 alpha-2 code such as \"DE\"");
    return PS_EINVAL;
  }
  *out = ps_json_dump(&req->arena, addr);
  return 0;
}

/* The payment method goes to the payment service as it came: a token string ("pm_card_visa",
 * short for {"token": ...}) or an object {card_number, exp_month, exp_year, cvc} / {token},
 * which that service validates. The order keeps only a label (the token, or the card's last
 * four digits): card numbers are never stored here. */
static int payment_method_or_reply(ps_req_t *req, json_t *body, json_t **out, const char **label) {
  static const char *const allowed[] = {"card_number", "exp_month", "exp_year", "cvc", "token", NULL};
  json_t *pm = json_object_get(body, "payment_method");
  json_t *method;
  if (!pm || json_is_null(pm)) pm = json_string(SVC(req)->default_payment_method);
  else json_incref(pm);
  ps_arena_defer(&req->arena, (ps_arena_cleanup_cb)json_decref, pm);
  if (json_is_string(pm)) {
    const char *tok = json_text(pm, 3, 255);
    if (!tok) {
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, "payment_method",
                       "payment_method must be a payment token or an object");
      return PS_EINVAL;
    }
    method = json_pack("{s:s}", "token", tok);
    ps_arena_defer(&req->arena, (ps_arena_cleanup_cb)json_decref, method);
    *label = ps_arena_sprintf(&req->arena, "token:%s", tok);
  } else if (json_is_object(pm)) {
    if (ps_json_only_keys_or_reply(req, pm, allowed)) return PS_EINVAL;
    method = pm;
    const char *card = json_string_value(json_object_get(pm, "card_number"));
    const char *tok = json_string_value(json_object_get(pm, "token"));
    size_t len = card ? strlen(card) : 0;
    *label = card && len >= 4 ? ps_arena_sprintf(&req->arena, "card:%s", card + len - 4)
             : tok ? ps_arena_sprintf(&req->arena, "token:%.64s", tok)
                   : "unknown";
  } else {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "payment_method",
                     "payment_method must be a payment token or an object");
    return PS_EINVAL;
  }
  *out = method;
  return 0;
}

/* --- calls made by the checkout ---------------------------------------------------------- */

/* The error answer for a failed call to another service. */
static void reply_upstream(ps_req_t *req, const char *who, const order_call_result_t *r) {
  if (r->err == PS_ETIMEOUT || r->status == 504)
    ps_reply_problem(req, PS_PROBLEM_TIMEOUT, NULL, "the %s service did not answer in time", who);
  else if (r->err || r->status >= 500)
    ps_reply_problem(req, PS_PROBLEM_UNAVAILABLE, NULL, "the %s service is unavailable", who);
  else
    ps_reply_problem(req, PS_PROBLEM_UPSTREAM, NULL, "the %s service answered %ld", who, r->status);
}

/* The account must still exist: the user service answers /users/me for the same token. */
static int user_exists_or_reply(ps_req_t *req) {
  order_thread_t *t = THREAD(req);
  const char *auth = ps_req_header(req, "Authorization");
  const char *headers[] = {ps_arena_sprintf(&req->arena, "Authorization: %s", auth ? auth : ""),
                           NULL};
  ps_call_t call = {.method = "GET",
                    .url = ps_arena_sprintf(&req->arena, "%s/api/v1/users/me", SVC(req)->user_url),
                    .headers = headers, .request_id = req->request_id,
                    .traceparent = ps_trace_child(&req->arena, req->traceparent)};
  ps_response_t resp;
  order_call_result_t r = {0};
  unsigned long long t0 = ps_now_ns();
  r.err = ps_client_call(t->client, &req->arena, &call, &resp);
  order_call_observe(SVC(req), call.url, t0);
  if (r.err == 0) r.status = resp.status;
  if (r.err == 0 && r.status == 200) return 0;
  if (r.err == 0 && (r.status == 401 || r.status == 404)) {
    ps_reply_problem(req, PS_PROBLEM_UNAUTHORIZED, NULL, "the account of this token no longer exists");
    return PS_EAUTH;
  }
  reply_upstream(req, "user", &r);
  return PS_EUPSTREAM;
}

/* Looks the products up and prices every line into o (items, subtotal, currency). */
static int price_or_reply(ps_req_t *req, const item_in_t *in, size_t n, order_t *o) {
  ps_arena_t *a = &req->arena;
  json_t *ids = json_array();
  for (size_t i = 0; i < n; i++) {
    int seen = 0;
    for (size_t j = 0; j < i && !seen; j++) seen = strcmp(in[j].product_id, in[i].product_id) == 0;
    if (!seen) json_array_append_new(ids, json_string(in[i].product_id));
  }
  /* Only what pricing reads: the product service then builds no dates, attributes or images. */
  json_t *q = json_pack("{s:o, s:[s,s,s,s,s,s]}", "ids", ids, "fields", "id", "name", "price",
                        "currency", "stock", "variants");
  char *body = ps_json_dump(a, q);
  json_decref(q);
  order_call_result_t r;
  order_call(THREAD(req), a, "POST",
             ps_arena_sprintf(a, "%s/internal/products/lookup", SVC(req)->product_url), body, NULL,
             0, req->request_id, &r);
  if (r.err || r.status != 200) {
    reply_upstream(req, "product", &r);
    return PS_EUPSTREAM;
  }
  json_t *doc = json_loads(r.body ? r.body : "", 0, NULL);
  ps_arena_defer(a, (ps_arena_cleanup_cb)json_decref, doc);
  json_t *products = json_object_get(doc, "items");
  if (!json_is_array(products)) {
    ps_reply_problem(req, PS_PROBLEM_UPSTREAM, NULL, "the product service answered a bad lookup");
    return PS_EUPSTREAM;
  }
  o->items = ps_arena_alloc(a, n * sizeof(*o->items));
  o->nitems = n;
  o->subtotal = 0;
  o->currency = NULL;
  for (size_t i = 0; i < n; i++) {
    json_t *p = NULL, *x;
    size_t k;
    json_array_foreach(products, k, x) {
      const char *id = json_string_value(json_object_get(x, "id"));
      if (id && strcmp(id, in[i].product_id) == 0) {
        p = x;
        break;
      }
    }
    if (!p) {
      ps_reply_problem(req, PS_PROBLEM_NOT_FOUND, ps_arena_sprintf(a, "items[%zu].product_id", i),
                       "product %s does not exist", in[i].product_id);
      return PS_ENOTFOUND;
    }
    json_int_t price = json_integer_value(json_object_get(p, "price"));
    json_int_t stock = json_integer_value(json_object_get(p, "stock"));
    if (in[i].variant) {
      json_t *v = NULL;
      json_array_foreach(json_object_get(p, "variants"), k, x) {
        const char *sku = json_string_value(json_object_get(x, "sku"));
        if (sku && strcmp(sku, in[i].variant) == 0) {
          v = x;
          break;
        }
      }
      if (!v) {
        ps_reply_problem(req, PS_PROBLEM_NOT_FOUND, ps_arena_sprintf(a, "items[%zu].variant", i),
                         "product %s has no variant %s", in[i].product_id, in[i].variant);
        return PS_ENOTFOUND;
      }
      if (json_is_integer(json_object_get(v, "price"))) price = json_integer_value(json_object_get(v, "price"));
      stock = json_integer_value(json_object_get(v, "stock"));
    }
    const char *currency = json_string_value(json_object_get(p, "currency"));
    const char *name = json_string_value(json_object_get(p, "name"));
    if (!currency || price < 0) {
      ps_reply_problem(req, PS_PROBLEM_UPSTREAM, NULL, "product %s has no usable price", in[i].product_id);
      return PS_EUPSTREAM;
    }
    if (o->currency && strcmp(o->currency, currency) != 0) {
      ps_reply_problem(req, PS_PROBLEM_UNPROCESSABLE, ps_arena_sprintf(a, "items[%zu]", i),
                       "an order is paid in one currency: items[%zu] is priced in %s, not %s", i,
                       currency, o->currency);
      return PS_EINVAL;
    }
    o->currency = ps_arena_strdup(a, currency);
    if (stock < in[i].quantity) {
      ps_reply_problem(req, PS_PROBLEM_INSUFFICIENT_STOCK,
                       ps_arena_sprintf(a, "items[%zu].quantity", i),
                       "product %s has %lld left; %lld asked", in[i].product_id, (long long)stock,
                       (long long)in[i].quantity);
      return PS_EINSUFFICIENT;
    }
    order_item_t *it = &o->items[i];
    it->product_id = in[i].product_id;
    it->variant = in[i].variant;
    it->name = ps_arena_strdup(a, name ? name : "");
    it->unit_price = price;
    it->quantity = in[i].quantity;
    if (order_line_total(price, in[i].quantity, &it->line_total) ||
        order_money_add(&o->subtotal, it->line_total)) {
      ps_reply_problem(req, PS_PROBLEM_UNPROCESSABLE, "items",
                       "the order comes to more than %lld minor units of %s, the most one "
                       "payment can take; split it into smaller orders",
                       (long long)PS_MONEY_MAX, o->currency);
      return PS_ERANGE;
    }
  }
  return 0;
}

/* Fails the order from step `from`: stores the problem as the answer, gives the stock back
 * (and money, when payment_status is unknown) and answers. When the recovery worker got there
 * first, answers from the order's current state instead. */
static void fail_order(ps_req_t *req, order_t *o, const char *from, const char *payment_status,
                       ps_problem_t problem, const char *field, const char *detail) {
  order_thread_t *t = THREAD(req);
  int status = ps_problem_status(problem);
  char *text = problem_text(req, problem, field, detail);
  order_change_t c = {.id = o->id, .expect_step = from, .step = ORDER_STEP_RELEASING,
                      .status = "failed", .payment_status = payment_status, .failure = detail,
                      .response_status = status, .response_body = text};
  c.now = order_now();
  order_event(&req->arena, &c, "order_status_changed", o, "new", "failed");
  int rc = t->store->ops->change(t->store, &c);
  if (rc == 0) {
    o->saga_step = ORDER_STEP_RELEASING;
    o->payment_status = payment_status;
    rc = order_finish_release(t, &req->arena, o);
    if (rc && rc != PS_ECONFLICT) ps_log(PS_LOG_WARN, req->request_id, "order %s: compensation left to recovery: %s",
                   o->id, ps_strerror(rc));
    reply_text(req, status, text);
    return;
  }
  order_t now;
  if (t->store->ops->get(t->store, &req->arena, o->id, &now) == 0)
    reply_from_state(req, &now);
  else
    ps_reply_error(req, rc, NULL);
}

/* The product service's problem detail, or a fallback. */
static const char *upstream_detail(ps_req_t *req, const order_call_result_t *r, const char *dflt,
                                   const char **field) {
  json_t *p = json_loads(r->body ? r->body : "", 0, NULL);
  const char *d = json_string_value(json_object_get(p, "detail"));
  const char *f = json_string_value(json_object_get(p, "field"));
  const char *out = ps_arena_strdup(&req->arena, d ? d : dflt);
  if (field) *field = f ? ps_arena_strdup(&req->arena, f) : NULL;
  json_decref(p);
  return out;
}

static int reserve(ps_req_t *req, order_t *o) {
  order_thread_t *t = THREAD(req);
  ps_arena_t *a = &req->arena;
  json_t *items = json_array();
  for (size_t i = 0; i < o->nitems; i++)
    json_array_append_new(items, json_pack("{s:s, s:s?, s:I}", "product_id", o->items[i].product_id,
                                           "variant", o->items[i].variant, "quantity",
                                           (json_int_t)o->items[i].quantity));
  json_t *q = json_pack("{s:s, s:I, s:o}", "reservation_id", o->reservation_id, "ttl_seconds",
                        (json_int_t)SVC(req)->reservation_ttl, "items", items);
  char *body = ps_json_dump(a, q);
  json_decref(q);
  order_call_result_t r;
  order_call(t, a, "POST", ps_arena_sprintf(a, "%s/internal/reservations", SVC(req)->product_url),
             body, NULL, 0, req->request_id, &r);
  if (r.err == 0 && (r.status == 200 || r.status == 201)) return 0;
  const char *field = NULL;
  if (r.err == 0 && r.status == 409) {
    const char *d = upstream_detail(req, &r, "not enough stock", &field);
    fail_order(req, o, ORDER_STEP_PENDING, "none", PS_PROBLEM_INSUFFICIENT_STOCK, field, d);
  } else if (r.err == 0 && r.status == 404) {
    const char *d = upstream_detail(req, &r, "a product does not exist", &field);
    fail_order(req, o, ORDER_STEP_PENDING, "none", PS_PROBLEM_NOT_FOUND, field, d);
  } else if (r.err == 0 && r.status >= 400 && r.status < 500) {
    const char *d = upstream_detail(req, &r, "the product service refused the items", &field);
    fail_order(req, o, ORDER_STEP_PENDING, "none", PS_PROBLEM_VALIDATION, field, d);
  } else if (r.err == PS_ETIMEOUT || r.status == 504) {
    fail_order(req, o, ORDER_STEP_PENDING, "none", PS_PROBLEM_TIMEOUT, NULL,
               "the product service did not answer in time");
  } else {
    fail_order(req, o, ORDER_STEP_PENDING, "none", PS_PROBLEM_UNAVAILABLE, NULL,
               "the product service is unavailable");
  }
  return PS_EUPSTREAM;
}

/* Charges the order; on success *payment_id is set. Otherwise fails the order and answers. */
static int charge(ps_req_t *req, order_t *o, json_t *method, const char **payment_id) {
  order_thread_t *t = THREAD(req);
  ps_arena_t *a = &req->arena;
  json_t *q = json_pack("{s:s, s:s, s:I, s:s, s:O}", "order_id", o->id, "user_id", o->user_id,
                        "amount", (json_int_t)o->total, "currency", o->currency, "payment_method",
                        method);
  char *body = ps_json_dump(a, q);
  json_decref(q);
  order_call_result_t r;
  order_call(t, a, "POST", ps_arena_sprintf(a, "%s/internal/payments", SVC(req)->payment_url), body,
             order_payment_key(a, o->id), SVC(req)->payment_timeout_ms, req->request_id, &r);
  json_t *doc = r.err == 0 ? json_loads(r.body ? r.body : "", 0, NULL) : NULL;
  ps_arena_defer(a, (ps_arena_cleanup_cb)json_decref, doc);
  const char *status = json_string_value(json_object_get(doc, "status"));
  const char *id = json_string_value(json_object_get(doc, "id"));
  if (r.err == 0 && r.status >= 200 && r.status < 300 && id && status &&
      strcmp(status, "succeeded") == 0) {
    *payment_id = ps_arena_strdup(a, id);
    return 0;
  }
  const char *field = NULL;
  if (r.err == 0 && (r.status == 402 || (r.status >= 200 && r.status < 300 && status &&
                                         strcmp(status, "failed") == 0))) {
    const char *code = json_string_value(json_object_get(doc, "failure_code"));
    const char *d = r.status == 402 ? upstream_detail(req, &r, "the payment was declined", &field)
                                    : ps_arena_sprintf(a, "the payment was declined (%s)",
                                                       code ? code : "declined");
    fail_order(req, o, ORDER_STEP_PENDING, "failed", PS_PROBLEM_PAYMENT_DECLINED,
               "payment_method", d);
  } else if (r.err == 0 && r.status == 502 && json_is_object(json_object_get(doc, "payment"))) {
    /* The provider refused for its own reasons (a processing error): recorded as failed. */
    const char *d = upstream_detail(req, &r, "the payment provider failed", &field);
    fail_order(req, o, ORDER_STEP_PENDING, "failed", PS_PROBLEM_UPSTREAM, NULL, d);
  } else if (r.err == 0 && r.status >= 400 && r.status < 500) {
    const char *d = upstream_detail(req, &r, "the payment service refused the charge", &field);
    fail_order(req, o, ORDER_STEP_PENDING, "failed", PS_PROBLEM_PAYMENT_REJECTED,
               field ? field : "payment_method", d);
  } else if (r.err == PS_ETIMEOUT || r.status == 504) {
    fail_order(req, o, ORDER_STEP_PENDING, "unknown", PS_PROBLEM_TIMEOUT, NULL,
               "the payment service did not answer in time; the order failed and any charge "
               "will be refunded");
  } else {
    fail_order(req, o, ORDER_STEP_PENDING, "unknown", PS_PROBLEM_UNAVAILABLE, NULL,
               "the payment service is unavailable; the order failed and stock was released");
  }
  return PS_EUPSTREAM;
}

/* --- POST /api/v1/orders ------------------------------------------------------------------ */

static void handle_create(ps_req_t *req) {
  THREAD(req)->traceparent = req->traceparent;
  static const char *const allowed[] = {"items", "address", "discount_code", "payment_method",
                                        "total", "subtotal", "discount", "currency", NULL};
  order_service_t *svc = SVC(req);
  order_thread_t *t = THREAD(req);
  order_store_t *st = t->store;
  ps_arena_t *a = &req->arena;
  if (ps_auth_user_or_reply(req)) return;
  const char *key;
  if (ps_idempotency_key_or_reply(req, 1, &key)) return;
  json_t *body;
  if (ps_json_body_or_reply(req, &body) || ps_json_only_keys_or_reply(req, body, allowed)) return;

  char *canon = json_dumps(body, JSON_SORT_KEYS | JSON_COMPACT);
  char *hash = order_sha256_hex(a, canon, strlen(canon));
  free(canon);

  order_t o = {0};
  int rc = st->ops->get_by_key(st, a, req->claims.sub, key, &o);
  if (rc == 0) {
    replay(req, &o, hash);
    return;
  }
  if (rc != PS_ENOTFOUND) {
    ps_reply_error(req, rc, NULL);
    return;
  }

  item_in_t *in;
  size_t n;
  const char *address, *code = NULL, *method_label;
  json_t *method;
  if (items_or_reply(req, body, &in, &n) || address_or_reply(req, body, &address) ||
      ps_json_opt_str_or_reply(req, body, "discount_code", 1, ORDER_DISCOUNT_CODE_MAX, &code) ||
      payment_method_or_reply(req, body, &method, &method_label))
    return;
  const discount_t *disc = NULL;
  if (code && !(disc = order_discount_find(order_discounts, order_ndiscounts, code))) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "discount_code", "%s is not a valid discount code", code);
    return;
  }
  if (user_exists_or_reply(req) || price_or_reply(req, in, n, &o)) return;

  o.id = ps_uuid_v7(a);
  o.user_id = req->claims.sub;
  o.status = "new";
  o.payment_status = "pending";
  o.saga_step = ORDER_STEP_PENDING;
  o.discount = order_discount_amount(disc, o.subtotal);
  o.total = o.subtotal - o.discount;
  o.discount_code = disc ? disc->code : NULL;
  o.address = address;
  o.payment_method = method_label;
  /* Chosen before the product service sees it, so a crash right after reserving still
   * leaves an order that names the reservation to release. */
  o.reservation_id = o.id;
  o.idempotency_key = key;
  o.request_hash = hash;
  o.created_at = o.updated_at = order_now();

  order_change_t created = {.now = o.created_at};
  order_event(a, &created, "order_created", &o, NULL, "new");
  rc = st->ops->create(st, &o, created.events, created.nevents);
  if (rc == PS_EEXISTS) {
    /* Another request with this key won the race. */
    order_t prev;
    if ((rc = st->ops->get_by_key(st, a, req->claims.sub, key, &prev)) == 0) {
      replay(req, &prev, hash);
      return;
    }
  }
  if (rc) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  order_fault(svc, "after_persist");

  /* Nothing is written between the calls: the order stays "pending" until its stock is
   * committed, so a checkout costs two write transactions, not four. What the steps in
   * between would tell the recovery worker (was it charged?) it asks the payment service
   * instead, by the charge's Idempotency-Key (docs/order.md, "The saga"). */
  if (reserve(req, &o)) return;
  order_fault(svc, "after_reserve");
  /* Nothing to pay (free items, or a discount that covers everything): no charge at all. */
  const char *payment_id = NULL;
  if (o.total > 0 && charge(req, &o, method, &payment_id)) return;
  order_fault(svc, "after_charge");
  o.payment_id = payment_id;
  o.payment_status = "paid";
  rc = order_finish_charged(t, a, &o, req->request_id);
  if (rc == 0 && strcmp(o.saga_step, ORDER_STEP_COMMITTED) == 0 && o.response_body) {
    reply_text(req, 201, o.response_body);
    return;
  }
  if (rc) ps_log(PS_LOG_WARN, req->request_id, "order %s: commit left to recovery: %s", o.id, ps_strerror(rc));

  /* The order's stored state answers: failed under us, or left to recovery. */
  if ((rc = st->ops->get(st, a, o.id, &o))) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  /* The recovery worker failed the order while this handler was charging (a checkout slower
   * than its grace period): the money goes back. */
  if (payment_id && strcmp(o.status, "failed") == 0 &&
      strcmp(o.payment_status, "refunded") != 0 &&
      (rc = order_refund(t, a, payment_id, o.total, req->request_id)))
    ps_log(PS_LOG_WARN, req->request_id, "order %s failed under its charge %s; refund: %s", o.id,
           payment_id, ps_strerror(rc));
  if (o.response_status > 0 && o.response_body) {
    reply_text(req, o.response_status, o.response_body);
    return;
  }
  reply_from_state(req, &o);
}

/* --- history and detail ------------------------------------------------------------------ */

static char *cursor_encode(ps_arena_t *a, const order_t *o) {
  char *raw = ps_arena_sprintf(a, "%lld:%s", (long long)o->created_at, o->id);
  return ps_base64url_encode(a, (const unsigned char *)raw, strlen(raw));
}

static int cursor_decode(ps_arena_t *a, const char *text, order_cursor_t *out) {
  unsigned char *raw;
  size_t len;
  if (ps_base64url_decode(a, text, strlen(text), &raw, &len) || len > 128) return PS_EINVAL;
  char *colon = strchr((char *)raw, ':');
  if (!colon || colon == (char *)raw || !colon[1]) return PS_EINVAL;
  *colon = '\0';
  char *end;
  long long at = strtoll((char *)raw, &end, 10);
  if (*end || at < 0) return PS_EINVAL;
  out->created_at = at;
  out->id = colon + 1;
  return 0;
}

static void handle_list(ps_req_t *req) {
  if (ps_auth_user_or_reply(req)) return;
  long long limit;
  if (ps_query_int_or_reply(req, "limit", ORDER_LIST_LIMIT_DEFAULT, 1, ORDER_LIST_LIMIT_MAX, &limit))
    return;
  order_cursor_t cur, *after = NULL;
  const char *ctext = ps_req_query(req, "cursor");
  if (ctext && *ctext) {
    if (cursor_decode(&req->arena, ctext, &cur)) {
      ps_reply_problem(req, PS_PROBLEM_BAD_QUERY, "cursor", "cursor is not one this service gave");
      return;
    }
    after = &cur;
  }
  order_t *orders;
  size_t n;
  int rc = STORE(req)->ops->list(STORE(req), &req->arena, req->claims.sub, after, (int)limit + 1,
                                 &orders, &n);
  if (rc) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  json_t *items = json_array();
  for (size_t i = 0; i < n && i < (size_t)limit; i++) json_array_append_new(items, order_json(&orders[i]));
  json_t *next = n > (size_t)limit ? json_string(cursor_encode(&req->arena, &orders[limit - 1]))
                                   : json_null();
  ps_reply_json(req, 200, json_pack("{s:o, s:o}", "items", items, "next_cursor", next));
}

static void handle_get(ps_req_t *req) {
  order_t o;
  if (ps_auth_user_or_reply(req) || order_or_reply(req, &o)) return;
  reply_order(req, 200, &o);
}

/* --- cancel and admin status changes ------------------------------------------------------ */

/* processing -> cancelled: refund the captured payment and give the stock back. */
static void cancel(ps_req_t *req, order_t *o) {
  order_thread_t *t = THREAD(req);
  order_change_t c = {.id = o->id, .expect_step = ORDER_STEP_COMMITTED,
                      .expect_status = "processing", .step = ORDER_STEP_REFUNDING,
                      .status = "cancelled", .failure = NULL};
  c.now = order_now();
  order_event(&req->arena, &c, "order_status_changed", o, "processing", "cancelled");
  int rc = t->store->ops->change(t->store, &c);
  if (rc == PS_ECONFLICT) {
    ps_reply_problem(req, PS_PROBLEM_CONFLICT, "status", "the order changed meanwhile; read it again");
    return;
  }
  if (rc) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  o->saga_step = ORDER_STEP_REFUNDING;
  rc = order_finish_refund(t, &req->arena, o);
  if (rc) ps_log(PS_LOG_WARN, req->request_id, "order %s: refund left to recovery: %s", o->id, ps_strerror(rc));
  if ((rc = t->store->ops->get(t->store, &req->arena, o->id, o))) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  reply_order(req, 200, o);
}

static void handle_cancel(ps_req_t *req) {
  THREAD(req)->traceparent = req->traceparent;
  order_t o;
  if (ps_auth_user_or_reply(req) || order_or_reply(req, &o)) return;
  if (strcmp(o.status, "cancelled") == 0) {
    reply_order(req, 200, &o); /* cancelling twice is harmless */
    return;
  }
  order_actor_t actor = strcmp(o.user_id, req->claims.sub) == 0 ? ORDER_ACTOR_OWNER : ORDER_ACTOR_ADMIN;
  if (!order_transition_ok(o.status, "cancelled", actor) ||
      strcmp(o.saga_step, ORDER_STEP_COMMITTED) != 0) {
    ps_reply_problem(req, PS_PROBLEM_CONFLICT, "status", "an order that is %s cannot be cancelled%s",
                     o.status, strcmp(o.status, "new") == 0 ? " until its checkout finishes" : "");
    return;
  }
  cancel(req, &o);
}

static void handle_patch(ps_req_t *req) {
  THREAD(req)->traceparent = req->traceparent;
  static const char *const allowed[] = {"status", NULL};
  json_t *body;
  const char *to;
  order_t o;
  if (ps_auth_admin_or_reply(req) || ps_json_body_or_reply(req, &body) ||
      ps_json_only_keys_or_reply(req, body, allowed) ||
      ps_json_str_or_reply(req, body, "status", 1, 32, &to))
    return;
  if (!order_status_valid(to)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "status",
                     "status must be new, processing, shipped, delivered, cancelled or failed");
    return;
  }
  if (order_or_reply(req, &o)) return;
  if (!order_transition_ok(o.status, to, ORDER_ACTOR_ADMIN) ||
      strcmp(o.saga_step, ORDER_STEP_COMMITTED) != 0) {
    ps_reply_problem(req, PS_PROBLEM_CONFLICT, "status", "an order cannot go from %s to %s",
                     o.status, to);
    return;
  }
  if (strcmp(to, "cancelled") == 0) {
    cancel(req, &o);
    return;
  }
  order_thread_t *t = THREAD(req);
  order_change_t c = {.id = o.id, .expect_step = ORDER_STEP_COMMITTED, .expect_status = o.status,
                      .status = to};
  c.now = order_now();
  order_event(&req->arena, &c, "order_status_changed", &o, o.status, to);
  int rc = t->store->ops->change(t->store, &c);
  if (rc == PS_ECONFLICT) {
    ps_reply_problem(req, PS_PROBLEM_CONFLICT, "status", "the order changed meanwhile; read it again");
    return;
  }
  if (rc || (rc = t->store->ops->get(t->store, &req->arena, o.id, &o))) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  reply_order(req, 200, &o);
}

/* --- the route table -------------------------------------------------------------------- */

const ps_route_t order_routes[] = {
    {"POST", "/api/v1/orders", handle_create},
    {"GET", "/api/v1/orders", handle_list},
    {"GET", "/api/v1/orders/{id}", handle_get},
    {"POST", "/api/v1/orders/{id}/cancel", handle_cancel},
    {"PATCH", "/api/v1/orders/{id}", handle_patch},
};
const size_t order_nroutes = sizeof(order_routes) / sizeof(order_routes[0]);
