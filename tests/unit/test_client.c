/* test_client.c - the service-to-service client (lib/client.c) against a tiny HTTP/1.1 server
 * run in a thread of this test on 127.0.0.1: keep-alive reuse, headers, retries for
 * idempotent calls only, timeouts, refused connections, the circuit breaker, traceparent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loopback.h"
#include "polyshop/client.h"
#include "polyshop/error.h"

/* ---- the test server ---- */

enum { MAX_CONNS = 32, CONN_BUF = 16384 };

typedef struct {
  int fd;
  char in[CONN_BUF];
  size_t in_len;
  char out[CONN_BUF];
  size_t out_len;
  int64_t respond_at; /* 0: nothing pending */
} conn_t;

static struct {
  int listen_fd;
  int wake[2];
  int port;
  pthread_t thread;
  pthread_mutex_t mu;
  /* Guarded by mu. */
  int accepts;
  int requests;
  int flaky_left; /* how many more 503s /flaky answers before a 200 */
  char request_id[128], traceparent[128], idem_key[128], method[16], content_type[64];
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Copies the value of header name from the header block hdrs (not NUL-terminated, len). */
static void header_value(const char *hdrs, size_t len, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  out[0] = '\0';
  for (const char *p = hdrs, *end = hdrs + len; p < end;) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (v < eol && *v == ' ') v++;
      const char *ve = eol;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
      size_t n = (size_t)(ve - v) < cap - 1 ? (size_t)(ve - v) : cap - 1;
      memcpy(out, v, n);
      out[n] = '\0';
      return;
    }
    p = eol + 1;
  }
}

static void respond(conn_t *c, int status, const char *extra, const char *body, long delay_ms) {
  c->out_len = (size_t)snprintf(c->out, sizeof(c->out),
                                "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                                "Content-Length: %zu\r\n%s\r\n%s",
                                status, strlen(body), extra, body);
  c->respond_at = now_ms() + delay_ms;
}

/* Handles one complete request at the start of c->in; returns its length, 0 if incomplete. */
static size_t handle(conn_t *c) {
  char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
  if (!end) return 0;
  size_t hlen = (size_t)(end - c->in) + 4;
  char cl[32];
  header_value(c->in, hlen, "Content-Length", cl, sizeof(cl));
  size_t blen = cl[0] ? (size_t)strtoul(cl, NULL, 10) : 0;
  if (c->in_len < hlen + blen) return 0;

  char method[16] = "", path[256] = "";
  sscanf(c->in, "%15s %255s", method, path);
  pthread_mutex_lock(&srv.mu);
  srv.requests++;
  snprintf(srv.method, sizeof(srv.method), "%s", method);
  header_value(c->in, hlen, "X-Request-Id", srv.request_id, sizeof(srv.request_id));
  header_value(c->in, hlen, "traceparent", srv.traceparent, sizeof(srv.traceparent));
  header_value(c->in, hlen, "Idempotency-Key", srv.idem_key, sizeof(srv.idem_key));
  header_value(c->in, hlen, "Content-Type", srv.content_type, sizeof(srv.content_type));
  int flaky = 0;
  if (strcmp(path, "/flaky") == 0 && srv.flaky_left > 0) {
    srv.flaky_left--;
    flaky = 1;
  }
  pthread_mutex_unlock(&srv.mu);

  if (strcmp(path, "/ok") == 0) {
    respond(c, 200, "", "{\"ok\":true}", 0);
  } else if (strcmp(path, "/echo") == 0) {
    char body[4096];
    size_t n = blen < sizeof(body) - 1 ? blen : sizeof(body) - 1;
    memcpy(body, c->in + hlen, n);
    body[n] = '\0';
    respond(c, 200, "", body, 0);
  } else if (strcmp(path, "/flaky") == 0) {
    if (flaky)
      respond(c, 503, "Retry-After: 1\r\n", "{\"flaky\":true}", 0);
    else
      respond(c, 200, "", "{\"ok\":\"after retry\"}", 0);
  } else if (strcmp(path, "/fail") == 0) {
    respond(c, 503, "", "{\"down\":true}", 0);
  } else if (strcmp(path, "/500") == 0) {
    respond(c, 500, "", "{}", 0);
  } else if (strcmp(path, "/slow") == 0) {
    respond(c, 200, "", "{\"slow\":true}", 1000);
  } else {
    respond(c, 404, "", "{}", 0);
  }
  return hlen + blen;
}

