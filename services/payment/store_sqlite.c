/* store_sqlite.c - the payment store on an embedded SQLite file (see store.h). One connection
 * per event-loop thread; statements are prepared once per connection. Write transactions
 * are BEGIN IMMEDIATE, so the read-check-write steps of ledger.c are serialised across
 * threads and processes by SQLite's write lock.
 *
 * Threads of one process also queue on a mutex before BEGIN IMMEDIATE: SQLite's own busy
 * handler waits by sleeping in steps of milliseconds, which at a few thousand writes a second
 * turned into a p99 of 80-150 ms; a mutex hands the lock over in microseconds. (Other
 * processes on the same file still meet the busy handler.) */
#include <pthread.h>
#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/sqlite.h"
#include "store.h"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS payments ("
    " id TEXT PRIMARY KEY, order_id TEXT NOT NULL, user_id TEXT NOT NULL,"
    " amount INTEGER NOT NULL CHECK (amount > 0), currency TEXT NOT NULL,"
    " status TEXT NOT NULL, provider TEXT NOT NULL, provider_ref TEXT NOT NULL DEFAULT '',"
    " captured INTEGER NOT NULL DEFAULT 0, refunded INTEGER NOT NULL DEFAULT 0,"
    " failure_code TEXT NOT NULL DEFAULT '', card_brand TEXT NOT NULL DEFAULT '',"
    " card_last4 TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    " CHECK (refunded >= 0 AND refunded <= captured AND captured <= amount));"
    "CREATE INDEX IF NOT EXISTS payments_user ON payments(user_id, created_at DESC, id DESC);"
    "CREATE INDEX IF NOT EXISTS payments_order ON payments(order_id);"
    "CREATE INDEX IF NOT EXISTS payments_ref ON payments(provider_ref) WHERE provider_ref <> '';"
    "CREATE TABLE IF NOT EXISTS refunds ("
    " id TEXT PRIMARY KEY, payment_id TEXT NOT NULL REFERENCES payments(id),"
    " amount INTEGER NOT NULL CHECK (amount > 0), status TEXT NOT NULL,"
    " provider_ref TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS refunds_payment ON refunds(payment_id, created_at);"
    "CREATE TABLE IF NOT EXISTS idempotency ("
    " scope TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,"
    " resource_id TEXT NOT NULL, state INTEGER NOT NULL, claimed_at INTEGER NOT NULL,"
    " response_status INTEGER NOT NULL DEFAULT 0, response_type TEXT NOT NULL DEFAULT '',"
    " response_body TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL,"
    " PRIMARY KEY (scope, key));"
    "CREATE TABLE IF NOT EXISTS webhook_events ("
    " id TEXT PRIMARY KEY, type TEXT NOT NULL, received_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit_log ("
    " seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, kind TEXT NOT NULL,"
    " payment_id TEXT NOT NULL, ref TEXT NOT NULL, amount INTEGER NOT NULL,"
    " currency TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);"
    /* Append-only for the application; someone with the file can drop these, which is what
     * the hash chain is for. */
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_log"
    " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_log"
    " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;";

#define PAYMENT_COLS                                                                          \
  "id,order_id,user_id,amount,currency,status,provider,provider_ref,captured,refunded,"      \
  "failure_code,card_brand,card_last4,created_at,updated_at"
#define REFUND_COLS "id,payment_id,amount,status,provider_ref,reason,created_at,updated_at"
#define IDEM_COLS                                                                             \
  "scope,key,request_hash,resource_id,state,claimed_at,response_status,response_type,"       \
  "response_body,created_at"

enum {
  Q_BEGIN_READ, Q_BEGIN_WRITE, Q_COMMIT, Q_ROLLBACK,
  Q_PAY_INSERT, Q_PAY_GET, Q_PAY_BY_REF, Q_PAY_UPDATE, Q_PAY_LIST,
  Q_REF_INSERT, Q_REF_GET, Q_REF_UPDATE, Q_REF_LIST,
  Q_IDEM_GET, Q_IDEM_INSERT, Q_IDEM_UPDATE, Q_EVENT_INSERT,
  Q_AUDIT_LAST, Q_AUDIT_INSERT, Q_AUDIT_ALL, Q_PURGE_IDEM, Q_PURGE_EVENTS, Q_PING, Q__COUNT
};

