/* openloop.c - an open-loop HTTP/1.1 load generator for bench/run (bench/scenarios/00-lib.sh):
 * sends the requests of a vegeta JSON targets file at a fixed rate and writes one CSV row per
 * request in the format of `vegeta encode --to csv`, at a small fraction of vegeta's CPU cost
 * per request (the generator shares the machine's cores with the services it measures).
 *
 *   openloop [-r RATE] [-d SECONDS] [-c MAX_INFLIGHT] [-t TIMEOUT_S] [-n NAME] [-b MAX_BODY]
 *            [-o OUT.csv] TARGETS
 *
 * Request i (0, 1, ...) is scheduled at start + i / RATE for i < RATE * SECONDS, and uses
 * target i modulo the number of targets (one JSON object a line: method, url, body in base64,
 * header {name: [values]}). Its latency counts from its scheduled time to the end of its
 * answer, so a request the generator could not send on time (at most MAX_INFLIGHT, 1000, are
 * in flight; later ones wait for a free slot) is late against the server, not forgotten
 * (no coordinated omission). The CSV timestamp is when the request was really written, so
 * the rate derived from the timestamps is the rate really sent.
 *
 * HTTP/1.1 keep-alive over a pool of connections that grows as needed (at most 64 new ones
 * at a time, so that a burst does not overflow the server's accept queue), one request in flight
 * per connection (no pipelining), each request written with one send(). Answers are read with
 * Content-Length, chunked, or up to the close. A request without its whole answer TIMEOUT_S
 * (10) seconds after it was started is an error ("timeout"); a request still unsent TIMEOUT_S
 * seconds after the end of the schedule is an error too. A request that finds its reused
 * keep-alive connection closed by the server before any byte of answer is sent again once on
 * a new connection (the server may close an idle connection at any time).
 *
 * One thread, libevent with raw events on nonblocking sockets. The CPU cost is mostly the
 * kernel's (loopback TCP, context switches), so the loop wakes up once a request, not twice:
 * it sleeps until the next request is due (clock_nanosleep; ppoll while connections are
 * opening), reads the answers that came meanwhile, timed by the kernel's receive timestamps
 * (SO_TIMESTAMPNS), and sends what is due; it waits for answers only when nothing is left to
 * send or the in-flight cap is reached. What has no timestamp is seen late by up to one
 * interval between requests: a connection closed under a request (its retry starts then),
 * and the moment a slot or a connection is free again (a request held back by the in-flight
 * cap or by the limit on opening connections may leave that much later than it could have,
 * charged to its latency).
 *
 * Exit status: 0 when every request has a row (errors included), 1 on bad usage or input. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000LL

typedef struct target {
  char *method, *url;
  char *req;       /* the whole request, head and body, as written */
  size_t req_len;
  size_t body_len; /* bytes out */
  int addr;        /* index in addrs */
} target_t;

typedef struct conn conn_t;

/* At most this many new connections at a time, each counted until its first answer (then the
 * server has surely accepted it) or for OPENING_NS (a slow server must not keep the pool from
 * growing): a burst of hundreds of connect()s overflows the server's accept queue (libevent's
 * evconnlistener_new with backlog -1 makes it 128), and a dropped SYN or handshake ACK costs
 * a 1 s retransmission, the generator's doing, not the server's. */
#define MAX_OPENING 64
#define OPENING_NS (50 * 1000000LL)

typedef struct addr {
  char *hostport;
  struct sockaddr_storage sa;
  socklen_t sa_len;
  conn_t *idle; /* idle keep-alive connections, most recently used first */
  conn_t *openc[MAX_OPENING]; /* new connections, until their first answer or OPENING_NS */
  int opening;
  long *queue;    /* requests waiting for a connection (a ring) */
  long qhead, qlen, qcap;
} addr_t;

typedef struct result {
  int64_t sent_ns;  /* monotonic time the request was written (0: never) */
  int64_t lat_ns;
  uint64_t bytes_in;
  int code;
  const char *err;  /* static text, or NULL */
  char *body;       /* first max_body bytes of a non-2xx answer (malloc), or NULL */
  size_t body_len;
  int retried;      /* sent again once after a stale keep-alive connection */
} result_t;

