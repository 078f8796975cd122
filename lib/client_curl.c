/* client_curl.c - the client's transport for https:// URLs (Stripe) and URLs with userinfo:
 * libcurl's multi interface driven by the client's event loop (curl_multi_socket_action, with
 * CURLMOPT_SOCKETFUNCTION and CURLMOPT_TIMERFUNCTION on libevent events), so a call never
 * blocks its loop. The multi handle's connection cache gives keep-alive reuse. The deadline,
 * retries and breaker live in client.c. */
#include <string.h>
#include <strings.h>

#include "client_internal.h"
#include "polyshop/alloc.h"
#include "polyshop/error.h"

struct ps__curl {
  struct event_base *base;
  CURLM *multi;
  struct event *timer;
};

struct ps__curl_req {
  ps__curl_t *m;
  CURL *easy;
  ps__done_cb done;
  void *arg;
  char *buf; /* the answer's body */
  size_t len, cap;
  int too_big;
  char retry_after[64];
};

/* The libevent event of one of libcurl's sockets. */
typedef struct {
  struct event *ev;
} sock_t;

/* ---- answers ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
  ps__curl_req_t *r = userdata;
  size_t n = size * nmemb;
  if (n > PS__CLIENT_MAX_BODY - r->len) {
    r->too_big = 1;
    return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
  }
  if (r->len + n + 1 > r->cap) {
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < r->len + n + 1) cap *= 2;
    r->buf = ps_realloc(r->buf, cap);
    r->cap = cap;
  }
  memcpy(r->buf + r->len, data, n);
  r->len += n;
  return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata) {
  ps__curl_req_t *r = userdata;
  size_t n = size * nmemb;
  if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) r->retry_after[0] = '\0'; /* a new answer */
  if (n > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
    const char *v = data + 12, *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    size_t len = (size_t)(end - v);
    if (len >= sizeof(r->retry_after)) len = sizeof(r->retry_after) - 1;
    memcpy(r->retry_after, v, len);
    r->retry_after[len] = '\0';
  }
  return n;
}

static void req_free(ps__curl_req_t *r) {
  curl_easy_cleanup(r->easy);
  ps_free(r->buf);
  ps_free(r);
}

/* A finished transfer: its outcome to the caller, then the request is freed. */
static void req_done(ps__curl_req_t *r, CURLcode code) {
  ps__answer_t ans = {0};
  int rc;
  switch (code) {
  case CURLE_OK:
    rc = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &ans.status);
    ans.body = r->buf ? r->buf : "";
    ans.body_len = r->len;
    char *ct = NULL; /* owned by the handle */
    if (curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct) {
      ans.content_type = ct;
      ans.content_type_len = strlen(ct);
    }
    if (r->retry_after[0]) {
      ans.retry_after = r->retry_after;
      ans.retry_after_len = strlen(r->retry_after);
    }
    break;
  case CURLE_OPERATION_TIMEDOUT:
    rc = PS_ETIMEOUT;
    break;
  case CURLE_WRITE_ERROR:
    rc = r->too_big ? PS_ETOOBIG : PS_EUNAVAIL;
    break;
  default:
    /* Refused, unreachable, reset, nothing received, TLS failure: the target is not
     * answering properly, which is what the breaker and the retries care about. */
    rc = PS_EUNAVAIL;
    break;
  }
  r->done(r->arg, rc, rc == 0 ? &ans : NULL);
  req_free(r);
}

static void check_done(ps__curl_t *m) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(m->multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL *e = msg->easy_handle;
    CURLcode code = msg->data.result;
    ps__curl_req_t *r = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
    curl_multi_remove_handle(m->multi, e);
    req_done(r, code);
  }
}

/* ---- libcurl on libevent ---- */

static void on_socket_event(evutil_socket_t fd, short what, void *arg) {
  ps__curl_t *m = arg;
  int action = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
  int running;
  curl_multi_socket_action(m->multi, fd, action, &running);
  check_done(m);
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
  ps__curl_t *m = arg;
  int running;
  curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(m);
}

static int socket_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
  ps__curl_t *m = userp;
  sock_t *sk = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (sk) {
      event_free(sk->ev);
      ps_free(sk);
      curl_multi_assign(m->multi, s, NULL);
    }
    return 0;
  }
  if (!sk) {
    sk = ps_calloc(1, sizeof(*sk));
    curl_multi_assign(m->multi, s, sk);
  } else {
    event_free(sk->ev);
  }
  short kind = (short)((what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0) |
                       EV_PERSIST);
  sk->ev = event_new(m->base, s, kind, on_socket_event, m);
  event_add(sk->ev, NULL);
  return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  ps__curl_t *m = userp;
  if (timeout_ms < 0) {
    evtimer_del(m->timer);
  } else {
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(m->timer, &tv); /* 0: at the loop's next turn, never from inside libcurl */
  }
  return 0;
}

ps__curl_t *ps__curl_new(struct event_base *base) {
  CURLM *multi = curl_multi_init();
  if (!multi) return NULL;
  ps__curl_t *m = ps_calloc(1, sizeof(*m));
  m->base = base;
  m->multi = multi;
  m->timer = evtimer_new(base, on_timer, m);
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, m);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(multi, CURLMOPT_TIMERDATA, m);
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)PS__CLIENT_CURL_MAXCONNECTS);
  return m;
}

void ps__curl_free(ps__curl_t *m) {
  if (!m) return;
  curl_multi_cleanup(m->multi); /* closes the cached connections through socket_cb */
  event_free(m->timer);
  ps_free(m);
}

static int method_has_body(const char *m) {
  return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

static void set_method(CURL *e, const char *m, const char *body, size_t body_len) {
  if (body || method_has_body(m)) {
    /* POSTFIELDS with an explicit size sends Content-Length (0 for an empty PUT/POST). */
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
    if (strcmp(m, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
  } else if (strcmp(m, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (strcmp(m, "GET") != 0) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
  }
}

ps__curl_req_t *ps__curl_start(ps__curl_t *m, const char *method, const char *url,
                               const char *body, size_t body_len, struct curl_slist *headers,
                               long timeout_ms, long connect_timeout_ms, ps__done_cb done,
                               void *arg) {
  CURL *e = curl_easy_init();
  if (!e) return NULL;
  ps__curl_req_t *r = ps_calloc(1, sizeof(*r));
  r->m = m;
  r->easy = e;
  r->done = done;
  r->arg = arg;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
  long connect_ms = connect_timeout_ms < timeout_ms ? connect_timeout_ms : timeout_ms;
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms > 0 ? connect_ms : 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "polyshop/1");
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  set_method(e, method, body, body_len);
  if (curl_multi_add_handle(m->multi, e) != CURLM_OK) {
    req_free(r);
    return NULL;
  }
  return r;
}

void ps__curl_cancel(ps__curl_t *m, ps__curl_req_t *r) {
  curl_multi_remove_handle(m->multi, r->easy);
  req_free(r);
}
