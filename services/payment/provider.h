/* provider.h - the payment providers behind one interface: the built-in test provider
 * (PAYMENT_PROVIDER=test, the embedded default) and Stripe (PAYMENT_PROVIDER=stripe, its
 * HTTP API through libcurl).
 *
 * A provider_t is owned by one thread (the Stripe one holds a blocking ps_client_t with
 * kept-alive connections); each thread creates its own with provider_new and frees it with
 * p->ops->free. A provider that waits (provider_waits) is called only on worker-pool threads
 * (provider_call.c), never on an event loop.
 *
 * Both calls return 0 when the provider gave a definite answer, whatever it was (the outcome
 * is in out->outcome), or a PS_E* code when the outcome is unknown (PS_ETIMEOUT,
 * PS_EUNAVAIL, PS_EBREAKER, PS_EUPSTREAM for a 5xx or an unreadable answer): the caller may
 * then retry later with the same idempotency key, which the provider uses so that one
 * payment is never charged twice.
 */
#ifndef POLYSHOP_PAYMENT_PROVIDER_H
#define POLYSHOP_PAYMENT_PROVIDER_H
#include <stdint.h>

#include "polyshop/arena.h"

typedef enum {
  PROVIDER_SUCCEEDED, /* money captured (charge) or returned (refund) */
  PROVIDER_DECLINED,  /* the card was refused: code says why (card_declined, ...) */
  PROVIDER_ERROR,     /* the provider refused the request itself (processing_error, bad
                         parameters): final, nothing captured */
} provider_outcome_t;

typedef struct {
  int64_t amount;              /* minor units */
  const char *currency;        /* ISO 4217, upper case */
  const char *card_number;     /* digits, or NULL when token is set */
  const char *token;           /* a provider payment method ("pm_card_visa"), or NULL */
  const char *idempotency_key; /* stable per payment: retries reuse it */
  const char *payment_id;      /* ours, sent as metadata */
  const char *order_id;        /* ours, sent as metadata */
} provider_charge_t;

typedef struct {
  provider_outcome_t outcome;
  const char *ref;     /* the provider's id (pi_..., re_...), in the arena, or "" */
  const char *code;    /* decline or error code, or "" */
  const char *message; /* the provider's words, or "" */
  int64_t captured;    /* charge: minor units captured (0 unless succeeded) */
} provider_result_t;

typedef struct provider provider_t;

typedef struct {
  const char *name; /* "test", "stripe": stored with each payment */
  int (*charge)(provider_t *p, ps_arena_t *a, const provider_charge_t *in,
                provider_result_t *out);
  /* Returns amount of the charge ref to the customer. */
  int (*refund)(provider_t *p, ps_arena_t *a, const char *ref, int64_t amount,
                const char *idempotency_key, provider_result_t *out);
  /* Nonzero when a call may wait (network, a deliberate delay); zero when it only computes. */
  int (*waits)(const provider_t *p);
  void (*free)(provider_t *p);
} provider_ops_t;

struct provider {
  const provider_ops_t *ops;
};

/* Settings read once at start (main.c) and shared read-only by every thread. */
typedef struct {
  const char *kind;           /* "test" or "stripe" */
  /* test provider */
  long test_delay_ms;         /* PAYMENT_TEST_DELAY_MS: sleep before answering (slow provider) */
  const char *test_fail;      /* PAYMENT_TEST_FAIL: "unavailable" or "timeout" makes every call
                                 fail with an unknown outcome (provider down), NULL otherwise */
  /* stripe */
  const char *stripe_base;    /* STRIPE_API_BASE, default https://api.stripe.com */
  const char *stripe_key;     /* STRIPE_SECRET_KEY */
  long stripe_timeout_ms;     /* STRIPE_TIMEOUT_MS, default 10000 */
} provider_config_t;

/* p->ops->waits(p). */
int provider_waits(const provider_t *p);

/* Creates this thread's provider. Returns 0 or PS_ECONFIG (unknown kind, missing key),
 * PS_EUNAVAIL (libcurl would not start). */
int provider_new(const provider_config_t *cfg, provider_t **out);
int provider_test_new(const provider_config_t *cfg, provider_t **out);
int provider_stripe_new(const provider_config_t *cfg, provider_t **out);

/* What the test provider does with a card number or token (also used by the Stripe adapter
 * to map Stripe's documented test card numbers to its test payment methods):
 *   4242424242424242 / pm_card_visa / tok_visa: succeeds
 *   4000000000000002 / pm_card_chargeDeclined: declined, card_declined
 *   4000000000009995 / pm_card_chargeDeclinedInsufficientFunds: declined, insufficient_funds
 *   4000000000000119 / pm_card_chargeDeclinedProcessingError: error, processing_error
 * Any other card number succeeds (brand from its first digit); any other token is declined
 * with invalid_payment_method. Returns the Stripe test payment method for a card number, or
 * NULL when Stripe has none for it. */
const char *provider_test_card_method(const char *card_number);

/* The card brand of a number by its prefix ("visa", "mastercard", "amex", "discover",
 * "unknown"). */
const char *provider_card_brand(const char *card_number);

#endif
