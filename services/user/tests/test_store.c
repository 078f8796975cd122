/* test_store.c - the behaviour every user store adapter must have. Runs against an embedded
 * SQLite file, and against any other engine named by USER_TEST_STORE_URL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "polyshop/error.h"
#include "store.h"

static char url[512];
static int counter;
static user_store_t *sessions; /* the main store, or Redis when USER_TEST_SESSIONS_URL is set */

static int setup(void **state) {
  const char *env = getenv("USER_TEST_STORE_URL");
  if (env) {
    snprintf(url, sizeof(url), "%s", env);
  } else {
    char dir[] = "/tmp/polyshop-user-store-XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(url, sizeof(url), "sqlite://%s/user.db", dir);
  }
  user_store_t *s;
  assert_int_equal(user_store_open(url, &s), 0);
  *state = s;
  sessions = s;
  const char *redis = getenv("USER_TEST_SESSIONS_URL");
  if (redis) assert_int_equal(user_sessions_redis_open(redis, &sessions), 0);
  return 0;
}

static int teardown(void **state) {
  user_store_t *s = *state;
  if (sessions != s) sessions->ops->close(sessions);
  s->ops->close(s);
  return 0;
}

/* Compares JSON texts by value: engines format documents differently. */
static void assert_json_equal(const char *got, const char *want) {
  json_t *g = json_loads(got, 0, NULL), *w = json_loads(want, 0, NULL);
  int eq = g && w && json_equal(g, w);
  json_decref(g);
  json_decref(w);
  if (!eq) fail_msg("JSON %s != %s", got, want);
}

static user_t make_user(char *id, char *email) {
  counter++;
  sprintf(id, "00000000-0000-4000-8000-%012d", counter + getpid() * 1000);
  sprintf(email, "user%d.%d@example.com", counter, getpid());
  user_t u = {.id = id, .email = email, .password_hash = "$argon2id$fake", .role = "customer",
              .name = "Ann", .profile = "{\"company\":\"ACME\"}", .settings = "{}",
              .created_at = 1000, .updated_at = 1000};
  return u;
}

static void test_create_and_get(void **state) {
  user_store_t *s = *state;
  char id[64], email[64];
  user_t u = make_user(id, email), got;
  ps_arena_t a;
  ps_arena_init(&a);
  assert_int_equal(s->ops->create(s, &u), 0);
  assert_int_equal(s->ops->get_by_id(s, &a, id, &got), 0);
  assert_string_equal(got.email, email);
  assert_string_equal(got.role, "customer");
  assert_string_equal(got.name, "Ann");
  assert_int_equal(got.created_at, 1000);
  assert_int_equal(s->ops->get_by_email(s, &a, email, &got), 0);
  assert_string_equal(got.id, id);
  assert_int_equal(s->ops->get_by_id(s, &a, "no-such-id", &got), PS_ENOTFOUND);
  assert_int_equal(s->ops->get_by_email(s, &a, "nobody@example.com", &got), PS_ENOTFOUND);
  ps_arena_reset(&a);
}

static void test_unique_email(void **state) {
  user_store_t *s = *state;
  char id[64], email[64], id2[64], email2[64];
  user_t u = make_user(id, email), v = make_user(id2, email2);
  assert_int_equal(s->ops->create(s, &u), 0);
  v.email = email; /* same email, other id */
  assert_int_equal(s->ops->create(s, &v), PS_EEXISTS);
}

static void test_updates(void **state) {
  user_store_t *s = *state;
  char id[64], email[64];
  user_t u = make_user(id, email), got;
  ps_arena_t a;
  ps_arena_init(&a);
  assert_int_equal(s->ops->create(s, &u), 0);
  u.name = "Bea";
  u.profile = "{\"title\":\"CTO\"}";
  u.updated_at = 2000;
  assert_int_equal(s->ops->update_profile(s, &u), 0);
  assert_int_equal(s->ops->update_settings(s, id, "{\"theme\":\"dark\"}", 2001), 0);
  assert_int_equal(s->ops->update_password(s, id, "$argon2id$new", 2002), 0);
  assert_int_equal(s->ops->set_role(s, id, "admin"), 0);
  assert_int_equal(s->ops->get_by_id(s, &a, id, &got), 0);
  assert_string_equal(got.name, "Bea");
  assert_json_equal(got.profile, "{\"title\":\"CTO\"}");
  assert_json_equal(got.settings, "{\"theme\":\"dark\"}");
  assert_string_equal(got.password_hash, "$argon2id$new");
  assert_string_equal(got.role, "admin");
  u.id = "no-such-id";
  assert_int_equal(s->ops->update_profile(s, &u), PS_ENOTFOUND);
  assert_int_equal(s->ops->update_settings(s, "no-such-id", "{}", 1), PS_ENOTFOUND);
  ps_arena_reset(&a);
}

