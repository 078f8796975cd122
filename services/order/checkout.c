/* checkout.c - POST /api/v1/orders, the checkout saga's happy path, as a chain of steps on
 * the request's event loop: check the user, price the lines, write the order, reserve the
 * stock, charge, commit. Each step starts one call to another service and returns; the call's
 * callback runs the next step, so the loop serves other requests while a checkout waits.
 * The compensations of a failure (release the stock, refund a charge) block on their calls
 * and are rare: they run on the core's worker pool (offload.c), and the request is answered
 * when they are done, as before.
 *
 * The whole state of one checkout is a checkout_t in the request's arena; it lives until the
 * answer is sent. */
#include <stdlib.h>
#include <string.h>

#include "checkout.h"
#include "polyshop/error.h"
#include "polyshop/idempotency.h"
#include "polyshop/json.h"
#include "polyshop/log.h"
#include "polyshop/problem.h"
#include "polyshop/uuid.h"

#define SVC(req) ((order_service_t *)(req)->service_ctx)
#define THREAD(req) ((order_thread_t *)(req)->thread_ctx)

typedef struct {
  ps_req_t *req;
  order_t o;
  item_in_t *in;
  size_t nin;
  json_t *method;              /* the payment method sent to the payment service */
  const discount_t *discount;
  const char *payment_id;      /* set once charged */
} checkout_t;

static void step_price(checkout_t *ck);
static void step_reserve(checkout_t *ck);
static void step_charge(checkout_t *ck);
static void step_commit(checkout_t *ck);

/* --- calls ---------------------------------------------------------------------------- */

static void start_call(checkout_t *ck, const char *method, const char *url, const char *body,
                       const char *idem_key, long timeout_ms, order_call_cb cb) {
  ps_req_t *req = ck->req;
  order_call_start(THREAD(req), &req->arena, method, url, body, idem_key, timeout_ms, req, cb,
                   ck);
}

/* The error answer for a failed call to another service. */
static void reply_upstream(ps_req_t *req, const char *who, const order_call_result_t *r) {
  if (r->err == PS_ETIMEOUT || r->status == 504)
    ps_reply_problem(req, PS_PROBLEM_TIMEOUT, NULL, "the %s service did not answer in time", who);
  else if (r->err || r->status >= 500)
    ps_reply_problem(req, PS_PROBLEM_UNAVAILABLE, NULL, "the %s service is unavailable", who);
  else
    ps_reply_problem(req, PS_PROBLEM_UPSTREAM, NULL, "the %s service answered %ld", who, r->status);
}

/* The other service's problem detail, or a fallback. */
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

/* --- step 1: the account must still exist ------------------------------------------------ */

static void on_user(const order_call_result_t *r, void *arg) {
  checkout_t *ck = arg;
  ps_req_t *req = ck->req;
  if (r->err == 0 && r->status == 200) {
    step_price(ck);
    return;
  }
  if (r->err == 0 && (r->status == 401 || r->status == 404)) {
    ps_reply_problem(req, PS_PROBLEM_UNAUTHORIZED, NULL, "the account of this token no longer exists");
    return;
  }
  reply_upstream(req, "user", r);
}

/* The user service answers /users/me for the same token; it is called with the client's own
 * Authorization header, not the service's. */
static void step_user(checkout_t *ck) {
  ps_req_t *req = ck->req;
  const char *auth = ps_req_header(req, "Authorization");
  order_call_user_start(THREAD(req), &req->arena,
                        ps_arena_sprintf(&req->arena, "%s/api/v1/users/me", SVC(req)->user_url),
                        auth ? auth : "", req, on_user, ck);
}

/* --- step 2: price every line ------------------------------------------------------------ */

static void on_price(const order_call_result_t *r, void *arg) {
  checkout_t *ck = arg;
  ps_req_t *req = ck->req;
  if (r->err || r->status != 200) {
    reply_upstream(req, "product", r);
    return;
  }
  if (order_price_or_reply(req, r->body, ck->in, ck->nin, &ck->o)) return;
  if (order_checkout_persist_or_reply(req, &ck->o, ck->discount)) return;
  order_fault(SVC(req), "after_persist");
  step_reserve(ck);
}

static void step_price(checkout_t *ck) {
  ps_req_t *req = ck->req;
  ps_arena_t *a = &req->arena;
  json_t *ids = json_array();
  for (size_t i = 0; i < ck->nin; i++) {
    int seen = 0;
    for (size_t j = 0; j < i && !seen; j++) seen = strcmp(ck->in[j].product_id, ck->in[i].product_id) == 0;
    if (!seen) json_array_append_new(ids, json_string(ck->in[i].product_id));
  }
  /* Only what pricing reads: the product service then builds no dates, attributes or images. */
  json_t *q = json_pack("{s:o, s:[s,s,s,s,s,s]}", "ids", ids, "fields", "id", "name", "price",
                        "currency", "stock", "variants");
  char *body = ps_json_dump(a, q);
  json_decref(q);
  start_call(ck, "POST", ps_arena_sprintf(a, "%s/internal/products/lookup", SVC(req)->product_url),
             body, NULL, 0, on_price);
}

