/* client_h1.c - our non-blocking HTTP/1.1 transport for http:// calls (client.h), on libevent
 * bufferevents of the client's loop: a keep-alive pool per host:port (idle connections kept
 * up to a bound, new ones opened while all are busy up to another, then attempts queue in
 * order), one request per connection at a time, an answer parser for Content-Length, chunked
 * and close-delimited bodies, and name resolution that never blocks the loop: numeric
 * addresses and "localhost" without DNS, other names through evdns. The call's deadline,
 * retries and breaker live in client.c. */
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client_internal.h"
#include "polyshop/alloc.h"
#include "polyshop/error.h"

enum {
  H1_MAX_HEAD = 64 << 10,  /* an answer head bigger than this is not HTTP we accept */
  H1_MIN_READ = 16 << 10,  /* first buffer of a connection */
  H1_IDLE_CHECK_MS = 1000, /* a connection idle longer is checked before reuse */
  H1_MAX_ADDRS = 8,        /* addresses of a name tried in turn */
};

typedef enum { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE } body_mode_t;
typedef enum { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER } chunk_state_t;

typedef struct {
  size_t len;        /* bytes in the connection's buffer */
  size_t scanned;    /* head searched up to here */
  size_t head_end;   /* 0 until the final head is parsed */
  body_mode_t mode;
  size_t length;     /* BODY_LENGTH */
  chunk_state_t cs;  /* BODY_CHUNKED: raw bytes from rd, decoded body up to wr */
  size_t rd, wr, chunk_left;
  int keep;          /* the connection may be reused */
  int done;
  long status;
  size_t ct_off, ct_len, ra_off, ra_len; /* in the head; ct_off 0: absent */
} answer_state_t;

typedef struct origin origin_t;
typedef struct dns_lookup dns_lookup_t;

/* The evdns base of a transport, made on the first name that needs DNS. It outlives the
 * transport while lookups are pending: evdns calls back even after a cancel. */
typedef struct {
  struct evdns_base *eb;
  int pending;
  int orphaned; /* the transport is gone: the last callback frees this */
} dns_t;

typedef struct conn {
  struct conn *next; /* in its origin's idle list, most recently used first */
  ps__h1_t *h;
  origin_t *o;
  struct bufferevent *bev;
  struct event *timer;   /* connect timeout, or a failure reported from the loop */
  int pending_err;       /* set: the timer reports this failure */
  int pending_stale;     /* ...and the request never went out */
  ps__h1_req_t *req;     /* the attempt on it; NULL when idle */
  dns_lookup_t *lookup;  /* a name lookup in flight */
  struct sockaddr_storage addr[H1_MAX_ADDRS];
  socklen_t addr_len[H1_MAX_ADDRS];
  int naddr, iaddr;
  int connected, reused;
  int64_t idle_since;
  char *buf; /* the answer */
  size_t cap;
  answer_state_t st;
} conn_t;

struct dns_lookup {
  dns_t *dns;
  conn_t *cn; /* NULL once the connection no longer waits for it */
  struct evdns_getaddrinfo_request *req;
};

struct origin {
  origin_t *next;
  char *host; /* lower-cased, NUL-terminated, owned */
  size_t host_len;
  unsigned port;
  conn_t *idle;
  int nidle, nopen;
  ps__h1_req_t *wait_head, *wait_tail;
};

struct ps__h1 {
  struct event_base *base;
  origin_t *origins;
  dns_t *dns;
};

int64_t ps__client_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int tolower_(int ch) { return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch; }

/* ---- connections and origins ---- */

static void conn_start_request(conn_t *cn, ps__h1_req_t *r);
static void conn_open(ps__h1_t *h, origin_t *o, ps__h1_req_t *r);

