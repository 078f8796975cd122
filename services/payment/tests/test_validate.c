/* test_validate.c - input checks (currencies, card numbers, tokens) and the
 * request hash that decides "same request" for an Idempotency-Key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "ledger.h"
#include "payment.h"

static void test_currency(void **state) {
  assert_null(payment_check_currency("EUR"));
  assert_null(payment_check_currency("USD"));
  assert_null(payment_check_currency("JPY"));
  assert_non_null(payment_check_currency("eur"));
  assert_non_null(payment_check_currency("EURO"));
  assert_non_null(payment_check_currency("XYZ"));
  assert_non_null(payment_check_currency(""));
  assert_non_null(payment_check_currency(NULL));
}

static void test_card_number(void **state) {
  assert_null(payment_check_card_number("4242424242424242"));
  assert_null(payment_check_card_number("4000000000000002"));
  assert_null(payment_check_card_number("4000000000009995"));
  assert_null(payment_check_card_number("4000000000000119"));
  assert_null(payment_check_card_number("5555555555554444"));
  assert_null(payment_check_card_number("378282246310005"));
  assert_non_null(payment_check_card_number("4242424242424241")); /* Luhn */
  assert_non_null(payment_check_card_number("4242 4242 4242 4242"));
  assert_non_null(payment_check_card_number("42424242"));
  assert_non_null(payment_check_card_number("42424242424242424242"));
  assert_non_null(payment_check_card_number(NULL));
}

static void test_token_and_ref(void **state) {
  assert_null(payment_check_token("pm_card_visa"));
  assert_non_null(payment_check_token("pm"));
  assert_non_null(payment_check_token("pm_card&visa=1"));
  assert_null(payment_check_ref("3f0c2a9e-1b2c-4d5e-8f90-123456789abc"));
  assert_null(payment_check_ref("order:42.v1_x"));
  assert_non_null(payment_check_ref(""));
  assert_non_null(payment_check_ref("a/b"));
  assert_non_null(payment_check_ref("a b"));
}

static void test_card_helpers(void **state) {
  assert_string_equal(provider_card_brand("4242424242424242"), "visa");
  assert_string_equal(provider_card_brand("5555555555554444"), "mastercard");
  assert_string_equal(provider_card_brand("378282246310005"), "amex");
  assert_string_equal(provider_test_card_method("4000000000000002"), "pm_card_chargeDeclined");
  assert_null(provider_test_card_method("5555555555554444"));
}

static char *hash_of(ps_arena_t *a, const char *what, const char *body) {
  json_t *v = json_loads(body, 0, NULL);
  assert_non_null(v);
  char *h = ledger_request_hash(a, what, v);
  json_decref(v);
  return h;
}

static void test_request_hash(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  char *h1 = hash_of(&a, "charge", "{\"order_id\":\"o1\",\"amount\":100,\"currency\":\"EUR\","
                                   "\"payment_method\":{\"card_number\":\"4242424242424242\"}}");
  /* Key order and white space do not matter. */
  char *h2 = hash_of(&a, "charge", "{ \"payment_method\" : {\"card_number\":\"4242424242424242\"},"
                                   " \"currency\":\"EUR\", \"amount\":100, \"order_id\":\"o1\" }");
  assert_int_equal(strlen(h1), 64);
  assert_string_equal(h1, h2);
  /* Any value does. */
  char *h3 = hash_of(&a, "charge", "{\"order_id\":\"o1\",\"amount\":101,\"currency\":\"EUR\","
                                   "\"payment_method\":{\"card_number\":\"4242424242424242\"}}");
  assert_string_not_equal(h1, h3);
  char *h4 = hash_of(&a, "charge", "{\"order_id\":\"o1\",\"amount\":100,\"currency\":\"EUR\","
                                   "\"payment_method\":{\"card_number\":\"4000000000000002\"}}");
  assert_string_not_equal(h1, h4);
  /* So does what the request is for. */
  char *h5 = hash_of(&a, "refund:p1", "{\"order_id\":\"o1\",\"amount\":100,\"currency\":\"EUR\","
                                      "\"payment_method\":{\"card_number\":\"4242424242424242\"}}");
  assert_string_not_equal(h1, h5);
  ps_arena_reset(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_currency),
      cmocka_unit_test(test_card_number),    cmocka_unit_test(test_token_and_ref),
      cmocka_unit_test(test_card_helpers),   cmocka_unit_test(test_request_hash),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
