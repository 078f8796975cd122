/* service.h - the service skeleton: a service declares what it is in one ps_service_def_t
 * (name, routes, configuration, store, per-thread state, periodic jobs) and its main() is
 *
 *   int main(void) { return ps_service_main(&def); }
 *
 * ps_service_main (lib/skeleton.c) does the rest the same way for every service. The lower
 * pieces it is made of (ps_service_init, ps_config_url) stay public for tools and tests. */
#ifndef POLYSHOP_SERVICE_H
#define POLYSHOP_SERVICE_H
#include <stddef.h>

#include "polyshop/auth.h"
#include "polyshop/config.h"
#include "polyshop/http.h"

/* A periodic job: run_cb(ctx, thread_ctx) runs ONCE per interval across all the service's
 * loops, on one loop elected at start (the first to start), with that loop's thread_ctx. The
 * next run is armed *interval_ms after run_cb returns. run_cb runs on an event loop: it must
 * not wait (blocking work goes to the worker pool, work.h). */
typedef struct {
  const char *name;              /* "relay": logs */
  const long long *interval_ms;  /* read when the loop starts, after config_cb: points into
                                    the service's context */
  int at_start;                  /* 1: the first run right at start, else after one interval */
  void (*run_cb)(void *ctx, void *thread_ctx);
} ps_service_job_t;

enum { PS_SERVICE_JOBS_MAX = 8 };

typedef struct {
  const char *name;              /* "order": logs, metrics (a literal) */
  const char *listen;            /* default POLYSHOP_LISTEN, e.g. "127.0.0.1:8103" */
  /* Default POLYSHOP_THREADS as loops per core (capped at 256); 0: one loop per core. */
  int loops_per_core;
  const ps_route_t *routes;
  size_t nroutes;
  void *ctx;                     /* the service's state, shared by every thread */
  /* Reads the service's own variables into ctx through cfg (ps_config_*); bad values are
   * recorded in cfg and the start stops with 78 after naming all of them. */
  void (*config_cb)(ps_config_t *cfg, void *ctx);
  /* When set, filled from POLYSHOP_JWT_SECRET (and _PREVIOUS_SECRET) before config_cb. */
  ps_jwt_keys_t *jwt_keys;
  /* Opens the store once on the main thread before serving, so a bad URL or a dead engine
   * fails the start loudly, and does what must happen once (migrations, metrics
   * registration, the first admin). Returns 0, or a PS_E* code after logging why: the
   * process exits with 78 for PS_ECONFIG, 1 otherwise. Optional. */
  int (*store_open_cb)(void *ctx);
  /* After the server stopped and every loop's cleanup ran: releases what store_open_cb
   * kept. Optional. */
  void (*store_close_cb)(void *ctx);
  /* /readyz: 0 when the store answers, on the calling loop with its thread_ctx. Optional. */
  int (*store_ping_cb)(void *ctx, void *thread_ctx);
  /* Per-loop state (store connections, clients), made and freed on the loop's thread. */
  void *(*thread_init_cb)(void *ctx);
  void (*thread_cleanup_cb)(void *thread_ctx);
  const ps_service_job_t *jobs;  /* at most PS_SERVICE_JOBS_MAX */
  size_t njobs;
} ps_service_def_t;

/* Runs a service from its definition: libevent's pthread support (evthread_use_pthreads,
 * before any event base), ps_service_init, the server's settings (POLYSHOP_LISTEN,
 * POLYSHOP_THREADS, POLYSHOP_BODY_LIMIT, POLYSHOP_DRAIN_SECONDS), POLYSHOP_WORKERS (worker
 * pool threads, 1..64, default the number of cores), the JWT keys when asked, config_cb, exit
 * 78 on any bad value, store_open_cb, the worker pool, ps_server_run until SIGTERM with the
 * periodic jobs on one loop, then the pool's shutdown, store_close_cb and libcurl's cleanup.
 * Returns the process's exit code: 0 after a clean drain, 1 when it could not start or run
 * (78 for configuration, see store_open_cb). def must outlive the call. */
int ps_service_main(const ps_service_def_t *def);

/* Initialises cfg, reads POLYSHOP_LOG_LEVEL (recording a bad value in cfg), names the
 * service in every log line and starts libsodium. name must outlive the process (a literal).
 * Exits with 1 when libsodium cannot start (no usable random source). */
void ps_service_init(ps_config_t *cfg, const char *name);

/* Reads an optional base URL of another service (e.g. PRODUCT_URL); a value that is not
 * http:// or https:// is recorded as an error. Returns NULL when unset and not required. */
const char *ps_config_url(ps_config_t *cfg, const char *name, int required);

#endif
