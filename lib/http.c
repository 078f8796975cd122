/* http.c - the evhttp server: event-loop threads sharing one listening socket, request
 * dispatch through the route table, built-in probes and metrics, graceful drain (http.h). */
#include "polyshop/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/metrics.h"
#include "polyshop/problem.h"

typedef struct {
  ps_server_t *server;
  pthread_t tid;
  struct event_base *base;
  struct evhttp *http;
  struct evconnlistener *listener;
  struct evhttp_bound_socket *bound;
  struct event *drain_ev, *tick_ev;
  void *thread_ctx;
  char id_prefix[17];
  unsigned long long id_counter;
  unsigned long long last_request_ns;
  unsigned long long drain_started_ns;
  int started; /* 1 ok, -1 failed */
} loop_t;

struct ps_server {
  const ps_service_t *svc;
  ps_server_config_t cfg;
  ps_router_t router;
  int fd;
  int bound_port;
  loop_t *loops;
  atomic_int draining;
};

static ps_server_t *running;       /* the one server of this process */
static int stop_pipe[2] = {-1, -1}; /* written by signals and ps_server_stop */
static _Thread_local loop_t *current_loop;

/* --- configuration ---------------------------------------------------------------------- */

void ps_server_config_from_env(ps_server_config_t *cfg, ps_config_t *collector,
                               const char *default_listen) {
  memset(cfg, 0, sizeof(*cfg));
  ps_config_listen(collector, "POLYSHOP_LISTEN", default_listen, cfg->host, sizeof(cfg->host),
                   &cfg->port);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  cfg->threads = (int)ps_config_int(collector, "POLYSHOP_THREADS", cores > 0 ? cores : 2, 1, 256);
  cfg->body_limit =
      (size_t)ps_config_int(collector, "POLYSHOP_BODY_LIMIT", 1 << 20, 1024, 64ll << 20);
  cfg->drain_seconds = (int)ps_config_int(collector, "POLYSHOP_DRAIN_SECONDS", 10, 1, 300);
  cfg->fd = -1;
  cfg->install_signals = 1;
}

/* --- request helpers -------------------------------------------------------------------- */

const char *ps_req_param(ps_req_t *req, const char *name) {
  for (int i = 0; i < req->nparams; i++) {
    if (strcmp(req->params[i].name, name)) continue;
    char *raw = ps_arena_strndup(&req->arena, req->params[i].value, req->params[i].len);
    size_t len = 0;
    char *dec = evhttp_uridecode(raw, 0, &len);
    if (!dec) return NULL;
    char *out = strlen(dec) == len ? ps_arena_strndup(&req->arena, dec, len) : NULL;
    free(dec); /* libevent allocated it with malloc */
    return out; /* NULL when the value hides a NUL byte */
  }
  return NULL;
}

static void clear_query(void *q) { evhttp_clear_headers(q); }

static struct evkeyvalq *req_query(ps_req_t *req) {
  if (req->query_) return req->query_;
  struct evkeyvalq *q = ps_arena_alloc(&req->arena, sizeof(*q));
  TAILQ_INIT(q);
  const char *s = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req->ev));
  if (s && evhttp_parse_query_str(s, q) != 0) evhttp_clear_headers(q); /* malformed: none */
  ps_arena_defer(&req->arena, clear_query, q);
  req->query_ = q;
  return q;
}

const char *ps_req_query(ps_req_t *req, const char *name) {
  return evhttp_find_header(req_query(req), name);
}

void ps_req_query_each(ps_req_t *req, void (*cb)(void *arg, const char *key, const char *value),
                       void *arg) {
  struct evkeyval *kv;
  TAILQ_FOREACH(kv, req_query(req), next) cb(arg, kv->key, kv->value);
}

const char *ps_req_header(ps_req_t *req, const char *name) {
  return evhttp_find_header(evhttp_request_get_input_headers(req->ev), name);
}

void *ps_server_thread_base(void) { return current_loop ? current_loop->base : NULL; }

int ps_server_port(void) { return running ? running->bound_port : 0; }

/* --- answering -------------------------------------------------------------------------- */

