/* client.h - the one way a service calls another (or any HTTP API): keep-alive reuse, a
 * timeout on every call, retries with exponential backoff for idempotent calls only, and a
 * circuit breaker per target, passing X-Request-Id and W3C traceparent. http:// calls go over
 * our own small blocking HTTP/1.1 transport (a few kept-alive connections per host:port, two
 * syscalls per call on a live one); https:// calls (Stripe) and URLs with userinfo go through
 * libcurl.
 *
 * A ps_client_t is owned by one thread (it holds live connections and a curl handle); each
 * event-loop thread of a service creates its own. Breaker state is per client.
 */
#ifndef POLYSHOP_CLIENT_H
#define POLYSHOP_CLIENT_H
#include <stddef.h>
#include <stdint.h>

#include "polyshop/arena.h"

typedef struct ps_client ps_client_t;

typedef struct {
  long timeout_ms;           /* whole call, default 2000 */
  long connect_timeout_ms;   /* default 500 */
  int max_retries;           /* for idempotent calls, default 2 */
  long backoff_base_ms;      /* first retry delay, doubled each time, default 50 */
  int breaker_failures;      /* consecutive failures that open the breaker, default 5 */
  long breaker_open_ms;      /* how long it stays open before one trial call, default 5000 */
} ps_client_opts_t;

typedef struct {
  const char *method;        /* "GET", "POST", ... */
  const char *url;           /* absolute */
  const char *body;          /* may be NULL */
  size_t body_len;
  const char *content_type;  /* default "application/json" when body is set */
  const char *const *headers;/* extra "Name: value" lines, NULL-terminated, may be NULL */
  const char *request_id;    /* sent as X-Request-Id when set */
  const char *traceparent;   /* sent as traceparent when set (see ps_trace_child) */
  int idempotent;            /* retry on transport errors and 502/503/504 only when set;
                                GET/HEAD/PUT/DELETE are idempotent by default */
  const char *idempotency_key; /* sent as Idempotency-Key; makes a POST retryable */
  long timeout_ms;           /* deadline of this call, retries included; 0: opts.timeout_ms */
} ps_call_t;

typedef struct {
  long status;               /* HTTP status, 0 when no answer */
  char *body;                /* NUL-terminated, in the arena given to ps_client_call */
  size_t body_len;
  char *content_type;        /* in the arena, may be NULL */
  char *retry_after;         /* in the arena, may be NULL */
} ps_response_t;

/* Fills opts with the defaults above. */
void ps_client_opts_default(ps_client_opts_t *opts);

/* Creates a client (opts NULL: the defaults; zero or negative values also mean the default,
 * except max_retries 0 which disables retries). The caller owns it and frees it with
 * ps_client_free, which closes its kept-alive connections. Initialises libcurl for the process
 * on first use. Returns NULL only when libcurl cannot be initialised. */
ps_client_t *ps_client_new(const ps_client_opts_t *opts);
void ps_client_free(ps_client_t *c);

/* Releases libcurl's process-wide state (curl_global_cleanup). Optional; call it at most once,
 * at exit, after every client is freed, so LeakSanitizer stays quiet. */
void ps_client_global_cleanup(void);

/* Performs a call. Returns 0 when an HTTP answer arrived (any status, see resp->status), or
 * PS_ETIMEOUT (the call's deadline passed), PS_EUNAVAIL (connection refused or broken, no
 * proper answer), PS_EBREAKER (breaker open for this scheme://host:port: the call was not
 * attempted), PS_EINVAL (not an absolute http(s) URL, a bad method, a header value with CR/LF),
 * PS_ETOOBIG (answer body over 64 MiB). resp is zeroed first; on 0 its strings live in the
 * arena; the "Name: value" header lines are copied, so call may be freed afterwards.
 *
 * Timeouts: timeout_ms (call->timeout_ms or opts) bounds the whole call, retries and their
 * waits included; each attempt connects within connect_timeout_ms.
 * Retries: only idempotent calls (see ps_call_t), up to max_retries more attempts, after a
 * transport error or a 502/503/504, waiting backoff_base_ms * 2^n with jitter (half fixed,
 * half random), and never past the deadline. The last attempt's outcome is returned.
 * Breaker: every attempt is recorded; a transport error or any 5xx is a failure, any other
 * answer a success. breaker_failures consecutive failures open it; after breaker_open_ms the
 * next call is let through as the single trial (half-open) without retries: success closes
 * the breaker, failure opens it for another interval. */
int ps_client_call(ps_client_t *c, ps_arena_t *a, const ps_call_t *call, ps_response_t *resp);

/* Builds the traceparent to send on an outgoing call from the incoming one (NULL: start a new
 * trace): same trace id, a new span id, "00-<trace>-<span>-01". In the arena. */
char *ps_trace_child(ps_arena_t *a, const char *incoming_traceparent);

#endif
