/* http1.c - HTTP/1.1 on plain libevent bufferevents: reads requests off a connection (keep-
 * alive and pipelining included), hands each complete one to the dispatcher, and writes the
 * answers. It replaces evhttp, which measured at ~60% of nginx's throughput on our machines
 * against ~95% for this design (bench/ref/raw_healthz.c): evhttp allocates a request object,
 * two header lists and several buffers per request; here a request lives in its arena.
 *
 * One request at a time per connection, in the connection's own request object (reused, so
 * its arena keeps its first block): a request whose handler defers holds the connection, and
 * what the client pipelines behind it waits in the input. Bodies come with a Content-Length
 * or chunked (RFC 9112 §7.1); they are read whole before the handler runs, or handed to a
 * streaming route's reader as they arrive. Limits: 16 KiB of request line and headers (431),
 * 100 headers, the body limit (413 as soon as a length or the running total passes it; the
 * connection then closes). */
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
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/problem.h"

enum { MAX_HEAD = 16384, MAX_HEADERS = 100, IDLE_SECONDS = 60 };

enum { HOLD_INPUT = 65536 }; /* input kept while a request or a stream holds the connection */

/* Where the body of the current request stands. */
enum { B_DONE, B_LENGTH, B_SIZE, B_DATA, B_DATA_END, B_TRAILER };

struct ps__conn {
  ps__loop_t *loop;
  struct bufferevent *bev; /* NULL once the client is gone while a handler holds the request */
  ps__conn_t *prev, *next; /* the loop's list of open connections */
  char peer[INET6_ADDRSTRLEN];
  int closing;             /* answer sent with Connection: close: free once written */
  int lingering;           /* written and half-closed: reading what the client still sends */
  int in_process;          /* inside process(): it goes on by itself after a release */
  int held;                /* read timeout off and input capped (deferred request or stream) */
  int streaming;           /* a streamed answer's head is out and its body is not yet */
  ps_req_t *req;           /* the connection's request object, made at its first request */
  int active;              /* req holds a request not yet released */
  int dispatched;          /* its handler has run */
  int http10;
  unsigned route_flags, gen;
  int body;                /* B_*: what of the body is still to read */
  uint64_t remaining;      /* bytes left of the Content-Length or of the current chunk */
  size_t body_total, trailer_len;
  struct evbuffer *body_buf; /* a chunked body being gathered for an ordinary route */
  const ps_body_reader_t *reader;
  void *reader_arg;
  int paused;
  struct ps_stream *stream; /* the streamed answer being written */
};

/* --- the loop's connection list ------------------------------------------------------------ */

static void conn_free(ps__conn_t *c) {
  if (c->prev) c->prev->next = c->next;
  else c->loop->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  if (c->bev) bufferevent_free(c->bev);
  if (c->req) {
    if (c->active && c->req->deferred_) c->loop->deferred--; /* the server stops before it */
    ps_arena_reset(&c->req->arena);
    ps_free(c->req);
  }
  if (c->body_buf) evbuffer_free(c->body_buf);
  ps_free(c);
}

void ps__conns_close_all(ps__loop_t *loop) {
  while (loop->conns) {
    ps__conn_t *c = loop->conns;
    if (c->stream) ps__stream_conn_closed(c->stream); /* calls its close callback */
    conn_free(c);
  }
}

const char *ps__conn_peer(ps__conn_t *c) { return c->peer; }
ps__loop_t *ps__conn_loop(ps__conn_t *c) { return c->loop; }
int ps__conn_gone(const ps__conn_t *c) { return c->bev == NULL; }
int ps__conn_http10(const ps__conn_t *c) { return c->http10; }
size_t ps__conn_out_len(ps__conn_t *c) {
  return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}

/* While a handler holds the request or a stream is written, the client may stay silent as
 * long as it likes (no read timeout), and what it sends meanwhile is capped (it waits). */
