/* order.h - what the order service's files share: the order model (statuses, saga steps and
 * their legal transitions), the server-side pricing (totals and discount codes), the
 * service's configuration and per-thread state, and the checkout saga's entry points. */
#ifndef POLYSHOP_ORDER_H
#define POLYSHOP_ORDER_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "polyshop/arena.h"
#include "polyshop/auth.h"
#include "polyshop/client.h"
#include "polyshop/http.h"
#include "polyshop/money.h"
#include "polyshop/outbox.h"
#include "store.h"

struct event_base;

/* Limits of an order request, documented in docs/order.md. */
enum {
  ORDER_ITEMS_MAX = 100,
  ORDER_QTY_MAX = 1000,
  ORDER_PRODUCT_ID_MAX = 64,
  ORDER_VARIANT_MAX = 64,
  ORDER_LIST_LIMIT_MAX = 100,
  ORDER_LIST_LIMIT_DEFAULT = 20,
  ORDER_ADDRESS_FIELD_MAX = 200,
  ORDER_DISCOUNT_CODE_MAX = 32,
};

/* --- the lifecycle ---------------------------------------------------------------------- */

/* Who asks for a status change: the checkout saga itself, the admin, or the order's owner. */
typedef enum { ORDER_ACTOR_SYSTEM = 0, ORDER_ACTOR_ADMIN, ORDER_ACTOR_OWNER } order_actor_t;

/* Returns 1 when status is one of new, processing, shipped, delivered, cancelled, failed. */
int order_status_valid(const char *status);

/* Returns 1 when actor may move an order from one status to another:
 *   system: new -> processing (payment captured), new -> failed;
 *   admin:  processing -> shipped, shipped -> delivered, processing -> cancelled;
 *   owner:  processing -> cancelled.
 * Everything else (including a status to itself) is 0. */
int order_transition_ok(const char *from, const char *to, order_actor_t actor);

/* Saga steps, persisted in orders.saga_step:
 *   pending   order written; the reservation (id chosen in advance), the charge and the
 *             commit maybe made: the checkout writes no step between its calls, so recovery
 *             asks the payment service whether the order was charged
 *   reserved  stock reserved, charge maybe made (written by earlier versions only)
 *   charged   payment captured, reservation not yet committed (the recovery worker)
 *   committed final: paid and stock committed (status processing and beyond)
 *   releasing failed (status failed); giving the stock back and making sure no money stays
 *   released  final: failed, stock released, nothing captured (or refunded)
 *   refunding cancelled (status cancelled); refunding the payment and giving the stock back
 *   refunded  final: cancelled after payment, money returned, stock back */
#define ORDER_STEP_PENDING "pending"
#define ORDER_STEP_RESERVED "reserved"
#define ORDER_STEP_CHARGED "charged"
#define ORDER_STEP_COMMITTED "committed"
#define ORDER_STEP_RELEASING "releasing"
#define ORDER_STEP_RELEASED "released"
#define ORDER_STEP_REFUNDING "refunding"
#define ORDER_STEP_REFUNDED "refunded"

/* Returns 1 for a final saga step (committed, released, refunded). */
int order_step_final(const char *step);

/* --- pricing ---------------------------------------------------------------------------- */

typedef enum { DISCOUNT_PERCENT = 0, DISCOUNT_FIXED } discount_kind_t;

typedef struct {
  const char *code;      /* upper-case, e.g. "WELCOME10" */
  discount_kind_t kind;
  int64_t value;         /* percent (1..100) or minor units */
  int64_t min_subtotal;  /* minor units the subtotal must reach, 0 for none */
} discount_t;

/* The built-in codes: WELCOME10 (10 % off), FLAT500 (500 minor units off subtotals of at least
 * 1000), HALF (50 % off, for demos). */
extern const discount_t order_discounts[];
extern const size_t order_ndiscounts;

/* Finds a code (case-insensitive) in table[n]; NULL when unknown. */
const discount_t *order_discount_find(const discount_t *table, size_t n, const char *code);

/* The discount in minor units for subtotal: a percentage rounds down, a fixed amount never
 * exceeds the subtotal, and nothing applies below min_subtotal. */
int64_t order_discount_amount(const discount_t *d, int64_t subtotal);

