/* sqlite.h - what every embedded (SQLite) store adapter shares: opening a connection with
 * the same settings, parsing "sqlite://" URLs and mapping SQLite errors to PS_E* codes. */
#ifndef POLYSHOP_SQLITE_H
#define POLYSHOP_SQLITE_H
#include <sqlite3.h>

#include "polyshop/arena.h"

/* Returns the file path of a "sqlite:///abs/path.db" or "sqlite://rel/path.db" URL (pointing
 * into url), or NULL when url is not a sqlite URL. */
const char *ps_sqlite_url_path(const char *url);

/* Opens path (creating it and its parent folder) in WAL mode with a 5 s busy timeout and
 * foreign keys on, then runs schema_sql (may be NULL). The caller owns *out and closes it with
 * sqlite3_close_v2. Returns 0 or PS_ESTORE (the error is logged). */
int ps_sqlite_open(const char *path, const char *schema_sql, sqlite3 **out);

/* Maps a SQLite result code: SQLITE_CONSTRAINT -> PS_EEXISTS, SQLITE_BUSY/LOCKED ->
 * PS_EUNAVAIL, SQLITE_DONE/OK/ROW -> 0, anything else -> PS_ESTORE. */
int ps_sqlite_err(int rc);

/* Prepares sql for the life of the connection (finalize it before closing), or returns NULL
 * after logging the error (a bug in our SQL). */
sqlite3_stmt *ps_sqlite_prepare(sqlite3 *db, const char *sql);

/* Text column i of stmt as a copy in the arena ("" for NULL). */
char *ps_sqlite_text(ps_arena_t *a, sqlite3_stmt *stmt, int i);
#endif