struct conn {
  int fd;
  int addr;
  struct event *rev, *wev;
  conn_t *next_idle;
  long req;        /* request in flight, -1 when idle */
  int fresh;       /* no answer read on it yet */
  int connecting;  /* connect() in progress */
  int oidx;        /* index in its address's openc, or -1 */
  int64_t open_ns; /* when it was opened */
  size_t wrote;    /* bytes of the request written so far */
  char *buf;       /* the answer so far */
  size_t len, cap;
  size_t head_end; /* 0 until the end of the head is found: offset of the body */
  size_t scanned;  /* bytes searched for the end of the head */
  int code, chunked, close_after, until_eof;
  int64_t content_length;
  int64_t rx_ns;   /* monotonic time the last bytes read had arrived (kernel timestamp) */
  long widx;       /* index in wconn while waiting to connect or write, else -1 */
};

static target_t *targets;
static size_t ntargets;
static addr_t *addrs;
static int naddrs;
static result_t *results;
static long nreq, next_req, done_req, inflight, max_inflight = 1000;
static double rate = 50, duration = 10, timeout_s = 10;
static size_t max_body = 400;
static const char *name = "";
static int64_t start_ns, wall_offset_ns;
static struct event_base *base;
static struct event *giveup_ev;
static const struct timeval *req_timeout; /* a libevent common timeout */
static conn_t **wconn; /* connections waiting to connect or to write the rest of a request */
static long nwait, capwait;

static void die(const char *fmt, const char *arg) {
  fprintf(stderr, "openloop: ");
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  exit(1);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die("%s", "out of memory");
  return p;
}

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * NS + ts.tv_nsec;
}

static int64_t sched_ns(long i) { return start_ns + (int64_t)((double)i * 1e9 / rate); }

/* ---- targets ------------------------------------------------------------------------- */

static int b64val(int c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

/* Decodes base64 (standard or URL alphabet, padding optional) into out; returns the length. */
static size_t b64decode(const char *in, char *out) {
  size_t n = 0;
  unsigned acc = 0;
  int bits = 0;
  for (; *in && *in != '='; in++) {
    int v = b64val((unsigned char)*in);
    if (v < 0) die("bad base64 in a body: %s", in);
    acc = acc << 6 | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (char)(acc >> bits & 0xff);
    }
  }
  return n;
}

static int addr_index(const char *hostport) {
  for (int i = 0; i < naddrs; i++)
    if (strcmp(addrs[i].hostport, hostport) == 0) return i;
  char host[256], *colon;
  const char *port = "80";
  snprintf(host, sizeof host, "%s", hostport);
  if (host[0] == '[') { /* [v6]:port */
    char *end = strchr(host, ']');
    if (!end) die("bad host in %s", hostport);
    *end = 0;
    if (end[1] == ':') port = end + 2;
    memmove(host, host + 1, strlen(host + 1) + 1);
  } else if ((colon = strrchr(host, ':'))) {
    *colon = 0;
    port = colon + 1;
  }
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
  if (getaddrinfo(host, port, &hints, &ai) != 0) die("cannot resolve %s", hostport);
  addrs = realloc(addrs, sizeof *addrs * (size_t)(naddrs + 1));
  if (!addrs) die("%s", "out of memory");
  addr_t *a = &addrs[naddrs];
  memset(a, 0, sizeof *a);
  a->hostport = strdup(hostport);
  memcpy(&a->sa, ai->ai_addr, ai->ai_addrlen);
  a->sa_len = ai->ai_addrlen;
  freeaddrinfo(ai);
  return naddrs++;
}

