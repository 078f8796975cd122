/* test_http_async.c - the server's asynchronous side, over raw sockets: deferred answers
 * (from a timer, pipelined, client gone first), chunked request bodies (whole, split at every
 * byte, bad framing, over the limit), a streaming route reading 3 MB in pieces with
 * back-pressure, streamed answers written from another thread, Server-Sent Events, file
 * answers and HEAD. */
#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/http.h"
#include "polyshop/problem.h"

enum { LIMIT = 3584 * 1024 }; /* 3.5 MiB: a 3 MB streamed body fits, 4 MB does not */

/* Checks made on server threads count failures instead of jumping out of cmocka's thread. */
static atomic_int faults;
#define CHECK(x) ((x) ? (void)0 : (void)atomic_fetch_add(&faults, 1))

static atomic_int answered_gone, answered_total, stream_closed, upload_errors;
static char file_path[64];
static unsigned char file_bytes[1 << 20];

/* --- deferred answers ---------------------------------------------------------------------- */

typedef struct {
  ps_req_t *req;
  struct event *ev;
} later_t;

static void later_cb(evutil_socket_t fd, short what, void *arg) {
  later_t *l = arg;
  ps_req_t *req = l->req;
  event_free(l->ev);
  ps_free(l);
  if (ps_req_gone(req)) atomic_fetch_add(&answered_gone, 1);
  atomic_fetch_add(&answered_total, 1);
  const char *id = ps_req_query(req, "id");
  ps_reply_json(req, 200, json_pack("{s:s}", "id", id ? id : ""));
}

/* Answers from a timer after ?ms= milliseconds. */
static void handle_later(ps_req_t *req) {
  const char *ms = ps_req_query(req, "ms");
  later_t *l = ps_malloc(sizeof(*l));
  l->req = req;
  l->ev = evtimer_new(ps_req_base(req), later_cb, l);
  long v = ms ? atol(ms) : 0;
  struct timeval tv = {v / 1000, (v % 1000) * 1000};
  evtimer_add(l->ev, &tv);
  ps_req_defer(req);
}

/* An ordinary route: echoes the body it got whole. */
static void handle_echo_len(ps_req_t *req) {
  char *text = ps_arena_sprintf(&req->arena, "%zu:", req->body_len);
  size_t n = strlen(text);
  char *out = ps_arena_alloc(&req->arena, n + req->body_len);
  memcpy(out, text, n);
  memcpy(out + n, req->body, req->body_len);
  ps_reply_raw(req, 200, "text/plain", out, n + req->body_len);
}

/* --- a streaming route ----------------------------------------------------------------------- */

typedef struct {
  ps_req_t *req;
  size_t bytes, max_piece, pieces;
  uint32_t hash;
  int paused_times;
  struct event *resume_ev;
} upload_t;

static void upload_free(upload_t *u) {
  event_free(u->resume_ev);
  ps_free(u);
}

static void upload_resume_cb(evutil_socket_t fd, short what, void *arg) {
  upload_t *u = arg;
  ps_req_body_resume(u->req);
}

static void upload_data(void *arg, const char *data, size_t len) {
  upload_t *u = arg;
  for (size_t i = 0; i < len; i++) u->hash = (u->hash ^ (unsigned char)data[i]) * 16777619u;
  u->bytes += len;
  if (len > u->max_piece) u->max_piece = len;
  if (++u->pieces % 16 == 0) { /* a slow consumer: stop the socket, go on next loop turn */
    u->paused_times++;
    ps_req_body_pause(u->req);
    struct timeval now = {0, 0};
    evtimer_add(u->resume_ev, &now);
  }
}

static void upload_end(void *arg) {
  upload_t *u = arg;
  ps_req_t *req = u->req;
  json_t *j = json_pack("{s:I, s:I, s:I, s:i}", "bytes", (json_int_t)u->bytes, "max_piece",
                        (json_int_t)u->max_piece, "hash", (json_int_t)u->hash, "paused",
                        u->paused_times);
  upload_free(u);
  ps_reply_json(req, 200, j);
}

