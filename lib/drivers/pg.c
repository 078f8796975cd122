/* pg.c - shared plumbing of the PostgreSQL store adapters (see pg.h). */
#include "polyshop/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"

void ps_pg_param_text(ps_pg_params_t *p, const char *s) { p->v[p->n++] = s; }

void ps_pg_param_int(ps_pg_params_t *p, int64_t x) {
  snprintf(p->num[p->n], sizeof(p->num[p->n]), "%lld", (long long)x);
  p->v[p->n] = p->num[p->n];
  p->n++;
}

int ps_pg_err(const PGresult *r, const PGconn *c) {
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  if (PQstatus(c) != CONNECTION_OK) return PS_EUNAVAIL;
  if (!state) return PS_ESTORE;
  if (strcmp(state, "23505") == 0) return PS_EEXISTS;                      /* unique_violation */
  if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) return PS_ECONFLICT;
  if (strncmp(state, "08", 2) == 0) return PS_EUNAVAIL;                     /* connection */
  if (strcmp(state, "57P01") == 0 || strcmp(state, "57P03") == 0) return PS_EUNAVAIL;
  return PS_ESTORE;
}

static int prepare_all(ps_pg_t *pg) {
  char buf[128];
  snprintf(buf, sizeof(buf), "SET search_path TO %s", pg->schema);
  PGresult *r = PQexec(pg->conn, buf);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  if (!ok) return PS_EUNAVAIL;
  for (int i = 0; i < pg->nsql; i++) {
    snprintf(buf, sizeof(buf), "%s_q%d", pg->stmt_prefix, i);
    r = PQprepare(pg->conn, buf, pg->sql[i], 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      ps_log_error("postgres %s: cannot prepare \"%.60s\": %s", pg->label, pg->sql[i],
                   PQerrorMessage(pg->conn));
      int rc = ps_pg_err(r, pg->conn);
      PQclear(r);
      return rc;
    }
    PQclear(r);
  }
  pg->prepared = 1;
  return 0;
}

int ps_pg_ensure(ps_pg_t *pg) {
  if (PQstatus(pg->conn) == CONNECTION_OK && pg->prepared) return 0;
  if (pg->in_tx) return PS_EUNAVAIL; /* the transaction died with the connection */
  PQreset(pg->conn);
  pg->prepared = 0;
  if (PQstatus(pg->conn) != CONNECTION_OK) return PS_EUNAVAIL;
  return prepare_all(pg);
}

int ps_pg_run(ps_pg_t *pg, int q, const ps_pg_params_t *p, PGresult **out) {
  int rc = ps_pg_ensure(pg);
  if (rc) return rc;
  char name[32];
  snprintf(name, sizeof(name), "%s_q%d", pg->stmt_prefix, q);
  PGresult *r = PQexecPrepared(pg->conn, name, p ? p->n : 0, p ? p->v : NULL, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    rc = ps_pg_err(r, pg->conn);
    if (rc != PS_EEXISTS) ps_log_warn("postgres %s: %s", pg->label, PQerrorMessage(pg->conn));
    PQclear(r);
    return rc;
  }
  if (out)
    *out = r;
  else
    PQclear(r);
  return 0;
}

int ps_pg_exec(ps_pg_t *pg, const char *cmd) {
  PGresult *r = PQexec(pg->conn, cmd);
  int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : ps_pg_err(r, pg->conn);
  PQclear(r);
  return rc;
}

int ps_pg_affected(PGresult *r) { return atoi(PQcmdTuples(r)); }

char *ps_pg_text(ps_arena_t *a, PGresult *r, int row, int col) {
  return ps_arena_strdup(a, PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

const char *ps_pg_text_or_null(ps_arena_t *a, PGresult *r, int row, int col) {
  return PQgetisnull(r, row, col) ? NULL : ps_arena_strdup(a, PQgetvalue(r, row, col));
}

int64_t ps_pg_int(PGresult *r, int row, int col) {
  return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

int ps_pg_schema_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 48 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return 0;
  return 1;
}

/* "relation already exists, skipping" and the like are not worth a log line. */
static void quiet_notice(void *arg, const char *message) {}

static int create_tables(ps_pg_t *pg, const char *ddl_fmt, const char *lock_name) {
  size_t n = strlen(ddl_fmt) + 4 * strlen(pg->schema) + strlen(lock_name) + 128;
  char *ddl = ps_malloc(n);
  int used = snprintf(ddl, n, "BEGIN; SELECT pg_advisory_xact_lock(hashtext('%s'));", lock_name);
  used += snprintf(ddl + used, n - (size_t)used, ddl_fmt, pg->schema);
  snprintf(ddl + used, n - (size_t)used, "COMMIT;");
  PGresult *r = PQexec(pg->conn, ddl);
  ps_free(ddl);
  int rc = 0;
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    ps_log_error("postgres %s: creating the tables failed: %s", pg->label, PQerrorMessage(pg->conn));
    rc = ps_pg_err(r, pg->conn) == PS_EUNAVAIL ? PS_EUNAVAIL : PS_ESTORE;
  }
  PQclear(r);
  return rc;
}

int ps_pg_open(ps_pg_t *pg, const char *url, const char *schema, const char *ddl_fmt,
               const char *lock_name, int lazy) {
  if (!ps_pg_schema_ok(schema)) return PS_ECONFIG;
  /* A connect timeout unless the URL sets one (the URL's values come later and win): a
   * reconnect runs on an event-loop thread and must not hang it on a black-holed host. */
  const char *const keys[] = {"connect_timeout", "dbname", NULL};
  const char *const values[] = {"3", url, NULL};
  pg->conn = PQconnectdbParams(keys, values, 1);
  if (!pg->conn) return PS_ENOMEM;
  PQsetNoticeProcessor(pg->conn, quiet_notice, NULL);
  pg->schema = ps_strdup(schema);
  pg->prepared = pg->in_tx = 0;
  int rc = 0;
  if (PQstatus(pg->conn) != CONNECTION_OK) {
    /* The message may name the host, never the password (libpq leaves it out). */
    ps_log_error("postgres %s: cannot connect: %s", pg->label, PQerrorMessage(pg->conn));
    rc = PS_EUNAVAIL;
  } else if (!lazy && ddl_fmt) {
    rc = create_tables(pg, ddl_fmt, lock_name);
  }
  if (rc == 0) rc = prepare_all(pg);
  if (rc == PS_EUNAVAIL && lazy) rc = 0; /* ps_pg_ensure connects again at the first call */
  if (rc) ps_pg_close(pg);
  return rc;
}

void ps_pg_close(ps_pg_t *pg) {
  PQfinish(pg->conn);
  pg->conn = NULL;
  ps_free(pg->schema);
  pg->schema = NULL;
}
