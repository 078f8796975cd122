/* store.h - what the order service needs from its store, whatever the engine: orders with
 * their items and saga state, and the outbox of events, written together in one transaction.
 *
 * An order_store_t is not thread-safe: each thread calls its own. PostgreSQL: one connection
 * per event-loop thread. SQLite: the loops share one connection, each through its own
 * order_store_timed() wrapper that holds a shared lock around every call (main.c). Strings filled into out-structures come from the arena passed
 * in and live as long as it. Every call returns 0 or a PS_E* code: PS_ENOTFOUND, PS_EEXISTS
 * (the user already used the Idempotency-Key), PS_ECONFLICT (a compare-and-set found another
 * state), PS_ESTORE / PS_EUNAVAIL for engine failures.
 */
#ifndef POLYSHOP_ORDER_STORE_H
#define POLYSHOP_ORDER_STORE_H
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "polyshop/arena.h"

typedef struct {
  const char *product_id;
  const char *variant;   /* variant SKU, or NULL */
  const char *name;      /* as the product service named it at checkout */
  int64_t unit_price;    /* minor units, from the product service, never the client */
  int64_t quantity;
  int64_t line_total;
} order_item_t;

typedef struct {
  const char *id;              /* UUID */
  const char *user_id;
  const char *status;          /* new, processing, shipped, delivered, cancelled, failed */
  const char *payment_status;  /* pending, paid, failed, unknown, refunded */
  const char *saga_step;       /* see order.h */
  int64_t subtotal, discount, total; /* minor units */
  const char *currency;        /* ISO 4217 */
  const char *discount_code;   /* NULL when none */
  const char *address;         /* JSON object text */
  const char *payment_method;
  const char *reservation_id;
  const char *payment_id;      /* NULL until charged */
  const char *idempotency_key;
  const char *request_hash;    /* SHA-256 hex of the canonical request body */
  int response_status;         /* the answer given to the first request, 0 until sent */
  const char *response_body;   /* its body (JSON text), NULL until sent */
  const char *failure;         /* why the order failed, or NULL */
  int64_t created_at, updated_at; /* seconds since the epoch */
  order_item_t *items;
  size_t nitems;
} order_t;

/* An outbox row: one event for one destination ("notification" or "analytics"). */
typedef struct {
  const char *id;          /* event id, the consumers' de-duplication key */
  const char *destination;
  const char *type;        /* order_created, order_status_changed */
  const char *payload;     /* JSON text */
  int64_t attempts;
  int64_t next_attempt_at;
} outbox_event_t;

enum { ORDER_CHANGE_EVENTS_MAX = 4 };

/* A compare-and-set on one order: when the order's saga_step equals expect_step (NULL: any)
 * and its status equals expect_status (NULL: any), sets every non-NULL / non-zero field below
 * and writes the events to the outbox, all in one transaction. PS_ECONFLICT when the
 * expectation does not hold, PS_ENOTFOUND when there is no such order. */
typedef struct {
  const char *id;
  const char *expect_step, *expect_status;
  const char *step, *status, *payment_status, *payment_id, *failure;
  int response_status;        /* 0: unchanged */
  const char *response_body;  /* NULL: unchanged */
  int64_t now;
  outbox_event_t events[ORDER_CHANGE_EVENTS_MAX];
  size_t nevents;
} order_change_t;

/* Where a history page ends. */
typedef struct {
  int64_t created_at;
  const char *id;
} order_cursor_t;

typedef struct order_store order_store_t;

typedef struct {
  /* Writes the order, its items and the events in one transaction. PS_EEXISTS when the user
   * already has an order with this idempotency key (nothing written). */
  int (*create)(order_store_t *s, const order_t *o, const outbox_event_t *events, size_t nevents);
  /* An order with its items. */
  int (*get)(order_store_t *s, ps_arena_t *a, const char *id, order_t *out);
  int (*get_by_key)(order_store_t *s, ps_arena_t *a, const char *user_id, const char *key,
                    order_t *out);
  /* The user's orders, newest first, with items; after = NULL for the first page. Returns at
   * most limit orders in *out (arena array) and their count in *n. */
  int (*list)(order_store_t *s, ps_arena_t *a, const char *user_id, const order_cursor_t *after,
              int limit, order_t **out, size_t *n);
  int (*change)(order_store_t *s, const order_change_t *c);
  /* Ids of orders whose saga is not final and that were last updated before `before`. */
  int (*unfinished)(order_store_t *s, ps_arena_t *a, int64_t before, int limit,
                    const char ***ids, size_t *n);

  /* Outbox: due events (not sent, next_attempt_at <= now) of the given destinations. */
  int (*outbox_due)(order_store_t *s, ps_arena_t *a, int64_t now, const char *const *destinations,
                    int limit, outbox_event_t **out, size_t *n);
  int (*outbox_sent)(order_store_t *s, const char *id, const char *destination, int64_t now);
  int (*outbox_retry)(order_store_t *s, const char *id, const char *destination,
                      int64_t next_attempt_at);
  /* Deletes rows sent before `before`; *n says how many. */
  int (*outbox_prune)(order_store_t *s, int64_t before, int64_t *n);
  /* Counts of pending (unsent) outbox rows, for tests and /metrics. */
  int (*outbox_pending)(order_store_t *s, int64_t *n);

  int (*ping)(order_store_t *s);
  void (*close)(order_store_t *s);
} order_store_ops_t;

struct order_store {
  const order_store_ops_t *ops;
};

/* Opens a store for url: "sqlite:///path/order.db", "sqlite://relative/path.db", or
 * "postgresql://..." / "postgres://..." (tables in schema pg_schema, NULL for
 * ORDER_PG_SCHEMA_DEFAULT; ignored for SQLite). Creates the tables when missing. The caller
 * owns *out and closes it with (*out)->ops->close. Returns 0 or PS_ECONFIG (unknown scheme, a
 * bad schema name, or PostgreSQL not built in), PS_ESTORE / PS_EUNAVAIL. */
#define ORDER_PG_SCHEMA_DEFAULT "ordering"
int order_store_open(const char *url, const char *pg_schema, order_store_t **out);
int order_store_sqlite_open(const char *path, order_store_t **out);
int order_store_pg_open(const char *url, const char *schema, order_store_t **out);
/* Registers the polyshop_store_call_seconds histograms (engine "sqlite" or "postgres"); call
 * once before the server starts. With shared_lock set, one inner store is shared by several
 * threads and every timed call holds the lock (its wait counts in the timing).
 * order_store_timed wraps a store so that every call is timed into them; the wrapper closes
 * inner with itself only when owns_inner is set. */
void order_store_metrics_register(const char *engine, pthread_mutex_t *shared_lock);
order_store_t *order_store_timed(order_store_t *inner, int owns_inner);

/* 1 when url names a PostgreSQL store. */
int order_store_is_pg(const char *url);

#endif