static const char *reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
  }
}

void ps_reply_header(ps_req_t *req, const char *name, const char *value) {
  evhttp_add_header(evhttp_request_get_output_headers(req->ev), name, value);
}

void ps_reply_raw(ps_req_t *req, int status, const char *content_type, const void *data,
                  size_t len) {
  if (req->status) {
    ps_log(PS_LOG_ERROR, req->request_id, "second reply to %s %s ignored", req->method, req->path);
    return;
  }
  req->status = status;
  struct evkeyvalq *h = evhttp_request_get_output_headers(req->ev);
  if (content_type) evhttp_add_header(h, "Content-Type", content_type);
  evhttp_add_header(h, "X-Request-Id", req->request_id);
  if (atomic_load_explicit(&req->server->draining, memory_order_relaxed))
    evhttp_add_header(h, "Connection", "close"); /* send keep-alive clients elsewhere */
  struct evbuffer *out = evhttp_request_get_output_buffer(req->ev);
  if (len) evbuffer_add(out, data, len);
  evhttp_send_reply(req->ev, status, reason_phrase(status), NULL);
}

static int dump_cb(const char *buffer, size_t size, void *data) {
  return evbuffer_add(data, buffer, size);
}

void ps_reply_json(ps_req_t *req, int status, json_t *body) {
  if (!body) {
    ps_reply_raw(req, status, NULL, NULL, 0);
    return;
  }
  /* Serialise straight into libevent's output buffer: no intermediate copy. */
  struct evbuffer *out = evhttp_request_get_output_buffer(req->ev);
  json_dump_callback(body, dump_cb, out, JSON_COMPACT);
  json_decref(body);
  ps_reply_raw(req, status, "application/json", NULL, 0);
}

/* --- dispatch --------------------------------------------------------------------------- */

static const char *method_name(enum evhttp_cmd_type t) {
  switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
  }
  return "UNKNOWN";
}

/* An incoming X-Request-Id is kept when it is short and made of safe characters, so it can
 * be logged and echoed without escaping; otherwise a fresh one is made. */
static const char *request_id(ps_req_t *req, loop_t *loop) {
  const char *in = ps_req_header(req, "X-Request-Id");
  if (in) {
    size_t n = strlen(in);
    int ok = n > 0 && n <= 128;
    for (size_t i = 0; ok && i < n; i++) {
      char c = in[i];
      ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == ':';
    }
    if (ok) return in;
  }
  return ps_arena_sprintf(&req->arena, "%s-%llx", loop->id_prefix, ++loop->id_counter);
}

static void handle_healthz(ps_req_t *req) {
  ps_reply_raw(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
}

static void handle_readyz(ps_req_t *req) {
  const ps_service_t *svc = req->server->svc;
  if (atomic_load(&req->server->draining)) {
    ps_reply_problem(req, PS_PROBLEM_UNAVAILABLE, NULL, "draining before shutdown");
    return;
  }
  int rc = svc->ready_cb ? svc->ready_cb(svc->ctx, req->thread_ctx) : 0;
  if (rc) {
    ps_reply_problem(req, PS_PROBLEM_UNAVAILABLE, NULL, "store unreachable: %s", ps_strerror(rc));
    return;
  }
  ps_reply_raw(req, 200, "application/json", "{\"status\":\"ready\"}", 18);
}

static void handle_metrics(ps_req_t *req) {
  size_t len;
  char *text = ps_metrics_render(&req->arena, &len);
  ps_reply_raw(req, 200, "text/plain; version=0.0.4", text, len);
}

typedef struct {
  const char *path;
  ps_handler_cb handler;
} builtin_t;

static const builtin_t builtins[] = {
    {"/healthz", handle_healthz}, {"/readyz", handle_readyz}, {"/metrics", handle_metrics}};

static int read_body(ps_req_t *req) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req->ev);
  size_t len = evbuffer_get_length(in);
  if (len > req->server->cfg.body_limit) {
    ps_reply_problem(req, PS_PROBLEM_PAYLOAD_TOO_LARGE, NULL,
                     "the request body has %zu bytes; the limit is %zu", len,
                     req->server->cfg.body_limit);
    return PS_ETOOBIG;
  }
  char *body = ps_arena_alloc(&req->arena, len + 1);
  if (len) evbuffer_copyout(in, body, len);
  req->body = body;
  req->body_len = len;
  return 0;
}

