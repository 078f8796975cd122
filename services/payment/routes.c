/* routes.c - the payment service's HTTP handlers: idempotent charges, history, refunds,
 * Stripe webhooks and the audit log check. The route table is at the bottom.
 *
 * Answers that an Idempotency-Key protects (charges, keyed refunds) are built as text first,
 * stored with the key, then sent, so a repeated request gets the very same bytes back. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger.h"
#include "payment.h"
#include "polyshop/error.h"
#include "polyshop/idempotency.h"
#include "polyshop/json.h"
#include "polyshop/log.h"
#include "polyshop/metrics.h"
#include "polyshop/money.h"
#include "polyshop/problem.h"
#include "polyshop/uuid.h"

#define SVC(req) ((payment_service_t *)(req)->service_ctx)
#define THR(req) ((payment_thread_t *)(req)->thread_ctx)
#define STORE(req) (THR(req)->store)
#define PROVIDER(req) (THR(req)->provider)

#define CT_JSON "application/json"
#define CT_PROBLEM "application/problem+json"

enum { LIST_LIMIT_DEFAULT = 20, LIST_LIMIT_MAX = 100 };

/* --- small helpers ---------------------------------------------------------------------- */

void payment_metrics_register(payment_service_t *svc) {
  static const char *const store_ops[] = {
      [M_CHARGE_CLAIM] = "charge_claim",     [M_CHARGE_FINISH] = "charge_finish",
      [M_REFUND_RESERVE] = "refund_reserve", [M_REFUND_FINISH] = "refund_finish",
      [M_WEBHOOK_APPLY] = "webhook_apply",   [M_AUDIT_VERIFY] = "audit_verify",
      [M_PAYMENT_GET] = "payment_get",       [M_PAYMENT_LIST] = "payment_list"};
  ps_store_timing_register(&svc->store_timing, NULL, store_ops, M_PROVIDER_CHARGE,
                           "Latency of store calls (whole transactions)");
  char labels[96];
  snprintf(labels, sizeof(labels), "provider=\"%s\",op=\"charge\"", svc->provider.kind);
  svc->metrics[M_PROVIDER_CHARGE] = ps_metrics_histogram(
      "polyshop_payment_provider_seconds", labels, "Latency of payment provider calls");
  snprintf(labels, sizeof(labels), "provider=\"%s\",op=\"refund\"", svc->provider.kind);
  svc->metrics[M_PROVIDER_REFUND] = ps_metrics_histogram(
      "polyshop_payment_provider_seconds", labels, "Latency of payment provider calls");
}

/* Records the time since t0 (ps_now_ns) under metric m: a store call through the core's
 * store timing, a provider call in its own histogram. */
static void took(ps_req_t *req, payment_metric_t m, unsigned long long t0) {
  if (m < M_PROVIDER_CHARGE) {
    ps_store_timing_end(&SVC(req)->store_timing, (int)m, t0);
    return;
  }
  struct ps_histogram *h = SVC(req)->metrics[m];
  if (h) ps_histogram_observe(h, (double)(ps_now_ns() - t0) / 1e9);
}

static int64_t now_s(void) { return (int64_t)time(NULL); }

static void decref_cb(void *v) { json_decref(v); }

static char *iso_time(ps_arena_t *a, int64_t t) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  char *s = ps_arena_alloc(a, 24);
  strftime(s, 24, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return s;
}

static json_t *str_or_null(const char *s) { return s && *s ? json_string(s) : json_null(); }

static json_t *payment_json(ps_arena_t *a, const payment_t *p) {
  json_t *card = p->card_last4 && *p->card_last4
                     ? json_pack("{s:s, s:s}", "brand", p->card_brand, "last4", p->card_last4)
                     : json_null();
  return json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:o, s:I, s:I, s:o, s:o, s:s, s:s}",
                   "id", p->id, "order_id", p->order_id, "user_id", p->user_id, "amount",
                   (json_int_t)p->amount, "currency", p->currency, "status", p->status,
                   "provider", p->provider, "provider_ref", str_or_null(p->provider_ref),
                   "captured", (json_int_t)p->captured, "refunded", (json_int_t)p->refunded,
                   "failure_code", str_or_null(p->failure_code), "card", card, "created_at",
                   iso_time(a, p->created_at), "updated_at", iso_time(a, p->updated_at));
}

static json_t *refund_json(ps_arena_t *a, const refund_t *r) {
  return json_pack("{s:s, s:s, s:I, s:s, s:o, s:o, s:s, s:s}", "id", r->id, "payment_id",
                   r->payment_id, "amount", (json_int_t)r->amount, "status", r->status,
                   "provider_ref", str_or_null(r->provider_ref), "reason",
                   str_or_null(r->reason), "created_at", iso_time(a, r->created_at),
                   "updated_at", iso_time(a, r->updated_at));
}

