/* saga.c - the checkout saga's calls to other services and the steps they share with the
 * recovery pass and the compensations: the call helpers (blocking for pool threads, started
 * on the loop for the checkout in checkout.c), reservation commit and release, the payment
 * lookup by order id, refunds, the store's side of a commit, the recovery pass that finishes
 * or compensates orders left mid-way by a crash (run on a pool thread, main.c), the order
 * outbox as a source of the core's relay (lib/outbox.c), and the order's JSON and events. Every step is
 * idempotent and every state change is a compare-and-set in the store, so the checkout and
 * the recovery pass can race without harm. */
#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "order.h"
#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/json.h"
#include "polyshop/log.h"
#include "polyshop/metrics.h"
#include "polyshop/timestamp.h"
#include "polyshop/uuid.h"

int64_t order_now(void) { return (int64_t)time(NULL); }

char *order_sha256_hex(ps_arena_t *a, const void *data, size_t len) {
  unsigned char h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, data, len);
  char *hex = ps_arena_alloc(a, sizeof(h) * 2 + 1);
  sodium_bin2hex(hex, sizeof(h) * 2 + 1, h, sizeof(h));
  return hex;
}

char *order_payment_key(ps_arena_t *a, const char *order_id) {
  return ps_arena_sprintf(a, "order-%s", order_id);
}

void order_fault(const order_service_t *svc, const char *point) {
#ifdef POLYSHOP_TEST_BUILD
  if (svc->fault_point && strcmp(svc->fault_point, point) == 0) {
    ps_log_warn("fault point %s: exiting as if killed", point);
    _exit(137);
  }
#else
  (void)svc;
  (void)point;
#endif
}

/* Latency of the calls to each service, registered before the server starts. */
enum { TGT_USER, TGT_PRODUCT, TGT_PAYMENT, TGT_NOTIFICATION, TGT_ANALYTICS, TGT_OTHER, TGT__COUNT };
static const char *const target_names[TGT__COUNT] = {"user", "product", "payment",
                                                     "notification", "analytics", "other"};
static ps_histogram_t *call_hist[TGT__COUNT];

void order_saga_metrics_register(void) {
  char labels[64];
  for (int i = 0; i < TGT__COUNT; i++) {
    snprintf(labels, sizeof(labels), "target=\"%s\"", target_names[i]);
    call_hist[i] = ps_metrics_histogram("polyshop_order_call_seconds", labels,
                                        "Latency of the order service's calls to other services");
  }
}

static int starts_with(const char *s, const char *prefix) {
  return prefix && strncmp(s, prefix, strlen(prefix)) == 0;
}

void order_call_observe(const order_service_t *svc, const char *url, unsigned long long t0) {
  int i = starts_with(url, svc->user_url)           ? TGT_USER
          : starts_with(url, svc->product_url)      ? TGT_PRODUCT
          : starts_with(url, svc->payment_url)      ? TGT_PAYMENT
          : starts_with(url, svc->notification_url) ? TGT_NOTIFICATION
          : starts_with(url, svc->analytics_url)    ? TGT_ANALYTICS
                                                    : TGT_OTHER;
  if (call_hist[i]) ps_histogram_observe(call_hist[i], (double)(ps_now_ns() - t0) / 1e9);
}

/* The thread's service token, re-signed when a minute old; NULL when it cannot be signed. */
static const char *call_token(order_thread_t *t) {
  int64_t now = order_now();
  if (t->call_token && now - t->call_token_at < 60) return t->call_token;
  ps_arena_t a;
  ps_arena_init(&a);
  char *tok = NULL;
  if (ps_jwt_sign(&t->svc->keys, &a, "service:order", NULL, PS_ROLE_ADMIN, now, &tok) == 0) {
    ps_free(t->call_token);
    t->call_token = ps_strdup(tok);
    t->call_token_at = now;
  }
  ps_arena_reset(&a);
  return t->call_token;
}

/* Fills call with what every call of this service carries: the internal token, the service's
 * admin token, the request id and the child of the caller's traceparent. */