static void hold(ps__conn_t *c, int on) {
  if (!c->bev || c->held == on) return;
  c->held = on;
  struct timeval idle = {IDLE_SECONDS, 0};
  bufferevent_set_timeouts(c->bev, on ? NULL : &idle, &idle);
  bufferevent_setwatermark(c->bev, EV_READ, 0, on ? HOLD_INPUT : 0);
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
  else if (c->closing && !c->streaming)
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
                           uint64_t content_length, struct evbuffer *body) {
  ps__conn_t *c = req->conn_;
  struct evbuffer *out = bufferevent_get_output(c->bev);
  int chunked = content_length == (uint64_t)-1;
  /* A body left unread, or a streamed answer to HTTP/1.0 (ended by the close), ends the
   * connection after this answer. */
  if (c->body != B_DONE || (chunked && c->http10)) req->keep_alive_ = 0;
  if (!req->keep_alive_) c->closing = 1;
  if (chunked && !req->head_only_) c->streaming = 1;
  /* The head is assembled with copies, not printf: formatting was 3% of a /healthz answer. */
  head_t h = {.len = 0, .spill = out};
  head_add(&h, "HTTP/1.1 ");
  head_add_uint(&h, (unsigned long long)status);
  head_add(&h, " ");
  head_add(&h, reason_phrase(status));
  head_add(&h, "\r\nDate: ");
  head_add(&h, http_date(c->loop));
  if (!chunked) {
    head_add(&h, "\r\nContent-Length: ");
    head_add_uint(&h, (unsigned long long)content_length);
  } else if (!c->http10) {
    head_add(&h, "\r\nTransfer-Encoding: chunked");
  }
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
  if (body) {
    if (req->head_only_)
      evbuffer_drain(body, evbuffer_get_length(body));
    else
      evbuffer_add_buffer(out, body);
  }
  flush(c);
}

int ps__conn_write_file(ps_req_t *req, int fd, off_t offset, size_t len) {
  ps__conn_t *c = req->conn_;
  if (evbuffer_add_file(bufferevent_get_output(c->bev), fd, offset, (ev_off_t)len)) {
    c->closing = 1; /* the head promised bytes that will not come */
    flush(c);
    return PS_EIO;
  }
  flush(c);
  return 0;
}

void ps__conn_send(ps__conn_t *c, struct evbuffer *data) {
  if (!c->bev) {
    evbuffer_drain(data, evbuffer_get_length(data));
    return;
  }
  evbuffer_add_buffer(bufferevent_get_output(c->bev), data);
  flush(c);
}

/* --- reading requests ------------------------------------------------------------------------ */

