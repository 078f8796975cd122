/* thread.c - the order service's per-thread state: store and client of each event loop and
 * of each worker-pool thread that runs a saga step.
 *
 * On SQLite every thread uses one connection, under a lock. SQLite takes one writer at a time
 * anyway, and the checkout mostly writes; with a connection per thread, each commit made
 * every other connection drop its page cache and read its pages again (14% of the service's
 * CPU per checkout at 8 threads). PostgreSQL stores stay one per thread. */
#include <pthread.h>
#include <stdlib.h>

#include "order.h"
#include "polyshop/alloc.h"
#include "polyshop/log.h"

static order_store_t *shared_store;
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;

pthread_mutex_t *order_threads_share(order_store_t *st) {
  shared_store = st;
  return &shared_lock;
}

void order_threads_unshare(void) {
  if (shared_store) shared_store->ops->close(shared_store);
  shared_store = NULL;
}

order_thread_t *order_thread_new(order_service_t *svc, struct event_base *base) {
  order_thread_t *t = ps_calloc(1, sizeof(*t));
  t->svc = svc;
  order_store_t *inner = shared_store;
  if (!inner && order_store_open(svc->store_url, svc->pg_schema, &inner)) {
    /* Checked at start on the main thread, so this is a store gone bad since: no way to serve. */
    ps_log_error("cannot open the order store");
    abort();
  }
  t->store = order_store_timed(inner, shared_store == NULL);
  if (base) t->loop_client = ps_client_new_loop(base, NULL);
  else t->client = ps_client_new(NULL);
  if (!t->loop_client && !t->client) {
    ps_log_error("cannot start the HTTP client");
    abort();
  }
  return t;
}

void order_thread_free(order_thread_t *t) {
  if (!t) return;
  if (t->loop_client) ps_client_free(t->loop_client);
  if (t->client) ps_client_free(t->client);
  t->store->ops->close(t->store);
  ps_free(t->call_token);
  ps_free(t);
}