/* Dumps v (reference taken) into the arena. */
static char *dump(ps_req_t *req, json_t *v) {
  char *text = ps_json_dump(&req->arena, v);
  json_decref(v);
  return text;
}

/* Sends an answer built as text (to be stored with its key); an error goes out through the
 * core's problem sender like every other. */
static void send_text(ps_req_t *req, int status, const char *ctype, const char *body) {
  if (status >= 400)
    ps_reply_problem_text(req, status, body);
  else
    ps_reply_raw(req, status, ctype, body, strlen(body));
}

/* The order service (X-Internal-Token) or an admin, by the core's one rule
 * (ps_auth_internal_or_reply; docs/design.md, Authentication). */
static int internal_or_admin_or_reply(ps_req_t *req) {
  return ps_auth_internal_or_reply(req, SVC(req)->internal_token);
}

static int is_admin(ps_req_t *req) { return req->claims.sub && req->claims.role == PS_ROLE_ADMIN; }

static int check_or_reply(ps_req_t *req, const char *field, const char *why) {
  if (!why) return 0;
  ps_reply_problem(req, PS_PROBLEM_VALIDATION, field, "%s", why);
  return PS_EINVAL;
}

static void send_stored(ps_req_t *req, const idem_t *idem) {
  ps_reply_header(req, "Idempotent-Replayed", "true");
  send_text(req, idem->response_status, idem->response_type, idem->response_body);
}

/* Answers a claim that cannot go ahead (done, busy, mismatch); returns 1 when it answered.
 * A key whose first request is still running is answered at once, never waited for on the
 * loop: 503 idempotency-in-progress with Retry-After, which the core client retries for an
 * idempotent POST (docs/payment.md). */
static int claim_answered(ps_req_t *req, claim_t outcome, const idem_t *idem) {
  switch (outcome) {
    case CLAIM_DONE: send_stored(req, idem); return 1;
    case CLAIM_MISMATCH:
      ps_reply_problem(req, PS_PROBLEM_IDEMPOTENCY_MISMATCH, "Idempotency-Key",
                       "this Idempotency-Key was used with a different request");
      return 1;
    case CLAIM_BUSY:
      ps_reply_problem(req, PS_PROBLEM_IDEMPOTENCY_IN_PROGRESS, "Idempotency-Key",
                       "a request with this Idempotency-Key is still being processed; retry "
                       "after Retry-After for its answer");
      return 1;
    default: return 0;
  }
}

/* --- charges ---------------------------------------------------------------------------- */

/* Reads and checks a charge body; fills p (pending) and the card / token to charge. */
static int charge_body_or_reply(ps_req_t *req, int internal, payment_t *p,
                                const char **card, const char **token) {
  static const char *const allowed_public[] = {"order_id", "amount", "currency",
                                               "payment_method", NULL};
  static const char *const allowed_internal[] = {"order_id", "amount", "currency",
                                                 "payment_method", "user_id", NULL};
  static const char *const pm_allowed[] = {"card_number", "exp_month", "exp_year", "cvc",
                                           "token", NULL};
  json_t *body, *pm;
  long long amount, exp;
  int present;
  const char *cvc;
  if (ps_json_body_or_reply(req, &body) ||
      ps_json_only_keys_or_reply(req, body, internal ? allowed_internal : allowed_public) ||
      ps_json_str_or_reply(req, body, "order_id", 1, 64, &p->order_id) ||
      check_or_reply(req, "order_id", payment_check_ref(p->order_id) ? "order_id may hold only letters, digits and _ - . :" : NULL) ||
      ps_json_int_or_reply(req, body, "amount", 1, PS_MONEY_MAX, &amount) ||
      ps_json_str_or_reply(req, body, "currency", 3, 3, &p->currency) ||
      check_or_reply(req, "currency", payment_check_currency(p->currency)) ||
      ps_json_object_or_reply(req, body, "payment_method", &pm) ||
      ps_json_only_keys_or_reply(req, pm, pm_allowed) ||
      ps_json_opt_str_or_reply(req, pm, "card_number", 1, 19, card) ||
      ps_json_opt_str_or_reply(req, pm, "token", 1, 255, token) ||
      ps_json_opt_int_or_reply(req, pm, "exp_month", 1, 12, &exp, &present) ||
      ps_json_opt_int_or_reply(req, pm, "exp_year", 2000, 2100, &exp, &present) ||
      ps_json_opt_str_or_reply(req, pm, "cvc", 3, 4, &cvc))
    return PS_EINVAL;
  if (internal) {
    if (ps_json_str_or_reply(req, body, "user_id", 1, 64, &p->user_id) ||
        check_or_reply(req, "user_id", payment_check_ref(p->user_id) ? "user_id may hold only letters, digits and _ - . :" : NULL))
      return PS_EINVAL;
  }
  if ((*card != NULL) == (*token != NULL))
    return check_or_reply(req, "payment_method",
                          "payment_method needs exactly one of card_number and token");
  if (*card && check_or_reply(req, "payment_method.card_number", payment_check_card_number(*card)))
    return PS_EINVAL;
  if (*token && check_or_reply(req, "payment_method.token", payment_check_token(*token)))
    return PS_EINVAL;
  if (cvc && strspn(cvc, "0123456789") != strlen(cvc))
    return check_or_reply(req, "payment_method.cvc", "cvc must have 3 or 4 digits");
  if (*card && strcmp(PROVIDER(req)->ops->name, "stripe") == 0 && !provider_test_card_method(*card))
    return check_or_reply(req, "payment_method.card_number",
                          "this provider takes a payment method token, not a card number");
  p->amount = amount;
  return 0;
}

