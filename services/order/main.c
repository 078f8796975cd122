/* main.c - the order service: reads its configuration, opens its store, starts the recovery
 * worker and the outbox relay on one event loop, and serves until SIGTERM. */
#include <event2/event.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "order.h"
#include "polyshop/alloc.h"
#include "polyshop/config.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/service.h"
#include "polyshop/pg.h"
#include "polyshop/sqlite.h"
#include "polyshop/work.h"

/* The first loop to start runs the timers; one worker is enough and keeps them from racing.
 * The recovery worker and the relay call other services and wait for them: each round runs
 * on a worker-pool thread, and the loop's timer only starts it (one round at a time). */
static atomic_int timers_taken;

typedef struct {
  order_service_t *svc;
  struct event *ev;
  long long interval_ms;
  int (*round)(order_thread_t *t); /* order_recover or order_relay */
} periodic_t;

static periodic_t recovery, relay;

static void arm(struct event *ev, long long ms) {
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
  event_add(ev, &tv);
}

static void round_work(void *arg) {
  periodic_t *p = arg;
  p->round(order_pool_thread(p->svc));
}

static void round_after(void *arg, int status) {
  periodic_t *p = arg;
  if (status == 0) arm(p->ev, p->interval_ms); /* PS_ECANCELED: the service is stopping */
}

static void periodic_cb(evutil_socket_t fd, short what, void *arg) {
  periodic_t *p = arg;
  if (ps_work_queue(event_get_base(p->ev), round_work, round_after, p))
    arm(p->ev, p->interval_ms); /* the pool is full: try at the next tick */
}

static void periodic_start(periodic_t *p, order_service_t *svc, int (*round)(order_thread_t *),
                           long long interval_ms, long long first_ms) {
  *p = (periodic_t){.svc = svc, .interval_ms = interval_ms, .round = round};
  p->ev = evtimer_new(ps_server_thread_base(), periodic_cb, p);
  arm(p->ev, first_ms);
}

static void *thread_init(void *ctx) {
  order_service_t *svc = ctx;
  order_thread_t *t = order_thread_new(svc, ps_server_thread_base());
  int expected = 0;
  if (atomic_compare_exchange_strong(&timers_taken, &expected, 1)) {
    /* at start: finish what a crash left behind */
    periodic_start(&recovery, svc, order_recover, svc->recovery_interval_ms, 0);
    periodic_start(&relay, svc, order_relay, svc->relay_interval_ms, svc->relay_interval_ms);
  }
  return t;
}

static void thread_cleanup(void *thread_ctx) {
  order_thread_t *t = thread_ctx;
  if (recovery.ev && event_get_base(recovery.ev) == ps_server_thread_base()) {
    event_free(recovery.ev);
    event_free(relay.ev);
    recovery.ev = relay.ev = NULL;
  }
  order_thread_free(t);
}

static int ready(void *ctx, void *thread_ctx) {
  order_thread_t *t = thread_ctx;
  return t->store->ops->ping(t->store);
}

