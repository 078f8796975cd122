/* client.c - the one HTTP client between services (see client.h), its front: URL and header
 * checks, a deadline on every call, retries with exponential backoff and jitter for idempotent
 * calls only, a circuit breaker per origin, and W3C traceparent propagation. http:// calls go
 * through our own HTTP/1.1 transport (client_h1.c); https:// ones through a libcurl easy
 * handle kept per client so its connection cache gives keep-alive reuse. */
#include "polyshop/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "client_internal.h"
#include "polyshop/alloc.h"
#include "polyshop/error.h"

enum {
  CLIENT_MAX_BACKOFF_MS = 10000,
  CLIENT_MAX_HOST = 255,            /* longest host name accepted in a URL */
  CLIENT_STACK_HEADERS = 16,        /* header entries held on the stack before the arena */
};

typedef enum { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN } breaker_state_t;

typedef struct breaker {
  struct breaker *next;
  char *origin; /* "scheme://host:port", owned */
  breaker_state_t state;
  int failures; /* consecutive */
  int64_t opened_at_ms;
} breaker_t;

struct ps_client {
  ps_client_opts_t opts;
  ps__h1_t *h1; /* http:// */
  CURL *easy;   /* https://, reused by every call so its live connections are reused */
  breaker_t *breakers;
  /* The answer being received by libcurl; the buffer is reused between calls. */
  char *buf;
  size_t len, cap;
  int too_big;
  char retry_after[64];
  char errbuf[CURL_ERROR_SIZE];
};

/* ---- process-wide initialisation ---- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_ok;

static void global_init(void) {
  /* curl_global_init is not thread-safe in every libcurl build; once per process is. */
  global_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK && sodium_init() >= 0;
}

static int ensure_global(void) {
  pthread_once(&global_once, global_init);
  return global_ok;
}