static void route_request(ps_req_t *req, size_t *route_index) {
  ps_server_t *s = req->server;
  *route_index = s->router.nroutes;
  for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
    if (strcmp(req->path, builtins[i].path) == 0 && strcmp(req->method, "GET") == 0) {
      req->route = builtins[i].path;
      builtins[i].handler(req);
      return;
    }
  }
  char allow[64];
  int idx = ps_router_match(&s->router, req->method, req->path, req->params, &req->nparams,
                            allow, sizeof(allow));
  if (idx == PS_ROUTE_NOT_FOUND) {
    ps_reply_problem(req, PS_PROBLEM_NOT_FOUND, NULL, "no resource at %s", req->path);
    return;
  }
  if (idx == PS_ROUTE_BAD_METHOD) {
    ps_reply_header(req, "Allow", allow);
    ps_reply_problem(req, PS_PROBLEM_METHOD_NOT_ALLOWED, NULL, "%s is not allowed on %s; use %s",
                     req->method, req->path, allow);
    return;
  }
  *route_index = (size_t)idx;
  req->route = s->svc->routes[idx].pattern;
  if (read_body(req)) return;
  s->svc->routes[idx].handler(req);
  if (!req->status) {
    ps_log(PS_LOG_ERROR, req->request_id, "handler for %s %s sent no answer", req->method,
           req->route);
    ps_reply_problem(req, PS_PROBLEM_INTERNAL, NULL, "the handler sent no answer");
  }
}

static void dispatch_cb(struct evhttp_request *ev, void *arg) {
  loop_t *loop = arg;
  ps_server_t *s = loop->server;
  ps_req_t req;
  memset(&req, 0, sizeof(req));
  req.start_ns = ps_now_ns();
  loop->last_request_ns = req.start_ns;
  ps_arena_init(&req.arena);
  req.ev = ev;
  req.server = s;
  req.thread_ctx = loop->thread_ctx;
  req.service_ctx = s->svc->ctx;
  req.jwt_keys = s->svc->jwt_keys;
  req.method = method_name(evhttp_request_get_command(ev));
  const char *p = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(ev));
  req.path = p && *p ? p : "/";
  req.route = "unmatched";
  req.request_id = request_id(&req, loop);
  req.traceparent = ps_req_header(&req, "traceparent");
  char *peer = NULL;
  ev_uint16_t peer_port = 0;
  evhttp_connection_get_peer(evhttp_request_get_connection(ev), &peer, &peer_port);
  req.client = peer;
  req.body = "";

  size_t route_index;
  route_request(&req, &route_index);

  double secs = (double)(ps_now_ns() - req.start_ns) / 1e9;
  ps_metrics_request(route_index, req.status, secs);
  if (route_index < s->router.nroutes || req.status >= 400)
    ps_log_access(req.request_id, req.method, req.path, req.route, req.status, secs, req.client);
  ps_arena_reset(&req.arena);
}

/* --- loops, start and drain ------------------------------------------------------------- */

/* Drain, in two phases on every loop. First the loop keeps accepting for up to a second, so
 * connections already queued in the kernel are served instead of reset (readiness is already
 * failing, so load balancers stop sending new ones); every answer says Connection: close.
 * Then it stops accepting and finishes what its open connections send. Each phase ends after
 * a quiet spell with no new request; the deadline ends everything. */
enum { QUIET_NS = 200000000ull, ACCEPT_PHASE_NS = 1000000000ull };