static void upload_error(void *arg, int err) {
  upload_t *u = arg;
  ps_req_t *req = u->req;
  atomic_fetch_add(&upload_errors, 1);
  upload_free(u);
  ps_reply_error(req, err, "the upload failed"); /* dropped: the server answered already */
}

static const ps_body_reader_t upload_reader = {upload_data, upload_end, upload_error};

static void handle_upload(ps_req_t *req) {
  upload_t *u = ps_calloc(1, sizeof(*u));
  u->req = req;
  u->hash = 2166136261u;
  u->resume_ev = evtimer_new(ps_req_base(req), upload_resume_cb, u);
  CHECK(ps_req_body_stream(req, &upload_reader, u) == 0);
  CHECK(ps_req_body_stream(req, &upload_reader, u) == PS_EINVAL);
  ps_req_defer(req);
}

/* --- streamed answers -------------------------------------------------------------------- */

static void *stream_writer(void *arg) {
  ps_stream_t *s = arg;
  char line[32];
  for (int i = 0; i < 100; i++) {
    int n = snprintf(line, sizeof(line), "line %d\n", i);
    CHECK(ps_stream_write(s, line, (size_t)n) == 0);
  }
  ps_stream_end(s);
  return NULL;
}

static void handle_stream(ps_req_t *req) {
  ps_stream_t *s = ps_reply_stream(req, 200, "text/plain");
  if (!s) return;
  pthread_t t;
  pthread_create(&t, NULL, stream_writer, s);
  pthread_detach(t);
}

static void *sse_writer(void *arg) {
  ps_sse_t *sse = arg;
  CHECK(ps_sse_send(sse, "greeting", "hello") == 0);
  CHECK(ps_sse_send(sse, NULL, "two\nlines") == 0);
  CHECK(ps_sse_send(sse, "bad\nname", "x") == PS_EINVAL);
  CHECK(ps_sse_send(sse, "last", "crlf\r\nand cr\rend") == 0);
  ps_sse_end(sse);
  return NULL;
}

static void handle_sse(ps_req_t *req) {
  ps_sse_t *sse = ps_reply_sse(req, 1);
  if (!sse) return;
  pthread_t t;
  pthread_create(&t, NULL, sse_writer, sse);
  pthread_detach(t);
}

/* Held open until the client leaves; heartbeats every second meanwhile. */
static void sse_hold_closed(void *arg) {
  atomic_fetch_add(&stream_closed, 1);
  ps_sse_end(arg);
}

static void handle_sse_hold(ps_req_t *req) {
  ps_sse_t *sse = ps_reply_sse(req, 1);
  if (!sse) return;
  ps_stream_on_close(sse, sse_hold_closed, sse);
}

static void handle_file(ps_req_t *req) {
  int fd = open(file_path, O_RDONLY);
  ps_reply_file(req, 200, "application/octet-stream", fd, 0, sizeof(file_bytes));
}

static const ps_route_t routes[] = {
    {"GET", "/later", handle_later},
    {"POST", "/echo-len", handle_echo_len},
    {"POST", "/upload", handle_upload, PS_ROUTE_STREAM_BODY},
    {"GET", "/stream", handle_stream},
    {"GET", "/sse", handle_sse},
    {"GET", "/sse-hold", handle_sse_hold},
    {"GET", "/file", handle_file},
};

/* --- the server and a raw client ---------------------------------------------------------- */

static pthread_t server_thread;
static int server_rc = -1;

static void *run_server(void *arg) {
  static ps_service_t svc = {.name = "async", .routes = routes, .nroutes = 7};
  ps_server_config_t cfg = {.host = "127.0.0.1", .port = 0, .threads = 2, .body_limit = LIMIT,
                            .drain_seconds = 5, .fd = -1, .install_signals = 0};
  *(int *)arg = ps_server_run(&svc, &cfg);
  return NULL;
}

static int setup(void **state) {
  snprintf(file_path, sizeof(file_path), "/tmp/ps-http-file-XXXXXX");
  int fd = mkstemp(file_path);
  for (size_t i = 0; i < sizeof(file_bytes); i++) file_bytes[i] = (unsigned char)(i * 7 + i / 251);
  assert_int_equal(write(fd, file_bytes, sizeof(file_bytes)), (ssize_t)sizeof(file_bytes));
  close(fd);
  pthread_create(&server_thread, NULL, run_server, &server_rc);
  for (int i = 0; i < 500 && !ps_server_port(); i++) usleep(10000);
  assert_true(ps_server_port() > 0);
  return 0;
}