static void load_targets(const char *path) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (!f) die("cannot open %s", path);
  char *line = NULL;
  size_t cap = 0, alloc = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, f)) > 0) {
    if (strspn(line, " \t\r\n") == (size_t)n) continue;
    json_error_t jerr;
    json_t *o = json_loadb(line, (size_t)n, 0, &jerr);
    const char *method = o ? json_string_value(json_object_get(o, "method")) : NULL;
    const char *url = o ? json_string_value(json_object_get(o, "url")) : NULL;
    if (!method || !url) die("not a target (method and url): %s", line);
    if (strncmp(url, "http://", 7) != 0) die("only http:// URLs: %s", url);
    const char *hp = url + 7, *path_start = strchr(hp, '/');
    char hostport[256];
    size_t hl = path_start ? (size_t)(path_start - hp) : strlen(hp);
    if (hl == 0 || hl >= sizeof hostport) die("bad URL %s", url);
    memcpy(hostport, hp, hl);
    hostport[hl] = 0;
    const char *b64 = json_string_value(json_object_get(o, "body"));
    char *body = xmalloc(b64 ? strlen(b64) : 1);
    size_t body_len = b64 ? b64decode(b64, body) : 0;

    /* The head: request line, Host, the target's headers, Content-Length for a body. */
    size_t hcap = 256 + strlen(url);
    json_t *hdrs = json_object_get(o, "header");
    const char *k;
    json_t *vs, *v;
    size_t idx;
    json_object_foreach(hdrs, k, vs) {
      json_array_foreach(vs, idx, v) hcap += strlen(k) + strlen(json_string_value(v) ? json_string_value(v) : "") + 4;
    }
    target_t *t;
    if (ntargets == alloc) {
      alloc = alloc ? alloc * 2 : 1024;
      targets = realloc(targets, sizeof *targets * alloc);
      if (!targets) die("%s", "out of memory");
    }
    t = &targets[ntargets++];
    t->method = strdup(method);
    t->url = strdup(url);
    t->addr = addr_index(hostport);
    t->body_len = body_len;
    t->req = xmalloc(hcap + body_len);
    int w = snprintf(t->req, hcap, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: polyshop-openloop\r\n", method,
                     path_start ? path_start : "/", hostport);
    size_t len = (size_t)w;
    json_object_foreach(hdrs, k, vs) {
      if (strcasecmp(k, "Host") == 0 || strcasecmp(k, "Content-Length") == 0) continue;
      json_array_foreach(vs, idx, v) {
        const char *s = json_string_value(v);
        if (s) len += (size_t)snprintf(t->req + len, hcap - len, "%s: %s\r\n", k, s);
      }
    }
    if (body_len || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0)
      len += (size_t)snprintf(t->req + len, hcap - len, "Content-Length: %zu\r\n", body_len);
    len += (size_t)snprintf(t->req + len, hcap - len, "\r\n");
    memcpy(t->req + len, body, body_len);
    t->req_len = len + body_len;
    free(body);
    json_decref(o);
  }
  free(line);
  if (f != stdin) fclose(f);
  if (!ntargets) die("no target in %s", path);
}

/* ---- connections --------------------------------------------------------------------- */

static void read_cb(evutil_socket_t fd, short what, void *arg);
static void write_cb(evutil_socket_t fd, short what, void *arg);
static void place(long i, int fresh_only);

/* The main loop sleeps in ppoll on these (a new connection is usually ready microseconds
 * after connect(), long before the next request is due). */
static void wait_write(conn_t *c) {
  if (c->widx < 0) {
    if (nwait == capwait) {
      capwait = capwait ? capwait * 2 : 64;
      wconn = realloc(wconn, sizeof *wconn * (size_t)capwait);
      if (!wconn) die("%s", "out of memory");
    }
    c->widx = nwait;
    wconn[nwait++] = c;
  }
  event_add(c->wev, NULL);
}

static void unwait_write(conn_t *c) {
  if (c->widx < 0) return;
  wconn[c->widx] = wconn[--nwait];
  wconn[c->widx]->widx = c->widx;
  c->widx = -1;
}

/* c no longer counts as a new connection. */
static void opened(conn_t *c) {
  if (c->oidx < 0) return;
  addr_t *a = &addrs[c->addr];
  a->openc[c->oidx] = a->openc[--a->opening];
  a->openc[c->oidx]->oidx = c->oidx;
  c->oidx = -1;
}

/* Whether a may open a connection now. */
static int may_open(addr_t *a) {
  if (a->opening < MAX_OPENING) return 1;
  int64_t now = mono_ns();
  for (int k = a->opening - 1; k >= 0; k--)
    if (!a->openc[k]->connecting && now - a->openc[k]->open_ns > OPENING_NS) opened(a->openc[k]);
  return a->opening < MAX_OPENING;
}

