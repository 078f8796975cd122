/* sqlite.c - shared plumbing of the embedded store adapters (see sqlite.h). */
#include "polyshop/sqlite.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "polyshop/error.h"
#include "polyshop/log.h"

const char *ps_sqlite_url_path(const char *url) {
  if (!url || strncmp(url, "sqlite://", 9) != 0 || !url[9]) return NULL;
  return url + 9; /* "sqlite:///abs" keeps its leading slash */
}

static void make_parent_dir(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path || (size_t)(slash - path) >= sizeof(dir)) return;
  memcpy(dir, path, (size_t)(slash - path));
  dir[slash - path] = '\0';
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    mkdir(dir, 0755);
    *p = '/';
  }
  mkdir(dir, 0755);
}

int ps_sqlite_open(const char *path, const char *schema_sql, sqlite3 **out) {
  make_parent_dir(path);
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    ps_log_error("sqlite: cannot open %s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close_v2(db);
    return PS_ESTORE;
  }
  sqlite3_busy_timeout(db, 5000);
  char *err = NULL;
  rc = sqlite3_exec(db,
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
                    NULL, NULL, &err);
  if (rc == SQLITE_OK && schema_sql) rc = sqlite3_exec(db, schema_sql, NULL, NULL, &err);
  if (rc != SQLITE_OK) {
    ps_log_error("sqlite: setting up %s failed: %s", path, err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    sqlite3_close_v2(db);
    return PS_ESTORE;
  }
  *out = db;
  return 0;
}

int ps_sqlite_err(int rc) {
  switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return 0;
    case SQLITE_CONSTRAINT: return PS_EEXISTS;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return PS_EUNAVAIL;
    default: return PS_ESTORE;
  }
}

sqlite3_stmt *ps_sqlite_prepare(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
    ps_log_error("sqlite: cannot prepare \"%.80s\": %s", sql, sqlite3_errmsg(db));
    return NULL;
  }
  return st;
}

char *ps_sqlite_text(ps_arena_t *a, sqlite3_stmt *stmt, int i) {
  const unsigned char *t = sqlite3_column_text(stmt, i);
  return ps_arena_strndup(a, t ? (const char *)t : "", t ? (size_t)sqlite3_column_bytes(stmt, i) : 0);
}

int ps_sqlite_prepare_all(sqlite3 *db, const char *const *sql, int n, sqlite3_stmt **st) {
  for (int i = 0; i < n; i++) {
    if (!(st[i] = ps_sqlite_prepare(db, sql[i]))) {
      ps_sqlite_finalize_all(st, i);
      return PS_ESTORE;
    }
  }
  return 0;
}

void ps_sqlite_finalize_all(sqlite3_stmt **st, int n) {
  for (int i = 0; i < n; i++) {
    sqlite3_finalize(st[i]); /* NULL is a no-op */
    st[i] = NULL;
  }
}

sqlite3_stmt *ps_sqlite_fresh(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return st;
}

void ps_sqlite_bind_text(sqlite3_stmt *st, int i, const char *v) {
  if (v)
    sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
}

int ps_sqlite_exec_done(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  int err = rc == SQLITE_DONE ? 0 : ps_sqlite_err(rc);
  if (err && err != PS_EEXISTS)
    ps_log_warn("sqlite: \"%.80s\": %s", sqlite3_sql(st), sqlite3_errmsg(sqlite3_db_handle(st)));
  sqlite3_reset(st);
  return err;
}

const char *ps_sqlite_text_or_null(ps_arena_t *a, sqlite3_stmt *stmt, int i) {
  return sqlite3_column_type(stmt, i) == SQLITE_NULL ? NULL : ps_sqlite_text(a, stmt, i);
}