static const char *const sql[Q__COUNT] = {
    [Q_BEGIN_READ] = "BEGIN DEFERRED",
    [Q_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_PAY_INSERT] = "INSERT INTO payments(" PAYMENT_COLS ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [Q_PAY_GET] = "SELECT " PAYMENT_COLS " FROM payments WHERE id=?",
    [Q_PAY_BY_REF] = "SELECT " PAYMENT_COLS " FROM payments WHERE provider_ref=? AND provider_ref<>''",
    [Q_PAY_UPDATE] = "UPDATE payments SET status=?, provider_ref=?, captured=?, refunded=?,"
                     " failure_code=?, updated_at=? WHERE id=?",
    /* ?1 user (NULL: all), ?2 order (NULL: all), ?3/?4 cursor (NULL: first page), ?5 limit */
    [Q_PAY_LIST] = "SELECT " PAYMENT_COLS " FROM payments WHERE (?1 IS NULL OR user_id=?1)"
                   " AND (?2 IS NULL OR order_id=?2)"
                   " AND (?4 IS NULL OR created_at < ?3 OR (created_at = ?3 AND id < ?4))"
                   " ORDER BY created_at DESC, id DESC LIMIT ?5",
    [Q_REF_INSERT] = "INSERT INTO refunds(" REFUND_COLS ") VALUES(?,?,?,?,?,?,?,?)",
    [Q_REF_GET] = "SELECT " REFUND_COLS " FROM refunds WHERE id=?",
    [Q_REF_UPDATE] = "UPDATE refunds SET status=?, provider_ref=?, updated_at=? WHERE id=?",
    [Q_REF_LIST] = "SELECT " REFUND_COLS " FROM refunds WHERE payment_id=? ORDER BY created_at, rowid",
    [Q_IDEM_GET] = "SELECT " IDEM_COLS " FROM idempotency WHERE scope=? AND key=?",
    [Q_IDEM_INSERT] = "INSERT INTO idempotency(" IDEM_COLS ") VALUES(?,?,?,?,?,?,?,?,?,?)",
    [Q_IDEM_UPDATE] = "UPDATE idempotency SET state=?, claimed_at=?, resource_id=?,"
                      " response_status=?, response_type=?, response_body=? WHERE scope=? AND key=?",
    [Q_EVENT_INSERT] = "INSERT INTO webhook_events(id,type,received_at) VALUES(?,?,?)",
    [Q_AUDIT_LAST] = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
    [Q_AUDIT_INSERT] = "INSERT INTO audit_log(seq,at,kind,payment_id,ref,amount,currency,"
                       "prev_hash,hash) VALUES(?,?,?,?,?,?,?,?,?)",
    [Q_AUDIT_ALL] = "SELECT seq,at,kind,payment_id,ref,amount,currency,prev_hash,hash"
                    " FROM audit_log ORDER BY seq",
    [Q_PURGE_IDEM] = "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency"
                     " WHERE state=1 AND created_at < ? LIMIT ?)",
    [Q_PURGE_EVENTS] = "DELETE FROM webhook_events WHERE rowid IN (SELECT rowid FROM"
                       " webhook_events WHERE received_at < ? LIMIT ?)",
    [Q_PING] = "SELECT 1",
};

typedef struct {
  payment_store_t base;
  sqlite3 *db;
  sqlite3_stmt *st[Q__COUNT];
  int holds_writer; /* this connection holds writer_lock */
} sqlite_store_t;

/* One writer at a time per process (one payment database per process). */
static pthread_mutex_t writer_lock = PTHREAD_MUTEX_INITIALIZER;

static void writer_release(payment_store_t *s) {
  sqlite_store_t *ss = (sqlite_store_t *)s;
  if (ss->holds_writer) {
    ss->holds_writer = 0;
    pthread_mutex_unlock(&writer_lock);
  }
}

static sqlite3 *db_of(payment_store_t *s) { return ((sqlite_store_t *)s)->db; }

/* Returns the statement q, reset and with bindings cleared, ready to bind. */
static sqlite3_stmt *stmt(payment_store_t *s, int q) {
  return ps_sqlite_fresh(((sqlite_store_t *)s)->st[q]);
}

static int changed(payment_store_t *s, int rc) {
  return rc ? rc : sqlite3_changes(db_of(s)) ? 0 : PS_ENOTFOUND;
}

/* --- transactions ------------------------------------------------------------------------ */

