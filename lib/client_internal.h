/* client_internal.h - between client.c (the front of client.h: URL and header checks, the
 * deadline, retries, breaker) and its two non-blocking transports on the client's event loop:
 * client_h1.c, our HTTP/1.1 on libevent bufferevents for http:// URLs, and client_curl.c,
 * libcurl's multi interface for https:// URLs and URLs with userinfo. Not a public header. */
#ifndef POLYSHOP_CLIENT_INTERNAL_H
#define POLYSHOP_CLIENT_INTERNAL_H
#include <curl/curl.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

enum {
  PS__CLIENT_MAX_BODY = 64 << 20, /* a bigger answer fails the call with PS_ETOOBIG */
  PS__CLIENT_KEEP_BUF = 1 << 20,  /* receive buffer kept on a connection up to this size */
  PS__CLIENT_MAX_IDLE = 32,       /* idle kept-alive connections per host:port */
  PS__CLIENT_MAX_OPEN = 64,       /* open connections per host:port; more attempts queue */
  PS__CLIENT_CURL_MAXCONNECTS = 16, /* libcurl's connection cache, across origins */
};

/* An absolute http(s) URL split in place (pointers into the URL, not NUL-terminated). */
typedef struct {
  int https;
  int userinfo;              /* "user:pw@" before the host: left to libcurl */
  const char *host;          /* without the brackets of an IPv6 literal */
  size_t host_len;
  const char *authority;     /* host[:port] as written (after any userinfo), for Host */
  size_t authority_len;
  unsigned port;             /* 80/443 when not written */
  const char *target;        /* path and query, without the fragment; may be empty */
  size_t target_len;
} ps__url_t;

/* One request header: "name: value", or when name is NULL a whole "Name: value" line given by
 * the caller. Already checked for CR/LF. */
typedef struct {
  const char *name;
  const char *value;
} ps__header_t;

/* An answer. The pointers live in the transport's buffers only during the done callback. */
typedef struct {
  long status;
  const char *body;
  size_t body_len;
  const char *content_type;  /* NULL when absent */
  size_t content_type_len;
  const char *retry_after;   /* NULL when absent */
  size_t retry_after_len;
} ps__answer_t;

/* How a transport reports one attempt: rc 0 with ans, or PS_ETIMEOUT (connect timeout),
 * PS_EUNAVAIL, PS_ETOOBIG (ans NULL). Always called from the loop, never from inside the
 * start function, at most once, never after a cancel. The callee may start new attempts. */
typedef void (*ps__done_cb)(void *arg, int rc, const ps__answer_t *ans);

/* ---- HTTP/1.1 on bufferevents (client_h1.c) ---- */

typedef struct ps__h1 ps__h1_t;

/* One attempt. The caller owns the storage and fills the first block; it must stay valid
 * until done is called or the attempt is cancelled. */
typedef struct ps__h1_req {
  const ps__url_t *u;
  const char *data; /* the whole request: head and body */
  size_t len;
  int is_head;
  long connect_timeout_ms; /* resolving and connecting a new connection */
  ps__done_cb done;
  void *arg;
  /* The transport's. */
  struct ps__h1_req *next; /* in its origin's wait queue */
  void *origin;
  void *conn;
  int fresh_only;
} ps__h1_req_t;

/* The transport of one client, on base: a keep-alive pool per host:port (up to
 * PS__CLIENT_MAX_IDLE idle, PS__CLIENT_MAX_OPEN open; attempts beyond queue in order).
 * ps__h1_free closes every connection; every attempt must be finished or cancelled first.
 * own_base: the base is private to the client and is run here until pending name lookups
 * are released. */
ps__h1_t *ps__h1_new(struct event_base *base);
void ps__h1_free(ps__h1_t *h, int own_base);

/* Starts r on a kept-alive connection of its host:port, a new one, or queues it. A kept-alive
 * connection found closed before any byte of the answer is replaced by a fresh one once,
 * transparently. The answer's framing: Content-Length, chunked or until close; 1xx skipped. */
void ps__h1_start(ps__h1_t *h, ps__h1_req_t *r);
/* Abandons r: done is not called; the connection it was on is closed. */
void ps__h1_cancel(ps__h1_t *h, ps__h1_req_t *r);

/* Builds the request head for u into *buf (grown with ps_realloc, capacity *cap); returns its
 * length. Extra lines replace our Host, User-Agent and Accept; an extra line with an empty
 * value is not sent (libcurl's rules). with_length: send Content-Length: body_len. */
size_t ps__h1_build_head(char **buf, size_t *cap, const ps__url_t *u, const char *method,
                         const ps__header_t *hd, size_t nh, size_t body_len, int with_length);

/* ---- libcurl multi on the same loop (client_curl.c) ---- */

typedef struct ps__curl ps__curl_t;
typedef struct ps__curl_req ps__curl_req_t;

ps__curl_t *ps__curl_new(struct event_base *base);
/* Every attempt must be finished or cancelled first. */
void ps__curl_free(ps__curl_t *m);

/* Starts one attempt of method on url (both copied) with body (may be NULL; not copied: it
 * must stay valid until done or cancel) and headers (owned by the caller, same lifetime).
 * Returns NULL when libcurl refuses it (then done is never called). */
ps__curl_req_t *ps__curl_start(ps__curl_t *m, const char *method, const char *url,
                               const char *body, size_t body_len, struct curl_slist *headers,
                               long timeout_ms, long connect_timeout_ms, ps__done_cb done,
                               void *arg);
void ps__curl_cancel(ps__curl_t *m, ps__curl_req_t *r);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t ps__client_now_ms(void);

#endif