static void conn_close(conn_t *c) {
  unwait_write(c);
  opened(c);
  event_free(c->rev);
  event_free(c->wev);
  close(c->fd);
  free(c->buf);
  free(c);
}

static conn_t *conn_new(int ai, const char **err) {
  addr_t *a = &addrs[ai];
  int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = "socket: cannot open a socket (too many open files?)";
    return NULL;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
  int connecting = 0;
  if (connect(fd, (struct sockaddr *)&a->sa, a->sa_len) != 0) {
    if (errno != EINPROGRESS) {
      *err = errno == ECONNREFUSED ? "connect: connection refused" : "connect: failed";
      close(fd);
      return NULL;
    }
    connecting = 1;
  }
  conn_t *c = xmalloc(sizeof *c);
  memset(c, 0, sizeof *c);
  c->fd = fd;
  c->addr = ai;
  c->req = -1;
  c->widx = -1;
  c->oidx = -1;
  c->fresh = 1;
  c->connecting = connecting;
  c->cap = 4096;
  c->buf = xmalloc(c->cap);
  c->rev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, c);
  c->wev = event_new(base, fd, EV_WRITE, write_cb, c);
  return c;
}

/* Records the end of request i (code 0 with err for a failure) and frees its slot. */
static void finish(long i, int64_t end_ns, int code, const char *err, uint64_t bytes_in, const char *body,
                   size_t body_len) {
  result_t *r = &results[i];
  r->lat_ns = end_ns - sched_ns(i);
  r->code = code;
  r->err = err;
  r->bytes_in = bytes_in;
  if (body && body_len && (code < 200 || code > 299)) {
    r->body_len = body_len < max_body ? body_len : max_body;
    r->body = xmalloc(r->body_len);
    memcpy(r->body, body, r->body_len);
  }
  inflight--;
  done_req++;
}

/* The request on c failed on the transport: once more on a new connection when the server
 * had closed a reused keep-alive connection before answering, else an error. */
static void conn_fail(conn_t *c, const char *err) {
  long i = c->req;
  int retry = !c->fresh && c->len == 0 && i >= 0 && !results[i].retried;
  conn_close(c);
  if (i < 0) return;
  if (retry) {
    results[i].retried = 1;
    place(i, 1);
  } else {
    finish(i, mono_ns(), 0, err, 0, NULL, 0);
  }
}

static void send_req(conn_t *c) {
  target_t *t = &targets[c->req % (long)ntargets];
  if (c->wrote == 0) results[c->req].sent_ns = mono_ns();
  ssize_t n = send(c->fd, t->req + c->wrote, t->req_len - c->wrote, MSG_NOSIGNAL);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    conn_fail(c, errno == ECONNRESET || errno == EPIPE ? "write: connection reset by peer" : "write: failed");
    return;
  }
  if (n > 0) c->wrote += (size_t)n;
  if (c->wrote < t->req_len) {
    wait_write(c);
    return;
  }
}

static void write_cb(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  conn_t *c = arg;
  unwait_write(c);
  if (c->connecting) {
    int e = 0;
    socklen_t l = sizeof e;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l);
    if (e) {
      c->fresh = 1;
      conn_fail(c, e == ECONNREFUSED ? "connect: connection refused" : "connect: failed");
      return;
    }
    c->connecting = 0;
  }
  send_req(c);
}

/* Starts request i (already counted in flight) on an idle connection to its address, or
 * on a new one, or queues it until one of those is free (the main loop's drain()). */
