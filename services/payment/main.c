/* main.c - the payment service: its configuration, its store and provider (both checked once
 * at start, then one of each per loop); lib/skeleton.c runs the rest. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "payment.h"
#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/service.h"

static payment_service_t svc;

static void *thread_init(void *ctx) {
  payment_thread_t *t = ps_calloc(1, sizeof(*t));
  t->last_purge = (int64_t)time(NULL);
  /* Both were opened once on the main thread at start, so a failure here is a bug or a
   * library gone bad: there is no way to serve. (A database that is down right now is not a
   * failure: the store reconnects by itself.) */
  if (payment_store_open_lazy(svc.store_url, &t->store)) {
    ps_log_error("cannot open the payment store"); /* not the URL: it may hold a password */
    abort();
  }
  if (provider_new(&svc.provider, &t->provider)) {
    ps_log_error("cannot start the %s payment provider", svc.provider.kind);
    abort();
  }
  return t;
}

static void thread_cleanup(void *thread_ctx) {
  payment_thread_t *t = thread_ctx;
  t->provider->ops->free(t->provider);
  t->store->ops->close(t->store);
  ps_free(t);
}

static int ping(void *ctx, void *thread_ctx) {
  payment_thread_t *t = thread_ctx;
  return t->store->ops->ping(t->store);
}

static void config(ps_config_t *cfg, void *ctx) {
  svc.store_url = ps_config_str(cfg, "PAYMENT_STORE", "sqlite://./data/payment.db");
  svc.provider.kind = ps_config_str(cfg, "PAYMENT_PROVIDER", "test");
  svc.provider.test_delay_ms = (long)ps_config_int(cfg, "PAYMENT_TEST_DELAY_MS", 0, 0, 60000);
  svc.provider.test_fail = ps_config_str(cfg, "PAYMENT_TEST_FAIL", NULL);
  svc.provider.stripe_base = ps_config_str(cfg, "STRIPE_API_BASE", "https://api.stripe.com");
  svc.provider.stripe_key = ps_config_str(cfg, "STRIPE_SECRET_KEY", NULL);
  svc.provider.stripe_timeout_ms = (long)ps_config_int(cfg, "STRIPE_TIMEOUT_MS", 10000, 100, 120000);
  svc.internal_token = ps_config_str(cfg, "POLYSHOP_INTERNAL_TOKEN", NULL);
  svc.webhook_secret = ps_config_str(cfg, "STRIPE_WEBHOOK_SECRET", NULL);
  svc.webhook_tolerance = ps_config_int(cfg, "STRIPE_WEBHOOK_TOLERANCE", PAYMENT_WEBHOOK_TOLERANCE, 1, 86400);
  svc.claim_stale_after = ps_config_int(cfg, "PAYMENT_CLAIM_STALE_SECONDS", 60, 1, 86400);
  svc.busy_wait_ms = (long)ps_config_int(cfg, "PAYMENT_BUSY_WAIT_MS", 2000, 0, 30000);
  svc.idem_retention = 3600 * ps_config_int(cfg, "PAYMENT_IDEM_RETENTION_HOURS", 7 * 24, 1, 24 * 3650);
  svc.event_retention = 3600 * ps_config_int(cfg, "PAYMENT_EVENT_RETENTION_HOURS", 30 * 24, 1, 24 * 3650);
  const char *kind = svc.provider.kind;
  if (strcmp(kind, "test") != 0 && strcmp(kind, "stripe") != 0)
    ps_config_error(cfg, "PAYMENT_PROVIDER=\"%s\" is not a provider (test or stripe)", kind);
  if (strcmp(kind, "stripe") == 0 && !svc.provider.stripe_key)
    ps_config_error(cfg, "PAYMENT_PROVIDER=stripe needs STRIPE_SECRET_KEY");
  if (svc.provider.test_fail && strcmp(svc.provider.test_fail, "unavailable") != 0 &&
      strcmp(svc.provider.test_fail, "timeout") != 0)
    ps_config_error(cfg, "PAYMENT_TEST_FAIL must be unavailable or timeout");
  if (strncmp(svc.provider.stripe_base, "http://", 7) != 0 &&
      strncmp(svc.provider.stripe_base, "https://", 8) != 0)
    ps_config_error(cfg, "STRIPE_API_BASE must be an http(s) URL");
  if (svc.internal_token && strlen(svc.internal_token) < 16)
    ps_config_error(cfg, "POLYSHOP_INTERNAL_TOKEN must have at least 16 characters");
  /* The claim must outlive the slowest provider call, or a retry could run beside it. */
  if (svc.claim_stale_after * 1000 <= svc.provider.stripe_timeout_ms)
    ps_config_error(cfg, "PAYMENT_CLAIM_STALE_SECONDS must be longer than STRIPE_TIMEOUT_MS");
}

/* Opens the store and the provider once so a bad setting fails the start, loudly. */
static int store_open(void *ctx) {
  payment_store_t *st;
  int rc = payment_store_open(svc.store_url, &st);
  if (rc) {
    ps_log_error("cannot open the payment store: %s", ps_strerror(rc));
    return rc;
  }
  st->ops->close(st);
  provider_t *prov;
  if ((rc = provider_new(&svc.provider, &prov))) {
    ps_log_error("cannot start the %s payment provider: %s", svc.provider.kind, ps_strerror(rc));
    return rc == PS_ECONFIG ? PS_EIO : rc;
  }
  prov->ops->free(prov);
  ps_log_info("payment provider %s, webhooks %s", svc.provider.kind,
              svc.webhook_secret ? "on" : "off");
  payment_metrics_register(&svc);
  return 0;
}

int main(void) {
  ps_service_def_t def = {
      .name = "payment", .listen = "127.0.0.1:8104", .routes = payment_routes,
      .nroutes = payment_nroutes, .ctx = &svc, .config_cb = config, .jwt_keys = &svc.keys,
      .store_open_cb = store_open, .store_ping_cb = ping, .thread_init_cb = thread_init,
      .thread_cleanup_cb = thread_cleanup};
  return ps_service_main(&def);
}
