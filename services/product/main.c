/* main.c - the product service: configuration from the environment, the store (migrated and,
 * when asked, filled with the demo catalog before the first request), one store connection
 * per event-loop thread, and the reservation sweeper as a periodic job; lib/skeleton.c runs
 * the rest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/service.h"
#include "polyshop/metrics.h"
#include "product.h"
#include "store.h"

void product_sweep(product_store_t *s) {
  /* Bounded batches keep each write transaction short; a backlog is finished over a few
   * ticks instead of holding the write lock. */
  for (int round = 0; round < 10; round++) {
    int count = 0;
    int rc = s->ops->sweep(s, (int64_t)time(NULL), 200, &count);
    if (rc) {
      ps_log_warn("reservation sweep failed: %s", ps_strerror(rc));
      return;
    }
    if (count) ps_log_info("sweeper returned the stock of %d expired reservations", count);
    if (count < 200) return;
  }
}

static product_service_t svc;
static int demo, demo_size;

static void sweep_cb(void *ctx, void *thread_ctx) {
  product_thread_t *t = thread_ctx;
  product_sweep(t->store);
}

static void *thread_init(void *ctx) {
  product_thread_t *t = ps_calloc(1, sizeof(*t));
  product_store_t *inner;
  int rc = product_store_open(svc.store_url, &inner);
  if (rc) {
    ps_log(PS_LOG_FATAL, NULL, "cannot open the product store: %s", ps_strerror(rc));
    abort();
  }
  t->store = product_store_timed(inner);
  return t;
}

static void thread_cleanup(void *thread_ctx) {
  product_thread_t *t = thread_ctx;
  if (!t) return;
  if (t->store) t->store->ops->close(t->store);
  ps_free(t);
}

static int ping(void *ctx, void *thread_ctx) {
  product_thread_t *t = thread_ctx;
  return t->store->ops->ping(t->store);
}

/* Loads the demo catalog when asked and the store has no product yet. */
static int maybe_load_demo(int size) {
  product_store_t *s;
  int rc = product_store_open(svc.store_url, &s);
  if (rc) return rc;
  int64_t n = 0;
  rc = s->ops->product_count(s, &n);
  if (rc == 0 && n == 0) {
    unsigned long long t0 = ps_now_ns();
    rc = product_demo_load(s, size, 20261124u);
    if (rc == 0)
      ps_log_info("loaded the demo catalog: %d products in %.0f ms", size,
                  (double)(ps_now_ns() - t0) / 1e6);
  } else if (rc == 0) {
    ps_log_info("demo catalog not loaded: the store already has %lld products", (long long)n);
  }
  s->ops->close(s);
  return rc;
}

static void config(ps_config_t *cfg, void *ctx) {
  const char *data_dir = ps_config_str(cfg, "POLYSHOP_DATA_DIR", "./data");
  static char default_url[4096];
  snprintf(default_url, sizeof(default_url), "sqlite://%s/product.db", data_dir);
  svc.store_url = ps_config_str(cfg, "PRODUCT_STORE", default_url);
  if (!product_store_url_ok(svc.store_url))
    ps_config_error(cfg, "PRODUCT_STORE must be a sqlite:// URL (e.g. sqlite:///var/lib/"
                         "polyshop/product.db) or a mongodb:// URL");
  svc.internal_token = ps_config_str(cfg, "POLYSHOP_INTERNAL_TOKEN", NULL);
  if (svc.internal_token && strlen(svc.internal_token) < 16)
    ps_config_error(cfg, "POLYSHOP_INTERNAL_TOKEN must have at least 16 characters");
  svc.sweep_interval_ms = ps_config_int(cfg, "PRODUCT_SWEEP_INTERVAL_MS", 5000, 50, 3600000);
  demo = ps_config_bool(cfg, "PRODUCT_DEMO_CATALOG", 0);
  demo_size = (int)ps_config_int(cfg, "PRODUCT_DEMO_SIZE", 1200, 1, 1000000);
}

static int store_open(void *ctx) {
  if (product_store_migrate(svc.store_url)) {
    ps_log_error("the product store cannot be prepared"); /* not the URL: it may hold a password */
    return PS_ESTORE;
  }
  if (demo && maybe_load_demo(demo_size)) {
    ps_log_error("loading the demo catalog failed");
    return PS_ESTORE;
  }
  product_store_metrics_register(strncmp(svc.store_url, "mongodb://", 10) ? "sqlite" : "mongodb");
  return 0;
}

static const ps_service_job_t jobs[] = {{"sweeper", &svc.sweep_interval_ms, 0, sweep_cb}};

int main(void) {
  ps_service_def_t def = {
      .name = "product", .listen = "127.0.0.1:8102", .routes = product_routes,
      .nroutes = product_nroutes, .ctx = &svc, .config_cb = config, .jwt_keys = &svc.keys,
      .store_open_cb = store_open, .store_ping_cb = ping, .thread_init_cb = thread_init,
      .thread_cleanup_cb = thread_cleanup, .jobs = jobs, .njobs = 1};
  return ps_service_main(&def);
}
