/* store_sqlite.c - the order store on an embedded SQLite file (see store.h). One connection per
 * event-loop thread; statements are prepared once per connection; every write that touches
 * more than one row runs in one BEGIN IMMEDIATE transaction. */
#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/sqlite.h"
#include "store.h"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS orders ("
    " id TEXT PRIMARY KEY, user_id TEXT NOT NULL, status TEXT NOT NULL,"
    " payment_status TEXT NOT NULL, saga_step TEXT NOT NULL,"
    " subtotal INTEGER NOT NULL, discount INTEGER NOT NULL, total INTEGER NOT NULL,"
    " currency TEXT NOT NULL, discount_code TEXT, address TEXT NOT NULL,"
    " payment_method TEXT NOT NULL, reservation_id TEXT NOT NULL, payment_id TEXT,"
    " idempotency_key TEXT NOT NULL, request_hash TEXT NOT NULL,"
    " response_status INTEGER NOT NULL DEFAULT 0, response_body TEXT, failure TEXT,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    " UNIQUE(user_id, idempotency_key));"
    "CREATE INDEX IF NOT EXISTS orders_user ON orders(user_id, created_at DESC, id DESC);"
    "CREATE INDEX IF NOT EXISTS orders_unfinished ON orders(updated_at)"
    " WHERE saga_step NOT IN ('committed','released','refunded');"
    "CREATE TABLE IF NOT EXISTS order_items ("
    " order_id TEXT NOT NULL REFERENCES orders(id), line INTEGER NOT NULL,"
    " product_id TEXT NOT NULL, variant TEXT, name TEXT NOT NULL, unit_price INTEGER NOT NULL,"
    " quantity INTEGER NOT NULL, line_total INTEGER NOT NULL, PRIMARY KEY(order_id, line));"
    "CREATE TABLE IF NOT EXISTS outbox ("
    " id TEXT NOT NULL, destination TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL, sent_at INTEGER, PRIMARY KEY(id, destination));"
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
    /* IMMEDIATE takes the write lock at once, so two writers never deadlock upgrading. */
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_INSERT] = "INSERT INTO orders(" ORDER_COLS ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [Q_ITEM] = "INSERT INTO order_items(order_id,line,product_id,variant,name,unit_price,quantity,"
               "line_total) VALUES(?,?,?,?,?,?,?,?)",
    [Q_OUTBOX] = "INSERT INTO outbox(id,destination,type,payload,next_attempt_at,created_at)"
                 " VALUES(?,?,?,?,?,?)",
    [Q_GET] = "SELECT " ORDER_COLS " FROM orders WHERE id=?",
    [Q_BY_KEY] = "SELECT " ORDER_COLS " FROM orders WHERE user_id=? AND idempotency_key=?",
    [Q_ITEMS] = "SELECT product_id,variant,name,unit_price,quantity,line_total FROM order_items"
                " WHERE order_id=? ORDER BY line",
    [Q_LIST_FIRST] = "SELECT " ORDER_COLS " FROM orders WHERE user_id=?"
                     " ORDER BY created_at DESC, id DESC LIMIT ?",
    [Q_LIST_AFTER] = "SELECT " ORDER_COLS " FROM orders WHERE user_id=? AND"
                     " (created_at < ? OR (created_at = ? AND id < ?))"
                     " ORDER BY created_at DESC, id DESC LIMIT ?",
    [Q_CHANGE] = "UPDATE orders SET saga_step=COALESCE(?1,saga_step), status=COALESCE(?2,status),"
                 " payment_status=COALESCE(?3,payment_status), payment_id=COALESCE(?4,payment_id),"
                 " failure=COALESCE(?5,failure),"
                 " response_status=CASE WHEN ?6>0 THEN ?6 ELSE response_status END,"
                 " response_body=COALESCE(?7,response_body), updated_at=?8"
                 " WHERE id=?9 AND (?10 IS NULL OR saga_step=?10) AND (?11 IS NULL OR status=?11)",
    [Q_EXISTS] = "SELECT 1 FROM orders WHERE id=?",
    [Q_UNFINISHED] = "SELECT id FROM orders WHERE saga_step NOT IN ('committed','released','refunded')"
                     " AND updated_at < ? ORDER BY updated_at LIMIT ?",
    [Q_DUE] = "SELECT id,destination,type,payload,attempts,next_attempt_at FROM outbox"
              " WHERE sent_at IS NULL AND next_attempt_at <= ? AND destination IN (?,?)"
              " ORDER BY next_attempt_at, created_at LIMIT ?",
    [Q_SENT] = "UPDATE outbox SET sent_at=?, attempts=attempts+1 WHERE id=? AND destination=?",
    [Q_RETRY] = "UPDATE outbox SET next_attempt_at=?, attempts=attempts+1 WHERE id=? AND destination=?"
                " AND sent_at IS NULL",
    [Q_PENDING] = "SELECT count(*) FROM outbox WHERE sent_at IS NULL",
    [Q_PRUNE] = "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?",
    [Q_PING] = "SELECT 1",
};

