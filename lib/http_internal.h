/* http_internal.h - what the server (http.c) and the HTTP/1.1 connection layer (http1.c)
 * share; not part of the public API. */
#ifndef POLYSHOP_HTTP_INTERNAL_H
#define POLYSHOP_HTTP_INTERNAL_H
#include <event2/util.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

#include "polyshop/http.h"

struct event_base;
struct event;
struct evbuffer;
struct evconnlistener;

typedef struct ps__header {
  const char *name, *value;
  struct ps__header *next;
} ps__header_t;

typedef struct ps__conn ps__conn_t;

/* One event loop: its thread, listener, open connections and per-loop scratch. */
typedef struct ps__loop {
  ps_server_t *server;
  pthread_t tid;
  struct event_base *base;
  struct evconnlistener *listener; /* NULL once draining stopped accepting */
  struct event *drain_ev, *tick_ev;
  ps__conn_t *conns;               /* open connections, freed when the loop ends */
  struct evbuffer *scratch;        /* the body of the answer being built */
  size_t server_body_limit;
  void *thread_ctx;
  char id_prefix[17];
  unsigned long long id_counter;
  unsigned long long last_request_ns;
  unsigned long long drain_started_ns;
  char date[40];
  time_t date_at;
} ps__loop_t;

enum { PS__TOO_LARGE = 1 };

/* http.c */
void ps__req_init(ps_req_t *req, ps__loop_t *loop, ps__conn_t *conn);
const char *ps__new_request_id(ps_req_t *req, ps__loop_t *loop);
/* Routes and answers a parsed request, then counts, logs and releases it. With PS__TOO_LARGE
 * the body (of body_len bytes) was not read and the answer is a 413. */
void ps__dispatch(ps_req_t *req, int flags, size_t body_len);
/* Counts, logs and releases an answered request (route_index (size_t)-1: none). */
void ps__req_finish(ps_req_t *req, size_t route_index);

/* http1.c */
void ps__conn_accept(ps__loop_t *loop, evutil_socket_t fd, struct sockaddr *addr);
void ps__conns_close_all(ps__loop_t *loop);
void ps__conn_write_answer(ps_req_t *req, int status, const char *content_type,
                           struct evbuffer *body);
const char *ps__conn_peer(ps__conn_t *c);

#endif