/* Builds the answer for a settled charge and records it; returns the HTTP status. */
static int charge_answer(ps_req_t *req, payment_t *p, const provider_result_t *res,
                         const char **ctype, const char **text) {
  p->provider_ref = res->ref ? res->ref : "";
  if (res->outcome == PROVIDER_SUCCEEDED) {
    p->status = PAYMENT_SUCCEEDED;
    p->captured = res->captured > 0 && res->captured <= p->amount ? res->captured : p->amount;
    p->failure_code = "";
    *ctype = CT_JSON;
    *text = dump(req, payment_json(&req->arena, p));
    return 201;
  }
  p->status = PAYMENT_FAILED;
  p->captured = 0;
  p->failure_code = res->code && *res->code ? res->code : "failed";
  int declined = res->outcome == PROVIDER_DECLINED;
  int status = declined ? 402 : 502;
  const char *msg = res->message && *res->message ? res->message
                    : declined ? "the card was declined" : "the payment provider failed";
  json_t *pb = ps_problem_json(req, declined ? PS_PROBLEM_PAYMENT_DECLINED : PS_PROBLEM_UPSTREAM,
                               NULL, msg);
  json_object_set_new(pb, "code", json_string(p->failure_code));
  json_object_set_new(pb, "payment_id", json_string(p->id));
  json_object_set_new(pb, "payment", payment_json(&req->arena, p));
  *ctype = CT_PROBLEM;
  *text = dump(req, pb);
  return status;
}

/* Claims the Idempotency-Key for the new payment p, or answers: the stored answer, a
 * mismatch, the key in progress, a store failure. Returns 0 when this request goes on to
 * charge *pay (p, or the pending payment of an attempt that never finished). */
static int claim_or_reply(ps_req_t *req, const char *scope, const char *key, const char *hash,
                          payment_t *p, idem_t *idem, payment_t *pay) {
  claim_t outcome;
  unsigned long long t0 = ps_now_ns();
  int rc = ledger_charge_claim(STORE(req), &req->arena, scope, key, hash, p, p->created_at,
                               SVC(req)->claim_stale_after, &outcome, idem, pay);
  took(req, M_CHARGE_CLAIM, t0);
  if (rc) {
    ps_reply_error(req, rc, "the payment store failed");
    return rc;
  }
  return claim_answered(req, outcome, idem) ? PS_EEXISTS : 0;
}

/* The provider's outcome of a charge is unknown: the payment stays pending and the key is
 * given back, so a retry with the same key charges the same payment with the same provider
 * key (never twice). */
static void reply_charge_unknown(ps_req_t *req, const payment_t *pay, idem_t *idem, int rc) {
  int rel = ledger_idem_release(STORE(req), idem);
  if (rel) ps_log(PS_LOG_ERROR, req->request_id, "releasing key of payment %s: %s", pay->id, ps_strerror(rel));
  ps_reply_header(req, "Retry-After", "1");
  if (rc == PS_ETIMEOUT)
    ps_reply_problem(req, PS_PROBLEM_TIMEOUT, NULL, "the payment provider did not answer in time; retry with the same Idempotency-Key");
  else
    ps_reply_problem(req, PS_PROBLEM_UPSTREAM, NULL, "the payment provider is unreachable (%s); retry with the same Idempotency-Key", ps_strerror(rc));
}

