/* store_pg.c - the payment store on PostgreSQL through libpq (see store.h). One connection
 * per event-loop thread, every statement prepared once per connection, tables in their own
 * schema ("payment"). Money-moving transactions run READ COMMITTED with explicit locks:
 * rows read for update are locked (SELECT ... FOR UPDATE), audit appenders are serialised by
 * a transaction-scoped advisory lock, and two inserts of one idempotency key race into a
 * unique violation that ledger.c answers by retrying the transaction. A dropped connection
 * is re-established (and its statements prepared again) at the next call. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/pg.h"
#include "store.h"

/* Tables of one schema; %1$s is the schema name. */
static const char schema_fmt[] =
    "CREATE SCHEMA IF NOT EXISTS %1$s;"
    "SET LOCAL search_path TO %1$s;"
    "CREATE TABLE IF NOT EXISTS payments ("
    " id TEXT PRIMARY KEY, order_id TEXT NOT NULL, user_id TEXT NOT NULL,"
    " amount BIGINT NOT NULL CHECK (amount > 0), currency TEXT NOT NULL,"
    " status TEXT NOT NULL, provider TEXT NOT NULL, provider_ref TEXT NOT NULL DEFAULT '',"
    " captured BIGINT NOT NULL DEFAULT 0, refunded BIGINT NOT NULL DEFAULT 0,"
    " failure_code TEXT NOT NULL DEFAULT '', card_brand TEXT NOT NULL DEFAULT '',"
    " card_last4 TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
    " CHECK (refunded >= 0 AND refunded <= captured AND captured <= amount));"
    "CREATE INDEX IF NOT EXISTS payments_user ON payments(user_id, created_at DESC, id DESC);"
    "CREATE INDEX IF NOT EXISTS payments_order ON payments(order_id);"
    "CREATE INDEX IF NOT EXISTS payments_ref ON payments(provider_ref) WHERE provider_ref <> '';"
    "CREATE TABLE IF NOT EXISTS refunds ("
    " n BIGSERIAL, id TEXT PRIMARY KEY, payment_id TEXT NOT NULL REFERENCES payments(id),"
    " amount BIGINT NOT NULL CHECK (amount > 0), status TEXT NOT NULL,"
    " provider_ref TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',"
    " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS refunds_payment ON refunds(payment_id, created_at, n);"
    "CREATE TABLE IF NOT EXISTS idempotency ("
    " scope TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,"
    " resource_id TEXT NOT NULL, state INTEGER NOT NULL, claimed_at BIGINT NOT NULL,"
    " response_status INTEGER NOT NULL DEFAULT 0, response_type TEXT NOT NULL DEFAULT '',"
    " response_body TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL,"
    " PRIMARY KEY (scope, key));"
    "CREATE TABLE IF NOT EXISTS webhook_events ("
    " id TEXT PRIMARY KEY, type TEXT NOT NULL, received_at BIGINT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit_log ("
    " seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, kind TEXT NOT NULL,"
    " payment_id TEXT NOT NULL, ref TEXT NOT NULL, amount BIGINT NOT NULL,"
    " currency TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);"
    /* Append-only for the application; an owner can disable the trigger, which is what the
     * hash chain is for. */
    "CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS"
    " $f$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $f$;"
    "CREATE OR REPLACE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit_log"
    " FOR EACH ROW EXECUTE FUNCTION audit_append_only();";

#define PAYMENT_COLS                                                                          \
  "id,order_id,user_id,amount,currency,status,provider,provider_ref,captured,refunded,"      \
  "failure_code,card_brand,card_last4,created_at,updated_at"
#define REFUND_COLS "id,payment_id,amount,status,provider_ref,reason,created_at,updated_at"
#define IDEM_COLS                                                                             \
  "scope,key,request_hash,resource_id,state,claimed_at,response_status,response_type,"       \
  "response_body,created_at"

