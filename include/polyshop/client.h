/* client.h - the one way a service calls another (or any HTTP API): keep-alive reuse, a
 * deadline on every call, retries with exponential backoff for idempotent calls only, and a
 * circuit breaker per target, passing X-Request-Id and W3C traceparent.
 *
 * Nothing in it blocks an event loop. A client lives on one libevent loop and every call is a
 * set of events on it: http:// calls go over our own HTTP/1.1 on bufferevents (a keep-alive
 * pool per host:port: up to 32 idle connections kept, up to 64 open, further calls queue in
 * order; one request per connection at a time); https:// calls (Stripe) and URLs with
 * userinfo go through libcurl's multi interface driven by the same loop. The deadline, the
 * connect timeout and the backoff between retries are timers. Names: numeric addresses and
 * "localhost" (127.0.0.1, then ::1) are used as they are; any other name is looked up with
 * libevent's evdns (one resolver per client, reading /etc/resolv.conf and /etc/hosts once, on
 * the first such name), each time a new connection is opened, within the connect timeout.
 * No cache of our own: kept-alive connections make lookups rare.
 *
 * A ps_client_t belongs to the thread that runs its loop. ps_client_new_loop makes one on a
 * service's loop for ps_client_start; ps_client_new makes one on a private loop for the
 * blocking ps_client_call, for threads that are not event loops (workers, tests, tools).
 * Breaker state is per client. The process should ignore SIGPIPE (every service does): a
 * request too big for the socket buffer is finished by libevent, whose writes to a connection
 * the server just reset would otherwise raise it.
 */
#ifndef POLYSHOP_CLIENT_H
#define POLYSHOP_CLIENT_H
#include <stddef.h>
#include <stdint.h>

#include "polyshop/arena.h"

struct event_base;

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
  char *body;                /* NUL-terminated, in the arena given with the call */
  size_t body_len;
  char *content_type;        /* in the arena, may be NULL */
  char *retry_after;         /* in the arena, may be NULL */
} ps_response_t;

/* Fills opts with the defaults above. */
void ps_client_opts_default(ps_client_opts_t *opts);

/* Creates a client whose calls run on base, the loop of the calling thread (opts NULL: the
 * defaults; zero or negative values also mean the default, except max_retries 0 which
 * disables retries). The caller owns it and frees it with ps_client_free on that thread, after
 * or instead of the loop's last turn; base must outlive it. Initialises libcurl for the
 * process on first use. Returns NULL when base is NULL or libcurl cannot be initialised. */
ps_client_t *ps_client_new_loop(struct event_base *base, const ps_client_opts_t *opts);

/* Creates a client on a private loop of its own, for ps_client_call from a thread that is not
 * an event loop. Same opts rules; NULL only when libcurl or the loop cannot be made. */
ps_client_t *ps_client_new(const ps_client_opts_t *opts);

/* Frees the client and closes its connections. Calls still in flight end first, inside this
 * function: each callback is called exactly once, with PS_ECANCELED and an empty response
 * (start no new call on this client from there: it returns PS_ECANCELED). Must not be called
 * from one of this client's own callbacks. Nothing is left behind: pending name lookups are
 * released by the loop (a private loop is run here until they are). */
void ps_client_free(ps_client_t *c);

/* Releases libcurl's process-wide state (curl_global_cleanup). Optional; call it at most once,
 * at exit, after every client is freed, so LeakSanitizer stays quiet. */
void ps_client_global_cleanup(void);

/* The callback of ps_client_start: called once, on the client's loop, never from inside
 * ps_client_start. rc 0: an HTTP answer arrived (any status, see resp->status); otherwise
 * PS_ETIMEOUT, PS_EUNAVAIL, PS_EBREAKER, PS_ETOOBIG or PS_ECANCELED (see ps_client_start) and
 * resp is zeroed. resp is never NULL; it and its strings live in the arena given to
 * ps_client_start. The callback may start other calls on the client. */
typedef void (*ps_client_cb)(int rc, ps_response_t *resp, void *arg);

/* Starts a call and returns at once: 0, after which cb runs exactly once, later, on the
 * client's loop; or PS_EINVAL (not an absolute http(s) URL, a bad method, a header value with
 * CR/LF, c/a/cb NULL) or PS_ECANCELED (the client is being freed), and then cb is never
 * called. The call struct and its strings are copied: they may go as soon as this returns.
 * The arena a must live until cb has run (the response goes there).
 *
 * Outcomes given to cb: 0 with an answer; PS_ETIMEOUT (the call's deadline passed);
 * PS_EUNAVAIL (connection refused or broken, no proper answer); PS_EBREAKER (breaker open for
 * this scheme://host:port: no attempt made, no connection opened); PS_ETOOBIG (answer body
 * over 64 MiB); PS_ECANCELED (ps_client_free ended it).
 *
 * Timeouts: timeout_ms (call->timeout_ms or opts) bounds the whole call, retries and their
 * waits included; each new connection is resolved and connected within connect_timeout_ms.
 * Retries: only idempotent calls (see ps_call_t), up to max_retries more attempts, after a
 * transport error or a 502/503/504, waiting backoff_base_ms * 2^n with jitter (half fixed,
 * half random) on a timer, and never past the deadline. The last attempt's outcome is given.
 * A kept-alive connection found closed before any byte of the answer is not a failed attempt:
 * the request never reached the server, and goes once more on a fresh connection, whatever
 * the method.
 * Breaker: every attempt is recorded; a transport error or any 5xx is a failure, any other
 * answer a success. breaker_failures consecutive failures open it (calls in flight then stop
 * retrying); after breaker_open_ms the next call is let through as the single trial
 * (half-open) without retries, and every other call meanwhile gets PS_EBREAKER: success
 * closes the breaker, failure opens it for another interval. */
int ps_client_start(ps_client_t *c, ps_arena_t *a, const ps_call_t *call, ps_client_cb cb,
                    void *arg);

/* The same call, blocking: runs the client's private loop until the call ends and returns its
 * outcome (the rc the callback would get; PS_EINVAL as above, and for a client made by
 * ps_client_new_loop, whose loop belongs to its thread). resp is zeroed first; on 0 its
 * strings live in the arena. It waits up to the call's deadline: on a thread that serves
 * requests it holds that thread's loop meanwhile (the order service still does, until its
 * saga moves to ps_client_start); new code on a loop uses ps_client_start. */
int ps_client_call(ps_client_t *c, ps_arena_t *a, const ps_call_t *call, ps_response_t *resp);

/* Builds the traceparent to send on an outgoing call from the incoming one (NULL: start a new
 * trace): same trace id, a new span id, "00-<trace>-<span>-01". In the arena. */
char *ps_trace_child(ps_arena_t *a, const char *incoming_traceparent);

#endif
