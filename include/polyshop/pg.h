/* pg.h - what every PostgreSQL store adapter shares: one connection per event-loop thread
 * with its statements prepared once (and again after a reconnect), parameters as text, and
 * SQLSTATEs mapped to PS_E* codes. */
#ifndef POLYSHOP_PG_H
#define POLYSHOP_PG_H
#include <libpq-fe.h>
#include <stdint.h>

#include "polyshop/arena.h"

typedef struct {
  PGconn *conn;
  char *schema;             /* search_path of this store's tables (owned) */
  const char *label;        /* "order store": log lines */
  const char *stmt_prefix;  /* "ord": statements are named <prefix>_q<i> */
  const char *const *sql;   /* the store's statements, prepared on every (re)connection */
  int nsql;
  int prepared;             /* statements prepared on the current connection */
  int in_tx;                /* inside BEGIN ... COMMIT: no silent reconnect */
} ps_pg_t;

enum { PS_PG_MAX_PARAMS = 24 };

/* Parameters of one statement: text values (NULL for SQL NULL), with room for integers. */
typedef struct {
  const char *v[PS_PG_MAX_PARAMS];
  char num[PS_PG_MAX_PARAMS][24];
  int n;
} ps_pg_params_t;

void ps_pg_param_text(ps_pg_params_t *p, const char *s);
void ps_pg_param_int(ps_pg_params_t *p, int64_t x);

/* SQLSTATE to PS_E*: unique violation -> PS_EEXISTS; serialization failure or deadlock ->
 * PS_ECONFLICT (retry the transaction); connection trouble, shutdown -> PS_EUNAVAIL; else
 * PS_ESTORE. */
int ps_pg_err(const PGresult *r, const PGconn *c);

/* Returns 1 when name can be a schema: 1 to 48 of [a-z0-9_], not starting with a digit (it is
 * put into SQL text, so nothing else is allowed). */
int ps_pg_schema_ok(const char *name);

/* Connects pg (fields label, stmt_prefix, sql and nsql set by the caller) to url with a 3 s
 * connect timeout unless the URL sets one, creates the store's tables by running ddl_fmt
 * (printf format whose %1$s is the schema name; NULL: none) under an advisory lock named
 * lock_name so that replicas starting together do it once, and prepares the statements.
 * lazy: an unreachable database is not an error (the first call reconnects) and the tables
 * are assumed to exist. Returns 0, PS_ECONFIG (bad schema name), PS_EUNAVAIL or PS_ESTORE;
 * on failure pg holds nothing. */
int ps_pg_open(ps_pg_t *pg, const char *url, const char *schema, const char *ddl_fmt,
               const char *lock_name, int lazy);
void ps_pg_close(ps_pg_t *pg);

/* Reconnects (outside a transaction) and prepares the statements when needed. */
int ps_pg_ensure(ps_pg_t *pg);

/* Runs prepared statement q. *out gets the result (the caller PQclears it) when out is not
 * NULL. Unique violations are returned without a log line; other failures are logged. */
int ps_pg_run(ps_pg_t *pg, int q, const ps_pg_params_t *p, PGresult **out);

/* Runs a plain command (BEGIN, COMMIT, ...). */
int ps_pg_exec(ps_pg_t *pg, const char *cmd);

/* Rows touched by the command of r. */
int ps_pg_affected(PGresult *r);

/* Column values: a copy in the arena ("" or NULL for SQL NULL), or an integer (0 for NULL). */
char *ps_pg_text(ps_arena_t *a, PGresult *r, int row, int col);
const char *ps_pg_text_or_null(ps_arena_t *a, PGresult *r, int row, int col);
int64_t ps_pg_int(PGresult *r, int row, int col);

#endif