void ps_client_global_cleanup(void) {
  if (global_ok) curl_global_cleanup();
  global_ok = 0;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- client ---- */

void ps_client_opts_default(ps_client_opts_t *opts) {
  opts->timeout_ms = 2000;
  opts->connect_timeout_ms = 500;
  opts->max_retries = 2;
  opts->backoff_base_ms = 50;
  opts->breaker_failures = 5;
  opts->breaker_open_ms = 5000;
}

ps_client_t *ps_client_new(const ps_client_opts_t *opts) {
  if (!ensure_global()) return NULL;
  CURL *easy = curl_easy_init();
  if (!easy) return NULL;
  ps_client_t *c = ps_calloc(1, sizeof(*c));
  c->easy = easy;
  c->h1 = ps__h1_new();
  ps_client_opts_t d;
  ps_client_opts_default(&d);
  c->opts = opts ? *opts : d;
  /* Nonsense values fall back to the defaults rather than disabling a safeguard. */
  if (c->opts.timeout_ms <= 0) c->opts.timeout_ms = d.timeout_ms;
  if (c->opts.connect_timeout_ms <= 0) c->opts.connect_timeout_ms = d.connect_timeout_ms;
  if (c->opts.max_retries < 0) c->opts.max_retries = 0;
  if (c->opts.backoff_base_ms <= 0) c->opts.backoff_base_ms = d.backoff_base_ms;
  if (c->opts.breaker_failures <= 0) c->opts.breaker_failures = d.breaker_failures;
  if (c->opts.breaker_open_ms <= 0) c->opts.breaker_open_ms = d.breaker_open_ms;
  return c;
}

void ps_client_free(ps_client_t *c) {
  if (!c) return;
  curl_easy_cleanup(c->easy);
  ps__h1_free(c->h1);
  while (c->breakers) {
    breaker_t *b = c->breakers;
    c->breakers = b->next;
    ps_free(b->origin);
    ps_free(b);
  }
  ps_free(c->buf);
  ps_free(c);
}

/* ---- URLs ---- */

static int is_alnum(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* Splits an absolute http(s) URL; PS_EINVAL when it is not one we can call. */
static int parse_url(const char *url, ps__url_t *u) {
  memset(u, 0, sizeof(*u));
  const char *p;
  if (strncasecmp(url, "http://", 7) == 0) {
    p = url + 7;
    u->port = 80;
  } else if (strncasecmp(url, "https://", 8) == 0) {
    p = url + 8;
    u->https = 1;
    u->port = 443;
  } else {
    return PS_EINVAL;
  }
  /* No spaces or control characters: they would split the request line. */
  for (const char *q = p; *q; q++)
    if ((unsigned char)*q <= 0x20 || *q == 0x7f) return PS_EINVAL;
  const char *auth_end = p + strcspn(p, "/?#");
  for (const char *q = p; q < auth_end; q++) {
    if (*q == '@') {
      u->userinfo = 1;
      p = q + 1;
    }
  }
  u->authority = p;
  u->authority_len = (size_t)(auth_end - p);
  if (*p == '[') { /* IPv6 literal */
    const char *close = memchr(p, ']', (size_t)(auth_end - p));
    if (!close) return PS_EINVAL;
    u->host = p + 1;
    u->host_len = (size_t)(close - p - 1);
    for (const char *q = u->host; q < close; q++)
      if (!is_alnum(*q) && *q != ':' && *q != '.' && *q != '%') return PS_EINVAL;
    p = close + 1;
  } else {
    u->host = p;
    while (p < auth_end && *p != ':') {
      if (!is_alnum(*p) && *p != '-' && *p != '.' && *p != '_') return PS_EINVAL;
      p++;
    }
    u->host_len = (size_t)(p - u->host);
  }
  if (u->host_len == 0 || u->host_len > CLIENT_MAX_HOST) return PS_EINVAL;
  if (p < auth_end) {
    if (*p++ != ':') return PS_EINVAL;
    if (p < auth_end) { /* "host:" keeps the default port */
      unsigned port = 0;
      for (; p < auth_end; p++) {
        if (*p < '0' || *p > '9' || port > 65535) return PS_EINVAL;
        port = port * 10 + (unsigned)(*p - '0');
      }
      if (port == 0 || port > 65535) return PS_EINVAL;
      u->port = port;
    }
  }
  u->target = auth_end;
  u->target_len = strcspn(auth_end, "#");
  return 0;
}

/* "scheme://host:port", lower-cased, into out (at least CLIENT_MAX_HOST + 20 bytes). */
static void origin_of(const ps__url_t *u, char *out) {
  char *o = out;
  memcpy(o, u->https ? "https://" : "http://", u->https ? 8 : 7);
  o += u->https ? 8 : 7;
  int v6 = memchr(u->host, ':', u->host_len) != NULL;
  if (v6) *o++ = '[';
  for (size_t i = 0; i < u->host_len; i++) {
    char ch = u->host[i];
    *o++ = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
  }
  if (v6) *o++ = ']';
  snprintf(o, 8, ":%u", u->port);
}

/* ---- circuit breaker ---- */

/* The breaker of origin, created closed on first use. */
static breaker_t *breaker_for(ps_client_t *c, const char *origin) {
  for (breaker_t *b = c->breakers; b; b = b->next)
    if (strcmp(b->origin, origin) == 0) return b;
  breaker_t *b = ps_calloc(1, sizeof(*b));
  b->origin = ps_strdup(origin);
  b->state = BREAKER_CLOSED;
  b->next = c->breakers;
  c->breakers = b;
  return b;
}

/* Whether an attempt may go out now. An open breaker whose interval has passed turns
 * half-open and lets this one call through as the trial: a client belongs to one thread and
 * calls are synchronous, so no second call can slip in while the trial runs. */
static int breaker_allow(const ps_client_t *c, breaker_t *b, int64_t now) {
  if (b->state != BREAKER_OPEN) return 1;
  if (now - b->opened_at_ms < c->opts.breaker_open_ms) return 0;
  b->state = BREAKER_HALF_OPEN;
  return 1;
}

static void breaker_record(const ps_client_t *c, breaker_t *b, int failed, int64_t now) {
  if (!failed) {
    b->failures = 0;
    b->state = BREAKER_CLOSED;
    return;
  }
  b->failures++;
  if (b->state == BREAKER_HALF_OPEN || b->failures >= c->opts.breaker_failures) {
    b->state = BREAKER_OPEN;
    b->opened_at_ms = now;
  }
}

/* ---- one attempt through libcurl (https://) ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
  ps_client_t *c = userdata;
  size_t n = size * nmemb;
  if (n > PS__CLIENT_MAX_BODY - c->len) {
    c->too_big = 1;
    return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
  }
  if (c->len + n + 1 > c->cap) {
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + n + 1) cap *= 2;
    c->buf = ps_realloc(c->buf, cap);
    c->cap = cap;
  }
  memcpy(c->buf + c->len, data, n);
  c->len += n;
  return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata) {
  ps_client_t *c = userdata;
  size_t n = size * nmemb;
  if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) c->retry_after[0] = '\0'; /* a new answer */
  if (n > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
    const char *v = data + 12, *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    size_t len = (size_t)(end - v);
    if (len >= sizeof(c->retry_after)) len = sizeof(c->retry_after) - 1;
    memcpy(c->retry_after, v, len);
    c->retry_after[len] = '\0';
  }
  return n;
}

static int method_has_body(const char *m) {
  return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

/* Runs one request with at most timeout_ms; fills *ans on an answer. */
static int attempt_curl(ps_client_t *c, const ps_call_t *call, struct curl_slist *headers,
                        long timeout_ms, ps__answer_t *ans) {
  CURL *e = c->easy;
  /* Reset forgets the previous call's options but keeps the live connections. */
  curl_easy_reset(e);
  c->len = 0;
  c->too_big = 0;
  c->retry_after[0] = '\0';
  c->errbuf[0] = '\0';
  memset(ans, 0, sizeof(*ans));

  curl_easy_setopt(e, CURLOPT_URL, call->url);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM timeouts in a threaded server */
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
  long connect_ms = c->opts.connect_timeout_ms < timeout_ms ? c->opts.connect_timeout_ms
                                                            : timeout_ms;
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
  curl_easy_setopt(e, CURLOPT_MAXCONNECTS, (long)PS__CLIENT_MAX_CONNECTS);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "polyshop/1");
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);

  const char *m = call->method;
  if (call->body || method_has_body(m)) {
    /* POSTFIELDS with an explicit size sends Content-Length (0 for an empty PUT/POST). */
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(call->body ? call->body_len : 0));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body ? call->body : "");
    if (strcmp(m, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
  } else if (strcmp(m, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (strcmp(m, "GET") == 0) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
  }

  CURLcode rc = curl_easy_perform(e);
  switch (rc) {
  case CURLE_OK: {
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &ans->status);
    ans->body = c->buf ? c->buf : "";
    ans->body_len = c->len;
    char *ct = NULL; /* owned by the handle until its next transfer */
    if (curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct) {
      ans->content_type = ct;
      ans->content_type_len = strlen(ct);
    }
    if (c->retry_after[0]) {
      ans->retry_after = c->retry_after;
      ans->retry_after_len = strlen(c->retry_after);
    }
    return 0;
  }
  case CURLE_OPERATION_TIMEDOUT:
    return PS_ETIMEOUT;
  case CURLE_WRITE_ERROR:
    return c->too_big ? PS_ETOOBIG : PS_EUNAVAIL;
  case CURLE_URL_MALFORMAT:
  case CURLE_UNSUPPORTED_PROTOCOL:
    return PS_EINVAL;
  default:
    /* Refused, unreachable, reset, nothing received, TLS failure: the target is not
     * answering properly, which is what the breaker and the retries care about. */
    return PS_EUNAVAIL;
  }
}