static void place(long i, int fresh_only) {
  target_t *t = &targets[i % (long)ntargets];
  addr_t *a = &addrs[t->addr];
  conn_t *c = fresh_only ? NULL : a->idle;
  const char *err = NULL;
  if (c) {
    a->idle = c->next_idle;
  } else if (!may_open(a)) {
    if (a->qlen == a->qcap) { /* grow the ring, unrolled */
      long ncap = a->qcap ? a->qcap * 2 : 1024, *q = xmalloc(sizeof *q * (size_t)ncap);
      for (long k = 0; k < a->qlen; k++) q[k] = a->queue[(a->qhead + k) % a->qcap];
      free(a->queue);
      a->queue = q, a->qcap = ncap, a->qhead = 0;
    }
    a->queue[(a->qhead + a->qlen++) % a->qcap] = i;
    return;
  } else if (!(c = conn_new(t->addr, &err))) {
    results[i].sent_ns = mono_ns();
    finish(i, results[i].sent_ns, 0, err, 0, NULL, 0);
    return;
  } else {
    c->oidx = a->opening;
    c->open_ns = mono_ns();
    a->openc[a->opening++] = c;
  }
  c->req = i;
  c->wrote = 0;
  c->len = c->head_end = c->scanned = 0;
  /* The read event carries the request's timeout; it stays added while idle, without one,
   * to see the server close the connection. */
  event_add(c->rev, req_timeout);
  if (c->connecting) {
    results[i].sent_ns = mono_ns();
    wait_write(c);
  } else {
    send_req(c);
  }
}

static void issue(long i) {
  inflight++;
  place(i, 0);
}

/* Queued requests to connections freed or opened since. */
static void drain(void) {
  for (int k = 0; k < naddrs; k++) {
    addr_t *a = &addrs[k];
    while (a->qlen && (a->idle || may_open(a))) {
      long i = a->queue[a->qhead];
      a->qhead = (a->qhead + 1) % a->qcap;
      a->qlen--;
      place(i, 0);
    }
  }
}