static void conn_close(conn_t *c) {
  close(c->fd);
  c->fd = -1;
}

static void *server_main(void *arg) {
  conn_t *conns = calloc(MAX_CONNS, sizeof(conn_t));
  for (int i = 0; i < MAX_CONNS; i++) conns[i].fd = -1;
  for (;;) {
    struct pollfd pfd[MAX_CONNS + 2];
    int map[MAX_CONNS + 2];
    int n = 0;
    pfd[n++] = (struct pollfd){.fd = srv.wake[0], .events = POLLIN};
    pfd[n++] = (struct pollfd){.fd = srv.listen_fd, .events = POLLIN};
    for (int i = 0; i < MAX_CONNS; i++) {
      if (conns[i].fd < 0) continue;
      map[n] = i;
      pfd[n++] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
    }
    poll(pfd, (nfds_t)n, 10);
    if (pfd[0].revents) break;
    if (pfd[1].revents & POLLIN) {
      int fd = accept(srv.listen_fd, NULL, NULL);
      if (fd >= 0) {
        int i = 0;
        while (i < MAX_CONNS && conns[i].fd >= 0) i++;
        if (i == MAX_CONNS) {
          close(fd);
        } else {
          conns[i].fd = fd;
          conns[i].in_len = 0;
          conns[i].respond_at = 0;
          pthread_mutex_lock(&srv.mu);
          srv.accepts++;
          pthread_mutex_unlock(&srv.mu);
        }
      }
    }
    for (int k = 2; k < n; k++) {
      conn_t *c = &conns[map[k]];
      if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
      if (r <= 0) {
        conn_close(c);
        continue;
      }
      c->in_len += (size_t)r;
    }
    int64_t now = now_ms();
    for (int i = 0; i < MAX_CONNS; i++) {
      conn_t *c = &conns[i];
      if (c->fd < 0) continue;
      if (!c->respond_at && c->in_len) {
        size_t used = handle(c);
        if (used) {
          memmove(c->in, c->in + used, c->in_len - used);
          c->in_len -= used;
        }
      }
      if (c->respond_at && now >= c->respond_at) {
        if (send(c->fd, c->out, c->out_len, MSG_NOSIGNAL) != (ssize_t)c->out_len) conn_close(c);
        c->respond_at = 0;
      }
    }
  }
  for (int i = 0; i < MAX_CONNS; i++)
    if (conns[i].fd >= 0) close(conns[i].fd);
  free(conns);
  return NULL;
}

static int server_start(void **state) {
  if ((srv.listen_fd = test_loopback_listen(16, &srv.port)) < 0 || pipe(srv.wake)) return -1;
  return pthread_create(&srv.thread, NULL, server_main, NULL);
}

static int server_stop(void **state) {
  if (write(srv.wake[1], "x", 1) != 1) return -1;
  pthread_join(srv.thread, NULL);
  close(srv.listen_fd);
  close(srv.wake[0]);
  close(srv.wake[1]);
  ps_client_global_cleanup();
  return 0;
}

static int counter(const int *p) {
  pthread_mutex_lock(&srv.mu);
  int v = *p;
  pthread_mutex_unlock(&srv.mu);
  return v;
}

static void seen(char *out, size_t cap, const char *field) {
  pthread_mutex_lock(&srv.mu);
  snprintf(out, cap, "%s", field);
  pthread_mutex_unlock(&srv.mu);
}

