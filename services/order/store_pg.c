/* store_pg.c - the order store on PostgreSQL through libpq (see store.h). One connection per
 * event-loop thread, every statement prepared once per connection, tables in their own schema
 * ("ordering" unless ORDER_PG_SCHEMA says otherwise). Creation (order + items + outbox) and
 * each saga change (+ its events) are one transaction; the changes are single-row conditional
 * UPDATEs, which PostgreSQL re-checks against the newest row version under READ COMMITTED, so
 * the compare-and-set holds without stronger isolation. Two creations with one idempotency
 * key race into the unique index (PS_EEXISTS). A dropped connection is re-established (and its
 * statements prepared again) at the next call outside a transaction. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/pg.h"
#include "store.h"

/* %1$s is the schema name. */
static const char schema_fmt[] =
    "CREATE SCHEMA IF NOT EXISTS %1$s;"
    "SET LOCAL search_path TO %1$s;"
    "CREATE TABLE IF NOT EXISTS orders ("
    " id TEXT PRIMARY KEY, user_id TEXT NOT NULL, status TEXT NOT NULL,"
    " payment_status TEXT NOT NULL, saga_step TEXT NOT NULL,"
    " subtotal BIGINT NOT NULL CHECK (subtotal >= 0), discount BIGINT NOT NULL CHECK (discount >= 0),"
    " total BIGINT NOT NULL CHECK (total >= 0), currency TEXT NOT NULL, discount_code TEXT,"
    " address TEXT NOT NULL, payment_method TEXT NOT NULL, reservation_id TEXT NOT NULL,"
    " payment_id TEXT, idempotency_key TEXT NOT NULL, request_hash TEXT NOT NULL,"
    " response_status INTEGER NOT NULL DEFAULT 0, response_body TEXT, failure TEXT,"
    " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
    " UNIQUE (user_id, idempotency_key));"
    "CREATE INDEX IF NOT EXISTS orders_user ON orders(user_id, created_at DESC, id DESC);"
    "CREATE INDEX IF NOT EXISTS orders_unfinished ON orders(updated_at)"
    " WHERE saga_step NOT IN ('committed','released','refunded');"
    "CREATE TABLE IF NOT EXISTS order_items ("
    " order_id TEXT NOT NULL REFERENCES orders(id), line INTEGER NOT NULL,"
    " product_id TEXT NOT NULL, variant TEXT, name TEXT NOT NULL, unit_price BIGINT NOT NULL,"
    " quantity BIGINT NOT NULL, line_total BIGINT NOT NULL, PRIMARY KEY (order_id, line));"
    "CREATE TABLE IF NOT EXISTS outbox ("
    " id TEXT NOT NULL, destination TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL,"
    " attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at BIGINT NOT NULL,"
    " created_at BIGINT NOT NULL, sent_at BIGINT, PRIMARY KEY (id, destination));"
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_at) WHERE sent_at IS NULL;";

#define ORDER_COLS                                                                          \
  "id,user_id,status,payment_status,saga_step,subtotal,discount,total,currency,"            \
  "discount_code,address,payment_method,reservation_id,payment_id,idempotency_key,"         \
  "request_hash,response_status,response_body,failure,created_at,updated_at"

enum {
  Q_BEGIN, Q_COMMIT, Q_ROLLBACK, Q_INSERT, Q_ITEM, Q_OUTBOX, Q_GET, Q_BY_KEY, Q_ITEMS,
  Q_LIST_FIRST, Q_LIST_AFTER, Q_CHANGE, Q_EXISTS, Q_UNFINISHED, Q_DUE, Q_SENT, Q_RETRY,
  Q_PENDING, Q_PRUNE, Q_PING, Q__COUNT
};