static void test_refresh_rotation(void **state) {
  user_store_t *s = sessions;
  (void)state;
  /* Real times: a Redis store expires keys by the clock. */
  const int64_t now = (int64_t)time(NULL);
  ps_arena_t a;
  ps_arena_init(&a);
  const char *uid, *fam;
  char h1[64], h2[64], fam_id[64];
  sprintf(h1, "hash-a-%d-%d", getpid(), ++counter);
  sprintf(h2, "hash-b-%d-%d", getpid(), counter);
  sprintf(fam_id, "fam-%d-%d", getpid(), counter);
  assert_int_equal(s->ops->refresh_add(s, h1, fam_id, "u1", now + 3600), 0);
  assert_int_equal(s->ops->refresh_use(s, &a, h1, now, &uid, &fam), 0);
  assert_string_equal(uid, "u1");
  assert_string_equal(fam, fam_id);
  /* Second use of the same token: reuse. */
  assert_int_equal(s->ops->refresh_use(s, &a, h1, now, &uid, &fam), PS_ECONFLICT);
  assert_string_equal(fam, fam_id);
  assert_int_equal(s->ops->refresh_add(s, h2, fam_id, "u1", now + 3600), 0);
  assert_int_equal(s->ops->refresh_revoke_family(s, fam_id), 0);
  assert_int_equal(s->ops->refresh_use(s, &a, h2, now, &uid, &fam), PS_ECONFLICT);
  assert_int_equal(s->ops->refresh_use(s, &a, "unknown", now, &uid, &fam), PS_ENOTFOUND);
  /* Expired */
  sprintf(h1, "hash-c-%d-%d", getpid(), ++counter);
  assert_int_equal(s->ops->refresh_add(s, h1, "f2", "u2", now - 10), 0);
  /* Several replicas: a conditional write lets only one of two uses win. */
  int rc = s->ops->refresh_use(s, &a, h1, now, &uid, &fam);
  assert_true(rc == PS_EEXPIRED || rc == PS_ENOTFOUND);
  /* Revoke by user */
  sprintf(h2, "hash-d-%d-%d", getpid(), counter);
  assert_int_equal(s->ops->refresh_add(s, h2, "f3", "u3", now + 3600), 0);
  assert_int_equal(s->ops->refresh_family(s, &a, h2, &fam, &uid), 0);
  assert_string_equal(fam, "f3");
  assert_int_equal(s->ops->refresh_revoke_user(s, "u3"), 0);
  assert_int_equal(s->ops->refresh_use(s, &a, h2, now, &uid, &fam), PS_ECONFLICT);
  ps_arena_reset(&a);
}

static void test_reset_tokens(void **state) {
  user_store_t *s = *state;
  ps_arena_t a;
  ps_arena_init(&a);
  const char *uid;
  char h[64];
  sprintf(h, "reset-%d-%d", getpid(), ++counter);
  assert_int_equal(s->ops->reset_add(s, h, "u9", 5000), 0);
  assert_int_equal(s->ops->reset_consume(s, &a, h, 100, &uid), 0);
  assert_string_equal(uid, "u9");
  assert_int_equal(s->ops->reset_consume(s, &a, h, 100, &uid), PS_ENOTFOUND); /* one time */
  sprintf(h, "reset-old-%d-%d", getpid(), counter);
  assert_int_equal(s->ops->reset_add(s, h, "u9", 50), 0);
  assert_int_equal(s->ops->reset_consume(s, &a, h, 100, &uid), PS_EEXPIRED);
  assert_int_equal(s->ops->reset_consume(s, &a, "nope", 100, &uid), PS_ENOTFOUND);
  assert_int_equal(s->ops->outbox_add(s, "password_reset", "{\"x\":1}", 100), 0);
  assert_int_equal(s->ops->ping(s), 0);
  ps_arena_reset(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_and_get), cmocka_unit_test(test_unique_email),
      cmocka_unit_test(test_updates), cmocka_unit_test(test_refresh_rotation),
      cmocka_unit_test(test_reset_tokens)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
