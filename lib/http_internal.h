/* http_internal.h - what the server (http.c) and the HTTP/1.1 connection layer (http1.c)
 * share; not part of the public API. */
#ifndef POLYSHOP_HTTP_INTERNAL_H
#define POLYSHOP_HTTP_INTERNAL_H
#include <event2/util.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdint.h>
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
  int deferred;                    /* requests deferred by their handlers, not yet answered */
  /* Streamed answers (http_stream.c): writers on any thread queue a stream on dirty under
   * stream_mu and activate wake_ev; beat_ev sends SSE heartbeats. */
  pthread_mutex_t stream_mu;
  struct ps_stream *dirty;
  struct ps_stream *sse_list;
  struct event *wake_ev, *beat_ev;
} ps__loop_t;

/* http.c */
void ps__req_init(ps_req_t *req, ps__loop_t *loop, ps__conn_t *conn);
const char *ps__new_request_id(ps_req_t *req, ps__loop_t *loop);
/* Matches the parsed head against the routes (request id, traceparent, route); returns the
 * matched route's PS_ROUTE_* flags (0 for built-ins, unknown paths and wrong methods). */
unsigned ps__req_route(ps_req_t *req);
/* Runs the matched handler (or answers 404/405); releases the request unless deferred. */
void ps__dispatch(ps_req_t *req);
/* Counts, logs and releases an answered request; the connection goes on with its next
 * request, or is freed when its client is gone. */
void ps__req_release(ps_req_t *req);
/* Sends a problem for a request the server refuses on its own (framing, limits): the
 * connection closes after it. The request is released unless its handler holds it. */
void ps__req_refuse(ps_req_t *req, int problem, const char *detail);

/* http1.c */
void ps__conn_accept(ps__loop_t *loop, evutil_socket_t fd, struct sockaddr *addr);
void ps__conns_close_all(ps__loop_t *loop);
/* Writes an answer's head; content_length (uint64_t)-1 means a chunked body follows (or a
 * body until close for an HTTP/1.0 client). Then body (may be NULL) is moved into the output
 * (dropped for HEAD) and the output is flushed. */
void ps__conn_write_answer(ps_req_t *req, int status, const char *content_type,
                           uint64_t content_length, struct evbuffer *body);
/* Adds a file range to the output after the head (takes fd) and flushes. */
int ps__conn_write_file(ps_req_t *req, int fd, off_t offset, size_t len);
const char *ps__conn_peer(ps__conn_t *c);
ps__loop_t *ps__conn_loop(ps__conn_t *c);
int ps__conn_gone(const ps__conn_t *c);
int ps__conn_http10(const ps__conn_t *c);
/* The request was released: free the connection if its client is gone, else read on. */
void ps__conn_request_done(ps__conn_t *c, struct ps_stream *stream);
/* The streamed answer ended: the connection reads its next request (or closes). */
void ps__conn_stream_done(ps__conn_t *c);
/* Called when the handler defers (watermarks, no read timeout). */
void ps__conn_deferred(ps__conn_t *c);
/* Moves bytes to the connection's output and writes them (loop thread). */
void ps__conn_send(ps__conn_t *c, struct evbuffer *data);
size_t ps__conn_out_len(ps__conn_t *c);

/* http_stream.c */
void ps__streams_init(ps__loop_t *loop);
void ps__streams_cleanup(ps__loop_t *loop);
ps_stream_t *ps__stream_new(ps__conn_t *c, int chunked, int head_only);
/* The stream's connection closed (client gone or server stopping): detach, call close_cb. */
void ps__stream_conn_closed(struct ps_stream *s);

#endif