/* line = unit_price * quantity. Returns 0, or PS_ERANGE when a value is negative or the
 * product passes PS_MONEY_MAX (money.h: the most one payment can take, so an order that
 * could never be charged is refused before any stock is reserved). */
int order_line_total(int64_t unit_price, int64_t quantity, int64_t *out);
/* *sum += v with the same range check. */
int order_money_add(int64_t *sum, int64_t v);

/* --- service state ---------------------------------------------------------------------- */

typedef struct {
  const char *store_url;
  const char *pg_schema;         /* PostgreSQL schema of the tables */
  ps_jwt_keys_t keys;
  const char *user_url;          /* required */
  const char *product_url;       /* required */
  const char *payment_url;       /* required */
  const char *notification_url;  /* optional: events stay pending while unset */
  const char *analytics_url;     /* optional */
  ps_event_routes_t *event_routes; /* POLYSHOP_EVENT_ROUTES: where each event type goes */
  const char *internal_token;    /* X-Internal-Token for /internal calls, may be NULL */
  const char *default_payment_method;
  long long reservation_ttl;     /* seconds */
  long long payment_timeout_ms;
  long long payment_settle_s;    /* how long a timed-out charge is watched for a late capture */
  long long recovery_interval_ms;
  long long recovery_grace_s;    /* an unfinished order is left to its handler this long */
  long long relay_interval_ms;
  long long outbox_retention_s;  /* sent outbox rows are kept this long */
  const char *fault_point;       /* test builds: _exit(137) at this step */
} order_service_t;

typedef struct {
  order_store_t *store;
  /* Event-loop threads call out with loop_client (non-blocking, on their loop); pool threads
   * (offload.c, the recovery worker, the relay) with client (blocking). The other is NULL. */
  ps_client_t *loop_client;
  ps_client_t *client;
  order_service_t *svc;
  int64_t last_prune; /* when sent outbox rows were last pruned (relay's own state) */
  /* The admin token this service sends on its calls, signed once a minute rather than per
   * call (it is valid for the keys' access TTL, 15 minutes by default). */
  char *call_token;
  int64_t call_token_at;
} order_thread_t;

extern const ps_route_t order_routes[];
extern const size_t order_nroutes;

/* --- the saga (saga.c) ------------------------------------------------------------------- */

/* Outcome of talking to another service. */
typedef struct {
  int err;          /* 0, or the PS_E* code of the failure */
  long status;      /* HTTP status, 0 when none */
  const char *body; /* answer body (arena), may be NULL */
} order_call_result_t;

/* Dies (_exit 137, like SIGKILL) when the test build's ORDER_FAULT_POINT equals point. */
void order_fault(const order_service_t *svc, const char *point);

/* Registers the polyshop_order_call_seconds{target} histograms; once, before the server
 * starts. order_call_observe records one call to url that started at t0 (ps_now_ns). */
void order_saga_metrics_register(void);
void order_call_observe(const order_service_t *svc, const char *url, unsigned long long t0);

/* The per-thread state of an event loop (base set: a non-blocking client on that loop) or of a
 * pool thread (base NULL: a blocking client). Opens the thread's store (or takes the shared
 * SQLite one, see thread.c); aborts when it cannot, since the store was checked at start.
 * order_thread_free closes and frees it. */
order_thread_t *order_thread_new(order_service_t *svc, struct event_base *base);
void order_thread_free(order_thread_t *t);
/* On SQLite all threads share the store opened at start: order_threads_share, before the
 * server starts, takes it and returns the lock its users take (for order_store_timed's
 * metrics); order_threads_unshare closes it after the server stopped. */
pthread_mutex_t *order_threads_share(order_store_t *st);
void order_threads_unshare(void);
/* The calling pool thread's state, made on first use and freed when the thread ends. */
order_thread_t *order_pool_thread(order_service_t *svc);

/* One blocking call to another service with the internal token and the request id, from a
 * thread that is not an event loop (t->client). */
int order_call(order_thread_t *t, ps_arena_t *a, const char *method, const char *url,
               const char *body, const char *idem_key, long timeout_ms, const char *request_id,
               order_call_result_t *out);

