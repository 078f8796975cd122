/* store_sqlite.c - the user store on an embedded SQLite file (see store.h). One connection per
 * event-loop thread; statements are prepared once per connection. */
#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/sqlite.h"
#include "store.h"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS users ("
    " id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,"
    " role TEXT NOT NULL, name TEXT NOT NULL DEFAULT '', profile TEXT NOT NULL DEFAULT '{}',"
    " settings TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS refresh_tokens ("
    " hash TEXT PRIMARY KEY, family TEXT NOT NULL, user_id TEXT NOT NULL,"
    " expires_at INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS refresh_family ON refresh_tokens(family);"
    "CREATE INDEX IF NOT EXISTS refresh_user ON refresh_tokens(user_id);"
    "CREATE TABLE IF NOT EXISTS reset_tokens ("
    " hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, expires_at INTEGER NOT NULL,"
    " used INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, payload TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, sent_at INTEGER);";

enum {
  Q_CREATE, Q_BY_ID, Q_BY_EMAIL, Q_PROFILE, Q_SETTINGS, Q_PASSWORD, Q_ROLE,
  Q_REFRESH_ADD, Q_REFRESH_USE, Q_REFRESH_GET, Q_REFRESH_REVOKE_FAMILY, Q_REFRESH_REVOKE_USER,
  Q_RESET_ADD, Q_RESET_USE, Q_RESET_GET, Q_OUTBOX, Q_PING, Q__COUNT
};

static const char *const sql[Q__COUNT] = {
    [Q_CREATE] = "INSERT INTO users(id,email,password_hash,role,name,profile,settings,created_at,"
                 "updated_at) VALUES(?,?,?,?,?,?,?,?,?)",
    [Q_BY_ID] = "SELECT id,email,password_hash,role,name,profile,settings,created_at,updated_at"
                " FROM users WHERE id=?",
    [Q_BY_EMAIL] = "SELECT id,email,password_hash,role,name,profile,settings,created_at,"
                   "updated_at FROM users WHERE email=?",
    [Q_PROFILE] = "UPDATE users SET name=?, profile=?, updated_at=? WHERE id=?",
    [Q_SETTINGS] = "UPDATE users SET settings=?, updated_at=? WHERE id=?",
    [Q_PASSWORD] = "UPDATE users SET password_hash=?, updated_at=? WHERE id=?",
    [Q_ROLE] = "UPDATE users SET role=? WHERE id=?",
    [Q_REFRESH_ADD] = "INSERT INTO refresh_tokens(hash,family,user_id,expires_at) VALUES(?,?,?,?)",
    /* The conditional UPDATE is the atomic step: only one caller can flip used 0 -> 1. */
    [Q_REFRESH_USE] = "UPDATE refresh_tokens SET used=1 WHERE hash=? AND used=0 AND expires_at>?",
    [Q_REFRESH_GET] = "SELECT family,user_id,used,expires_at FROM refresh_tokens WHERE hash=?",
    [Q_REFRESH_REVOKE_FAMILY] = "UPDATE refresh_tokens SET used=2 WHERE family=?",
    [Q_REFRESH_REVOKE_USER] = "UPDATE refresh_tokens SET used=2 WHERE user_id=?",
    [Q_RESET_ADD] = "INSERT INTO reset_tokens(hash,user_id,expires_at) VALUES(?,?,?)",
    [Q_RESET_USE] = "UPDATE reset_tokens SET used=1 WHERE hash=? AND used=0 AND expires_at>?",
    [Q_RESET_GET] = "SELECT user_id,used,expires_at FROM reset_tokens WHERE hash=?",
    [Q_OUTBOX] = "INSERT INTO outbox(type,payload,created_at) VALUES(?,?,?)",
    [Q_PING] = "SELECT 1",
};

typedef struct {
  user_store_t base;
  sqlite3 *db;
  sqlite3_stmt *st[Q__COUNT];
} sqlite_store_t;

/* Returns the statement q, reset and with bindings cleared, ready to bind. */
static sqlite3_stmt *stmt(user_store_t *s, int q) {
  return ps_sqlite_fresh(((sqlite_store_t *)s)->st[q]);
}

static int changes(user_store_t *s) { return sqlite3_changes(((sqlite_store_t *)s)->db); }

static int s_create(user_store_t *s, const user_t *u) {
  sqlite3_stmt *st = stmt(s, Q_CREATE);
  ps_sqlite_bind_text(st, 1, u->id);
  ps_sqlite_bind_text(st, 2, u->email);
  ps_sqlite_bind_text(st, 3, u->password_hash);
  ps_sqlite_bind_text(st, 4, u->role);
  ps_sqlite_bind_text(st, 5, u->name ? u->name : "");
  ps_sqlite_bind_text(st, 6, u->profile ? u->profile : "{}");
  ps_sqlite_bind_text(st, 7, u->settings ? u->settings : "{}");
  sqlite3_bind_int64(st, 8, u->created_at);
  sqlite3_bind_int64(st, 9, u->updated_at);
  return ps_sqlite_exec_done(st);
}