static int teardown(void **state) {
  ps_server_stop();
  pthread_join(server_thread, NULL);
  assert_int_equal(server_rc, 0);
  unlink(file_path);
  return 0;
}

static int raw_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ps_server_port())};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

static void raw_send_n(int fd, const char *data, size_t n) {
  while (n) {
    ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
    if (w <= 0) return; /* the server may refuse and close before all is sent */
    data += w;
    n -= (size_t)w;
  }
}

static void raw_send(int fd, const char *text) { raw_send_n(fd, text, strlen(text)); }

static size_t raw_read_all(int fd, char *buf, size_t cap) {
  size_t n = 0;
  ssize_t r;
  while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0) n += (size_t)r;
  buf[n] = '\0';
  return n;
}

/* One request on a fresh connection that closes after it; the whole answer in buf. */
static size_t exchange(const char *request, size_t len, char *buf, size_t cap) {
  int fd = raw_connect();
  raw_send_n(fd, request, len);
  size_t n = raw_read_all(fd, buf, cap);
  close(fd);
  return n;
}

static void wait_for(atomic_int *v, int value) {
  for (int i = 0; i < 1000 && atomic_load(v) < value; i++) usleep(10000);
  assert_true(atomic_load(v) >= value);
}

/* --- tests -------------------------------------------------------------------------------- */

static void test_deferred_from_timer(void **state) {
  static char buf[4096];
  const char *req = "GET /later?ms=30&id=t HTTP/1.1\r\nConnection: close\r\n\r\n";
  exchange(req, strlen(req), buf, sizeof(buf));
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(buf, "{\"id\":\"t\"}"));
}

static void test_deferred_pipelined_in_order(void **state) {
  static char buf[8192];
  /* The first answers late, the second at once: answers still come in request order, and
   * an ordinary request behind them waits its turn too. */
  const char *req = "GET /later?ms=80&id=first HTTP/1.1\r\n\r\n"
                    "GET /later?ms=0&id=second HTTP/1.1\r\n\r\n"
                    "POST /echo-len HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
  exchange(req, strlen(req), buf, sizeof(buf));
  char *a = strstr(buf, "\"first\""), *b = strstr(buf, "\"second\""), *c = strstr(buf, "3:abc");
  if (!(a && b && c && a < b && b < c)) fail_msg("got: %s", buf);
}

static void test_deferred_client_gone(void **state) {
  int before = atomic_load(&answered_gone);
  int fd = raw_connect();
  raw_send(fd, "GET /later?ms=200&id=g HTTP/1.1\r\n\r\n");
  close(fd); /* gone before the answer: it is dropped, and nothing leaks or crashes */
  wait_for(&answered_gone, before + 1);
  static char buf[4096]; /* the server goes on serving */
  const char *req = "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
  exchange(req, strlen(req), buf, sizeof(buf));
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
}

/* --- chunked request bodies ------------------------------------------------------------------ */

static const char chunked_req[] =
    "POST /echo-len HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    "5\r\nhello\r\n1;name=value\r\n \r\nA \r\n0123456789\r\n0\r\nX-Trailer: dropped\r\n\r\n";

static void test_chunked_whole(void **state) {
  static char buf[4096];
  exchange(chunked_req, strlen(chunked_req), buf, sizeof(buf));
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(buf, "\r\n\r\n16:hello 0123456789"));
  const char *one = "POST /echo-len HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    "3\r\nabc\r\n0\r\n\r\n";
  exchange(one, strlen(one), buf, sizeof(buf));
  assert_non_null(strstr(buf, "\r\n\r\n3:abc"));
  const char *empty = "POST /echo-len HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                      "0\r\n\r\n";
  exchange(empty, strlen(empty), buf, sizeof(buf));
  assert_non_null(strstr(buf, "\r\n\r\n0:"));
}

