/* store_timing.h - one way to time store calls, for every service and engine: a table of
 * polyshop_store_call_seconds{engine="...",op="..."} histograms registered from a list of
 * operation names, and PS_STORE_TIMED to run one call under it.
 *
 *   static const char *const ops[] = {[OP_GET] = "get", [OP_PUT] = "put"};
 *   static ps_store_timing_t timing;
 *   ps_store_timing_register(&timing, "sqlite", ops, 2, "Latency of thing store calls");
 *   static int t_get(store_t *s, ...) { PS_STORE_TIMED(&timing, OP_GET, inner(s)->ops->get(...)); }
 */
#ifndef POLYSHOP_STORE_TIMING_H
#define POLYSHOP_STORE_TIMING_H
#include <pthread.h>

#include "polyshop/metrics.h"

enum { PS_STORE_TIMING_MAX_OPS = 48 };

typedef struct {
  int nops;
  ps_histogram_t *hist[PS_STORE_TIMING_MAX_OPS]; /* owned by the metrics registry */
  /* NULL, or a lock held through every timed call: a store connection shared by several
   * threads (its wait counts in the timing). Set before the server's threads start. */
  pthread_mutex_t *lock;
} ps_store_timing_t;

/* Registers one histogram per name in ops[nops] (at most PS_STORE_TIMING_MAX_OPS), labelled
 * engine="<engine>" (no engine label when NULL) and op="<ops[i]>". Once, before the server's
 * threads start (the metrics registry is not thread-safe). Leaves t->lock alone. */
void ps_store_timing_register(ps_store_timing_t *t, const char *engine, const char *const *ops,
                              int nops, const char *help);

/* The two halves of one timed call: begin takes the lock (if any) and returns the start
 * time; end releases the lock and records the time since t0 under op. A table never
 * registered (t->nops 0) records nothing. */
unsigned long long ps_store_timing_begin(ps_store_timing_t *t);
void ps_store_timing_end(ps_store_timing_t *t, int op, unsigned long long t0);

/* In a function returning int: runs expr (a store call returning 0 or PS_E*) timed under op
 * and returns its result. */
#define PS_STORE_TIMED(t, op, expr)                      \
  do {                                                   \
    unsigned long long t0_ = ps_store_timing_begin(t);   \
    int rc_ = (expr);                                    \
    ps_store_timing_end((t), (op), t0_);                 \
    return rc_;                                          \
  } while (0)

#endif
