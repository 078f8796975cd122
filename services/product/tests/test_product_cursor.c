/* test_product_cursor.c - the opaque listing cursor: round trips and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "polyshop/auth.h"
#include "polyshop/error.h"
#include "product.h"

static void round_trips_integer_keys(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  cursor_t c = {SORT_PRICE_DESC, 123456789012ll, NULL, "0b6e-id"}, d;
  char *text = cursor_encode(&a, &c);
  assert_null(strpbrk(text, "+/=")); /* base64url without padding: safe in a query string */
  assert_int_equal(cursor_decode(&a, text, SORT_PRICE_DESC, &d), 0);
  assert_int_equal(d.key_i, 123456789012ll);
  assert_string_equal(d.id, "0b6e-id");
  /* Made for another sort: refused. */
  assert_int_equal(cursor_decode(&a, text, SORT_PRICE, &d), PS_EINVAL);
  ps_arena_reset(&a);
}

static void round_trips_text_keys(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  cursor_t c = {SORT_NAME, 0, "Caf\xc3\xa9 \"quoted\"", "id-1"}, d;
  char *text = cursor_encode(&a, &c);
  assert_int_equal(cursor_decode(&a, text, SORT_NAME, &d), 0);
  assert_string_equal(d.key_s, "Caf\xc3\xa9 \"quoted\"");
  assert_string_equal(d.id, "id-1");
  ps_arena_reset(&a);
}

static void refuses_garbage(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  cursor_t d;
  const char *bad[] = {"", "!!!", "bm90IGpzb24", /* "not json" */
                       "eyIkZ3QiOiIifQ",            /* {"$gt":""} */
                       "WyJwcmljZSIsIngiLCJpZCJd", /* ["price","x","id"]: text key for price */
                       "WyJwcmljZSIsMV0"};         /* ["price",1]: too short */
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(cursor_decode(&a, bad[i], SORT_PRICE, &d), PS_EINVAL);
  char big[2000];
  memset(big, 'A', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(cursor_decode(&a, big, SORT_PRICE, &d), PS_EINVAL);
  ps_arena_reset(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trips_integer_keys),
      cmocka_unit_test(round_trips_text_keys),
      cmocka_unit_test(refuses_garbage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
