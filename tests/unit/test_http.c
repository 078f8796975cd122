/* test_http.c - the server in-process: JSON validators answering for themselves, problem
 * bodies, 404/405/413, request ids, probes and drain on ps_server_stop. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "polyshop/client.h"
#include "polyshop/error.h"
#include "polyshop/json.h"
#include "polyshop/problem.h"

static void handle_echo(ps_req_t *req) {
  static const char *const allowed[] = {"name", "qty", "tags", "flag", NULL};
  json_t *body, *tags;
  const char *name;
  long long qty;
  int flag = 0, has_flag;
  if (ps_json_body_or_reply(req, &body) || ps_json_only_keys_or_reply(req, body, allowed) ||
      ps_json_str_or_reply(req, body, "name", 1, 10, &name) ||
      ps_json_int_or_reply(req, body, "qty", 1, 1000, &qty) ||
      ps_json_array_or_reply(req, body, "tags", 0, 3, &tags) ||
      ps_json_opt_bool_or_reply(req, body, "flag", &flag, &has_flag))
    return;
  ps_reply_json(req, 200, json_pack("{s:s, s:I, s:b}", "name", name, "qty", (json_int_t)qty, "flag", flag));
}

static void handle_param(ps_req_t *req) {
  long long limit;
  if (ps_query_int_or_reply(req, "limit", 20, 1, 100, &limit)) return;
  const char *id = ps_req_param(req, "id");
  if (!id) {
    ps_reply_problem(req, PS_PROBLEM_NOT_FOUND, NULL, "bad id");
    return;
  }
  ps_reply_json(req, 200, json_pack("{s:s, s:I}", "id", id, "limit", (json_int_t)limit));
}

static void handle_silent(ps_req_t *req) { (void)req; /* forgets to answer: a bug */ }

/* Headers longer than the writer's head buffer, between short ones: they must all arrive,
 * whole and in order. */
static void handle_long_headers(ps_req_t *req) {
  char *big = ps_arena_alloc(&req->arena, 1201);
  memset(big, 'b', 1200);
  ps_reply_header(req, "X-First", "1");
  ps_reply_header(req, "X-Big", big);
  ps_reply_header(req, "X-Middle", "2");
  ps_reply_header(req, "X-Big-Too", big);
  ps_reply_header(req, "X-Last", "3");
  ps_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static const ps_route_t routes[] = {
    {"POST", "/echo", handle_echo},
    {"GET", "/things/{id}", handle_param},
    {"GET", "/silent", handle_silent},
    {"GET", "/long-headers", handle_long_headers},
};

static void *run_server(void *arg) {
  static ps_service_t svc = {.name = "test", .routes = routes, .nroutes = 4};
  ps_server_config_t cfg = {.host = "127.0.0.1", .port = 0, .threads = 2, .body_limit = 4096,
                            .drain_seconds = 5, .fd = -1, .install_signals = 0};
  *(int *)arg = ps_server_run(&svc, &cfg);
  return NULL;
}

static pthread_t server_thread;
static int server_rc = -1;
static char base[64];
static ps_client_t *client;
static ps_arena_t arena;

static int setup(void **state) {
  pthread_create(&server_thread, NULL, run_server, &server_rc);
  for (int i = 0; i < 500 && !ps_server_port(); i++) usleep(10000);
  assert_true(ps_server_port() > 0);
  snprintf(base, sizeof(base), "http://127.0.0.1:%d", ps_server_port());
  ps_client_opts_t o;
  ps_client_opts_default(&o);
  o.max_retries = 0;
  client = ps_client_new(&o);
  ps_arena_init(&arena);
  return 0;
}

static int teardown(void **state) {
  ps_server_stop();
  pthread_join(server_thread, NULL);
  assert_int_equal(server_rc, 0);
  ps_client_free(client);
  ps_arena_reset(&arena);
  ps_client_global_cleanup();
  return 0;
}

static ps_response_t call(const char *method, const char *path, const char *body,
                          const char *const *headers) {
  char url[256];
  snprintf(url, sizeof(url), "%s%s", base, path);
  ps_call_t c = {.method = method, .url = url, .body = body, .body_len = body ? strlen(body) : 0,
                 .headers = headers};
  if (headers && strncmp(headers[0], "Content-Type: ", 14) == 0) c.content_type = headers[0] + 14;
  ps_response_t r;
  assert_int_equal(ps_client_call(client, &arena, &c, &r), 0);
  return r;
}

static json_t *problem(ps_response_t r, int status, const char *slug, const char *field) {
  assert_int_equal(r.status, status);
  assert_non_null(r.content_type);
  assert_non_null(strstr(r.content_type, "application/problem+json"));
  json_t *p = json_loads(r.body, 0, NULL);
  assert_non_null(p);
  char type[128];
  snprintf(type, sizeof(type), "urn:polyshop:problem:%s", slug);
  assert_string_equal(json_string_value(json_object_get(p, "type")), type);
  assert_int_equal(json_integer_value(json_object_get(p, "status")), status);
  assert_non_null(json_string_value(json_object_get(p, "detail")));
  if (field) assert_string_equal(json_string_value(json_object_get(p, "field")), field);
  json_decref(p);
  return NULL;
}

static void test_good_body(void **state) {
  ps_response_t r = call("POST", "/echo", "{\"name\":\"abc\",\"qty\":5,\"tags\":[],\"flag\":true}", NULL);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"name\":\"abc\",\"qty\":5,\"flag\":true}");
}