static void tick_cb(evutil_socket_t fd, short what, void *arg) {
  loop_t *loop = arg;
  unsigned long long now = ps_now_ns();
  unsigned long long deadline =
      loop->drain_started_ns + (unsigned long long)loop->server->cfg.drain_seconds * 1000000000ull;
  int quiet = now - loop->last_request_ns > QUIET_NS;
  if (loop->bound && (quiet || now - loop->drain_started_ns > ACCEPT_PHASE_NS)) {
    evhttp_del_accept_socket(loop->http, loop->bound); /* frees the listener, keeps the fd */
    loop->bound = NULL;
    loop->last_request_ns = now; /* a fresh quiet spell for the second phase */
    return;
  }
  if ((!loop->bound && quiet) || now > deadline) event_base_loopexit(loop->base, NULL);
}

static void drain_cb(evutil_socket_t fd, short what, void *arg) {
  loop_t *loop = arg;
  loop->drain_started_ns = ps_now_ns();
  struct timeval tv = {0, 50000};
  event_add(loop->tick_ev, &tv);
}

static void *loop_main(void *arg) {
  loop_t *loop = arg;
  current_loop = loop;
  if (loop->server->svc->thread_init_cb)
    loop->thread_ctx = loop->server->svc->thread_init_cb(loop->server->svc->ctx);
  event_base_dispatch(loop->base);
  if (loop->server->svc->thread_cleanup_cb) loop->server->svc->thread_cleanup_cb(loop->thread_ctx);
  current_loop = NULL;
  return NULL;
}

static int loop_init(loop_t *loop, ps_server_t *s) {
  loop->server = s;
  loop->base = event_base_new();
  loop->http = evhttp_new(loop->base);
  if (!loop->base || !loop->http) return PS_ENOMEM;
  /* libevent answers bodies beyond its own limit with an HTML 413; ours (problem+json)
   * covers everything up to 4x the limit, the edge answers beyond. */
  evhttp_set_max_body_size(loop->http, (ev_ssize_t)(s->cfg.body_limit * 4));
  evhttp_set_max_headers_size(loop->http, 16384);
  evhttp_set_timeout(loop->http, 60);
  evhttp_set_allowed_methods(loop->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                             EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
                                             EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
  evhttp_set_default_content_type(loop->http, NULL);
  evhttp_set_gencb(loop->http, dispatch_cb, loop);
  /* No LEV_OPT_CLOSE_ON_FREE: every loop listens on the same socket, which the server
   * closes once. */
  loop->listener = evconnlistener_new(loop->base, NULL, NULL, LEV_OPT_REUSEABLE, -1, s->fd);
  if (!loop->listener) return PS_EIO;
  loop->bound = evhttp_bind_listener(loop->http, loop->listener);
  loop->drain_ev = event_new(loop->base, -1, 0, drain_cb, loop);
  loop->tick_ev = event_new(loop->base, -1, EV_PERSIST, tick_cb, loop);
  unsigned char rnd[8];
  randombytes_buf(rnd, sizeof(rnd));
  sodium_bin2hex(loop->id_prefix, sizeof(loop->id_prefix), rnd, sizeof(rnd));
  return 0;
}

static void loop_cleanup(loop_t *loop) {
  if (loop->drain_ev) event_free(loop->drain_ev);
  if (loop->tick_ev) event_free(loop->tick_ev);
  if (loop->http) evhttp_free(loop->http); /* also frees a still-bound listener */
  if (loop->base) event_base_free(loop->base);
}

static int open_listener(ps_server_t *s) {
  if (s->cfg.fd >= 0) {
    s->fd = s->cfg.fd;
  } else {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->cfg.port)};
    if (inet_pton(AF_INET, strcmp(s->cfg.host, "localhost") ? s->cfg.host : "127.0.0.1",
                  &addr.sin_addr) != 1) {
      ps_log_error("cannot listen on %s: not an IPv4 address", s->cfg.host);
      return PS_ECONFIG;
    }
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&addr, sizeof(addr)) ||
        listen(s->fd, 1024)) {
      ps_log_error("cannot listen on %s:%d: %s", s->cfg.host, s->cfg.port, strerror(errno));
      if (s->fd >= 0) close(s->fd);
      return PS_EIO;
    }
  }
  /* Accepted sockets inherit TCP_NODELAY from the listener on Linux. Without it a response
   * that evhttp writes in two pieces waits for the client's delayed ACK: ~40 ms per request
   * once a body passes ~16 KB (a page of products). */
  int nodelay = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
  struct sockaddr_in bound;
  socklen_t blen = sizeof(bound);
  getsockname(s->fd, (struct sockaddr *)&bound, &blen);
  s->bound_port = ntohs(bound.sin_port);
  return 0;
}

