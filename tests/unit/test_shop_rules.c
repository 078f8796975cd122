/* test_shop_rules.c - the rules every service shares: the Idempotency-Key format and RFC 3339
 * timestamps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "polyshop/arena.h"
#include "polyshop/idempotency.h"
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idempotency_key),
      cmocka_unit_test(test_rfc3339),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
