/* test_sqlite_checkpoint.c - ps_sqlite_open's background WAL checkpointer: commits leave the
 * WAL to it (a commit never copies pages back itself), it copies them into the database
 * file soon after the WAL passes its threshold, and it stops with the last connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "polyshop/sqlite.h"

static char dir[] = "/tmp/polyshop-ckpt-XXXXXX";
static char path[256], wal[272];

static long long file_size(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

static int setup(void **state) {
  (void)state;
  if (!mkdtemp(dir)) return -1;
  snprintf(path, sizeof(path), "%s/t.db", dir);
  snprintf(wal, sizeof(wal), "%s-wal", path);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  unlink(wal);
  char shm[272];
  snprintf(shm, sizeof(shm), "%s-shm", path);
  unlink(shm);
  unlink(path);
  rmdir(dir);
  return 0;
}

/* Writes n transactions of one 6 KiB row each (two WAL pages or more per commit). */
static void write_rows(sqlite3 *db, int n) {
  sqlite3_stmt *st = ps_sqlite_prepare(db, "INSERT INTO t(v) VALUES(zeroblob(6144))");
  assert_non_null(st);
  for (int i = 0; i < n; i++) assert_int_equal(ps_sqlite_exec_done(st), 0);
  sqlite3_finalize(st);
}

static void test_commits_leave_checkpoints_to_the_thread(void **state) {
  (void)state;
  sqlite3 *a, *b;
  assert_int_equal(ps_sqlite_open(path, "CREATE TABLE IF NOT EXISTS t(v BLOB);", &a), 0);
  assert_int_equal(ps_sqlite_open(path, NULL, &b), 0);
  long long runs = ps_sqlite_checkpoints();
  long long db0 = file_size(path);

  /* Below the threshold nothing wakes the thread early: the WAL holds the pages and the
   * database file has not grown (SQLite's own autocheckpoint is off). */
  write_rows(a, 50);
  assert_int_equal(file_size(path), db0);
  assert_true(file_size(wal) > 50 * 6144);

  /* Past it, the pages reach the database file without another commit. */
  write_rows(b, PS_SQLITE_CKPT_FRAMES / 2);
  long long want = db0 + (long long)(PS_SQLITE_CKPT_FRAMES / 2) * 6144;
  for (int i = 0; i < 500 && file_size(path) < want; i++) usleep(10000);
  assert_true(file_size(path) >= want);
  assert_true(ps_sqlite_checkpoints() > runs);

  /* One connection closed: the other still has its checkpointer. */
  sqlite3_close_v2(a);
  runs = ps_sqlite_checkpoints();
  write_rows(b, PS_SQLITE_CKPT_FRAMES / 2 + 10);
  for (int i = 0; i < 500 && ps_sqlite_checkpoints() == runs; i++) usleep(10000);
  assert_true(ps_sqlite_checkpoints() > runs);

  /* The last close stops the thread; the database keeps every row. */
  sqlite3_close_v2(b);
  assert_int_equal(ps_sqlite_open(path, NULL, &a), 0);
  sqlite3_stmt *st = ps_sqlite_prepare(a, "SELECT count(*) FROM t");
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 50 + PS_SQLITE_CKPT_FRAMES + 10);
  sqlite3_finalize(st);
  sqlite3_close_v2(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_commits_leave_checkpoints_to_the_thread),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