static int64_t parse_int(const char *s, const char *end) {
  int64_t v = 0;
  while (s < end && (*s == ' ' || *s == '\t')) s++;
  if (s == end || *s < '0' || *s > '9') return -1;
  while (s < end && *s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
  return v;
}

/* Parses the head in c->buf[0, c->head_end). Returns -1 when it is not HTTP. */
static int parse_head(conn_t *c) {
  const char *p = c->buf, *end = c->buf + c->head_end;
  if (c->head_end < 12 || memcmp(p, "HTTP/1.", 7) != 0) return -1;
  c->code = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  c->close_after = p[7] == '0';
  c->chunked = 0;
  c->content_length = -1;
  const char *line = memchr(p, '\n', (size_t)(end - p));
  while (line && ++line < end) {
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    if (!eol) break;
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    if (colon) {
      size_t kl = (size_t)(colon - line);
      const char *v = colon + 1;
      while (v < eol && (*v == ' ' || *v == '\t')) v++;
      size_t vl = (size_t)(eol - v);
      while (vl && (v[vl - 1] == '\r' || v[vl - 1] == ' ')) vl--;
      if (kl == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
        c->content_length = parse_int(v, v + vl);
      } else if (kl == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) {
        c->chunked = vl >= 7 && strncasecmp(v + vl - 7, "chunked", 7) == 0;
      } else if (kl == 10 && strncasecmp(line, "Connection", 10) == 0) {
        if (vl == 5 && strncasecmp(v, "close", 5) == 0) c->close_after = 1;
        else if (vl == 10 && strncasecmp(v, "keep-alive", 10) == 0) c->close_after = 0;
      }
    }
    line = eol;
  }
  int bodyless = (c->code >= 100 && c->code < 200) || c->code == 204 || c->code == 304 ||
                 strcmp(targets[c->req % (long)ntargets].method, "HEAD") == 0;
  if (bodyless) c->content_length = 0;
  c->until_eof = !c->chunked && c->content_length < 0;
  if (c->until_eof) c->close_after = 1;
  return 0;
}

/* A chunked body in c->buf from head_end: 1 when complete (*total: its decoded length), 0
 * when more is needed, -1 when malformed. */
static int dechunk(conn_t *c, uint64_t *total) {
  size_t pos = c->head_end;
  uint64_t sum = 0;
  for (;;) {
    char *eol = memmem(c->buf + pos, c->len - pos, "\r\n", 2);
    if (!eol) return 0;
    char *e;
    unsigned long long size = strtoull(c->buf + pos, &e, 16);
    if (e == c->buf + pos) return -1;
    size_t data = (size_t)(eol - c->buf) + 2;
    if (size == 0) { /* trailers, then an empty line */
      size_t q = data;
      for (;;) {
        char *t = memmem(c->buf + q, c->len - q, "\r\n", 2);
        if (!t) return 0;
        if (t == c->buf + q) {
          if ((size_t)(t - c->buf) + 2 != c->len) c->close_after = 1; /* bytes after the answer */
          *total = sum;
          return 1;
        }
        q = (size_t)(t - c->buf) + 2;
      }
    }
    if (c->len < data + size + 2) return 0;
    sum += size;
    pos = data + size + 2;
  }
}

static void answer_done(conn_t *c, uint64_t bytes_in, const char *body, size_t body_len) {
  long i = c->req;
  finish(i, c->rx_ns, c->code, NULL, bytes_in, body, body_len);
  opened(c);
  c->req = -1;
  c->fresh = 0;
  if (c->close_after) {
    conn_close(c);
  } else {
    event_add(c->rev, NULL); /* no timeout while idle */
    addr_t *a = &addrs[c->addr];
    c->next_idle = a->idle;
    a->idle = c;
  }
}

/* Copies the de-chunked body's first max_body bytes to a scratch buffer. */
static size_t chunked_copy(conn_t *c, char *dst) {
  size_t pos = c->head_end, n = 0;
  for (;;) {
    char *eol = memmem(c->buf + pos, c->len - pos, "\r\n", 2);
    unsigned long long size = strtoull(c->buf + pos, NULL, 16);
    size_t data = (size_t)(eol - c->buf) + 2;
    if (size == 0 || n >= max_body) return n;
    size_t k = size < max_body - n ? size : max_body - n;
    memcpy(dst + n, c->buf + data, k);
    n += k;
    pos = data + size + 2;
  }
}

static void try_parse(conn_t *c, int eof) {
  if (!c->head_end) {
    size_t from = c->scanned > 3 ? c->scanned - 3 : 0;
    char *e = memmem(c->buf + from, c->len - from, "\r\n\r\n", 4);
    c->scanned = c->len;
    if (!e) {
      if (eof) conn_fail(c, "read: the server closed the connection before the whole answer");
      return;
    }
    c->head_end = (size_t)(e - c->buf) + 4;
    if (parse_head(c) < 0) {
      c->fresh = 1;
      conn_fail(c, "read: not an HTTP/1.x answer");
      return;
    }
  }
  size_t have = c->len - c->head_end;
  if (c->chunked) {
    uint64_t total = 0;
    int r = dechunk(c, &total);
    if (r < 0) {
      c->fresh = 1;
      conn_fail(c, "read: bad chunked body");
    } else if (r == 0) {
      if (eof) conn_fail(c, "read: the server closed the connection before the whole answer");
    } else {
      char scratch[4096];
      size_t n = 0;
      if (c->code < 200 || c->code > 299) n = chunked_copy(c, scratch); /* max_body <= sizeof scratch */
      answer_done(c, total, scratch, n);
    }
    return;
  }
  if (c->until_eof) {
    if (eof) answer_done(c, have, c->buf + c->head_end, have);
    return;
  }
  if (have < (uint64_t)c->content_length) {
    if (eof) conn_fail(c, "read: the server closed the connection before the whole answer");
    return;
  }
  if (have > (uint64_t)c->content_length) { /* bytes nobody asked for: do not reuse */
    c->close_after = 1;
  }
  answer_done(c, (uint64_t)c->content_length, c->buf + c->head_end, (size_t)c->content_length);
}

static void read_cb(evutil_socket_t fd, short what, void *arg) {
  conn_t *c = arg;
  if (what & EV_TIMEOUT) {
    if (c->req >= 0) {
      long i = c->req;
      c->req = -1;
      conn_close(c);
      finish(i, mono_ns(), 0, "timeout: no whole answer within the request timeout", 0, NULL, 0);
    }
    return;
  }
  for (;;) {
    if (c->len == c->cap) {
      c->cap *= 2;
      c->buf = realloc(c->buf, c->cap);
      if (!c->buf) die("%s", "out of memory");
    }
    /* The kernel's arrival time of the bytes, not the time we read them: the main loop
     * reads answers only when it wakes up to send (one wake-up a request, not two). */
    union {
      char buf[CMSG_SPACE(sizeof(struct timespec)) * 2];
      struct cmsghdr align;
    } cm;
    struct iovec iov = {c->buf + c->len, c->cap - c->len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
    ssize_t n = recvmsg(fd, &msg, 0);
    if (n > 0) {
      int64_t now = mono_ns(), rx = 0;
      for (struct cmsghdr *h = CMSG_FIRSTHDR(&msg); h; h = CMSG_NXTHDR(&msg, h)) {
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_TIMESTAMPNS) {
          struct timespec ts;
          memcpy(&ts, CMSG_DATA(h), sizeof ts);
          rx = ts.tv_sec * NS + ts.tv_nsec - wall_offset_ns;
        }
      }
      c->rx_ns = rx > 0 && rx <= now && rx >= now - 30 * NS ? rx : now;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (c->req < 0) {
        conn_close(c);
        return;
      }
      if (c->len && !c->head_end) c->fresh = 1;
      conn_fail(c, errno == ECONNRESET ? "read: connection reset by peer" : "read: failed");
      return;
    }
    if (c->req < 0) { /* idle: the server closed it (or spoke out of turn) */
      addr_t *a = &addrs[c->addr];
      for (conn_t **pp = &a->idle; *pp; pp = &(*pp)->next_idle)
        if (*pp == c) {
          *pp = c->next_idle;
          break;
        }
      conn_close(c);
      return;
    }
    if (n == 0) {
      if (c->len) c->fresh = 1; /* some answer came: no second try */
      try_parse(c, 1);
      return;
    }
    c->len += (size_t)n;
    if (c->len < c->cap) { /* the common case: one read took everything there was */
      try_parse(c, 0);
      return;
    }
  }
}

/* ---- the schedule -------------------------------------------------------------------- */

/* Sends every request that is due while slots are free. */
static void pump(int64_t now) {
  drain();
  while (next_req < nreq && inflight < max_inflight && sched_ns(next_req) <= now) issue(next_req++);
}

/* TIMEOUT_S after the end of the schedule, requests still unsent are errors. */
static void giveup_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
  int64_t now = mono_ns();
  while (next_req < nreq) {
    long i = next_req++;
    results[i].sent_ns = now;
    results[i].lat_ns = now - sched_ns(i);
    results[i].err = "not sent: the in-flight limit held it back past the end of the run";
    done_req++;
  }
}

