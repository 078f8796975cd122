/* metrics.c - the process-wide metrics registry and its Prometheus rendering (metrics.h). */
#include "polyshop/metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "polyshop/alloc.h"

static const double bucket_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                       0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
enum { NBUCKETS = sizeof(bucket_bounds) / sizeof(bucket_bounds[0]), MAX_STATUSES = 24 };

struct ps_histogram {
  char *name, *labels, *help;
  atomic_ullong buckets[NBUCKETS + 1]; /* last one: +Inf */
  atomic_ullong count;
  atomic_ullong sum_ns;
  ps_histogram_t *next;
};

typedef struct {
  const char *method, *pattern;
  atomic_int statuses[MAX_STATUSES]; /* 0 = free slot; claimed with compare-and-swap */
  atomic_ullong counts[MAX_STATUSES];
  ps_histogram_t latency;
} route_metrics_t;

typedef struct gauge {
  char *name, *labels, *help;
  double (*cb)(void *);
  void *arg;
  struct gauge *next;
} gauge_t;

static struct {
  const char *service;
  route_metrics_t *routes;
  size_t nroutes;
  ps_histogram_t *histograms;
  gauge_t *gauges;
} reg;

unsigned long long ps_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

void ps_metrics_init(const char *service, const char *const *methods,
                     const char *const *patterns, size_t nroutes) {
  reg.service = service;
  reg.nroutes = nroutes;
  reg.routes = ps_calloc(nroutes + 1, sizeof(*reg.routes));
  for (size_t i = 0; i < nroutes; i++) {
    reg.routes[i].method = methods[i];
    reg.routes[i].pattern = patterns[i];
  }
  reg.routes[nroutes].method = "";
  reg.routes[nroutes].pattern = "unmatched";
}

void ps_metrics_cleanup(void) {
  ps_free(reg.routes);
  while (reg.histograms) {
    ps_histogram_t *h = reg.histograms;
    reg.histograms = h->next;
    ps_free(h->name);
    ps_free(h->labels);
    ps_free(h->help);
    ps_free(h);
  }
  while (reg.gauges) {
    gauge_t *g = reg.gauges;
    reg.gauges = g->next;
    ps_free(g->name);
    ps_free(g->labels);
    ps_free(g->help);
    ps_free(g);
  }
  memset(&reg, 0, sizeof(reg));
}

void ps_histogram_observe(ps_histogram_t *h, double seconds) {
  size_t b = 0;
  while (b < NBUCKETS && seconds > bucket_bounds[b]) b++;
  atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum_ns, (unsigned long long)(seconds * 1e9), memory_order_relaxed);
}

void ps_metrics_request(size_t route, int status, double seconds) {
  if (!reg.routes) return;
  if (route > reg.nroutes) route = reg.nroutes;
  route_metrics_t *r = &reg.routes[route];
  for (int i = 0; i < MAX_STATUSES; i++) {
    int s = atomic_load_explicit(&r->statuses[i], memory_order_acquire);
    if (s == 0) {
      int expected = 0;
      if (!atomic_compare_exchange_strong(&r->statuses[i], &expected, status) &&
          expected != status)
        continue;
      s = status;
    }
    if (s == status) {
      atomic_fetch_add_explicit(&r->counts[i], 1, memory_order_relaxed);
      break;
    }
  }
  ps_histogram_observe(&r->latency, seconds);
}

ps_histogram_t *ps_metrics_histogram(const char *name, const char *labels, const char *help) {
  ps_histogram_t *h = ps_calloc(1, sizeof(*h));
  h->name = ps_strdup(name);
  h->labels = ps_strdup(labels ? labels : "");
  h->help = ps_strdup(help ? help : name);
  h->next = reg.histograms;
  reg.histograms = h;
  return h;
}

void ps_metrics_store_calls(const char *engine, const char *const *ops, int n,
                            const char *help, ps_histogram_t **out) {
  char labels[160];
  for (int i = 0; i < n; i++) {
    if (engine)
      snprintf(labels, sizeof(labels), "engine=\"%s\",op=\"%s\"", engine, ops[i]);
    else
      snprintf(labels, sizeof(labels), "op=\"%s\"", ops[i]);
    out[i] = ps_metrics_histogram("polyshop_store_call_seconds", labels, help);
  }
}