/* Records the settled charge with the answer for its key, then sends that answer. */
static void finish_charge(ps_req_t *req, payment_t *pay, const idem_t *idem,
                          const provider_result_t *res) {
  const char *ctype, *text;
  payment_t settled = *pay;
  int status = charge_answer(req, pay, res, &ctype, &text);
  if (strcmp(settled.status, PAYMENT_PENDING) != 0 && status == 201) {
    /* Show it as recorded (it may have been refunded since), not as freshly captured. */
    *pay = settled;
    text = dump(req, payment_json(&req->arena, pay));
  }
  unsigned long long t0 = ps_now_ns();
  int rc = ledger_charge_finish(STORE(req), &req->arena, pay, idem, status, ctype, text, now_s());
  took(req, M_CHARGE_FINISH, t0);
  if (rc) {
    /* The provider acted but we could not record it: the claim goes stale and a retry with
     * the key asks the provider again under the same provider key. */
    ps_log(PS_LOG_ERROR, req->request_id, "recording payment %s failed: %s", pay->id, ps_strerror(rc));
    ps_reply_error(req, rc, "the payment store failed; retry with the same Idempotency-Key");
    return;
  }
  if (status == 201)
    ps_reply_header(req, "Location", ps_arena_sprintf(&req->arena, "/api/v1/payments/%s", pay->id));
  send_text(req, status, ctype, text);
}

/* One charge between its claim and its answer, in the request's arena. */
typedef struct {
  payment_t pay;
  idem_t idem;
  provider_result_t res;
  unsigned long long t0;
} charge_t;

static void charged(ps_req_t *req, int rc, void *arg) {
  charge_t *c = arg;
  took(req, M_PROVIDER_CHARGE, c->t0);
  if (rc) {
    reply_charge_unknown(req, &c->pay, &c->idem, rc);
    return;
  }
  finish_charge(req, &c->pay, &c->idem, &c->res);
}

/* Charges the claimed payment c->pay, or answers from its record when the provider's webhook
 * settled it meanwhile (a retry of a charge: the provider is not asked again). */
static void settle(ps_req_t *req, charge_t *c, const char *card, const char *token) {
  payment_t *pay = &c->pay;
  if (strcmp(pay->status, PAYMENT_PENDING) != 0) {
    int ok = strcmp(pay->status, PAYMENT_FAILED) != 0;
    c->res = (provider_result_t){.outcome = ok ? PROVIDER_SUCCEEDED : PROVIDER_DECLINED,
                                 .ref = pay->provider_ref, .code = pay->failure_code,
                                 .message = "", .captured = pay->captured};
    finish_charge(req, pay, &c->idem, &c->res);
    return;
  }
  /* Under a provider idempotency key derived from the payment id, so every retry of one
   * payment is the same charge at the provider. */
  provider_charge_t in = {.amount = pay->amount, .currency = pay->currency, .card_number = card,
                          .token = token,
                          .idempotency_key = ps_arena_sprintf(&req->arena, "polyshop-%s", pay->id),
                          .payment_id = pay->id, .order_id = pay->order_id};
  c->t0 = ps_now_ns();
  payment_provider_charge(req, &in, &c->res, charged, c);
}

static void charge(ps_req_t *req, int internal) {
  provider_t *prov = PROVIDER(req);
  const char *key, *card = NULL, *token = NULL;
  int64_t now = now_s();
  payment_t p = {.status = PAYMENT_PENDING, .provider = prov->ops->name, .provider_ref = "",
                 .failure_code = "", .card_brand = "", .card_last4 = "", .created_at = now,
                 .updated_at = now};
  if (ps_idempotency_key_or_reply(req, 1, &key)) return;
  if (!internal) p.user_id = req->claims.sub;
  if (charge_body_or_reply(req, internal, &p, &card, &token)) return;
  p.id = ps_uuid_v4(&req->arena);
  if (card) {
    p.card_brand = provider_card_brand(card);
    p.card_last4 = card + strlen(card) - 4;
  }
  const char *scope = internal ? "internal" : req->claims.sub;
  const char *hash = ledger_request_hash(&req->arena, "charge", req->json);
  charge_t *c = ps_arena_alloc(&req->arena, sizeof(*c));
  memset(c, 0, sizeof(*c));
  if (claim_or_reply(req, scope, key, hash, &p, &c->idem, &c->pay)) return;
  settle(req, c, card, token);
}

enum { PURGE_EVERY = 600, PURGE_BATCH = 500 };

/* Forgets answered keys and webhook event ids past their retention, a bounded batch at a
 * time and at most every ten minutes per thread. */