/* The same call started on t's loop (t->loop_client), carrying req's request id and a child
 * of its traceparent; cb runs later on that loop with the outcome, exactly once (also when
 * the call could not start, then with r->err set). Everything lives in arena a. */
typedef void (*order_call_cb)(const order_call_result_t *r, void *arg);
void order_call_start(order_thread_t *t, ps_arena_t *a, const char *method, const char *url,
                      const char *body, const char *idem_key, long timeout_ms, ps_req_t *req,
                      order_call_cb cb, void *arg);
/* GET url with the client's own Authorization header (the user service's /users/me). */
void order_call_user_start(order_thread_t *t, ps_arena_t *a, const char *url,
                           const char *authorization, ps_req_t *req, order_call_cb cb,
                           void *arg);

/* What the answer to a reservation commit means: 0, PS_ENOTFOUND / PS_ECONFLICT (expired or
 * released), or a transport / upstream error. */
int order_commit_result(const order_call_result_t *r, const char *reservation_id,
                        const char *request_id);
/* The store's side of a commit that answered commit_rc: on 0 the order moves to processing
 * with its stored answer; on PS_ENOTFOUND/PS_ECONFLICT it fails (step releasing) and
 * *release is set, so the caller runs order_finish_release. Returns 0 or a PS_E* code. */
int order_after_commit(order_thread_t *t, ps_arena_t *a, order_t *o, int commit_rc,
                       int *release);

/* Compensations and forward steps shared by the handler and the recovery worker. Each is
 * idempotent. Returns 0 or a PS_E* code (PS_ENOTFOUND/PS_ECONFLICT when the product service
 * no longer knows the reservation or refuses it). */
int order_reservation_release(order_thread_t *t, ps_arena_t *a, const char *reservation_id,
                              const char *request_id);
int order_reservation_commit(order_thread_t *t, ps_arena_t *a, const char *reservation_id,
                             const char *request_id);
/* Refunds payment_id in full; 0 also when it was already refunded. */
int order_refund(order_thread_t *t, ps_arena_t *a, const char *payment_id, int64_t amount,
                 const char *request_id);
/* Asks the payment service whether the order was charged: *payment_id is set (arena) when a
 * captured payment exists, NULL when none. Returns 0 or a PS_E* code (unknown: try later). */
int order_payment_lookup(order_thread_t *t, ps_arena_t *a, const order_t *o,
                         const char **payment_id);

/* The Idempotency-Key sent to the payment service for an order. */
char *order_payment_key(ps_arena_t *a, const char *order_id);

/* From o->saga_step, once the order is paid (o->payment_id and payment_status set): step
 * "charged" for the recovery worker, "pending" in the checkout itself. Commits the
 * reservation and moves the order to processing; when the reservation can no longer be
 * committed, refunds and fails the order. 0 when final (or taken over by another worker). */
int order_finish_charged(order_thread_t *t, ps_arena_t *a, order_t *o, const char *request_id);
/* From step releasing / refunding: the compensations (release, lookup and refund). */
int order_finish_release(order_thread_t *t, ps_arena_t *a, order_t *o);
int order_finish_refund(order_thread_t *t, ps_arena_t *a, order_t *o);

/* Finishes or compensates every order whose saga stopped mid-way more than grace seconds ago
 * (recovery worker). Returns the number of orders brought to a final step. */
int order_recover(order_thread_t *t);
/* The order outbox as a source of the core relay (outbox.h): every call goes through
 * t->store, on the relay's pool thread; t is the relay's own (not a loop's). */
void order_outbox_source(order_thread_t *t, ps_outbox_source_t *out);
/* Where order_event writes each event type (the parsed POLYSHOP_EVENT_ROUTES); set once
 * before the server starts. Unset: notification and analytics. */
void order_events_route_by(const ps_event_routes_t *routes);

/* Builds the public JSON of an order with its items (new reference). */
json_t *order_json(const order_t *o);

/* Builds an event payload and appends it to c (the store writes it with the change). */
void order_event(ps_arena_t *a, order_change_t *c, const char *type, const order_t *o,
                 const char *from_status, const char *to_status);

char *order_sha256_hex(ps_arena_t *a, const void *data, size_t len);
int64_t order_now(void);

#endif
