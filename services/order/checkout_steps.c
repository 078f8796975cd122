/* checkout_steps.c - the local parts of the checkout between its calls: pricing the lines
 * from the product service's lookup, writing the new order with its outbox event, and the
 * endings that need compensations first (a failed order gives its stock and money back on a
 * pool thread, then the request is answered). */
#include <string.h>

#include "checkout.h"
#include "polyshop/error.h"
#include "polyshop/json.h"
#include "polyshop/log.h"
#include "polyshop/problem.h"
#include "polyshop/uuid.h"

#define THREAD(req) ((order_thread_t *)(req)->thread_ctx)

/* --- pricing ------------------------------------------------------------------------------ */

static json_t *find_by(json_t *array, const char *key, const char *value) {
  size_t k;
  json_t *x;
  json_array_foreach(array, k, x) {
    const char *v = json_string_value(json_object_get(x, key));
    if (v && strcmp(v, value) == 0) return x;
  }
  return NULL;
}

/* The product (and variant) of line i: its price, stock, name and currency. */
static int line_facts_or_reply(ps_req_t *req, json_t *products, const item_in_t *in, size_t i,
                               json_int_t *price, json_int_t *stock, json_t **product) {
  ps_arena_t *a = &req->arena;
  json_t *p = find_by(products, "id", in->product_id);
  if (!p) {
    ps_reply_problem(req, PS_PROBLEM_NOT_FOUND, ps_arena_sprintf(a, "items[%zu].product_id", i),
                     "product %s does not exist", in->product_id);
    return PS_ENOTFOUND;
  }
  *product = p;
  *price = json_integer_value(json_object_get(p, "price"));
  *stock = json_integer_value(json_object_get(p, "stock"));
  if (!in->variant) return 0;
  json_t *v = find_by(json_object_get(p, "variants"), "sku", in->variant);
  if (!v) {
    ps_reply_problem(req, PS_PROBLEM_NOT_FOUND, ps_arena_sprintf(a, "items[%zu].variant", i),
                     "product %s has no variant %s", in->product_id, in->variant);
    return PS_ENOTFOUND;
  }
  if (json_is_integer(json_object_get(v, "price"))) *price = json_integer_value(json_object_get(v, "price"));
  *stock = json_integer_value(json_object_get(v, "stock"));
  return 0;
}

/* Prices line i into o->items[i], adding to o->subtotal. */
static int price_line_or_reply(ps_req_t *req, json_t *products, const item_in_t *in, size_t i,
                               order_t *o) {
  ps_arena_t *a = &req->arena;
  json_int_t price, stock;
  json_t *p;
  if (line_facts_or_reply(req, products, in, i, &price, &stock, &p)) return PS_ENOTFOUND;
  const char *currency = json_string_value(json_object_get(p, "currency"));
  const char *name = json_string_value(json_object_get(p, "name"));
  if (!currency || price < 0) {
    ps_reply_problem(req, PS_PROBLEM_UPSTREAM, NULL, "product %s has no usable price", in->product_id);
    return PS_EUPSTREAM;
  }
  if (o->currency && strcmp(o->currency, currency) != 0) {
    ps_reply_problem(req, PS_PROBLEM_UNPROCESSABLE, ps_arena_sprintf(a, "items[%zu]", i),
                     "an order is paid in one currency: items[%zu] is priced in %s, not %s", i,
                     currency, o->currency);
    return PS_EINVAL;
  }
  o->currency = ps_arena_strdup(a, currency);
  if (stock < in->quantity) {
    ps_reply_problem(req, PS_PROBLEM_INSUFFICIENT_STOCK, ps_arena_sprintf(a, "items[%zu].quantity", i),
                     "product %s has %lld left; %lld asked", in->product_id, (long long)stock,
                     (long long)in->quantity);
    return PS_EINSUFFICIENT;
  }
  order_item_t *it = &o->items[i];
  *it = (order_item_t){.product_id = in->product_id, .variant = in->variant,
                       .name = ps_arena_strdup(a, name ? name : ""), .unit_price = price,
                       .quantity = in->quantity};
  if (order_line_total(price, in->quantity, &it->line_total) ||
      order_money_add(&o->subtotal, it->line_total)) {
    ps_reply_problem(req, PS_PROBLEM_UNPROCESSABLE, "items",
                     "the order comes to more than %lld minor units of %s, the most one "
                     "payment can take; split it into smaller orders",
                     (long long)PS_MONEY_MAX, o->currency);
    return PS_ERANGE;
  }
  return 0;
}

int order_price_or_reply(ps_req_t *req, const char *lookup, const item_in_t *in, size_t n,
                         order_t *o) {
  ps_arena_t *a = &req->arena;
  json_t *doc = json_loads(lookup ? lookup : "", 0, NULL);
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
  for (size_t i = 0; i < n; i++)
    if (price_line_or_reply(req, products, &in[i], i, o)) return PS_EINVAL;
  return 0;
}

/* --- the new order ------------------------------------------------------------------------ */