/* The same request cut in two at every byte, the halves in separate writes. */
static void test_chunked_split_everywhere(void **state) {
  static char buf[4096];
  size_t n = strlen(chunked_req);
  for (size_t cut = 1; cut < n; cut++) {
    int fd = raw_connect();
    raw_send_n(fd, chunked_req, cut);
    usleep(1000); /* let the server read the first part alone (pacing, not an assertion) */
    raw_send_n(fd, chunked_req + cut, n - cut);
    raw_read_all(fd, buf, sizeof(buf));
    close(fd);
    if (!strstr(buf, "\r\n\r\n16:hello 0123456789")) fail_msg("cut at %zu: %s", cut, buf);
  }
}

static void expect_refusal(const char *request, const char *status_line, const char *slug) {
  static char buf[8192];
  exchange(request, strlen(request), buf, sizeof(buf));
  if (!strstr(buf, status_line)) fail_msg("expected %s, got: %.300s", status_line, buf);
  char type[96];
  snprintf(type, sizeof(type), "\"type\":\"urn:polyshop:problem:%s\"", slug);
  if (!strstr(buf, type)) fail_msg("expected %s in: %.300s", type, buf);
  assert_non_null(strstr(buf, "Connection: close\r\n"));
}

static void test_chunked_bad_framing(void **state) {
#define CH "POST /echo-len HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
  expect_refusal(CH "g\r\nabc\r\n0\r\n\r\n", "HTTP/1.1 400 ", "malformed-request");
  expect_refusal(CH "\r\n0\r\n\r\n", "HTTP/1.1 400 ", "malformed-request");
  expect_refusal(CH "3\r\nabcX\r\n0\r\n\r\n", "HTTP/1.1 400 ", "malformed-request");
  expect_refusal(CH "3x\r\nabc\r\n0\r\n\r\n", "HTTP/1.1 400 ", "malformed-request");
  expect_refusal(CH "3\nabc\r\n0\r\n\r\n", "HTTP/1.1 400 ", "malformed-request");
  expect_refusal(CH "10000000000000000\r\n", "HTTP/1.1 400 ", "malformed-request");
  expect_refusal(CH "-1\r\n", "HTTP/1.1 400 ", "malformed-request");
  expect_refusal("POST /echo-len HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
                 "HTTP/1.1 501 ", "not-implemented");
  expect_refusal("POST /echo-len HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                 "HTTP/1.1 400 ", "malformed-request");
  /* A chunk-size line that never ends. */
  static char longline[3000];
  memset(longline, '0', sizeof(longline) - 1);
  memcpy(longline, CH, strlen(CH));
  expect_refusal(longline, "HTTP/1.1 400 ", "malformed-request");
#undef CH
}

/* Chunks whose total passes the limit: 413 as soon as it does, before the rest is sent. */
static void test_chunked_over_limit(void **state) {
  static char buf[8192];
  expect_refusal("POST /echo-len HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n400000\r\nabc",
                 "HTTP/1.1 413 ", "payload-too-large");
  int fd = raw_connect();
  raw_send(fd, "POST /echo-len HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  static char piece[65536 + 16];
  int head = snprintf(piece, sizeof(piece), "%x\r\n", 65536);
  memset(piece + head, 'x', 65536);
  memcpy(piece + head + 65536, "\r\n", 2);
  for (int i = 0; i < 57; i++) raw_send_n(fd, piece, (size_t)head + 65536 + 2); /* 3.56 MiB */
  raw_read_all(fd, buf, sizeof(buf));
  close(fd);
  if (!strstr(buf, "HTTP/1.1 413 ")) fail_msg("got: %.300s", buf);
}

/* --- a streaming route ------------------------------------------------------------------------ */

static json_t *upload(const char *head, const char *body, size_t len, size_t piece, int chunked) {
  static char buf[8192];
  int fd = raw_connect();
  raw_send(fd, head);
  for (size_t off = 0; off < len; off += piece) {
    size_t n = len - off < piece ? len - off : piece;
    if (chunked) {
      char sz[32];
      snprintf(sz, sizeof(sz), "%zx\r\n", n);
      raw_send(fd, sz);
    }
    raw_send_n(fd, body + off, n);
    if (chunked) raw_send(fd, "\r\n");
  }
  if (chunked) raw_send(fd, "0\r\n\r\n");
  raw_read_all(fd, buf, sizeof(buf));
  close(fd);
  char *json = strstr(buf, "\r\n\r\n");
  if (!strstr(buf, "HTTP/1.1 200 OK\r\n") || !json) fail_msg("got: %.300s", buf);
  return json_loads(json + 4, 0, NULL);
}

static void test_streaming_route_3mb(void **state) {
  size_t len = 3u << 20;
  char *body = malloc(len);
  uint32_t hash = 2166136261u;
  for (size_t i = 0; i < len; i++) {
    body[i] = (char)(i * 31 + i / 4093);
    hash = (hash ^ (unsigned char)body[i]) * 16777619u;
  }
  char head[256];
  snprintf(head, sizeof(head), "POST /upload HTTP/1.1\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", len);
  for (int chunked = 0; chunked < 2; chunked++) {
    json_t *j = upload(chunked ? "POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                                 "Connection: close\r\n\r\n" : head, body, len, 100000, chunked);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")), (json_int_t)len);
    assert_int_equal(json_integer_value(json_object_get(j, "hash")), (json_int_t)hash);
    /* In pieces, never whole; and the reader paused the socket along the way. */
    assert_true(json_integer_value(json_object_get(j, "max_piece")) <= 256 * 1024);
    assert_true(json_integer_value(json_object_get(j, "paused")) > 0);
    json_decref(j);
  }
  free(body);
  json_t *j = upload("POST /upload HTTP/1.1\r\nConnection: close\r\n\r\n", "", 0, 1, 0);
  assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 0);
  json_decref(j);
}

