/* main.c - the order service: its configuration, its store (one SQLite connection shared by
 * every loop, or one PostgreSQL connection per loop), and its two periodic jobs, the recovery
 * worker and the core's outbox relay (lib/outbox.c); lib/skeleton.c runs the rest. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order.h"
#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/pg.h"
#include "polyshop/service.h"
#include "polyshop/sqlite.h"

static order_service_t svc;

/* On SQLite every thread uses one connection, under a lock. SQLite takes one writer at a time
 * anyway, and the checkout mostly writes; with a connection per thread, each commit made
 * every other connection drop its page cache and read its pages again (14% of the service's
 * CPU per checkout at 8 threads). PostgreSQL stores stay one per thread. */
static order_store_t *shared_store;
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;

/* The outbox relay: its rounds run on the worker pool with a store handle of their own (the
 * shared SQLite connection, or one more PostgreSQL connection), never a loop's. */
static order_thread_t relay_state;
static ps_outbox_source_t relay_source;
static ps_outbox_relay_t *relay;

/* Today's destinations: every order event to notification and analytics when their URLs are
 * set. */
#define ORDER_EVENT_ROUTES "order_*=NOTIFICATION_URL/internal/events,ANALYTICS_URL/internal/events"

static void config(ps_config_t *cfg, void *ctx) {
  const char *data_dir = ps_config_str(cfg, "POLYSHOP_DATA_DIR", "./data");
  static char default_url[4096];
  snprintf(default_url, sizeof(default_url), "sqlite://%s/order.db", data_dir);
  svc.store_url = ps_config_str(cfg, "ORDER_STORE", default_url);
  svc.user_url = ps_config_url(cfg, "USER_URL", 1);
  svc.product_url = ps_config_url(cfg, "PRODUCT_URL", 1);
  svc.payment_url = ps_config_url(cfg, "PAYMENT_URL", 1);
  svc.notification_url = ps_config_url(cfg, "NOTIFICATION_URL", 0);
  svc.analytics_url = ps_config_url(cfg, "ANALYTICS_URL", 0);
  svc.internal_token = ps_config_str(cfg, "POLYSHOP_INTERNAL_TOKEN", NULL);
  svc.default_payment_method = ps_config_str(cfg, "ORDER_DEFAULT_PAYMENT_METHOD", "pm_card_visa");
  svc.reservation_ttl = ps_config_int(cfg, "ORDER_RESERVATION_TTL", 900, 30, 86400);
  svc.payment_timeout_ms = ps_config_int(cfg, "ORDER_PAYMENT_TIMEOUT_MS", 5000, 100, 60000);
  svc.payment_settle_s = ps_config_int(cfg, "ORDER_PAYMENT_SETTLE_SECONDS", 60, 0, 86400);
  svc.recovery_interval_ms = ps_config_int(cfg, "ORDER_RECOVERY_INTERVAL_MS", 5000, 50, 3600000);
  svc.recovery_grace_s = ps_config_int(cfg, "ORDER_RECOVERY_GRACE_SECONDS", 15, 1, 86400);
  svc.outbox_retention_s = ps_config_int(cfg, "ORDER_OUTBOX_RETENTION_SECONDS", 7 * 86400, 0, 3650LL * 86400);
  svc.relay_interval_ms = ps_config_int(cfg, "ORDER_RELAY_INTERVAL_MS", 1000, 50, 3600000);
  svc.fault_point = ps_config_str(cfg, "ORDER_FAULT_POINT", NULL);
  ps_event_routes_from_env(cfg, ORDER_EVENT_ROUTES, &svc.event_routes);
  svc.pg_schema = ps_config_str(cfg, "ORDER_PG_SCHEMA", ORDER_PG_SCHEMA_DEFAULT);
  /* The worker must never take an order whose request is still waiting on a call: the grace
   * outlasts the longest step (a charge) plus one ordinary call. */
  if (svc.recovery_grace_s * 1000 < svc.payment_timeout_ms + 2000)
    ps_config_error(cfg, "ORDER_RECOVERY_GRACE_SECONDS (%lld) must be at least "
                    "ORDER_PAYMENT_TIMEOUT_MS/1000 + 2 (%lld)", svc.recovery_grace_s,
                    (svc.payment_timeout_ms + 2000 + 999) / 1000);
#ifdef ORDER_HAVE_PG
  int pg_ok = order_store_is_pg(svc.store_url);
#else
  int pg_ok = 0;
#endif
  if (!ps_sqlite_url_path(svc.store_url) && !pg_ok)
    ps_config_error(cfg, "ORDER_STORE is not a supported store URL (sqlite://PATH or postgresql://...)");
  if (!svc.pg_schema || !ps_pg_schema_ok(svc.pg_schema))
    ps_config_error(cfg, "ORDER_PG_SCHEMA must be 1 to 48 of a-z, 0-9 and _, not starting with a digit");
  if (svc.internal_token && strlen(svc.internal_token) < 16)
    ps_config_error(cfg, "POLYSHOP_INTERNAL_TOKEN must have at least 16 characters");
#ifndef POLYSHOP_TEST_BUILD
  if (svc.fault_point) ps_config_error(cfg, "ORDER_FAULT_POINT works only in test builds");
#endif
}