static char *url(ps_arena_t *a, const char *path) {
  return ps_arena_sprintf(a, "http://127.0.0.1:%d%s", srv.port, path);
}

/* A port nothing listens on: bound then closed, so it was free a moment ago. */
static ps_client_t *client_with(int retries, int breaker_failures, long breaker_open_ms) {
  ps_client_opts_t o;
  ps_client_opts_default(&o);
  o.max_retries = retries;
  o.backoff_base_ms = 10;
  o.breaker_failures = breaker_failures;
  o.breaker_open_ms = breaker_open_ms;
  ps_client_t *c = ps_client_new(&o);
  assert_non_null(c);
  return c;
}

/* ---- tests ---- */

static void test_get_ok_with_headers(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(2, 5, 5000);
  char *tp = ps_trace_child(&a, NULL);
  ps_call_t call = {.method = "GET", .url = url(&a, "/ok"), .request_id = "req-123",
                    .traceparent = tp};
  ps_response_t r;
  assert_int_equal(ps_client_call(c, &a, &call, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"ok\":true}");
  assert_int_equal(r.body_len, 11);
  assert_string_equal(r.content_type, "application/json");
  assert_null(r.retry_after);
  char v[128];
  seen(v, sizeof(v), srv.request_id);
  assert_string_equal(v, "req-123");
  seen(v, sizeof(v), srv.traceparent);
  assert_string_equal(v, tp);
  seen(v, sizeof(v), srv.method);
  assert_string_equal(v, "GET");

  /* Without them, none is sent. */
  call = (ps_call_t){.method = "GET", .url = url(&a, "/ok")};
  assert_int_equal(ps_client_call(c, &a, &call, &r), 0);
  seen(v, sizeof(v), srv.request_id);
  assert_string_equal(v, "");
  seen(v, sizeof(v), srv.traceparent);
  assert_string_equal(v, "");

  /* A 404 is an answer like any other. */
  call = (ps_call_t){.method = "GET", .url = url(&a, "/nope")};
  assert_int_equal(ps_client_call(c, &a, &call, &r), 0);
  assert_int_equal(r.status, 404);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_keepalive_and_bodies(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(2, 5, 5000);
  int before = counter(&srv.accepts);
  for (int i = 0; i < 5; i++) {
    ps_call_t call = {.method = "GET", .url = url(&a, "/ok")};
    ps_response_t r;
    assert_int_equal(ps_client_call(c, &a, &call, &r), 0);
    assert_int_equal(r.status, 200);
  }
  const char *body = "{\"sku\":\"A-1\",\"quantity\":3}";
  ps_call_t post = {.method = "POST", .url = url(&a, "/echo"), .body = body,
                    .body_len = strlen(body)};
  ps_response_t r;
  assert_int_equal(ps_client_call(c, &a, &post, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, body);
  char v[128];
  seen(v, sizeof(v), srv.content_type);
  assert_string_equal(v, "application/json");
  seen(v, sizeof(v), srv.method);
  assert_string_equal(v, "POST");

  /* Other methods, an explicit content type and extra headers. */
  const char *const extra[] = {"Authorization: Bearer x", NULL};
  ps_call_t put = {.method = "PATCH", .url = url(&a, "/echo"), .body = "a=1", .body_len = 3,
                   .content_type = "text/plain", .headers = extra};
  assert_int_equal(ps_client_call(c, &a, &put, &r), 0);
  assert_string_equal(r.body, "a=1");
  seen(v, sizeof(v), srv.content_type);
  assert_string_equal(v, "text/plain");
  seen(v, sizeof(v), srv.method);
  assert_string_equal(v, "PATCH");
  ps_call_t del = {.method = "DELETE", .url = url(&a, "/ok")};
  assert_int_equal(ps_client_call(c, &a, &del, &r), 0);
  assert_int_equal(r.status, 200);
  seen(v, sizeof(v), srv.method);
  assert_string_equal(v, "DELETE");
  ps_call_t head = {.method = "HEAD", .url = url(&a, "/ok")};
  assert_int_equal(ps_client_call(c, &a, &head, &r), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, 0);

  /* Nine calls, one connection. */
  assert_int_equal(counter(&srv.accepts) - before, 1);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_retry_get_not_post(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(2, 100, 5000);
  ps_response_t r;

  /* GET: the 503 is retried and the second answer returned. */
  pthread_mutex_lock(&srv.mu);
  srv.flaky_left = 1;
  pthread_mutex_unlock(&srv.mu);
  int before = counter(&srv.requests);
  ps_call_t get = {.method = "GET", .url = url(&a, "/flaky")};
  assert_int_equal(ps_client_call(c, &a, &get, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"ok\":\"after retry\"}");
  assert_int_equal(counter(&srv.requests) - before, 2);

  /* POST without a key: not retried, the 503 comes back with its Retry-After. */
  pthread_mutex_lock(&srv.mu);
  srv.flaky_left = 1;
  pthread_mutex_unlock(&srv.mu);
  before = counter(&srv.requests);
  ps_call_t post = {.method = "POST", .url = url(&a, "/flaky"), .body = "{}", .body_len = 2};
  assert_int_equal(ps_client_call(c, &a, &post, &r), 0);
  assert_int_equal(r.status, 503);
  assert_string_equal(r.retry_after, "1");
  assert_int_equal(counter(&srv.requests) - before, 1);

  /* POST with an Idempotency-Key: retried, the key sent each time. */
  pthread_mutex_lock(&srv.mu);
  srv.flaky_left = 1;
  pthread_mutex_unlock(&srv.mu);
  before = counter(&srv.requests);
  post.idempotency_key = "order-77-pay";
  assert_int_equal(ps_client_call(c, &a, &post, &r), 0);
  assert_int_equal(r.status, 200);
  assert_null(r.retry_after); /* from the last answer only */
  assert_int_equal(counter(&srv.requests) - before, 2);
  char v[128];
  seen(v, sizeof(v), srv.idem_key);
  assert_string_equal(v, "order-77-pay");

  /* POST marked idempotent: retried. */
  pthread_mutex_lock(&srv.mu);
  srv.flaky_left = 1;
  pthread_mutex_unlock(&srv.mu);
  before = counter(&srv.requests);
  post.idempotency_key = NULL;
  post.idempotent = 1;
  assert_int_equal(ps_client_call(c, &a, &post, &r), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(counter(&srv.requests) - before, 2);

  /* Retries are bounded: 1 + max_retries attempts, then the last 503. */
  pthread_mutex_lock(&srv.mu);
  srv.flaky_left = 10;
  pthread_mutex_unlock(&srv.mu);
  before = counter(&srv.requests);
  assert_int_equal(ps_client_call(c, &a, &get, &r), 0);
  assert_int_equal(r.status, 503);
  assert_int_equal(counter(&srv.requests) - before, 3);

  /* A 500 is not a retryable status. */
  before = counter(&srv.requests);
  ps_call_t e500 = {.method = "GET", .url = url(&a, "/500")};
  assert_int_equal(ps_client_call(c, &a, &e500, &r), 0);
  assert_int_equal(r.status, 500);
  assert_int_equal(counter(&srv.requests) - before, 1);
  pthread_mutex_lock(&srv.mu);
  srv.flaky_left = 0;
  pthread_mutex_unlock(&srv.mu);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_timeout(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_opts_t o;
  ps_client_opts_default(&o);
  o.timeout_ms = 300;
  o.backoff_base_ms = 10;
  ps_client_t *c = ps_client_new(&o);
  ps_call_t call = {.method = "GET", .url = url(&a, "/slow")};
  ps_response_t r;
  int64_t t0 = now_ms();
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_ETIMEOUT);
  int64_t took = now_ms() - t0;
  assert_int_equal(r.status, 0);
  assert_null(r.body);
  /* The deadline covers the retries too. */
  assert_true(took >= 290 && took < 800);

  /* A per-call timeout overrides the client's. */
  call.timeout_ms = 100;
  t0 = now_ms();
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_ETIMEOUT);
  took = now_ms() - t0;
  assert_true(took >= 90 && took < 500);

  /* And a slow answer within the deadline arrives. */
  call.timeout_ms = 3000;
  assert_int_equal(ps_client_call(c, &a, &call, &r), 0);
  assert_int_equal(r.status, 200);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_refused(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(2, 100, 5000);
  ps_call_t call = {.method = "GET",
                    .url = ps_arena_sprintf(&a, "http://127.0.0.1:%d/x", test_loopback_closed_port())};
  ps_response_t r;
  int64_t t0 = now_ms();
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_EUNAVAIL);
  assert_true(now_ms() - t0 < 1000);
  assert_int_equal(r.status, 0);
  call.method = "POST";
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_EUNAVAIL);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_breaker(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(0, 3, 300);
  ps_call_t fail = {.method = "GET", .url = url(&a, "/fail")};
  ps_call_t ok = {.method = "GET", .url = url(&a, "/ok")};
  ps_response_t r;

  /* Three 503s in a row open it... */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(ps_client_call(c, &a, &fail, &r), 0);
    assert_int_equal(r.status, 503);
  }
  /* ...and then nothing reaches the server, whatever the path on that origin. */
  int before = counter(&srv.requests), accepts = counter(&srv.accepts);
  assert_int_equal(ps_client_call(c, &a, &fail, &r), PS_EBREAKER);
  assert_int_equal(r.status, 0);
  assert_int_equal(ps_client_call(c, &a, &ok, &r), PS_EBREAKER);
  assert_int_equal(counter(&srv.requests), before);
  assert_int_equal(counter(&srv.accepts), accepts);

  /* After the open interval one trial goes through; its success closes the breaker. */
  sleep_ms(350);
  assert_int_equal(ps_client_call(c, &a, &ok, &r), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(ps_client_call(c, &a, &fail, &r), 0); /* 1 failure: still closed */
  assert_int_equal(r.status, 503);
  assert_int_equal(ps_client_call(c, &a, &ok, &r), 0); /* a success resets the count */
  for (int i = 0; i < 2; i++) assert_int_equal(ps_client_call(c, &a, &fail, &r), 0);
  assert_int_equal(ps_client_call(c, &a, &ok, &r), 0); /* 2 < 3: closed */
  assert_int_equal(r.status, 200);

  /* Open it again; a failed trial re-opens it for another full interval. */
  for (int i = 0; i < 3; i++) assert_int_equal(ps_client_call(c, &a, &fail, &r), 0);
  assert_int_equal(ps_client_call(c, &a, &ok, &r), PS_EBREAKER);
  sleep_ms(350);
  before = counter(&srv.requests);
  assert_int_equal(ps_client_call(c, &a, &fail, &r), 0); /* the trial */
  assert_int_equal(r.status, 503);
  assert_int_equal(counter(&srv.requests) - before, 1);
  assert_int_equal(ps_client_call(c, &a, &ok, &r), PS_EBREAKER);
  sleep_ms(350);
  assert_int_equal(ps_client_call(c, &a, &ok, &r), 0);
  assert_int_equal(r.status, 200);
  ps_client_free(c);
  ps_arena_reset(&a);
}

/* Connection failures count too, and each origin has its own breaker. */
static void test_breaker_per_origin(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(0, 2, 5000);
  ps_call_t dead = {.method = "GET",
                    .url = ps_arena_sprintf(&a, "http://127.0.0.1:%d/x", test_loopback_closed_port())};
  ps_call_t ok = {.method = "GET", .url = url(&a, "/ok")};
  ps_response_t r;
  assert_int_equal(ps_client_call(c, &a, &dead, &r), PS_EUNAVAIL);
  assert_int_equal(ps_client_call(c, &a, &dead, &r), PS_EUNAVAIL);
  assert_int_equal(ps_client_call(c, &a, &dead, &r), PS_EBREAKER);
  assert_int_equal(ps_client_call(c, &a, &ok, &r), 0);
  assert_int_equal(r.status, 200);
  ps_client_free(c);

  /* With retries, the breaker opening during a call stops its retries. */
  c = client_with(5, 2, 5000);
  int64_t t0 = now_ms();
  assert_int_equal(ps_client_call(c, &a, &dead, &r), PS_EUNAVAIL); /* 2 attempts, then open */
  assert_int_equal(ps_client_call(c, &a, &dead, &r), PS_EBREAKER);
  assert_true(now_ms() - t0 < 1000);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_invalid_calls(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(0, 5, 5000);
  ps_response_t r;
  static const char *const bad_urls[] = {"not a url", "ftp://127.0.0.1/x", "/relative", ""};
  for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
    ps_call_t call = {.method = "GET", .url = bad_urls[i]};
    if (ps_client_call(c, &a, &call, &r) != PS_EINVAL) fail_msg("url %s", bad_urls[i]);
  }
  ps_call_t call = {.method = "get", .url = url(&a, "/ok")};
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_EINVAL);
  call.method = "GET\r\nX: y";
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_EINVAL);
  call.method = "GET";
  call.request_id = "abc\r\nInjected: 1";
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_EINVAL);
  call.request_id = NULL;
  const char *const bad_hdr[] = {"NoColon", NULL};
  call.headers = bad_hdr;
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_EINVAL);
  call.headers = NULL;
  call.url = NULL;
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_EINVAL);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static int hex_run(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!strchr("0123456789abcdef", s[i]) || !s[i]) return 0;
  return 1;
}

