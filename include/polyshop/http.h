/* http.h - the HTTP server every service runs: HTTP/1.1 on libevent (lib/http1.c) with one
 * event loop per thread sharing the listening socket, a route table per service, a per-request arena,
 * X-Request-Id, access logs, /healthz, /readyz, /metrics and graceful drain on SIGTERM.
 *
 * A service declares its routes as data:
 *
 *   static const ps_route_t routes[] = {
 *     {"POST", "/api/v1/users", handle_register},
 *     {"GET",  "/api/v1/users/{id}", handle_get_user},
 *   };
 *
 * Handlers run on an event-loop thread and answer through exactly one ps_reply_* call
 * (ps_reply_problem, ps_reply_json, ps_reply_raw, ps_reply_file, ps_reply_stream, ps_reply_sse),
 * either before they return or, after ps_req_defer, later from a callback on the same loop.
 * Everything allocated from req->arena is released once the answer is sent; a handler that
 * returns without answering or deferring gets a 500 sent for it.
 *
 * Requests take one at a time per connection: pipelined requests behind a deferred one wait,
 * and their answers go out in order. Request bodies arrive whole in req->body (Content-Length
 * or chunked), or piece by piece on routes flagged PS_ROUTE_STREAM_BODY (ps_req_body_stream).
 */
#ifndef POLYSHOP_HTTP_H
#define POLYSHOP_HTTP_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "polyshop/arena.h"
#include "polyshop/auth.h"
#include "polyshop/config.h"
#include "polyshop/router.h"

struct ps__conn;
struct ps_stream;
struct event_base;
struct ps__header;
typedef struct ps_req ps_req_t;
typedef struct ps_server ps_server_t;

typedef void (*ps_handler_cb)(ps_req_t *req);

/* ps_route_t.flags */
enum {
  /* The handler runs as soon as the head is in, with req->body empty; it reads the body with
   * ps_req_body_stream (and defers), or answers at once (the unread body then closes the
   * connection after the answer). */
  PS_ROUTE_STREAM_BODY = 1u << 0,
};

typedef struct {
  const char *method;  /* "GET", "POST", "PUT", "PATCH", "DELETE"; a GET route answers HEAD too */
  const char *pattern; /* "/api/v1/users/{id}" */
  ps_handler_cb handler;
  unsigned flags;      /* PS_ROUTE_* (optional, 0 by default) */
} ps_route_t;

struct ps_req {
  struct ps__conn *conn_;  /* private: the connection the request came on */
  ps_server_t *server;
  ps_arena_t arena;        /* released after the answer is sent */
  const char *method;
  const char *path;        /* decoded path without the query string */
  const char *route;       /* the matched pattern, or "unmatched" */
  const char *request_id;  /* taken from X-Request-Id or generated */
  const char *traceparent; /* incoming W3C traceparent or NULL */
  const char *client;      /* peer address */
  ps_param_t params[PS_ROUTE_MAX_PARAMS];
  int nparams;
  const char *body;        /* NUL-terminated copy of the request body (arena), may be "" */
  size_t body_len;
  json_t *json;            /* the parsed body once ps_json_body_or_reply ran (arena-owned) */
  ps_claims_t claims;      /* filled by ps_auth_*_or_reply */
  void *thread_ctx;        /* what the service's thread_init_cb returned for this thread */
  void *service_ctx;       /* ps_service_t.ctx */
  const ps_jwt_keys_t *jwt_keys; /* ps_service_t.jwt_keys */
  int status;              /* the status sent, 0 until then */
  uint64_t start_ns;
  void *query_;            /* parsed query (private, see ps_req_query) */
  const char *query_string_;            /* private: the raw query, or NULL */
  struct ps__header *in_headers_;       /* private */
  struct ps__header *out_headers_;      /* private: added by ps_reply_header */
  int keep_alive_, head_only_;          /* private */
  int deferred_, in_handler_, refusing_, server_answered_; /* private */
  size_t route_index_;                  /* private */
  int match_;                           /* private: builtin index, or a PS_ROUTE_* miss */
  const char *allow_;                   /* private: the Allow header of a 405 */
  struct ps_stream *stream_;            /* private: the streamed answer, once started */
};

