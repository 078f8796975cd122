/* skeleton.c - ps_service_main: the one start, run and stop of every service (service.h),
 * and the periodic jobs that run once across a service's loops, on one elected loop. */
#include <event2/event.h>
#include <event2/thread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "polyshop/client.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/service.h"
#include "polyshop/work.h"

typedef struct {
  const ps_service_job_t *job;
  void *ctx, *thread_ctx;
  struct event *ev;
} job_run_t;

/* One service per process: the definition being run, and the jobs of the elected loop. */
static const ps_service_def_t *running;
static atomic_int jobs_taken;
static struct event_base *jobs_base;
static job_run_t runs[PS_SERVICE_JOBS_MAX];

static void arm(job_run_t *r, long long ms) {
  struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
  event_add(r->ev, &tv);
}

static void job_cb(evutil_socket_t fd, short what, void *arg) {
  job_run_t *r = arg;
  r->job->run_cb(r->ctx, r->thread_ctx);
  arm(r, *r->job->interval_ms);
}

static void *thread_init(void *ctx) {
  const ps_service_def_t *def = running;
  void *tctx = def->thread_init_cb ? def->thread_init_cb(ctx) : NULL;
  int expected = 0;
  if (def->njobs && atomic_compare_exchange_strong(&jobs_taken, &expected, 1)) {
    jobs_base = ps_server_thread_base();
    for (size_t i = 0; i < def->njobs && i < PS_SERVICE_JOBS_MAX; i++) {
      runs[i] = (job_run_t){.job = &def->jobs[i], .ctx = ctx, .thread_ctx = tctx};
      runs[i].ev = evtimer_new(jobs_base, job_cb, &runs[i]);
      arm(&runs[i], def->jobs[i].at_start ? 0 : *def->jobs[i].interval_ms);
    }
  }
  return tctx;
}

/* After the loop stopped, on its thread: the jobs' timers, then the worker pool's
 * completions for this loop (they may use thread_ctx), then the service's own cleanup. */
static void thread_cleanup(void *tctx) {
  const ps_service_def_t *def = running;
  struct event_base *base = ps_server_thread_base();
  if (base == jobs_base) {
    for (size_t i = 0; i < def->njobs && i < PS_SERVICE_JOBS_MAX; i++) event_free(runs[i].ev);
    jobs_base = NULL;
  }
  ps_work_loop_done(base);
  if (def->thread_cleanup_cb) def->thread_cleanup_cb(tctx);
}

static int ready(void *ctx, void *tctx) {
  return running->store_ping_cb ? running->store_ping_cb(ctx, tctx) : 0;
}

/* Everything read from the environment; exits with 78 when anything is wrong. */
static void configure(const ps_service_def_t *def, ps_server_config_t *server, int *workers) {
  ps_config_t cfg;
  ps_service_init(&cfg, def->name);
  ps_server_config_from_env(server, &cfg, def->listen);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores < 1) cores = 1;
  if (def->loops_per_core > 0) {
    long loops = cores * def->loops_per_core;
    server->threads = (int)ps_config_int(&cfg, "POLYSHOP_THREADS", loops > 256 ? 256 : loops, 1, 256);
  }
  *workers = (int)ps_config_int(&cfg, "POLYSHOP_WORKERS",
                                cores > PS_WORK_MAX_WORKERS ? PS_WORK_MAX_WORKERS : cores, 1,
                                PS_WORK_MAX_WORKERS);
  char err[256];
  if (def->jwt_keys && ps_jwt_keys_from_env(def->jwt_keys, err, sizeof(err)))
    ps_config_error(&cfg, "%s", err);
  if (def->config_cb) def->config_cb(&cfg, def->ctx);
  if (def->njobs > PS_SERVICE_JOBS_MAX)
    ps_config_error(&cfg, "%s declares %zu periodic jobs (at most %d)", def->name, def->njobs,
                    PS_SERVICE_JOBS_MAX);
  ps_config_exit_on_error(&cfg);
}

int ps_service_main(const ps_service_def_t *def) {
  /* Once, before any event base exists: the worker pool wakes loops from its threads. */
  evthread_use_pthreads();
  ps_server_config_t server;
  int workers;
  configure(def, &server, &workers);
  int rc = def->store_open_cb ? def->store_open_cb(def->ctx) : 0;
  if (rc) return rc == PS_ECONFIG ? PS_CONFIG_EXIT_CODE : 1;
  if ((rc = ps_work_start(workers, 0)) && rc != PS_EEXISTS) {
    ps_log_error("cannot start the worker pool: %s", ps_strerror(rc));
    if (def->store_close_cb) def->store_close_cb(def->ctx);
    return 1;
  }
  running = def;
  ps_service_t svc = {.name = def->name, .routes = def->routes, .nroutes = def->nroutes,
                      .ctx = def->ctx, .thread_init_cb = thread_init,
                      .thread_cleanup_cb = thread_cleanup, .ready_cb = ready,
                      .jwt_keys = def->jwt_keys};
  rc = ps_server_run(&svc, &server);
  ps_work_shutdown();
  if (def->store_close_cb) def->store_close_cb(def->ctx);
  ps_client_global_cleanup();
  running = NULL;
  return rc ? 1 : 0;
}