static void test_streaming_route_over_limit(void **state) {
  int before = atomic_load(&upload_errors);
  expect_refusal("POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n"
                 "400000\r\nabc", "HTTP/1.1 413 ", "payload-too-large");
  expect_refusal("POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY",
                 "HTTP/1.1 400 ", "malformed-request");
  wait_for(&upload_errors, before + 2);
  before = atomic_load(&upload_errors);
  int fd = raw_connect(); /* the client leaves mid-body: the reader hears of it */
  raw_send(fd, "POST /upload HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc");
  usleep(20000);
  close(fd);
  wait_for(&upload_errors, before + 1);
}

/* --- streamed answers ------------------------------------------------------------------------ */

/* Decodes a chunked body in place; returns its length, or -1 when the framing is wrong or the
 * terminating chunk is missing. */
static long dechunk(char *body, size_t len) {
  char *in = body, *end = body + len, *out = body;
  for (;;) {
    char *eol = strstr(in, "\r\n");
    if (!eol || eol >= end) return -1;
    long n = strtol(in, NULL, 16);
    in = eol + 2;
    if (n == 0) return strncmp(in, "\r\n", 2) == 0 ? out - body : -1;
    if (in + n + 2 > end || in[n] != '\r') return -1;
    memmove(out, in, (size_t)n);
    out += n;
    in += n + 2;
  }
}

static void test_stream_written_from_another_thread(void **state) {
  static char buf[16384];
  const char *req = "GET /stream HTTP/1.1\r\nConnection: close\r\n\r\n";
  size_t n = exchange(req, strlen(req), buf, sizeof(buf));
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(buf, "Transfer-Encoding: chunked\r\n"));
  assert_null(strstr(buf, "Content-Length"));
  char *body = strstr(buf, "\r\n\r\n") + 4;
  long len = dechunk(body, n - (size_t)(body - buf));
  assert_true(len > 0);
  body[len] = '\0';
  char expect[2048];
  size_t e = 0;
  for (int i = 0; i < 100; i++) e += (size_t)sprintf(expect + e, "line %d\n", i);
  assert_string_equal(body, expect);
  /* HTTP/1.0 has no chunks: the body runs until the close. */
  req = "GET /stream HTTP/1.0\r\n\r\n";
  exchange(req, strlen(req), buf, sizeof(buf));
  assert_null(strstr(buf, "Transfer-Encoding"));
  assert_string_equal(strstr(buf, "\r\n\r\n") + 4, expect);
  /* Keep-alive: after the stream ends, the connection serves the next request. */
  req = "GET /stream HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
  exchange(req, strlen(req), buf, sizeof(buf));
  char *last = strstr(buf, "line 99\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n");
  if (!last) fail_msg("got: %.200s", buf);
  assert_non_null(strstr(last, "{\"status\":\"ok\"}"));
}