enum {
  Q_PAY_INSERT, Q_PAY_GET, Q_PAY_GET_LOCK, Q_PAY_BY_REF, Q_PAY_BY_REF_LOCK, Q_PAY_UPDATE,
  Q_PAY_LIST, Q_REF_INSERT, Q_REF_GET, Q_REF_UPDATE, Q_REF_LIST, Q_IDEM_GET, Q_IDEM_GET_LOCK,
  Q_IDEM_INSERT, Q_IDEM_UPDATE, Q_EVENT_INSERT, Q_AUDIT_LOCK, Q_AUDIT_LAST, Q_AUDIT_INSERT,
  Q_AUDIT_PAGE, Q_PURGE_IDEM, Q_PURGE_EVENTS, Q_PING, Q__COUNT
};

static const char *const sql[Q__COUNT] = {
    [Q_PAY_INSERT] = "INSERT INTO payments(" PAYMENT_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,"
                     "$10,$11,$12,$13,$14,$15)",
    [Q_PAY_GET] = "SELECT " PAYMENT_COLS " FROM payments WHERE id=$1",
    [Q_PAY_GET_LOCK] = "SELECT " PAYMENT_COLS " FROM payments WHERE id=$1 FOR UPDATE",
    [Q_PAY_BY_REF] = "SELECT " PAYMENT_COLS " FROM payments WHERE provider_ref=$1 AND provider_ref<>''",
    [Q_PAY_BY_REF_LOCK] = "SELECT " PAYMENT_COLS " FROM payments WHERE provider_ref=$1"
                          " AND provider_ref<>'' FOR UPDATE",
    [Q_PAY_UPDATE] = "UPDATE payments SET status=$1, provider_ref=$2, captured=$3, refunded=$4,"
                     " failure_code=$5, updated_at=$6 WHERE id=$7",
    [Q_PAY_LIST] = "SELECT " PAYMENT_COLS " FROM payments WHERE ($1::text IS NULL OR user_id=$1)"
                   " AND ($2::text IS NULL OR order_id=$2)"
                   " AND ($4::text IS NULL OR created_at < $3::bigint OR (created_at = $3::bigint AND id < $4))"
                   " ORDER BY created_at DESC, id DESC LIMIT $5",
    [Q_REF_INSERT] = "INSERT INTO refunds(" REFUND_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
    [Q_REF_GET] = "SELECT " REFUND_COLS " FROM refunds WHERE id=$1",
    [Q_REF_UPDATE] = "UPDATE refunds SET status=$1, provider_ref=$2, updated_at=$3 WHERE id=$4",
    [Q_REF_LIST] = "SELECT " REFUND_COLS " FROM refunds WHERE payment_id=$1 ORDER BY created_at, n",
    [Q_IDEM_GET] = "SELECT " IDEM_COLS " FROM idempotency WHERE scope=$1 AND key=$2",
    [Q_IDEM_GET_LOCK] = "SELECT " IDEM_COLS " FROM idempotency WHERE scope=$1 AND key=$2 FOR UPDATE",
    [Q_IDEM_INSERT] = "INSERT INTO idempotency(" IDEM_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
    [Q_IDEM_UPDATE] = "UPDATE idempotency SET state=$1, claimed_at=$2, resource_id=$3,"
                      " response_status=$4, response_type=$5, response_body=$6"
                      " WHERE scope=$7 AND key=$8",
    [Q_EVENT_INSERT] = "INSERT INTO webhook_events(id,type,received_at) VALUES($1,$2,$3)",
    /* Held until the transaction ends: one appender at a time, so seq has no gaps. */
    [Q_AUDIT_LOCK] = "SELECT pg_advisory_xact_lock(hashtext('polyshop.payment.audit_log'))",
    [Q_AUDIT_LAST] = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
    [Q_AUDIT_INSERT] = "INSERT INTO audit_log(seq,at,kind,payment_id,ref,amount,currency,"
                       "prev_hash,hash) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9)",
    [Q_AUDIT_PAGE] = "SELECT seq,at,kind,payment_id,ref,amount,currency,prev_hash,hash"
                     " FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 1000",
    [Q_PURGE_IDEM] = "DELETE FROM idempotency WHERE ctid IN (SELECT ctid FROM idempotency"
                     " WHERE state=1 AND created_at < $1 LIMIT $2)",
    [Q_PURGE_EVENTS] = "DELETE FROM webhook_events WHERE ctid IN (SELECT ctid FROM"
                       " webhook_events WHERE received_at < $1 LIMIT $2)",
    [Q_PING] = "SELECT 1",
};