static int read_user(sqlite3_stmt *st, ps_arena_t *a, user_t *out) {
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? PS_ENOTFOUND : ps_sqlite_err(rc);
  }
  out->id = ps_sqlite_text(a, st, 0);
  out->email = ps_sqlite_text(a, st, 1);
  out->password_hash = ps_sqlite_text(a, st, 2);
  out->role = ps_sqlite_text(a, st, 3);
  out->name = ps_sqlite_text(a, st, 4);
  out->profile = ps_sqlite_text(a, st, 5);
  out->settings = ps_sqlite_text(a, st, 6);
  out->created_at = sqlite3_column_int64(st, 7);
  out->updated_at = sqlite3_column_int64(st, 8);
  sqlite3_reset(st);
  return 0;
}

static int s_get_by_id(user_store_t *s, ps_arena_t *a, const char *id, user_t *out) {
  sqlite3_stmt *st = stmt(s, Q_BY_ID);
  ps_sqlite_bind_text(st, 1, id);
  return read_user(st, a, out);
}

static int s_get_by_email(user_store_t *s, ps_arena_t *a, const char *email, user_t *out) {
  sqlite3_stmt *st = stmt(s, Q_BY_EMAIL);
  ps_sqlite_bind_text(st, 1, email);
  return read_user(st, a, out);
}

static int s_update_profile(user_store_t *s, const user_t *u) {
  sqlite3_stmt *st = stmt(s, Q_PROFILE);
  ps_sqlite_bind_text(st, 1, u->name);
  ps_sqlite_bind_text(st, 2, u->profile);
  sqlite3_bind_int64(st, 3, u->updated_at);
  ps_sqlite_bind_text(st, 4, u->id);
  int rc = ps_sqlite_exec_done(st);
  return rc ? rc : changes(s) ? 0 : PS_ENOTFOUND;
}

static int s_update_settings(user_store_t *s, const char *id, const char *settings, int64_t now) {
  sqlite3_stmt *st = stmt(s, Q_SETTINGS);
  ps_sqlite_bind_text(st, 1, settings);
  sqlite3_bind_int64(st, 2, now);
  ps_sqlite_bind_text(st, 3, id);
  int rc = ps_sqlite_exec_done(st);
  return rc ? rc : changes(s) ? 0 : PS_ENOTFOUND;
}

static int s_update_password(user_store_t *s, const char *id, const char *hash, int64_t now) {
  sqlite3_stmt *st = stmt(s, Q_PASSWORD);
  ps_sqlite_bind_text(st, 1, hash);
  sqlite3_bind_int64(st, 2, now);
  ps_sqlite_bind_text(st, 3, id);
  int rc = ps_sqlite_exec_done(st);
  return rc ? rc : changes(s) ? 0 : PS_ENOTFOUND;
}

static int s_set_role(user_store_t *s, const char *id, const char *role) {
  sqlite3_stmt *st = stmt(s, Q_ROLE);
  ps_sqlite_bind_text(st, 1, role);
  ps_sqlite_bind_text(st, 2, id);
  int rc = ps_sqlite_exec_done(st);
  return rc ? rc : changes(s) ? 0 : PS_ENOTFOUND;
}

static int s_refresh_add(user_store_t *s, const char *hash, const char *family,
                         const char *user_id, int64_t expires_at) {
  sqlite3_stmt *st = stmt(s, Q_REFRESH_ADD);
  ps_sqlite_bind_text(st, 1, hash);
  ps_sqlite_bind_text(st, 2, family);
  ps_sqlite_bind_text(st, 3, user_id);
  sqlite3_bind_int64(st, 4, expires_at);
  return ps_sqlite_exec_done(st);
}

/* Reads a token row: family, user id, used flag, expiry. */
static int refresh_row(user_store_t *s, ps_arena_t *a, const char *hash, const char **family,
                       const char **user_id, int *used, int64_t *expires_at) {
  sqlite3_stmt *st = stmt(s, Q_REFRESH_GET);
  ps_sqlite_bind_text(st, 1, hash);
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? PS_ENOTFOUND : ps_sqlite_err(rc);
  }
  *family = ps_sqlite_text(a, st, 0);
  *user_id = ps_sqlite_text(a, st, 1);
  *used = sqlite3_column_int(st, 2);
  *expires_at = sqlite3_column_int64(st, 3);
  sqlite3_reset(st);
  return 0;
}