static const char *const sql[Q__COUNT] = {
    [Q_BEGIN] = "BEGIN",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_INSERT] = "INSERT INTO orders(" ORDER_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,"
                 "$13,$14,$15,$16,$17,$18,$19,$20,$21)",
    [Q_ITEM] = "INSERT INTO order_items(order_id,line,product_id,variant,name,unit_price,quantity,"
               "line_total) VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
    [Q_OUTBOX] = "INSERT INTO outbox(id,destination,type,payload,next_attempt_at,created_at)"
                 " VALUES($1,$2,$3,$4,$5,$6)",
    [Q_GET] = "SELECT " ORDER_COLS " FROM orders WHERE id=$1",
    [Q_BY_KEY] = "SELECT " ORDER_COLS " FROM orders WHERE user_id=$1 AND idempotency_key=$2",
    [Q_ITEMS] = "SELECT product_id,variant,name,unit_price,quantity,line_total FROM order_items"
                " WHERE order_id=$1 ORDER BY line",
    [Q_LIST_FIRST] = "SELECT " ORDER_COLS " FROM orders WHERE user_id=$1"
                     " ORDER BY created_at DESC, id DESC LIMIT $2",
    [Q_LIST_AFTER] = "SELECT " ORDER_COLS " FROM orders WHERE user_id=$1 AND"
                     " (created_at, id) < ($2::bigint, $3::text)"
                     " ORDER BY created_at DESC, id DESC LIMIT $4",
    [Q_CHANGE] = "UPDATE orders SET saga_step=COALESCE($1::text,saga_step),"
                 " status=COALESCE($2::text,status),"
                 " payment_status=COALESCE($3::text,payment_status),"
                 " payment_id=COALESCE($4::text,payment_id), failure=COALESCE($5::text,failure),"
                 " response_status=CASE WHEN $6::int > 0 THEN $6::int ELSE response_status END,"
                 " response_body=COALESCE($7::text,response_body), updated_at=$8::bigint"
                 " WHERE id=$9::text AND ($10::text IS NULL OR saga_step=$10::text)"
                 " AND ($11::text IS NULL OR status=$11::text)",
    [Q_EXISTS] = "SELECT 1 FROM orders WHERE id=$1",
    [Q_UNFINISHED] = "SELECT id FROM orders WHERE saga_step NOT IN ('committed','released','refunded')"
                     " AND updated_at < $1 ORDER BY updated_at LIMIT $2",
    [Q_DUE] = "SELECT id,destination,type,payload,attempts,next_attempt_at FROM outbox"
              " WHERE sent_at IS NULL AND next_attempt_at <= $1 AND destination IN ($2,$3)"
              " ORDER BY next_attempt_at, created_at LIMIT $4",
    [Q_SENT] = "UPDATE outbox SET sent_at=$1, attempts=attempts+1 WHERE id=$2 AND destination=$3",
    [Q_RETRY] = "UPDATE outbox SET next_attempt_at=$1, attempts=attempts+1 WHERE id=$2"
                " AND destination=$3 AND sent_at IS NULL",
    [Q_PENDING] = "SELECT count(*) FROM outbox WHERE sent_at IS NULL",
    [Q_PRUNE] = "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1",
    [Q_PING] = "SELECT 1",
};

typedef struct {
  order_store_t base;
  ps_pg_t pg; /* the connection, its prepared statements and transaction state */
} pg_store_t;

#define PG(s) (&((pg_store_t *)(s))->pg)

/* Runs prepared statement q. A serialization failure or deadlock is a retryable outage here
 * (PS_EUNAVAIL), never PS_ECONFLICT, which the saga reads as "another worker moved on". */
static int run(order_store_t *s, int q, const ps_pg_params_t *p, PGresult **out) {
  int rc = ps_pg_run(PG(s), q, p, out);
  return rc == PS_ECONFLICT ? PS_EUNAVAIL : rc;
}

static int begin(order_store_t *s) {
  int rc = run(s, Q_BEGIN, NULL, NULL);
  if (rc == 0) PG(s)->in_tx = 1;
  return rc;
}

static int commit(order_store_t *s) {
  int rc = run(s, Q_COMMIT, NULL, NULL);
  PG(s)->in_tx = 0;
  return rc;
}

static void rollback(order_store_t *s) {
  if (PQstatus(PG(s)->conn) == CONNECTION_OK) ps_pg_exec(PG(s), "ROLLBACK");
  PG(s)->in_tx = 0;
}