static void build_call(order_thread_t *t, ps_arena_t *a, ps_call_t *call, const char *method,
                       const char *url, const char *body, const char *idem_key, long timeout_ms,
                       const char *request_id, const char *traceparent) {
  const char **headers = ps_arena_alloc(a, 3 * sizeof(*headers));
  int nh = 0;
  if (t->svc->internal_token)
    headers[nh++] = ps_arena_sprintf(a, "X-Internal-Token: %s", t->svc->internal_token);
  /* Internal routes take the shared secret; the few admin routes used here (the payment
   * history of an order) take an admin access token, which this service can sign with the
   * shop's key. Sent on every call, it also stands in for the secret when none is configured
   * (the one-machine launcher sets none). */
  const char *tok = call_token(t);
  if (tok) headers[nh++] = ps_arena_sprintf(a, "Authorization: Bearer %s", tok);
  headers[nh] = NULL;
  *call = (ps_call_t){.method = method, .url = url, .body = body,
                      .body_len = body ? strlen(body) : 0, .headers = headers,
                      .request_id = request_id, .traceparent = ps_trace_child(a, traceparent),
                      .idempotency_key = idem_key, .timeout_ms = timeout_ms,
                      /* Every call the saga makes is idempotent: reservations carry their
                       * id, charges and refunds their Idempotency-Key. */
                      .idempotent = 1};
}

static void fill_result(int rc, const ps_response_t *resp, order_call_result_t *out) {
  memset(out, 0, sizeof(*out));
  out->err = rc;
  if (rc == 0) {
    out->status = resp->status;
    out->body = resp->body;
  }
}

int order_call(order_thread_t *t, ps_arena_t *a, const char *method, const char *url,
               const char *body, const char *idem_key, long timeout_ms, const char *request_id,
               order_call_result_t *out) {
  ps_call_t call;
  build_call(t, a, &call, method, url, body, idem_key, timeout_ms, request_id, NULL);
  ps_response_t resp;
  unsigned long long t0 = ps_now_ns();
  int rc = ps_client_call(t->client, a, &call, &resp);
  order_call_observe(t->svc, url, t0);
  fill_result(rc, &resp, out);
  return rc;
}

/* One call in flight on a loop: what its callback needs. In the caller's arena. */
typedef struct {
  order_thread_t *t;
  const char *url;
  unsigned long long t0;
  order_call_cb cb;
  void *arg;
} pending_call_t;

static void call_done(int rc, ps_response_t *resp, void *arg) {
  pending_call_t *p = arg;
  order_call_observe(p->t->svc, p->url, p->t0);
  order_call_result_t r;
  fill_result(rc, resp, &r);
  p->cb(&r, p->arg);
}

static void start(order_thread_t *t, ps_arena_t *a, ps_call_t *call, order_call_cb cb, void *arg) {
  pending_call_t *p = ps_arena_alloc(a, sizeof(*p));
  *p = (pending_call_t){.t = t, .url = call->url, .t0 = ps_now_ns(), .cb = cb, .arg = arg};
  int rc = ps_client_start(t->loop_client, a, call, call_done, p);
  if (rc) { /* never started: the callback still runs, with the error */
    order_call_result_t r = {.err = rc};
    cb(&r, arg);
  }
}

void order_call_start(order_thread_t *t, ps_arena_t *a, const char *method, const char *url,
                      const char *body, const char *idem_key, long timeout_ms, ps_req_t *req,
                      order_call_cb cb, void *arg) {
  ps_call_t call;
  build_call(t, a, &call, method, url, body, idem_key, timeout_ms, req->request_id,
             req->traceparent);
  start(t, a, &call, cb, arg);
}

void order_call_user_start(order_thread_t *t, ps_arena_t *a, const char *url,
                           const char *authorization, ps_req_t *req, order_call_cb cb,
                           void *arg) {
  const char **headers = ps_arena_alloc(a, 2 * sizeof(*headers));
  headers[0] = ps_arena_sprintf(a, "Authorization: %s", authorization);
  headers[1] = NULL;
  ps_call_t call = {.method = "GET", .url = url, .headers = headers,
                    .request_id = req->request_id,
                    .traceparent = ps_trace_child(a, req->traceparent)};
  start(t, a, &call, cb, arg);
}

/* Maps a transport failure or a 5xx answer to a PS_E* code. */
static int call_err(const order_call_result_t *r) {
  if (r->err) return r->err == PS_ETIMEOUT ? PS_ETIMEOUT : PS_EUNAVAIL;
  if (r->status >= 500) return r->status == 504 ? PS_ETIMEOUT : PS_EUNAVAIL;
  return 0;
}

