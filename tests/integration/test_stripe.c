/* test_stripe.c - smoke test of stripe-mock as scripts/engines starts it: a PaymentIntent is
 * created with a form-encoded body as Stripe's API takes it, the JSON answer is checked, and a
 * request missing a required parameter is refused with Stripe's error shape. */
#include "itest.h"

#include <jansson.h>

static void test_create_payment_intent(void **state) {
  (void)state;
  const char *base = itest_env("POLYSHOP_TEST_STRIPE_URL");
  char url[512];
  snprintf(url, sizeof(url), "%s/v1/payment_intents", base);
  const char *form = "amount=2599&currency=eur&payment_method_types[]=card"
                     "&metadata[order_id]=ord_itest_1&description=polyshop%20itest";
  itest_resp_t r;
  itest_http(&(itest_req_t){.method = "POST", .url = url,
                            .content_type = "application/x-www-form-urlencoded", .body = form,
                            .body_len = strlen(form), .bearer = "sk_test_polyshop"},
             &r);
  itest_expect_status(&r, 200, "create PaymentIntent");
  json_error_t jerr;
  json_t *j = json_loadb(r.body, r.len, 0, &jerr);
  if (!j) fail_msg("PaymentIntent answer is not JSON (%s): %.500s", jerr.text, r.body);
  itest_assert_str(json_string_value(json_object_get(j, "object")), "payment_intent");
  const char *id = json_string_value(json_object_get(j, "id"));
  assert_non_null(id);
  assert_true(strncmp(id, "pi_", 3) == 0);
  /* stripe-mock reflects the request's scalar parameters into its fixture answer (not
   * metadata: that stays the fixture's). */
  assert_int_equal(json_integer_value(json_object_get(j, "amount")), 2599);
  itest_assert_str(json_string_value(json_object_get(j, "currency")), "eur");
  itest_assert_str(json_string_value(json_array_get(json_object_get(j, "payment_method_types"), 0)),
                   "card");
  itest_assert_str(json_string_value(json_object_get(j, "status")), "requires_payment_method");
  assert_non_null(json_string_value(json_object_get(j, "client_secret")));
  json_decref(j);
  itest_resp_free(&r);
}

static void test_missing_parameter_is_refused(void **state) {
  (void)state;
  const char *base = itest_env("POLYSHOP_TEST_STRIPE_URL");
  char url[512];
  snprintf(url, sizeof(url), "%s/v1/payment_intents", base);
  const char *form = "currency=eur"; /* amount is required */
  itest_resp_t r;
  itest_http(&(itest_req_t){.method = "POST", .url = url,
                            .content_type = "application/x-www-form-urlencoded", .body = form,
                            .body_len = strlen(form), .bearer = "sk_test_polyshop"},
             &r);
  itest_expect_status(&r, 400, "PaymentIntent without amount");
  json_t *j = json_loadb(r.body, r.len, 0, NULL);
  assert_non_null(j);
  json_t *err = json_object_get(j, "error");
  assert_non_null(err);
  itest_assert_str(json_string_value(json_object_get(err, "type")), "invalid_request_error");
  json_decref(j);
  itest_resp_free(&r);

  /* Without an API key Stripe answers 401. */
  itest_http(&(itest_req_t){.method = "GET", .url = url}, &r);
  itest_expect_status(&r, 401, "request without API key");
  itest_resp_free(&r);
}

static int global_setup(void **state) {
  (void)state;
  return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int global_teardown(void **state) {
  (void)state;
  curl_global_cleanup();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_payment_intent),
      cmocka_unit_test(test_missing_parameter_is_refused),
  };
  return cmocka_run_group_tests_name("integration.stripe", tests, global_setup, global_teardown);
}
