/* main.c - the order service: its configuration, its store (thread.c), and its two periodic
 * jobs, the recovery pass and the core's outbox relay (lib/outbox.c), both of which run their
 * rounds on the worker pool; lib/skeleton.c runs the rest. */
#include <stdatomic.h>
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
#include "polyshop/work.h"

static order_service_t svc;

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
  order_store_metrics_register(pg ? "postgres" : "sqlite", pg ? NULL : order_threads_share(st));
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
  order_threads_unshare();
  ps_event_routes_free(svc.event_routes);
}

static void *thread_init(void *ctx) { return order_thread_new(&svc, ps_server_thread_base()); }

static void thread_cleanup(void *thread_ctx) { order_thread_free(thread_ctx); }

static int ping(void *ctx, void *thread_ctx) {
  order_thread_t *t = thread_ctx;
  return t->store->ops->ping(t->store);
}

/* A recovery round calls other services and waits for them: it runs on a pool thread with
 * that thread's own state, one round at a time. */
static atomic_int recovering;

static void recover_work(void *arg) { order_recover(order_pool_thread(&svc)); }
static void recover_after(void *arg, int status) { atomic_store(&recovering, 0); }

static void recover_cb(void *ctx, void *thread_ctx) {
  if (atomic_exchange(&recovering, 1)) return; /* the last round is still running */
  if (ps_work_queue(ps_server_thread_base(), recover_work, recover_after, NULL))
    atomic_store(&recovering, 0); /* the pool is full: the next tick tries again */
}

static void relay_cb(void *ctx, void *thread_ctx) {
  ps_outbox_relay_run(relay, ps_server_thread_base());
}

static const ps_service_job_t jobs[] = {
    /* at start: finish what a crash left behind */
    {"recovery", &svc.recovery_interval_ms, 1, recover_cb},
    {"relay", &svc.relay_interval_ms, 0, relay_cb},
};

/* One loop per core: a checkout no longer holds its loop while it waits on the user, product
 * and payment services (checkout.c). Before, the service ran 16 loops per core to hide those
 * waits (docs/order.md has the history). */
int main(void) {
  ps_service_def_t def = {
      .name = "order", .listen = "127.0.0.1:8103",
      .routes = order_routes, .nroutes = order_nroutes, .ctx = &svc, .config_cb = config,
      .jwt_keys = &svc.keys, .store_open_cb = store_open, .store_close_cb = store_close,
      .store_ping_cb = ping, .thread_init_cb = thread_init, .thread_cleanup_cb = thread_cleanup,
      .jobs = jobs, .njobs = sizeof(jobs) / sizeof(jobs[0])};
  return ps_service_main(&def);
}