typedef struct {
  order_store_t base;
  sqlite3 *db;
  sqlite3_stmt *st[Q__COUNT];
} sqlite_store_t;

static sqlite3_stmt *stmt(order_store_t *s, int q) {
  return ps_sqlite_fresh(((sqlite_store_t *)s)->st[q]);
}

static int begin(order_store_t *s) { return ps_sqlite_exec_done(stmt(s, Q_BEGIN)); }
static int commit(order_store_t *s) { return ps_sqlite_exec_done(stmt(s, Q_COMMIT)); }
static void rollback(order_store_t *s) { ps_sqlite_exec_done(stmt(s, Q_ROLLBACK)); }

static void read_order_row(sqlite3_stmt *st, ps_arena_t *a, order_t *o) {
  memset(o, 0, sizeof(*o));
  o->id = ps_sqlite_text(a, st, 0);
  o->user_id = ps_sqlite_text(a, st, 1);
  o->status = ps_sqlite_text(a, st, 2);
  o->payment_status = ps_sqlite_text(a, st, 3);
  o->saga_step = ps_sqlite_text(a, st, 4);
  o->subtotal = sqlite3_column_int64(st, 5);
  o->discount = sqlite3_column_int64(st, 6);
  o->total = sqlite3_column_int64(st, 7);
  o->currency = ps_sqlite_text(a, st, 8);
  o->discount_code = ps_sqlite_text_or_null(a, st, 9);
  o->address = ps_sqlite_text(a, st, 10);
  o->payment_method = ps_sqlite_text(a, st, 11);
  o->reservation_id = ps_sqlite_text(a, st, 12);
  o->payment_id = ps_sqlite_text_or_null(a, st, 13);
  o->idempotency_key = ps_sqlite_text(a, st, 14);
  o->request_hash = ps_sqlite_text(a, st, 15);
  o->response_status = sqlite3_column_int(st, 16);
  o->response_body = ps_sqlite_text_or_null(a, st, 17);
  o->failure = ps_sqlite_text_or_null(a, st, 18);
  o->created_at = sqlite3_column_int64(st, 19);
  o->updated_at = sqlite3_column_int64(st, 20);
}

static int load_items(order_store_t *s, ps_arena_t *a, order_t *o) {
  sqlite3_stmt *st = stmt(s, Q_ITEMS);
  ps_sqlite_bind_text(st, 1, o->id);
  size_t cap = 8, n = 0;
  order_item_t *items = ps_arena_alloc(a, cap * sizeof(*items));
  int rc = SQLITE_DONE;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == cap) {
      order_item_t *bigger = ps_arena_alloc(a, cap * 2 * sizeof(*items));
      memcpy(bigger, items, n * sizeof(*items));
      items = bigger;
      cap *= 2;
    }
    order_item_t *it = &items[n++];
    it->product_id = ps_sqlite_text(a, st, 0);
    it->variant = ps_sqlite_text_or_null(a, st, 1);
    it->name = ps_sqlite_text(a, st, 2);
    it->unit_price = sqlite3_column_int64(st, 3);
    it->quantity = sqlite3_column_int64(st, 4);
    it->line_total = sqlite3_column_int64(st, 5);
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return ps_sqlite_err(rc);
  o->items = items;
  o->nitems = n;
  return 0;
}

