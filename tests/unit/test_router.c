/* test_router.c - route patterns, parameters, 404 and 405 with Allow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "polyshop/error.h"
#include "polyshop/router.h"

static const char *const methods[] = {"GET", "POST", "GET", "PATCH", "GET", "POST"};
static const char *const patterns[] = {"/api/v1/users/me", "/api/v1/users", "/api/v1/users/{id}",
                                       "/api/v1/users/{id}", "/api/v1/orders/{order}/items/{item}",
                                       "/api/v1/orders/{order}/cancel"};

static int setup(void **state) {
  static ps_router_t r;
  assert_int_equal(ps_router_init(&r, methods, patterns, 6), 0);
  *state = &r;
  return 0;
}

static int teardown(void **state) {
  ps_router_cleanup(*state);
  return 0;
}

static void test_literal_before_param(void **state) {
  ps_param_t p[PS_ROUTE_MAX_PARAMS];
  int n;
  char allow[64];
  assert_int_equal(ps_router_match(*state, "GET", "/api/v1/users/me", p, &n, allow, sizeof(allow)), 0);
  assert_int_equal(n, 0);
  assert_int_equal(ps_router_match(*state, "GET", "/api/v1/users/42", p, &n, allow, sizeof(allow)), 2);
  assert_int_equal(n, 1);
  assert_string_equal(p[0].name, "id");
  assert_int_equal(p[0].len, 2);
  assert_memory_equal(p[0].value, "42", 2);
}

/* The rule router.h documents: the first route in table order whose pattern and method match
 * wins; a literal segment has no rank of its own over a parameter. */
static void test_table_order_decides(void **state) {
  (void)state;
  static const char *const m[] = {"GET", "GET", "PATCH"};
  static const char *const pat[] = {"/users/{id}", "/users/me", "/users/me"};
  ps_router_t r;
  ps_param_t p[PS_ROUTE_MAX_PARAMS];
  int n;
  char allow[64];
  assert_int_equal(ps_router_init(&r, m, pat, 3), 0);
  /* The parameter route is listed first: it takes "me" as an id; the literal GET is unreachable. */
  assert_int_equal(ps_router_match(&r, "GET", "/users/me", p, &n, allow, sizeof(allow)), 0);
  assert_int_equal(n, 1);
  assert_string_equal(p[0].name, "id");
  assert_int_equal(p[0].len, 2);
  assert_memory_equal(p[0].value, "me", 2);
  /* A route whose pattern matches but whose method does not is passed over. */
  assert_int_equal(ps_router_match(&r, "PATCH", "/users/me", p, &n, allow, sizeof(allow)), 2);
  assert_int_equal(n, 0);
  ps_router_cleanup(&r);

  /* Listed the other way round, the literal route wins for its path only. */
  static const char *const pat2[] = {"/users/me", "/users/{id}"};
  assert_int_equal(ps_router_init(&r, m, pat2, 2), 0);
  assert_int_equal(ps_router_match(&r, "GET", "/users/me", p, &n, allow, sizeof(allow)), 0);
  assert_int_equal(n, 0);
  assert_int_equal(ps_router_match(&r, "GET", "/users/mee", p, &n, allow, sizeof(allow)), 1);
  ps_router_cleanup(&r);
}

static void test_two_params(void **state) {
  ps_param_t p[PS_ROUTE_MAX_PARAMS];
  int n;
  char allow[64];
  assert_int_equal(ps_router_match(*state, "GET", "/api/v1/orders/o1/items/i22", p, &n, allow, sizeof(allow)), 4);
  assert_int_equal(n, 2);
  assert_string_equal(p[0].name, "order");
  assert_memory_equal(p[1].value, "i22", 3);
  assert_int_equal(ps_router_match(*state, "POST", "/api/v1/orders/o1/cancel", p, &n, allow, sizeof(allow)), 5);
}

static void test_not_found_and_method(void **state) {
  ps_param_t p[PS_ROUTE_MAX_PARAMS];
  int n;
  char allow[64];
  assert_int_equal(ps_router_match(*state, "GET", "/api/v1/nothing", p, &n, allow, sizeof(allow)), PS_ROUTE_NOT_FOUND);
  assert_int_equal(ps_router_match(*state, "GET", "/api/v1/users/1/extra", p, &n, allow, sizeof(allow)), PS_ROUTE_NOT_FOUND);
  assert_int_equal(ps_router_match(*state, "GET", "/api/v1//me", p, &n, allow, sizeof(allow)), PS_ROUTE_NOT_FOUND);
  assert_int_equal(ps_router_match(*state, "GET", "", p, &n, allow, sizeof(allow)), PS_ROUTE_NOT_FOUND);
  assert_int_equal(ps_router_match(*state, "DELETE", "/api/v1/users/7", p, &n, allow, sizeof(allow)), PS_ROUTE_BAD_METHOD);
  assert_string_equal(allow, "GET, PATCH");
  assert_int_equal(ps_router_match(*state, "PUT", "/api/v1/users", p, &n, allow, sizeof(allow)), PS_ROUTE_BAD_METHOD);
  assert_string_equal(allow, "POST");
}

static void test_trailing_slash_and_deep_paths(void **state) {
  ps_param_t p[PS_ROUTE_MAX_PARAMS];
  int n;
  char allow[64];
  /* "/api/v1/users/" has an empty last segment: never a match for a parameter. */
  assert_int_equal(ps_router_match(*state, "GET", "/api/v1/users/", p, &n, allow, sizeof(allow)), PS_ROUTE_NOT_FOUND);
  assert_int_equal(ps_router_match(*state, "GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o", p, &n, allow, sizeof(allow)), PS_ROUTE_NOT_FOUND);
}

static void test_bad_patterns(void **state) {
  ps_router_t r;
  const char *m[] = {"GET"};
  const char *bad[] = {"no/slash", "/a/{}", "/a/{x", "/{a}/{b}/{c}/{d}/{e}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
    const char *pat[] = {bad[i]};
    assert_int_equal(ps_router_init(&r, m, pat, 1), PS_EINVAL);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_literal_before_param), cmocka_unit_test(test_two_params),
      cmocka_unit_test(test_not_found_and_method), cmocka_unit_test(test_trailing_slash_and_deep_paths),
      cmocka_unit_test(test_bad_patterns), cmocka_unit_test(test_table_order_decides)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
