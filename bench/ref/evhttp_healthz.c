/* evhttp_healthz.c - the reference for the HTTP-layer benchmark: the least libevent's evhttp
 * can do to answer GET /healthz with the 15-byte body the services send, with nothing of
 * polyshop's core (no router, arena, metrics, logs or request id). Same shape as lib/http.c:
 * N evhttp loops, one per thread, sharing one listening socket. Comparing it with nginx and
 * with a service's /healthz separates what evhttp costs from what polyshop adds.
 *
 *   evhttp_healthz PORT [THREADS]   (THREADS: default the number of online cores)
 *
 * Built by bench/run with cc -O2; not part of the CMake build. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void healthz_cb(struct evhttp_request *req, void *arg) {
  (void)arg;
  const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
  struct evbuffer *out = evhttp_request_get_output_buffer(req);
  if (!path || strcmp(path, "/healthz") != 0) {
    evhttp_send_error(req, 404, NULL);
    return;
  }
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evbuffer_add(out, "{\"status\":\"ok\"}", 15);
  evhttp_send_reply(req, 200, "OK", NULL);
}

static void *loop_main(void *arg) {
  int fd = *(int *)arg;
  struct event_base *base = event_base_new();
  struct evhttp *http = evhttp_new(base);
  struct evconnlistener *l = evconnlistener_new(base, NULL, NULL, LEV_OPT_REUSEABLE, 0, fd);
  if (!base || !http || !l || !evhttp_bind_listener(http, l)) {
    fprintf(stderr, "evhttp_healthz: cannot start a loop\n");
    exit(1);
  }
  evhttp_set_gencb(http, healthz_cb, NULL);
  event_base_dispatch(base);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: evhttp_healthz PORT [THREADS]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  long threads = argc > 2 ? atol(argv[2]) : sysconf(_SC_NPROCESSORS_ONLN);
  if (threads < 1) threads = 1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 4096)) {
    perror("evhttp_healthz: bind/listen");
    return 1;
  }
  pthread_t tid[256];
  if (threads > 256) threads = 256;
  for (long i = 0; i < threads; i++) pthread_create(&tid[i], NULL, loop_main, &fd);
  for (long i = 0; i < threads; i++) pthread_join(tid[i], NULL);
  return 0;
}