static int store_open(void *ctx) {
  order_store_t *st;
  int rc = order_store_open(svc.store_url, svc.pg_schema, &st);
  if (rc) {
    /* Not the URL itself: it may hold a password. */
    ps_log_error("cannot open the order store: %s", ps_strerror(rc));
    return rc == PS_ECONFIG ? PS_EIO : rc;
  }
  int pg = order_store_is_pg(svc.store_url);
  if (!pg) shared_store = st;
  order_store_metrics_register(pg ? "postgres" : "sqlite", pg ? NULL : &shared_lock);
  order_saga_metrics_register();
  order_events_route_by(svc.event_routes);
  relay_state.svc = &svc;
  relay_state.store = order_store_timed(st, pg);
  order_outbox_source(&relay_state, &relay_source);
  relay = ps_outbox_relay_new(svc.event_routes, &relay_source);
  return 0;
}

static void store_close(void *ctx) {
  ps_outbox_relay_free(relay);
  relay_state.store->ops->close(relay_state.store);
  ps_free(relay_state.call_token);
  if (shared_store) shared_store->ops->close(shared_store);
  shared_store = NULL;
  ps_event_routes_free(svc.event_routes);
}

static void *thread_init(void *ctx) {
  order_thread_t *t = ps_calloc(1, sizeof(*t));
  t->svc = &svc;
  order_store_t *inner = shared_store;
  if (!inner && order_store_open(svc.store_url, svc.pg_schema, &inner)) {
    /* Checked at start on the main thread, so this is a store gone bad since: no way to serve. */
    ps_log_error("cannot open the order store");
    abort();
  }
  t->store = order_store_timed(inner, shared_store == NULL);
  if (!(t->client = ps_client_new(NULL))) {
    ps_log_error("cannot start libcurl");
    abort();
  }
  return t;
}

static void thread_cleanup(void *thread_ctx) {
  order_thread_t *t = thread_ctx;
  ps_client_free(t->client);
  t->store->ops->close(t->store);
  ps_free(t->call_token);
  ps_free(t);
}

static int ping(void *ctx, void *thread_ctx) {
  order_thread_t *t = thread_ctx;
  return t->store->ops->ping(t->store);
}

static void recover_cb(void *ctx, void *thread_ctx) {
  order_thread_t *t = thread_ctx;
  t->traceparent = NULL;
  order_recover(t);
}

static void relay_cb(void *ctx, void *thread_ctx) {
  ps_outbox_relay_run(relay, ps_server_thread_base());
}

static const ps_service_job_t jobs[] = {
    /* at start: finish what a crash left behind */
    {"recovery", &svc.recovery_interval_ms, 1, recover_cb},
    {"relay", &svc.relay_interval_ms, 0, relay_cb},
};

/* A checkout holds its event loop while it waits on the user, product and payment services
 * (about 2 ms of waiting to 0.5 ms of work), and a keep-alive connection's next request waits
 * for its loop: so this service runs many loops per core. With one per core, two checkouts at
 * a time were the ceiling (740/s); at 1,000 orders/s on 2 cores, p99 was 40-138 ms with 8
 * loops, 17-25 ms with 16 and 13-32 ms with 32 (same runs, back to back; 21 MB resident with
 * 32). */
int main(void) {
  ps_service_def_t def = {
      .name = "order", .listen = "127.0.0.1:8103", .loops_per_core = 16,
      .routes = order_routes, .nroutes = order_nroutes, .ctx = &svc, .config_cb = config,
      .jwt_keys = &svc.keys, .store_open_cb = store_open, .store_close_cb = store_close,
      .store_ping_cb = ping, .thread_init_cb = thread_init, .thread_cleanup_cb = thread_cleanup,
      .jobs = jobs, .njobs = sizeof(jobs) / sizeof(jobs[0])};
  return ps_service_main(&def);
}