static origin_t *origin_for(ps__h1_t *h, const ps__url_t *u) {
  for (origin_t *o = h->origins; o; o = o->next)
    if (o->port == u->port && o->host_len == u->host_len &&
        strncasecmp(o->host, u->host, u->host_len) == 0)
      return o;
  origin_t *o = ps_calloc(1, sizeof(*o));
  o->host = ps_malloc(u->host_len + 1);
  for (size_t i = 0; i < u->host_len; i++) o->host[i] = (char)tolower_(u->host[i]);
  o->host[u->host_len] = '\0';
  o->host_len = u->host_len;
  o->port = u->port;
  o->next = h->origins;
  h->origins = o;
  return o;
}

/* Frees a connection that is in no list and carries no attempt. */
static void conn_destroy(conn_t *cn) {
  if (cn->lookup) { /* evdns calls back even after a cancel; the lookup frees itself then */
    cn->lookup->cn = NULL;
    if (cn->lookup->req) evdns_getaddrinfo_cancel(cn->lookup->req);
    cn->lookup = NULL;
  }
  if (cn->bev) bufferevent_free(cn->bev);
  event_free(cn->timer);
  ps_free(cn->buf);
  ps_free(cn);
}

/* Takes cn out of its origin's count of open connections (it must not be idle). */
static void conn_detach(conn_t *cn) {
  cn->o->nopen--;
  if (cn->req) {
    cn->req->conn = NULL;
    cn->req = NULL;
  }
}

static void idle_remove(conn_t *cn) {
  origin_t *o = cn->o;
  for (conn_t **p = &o->idle; *p; p = &(*p)->next) {
    if (*p != cn) continue;
    *p = cn->next;
    o->nidle--;
    return;
  }
}

static ps__h1_req_t *wait_pop(origin_t *o) {
  ps__h1_req_t *r = o->wait_head;
  if (r) {
    o->wait_head = r->next;
    if (!o->wait_head) o->wait_tail = NULL;
    r->next = NULL;
  }
  return r;
}

/* Gives queued attempts a connection slot freed just now. */
static void dispatch(ps__h1_t *h, origin_t *o) {
  while (o->wait_head && o->nopen < PS__CLIENT_MAX_OPEN) conn_open(h, o, wait_pop(o));
}

/* Whether a connection idle for a while is still clean: not closed by the server, and with
 * nothing unasked-for to read (a server may say 408 before closing an idle connection). */