/* What a reservation call's answer means: 0, PS_ENOTFOUND, PS_ECONFLICT or an error. */
static int reservation_result(const order_call_result_t *r, const char *rid, const char *op,
                              const char *request_id) {
  int err = call_err(r);
  if (err) return err;
  if (r->status == 200 || r->status == 201) return 0;
  if (r->status == 404) return PS_ENOTFOUND;
  if (r->status == 409) return PS_ECONFLICT;
  ps_log(PS_LOG_WARN, request_id, "reservation %s %s answered %ld", rid, op, r->status);
  return PS_EUPSTREAM;
}

int order_commit_result(const order_call_result_t *r, const char *rid, const char *request_id) {
  return reservation_result(r, rid, "commit", request_id);
}

static int reservation_op(order_thread_t *t, ps_arena_t *a, const char *rid, const char *op,
                          const char *request_id) {
  order_call_result_t r;
  char *url = ps_arena_sprintf(a, "%s/internal/reservations/%s/%s", t->svc->product_url, rid, op);
  order_call(t, a, "POST", url, "{}", NULL, 0, request_id, &r);
  return reservation_result(&r, rid, op, request_id);
}

int order_reservation_release(order_thread_t *t, ps_arena_t *a, const char *rid,
                              const char *request_id) {
  int rc = reservation_op(t, a, rid, "release", request_id);
  /* Never reserved (the crash came before the product service saw it): nothing to give back. */
  return rc == PS_ENOTFOUND ? 0 : rc;
}

int order_reservation_commit(order_thread_t *t, ps_arena_t *a, const char *rid,
                             const char *request_id) {
  return reservation_op(t, a, rid, "commit", request_id);
}

int order_refund(order_thread_t *t, ps_arena_t *a, const char *payment_id, int64_t amount,
                 const char *request_id) {
  order_call_result_t r;
  char *url = ps_arena_sprintf(a, "%s/api/v1/payments/%s/refunds", t->svc->payment_url, payment_id);
  /* No amount: whatever is left of the capture goes back (amount is logged only). */
  (void)amount;
  const char *body = "{\"reason\":\"order cancelled or failed\"}";
  order_call(t, a, "POST", url, body, ps_arena_sprintf(a, "refund-%s", payment_id), 0,
             request_id, &r);
  int err = call_err(&r);
  if (err) return err;
  if (r.status == 200 || r.status == 201) return 0;
  /* Already refunded in full (by an earlier attempt under another key): nothing is left. */
  if (r.status == 409 || r.status == 422) {
    ps_log(PS_LOG_WARN, request_id, "refund of %s answered %ld: %s", payment_id, r.status,
           r.body ? r.body : "");
    return 0;
  }
  ps_log(PS_LOG_WARN, request_id, "refund of %s answered %ld", payment_id, r.status);
  return PS_EUPSTREAM;
}

int order_payment_lookup(order_thread_t *t, ps_arena_t *a, const order_t *o,
                         const char **payment_id) {
  *payment_id = NULL;
  order_call_result_t r;
  char *url = ps_arena_sprintf(a, "%s/api/v1/payments?order_id=%s&limit=100", t->svc->payment_url,
                               o->id);
  order_call(t, a, "GET", url, NULL, NULL, 0, NULL, &r);
  int err = call_err(&r);
  if (err) return err;
  if (r.status != 200) return PS_EUPSTREAM;
  json_t *doc = json_loads(r.body ? r.body : "", 0, NULL);
  json_t *items = json_object_get(doc, "items");
  if (!json_is_array(items)) {
    json_decref(doc);
    return PS_EUPSTREAM;
  }
  int rc = 0;
  size_t i;
  json_t *p;
  json_array_foreach(items, i, p) {
    const char *status = json_string_value(json_object_get(p, "status"));
    const char *id = json_string_value(json_object_get(p, "id"));
    if (!status || !id) continue;
    if (strcmp(status, "pending") == 0) {
      rc = PS_ECONFLICT; /* still in the provider's hands: ask again later */
    } else if (strcmp(status, "failed") != 0) {
      *payment_id = ps_arena_strdup(a, id); /* succeeded or (partially) refunded: captured */
      break;
    }
  }
  json_decref(doc);
  return *payment_id ? 0 : rc;
}

/* --- JSON shapes ----------------------------------------------------------------------- */

