/* sqlite.h - what every embedded (SQLite) store adapter shares: opening a connection with
 * the same settings, parsing "sqlite://" URLs and mapping SQLite errors to PS_E* codes. */
#ifndef POLYSHOP_SQLITE_H
#define POLYSHOP_SQLITE_H
#include <sqlite3.h>

#include "polyshop/arena.h"

/* Returns the file path of a "sqlite:///abs/path.db" or "sqlite://rel/path.db" URL (pointing
 * into url), or NULL when url is not a sqlite URL. */
const char *ps_sqlite_url_path(const char *url);

/* Opens path (creating it and its parent folder) in WAL mode with a 5 s busy timeout
 * (polling every 20-100 us, not SQLite's sleeps of milliseconds),
 * foreign keys on and the file memory-mapped for reads, then runs schema_sql (may be NULL).
 * Its WAL checkpoints run on a background thread shared by the process's connections to
 * that file (see sqlite.c), never inside a commit. The caller owns *out and closes it with
 * sqlite3_close_v2 (the last close of a file stops its checkpointer). Returns 0 or
 * PS_ESTORE (the error is logged). */
int ps_sqlite_open(const char *path, const char *schema_sql, sqlite3 **out);

/* WAL pages past which a commit wakes the checkpointer. */
#define PS_SQLITE_CKPT_FRAMES 1000

/* Checkpoints that copied pages, since the process started (for tests and metrics). */
long long ps_sqlite_checkpoints(void);

/* Maps a SQLite result code: SQLITE_CONSTRAINT -> PS_EEXISTS, SQLITE_BUSY/LOCKED ->
 * PS_EUNAVAIL, SQLITE_DONE/OK/ROW -> 0, anything else -> PS_ESTORE. */
int ps_sqlite_err(int rc);

/* Prepares sql for the life of the connection (finalize it before closing), or returns NULL
 * after logging the error (a bug in our SQL). */
sqlite3_stmt *ps_sqlite_prepare(sqlite3 *db, const char *sql);

/* Prepares n statements for the life of the connection into st[0..n-1]; returns 0, or
 * PS_ESTORE after finalizing those already prepared. */
int ps_sqlite_prepare_all(sqlite3 *db, const char *const *sql, int n, sqlite3_stmt **st);
void ps_sqlite_finalize_all(sqlite3_stmt **st, int n);

/* Resets a prepared statement and clears its bindings; returns it, ready to bind. */
sqlite3_stmt *ps_sqlite_fresh(sqlite3_stmt *st);

/* Binds text that stays valid until the statement runs; NULL binds SQL NULL. */
void ps_sqlite_bind_text(sqlite3_stmt *st, int i, const char *v);

/* Runs a statement that returns no rows, then resets it. Returns 0 or a PS_E* code (see
 * ps_sqlite_err); failures other than a unique violation are logged with the SQL. */
int ps_sqlite_exec_done(sqlite3_stmt *st);

/* Text column i as a copy in the arena, or NULL for SQL NULL. */
const char *ps_sqlite_text_or_null(ps_arena_t *a, sqlite3_stmt *stmt, int i);

/* Text column i of stmt as a copy in the arena ("" for NULL). */
char *ps_sqlite_text(ps_arena_t *a, sqlite3_stmt *stmt, int i);
#endif
