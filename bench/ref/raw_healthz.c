/* raw_healthz.c - what libevent's event loop can do without evhttp: GET /healthz answered by
 * a minimal HTTP/1.1 keep-alive server written on plain events (recv, find the end of the
 * headers, send the answer at once; EV_WRITE only when the socket is full). Same loops and
 * the same 15-byte body as lib/http.c. It is a measuring stick for how much of nginx's rate
 * a leaner HTTP layer in polyshop's core could reach, not a server to use: it parses only
 * the request line and ignores bodies.
 *
 *   raw_healthz PORT [THREADS]   (THREADS: default the number of online cores)
 *
 * Built by bench/run with cc -O2; not part of the CMake build. */
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 16384

typedef struct conn_s {
  int fd;
  struct event *ev;
  size_t in_len;
  char in[BUF];
  size_t out_len, out_off;
  char out[BUF];
} conn_t;

static const char body[] = "{\"status\":\"ok\"}";

static void conn_close(conn_t *c) {
  event_free(c->ev);
  close(c->fd);
  free(c);
}

/* Appends the answer for one request; the Date header is formatted once a second. */
static void answer(conn_t *c, int ok) {
  static __thread time_t last;
  static __thread char date[64];
  time_t now = time(NULL);
  if (now != last) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    last = now;
  }
  if (c->out_len + 256 > BUF) return;
  c->out_len += (size_t)snprintf(c->out + c->out_len, BUF - c->out_len,
                                 "HTTP/1.1 %s\r\nContent-Type: application/json\r\nDate: %s\r\n"
                                 "Content-Length: %d\r\n\r\n%s",
                                 ok ? "200 OK" : "404 Not Found", date, ok ? 15 : 0, ok ? body : "");
}

static int flush_out(conn_t *c) {
  while (c->out_off < c->out_len) {
    ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN) return 1;
      if (errno == EINTR) continue;
      return -1;
    }
    c->out_off += (size_t)w;
  }
  c->out_off = c->out_len = 0;
  return 0;
}

static void conn_cb(evutil_socket_t fd, short what, void *arg) {
  conn_t *c = arg;
  if (what & EV_READ) {
    ssize_t r = recv(fd, c->in + c->in_len, BUF - c->in_len, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
      conn_close(c);
      return;
    }
    if (r > 0) c->in_len += (size_t)r;
    /* Every complete request in the buffer (pipelining included) gets its answer. */
    char *start = c->in, *end;
    while ((end = memmem(start, c->in_len - (size_t)(start - c->in), "\r\n\r\n", 4))) {
      answer(c, strncmp(start, "GET /healthz ", 13) == 0);
      start = end + 4;
    }
    c->in_len -= (size_t)(start - c->in);
    memmove(c->in, start, c->in_len);
    if (c->in_len == BUF) {
      conn_close(c);
      return;
    }
  }
  int rc = flush_out(c);
  if (rc < 0) {
    conn_close(c);
    return;
  }
  /* Wait for writability only while something is left to send. */
  short want = EV_READ | EV_PERSIST | (rc ? EV_WRITE : 0);
  if (want != event_get_events(c->ev)) {
    struct event_base *base = event_get_base(c->ev);
    event_free(c->ev);
    c->ev = event_new(base, fd, want, conn_cb, c);
    event_add(c->ev, NULL);
  }
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg) {
  (void)what;
  struct event_base *base = arg;
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn_t *c = calloc(1, sizeof *c);
    c->fd = fd;
    c->ev = event_new(base, fd, EV_READ | EV_PERSIST, conn_cb, c);
    event_add(c->ev, NULL);
  }
}

static void *loop_main(void *arg) {
  int lfd = *(int *)arg;
  struct event_base *base = event_base_new();
  struct event *l = event_new(base, lfd, EV_READ | EV_PERSIST, accept_cb, base);
  event_add(l, NULL);
  event_base_dispatch(base);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: raw_healthz PORT [THREADS]\n");
    return 2;
  }
  long threads = argc > 2 ? atol(argv[2]) : sysconf(_SC_NPROCESSORS_ONLN);
  if (threads < 1) threads = 1;
  if (threads > 256) threads = 256;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 4096)) {
    perror("raw_healthz: bind/listen");
    return 1;
  }
  pthread_t tid[256];
  for (long i = 0; i < threads; i++) pthread_create(&tid[i], NULL, loop_main, &fd);
  for (long i = 0; i < threads; i++) pthread_join(tid[i], NULL);
  return 0;
}