/* One wake-up a request: sleep until the next request is due, read whatever answers came
 * meanwhile (timed by the kernel's arrival timestamps), send what is due. When nothing is
 * left to send, or the in-flight cap is reached, wait for answers instead. */
static void run(void) {
  while (done_req < nreq) {
    event_base_loop(base, EVLOOP_NONBLOCK);
    pump(mono_ns());
    if (done_req == nreq) break;
    if (next_req < nreq && inflight < max_inflight) {
      int64_t at = sched_ns(next_req);
      int64_t now = mono_ns();
      if (at > now && nwait) {
        struct pollfd pf[64];
        int n = 0;
        for (long k = 0; k < nwait && n < 64; k++) pf[n++] = (struct pollfd){.fd = wconn[k]->fd, .events = POLLOUT};
        struct timespec rel = {(time_t)((at - now) / NS), (long)((at - now) % NS)};
        ppoll(pf, (nfds_t)n, &rel, NULL);
      } else if (at > now) {
        struct timespec ts = {(time_t)(at / NS), (long)(at % NS)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
      }
    } else {
      event_base_loop(base, EVLOOP_ONCE);
    }
  }
}

/* ---- output -------------------------------------------------------------------------- */

static void b64encode(FILE *out, const char *s, size_t n) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned char)s[i] << 16;
    if (i + 1 < n) v |= (unsigned char)s[i + 1] << 8;
    if (i + 2 < n) v |= (unsigned char)s[i + 2];
    fputc(tab[v >> 18 & 63], out);
    fputc(tab[v >> 12 & 63], out);
    fputc(i + 1 < n ? tab[v >> 6 & 63] : '=', out);
    fputc(i + 2 < n ? tab[v & 63] : '=', out);
  }
}

