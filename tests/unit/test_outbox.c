/* test_outbox.c - POLYSHOP_EVENT_ROUTES: good specs route each event type to the right
 * destinations, bad ones are refused with a sentence naming what is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "polyshop/config.h"
#include "polyshop/error.h"
#include "polyshop/outbox.h"

static void test_routes_match(void **state) {
  setenv("NOTIFICATION_URL", "http://127.0.0.1:9", 1);
  unsetenv("ANALYTICS_URL");
  ps_config_t cfg;
  ps_config_init(&cfg);
  ps_event_routes_t *r;
  char err[200];
  assert_int_equal(ps_event_routes_parse(&cfg,
                                         "order_*=NOTIFICATION_URL/internal/events,"
                                         "ANALYTICS_URL/internal/events;"
                                         "payment.refunded=ORDER_URL/internal/events;"
                                         "order_created=ANALYTICS_URL/internal/events",
                                         &r, err, sizeof(err)),
                   0);
  assert_int_equal(cfg.nerrors, 0);
  const char *d[8];
  assert_int_equal(ps_event_routes_match(r, "order_created", d, 8), 2);
  assert_string_equal(d[0], "notification");
  assert_string_equal(d[1], "analytics");
  assert_int_equal(ps_event_routes_match(r, "payment.refunded", d, 8), 1);
  assert_string_equal(d[0], "order");
  assert_int_equal(ps_event_routes_match(r, "payment.charged", d, 8), 0);
  assert_int_equal(ps_event_routes_match(r, "order_status_changed", d, 1), 1);
  ps_event_routes_free(r);
  unsetenv("NOTIFICATION_URL");
}

static void test_routes_refuse_bad_specs(void **state) {
  static const char *const bad[] = {
      "",                                     /* no route */
      "order_*",                              /* no = */
      "order_*=",                             /* no target */
      "=NOTIFICATION_URL/x",                  /* no pattern */
      "or*der=NOTIFICATION_URL/x",            /* * only at the end */
      "order_*=notification_url/x",           /* variable in lower case */
      "order_*=NOTIFICATION/x",               /* not ..._URL */
      "order_*=NOTIFICATION_URL",             /* no path */
      "order_*=NOTIFICATION_URL/x?y",         /* a query in the path */
      "a=NOTIFICATION_URL/x;b=NOTIFICATION_URL/y", /* one variable, two paths */
      ";;",                                   /* separators only */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ps_config_t cfg;
    ps_config_init(&cfg);
    ps_event_routes_t *r = (ps_event_routes_t *)1;
    char err[200] = "";
    assert_int_equal(ps_event_routes_parse(&cfg, bad[i], &r, err, sizeof(err)), PS_EPARSE);
    assert_null(r);
    assert_true(err[0] != '\0');
  }
  /* A set variable that is not a URL is the config's error, naming the variable. */
  unsetenv("POLYSHOP_EVENT_ROUTES");
  setenv("ANALYTICS_URL", "ftp://nope", 1);
  ps_config_t cfg;
  ps_config_init(&cfg);
  ps_event_routes_t *r = NULL;
  ps_event_routes_from_env(&cfg, "x=ANALYTICS_URL/e", &r);
  assert_int_equal(cfg.nerrors, 1);
  assert_non_null(strstr(cfg.errors[0], "ANALYTICS_URL"));
  ps_event_routes_free(r);
  unsetenv("ANALYTICS_URL");
  /* A bad POLYSHOP_EVENT_ROUTES is named in the config's error. */
  setenv("POLYSHOP_EVENT_ROUTES", "order_*", 1);
  ps_config_init(&cfg);
  ps_event_routes_from_env(&cfg, "x=ANALYTICS_URL/e", &r);
  assert_null(r);
  assert_int_equal(cfg.nerrors, 1);
  assert_non_null(strstr(cfg.errors[0], "POLYSHOP_EVENT_ROUTES"));
  unsetenv("POLYSHOP_EVENT_ROUTES");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_routes_match),
      cmocka_unit_test(test_routes_refuse_bad_specs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