typedef struct {
  payment_store_t base;
  ps_pg_t pg; /* the connection, its prepared statements and transaction state */
} pg_store_t;

#define PG(s) (&((pg_store_t *)(s))->pg)

static int run(payment_store_t *s, int q, const ps_pg_params_t *p, PGresult **out) {
  return ps_pg_run(PG(s), q, p, out);
}

/* Runs an UPDATE; PS_ENOTFOUND when it touched no row. */
static int run_update(payment_store_t *s, int q, const ps_pg_params_t *p) {
  PGresult *r = NULL;
  int rc = run(s, q, p, &r);
  if (rc) return rc;
  rc = ps_pg_affected(r) ? 0 : PS_ENOTFOUND;
  PQclear(r);
  return rc;
}

/* --- transactions ------------------------------------------------------------------------ */

static int s_begin(payment_store_t *s, int write) {
  int rc = ps_pg_ensure(PG(s));
  if (rc) return rc;
  rc = ps_pg_exec(PG(s), write ? "BEGIN ISOLATION LEVEL READ COMMITTED" : "BEGIN READ ONLY");
  if (rc == 0) PG(s)->in_tx = 1;
  return rc;
}

static int s_commit(payment_store_t *s) {
  int rc = ps_pg_exec(PG(s), "COMMIT");
  PG(s)->in_tx = 0;
  return rc;
}

static void s_rollback(payment_store_t *s) {
  if (PQstatus(PG(s)->conn) == CONNECTION_OK) ps_pg_exec(PG(s), "ROLLBACK");
  PG(s)->in_tx = 0;
}

/* --- payments ---------------------------------------------------------------------------- */

static int s_payment_insert(payment_store_t *s, const payment_t *x) {
  ps_pg_params_t p = {.n = 0};
  ps_pg_param_text(&p, x->id);
  ps_pg_param_text(&p, x->order_id);
  ps_pg_param_text(&p, x->user_id);
  ps_pg_param_int(&p, x->amount);
  ps_pg_param_text(&p, x->currency);
  ps_pg_param_text(&p, x->status);
  ps_pg_param_text(&p, x->provider);
  ps_pg_param_text(&p, x->provider_ref ? x->provider_ref : "");
  ps_pg_param_int(&p, x->captured);
  ps_pg_param_int(&p, x->refunded);
  ps_pg_param_text(&p, x->failure_code ? x->failure_code : "");
  ps_pg_param_text(&p, x->card_brand ? x->card_brand : "");
  ps_pg_param_text(&p, x->card_last4 ? x->card_last4 : "");
  ps_pg_param_int(&p, x->created_at);
  ps_pg_param_int(&p, x->updated_at);
  return run(s, Q_PAY_INSERT, &p, NULL);
}

static void read_payment(PGresult *r, int i, ps_arena_t *a, payment_t *x) {
  x->id = ps_pg_text(a, r, i, 0);
  x->order_id = ps_pg_text(a, r, i, 1);
  x->user_id = ps_pg_text(a, r, i, 2);
  x->amount = ps_pg_int(r, i, 3);
  x->currency = ps_pg_text(a, r, i, 4);
  x->status = ps_pg_text(a, r, i, 5);
  x->provider = ps_pg_text(a, r, i, 6);
  x->provider_ref = ps_pg_text(a, r, i, 7);
  x->captured = ps_pg_int(r, i, 8);
  x->refunded = ps_pg_int(r, i, 9);
  x->failure_code = ps_pg_text(a, r, i, 10);
  x->card_brand = ps_pg_text(a, r, i, 11);
  x->card_last4 = ps_pg_text(a, r, i, 12);
  x->created_at = ps_pg_int(r, i, 13);
  x->updated_at = ps_pg_int(r, i, 14);
}

static int one_payment(payment_store_t *s, int q, const char *arg, ps_arena_t *a, payment_t *out) {
  ps_pg_params_t p = {.n = 0};
  ps_pg_param_text(&p, arg);
  PGresult *r = NULL;
  int rc = run(s, q, &p, &r);
  if (rc) return rc;
  if (PQntuples(r) == 0) rc = PS_ENOTFOUND;
  else read_payment(r, 0, a, out);
  PQclear(r);
  return rc;
}

