/* redis.h - what every Redis adapter shares (library polyshop_redis): one connection per
 * thread opened from a redis:// URL with timeouts, reconnecting after a failure, and replies
 * mapped to PS_E* codes. */
#ifndef POLYSHOP_REDIS_H
#define POLYSHOP_REDIS_H
#include <hiredis/hiredis.h>

typedef struct {
  redisContext *ctx;  /* NULL or broken until the next command reconnects */
  char host[256];
  int port;
  int db;             /* SELECTed after each connect when not 0 */
  char user[128];     /* ACL user ("" for the default user) */
  char password[256]; /* "" for none; sent with AUTH after each connect */
  int timeout_ms;     /* connect and per-command timeout */
} ps_redis_t;

/* Parses url, "redis://[[user]:password@]host[:port][/db]" (port 6379, db 0 by default;
 * user and password percent-decoded), into r without connecting. Returns 0 or PS_ECONFIG. */
int ps_redis_parse_url(ps_redis_t *r, const char *url);

/* Parses url (see ps_redis_parse_url) and connects with a connect and command timeout of
 * timeout_ms, authenticating and selecting the database. Returns 0, PS_ECONFIG (bad URL),
 * PS_EAUTH (the server refused the password) or PS_EUNAVAIL (no server; logged with the
 * password hidden); on failure r holds nothing. */
int ps_redis_open(ps_redis_t *r, const char *url, int timeout_ms);

/* Closes the connection; safe on a zeroed or failed r. */
void ps_redis_close(ps_redis_t *r);

/* Runs one command (hiredis format, e.g. "GET ps:%s"), reconnecting first when the last
 * command broke the connection. Returns the reply, which the caller frees with
 * freeReplyObject, with *rc 0; or NULL with *rc PS_EUNAVAIL (no connection, timeout) or
 * PS_ESTORE (the server answered an error: logged). */
redisReply *ps_redis_command(ps_redis_t *r, int *rc, const char *fmt, ...);

/* The PS_E* code of a reply: 0 for any answer but an error; a Redis error logs and gives
 * PS_ESTORE (NOSCRIPT, WRONGTYPE, ...), or PS_EAUTH for NOAUTH/WRONGPASS; NULL (no answer)
 * gives PS_EUNAVAIL. */
int ps_redis_reply_err(const redisReply *reply);

#endif
