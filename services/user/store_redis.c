/* store_redis.c - sessions (refresh tokens) and login rate limits in Redis, so that every
 * replica of the user service sees the same sessions and counts the same attempts. Only the
 * refresh_* operations of store.h live here; accounts stay in the main store. Each atomic
 * step is one Lua script, so concurrent replicas never both use one token. */
#include <stdlib.h>
#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "polyshop/log.h"
#include "polyshop/redis.h"
#include "store.h"

typedef struct {
  user_store_t base;
  ps_redis_t redis; /* connection, timeouts, reconnection: lib/drivers/redis.c */
} redis_store_t;

#define R(s) ((redis_store_t *)(s))

static const char add_script[] =
    "redis.call('HSET', KEYS[1], 'family', ARGV[1], 'user', ARGV[2], 'used', 0)\n"
    "redis.call('EXPIREAT', KEYS[1], ARGV[3])\n"
    "redis.call('SADD', KEYS[2], KEYS[1]) redis.call('EXPIREAT', KEYS[2], ARGV[3])\n"
    "redis.call('SADD', KEYS[3], KEYS[2]) redis.call('EXPIRE', KEYS[3], ARGV[4])\n"
    "return 1";

static int r_refresh_add(user_store_t *s, const char *hash, const char *family,
                         const char *user_id, int64_t expires_at) {
  int rc;
  /* KEYS: the token, its family's members, the user's families. */
  redisReply *reply = ps_redis_command(&R(s)->redis, &rc, "EVAL %s 3 ps:rt:%s ps:rf:%s ps:ru:%s %s %s %lld %d",
                              add_script, hash, family, user_id, family, user_id,
                              (long long)expires_at, 400 * 86400);
  if (reply) freeReplyObject(reply);
  return rc;
}

/* Returns {status, family, user}: status 0 used now, 1 already used or revoked; nil when the
 * token is unknown (or expired: Redis dropped it at its expiry). */
static const char use_script[] =
    "local t = redis.call('HMGET', KEYS[1], 'family', 'user', 'used')\n"
    "if not t[1] then return nil end\n"
    "if t[3] ~= '0' then return {1, t[1], t[2]} end\n"
    "redis.call('HSET', KEYS[1], 'used', 1)\n"
    "return {0, t[1], t[2]}";

static int r_refresh_use(user_store_t *s, ps_arena_t *a, const char *hash, int64_t now,
                         const char **user_id, const char **family) {
  int rc;
  redisReply *reply = ps_redis_command(&R(s)->redis, &rc, "EVAL %s 1 ps:rt:%s", use_script, hash);
  if (!reply) return rc;
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
    freeReplyObject(reply);
    return PS_ENOTFOUND;
  }
  int used = (int)reply->element[0]->integer;
  *family = ps_arena_strdup(a, reply->element[1]->str ? reply->element[1]->str : "");
  *user_id = ps_arena_strdup(a, reply->element[2]->str ? reply->element[2]->str : "");
  freeReplyObject(reply);
  return used ? PS_ECONFLICT : 0;
}

static int r_refresh_family(user_store_t *s, ps_arena_t *a, const char *hash,
                            const char **family, const char **user_id) {
  int rc;
  redisReply *reply = ps_redis_command(&R(s)->redis, &rc, "HMGET ps:rt:%s family user", hash);
  if (!reply) return rc;
  rc = PS_ENOTFOUND;
  if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 && reply->element[0]->str) {
    *family = ps_arena_strdup(a, reply->element[0]->str);
    *user_id = ps_arena_strdup(a, reply->element[1]->str ? reply->element[1]->str : "");
    rc = 0;
  }
  freeReplyObject(reply);
  return rc;
}

static const char revoke_family_script[] =
    "for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  if redis.call('EXISTS', t) == 1 then redis.call('HSET', t, 'used', 2) end\n"
    "end return 1";

static int r_refresh_revoke_family(user_store_t *s, const char *family) {
  int rc;
  redisReply *reply = ps_redis_command(&R(s)->redis, &rc, "EVAL %s 1 ps:rf:%s", revoke_family_script, family);
  if (reply) freeReplyObject(reply);
  return rc;
}

static const char revoke_user_script[] =
    "for _, f in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  for _, t in ipairs(redis.call('SMEMBERS', f)) do\n"
    "    if redis.call('EXISTS', t) == 1 then redis.call('HSET', t, 'used', 2) end\n"
    "  end\n"
    "end return 1";

static int r_refresh_revoke_user(user_store_t *s, const char *user_id) {
  int rc;
  redisReply *reply = ps_redis_command(&R(s)->redis, &rc, "EVAL %s 1 ps:ru:%s", revoke_user_script, user_id);
  if (reply) freeReplyObject(reply);
  return rc;
}

static int r_ping(user_store_t *s) {
  int rc;
  redisReply *reply = ps_redis_command(&R(s)->redis, &rc, "PING");
  if (reply) freeReplyObject(reply);
  return rc;
}

static void r_close(user_store_t *s) {
  ps_redis_close(&R(s)->redis);
  ps_free(s);
}

static const user_store_ops_t redis_ops = {
    .refresh_add = r_refresh_add,
    .refresh_use = r_refresh_use,
    .refresh_revoke_family = r_refresh_revoke_family,
    .refresh_revoke_user = r_refresh_revoke_user,
    .refresh_family = r_refresh_family,
    .ping = r_ping,
    .close = r_close,
};

int user_sessions_redis_open(const char *url, user_store_t **out) {
  redis_store_t *r = ps_calloc(1, sizeof(*r));
  r->base.ops = &redis_ops;
  int rc = ps_redis_open(&r->redis, url, 1000);
  if (rc) {
    ps_free(r);
    return rc;
  }
  *out = &r->base;
  return 0;
}

/* Counts a login attempt for key in a fixed window shared by every replica. */
static const char limit_script[] =
    "local c = redis.call('INCR', KEYS[1])\n"
    "if c == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n"
    "return {c, redis.call('TTL', KEYS[1])}";

int user_redis_ratelimit_hit(user_store_t *s, const char *scope, const char *key, int max,
                             int window, int *retry_after) {
  int rc;
  redisReply *reply = ps_redis_command(&R(s)->redis, &rc, "EVAL %s 1 ps:rl:%s:%s %d", limit_script, scope, key, window);
  if (!reply) return rc;
  long long count = 0, ttl = 1;
  if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
    count = reply->element[0]->integer;
    ttl = reply->element[1]->integer;
  }
  freeReplyObject(reply);
  if (count > max) {
    *retry_after = ttl > 0 ? (int)ttl : 1;
    return PS_ELIMIT;
  }
  return 0;
}

void user_redis_ratelimit_clear(user_store_t *s, const char *scope, const char *key) {
  int rc;
  redisReply *reply = ps_redis_command(&R(s)->redis, &rc, "DEL ps:rl:%s:%s", scope, key);
  if (reply) freeReplyObject(reply);
}
