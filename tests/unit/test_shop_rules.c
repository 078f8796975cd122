/* test_shop_rules.c - the rules every service shares: the Idempotency-Key format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "polyshop/idempotency.h"

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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idempotency_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
