/* test_core_small.c - arena, errors, configuration parsing, problem table, metrics text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "polyshop/arena.h"
#include "polyshop/config.h"
#include "polyshop/error.h"
#include "polyshop/metrics.h"
#include "polyshop/problem.h"
#include "polyshop/uuid.h"

static int cleaned;
static void count_cleanup(void *p) { cleaned += *(int *)p; }

static void test_arena(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  char *s = ps_arena_sprintf(&a, "%s-%d", "x", 42);
  assert_string_equal(s, "x-42");
  /* Large and many allocations, each aligned and zeroed. */
  for (int i = 0; i < 1000; i++) {
    unsigned char *p = ps_arena_alloc(&a, (size_t)(i * 37 % 5000) + 1);
    assert_int_equal((uintptr_t)p % _Alignof(max_align_t), 0);
    assert_int_equal(p[0], 0);
    p[0] = 1;
  }
  void *big = ps_arena_alloc(&a, 3 << 20);
  assert_non_null(big);
  static int three = 3, four = 4;
  cleaned = 0;
  ps_arena_defer(&a, count_cleanup, &three);
  ps_arena_defer(&a, count_cleanup, &four);
  ps_arena_reset(&a);
  assert_int_equal(cleaned, 7);
  assert_string_equal(ps_arena_strndup(&a, "abcdef", 3), "abc");
  ps_arena_reset(&a); /* reusable; LeakSanitizer checks everything went back */
}

static void test_errors(void **state) {
  assert_string_equal(ps_err_name(PS_ENOTFOUND), "PS_ENOTFOUND");
  assert_string_equal(ps_strerror(PS_ENOTFOUND), "not found");
  assert_string_equal(ps_strerror(0), "success");
  assert_string_equal(ps_strerror(-9999), "unknown error");
}

static void test_config(void **state) {
  ps_config_t cfg;
  ps_config_init(&cfg);
  setenv("T_INT", "42", 1);
  setenv("T_BADINT", "4x", 1);
  setenv("T_RANGE", "99999", 1);
  setenv("T_BOOL", "yes", 1);
  setenv("T_BADBOOL", "maybe", 1);
  setenv("T_LISTEN", "0.0.0.0:8080", 1);
  setenv("T_BADLISTEN", "localhost", 1);
  unsetenv("T_MISSING");
  assert_int_equal(ps_config_int(&cfg, "T_INT", 1, 0, 100), 42);
  assert_int_equal(ps_config_int(&cfg, "T_MISSING", 7, 0, 100), 7);
  assert_int_equal(ps_config_check(&cfg), 0);
  assert_int_equal(ps_config_int(&cfg, "T_BADINT", 1, 0, 100), 1);
  assert_int_equal(ps_config_int(&cfg, "T_RANGE", 1, 0, 100), 1);
  assert_int_equal(ps_config_bool(&cfg, "T_BOOL", 0), 1);
  assert_int_equal(ps_config_bool(&cfg, "T_BADBOOL", 0), 0);
  char host[64];
  int port;
  ps_config_listen(&cfg, "T_LISTEN", NULL, host, sizeof(host), &port);
  assert_string_equal(host, "0.0.0.0");
  assert_int_equal(port, 8080);
  ps_config_listen(&cfg, "T_BADLISTEN", NULL, host, sizeof(host), &port);
  assert_null(ps_config_required(&cfg, "T_MISSING"));
  assert_int_equal(ps_config_check(&cfg), PS_ECONFIG);
  assert_int_equal(cfg.nerrors, 5);
  assert_non_null(strstr(cfg.errors[0], "T_BADINT"));
  assert_non_null(strstr(cfg.errors[1], "between 0 and 100"));
  assert_non_null(strstr(cfg.errors[3], "T_BADLISTEN"));
  assert_non_null(strstr(cfg.errors[4], "T_MISSING is required"));
}

