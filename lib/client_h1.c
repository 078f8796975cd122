/* client_h1.c - our own small blocking HTTP/1.1 transport for http:// calls (client.h): a few
 * kept-alive connections per host:port, one sendmsg per request, and blocking reads bounded
 * by SO_RCVTIMEO, so a call on a live connection costs two syscalls. libcurl's per-call
 * option resets, poll loops and allocations were ~30% of the order service's CPU. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "client_internal.h"
#include "polyshop/alloc.h"
#include "polyshop/error.h"

enum {
  H1_MAX_HEAD = 64 << 10,   /* an answer head bigger than this is not HTTP we accept */
  H1_MIN_READ = 16 << 10,   /* free space offered to each recv */
  H1_STALE = 1,             /* internal: a reused connection was found closed */
  H1_IDLE_CHECK_MS = 1000,  /* a connection idle longer is checked before reuse */
};

typedef struct {
  int fd;
  char *host; /* lower-cased, owned */
  size_t host_len;
  unsigned port;
  long rcvtimeo_ms; /* SO_RCVTIMEO now set on fd, 0: none */
  int64_t idle_since;
} conn_t;

struct ps__h1 {
  conn_t idle[PS__CLIENT_MAX_CONNECTS]; /* oldest first */
  int nidle;
  char *req; /* request head, reused */
  size_t req_cap;
  char *buf; /* answer, reused */
  size_t cap;
};

int64_t ps__client_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ps__h1_t *ps__h1_new(void) { return ps_calloc(1, sizeof(ps__h1_t)); }

static void conn_close(conn_t *cn) {
  if (cn->fd >= 0) close(cn->fd);
  cn->fd = -1;
  ps_free(cn->host);
  cn->host = NULL;
}

void ps__h1_free(ps__h1_t *h) {
  if (!h) return;
  for (int i = 0; i < h->nidle; i++) conn_close(&h->idle[i]);
  ps_free(h->req);
  ps_free(h->buf);
  ps_free(h);
}

/* ---- connection pool ---- */

static int same_host(const conn_t *cn, const ps__url_t *u) {
  return cn->port == u->port && cn->host_len == u->host_len &&
         strncasecmp(cn->host, u->host, u->host_len) == 0;
}

/* Whether a connection idle for a while is still clean: not closed by the server, and with
 * nothing unasked-for to read (a server may say 408 before closing an idle connection). */
static int still_clean(const conn_t *cn) {
  char b;
  ssize_t n = recv(cn->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Takes the most recently used idle connection to u's host:port into *cn. */
static int pool_take(ps__h1_t *h, const ps__url_t *u, conn_t *cn) {
  int64_t now = 0;
  for (int i = h->nidle - 1; i >= 0; i--) {
    if (!same_host(&h->idle[i], u)) continue;
    *cn = h->idle[i];
    memmove(&h->idle[i], &h->idle[i + 1], (size_t)(h->nidle - i - 1) * sizeof(conn_t));
    h->nidle--;
    if (!now) now = ps__client_now_ms();
    if (now - cn->idle_since > H1_IDLE_CHECK_MS && !still_clean(cn)) {
      conn_close(cn);
      continue;
    }
    return 1;
  }
  return 0;
}

static void pool_put(ps__h1_t *h, conn_t *cn) {
  if (h->nidle == PS__CLIENT_MAX_CONNECTS) { /* the least recently used goes */
    conn_close(&h->idle[0]);
    memmove(&h->idle[0], &h->idle[1], (size_t)(h->nidle - 1) * sizeof(conn_t));
    h->nidle--;
  }
  cn->idle_since = ps__client_now_ms();
  h->idle[h->nidle++] = *cn;
  cn->fd = -1;
  cn->host = NULL;
}

/* ---- connecting ---- */

static int poll_for(int fd, short events, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - ps__client_now_ms();
    if (left <= 0) return PS_ETIMEOUT;
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
    if (r > 0) return 0;
    if (r < 0 && errno != EINTR) return PS_EUNAVAIL;
  }
}

/* Connects a new blocking socket to one of host's addresses by deadline. */
static int dial(const ps__url_t *u, int64_t deadline, conn_t *cn) {
  char host[256], port[8];
  if (u->host_len >= sizeof(host)) return PS_EUNAVAIL;
  memcpy(host, u->host, u->host_len);
  host[u->host_len] = '\0';
  snprintf(port, sizeof(port), "%u", u->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  if (getaddrinfo(host, port, &hints, &res) != 0 || !res) return PS_EUNAVAIL;
  int rc = PS_EUNAVAIL, fd = -1;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      rc = 0;
    } else if (errno == EINPROGRESS) {
      rc = poll_for(fd, POLLOUT, deadline);
      int err = 0;
      socklen_t el = sizeof(err);
      if (!rc && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0))
        rc = PS_EUNAVAIL;
    } else {
      rc = PS_EUNAVAIL;
    }
    /* Blocking from now on: reads wait in recv, bounded by SO_RCVTIMEO. */
    if (!rc && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) rc = PS_EUNAVAIL;
    if (!rc || rc == PS_ETIMEOUT) break;
    close(fd); /* refused or unreachable: the next address */
    fd = -1;
  }
  freeaddrinfo(res);
  if (rc) {
    if (fd >= 0) close(fd);
    return rc;
  }
  cn->fd = fd;
  cn->host = ps_malloc(u->host_len + 1);
  for (size_t i = 0; i < u->host_len; i++) {
    char ch = u->host[i];
    cn->host[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
  }
  cn->host[u->host_len] = '\0';
  cn->host_len = u->host_len;
  cn->port = u->port;
  cn->rcvtimeo_ms = 0;
  return 0;
}