static int still_clean(conn_t *cn) {
  if (evbuffer_get_length(bufferevent_get_input(cn->bev))) return 0;
  char b;
  ssize_t n = recv(bufferevent_getfd(cn->bev), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* The most recently used idle connection of o, checked when it idled for a while. */
static conn_t *pool_take(origin_t *o) {
  int64_t now = 0;
  while (o->idle) {
    conn_t *cn = o->idle;
    o->idle = cn->next;
    o->nidle--;
    cn->next = NULL;
    if (!now) now = ps__client_now_ms();
    if (now - cn->idle_since > H1_IDLE_CHECK_MS && !still_clean(cn)) {
      o->nopen--;
      conn_destroy(cn);
      continue;
    }
    return cn;
  }
  return NULL;
}

/* cn's attempt is over and it may be reused: to the first queued attempt, or idle. */
static void pool_put(conn_t *cn) {
  origin_t *o = cn->o;
  ps__h1_req_t *r = wait_pop(o);
  if (r) {
    cn->reused = 1;
    conn_start_request(cn, r);
    return;
  }
  cn->idle_since = ps__client_now_ms();
  cn->next = o->idle;
  o->idle = cn;
  if (++o->nidle > PS__CLIENT_MAX_IDLE) { /* the least recently used goes */
    conn_t **p = &o->idle;
    while ((*p)->next) p = &(*p)->next;
    conn_t *old = *p;
    *p = NULL;
    o->nidle--;
    o->nopen--;
    conn_destroy(old);
  }
}

/* Ends cn's attempt: rc 0 with the parsed answer, else a failure; a connection that may be
 * reused goes back to the pool first, so calls the callback starts can take it. */
static void conn_finish(conn_t *cn, int rc) {
  ps__h1_req_t *r = cn->req;
  ps__h1_t *h = cn->h;
  origin_t *o = cn->o;
  answer_state_t st = cn->st;
  ps__answer_t ans = {0};
  int keep = rc == 0 && st.keep;
  char *buf = cn->buf;
  if (rc == 0) {
    ans.status = st.status;
    ans.body = buf + st.head_end;
    ans.body_len = st.wr - st.head_end;
    buf[st.wr] = '\0';
    if (st.ct_off) {
      ans.content_type = buf + st.ct_off;
      ans.content_type_len = st.ct_len;
    }
    if (st.ra_off) {
      ans.retry_after = buf + st.ra_off;
      ans.retry_after_len = st.ra_len;
    }
  }
  r->conn = NULL;
  cn->req = NULL;
  if (keep) {
    /* The buffer is only written again when the next answer's bytes arrive, from the loop. */
    pool_put(cn);
  } else {
    o->nopen--;
    cn->buf = NULL;
    conn_destroy(cn);
    dispatch(h, o);
  }
  r->done(r->arg, rc, rc == 0 ? &ans : NULL);
  if (!keep) ps_free(buf);
}

/* A connection that failed before an answer: its attempt gets rc, or, when it was a reused
 * connection closed before any byte of the answer (the request never reached the server),
 * the attempt goes once more on a fresh connection. */
static void conn_fail(conn_t *cn, int rc, int stale) {
  ps__h1_req_t *r = cn->req;
  ps__h1_t *h = cn->h;
  origin_t *o = cn->o;
  int retry = stale && cn->reused && r && !r->fresh_only;
  conn_detach(cn);
  conn_destroy(cn);
  if (retry) {
    r->fresh_only = 1;
    conn_open(h, o, r); /* takes the slot this one left */
    return;
  }
  dispatch(h, o);
  if (r) r->done(r->arg, rc, NULL);
}

/* Reports rc for cn's attempt from the loop, not from the current call stack. */
static void conn_fail_soon(conn_t *cn, int rc) {
  cn->pending_err = rc;
  struct timeval zero = {0, 0};
  evtimer_add(cn->timer, &zero);
}

/* ---- connecting ---- */

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

static void add_addrs(conn_t *cn, const struct evutil_addrinfo *ai) {
  for (; ai && cn->naddr < H1_MAX_ADDRS; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(cn->addr[0])) continue;
    memcpy(&cn->addr[cn->naddr], ai->ai_addr, ai->ai_addrlen);
    cn->addr_len[cn->naddr++] = (socklen_t)ai->ai_addrlen;
  }
}

/* Fills cn's addresses when the host needs no DNS; returns 0 then, 1 when it does. */
static int resolve_local(conn_t *cn) {
  const origin_t *o = cn->o;
  char port[8];
  snprintf(port, sizeof(port), "%u", o->port);
  /* "localhost" is loopback (RFC 6761); IPv4 first, where our services listen. */
  const char *names[2] = {o->host, NULL};
  if (strcmp(o->host, "localhost") == 0 || strcmp(o->host, "localhost.") == 0) {
    names[0] = "127.0.0.1";
    names[1] = "::1";
  }
  for (int i = 0; i < 2 && names[i]; i++) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(names[i], port, &hints, &res) != 0) return 1; /* a name */
    add_addrs(cn, (const struct evutil_addrinfo *)res);
    freeaddrinfo(res);
  }
  return 0;
}

/* Connects to cn's next address; every failure comes back through on_event or the timer. */
static void try_connect(conn_t *cn) {
  while (cn->iaddr < cn->naddr) {
    const struct sockaddr *sa = (const struct sockaddr *)&cn->addr[cn->iaddr];
    socklen_t sl = cn->addr_len[cn->iaddr++];
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    cn->bev = bufferevent_socket_new(cn->h->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!cn->bev) {
      close(fd);
      continue;
    }
    bufferevent_setcb(cn->bev, on_read, NULL, on_event, cn);
    if (bufferevent_socket_connect(cn->bev, sa, (int)sl) == 0) return;
    bufferevent_free(cn->bev);
    cn->bev = NULL;
  }
  conn_fail_soon(cn, PS_EUNAVAIL);
}