static int token_char(unsigned char ch) {
  return ch > 32 && ch < 127 && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

/* Parses the head (request line and headers) in place; strings point into head. Returns 0 or
 * -1 for a malformed head. */
static int parse_head(ps__conn_t *c, ps_req_t *req, char *head, size_t len) {
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
  c->http10 = !req->keep_alive_;
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


/* --- bodies ----------------------------------------------------------------------------------- */

static int body_failed(ps__conn_t *c, int err) {
  ps_req_t *req = c->req;
  const ps_body_reader_t *r = c->reader;
  c->reader = NULL;
  c->body = B_DONE;
  if (err == PS_ETOOBIG)
    ps__req_refuse(req, PS_PROBLEM_PAYLOAD_TOO_LARGE, "the request body is over the limit");
  else
    ps__req_refuse(req, PS_PROBLEM_MALFORMED_REQUEST, "the chunked body is malformed");
  if (r && r->error_cb) r->error_cb(c->reader_arg, err);
  return -1;
}

/* Hands n bytes of the input to the body's consumer; *used says how many it took. Returns 0,
 * 1 when the consumer stopped the flow (paused, or answered the request), -1 after refusing
 * the body. */
static int deliver(ps__conn_t *c, struct evbuffer *in, size_t n, size_t *used) {
  *used = 0;
  if (c->body_total + n > c->loop->server_body_limit) return body_failed(c, PS_ETOOBIG);
  if (!c->reader) {
    c->body_total += n;
    *used = n;
    if (!c->body_buf) c->body_buf = evbuffer_new();
    evbuffer_remove_buffer(in, c->body_buf, n);
    return 0;
  }
  unsigned gen = c->gen;
  while (n) {
    struct evbuffer_iovec v[4];
    int nv = evbuffer_peek(in, (ev_ssize_t)n, NULL, v, 4);
    if (nv > 4) nv = 4;
    size_t done = 0;
    int stop = 0;
    for (int i = 0; i < nv && done < n && !stop; i++) {
      size_t len = v[i].iov_len < n - done ? v[i].iov_len : n - done;
      c->reader->data_cb(c->reader_arg, v[i].iov_base, len);
      done += len;
      stop = c->gen != gen || !c->active || c->paused || !c->reader || !c->bev;
    }
    if (c->bev) evbuffer_drain(in, done);
    n -= done;
    *used += done;
    c->body_total += done;
    if (stop) return 1;
  }
  return 0;
}

/* The chunk-size line: hex digits, optional whitespace, an ignored extension. */
static int chunk_size_line(ps__conn_t *c, struct evbuffer *in) {
  size_t eol_len;
  struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF_STRICT);
  if (p.pos < 0) return evbuffer_get_length(in) > 1024 ? body_failed(c, PS_EPARSE) : 0;
  if (p.pos > 1024) return body_failed(c, PS_EPARSE);
  char line[1025];
  evbuffer_remove(in, line, (size_t)p.pos);
  evbuffer_drain(in, eol_len);
  line[p.pos] = '\0';
  uint64_t size = 0;
  int digits = 0;
  char *q = line;
  for (; isxdigit((unsigned char)*q); q++) {
    if (++digits > 15) return body_failed(c, PS_EPARSE);
    size = size * 16 + (uint64_t)(isdigit((unsigned char)*q) ? *q - '0' : (tolower(*q) - 'a' + 10));
  }
  while (*q == ' ' || *q == '\t') q++;
  if (!digits || (*q && *q != ';')) return body_failed(c, PS_EPARSE);
  if (c->body_total + size > c->loop->server_body_limit) return body_failed(c, PS_ETOOBIG);
  c->remaining = size;
  c->body = size ? B_DATA : B_TRAILER;
  c->trailer_len = 0;
  return 1;
}

/* One step of the body. Returns 1 when it moved on (call again), 0 when it needs more input
 * or the consumer stopped, -1 after refusing the body. */
static int body_step(ps__conn_t *c, struct evbuffer *in) {
  size_t avail = evbuffer_get_length(in);
  switch (c->body) {
    case B_LENGTH:
    case B_DATA: {
      size_t n = avail < c->remaining ? avail : (size_t)c->remaining;
      if (!n) return 0;
      size_t used;
      unsigned gen = c->gen;
      int rc = deliver(c, in, n, &used);
      if (rc < 0 || c->gen != gen) return -1;
      c->remaining -= used;
      if (!c->remaining) c->body = c->body == B_LENGTH ? B_DONE : B_DATA_END;
      return rc ? 0 : 1;
    }
    case B_DATA_END: {
      if (avail < 2) return 0;
      char crlf[2];
      evbuffer_remove(in, crlf, 2);
      if (crlf[0] != '\r' || crlf[1] != '\n') return body_failed(c, PS_EPARSE);
      c->body = B_SIZE;
      return 1;
    }
    case B_SIZE: return chunk_size_line(c, in);
    case B_TRAILER: { /* trailer fields are read and dropped */
      size_t eol_len;
      struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF_STRICT);
      if (p.pos < 0) return c->trailer_len + avail > MAX_HEAD ? body_failed(c, PS_EPARSE) : 0;
      c->trailer_len += (size_t)p.pos + eol_len;
      if (c->trailer_len > MAX_HEAD) return body_failed(c, PS_EPARSE);
      evbuffer_drain(in, (size_t)p.pos + eol_len);
      if (p.pos == 0) c->body = B_DONE;
      return 1;
    }
    default: return 0;
  }
}

/* Reads what the input holds of the body. Returns 1 once the body is complete, 0 when more is
 * needed (or the consumer paused, or the request was answered), -1 after a refusal. */
static int read_body(ps__conn_t *c, struct evbuffer *in) {
  /* An ordinary route with a length: wait for all of it, then one copy into the arena. */
  if (c->body == B_LENGTH && !c->reader) {
    if (evbuffer_get_length(in) < c->remaining) return 0;
    char *body = ps_arena_alloc(&c->req->arena, (size_t)c->remaining + 1);
    evbuffer_remove(in, body, (size_t)c->remaining);
    c->req->body = body;
    c->req->body_len = (size_t)c->remaining;
    c->body = B_DONE;
    return 1;
  }
  unsigned gen = c->gen;
  int rc = 0;
  while (c->body != B_DONE && (rc = body_step(c, in)) > 0) {
  }
  if (c->gen != gen || !c->active) return 0;
  if (c->body != B_DONE) return rc < 0 ? -1 : 0;
  if (!c->reader && c->body_buf) { /* a chunked body, gathered: one copy into the arena */
    size_t n = evbuffer_get_length(c->body_buf);
    char *body = ps_arena_alloc(&c->req->arena, n + 1);
    evbuffer_remove(c->body_buf, body, n);
    c->req->body = body;
    c->req->body_len = n;
  }
  return 1;
}

