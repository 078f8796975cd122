/* offload.c - runs the saga's blocking steps (compensations and cancel refunds, which wait on
 * their calls) on the core's worker pool, each pool thread with an order_thread_t of its own,
 * and brings the result back to the request's loop. */
#include <pthread.h>

#include "checkout.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/work.h"

typedef struct {
  ps_req_t *req;
  order_service_t *svc;
  order_job_cb run;
  order_job_done_cb done;
  void *arg;
  int rc;
} job_t;

static pthread_key_t pool_key;
static pthread_once_t pool_key_once = PTHREAD_ONCE_INIT;

static void pool_thread_free(void *t) { order_thread_free(t); }
static void pool_key_init(void) { pthread_key_create(&pool_key, pool_thread_free); }

order_thread_t *order_pool_thread(order_service_t *svc) {
  pthread_once(&pool_key_once, pool_key_init);
  order_thread_t *t = pthread_getspecific(pool_key);
  if (!t) {
    t = order_thread_new(svc, NULL);
    pthread_setspecific(pool_key, t);
  }
  return t;
}

static void job_work(void *arg) {
  job_t *j = arg;
  j->rc = j->run(order_pool_thread(j->svc), &j->req->arena, j->arg);
}

static void job_after(void *arg, int status) {
  job_t *j = arg;
  j->done(j->req, status ? status : j->rc, j->arg);
}

void order_offload(ps_req_t *req, order_job_cb run, order_job_done_cb done, void *arg) {
  job_t *j = ps_arena_alloc(&req->arena, sizeof(*j));
  *j = (job_t){.req = req, .svc = req->service_ctx, .run = run, .done = done, .arg = arg};
  int rc = ps_work_queue(ps_req_base(req), job_work, job_after, j);
  if (rc) {
    ps_log(PS_LOG_WARN, req->request_id, "worker pool refused a job: %s", ps_strerror(rc));
    done(req, rc, arg);
  }
}
