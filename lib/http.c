/* http.c - the server: event-loop threads sharing one listening socket, request dispatch
 * through the route table, built-in probes and metrics, graceful drain (http.h). The wire
 * protocol is in http1.c. */
#include "polyshop/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
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
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_internal.h"
#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/metrics.h"
#include "polyshop/problem.h"

typedef ps__loop_t loop_t;

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
  const char *s = req->query_string_;
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
  for (ps__header_t *h = req->in_headers_; h; h = h->next)
    if (strcasecmp(h->name, name) == 0) return h->value;
  return NULL;
}

void *ps_server_thread_base(void) { return current_loop ? current_loop->base : NULL; }

int ps_server_port(void) { return running ? running->bound_port : 0; }

/* --- answering -------------------------------------------------------------------------- */

void ps_reply_header(ps_req_t *req, const char *name, const char *value) {
  ps__header_t *h = ps_arena_alloc(&req->arena, sizeof(*h));
  h->name = ps_arena_strdup(&req->arena, name);
  h->value = ps_arena_strdup(&req->arena, value);
  h->next = NULL;
  ps__header_t **tail = &req->out_headers_; /* sent in the order they were set */
  while (*tail) tail = &(*tail)->next;
  *tail = h;
}

/* A deferred request is released by its answer, unless the handler is still running (then
 * ps__dispatch releases it when the handler returns) or the server answers on its own. */
static void release_if_held(ps_req_t *req) {
  if (req->deferred_ && !req->in_handler_ && !req->refusing_) ps__req_release(req);
}

/* Sends the scratch buffer of the request's loop as the body. */
static void send_answer(ps_req_t *req, int status, const char *content_type) {
  loop_t *loop = ps__conn_loop(req->conn_);
  if (req->status) {
    if (!req->server_answered_)
      ps_log(PS_LOG_ERROR, req->request_id, "second reply to %s %s ignored", req->method, req->path);
    evbuffer_drain(loop->scratch, evbuffer_get_length(loop->scratch));
    release_if_held(req);
    return;
  }
  req->status = status;
  if (atomic_load_explicit(&req->server->draining, memory_order_relaxed))
    req->keep_alive_ = 0; /* send keep-alive clients elsewhere */
  if (ps__conn_gone(req->conn_))
    evbuffer_drain(loop->scratch, evbuffer_get_length(loop->scratch)); /* nobody to read it */
  else
    ps__conn_write_answer(req, status, content_type, evbuffer_get_length(loop->scratch),
                          loop->scratch);
  release_if_held(req);
}

void ps_reply_raw(ps_req_t *req, int status, const char *content_type, const void *data,
                  size_t len) {
  if (len) evbuffer_add(ps__conn_loop(req->conn_)->scratch, data, len);
  send_answer(req, status, content_type);
}

void ps_reply_file(ps_req_t *req, int status, const char *content_type, int fd, off_t offset,
                   size_t len) {
  if (req->status || ps__conn_gone(req->conn_)) {
    close(fd);
    send_answer(req, status, content_type); /* logs a second reply, or drops it */
    return;
  }
  req->status = status;
  if (atomic_load_explicit(&req->server->draining, memory_order_relaxed)) req->keep_alive_ = 0;
  ps__conn_write_answer(req, status, content_type, len, NULL);
  if (req->head_only_)
    close(fd);
  else if (ps__conn_write_file(req, fd, offset, len)) {
    close(fd);
    ps_log(PS_LOG_ERROR, req->request_id, "cannot send a file for %s %s", req->method, req->path);
  }
  release_if_held(req);
}

ps_stream_t *ps_reply_stream(ps_req_t *req, int status, const char *content_type) {
  if (req->status) {
    send_answer(req, status, content_type); /* logs the second reply */
    return NULL;
  }
  if (ps__conn_gone(req->conn_)) {
    req->status = status;
    release_if_held(req);
    return NULL;
  }
  req->status = status;
  if (atomic_load_explicit(&req->server->draining, memory_order_relaxed)) req->keep_alive_ = 0;
  ps__conn_write_answer(req, status, content_type, (uint64_t)-1, NULL);
  ps_stream_t *st = ps__stream_new(req->conn_, !ps__conn_http10(req->conn_), req->head_only_);
  if (!req->head_only_) req->stream_ = st; /* the connection carries it once released */
  release_if_held(req);
  return st;
}

void ps_req_defer(ps_req_t *req) {
  if (req->deferred_ || req->status) return; /* answered already: nothing to wait for */
  req->deferred_ = 1;
  ps__conn_deferred(req->conn_);
}

struct event_base *ps_req_base(ps_req_t *req) { return ps__conn_loop(req->conn_)->base; }

int ps_req_gone(const ps_req_t *req) { return ps__conn_gone(req->conn_); }