static void test_problem_table(void **state) {
  assert_int_equal(ps_problem_status(PS_PROBLEM_NOT_FOUND), 404);
  assert_string_equal(ps_problem_type(PS_PROBLEM_VALIDATION), "urn:polyshop:problem:validation");
  assert_int_equal(ps_problem_status(PS_PROBLEM_PAYLOAD_TOO_LARGE), 413);
  for (int p = 0; p < PS_PROBLEM__COUNT; p++) {
    int st = ps_problem_status((ps_problem_t)p);
    assert_true(st >= 400 && st < 600);
    assert_non_null(ps_problem_title((ps_problem_t)p));
  }
}

static double gauge_value(void *arg) { return *(double *)arg; }

static void test_metrics_render(void **state) {
  const char *m[] = {"GET"};
  const char *p[] = {"/api/v1/things/{id}"};
  ps_metrics_init("svc", m, p, 1);
  ps_metrics_request(0, 200, 0.0007);
  ps_metrics_request(0, 200, 0.003);
  ps_metrics_request(0, 404, 0.2);
  ps_metrics_request(1, 404, 0.0001); /* unmatched */
  ps_histogram_t *h = ps_metrics_histogram("polyshop_store_call_seconds", "op=\"get\"", "Store calls");
  ps_histogram_observe(h, 0.002);
  static double pool = 3;
  ps_metrics_gauge("polyshop_pool_in_use", NULL, "Connections in use", gauge_value, &pool);
  ps_arena_t a;
  ps_arena_init(&a);
  size_t len;
  char *text = ps_metrics_render(&a, &len);
  assert_int_equal(strlen(text), len);
  assert_non_null(strstr(text, "polyshop_http_requests_total{service=\"svc\",method=\"GET\",route=\"/api/v1/things/{id}\",status=\"200\"} 2\n"));
  assert_non_null(strstr(text, "status=\"404\"} 1\n"));
  assert_non_null(strstr(text, "route=\"unmatched\",status=\"404\"} 1\n"));
  assert_non_null(strstr(text, "route=\"/api/v1/things/{id}\",le=\"0.001\"} 1\n"));
  assert_non_null(strstr(text, "route=\"/api/v1/things/{id}\",le=\"0.005\"} 2\n"));
  assert_non_null(strstr(text, "route=\"/api/v1/things/{id}\",le=\"+Inf\"} 3\n"));
  assert_non_null(strstr(text, "polyshop_store_call_seconds_count{service=\"svc\",op=\"get\"} 1\n"));
  assert_non_null(strstr(text, "polyshop_pool_in_use{service=\"svc\"} 3\n"));
  ps_arena_reset(&a);
  ps_metrics_cleanup();
}

/* Canonical text, the version and variant bits, no repeats; v7 ids sort by creation. */
static void test_uuids(void **state) {
  (void)state;
  ps_arena_t a;
  ps_arena_init(&a);
  char *prev = NULL;
  for (int i = 0; i < 200; i++) {
    char *v4 = ps_uuid_v4(&a), *v7 = ps_uuid_v7(&a);
    for (int k = 0; k < 2; k++) {
      const char *u = k ? v7 : v4;
      assert_int_equal(strlen(u), 36);
      for (int j = 0; j < 36; j++) {
        if (j == 8 || j == 13 || j == 18 || j == 23)
          assert_int_equal(u[j], '-');
        else
          assert_non_null(strchr("0123456789abcdef", u[j]));
      }
      assert_int_equal(u[14], k ? '7' : '4');
      assert_non_null(strchr("89ab", u[19]));
    }
    assert_string_not_equal(v4, v7);
    if (prev) {
      assert_string_not_equal(prev, v7);
      assert_true(strncmp(prev, v7, 13) <= 0); /* the millisecond prefix never goes back */
    }
    prev = v7;
  }
  ps_arena_reset(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_arena), cmocka_unit_test(test_errors), cmocka_unit_test(test_config),
      cmocka_unit_test(test_problem_table), cmocka_unit_test(test_metrics_render), cmocka_unit_test(test_uuids)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