static int s_begin(payment_store_t *s, int write) {
  if (write) {
    pthread_mutex_lock(&writer_lock);
    ((sqlite_store_t *)s)->holds_writer = 1;
  }
  int rc = ps_sqlite_exec_done(stmt(s, write ? Q_BEGIN_WRITE : Q_BEGIN_READ));
  if (rc) writer_release(s);
  return rc;
}

static int s_commit(payment_store_t *s) {
  int rc = ps_sqlite_exec_done(stmt(s, Q_COMMIT));
  if (rc && sqlite3_get_autocommit(db_of(s)) == 0) ps_sqlite_exec_done(stmt(s, Q_ROLLBACK));
  writer_release(s);
  return rc;
}

static void s_rollback(payment_store_t *s) {
  if (sqlite3_get_autocommit(db_of(s)) == 0) ps_sqlite_exec_done(stmt(s, Q_ROLLBACK));
  writer_release(s);
}

/* --- payments ---------------------------------------------------------------------------- */

static int s_payment_insert(payment_store_t *s, const payment_t *p) {
  sqlite3_stmt *st = stmt(s, Q_PAY_INSERT);
  ps_sqlite_bind_text(st, 1, p->id);
  ps_sqlite_bind_text(st, 2, p->order_id);
  ps_sqlite_bind_text(st, 3, p->user_id);
  sqlite3_bind_int64(st, 4, p->amount);
  ps_sqlite_bind_text(st, 5, p->currency);
  ps_sqlite_bind_text(st, 6, p->status);
  ps_sqlite_bind_text(st, 7, p->provider);
  ps_sqlite_bind_text(st, 8, p->provider_ref ? p->provider_ref : "");
  sqlite3_bind_int64(st, 9, p->captured);
  sqlite3_bind_int64(st, 10, p->refunded);
  ps_sqlite_bind_text(st, 11, p->failure_code ? p->failure_code : "");
  ps_sqlite_bind_text(st, 12, p->card_brand ? p->card_brand : "");
  ps_sqlite_bind_text(st, 13, p->card_last4 ? p->card_last4 : "");
  sqlite3_bind_int64(st, 14, p->created_at);
  sqlite3_bind_int64(st, 15, p->updated_at);
  return ps_sqlite_exec_done(st);
}

static void read_payment(sqlite3_stmt *st, ps_arena_t *a, payment_t *p) {
  p->id = ps_sqlite_text(a, st, 0);
  p->order_id = ps_sqlite_text(a, st, 1);
  p->user_id = ps_sqlite_text(a, st, 2);
  p->amount = sqlite3_column_int64(st, 3);
  p->currency = ps_sqlite_text(a, st, 4);
  p->status = ps_sqlite_text(a, st, 5);
  p->provider = ps_sqlite_text(a, st, 6);
  p->provider_ref = ps_sqlite_text(a, st, 7);
  p->captured = sqlite3_column_int64(st, 8);
  p->refunded = sqlite3_column_int64(st, 9);
  p->failure_code = ps_sqlite_text(a, st, 10);
  p->card_brand = ps_sqlite_text(a, st, 11);
  p->card_last4 = ps_sqlite_text(a, st, 12);
  p->created_at = sqlite3_column_int64(st, 13);
  p->updated_at = sqlite3_column_int64(st, 14);
}

static int one_payment(sqlite3_stmt *st, ps_arena_t *a, payment_t *out) {
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) read_payment(st, a, out);
  sqlite3_reset(st);
  return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? PS_ENOTFOUND : ps_sqlite_err(rc);
}

static int s_payment_get(payment_store_t *s, ps_arena_t *a, const char *id, int for_update,
                         payment_t *out) {
  sqlite3_stmt *st = stmt(s, Q_PAY_GET);
  ps_sqlite_bind_text(st, 1, id);
  return one_payment(st, a, out);
}

static int s_payment_get_by_ref(payment_store_t *s, ps_arena_t *a, const char *ref,
                                int for_update, payment_t *out) {
  sqlite3_stmt *st = stmt(s, Q_PAY_BY_REF);
  ps_sqlite_bind_text(st, 1, ref);
  return one_payment(st, a, out);
}