static int dump_cb(const char *buffer, size_t size, void *data) {
  return evbuffer_add(data, buffer, size);
}

void ps_reply_json(ps_req_t *req, int status, json_t *body) {
  if (!body) {
    send_answer(req, status, NULL);
    return;
  }
  /* Serialise straight into the loop's scratch buffer, which moves into the output. */
  json_dump_callback(body, dump_cb, ps__conn_loop(req->conn_)->scratch, JSON_COMPACT);
  json_decref(body);
  send_answer(req, status, "application/json");
}

/* --- dispatch --------------------------------------------------------------------------- */

/* An incoming X-Request-Id is kept when it is short and made of safe characters, so it can
 * be logged and echoed without escaping; otherwise a fresh one is made. */
const char *ps__new_request_id(ps_req_t *req, loop_t *loop) {
  return ps_arena_sprintf(&req->arena, "%s-%llx", loop->id_prefix, ++loop->id_counter);
}

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
  return ps__new_request_id(req, loop);
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

enum { MATCH_ROUTE = -1, MATCH_NOT_FOUND = -2, MATCH_BAD_METHOD = -3 };

/* A GET route answers HEAD too (RFC 9110 §9.3.2), so Allow names HEAD beside GET. */
static const char *allow_with_head(ps_req_t *req, const char *allow) {
  int get = 0, head = 0;
  for (const char *p = allow; *p;) {
    size_t n = strcspn(p, ", ");
    if (n == 3 && !memcmp(p, "GET", 3)) get = 1;
    if (n == 4 && !memcmp(p, "HEAD", 4)) head = 1;
    p += n;
    p += strspn(p, ", ");
  }
  return get && !head ? ps_arena_sprintf(&req->arena, "%s, HEAD", allow)
                      : ps_arena_strdup(&req->arena, allow);
}

unsigned ps__req_route(ps_req_t *req) {
  loop_t *loop = ps__conn_loop(req->conn_);
  ps_server_t *s = req->server;
  loop->last_request_ns = req->start_ns;
  req->request_id = request_id(req, loop);
  req->traceparent = ps_req_header(req, "traceparent");
  req->route_index_ = s->router.nroutes;
  int get_like = strcmp(req->method, "GET") == 0 || req->head_only_;
  for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
    if (get_like && strcmp(req->path, builtins[i].path) == 0) {
      req->route = builtins[i].path;
      req->match_ = (int)i;
      return 0;
    }
  }
  char allow[64];
  int idx = ps_router_match(&s->router, req->method, req->path, req->params, &req->nparams,
                            allow, sizeof(allow));
  if (idx == PS_ROUTE_BAD_METHOD && req->head_only_) {
    char ignored[64];
    int get = ps_router_match(&s->router, "GET", req->path, req->params, &req->nparams,
                              ignored, sizeof(ignored));
    if (get >= 0) idx = get;
  }
  if (idx < 0) {
    req->match_ = idx == PS_ROUTE_NOT_FOUND ? MATCH_NOT_FOUND : MATCH_BAD_METHOD;
    if (idx == PS_ROUTE_BAD_METHOD) req->allow_ = allow_with_head(req, allow);
    return 0;
  }
  req->match_ = MATCH_ROUTE;
  req->route_index_ = (size_t)idx;
  req->route = s->svc->routes[idx].pattern;
  return s->svc->routes[idx].flags;
}

static void run_handler(ps_req_t *req) {
  ps_server_t *s = req->server;
  if (req->match_ >= 0) {
    builtins[req->match_].handler(req);
  } else if (req->match_ == MATCH_NOT_FOUND) {
    ps_reply_problem(req, PS_PROBLEM_NOT_FOUND, NULL, "no resource at %s", req->path);
  } else if (req->match_ == MATCH_BAD_METHOD) {
    ps_reply_header(req, "Allow", req->allow_);
    ps_reply_problem(req, PS_PROBLEM_METHOD_NOT_ALLOWED, NULL, "%s is not allowed on %s; use %s",
                     req->method, req->path, req->allow_);
  } else {
    s->svc->routes[req->route_index_].handler(req);
  }
}

void ps__dispatch(ps_req_t *req) {
  req->in_handler_ = 1;
  run_handler(req);
  req->in_handler_ = 0;
  if (!req->status && !req->deferred_) {
    ps_log(PS_LOG_ERROR, req->request_id, "handler for %s %s sent no answer", req->method,
           req->route);
    ps_reply_problem(req, PS_PROBLEM_INTERNAL, NULL, "the handler sent no answer");
  }
  if (req->status) ps__req_release(req);
}

