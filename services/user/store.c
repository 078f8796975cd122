/* store.c - picks the user store adapter from the store URL's scheme, and the wrapper that
 * times every call of it. */
#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/sqlite.h"
#include "polyshop/store_timing.h"
#include "store.h"

int user_store_url_ok(const char *url) {
  return ps_sqlite_url_path(url) != NULL || strncmp(url, "mongodb://", 10) == 0;
}

int user_store_open(const char *url, user_store_t **out) {
  const char *path = ps_sqlite_url_path(url);
  if (path) return user_store_sqlite_open(path, out);
  if (strncmp(url, "mongodb://", 10) == 0) return user_store_mongo_open(url, out);
  return PS_ECONFIG;
}

/* --- timing: every call through polyshop_store_call_seconds{engine,op} ------------------- */

enum {
  T_CREATE, T_GET_BY_ID, T_GET_BY_EMAIL, T_UPDATE_PROFILE, T_UPDATE_SETTINGS,
  T_UPDATE_PASSWORD, T_SET_ROLE, T_REFRESH_ADD, T_REFRESH_USE, T_REVOKE_FAMILY, T_REVOKE_USER,
  T_REFRESH_FAMILY, T_RESET_ADD, T_RESET_CONSUME, T_OUTBOX_ADD, T_PING, T__COUNT
};

static const char *const op_names[T__COUNT] = {
    [T_CREATE] = "create", [T_GET_BY_ID] = "get_by_id", [T_GET_BY_EMAIL] = "get_by_email",
    [T_UPDATE_PROFILE] = "update_profile", [T_UPDATE_SETTINGS] = "update_settings",
    [T_UPDATE_PASSWORD] = "update_password", [T_SET_ROLE] = "set_role",
    [T_REFRESH_ADD] = "refresh_add", [T_REFRESH_USE] = "refresh_use",
    [T_REVOKE_FAMILY] = "refresh_revoke_family", [T_REVOKE_USER] = "refresh_revoke_user",
    [T_REFRESH_FAMILY] = "refresh_family", [T_RESET_ADD] = "reset_add",
    [T_RESET_CONSUME] = "reset_consume", [T_OUTBOX_ADD] = "outbox_add", [T_PING] = "ping"};

static ps_store_timing_t timing; /* registered once, before the server's threads start */

typedef struct {
  user_store_t base;
  user_store_t *inner; /* owned: closed with this one */
} timed_t;

#define IN(s) (((timed_t *)(s))->inner)

static int t_create(user_store_t *s, const user_t *u) {
  PS_STORE_TIMED(&timing, T_CREATE, IN(s)->ops->create(IN(s), u));
}
static int t_get_by_id(user_store_t *s, ps_arena_t *a, const char *id, user_t *out) {
  PS_STORE_TIMED(&timing, T_GET_BY_ID, IN(s)->ops->get_by_id(IN(s), a, id, out));
}
static int t_get_by_email(user_store_t *s, ps_arena_t *a, const char *email, user_t *out) {
  PS_STORE_TIMED(&timing, T_GET_BY_EMAIL, IN(s)->ops->get_by_email(IN(s), a, email, out));
}
static int t_update_profile(user_store_t *s, const user_t *u) {
  PS_STORE_TIMED(&timing, T_UPDATE_PROFILE, IN(s)->ops->update_profile(IN(s), u));
}
static int t_update_settings(user_store_t *s, const char *id, const char *settings, int64_t now) {
  PS_STORE_TIMED(&timing, T_UPDATE_SETTINGS, IN(s)->ops->update_settings(IN(s), id, settings, now));
}
static int t_update_password(user_store_t *s, const char *id, const char *hash, int64_t now) {
  PS_STORE_TIMED(&timing, T_UPDATE_PASSWORD, IN(s)->ops->update_password(IN(s), id, hash, now));
}
static int t_set_role(user_store_t *s, const char *id, const char *role) {
  PS_STORE_TIMED(&timing, T_SET_ROLE, IN(s)->ops->set_role(IN(s), id, role));
}
static int t_refresh_add(user_store_t *s, const char *hash, const char *family,
                         const char *user_id, int64_t expires_at) {
  PS_STORE_TIMED(&timing, T_REFRESH_ADD,
                 IN(s)->ops->refresh_add(IN(s), hash, family, user_id, expires_at));
}
static int t_refresh_use(user_store_t *s, ps_arena_t *a, const char *hash, int64_t now,
                         const char **user_id, const char **family) {
  PS_STORE_TIMED(&timing, T_REFRESH_USE,
                 IN(s)->ops->refresh_use(IN(s), a, hash, now, user_id, family));
}
static int t_revoke_family(user_store_t *s, const char *family) {
  PS_STORE_TIMED(&timing, T_REVOKE_FAMILY, IN(s)->ops->refresh_revoke_family(IN(s), family));
}
static int t_revoke_user(user_store_t *s, const char *user_id) {
  PS_STORE_TIMED(&timing, T_REVOKE_USER, IN(s)->ops->refresh_revoke_user(IN(s), user_id));
}
static int t_refresh_family(user_store_t *s, ps_arena_t *a, const char *hash,
                            const char **family, const char **user_id) {
  PS_STORE_TIMED(&timing, T_REFRESH_FAMILY,
                 IN(s)->ops->refresh_family(IN(s), a, hash, family, user_id));
}
static int t_reset_add(user_store_t *s, const char *hash, const char *user_id,
                       int64_t expires_at) {
  PS_STORE_TIMED(&timing, T_RESET_ADD, IN(s)->ops->reset_add(IN(s), hash, user_id, expires_at));
}
static int t_reset_consume(user_store_t *s, ps_arena_t *a, const char *hash, int64_t now,
                           const char **user_id) {
  PS_STORE_TIMED(&timing, T_RESET_CONSUME,
                 IN(s)->ops->reset_consume(IN(s), a, hash, now, user_id));
}
static int t_outbox_add(user_store_t *s, const char *type, const char *payload, int64_t now) {
  PS_STORE_TIMED(&timing, T_OUTBOX_ADD, IN(s)->ops->outbox_add(IN(s), type, payload, now));
}
static int t_ping(user_store_t *s) { PS_STORE_TIMED(&timing, T_PING, IN(s)->ops->ping(IN(s))); }

static void t_close(user_store_t *s) {
  IN(s)->ops->close(IN(s));
  ps_free(s);
}

static const user_store_ops_t timed_ops = {
    .create = t_create, .get_by_id = t_get_by_id, .get_by_email = t_get_by_email,
    .update_profile = t_update_profile, .update_settings = t_update_settings,
    .update_password = t_update_password, .set_role = t_set_role,
    .refresh_add = t_refresh_add, .refresh_use = t_refresh_use,
    .refresh_revoke_family = t_revoke_family, .refresh_revoke_user = t_revoke_user,
    .refresh_family = t_refresh_family, .reset_add = t_reset_add,
    .reset_consume = t_reset_consume, .outbox_add = t_outbox_add, .ping = t_ping,
    .close = t_close,
};

void user_store_metrics_register(const char *engine) {
  ps_store_timing_register(&timing, engine, op_names, T__COUNT, "Latency of user store calls");
}

user_store_t *user_store_timed(user_store_t *inner) {
  timed_t *t = ps_calloc(1, sizeof(*t));
  t->base.ops = &timed_ops;
  t->inner = inner;
  return &t->base;
}
