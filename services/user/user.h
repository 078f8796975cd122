/* user.h - what the user service's files share: its configuration, per-thread state and the
 * validation and rate-limit helpers. */
#ifndef POLYSHOP_USER_H
#define POLYSHOP_USER_H
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "polyshop/auth.h"
#include "polyshop/http.h"
#include "store.h"

typedef struct ratelimit ratelimit_t;

/* Service-wide state, read-only after start except the rate limiter (locked inside). */
typedef struct {
  const char *store_url;
  ps_jwt_keys_t keys;
  int64_t refresh_ttl;          /* seconds */
  int64_t reset_ttl;            /* seconds */
  unsigned long long argon_ops; /* crypto_pwhash opslimit */
  size_t argon_mem;             /* crypto_pwhash memlimit, bytes */
  char dummy_hash[128];         /* verified when the email is unknown: same cost either way */
  int trust_proxy;              /* take the client address from X-Real-IP */
  const char *redis_url;        /* sessions and rate limits in Redis when set */
  int limit_per_email, limit_per_client, limit_window;
  ratelimit_t *per_email, *per_client; /* the embedded limiters, when there is no Redis */
} user_service_t;

/* Per event-loop thread. */
typedef struct {
  user_store_t *store;    /* accounts, reset tokens, outbox */
  user_store_t *sessions; /* refresh tokens: the same store, or Redis */
  int redis;              /* sessions is Redis (and counts rate limits too) */
} user_thread_t;

extern const ps_route_t user_routes[];
extern const size_t user_nroutes;

/* Validation (validate.c). Each returns NULL when the value is good, or a sentence saying
 * what is wrong. */
const char *user_check_email(const char *email);
const char *user_check_password(const char *password, const char *email);
/* Lower-cases an email into out (outlen >= strlen(email)+1). */
void user_normalize_email(const char *email, char *out, size_t outlen);

/* A fixed-window counter per key (ratelimit.c): at most max hits per window seconds. */
ratelimit_t *ratelimit_new(int max, int window_seconds);
void ratelimit_free(ratelimit_t *r);
/* Counts a hit for key at now; returns 0 when allowed, or PS_ELIMIT with *retry_after set. */
int ratelimit_hit(ratelimit_t *r, const char *key, int64_t now, int *retry_after);
/* Forgets the key (a successful login clears the failures of its email). */
void ratelimit_clear(ratelimit_t *r, const char *key);

/* --- passwords on the worker pool (password.c) ---------------------------------------- */

/* The continuation of a handler after its password work: rc 0 (hashed, or the password
 * matches), PS_EAUTH (it does not), PS_EINTERNAL (hashing failed), PS_ELIMIT (the pool's
 * queue is full: answer 503) or PS_ECANCELED (the service is stopping). Runs on the
 * request's loop; it must answer the request. */
typedef void (*user_password_cb)(ps_req_t *req, int rc, void *arg);

/* Defers req and hashes password (argon2id at the service's cost) on a pool thread; *out is
 * set at once to the arena buffer that holds the hash when cb sees rc 0. password must live
 * in the request's arena (or longer). */
void user_password_hash_start(ps_req_t *req, const char *password, char **out,
                              user_password_cb cb, void *arg);
/* Defers req and checks password against hash on a pool thread. */
void user_password_verify_start(ps_req_t *req, const char *hash, const char *password,
                                user_password_cb cb, void *arg);

#endif
