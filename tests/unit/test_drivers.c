/* test_drivers.c - the parts of the driver libraries that need no server: redis:// URLs,
 * Redis replies and MongoDB errors as PS_E* codes, and reading BSON fields. The connections
 * themselves are tested against real engines (integration tier: the user and product store
 * suites). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "polyshop/error.h"
#include "polyshop/mongo.h"
#include "polyshop/redis.h"

static void test_redis_url(void **state) {
  ps_redis_t r;
  assert_int_equal(ps_redis_parse_url(&r, "redis://127.0.0.1:56379"), 0);
  assert_string_equal(r.host, "127.0.0.1");
  assert_int_equal(r.port, 56379);
  assert_int_equal(r.db, 0);
  assert_string_equal(r.password, "");
  assert_int_equal(ps_redis_parse_url(&r, "redis://cache"), 0);
  assert_string_equal(r.host, "cache");
  assert_int_equal(r.port, 6379);
  assert_int_equal(ps_redis_parse_url(&r, "redis://:p%40ss@cache:7000/3"), 0);
  assert_string_equal(r.user, "");
  assert_string_equal(r.password, "p@ss");
  assert_int_equal(r.port, 7000);
  assert_int_equal(r.db, 3);
  assert_int_equal(ps_redis_parse_url(&r, "redis://shop:a@b@[::1]:6380/"), 0);
  assert_string_equal(r.user, "shop");
  assert_string_equal(r.password, "a@b");
  assert_string_equal(r.host, "::1");
  assert_int_equal(r.port, 6380);
}

static void test_redis_bad_urls(void **state) {
  const char *bad[] = {NULL,
                       "",
                       "http://cache:6379",
                       "rediss://cache:6379",
                       "redis://",
                       "redis://:6379",
                       "redis://cache:0",
                       "redis://cache:65536",
                       "redis://cache:63x9",
                       "redis://cache:6379/db",
                       "redis://cache/-1",
                       "redis://[::1",
                       "redis://[::1]x",
                       "redis://:bad%4@cache",
                       "redis://:nul%00@cache",
                       "redis://u:p@",
                       "redis://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ps_redis_t r;
    if (ps_redis_parse_url(&r, bad[i]) != PS_ECONFIG) fail_msg("accepted \"%s\"", bad[i]);
  }
}

static void test_redis_replies(void **state) {
  redisReply ok = {.type = REDIS_REPLY_STATUS, .str = "OK", .len = 2};
  redisReply err = {.type = REDIS_REPLY_ERROR, .str = "WRONGTYPE Operation", .len = 19};
  redisReply auth = {.type = REDIS_REPLY_ERROR, .str = "NOAUTH Authentication required.", .len = 31};
  assert_int_equal(ps_redis_reply_err(&ok), 0);
  assert_int_equal(ps_redis_reply_err(&err), PS_ESTORE);
  assert_int_equal(ps_redis_reply_err(&auth), PS_EAUTH);
  assert_int_equal(ps_redis_reply_err(NULL), PS_EUNAVAIL);
}

static void test_redis_no_server(void **state) {
  /* Port 1 on loopback: nothing listens there, so the connection is refused at once. */
  ps_redis_t r;
  assert_int_equal(ps_redis_open(&r, "redis://:secret@127.0.0.1:1", 500), PS_EUNAVAIL);
  assert_null(r.ctx);
  assert_string_equal(r.password, "");
  assert_int_equal(ps_redis_open(&r, "redis://127.0.0.1:1:2", 500), PS_ECONFIG);
}

static void test_mongo_errors(void **state) {
  bson_error_t e = {.domain = MONGOC_ERROR_SERVER, .code = 11000};
  assert_int_equal(ps_mongo_err(&e), PS_EEXISTS);
  e.code = 11001;
  assert_int_equal(ps_mongo_err(&e), PS_EEXISTS);
  e = (bson_error_t){.domain = MONGOC_ERROR_SERVER_SELECTION, .code = 13053};
  assert_int_equal(ps_mongo_err(&e), PS_EUNAVAIL);
  e = (bson_error_t){.domain = MONGOC_ERROR_STREAM, .code = MONGOC_ERROR_STREAM_SOCKET};
  assert_int_equal(ps_mongo_err(&e), PS_EUNAVAIL);
  e = (bson_error_t){.domain = MONGOC_ERROR_SERVER, .code = 2, .message = "bad query"};
  assert_int_equal(ps_mongo_err(&e), PS_ESTORE);
}

static void test_mongo_open_bad_url(void **state) {
  ps_mongo_t m;
  assert_int_equal(ps_mongo_open(&m, "mongodb://u:secret@", "t", "db"), PS_ECONFIG);
  assert_int_equal(ps_mongo_open(&m, "http://x", "t", "db"), PS_ECONFIG);
  assert_null(m.client);
  ps_mongo_close(&m);
  /* A good URL needs no server to open: the first call connects. */
  assert_int_equal(ps_mongo_open(&m, "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200", "t",
                                 "polyshop_t"), 0);
  assert_string_equal(mongoc_database_get_name(m.db), "polyshop_t");
  assert_int_equal(ps_mongo_ping(&m), PS_EUNAVAIL);
  ps_mongo_close(&m);
}

static void test_mongo_fields(void **state) {
  bson_t *d = BCON_NEW("s", BCON_UTF8("text"), "i", BCON_INT32(7), "l", BCON_INT64(1LL << 40),
                       "f", BCON_DOUBLE(2.9), "n", BCON_NULL);
  ps_arena_t a;
  ps_arena_init(&a);
  assert_string_equal(ps_mongo_str(&a, d, "s"), "text");
  assert_string_equal(ps_mongo_str(NULL, d, "s"), "text");
  assert_null(ps_mongo_str(&a, d, "i"));
  assert_null(ps_mongo_str(&a, d, "missing"));
  assert_int_equal(ps_mongo_int(d, "i"), 7);
  assert_int_equal(ps_mongo_int(d, "l"), 1LL << 40);
  assert_int_equal(ps_mongo_int(d, "f"), 2);
  assert_int_equal(ps_mongo_int(d, "s"), 0);
  assert_int_equal(ps_mongo_int(d, "n"), 0);
  bson_t b = BSON_INITIALIZER;
  ps_mongo_append_json(&b, "good", "{\"k\":[1,2]}");
  ps_mongo_append_json(&b, "bad", "{not json");
  ps_mongo_append_json(&b, "none", NULL);
  char *json = bson_as_relaxed_extended_json(&b, NULL);
  assert_string_equal(json, "{ \"good\" : { \"k\" : [ 1, 2 ] }, \"bad\" : {  }, \"none\" : {  } }");
  bson_free(json);
  bson_destroy(&b);
  bson_destroy(d);
  ps_arena_reset(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_redis_url),     cmocka_unit_test(test_redis_bad_urls),
      cmocka_unit_test(test_redis_replies), cmocka_unit_test(test_redis_no_server),
      cmocka_unit_test(test_mongo_errors),  cmocka_unit_test(test_mongo_open_bad_url),
      cmocka_unit_test(test_mongo_fields),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
