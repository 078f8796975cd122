/* test_redis.c - smoke test of the Redis engine that scripts/engines starts: hiredis connects
 * to POLYSHOP_TEST_REDIS_URL, sets a key with an expiry and reads it back, counts with INCR,
 * and checks the server is Redis 7. */
#include "itest.h"

#include <hiredis/hiredis.h>

static redisContext *connect_or_fail(void) {
  const char *url = itest_env("POLYSHOP_TEST_REDIS_URL");
  char host[128];
  int port;
  if (itest_host_port(url, host, sizeof(host), &port) != 0) fail_msg("bad redis URL %s", url);
  struct timeval tv = {5, 0};
  redisContext *c = redisConnectWithTimeout(host, port, tv);
  if (!c || c->err) {
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", c ? c->errstr : "out of memory");
    if (c) redisFree(c);
    fail_msg("cannot connect to %s: %s", url, msg);
  }
  return c;
}

static redisReply *cmd(redisContext *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(c, fmt, ap);
  va_end(ap);
  if (!r) fail_msg("redis command `%s` failed: %s", fmt, c->errstr);
  if (r->type == REDIS_REPLY_ERROR) {
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", r->str);
    freeReplyObject(r);
    fail_msg("redis command `%s` returned error: %s", fmt, msg);
  }
  return r;
}

static void test_set_get_incr(void **state) {
  (void)state;
  redisContext *c = connect_or_fail();
  char key[64], counter[80];
  itest_unique(key, sizeof(key), "itest:redis:");
  snprintf(counter, sizeof(counter), "%s:n", key);

  redisReply *r = cmd(c, "SET %s %b EX 60", key, "cart\0blob", (size_t)9);
  assert_int_equal(r->type, REDIS_REPLY_STATUS);
  assert_string_equal(r->str, "OK");
  freeReplyObject(r);

  r = cmd(c, "GET %s", key);
  assert_int_equal(r->type, REDIS_REPLY_STRING);
  assert_int_equal(r->len, 9);
  assert_memory_equal(r->str, "cart\0blob", 9);
  freeReplyObject(r);

  r = cmd(c, "TTL %s", key);
  assert_int_equal(r->type, REDIS_REPLY_INTEGER);
  assert_true(r->integer > 0 && r->integer <= 60);
  freeReplyObject(r);

  for (int i = 0; i < 3; i++) freeReplyObject(cmd(c, "INCR %s", counter));
  r = cmd(c, "INCRBY %s 4", counter);
  assert_int_equal(r->type, REDIS_REPLY_INTEGER);
  assert_int_equal(r->integer, 7);
  freeReplyObject(r);

  r = cmd(c, "DEL %s %s", key, counter);
  assert_int_equal(r->integer, 2);
  freeReplyObject(r);

  r = cmd(c, "GET %s", key);
  assert_int_equal(r->type, REDIS_REPLY_NIL);
  freeReplyObject(r);
  redisFree(c);
}

static void test_server_is_redis7(void **state) {
  (void)state;
  redisContext *c = connect_or_fail();
  redisReply *r = cmd(c, "INFO server");
  assert_int_equal(r->type, REDIS_REPLY_STRING);
  const char *v = strstr(r->str, "redis_version:");
  int ok = v && strncmp(v + strlen("redis_version:"), "7.", 2) == 0;
  char seen[32] = "";
  if (v) snprintf(seen, sizeof(seen), "%.20s", v + strlen("redis_version:"));
  freeReplyObject(r);
  redisFree(c);
  if (!ok) fail_msg("expected Redis 7, INFO says %s", seen);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_set_get_incr),
      cmocka_unit_test(test_server_is_redis7),
  };
  return cmocka_run_group_tests_name("integration.redis", tests, NULL, NULL);
}
