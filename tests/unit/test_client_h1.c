/* test_client_h1.c - our HTTP/1.1 transport for http:// calls (lib/client_h1.c, through
 * ps_client_call) against a raw test server on 127.0.0.1 that writes canned answers byte for
 * byte: body framings (Content-Length, chunked, until close), keep-alive reuse, a kept-alive
 * connection closed or reset by the server, Connection: close and HTTP/1.0, timeouts,
 * refused connections, oversized answers, header checks, HEAD, 204 and 100 Continue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
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

enum { MAX_CONNS = 128, REQ_BUF = 65536 };

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
  conn_slot_t conns[MAX_CONNS];
  /* Guarded by mu. */
  int accepts;
  int requests;
  char last_head[4096];
  char last_body[256];
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

static void send_str(int fd, const char *s) { send(fd, s, strlen(s), MSG_NOSIGNAL); }

/* Sends s a few bytes at a time, so the client sees its framing cut anywhere. */
static void send_trickle(int fd, const char *s) {
  for (size_t i = 0, n = strlen(s); i < n; i += 3) {
    send(fd, s + i, n - i < 3 ? n - i : 3, MSG_NOSIGNAL);
    sleep_ms(1);
  }
}

/* Closes with a reset instead of a FIN. */
static void reset_close(int fd) {
  struct linger l = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  close(fd);
}

/* Answers one request; returns 0 to keep the connection, 1 to close it (done here), 2 when
 * the caller should close it. */