static int s_payment_get(payment_store_t *s, ps_arena_t *a, const char *id, int for_update,
                         payment_t *out) {
  return one_payment(s, for_update ? Q_PAY_GET_LOCK : Q_PAY_GET, id, a, out);
}

static int s_payment_get_by_ref(payment_store_t *s, ps_arena_t *a, const char *ref,
                                int for_update, payment_t *out) {
  return one_payment(s, for_update ? Q_PAY_BY_REF_LOCK : Q_PAY_BY_REF, ref, a, out);
}

static int s_payment_update(payment_store_t *s, const payment_t *x) {
  ps_pg_params_t p = {.n = 0};
  ps_pg_param_text(&p, x->status);
  ps_pg_param_text(&p, x->provider_ref ? x->provider_ref : "");
  ps_pg_param_int(&p, x->captured);
  ps_pg_param_int(&p, x->refunded);
  ps_pg_param_text(&p, x->failure_code ? x->failure_code : "");
  ps_pg_param_int(&p, x->updated_at);
  ps_pg_param_text(&p, x->id);
  return run_update(s, Q_PAY_UPDATE, &p);
}

static int s_payment_list(payment_store_t *s, ps_arena_t *a, const char *user_id,
                          const char *order_id, int64_t after_created, const char *after_id,
                          int limit, payment_t **out, int *n) {
  ps_pg_params_t p = {.n = 0};
  ps_pg_param_text(&p, user_id);
  ps_pg_param_text(&p, order_id);
  ps_pg_param_int(&p, after_created);
  ps_pg_param_text(&p, after_id);
  ps_pg_param_int(&p, limit);
  PGresult *r = NULL;
  int rc = run(s, Q_PAY_LIST, &p, &r);
  if (rc) return rc;
  int rows = PQntuples(r);
  *out = ps_arena_alloc(a, sizeof(payment_t) * (size_t)(rows > 0 ? rows : 1));
  for (int i = 0; i < rows; i++) read_payment(r, i, a, &(*out)[i]);
  *n = rows;
  PQclear(r);
  return 0;
}

/* --- refunds ----------------------------------------------------------------------------- */

static int s_refund_insert(payment_store_t *s, const refund_t *x) {
  ps_pg_params_t p = {.n = 0};
  ps_pg_param_text(&p, x->id);
  ps_pg_param_text(&p, x->payment_id);
  ps_pg_param_int(&p, x->amount);
  ps_pg_param_text(&p, x->status);
  ps_pg_param_text(&p, x->provider_ref ? x->provider_ref : "");
  ps_pg_param_text(&p, x->reason ? x->reason : "");
  ps_pg_param_int(&p, x->created_at);
  ps_pg_param_int(&p, x->updated_at);
  return run(s, Q_REF_INSERT, &p, NULL);
}

static void read_refund(PGresult *r, int i, ps_arena_t *a, refund_t *x) {
  x->id = ps_pg_text(a, r, i, 0);
  x->payment_id = ps_pg_text(a, r, i, 1);
  x->amount = ps_pg_int(r, i, 2);
  x->status = ps_pg_text(a, r, i, 3);
  x->provider_ref = ps_pg_text(a, r, i, 4);
  x->reason = ps_pg_text(a, r, i, 5);
  x->created_at = ps_pg_int(r, i, 6);
  x->updated_at = ps_pg_int(r, i, 7);
}

static int s_refund_get(payment_store_t *s, ps_arena_t *a, const char *id, refund_t *out) {
  ps_pg_params_t p = {.n = 0};
  ps_pg_param_text(&p, id);
  PGresult *r = NULL;
  int rc = run(s, Q_REF_GET, &p, &r);
  if (rc) return rc;
  if (PQntuples(r) == 0) rc = PS_ENOTFOUND;
  else read_refund(r, 0, a, out);
  PQclear(r);
  return rc;
}

static int s_refund_update(payment_store_t *s, const refund_t *x) {
  ps_pg_params_t p = {.n = 0};
  ps_pg_param_text(&p, x->status);
  ps_pg_param_text(&p, x->provider_ref ? x->provider_ref : "");
  ps_pg_param_int(&p, x->updated_at);
  ps_pg_param_text(&p, x->id);
  return run_update(s, Q_REF_UPDATE, &p);
}

