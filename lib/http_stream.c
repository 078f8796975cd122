/* http_stream.c - streamed answers (http.h): a chunked body written piece by piece from any
 * thread, Server-Sent Events with heartbeats on top.
 *
 * A writer on any thread appends framed bytes to the stream's pending buffer under the
 * stream's mutex and queues the stream on its loop's dirty list, then activates the loop's
 * wake event (libevent's thread support makes event_active safe from other threads); the
 * loop moves the bytes into the connection's output. Lock order: stream, then loop.
 *
 * A stream has two references: the caller's (given back by ps_stream_end) and the
 * connection's (given back when the last chunk is out or the connection closes); the last
 * one frees it, on whichever thread. Once detached from its connection (s->loop NULL) a
 * stream touches no loop state, so writers may outlive the server. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "http_internal.h"
#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/metrics.h"

struct ps_stream {
  pthread_mutex_t mu;
  atomic_int refs;
  ps__loop_t *loop;          /* under mu: NULL once detached from the connection */
  ps__conn_t *conn;          /* loop thread */
  struct evbuffer *pending;  /* under mu: framed bytes not yet in the connection's output */
  struct ps_stream *next_dirty;            /* under loop->stream_mu */
  struct ps_stream *sse_prev, *sse_next;   /* loop thread */
  ps_stream_close_cb close_cb;
  void *close_arg;
  unsigned long long last_write_ns;        /* under mu */
  size_t out_len;                          /* under mu: the output's length at the last write */
  unsigned heartbeat_s;
  unsigned char dirty, ended, chunked, sse;
};

enum { DEFAULT_HEARTBEAT = 15 };

static void unref(ps_stream_t *s) {
  if (atomic_fetch_sub(&s->refs, 1) != 1) return;
  pthread_mutex_destroy(&s->mu);
  evbuffer_free(s->pending);
  ps_free(s);
}

ps_stream_t *ps__stream_new(ps__conn_t *c, int chunked, int head_only) {
  ps_stream_t *s = ps_calloc(1, sizeof(*s));
  pthread_mutex_init(&s->mu, NULL);
  s->pending = evbuffer_new();
  s->chunked = (unsigned char)chunked;
  s->last_write_ns = ps_now_ns();
  if (head_only) { /* nothing will be sent: born detached, only the caller's reference */
    atomic_init(&s->refs, 1);
    return s;
  }
  atomic_init(&s->refs, 2);
  s->loop = ps__conn_loop(c);
  s->conn = c;
  return s;
}

/* Queues s for the loop's next wake-up (s->mu held, s attached). */
static void mark_dirty(ps_stream_t *s) {
  if (s->dirty) return;
  s->dirty = 1;
  ps__loop_t *loop = s->loop;
  pthread_mutex_lock(&loop->stream_mu);
  s->next_dirty = loop->dirty;
  loop->dirty = s;
  pthread_mutex_unlock(&loop->stream_mu);
  event_active(loop->wake_ev, 0, 0);
}

/* Loop thread: cuts s off its connection; with closed, tells the writer through close_cb. */
static void detach(ps_stream_t *s, int closed) {
  ps_stream_close_cb cb = NULL;
  void *arg = NULL;
  pthread_mutex_lock(&s->mu);
  ps__loop_t *loop = s->loop;
  if (s->dirty) {
    pthread_mutex_lock(&loop->stream_mu);
    for (ps_stream_t **p = &loop->dirty; *p; p = &(*p)->next_dirty)
      if (*p == s) {
        *p = s->next_dirty;
        break;
      }
    pthread_mutex_unlock(&loop->stream_mu);
    s->dirty = 0;
  }
  s->loop = NULL;
  s->conn = NULL;
  if (closed && !s->ended) {
    cb = s->close_cb;
    arg = s->close_arg;
  }
  evbuffer_drain(s->pending, evbuffer_get_length(s->pending));
  pthread_mutex_unlock(&s->mu);
  if (s->sse) {
    if (s->sse_prev) s->sse_prev->sse_next = s->sse_next;
    else loop->sse_list = s->sse_next;
    if (s->sse_next) s->sse_next->sse_prev = s->sse_prev;
    if (!loop->sse_list) event_del(loop->beat_ev);
  }
  if (cb) cb(arg);
  unref(s);
}

void ps__stream_conn_closed(ps_stream_t *s) { detach(s, 1); }

/* The loop's wake-up: moves every dirty stream's bytes into its connection's output. */
static void wake_cb(evutil_socket_t fd, short what, void *arg) {
  ps__loop_t *loop = arg;
  for (;;) {
    pthread_mutex_lock(&loop->stream_mu);
    ps_stream_t *s = loop->dirty;
    if (s) loop->dirty = s->next_dirty;
    pthread_mutex_unlock(&loop->stream_mu);
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->dirty = 0;
    ps__conn_t *c = s->conn;
    int ended = s->ended;
    ps__conn_send(c, s->pending);
    s->out_len = ps__conn_out_len(c);
    pthread_mutex_unlock(&s->mu);
    if (ended) {
      detach(s, 0);
      ps__conn_stream_done(c);
    }
  }
}