json_t *order_json(const order_t *o) {
  json_t *items = json_array();
  for (size_t i = 0; i < o->nitems; i++) {
    const order_item_t *it = &o->items[i];
    json_array_append_new(items, json_pack("{s:s, s:s?, s:s, s:I, s:I, s:I}", "product_id",
                                           it->product_id, "variant", it->variant, "name",
                                           it->name, "unit_price", (json_int_t)it->unit_price,
                                           "quantity", (json_int_t)it->quantity, "line_total",
                                           (json_int_t)it->line_total));
  }
  json_t *address = json_loads(o->address ? o->address : "{}", 0, NULL);
  if (!address) address = json_object();
  char created[PS_TIME_RFC3339_SIZE], updated[PS_TIME_RFC3339_SIZE];
  return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:s?, s:o, s:o, s:s, s:s}", "order_id",
                   o->id, "status", o->status, "payment_status", o->payment_status, "subtotal",
                   (json_int_t)o->subtotal, "discount", (json_int_t)o->discount, "total",
                   (json_int_t)o->total, "currency", o->currency, "discount_code",
                   o->discount_code, "address", address, "items", items, "created_at",
                   ps_time_rfc3339_buf(created, o->created_at), "updated_at",
                   ps_time_rfc3339_buf(updated, o->updated_at));
}

static const ps_event_routes_t *event_routes;

void order_events_route_by(const ps_event_routes_t *routes) { event_routes = routes; }

void order_event(ps_arena_t *a, order_change_t *c, const char *type, const order_t *o,
                 const char *from_status, const char *to_status) {
  const char *destinations[ORDER_CHANGE_EVENTS_MAX] = {"notification", "analytics"};
  size_t ndest = event_routes ? ps_event_routes_match(event_routes, type, destinations,
                                                      ORDER_CHANGE_EVENTS_MAX)
                              : 2;
  json_t *items = json_array();
  for (size_t i = 0; i < o->nitems; i++)
    json_array_append_new(items, json_pack("{s:s, s:s?, s:I, s:I}", "product_id",
                                           o->items[i].product_id, "variant",
                                           o->items[i].variant, "quantity",
                                           (json_int_t)o->items[i].quantity, "unit_price",
                                           (json_int_t)o->items[i].unit_price));
  const char *id = ps_uuid_v7(a);
  json_t *p = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:I, s:s, s:o, s:I}", "id", id, "type",
                        type, "order_id", o->id, "user_id", o->user_id, "status", to_status,
                        "from_status", from_status, "total", (json_int_t)o->total, "currency",
                        o->currency, "items", items, "occurred_at", (json_int_t)c->now);
  char *payload = ps_json_dump(a, p);
  json_decref(p);
  for (size_t d = 0; d < ndest && c->nevents < ORDER_CHANGE_EVENTS_MAX; d++) {
    outbox_event_t *e = &c->events[c->nevents++];
    e->id = id;
    e->destination = destinations[d];
    e->type = type;
    e->payload = payload;
    e->next_attempt_at = c->now;
  }
}

/* --- recovery -------------------------------------------------------------------------- */

static int change(order_thread_t *t, order_change_t *c) {
  c->now = order_now();
  return t->store->ops->change(t->store, c);
}

/* Moves a failed order from releasing to released: gives the stock back and makes sure no
 * money stays captured. Returns 0 when final, or the error that stopped it (tried later). */
int order_finish_release(order_thread_t *t, ps_arena_t *a, order_t *o) {
  int rc = order_reservation_release(t, a, o->reservation_id, NULL);
  if (rc) return rc;
  const char *pay_status = NULL;
  if (strcmp(o->payment_status, "unknown") == 0 || strcmp(o->payment_status, "paid") == 0) {
    const char *pid = o->payment_id;
    if (!pid && (rc = order_payment_lookup(t, a, o, &pid))) return rc;
    if (pid) {
      if ((rc = order_refund(t, a, pid, o->total, NULL))) return rc;
      pay_status = "refunded";
    } else if (strcmp(o->payment_status, "unknown") == 0 &&
               order_now() - o->updated_at < t->svc->payment_settle_s) {
      /* A charge that timed out may still land at the provider: look again until it has had
       * time to settle, and refund it if it does. The stock is already back. */
      return PS_ECONFLICT;
    } else {
      pay_status = "failed";
    }
  }
  order_change_t c = {.id = o->id, .expect_step = ORDER_STEP_RELEASING,
                      .step = ORDER_STEP_RELEASED, .payment_status = pay_status};
  rc = change(t, &c);
  return rc == PS_ECONFLICT ? 0 : rc;
}

