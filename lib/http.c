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

/* Sends the scratch buffer of the request's loop as the body. */
static void send_answer(ps_req_t *req, int status, const char *content_type) {
  if (req->status) {
    ps_log(PS_LOG_ERROR, req->request_id, "second reply to %s %s ignored", req->method, req->path);
    evbuffer_drain(current_loop->scratch, evbuffer_get_length(current_loop->scratch));
    return;
  }
  req->status = status;
  if (atomic_load_explicit(&req->server->draining, memory_order_relaxed))
    req->keep_alive_ = 0; /* send keep-alive clients elsewhere */
  ps__conn_write_answer(req, status, content_type, current_loop->scratch);
}

void ps_reply_raw(ps_req_t *req, int status, const char *content_type, const void *data,
                  size_t len) {
  if (len) evbuffer_add(current_loop->scratch, data, len);
  send_answer(req, status, content_type);
}

static int dump_cb(const char *buffer, size_t size, void *data) {
  return evbuffer_add(data, buffer, size);
}

void ps_reply_json(ps_req_t *req, int status, json_t *body) {
  if (!body) {
    send_answer(req, status, NULL);
    return;
  }
  /* Serialise straight into the loop's scratch buffer, which moves into the output. */
  json_dump_callback(body, dump_cb, current_loop->scratch, JSON_COMPACT);
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
  s->svc->routes[idx].handler(req);
  if (!req->status) {
    ps_log(PS_LOG_ERROR, req->request_id, "handler for %s %s sent no answer", req->method,
           req->route);
    ps_reply_problem(req, PS_PROBLEM_INTERNAL, NULL, "the handler sent no answer");
  }
}

void ps__req_init(ps_req_t *req, loop_t *loop, ps__conn_t *conn) {
  memset(req, 0, sizeof(*req));
  req->start_ns = ps_now_ns();
  ps_arena_init(&req->arena);
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

void ps__req_finish(ps_req_t *req, size_t route_index) {
  ps_server_t *s = req->server;
  double secs = (double)(ps_now_ns() - req->start_ns) / 1e9;
  if (route_index == (size_t)-1) route_index = s->router.nroutes;
  ps_metrics_request(route_index, req->status, secs);
  if (route_index < s->router.nroutes || req->status >= 400)
    ps_log_access(req->request_id, req->method, req->path, req->route, req->status, secs,
                  req->client);
  ps_arena_reset(&req->arena);
}

void ps__dispatch(ps_req_t *req, int flags, size_t body_len) {
  loop_t *loop = current_loop;
  loop->last_request_ns = req->start_ns;
  req->request_id = request_id(req, loop);
  req->traceparent = ps_req_header(req, "traceparent");
  size_t route_index = (size_t)-1;
  if (flags & PS__TOO_LARGE)
    ps_reply_problem(req, PS_PROBLEM_PAYLOAD_TOO_LARGE, NULL,
                     "the request body has %zu bytes; the limit is %zu", body_len,
                     req->server->cfg.body_limit);
  else
    route_request(req, &route_index);
  ps__req_finish(req, route_index);
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
  if ((!loop->listener && quiet) || now > deadline) event_base_loopexit(loop->base, NULL);
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