static void test_bad_bodies(void **state) {
  problem(call("POST", "/echo", "{\"name\":", NULL), 400, "malformed-json", NULL);
  problem(call("POST", "/echo", "", NULL), 400, "malformed-json", NULL);
  problem(call("POST", "/echo", "[1]", NULL), 400, "validation", NULL);
  problem(call("POST", "/echo", "{\"name\":\"a\",\"name\":\"b\",\"qty\":1,\"tags\":[]}", NULL), 400, "malformed-json", NULL);
  problem(call("POST", "/echo", "{\"qty\":1,\"tags\":[]}", NULL), 400, "validation", "name");
  problem(call("POST", "/echo", "{\"name\":7,\"qty\":1,\"tags\":[]}", NULL), 400, "validation", "name");
  problem(call("POST", "/echo", "{\"name\":\"waytoolongname\",\"qty\":1,\"tags\":[]}", NULL), 400, "validation", "name");
  problem(call("POST", "/echo", "{\"name\":\"a\",\"qty\":1.5,\"tags\":[]}", NULL), 400, "validation", "qty");
  problem(call("POST", "/echo", "{\"name\":\"a\",\"qty\":0,\"tags\":[]}", NULL), 400, "validation", "qty");
  problem(call("POST", "/echo", "{\"name\":\"a\",\"qty\":1000000000000,\"tags\":[]}", NULL), 400, "validation", "qty");
  problem(call("POST", "/echo", "{\"name\":\"a\",\"qty\":\"5\",\"tags\":[]}", NULL), 400, "validation", "qty");
  problem(call("POST", "/echo", "{\"name\":\"a\",\"qty\":1,\"tags\":[1,2,3,4]}", NULL), 400, "validation", "tags");
  problem(call("POST", "/echo", "{\"name\":\"a\",\"qty\":1,\"tags\":{}}", NULL), 400, "validation", "tags");
  problem(call("POST", "/echo", "{\"name\":\"a\",\"qty\":1,\"tags\":[],\"flag\":1}", NULL), 400, "validation", "flag");
  problem(call("POST", "/echo", "{\"name\":\"a\",\"qty\":1,\"tags\":[],\"extra\":1}", NULL), 400, "validation", "extra");
  problem(call("POST", "/echo", "{\"name\":{\"$gt\":\"\"},\"qty\":1,\"tags\":[]}", NULL), 400, "validation", NULL);
  problem(call("POST", "/echo", "{\"name\":\"a\",\"qty\":1,\"tags\":[{\"$where\":\"1\"}]}", NULL), 400, "validation", NULL);
  problem(call("POST", "/echo", "{\"name\":\"a\\u0000b\",\"qty\":1,\"tags\":[]}", NULL), 400, "malformed-json", NULL);
  const char *form[] = {"Content-Type: text/plain", NULL};
  problem(call("POST", "/echo", "{}", form), 415, "unsupported-media-type", NULL);
}

static void test_body_limit(void **state) {
  static char big[6000];
  memset(big, ' ', sizeof(big) - 1);
  big[0] = '{';
  big[sizeof(big) - 2] = '}';
  problem(call("POST", "/echo", big, NULL), 413, "payload-too-large", NULL);
}