static int insert_event(order_store_t *s, const outbox_event_t *e, int64_t now) {
  sqlite3_stmt *st = stmt(s, Q_OUTBOX);
  ps_sqlite_bind_text(st, 1, e->id);
  ps_sqlite_bind_text(st, 2, e->destination);
  ps_sqlite_bind_text(st, 3, e->type);
  ps_sqlite_bind_text(st, 4, e->payload);
  sqlite3_bind_int64(st, 5, e->next_attempt_at ? e->next_attempt_at : now);
  sqlite3_bind_int64(st, 6, now);
  return ps_sqlite_exec_done(st);
}

static int s_create(order_store_t *s, const order_t *o, const outbox_event_t *events,
                    size_t nevents) {
  int rc = begin(s);
  if (rc) return rc;
  sqlite3_stmt *st = stmt(s, Q_INSERT);
  ps_sqlite_bind_text(st, 1, o->id);
  ps_sqlite_bind_text(st, 2, o->user_id);
  ps_sqlite_bind_text(st, 3, o->status);
  ps_sqlite_bind_text(st, 4, o->payment_status);
  ps_sqlite_bind_text(st, 5, o->saga_step);
  sqlite3_bind_int64(st, 6, o->subtotal);
  sqlite3_bind_int64(st, 7, o->discount);
  sqlite3_bind_int64(st, 8, o->total);
  ps_sqlite_bind_text(st, 9, o->currency);
  ps_sqlite_bind_text(st, 10, o->discount_code);
  ps_sqlite_bind_text(st, 11, o->address);
  ps_sqlite_bind_text(st, 12, o->payment_method);
  ps_sqlite_bind_text(st, 13, o->reservation_id);
  ps_sqlite_bind_text(st, 14, o->payment_id);
  ps_sqlite_bind_text(st, 15, o->idempotency_key);
  ps_sqlite_bind_text(st, 16, o->request_hash);
  sqlite3_bind_int(st, 17, o->response_status);
  ps_sqlite_bind_text(st, 18, o->response_body);
  ps_sqlite_bind_text(st, 19, o->failure);
  sqlite3_bind_int64(st, 20, o->created_at);
  sqlite3_bind_int64(st, 21, o->updated_at);
  rc = ps_sqlite_exec_done(st);
  for (size_t i = 0; rc == 0 && i < o->nitems; i++) {
    const order_item_t *it = &o->items[i];
    st = stmt(s, Q_ITEM);
    ps_sqlite_bind_text(st, 1, o->id);
    sqlite3_bind_int64(st, 2, (int64_t)i);
    ps_sqlite_bind_text(st, 3, it->product_id);
    ps_sqlite_bind_text(st, 4, it->variant);
    ps_sqlite_bind_text(st, 5, it->name);
    sqlite3_bind_int64(st, 6, it->unit_price);
    sqlite3_bind_int64(st, 7, it->quantity);
    sqlite3_bind_int64(st, 8, it->line_total);
    rc = ps_sqlite_exec_done(st);
  }
  for (size_t i = 0; rc == 0 && i < nevents; i++) rc = insert_event(s, &events[i], o->created_at);
  if (rc == 0) rc = commit(s);
  if (rc) rollback(s);
  return rc;
}

static int get_one(order_store_t *s, ps_arena_t *a, sqlite3_stmt *st, order_t *out) {
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? PS_ENOTFOUND : ps_sqlite_err(rc);
  }
  read_order_row(st, a, out);
  sqlite3_reset(st);
  return load_items(s, a, out);
}

static int s_get(order_store_t *s, ps_arena_t *a, const char *id, order_t *out) {
  sqlite3_stmt *st = stmt(s, Q_GET);
  ps_sqlite_bind_text(st, 1, id);
  return get_one(s, a, st, out);
}

