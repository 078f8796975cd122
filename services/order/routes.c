/* routes.c - the order service's HTTP handlers but the checkout (checkout.c): history,
 * detail, cancel and the admin status change, and the answers they share with the checkout.
 * The route table is at the bottom. */
#include <stdio.h>
#include <string.h>

#include "checkout.h"
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
char *order_problem_text(ps_req_t *req, ps_problem_t problem, const char *field,
                         const char *detail) {
  json_t *p = ps_problem_json(req, problem, field, detail);
  char *text = ps_json_dump(&req->arena, p);
  json_decref(p);
  return text;
}

/* Sends a stored answer; errors leave through the core's problem sender. */
void order_reply_text(ps_req_t *req, int status, const char *text) {
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
void order_reply_from_state(ps_req_t *req, const order_t *o) {
  if (strcmp(o->saga_step, ORDER_STEP_RELEASING) == 0 ||
      strcmp(o->saga_step, ORDER_STEP_RELEASED) == 0) {
    order_reply_text(req, 409, order_problem_text(req, PS_PROBLEM_ORDER_FAILED, NULL,
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
void order_replay(ps_req_t *req, const order_t *o, const char *hash) {
  if (strcmp(o->request_hash, hash) != 0) {
    ps_reply_problem(req, PS_PROBLEM_IDEMPOTENCY_MISMATCH, "Idempotency-Key",
                     "this Idempotency-Key was used with another request body");
    return;
  }
  if (o->response_status > 0 && o->response_body) {
    ps_reply_header(req, "Idempotent-Replayed", "true");
    order_reply_text(req, o->response_status, o->response_body);
    return;
  }
  order_reply_from_state(req, o);
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

/* The refund and the release of a cancel, on a pool thread (they wait on their calls). */
static int cancel_run(order_thread_t *pt, ps_arena_t *a, void *arg) {
  return order_finish_refund(pt, a, arg);
}

static void cancel_done(ps_req_t *req, int rc, void *arg) {
  order_t *o = arg;
  if (rc) ps_log(PS_LOG_WARN, req->request_id, "order %s: refund left to recovery: %s", o->id, ps_strerror(rc));
  if ((rc = STORE(req)->ops->get(STORE(req), &req->arena, o->id, o))) {
    ps_reply_error(req, rc, NULL);
    return;
  }
  reply_order(req, 200, o);
}

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
  order_t *held = ps_arena_alloc(&req->arena, sizeof(*held));
  *held = *o;
  held->saga_step = ORDER_STEP_REFUNDING;
  ps_req_defer(req);
  order_offload(req, cancel_run, cancel_done, held);
}

static void handle_cancel(ps_req_t *req) {
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
    {"POST", "/api/v1/orders", order_handle_create},
    {"GET", "/api/v1/orders", handle_list},
    {"GET", "/api/v1/orders/{id}", handle_get},
    {"POST", "/api/v1/orders/{id}/cancel", handle_cancel},
    {"PATCH", "/api/v1/orders/{id}", handle_patch},
};
const size_t order_nroutes = sizeof(order_routes) / sizeof(order_routes[0]);