/* libcurl's header list from ours; in the arena except the list cells. */
static int curl_headers(const ps_call_t *call, ps_arena_t *a, const ps__header_t *hd,
                        size_t nh, struct curl_slist **out) {
  struct curl_slist *h = NULL, *l;
  for (size_t i = 0; i <= nh + 1; i++) {
    const char *line;
    if (i < nh)
      line = hd[i].name ? ps_arena_sprintf(a, "%s: %s", hd[i].name, hd[i].value) : hd[i].value;
    else if (i == nh)
      /* No "Expect: 100-continue" round trip before bodies: our services answer at once. */
      line = "Expect:";
    else if (!call->body && method_has_body(call->method))
      line = "Content-Type:"; /* drop curl's form-urlencoded default */
    else
      continue;
    if (!(l = curl_slist_append(h, line))) {
      curl_slist_free_all(h);
      return PS_ENOMEM;
    }
    h = l;
  }
  *out = h;
  return 0;
}

/* ---- calls ---- */

static int is_idempotent(const ps_call_t *call) {
  static const char *const methods[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"};
  if (call->idempotent || (call->idempotency_key && *call->idempotency_key)) return 1;
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
    if (strcmp(call->method, methods[i]) == 0) return 1;
  return 0;
}

static int valid_method(const char *m) {
  if (!*m) return 0;
  for (; *m; m++)
    if (*m < 'A' || *m > 'Z') return 0;
  return 1;
}

/* Appends "name: value"; refuses values that would split the header block. */
static int add_header(ps__header_t *hd, size_t *nh, const char *name, const char *value) {
  if (strpbrk(value, "\r\n")) return PS_EINVAL;
  hd[(*nh)++] = (ps__header_t){name, value};
  return 0;
}

/* The call's headers, checked, into hd (room for 4 + the extra lines). */
static int build_headers(const ps_call_t *call, ps__header_t *hd, size_t *nh) {
  int rc = 0;
  *nh = 0;
  if (call->request_id && *call->request_id)
    rc = add_header(hd, nh, "X-Request-Id", call->request_id);
  if (!rc && call->traceparent && *call->traceparent)
    rc = add_header(hd, nh, "traceparent", call->traceparent);
  if (!rc && call->idempotency_key && *call->idempotency_key)
    rc = add_header(hd, nh, "Idempotency-Key", call->idempotency_key);
  if (!rc && call->body)
    rc = add_header(hd, nh, "Content-Type",
                    call->content_type ? call->content_type : "application/json");
  for (const char *const *x = call->headers; !rc && x && *x; x++) {
    if (strpbrk(*x, "\r\n") || !strchr(*x, ':')) return PS_EINVAL;
    hd[(*nh)++] = (ps__header_t){NULL, *x};
  }
  return rc;
}

/* Delay before retry number n (0-based): base * 2^n, half of it fixed and half random
 * ("equal jitter"), so a fleet of callers does not retry in lockstep. */
static long backoff_ms(const ps_client_t *c, int n) {
  long d = c->opts.backoff_base_ms;
  for (int i = 0; i < n && d < CLIENT_MAX_BACKOFF_MS; i++) d *= 2;
  if (d > CLIENT_MAX_BACKOFF_MS) d = CLIENT_MAX_BACKOFF_MS;
  return d / 2 + (long)randombytes_uniform((uint32_t)(d / 2) + 1);
}

int ps_client_call(ps_client_t *c, ps_arena_t *a, const ps_call_t *call, ps_response_t *resp) {
  memset(resp, 0, sizeof(*resp));
  if (!c || !call || !call->url || !call->method || !valid_method(call->method)) return PS_EINVAL;
  ps__url_t u;
  if (parse_url(call->url, &u)) return PS_EINVAL;
  char origin[CLIENT_MAX_HOST + 24];
  origin_of(&u, origin);
  breaker_t *b = breaker_for(c, origin);

  int64_t start = ps__client_now_ms();
  if (!breaker_allow(c, b, start)) return PS_EBREAKER;

  size_t nx = 0;
  for (const char *const *x = call->headers; x && *x; x++) nx++;
  ps__header_t stack_hd[CLIENT_STACK_HEADERS];
  ps__header_t *hd = nx + 4 <= CLIENT_STACK_HEADERS
                         ? stack_hd
                         : ps_arena_alloc(a, (nx + 4) * sizeof(ps__header_t));
  size_t nh;
  int rc = build_headers(call, hd, &nh);
  if (rc) return rc;
  /* userinfo (basic auth in the URL) is left to libcurl, like TLS. */
  int use_curl = u.https || u.userinfo;
  struct curl_slist *curl_hd = NULL;
  if (use_curl && (rc = curl_headers(call, a, hd, nh, &curl_hd))) return rc;

  long timeout = call->timeout_ms > 0 ? call->timeout_ms : c->opts.timeout_ms;
  int64_t deadline = start + timeout;
  int idempotent = is_idempotent(call);
  int with_length = call->body || method_has_body(call->method);
  ps__answer_t ans;
  for (int n = 0;; n++) {
    int64_t now = ps__client_now_ms();
    if (use_curl)
      rc = attempt_curl(c, call, curl_hd, (long)(deadline - now > 1 ? deadline - now : 1), &ans);
    else
      rc = ps__h1_request(c->h1, &u, call->method, hd, nh, call->body,
                          call->body ? call->body_len : 0, with_length, deadline,
                          now + c->opts.connect_timeout_ms, &ans);
    int transport = rc == PS_ETIMEOUT || rc == PS_EUNAVAIL;
    int failed = transport || (rc == 0 && ans.status >= 500);
    now = ps__client_now_ms();
    breaker_record(c, b, failed, now);
    int retryable =
        transport || (rc == 0 && (ans.status == 502 || ans.status == 503 || ans.status == 504));
    if (!idempotent || !retryable || n >= c->opts.max_retries) break;
    /* A breaker that just opened, or a trial that failed, ends the retries too. */
    if (b->state != BREAKER_CLOSED) break;
    long delay = backoff_ms(c, n);
    if (now + delay >= deadline) break; /* no time left for another try */
    sleep_ms(delay);
  }
  curl_slist_free_all(curl_hd);

  if (rc == 0) {
    resp->status = ans.status;
    resp->body = ps_arena_strndup(a, ans.body ? ans.body : "", ans.body_len);
    resp->body_len = ans.body_len;
    if (ans.content_type)
      resp->content_type = ps_arena_strndup(a, ans.content_type, ans.content_type_len);
    if (ans.retry_after)
      resp->retry_after = ps_arena_strndup(a, ans.retry_after, ans.retry_after_len);
  }
  if (c->cap > PS__CLIENT_KEEP_BUF) { /* one huge answer should not pin its memory forever */
    ps_free(c->buf);
    c->buf = NULL;
    c->cap = 0;
  }
  c->len = 0;
  return rc;
}

/* ---- W3C trace context ---- */

static int is_lower_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

static int all_zero(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != '0') return 0;
  return 1;
}

