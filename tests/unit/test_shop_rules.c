/* test_shop_rules.c - the rules every service shares: the Idempotency-Key format, RFC 3339
 * timestamps, currencies and the money limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "polyshop/arena.h"
#include "polyshop/idempotency.h"
#include "polyshop/money.h"
#include "polyshop/timestamp.h"

static void test_idempotency_key(void **state) {
  (void)state;
  char k[300];
  assert_null(ps_idempotency_key_check("a"));
  assert_null(ps_idempotency_key_check("order-42:try-1_~!"));
  assert_null(ps_idempotency_key_check("3f1c9a2e-8d5b-4c1e-9f0a-2b7d6e4c8a10"));
  memset(k, 'k', 255);
  k[255] = '\0';
  assert_null(ps_idempotency_key_check(k));
  k[255] = 'k';
  k[256] = '\0';
  assert_non_null(ps_idempotency_key_check(k)); /* 256 characters */
  assert_non_null(ps_idempotency_key_check(NULL));
  assert_non_null(ps_idempotency_key_check(""));
  assert_non_null(ps_idempotency_key_check("a b"));        /* no spaces, even inside */
  assert_non_null(ps_idempotency_key_check(" lead"));
  assert_non_null(ps_idempotency_key_check("tab\there"));
  assert_non_null(ps_idempotency_key_check("del\x7f"));
  assert_non_null(ps_idempotency_key_check("caf\xc3\xa9"));
}

static void test_rfc3339(void **state) {
  (void)state;
  char buf[PS_TIME_RFC3339_SIZE];
  assert_string_equal(ps_time_rfc3339_buf(buf, 0), "1970-01-01T00:00:00Z");
  assert_string_equal(ps_time_rfc3339_buf(buf, 1795551466), "2026-11-24T20:17:46Z");
  assert_string_equal(ps_time_rfc3339_buf(buf, 951782400), "2000-02-29T00:00:00Z");
  assert_string_equal(ps_time_rfc3339_buf(buf, -1), "1969-12-31T23:59:59Z");
  assert_string_equal(ps_time_rfc3339_buf(buf, INT64_MAX), "9999-12-31T23:59:59Z");
  assert_string_equal(ps_time_rfc3339_buf(buf, INT64_MIN), "0000-01-01T00:00:00Z");
  ps_arena_t a;
  ps_arena_init(&a);
  assert_string_equal(ps_time_rfc3339(&a, 1764547200), "2025-12-01T00:00:00Z");
  ps_arena_reset(&a);
}

static void test_money(void **state) {
  (void)state;
  assert_true(ps_currency_valid("EUR"));
  assert_true(ps_currency_valid("USD"));
  assert_true(ps_currency_valid("JPY"));
  assert_true(ps_currency_valid("AED")); /* first and last of the list */
  assert_true(ps_currency_valid("ZAR"));
  assert_false(ps_currency_valid("eur"));
  assert_false(ps_currency_valid("EURO"));
  assert_false(ps_currency_valid("EU"));
  assert_false(ps_currency_valid("XYZ"));
  assert_false(ps_currency_valid(""));
  assert_false(ps_currency_valid(NULL));
  /* The list is sorted and every entry is three capital letters. */
  for (size_t i = 0; ps_currencies[i]; i++) {
    assert_int_equal(strlen(ps_currencies[i]), 3);
    if (i) assert_true(strcmp(ps_currencies[i - 1], ps_currencies[i]) < 0);
  }
  /* Eight digits: fits a card processor's single charge and never overflows a sum of 100
   * lines of 1000 items each. */
  assert_true(PS_MONEY_MAX == 99999999);
  assert_true(PS_MONEY_MAX * 1000 * 100 < INT64_MAX);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idempotency_key),
      cmocka_unit_test(test_rfc3339),
      cmocka_unit_test(test_money),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
