/* test_url.c - ps_url_redact: passwords never reach a log line, whatever the URL looks like. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "polyshop/url.h"

static const char *redact(const char *url) {
  static char buf[PS_URL_REDACT_MAX];
  return ps_url_redact(buf, sizeof(buf), url);
}

static void test_password_hidden(void **state) {
  assert_string_equal(redact("postgresql://shop:s3cret@db.internal:5432/shop?sslmode=require"),
                      "postgresql://shop:***@db.internal:5432/shop?sslmode=require");
  assert_string_equal(redact("mongodb://admin:pw@m1:27017,m2:27017/polyshop?replicaSet=rs0"),
                      "mongodb://admin:***@m1:27017,m2:27017/polyshop?replicaSet=rs0");
  assert_string_equal(redact("redis://:topsecret@cache:6379/2"), "redis://:***@cache:6379/2");
  assert_string_equal(redact("postgresql://shop:@db/shop"), "postgresql://shop:***@db/shop");
}

static void test_at_and_slash_in_password(void **state) {
  /* Not percent-encoded, as people do write them: the userinfo ends at the last '@'. */
  assert_string_equal(redact("postgresql://shop:p@ss@w0rd@db:5432/shop"),
                      "postgresql://shop:***@db:5432/shop");
  assert_string_equal(redact("mongodb://u:a/b?c#d@host/db"), "mongodb://u:***@host/db");
  assert_string_equal(redact("postgresql://shop:p%40ss@db/shop"), "postgresql://shop:***@db/shop");
}

static void test_no_password_unchanged(void **state) {
  const char *same[] = {"sqlite:///var/lib/polyshop/product.db", "sqlite://data/a@b.db",
                        "mongodb://127.0.0.1:57017/", "redis://127.0.0.1:6379",
                        "postgresql://shop@db:5432/shop", "http://[::1]:8080/x", ""};
  for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
    assert_string_equal(redact(same[i]), same[i]);
}

static void test_garbage(void **state) {
  assert_string_equal(redact(NULL), "");
  assert_string_equal(redact("not a url"), "not a url");
  assert_string_equal(redact("user:secret@host"), "***@host");
  assert_string_equal(redact("://:x@"), "***@");
  assert_string_equal(redact("1http://u:p@h"), "***@h");
  /* libpq's key=value strings. */
  assert_string_equal(redact("host=db password=secret dbname=shop"),
                      "host=db password=*** dbname=shop");
  assert_string_equal(redact("password = 'a b\\' c' user=x"), "password = *** user=x");
  assert_string_equal(redact("mypassword=1 password"), "mypassword=1 password");
}

static void test_small_buffer(void **state) {
  char buf[16];
  /* Cut, never showing the password even when the cut falls after it. */
  ps_url_redact(buf, sizeof(buf), "postgresql://shop:secret@db/shop");
  assert_string_equal(buf, "postgresql:/...");
  ps_url_redact(buf, sizeof(buf), "redis://:pw@h");
  assert_string_equal(buf, "redis://:***@h");
  char tiny[8];
  ps_url_redact(tiny, sizeof(tiny), "redis://:secret@cache");
  assert_string_equal(tiny, "redi...");
  assert_null(strstr(tiny, "secret"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_password_hidden),      cmocka_unit_test(test_at_and_slash_in_password),
      cmocka_unit_test(test_no_password_unchanged), cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_small_buffer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