static int s_payment_update(payment_store_t *s, const payment_t *p) {
  sqlite3_stmt *st = stmt(s, Q_PAY_UPDATE);
  ps_sqlite_bind_text(st, 1, p->status);
  ps_sqlite_bind_text(st, 2, p->provider_ref ? p->provider_ref : "");
  sqlite3_bind_int64(st, 3, p->captured);
  sqlite3_bind_int64(st, 4, p->refunded);
  ps_sqlite_bind_text(st, 5, p->failure_code ? p->failure_code : "");
  sqlite3_bind_int64(st, 6, p->updated_at);
  ps_sqlite_bind_text(st, 7, p->id);
  return changed(s, ps_sqlite_exec_done(st));
}

static int s_payment_list(payment_store_t *s, ps_arena_t *a, const char *user_id,
                          const char *order_id, int64_t after_created, const char *after_id,
                          int limit, payment_t **out, int *n) {
  sqlite3_stmt *st = stmt(s, Q_PAY_LIST);
  ps_sqlite_bind_text(st, 1, user_id);
  ps_sqlite_bind_text(st, 2, order_id);
  sqlite3_bind_int64(st, 3, after_created);
  ps_sqlite_bind_text(st, 4, after_id);
  sqlite3_bind_int(st, 5, limit);
  *out = ps_arena_alloc(a, sizeof(payment_t) * (size_t)(limit > 0 ? limit : 1));
  *n = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < limit) read_payment(st, a, &(*out)[(*n)++]);
  sqlite3_reset(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : ps_sqlite_err(rc);
}

/* --- refunds ----------------------------------------------------------------------------- */

static int s_refund_insert(payment_store_t *s, const refund_t *r) {
  sqlite3_stmt *st = stmt(s, Q_REF_INSERT);
  ps_sqlite_bind_text(st, 1, r->id);
  ps_sqlite_bind_text(st, 2, r->payment_id);
  sqlite3_bind_int64(st, 3, r->amount);
  ps_sqlite_bind_text(st, 4, r->status);
  ps_sqlite_bind_text(st, 5, r->provider_ref ? r->provider_ref : "");
  ps_sqlite_bind_text(st, 6, r->reason ? r->reason : "");
  sqlite3_bind_int64(st, 7, r->created_at);
  sqlite3_bind_int64(st, 8, r->updated_at);
  return ps_sqlite_exec_done(st);
}

static void read_refund(sqlite3_stmt *st, ps_arena_t *a, refund_t *r) {
  r->id = ps_sqlite_text(a, st, 0);
  r->payment_id = ps_sqlite_text(a, st, 1);
  r->amount = sqlite3_column_int64(st, 2);
  r->status = ps_sqlite_text(a, st, 3);
  r->provider_ref = ps_sqlite_text(a, st, 4);
  r->reason = ps_sqlite_text(a, st, 5);
  r->created_at = sqlite3_column_int64(st, 6);
  r->updated_at = sqlite3_column_int64(st, 7);
}

static int s_refund_get(payment_store_t *s, ps_arena_t *a, const char *id, refund_t *out) {
  sqlite3_stmt *st = stmt(s, Q_REF_GET);
  ps_sqlite_bind_text(st, 1, id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) read_refund(st, a, out);
  sqlite3_reset(st);
  return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? PS_ENOTFOUND : ps_sqlite_err(rc);
}

static int s_refund_update(payment_store_t *s, const refund_t *r) {
  sqlite3_stmt *st = stmt(s, Q_REF_UPDATE);
  ps_sqlite_bind_text(st, 1, r->status);
  ps_sqlite_bind_text(st, 2, r->provider_ref ? r->provider_ref : "");
  sqlite3_bind_int64(st, 3, r->updated_at);
  ps_sqlite_bind_text(st, 4, r->id);
  return changed(s, ps_sqlite_exec_done(st));
}

static int s_refund_list(payment_store_t *s, ps_arena_t *a, const char *payment_id,
                         refund_t **out, int *n) {
  sqlite3_stmt *st = stmt(s, Q_REF_LIST);
  ps_sqlite_bind_text(st, 1, payment_id);
  int cap = 8, rc;
  *out = ps_arena_alloc(a, sizeof(refund_t) * (size_t)cap);
  *n = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (*n == cap) {
      refund_t *bigger = ps_arena_alloc(a, sizeof(refund_t) * (size_t)cap * 2);
      memcpy(bigger, *out, sizeof(refund_t) * (size_t)cap);
      *out = bigger;
      cap *= 2;
    }
    read_refund(st, a, &(*out)[(*n)++]);
  }
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? 0 : ps_sqlite_err(rc);
}