/* version "-" trace-id(32) "-" parent-id(16) "-" flags(2), lower-case hex; version ff and
 * all-zero ids are invalid; a future version may append "-..." fields, version 00 may not. */
static int traceparent_valid(const char *tp) {
  size_t len = strnlen(tp, 512);
  if (len < 55) return 0;
  if (!is_lower_hex(tp, 2) || memcmp(tp, "ff", 2) == 0 || tp[2] != '-') return 0;
  if (!is_lower_hex(tp + 3, 32) || all_zero(tp + 3, 32) || tp[35] != '-') return 0;
  if (!is_lower_hex(tp + 36, 16) || all_zero(tp + 36, 16) || tp[52] != '-') return 0;
  if (!is_lower_hex(tp + 53, 2)) return 0;
  if (len == 55) return 1;
  return memcmp(tp, "00", 2) != 0 && tp[55] == '-';
}

static void random_hex(char *out, size_t nbytes) {
  unsigned char raw[16];
  do {
    randombytes_buf(raw, nbytes);
  } while (sodium_is_zero(raw, nbytes)); /* all-zero ids are invalid */
  sodium_bin2hex(out, nbytes * 2 + 1, raw, nbytes);
}

char *ps_trace_child(ps_arena_t *a, const char *incoming_traceparent) {
  ensure_global(); /* libsodium's random generator */
  char trace[33], span[17];
  if (incoming_traceparent && traceparent_valid(incoming_traceparent)) {
    memcpy(trace, incoming_traceparent + 3, 32);
    trace[32] = '\0';
  } else {
    random_hex(trace, 16);
  }
  random_hex(span, 8);
  return ps_arena_sprintf(a, "00-%s-%s-01", trace, span);
}
