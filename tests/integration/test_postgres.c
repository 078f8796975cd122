/* test_postgres.c - smoke test of the PostgreSQL engine that scripts/engines starts: libpq
 * connects with the URL from POLYSHOP_TEST_POSTGRES_URL, writes rows with parameters, reads them
 * back, sees a unique-constraint violation as SQLSTATE 23505, and rolls back a transaction. */
#include "itest.h"

#include <libpq-fe.h>

static PGconn *connect_or_fail(void) {
  const char *url = itest_env("POLYSHOP_TEST_POSTGRES_URL");
  PGconn *c = PQconnectdb(url);
  if (PQstatus(c) != CONNECTION_OK) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
    PQfinish(c);
    fail_msg("cannot connect to %s: %s", url, msg);
  }
  return c;
}

/* Runs sql (no parameters) and fails unless it returns want. */
static void exec_ok(PGconn *c, const char *sql, ExecStatusType want) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType got = PQresultStatus(r);
  if (got != want) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
    PQclear(r);
    fail_msg("`%s` returned %s: %s", sql, PQresStatus(got), msg);
  }
  PQclear(r);
}

static void test_write_read_unique(void **state) {
  (void)state;
  PGconn *c = connect_or_fail();
  char table[64], sql[512];
  itest_unique(table, sizeof(table), "itest_pg_");

  snprintf(sql, sizeof(sql),
           "CREATE TABLE %s (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, "
           "balance_cents bigint NOT NULL, created timestamptz NOT NULL DEFAULT now())",
           table);
  exec_ok(c, sql, PGRES_COMMAND_OK);

  snprintf(sql, sizeof(sql), "INSERT INTO %s (email, balance_cents) VALUES ($1, $2) RETURNING id",
           table);
  const char *params[2] = {"ada@example.com", "12345"};
  PGresult *r = PQexecParams(c, sql, 2, NULL, params, NULL, NULL, 0);
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  assert_int_equal(PQntuples(r), 1);
  long long id = atoll(PQgetvalue(r, 0, 0));
  assert_true(id > 0);
  PQclear(r);

  snprintf(sql, sizeof(sql), "SELECT email, balance_cents FROM %s WHERE id = $1", table);
  char idbuf[32];
  snprintf(idbuf, sizeof(idbuf), "%lld", id);
  const char *idp[1] = {idbuf};
  r = PQexecParams(c, sql, 1, NULL, idp, NULL, NULL, 0);
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  assert_int_equal(PQntuples(r), 1);
  assert_string_equal(PQgetvalue(r, 0, 0), "ada@example.com");
  assert_string_equal(PQgetvalue(r, 0, 1), "12345");
  PQclear(r);

  /* Same email again: the unique index must refuse it with SQLSTATE 23505. */
  snprintf(sql, sizeof(sql), "INSERT INTO %s (email, balance_cents) VALUES ($1, $2)", table);
  r = PQexecParams(c, sql, 2, NULL, params, NULL, NULL, 0);
  assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
  const char *sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  assert_non_null(sqlstate);
  assert_string_equal(sqlstate, "23505");
  PQclear(r);

  /* A rolled-back update leaves the row as it was. */
  exec_ok(c, "BEGIN", PGRES_COMMAND_OK);
  snprintf(sql, sizeof(sql), "UPDATE %s SET balance_cents = 0", table);
  exec_ok(c, sql, PGRES_COMMAND_OK);
  exec_ok(c, "ROLLBACK", PGRES_COMMAND_OK);
  snprintf(sql, sizeof(sql), "SELECT sum(balance_cents) FROM %s", table);
  r = PQexec(c, sql);
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  assert_string_equal(PQgetvalue(r, 0, 0), "12345");
  PQclear(r);

  snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
  exec_ok(c, sql, PGRES_COMMAND_OK);
  PQfinish(c);
}

static void test_server_version(void **state) {
  (void)state;
  PGconn *c = connect_or_fail();
  int v = PQserverVersion(c);
  PQfinish(c);
  if (v / 10000 != 15) fail_msg("expected PostgreSQL 15, server reports %d", v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_write_read_unique),
      cmocka_unit_test(test_server_version),
  };
  return cmocka_run_group_tests_name("integration.postgres", tests, NULL, NULL);
}
