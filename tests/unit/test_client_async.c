/* test_client_async.c - the non-blocking client (ps_client_new_loop, ps_client_start) on an
 * event loop of this test, against a raw HTTP/1.1 server in threads on 127.0.0.1: calls in
 * flight together answered out of order, the loop staying responsive while a call waits
 * (deadline, backoff), the breaker refusing without a connection, stale keep-alive
 * connections, body framings, the size cap, refused connections, name lookups, the bound on
 * open connections, and freeing a client with calls in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

/* ---- the test server: one thread per connection ---- */

enum { MAX_CONNS = 128, REQ_BUF = 16384 };

typedef struct {
  pthread_t thread;
  int fd;
  int used;
} conn_slot_t;

static struct {
  int listen_fd;
  int wake[2];
  int port;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cond;
  conn_slot_t conns[MAX_CONNS];
  /* Guarded by mu. */
  int accepts, requests, flaky_left, b_answered, stop;
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void send_str(int fd, const char *s) { send(fd, s, strlen(s), MSG_NOSIGNAL); }

static void send_trickle(int fd, const char *s) {
  for (size_t i = 0, n = strlen(s); i < n; i += 4) {
    send(fd, s + i, n - i < 4 ? n - i : 4, MSG_NOSIGNAL);
    sleep_ms(1);
  }
}

/* Waits, without answering, until the client closes or the server stops. */
static void hold_silent(int fd) {
  char x[256];
  while (recv(fd, x, sizeof(x), 0) > 0) {
  }
}

/* Answers one request; returns 0 to keep the connection, 1 to close it. */
static int answer(int fd, const char *path) {
  if (strcmp(path, "/ok") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  } else if (strcmp(path, "/pair-a") == 0) {
    /* answered only once the client has taken /pair-b's answer */
    pthread_mutex_lock(&srv.mu);
    while (!srv.b_answered && !srv.stop) pthread_cond_wait(&srv.cond, &srv.mu);
    pthread_mutex_unlock(&srv.mu);
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
  } else if (strcmp(path, "/pair-b") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb");
  } else if (strcmp(path, "/silent") == 0) {
    hold_silent(fd);
    return 1;
  } else if (strcmp(path, "/flaky") == 0) {
    pthread_mutex_lock(&srv.mu);
    int flaky = srv.flaky_left > 0 ? srv.flaky_left-- : 0;
    pthread_mutex_unlock(&srv.mu);
    send_str(fd, flaky ? "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"
                       : "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfixed");
  } else if (strcmp(path, "/fail") == 0) {
    send_str(fd, "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n");
  } else if (strcmp(path, "/then-close") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    sleep_ms(20);
    return 1;
  } else if (strcmp(path, "/chunked") == 0) {
    send_trickle(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nT: 1\r\n\r\n");
  } else if (strcmp(path, "/until-close") == 0) {
    send_trickle(fd, "HTTP/1.1 200 OK\r\n\r\nto the end");
    return 1;
  } else if (strcmp(path, "/big") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 67108865\r\n\r\n");
    return 1;
  } else if (strcmp(path, "/wait50") == 0) {
    sleep_ms(50);
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  } else {
    send_str(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  }
  return 0;
}

static void *conn_main(void *arg) {
  conn_slot_t *slot = arg;
  char *in = malloc(REQ_BUF);
  size_t len = 0;
  for (;;) {
    char *end = len ? memmem(in, len, "\r\n\r\n", 4) : NULL;
    if (!end) {
      ssize_t r = len < REQ_BUF ? recv(slot->fd, in + len, REQ_BUF - len, 0) : 0;
      if (r <= 0) break;
      len += (size_t)r;
      continue;
    }
    size_t hlen = (size_t)(end - in) + 4;
    char path[256] = "";
    sscanf(in, "%*s %255s", path);
    pthread_mutex_lock(&srv.mu);
    srv.requests++;
    pthread_mutex_unlock(&srv.mu);
    memmove(in, in + hlen, len - hlen); /* the tests send no bodies */
    len -= hlen;
    if (answer(slot->fd, path)) break;
  }
  pthread_mutex_lock(&srv.mu);
  close(slot->fd);
  slot->fd = -1;
  pthread_mutex_unlock(&srv.mu);
  free(in);
  return NULL;
}

static void *server_main(void *arg) {
  for (;;) {
    struct pollfd pfd[2] = {{.fd = srv.wake[0], .events = POLLIN},
                            {.fd = srv.listen_fd, .events = POLLIN}};
    poll(pfd, 2, -1);
    if (pfd[0].revents) break;
    int fd = accept(srv.listen_fd, NULL, NULL);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    pthread_mutex_lock(&srv.mu);
    int i = 0;
    while (i < MAX_CONNS && srv.conns[i].used) i++;
    if (i == MAX_CONNS) {
      pthread_mutex_unlock(&srv.mu);
      close(fd);
      continue;
    }
    srv.accepts++;
    srv.conns[i].used = 1;
    srv.conns[i].fd = fd;
    pthread_mutex_unlock(&srv.mu);
    pthread_create(&srv.conns[i].thread, NULL, conn_main, &srv.conns[i]);
  }
  return NULL;
}

static int server_start(void **state) {
  if ((srv.listen_fd = test_loopback_listen(128, &srv.port)) < 0 || pipe(srv.wake)) return -1;
  return pthread_create(&srv.thread, NULL, server_main, NULL);
}

static int server_stop(void **state) {
  if (write(srv.wake[1], "x", 1) != 1) return -1;
  pthread_join(srv.thread, NULL);
  pthread_mutex_lock(&srv.mu);
  srv.stop = 1;
  pthread_cond_broadcast(&srv.cond);
  pthread_mutex_unlock(&srv.mu);
  for (int i = 0; i < MAX_CONNS; i++) {
    if (!srv.conns[i].used) continue;
    pthread_mutex_lock(&srv.mu);
    if (srv.conns[i].fd >= 0) shutdown(srv.conns[i].fd, SHUT_RDWR);
    pthread_mutex_unlock(&srv.mu);
    pthread_join(srv.conns[i].thread, NULL);
  }
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

/* ---- the test's loop ---- */

typedef struct {
  int calls;  /* times the callback ran */
  int rc;
  long status;
  char body[64];
  int order;  /* 1 for the first callback of a test, 2 for the second... */
} outcome_t;

static struct event_base *base;
static int finished; /* callbacks run so far, across the outcomes of a test */
static int ticks;    /* runs of the ticker */

static void on_done(int rc, ps_response_t *resp, void *arg) {
  outcome_t *o = arg;
  assert_non_null(resp);
  o->calls++;
  o->rc = rc;
  o->status = resp->status;
  snprintf(o->body, sizeof(o->body), "%s", resp->body ? resp->body : "");
  o->order = ++finished;
}

static void on_tick(evutil_socket_t fd, short what, void *arg) { ticks++; }

/* Runs the loop until n callbacks have run in this test. */
static void run_until(int n) {
  while (finished < n) event_base_loop(base, EVLOOP_ONCE);
}

static int setup(void **state) {
  base = event_base_new();
  finished = 0;
  ticks = 0;
  return base ? 0 : -1;
}

static int teardown(void **state) {
  event_base_free(base);
  return 0;
}

static ps_client_t *client_with(int retries, long backoff_ms, int breaker_failures) {
  ps_client_opts_t o;
  ps_client_opts_default(&o);
  o.max_retries = retries;
  o.backoff_base_ms = backoff_ms;
  o.breaker_failures = breaker_failures;
  ps_client_t *c = ps_client_new_loop(base, &o);
  assert_non_null(c);
  return c;
}

static char *url(ps_arena_t *a, const char *path) {
  return ps_arena_sprintf(a, "http://127.0.0.1:%d%s", srv.port, path);
}

static void start_get(ps_client_t *c, ps_arena_t *a, const char *path, long timeout_ms,
                      outcome_t *o) {
  ps_call_t call = {.method = "GET", .url = url(a, path), .timeout_ms = timeout_ms};
  assert_int_equal(ps_client_start(c, a, &call, on_done, o), 0);
  assert_int_equal(o->calls, 0); /* never from inside the start */
}

/* ---- tests ---- */

/* b's callback lets the server answer a. */
static void on_b_done(int rc, ps_response_t *resp, void *arg) {
  on_done(rc, resp, arg);
  pthread_mutex_lock(&srv.mu);
  srv.b_answered = 1;
  pthread_cond_broadcast(&srv.cond);
  pthread_mutex_unlock(&srv.mu);
}

static void test_two_in_flight_reverse_order(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(0, 10, 100);
  outcome_t oa = {0}, ob = {0};
  start_get(c, &a, "/pair-a", 5000, &oa); /* the server holds this one until b is answered */
  ps_call_t b = {.method = "GET", .url = url(&a, "/pair-b")};
  assert_int_equal(ps_client_start(c, &a, &b, on_b_done, &ob), 0);
  run_until(2);
  assert_int_equal(oa.calls, 1);
  assert_int_equal(ob.calls, 1);
  assert_int_equal(oa.rc, 0);
  assert_string_equal(oa.body, "a");
  assert_string_equal(ob.body, "b");
  assert_int_equal(ob.order, 1); /* b's answer came first */
  assert_int_equal(oa.order, 2);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_deadline_loop_responsive(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(2, 10, 100);
  struct event *ticker = event_new(base, -1, EV_PERSIST, on_tick, NULL);
  struct timeval every = {0, 5000};
  event_add(ticker, &every);
  outcome_t o = {0};
  start_get(c, &a, "/silent", 200, &o);
  run_until(1);
  assert_int_equal(o.calls, 1);
  assert_int_equal(o.rc, PS_ETIMEOUT);
  assert_int_equal(o.status, 0);
  assert_true(ticks >= 3); /* the loop ran its other timers while the call waited */
  event_free(ticker);
  /* The blocking call belongs to clients with a private loop. */
  ps_response_t r;
  ps_call_t call = {.method = "GET", .url = url(&a, "/ok")};
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_EINVAL);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_retry_on_timer(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(2, 100, 100); /* waits 50-100 ms before the retry */
  struct event *ticker = event_new(base, -1, EV_PERSIST, on_tick, NULL);
  struct timeval every = {0, 5000};
  event_add(ticker, &every);
  pthread_mutex_lock(&srv.mu);
  srv.flaky_left = 1;
  pthread_mutex_unlock(&srv.mu);
  int requests = counter(&srv.requests);
  outcome_t o = {0};
  start_get(c, &a, "/flaky", 3000, &o);
  run_until(1);
  assert_int_equal(o.rc, 0);
  assert_int_equal(o.status, 200);
  assert_string_equal(o.body, "fixed");
  assert_int_equal(counter(&srv.requests) - requests, 2);
  assert_true(ticks >= 3); /* the backoff did not hold the loop */
  event_free(ticker);
  /* A POST without a key is not retried. */
  pthread_mutex_lock(&srv.mu);
  srv.flaky_left = 1;
  pthread_mutex_unlock(&srv.mu);
  requests = counter(&srv.requests);
  ps_call_t post = {.method = "POST", .url = url(&a, "/flaky"), .body = "{}", .body_len = 2};
  outcome_t p = {0};
  assert_int_equal(ps_client_start(c, &a, &post, on_done, &p), 0);
  run_until(2);
  assert_int_equal(p.rc, 0);
  assert_int_equal(p.status, 503);
  assert_int_equal(counter(&srv.requests) - requests, 1);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_breaker_without_connection(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(0, 10, 2);
  outcome_t f1 = {0}, f2 = {0}, refused = {0};
  start_get(c, &a, "/fail", 2000, &f1);
  start_get(c, &a, "/fail", 2000, &f2);
  run_until(2);
  assert_int_equal(f1.status, 503);
  assert_int_equal(f2.status, 503);
  int accepts = counter(&srv.accepts), requests = counter(&srv.requests);
  start_get(c, &a, "/ok", 2000, &refused);
  run_until(3);
  assert_int_equal(refused.calls, 1);
  assert_int_equal(refused.rc, PS_EBREAKER);
  assert_int_equal(refused.status, 0);
  assert_int_equal(counter(&srv.accepts), accepts);
  assert_int_equal(counter(&srv.requests), requests);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_stale_keepalive(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(0, 10, 100); /* no retries: the stale rule is not a retry */
  outcome_t o1 = {0}, o2 = {0};
  start_get(c, &a, "/then-close", 2000, &o1);
  run_until(1);
  assert_int_equal(o1.status, 200);
  sleep_ms(100); /* the server drops the kept-alive connection; the loop does not look */
  int accepts = counter(&srv.accepts), requests = counter(&srv.requests);
  ps_call_t post = {.method = "POST", .url = url(&a, "/ok"), .body = "x", .body_len = 1};
  assert_int_equal(ps_client_start(c, &a, &post, on_done, &o2), 0);
  run_until(2);
  assert_int_equal(o2.rc, 0);
  assert_string_equal(o2.body, "ok");
  assert_int_equal(counter(&srv.accepts) - accepts, 1);
  assert_int_equal(counter(&srv.requests) - requests, 1);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_framings_cap_refused(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(0, 10, 100);
  outcome_t ch = {0}, uc = {0}, big = {0}, ref = {0};
  start_get(c, &a, "/chunked", 2000, &ch);
  start_get(c, &a, "/until-close", 2000, &uc);
  start_get(c, &a, "/big", 2000, &big);
  ps_call_t call = {.method = "GET", .url = ps_arena_sprintf(&a, "http://127.0.0.1:%d/x",
                                                             test_loopback_closed_port())};
  assert_int_equal(ps_client_start(c, &a, &call, on_done, &ref), 0);
  run_until(4);
  assert_int_equal(ch.rc, 0);
  assert_string_equal(ch.body, "wikipedia");
  assert_int_equal(uc.rc, 0);
  assert_string_equal(uc.body, "to the end");
  assert_int_equal(big.rc, PS_ETOOBIG);
  assert_int_equal(big.status, 0);
  assert_int_equal(ref.rc, PS_EUNAVAIL);
  /* A URL with userinfo goes through libcurl's multi interface on the same loop. */
  outcome_t cu = {0}, cu_ref = {0};
  call.url = ps_arena_sprintf(&a, "http://u:p@127.0.0.1:%d/chunked", srv.port);
  assert_int_equal(ps_client_start(c, &a, &call, on_done, &cu), 0);
  call.url = ps_arena_sprintf(&a, "http://u:p@127.0.0.1:%d/x", test_loopback_closed_port());
  assert_int_equal(ps_client_start(c, &a, &call, on_done, &cu_ref), 0);
  assert_int_equal(cu.calls + cu_ref.calls, 0);
  run_until(6);
  assert_int_equal(cu.rc, 0);
  assert_string_equal(cu.body, "wikipedia");
  assert_int_equal(cu_ref.rc, PS_EUNAVAIL);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_bad_start_never_calls_back(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(0, 10, 100);
  outcome_t o = {0};
  ps_call_t bad = {.method = "GET", .url = "ftp://127.0.0.1/x"};
  assert_int_equal(ps_client_start(c, &a, &bad, on_done, &o), PS_EINVAL);
  bad = (ps_call_t){.method = "GET", .url = url(&a, "/ok"), .request_id = "a\r\nb: c"};
  assert_int_equal(ps_client_start(c, &a, &bad, on_done, &o), PS_EINVAL);
  assert_int_equal(ps_client_start(c, &a, NULL, on_done, &o), PS_EINVAL);
  bad.request_id = NULL;
  assert_int_equal(ps_client_start(c, &a, &bad, NULL, &o), PS_EINVAL);
  assert_null(ps_client_new_loop(NULL, NULL));
  event_base_loop(base, EVLOOP_NONBLOCK);
  assert_int_equal(o.calls, 0);
  ps_client_free(c);
  ps_arena_reset(&a);
}

/* Opens at most 64 connections to one host:port; further calls wait their turn. */
static void test_open_bound_then_queue(void **state) {
  enum { N = 72 };
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(0, 10, 1000);
  static outcome_t o[N];
  memset(o, 0, sizeof(o));
  int accepts = counter(&srv.accepts);
  for (int i = 0; i < N; i++) start_get(c, &a, "/wait50", 10000, &o[i]);
  run_until(N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(o[i].rc, 0);
    assert_string_equal(o[i].body, "ok");
  }
  assert_int_equal(counter(&srv.accepts) - accepts, 64);
  ps_client_free(c);
  ps_arena_reset(&a);
}

/* Calls still in flight when the client is freed each hear PS_ECANCELED once. */
static void test_free_in_flight(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(2, 10, 100);
  outcome_t s1 = {0}, s2 = {0}, q = {0};
  start_get(c, &a, "/silent", 5000, &s1);
  start_get(c, &a, "/silent", 5000, &s2);
  ps_call_t https = {.method = "GET", .url = "https://127.0.0.1:1/x"};
  assert_int_equal(ps_client_start(c, &a, &https, on_done, &q), 0);
  for (int i = 0; i < 5; i++) event_base_loop(base, EVLOOP_NONBLOCK);
  ps_client_free(c);
  assert_int_equal(s1.calls, 1);
  assert_int_equal(s1.rc, PS_ECANCELED);
  assert_int_equal(s2.calls, 1);
  assert_int_equal(s2.rc, PS_ECANCELED);
  assert_int_equal(q.calls, 1);
  event_base_loop(base, EVLOOP_NONBLOCK); /* nothing of the client is left to run */
  assert_int_equal(finished, 3);
  ps_arena_reset(&a);
}

/* Names other than numbers and localhost go through evdns: this machine's own name when
 * /etc/hosts maps it to 127.0.0.1, and a name that cannot resolve. */
static void test_names(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_with(0, 10, 100);
  outcome_t lh = {0}, bad = {0};
  ps_call_t call = {.method = "GET", .url = ps_arena_sprintf(&a, "http://localhost:%d/ok",
                                                             srv.port)};
  assert_int_equal(ps_client_start(c, &a, &call, on_done, &lh), 0);
  call.url = "http://no-such-host.invalid/x";
  call.timeout_ms = 1500;
  assert_int_equal(ps_client_start(c, &a, &call, on_done, &bad), 0);
  run_until(2);
  assert_int_equal(lh.rc, 0);
  assert_string_equal(lh.body, "ok");
  assert_true(bad.rc == PS_EUNAVAIL || bad.rc == PS_ETIMEOUT);

  char host[256] = "", line[512];
  int mapped = 0;
  FILE *f = fopen("/etc/hosts", "r");
  if (gethostname(host, sizeof(host)) == 0 && f) {
    while (fgets(line, sizeof(line), f)) {
      char ip[64], name[256];
      if (sscanf(line, "%63s %255s", ip, name) == 2 && strcmp(ip, "127.0.0.1") == 0 &&
          strcmp(name, host) == 0)
        mapped = 1;
    }
  }
  if (f) fclose(f);
  if (mapped) {
    outcome_t named = {0};
    call = (ps_call_t){.method = "GET",
                       .url = ps_arena_sprintf(&a, "http://%s:%d/ok", host, srv.port)};
    assert_int_equal(ps_client_start(c, &a, &call, on_done, &named), 0);
    run_until(3);
    assert_int_equal(named.rc, 0);
    assert_string_equal(named.body, "ok");
  }
  ps_client_free(c);
  ps_arena_reset(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_two_in_flight_reverse_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_deadline_loop_responsive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retry_on_timer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_breaker_without_connection, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stale_keepalive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_framings_cap_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_start_never_calls_back, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_bound_then_queue, setup, teardown),
      cmocka_unit_test_setup_teardown(test_free_in_flight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_names, setup, teardown),
  };
  if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
  return cmocka_run_group_tests(tests, server_start, server_stop);
}
