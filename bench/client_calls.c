/* client_calls.c - CPU cost of ps_client_call: N keep-alive calls from one client to a URL
 * (e.g. a running service's /healthz), reporting calls/s and the user+sys CPU of this
 * process per call (getrusage). Build against a release polyshop_core, for example:
 *   cc -O2 -Iinclude bench/client_calls.c build/lib/libpolyshop_core.a \
 *      $(pkg-config --libs libevent jansson libsodium libcurl sqlite3 libpq) -lpthread -lm
 *   ./a.out http://127.0.0.1:8101/healthz 50000 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "polyshop/arena.h"
#include "polyshop/client.h"
#include "polyshop/error.h"

static double secs(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s URL [CALLS] [METHOD] [BODY]\n", argv[0]);
    return 2;
  }
  long n = argc > 2 ? atol(argv[2]) : 50000;
  const char *method = argc > 3 ? argv[3] : "GET";
  const char *body = argc > 4 ? argv[4] : NULL;
  ps_client_t *c = ps_client_new(NULL);
  if (!c) return 1;
  ps_arena_t a;
  ps_arena_init(&a);
  ps_call_t call = {.method = method, .url = argv[1], .body = body,
                    .body_len = body ? strlen(body) : 0, .request_id = "bench-1"};
  ps_response_t r;
  for (int i = 0; i < 100; i++) { /* warm up: connection made, buffers grown */
    ps_client_call(c, &a, &call, &r);
    ps_arena_reset(&a);
  }
  struct rusage r0, r1;
  struct timespec t0, t1;
  getrusage(RUSAGE_SELF, &r0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long errors = 0;
  for (long i = 0; i < n; i++) {
    int rc = ps_client_call(c, &a, &call, &r);
    if (rc || r.status != 200) errors++;
    ps_arena_reset(&a);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  getrusage(RUSAGE_SELF, &r1);
  double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  double user = secs(r1.ru_utime) - secs(r0.ru_utime);
  double sys = secs(r1.ru_stime) - secs(r0.ru_stime);
  printf("calls %ld errors %ld wall %.2fs %.0f calls/s cpu/call %.1fus (user %.1f sys %.1f)\n",
         n, errors, wall, (double)n / wall, (user + sys) * 1e6 / (double)n, user * 1e6 / (double)n,
         sys * 1e6 / (double)n);
  ps_client_free(c);
  ps_arena_reset(&a);
  ps_client_global_cleanup();
  return errors ? 1 : 0;
}