/* --- requests ---------------------------------------------------------------------------- */

/* Decides how the body is framed: 0, or -1 after refusing the request. */
static int body_framing(ps__conn_t *c, ps_req_t *req) {
  const char *te = ps_req_header(req, "Transfer-Encoding");
  const char *cl = ps_req_header(req, "Content-Length");
  c->body = B_DONE;
  if (te && cl) {
    ps__req_refuse(req, PS_PROBLEM_MALFORMED_REQUEST,
                   "Content-Length and Transfer-Encoding together");
    return -1;
  }
  if (te) {
    if (strcasecmp(te, "chunked") != 0) {
      ps__req_refuse(req, PS_PROBLEM_NOT_IMPLEMENTED, "only the chunked transfer coding is supported");
      return -1;
    }
    c->body = B_SIZE;
    return 0;
  }
  if (!cl) return 0;
  char *endp;
  errno = 0;
  unsigned long long n = strtoull(cl, &endp, 10);
  if (errno || endp == cl || *endp || !isdigit((unsigned char)cl[0])) {
    ps__req_refuse(req, PS_PROBLEM_MALFORMED_REQUEST, "Content-Length is not a number");
    return -1;
  }
  if (n > c->loop->server_body_limit) {
    /* Answered before a byte of it is read; the unread body ends the connection. */
    char detail[96];
    snprintf(detail, sizeof(detail), "the request body has %llu bytes; the limit is %zu", n,
             c->loop->server_body_limit);
    ps__req_refuse(req, PS_PROBLEM_PAYLOAD_TOO_LARGE, detail);
    return -1;
  }
  c->remaining = n;
  if (n) c->body = B_LENGTH;
  return 0;
}

static void start_request(ps__conn_t *c) {
  if (!c->req) {
    c->req = ps_malloc(sizeof(*c->req));
    ps_arena_init(&c->req->arena);
  }
  ps__req_init(c->req, c->loop, c);
  c->active = 1;
  c->dispatched = 0;
  c->gen++;
  c->reader = NULL;
  c->paused = 0;
  c->body = B_DONE;
  c->body_total = 0;
  c->route_flags = 0;
}

/* Takes the next request's head off the input. Returns 1 when a request is under way, 0 when
 * more input is needed, -1 after refusing it. */
static int read_head(ps__conn_t *c, struct evbuffer *in) {
  size_t avail = evbuffer_get_length(in);
  if (!avail) return 0;
  struct evbuffer_ptr crlf = evbuffer_search(in, "\r\n\r\n", 4, NULL);
  if (crlf.pos < 0 && avail <= MAX_HEAD) return 0;
  start_request(c);
  ps_req_t *req = c->req;
  size_t head_len = (size_t)crlf.pos + 4;
  if (crlf.pos < 0 || head_len > MAX_HEAD) {
    ps__req_refuse(req, PS_PROBLEM_HEADERS_TOO_LARGE, "the request head is over 16 KiB");
    return -1;
  }
  char *head = ps_arena_alloc(&req->arena, head_len + 1);
  evbuffer_remove(in, head, head_len);
  if (parse_head(c, req, head, head_len)) {
    ps__req_refuse(req, PS_PROBLEM_MALFORMED_REQUEST, "the request line or a header is malformed");
    return -1;
  }
  const char *conn_hdr = ps_req_header(req, "Connection");
  if (conn_hdr) {
    if (strcasecmp(conn_hdr, "close") == 0) req->keep_alive_ = 0;
    else if (strcasecmp(conn_hdr, "keep-alive") == 0) req->keep_alive_ = 1;
  }
  req->head_only_ = strcmp(req->method, "HEAD") == 0;
  c->route_flags = ps__req_route(req);
  if (body_framing(c, req)) return -1;
  const char *expect = ps_req_header(req, "Expect");
  if (c->body != B_DONE && expect && strcasecmp(expect, "100-continue") == 0 &&
      !evbuffer_get_length(in) && !evbuffer_get_length(bufferevent_get_output(c->bev))) {
    evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    flush(c);
  }
  return 1;
}