static void read_order_row(PGresult *r, int row, ps_arena_t *a, order_t *o) {
  memset(o, 0, sizeof(*o));
  o->id = ps_pg_text(a, r, row, 0);
  o->user_id = ps_pg_text(a, r, row, 1);
  o->status = ps_pg_text(a, r, row, 2);
  o->payment_status = ps_pg_text(a, r, row, 3);
  o->saga_step = ps_pg_text(a, r, row, 4);
  o->subtotal = ps_pg_int(r, row, 5);
  o->discount = ps_pg_int(r, row, 6);
  o->total = ps_pg_int(r, row, 7);
  o->currency = ps_pg_text(a, r, row, 8);
  o->discount_code = ps_pg_text_or_null(a, r, row, 9);
  o->address = ps_pg_text(a, r, row, 10);
  o->payment_method = ps_pg_text(a, r, row, 11);
  o->reservation_id = ps_pg_text(a, r, row, 12);
  o->payment_id = ps_pg_text_or_null(a, r, row, 13);
  o->idempotency_key = ps_pg_text(a, r, row, 14);
  o->request_hash = ps_pg_text(a, r, row, 15);
  o->response_status = (int)ps_pg_int(r, row, 16);
  o->response_body = ps_pg_text_or_null(a, r, row, 17);
  o->failure = ps_pg_text_or_null(a, r, row, 18);
  o->created_at = ps_pg_int(r, row, 19);
  o->updated_at = ps_pg_int(r, row, 20);
}

static int load_items(order_store_t *s, ps_arena_t *a, order_t *o) {
  ps_pg_params_t p = {0};
  ps_pg_param_text(&p, o->id);
  PGresult *r;
  int rc = run(s, Q_ITEMS, &p, &r);
  if (rc) return rc;
  int n = PQntuples(r);
  o->items = ps_arena_alloc(a, (size_t)(n > 0 ? n : 1) * sizeof(*o->items));
  o->nitems = (size_t)n;
  for (int i = 0; i < n; i++) {
    order_item_t *it = &o->items[i];
    it->product_id = ps_pg_text(a, r, i, 0);
    it->variant = ps_pg_text_or_null(a, r, i, 1);
    it->name = ps_pg_text(a, r, i, 2);
    it->unit_price = ps_pg_int(r, i, 3);
    it->quantity = ps_pg_int(r, i, 4);
    it->line_total = ps_pg_int(r, i, 5);
  }
  PQclear(r);
  return 0;
}

static int insert_event(order_store_t *s, const outbox_event_t *e, int64_t now) {
  ps_pg_params_t p = {0};
  ps_pg_param_text(&p, e->id);
  ps_pg_param_text(&p, e->destination);
  ps_pg_param_text(&p, e->type);
  ps_pg_param_text(&p, e->payload);
  ps_pg_param_int(&p, e->next_attempt_at ? e->next_attempt_at : now);
  ps_pg_param_int(&p, now);
  return run(s, Q_OUTBOX, &p, NULL);
}

static int s_create(order_store_t *s, const order_t *o, const outbox_event_t *events,
                    size_t nevents) {
  int rc = begin(s);
  if (rc) return rc;
  ps_pg_params_t p = {0};
  ps_pg_param_text(&p, o->id);
  ps_pg_param_text(&p, o->user_id);
  ps_pg_param_text(&p, o->status);
  ps_pg_param_text(&p, o->payment_status);
  ps_pg_param_text(&p, o->saga_step);
  ps_pg_param_int(&p, o->subtotal);
  ps_pg_param_int(&p, o->discount);
  ps_pg_param_int(&p, o->total);
  ps_pg_param_text(&p, o->currency);
  ps_pg_param_text(&p, o->discount_code);
  ps_pg_param_text(&p, o->address);
  ps_pg_param_text(&p, o->payment_method);
  ps_pg_param_text(&p, o->reservation_id);
  ps_pg_param_text(&p, o->payment_id);
  ps_pg_param_text(&p, o->idempotency_key);
  ps_pg_param_text(&p, o->request_hash);
  ps_pg_param_int(&p, o->response_status);
  ps_pg_param_text(&p, o->response_body);
  ps_pg_param_text(&p, o->failure);
  ps_pg_param_int(&p, o->created_at);
  ps_pg_param_int(&p, o->updated_at);
  rc = run(s, Q_INSERT, &p, NULL);
  for (size_t i = 0; rc == 0 && i < o->nitems; i++) {
    const order_item_t *it = &o->items[i];
    ps_pg_params_t q = {0};
    ps_pg_param_text(&q, o->id);
    ps_pg_param_int(&q, (int64_t)i);
    ps_pg_param_text(&q, it->product_id);
    ps_pg_param_text(&q, it->variant);
    ps_pg_param_text(&q, it->name);
    ps_pg_param_int(&q, it->unit_price);
    ps_pg_param_int(&q, it->quantity);
    ps_pg_param_int(&q, it->line_total);
    rc = run(s, Q_ITEM, &q, NULL);
  }
  for (size_t i = 0; rc == 0 && i < nevents; i++) rc = insert_event(s, &events[i], o->created_at);
  if (rc == 0) rc = commit(s);
  if (rc) rollback(s);
  return rc;
}