static void csv_field(FILE *out, const char *s) {
  if (!strpbrk(s, ",\"\r\n")) {
    fputs(s, out);
    return;
  }
  fputc('"', out);
  for (; *s; s++) {
    if (*s == '"') fputc('"', out);
    fputc(*s, out);
  }
  fputc('"', out);
}

/* One row a request, as `vegeta encode --to csv` writes them: timestamp (ns since the epoch),
 * code, latency (ns), bytes out, bytes in, error, body (base64), attack name, seq, method,
 * URL, headers (left empty). */
static void write_csv(FILE *out) {
  for (long i = 0; i < nreq; i++) {
    result_t *r = &results[i];
    target_t *t = &targets[i % (long)ntargets];
    fprintf(out, "%lld,%d,%lld,%zu,%llu,", (long long)(r->sent_ns + wall_offset_ns), r->code,
            (long long)r->lat_ns, t->body_len, (unsigned long long)r->bytes_in);
    csv_field(out, r->err ? r->err : "");
    fputc(',', out);
    if (r->body) b64encode(out, r->body, r->body_len);
    fputc(',', out);
    csv_field(out, name);
    fprintf(out, ",%ld,", i);
    csv_field(out, t->method);
    fputc(',', out);
    csv_field(out, t->url);
    fputs(",\n", out);
  }
}

static void usage(void) {
  fprintf(stderr, "usage: openloop [-r RATE] [-d SECONDS] [-c MAX_INFLIGHT] [-t TIMEOUT_S] [-n NAME] "
                  "[-b MAX_BODY] [-o OUT.csv] TARGETS\n");
  exit(1);
}

int main(int argc, char **argv) {
  const char *out_path = NULL;
  int opt;
  while ((opt = getopt(argc, argv, "r:d:c:t:n:b:o:")) != -1) {
    switch (opt) {
      case 'r': rate = atof(optarg); break;
      case 'd': duration = atof(optarg); break;
      case 'c': max_inflight = atol(optarg); break;
      case 't': timeout_s = atof(optarg); break;
      case 'n': name = optarg; break;
      case 'b': max_body = (size_t)atol(optarg); break;
      case 'o': out_path = optarg; break;
      default: usage();
    }
  }
  if (optind != argc - 1 || !(rate > 0) || !(duration > 0) || max_inflight < 1 || !(timeout_s > 0)) usage();
  if (max_body > 4096) max_body = 4096;
  load_targets(argv[optind]);
  nreq = (long)floor(rate * duration + 1e-9);
  if (nreq < 1) nreq = 1;
  results = calloc((size_t)nreq, sizeof *results);
  if (!results) die("%s", "out of memory");

  /* A connection per request in flight, at most. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)max_inflight + 64) {
    rl.rlim_cur = (rlim_t)max_inflight + 64 < rl.rlim_max ? (rlim_t)max_inflight + 64 : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  /* Wake up on time: the default 50 µs timer slack would be latency charged to the server. */
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

  struct event_config *cfg = event_config_new();
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  if (!base) die("%s", "no event base");
  struct timeval to = {(time_t)timeout_s, (suseconds_t)((timeout_s - floor(timeout_s)) * 1e6)};
  req_timeout = event_base_init_common_timeout(base, &to);
  giveup_ev = evtimer_new(base, giveup_cb, NULL);

  /* Receive timestamps are switched on for the whole system by the first socket that asks,
   * possibly a moment later: ask now, before the first request. */
  int one = 1, tsfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (tsfd >= 0) setsockopt(tsfd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
  usleep(20000);

  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  start_ns = mono_ns();
  wall_offset_ns = wall.tv_sec * NS + wall.tv_nsec - start_ns;
  double g = duration + timeout_s;
  struct timeval gtv = {(time_t)g, (suseconds_t)((g - floor(g)) * 1e6)};
  event_add(giveup_ev, &gtv);
  run();

  FILE *out = out_path ? fopen(out_path, "w") : stdout;
  if (!out) die("cannot write %s", out_path);
  write_csv(out);
  if (fflush(out) != 0) die("%s", "cannot write the results");
  if (out != stdout) fclose(out);
  return 0;
}