static void dispatch(ps__conn_t *c) {
  c->dispatched = 1;
  ps__dispatch(c->req);
}

/* Moves every request the input holds along: heads, bodies, handlers. Stops while a handler
 * holds a request (its answer, through ps__conn_request_done, starts it again). */
static void process(ps__conn_t *c) {
  c->in_process = 1;
  while (c->bev && !c->closing && !c->stream) {
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (!c->active) {
      if (read_head(c, in) <= 0) break;
      if (c->route_flags & PS_ROUTE_STREAM_BODY) dispatch(c);
      continue;
    }
    if (c->body != B_DONE) {
      if (c->dispatched && (!c->reader || c->paused)) break;
      if (read_body(c, in) <= 0) break;
    }
    if (!c->dispatched) {
      dispatch(c);
      continue;
    }
    if (!c->reader) break; /* the handler holds the request */
    const ps_body_reader_t *r = c->reader; /* a streaming route's body is complete */
    c->reader = NULL;
    if (r->end_cb) r->end_cb(c->reader_arg);
  }
  c->in_process = 0;
}

static void read_cb(struct bufferevent *bev, void *arg) {
  ps__conn_t *c = arg;
  if (c->lingering) {
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    return;
  }
  process(c);
}

/* Reading goes on later, from the loop, not from inside whoever called. */
static void read_later(ps__conn_t *c) {
  if (c->bev && !c->in_process)
    bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void ps__conn_deferred(ps__conn_t *c) {
  c->loop->deferred++;
  hold(c, 1);
}

void ps__conn_request_done(ps__conn_t *c, struct ps_stream *stream) {
  if (c->req->deferred_) c->loop->deferred--;
  c->active = 0;
  c->reader = NULL;
  if (!c->bev) {
    conn_free(c);
    return;
  }
  if (stream) {
    c->stream = stream;
    hold(c, 1);
    return;
  }
  if (c->closing) return;
  hold(c, 0);
  if (evbuffer_get_length(bufferevent_get_input(c->bev))) read_later(c);
}

void ps__conn_stream_done(ps__conn_t *c) {
  c->stream = NULL;
  c->streaming = 0;
  if (!c->bev) return;
  if (c->closing) {
    flush(c);
    return;
  }
  hold(c, 0);
  read_later(c);
}

int ps_req_body_stream(ps_req_t *req, const ps_body_reader_t *reader, void *arg) {
  ps__conn_t *c = req->conn_;
  if (!(c->route_flags & PS_ROUTE_STREAM_BODY) || c->reader || !c->active || req->status)
    return PS_EINVAL;
  c->reader = reader;
  c->reader_arg = arg;
  read_later(c); /* from the handler itself, process() goes on with the body once it returns */
  return 0;
}

void ps_req_body_pause(ps_req_t *req) {
  ps__conn_t *c = req->conn_;
  if (c->paused || !c->bev) return;
  c->paused = 1;
  bufferevent_disable(c->bev, EV_READ);
}

void ps_req_body_resume(ps_req_t *req) {
  ps__conn_t *c = req->conn_;
  if (!c->paused || !c->bev) return;
  c->paused = 0;
  bufferevent_enable(c->bev, EV_READ);
  bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
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
  if (c->closing && !c->streaming) start_linger(c);
}

/* EOF, an error or the idle timeout: the connection is done. A request its handler holds
 * stays (without its socket) until the handler answers it. */
static void event_cb(struct bufferevent *bev, short what, void *arg) {
  ps__conn_t *c = arg;
  if (c->stream) ps__stream_conn_closed(c->stream);
  if (c->active && c->dispatched && c->req->deferred_) {
    bufferevent_free(c->bev);
    c->bev = NULL;
    const ps_body_reader_t *r = c->reader;
    c->reader = NULL;
    if (r && c->body != B_DONE && r->error_cb) r->error_cb(c->reader_arg, PS_EIO);
    return;
  }
  conn_free(c);
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

