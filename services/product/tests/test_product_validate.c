/* test_product_validate.c - product_validate and the listing parameter parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "polyshop/error.h"
#include "product.h"

static const char *good =
    "{\"sku\":\"PH-1\",\"name\":\"Phone\",\"kind\":\"phone\",\"brand\":\"Nimbus\","
    "\"category\":\"phones\",\"price\":19999,\"currency\":\"USD\",\"stock\":5,"
    "\"attributes\":{\"cpu\":\"A1\",\"memory\":8,\"5g\":true,\"bands\":[\"n1\",\"n3\"]},"
    "\"images\":[\"/media/x.webp\"]}";

typedef struct {
  ps_arena_t a;
  product_in_t in;
  const char *field;
  char msg[256];
  json_t *body; /* in points into it: kept until the next check */
} fx_t;

/* Validates text with key=value replaced (value is raw JSON, NULL deletes the key). */
static int check(fx_t *f, int partial, const char *key, const char *value) {
  json_t *body = json_loads(good, 0, NULL);
  assert_non_null(body);
  if (key && value) {
    json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    json_object_set_new(body, key, v);
  } else if (key) {
    json_object_del(body, key);
  }
  int rc = product_validate(body, partial, &f->a, &f->in, &f->field, f->msg, sizeof(f->msg));
  json_decref(f->body);
  f->body = body;
  return rc;
}

static int setup(void **state) {
  fx_t *f = test_calloc(1, sizeof(*f));
  ps_arena_init(&f->a);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  ps_arena_reset(&f->a);
  json_decref(f->body);
  test_free(f);
  return 0;
}

static void accepts_a_good_product(void **state) {
  fx_t *f = *state;
  assert_int_equal(check(f, 0, NULL, NULL), 0);
  assert_string_equal(f->in.sku, "PH-1");
  assert_int_equal(f->in.price, 19999);
  assert_int_equal(f->in.stock, 5);
  assert_true(f->in.fields & PF_ATTRIBUTES);
  assert_non_null(strstr(f->in.attributes, "\"memory\":8"));
}

static void expect_field(fx_t *f, int partial, const char *key, const char *value,
                         const char *field) {
  assert_int_equal(check(f, partial, key, value), PS_EINVAL);
  assert_non_null(f->field);
  assert_string_equal(f->field, field);
  assert_true(strlen(f->msg) > 0);
}

static void refuses_bad_fields(void **state) {
  fx_t *f = *state;
  expect_field(f, 0, "price", "-1", "price");
  expect_field(f, 0, "price", "1000000001", "price");
  expect_field(f, 0, "price", "12.5", "price");
  expect_field(f, 0, "price", "\"100\"", "price");
  expect_field(f, 0, "price", NULL, "price");
  expect_field(f, 0, "stock", "-5", "stock");
  expect_field(f, 0, "stock", "10000001", "stock");
  expect_field(f, 0, "currency", "\"usd\"", "currency");
  expect_field(f, 0, "currency", "\"EURO\"", "currency");
  expect_field(f, 0, "kind", "\"spaceship\"", "kind");
  expect_field(f, 0, "name", "\"\"", "name");
  expect_field(f, 0, "name", "\"   \"", "name");
  expect_field(f, 0, "name", NULL, "name");
  expect_field(f, 0, "sku", "\"has space\"", "sku");
  expect_field(f, 0, "sku", "{\"$gt\":\"\"}", "sku");
  expect_field(f, 0, "brand", "{\"x\":1}", "brand");
  expect_field(f, 0, "attributes", "[1]", "attributes");
  expect_field(f, 0, "attributes", "{\"a b\":1}", "attributes.a b");
  expect_field(f, 0, "attributes", "{\"nested\":{\"x\":1}}", "attributes.nested");
  expect_field(f, 0, "images", "[\"\"]", "images[0]");
  expect_field(f, 0, "id", "\"abc\"", "id");
  expect_field(f, 0, "variants", "[{\"sku\":\"V1\",\"stock\":-1}]", "variants[0].stock");
  expect_field(f, 0, "variants", "[{\"sku\":\"V1\"},{\"sku\":\"V1\"}]", "variants[1].sku");
  expect_field(f, 0, "variants", "[{\"stock\":1}]", "variants[0].sku");
  expect_field(f, 0, "variants", "[{\"sku\":\"PH-1\"}]", "variants[0].sku");
  expect_field(f, 0, "variants", "[{\"sku\":\"V1\",\"colour\":\"red\"}]", "variants[0].colour");
}

static void refuses_operator_keys_anywhere(void **state) {
  fx_t *f = *state;
  assert_int_equal(check(f, 0, "attributes", "{\"$where\":\"1\"}"), PS_EINVAL);
  assert_int_equal(check(f, 1, "name", "{\"$ne\":null}"), PS_EINVAL);
}

static void stock_and_variants_exclude_each_other(void **state) {
  fx_t *f = *state;
  expect_field(f, 0, "variants", "[{\"sku\":\"V1\",\"stock\":3}]", "stock");
}

static void patch_takes_any_subset(void **state) {
  fx_t *f = *state;
  json_t *body = json_loads("{\"price\":5}", 0, NULL);
  assert_int_equal(product_validate(body, 1, &f->a, &f->in, &f->field, f->msg, sizeof(f->msg)), 0);
  assert_int_equal(f->in.fields, PF_PRICE);
  json_decref(body);
  body = json_loads("{\"name\":null}", 0, NULL);
  assert_int_equal(product_validate(body, 1, &f->a, &f->in, &f->field, f->msg, sizeof(f->msg)),
                   PS_EINVAL);
  assert_string_equal(f->field, "name");
  json_decref(body);
}

static void sorts_parse(void **state) {
  sort_t s;
  assert_int_equal(product_sort_parse("-price", &s), 0);
  assert_int_equal(s, SORT_PRICE_DESC);
  assert_int_equal(product_sort_parse("newest", &s), 0);
  assert_int_equal(s, SORT_NEWEST);
  assert_int_equal(product_sort_parse("price desc", &s), PS_EINVAL);
  assert_int_equal(product_sort_parse("", &s), PS_EINVAL);
  assert_true(product_attr_name_ok("shelf_life"));
  assert_false(product_attr_name_ok("a.b"));
  assert_false(product_attr_name_ok("x')--"));
  assert_false(product_attr_name_ok(""));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(accepts_a_good_product, setup, teardown),
      cmocka_unit_test_setup_teardown(refuses_bad_fields, setup, teardown),
      cmocka_unit_test_setup_teardown(refuses_operator_keys_anywhere, setup, teardown),
      cmocka_unit_test_setup_teardown(stock_and_variants_exclude_each_other, setup, teardown),
      cmocka_unit_test_setup_teardown(patch_takes_any_subset, setup, teardown),
      cmocka_unit_test(sorts_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