/* Moves a cancelled order from refunding to refunded. */
int order_finish_refund(order_thread_t *t, ps_arena_t *a, order_t *o) {
  int rc = 0;
  if (o->payment_id && (rc = order_refund(t, a, o->payment_id, o->total, NULL))) return rc;
  if ((rc = order_reservation_release(t, a, o->reservation_id, NULL))) return rc;
  order_change_t c = {.id = o->id, .expect_step = ORDER_STEP_REFUNDING,
                      .step = ORDER_STEP_REFUNDED, .payment_status = "refunded"};
  rc = change(t, &c);
  return rc == PS_ECONFLICT ? 0 : rc;
}

/* The commit went through: the order moves to processing, with the checkout's answer. */
static int mark_committed(order_thread_t *t, ps_arena_t *a, order_t *o) {
  order_fault(t->svc, "after_commit");
  order_change_t c = {.id = o->id, .expect_step = o->saga_step,
                      .step = ORDER_STEP_COMMITTED, .status = "processing",
                      .payment_status = "paid", .payment_id = o->payment_id};
  c.now = order_now();
  order_event(a, &c, "order_status_changed", o, "new", "processing");
  /* The answer to the checkout (and to every replay of its key) is stored with the step
   * that makes it true, in the same transaction. */
  order_t after = *o;
  after.status = "processing";
  after.payment_status = "paid";
  after.saga_step = ORDER_STEP_COMMITTED;
  after.updated_at = c.now;
  json_t *answer = order_json(&after);
  c.response_status = 201;
  c.response_body = ps_json_dump(a, answer);
  json_decref(answer);
  int rc = t->store->ops->change(t->store, &c);
  if (rc == 0) {
    after.response_status = c.response_status;
    after.response_body = c.response_body;
    *o = after;
  }
  return rc == PS_ECONFLICT ? 0 : rc;
}

int order_after_commit(order_thread_t *t, ps_arena_t *a, order_t *o, int commit_rc,
                       int *release) {
  *release = 0;
  if (commit_rc == 0) return mark_committed(t, a, o);
  if (commit_rc != PS_ECONFLICT && commit_rc != PS_ENOTFOUND) return commit_rc;
  /* The reservation expired or was released under us: the money goes back. */
  order_change_t c = {.id = o->id, .expect_step = o->saga_step,
                      .step = ORDER_STEP_RELEASING, .status = "failed",
                      .failure = "the stock reservation expired before it was committed"};
  c.now = order_now();
  order_event(a, &c, "order_status_changed", o, "new", "failed");
  int rc = t->store->ops->change(t->store, &c);
  if (rc) return rc == PS_ECONFLICT ? 0 : rc;
  o->saga_step = ORDER_STEP_RELEASING;
  *release = 1;
  return 0;
}

int order_finish_charged(order_thread_t *t, ps_arena_t *a, order_t *o, const char *request_id) {
  int release;
  int rc = order_reservation_commit(t, a, o->reservation_id, request_id);
  rc = order_after_commit(t, a, o, rc, &release);
  return rc == 0 && release ? order_finish_release(t, a, o) : rc;
}

/* One order: drive it to a final step, or leave it for the next round on a transient error. */
static int recover_one(order_thread_t *t, ps_arena_t *a, const char *id) {
  order_t o;
  int rc = t->store->ops->get(t->store, a, id, &o);
  if (rc) return rc;
  ps_log_info("recovering order %s at step %s", o.id, o.saga_step);
  if (strcmp(o.saga_step, ORDER_STEP_PENDING) == 0 || strcmp(o.saga_step, ORDER_STEP_RESERVED) == 0) {
    const char *pid = NULL;
    int free_order = o.total == 0; /* never charged: nothing to look up */
    /* A pending order may have been charged: the checkout writes no step between its calls. */
    if (!free_order && (rc = order_payment_lookup(t, a, &o, &pid))) return rc;
    if (pid || (free_order && strcmp(o.saga_step, ORDER_STEP_RESERVED) == 0)) {
      order_change_t c = {.id = o.id, .expect_step = o.saga_step,
                          .step = ORDER_STEP_CHARGED, .payment_status = "paid", .payment_id = pid};
      if ((rc = change(t, &c))) return rc;
      o.saga_step = ORDER_STEP_CHARGED;
      o.payment_id = pid;
    } else {
      int charged_maybe = strcmp(o.saga_step, ORDER_STEP_RESERVED) == 0;
      order_change_t c = {.id = o.id, .expect_step = o.saga_step, .step = ORDER_STEP_RELEASING,
                          .status = "failed", .payment_status = charged_maybe ? "failed" : "none",
                          .failure = "checkout interrupted before payment"};
      c.now = order_now();
      order_event(a, &c, "order_status_changed", &o, "new", "failed");
      if ((rc = t->store->ops->change(t->store, &c))) return rc;
      o.saga_step = ORDER_STEP_RELEASING;
      o.payment_status = c.payment_status;
    }
  }
  if (strcmp(o.saga_step, ORDER_STEP_CHARGED) == 0) return order_finish_charged(t, a, &o, NULL);
  if (strcmp(o.saga_step, ORDER_STEP_RELEASING) == 0) return order_finish_release(t, a, &o);
  if (strcmp(o.saga_step, ORDER_STEP_REFUNDING) == 0) return order_finish_refund(t, a, &o);
  return 0;
}

