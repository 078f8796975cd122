/* client.c - the one HTTP client between services (see client.h): a libcurl easy handle kept
 * per client so its connection cache gives keep-alive reuse, a deadline on every call,
 * retries with exponential backoff and jitter for idempotent calls only, a circuit breaker
 * per origin, and W3C traceparent propagation. */
#include "polyshop/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"

enum {
  CLIENT_MAX_BODY = 64 << 20,       /* a bigger answer fails the call with PS_ETOOBIG */
  CLIENT_KEEP_BUF = 1 << 20,        /* receive buffer kept between calls up to this size */
  CLIENT_MAX_BACKOFF_MS = 10000,
  CLIENT_MAX_CONNECTS = 16,         /* connections kept alive per client, across origins */
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
  CURL *easy; /* reused by every call so its live connections are reused */
  breaker_t *breakers;
  /* The answer being received; the buffer is reused between calls. */
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

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
  while (c->breakers) {
    breaker_t *b = c->breakers;
    c->breakers = b->next;
    ps_free(b->origin);
    ps_free(b);
  }
  ps_free(c->buf);
  ps_free(c);
}

/* ---- circuit breaker ---- */

/* "scheme://host:port" of an absolute http(s) URL, lower-cased, owned by the caller; NULL
 * when the URL is not one. */
static char *origin_of(const char *url) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL, *origin = NULL;
  if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) goto out;
  if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) goto out;
  if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) goto out;
  if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) goto out;
  if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) goto out;
  size_t n = strlen(scheme) + strlen(host) + strlen(port) + 5;
  origin = ps_malloc(n);
  snprintf(origin, n, "%s://%s:%s", scheme, host, port);
  for (char *p = origin; *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
out:
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return origin;
}

/* The breaker of origin, created closed on first use; takes ownership of origin. */
static breaker_t *breaker_for(ps_client_t *c, char *origin) {
  for (breaker_t *b = c->breakers; b; b = b->next) {
    if (strcmp(b->origin, origin) == 0) {
      ps_free(origin);
      return b;
    }
  }
  breaker_t *b = ps_calloc(1, sizeof(*b));
  b->origin = origin;
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

/* ---- one attempt ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
  ps_client_t *c = userdata;
  size_t n = size * nmemb;
  if (n > CLIENT_MAX_BODY - c->len) {
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

/* Runs one request with at most timeout_ms; fills *status on an answer. */
static int attempt(ps_client_t *c, const ps_call_t *call, struct curl_slist *headers,
                   long timeout_ms, long *status) {
  CURL *e = c->easy;
  /* Reset forgets the previous call's options but keeps the live connections. */
  curl_easy_reset(e);
  c->len = 0;
  c->too_big = 0;
  c->retry_after[0] = '\0';
  c->errbuf[0] = '\0';
  *status = 0;

  curl_easy_setopt(e, CURLOPT_URL, call->url);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM timeouts in a threaded server */
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
  long connect_ms = c->opts.connect_timeout_ms < timeout_ms ? c->opts.connect_timeout_ms
                                                            : timeout_ms;
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
  curl_easy_setopt(e, CURLOPT_MAXCONNECTS, (long)CLIENT_MAX_CONNECTS);
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
  case CURLE_OK:
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    return 0;
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

/* Appends "Name: value"; refuses values that would split the header block. */
static int add_header(struct curl_slist **list, ps_arena_t *a, const char *name,
                      const char *value) {
  if (strpbrk(value, "\r\n")) return PS_EINVAL;
  struct curl_slist *l = curl_slist_append(*list, ps_arena_sprintf(a, "%s: %s", name, value));
  if (!l) return PS_ENOMEM;
  *list = l;
  return 0;
}

static int build_headers(const ps_call_t *call, ps_arena_t *a, struct curl_slist **out) {
  struct curl_slist *h = NULL;
  int rc = 0;
  if (call->request_id && *call->request_id)
    rc = add_header(&h, a, "X-Request-Id", call->request_id);
  if (!rc && call->traceparent && *call->traceparent)
    rc = add_header(&h, a, "traceparent", call->traceparent);
  if (!rc && call->idempotency_key && *call->idempotency_key)
    rc = add_header(&h, a, "Idempotency-Key", call->idempotency_key);
  if (!rc && call->body)
    rc = add_header(&h, a, "Content-Type",
                    call->content_type ? call->content_type : "application/json");
  else if (!rc && method_has_body(call->method))
    rc = add_header(&h, a, "Content-Type", ""); /* drop curl's form-urlencoded default */
  /* No "Expect: 100-continue" round trip before bodies: our services answer at once. */
  if (!rc) rc = add_header(&h, a, "Expect", "");
  for (const char *const *x = call->headers; !rc && x && *x; x++) {
    if (strpbrk(*x, "\r\n") || !strchr(*x, ':')) {
      rc = PS_EINVAL;
      break;
    }
    struct curl_slist *l = curl_slist_append(h, *x);
    if (!l) rc = PS_ENOMEM;
    else h = l;
  }
  if (rc) {
    curl_slist_free_all(h);
    return rc;
  }
  *out = h;
  return 0;
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
  char *origin = origin_of(call->url);
  if (!origin) return PS_EINVAL;
  breaker_t *b = breaker_for(c, origin);

  int64_t start = now_ms();
  if (!breaker_allow(c, b, start)) return PS_EBREAKER;

  struct curl_slist *headers = NULL;
  int rc = build_headers(call, a, &headers);
  if (rc) return rc;

  long timeout = call->timeout_ms > 0 ? call->timeout_ms : c->opts.timeout_ms;
  int64_t deadline = start + timeout;
  int idempotent = is_idempotent(call);
  long status = 0;
  for (int n = 0;; n++) {
    rc = attempt(c, call, headers, (long)(deadline - now_ms() > 1 ? deadline - now_ms() : 1),
                 &status);
    int transport = rc == PS_ETIMEOUT || rc == PS_EUNAVAIL;
    int failed = transport || (rc == 0 && status >= 500);
    int64_t now = now_ms();
    breaker_record(c, b, failed, now);
    int retryable = transport || (rc == 0 && (status == 502 || status == 503 || status == 504));
    if (!idempotent || !retryable || n >= c->opts.max_retries) break;
    /* A breaker that just opened, or a trial that failed, ends the retries too. */
    if (b->state != BREAKER_CLOSED) break;
    long delay = backoff_ms(c, n);
    if (now + delay >= deadline) break; /* no time left for another try */
    sleep_ms(delay);
  }
  curl_slist_free_all(headers);

  if (rc == 0) {
    resp->status = status;
    resp->body = ps_arena_strndup(a, c->buf ? c->buf : "", c->len);
    resp->body_len = c->len;
    char *ct = NULL;
    if (curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
      resp->content_type = ps_arena_strdup(a, ct);
    if (c->retry_after[0]) resp->retry_after = ps_arena_strdup(a, c->retry_after);
  }
  if (c->cap > CLIENT_KEEP_BUF) { /* one huge answer should not pin its memory forever */
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
