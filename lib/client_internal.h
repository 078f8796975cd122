/* client_internal.h - between client.c (the front of client.h: URL checks, headers, retries,
 * breaker) and client_h1.c, our own blocking HTTP/1.1 transport for http:// URLs (libcurl
 * stays for https://). Not a public header. */
#ifndef POLYSHOP_CLIENT_INTERNAL_H
#define POLYSHOP_CLIENT_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

enum {
  PS__CLIENT_MAX_BODY = 64 << 20, /* a bigger answer fails the call with PS_ETOOBIG */
  PS__CLIENT_KEEP_BUF = 1 << 20,  /* receive buffer kept between calls up to this size */
  PS__CLIENT_MAX_CONNECTS = 16,   /* connections kept alive per client, across origins */
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

/* An answer. The pointers live in the transport's buffer until its next request. */
typedef struct {
  long status;
  const char *body;
  size_t body_len;
  const char *content_type;  /* NULL when absent */
  size_t content_type_len;
  const char *retry_after;   /* NULL when absent */
  size_t retry_after_len;
} ps__answer_t;

typedef struct ps__h1 ps__h1_t;

/* The HTTP/1.1 transport of one client (one thread): kept-alive connections per host:port and
 * a receive buffer. ps__h1_free closes the connections. */
ps__h1_t *ps__h1_new(void);
void ps__h1_free(ps__h1_t *h);

/* Sends one request to u's host:port and reads the answer into *ans, by deadline_ms
 * (CLOCK_MONOTONIC milliseconds); a new connection must be made by connect_deadline_ms.
 * with_length: send Content-Length (body_len, may be 0). A kept-alive connection that turns
 * out closed before any byte of the answer is replaced by a fresh one once, transparently.
 * Returns 0 on an answer, or PS_ETIMEOUT, PS_EUNAVAIL, PS_ETOOBIG. */
int ps__h1_request(ps__h1_t *h, const ps__url_t *u, const char *method,
                   const ps__header_t *headers, size_t nheaders, const char *body,
                   size_t body_len, int with_length, int64_t deadline_ms,
                   int64_t connect_deadline_ms, ps__answer_t *ans);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t ps__client_now_ms(void);

#endif