static void dns_release(dns_t *dns) {
  if (--dns->pending == 0 && dns->orphaned) {
    evdns_base_free(dns->eb, 0);
    ps_free(dns);
  }
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg) {
  dns_lookup_t *lk = arg;
  conn_t *cn = lk->cn;
  dns_t *dns = lk->dns;
  ps_free(lk);
  if (cn) {
    cn->lookup = NULL;
    if (result == 0) add_addrs(cn, res);
    if (cn->naddr) try_connect(cn);
    else conn_fail_soon(cn, PS_EUNAVAIL);
  }
  if (res) evutil_freeaddrinfo(res);
  dns_release(dns);
}

/* Starts the lookup of cn's host through evdns (may answer at once, from /etc/hosts). */
static void resolve_dns(conn_t *cn) {
  ps__h1_t *h = cn->h;
  if (!h->dns) {
    /* Reads /etc/resolv.conf and /etc/hosts once: short local reads, like a store file. */
    struct evdns_base *eb = evdns_base_new(
        h->base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!eb) {
      conn_fail_soon(cn, PS_EUNAVAIL);
      return;
    }
    h->dns = ps_calloc(1, sizeof(dns_t));
    h->dns->eb = eb;
  }
  char port[8];
  snprintf(port, sizeof(port), "%u", cn->o->port);
  struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                  .ai_protocol = IPPROTO_TCP, .ai_flags = EVUTIL_AI_ADDRCONFIG};
  dns_lookup_t *lk = ps_calloc(1, sizeof(*lk));
  lk->dns = h->dns;
  lk->cn = cn;
  h->dns->pending++;
  cn->lookup = lk;
  struct evdns_getaddrinfo_request *req =
      evdns_getaddrinfo(h->dns->eb, cn->o->host, port, &hints, on_resolved, lk);
  if (cn->lookup == lk) lk->req = req; /* still pending: it did not answer at once */
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
  conn_t *cn = arg;
  conn_fail(cn, cn->pending_err ? cn->pending_err : PS_ETIMEOUT, cn->pending_stale);
}

/* Opens a new connection to o for r, counted in o's open connections. */
static void conn_open(ps__h1_t *h, origin_t *o, ps__h1_req_t *r) {
  conn_t *cn = ps_calloc(1, sizeof(*cn));
  cn->h = h;
  cn->o = o;
  cn->req = r;
  r->conn = cn;
  o->nopen++;
  cn->timer = evtimer_new(h->base, on_timer, cn);
  long ms = r->connect_timeout_ms > 0 ? r->connect_timeout_ms : 1;
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  evtimer_add(cn->timer, &tv);
  if (resolve_local(cn)) resolve_dns(cn);
  else try_connect(cn);
}

/* ---- the answer ---- */

/* Whether the comma-separated value [v, e) holds token tok (lower case). */
static int has_token(const char *v, const char *e, const char *tok) {
  size_t n = strlen(tok);
  while (v < e) {
    while (v < e && (*v == ' ' || *v == '\t' || *v == ',')) v++;
    const char *t = v;
    while (v < e && *v != ',') v++;
    const char *te = v;
    while (te > t && (te[-1] == ' ' || te[-1] == '\t')) te--;
    if ((size_t)(te - t) == n && strncasecmp(t, tok, n) == 0) return 1;
  }
  return 0;
}

