/* sqlite.c - shared plumbing of the embedded store adapters (see sqlite.h), and the
 * background WAL checkpointer every connection opened here relies on. */
#include "polyshop/sqlite.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "polyshop/alloc.h"
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

/* ---- background checkpoints ----------------------------------------------------------
 * SQLite's default copies the WAL back into the database inside the commit that takes the
 * WAL past 1000 pages: that one request pays for the copy and two fsyncs, milliseconds that
 * become the p99 of every write route (and 10% of the order service's CPU ran there). Here
 * connections run with wal_autocheckpoint off; a WAL hook wakes one checkpointer thread per
 * database file (and process) once the WAL passes PS_SQLITE_CKPT_FRAMES, and the thread
 * also checkpoints once a second. Checkpoints are PASSIVE: they never block a reader or
 * the writer. The thread lives while a connection opened by ps_sqlite_open is open; the
 * last one to close (seen through SQLITE_TRACE_CLOSE) stops and joins it, and its own
 * connection, closing last, checkpoints what is left. */

#define CKPT_IDLE_MS 1000 /* checkpoint at least this often while frames wait */
#define CKPT_GAP_MS 20    /* and at most once per gap, so a busy WAL is copied in batches */
#define CKPT_RESTART_FRAMES (8 * PS_SQLITE_CKPT_FRAMES) /* ~32 MiB of WAL: start it over */

typedef struct ckpt {
  struct ckpt *next;
  char *path;
  int refs;        /* open connections of this file, under ckpt_mu */
  int stop;        /* under ckpt_mu */
  atomic_int due;  /* the WAL passed the threshold since the last checkpoint */
  pthread_cond_t wake;
  pthread_t tid;
} ckpt_t;

static pthread_mutex_t ckpt_mu = PTHREAD_MUTEX_INITIALIZER;
static ckpt_t *ckpts;
static atomic_llong ckpt_runs;

long long ps_sqlite_checkpoints(void) { return atomic_load(&ckpt_runs); }

static void deadline_in(struct timespec *ts, long ms) {
  clock_gettime(CLOCK_REALTIME, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

/* SQLite's own busy handler (sqlite3_busy_timeout) sleeps 1, 2, 5, 10, 15, 20, 25 ... ms
 * between tries. The locks here are held by another thread's transaction (tens of
 * microseconds) or by a checkpoint's last copy and sync (a millisecond or two), so a writer
 * that met one slept many times longer than it waited: tail latency of every write route.
 * This one tries again every 20 us for the first half millisecond, then every 100 us, and
 * gives up (SQLITE_BUSY) after about max_ms. */
static int busy_retry(void *max_ms, int tries) {
  long limit = (long)(intptr_t)max_ms;
  long waited_us = tries < 25 ? tries * 20L : 500L + (tries - 25) * 100L;
  if (waited_us >= limit * 1000L) return 0;
  struct timespec ts = {0, tries < 25 ? 20000L : 100000L};
  nanosleep(&ts, NULL);
  return 1;
}

static void *ckpt_main(void *arg) {
  ckpt_t *e = arg;
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(e->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
    ps_log_error("sqlite: the checkpointer cannot open %s: %s", e->path,
                 db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close_v2(db);
    db = NULL;
  } else if (sqlite3_busy_handler(db, busy_retry, (void *)(intptr_t)200),
             sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK) {
    /* (a connection only knows the file is in WAL mode once it has read it: until then a
     * checkpoint does nothing) */
    ps_log_error("sqlite: the checkpointer cannot read %s: %s", e->path, sqlite3_errmsg(db));
  }
  struct timespec ts;
  pthread_mutex_lock(&ckpt_mu);
  while (!e->stop) {
    deadline_in(&ts, CKPT_IDLE_MS);
    while (!e->stop && !atomic_load(&e->due) &&
           pthread_cond_timedwait(&e->wake, &ckpt_mu, &ts) != ETIMEDOUT) {
    }
    if (e->stop) break;
    atomic_store(&e->due, 0);
    pthread_mutex_unlock(&ckpt_mu);
    int frames = 0, copied = 0;
    if (db && sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, &copied) == SQLITE_OK &&
        frames > 0)
      atomic_fetch_add(&ckpt_runs, 1);
    /* The WAL starts over only when a writer finds every frame copied back, which under
     * steady writes never happens: new frames land while a PASSIVE checkpoint copies.
     * Past CKPT_RESTART_FRAMES a RESTART checkpoint holds writers back (through their busy
     * timeout) while it copies the few frames the PASSIVE one left and syncs, so the next
     * commit writes from the WAL's start again. */
    if (db && frames >= CKPT_RESTART_FRAMES)
      sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
    pthread_mutex_lock(&ckpt_mu);
    deadline_in(&ts, CKPT_GAP_MS);
    while (!e->stop && pthread_cond_timedwait(&e->wake, &ckpt_mu, &ts) != ETIMEDOUT) {
    }
  }
  pthread_mutex_unlock(&ckpt_mu);
  sqlite3_close_v2(db);
  return NULL;
}

static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames) {
  (void)db;
  (void)name;
  ckpt_t *e = arg;
  if (frames >= PS_SQLITE_CKPT_FRAMES && !atomic_exchange(&e->due, 1)) {
    pthread_mutex_lock(&ckpt_mu);
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&ckpt_mu);
  }
  return SQLITE_OK;
}

