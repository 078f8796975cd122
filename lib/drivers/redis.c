/* redis.c - the Redis driver library (polyshop_redis, see redis.h): redis:// URLs,
 * connections with timeouts, AUTH and SELECT, reconnection, and replies as PS_E* codes. */
#include "polyshop/redis.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polyshop/error.h"
#include "polyshop/log.h"

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes the n bytes of s into out (size bytes). Returns 0 or PS_ECONFIG. */
static int decode(char *out, size_t size, const char *s, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= n) return PS_ECONFIG;
      int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
      if (hi < 0 || lo < 0) return PS_ECONFIG;
      c = (char)(hi * 16 + lo);
      i += 2;
    }
    if (k + 1 >= size || c == '\0') return PS_ECONFIG;
    out[k++] = c;
  }
  out[k] = '\0';
  return 0;
}

/* host[:port] or [v6][:port], ending at the end of s or at "/". */
static int parse_host(ps_redis_t *r, const char *h, const char **rest) {
  const char *end = h + strcspn(h, "/"), *hend, *colon;
  if (*h == '[') {
    hend = memchr(h, ']', (size_t)(end - h));
    if (!hend) return PS_ECONFIG;
    h++;
    colon = hend + 1 < end && hend[1] == ':' ? hend + 1 : NULL;
    if (!colon && hend + 1 != end) return PS_ECONFIG;
  } else {
    colon = memchr(h, ':', (size_t)(end - h));
    hend = colon ? colon : end;
  }
  if (hend == h || (size_t)(hend - h) >= sizeof(r->host)) return PS_ECONFIG;
  memcpy(r->host, h, (size_t)(hend - h));
  r->host[hend - h] = '\0';
  r->port = 6379;
  if (colon) {
    char *pend;
    long port = strtol(colon + 1, &pend, 10);
    if (pend != end || port <= 0 || port > 65535) return PS_ECONFIG;
    r->port = (int)port;
  }
  *rest = end;
  return 0;
}

int ps_redis_parse_url(ps_redis_t *r, const char *url) {
  memset(r, 0, sizeof(*r));
  if (!url || strncmp(url, "redis://", 8) != 0) return PS_ECONFIG;
  const char *h = url + 8, *at = strrchr(h, '@'), *rest;
  if (at) {
    const char *colon = memchr(h, ':', (size_t)(at - h));
    const char *uend = colon ? colon : at;
    if (decode(r->user, sizeof(r->user), h, (size_t)(uend - h))) return PS_ECONFIG;
    if (colon && decode(r->password, sizeof(r->password), colon + 1, (size_t)(at - colon - 1)))
      return PS_ECONFIG;
    h = at + 1;
  }
  if (parse_host(r, h, &rest)) return PS_ECONFIG;
  if (*rest == '/' && rest[1]) {
    char *end;
    long db = strtol(rest + 1, &end, 10);
    if (*end || db < 0 || db > 1000000) return PS_ECONFIG;
    r->db = (int)db;
  }
  return 0;
}

int ps_redis_reply_err(const redisReply *reply) {
  if (!reply) return PS_EUNAVAIL;
  if (reply->type != REDIS_REPLY_ERROR) return 0;
  if (strncmp(reply->str, "NOAUTH", 6) == 0 || strncmp(reply->str, "WRONGPASS", 9) == 0) {
    ps_log_warn("redis: %s", reply->str);
    return PS_EAUTH;
  }
  ps_log_warn("redis: %s", reply->str);
  return PS_ESTORE;
}

/* AUTH and SELECT on a fresh connection. */
static int session_setup(ps_redis_t *r) {
  redisReply *reply = NULL;
  int rc = 0;
  if (r->password[0]) {
    reply = r->user[0] ? redisCommand(r->ctx, "AUTH %s %s", r->user, r->password)
                       : redisCommand(r->ctx, "AUTH %s", r->password);
    rc = ps_redis_reply_err(reply);
    if (reply) freeReplyObject(reply);
  }
  if (!rc && r->db) {
    reply = redisCommand(r->ctx, "SELECT %d", r->db);
    rc = ps_redis_reply_err(reply);
    if (reply) freeReplyObject(reply);
  }
  return rc;
}

/* Connects when there is no healthy connection. Returns 0 or a PS_E* code. */
static int ensure(ps_redis_t *r) {
  if (r->ctx && !r->ctx->err) return 0;
  if (r->ctx) redisFree(r->ctx);
  struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
  r->ctx = redisConnectWithTimeout(r->host, r->port, tv);
  if (!r->ctx || r->ctx->err) {
    ps_log_warn("redis: cannot connect to %s:%d: %s", r->host, r->port,
                r->ctx ? r->ctx->errstr : "out of memory");
    if (r->ctx) redisFree(r->ctx);
    r->ctx = NULL;
    return PS_EUNAVAIL;
  }
  redisSetTimeout(r->ctx, tv);
  int rc = session_setup(r);
  if (rc) {
    redisFree(r->ctx);
    r->ctx = NULL;
  }
  return rc;
}

int ps_redis_open(ps_redis_t *r, const char *url, int timeout_ms) {
  if (ps_redis_parse_url(r, url)) return PS_ECONFIG;
  r->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
  int rc = ensure(r);
  if (rc) memset(r, 0, sizeof(*r)); /* no password left behind */
  return rc;
}

void ps_redis_close(ps_redis_t *r) {
  if (r->ctx) redisFree(r->ctx);
  r->ctx = NULL;
}

redisReply *ps_redis_command(ps_redis_t *r, int *rc, const char *fmt, ...) {
  if ((*rc = ensure(r))) return NULL;
  va_list ap;
  va_start(ap, fmt);
  redisReply *reply = redisvCommand(r->ctx, fmt, ap);
  va_end(ap);
  *rc = ps_redis_reply_err(reply);
  if (*rc && reply) {
    freeReplyObject(reply);
    reply = NULL;
  }
  return reply;
}