static void assert_traceparent(const char *tp) {
  assert_int_equal(strlen(tp), 55);
  assert_memory_equal(tp, "00-", 3);
  assert_true(hex_run(tp + 3, 32));
  assert_int_equal(tp[35], '-');
  assert_true(hex_run(tp + 36, 16));
  assert_string_equal(tp + 52, "-01");
}

static void test_trace_child(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  char *t1 = ps_trace_child(&a, NULL), *t2 = ps_trace_child(&a, NULL);
  assert_traceparent(t1);
  assert_traceparent(t2);
  assert_memory_not_equal(t1 + 3, t2 + 3, 32); /* new traces */

  const char *in = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
  char *child = ps_trace_child(&a, in);
  assert_traceparent(child);
  assert_memory_equal(child + 3, in + 3, 32);        /* same trace */
  assert_memory_not_equal(child + 36, in + 36, 16);  /* new span */
  /* A future version with extra fields is understood. */
  child = ps_trace_child(&a, "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what");
  assert_memory_equal(child + 3, in + 3, 32);

  static const char *const invalid[] = {
      "",
      "garbage",
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* upper case */
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero trace */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* zero span */
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* version ff */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", /* v00 with more */
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  /* short trace */
      "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
  };
  for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
    char *t = ps_trace_child(&a, invalid[i]);
    assert_traceparent(t);
    if (memcmp(t + 3, "4bf92f3577b34da6a3ce929d0e0e4736", 32) == 0) fail_msg("kept %s", invalid[i]);
  }
  ps_arena_reset(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_ok_with_headers), cmocka_unit_test(test_keepalive_and_bodies),
      cmocka_unit_test(test_retry_get_not_post),  cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_refused),             cmocka_unit_test(test_breaker),
      cmocka_unit_test(test_breaker_per_origin),  cmocka_unit_test(test_invalid_calls),
      cmocka_unit_test(test_trace_child),
  };
  return cmocka_run_group_tests(tests, server_start, server_stop);
}