/* ---- sending ---- */

static void put(ps__h1_t *h, size_t *len, const char *s, size_t n) {
  if (*len + n > h->req_cap) {
    size_t cap = h->req_cap ? h->req_cap : 1024;
    while (cap < *len + n) cap *= 2;
    h->req = ps_realloc(h->req, cap);
    h->req_cap = cap;
  }
  memcpy(h->req + *len, s, n);
  *len += n;
}

static void puts_(ps__h1_t *h, size_t *len, const char *s) { put(h, len, s, strlen(s)); }

/* Whether an extra "Name: value" line names the header name (len n). */
static int line_names(const char *line, const char *name, size_t n) {
  return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* The request head into h->req; returns its length. Extra lines replace our Host, User-Agent
 * and Accept, and an extra line with an empty value is not sent (libcurl's rules). */
static size_t build_head(ps__h1_t *h, const ps__url_t *u, const char *method,
                         const ps__header_t *hd, size_t nh, size_t body_len, int with_length) {
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

/* Sends head and body, waiting for room by deadline. H1_STALE when the peer had closed. */
static int send_all(int fd, const char *head, size_t head_len, const char *body,
                    size_t body_len, int64_t deadline) {
  struct iovec iov[2] = {{(void *)head, head_len}, {(void *)body, body_len}};
  struct msghdr m = {.msg_iov = iov, .msg_iovlen = body_len ? 2 : 1};
  while (m.msg_iovlen) {
    ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        int rc = poll_for(fd, POLLOUT, deadline);
        if (rc) return rc;
        continue;
      }
      return errno == EPIPE || errno == ECONNRESET ? H1_STALE : PS_EUNAVAIL;
    }
    size_t left = (size_t)n;
    while (m.msg_iovlen && left >= m.msg_iov[0].iov_len) {
      left -= m.msg_iov[0].iov_len;
      m.msg_iov++;
      m.msg_iovlen--;
    }
    if (m.msg_iovlen) {
      m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + left;
      m.msg_iov[0].iov_len -= left;
    }
  }
  return 0;
}

/* ---- receiving ---- */

typedef enum { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE } body_mode_t;
typedef enum { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER } chunk_state_t;

typedef struct {
  size_t len;        /* bytes in h->buf */
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

static int tolower_(int ch) { return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch; }

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

/* Makes room for at least want more bytes in h->buf. */
static void reserve(ps__h1_t *h, size_t len, size_t want) {
  if (h->cap - len >= want) return;
  size_t cap = h->cap ? h->cap : 2 * H1_MIN_READ;
  while (cap - len < want) cap *= 2;
  h->buf = ps_realloc(h->buf, cap);
  h->cap = cap;
}

/* Moves the parse forward over what is in the buffer. */
static int advance(ps__h1_t *h, int is_head, answer_state_t *st) {
  while (!st->head_end) {
    size_t i = st->scanned > 2 ? st->scanned - 2 : 0, end = 0;
    for (; i + 1 < st->len; i++) {
      if (h->buf[i] != '\n') continue;
      if (h->buf[i + 1] == '\n') {
        end = i + 2;
        break;
      }
      if (h->buf[i + 1] == '\r' && i + 2 < st->len && h->buf[i + 2] == '\n') {
        end = i + 3;
        break;
      }
    }
    if (!end) {
      st->scanned = st->len;
      return st->len > H1_MAX_HEAD ? PS_EUNAVAIL : 0;
    }
    int rc = parse_head(h->buf, end, is_head, st);
    if (rc) return rc;
    if (st->status >= 100 && st->status < 200 && st->status != 101) {
      /* 100 Continue, 103 Early Hints: the real answer follows */
      memmove(h->buf, h->buf + end, st->len - end);
      st->len -= end;
      st->scanned = 0;
      continue;
    }
    st->head_end = end;
    st->rd = st->wr = end;
    st->cs = CH_SIZE;
    if (st->mode == BODY_LENGTH && end + st->length + 1 > st->len)
      reserve(h, st->len, end + st->length + 1 - st->len); /* one allocation for the body */
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
    return dechunk(h->buf, st);
  case BODY_CLOSE:
    if (st->len - st->head_end > (size_t)PS__CLIENT_MAX_BODY) return PS_ETOOBIG;
    st->wr = st->len;
    break;
  }
  return 0;
}

/* Reads one answer on cn by deadline. H1_STALE when the connection was closed (or reset)
 * before any byte arrived. */
static int read_answer(ps__h1_t *h, conn_t *cn, int is_head, int64_t deadline,
                       answer_state_t *st) {
  memset(st, 0, sizeof(*st));
  for (;;) {
    reserve(h, st->len, H1_MIN_READ);
    /* Bound the blocking read by the deadline. SO_RCVTIMEO is set again only when what is
     * set exceeds the time left or falls short of it by more than 250 ms, so calls on a live
     * connection with the same timeout leave it alone: a timeout that fires early just
     * comes back here and waits for the rest. */
    int64_t left = deadline - ps__client_now_ms();
    if (left <= 0) return PS_ETIMEOUT;
    if (cn->rcvtimeo_ms == 0 || cn->rcvtimeo_ms > left || cn->rcvtimeo_ms + 250 < left) {
      long set = (long)(left > 500 ? left - 100 : left); /* slack keeps it for the next calls */
      struct timeval tv = {(time_t)(set / 1000), (suseconds_t)(set % 1000) * 1000};
      if (setsockopt(cn->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) return PS_EUNAVAIL;
      cn->rcvtimeo_ms = set;
    }
    ssize_t n = recv(cn->fd, h->buf + st->len, h->cap - st->len, 0);
    if (n > 0) {
      st->len += (size_t)n;
      int rc = advance(h, is_head, st);
      if (rc) return rc;
      if (st->done) return 0;
      continue;
    }
    if (n == 0) {
      if (st->len == 0) return H1_STALE;
      if (st->head_end && st->mode == BODY_CLOSE) {
        st->done = 1;
        st->keep = 0;
        return 0;
      }
      return PS_EUNAVAIL; /* cut short */
    }
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
    if (errno == ECONNRESET && st->len == 0) return H1_STALE;
    return PS_EUNAVAIL;
  }
}

int ps__h1_request(ps__h1_t *h, const ps__url_t *u, const char *method,
                   const ps__header_t *headers, size_t nheaders, const char *body,
                   size_t body_len, int with_length, int64_t deadline_ms,
                   int64_t connect_deadline_ms, ps__answer_t *ans) {
  memset(ans, 0, sizeof(*ans));
  if (h->cap > PS__CLIENT_KEEP_BUF) { /* one huge answer should not pin its memory forever */
    ps_free(h->buf);
    h->buf = NULL;
    h->cap = 0;
  }
  size_t head_len = build_head(h, u, method, headers, nheaders, body ? body_len : 0, with_length);
  int is_head = strcmp(method, "HEAD") == 0;
  answer_state_t st;
  int rc;
  for (int fresh = 0;; fresh = 1) {
    conn_t cn = {.fd = -1};
    int reused = !fresh && pool_take(h, u, &cn);
    if (!reused) {
      rc = dial(u, connect_deadline_ms < deadline_ms ? connect_deadline_ms : deadline_ms, &cn);
      if (rc) return rc;
    }
    rc = send_all(cn.fd, h->req, head_len, body, body ? body_len : 0, deadline_ms);
    if (!rc) rc = read_answer(h, &cn, is_head, deadline_ms, &st);
    if (rc == 0 && st.keep) pool_put(h, &cn);
    else conn_close(&cn);
    /* A kept-alive connection the server had closed: the request never reached it. */
    if (rc == H1_STALE && reused) continue;
    if (rc == H1_STALE) rc = PS_EUNAVAIL;
    break;
  }
  if (rc) return rc;
  ans->status = st.status;
  ans->body = h->buf + st.head_end;
  ans->body_len = st.wr - st.head_end;
  if (st.ct_off) {
    ans->content_type = h->buf + st.ct_off;
    ans->content_type_len = st.ct_len;
  }
  if (st.ra_off) {
    ans->retry_after = h->buf + st.ra_off;
    ans->retry_after_len = st.ra_len;
  }
  return 0;
}