static int s_refresh_use(user_store_t *s, ps_arena_t *a, const char *hash, int64_t now,
                         const char **user_id, const char **family) {
  sqlite3_stmt *st = stmt(s, Q_REFRESH_USE);
  ps_sqlite_bind_text(st, 1, hash);
  sqlite3_bind_int64(st, 2, now);
  int rc = ps_sqlite_exec_done(st);
  if (rc) return rc;
  int won = changes(s) == 1;
  int used = 0;
  int64_t expires_at = 0;
  rc = refresh_row(s, a, hash, family, user_id, &used, &expires_at);
  if (rc) return rc;
  if (won) return 0;
  return used ? PS_ECONFLICT : PS_EEXPIRED;
}

static int s_refresh_family(user_store_t *s, ps_arena_t *a, const char *hash,
                            const char **family, const char **user_id) {
  int used = 0;
  int64_t expires_at = 0;
  return refresh_row(s, a, hash, family, user_id, &used, &expires_at);
}

static int s_refresh_revoke_family(user_store_t *s, const char *family) {
  sqlite3_stmt *st = stmt(s, Q_REFRESH_REVOKE_FAMILY);
  ps_sqlite_bind_text(st, 1, family);
  return ps_sqlite_exec_done(st);
}

static int s_refresh_revoke_user(user_store_t *s, const char *user_id) {
  sqlite3_stmt *st = stmt(s, Q_REFRESH_REVOKE_USER);
  ps_sqlite_bind_text(st, 1, user_id);
  return ps_sqlite_exec_done(st);
}

static int s_reset_add(user_store_t *s, const char *hash, const char *user_id, int64_t expires_at) {
  sqlite3_stmt *st = stmt(s, Q_RESET_ADD);
  ps_sqlite_bind_text(st, 1, hash);
  ps_sqlite_bind_text(st, 2, user_id);
  sqlite3_bind_int64(st, 3, expires_at);
  return ps_sqlite_exec_done(st);
}

static int s_reset_consume(user_store_t *s, ps_arena_t *a, const char *hash, int64_t now,
                           const char **user_id) {
  sqlite3_stmt *st = stmt(s, Q_RESET_USE);
  ps_sqlite_bind_text(st, 1, hash);
  sqlite3_bind_int64(st, 2, now);
  int rc = ps_sqlite_exec_done(st);
  if (rc) return rc;
  int won = changes(s) == 1;
  st = stmt(s, Q_RESET_GET);
  ps_sqlite_bind_text(st, 1, hash);
  rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? PS_ENOTFOUND : ps_sqlite_err(rc);
  }
  *user_id = ps_sqlite_text(a, st, 0);
  int used = sqlite3_column_int(st, 1);
  sqlite3_reset(st);
  if (won) return 0;
  return used ? PS_ENOTFOUND : PS_EEXPIRED; /* a used token is as good as unknown */
}

static int s_outbox_add(user_store_t *s, const char *type, const char *payload, int64_t now) {
  sqlite3_stmt *st = stmt(s, Q_OUTBOX);
  ps_sqlite_bind_text(st, 1, type);
  ps_sqlite_bind_text(st, 2, payload);
  sqlite3_bind_int64(st, 3, now);
  return ps_sqlite_exec_done(st);
}

static int s_ping(user_store_t *s) {
  sqlite3_stmt *st = stmt(s, Q_PING);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_ROW ? 0 : PS_EUNAVAIL;
}

static void s_close(user_store_t *s) {
  sqlite_store_t *ss = (sqlite_store_t *)s;
  ps_sqlite_finalize_all(ss->st, Q__COUNT);
  sqlite3_close_v2(ss->db);
  ps_free(ss);
}

static const user_store_ops_t sqlite_ops = {
    .create = s_create,
    .get_by_id = s_get_by_id,
    .get_by_email = s_get_by_email,
    .update_profile = s_update_profile,
    .update_settings = s_update_settings,
    .update_password = s_update_password,
    .set_role = s_set_role,
    .refresh_add = s_refresh_add,
    .refresh_use = s_refresh_use,
    .refresh_revoke_family = s_refresh_revoke_family,
    .refresh_revoke_user = s_refresh_revoke_user,
    .refresh_family = s_refresh_family,
    .reset_add = s_reset_add,
    .reset_consume = s_reset_consume,
    .outbox_add = s_outbox_add,
    .ping = s_ping,
    .close = s_close,
};

int user_store_sqlite_open(const char *path, user_store_t **out) {
  sqlite_store_t *ss = ps_calloc(1, sizeof(*ss));
  ss->base.ops = &sqlite_ops;
  if (ps_sqlite_open(path, schema, &ss->db)) {
    ps_free(ss);
    return PS_ESTORE;
  }
  if (ps_sqlite_prepare_all(ss->db, sql, Q__COUNT, ss->st)) {
    s_close(&ss->base);
    return PS_ESTORE;
  }
  *out = &ss->base;
  return 0;
}
