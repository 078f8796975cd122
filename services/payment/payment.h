/* payment.h - what the payment service's files share: its configuration, per-thread state,
 * input validation and the webhook signature check. */
#ifndef POLYSHOP_PAYMENT_H
#define POLYSHOP_PAYMENT_H
#include <stddef.h>
#include <stdint.h>

#include "polyshop/auth.h"
#include "polyshop/http.h"
#include "polyshop/store_timing.h"
#include "provider.h"
#include "store.h"

enum {
  PAYMENT_WEBHOOK_TOLERANCE = 300, /* seconds either side of now */
};

/* Latency histograms of store and provider calls, for /metrics. */
typedef enum {
  M_CHARGE_CLAIM, M_CHARGE_FINISH, M_REFUND_RESERVE, M_REFUND_FINISH, M_WEBHOOK_APPLY,
  M_AUDIT_VERIFY, M_PAYMENT_GET, M_PAYMENT_LIST, M_PROVIDER_CHARGE, M_PROVIDER_REFUND, M__COUNT
} payment_metric_t;

struct ps_histogram;

/* Service-wide state, read-only after start. */
typedef struct {
  const char *store_url;
  ps_jwt_keys_t keys;
  provider_config_t provider;
  const char *internal_token;          /* POLYSHOP_INTERNAL_TOKEN, or NULL */
  const char *webhook_secret;          /* STRIPE_WEBHOOK_SECRET, or NULL: webhooks refused */
  int64_t webhook_tolerance;           /* seconds */
  int64_t claim_stale_after;           /* seconds after which a pending key is taken over */
  long busy_wait_ms; /* unused since issue 9 (a duplicate is answered at once); main.c to drop it */
  int64_t idem_retention;              /* seconds an answered Idempotency-Key is kept */
  int64_t event_retention;             /* seconds a webhook event id is kept */
  ps_store_timing_t store_timing;         /* the store calls, M_CHARGE_CLAIM .. M_PAYMENT_LIST */
  struct ps_histogram *metrics[M__COUNT]; /* the provider calls; owned by the metrics registry */
} payment_service_t;

/* Registers the store timing and the provider histograms (before the server starts). */
void payment_metrics_register(payment_service_t *svc);

/* Per event-loop thread. */
typedef struct {
  payment_store_t *store;
  provider_t *provider;
  int64_t last_purge; /* when this thread last purged old keys and events */
} payment_thread_t;

/* --- provider calls off the loop (provider_call.c) ---------------------------------------- */

/* What a handler does once the provider answered: rc as provider.h's calls return it (0 with
 * *out filled, or the PS_E* code of an unknown outcome). Runs on the request's loop and must
 * answer the request. */
typedef void (*payment_provider_cb)(ps_req_t *req, int rc, void *arg);
/* Charges (or refunds ref) through the provider: inline when the thread's provider does not
 * wait, else on a worker-pool thread with a provider of that thread's own, the request
 * deferred meanwhile. in's strings and out must live in the request's arena. */
void payment_provider_charge(ps_req_t *req, const provider_charge_t *in, provider_result_t *out,
                             payment_provider_cb cb, void *arg);
void payment_provider_refund(ps_req_t *req, const char *ref, int64_t amount, const char *key,
                             provider_result_t *out, payment_provider_cb cb, void *arg);

extern const ps_route_t payment_routes[];
extern const size_t payment_nroutes;

/* --- validation (validate.c). Each returns NULL when the value is good, or a sentence
 * saying what is wrong. ------------------------------------------------------------------ */

/* An ISO 4217 code the shop takes (ps_currency_valid, the list in lib/money.c). */
const char *payment_check_currency(const char *currency);
/* A card number: 12 to 19 digits passing the Luhn check. */
const char *payment_check_card_number(const char *number);
/* A provider payment method token: 3 to 255 of [A-Za-z0-9_]. */
const char *payment_check_token(const char *token);
/* An identifier from another service (order id, user id): 1 to 64 of [A-Za-z0-9_.:-]. */
const char *payment_check_ref(const char *id);

/* --- webhooks (webhook.c) ---------------------------------------------------------------- */

/* Checks a Stripe-Signature header ("t=...,v1=...") against the raw payload: some v1 must be
 * HMAC-SHA256(secret, "<t>.<payload>") and t within tolerance seconds of now. Returns 0,
 * PS_EPARSE (header missing or malformed), PS_EAUTH (no signature matches) or PS_EEXPIRED
 * (genuine but outside the tolerance: a replay). Comparisons are constant-time. */
int payment_webhook_verify(const char *header, const char *payload, size_t len,
                           const unsigned char *secret, size_t secret_len, int64_t now,
                           int64_t tolerance);

/* Builds the Stripe-Signature header for payload at time t, in the arena (fixtures). */
char *payment_webhook_sign(ps_arena_t *a, const char *payload, size_t len,
                           const unsigned char *secret, size_t secret_len, int64_t t);

#endif