/* --- idempotency ------------------------------------------------------------------------- */

static int s_idem_get(payment_store_t *s, ps_arena_t *a, const char *scope, const char *key,
                      int for_update, idem_t *out) {
  sqlite3_stmt *st = stmt(s, Q_IDEM_GET);
  ps_sqlite_bind_text(st, 1, scope);
  ps_sqlite_bind_text(st, 2, key);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    out->scope = ps_sqlite_text(a, st, 0);
    out->key = ps_sqlite_text(a, st, 1);
    out->request_hash = ps_sqlite_text(a, st, 2);
    out->resource_id = ps_sqlite_text(a, st, 3);
    out->state = sqlite3_column_int(st, 4);
    out->claimed_at = sqlite3_column_int64(st, 5);
    out->response_status = sqlite3_column_int(st, 6);
    out->response_type = ps_sqlite_text(a, st, 7);
    out->response_body = ps_sqlite_text(a, st, 8);
    out->created_at = sqlite3_column_int64(st, 9);
  }
  sqlite3_reset(st);
  return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? PS_ENOTFOUND : ps_sqlite_err(rc);
}

static int s_idem_insert(payment_store_t *s, const idem_t *r) {
  sqlite3_stmt *st = stmt(s, Q_IDEM_INSERT);
  ps_sqlite_bind_text(st, 1, r->scope);
  ps_sqlite_bind_text(st, 2, r->key);
  ps_sqlite_bind_text(st, 3, r->request_hash);
  ps_sqlite_bind_text(st, 4, r->resource_id);
  sqlite3_bind_int(st, 5, r->state);
  sqlite3_bind_int64(st, 6, r->claimed_at);
  sqlite3_bind_int(st, 7, r->response_status);
  ps_sqlite_bind_text(st, 8, r->response_type ? r->response_type : "");
  ps_sqlite_bind_text(st, 9, r->response_body ? r->response_body : "");
  sqlite3_bind_int64(st, 10, r->created_at);
  return ps_sqlite_exec_done(st);
}

static int s_idem_update(payment_store_t *s, const idem_t *r) {
  sqlite3_stmt *st = stmt(s, Q_IDEM_UPDATE);
  sqlite3_bind_int(st, 1, r->state);
  sqlite3_bind_int64(st, 2, r->claimed_at);
  ps_sqlite_bind_text(st, 3, r->resource_id);
  sqlite3_bind_int(st, 4, r->response_status);
  ps_sqlite_bind_text(st, 5, r->response_type ? r->response_type : "");
  ps_sqlite_bind_text(st, 6, r->response_body ? r->response_body : "");
  ps_sqlite_bind_text(st, 7, r->scope);
  ps_sqlite_bind_text(st, 8, r->key);
  return changed(s, ps_sqlite_exec_done(st));
}

static int s_event_insert(payment_store_t *s, const char *event_id, const char *type,
                          int64_t now) {
  sqlite3_stmt *st = stmt(s, Q_EVENT_INSERT);
  ps_sqlite_bind_text(st, 1, event_id);
  ps_sqlite_bind_text(st, 2, type);
  sqlite3_bind_int64(st, 3, now);
  return ps_sqlite_exec_done(st);
}

/* --- audit log --------------------------------------------------------------------------- */

