/* test_logic.c - the order service's pure rules: lifecycle transitions by actor, saga steps,
 * discount codes, integer money arithmetic and the Idempotency-Key format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "order.h"
#include "polyshop/error.h"

static void test_transitions(void **state) {
  (void)state;
  assert_true(order_transition_ok("new", "processing", ORDER_ACTOR_SYSTEM));
  assert_true(order_transition_ok("new", "failed", ORDER_ACTOR_SYSTEM));
  assert_false(order_transition_ok("new", "processing", ORDER_ACTOR_ADMIN));
  assert_true(order_transition_ok("processing", "shipped", ORDER_ACTOR_ADMIN));
  assert_true(order_transition_ok("shipped", "delivered", ORDER_ACTOR_ADMIN));
  assert_true(order_transition_ok("processing", "cancelled", ORDER_ACTOR_OWNER));
  assert_true(order_transition_ok("processing", "cancelled", ORDER_ACTOR_ADMIN));
  /* Nothing goes backwards, skips a step, leaves a final status or is cancelled once shipped. */
  assert_false(order_transition_ok("processing", "delivered", ORDER_ACTOR_ADMIN));
  assert_false(order_transition_ok("shipped", "processing", ORDER_ACTOR_ADMIN));
  assert_false(order_transition_ok("shipped", "cancelled", ORDER_ACTOR_OWNER));
  assert_false(order_transition_ok("shipped", "cancelled", ORDER_ACTOR_ADMIN));
  assert_false(order_transition_ok("delivered", "cancelled", ORDER_ACTOR_ADMIN));
  assert_false(order_transition_ok("cancelled", "processing", ORDER_ACTOR_ADMIN));
  assert_false(order_transition_ok("failed", "processing", ORDER_ACTOR_SYSTEM));
  assert_false(order_transition_ok("processing", "processing", ORDER_ACTOR_ADMIN));
  assert_false(order_transition_ok("processing", "shipped", ORDER_ACTOR_OWNER));
  assert_false(order_transition_ok(NULL, "shipped", ORDER_ACTOR_ADMIN));
  assert_false(order_transition_ok("processing", "bogus", ORDER_ACTOR_ADMIN));
}

static void test_statuses_and_steps(void **state) {
  (void)state;
  const char *good[] = {"new", "processing", "shipped", "delivered", "cancelled", "failed"};
  for (size_t i = 0; i < 6; i++) assert_true(order_status_valid(good[i]));
  assert_false(order_status_valid("paid"));
  assert_false(order_status_valid(""));
  assert_false(order_status_valid(NULL));
  assert_true(order_step_final(ORDER_STEP_COMMITTED));
  assert_true(order_step_final(ORDER_STEP_RELEASED));
  assert_true(order_step_final(ORDER_STEP_REFUNDED));
  assert_false(order_step_final(ORDER_STEP_PENDING));
  assert_false(order_step_final(ORDER_STEP_RESERVED));
  assert_false(order_step_final(ORDER_STEP_CHARGED));
  assert_false(order_step_final(ORDER_STEP_RELEASING));
  assert_false(order_step_final(ORDER_STEP_REFUNDING));
}

static void test_discounts(void **state) {
  (void)state;
  const discount_t *w = order_discount_find(order_discounts, order_ndiscounts, "welcome10");
  assert_non_null(w);
  assert_int_equal(order_discount_amount(w, 12345), 1234); /* rounds down */
  assert_int_equal(order_discount_amount(w, 9), 0);
  assert_int_equal(order_discount_amount(w, 0), 0);
  const discount_t *f = order_discount_find(order_discounts, order_ndiscounts, "FLAT500");
  assert_non_null(f);
  assert_int_equal(order_discount_amount(f, 999), 0);   /* below the minimum */
  assert_int_equal(order_discount_amount(f, 1000), 500);
  assert_int_equal(order_discount_amount(f, 100000), 500);
  discount_t big = {"BIG", DISCOUNT_FIXED, 5000, 0};
  assert_int_equal(order_discount_amount(&big, 1200), 1200); /* never below zero */
  discount_t odd = {"ODD", DISCOUNT_PERCENT, 250, 0};
  assert_int_equal(order_discount_amount(&odd, 800), 800);
  assert_null(order_discount_find(order_discounts, order_ndiscounts, "NOPE"));
  assert_null(order_discount_find(order_discounts, order_ndiscounts, NULL));
  assert_int_equal(order_discount_amount(NULL, 1000), 0);
}

static void test_money(void **state) {
  (void)state;
  int64_t line = -1, sum = 0;
  assert_int_equal(order_line_total(1999, 3, &line), 0);
  assert_int_equal(line, 5997);
  assert_int_equal(order_line_total(INT64_MAX / 2, 3, &line), PS_ERANGE);
  assert_int_equal(order_line_total(PS_MONEY_MAX, 2, &line), PS_ERANGE);
  assert_int_equal(order_line_total(PS_MONEY_MAX, 1, &line), 0); /* the limit itself is fine */
  assert_int_equal(order_line_total(PS_MONEY_MAX / 2 + 1, 2, &line), PS_ERANGE);
  assert_int_equal(order_line_total(-1, 2, &line), PS_ERANGE);
  assert_int_equal(order_line_total(5, -2, &line), PS_ERANGE);
  assert_int_equal(order_money_add(&sum, 100), 0);
  assert_int_equal(order_money_add(&sum, 250), 0);
  assert_int_equal(sum, 350);
  assert_int_equal(order_money_add(&sum, PS_MONEY_MAX), PS_ERANGE);
  assert_int_equal(sum, 350);
  assert_int_equal(order_money_add(&sum, -1), PS_ERANGE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_transitions), cmocka_unit_test(test_statuses_and_steps),
      cmocka_unit_test(test_discounts),   cmocka_unit_test(test_money),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