static int answer(int fd, const char *path) {
  if (strcmp(path, "/cl") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 "content-length: 5\r\n\r\nhello");
  } else if (strcmp(path, "/chunked") == 0) {
    send_trickle(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n6;ext=1\r\n world\r\nA\r\n0123456789\r\n0\r\n"
                     "X-Trailer: yes\r\n\r\n");
  } else if (strcmp(path, "/chunked-once") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\ntransfer-encoding: CHUNKED\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\n");
  } else if (strcmp(path, "/until-close") == 0) {
    send_trickle(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, until the end");
    return 2;
  } else if (strcmp(path, "/conn-close") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    return 2;
  } else if (strcmp(path, "/conn-close-open") == 0) {
    /* Says close but keeps the socket open: the client must not wait for or reuse it. */
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Close\r\n\r\nok");
  } else if (strcmp(path, "/http10") == 0) {
    send_str(fd, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
  } else if (strcmp(path, "/http10-ka") == 0) {
    send_str(fd, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok");
  } else if (strcmp(path, "/then-close") == 0) {
    /* A normal keep-alive answer, then the server drops the idle connection. */
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    sleep_ms(20);
    return 2;
  } else if (strcmp(path, "/then-reset") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    sleep_ms(20);
    reset_close(fd);
    return 1;
  } else if (strcmp(path, "/then-408") == 0) {
    /* Some servers say 408 on an idle connection before closing it. */
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    sleep_ms(20);
    send_str(fd, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    return 2;
  } else if (strcmp(path, "/close-no-answer") == 0) {
    return 2; /* a fresh connection closed without an answer: a transport failure */
  } else if (strcmp(path, "/cut") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    return 2;
  } else if (strcmp(path, "/slow") == 0) {
    sleep_ms(1000);
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  } else if (strcmp(path, "/big-cl") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 70000000\r\n\r\n");
  } else if (strcmp(path, "/big-chunk") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5000000\r\n");
  } else if (strcmp(path, "/big-close") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\n\r\n");
    static char block[1 << 16];
    memset(block, 'x', sizeof(block));
    for (int i = 0; i < 1100; i++) /* 68.75 MiB */
      if (send(fd, block, sizeof(block), MSG_NOSIGNAL) < 0) break;
    return 2;
  } else if (strcmp(path, "/head") == 0) {
    send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: image/png\r\n\r\n");
  } else if (strcmp(path, "/204") == 0) {
    send_str(fd, "HTTP/1.1 204 No Content\r\n\r\n");
  } else if (strcmp(path, "/continue") == 0) {
    send_str(fd, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
  } else if (strcmp(path, "/retry-after") == 0) {
    send_str(fd, "HTTP/1.1 503 Busy\r\nRetry-After:  7 \r\nContent-Length: 0\r\n\r\n");
  } else if (strcmp(path, "/echo") == 0) {
    char out[512];
    pthread_mutex_lock(&srv.mu);
    snprintf(out, sizeof(out), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(srv.last_body), srv.last_body);
    pthread_mutex_unlock(&srv.mu);
    send_str(fd, out);
  } else if (strcmp(path, "/garbage") == 0) {
    send_str(fd, "SMTP ready\r\n\r\n");
    return 2;
  } else {
    send_str(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  }
  return 0;
}

static void *conn_main(void *arg) {
  conn_slot_t *slot = arg;
  int fd = slot->fd;
  char *in = malloc(REQ_BUF);
  size_t len = 0;
  for (;;) {
    char *end = len ? memmem(in, len, "\r\n\r\n", 4) : NULL;
    if (!end) {
      if (len == REQ_BUF) break;
      ssize_t r = recv(fd, in + len, REQ_BUF - len, 0);
      if (r <= 0) break;
      len += (size_t)r;
      continue;
    }
    size_t hlen = (size_t)(end - in) + 4, blen = 0;
    char *cl = strcasestr(in, "\r\nContent-Length:");
    if (cl && cl < end) blen = strtoul(cl + 17, NULL, 10);
    while (len < hlen + blen && len < REQ_BUF) {
      ssize_t r = recv(fd, in + len, REQ_BUF - len, 0);
      if (r <= 0) goto out;
      len += (size_t)r;
    }
    char path[256] = "";
    sscanf(in, "%*s %255s", path);
    path[strcspn(path, "?")] = '\0';
    pthread_mutex_lock(&srv.mu);
    srv.requests++;
    size_t hn = hlen < sizeof(srv.last_head) - 1 ? hlen : sizeof(srv.last_head) - 1;
    memcpy(srv.last_head, in, hn);
    srv.last_head[hn] = '\0';
    size_t bn = blen < sizeof(srv.last_body) - 1 ? blen : sizeof(srv.last_body) - 1;
    memcpy(srv.last_body, in + hlen, bn);
    srv.last_body[bn] = '\0';
    pthread_mutex_unlock(&srv.mu);
    memmove(in, in + hlen + blen, len - hlen - blen);
    len -= hlen + blen;
    int r = answer(fd, path);
    if (r == 1) {
      fd = -1;
      break;
    }
    if (r == 2) break;
  }
out:
  if (fd >= 0) close(fd);
  pthread_mutex_lock(&srv.mu);
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
  if ((srv.listen_fd = test_loopback_listen(64, &srv.port)) < 0 || pipe(srv.wake)) return -1;
  return pthread_create(&srv.thread, NULL, server_main, NULL);
}

static int server_stop(void **state) {
  if (write(srv.wake[1], "x", 1) != 1) return -1;
  pthread_join(srv.thread, NULL);
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

static char *url(ps_arena_t *a, const char *path) {
  return ps_arena_sprintf(a, "http://127.0.0.1:%d%s", srv.port, path);
}

/* A client without retries, so every transport failure shows. */
static ps_client_t *client_new(void) {
  ps_client_opts_t o;
  ps_client_opts_default(&o);
  o.max_retries = 0;
  o.breaker_failures = 1000;
  ps_client_t *c = ps_client_new(&o);
  assert_non_null(c);
  return c;
}

static int get(ps_client_t *c, ps_arena_t *a, const char *path, ps_response_t *r) {
  ps_call_t call = {.method = "GET", .url = url(a, path)};
  return ps_client_call(c, a, &call, r);
}

/* ---- tests ---- */

static void test_content_length_and_request(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_new();
  ps_response_t r;
  assert_int_equal(get(c, &a, "/cl", &r), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, 5);
  assert_string_equal(r.body, "hello");
  assert_string_equal(r.content_type, "text/plain; charset=utf-8");
  assert_null(r.retry_after);

  /* What goes on the wire. */
  const char *const extra[] = {"Authorization: Bearer t0k", NULL};
  ps_call_t post = {.method = "POST", .url = url(&a, "/echo?x=1#frag"), .body = "{\"a\":1}",
                    .body_len = 7, .headers = extra, .request_id = "rid-9",
                    .idempotency_key = "k-1"};
  assert_int_equal(ps_client_call(c, &a, &post, &r), 0);
  assert_string_equal(r.body, "{\"a\":1}");
  pthread_mutex_lock(&srv.mu);
  char head[4096];
  snprintf(head, sizeof(head), "%s", srv.last_head);
  pthread_mutex_unlock(&srv.mu);
  char host[64];
  snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", srv.port);
  assert_non_null(strstr(head, "POST /echo?x=1 HTTP/1.1\r\n"));
  assert_non_null(strstr(head, host));
  assert_non_null(strstr(head, "\r\nUser-Agent: polyshop/1\r\n"));
  assert_non_null(strstr(head, "\r\nContent-Type: application/json\r\n"));
  assert_non_null(strstr(head, "\r\nContent-Length: 7\r\n"));
  assert_non_null(strstr(head, "\r\nX-Request-Id: rid-9\r\n"));
  assert_non_null(strstr(head, "\r\nIdempotency-Key: k-1\r\n"));
  assert_non_null(strstr(head, "\r\nAuthorization: Bearer t0k\r\n"));
  assert_null(strstr(head, "Expect"));

  /* An empty POST says Content-Length: 0 and no Content-Type; a GET neither. */
  ps_call_t empty = {.method = "PUT", .url = url(&a, "/echo")};
  assert_int_equal(ps_client_call(c, &a, &empty, &r), 0);
  pthread_mutex_lock(&srv.mu);
  snprintf(head, sizeof(head), "%s", srv.last_head);
  pthread_mutex_unlock(&srv.mu);
  assert_non_null(strstr(head, "PUT /echo HTTP/1.1\r\n"));
  assert_non_null(strstr(head, "\r\nContent-Length: 0\r\n"));
  assert_null(strstr(head, "Content-Type"));
  ps_call_t root = {.method = "GET", .url = ps_arena_sprintf(&a, "http://127.0.0.1:%d", srv.port)};
  assert_int_equal(ps_client_call(c, &a, &root, &r), 0);
  assert_int_equal(r.status, 404);
  pthread_mutex_lock(&srv.mu);
  snprintf(head, sizeof(head), "%s", srv.last_head);
  pthread_mutex_unlock(&srv.mu);
  assert_non_null(strstr(head, "GET / HTTP/1.1\r\n"));
  assert_null(strstr(head, "Content-Length"));
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_chunked(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_new();
  int before = counter(&srv.accepts);
  ps_response_t r;
  assert_int_equal(get(c, &a, "/chunked", &r), 0); /* arrives 3 bytes at a time */
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "hello world0123456789");
  assert_int_equal(r.body_len, 21);
  assert_int_equal(get(c, &a, "/chunked-once", &r), 0);
  assert_string_equal(r.body, "abc");
  assert_int_equal(get(c, &a, "/cl", &r), 0); /* the connection is still in step */
  assert_string_equal(r.body, "hello");
  assert_int_equal(counter(&srv.accepts) - before, 1);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_until_close(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_new();
  int before = counter(&srv.accepts);
  ps_response_t r;
  assert_int_equal(get(c, &a, "/until-close", &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "all of it, until the end");
  assert_string_equal(r.content_type, "text/plain");
  assert_int_equal(get(c, &a, "/cl", &r), 0); /* on a new connection */
  assert_string_equal(r.body, "hello");
  assert_int_equal(counter(&srv.accepts) - before, 2);
  /* An answer cut short is no answer. */
  assert_int_equal(get(c, &a, "/cut", &r), PS_EUNAVAIL);
  assert_int_equal(r.status, 0);
  assert_int_equal(get(c, &a, "/garbage", &r), PS_EUNAVAIL);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_keepalive_reuse(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_new();
  int before = counter(&srv.accepts);
  ps_response_t r;
  for (int i = 0; i < 2; i++) {
    assert_int_equal(get(c, &a, "/cl", &r), 0);
    assert_string_equal(r.body, "hello");
  }
  assert_int_equal(counter(&srv.accepts) - before, 1);
  /* HTTP/1.0 with keep-alive keeps it too. */
  assert_int_equal(get(c, &a, "/http10-ka", &r), 0);
  assert_int_equal(get(c, &a, "/cl", &r), 0);
  assert_int_equal(counter(&srv.accepts) - before, 1);
  /* "localhost" may resolve to ::1 first, where nothing listens: the next address is tried. */
  ps_call_t lh = {.method = "GET",
                  .url = ps_arena_sprintf(&a, "http://LocalHost:%d/cl", srv.port)};
  assert_int_equal(ps_client_call(c, &a, &lh, &r), 0);
  assert_string_equal(r.body, "hello");
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_stale_keepalive_retried(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_new(); /* no retries: the stale rule is not a retry */
  ps_response_t r;
  static const char *const setups[] = {"/then-close", "/then-reset"};
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(get(c, &a, "/cl", &r), 0); /* a kept-alive connection */
    int accepts = counter(&srv.accepts);
    assert_int_equal(get(c, &a, setups[i], &r), 0); /* on it */
    assert_int_equal(r.status, 200);
    sleep_ms(100); /* the server has dropped the idle connection by now */
    int requests = counter(&srv.requests);
    /* Even a POST without a key: it never reached the server. */
    ps_call_t post = {.method = "POST", .url = url(&a, "/echo"), .body = "once", .body_len = 4};
    assert_int_equal(ps_client_call(c, &a, &post, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "once");
    assert_int_equal(counter(&srv.requests) - requests, 1);
    assert_int_equal(counter(&srv.accepts) - accepts, 1); /* the fresh one */
  }
  /* A connection idle for over a second is checked before reuse: an unasked-for 408 is not
   * taken for the next call's answer. */
  assert_int_equal(get(c, &a, "/then-408", &r), 0);
  sleep_ms(1100);
  int accepts = counter(&srv.accepts);
  ps_call_t post = {.method = "POST", .url = url(&a, "/echo"), .body = "late", .body_len = 4};
  assert_int_equal(ps_client_call(c, &a, &post, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "late");
  assert_int_equal(counter(&srv.accepts) - accepts, 1);

  /* On a kept-alive connection, a close without any answer is taken for a stale one: sent
   * once more on a fresh connection, where it is a failure, not retried again. */
  int requests = counter(&srv.requests);
  assert_int_equal(get(c, &a, "/close-no-answer", &r), PS_EUNAVAIL);
  assert_int_equal(counter(&srv.requests) - requests, 2);
  ps_client_free(c);
  c = client_new();
  requests = counter(&srv.requests);
  assert_int_equal(get(c, &a, "/close-no-answer", &r), PS_EUNAVAIL);
  assert_int_equal(counter(&srv.requests) - requests, 1);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_connection_close(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_new();
  ps_response_t r;
  static const char *const paths[] = {"/conn-close", "/conn-close-open", "/http10"};
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(get(c, &a, "/cl", &r), 0); /* a kept-alive connection */
    int before = counter(&srv.accepts);
    int64_t t0 = now_ms();
    assert_int_equal(get(c, &a, paths[i], &r), 0); /* on it, and the last call there */
    assert_string_equal(r.body, "ok");
    assert_true(now_ms() - t0 < 500);
    assert_int_equal(get(c, &a, "/cl", &r), 0);
    assert_int_equal(counter(&srv.accepts) - before, 1);
  }
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_timeout(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_new();
  ps_response_t r;
  assert_int_equal(get(c, &a, "/cl", &r), 0); /* a kept-alive connection with its timeout set */
  ps_call_t call = {.method = "GET", .url = url(&a, "/slow"), .timeout_ms = 200};
  int64_t t0 = now_ms();
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_ETIMEOUT);
  int64_t took = now_ms() - t0;
  assert_int_equal(r.status, 0);
  assert_true(took >= 195 && took < 400);
  /* The timed-out connection is not reused: the late answer must not be read as this one's. */
  assert_int_equal(get(c, &a, "/cl", &r), 0);
  assert_string_equal(r.body, "hello");
  /* With retries, the deadline still bounds the whole call. */
  ps_client_free(c);
  ps_client_opts_t o;
  ps_client_opts_default(&o);
  o.timeout_ms = 300;
  o.backoff_base_ms = 10;
  c = ps_client_new(&o);
  call.timeout_ms = 0;
  t0 = now_ms();
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_ETIMEOUT);
  took = now_ms() - t0;
  assert_true(took >= 295 && took < 500);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_refused(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_new();
  ps_response_t r;
  ps_call_t call = {.method = "GET",
                    .url = ps_arena_sprintf(&a, "http://127.0.0.1:%d/x", test_loopback_closed_port())};
  int64_t t0 = now_ms();
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_EUNAVAIL);
  assert_true(now_ms() - t0 < 300);
  assert_int_equal(r.status, 0);
  ps_client_free(c);
  ps_arena_reset(&a);
}

/* A one-shot server on [::1]: answers one request on one connection. */
static void *v6_main(void *arg) {
  int lfd = *(int *)arg;
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0) return NULL;
  char in[4096];
  size_t len = 0;
  while (len < sizeof(in) && !memmem(in, len, "\r\n\r\n", 4)) {
    ssize_t r = recv(fd, in + len, sizeof(in) - len, 0);
    if (r <= 0) break;
    len += (size_t)r;
  }
  send_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6");
  char x;
  (void)recv(fd, &x, 1, 0); /* until the client closes */
  close(fd);
  return NULL;
}

static void test_ipv6(void **state) {
  int lfd = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  socklen_t sl = sizeof(sa);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 4) ||
      getsockname(lfd, (struct sockaddr *)&sa, &sl)) {
    if (lfd >= 0) close(lfd);
    skip(); /* no IPv6 loopback here */
  }
  pthread_t t;
  pthread_create(&t, NULL, v6_main, &lfd);
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_new();
  ps_call_t call = {.method = "GET",
                    .url = ps_arena_sprintf(&a, "http://[::1]:%d/x", ntohs(sa.sin6_port))};
  ps_response_t r;
  assert_int_equal(ps_client_call(c, &a, &call, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "v6");
  ps_client_free(c);
  pthread_join(t, NULL);
  close(lfd);
  ps_arena_reset(&a);
}

static void test_too_big(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_new();
  ps_response_t r;
  assert_int_equal(get(c, &a, "/big-cl", &r), PS_ETOOBIG);
  assert_int_equal(r.status, 0);
  assert_int_equal(get(c, &a, "/big-chunk", &r), PS_ETOOBIG);
  assert_int_equal(get(c, &a, "/big-close", &r), PS_ETOOBIG);
  assert_int_equal(get(c, &a, "/cl", &r), 0); /* and the client goes on */
  assert_string_equal(r.body, "hello");
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_bad_headers(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_new();
  ps_response_t r;
  int before = counter(&srv.requests);
  const char *const split[] = {"X-Ok: 1", "X-Bad: a\r\nInjected: 1", NULL};
  ps_call_t call = {.method = "GET", .url = url(&a, "/cl"), .headers = split};
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_EINVAL);
  const char *const lf[] = {"X-Bad: a\nb", NULL};
  call.headers = lf;
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_EINVAL);
  call.headers = NULL;
  call.traceparent = "00-x\r\n";
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_EINVAL);
  call.traceparent = NULL;
  call.body = "{}";
  call.body_len = 2;
  call.method = "POST";
  call.content_type = "text/plain\r\nX: y";
  assert_int_equal(ps_client_call(c, &a, &call, &r), PS_EINVAL);
  static const char *const bad_urls[] = {"http://", "http://host name/x", "http://h:99999/",
                                         "http://[::1/x", "http://h:12a/", "http://a/b c"};
  call = (ps_call_t){.method = "GET"};
  for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
    call.url = bad_urls[i];
    if (ps_client_call(c, &a, &call, &r) != PS_EINVAL) fail_msg("url %s", bad_urls[i]);
  }
  assert_int_equal(counter(&srv.requests), before);
  /* Many extra headers go out too. */
  const char *many[40];
  for (int i = 0; i < 39; i++) many[i] = ps_arena_sprintf(&a, "X-H%d: %d", i, i);
  many[39] = NULL;
  call = (ps_call_t){.method = "GET", .url = url(&a, "/cl"), .headers = many};
  assert_int_equal(ps_client_call(c, &a, &call, &r), 0);
  pthread_mutex_lock(&srv.mu);
  assert_non_null(strstr(srv.last_head, "\r\nX-H38: 38\r\n"));
  pthread_mutex_unlock(&srv.mu);
  ps_client_free(c);
  ps_arena_reset(&a);
}

static void test_head_204_continue(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_client_t *c = client_new();
  ps_response_t r;
  int before = counter(&srv.accepts);
  ps_call_t head = {.method = "HEAD", .url = url(&a, "/head")};
  assert_int_equal(ps_client_call(c, &a, &head, &r), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, 0);
  assert_string_equal(r.body, "");
  assert_string_equal(r.content_type, "image/png");
  assert_int_equal(get(c, &a, "/204", &r), 0);
  assert_int_equal(r.status, 204);
  assert_int_equal(r.body_len, 0);
  assert_null(r.content_type);
  assert_int_equal(get(c, &a, "/continue", &r), 0);
  assert_int_equal(r.status, 201);
  assert_string_equal(r.body, "ok");
  ps_call_t post = {.method = "POST", .url = url(&a, "/retry-after"), .body = "{}",
                    .body_len = 2};
  assert_int_equal(ps_client_call(c, &a, &post, &r), 0);
  assert_int_equal(r.status, 503);
  assert_string_equal(r.retry_after, "7");
  assert_int_equal(get(c, &a, "/cl", &r), 0); /* all on one connection */
  assert_string_equal(r.body, "hello");
  assert_int_equal(counter(&srv.accepts) - before, 1);
  ps_client_free(c);
  ps_arena_reset(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_content_length_and_request),
      cmocka_unit_test(test_chunked),
      cmocka_unit_test(test_until_close),
      cmocka_unit_test(test_keepalive_reuse),
      cmocka_unit_test(test_stale_keepalive_retried),
      cmocka_unit_test(test_connection_close),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_refused),
      cmocka_unit_test(test_ipv6),
      cmocka_unit_test(test_too_big),
      cmocka_unit_test(test_bad_headers),
      cmocka_unit_test(test_head_204_continue),
  };
  return cmocka_run_group_tests(tests, server_start, server_stop);
}