static int get_one(order_store_t *s, ps_arena_t *a, int q, const ps_pg_params_t *p, order_t *out) {
  PGresult *r;
  int rc = run(s, q, p, &r);
  if (rc) return rc;
  if (PQntuples(r) == 0) {
    PQclear(r);
    return PS_ENOTFOUND;
  }
  read_order_row(r, 0, a, out);
  PQclear(r);
  return load_items(s, a, out);
}

static int s_get(order_store_t *s, ps_arena_t *a, const char *id, order_t *out) {
  ps_pg_params_t p = {0};
  ps_pg_param_text(&p, id);
  return get_one(s, a, Q_GET, &p, out);
}

static int s_get_by_key(order_store_t *s, ps_arena_t *a, const char *user_id, const char *key,
                        order_t *out) {
  ps_pg_params_t p = {0};
  ps_pg_param_text(&p, user_id);
  ps_pg_param_text(&p, key);
  return get_one(s, a, Q_BY_KEY, &p, out);
}

static int s_list(order_store_t *s, ps_arena_t *a, const char *user_id, const order_cursor_t *after,
                  int limit, order_t **out, size_t *n) {
  ps_pg_params_t p = {0};
  ps_pg_param_text(&p, user_id);
  if (after) {
    ps_pg_param_int(&p, after->created_at);
    ps_pg_param_text(&p, after->id);
  }
  ps_pg_param_int(&p, limit);
  PGresult *r;
  int rc = run(s, after ? Q_LIST_AFTER : Q_LIST_FIRST, &p, &r);
  if (rc) return rc;
  int rows = PQntuples(r);
  order_t *orders = ps_arena_alloc(a, (size_t)(rows > 0 ? rows : 1) * sizeof(*orders));
  for (int i = 0; i < rows; i++) read_order_row(r, i, a, &orders[i]);
  PQclear(r);
  for (int i = 0; i < rows; i++)
    if ((rc = load_items(s, a, &orders[i]))) return rc;
  *out = orders;
  *n = (size_t)rows;
  return 0;
}

static int s_change(order_store_t *s, const order_change_t *c) {
  int rc = begin(s);
  if (rc) return rc;
  ps_pg_params_t p = {0};
  ps_pg_param_text(&p, c->step);
  ps_pg_param_text(&p, c->status);
  ps_pg_param_text(&p, c->payment_status);
  ps_pg_param_text(&p, c->payment_id);
  ps_pg_param_text(&p, c->failure);
  ps_pg_param_int(&p, c->response_status);
  ps_pg_param_text(&p, c->response_body);
  ps_pg_param_int(&p, c->now);
  ps_pg_param_text(&p, c->id);
  ps_pg_param_text(&p, c->expect_step);
  ps_pg_param_text(&p, c->expect_status);
  PGresult *r;
  rc = run(s, Q_CHANGE, &p, &r);
  if (rc == 0) {
    int changed = atoi(PQcmdTuples(r));
    PQclear(r);
    if (!changed) {
      ps_pg_params_t e = {0};
      ps_pg_param_text(&e, c->id);
      PGresult *x;
      rc = run(s, Q_EXISTS, &e, &x);
      if (rc == 0) {
        rc = PQntuples(x) ? PS_ECONFLICT : PS_ENOTFOUND;
        PQclear(x);
      }
    }
  }
  for (size_t i = 0; rc == 0 && i < c->nevents; i++) rc = insert_event(s, &c->events[i], c->now);
  if (rc == 0) rc = commit(s);
  if (rc) rollback(s);
  return rc;
}

static int s_unfinished(order_store_t *s, ps_arena_t *a, int64_t before, int limit,
                        const char ***ids, size_t *n) {
  ps_pg_params_t p = {0};
  ps_pg_param_int(&p, before);
  ps_pg_param_int(&p, limit);
  PGresult *r;
  int rc = run(s, Q_UNFINISHED, &p, &r);
  if (rc) return rc;
  int rows = PQntuples(r);
  const char **out = ps_arena_alloc(a, (size_t)(rows > 0 ? rows : 1) * sizeof(*out));
  for (int i = 0; i < rows; i++) out[i] = ps_pg_text(a, r, i, 0);
  PQclear(r);
  *ids = out;
  *n = (size_t)rows;
  return 0;
}