static int s_refund_list(payment_store_t *s, ps_arena_t *a, const char *payment_id,
                         refund_t **out, int *n) {
  ps_pg_params_t p = {.n = 0};
  ps_pg_param_text(&p, payment_id);
  PGresult *r = NULL;
  int rc = run(s, Q_REF_LIST, &p, &r);
  if (rc) return rc;
  int rows = PQntuples(r);
  *out = ps_arena_alloc(a, sizeof(refund_t) * (size_t)(rows > 0 ? rows : 1));
  for (int i = 0; i < rows; i++) read_refund(r, i, a, &(*out)[i]);
  *n = rows;
  PQclear(r);
  return 0;
}

/* --- idempotency ------------------------------------------------------------------------- */

static int s_idem_get(payment_store_t *s, ps_arena_t *a, const char *scope, const char *key,
                      int for_update, idem_t *out) {
  ps_pg_params_t p = {.n = 0};
  ps_pg_param_text(&p, scope);
  ps_pg_param_text(&p, key);
  PGresult *r = NULL;
  int rc = run(s, for_update ? Q_IDEM_GET_LOCK : Q_IDEM_GET, &p, &r);
  if (rc) return rc;
  if (PQntuples(r) == 0) {
    PQclear(r);
    return PS_ENOTFOUND;
  }
  out->scope = ps_pg_text(a, r, 0, 0);
  out->key = ps_pg_text(a, r, 0, 1);
  out->request_hash = ps_pg_text(a, r, 0, 2);
  out->resource_id = ps_pg_text(a, r, 0, 3);
  out->state = (int)ps_pg_int(r, 0, 4);
  out->claimed_at = ps_pg_int(r, 0, 5);
  out->response_status = (int)ps_pg_int(r, 0, 6);
  out->response_type = ps_pg_text(a, r, 0, 7);
  out->response_body = ps_pg_text(a, r, 0, 8);
  out->created_at = ps_pg_int(r, 0, 9);
  PQclear(r);
  return 0;
}

static int s_idem_insert(payment_store_t *s, const idem_t *x) {
  ps_pg_params_t p = {.n = 0};
  ps_pg_param_text(&p, x->scope);
  ps_pg_param_text(&p, x->key);
  ps_pg_param_text(&p, x->request_hash);
  ps_pg_param_text(&p, x->resource_id);
  ps_pg_param_int(&p, x->state);
  ps_pg_param_int(&p, x->claimed_at);
  ps_pg_param_int(&p, x->response_status);
  ps_pg_param_text(&p, x->response_type ? x->response_type : "");
  ps_pg_param_text(&p, x->response_body ? x->response_body : "");
  ps_pg_param_int(&p, x->created_at);
  return run(s, Q_IDEM_INSERT, &p, NULL);
}

static int s_idem_update(payment_store_t *s, const idem_t *x) {
  ps_pg_params_t p = {.n = 0};
  ps_pg_param_int(&p, x->state);
  ps_pg_param_int(&p, x->claimed_at);
  ps_pg_param_text(&p, x->resource_id);
  ps_pg_param_int(&p, x->response_status);
  ps_pg_param_text(&p, x->response_type ? x->response_type : "");
  ps_pg_param_text(&p, x->response_body ? x->response_body : "");
  ps_pg_param_text(&p, x->scope);
  ps_pg_param_text(&p, x->key);
  return run_update(s, Q_IDEM_UPDATE, &p);
}

static int s_event_insert(payment_store_t *s, const char *event_id, const char *type,
                          int64_t now) {
  ps_pg_params_t p = {.n = 0};
  ps_pg_param_text(&p, event_id);
  ps_pg_param_text(&p, type);
  ps_pg_param_int(&p, now);
  return run(s, Q_EVENT_INSERT, &p, NULL);
}

/* --- audit log --------------------------------------------------------------------------- */