static int s_audit_last(payment_store_t *s, ps_arena_t *a, int64_t *seq, const char **hash) {
  sqlite3_stmt *st = stmt(s, Q_AUDIT_LAST);
  int rc = sqlite3_step(st);
  *seq = 0;
  *hash = NULL;
  if (rc == SQLITE_ROW) {
    *seq = sqlite3_column_int64(st, 0);
    *hash = ps_sqlite_text(a, st, 1);
  }
  sqlite3_reset(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : ps_sqlite_err(rc);
}

static int s_audit_insert(payment_store_t *s, const audit_t *e) {
  sqlite3_stmt *st = stmt(s, Q_AUDIT_INSERT);
  sqlite3_bind_int64(st, 1, e->seq);
  sqlite3_bind_int64(st, 2, e->at);
  ps_sqlite_bind_text(st, 3, e->kind);
  ps_sqlite_bind_text(st, 4, e->payment_id);
  ps_sqlite_bind_text(st, 5, e->ref ? e->ref : "");
  sqlite3_bind_int64(st, 6, e->amount);
  ps_sqlite_bind_text(st, 7, e->currency);
  ps_sqlite_bind_text(st, 8, e->prev_hash);
  ps_sqlite_bind_text(st, 9, e->hash);
  return ps_sqlite_exec_done(st);
}

static int s_audit_each(payment_store_t *s, ps_arena_t *a, audit_each_cb cb, void *arg) {
  sqlite3_stmt *st = stmt(s, Q_AUDIT_ALL);
  int rc, stop = 0;
  while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    /* Column text is only valid until the next step, so each entry is copied; the
     * callback's arena use is bounded by the caller resetting a between pages if needed. */
    audit_t e = {.seq = sqlite3_column_int64(st, 0),
                 .at = sqlite3_column_int64(st, 1),
                 .kind = (const char *)sqlite3_column_text(st, 2),
                 .payment_id = (const char *)sqlite3_column_text(st, 3),
                 .ref = (const char *)sqlite3_column_text(st, 4),
                 .amount = sqlite3_column_int64(st, 5),
                 .currency = (const char *)sqlite3_column_text(st, 6),
                 .prev_hash = (const char *)sqlite3_column_text(st, 7),
                 .hash = (const char *)sqlite3_column_text(st, 8)};
    if (!e.kind) e.kind = "";
    if (!e.payment_id) e.payment_id = "";
    if (!e.ref) e.ref = "";
    if (!e.currency) e.currency = "";
    if (!e.prev_hash) e.prev_hash = "";
    if (!e.hash) e.hash = "";
    stop = cb(arg, &e);
  }
  sqlite3_reset(st);
  if (stop) return stop;
  return rc == SQLITE_DONE ? 0 : ps_sqlite_err(rc);
}

static int s_purge(payment_store_t *s, int64_t idem_before, int64_t events_before, int limit,
                   int *n) {
  *n = 0;
  sqlite3_stmt *st = stmt(s, Q_PURGE_IDEM);
  sqlite3_bind_int64(st, 1, idem_before);
  sqlite3_bind_int(st, 2, limit);
  int rc = ps_sqlite_exec_done(st);
  if (rc) return rc;
  *n += sqlite3_changes(db_of(s));
  st = stmt(s, Q_PURGE_EVENTS);
  sqlite3_bind_int64(st, 1, events_before);
  sqlite3_bind_int(st, 2, limit);
  rc = ps_sqlite_exec_done(st);
  if (rc == 0) *n += sqlite3_changes(db_of(s));
  return rc;
}

static int s_ping(payment_store_t *s) {
  sqlite3_stmt *st = stmt(s, Q_PING);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_ROW ? 0 : ps_sqlite_err(rc);
}

static void s_close(payment_store_t *s) {
  sqlite_store_t *ss = (sqlite_store_t *)s;
  s_rollback(s);
  ps_sqlite_finalize_all(ss->st, Q__COUNT);
  sqlite3_close_v2(ss->db);
  ps_free(ss);
}

static const payment_store_ops_t sqlite_ops = {
    .begin = s_begin,
    .commit = s_commit,
    .rollback = s_rollback,
    .payment_insert = s_payment_insert,
    .payment_get = s_payment_get,
    .payment_get_by_ref = s_payment_get_by_ref,
    .payment_update = s_payment_update,
    .payment_list = s_payment_list,
    .refund_insert = s_refund_insert,
    .refund_get = s_refund_get,
    .refund_update = s_refund_update,
    .refund_list = s_refund_list,
    .idem_get = s_idem_get,
    .idem_insert = s_idem_insert,
    .idem_update = s_idem_update,
    .purge = s_purge,
    .event_insert = s_event_insert,
    .audit_last = s_audit_last,
    .audit_insert = s_audit_insert,
    .audit_each = s_audit_each,
    .ping = s_ping,
    .close = s_close,
};

int payment_store_sqlite_open(const char *path, payment_store_t **out) {
  sqlite3 *db;
  int rc = ps_sqlite_open(path, schema, &db);
  if (rc) return rc;
  sqlite_store_t *ss = ps_calloc(1, sizeof(*ss));
  ss->base.ops = &sqlite_ops;
  ss->db = db;
  if (ps_sqlite_prepare_all(db, sql, Q__COUNT, ss->st)) {
    s_close(&ss->base);
    return PS_ESTORE;
  }
  *out = &ss->base;
  return 0;
}