int order_checkout_persist_or_reply(ps_req_t *req, order_t *o, const discount_t *disc) {
  ps_arena_t *a = &req->arena;
  order_store_t *st = THREAD(req)->store;
  o->id = ps_uuid_v7(a);
  o->user_id = req->claims.sub;
  o->status = "new";
  o->payment_status = "pending";
  o->saga_step = ORDER_STEP_PENDING;
  o->discount = order_discount_amount(disc, o->subtotal);
  o->total = o->subtotal - o->discount;
  o->discount_code = disc ? disc->code : NULL;
  /* Chosen before the product service sees it, so a crash right after reserving still
   * leaves an order that names the reservation to release. */
  o->reservation_id = o->id;
  o->created_at = o->updated_at = order_now();
  order_change_t created = {.now = o->created_at};
  order_event(a, &created, "order_created", o, NULL, "new");
  int rc = st->ops->create(st, o, created.events, created.nevents);
  if (rc == PS_EEXISTS) {
    /* Another request with this key won the race. */
    order_t prev;
    if ((rc = st->ops->get_by_key(st, a, req->claims.sub, o->idempotency_key, &prev)) == 0) {
      order_replay(req, &prev, o->request_hash);
      return PS_EEXISTS;
    }
  }
  if (rc) ps_reply_error(req, rc, NULL);
  return rc;
}

/* --- endings with compensations ----------------------------------------------------------- */

typedef struct {
  order_t *o;
  const char *text; /* the stored answer */
  int status;
} failed_t;

static int release_run(order_thread_t *pt, ps_arena_t *a, void *arg) {
  failed_t *f = arg;
  return order_finish_release(pt, a, f->o);
}

static void release_done(ps_req_t *req, int rc, void *arg) {
  failed_t *f = arg;
  if (rc && rc != PS_ECONFLICT)
    ps_log(PS_LOG_WARN, req->request_id, "order %s: compensation left to recovery: %s",
           f->o->id, ps_strerror(rc));
  order_reply_text(req, f->status, f->text);
}

void order_fail_and_reply(ps_req_t *req, order_t *o, const order_failure_t *why) {
  order_thread_t *t = THREAD(req);
  char *text = order_problem_text(req, why->problem, why->field, why->detail);
  int status = ps_problem_status(why->problem);
  order_change_t c = {.id = o->id, .expect_step = why->from, .step = ORDER_STEP_RELEASING,
                      .status = "failed", .payment_status = why->payment_status,
                      .failure = why->detail, .response_status = status,
                      .response_body = text};
  c.now = order_now();
  order_event(&req->arena, &c, "order_status_changed", o, "new", "failed");
  int rc = t->store->ops->change(t->store, &c);
  if (rc == 0) {
    o->saga_step = ORDER_STEP_RELEASING;
    o->payment_status = why->payment_status;
    failed_t *f = ps_arena_alloc(&req->arena, sizeof(*f));
    *f = (failed_t){.o = o, .text = text, .status = status};
    order_offload(req, release_run, release_done, f);
    return;
  }
  /* The recovery worker got there first: the order's current state answers. */
  order_t now;
  if (t->store->ops->get(t->store, &req->arena, o->id, &now) == 0)
    order_reply_from_state(req, &now);
  else
    ps_reply_error(req, rc, NULL);
}

typedef struct {
  order_t *o;
  const char *payment_id; /* the charge this checkout made, or NULL */
  int release;            /* the order failed at its commit: compensate first */
} settle_t;

/* Compensations before the answer: the release of an order whose reservation expired, and
 * the refund of a charge made while the recovery worker failed the order (a checkout slower
 * than its grace period). */
static int settle_run(order_thread_t *pt, ps_arena_t *a, void *arg) {
  settle_t *s = arg;
  int rc = 0;
  if (s->release) rc = order_finish_release(pt, a, s->o);
  if (rc) ps_log_warn("order %s: compensation left to recovery: %s", s->o->id, ps_strerror(rc));
  order_t now;
  if ((rc = pt->store->ops->get(pt->store, a, s->o->id, &now))) return rc;
  *s->o = now;
  if (s->payment_id && strcmp(now.status, "failed") == 0 &&
      strcmp(now.payment_status, "refunded") != 0 &&
      (rc = order_refund(pt, a, s->payment_id, now.total, NULL)))
    ps_log_warn("order %s failed under its charge %s; refund: %s", now.id, s->payment_id,
                ps_strerror(rc));
  return 0;
}

static void settle_done(ps_req_t *req, int rc, void *arg) {
  settle_t *s = arg;
  if (rc) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  if (s->o->response_status > 0 && s->o->response_body) {
    order_reply_text(req, s->o->response_status, s->o->response_body);
    return;
  }
  order_reply_from_state(req, s->o);
}

void order_settle_and_reply(ps_req_t *req, order_t *o, const char *payment_id, int release) {
  settle_t *s = ps_arena_alloc(&req->arena, sizeof(*s));
  *s = (settle_t){.o = o, .payment_id = payment_id, .release = release};
  order_offload(req, settle_run, settle_done, s);
}