static void test_routing(void **state) {
  ps_response_t r = call("GET", "/things/a%20b?limit=5", NULL, NULL);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"id\":\"a b\",\"limit\":5}");
  problem(call("GET", "/things/x?limit=0", NULL, NULL), 400, "bad-query", "limit");
  problem(call("GET", "/things/x?limit=abc", NULL, NULL), 400, "bad-query", "limit");
  problem(call("GET", "/things/a%00b", NULL, NULL), 404, "not-found", NULL);
  problem(call("GET", "/nowhere", NULL, NULL), 404, "not-found", NULL);
  problem(call("DELETE", "/things/1", NULL, NULL), 405, "method-not-allowed", NULL);
  problem(call("GET", "/silent", NULL, NULL), 500, "internal", NULL);
}

static void test_probes_and_ids(void **state) {
  ps_response_t r = call("GET", "/healthz", NULL, NULL);
  assert_int_equal(r.status, 200);
  assert_int_equal(call("GET", "/readyz", NULL, NULL).status, 200);
  r = call("GET", "/metrics", NULL, NULL);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "polyshop_http_requests_total{service=\"test\",method=\"POST\",route=\"/echo\",status=\"400\"}"));
}

/* --- the wire protocol, over a raw socket ------------------------------------------------- */

static int raw_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ps_server_port())};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

static void raw_send(int fd, const char *text) {
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
}

/* Reads until the peer closes (or the buffer is full / 5 s pass). */
static size_t raw_read_all(int fd, char *buf, size_t cap) {
  size_t n = 0;
  ssize_t r;
  while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0) n += (size_t)r;
  buf[n] = '\0';
  return n;
}

static int count(const char *hay, const char *needle) {
  int c = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) c++;
  return c;
}

static void test_wire_pipelining_and_close(void **state) {
  static char buf[65536];
  int fd = raw_connect();
  /* Three requests in one write: three answers in order; the last asks to close. */
  raw_send(fd, "GET /things/a HTTP/1.1\r\nHost: x\r\n\r\n"
               "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: 32\r\n\r\n{\"name\":\"p\",\"qty\":2,\"tags\":[]}  "
               "GET /things/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  raw_read_all(fd, buf, sizeof(buf));
  close(fd);
  assert_int_equal(count(buf, "HTTP/1.1 200 OK\r\n"), 3);
  char *a = strstr(buf, "\"id\":\"a\""), *p = strstr(buf, "\"name\":\"p\""), *c = strstr(buf, "\"id\":\"c\"");
  assert_true(a && p && c && a < p && p < c);
  assert_non_null(strstr(buf, "Connection: close\r\n"));
}

static void test_wire_long_headers_whole_and_in_order(void **state) {
  static char buf[16384];
  int fd = raw_connect();
  raw_send(fd, "GET /long-headers HTTP/1.1\r\nConnection: close\r\n\r\n");
  raw_read_all(fd, buf, sizeof(buf));
  close(fd);
  char big[1201];
  memset(big, 'b', 1200);
  big[1200] = '\0';
  char *first = strstr(buf, "\r\nX-First: 1\r\nX-Big: "), *mid = strstr(buf, "\r\nX-Middle: 2\r\nX-Big-Too: ");
  char *last = strstr(buf, "\r\nX-Last: 3\r\nConnection: close\r\n\r\n{\"status\":\"ok\"}");
  if (!(first && mid && last && first < mid && mid < last)) fail_msg("got: %.300s", buf);
  assert_memory_equal(first + 21, big, 1200);
  assert_memory_equal(mid + 26, big, 1200);
  assert_int_equal(first[21 + 1200], '\r');
  assert_int_equal(mid[26 + 1200], '\r');
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\nDate: "));
  assert_non_null(strstr(buf, "\r\nContent-Length: 15\r\nX-Request-Id: "));
}

static void test_wire_http10_closes(void **state) {
  static char buf[8192];
  int fd = raw_connect();
  raw_send(fd, "GET /healthz HTTP/1.0\r\n\r\n");
  raw_read_all(fd, buf, sizeof(buf)); /* returns only because the server closes */
  close(fd);
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(buf, "Content-Length: 15\r\n"));
}