static int on_close(unsigned type, void *arg, void *p, void *x) {
  (void)p;
  (void)x;
  if (type != SQLITE_TRACE_CLOSE) return 0;
  ckpt_t *e = arg;
  pthread_mutex_lock(&ckpt_mu);
  if (--e->refs > 0) {
    pthread_mutex_unlock(&ckpt_mu);
    return 0;
  }
  for (ckpt_t **pp = &ckpts; *pp; pp = &(*pp)->next)
    if (*pp == e) {
      *pp = e->next;
      break;
    }
  e->stop = 1;
  pthread_cond_signal(&e->wake);
  pthread_mutex_unlock(&ckpt_mu);
  pthread_join(e->tid, NULL);
  pthread_cond_destroy(&e->wake);
  ps_free(e->path);
  ps_free(e);
  return 0;
}

/* The checkpointer of path, started on first use, with one more reference. */
static ckpt_t *ckpt_acquire(const char *path) {
  pthread_mutex_lock(&ckpt_mu);
  ckpt_t *e = ckpts;
  while (e && strcmp(e->path, path) != 0) e = e->next;
  if (e) {
    e->refs++;
    pthread_mutex_unlock(&ckpt_mu);
    return e;
  }
  e = ps_calloc(1, sizeof(*e));
  e->path = ps_strdup(path);
  e->refs = 1;
  pthread_cond_init(&e->wake, NULL);
  if (pthread_create(&e->tid, NULL, ckpt_main, e) != 0) {
    pthread_mutex_unlock(&ckpt_mu);
    pthread_cond_destroy(&e->wake);
    ps_free(e->path);
    ps_free(e);
    return NULL;
  }
  e->next = ckpts;
  ckpts = e;
  pthread_mutex_unlock(&ckpt_mu);
  return e;
}

/* Hands the connection's checkpoints to the background thread (file databases in WAL
 * mode only); without one, SQLite's own automatic checkpoints stay on. */
static void use_checkpointer(sqlite3 *db, const char *path) {
  sqlite3_stmt *st = NULL;
  int wal = 0;
  if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    wal = strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
  sqlite3_finalize(st);
  ckpt_t *e = wal ? ckpt_acquire(path) : NULL;
  if (!e) return;
  sqlite3_wal_autocheckpoint(db, 0);
  sqlite3_wal_hook(db, wal_hook, e);
  sqlite3_trace_v2(db, SQLITE_TRACE_CLOSE, on_close, e);
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
  sqlite3_busy_handler(db, busy_retry, (void *)(intptr_t)5000);
  char *err = NULL;
  /* mmap: pages of the database file are read in place instead of copied by pread (a
   * connection re-reads its pages whenever another one has written). The WAL is truncated
   * back to 64 MiB when it restarts. */
  rc = sqlite3_exec(db,
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                    "PRAGMA mmap_size=268435456; PRAGMA journal_size_limit=67108864;",
                    NULL, NULL, &err);
  if (rc == SQLITE_OK && schema_sql) rc = sqlite3_exec(db, schema_sql, NULL, NULL, &err);
  if (rc != SQLITE_OK) {
    ps_log_error("sqlite: setting up %s failed: %s", path, err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    sqlite3_close_v2(db);
    return PS_ESTORE;
  }
  use_checkpointer(db, path);
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
