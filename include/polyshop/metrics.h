/* metrics.h - Prometheus text metrics for one service process: request counts by route,
 * method and status, request latency histograms by route, and any number of extra
 * histograms (store call latency) and gauges (pool use) registered at start.
 *
 * Updates are lock-free atomics, safe from every event-loop thread. Registration is not
 * thread-safe: do it before ps_server_run starts its threads.
 */
#ifndef POLYSHOP_METRICS_H
#define POLYSHOP_METRICS_H
#include <stddef.h>

#include "polyshop/arena.h"

typedef struct ps_histogram ps_histogram_t;

/* Prepares the registry for a service with nroutes routes (plus one "unmatched" route at
 * index nroutes). route_labels[i] is e.g. "GET /api/v1/users/{id}" split as method/pattern. */
void ps_metrics_init(const char *service, const char *const *methods,
                     const char *const *patterns, size_t nroutes);
void ps_metrics_cleanup(void);

/* Counts one answered request and its latency. route may be nroutes ("unmatched"). */
void ps_metrics_request(size_t route, int status, double seconds);

/* Registers a latency histogram named name{labels}, e.g.
 * ps_metrics_histogram("polyshop_store_call_seconds", "op=\"get_user\"",
 *                      "Latency of store calls"). The registry owns it. */
ps_histogram_t *ps_metrics_histogram(const char *name, const char *labels, const char *help);
void ps_histogram_observe(ps_histogram_t *h, double seconds);

/* Registers one polyshop_store_call_seconds histogram per store operation: out[i] gets
 * {engine="<engine>",op="<ops[i]>"} (no engine label when engine is NULL). */
void ps_metrics_store_calls(const char *engine, const char *const *ops, int n,
                            const char *help, ps_histogram_t **out);

/* Registers a gauge whose value is read at scrape time from cb(arg). */
void ps_metrics_gauge(const char *name, const char *labels, const char *help,
                      double (*cb)(void *arg), void *arg);

/* Renders every metric as Prometheus text into the arena. */
char *ps_metrics_render(ps_arena_t *a, size_t *len);

/* Monotonic clock in nanoseconds, for timing. */
unsigned long long ps_now_ns(void);

#endif
