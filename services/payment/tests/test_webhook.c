/* test_webhook.c - the Stripe-Signature check with our own signed fixtures: good signatures,
 * rolled secrets (several v1), tolerance both ways, tampered bodies, forged and malformed
 * headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>

#include "payment.h"
#include "polyshop/error.h"

static const char secret[] = "whsec_test_0123456789abcdef";
static const char payload[] =
    "{\"id\":\"evt_1\",\"type\":\"payment_intent.succeeded\",\"data\":{\"object\":{\"id\":\"pi_1\"}}}";
enum { NOW = 1764000000 };

static int verify(const char *header, const char *body, int64_t now) {
  return payment_webhook_verify(header, body, strlen(body), (const unsigned char *)secret,
                                strlen(secret), now, 300);
}

static char *sign(ps_arena_t *a, const char *body, int64_t t) {
  return payment_webhook_sign(a, body, strlen(body), (const unsigned char *)secret,
                              strlen(secret), t);
}

static void test_good_signature(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  char *h = sign(&a, payload, NOW);
  assert_int_equal(verify(h, payload, NOW), 0);
  assert_int_equal(verify(h, payload, NOW + 300), 0); /* the edge of the tolerance */
  assert_int_equal(verify(h, payload, NOW - 300), 0);
  ps_arena_reset(&a);
}

/* A fixed vector computed independently (Python's hmac module), so sign and verify cannot
 * agree on a shared mistake. */
static void test_known_vector(void **state) {
  const char *h = "t=1764000000,v1=002e42879affefd714c619ce73f65c1559eb9debd49a6e9d8ac17bbf0e72f657";
  assert_int_equal(verify(h, payload, NOW), 0);
  ps_arena_t a;
  ps_arena_init(&a);
  assert_string_equal(sign(&a, payload, NOW), h);
  ps_arena_reset(&a);
  const char *wrong = "t=1764000000,v1=102e42879affefd714c619ce73f65c1559eb9debd49a6e9d8ac17bbf0e72f657";
  assert_int_equal(verify(wrong, payload, NOW), PS_EAUTH);
}

static void test_tolerance(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  char *h = sign(&a, payload, NOW);
  assert_int_equal(verify(h, payload, NOW + 301), PS_EEXPIRED); /* stale: a replay */
  assert_int_equal(verify(h, payload, NOW - 301), PS_EEXPIRED); /* from the future */
  ps_arena_reset(&a);
}

static void test_tampered_body(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  char *h = sign(&a, payload, NOW);
  char body[sizeof(payload)];
  memcpy(body, payload, sizeof(payload));
  body[10] ^= 1;
  assert_int_equal(verify(h, body, NOW), PS_EAUTH);
  /* A stale timestamp on a forged body is still "forged", never "expired". */
  assert_int_equal(verify(h, body, NOW + 10000), PS_EAUTH);
  /* The timestamp is signed too: moving it breaks the signature. */
  char *moved = ps_arena_strdup(&a, h);
  moved[2] = moved[2] == '1' ? '2' : '1';
  assert_int_equal(verify(moved, payload, NOW), PS_EAUTH);
  ps_arena_reset(&a);
}

static void test_other_secret(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  const char other[] = "whsec_another_secret";
  char *h = payment_webhook_sign(&a, payload, strlen(payload), (const unsigned char *)other,
                                 strlen(other), NOW);
  assert_int_equal(verify(h, payload, NOW), PS_EAUTH);
  ps_arena_reset(&a);
}

static void test_rolled_secret(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  const char old[] = "whsec_old";
  char *good = sign(&a, payload, NOW);
  char *bad = payment_webhook_sign(&a, payload, strlen(payload), (const unsigned char *)old,
                                   strlen(old), NOW);
  /* "t=..,v1=<old>,v1=<new>": any matching v1 is enough; v0 is ignored. */
  char *h = ps_arena_sprintf(&a, "%s,%s,v0=abc", bad, strchr(good, ',') + 1);
  assert_int_equal(verify(h, payload, NOW), 0);
  ps_arena_reset(&a);
}

static void test_malformed(void **state) {
  assert_int_equal(verify(NULL, payload, NOW), PS_EPARSE);
  assert_int_equal(verify("", payload, NOW), PS_EPARSE);
  assert_int_equal(verify("t=1764000000", payload, NOW), PS_EPARSE);     /* no v1 */
  assert_int_equal(verify("v1=00", payload, NOW), PS_EPARSE);            /* short v1 */
  assert_int_equal(verify("t=abc,v1=0000000000000000000000000000000000000000000000000000000000000000",
                          payload, NOW),
                   PS_EPARSE);
  assert_int_equal(verify("t=1,t=2,v1=0000000000000000000000000000000000000000000000000000000000000000",
                          payload, NOW),
                   PS_EPARSE);
  /* well-formed but not hex: no match */
  assert_int_equal(verify("t=1764000000,v1=zz00000000000000000000000000000000000000000000000000000000000000",
                          payload, NOW),
                   PS_EAUTH);
  char huge[5000];
  memset(huge, 'a', sizeof(huge) - 1);
  huge[sizeof(huge) - 1] = '\0';
  assert_int_equal(verify(huge, payload, NOW), PS_EPARSE);
}

int main(void) {
  if (sodium_init() < 0) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_good_signature), cmocka_unit_test(test_known_vector),
      cmocka_unit_test(test_tolerance),      cmocka_unit_test(test_tampered_body),
      cmocka_unit_test(test_other_secret),   cmocka_unit_test(test_rolled_secret),
      cmocka_unit_test(test_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