/* --- step 3: reserve the stock ----------------------------------------------------------- */

static void on_reserve(const order_call_result_t *r, void *arg) {
  checkout_t *ck = arg;
  ps_req_t *req = ck->req;
  if (r->err == 0 && (r->status == 200 || r->status == 201)) {
    order_fault(SVC(req), "after_reserve");
    /* Nothing to pay (free items, or a discount that covers everything): no charge at all. */
    if (ck->o.total > 0) step_charge(ck);
    else step_commit(ck);
    return;
  }
  const char *field = NULL;
  order_failure_t f = {.from = ORDER_STEP_PENDING, .payment_status = "none"};
  if (r->err == 0 && r->status == 409) {
    f.problem = PS_PROBLEM_INSUFFICIENT_STOCK;
    f.detail = upstream_detail(req, r, "not enough stock", &field);
  } else if (r->err == 0 && r->status == 404) {
    f.problem = PS_PROBLEM_NOT_FOUND;
    f.detail = upstream_detail(req, r, "a product does not exist", &field);
  } else if (r->err == 0 && r->status >= 400 && r->status < 500) {
    f.problem = PS_PROBLEM_VALIDATION;
    f.detail = upstream_detail(req, r, "the product service refused the items", &field);
  } else if (r->err == PS_ETIMEOUT || r->status == 504) {
    f.problem = PS_PROBLEM_TIMEOUT;
    f.detail = "the product service did not answer in time";
  } else {
    f.problem = PS_PROBLEM_UNAVAILABLE;
    f.detail = "the product service is unavailable";
  }
  f.field = field;
  order_fail_and_reply(req, &ck->o, &f);
}

static void step_reserve(checkout_t *ck) {
  ps_req_t *req = ck->req;
  ps_arena_t *a = &req->arena;
  const order_t *o = &ck->o;
  json_t *items = json_array();
  for (size_t i = 0; i < o->nitems; i++)
    json_array_append_new(items, json_pack("{s:s, s:s?, s:I}", "product_id", o->items[i].product_id,
                                           "variant", o->items[i].variant, "quantity",
                                           (json_int_t)o->items[i].quantity));
  json_t *q = json_pack("{s:s, s:I, s:o}", "reservation_id", o->reservation_id, "ttl_seconds",
                        (json_int_t)SVC(req)->reservation_ttl, "items", items);
  char *body = ps_json_dump(a, q);
  json_decref(q);
  start_call(ck, "POST", ps_arena_sprintf(a, "%s/internal/reservations", SVC(req)->product_url),
             body, NULL, 0, on_reserve);
}

/* --- step 4: charge ---------------------------------------------------------------------- */

/* How a refused or failed charge fails the order. */
static void charge_failure(checkout_t *ck, const order_call_result_t *r, json_t *doc,
                           const char *status) {
  ps_req_t *req = ck->req;
  const char *field = NULL;
  order_failure_t f = {.from = ORDER_STEP_PENDING, .payment_status = "failed"};
  if (r->err == 0 && (r->status == 402 || (r->status >= 200 && r->status < 300 && status &&
                                           strcmp(status, "failed") == 0))) {
    const char *code = json_string_value(json_object_get(doc, "failure_code"));
    f.detail = r->status == 402 ? upstream_detail(req, r, "the payment was declined", &field)
                                : ps_arena_sprintf(&req->arena, "the payment was declined (%s)",
                                                   code ? code : "declined");
    f.problem = PS_PROBLEM_PAYMENT_DECLINED;
    f.field = "payment_method";
  } else if (r->err == 0 && r->status == 502 && json_is_object(json_object_get(doc, "payment"))) {
    /* The provider refused for its own reasons (a processing error): recorded as failed. */
    f.detail = upstream_detail(req, r, "the payment provider failed", &field);
    f.problem = PS_PROBLEM_UPSTREAM;
  } else if (r->err == 0 && r->status >= 400 && r->status < 500) {
    f.detail = upstream_detail(req, r, "the payment service refused the charge", &field);
    f.problem = PS_PROBLEM_PAYMENT_REJECTED;
    f.field = field ? field : "payment_method";
  } else if (r->err == PS_ETIMEOUT || r->status == 504) {
    f.payment_status = "unknown";
    f.problem = PS_PROBLEM_TIMEOUT;
    f.detail = "the payment service did not answer in time; the order failed and any charge "
               "will be refunded";
  } else {
    f.payment_status = "unknown";
    f.problem = PS_PROBLEM_UNAVAILABLE;
    f.detail = "the payment service is unavailable; the order failed and stock was released";
  }
  order_fail_and_reply(req, &ck->o, &f);
}