typedef struct {
  const char *name;              /* "user": logs, metrics */
  const ps_route_t *routes;
  size_t nroutes;
  void *ctx;                     /* service-wide state, shared by all threads */
  /* Per-thread state (store connections, HTTP clients). Optional. */
  void *(*thread_init_cb)(void *ctx);
  void (*thread_cleanup_cb)(void *thread_ctx);
  /* /readyz: returns 0 when the service's store is reachable. Optional. Runs on the
   * calling event-loop thread with that thread's thread_ctx. */
  int (*ready_cb)(void *ctx, void *thread_ctx);
  /* Keys to verify access tokens with (ps_auth_*_or_reply); NULL when the service has no
   * authenticated routes. */
  const ps_jwt_keys_t *jwt_keys;
} ps_service_t;

typedef struct {
  char host[64];
  int port;
  int threads;            /* event loops, default: number of cores */
  size_t body_limit;      /* bytes, default 1 MiB; larger bodies get 413 */
  int drain_seconds;      /* graceful drain deadline, default 10 */
  int fd;                 /* an already-listening socket to use instead of host:port, or -1 */
  int install_signals;    /* stop on SIGTERM/SIGINT, default 1 */
} ps_server_config_t;

/* Reads POLYSHOP_LISTEN, POLYSHOP_THREADS, POLYSHOP_BODY_LIMIT, POLYSHOP_DRAIN_SECONDS into
 * cfg, recording bad values in the config collector (see config.h). */
void ps_server_config_from_env(ps_server_config_t *cfg, ps_config_t *collector,
                               const char *default_listen);

/* Runs the service until SIGTERM/SIGINT (or ps_server_stop), then drains: stops accepting,
 * lets requests in flight finish, closes idle connections and returns 0 before the deadline.
 * Returns a PS_E* code when it cannot start (port taken, bad route table). */
int ps_server_run(const ps_service_t *svc, const ps_server_config_t *cfg);

/* Asks a running server to drain and stop (thread-safe, async-signal-safe). */
void ps_server_stop(void);

/* The port actually bound (useful when cfg.port was 0); valid once the server is running. */
int ps_server_port(void);

/* --- reading the request ------------------------------------------------------------------ */

/* The path parameter, NUL-terminated and percent-decoded, in the arena; NULL when absent. */
const char *ps_req_param(ps_req_t *req, const char *name);
/* The first value of a query parameter (decoded), or NULL. */
const char *ps_req_query(ps_req_t *req, const char *name);
/* Calls cb for every query parameter in order. */
void ps_req_query_each(ps_req_t *req, void (*cb)(void *arg, const char *key, const char *value),
                       void *arg);
/* A request header, or NULL. */
const char *ps_req_header(ps_req_t *req, const char *name);

/* --- answering ---------------------------------------------------------------------------- */

/* Adds a response header (before the reply). */
void ps_reply_header(ps_req_t *req, const char *name, const char *value);
/* Sends body as JSON; takes the reference to body (NULL sends no body, e.g. for 204). */
void ps_reply_json(ps_req_t *req, int status, json_t *body);
/* Sends bytes as they are. */
void ps_reply_raw(ps_req_t *req, int status, const char *content_type, const void *data,
                  size_t len);

/* Sends a file's bytes [offset, offset + len) without copying them through user space
 * (evbuffer_add_file: sendfile). Takes ownership of fd in every case: it is closed once sent,
 * when the client goes away, or at once for HEAD, a gone client or a failure. */
void ps_reply_file(ps_req_t *req, int status, const char *content_type, int fd, off_t offset,
                   size_t len);

/* --- deferred answers --------------------------------------------------------------------- */

/* The handler will answer later: the request, its arena and its connection stay alive until
 * one ps_reply_* call made later ON THE SAME LOOP THREAD answers it (and releases it). The
 * connection reads no further request meanwhile. If the client closes first, its socket is
 * closed but the request stays; the answer is then dropped (still counted and logged). */
void ps_req_defer(ps_req_t *req);

/* The request's event loop (for timers and for ps_work_queue). */
struct event_base *ps_req_base(ps_req_t *req);

/* Nonzero once the client closed the connection (an answer made then is dropped). */
int ps_req_gone(const ps_req_t *req);

/* --- streamed request bodies (routes with PS_ROUTE_STREAM_BODY) ---------------------------- */

typedef struct {
  /* A piece of the body, as it arrives (chunked framing already removed). data is valid only
   * during the call. May call ps_req_body_pause, or answer the request. */
  void (*data_cb)(void *arg, const char *data, size_t len);
  /* The whole body has arrived. */
  void (*end_cb)(void *arg);
  /* The body failed: PS_ETOOBIG (over the body limit: a 413 has been sent), PS_EPARSE (bad
   * chunk framing: a 400 has been sent) or PS_EIO (the client went away). The handler still
   * answers its deferred request (any ps_reply_* call: the answer is dropped) to release it. */
  void (*error_cb)(void *arg, int err);
} ps_body_reader_t;