static int s_get_by_key(order_store_t *s, ps_arena_t *a, const char *user_id, const char *key,
                        order_t *out) {
  sqlite3_stmt *st = stmt(s, Q_BY_KEY);
  ps_sqlite_bind_text(st, 1, user_id);
  ps_sqlite_bind_text(st, 2, key);
  return get_one(s, a, st, out);
}

static int s_list(order_store_t *s, ps_arena_t *a, const char *user_id, const order_cursor_t *after,
                  int limit, order_t **out, size_t *n) {
  sqlite3_stmt *st;
  if (after) {
    st = stmt(s, Q_LIST_AFTER);
    ps_sqlite_bind_text(st, 1, user_id);
    sqlite3_bind_int64(st, 2, after->created_at);
    sqlite3_bind_int64(st, 3, after->created_at);
    ps_sqlite_bind_text(st, 4, after->id);
    sqlite3_bind_int(st, 5, limit);
  } else {
    st = stmt(s, Q_LIST_FIRST);
    ps_sqlite_bind_text(st, 1, user_id);
    sqlite3_bind_int(st, 2, limit);
  }
  order_t *orders = ps_arena_alloc(a, (size_t)(limit > 0 ? limit : 1) * sizeof(*orders));
  size_t count = 0;
  int rc = SQLITE_DONE;
  while (count < (size_t)limit && (rc = sqlite3_step(st)) == SQLITE_ROW)
    read_order_row(st, a, &orders[count++]);
  if (count < (size_t)limit && rc != SQLITE_DONE) {
    sqlite3_reset(st);
    return ps_sqlite_err(rc);
  }
  sqlite3_reset(st);
  for (size_t i = 0; i < count; i++) {
    if ((rc = load_items(s, a, &orders[i]))) return rc;
  }
  *out = orders;
  *n = count;
  return 0;
}

static int s_change(order_store_t *s, const order_change_t *c) {
  int rc = begin(s);
  if (rc) return rc;
  sqlite3_stmt *st = stmt(s, Q_CHANGE);
  ps_sqlite_bind_text(st, 1, c->step);
  ps_sqlite_bind_text(st, 2, c->status);
  ps_sqlite_bind_text(st, 3, c->payment_status);
  ps_sqlite_bind_text(st, 4, c->payment_id);
  ps_sqlite_bind_text(st, 5, c->failure);
  sqlite3_bind_int(st, 6, c->response_status);
  ps_sqlite_bind_text(st, 7, c->response_body);
  sqlite3_bind_int64(st, 8, c->now);
  ps_sqlite_bind_text(st, 9, c->id);
  ps_sqlite_bind_text(st, 10, c->expect_step);
  ps_sqlite_bind_text(st, 11, c->expect_status);
  rc = ps_sqlite_exec_done(st);
  if (rc == 0 && sqlite3_changes(((sqlite_store_t *)s)->db) == 0) {
    st = stmt(s, Q_EXISTS);
    ps_sqlite_bind_text(st, 1, c->id);
    int step = sqlite3_step(st);
    sqlite3_reset(st);
    rc = step == SQLITE_ROW ? PS_ECONFLICT : step == SQLITE_DONE ? PS_ENOTFOUND : ps_sqlite_err(step);
  }
  for (size_t i = 0; rc == 0 && i < c->nevents; i++) rc = insert_event(s, &c->events[i], c->now);
  if (rc == 0) rc = commit(s);
  if (rc) rollback(s);
  return rc;
}

static int s_unfinished(order_store_t *s, ps_arena_t *a, int64_t before, int limit,
                        const char ***ids, size_t *n) {
  sqlite3_stmt *st = stmt(s, Q_UNFINISHED);
  sqlite3_bind_int64(st, 1, before);
  sqlite3_bind_int(st, 2, limit);
  const char **out = ps_arena_alloc(a, (size_t)(limit > 0 ? limit : 1) * sizeof(*out));
  size_t count = 0;
  int rc = SQLITE_DONE;
  while (count < (size_t)limit && (rc = sqlite3_step(st)) == SQLITE_ROW)
    out[count++] = ps_sqlite_text(a, st, 0);
  int err = count < (size_t)limit && rc != SQLITE_DONE ? ps_sqlite_err(rc) : 0;
  sqlite3_reset(st);
  *ids = out;
  *n = count;
  return err;
}