static void purge_old(ps_req_t *req) {
  payment_thread_t *t = THR(req);
  int64_t now = now_s();
  if (now - t->last_purge < PURGE_EVERY) return;
  t->last_purge = now;
  int n = 0;
  int rc = t->store->ops->purge(t->store, now - SVC(req)->idem_retention,
                                now - SVC(req)->event_retention, PURGE_BATCH, &n);
  if (rc)
    ps_log(PS_LOG_WARN, req->request_id, "purging old idempotency keys failed: %s", ps_strerror(rc));
  else if (n)
    ps_log(PS_LOG_INFO, req->request_id, "purged %d old idempotency keys and webhook events", n);
}

/* The purge runs before the charge: once the charge is started, the request may already be
 * answered and released when charge() returns. */
static void handle_create(ps_req_t *req) {
  if (ps_auth_user_or_reply(req)) return;
  purge_old(req);
  charge(req, 0);
}

static void handle_internal_create(ps_req_t *req) {
  if (internal_or_admin_or_reply(req)) return;
  purge_old(req);
  charge(req, 1);
}

/* --- reading ---------------------------------------------------------------------------- */

/* Loads a payment the caller may see (its owner or an admin); another user's payment is
 * answered 404, as if it did not exist. */
static int visible_payment_or_reply(ps_req_t *req, payment_t *p) {
  const char *id = ps_req_param(req, "id");
  unsigned long long t0 = ps_now_ns();
  int rc = id && strlen(id) <= 64 ? STORE(req)->ops->payment_get(STORE(req), &req->arena, id, 0, p)
                                  : PS_ENOTFOUND;
  took(req, M_PAYMENT_GET, t0);
  if (rc == 0 && !is_admin(req) && strcmp(p->user_id, req->claims.sub) != 0)
    rc = PS_ENOTFOUND;
  if (rc == PS_ENOTFOUND) {
    ps_reply_problem(req, PS_PROBLEM_NOT_FOUND, NULL, "no payment with this id");
    return rc;
  }
  if (rc) ps_reply_error(req, rc, "the payment store failed");
  return rc;
}

static json_t *payment_detail_json(ps_req_t *req, const payment_t *p, int *err) {
  refund_t *refunds;
  int n;
  *err = STORE(req)->ops->refund_list(STORE(req), &req->arena, p->id, &refunds, &n);
  if (*err) return NULL;
  json_t *v = payment_json(&req->arena, p);
  json_t *arr = json_array();
  for (int i = 0; i < n; i++) json_array_append_new(arr, refund_json(&req->arena, &refunds[i]));
  json_object_set_new(v, "refunds", arr);
  return v;
}

static void handle_get(ps_req_t *req) {
  payment_t p;
  int rc;
  if (ps_auth_user_or_reply(req) || visible_payment_or_reply(req, &p)) return;
  json_t *v = payment_detail_json(req, &p, &rc);
  if (!v) {
    ps_reply_error(req, rc, "the payment store failed");
    return;
  }
  ps_reply_json(req, 200, v);
}

/* Cursor: "<created_at>_<id>" of the last item of the previous page. */
static int cursor_or_reply(ps_req_t *req, int64_t *created, const char **id) {
  const char *c = ps_req_query(req, "cursor");
  *id = NULL;
  if (!c || !*c) return 0;
  char *end;
  long long t = strtoll(c, &end, 10);
  if (end == c || *end != '_' || t < 0 || payment_check_ref(end + 1)) {
    ps_reply_problem(req, PS_PROBLEM_BAD_QUERY, "cursor", "cursor is not one this service gave");
    return PS_EINVAL;
  }
  *created = t;
  *id = end + 1;
  return 0;
}

static void handle_list(ps_req_t *req) {
  long long limit;
  int64_t after_created = 0;
  const char *after_id;
  if (ps_auth_user_or_reply(req) ||
      ps_query_int_or_reply(req, "limit", LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX, &limit) ||
      cursor_or_reply(req, &after_created, &after_id))
    return;
  const char *order_id = ps_req_query(req, "order_id");
  if (order_id && payment_check_ref(order_id)) {
    ps_reply_problem(req, PS_PROBLEM_BAD_QUERY, "order_id", "order_id %s", payment_check_ref(order_id));
    return;
  }
  /* Customers see their own payments; an admin sees everyone's (or one user's). */
  const char *user_id = req->claims.sub;
  if (is_admin(req)) {
    user_id = ps_req_query(req, "user_id");
    if (user_id && payment_check_ref(user_id)) {
      ps_reply_problem(req, PS_PROBLEM_BAD_QUERY, "user_id", "user_id %s", payment_check_ref(user_id));
      return;
    }
  }
  payment_t *items;
  int n;
  unsigned long long t0 = ps_now_ns();
  int rc = STORE(req)->ops->payment_list(STORE(req), &req->arena, user_id, order_id,
                                         after_created, after_id, (int)limit + 1, &items, &n);
  took(req, M_PAYMENT_LIST, t0);
  if (rc) {
    ps_reply_error(req, rc, "the payment store failed");
    return;
  }
  json_t *arr = json_array();
  int shown = n > limit ? (int)limit : n;
  for (int i = 0; i < shown; i++) json_array_append_new(arr, payment_json(&req->arena, &items[i]));
  json_t *next = n > limit ? json_string(ps_arena_sprintf(&req->arena, "%lld_%s",
                                                          (long long)items[shown - 1].created_at,
                                                          items[shown - 1].id))
                           : json_null();
  ps_reply_json(req, 200, json_pack("{s:o, s:o}", "items", arr, "next_cursor", next));
}

