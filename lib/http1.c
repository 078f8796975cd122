/* http1.c - HTTP/1.1 on plain libevent bufferevents: reads requests off a connection (keep-
 * alive and pipelining included), hands each complete one to the dispatcher, and writes the
 * answers. It replaces evhttp, which measured at ~60% of nginx's throughput on our machines
 * against ~95% for this design (bench/ref/raw_healthz.c): evhttp allocates a request object,
 * two header lists and several buffers per request; here a request lives in its arena.
 *
 * Bodies need a Content-Length (chunked requests get 411: the edge and every client we have
 * send lengths). Limits: 16 KiB of request line and headers (431), 100 headers, the body
 * limit (413 answered before the body is read, then the connection closes). */
#include "http_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "polyshop/alloc.h"
#include "polyshop/log.h"
#include "polyshop/problem.h"

enum { MAX_HEAD = 16384, MAX_HEADERS = 100, IDLE_SECONDS = 60 };

struct ps__conn {
  ps__loop_t *loop;
  struct bufferevent *bev;
  ps__conn_t *prev, *next; /* the loop's list of open connections */
  char peer[INET6_ADDRSTRLEN];
  int closing;             /* answer sent with Connection: close: free once written */
  int lingering;           /* written and half-closed: reading what the client still sends */
};

/* --- the loop's connection list ------------------------------------------------------------ */

static void conn_free(ps__conn_t *c) {
  if (c->prev) c->prev->next = c->next;
  else c->loop->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  bufferevent_free(c->bev);
  ps_free(c);
}

void ps__conns_close_all(ps__loop_t *loop) {
  while (loop->conns) conn_free(loop->conns);
}

/* --- writing answers ------------------------------------------------------------------------- */

static const char *reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
  }
}

