/* store.h - what the user service needs from its store, whatever the engine.
 *
 * One user_store_t is opened per event-loop thread (SQLite: one connection each; MongoDB: one
 * client each), so calls need no locking of their own. Strings filled into out-structures
 * come from the arena passed in and live as long as it. Every call returns 0 or a PS_E*
 * code: PS_ENOTFOUND, PS_EEXISTS (unique email), PS_ECONFLICT (a token already used),
 * PS_EEXPIRED, PS_ESTORE / PS_EUNAVAIL for engine failures.
 */
#ifndef POLYSHOP_USER_STORE_H
#define POLYSHOP_USER_STORE_H
#include <stdint.h>

#include "polyshop/arena.h"

typedef struct {
  const char *id;            /* 36-character UUID */
  const char *email;         /* lower-case */
  const char *password_hash; /* argon2id string (libsodium crypto_pwhash_str) */
  const char *role;          /* "customer" or "admin" */
  const char *name;          /* may be "" */
  const char *profile;       /* JSON object text, free-form extra fields */
  const char *settings;      /* JSON object text */
  int64_t created_at, updated_at; /* seconds since the epoch */
} user_t;

typedef struct user_store user_store_t;

typedef struct {
  /* Users */
  int (*create)(user_store_t *s, const user_t *u);
  int (*get_by_id)(user_store_t *s, ps_arena_t *a, const char *id, user_t *out);
  int (*get_by_email)(user_store_t *s, ps_arena_t *a, const char *email, user_t *out);
  /* Replaces name, profile and updated_at of the user u->id. */
  int (*update_profile)(user_store_t *s, const user_t *u);
  int (*update_settings)(user_store_t *s, const char *id, const char *settings, int64_t now);
  int (*update_password)(user_store_t *s, const char *id, const char *hash, int64_t now);
  int (*set_role)(user_store_t *s, const char *id, const char *role);

  /* Refresh tokens, stored by SHA-256 hash; a family is one login's chain of rotations. */
  int (*refresh_add)(user_store_t *s, const char *hash, const char *family, const char *user_id,
                     int64_t expires_at);
  /* Marks the token used and returns its user and family. PS_ENOTFOUND: unknown;
   * PS_ECONFLICT: already used or revoked (the caller revokes the family: reuse);
   * PS_EEXPIRED (or PS_ENOTFOUND, for stores that forget expired tokens): too old. Atomic: two concurrent uses never both succeed. */
  int (*refresh_use)(user_store_t *s, ps_arena_t *a, const char *hash, int64_t now,
                     const char **user_id, const char **family);
  int (*refresh_revoke_family)(user_store_t *s, const char *family);
  int (*refresh_revoke_user)(user_store_t *s, const char *user_id);
  /* Looks a token up without using it (logout): its family, or PS_ENOTFOUND. */
  int (*refresh_family)(user_store_t *s, ps_arena_t *a, const char *hash, const char **family,
                        const char **user_id);

  /* One-time password reset tokens, stored by SHA-256 hash. consume: PS_ENOTFOUND for
   * unknown or already used, PS_EEXPIRED for too old. */
  int (*reset_add)(user_store_t *s, const char *hash, const char *user_id, int64_t expires_at);
  int (*reset_consume)(user_store_t *s, ps_arena_t *a, const char *hash, int64_t now,
                       const char **user_id);

  /* Outbox of events for the notification service (JSON payload). */
  int (*outbox_add)(user_store_t *s, const char *type, const char *payload, int64_t now);

  int (*ping)(user_store_t *s);
  void (*close)(user_store_t *s);
} user_store_ops_t;

struct user_store {
  const user_store_ops_t *ops;
};

/* Opens a store for url: "sqlite:///path/user.db" (embedded) or "mongodb://host:port/db"
 * (MongoDB or a server speaking its protocol). Creates the schema or indexes when missing.
 * Returns 0 or PS_ECONFIG (unknown scheme, bad URL), PS_ESTORE, PS_EUNAVAIL. */
int user_store_open(const char *url, user_store_t **out);
/* Returns 1 when url names a store kind this service has. */
int user_store_url_ok(const char *url);
int user_store_sqlite_open(const char *path, user_store_t **out);
int user_store_mongo_open(const char *url, user_store_t **out);

/* Registers the polyshop_store_call_seconds{engine,op} histograms of the main store (engine
 * "sqlite" or "mongodb"); once, before the server starts. user_store_timed wraps a store so
 * every call is timed into them; the wrapper owns inner (closing it closes inner). */
void user_store_metrics_register(const char *engine);
user_store_t *user_store_timed(user_store_t *inner);

/* Sessions in Redis ("redis://[[user]:password@]host[:port][/db]", see polyshop/redis.h): a
 * store with only the refresh_* operations, ping and close (store_redis.c). Expired tokens
 * are forgotten by Redis, so refresh_use answers PS_ENOTFOUND for them. */
int user_sessions_redis_open(const char *url, user_store_t **out);
/* Login rate limits shared by every replica through the sessions' Redis connection. */
int user_redis_ratelimit_hit(user_store_t *sessions, const char *scope, const char *key, int max,
                             int window, int *retry_after);
void user_redis_ratelimit_clear(user_store_t *sessions, const char *scope, const char *key);

#endif
