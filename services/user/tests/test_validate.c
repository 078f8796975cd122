/* test_validate.c - the email and password rules of the user service. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "polyshop/error.h"
#include "user.h"

static void test_emails(void **state) {
  const char *good[] = {"a@b.co", "first.last+tag@example.com", "x_y@sub.domain.org",
                        "UPPER@EXAMPLE.COM"};
  const char *bad[] = {"", "plain", "@example.com", "a@", "a@b", "a@@b.com", "a b@c.com",
                       ".a@b.com", "a.@b.com", "a..b@c.com", "a@-b.com", "a@b-.com",
                       "a@b..com", "a@b.com.", "a@exa mple.com", "\"q\"@b.com"};
  for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
    assert_null(user_check_email(good[i]));
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
    if (!user_check_email(bad[i])) fail_msg("accepted bad email \"%s\"", bad[i]);
  }
  char long_local[80] = {0};
  for (int i = 0; i < 65; i++) long_local[i] = 'a';
  char email[120];
  snprintf(email, sizeof(email), "%s@b.com", long_local);
  assert_non_null(user_check_email(email));
}

static void test_normalize(void **state) {
  char out[64];
  user_normalize_email("Ann.Lee@Example.COM", out, sizeof(out));
  assert_string_equal(out, "ann.lee@example.com");
}

static void test_passwords(void **state) {
  assert_null(user_check_password("correct horse 7", "ann@example.com"));
  assert_null(user_check_password("Tr0ub4dor&3x", NULL));
  assert_non_null(user_check_password("short1", NULL));          /* too short */
  assert_non_null(user_check_password("onlyletterspassword", NULL)); /* one class */
  assert_non_null(user_check_password("12345678901234", NULL));  /* one class */
  assert_non_null(user_check_password("ann@example.com", "ann@example.com"));
  assert_non_null(user_check_password("annlee1", "annlee@example.com"));
  char huge[200];
  memset(huge, 'a', sizeof(huge) - 2);
  huge[sizeof(huge) - 2] = '1';
  huge[sizeof(huge) - 1] = '\0';
  assert_non_null(user_check_password(huge, NULL));
}

static void test_ratelimit(void **state) {
  ratelimit_t *r = ratelimit_new(3, 60);
  int retry = 0;
  for (int i = 0; i < 3; i++) assert_int_equal(ratelimit_hit(r, "k", 1000, &retry), 0);
  assert_int_equal(ratelimit_hit(r, "k", 1010, &retry), PS_ELIMIT);
  assert_int_equal(retry, 50);
  assert_int_equal(ratelimit_hit(r, "other", 1010, &retry), 0); /* keys are independent */
  assert_int_equal(ratelimit_hit(r, "k", 1060, &retry), 0);     /* a new window */
  ratelimit_clear(r, "k");
  for (int i = 0; i < 3; i++) assert_int_equal(ratelimit_hit(r, "k", 1061, &retry), 0);
  /* Many keys: expired ones are dropped as buckets are walked; no leak at the end. */
  char key[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof(key), "key-%d", i);
    ratelimit_hit(r, key, 2000 + i, &retry);
  }
  ratelimit_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_emails), cmocka_unit_test(test_normalize),
      cmocka_unit_test(test_passwords), cmocka_unit_test(test_ratelimit)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