/* Delivers the request body through reader (a pointer kept until end_cb or error_cb), on the
 * loop thread, starting with what has already arrived (from the next loop turn). Call it from
 * the handler of a PS_ROUTE_STREAM_BODY route, and ps_req_defer. Returns 0, or PS_EINVAL when
 * the route does not stream or a reader is already set (then no callback is ever called). No
 * callback runs once the request is answered. A request without a body gets end_cb at once. */
int ps_req_body_stream(ps_req_t *req, const ps_body_reader_t *reader, void *arg);

/* Back-pressure: stop reading the socket (no data_cb) until ps_req_body_resume. */
void ps_req_body_pause(ps_req_t *req);
void ps_req_body_resume(ps_req_t *req);

/* --- streamed answers ---------------------------------------------------------------------- */

typedef struct ps_stream ps_stream_t;
typedef struct ps_stream ps_sse_t;
typedef void (*ps_stream_close_cb)(void *arg);

/* Answers with status and a chunked body written later, piece by piece (on a HEAD request:
 * the head only; writes are then dropped). It is the request's answer: the request and its
 * arena are released when this returns (it is counted and logged now), so copy what the
 * stream's writers need first. Returns the stream with one reference owned by the caller,
 * which ps_stream_end gives back: call it exactly once, also after a close callback. Returns
 * NULL when the request cannot stream (already answered, client gone). */
ps_stream_t *ps_reply_stream(ps_req_t *req, int status, const char *content_type);

/* These may be called from ANY thread (the writes reach the loop through a wake-up event).
 * ps_stream_write copies data; returns 0, or PS_EIO once the client is gone or the stream
 * ended (the data is dropped). */
int ps_stream_write(ps_stream_t *s, const void *data, size_t len);
/* Finishes the body (the terminating chunk) and gives up the caller's reference: s must not
 * be used afterwards. The connection goes on with its next request (keep-alive). */
void ps_stream_end(ps_stream_t *s);
/* Bytes written but not yet taken by the kernel (for writers that want to slow down). */
size_t ps_stream_pending(ps_stream_t *s);
/* cb(arg) runs once, on the loop thread, if the client goes away (or the server stops)
 * before ps_stream_end; later writes fail with PS_EIO. Set it on the loop thread right after
 * ps_reply_stream (the client cannot go away before the loop runs again). */
void ps_stream_on_close(ps_stream_t *s, ps_stream_close_cb cb, void *arg);

/* Server-Sent Events on a stream: answers 200 text/event-stream with Cache-Control: no-store
 * and X-Accel-Buffering: no, and writes a ": hb" comment whenever heartbeat_seconds (0: 15)
 * pass without an event (from a timer on the loop). Same ownership as ps_reply_stream: end
 * with ps_sse_end (or ps_stream_end), once. */
ps_sse_t *ps_reply_sse(ps_req_t *req, int heartbeat_seconds);
/* Sends one event (any thread): "event: <event>" when event is non-NULL, data split on
 * newlines into "data:" lines, then a blank line. Returns 0 or PS_EIO as ps_stream_write. */
int ps_sse_send(ps_sse_t *sse, const char *event, const char *data);
void ps_sse_end(ps_sse_t *sse);

/* --- authentication guards ---------------------------------------------------------------- */

/* Requires a valid access token (Authorization: Bearer). On success fills req->claims and
 * returns 0; otherwise answers 401 (absent, malformed, forged or expired token) and returns
 * PS_EAUTH. */
int ps_auth_user_or_reply(ps_req_t *req);

/* Like ps_auth_user_or_reply, and also requires the admin role (403 otherwise). */
int ps_auth_admin_or_reply(ps_req_t *req);

/* The guard of internal routes (service-to-service calls), the same in every service:
 *   - internal_token set and an X-Internal-Token header present: accepted when the header
 *     equals internal_token (lengths and bytes compared in constant time); a wrong secret is
 *     answered 401 and never retried as a bearer token, since it means a misconfiguration or
 *     an attack;
 *   - otherwise (no header, or no internal_token configured, when the header means nothing):
 *     ps_auth_admin_or_reply decides, so an admin access token works too.
 * Returns 0 when the caller may go on (req->claims is filled only when the admin token
 * decided), or PS_EAUTH / PS_EFORBIDDEN / PS_EINTERNAL after answering. */
int ps_auth_internal_or_reply(ps_req_t *req, const char *internal_token);

/* The calling thread's event loop (struct event_base *), for services that need timers. */
void *ps_server_thread_base(void);

#endif
