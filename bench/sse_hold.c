/* sse_hold.c - proof that one service instance holds many open Server-Sent Events streams:
 * starts a small server built from the core with one SSE route (in a child process), opens N
 * streams to it over loopback (default 10,000), then reports the server's resident memory
 * (VmRSS) before and after, and the latency of /healthz requests made while the streams are
 * open (p50/p99/max). Not a test: numbers go to the report and bench/RESULTS.md.
 *
 *   sse_hold [streams] [healthz_requests]     (POLYSHOP_THREADS sets the server's loops) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "polyshop/http.h"

static void sse_closed(void *arg) { ps_sse_end(arg); }

static void handle_events(ps_req_t *req) {
  ps_sse_t *sse = ps_reply_sse(req, 0);
  if (sse) ps_stream_on_close(sse, sse_closed, sse);
}

static const ps_route_t routes[] = {{"GET", "/events", handle_events}};

static int serve(int fd) {
  ps_service_t svc = {.name = "sse_hold", .routes = routes, .nroutes = 1};
  ps_server_config_t cfg = {.host = "127.0.0.1", .port = 0, .threads = 2, .body_limit = 1 << 20,
                            .drain_seconds = 5, .fd = fd, .install_signals = 1};
  const char *t = getenv("POLYSHOP_THREADS");
  if (t) cfg.threads = atoi(t);
  return ps_server_run(&svc, &cfg) ? 1 : 0;
}

static long rss_kb(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  long kb = -1;
  while (f && fgets(line, sizeof(line), f))
    if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
  if (f) fclose(f);
  return kb;
}

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
    fprintf(stderr, "connect: %s\n", strerror(errno));
    exit(1);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

/* Reads one answer's head; returns its status or -1. */
static int read_head(int fd, char *buf, size_t cap) {
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r <= 0) return -1;
    n += (size_t)r;
    buf[n] = '\0';
    if (strstr(buf, "\r\n\r\n")) return atoi(buf + 9);
  }
  return -1;
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Sequential keep-alive GET /healthz; fills lat (us). */
static void healthz_latency(int port, double *lat, int n) {
  int fd = connect_to(port);
  char buf[1024] = "";
  static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  for (int i = 0; i < n; i++) {
    double t0 = now_us();
    if (write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1) exit(1);
    size_t got = 0;
    while (!strstr(buf, "{\"status\":\"ok\"}")) { /* the body is the answer's last bytes */
      ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
      if (r <= 0) exit(1);
      got += (size_t)r;
      buf[got] = '\0';
    }
    lat[i] = now_us() - t0;
    buf[0] = '\0';
  }
  close(fd);
  qsort(lat, (size_t)n, sizeof(double), cmp_double);
}

int main(int argc, char **argv) {
  int streams = argc > 1 ? atoi(argv[1]) : 10000, requests = argc > 2 ? atoi(argv[2]) : 5000;
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if ((rlim_t)streams + 64 > rl.rlim_cur) {
    fprintf(stderr, "RLIMIT_NOFILE %llu is too low for %d streams\n", (unsigned long long)rl.rlim_cur, streams);
    return 1;
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0); /* as the server expects */
  struct sockaddr_in a = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  socklen_t alen = sizeof(a);
  if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 4096) ||
      getsockname(lfd, (struct sockaddr *)&a, &alen))
    return 1;
  int port = ntohs(a.sin_port);
  pid_t pid = fork();
  if (pid == 0) _exit(serve(lfd));
  close(lfd);
  usleep(200000);
  double *lat = malloc(sizeof(double) * (size_t)requests);
  healthz_latency(port, lat, requests);
  long rss0 = rss_kb(pid);
  printf("idle: VmRSS %ld kB; /healthz p50 %.0f us p99 %.0f us\n", rss0, lat[requests / 2],
         lat[requests * 99 / 100]);
  int *fds = malloc(sizeof(int) * (size_t)streams);
  char buf[2048];
  double t0 = now_us();
  for (int i = 0; i < streams; i++) {
    fds[i] = connect_to(port);
    static const char req[] = "GET /events HTTP/1.1\r\nHost: x\r\n\r\n";
    if (write(fds[i], req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1) return 1;
    if (i % 100 == 99 || i == streams - 1) /* read heads in batches: the server keeps pace */
      for (int j = i - (i % 100); j <= i; j++)
        if (read_head(fds[j], buf, sizeof(buf)) != 200) {
          fprintf(stderr, "stream %d: no 200 head\n", j);
          return 1;
        }
  }
  printf("opened %d SSE streams in %.1f s\n", streams, (now_us() - t0) / 1e6);
  sleep(1);
  long rss1 = rss_kb(pid);
  healthz_latency(port, lat, requests);
  printf("holding %d streams: VmRSS %ld kB (%.0f bytes per stream over idle); /healthz over %d "
         "keep-alive requests: p50 %.0f us, p99 %.0f us, p99.9 %.0f us, max %.0f us\n",
         streams, rss1, (double)(rss1 - rss0) * 1024.0 / streams, requests, lat[requests / 2],
         lat[requests * 99 / 100], lat[requests * 999 / 1000], lat[requests - 1]);
  for (int i = 0; i < streams; i++) close(fds[i]);
  kill(pid, SIGTERM);
  int status;
  waitpid(pid, &status, 0);
  printf("server exit status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  free(fds);
  free(lat);
  return 0;
}