int order_recover(order_thread_t *t) {
  ps_arena_t a;
  ps_arena_init(&a);
  const char **ids;
  size_t n = 0;
  int done = 0;
  if (t->store->ops->unfinished(t->store, &a, order_now() - t->svc->recovery_grace_s, 100, &ids,
                                &n) == 0) {
    for (size_t i = 0; i < n; i++) {
      ps_arena_t one;
      ps_arena_init(&one);
      int rc = recover_one(t, &one, ids[i]);
      if (rc)
        ps_log_warn("order %s not recovered yet: %s", ids[i], ps_strerror(rc));
      else
        done++;
      ps_arena_reset(&one);
    }
  }
  ps_arena_reset(&a);
  return done;
}

/* --- the outbox, as the core relay's source (outbox.h) ------------------------------------ */

/* On a pool thread. Sent rows are kept a while for inspection, then pruned (at most once an
 * hour); then the due rows, one destination at a time (the stores take at most two). */
static int src_due(void *ctx, ps_arena_t *a, int64_t now, const char *const *dests,
                   size_t ndests, int limit, ps_event_t **out, size_t *n) {
  order_thread_t *t = ctx;
  if (now - t->last_prune >= 3600) {
    int64_t pruned = 0;
    if (t->store->ops->outbox_prune(t->store, now - t->svc->outbox_retention_s, &pruned) == 0) {
      t->last_prune = now;
      if (pruned) ps_log_info("pruned %lld sent outbox events", (long long)pruned);
    }
  }
  *out = ps_arena_alloc(a, (size_t)limit * sizeof(**out));
  *n = 0;
  for (size_t d = 0; d < ndests && *n < (size_t)limit; d++) {
    const char *one[2] = {dests[d], NULL};
    outbox_event_t *ev;
    size_t got = 0;
    int rc = t->store->ops->outbox_due(t->store, a, now, one, limit - (int)*n, &ev, &got);
    if (rc) return rc;
    for (size_t i = 0; i < got; i++)
      (*out)[(*n)++] = (ps_event_t){.id = ev[i].id, .destination = ev[i].destination,
                                    .type = ev[i].type, .payload = ev[i].payload,
                                    .attempts = ev[i].attempts};
  }
  return 0;
}

static int src_delivered(void *ctx, const char *id, const char *dest, int64_t now) {
  order_thread_t *t = ctx;
  return t->store->ops->outbox_sent(t->store, id, dest, now);
}

static int src_failed(void *ctx, const char *id, const char *dest, int64_t next) {
  order_thread_t *t = ctx;
  return t->store->ops->outbox_retry(t->store, id, dest, next);
}

static const char *const *src_headers(void *ctx, ps_arena_t *a) {
  order_thread_t *t = ctx;
  const char **h = ps_arena_alloc(a, 3 * sizeof(*h));
  int nh = 0;
  if (t->svc->internal_token)
    h[nh++] = ps_arena_sprintf(a, "X-Internal-Token: %s", t->svc->internal_token);
  const char *tok = call_token(t);
  if (tok) h[nh++] = ps_arena_sprintf(a, "Authorization: Bearer %s", tok);
  h[nh] = NULL;
  return h;
}

static void src_observe(void *ctx, const char *url, unsigned long long t0) {
  order_thread_t *t = ctx;
  order_call_observe(t->svc, url, t0);
}

void order_outbox_source(order_thread_t *t, ps_outbox_source_t *out) {
  *out = (ps_outbox_source_t){.ctx = t, .due = src_due, .delivered = src_delivered,
                              .failed = src_failed, .headers_cb = src_headers,
                              .observe_cb = src_observe};
}