static void on_charge(const order_call_result_t *r, void *arg) {
  checkout_t *ck = arg;
  ps_arena_t *a = &ck->req->arena;
  json_t *doc = r->err == 0 ? json_loads(r->body ? r->body : "", 0, NULL) : NULL;
  ps_arena_defer(a, (ps_arena_cleanup_cb)json_decref, doc);
  const char *status = json_string_value(json_object_get(doc, "status"));
  const char *id = json_string_value(json_object_get(doc, "id"));
  if (r->err == 0 && r->status >= 200 && r->status < 300 && id && status &&
      strcmp(status, "succeeded") == 0) {
    ck->payment_id = ps_arena_strdup(a, id);
    order_fault(SVC(ck->req), "after_charge");
    step_commit(ck);
    return;
  }
  charge_failure(ck, r, doc, status);
}

static void step_charge(checkout_t *ck) {
  ps_req_t *req = ck->req;
  ps_arena_t *a = &req->arena;
  const order_t *o = &ck->o;
  json_t *q = json_pack("{s:s, s:s, s:I, s:s, s:O}", "order_id", o->id, "user_id", o->user_id,
                        "amount", (json_int_t)o->total, "currency", o->currency, "payment_method",
                        ck->method);
  char *body = ps_json_dump(a, q);
  json_decref(q);
  start_call(ck, "POST", ps_arena_sprintf(a, "%s/internal/payments", SVC(req)->payment_url), body,
             order_payment_key(a, o->id), SVC(req)->payment_timeout_ms, on_charge);
}

/* --- step 5: commit the reservation and answer -------------------------------------------- */

static void on_commit(const order_call_result_t *r, void *arg) {
  checkout_t *ck = arg;
  ps_req_t *req = ck->req;
  int release = 0;
  int rc = order_commit_result(r, ck->o.reservation_id, req->request_id);
  rc = order_after_commit(THREAD(req), &req->arena, &ck->o, rc, &release);
  if (rc == 0 && strcmp(ck->o.saga_step, ORDER_STEP_COMMITTED) == 0 && ck->o.response_body) {
    order_reply_text(req, 201, ck->o.response_body);
    return;
  }
  if (rc) ps_log(PS_LOG_WARN, req->request_id, "order %s: commit left to recovery: %s", ck->o.id,
                 ps_strerror(rc));
  /* The order's stored state answers (failed under us, or left to recovery), once the
   * compensations that must come first are done. */
  order_settle_and_reply(req, &ck->o, ck->payment_id, release);
}

static void step_commit(checkout_t *ck) {
  ps_req_t *req = ck->req;
  ck->o.payment_id = ck->payment_id;
  ck->o.payment_status = "paid";
  start_call(ck, "POST",
             ps_arena_sprintf(&req->arena, "%s/internal/reservations/%s/commit",
                              SVC(req)->product_url, ck->o.reservation_id),
             "{}", NULL, 0, on_commit);
}

/* --- the handler ------------------------------------------------------------------------ */

/* Validates the body into ck; answers and returns nonzero on bad input. */
static int input_or_reply(ps_req_t *req, json_t *body, checkout_t *ck) {
  const char *code = NULL, *method_label;
  if (order_items_or_reply(req, body, &ck->in, &ck->nin) ||
      order_address_or_reply(req, body, &ck->o.address) ||
      ps_json_opt_str_or_reply(req, body, "discount_code", 1, ORDER_DISCOUNT_CODE_MAX, &code) ||
      order_payment_method_or_reply(req, body, &ck->method, &method_label))
    return PS_EINVAL;
  if (code && !(ck->discount = order_discount_find(order_discounts, order_ndiscounts, code))) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "discount_code", "%s is not a valid discount code", code);
    return PS_EINVAL;
  }
  ck->o.payment_method = method_label;
  return 0;
}

void order_handle_create(ps_req_t *req) {
  static const char *const allowed[] = {"items", "address", "discount_code", "payment_method",
                                        "total", "subtotal", "discount", "currency", NULL};
  order_store_t *st = THREAD(req)->store;
  ps_arena_t *a = &req->arena;
  const char *key;
  json_t *body;
  if (ps_auth_user_or_reply(req) || ps_idempotency_key_or_reply(req, 1, &key) ||
      ps_json_body_or_reply(req, &body) || ps_json_only_keys_or_reply(req, body, allowed))
    return;
  char *canon = json_dumps(body, JSON_SORT_KEYS | JSON_COMPACT);
  char *hash = order_sha256_hex(a, canon, strlen(canon));
  free(canon);
  checkout_t *ck = ps_arena_alloc(a, sizeof(*ck));
  memset(ck, 0, sizeof(*ck));
  ck->req = req;
  int rc = st->ops->get_by_key(st, a, req->claims.sub, key, &ck->o);
  if (rc == 0) {
    order_replay(req, &ck->o, hash);
    return;
  }
  if (rc != PS_ENOTFOUND) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  if (input_or_reply(req, body, ck)) return;
  ck->o.idempotency_key = key;
  ck->o.request_hash = hash;
  ps_req_defer(req);
  step_user(ck);
}