/* The Date header, formatted once a second per loop. */
static const char *http_date(ps__loop_t *loop) {
  time_t now = time(NULL);
  if (now != loop->date_at) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(loop->date, sizeof(loop->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    loop->date_at = now;
  }
  return loop->date;
}

static void start_linger(ps__conn_t *c);

/* Writes what the output holds straight to the socket, now. Writing at once, instead of
 * waiting for the loop to report the socket writable, saves two epoll_ctl calls and a loop
 * turn per answer (measured: most of the gap between evhttp and nginx). Only an answer the
 * kernel does not take whole enables bufferevent's write event (write_cb finishes it). */
static void flush(ps__conn_t *c) {
  struct evbuffer *out = bufferevent_get_output(c->bev);
  evutil_socket_t fd = bufferevent_getfd(c->bev);
  while (evbuffer_get_length(out) > 0) {
    int n = evbuffer_write(out, fd);
    if (n <= 0) break; /* EAGAIN, or an error that bufferevent will report to event_cb */
  }
  if (evbuffer_get_length(out) > 0)
    bufferevent_enable(c->bev, EV_WRITE);
  else if (c->closing)
    start_linger(c);
}

/* A small buffer for an answer's head: pieces are copied in, and whatever does not fit (a
 * long header value) goes to the output directly, in order. */
typedef struct {
  char buf[512];
  size_t len;
  struct evbuffer *spill; /* set once a piece did not fit: the rest goes there */
} head_t;

static void head_flush(head_t *h, struct evbuffer *out) {
  if (h->len) evbuffer_add(out, h->buf, h->len);
  h->len = 0;
}

static void head_add_n(head_t *h, const char *s, size_t n) {
  if (h->len + n <= sizeof(h->buf)) {
    memcpy(h->buf + h->len, s, n);
    h->len += n;
  } else {
    head_flush(h, h->spill);
    evbuffer_add(h->spill, s, n);
  }
}

static void head_add(head_t *h, const char *s) { head_add_n(h, s, strlen(s)); }

static void head_add_uint(head_t *h, unsigned long long v) {
  char digits[24];
  size_t i = sizeof(digits);
  do {
    digits[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  head_add_n(h, digits + i, sizeof(digits) - i);
}

void ps__conn_write_answer(ps_req_t *req, int status, const char *content_type,
                           struct evbuffer *body) {
  ps__conn_t *c = req->conn_;
  struct evbuffer *out = bufferevent_get_output(c->bev);
  size_t len = evbuffer_get_length(body);
  if (!req->keep_alive_) c->closing = 1;
  /* The head is assembled with copies, not printf: formatting was 3% of a /healthz answer. */
  head_t h = {.len = 0, .spill = out};
  head_add(&h, "HTTP/1.1 ");
  head_add_uint(&h, (unsigned long long)status);
  head_add(&h, " ");
  head_add(&h, reason_phrase(status));
  head_add(&h, "\r\nDate: ");
  head_add(&h, http_date(c->loop));
  head_add(&h, "\r\nContent-Length: ");
  head_add_uint(&h, (unsigned long long)len);
  head_add(&h, "\r\nX-Request-Id: ");
  head_add(&h, req->request_id);
  head_add(&h, "\r\n");
  if (content_type) {
    head_add(&h, "Content-Type: ");
    head_add(&h, content_type);
    head_add(&h, "\r\n");
  }
  for (ps__header_t *x = req->out_headers_; x; x = x->next) {
    head_add(&h, x->name);
    head_add(&h, ": ");
    head_add(&h, x->value);
    head_add(&h, "\r\n");
  }
  head_add(&h, c->closing ? "Connection: close\r\n\r\n" : "\r\n");
  head_flush(&h, out);
  if (req->head_only_)
    evbuffer_drain(body, len);
  else
    evbuffer_add_buffer(out, body);
  flush(c);
}

/* An answer for a request that never reached the dispatcher (bad framing): a problem, then
 * the connection closes, since what follows on it cannot be trusted. */
static void early_problem(ps__conn_t *c, ps_problem_t problem, const char *detail) {
  ps_req_t req;
  ps__req_init(&req, c->loop, c);
  req.keep_alive_ = 0;
  req.method = "";
  req.path = "";
  req.request_id = ps__new_request_id(&req, c->loop);
  ps_reply_problem(&req, problem, NULL, "%s", detail);
  ps__req_finish(&req, (size_t)-1);
}

/* --- reading requests ------------------------------------------------------------------------ */

static int token_char(unsigned char ch) {
  return ch > 32 && ch < 127 && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

/* Parses the head (request line and headers) in place; strings point into head. Returns 0 or
 * -1 for a malformed head. */
static int parse_head(ps_req_t *req, char *head, size_t len) {
  char *end = head + len, *line = head;
  char *eol = memchr(line, '\n', (size_t)(end - line));
  if (!eol) return -1;
  *eol = '\0';
  if (eol > line && eol[-1] == '\r') eol[-1] = '\0';
  /* METHOD SP target SP HTTP/1.x */
  char *sp1 = strchr(line, ' ');
  if (!sp1 || sp1 == line) return -1;
  *sp1 = '\0';
  for (char *p = line; *p; p++)
    if (!token_char((unsigned char)*p)) return -1;
  char *target = sp1 + 1;
  char *sp2 = strchr(target, ' ');
  if (!sp2 || sp2 == target || *target != '/') return -1;
  *sp2 = '\0';
  const char *version = sp2 + 1;
  if (strncmp(version, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)version[7]) || version[8])
    return -1;
  req->method = line;
  req->keep_alive_ = version[7] != '0';
  char *q = strchr(target, '?');
  if (q) {
    *q = '\0';
    req->query_string_ = q + 1;
  }
  req->path = target;
  for (char *p = target; *p; p++)
    if ((unsigned char)*p <= 32 || *p == 127) return -1;

  ps__header_t *last = NULL;
  int count = 0;
  for (line = eol + 1; line < end; line = eol + 1) {
    eol = memchr(line, '\n', (size_t)(end - line));
    if (!eol) return -1;
    *eol = '\0';
    if (eol > line && eol[-1] == '\r') eol[-1] = '\0';
    if (!*line) break; /* the blank line */
    if (*line == ' ' || *line == '\t') return -1; /* obsolete line folding */
    char *colon = strchr(line, ':');
    if (!colon || colon == line || ++count > MAX_HEADERS) return -1;
    *colon = '\0';
    for (char *p = line; *p; p++)
      if (!token_char((unsigned char)*p)) return -1;
    char *value = colon + 1;
    while (*value == ' ' || *value == '\t') value++;
    char *vend = value + strlen(value);
    while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t')) *--vend = '\0';
    ps__header_t *h = ps_arena_alloc(&req->arena, sizeof(*h));
    h->name = line;
    h->value = value;
    if (last) last->next = h;
    else req->in_headers_ = h;
    last = h;
  }
  return 0;
}

/* Decides the body length from the headers: 0 and *len set, or an early answer was sent. */
static int body_length(ps__conn_t *c, ps_req_t *req, size_t *len) {
  *len = 0;
  const char *te = ps_req_header(req, "Transfer-Encoding");
  if (te && strcasecmp(te, "identity") != 0) {
    early_problem(c, PS_PROBLEM_LENGTH_REQUIRED, "send the body with a Content-Length");
    return -1;
  }
  const char *cl = ps_req_header(req, "Content-Length");
  if (!cl) return 0;
  char *endp;
  errno = 0;
  unsigned long long n = strtoull(cl, &endp, 10);
  if (errno || endp == cl || *endp || !isdigit((unsigned char)cl[0])) {
    early_problem(c, PS_PROBLEM_MALFORMED_REQUEST, "Content-Length is not a number");
    return -1;
  }
  *len = (size_t)n;
  return 0;
}

/* Reads as many complete requests as the input holds and dispatches each. */
static void read_cb(struct bufferevent *bev, void *arg) {
  ps__conn_t *c = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  if (c->lingering) {
    evbuffer_drain(in, evbuffer_get_length(in));
    return;
  }
  while (!c->closing) {
    size_t avail = evbuffer_get_length(in);
    if (!avail) return;
    struct evbuffer_ptr crlf = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (crlf.pos < 0) {
      if (avail > MAX_HEAD) early_problem(c, PS_PROBLEM_HEADERS_TOO_LARGE, "the request head is over 16 KiB");
      return;
    }
    size_t head_len = (size_t)crlf.pos + 4;
    if (head_len > MAX_HEAD) {
      early_problem(c, PS_PROBLEM_HEADERS_TOO_LARGE, "the request head is over 16 KiB");
      return;
    }
    ps_req_t req;
    ps__req_init(&req, c->loop, c);
    char *head = ps_arena_alloc(&req.arena, head_len + 1);
    evbuffer_copyout(in, head, head_len);
    if (parse_head(&req, head, head_len)) {
      ps_arena_reset(&req.arena);
      early_problem(c, PS_PROBLEM_MALFORMED_REQUEST, "the request line or a header is malformed");
      return;
    }
    size_t body_len;
    if (body_length(c, &req, &body_len)) {
      ps_arena_reset(&req.arena);
      return;
    }
    if (body_len > c->loop->server_body_limit) {
      /* Answer before reading a byte of it; the unread body makes the connection unusable. */
      evbuffer_drain(in, head_len);
      req.keep_alive_ = 0;
      ps__dispatch(&req, PS__TOO_LARGE, body_len);
      return;
    }
    if (avail < head_len + body_len) {
      const char *expect = ps_req_header(&req, "Expect");
      if (expect && strcasecmp(expect, "100-continue") == 0 && avail == head_len && !c->closing) {
        /* Ask for the body once: remove "Expect" handling by answering 100 now. */
        struct evbuffer *out = bufferevent_get_output(bev);
        if (!evbuffer_get_length(out)) {
          evbuffer_add(out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
          flush(c);
        }
      }
      ps_arena_reset(&req.arena);
      return; /* wait for the rest; the head is parsed again then (cheap, and stateless) */
    }
    evbuffer_drain(in, head_len);
    char *body = ps_arena_alloc(&req.arena, body_len + 1);
    if (body_len) evbuffer_remove(in, body, body_len);
    req.body = body;
    req.body_len = body_len;
    const char *conn_hdr = ps_req_header(&req, "Connection");
    if (conn_hdr) {
      if (strcasecmp(conn_hdr, "close") == 0) req.keep_alive_ = 0;
      else if (strcasecmp(conn_hdr, "keep-alive") == 0) req.keep_alive_ = 1;
    }
    req.head_only_ = strcmp(req.method, "HEAD") == 0;
    ps__dispatch(&req, 0, body_len);
  }
}

/* Once the last answer is out, close like nginx's lingering close: stop sending, then read and
 * drop what the client still sends (the rest of a refused body) for up to two seconds, so
 * that closing with unread data does not reset the connection before the client has read
 * the answer. event_cb frees the connection at EOF or at the timeout. */
static void start_linger(ps__conn_t *c) {
  if (c->lingering) return;
  c->lingering = 1;
  shutdown(bufferevent_getfd(c->bev), SHUT_WR);
  struct timeval linger = {2, 0};
  bufferevent_set_timeouts(c->bev, &linger, NULL);
  struct evbuffer *in = bufferevent_get_input(c->bev);
  evbuffer_drain(in, evbuffer_get_length(in));
}

/* The output the kernel did not take at once has gone out. */
static void write_cb(struct bufferevent *bev, void *arg) {
  ps__conn_t *c = arg;
  bufferevent_disable(bev, EV_WRITE);
  if (c->closing) start_linger(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg) {
  /* EOF, an error or the idle timeout: the connection is done. */
  conn_free(arg);
}

void ps__conn_accept(ps__loop_t *loop, evutil_socket_t fd, struct sockaddr *addr) {
  ps__conn_t *c = ps_calloc(1, sizeof(*c));
  c->loop = loop;
  c->bev = bufferevent_socket_new(loop->base, fd, BEV_OPT_CLOSE_ON_FREE);
  if (addr->sa_family == AF_INET)
    inet_ntop(AF_INET, &((struct sockaddr_in *)addr)->sin_addr, c->peer, sizeof(c->peer));
  else if (addr->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)addr)->sin6_addr, c->peer, sizeof(c->peer));
  c->next = loop->conns;
  if (loop->conns) loop->conns->prev = c;
  loop->conns = c;
  struct timeval idle = {IDLE_SECONDS, 0};
  bufferevent_set_timeouts(c->bev, &idle, &idle);
  bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
  bufferevent_enable(c->bev, EV_READ); /* EV_WRITE only while an answer waits (see flush) */
}

const char *ps__conn_peer(ps__conn_t *c) { return c->peer; }
