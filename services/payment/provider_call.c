/* provider_call.c - calls to the payment provider without holding an event loop. A provider
 * that waits (Stripe over the network, the test provider made slow with
 * PAYMENT_TEST_DELAY_MS) is called on a worker-pool thread with that thread's own provider
 * (a provider_t belongs to one thread), and the handler continues on the request's loop; the
 * built-in test provider at full speed only computes, so it answers inline. */
#include <pthread.h>
#include <string.h>

#include "payment.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/work.h"

typedef struct {
  ps_req_t *req;
  const provider_config_t *cfg;
  int refund;                      /* 0: charge in, 1: refund of ref */
  provider_charge_t in;
  const char *ref, *key;
  int64_t amount;
  provider_result_t *out;
  int rc;
  payment_provider_cb cb;
  void *arg;
} provider_job_t;

static pthread_key_t pool_key;
static pthread_once_t pool_key_once = PTHREAD_ONCE_INIT;

static void pool_provider_free(void *p) { ((provider_t *)p)->ops->free(p); }
static void pool_key_init(void) { pthread_key_create(&pool_key, pool_provider_free); }

/* The calling pool thread's provider, made on first use, freed when the thread ends. */
static provider_t *pool_provider(const provider_config_t *cfg, int *rc) {
  pthread_once(&pool_key_once, pool_key_init);
  provider_t *p = pthread_getspecific(pool_key);
  *rc = 0;
  if (!p && (*rc = provider_new(cfg, &p)) == 0) pthread_setspecific(pool_key, p);
  return p;
}

static int run(provider_t *p, ps_arena_t *a, provider_job_t *j) {
  return j->refund ? p->ops->refund(p, a, j->ref, j->amount, j->key, j->out)
                   : p->ops->charge(p, a, &j->in, j->out);
}

static void job_work(void *arg) {
  provider_job_t *j = arg;
  provider_t *p = pool_provider(j->cfg, &j->rc);
  if (p) j->rc = run(p, &j->req->arena, j);
}

static void job_after(void *arg, int status) {
  provider_job_t *j = arg;
  j->cb(j->req, status ? status : j->rc, j->arg);
}

static void start(ps_req_t *req, provider_job_t *j) {
  payment_thread_t *t = req->thread_ctx;
  if (!provider_waits(t->provider)) {
    j->cb(req, run(t->provider, &req->arena, j), j->arg);
    return;
  }
  ps_req_defer(req);
  int rc = ps_work_queue(ps_req_base(req), job_work, job_after, j);
  if (rc) {
    ps_log(PS_LOG_WARN, req->request_id, "worker pool refused a provider call: %s", ps_strerror(rc));
    j->cb(req, PS_EUNAVAIL, j->arg); /* nothing reached the provider: a retry is safe */
  }
}

static provider_job_t *job_new(ps_req_t *req, provider_result_t *out, payment_provider_cb cb,
                               void *arg) {
  provider_job_t *j = ps_arena_alloc(&req->arena, sizeof(*j));
  memset(j, 0, sizeof(*j));
  j->req = req;
  j->cfg = &((payment_service_t *)req->service_ctx)->provider;
  j->out = out;
  j->cb = cb;
  j->arg = arg;
  return j;
}

void payment_provider_charge(ps_req_t *req, const provider_charge_t *in, provider_result_t *out,
                             payment_provider_cb cb, void *arg) {
  provider_job_t *j = job_new(req, out, cb, arg);
  j->in = *in;
  start(req, j);
}

void payment_provider_refund(ps_req_t *req, const char *ref, int64_t amount, const char *key,
                             provider_result_t *out, payment_provider_cb cb, void *arg) {
  provider_job_t *j = job_new(req, out, cb, arg);
  j->refund = 1;
  j->ref = ref;
  j->amount = amount;
  j->key = key;
  start(req, j);
}