/* --- refunds ---------------------------------------------------------------------------- */

/* A refund request as read: the key (NULL without one), the amount (0: all that is left),
 * the reason and the body the key's request hash is taken over. */
typedef struct {
  const char *key, *reason, *payment_id, *hash;
  long long amount;
  json_t *body;
} refund_in_t;

static int refund_input_or_reply(ps_req_t *req, refund_in_t *in) {
  static const char *const allowed[] = {"amount", "reason", NULL};
  int present = 0;
  *in = (refund_in_t){0};
  if (internal_or_admin_or_reply(req) || ps_idempotency_key_or_reply(req, 0, &in->key))
    return PS_EINVAL;
  if (req->body_len == 0) {
    in->body = json_object(); /* no body: refund everything left */
    ps_arena_defer(&req->arena, decref_cb, in->body);
  } else if (ps_json_body_or_reply(req, &in->body) ||
             ps_json_only_keys_or_reply(req, in->body, allowed) ||
             ps_json_opt_int_or_reply(req, in->body, "amount", 1, PS_MONEY_MAX, &in->amount,
                                      &present) ||
             ps_json_opt_str_or_reply(req, in->body, "reason", 0, 500, &in->reason)) {
    return PS_EINVAL;
  }
  in->payment_id = ps_req_param(req, "id");
  if (!in->payment_id || payment_check_ref(in->payment_id)) {
    ps_reply_problem(req, PS_PROBLEM_NOT_FOUND, NULL, "no payment with this id");
    return PS_ENOTFOUND;
  }
  /* A payment is refunded through the provider that took it. */
  payment_t before;
  const char *mine = PROVIDER(req)->ops->name;
  if (STORE(req)->ops->payment_get(STORE(req), &req->arena, in->payment_id, 0, &before) == 0 &&
      strcmp(before.provider, mine) != 0) {
    ps_reply_problem(req, PS_PROBLEM_CONFLICT, NULL, "this payment was made through %s, not %s",
                     before.provider, mine);
    return PS_ECONFLICT;
  }
  if (in->key)
    in->hash = ledger_request_hash(&req->arena,
                                   ps_arena_sprintf(&req->arena, "refund:%s", in->payment_id),
                                   in->body);
  return 0;
}

/* Reserves the refund's amount (and claims its key), or answers why not. */
static int refund_reserve_or_reply(ps_req_t *req, const refund_in_t *in, idem_t *idem,
                                   payment_t *pay, refund_t *refund) {
  claim_t outcome;
  const char *why;
  unsigned long long t0 = ps_now_ns();
  int rc = ledger_refund_reserve(STORE(req), &req->arena, in->payment_id, in->amount,
                                 ps_uuid_v4(&req->arena), in->reason, in->key, in->hash, now_s(),
                                 SVC(req)->claim_stale_after, &outcome, idem, pay, refund, &why);
  took(req, M_REFUND_RESERVE, t0);
  if (rc == PS_ENOTFOUND)
    ps_reply_problem(req, PS_PROBLEM_NOT_FOUND, NULL, "no payment with this id");
  else if (rc == PS_ECONFLICT && why)
    ps_reply_problem(req, PS_PROBLEM_CONFLICT, in->amount ? "amount" : NULL, "%s", why);
  else if (rc)
    ps_reply_error(req, rc, "the payment store failed");
  else if (claim_answered(req, outcome, idem))
    return PS_EEXISTS;
  return rc;
}

/* The answer to a refund the provider settled (ok) or refused; returns its status. It shows
 * the payment as it will be once the refund is recorded. */