int ps_stream_write(ps_stream_t *s, const void *data, size_t len) {
  if (!len) return 0; /* an empty chunk would end the body */
  pthread_mutex_lock(&s->mu);
  if (!s->loop || s->ended) {
    pthread_mutex_unlock(&s->mu);
    return PS_EIO;
  }
  if (s->chunked) evbuffer_add_printf(s->pending, "%zx\r\n", len);
  evbuffer_add(s->pending, data, len);
  if (s->chunked) evbuffer_add(s->pending, "\r\n", 2);
  s->last_write_ns = ps_now_ns();
  mark_dirty(s);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

void ps_stream_end(ps_stream_t *s) {
  pthread_mutex_lock(&s->mu);
  if (!s->ended) {
    s->ended = 1;
    if (s->loop) {
      if (s->chunked) evbuffer_add(s->pending, "0\r\n\r\n", 5);
      mark_dirty(s); /* the loop sends the last chunk and hands the connection back */
    }
  }
  pthread_mutex_unlock(&s->mu);
  unref(s);
}

size_t ps_stream_pending(ps_stream_t *s) {
  pthread_mutex_lock(&s->mu);
  size_t n = evbuffer_get_length(s->pending) + s->out_len;
  pthread_mutex_unlock(&s->mu);
  return n;
}

void ps_stream_on_close(ps_stream_t *s, ps_stream_close_cb cb, void *arg) {
  pthread_mutex_lock(&s->mu);
  s->close_cb = cb;
  s->close_arg = arg;
  pthread_mutex_unlock(&s->mu);
}

/* --- Server-Sent Events ---------------------------------------------------------------------- */

/* Once a second: a comment on every stream quiet for its heartbeat period, so proxies and
 * clients see the stream alive. */
static void beat_cb(evutil_socket_t fd, short what, void *arg) {
  ps__loop_t *loop = arg;
  unsigned long long now = ps_now_ns();
  for (ps_stream_t *s = loop->sse_list; s; s = s->sse_next) {
    pthread_mutex_lock(&s->mu);
    int due = now - s->last_write_ns >= (unsigned long long)s->heartbeat_s * 1000000000ull;
    pthread_mutex_unlock(&s->mu);
    if (due) ps_stream_write(s, ": hb\n\n", 6);
  }
}

ps_sse_t *ps_reply_sse(ps_req_t *req, int heartbeat_seconds) {
  ps_reply_header(req, "Cache-Control", "no-store");
  ps_reply_header(req, "X-Accel-Buffering", "no");
  ps_stream_t *s = ps_reply_stream(req, 200, "text/event-stream");
  if (!s || !s->loop) return s;
  ps__loop_t *loop = s->loop;
  s->sse = 1;
  s->heartbeat_s = heartbeat_seconds > 0 ? (unsigned)heartbeat_seconds : DEFAULT_HEARTBEAT;
  s->sse_next = loop->sse_list;
  if (loop->sse_list) loop->sse_list->sse_prev = s;
  else {
    struct timeval tick = {1, 0};
    event_add(loop->beat_ev, &tick);
  }
  loop->sse_list = s;
  return s;
}

int ps_sse_send(ps_sse_t *sse, const char *event, const char *data) {
  if (event && strpbrk(event, "\r\n")) return PS_EINVAL;
  size_t dlen = strlen(data), lines = 1;
  for (const char *p = data; *p; p++) lines += *p == '\n' || (*p == '\r' && p[1] != '\n');
  size_t cap = (event ? strlen(event) + 8 : 0) + dlen + lines * 7 + 2;
  char stackbuf[1024];
  char *buf = cap <= sizeof(stackbuf) ? stackbuf : ps_malloc(cap);
  size_t n = 0;
  if (event) n += (size_t)sprintf(buf, "event: %s\n", event);
  const char *p = data;
  for (;;) { /* a line ends at CRLF, LF or CR (the SSE grammar) */
    size_t len = strcspn(p, "\r\n");
    memcpy(buf + n, "data: ", 6);
    memcpy(buf + n + 6, p, len);
    n += 6 + len;
    buf[n++] = '\n';
    p += len;
    if (!*p) break;
    p += (p[0] == '\r' && p[1] == '\n') ? 2 : 1;
  }
  buf[n++] = '\n';
  int rc = ps_stream_write(sse, buf, n);
  if (buf != stackbuf) ps_free(buf);
  return rc;
}

void ps_sse_end(ps_sse_t *sse) { ps_stream_end(sse); }

void ps__streams_init(ps__loop_t *loop) {
  pthread_mutex_init(&loop->stream_mu, NULL);
  loop->wake_ev = event_new(loop->base, -1, 0, wake_cb, loop);
  loop->beat_ev = event_new(loop->base, -1, EV_PERSIST, beat_cb, loop);
}

void ps__streams_cleanup(ps__loop_t *loop) {
  if (loop->wake_ev) event_free(loop->wake_ev);
  if (loop->beat_ev) event_free(loop->beat_ev);
  loop->wake_ev = loop->beat_ev = NULL;
  pthread_mutex_destroy(&loop->stream_mu);
}
