/* provider_test.c - the built-in test provider (see provider.h): answers at once from the
 * card number or token the way Stripe's test cards do, so the whole shop runs and its tests
 * exercise declines and failures with no network. PAYMENT_TEST_DELAY_MS and
 * PAYMENT_TEST_FAIL make it slow or unreachable for failure tests. */
#include <sodium.h>
#include <string.h>
#include <time.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "provider.h"

typedef struct {
  provider_t base;
  long delay_ms;
  int fail; /* 0, or the PS_E* code every call fails with */
} test_provider_t;

typedef struct {
  const char *card, *method;
  provider_outcome_t outcome;
  const char *code, *message;
} test_card_t;

static const test_card_t cards[] = {
    {"4242424242424242", "pm_card_visa", PROVIDER_SUCCEEDED, "", ""},
    {"4000000000000002", "pm_card_chargeDeclined", PROVIDER_DECLINED, "card_declined",
     "Your card was declined."},
    {"4000000000009995", "pm_card_chargeDeclinedInsufficientFunds", PROVIDER_DECLINED,
     "insufficient_funds", "Your card has insufficient funds."},
    {"4000000000000119", "pm_card_chargeDeclinedProcessingError", PROVIDER_ERROR,
     "processing_error", "An error occurred while processing your card. Try again later."},
};

const char *provider_test_card_method(const char *card_number) {
  for (size_t i = 0; i < sizeof(cards) / sizeof(cards[0]); i++)
    if (card_number && strcmp(cards[i].card, card_number) == 0) return cards[i].method;
  return NULL;
}

const char *provider_card_brand(const char *n) {
  if (!n || !*n) return "unknown";
  if (n[0] == '4') return "visa";
  if (n[0] == '5' && n[1] >= '1' && n[1] <= '5') return "mastercard";
  if (n[0] == '2' && n[1] >= '2' && n[1] <= '7') return "mastercard";
  if (n[0] == '3' && (n[1] == '4' || n[1] == '7')) return "amex";
  if (strncmp(n, "6011", 4) == 0 || strncmp(n, "65", 2) == 0) return "discover";
  return "unknown";
}

static void pause_ms(long ms) {
  if (ms <= 0) return;
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static char *test_ref(ps_arena_t *a, const char *prefix) {
  unsigned char b[12];
  randombytes_buf(b, sizeof(b));
  char hex[25];
  sodium_bin2hex(hex, sizeof(hex), b, sizeof(b));
  return ps_arena_sprintf(a, "%s_test_%s", prefix, hex);
}

static int t_charge(provider_t *p, ps_arena_t *a, const provider_charge_t *in,
                    provider_result_t *out) {
  test_provider_t *tp = (test_provider_t *)p;
  pause_ms(tp->delay_ms);
  if (tp->fail) return tp->fail;
  const test_card_t *hit = NULL;
  for (size_t i = 0; i < sizeof(cards) / sizeof(cards[0]); i++) {
    if ((in->card_number && strcmp(cards[i].card, in->card_number) == 0) ||
        (in->token && strcmp(cards[i].method, in->token) == 0))
      hit = &cards[i];
  }
  if (!hit && in->token && strcmp(in->token, "tok_visa") == 0) hit = &cards[0];
  *out = (provider_result_t){.ref = test_ref(a, "pi"), .code = "", .message = ""};
  if (hit) {
    out->outcome = hit->outcome;
    out->code = hit->code;
    out->message = hit->message;
  } else if (in->token) {
    out->outcome = PROVIDER_DECLINED;
    out->code = "invalid_payment_method";
    out->message = "The test provider does not know this payment method.";
  } else {
    out->outcome = PROVIDER_SUCCEEDED;
  }
  out->captured = out->outcome == PROVIDER_SUCCEEDED ? in->amount : 0;
  return 0;
}

static int t_refund(provider_t *p, ps_arena_t *a, const char *ref, int64_t amount,
                    const char *idempotency_key, provider_result_t *out) {
  test_provider_t *tp = (test_provider_t *)p;
  pause_ms(tp->delay_ms);
  if (tp->fail) return tp->fail;
  *out = (provider_result_t){.outcome = PROVIDER_SUCCEEDED, .ref = test_ref(a, "re"),
                             .code = "", .message = ""};
  return 0;
}

static void t_free(provider_t *p) { ps_free(p); }

/* Only a slowed-down test provider waits (on a pool thread, see provider_call.c). */
static int t_waits(const provider_t *p) { return ((const test_provider_t *)p)->delay_ms > 0; }

static const provider_ops_t test_ops = {
    .name = "test", .charge = t_charge, .refund = t_refund, .waits = t_waits, .free = t_free};

int provider_test_new(const provider_config_t *cfg, provider_t **out) {
  test_provider_t *tp = ps_calloc(1, sizeof(*tp));
  tp->base.ops = &test_ops;
  tp->delay_ms = cfg->test_delay_ms;
  if (cfg->test_fail && strcmp(cfg->test_fail, "unavailable") == 0) tp->fail = PS_EUNAVAIL;
  if (cfg->test_fail && strcmp(cfg->test_fail, "timeout") == 0) tp->fail = PS_ETIMEOUT;
  *out = &tp->base;
  return 0;
}

int provider_waits(const provider_t *p) { return p->ops->waits(p); }

int provider_new(const provider_config_t *cfg, provider_t **out) {
  if (!cfg->kind || strcmp(cfg->kind, "test") == 0) return provider_test_new(cfg, out);
  if (strcmp(cfg->kind, "stripe") == 0) return provider_stripe_new(cfg, out);
  return PS_ECONFIG;
}