void ps__req_init(ps_req_t *req, loop_t *loop, ps__conn_t *conn) {
  ps_arena_t arena = req->arena; /* the connection's arena, with its first block */
  memset(req, 0, sizeof(*req));
  req->arena = arena;
  req->start_ns = ps_now_ns();
  req->conn_ = conn;
  req->server = loop->server;
  req->thread_ctx = loop->thread_ctx;
  req->service_ctx = loop->server->svc->ctx;
  req->jwt_keys = loop->server->svc->jwt_keys;
  req->client = ps__conn_peer(conn);
  req->route = "unmatched";
  req->body = "";
  req->keep_alive_ = 1;
}

static void release_with(ps_req_t *req, struct ps_stream *stream) {
  ps_server_t *s = req->server;
  double secs = (double)(ps_now_ns() - req->start_ns) / 1e9;
  size_t route_index = req->route_index_ < s->router.nroutes ? req->route_index_ : s->router.nroutes;
  ps_metrics_request(route_index, req->status, secs);
  if (route_index < s->router.nroutes || req->status >= 400)
    ps_log_access(req->request_id, req->method, req->path, req->route, req->status, secs,
                  req->client);
  /* A connection that now carries a stream keeps no arena block: it may stay open for hours. */
  if (stream) ps_arena_reset(&req->arena);
  else ps_arena_recycle(&req->arena);
  ps__conn_request_done(req->conn_, stream);
}

void ps__req_release(ps_req_t *req) { release_with(req, req->stream_); }

void ps__req_refuse(ps_req_t *req, int problem, const char *detail) {
  if (!req->method) req->method = "";
  if (!req->path) req->path = "";
  if (!req->request_id) req->request_id = ps__new_request_id(req, ps__conn_loop(req->conn_));
  req->keep_alive_ = 0;
  req->refusing_ = 1;
  ps_reply_problem(req, (ps_problem_t)problem, NULL, "%s", detail);
  req->refusing_ = 0;
  req->server_answered_ = 1;
  if (!req->deferred_) ps__req_release(req); /* else its handler's answer (dropped) releases it */
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
  if (loop->listener && (quiet || now - loop->drain_started_ns > ACCEPT_PHASE_NS)) {
    evconnlistener_free(loop->listener); /* keeps the shared fd (no LEV_OPT_CLOSE_ON_FREE) */
    loop->listener = NULL;
    loop->last_request_ns = now; /* a fresh quiet spell for the second phase */
    return;
  }
  if ((!loop->listener && quiet && !loop->deferred) || now > deadline)
    event_base_loopexit(loop->base, NULL);
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
  ps__conns_close_all(loop); /* here, so that stream close callbacks run on the loop's thread */
  if (loop->server->svc->thread_cleanup_cb) loop->server->svc->thread_cleanup_cb(loop->thread_ctx);
  current_loop = NULL;
  return NULL;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr,
                      int socklen, void *arg) {
  ps__conn_accept(arg, fd, addr);
}

static int loop_init(loop_t *loop, ps_server_t *s) {
  loop->server = s;
  loop->server_body_limit = s->cfg.body_limit;
  /* The epoll changelist folds an enable and a disable of the same event within one loop turn
   * into nothing: fewer epoll_ctl calls when an answer needs the write event. */
  struct event_config *ec = event_config_new();
  event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
  loop->base = event_base_new_with_config(ec);
  event_config_free(ec);
  loop->scratch = evbuffer_new();
  if (!loop->base || !loop->scratch) return PS_ENOMEM;
  /* No LEV_OPT_CLOSE_ON_FREE: every loop listens on the same socket, which the server
   * closes once. Backlog 0: the socket already listens (1024 deep, or whatever a passed-in
   * socket has); -1 would make libevent call listen(fd, 128) again and shrink the queue. */
  loop->listener = evconnlistener_new(loop->base, accept_cb, loop, LEV_OPT_REUSEABLE, 0, s->fd);
  if (!loop->listener) return PS_EIO;
  loop->drain_ev = event_new(loop->base, -1, 0, drain_cb, loop);
  loop->tick_ev = event_new(loop->base, -1, EV_PERSIST, tick_cb, loop);
  ps__streams_init(loop);
  unsigned char rnd[8];
  randombytes_buf(rnd, sizeof(rnd));
  sodium_bin2hex(loop->id_prefix, sizeof(loop->id_prefix), rnd, sizeof(rnd));
  return 0;
}

static void loop_cleanup(loop_t *loop) {
  ps__conns_close_all(loop);
  if (loop->listener) evconnlistener_free(loop->listener);
  if (loop->drain_ev) event_free(loop->drain_ev);
  if (loop->tick_ev) event_free(loop->tick_ev);
  if (loop->base) ps__streams_cleanup(loop);
  if (loop->scratch) evbuffer_free(loop->scratch);
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
  /* Accepted sockets inherit TCP_NODELAY from the listener on Linux. Without it an answer
   * written in two pieces waits for the client's delayed ACK: ~40 ms per request once a body
   * passes ~16 KB (a page of products). */
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
