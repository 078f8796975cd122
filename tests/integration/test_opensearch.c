/* test_opensearch.c - smoke test of the OpenSearch engine that scripts/engines starts: over
 * plain HTTP (libcurl) to POLYSHOP_TEST_OPENSEARCH_URL it creates an index with a mapping,
 * indexes documents, finds one by a full-text match, and deletes the index. */
#include "itest.h"

#include <jansson.h>

static json_t *parse_or_fail(const itest_resp_t *r, const char *what) {
  json_error_t jerr;
  json_t *j = json_loadb(r->body, r->len, 0, &jerr);
  if (!j) fail_msg("%s: response is not JSON (%s): %.500s", what, jerr.text, r->body);
  return j;
}

static void test_index_and_search(void **state) {
  (void)state;
  const char *base = itest_env("POLYSHOP_TEST_OPENSEARCH_URL");
  char index[64], url[512];
  itest_unique(index, sizeof(index), "itest-os-");
  itest_resp_t r;

  /* The server is OpenSearch 2.x. */
  itest_http(&(itest_req_t){.method = "GET", .url = base}, &r);
  itest_expect_status(&r, 200, "GET /");
  json_t *j = parse_or_fail(&r, "GET /");
  const char *dist = json_string_value(json_object_get(json_object_get(j, "version"), "distribution"));
  const char *num = json_string_value(json_object_get(json_object_get(j, "version"), "number"));
  assert_non_null(dist);
  assert_string_equal(dist, "opensearch");
  assert_non_null(num);
  assert_true(strncmp(num, "2.", 2) == 0);
  json_decref(j);
  itest_resp_free(&r);

  snprintf(url, sizeof(url), "%s/%s", base, index);
  const char *mapping =
      "{\"settings\":{\"number_of_shards\":1,\"number_of_replicas\":0},"
      "\"mappings\":{\"properties\":{\"name\":{\"type\":\"text\"},\"sku\":{\"type\":\"keyword\"},"
      "\"price_cents\":{\"type\":\"long\"}}}}";
  itest_http(&(itest_req_t){.method = "PUT", .url = url, .content_type = "application/json",
                            .body = mapping, .body_len = strlen(mapping)},
             &r);
  itest_expect_status(&r, 200, "create index");
  itest_resp_free(&r);

  const char *docs[] = {
      "{\"name\":\"Blue running shoe\",\"sku\":\"SHOE-42\",\"price_cents\":4999}",
      "{\"name\":\"Red woollen hat\",\"sku\":\"HAT-1\",\"price_cents\":1500}",
  };
  for (int i = 0; i < 2; i++) {
    snprintf(url, sizeof(url), "%s/%s/_doc/%d?refresh=true", base, index, i + 1);
    itest_http(&(itest_req_t){.method = "PUT", .url = url, .content_type = "application/json",
                              .body = docs[i], .body_len = strlen(docs[i])},
               &r);
    itest_expect_status(&r, 201, "index document");
    itest_resp_free(&r);
  }

  snprintf(url, sizeof(url), "%s/%s/_search", base, index);
  const char *query = "{\"query\":{\"match\":{\"name\":\"shoe\"}}}";
  itest_http(&(itest_req_t){.method = "POST", .url = url, .content_type = "application/json",
                            .body = query, .body_len = strlen(query)},
             &r);
  itest_expect_status(&r, 200, "search");
  j = parse_or_fail(&r, "search");
  json_t *hits = json_object_get(j, "hits");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(hits, "total"), "value")), 1);
  json_t *hit = json_array_get(json_object_get(hits, "hits"), 0);
  assert_non_null(hit);
  itest_assert_str(json_string_value(json_object_get(hit, "_id")), "1");
  json_t *src = json_object_get(hit, "_source");
  itest_assert_str(json_string_value(json_object_get(src, "sku")), "SHOE-42");
  assert_int_equal(json_integer_value(json_object_get(src, "price_cents")), 4999);
  json_decref(j);
  itest_resp_free(&r);

  snprintf(url, sizeof(url), "%s/%s", base, index);
  itest_http(&(itest_req_t){.method = "DELETE", .url = url}, &r);
  itest_expect_status(&r, 200, "delete index");
  itest_resp_free(&r);
  itest_http(&(itest_req_t){.method = "HEAD", .url = url}, &r);
  itest_expect_status(&r, 404, "index gone");
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
      cmocka_unit_test(test_index_and_search),
  };
  return cmocka_run_group_tests_name("integration.opensearch", tests, global_setup, global_teardown);
}