static int s_outbox_due(order_store_t *s, ps_arena_t *a, int64_t now,
                        const char *const *destinations, int limit, outbox_event_t **out,
                        size_t *n) {
  sqlite3_stmt *st = stmt(s, Q_DUE);
  sqlite3_bind_int64(st, 1, now);
  ps_sqlite_bind_text(st, 2, destinations && destinations[0] ? destinations[0] : NULL);
  ps_sqlite_bind_text(st, 3, destinations && destinations[0] && destinations[1] ? destinations[1] : NULL);
  sqlite3_bind_int(st, 4, limit);
  outbox_event_t *ev = ps_arena_alloc(a, (size_t)(limit > 0 ? limit : 1) * sizeof(*ev));
  size_t count = 0;
  int rc = SQLITE_DONE;
  while (count < (size_t)limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    outbox_event_t *e = &ev[count++];
    e->id = ps_sqlite_text(a, st, 0);
    e->destination = ps_sqlite_text(a, st, 1);
    e->type = ps_sqlite_text(a, st, 2);
    e->payload = ps_sqlite_text(a, st, 3);
    e->attempts = sqlite3_column_int64(st, 4);
    e->next_attempt_at = sqlite3_column_int64(st, 5);
  }
  int err = count < (size_t)limit && rc != SQLITE_DONE ? ps_sqlite_err(rc) : 0;
  sqlite3_reset(st);
  *out = ev;
  *n = count;
  return err;
}

static int s_outbox_sent(order_store_t *s, const char *id, const char *destination, int64_t now) {
  sqlite3_stmt *st = stmt(s, Q_SENT);
  sqlite3_bind_int64(st, 1, now);
  ps_sqlite_bind_text(st, 2, id);
  ps_sqlite_bind_text(st, 3, destination);
  return ps_sqlite_exec_done(st);
}

static int s_outbox_retry(order_store_t *s, const char *id, const char *destination,
                          int64_t next_attempt_at) {
  sqlite3_stmt *st = stmt(s, Q_RETRY);
  sqlite3_bind_int64(st, 1, next_attempt_at);
  ps_sqlite_bind_text(st, 2, id);
  ps_sqlite_bind_text(st, 3, destination);
  return ps_sqlite_exec_done(st);
}

static int s_outbox_pending(order_store_t *s, int64_t *n) {
  sqlite3_stmt *st = stmt(s, Q_PENDING);
  int rc = sqlite3_step(st);
  *n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_reset(st);
  return rc == SQLITE_ROW ? 0 : ps_sqlite_err(rc);
}

static int s_outbox_prune(order_store_t *s, int64_t before, int64_t *n) {
  sqlite3_stmt *st = stmt(s, Q_PRUNE);
  sqlite3_bind_int64(st, 1, before);
  int rc = ps_sqlite_exec_done(st);
  *n = rc ? 0 : sqlite3_changes(((sqlite_store_t *)s)->db);
  return rc;
}

static int s_ping(order_store_t *s) {
  sqlite3_stmt *st = stmt(s, Q_PING);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_ROW ? 0 : ps_sqlite_err(rc);
}

static void s_close(order_store_t *s) {
  sqlite_store_t *ss = (sqlite_store_t *)s;
  ps_sqlite_finalize_all(ss->st, Q__COUNT);
  sqlite3_close_v2(ss->db);
  ps_free(ss);
}

static const order_store_ops_t sqlite_ops = {
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

int order_store_sqlite_open(const char *path, order_store_t **out) {
  sqlite_store_t *ss = ps_calloc(1, sizeof(*ss));
  ss->base.ops = &sqlite_ops;
  if (ps_sqlite_open(path, schema, &ss->db)) {
    ps_free(ss);
    return PS_ESTORE;
  }
  if (ps_sqlite_prepare_all(ss->db, sql, Q__COUNT, ss->st)) {
    s_close(&ss->base);
    return PS_ESTORE;
  }
  *out = &ss->base;
  return 0;
}