static int s_outbox_due(order_store_t *s, ps_arena_t *a, int64_t now,
                        const char *const *destinations, int limit, outbox_event_t **out,
                        size_t *n) {
  ps_pg_params_t p = {0};
  ps_pg_param_int(&p, now);
  ps_pg_param_text(&p, destinations && destinations[0] ? destinations[0] : NULL);
  ps_pg_param_text(&p, destinations && destinations[0] && destinations[1] ? destinations[1] : NULL);
  ps_pg_param_int(&p, limit);
  PGresult *r;
  int rc = run(s, Q_DUE, &p, &r);
  if (rc) return rc;
  int rows = PQntuples(r);
  outbox_event_t *ev = ps_arena_alloc(a, (size_t)(rows > 0 ? rows : 1) * sizeof(*ev));
  for (int i = 0; i < rows; i++) {
    ev[i].id = ps_pg_text(a, r, i, 0);
    ev[i].destination = ps_pg_text(a, r, i, 1);
    ev[i].type = ps_pg_text(a, r, i, 2);
    ev[i].payload = ps_pg_text(a, r, i, 3);
    ev[i].attempts = ps_pg_int(r, i, 4);
    ev[i].next_attempt_at = ps_pg_int(r, i, 5);
  }
  PQclear(r);
  *out = ev;
  *n = (size_t)rows;
  return 0;
}

static int s_outbox_sent(order_store_t *s, const char *id, const char *destination, int64_t now) {
  ps_pg_params_t p = {0};
  ps_pg_param_int(&p, now);
  ps_pg_param_text(&p, id);
  ps_pg_param_text(&p, destination);
  return run(s, Q_SENT, &p, NULL);
}

static int s_outbox_retry(order_store_t *s, const char *id, const char *destination,
                          int64_t next_attempt_at) {
  ps_pg_params_t p = {0};
  ps_pg_param_int(&p, next_attempt_at);
  ps_pg_param_text(&p, id);
  ps_pg_param_text(&p, destination);
  return run(s, Q_RETRY, &p, NULL);
}

static int s_outbox_pending(order_store_t *s, int64_t *n) {
  PGresult *r;
  int rc = run(s, Q_PENDING, NULL, &r);
  if (rc) return rc;
  *n = ps_pg_int(r, 0, 0);
  PQclear(r);
  return 0;
}

static int s_outbox_prune(order_store_t *s, int64_t before, int64_t *n) {
  ps_pg_params_t p = {0};
  ps_pg_param_int(&p, before);
  PGresult *r;
  int rc = run(s, Q_PRUNE, &p, &r);
  *n = rc ? 0 : strtoll(PQcmdTuples(r), NULL, 10);
  if (rc == 0) PQclear(r);
  return rc;
}

static int s_ping(order_store_t *s) { return run(s, Q_PING, NULL, NULL); }

static void s_close(order_store_t *s) {
  ps_pg_close(PG(s));
  ps_free(s);
}

static const order_store_ops_t pg_ops = {
    .create = s_create,
    .get = s_get,
    .get_by_key = s_get_by_key,
    .list = s_list,
    .change = s_change,
    .unfinished = s_unfinished,
    .outbox_due = s_outbox_due,
    .outbox_sent = s_outbox_sent,
    .outbox_retry = s_outbox_retry,
    .outbox_pending = s_outbox_pending,
    .outbox_prune = s_outbox_prune,
    .ping = s_ping,
    .close = s_close,
};

int order_store_pg_open(const char *url, const char *schema, order_store_t **out) {
  pg_store_t *ps = ps_calloc(1, sizeof(*ps));
  ps->base.ops = &pg_ops;
  ps->pg = (ps_pg_t){.label = "order store", .stmt_prefix = "ord", .sql = sql, .nsql = Q__COUNT};
  int rc = ps_pg_open(&ps->pg, url, schema ? schema : ORDER_PG_SCHEMA_DEFAULT, schema_fmt,
                      "polyshop.order.schema", 0);
  if (rc) {
    ps_free(ps);
    return rc;
  }
  *out = &ps->base;
  return 0;
}