/* Parses the head in buf[0, end): status, framing, the headers we keep. */
static int parse_head(const char *buf, size_t end, int is_head, answer_state_t *st) {
  const char *p = buf, *e = buf + end;
  if (end < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
    return PS_EUNAVAIL;
  int http10 = p[7] == '0';
  if (p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
    return PS_EUNAVAIL;
  st->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  const char *eol = memchr(p, '\n', (size_t)(e - p));
  if (!eol) return PS_EUNAVAIL;
  int close_ = 0, keep_alive = 0, chunked = 0, other_te = 0, have_len = 0;
  size_t length = 0;
  st->ct_off = st->ct_len = st->ra_off = st->ra_len = 0;
  for (p = eol + 1; p < e; p = eol + 1) {
    eol = memchr(p, '\n', (size_t)(e - p));
    if (!eol) eol = e;
    const char *le = eol;
    if (le > p && le[-1] == '\r') le--;
    if (le == p) break; /* the empty line */
    const char *colon = memchr(p, ':', (size_t)(le - p));
    if (!colon) return PS_EUNAVAIL;
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1, *ve = le;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    switch (tolower_(*p)) {
    case 'c':
      if (nl == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
        size_t n = 0;
        if (v == ve) return PS_EUNAVAIL;
        for (const char *d = v; d < ve; d++) {
          if (*d < '0' || *d > '9') return PS_EUNAVAIL;
          if (n > (size_t)PS__CLIENT_MAX_BODY) break; /* too big anyway; no overflow */
          n = n * 10 + (size_t)(*d - '0');
        }
        if (have_len && n != length) return PS_EUNAVAIL;
        have_len = 1;
        length = n;
      } else if (nl == 10 && strncasecmp(p, "Connection", 10) == 0) {
        if (has_token(v, ve, "close")) close_ = 1;
        if (has_token(v, ve, "keep-alive")) keep_alive = 1;
      } else if (nl == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
        st->ct_off = (size_t)(v - buf);
        st->ct_len = (size_t)(ve - v);
      }
      break;
    case 't':
      if (nl == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
        /* chunked must be the last coding; any other makes the body run to the close */
        if ((size_t)(ve - v) >= 7 && strncasecmp(ve - 7, "chunked", 7) == 0) chunked = 1;
        else if (ve > v) other_te = 1;
      }
      break;
    case 'r':
      if (nl == 11 && strncasecmp(p, "Retry-After", 11) == 0) {
        st->ra_off = (size_t)(v - buf);
        st->ra_len = (size_t)(ve - v);
      }
      break;
    default:
      break;
    }
  }
  st->keep = !close_ && (!http10 || keep_alive) && st->status != 101; /* 101: not HTTP after */
  if (is_head || st->status == 204 || st->status == 304 || st->status < 200) {
    st->mode = BODY_NONE;
  } else if (chunked && !other_te) {
    st->mode = BODY_CHUNKED;
  } else if (have_len && !other_te) {
    if (length > (size_t)PS__CLIENT_MAX_BODY) return PS_ETOOBIG;
    st->mode = BODY_LENGTH;
    st->length = length;
  } else {
    st->mode = BODY_CLOSE;
    st->keep = 0;
  }
  return 0;
}

/* Decodes the chunked body in place: raw bytes [rd, len) become decoded bytes at wr. */
static int dechunk(char *buf, answer_state_t *st) {
  for (;;) {
    if (st->cs == CH_DATA) {
      size_t n = st->len - st->rd;
      if (n > st->chunk_left) n = st->chunk_left;
      if (st->wr != st->rd) memmove(buf + st->wr, buf + st->rd, n);
      st->wr += n;
      st->rd += n;
      st->chunk_left -= n;
      if (st->chunk_left) break;
      st->cs = CH_DATA_END;
      continue;
    }
    /* The other states read one line. */
    char *eol = memchr(buf + st->rd, '\n', st->len - st->rd);
    if (!eol) {
      if (st->len - st->rd > 4096) return PS_EUNAVAIL;
      break;
    }
    const char *p = buf + st->rd, *le = eol;
    if (le > p && le[-1] == '\r') le--;
    st->rd = (size_t)(eol - buf) + 1;
    if (st->cs == CH_DATA_END) {
      if (le != p) return PS_EUNAVAIL;
      st->cs = CH_SIZE;
    } else if (st->cs == CH_SIZE) {
      size_t size = 0;
      const char *d = p;
      for (; d < le; d++) {
        int x = tolower_(*d);
        int v = x >= '0' && x <= '9' ? x - '0' : x >= 'a' && x <= 'f' ? x - 'a' + 10 : -1;
        if (v < 0) break;
        if (size > (size_t)PS__CLIENT_MAX_BODY) return PS_ETOOBIG;
        size = size * 16 + (size_t)v;
      }
      if (d == p || (d < le && *d != ';' && *d != ' ' && *d != '\t')) return PS_EUNAVAIL;
      if (size > (size_t)PS__CLIENT_MAX_BODY - (st->wr - st->head_end)) return PS_ETOOBIG;
      if (size == 0) {
        st->cs = CH_TRAILER;
      } else {
        st->chunk_left = size;
        st->cs = CH_DATA;
      }
    } else { /* CH_TRAILER: skip trailer fields up to the empty line */
      if (le == p) {
        st->done = 1;
        if (st->rd != st->len) st->keep = 0; /* more than the answer: do not trust it */
        break;
      }
    }
  }
  /* Drop the consumed raw bytes so the buffer holds head + decoded body + unread rest. */
  if (!st->done && st->rd > st->wr) {
    memmove(buf + st->wr, buf + st->rd, st->len - st->rd);
    st->len = st->wr + (st->len - st->rd);
    st->rd = st->wr;
  }
  return 0;
}

/* Makes room for at least want more bytes in cn's buffer. */
static void reserve(conn_t *cn, size_t len, size_t want) {
  if (cn->cap - len >= want) return;
  size_t cap = cn->cap ? cn->cap : H1_MIN_READ;
  while (cap - len < want) cap *= 2;
  cn->buf = ps_realloc(cn->buf, cap);
  cn->cap = cap;
}

/* Moves the parse forward over what is in the buffer. */
static int advance(conn_t *cn, int is_head, answer_state_t *st) {
  while (!st->head_end) {
    size_t i = st->scanned > 2 ? st->scanned - 2 : 0, end = 0;
    for (; i + 1 < st->len; i++) {
      if (cn->buf[i] != '\n') continue;
      if (cn->buf[i + 1] == '\n') {
        end = i + 2;
        break;
      }
      if (cn->buf[i + 1] == '\r' && i + 2 < st->len && cn->buf[i + 2] == '\n') {
        end = i + 3;
        break;
      }
    }
    if (!end) {
      st->scanned = st->len;
      return st->len > H1_MAX_HEAD ? PS_EUNAVAIL : 0;
    }
    int rc = parse_head(cn->buf, end, is_head, st);
    if (rc) return rc;
    if (st->status >= 100 && st->status < 200 && st->status != 101) {
      /* 100 Continue, 103 Early Hints: the real answer follows */
      memmove(cn->buf, cn->buf + end, st->len - end);
      st->len -= end;
      st->scanned = 0;
      continue;
    }
    st->head_end = end;
    st->rd = st->wr = end;
    st->cs = CH_SIZE;
    if (st->mode == BODY_LENGTH && end + st->length + 1 > st->len)
      reserve(cn, st->len, end + st->length + 1 - st->len); /* one allocation for the body */
  }
  switch (st->mode) {
  case BODY_NONE:
    st->done = 1;
    if (st->len != st->head_end) st->keep = 0;
    st->wr = st->head_end;
    break;
  case BODY_LENGTH:
    if (st->len - st->head_end >= st->length) {
      st->done = 1;
      if (st->len - st->head_end > st->length) st->keep = 0;
      st->wr = st->head_end + st->length;
    }
    break;
  case BODY_CHUNKED:
    return dechunk(cn->buf, st);
  case BODY_CLOSE:
    if (st->len - st->head_end > (size_t)PS__CLIENT_MAX_BODY) return PS_ETOOBIG;
    st->wr = st->len;
    break;
  }
  return 0;
}

/* ---- the loop's callbacks ---- */

/* An idle connection closed, or said something nobody asked for: it goes. */
static void idle_drop(conn_t *cn) {
  idle_remove(cn);
  cn->o->nopen--;
  conn_destroy(cn);
}

static void on_read(struct bufferevent *bev, void *arg) {
  conn_t *cn = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  size_t n;
  while ((n = evbuffer_get_length(in)) > 0) {
    if (!cn->req) {
      idle_drop(cn);
      return;
    }
    answer_state_t *st = &cn->st;
    if (st->len == 0 && cn->cap > PS__CLIENT_KEEP_BUF) { /* one huge answer: not forever */
      ps_free(cn->buf);
      cn->buf = NULL;
      cn->cap = 0;
    }
    reserve(cn, st->len, n + 1);
    evbuffer_remove(in, cn->buf + st->len, n);
    st->len += n;
    int rc = advance(cn, cn->req->is_head, st);
    if (rc || st->done) {
      if (rc) conn_fail(cn, rc, 0);
      else conn_finish(cn, 0);
      return;
    }
  }
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
  conn_t *cn = arg;
  if (!cn->connected) {
    if (what & BEV_EVENT_CONNECTED) {
      cn->connected = 1;
      evtimer_del(cn->timer);
      bufferevent_enable(cn->bev, EV_READ);
      conn_start_request(cn, cn->req);
      return;
    }
    bufferevent_free(cn->bev); /* refused or unreachable: the next address */
    cn->bev = NULL;
    try_connect(cn);
    return;
  }
  if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) return;
  if (!cn->req) {
    idle_drop(cn);
    return;
  }
  answer_state_t *st = &cn->st;
  if ((what & BEV_EVENT_EOF) && st->head_end && st->mode == BODY_CLOSE) {
    st->done = 1;
    st->keep = 0;
    conn_finish(cn, 0);
    return;
  }
  /* Closed or reset before any byte of the answer: on a reused connection, stale. */
  conn_fail(cn, PS_EUNAVAIL, st->len == 0);
}

/* Sends r on the open connection cn: straight to the socket when it takes it all (one
 * syscall, no write event to arm and disarm), else the rest through the bufferevent, which
 * also reports a dead connection as an event. */
static void conn_start_request(conn_t *cn, ps__h1_req_t *r) {
  cn->req = r;
  r->conn = cn;
  memset(&cn->st, 0, sizeof(cn->st));
  size_t sent = 0;
  if (evbuffer_get_length(bufferevent_get_output(cn->bev)) == 0) {
    ssize_t n = send(bufferevent_getfd(cn->bev), r->data, r->len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent = (size_t)n;
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      cn->pending_stale = 1; /* closed or reset: nothing of the request went out */
      conn_fail_soon(cn, PS_EUNAVAIL);
      return;
    }
  }
  if (sent < r->len && bufferevent_write(cn->bev, r->data + sent, r->len - sent) != 0)
    conn_fail_soon(cn, PS_EUNAVAIL);
}

/* ---- the transport ---- */

ps__h1_t *ps__h1_new(struct event_base *base) {
  ps__h1_t *h = ps_calloc(1, sizeof(*h));
  h->base = base;
  return h;
}

void ps__h1_free(ps__h1_t *h, int own_base) {
  if (!h) return;
  while (h->origins) {
    origin_t *o = h->origins;
    h->origins = o->next;
    while (o->idle) {
      conn_t *cn = o->idle;
      o->idle = cn->next;
      conn_destroy(cn);
    }
    ps_free(o->host);
    ps_free(o);
  }
  if (h->dns) {
    dns_t *dns = h->dns;
    /* Cancelled lookups still call back; on a private loop, let them now. */
    while (own_base && dns->pending && event_base_loop(h->base, EVLOOP_ONCE) == 0) {
    }
    if (dns->pending) {
      dns->orphaned = 1;
    } else {
      evdns_base_free(dns->eb, 0);
      ps_free(dns);
    }
  }
  ps_free(h);
}

void ps__h1_start(ps__h1_t *h, ps__h1_req_t *r) {
  origin_t *o = origin_for(h, r->u);
  r->origin = o;
  r->conn = NULL;
  r->next = NULL;
  r->fresh_only = 0;
  conn_t *cn;
  if ((cn = pool_take(o))) {
    cn->reused = 1;
    conn_start_request(cn, r);
  } else if (o->nopen < PS__CLIENT_MAX_OPEN) {
    conn_open(h, o, r);
  } else if (o->wait_tail) {
    o->wait_tail->next = r;
    o->wait_tail = r;
  } else {
    o->wait_head = o->wait_tail = r;
  }
}

void ps__h1_cancel(ps__h1_t *h, ps__h1_req_t *r) {
  origin_t *o = r->origin;
  conn_t *cn = r->conn;
  if (cn) { /* its answer, if one comes, must not be read as the next call's */
    conn_detach(cn);
    conn_destroy(cn);
    dispatch(h, o);
    return;
  }
  for (ps__h1_req_t **p = &o->wait_head; *p; p = &(*p)->next) {
    if (*p != r) continue;
    *p = r->next;
    if (o->wait_tail == r) {
      o->wait_tail = NULL;
      for (ps__h1_req_t *q = o->wait_head; q; q = q->next) o->wait_tail = q;
    }
    return;
  }
}

/* ---- the request ---- */

typedef struct {
  char **buf;
  size_t *cap;
} wbuf_t;

static void put(wbuf_t *h, size_t *len, const char *s, size_t n) {
  if (*len + n > *h->cap) {
    size_t cap = *h->cap ? *h->cap : 1024;
    while (cap < *len + n) cap *= 2;
    *h->buf = ps_realloc(*h->buf, cap);
    *h->cap = cap;
  }
  memcpy(*h->buf + *len, s, n);
  *len += n;
}

static void puts_(wbuf_t *h, size_t *len, const char *s) { put(h, len, s, strlen(s)); }

/* Whether an extra "Name: value" line names the header name (len n). */
static int line_names(const char *line, const char *name, size_t n) {
  return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

size_t ps__h1_build_head(char **buf, size_t *cap, const ps__url_t *u, const char *method,
                         const ps__header_t *hd, size_t nh, size_t body_len, int with_length) {
  wbuf_t wb = {buf, cap}, *h = &wb;
  int own_host = 1, own_ua = 1, own_accept = 1;
  for (size_t i = 0; i < nh; i++) {
    if (hd[i].name) continue;
    if (line_names(hd[i].value, "Host", 4)) own_host = 0;
    else if (line_names(hd[i].value, "User-Agent", 10)) own_ua = 0;
    else if (line_names(hd[i].value, "Accept", 6)) own_accept = 0;
  }
  size_t len = 0;
  puts_(h, &len, method);
  put(h, &len, " ", 1);
  if (u->target_len == 0 || u->target[0] != '/') put(h, &len, "/", 1);
  put(h, &len, u->target, u->target_len);
  put(h, &len, " HTTP/1.1\r\n", 11);
  if (own_host) {
    put(h, &len, "Host: ", 6);
    put(h, &len, u->authority, u->authority_len);
    put(h, &len, "\r\n", 2);
  }
  if (own_ua) put(h, &len, "User-Agent: polyshop/1\r\n", 24);
  if (own_accept) put(h, &len, "Accept: */*\r\n", 13);
  for (size_t i = 0; i < nh; i++) {
    if (hd[i].name) {
      puts_(h, &len, hd[i].name);
      put(h, &len, ": ", 2);
      puts_(h, &len, hd[i].value);
    } else {
      const char *colon = strchr(hd[i].value, ':'), *v = colon + 1;
      while (*v == ' ' || *v == '\t') v++;
      if (!*v) continue;
      puts_(h, &len, hd[i].value);
    }
    put(h, &len, "\r\n", 2);
  }
  if (with_length) {
    char cl[48];
    int n = snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", body_len);
    put(h, &len, cl, (size_t)n);
  }
  put(h, &len, "\r\n", 2);
  return len;
}