static void on_signal(int sig) {
  (void)sig;
  ps_server_stop();
}

void ps_server_stop(void) {
  if (stop_pipe[1] >= 0) {
    ssize_t w = write(stop_pipe[1], "x", 1);
    (void)w;
  }
}

static int init_router(ps_server_t *s) {
  const ps_service_t *svc = s->svc;
  const char **methods = ps_calloc(svc->nroutes + 1, sizeof(char *));
  const char **patterns = ps_calloc(svc->nroutes + 1, sizeof(char *));
  for (size_t i = 0; i < svc->nroutes; i++) {
    methods[i] = svc->routes[i].method;
    patterns[i] = svc->routes[i].pattern;
  }
  int rc = ps_router_init(&s->router, methods, patterns, svc->nroutes);
  if (rc == 0) ps_metrics_init(svc->name, methods, patterns, svc->nroutes);
  ps_free(methods);
  ps_free(patterns);
  return rc;
}

static void wait_for_stop(void) {
  char c;
  while (read(stop_pipe[0], &c, 1) < 0 && errno == EINTR) {
  }
}

int ps_server_run(const ps_service_t *svc, const ps_server_config_t *cfg) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, (void (*)(void))evthread_use_pthreads);
  if (sodium_init() < 0) return PS_EINTERNAL;
  ps_server_t *s = ps_calloc(1, sizeof(*s));
  s->svc = svc;
  s->cfg = *cfg;
  if (s->cfg.threads < 1) s->cfg.threads = 1;
  int rc = init_router(s);
  if (rc) {
    ps_log_error("route table of %s is malformed", svc->name);
    ps_free(s);
    return rc;
  }
  if ((rc = open_listener(s))) goto out_router;
  if (pipe2(stop_pipe, O_CLOEXEC)) {
    rc = PS_EIO;
    goto out_fd;
  }
  struct sigaction sa_old_term, sa_old_int;
  if (cfg->install_signals) {
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &sa_old_term);
    sigaction(SIGINT, &sa, &sa_old_int);
    signal(SIGPIPE, SIG_IGN);
  }
  s->loops = ps_calloc((size_t)s->cfg.threads, sizeof(loop_t));
  int started = 0;
  for (; started < s->cfg.threads; started++) {
    if ((rc = loop_init(&s->loops[started], s))) break;
  }
  running = s;
  if (!rc) {
    for (int i = 0; i < s->cfg.threads; i++) pthread_create(&s->loops[i].tid, NULL, loop_main, &s->loops[i]);
    ps_log_info("%s listening on %s:%d with %d event loops", svc->name, s->cfg.host,
                s->bound_port, s->cfg.threads);
    wait_for_stop();
    ps_log_info("draining: no new connections, finishing requests in flight");
    atomic_store(&s->draining, 1);
    for (int i = 0; i < s->cfg.threads; i++) event_active(s->loops[i].drain_ev, 0, 0);
    for (int i = 0; i < s->cfg.threads; i++) pthread_join(s->loops[i].tid, NULL);
    ps_log_info("drained, exiting");
  }
  for (int i = 0; i < s->cfg.threads; i++) loop_cleanup(&s->loops[i]);
  ps_free(s->loops);
  running = NULL;
  if (cfg->install_signals) {
    sigaction(SIGTERM, &sa_old_term, NULL);
    sigaction(SIGINT, &sa_old_int, NULL);
  }
  close(stop_pipe[0]);
  close(stop_pipe[1]);
  stop_pipe[0] = stop_pipe[1] = -1;
out_fd:
  if (cfg->fd < 0) close(s->fd);
out_router:
  ps_metrics_cleanup();
  ps_router_cleanup(&s->router);
  ps_free(s);
  return rc;
}
