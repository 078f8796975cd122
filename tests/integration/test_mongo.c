/* test_mongo.c - smoke test of the MongoDB-protocol engine (FerretDB) that scripts/engines
 * starts: libmongoc connects to POLYSHOP_TEST_MONGO_URL, inserts documents, finds one by a
 * field, sees a unique index refuse a duplicate (error 11000), and updates with $inc. */
#include "itest.h"

#include <mongoc/mongoc.h>

typedef struct {
  mongoc_client_t *client;
  mongoc_collection_t *coll;
  char name[64];
} fixture_t;

static int setup(void **state) {
  mongoc_init();
  fixture_t *f = calloc(1, sizeof(*f));
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  if (f->coll) {
    mongoc_collection_drop(f->coll, NULL);
    mongoc_collection_destroy(f->coll);
  }
  if (f->client) mongoc_client_destroy(f->client);
  free(f);
  mongoc_cleanup();
  return 0;
}

static void open_or_fail(fixture_t *f) {
  const char *url = itest_env("POLYSHOP_TEST_MONGO_URL");
  bson_error_t err;
  mongoc_uri_t *uri = mongoc_uri_new_with_error(url, &err);
  if (!uri) fail_msg("bad mongo URL %s: %s", url, err.message);
  mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
  f->client = mongoc_client_new_from_uri(uri);
  mongoc_uri_destroy(uri);
  assert_non_null(f->client);
  mongoc_client_set_appname(f->client, "polyshop-itest");

  bson_t *ping = BCON_NEW("ping", BCON_INT32(1));
  bool ok = mongoc_client_command_simple(f->client, "admin", ping, NULL, NULL, &err);
  bson_destroy(ping);
  if (!ok) fail_msg("cannot reach %s: %s", url, err.message);

  itest_unique(f->name, sizeof(f->name), "itest_mongo_");
  f->coll = mongoc_client_get_collection(f->client, "polyshop_itest", f->name);
}

static void test_insert_find_unique(void **state) {
  fixture_t *f = *state;
  open_or_fail(f);
  bson_error_t err;

  /* Unique index on sku, created with the createIndexes command as adapters will. */
  bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(f->name), "indexes", "[", "{", "key", "{",
                         "sku", BCON_INT32(1), "}", "name", BCON_UTF8("sku_unique"), "unique",
                         BCON_BOOL(true), "}", "]");
  bson_t reply;
  bool ok = mongoc_collection_write_command_with_opts(f->coll, cmd, NULL, &reply, &err);
  bson_destroy(cmd);
  bson_destroy(&reply);
  if (!ok) fail_msg("createIndexes failed: %s", err.message);

  bson_t *doc = BCON_NEW("sku", BCON_UTF8("SHOE-42"), "name", BCON_UTF8("Blue shoe"), "stock",
                         BCON_INT32(3), "price_cents", BCON_INT64(4999));
  ok = mongoc_collection_insert_one(f->coll, doc, NULL, NULL, &err);
  bson_destroy(doc);
  if (!ok) fail_msg("insert failed: %s", err.message);

  doc = BCON_NEW("sku", BCON_UTF8("HAT-1"), "name", BCON_UTF8("Red hat"), "stock", BCON_INT32(9));
  ok = mongoc_collection_insert_one(f->coll, doc, NULL, NULL, &err);
  bson_destroy(doc);
  if (!ok) fail_msg("insert failed: %s", err.message);

  /* Find by field: exactly the shoe, with the values written. */
  bson_t *filter = BCON_NEW("sku", BCON_UTF8("SHOE-42"));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(f->coll, filter, NULL, NULL);
  const bson_t *found;
  int n = 0;
  while (mongoc_cursor_next(cur, &found)) {
    bson_iter_t it;
    n++;
    assert_true(bson_iter_init_find(&it, found, "name"));
    assert_string_equal(bson_iter_utf8(&it, NULL), "Blue shoe");
    assert_true(bson_iter_init_find(&it, found, "stock"));
    assert_int_equal(bson_iter_int32(&it), 3);
    assert_true(bson_iter_init_find(&it, found, "price_cents"));
    assert_int_equal(bson_iter_as_int64(&it), 4999);
  }
  ok = !mongoc_cursor_error(cur, &err);
  mongoc_cursor_destroy(cur);
  if (!ok) fail_msg("find failed: %s", err.message);
  assert_int_equal(n, 1);

  /* Same sku again: the unique index must refuse it with duplicate-key error 11000. */
  doc = BCON_NEW("sku", BCON_UTF8("SHOE-42"), "name", BCON_UTF8("Impostor"));
  ok = mongoc_collection_insert_one(f->coll, doc, NULL, NULL, &err);
  bson_destroy(doc);
  assert_false(ok);
  if (err.code != 11000) fail_msg("expected duplicate key error 11000, got %u: %s", err.code, err.message);

  /* $inc on the matched document, then read the new value. */
  bson_t *update = BCON_NEW("$inc", "{", "stock", BCON_INT32(-2), "}");
  bson_t ureply;
  ok = mongoc_collection_update_one(f->coll, filter, update, NULL, &ureply, &err);
  bson_destroy(update);
  bson_destroy(&ureply);
  if (!ok) fail_msg("update failed: %s", err.message);
  cur = mongoc_collection_find_with_opts(f->coll, filter, NULL, NULL);
  assert_true(mongoc_cursor_next(cur, &found));
  bson_iter_t it;
  assert_true(bson_iter_init_find(&it, found, "stock"));
  assert_int_equal(bson_iter_int32(&it), 1);
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);

  bson_t all = BSON_INITIALIZER;
  int64_t count = mongoc_collection_count_documents(f->coll, &all, NULL, NULL, NULL, &err);
  if (count < 0) fail_msg("count failed: %s", err.message);
  assert_int_equal(count, 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_insert_find_unique, setup, teardown),
  };
  return cmocka_run_group_tests_name("integration.mongo", tests, NULL, NULL);
}