int main(void) {
  ps_config_t cfg;
  ps_service_init(&cfg, "order");

  order_service_t svc = {0};
  ps_server_config_t server;
  ps_server_config_from_env(&server, &cfg, "127.0.0.1:8103");
  /* A checkout holds its event loop while it waits on the user, product and payment
   * services (about 2 ms of waiting to 0.5 ms of work), and a keep-alive connection's next
   * request waits for its loop: so this service runs many loops per core. With one per core,
   * two checkouts at a time were the ceiling (740/s); at 1,000 orders/s on 2 cores, p99 was
   * 40-138 ms with 8 loops, 17-25 ms with 16 and 13-32 ms with 32 (same runs, back to back;
   * 21 MB resident with 32). */
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  long loops = cores > 1 ? 16 * cores : 16;
  if (loops > 256) loops = 256;
  server.threads = (int)ps_config_int(&cfg, "POLYSHOP_THREADS", loops, 1, 256);
  const char *data_dir = ps_config_str(&cfg, "POLYSHOP_DATA_DIR", "./data");
  char default_url[4096];
  snprintf(default_url, sizeof(default_url), "sqlite://%s/order.db", data_dir);
  svc.store_url = ps_config_str(&cfg, "ORDER_STORE", default_url);
  svc.user_url = ps_config_url(&cfg, "USER_URL", 1);
  svc.product_url = ps_config_url(&cfg, "PRODUCT_URL", 1);
  svc.payment_url = ps_config_url(&cfg, "PAYMENT_URL", 1);
  svc.notification_url = ps_config_url(&cfg, "NOTIFICATION_URL", 0);
  svc.analytics_url = ps_config_url(&cfg, "ANALYTICS_URL", 0);
  svc.internal_token = ps_config_str(&cfg, "POLYSHOP_INTERNAL_TOKEN", NULL);
  svc.default_payment_method = ps_config_str(&cfg, "ORDER_DEFAULT_PAYMENT_METHOD", "pm_card_visa");
  svc.reservation_ttl = ps_config_int(&cfg, "ORDER_RESERVATION_TTL", 900, 30, 86400);
  svc.payment_timeout_ms = ps_config_int(&cfg, "ORDER_PAYMENT_TIMEOUT_MS", 5000, 100, 60000);
  svc.payment_settle_s = ps_config_int(&cfg, "ORDER_PAYMENT_SETTLE_SECONDS", 60, 0, 86400);
  svc.recovery_interval_ms = ps_config_int(&cfg, "ORDER_RECOVERY_INTERVAL_MS", 5000, 50, 3600000);
  svc.recovery_grace_s = ps_config_int(&cfg, "ORDER_RECOVERY_GRACE_SECONDS", 15, 1, 86400);
  svc.outbox_retention_s = ps_config_int(&cfg, "ORDER_OUTBOX_RETENTION_SECONDS", 7 * 86400, 0, 3650LL * 86400);
  svc.relay_interval_ms = ps_config_int(&cfg, "ORDER_RELAY_INTERVAL_MS", 1000, 50, 3600000);
  svc.fault_point = ps_config_str(&cfg, "ORDER_FAULT_POINT", NULL);
  /* The worker must never take an order whose request is still waiting on a call: the grace
   * outlasts the longest step (a charge) plus one ordinary call. */
  if (svc.recovery_grace_s * 1000 < svc.payment_timeout_ms + 2000)
    ps_config_error(&cfg, "ORDER_RECOVERY_GRACE_SECONDS (%lld) must be at least "
                    "ORDER_PAYMENT_TIMEOUT_MS/1000 + 2 (%lld)", svc.recovery_grace_s,
                    (svc.payment_timeout_ms + 2000 + 999) / 1000);
  char err[256];
  if (ps_jwt_keys_from_env(&svc.keys, err, sizeof(err))) ps_config_error(&cfg, "%s", err);
  svc.pg_schema = ps_config_str(&cfg, "ORDER_PG_SCHEMA", ORDER_PG_SCHEMA_DEFAULT);
#ifdef ORDER_HAVE_PG
  int pg_ok = order_store_is_pg(svc.store_url);
#else
  int pg_ok = 0;
#endif
  if (!ps_sqlite_url_path(svc.store_url) && !pg_ok)
    ps_config_error(&cfg, "ORDER_STORE is not a supported store URL (sqlite://PATH or postgresql://...)");
  if (!svc.pg_schema || !ps_pg_schema_ok(svc.pg_schema))
    ps_config_error(&cfg, "ORDER_PG_SCHEMA must be 1 to 48 of a-z, 0-9 and _, not starting with a digit");
  if (svc.internal_token && strlen(svc.internal_token) < 16)
    ps_config_error(&cfg, "POLYSHOP_INTERNAL_TOKEN must have at least 16 characters");
#ifndef POLYSHOP_TEST_BUILD
  if (svc.fault_point) ps_config_error(&cfg, "ORDER_FAULT_POINT works only in test builds");
#endif
  ps_config_exit_on_error(&cfg);

  /* Open the store once here so a bad path or a dead engine fails the start, loudly. */
  order_store_t *st;
  int rc = order_store_open(svc.store_url, svc.pg_schema, &st);
  if (rc) {
    /* Not the URL itself: it may hold a password. */
    ps_log_error("cannot open the order store: %s", ps_strerror(rc));
    return 1;
  }
  if (order_store_is_pg(svc.store_url))
    st->ops->close(st);
  else
    order_threads_share(st);
  order_store_metrics_register(order_store_is_pg(svc.store_url) ? "postgres" : "sqlite");
  order_saga_metrics_register();

  ps_service_t def = {.name = "order", .routes = order_routes, .nroutes = order_nroutes,
                      .ctx = &svc, .thread_init_cb = thread_init,
                      .thread_cleanup_cb = thread_cleanup, .ready_cb = ready,
                      .jwt_keys = &svc.keys};
  rc = ps_server_run(&def, &server);
  ps_work_shutdown();
  order_threads_unshare();
  ps_client_global_cleanup();
  return rc ? 1 : 0;
}