static int s_audit_last(payment_store_t *s, ps_arena_t *a, int64_t *seq, const char **hash) {
  *seq = 0;
  *hash = NULL;
  int rc = PG(s)->in_tx ? run(s, Q_AUDIT_LOCK, NULL, NULL) : 0;
  if (rc) return rc;
  PGresult *r = NULL;
  if ((rc = run(s, Q_AUDIT_LAST, NULL, &r))) return rc;
  if (PQntuples(r) > 0) {
    *seq = ps_pg_int(r, 0, 0);
    *hash = ps_pg_text(a, r, 0, 1);
  }
  PQclear(r);
  return 0;
}

static int s_audit_insert(payment_store_t *s, const audit_t *e) {
  ps_pg_params_t p = {.n = 0};
  ps_pg_param_int(&p, e->seq);
  ps_pg_param_int(&p, e->at);
  ps_pg_param_text(&p, e->kind);
  ps_pg_param_text(&p, e->payment_id);
  ps_pg_param_text(&p, e->ref ? e->ref : "");
  ps_pg_param_int(&p, e->amount);
  ps_pg_param_text(&p, e->currency);
  ps_pg_param_text(&p, e->prev_hash);
  ps_pg_param_text(&p, e->hash);
  return run(s, Q_AUDIT_INSERT, &p, NULL);
}

static int s_audit_each(payment_store_t *s, ps_arena_t *a, audit_each_cb cb, void *arg) {
  int64_t after = 0;
  for (;;) {
    ps_pg_params_t p = {.n = 0};
    ps_pg_param_int(&p, after);
    PGresult *r = NULL;
    int rc = run(s, Q_AUDIT_PAGE, &p, &r);
    if (rc) return rc;
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
      audit_t e = {.seq = ps_pg_int(r, i, 0), .at = ps_pg_int(r, i, 1), .kind = PQgetvalue(r, i, 2),
                   .payment_id = PQgetvalue(r, i, 3), .ref = PQgetvalue(r, i, 4),
                   .amount = ps_pg_int(r, i, 5), .currency = PQgetvalue(r, i, 6),
                   .prev_hash = PQgetvalue(r, i, 7), .hash = PQgetvalue(r, i, 8)};
      after = e.seq;
      int stop = cb(arg, &e);
      if (stop) {
        PQclear(r);
        return stop;
      }
    }
    PQclear(r);
    if (rows < 1000) return 0;
  }
}

static int s_purge(payment_store_t *s, int64_t idem_before, int64_t events_before, int limit,
                   int *n) {
  *n = 0;
  const int64_t before[2] = {idem_before, events_before};
  const int q[2] = {Q_PURGE_IDEM, Q_PURGE_EVENTS};
  for (int i = 0; i < 2; i++) {
    ps_pg_params_t p = {.n = 0};
    ps_pg_param_int(&p, before[i]);
    ps_pg_param_int(&p, limit);
    PGresult *r = NULL;
    int rc = run(s, q[i], &p, &r);
    if (rc) return rc;
    *n += ps_pg_affected(r);
    PQclear(r);
  }
  return 0;
}

static int s_ping(payment_store_t *s) { return run(s, Q_PING, NULL, NULL); }

static void s_close(payment_store_t *s) {
  ps_pg_close(PG(s));
  ps_free(s);
}

static const payment_store_ops_t pg_ops = {
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

/* Opens the store; lazy: a database that cannot be reached now is not an error (the store
 * reconnects at its first call) and the schema is assumed to exist. */
static int open_pg(const char *url, const char *schema, int lazy, payment_store_t **out) {
  pg_store_t *ps = ps_calloc(1, sizeof(*ps));
  ps->base.ops = &pg_ops;
  ps->pg = (ps_pg_t){.label = "payment store", .stmt_prefix = "pay", .sql = sql, .nsql = Q__COUNT};
  int rc = ps_pg_open(&ps->pg, url, schema, schema_fmt, "polyshop.payment.schema", lazy);
  if (rc) {
    ps_free(ps);
    return rc;
  }
  *out = &ps->base;
  return 0;
}

int payment_store_pg_open_schema(const char *url, const char *schema, payment_store_t **out) {
  return open_pg(url, schema, 0, out);
}

int payment_store_pg_open(const char *url, payment_store_t **out) {
  return open_pg(url, "payment", 0, out);
}

int payment_store_pg_open_lazy(const char *url, payment_store_t **out) {
  return open_pg(url, "payment", 1, out);
}