static int refund_answer(ps_req_t *req, const payment_t *pay, const refund_t *refund,
                         const provider_result_t *res, const char **ctype, const char **text) {
  int ok = res->outcome == PROVIDER_SUCCEEDED;
  payment_t after = *pay;
  refund_t rafter = *refund;
  rafter.status = ok ? REFUND_SUCCEEDED : REFUND_FAILED;
  rafter.provider_ref = ok ? res->ref : "";
  if (!ok) after.refunded -= refund->amount;
  after.status = after.refunded <= 0 ? PAYMENT_SUCCEEDED
                 : after.refunded >= after.captured ? PAYMENT_REFUNDED
                                                    : PAYMENT_PARTIALLY_REFUNDED;
  json_t *v;
  if (ok) {
    v = refund_json(&req->arena, &rafter);
    json_object_set_new(v, "payment", payment_json(&req->arena, &after));
  } else {
    v = ps_problem_json(req, PS_PROBLEM_UPSTREAM, NULL,
                        *res->message ? res->message : "the payment provider refused the refund");
    json_object_set_new(v, "code", json_string(res->code));
    json_object_set_new(v, "refund_id", json_string(refund->id));
  }
  *ctype = ok ? CT_JSON : CT_PROBLEM;
  *text = dump(req, v);
  return ok ? 201 : 502;
}

/* One refund between its reservation and its answer, in the request's arena. */
typedef struct {
  refund_in_t in;
  idem_t idem;
  payment_t pay;
  refund_t refund;
  provider_result_t res;
  unsigned long long t0;
} refunding_t;

static void refunded(ps_req_t *req, int rc, void *arg) {
  refunding_t *r = arg;
  payment_store_t *st = STORE(req);
  took(req, M_PROVIDER_REFUND, r->t0);
  if (rc) {
    /* Unknown outcome: the refund stays pending and its amount reserved (never refund more
     * than captured); with a key, a retry resumes it under the same provider key. */
    if (r->in.key) ledger_idem_release(st, &r->idem);
    ps_reply_header(req, "Retry-After", "1");
    ps_reply_problem(req, rc == PS_ETIMEOUT ? PS_PROBLEM_TIMEOUT : PS_PROBLEM_UPSTREAM, NULL,
                     "the payment provider did not settle refund %s (%s)%s", r->refund.id,
                     ps_strerror(rc), r->in.key ? "; retry with the same Idempotency-Key" : "");
    return;
  }
  const char *ctype, *text;
  int status = refund_answer(req, &r->pay, &r->refund, &r->res, &ctype, &text);
  unsigned long long t0 = ps_now_ns();
  rc = ledger_refund_finish(st, &req->arena, &r->pay, &r->refund, status == 201, r->res.ref,
                            r->in.key ? &r->idem : NULL, status, ctype, text, now_s());
  took(req, M_REFUND_FINISH, t0);
  if (rc) {
    ps_log(PS_LOG_ERROR, req->request_id, "recording refund %s failed: %s", r->refund.id, ps_strerror(rc));
    ps_reply_error(req, rc, "the payment store failed");
    return;
  }
  send_text(req, status, ctype, text);
}

static void handle_refund(ps_req_t *req) {
  refunding_t *r = ps_arena_alloc(&req->arena, sizeof(*r));
  memset(r, 0, sizeof(*r));
  if (refund_input_or_reply(req, &r->in) ||
      refund_reserve_or_reply(req, &r->in, &r->idem, &r->pay, &r->refund))
    return;
  r->t0 = ps_now_ns();
  payment_provider_refund(req, r->pay.provider_ref, r->refund.amount,
                          ps_arena_sprintf(&req->arena, "polyshop-refund-%s", r->refund.id),
                          &r->res, refunded, r);
}

/* --- webhooks --------------------------------------------------------------------------- */