static void test_wire_head_has_no_body(void **state) {
  static char buf[8192];
  int fd = raw_connect();
  raw_send(fd, "HEAD /things/x HTTP/1.1\r\nConnection: close\r\n\r\n");
  raw_read_all(fd, buf, sizeof(buf));
  close(fd);
  /* A GET route answers HEAD: the GET answer's head, with its length, and no body. */
  assert_non_null(strstr(buf, "HTTP/1.1 200 "));
  assert_non_null(strstr(buf, "Content-Length: 21\r\n")); /* {"id":"x","limit":20} */
  assert_null(strstr(buf, "{\"id\""));
  /* A path without GET still refuses HEAD, and Allow names HEAD only beside GET. */
  fd = raw_connect();
  raw_send(fd, "HEAD /echo HTTP/1.1\r\nConnection: close\r\n\r\n");
  raw_read_all(fd, buf, sizeof(buf));
  close(fd);
  assert_non_null(strstr(buf, "HTTP/1.1 405 "));
  assert_non_null(strstr(buf, "Allow: POST\r\n"));
  assert_null(strstr(buf, "{\"type\""));
  fd = raw_connect();
  raw_send(fd, "DELETE /things/x HTTP/1.1\r\nConnection: close\r\n\r\n");
  raw_read_all(fd, buf, sizeof(buf));
  close(fd);
  assert_non_null(strstr(buf, "Allow: GET, HEAD\r\n"));
}

static void wire_problem(const char *request, const char *status_line, const char *slug) {
  static char buf[65536];
  int fd = raw_connect();
  raw_send(fd, request);
  raw_read_all(fd, buf, sizeof(buf));
  close(fd);
  if (!strstr(buf, status_line)) fail_msg("expected %s, got: %.200s", status_line, buf);
  char type[96];
  snprintf(type, sizeof(type), "\"type\":\"urn:polyshop:problem:%s\"", slug);
  if (!strstr(buf, type)) fail_msg("expected %s in: %.300s", type, buf);
  assert_non_null(strstr(buf, "Content-Type: application/problem+json\r\n"));
  assert_non_null(strstr(buf, "Connection: close\r\n"));
}

static void test_wire_bad_requests(void **state) {
  wire_problem("NONSENSE\r\n\r\n", "HTTP/1.1 400 ", "malformed-request");
  wire_problem("GET nothing HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ", "malformed-request");
  wire_problem("GET / SPDY/3\r\n\r\n", "HTTP/1.1 400 ", "malformed-request");
  wire_problem("GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n", "HTTP/1.1 400 ", "malformed-request");
  wire_problem("POST /echo HTTP/1.1\r\nContent-Length: 12x\r\n\r\n", "HTTP/1.1 400 ", "malformed-request");
  /* Chunked bodies are read (tests/unit/test_http_async.c); other codings are not. */
  wire_problem("POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
               "HTTP/1.1 501 ", "not-implemented");
  wire_problem("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
               "HTTP/1.1 400 ", "malformed-request");
  wire_problem("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
               "HTTP/1.1 400 ", "malformed-request");
  /* A body over the limit is refused from its Content-Length, before it is sent. */
  wire_problem("POST /echo HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n",
               "HTTP/1.1 413 ", "payload-too-large");
  static char big[20000];
  memset(big, 'a', sizeof(big) - 1);
  memcpy(big, "GET /healthz HTTP/1.1\r\nX-Big: ", 30);
  wire_problem(big, "HTTP/1.1 431 ", "headers-too-large");
}

static void test_wire_expect_continue(void **state) {
  static char buf[8192];
  int fd = raw_connect();
  raw_send(fd, "POST /echo HTTP/1.1\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
               "Content-Length: 32\r\nConnection: close\r\n\r\n");
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  assert_true(n > 0);
  buf[n] = '\0';
  assert_non_null(strstr(buf, "HTTP/1.1 100 Continue\r\n"));
  raw_send(fd, "{\"name\":\"e\",\"qty\":3,\"tags\":[]}  ");
  raw_read_all(fd, buf, sizeof(buf));
  close(fd);
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(buf, "\"qty\":3"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_good_body), cmocka_unit_test(test_bad_bodies),
      cmocka_unit_test(test_body_limit), cmocka_unit_test(test_routing),
      cmocka_unit_test(test_probes_and_ids), cmocka_unit_test(test_wire_pipelining_and_close),
      cmocka_unit_test(test_wire_long_headers_whole_and_in_order),
      cmocka_unit_test(test_wire_http10_closes), cmocka_unit_test(test_wire_head_has_no_body),
      cmocka_unit_test(test_wire_bad_requests), cmocka_unit_test(test_wire_expect_continue)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