static void test_sse_frames(void **state) {
  static char buf[16384];
  const char *req = "GET /sse HTTP/1.1\r\nConnection: close\r\n\r\n";
  size_t n = exchange(req, strlen(req), buf, sizeof(buf));
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(buf, "Content-Type: text/event-stream\r\n"));
  assert_non_null(strstr(buf, "Cache-Control: no-store\r\n"));
  assert_non_null(strstr(buf, "X-Accel-Buffering: no\r\n"));
  char *body = strstr(buf, "\r\n\r\n") + 4;
  long len = dechunk(body, n - (size_t)(body - buf));
  assert_true(len > 0);
  body[len] = '\0';
  /* A heartbeat may come between events; the events themselves are exactly these. */
  char events[4096] = "";
  for (char *ev = body; *ev;) {
    char *next = strstr(ev, "\n\n");
    assert_non_null(next);
    if (strncmp(ev, ": hb", 4) != 0) strncat(events, ev, (size_t)(next + 2 - ev));
    ev = next + 2;
  }
  assert_string_equal(events, "event: greeting\ndata: hello\n\n"
                              "data: two\ndata: lines\n\n"
                              "event: last\ndata: crlf\ndata: and cr\ndata: end\n\n");
}

static void test_sse_heartbeat_and_disconnect(void **state) {
  static char buf[4096];
  int before = atomic_load(&stream_closed);
  int fd = raw_connect();
  raw_send(fd, "GET /sse-hold HTTP/1.1\r\n\r\n");
  size_t n = 0;
  while (!strstr(buf, ": hb\n\n") && n + 1 < sizeof(buf)) { /* a heartbeat within ~1 s */
    ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
    assert_true(r > 0);
    n += (size_t)r;
    buf[n] = '\0';
  }
  close(fd); /* the close callback runs, and the stream is released */
  wait_for(&stream_closed, before + 1);
}

static void test_file_answer(void **state) {
  static char buf[(1 << 20) + 4096];
  const char *req = "GET /file HTTP/1.1\r\nConnection: close\r\n\r\n";
  size_t n = exchange(req, strlen(req), buf, sizeof(buf));
  assert_non_null(strstr(buf, "Content-Length: 1048576\r\n"));
  char *body = strstr(buf, "\r\n\r\n") + 4;
  assert_int_equal(n - (size_t)(body - buf), sizeof(file_bytes));
  assert_memory_equal(body, file_bytes, sizeof(file_bytes));
  req = "HEAD /file HTTP/1.1\r\nConnection: close\r\n\r\n";
  n = exchange(req, strlen(req), buf, sizeof(buf));
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(buf, "Content-Length: 1048576\r\n"));
  assert_int_equal(strstr(buf, "\r\n\r\n") + 4 - buf, (long)n); /* no body */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deferred_from_timer),
      cmocka_unit_test(test_deferred_pipelined_in_order),
      cmocka_unit_test(test_deferred_client_gone),
      cmocka_unit_test(test_chunked_whole),
      cmocka_unit_test(test_chunked_split_everywhere),
      cmocka_unit_test(test_chunked_bad_framing),
      cmocka_unit_test(test_chunked_over_limit),
      cmocka_unit_test(test_streaming_route_3mb),
      cmocka_unit_test(test_streaming_route_over_limit),
      cmocka_unit_test(test_stream_written_from_another_thread),
      cmocka_unit_test(test_sse_frames),
      cmocka_unit_test(test_sse_heartbeat_and_disconnect),
      cmocka_unit_test(test_file_answer),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  if (atomic_load(&faults)) {
    fprintf(stderr, "%d checks failed on server threads\n", atomic_load(&faults));
    return 1;
  }
  return rc;
}