static void handle_stripe_webhook(ps_req_t *req) {
  payment_service_t *svc = SVC(req);
  if (!svc->webhook_secret) {
    ps_reply_problem(req, PS_PROBLEM_UNAVAILABLE, NULL, "webhooks are not configured (STRIPE_WEBHOOK_SECRET)");
    return;
  }
  int rc = payment_webhook_verify(ps_req_header(req, "Stripe-Signature"), req->body, req->body_len,
                                  (const unsigned char *)svc->webhook_secret,
                                  strlen(svc->webhook_secret), now_s(), svc->webhook_tolerance);
  if (rc) {
    const char *why = rc == PS_EPARSE ? "the Stripe-Signature header is missing or malformed"
                      : rc == PS_EAUTH ? "the Stripe-Signature does not match the payload"
                                       : "the Stripe-Signature timestamp is outside the tolerance";
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, "Stripe-Signature", "%s", why);
    return;
  }
  json_t *ev = json_loadb(req->body, req->body_len, 0, NULL);
  if (!json_is_object(ev)) {
    json_decref(ev);
    ps_reply_problem(req, PS_PROBLEM_MALFORMED_JSON, NULL, "the event is not a JSON object");
    return;
  }
  ps_arena_defer(&req->arena, decref_cb, ev);
  const char *id = json_string_value(json_object_get(ev, "id"));
  const char *type = json_string_value(json_object_get(ev, "type"));
  json_t *obj = json_object_get(json_object_get(ev, "data"), "object");
  if (!id || !*id || strlen(id) > 255 || !type || strlen(type) > 255 || !json_is_object(obj)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, NULL, "an event needs id, type and data.object");
    return;
  }
  webhook_kind_t kind = WEBHOOK_OTHER;
  const char *ref = NULL, *code = NULL;
  /* Ours, sent as metadata when the intent was created. */
  const char *our_id = json_string_value(json_object_get(json_object_get(obj, "metadata"), "payment_id"));
  json_int_t amount = 0;
  if (strcmp(type, "payment_intent.succeeded") == 0) {
    kind = WEBHOOK_PI_SUCCEEDED;
    ref = json_string_value(json_object_get(obj, "id"));
    amount = json_integer_value(json_object_get(obj, "amount_received"));
  } else if (strcmp(type, "payment_intent.payment_failed") == 0) {
    kind = WEBHOOK_PI_FAILED;
    ref = json_string_value(json_object_get(obj, "id"));
    json_t *err = json_object_get(obj, "last_payment_error");
    code = json_string_value(json_object_get(err, "decline_code"));
    if (!code) code = json_string_value(json_object_get(err, "code"));
  } else if (strcmp(type, "charge.refunded") == 0) {
    kind = WEBHOOK_CHARGE_REFUNDED;
    ref = json_string_value(json_object_get(obj, "payment_intent"));
    amount = json_integer_value(json_object_get(obj, "amount_refunded"));
  }
  webhook_result_t result;
  payment_t pay;
  if (kind == WEBHOOK_CHARGE_REFUNDED) our_id = NULL; /* a charge's metadata is not ours */
  unsigned long long t0 = ps_now_ns();
  rc = ledger_webhook_apply(STORE(req), &req->arena, id, type, kind, ref, our_id,
                            (int64_t)amount, code, now_s(), &result, &pay);
  took(req, M_WEBHOOK_APPLY, t0);
  if (rc) {
    /* 5xx makes Stripe deliver the event again later. */
    ps_reply_error(req, rc, "the payment store failed");
    return;
  }
  static const char *const names[] = {[WEBHOOK_APPLIED] = "applied",
                                      [WEBHOOK_UNCHANGED] = "unchanged",
                                      [WEBHOOK_IGNORED] = "ignored",
                                      [WEBHOOK_DUPLICATE] = "duplicate"};
  json_t *v = json_pack("{s:b, s:s, s:s}", "received", 1, "event_id", id, "result", names[result]);
  if (result == WEBHOOK_APPLIED || result == WEBHOOK_UNCHANGED)
    json_object_set_new(v, "payment_id", json_string(pay.id));
  ps_reply_json(req, 200, v);
}

/* --- audit ------------------------------------------------------------------------------ */

static void handle_audit_verify(ps_req_t *req) {
  if (ps_auth_admin_or_reply(req)) return;
  audit_verify_t v;
  char last[65];
  unsigned long long t0 = ps_now_ns();
  int rc = ledger_audit_verify(STORE(req), &req->arena, &v, last);
  took(req, M_AUDIT_VERIFY, t0);
  if (rc) {
    ps_reply_error(req, rc, "the payment store failed");
    return;
  }
  json_t *out = json_pack("{s:b, s:I}", "ok", v.ok, "entries", (json_int_t)v.entries);
  if (v.ok) {
    json_object_set_new(out, "last_hash", json_string(last));
  } else {
    json_object_set_new(out, "first_bad_seq", json_integer(v.first_bad_seq));
    json_object_set_new(out, "reason", json_string(v.reason));
  }
  ps_reply_json(req, 200, out);
}

/* Literal routes come before parameter routes on the same path. */
const ps_route_t payment_routes[] = {
    {"POST", "/api/v1/payments", handle_create},
    {"GET", "/api/v1/payments", handle_list},
    {"GET", "/api/v1/payments/audit/verify", handle_audit_verify},
    {"GET", "/api/v1/payments/{id}", handle_get},
    {"POST", "/api/v1/payments/{id}/refunds", handle_refund},
    {"POST", "/api/v1/webhooks/stripe", handle_stripe_webhook},
    {"POST", "/internal/payments", handle_internal_create},
};
const size_t payment_nroutes = sizeof(payment_routes) / sizeof(payment_routes[0]);
