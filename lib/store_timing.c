/* store_timing.c - the store call histograms of every service (see store_timing.h). */
#include "polyshop/store_timing.h"

void ps_store_timing_register(ps_store_timing_t *t, const char *engine, const char *const *ops,
                              int nops, const char *help) {
  if (nops > PS_STORE_TIMING_MAX_OPS) nops = PS_STORE_TIMING_MAX_OPS;
  ps_metrics_store_calls(engine, ops, nops, help, t->hist);
  t->nops = nops;
}

unsigned long long ps_store_timing_begin(ps_store_timing_t *t) {
  unsigned long long t0 = ps_now_ns();
  if (t->lock) pthread_mutex_lock(t->lock);
  return t0;
}

void ps_store_timing_end(ps_store_timing_t *t, int op, unsigned long long t0) {
  if (t->lock) pthread_mutex_unlock(t->lock);
  if (op >= 0 && op < t->nops && t->hist[op])
    ps_histogram_observe(t->hist[op], (double)(ps_now_ns() - t0) / 1e9);
}