void ps_metrics_gauge(const char *name, const char *labels, const char *help,
                      double (*cb)(void *arg), void *arg) {
  gauge_t *g = ps_calloc(1, sizeof(*g));
  g->name = ps_strdup(name);
  g->labels = ps_strdup(labels ? labels : "");
  g->help = ps_strdup(help ? help : name);
  g->cb = cb;
  g->arg = arg;
  g->next = reg.gauges;
  reg.gauges = g;
}

/* A growable text buffer for rendering; the result is copied into the arena at the end. */
typedef struct {
  char *buf;
  size_t len, cap;
} text_t;

static void text_printf(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(text_t *t, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < t->cap - t->len) {
      t->len += (size_t)n;
      return;
    }
    t->cap = t->cap * 2 + (size_t)(n > 0 ? n : 0);
    t->buf = ps_realloc(t->buf, t->cap);
  }
}

static void render_histogram(text_t *t, const char *name, const char *labels,
                             ps_histogram_t *h) {
  const char *sep = labels[0] ? "," : "";
  unsigned long long cum = 0;
  for (size_t b = 0; b <= NBUCKETS; b++) {
    cum += atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
    if (b < NBUCKETS)
      text_printf(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bucket_bounds[b], cum);
    else
      text_printf(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
  }
  text_printf(t, "%s_sum{%s} %.9f\n", name, labels,
              (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9);
  text_printf(t, "%s_count{%s} %llu\n", name, labels,
              (unsigned long long)atomic_load_explicit(&h->count, memory_order_relaxed));
}

char *ps_metrics_render(ps_arena_t *a, size_t *len) {
  text_t t = {ps_malloc(8192), 0, 8192};
  char labels[512];
  text_printf(&t, "# HELP polyshop_http_requests_total Requests answered, by route and status.\n"
                  "# TYPE polyshop_http_requests_total counter\n");
  for (size_t i = 0; reg.routes && i <= reg.nroutes; i++) {
    route_metrics_t *r = &reg.routes[i];
    for (int s = 0; s < MAX_STATUSES; s++) {
      int status = atomic_load(&r->statuses[s]);
      if (!status) break;
      text_printf(&t,
                  "polyshop_http_requests_total{service=\"%s\",method=\"%s\",route=\"%s\","
                  "status=\"%d\"} %llu\n",
                  reg.service, r->method, r->pattern, status,
                  (unsigned long long)atomic_load(&r->counts[s]));
    }
  }
  text_printf(&t, "# HELP polyshop_http_request_duration_seconds Request latency, by route.\n"
                  "# TYPE polyshop_http_request_duration_seconds histogram\n");
  for (size_t i = 0; reg.routes && i <= reg.nroutes; i++) {
    route_metrics_t *r = &reg.routes[i];
    if (!atomic_load(&r->latency.count)) continue;
    snprintf(labels, sizeof(labels), "service=\"%s\",method=\"%s\",route=\"%s\"", reg.service,
             r->method, r->pattern);
    render_histogram(&t, "polyshop_http_request_duration_seconds", labels, &r->latency);
  }
  const char *last = "";
  for (ps_histogram_t *h = reg.histograms; h; h = h->next) {
    if (strcmp(last, h->name)) {
      text_printf(&t, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
      last = h->name;
    }
    snprintf(labels, sizeof(labels), "service=\"%s\"%s%s", reg.service, h->labels[0] ? "," : "",
             h->labels);
    render_histogram(&t, h->name, labels, h);
  }
  for (gauge_t *g = reg.gauges; g; g = g->next) {
    text_printf(&t, "# HELP %s %s\n# TYPE %s gauge\n%s{service=\"%s\"%s%s} %g\n", g->name,
                g->help, g->name, g->name, reg.service, g->labels[0] ? "," : "", g->labels,
                g->cb(g->arg));
  }
  char *out = ps_arena_strndup(a, t.buf, t.len);
  *len = t.len;
  ps_free(t.buf);
  return out;
}
