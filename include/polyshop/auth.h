/* auth.h - JWT access tokens (HS256) and the guards every service uses to require a user or
 * an admin.
 *
 * Access tokens are short-lived JWTs signed with HMAC-SHA256 under a key from the
 * environment (POLYSHOP_JWT_SECRET, at least 32 bytes; POLYSHOP_JWT_PREVIOUS_SECRET is also
 * accepted for verification while keys rotate). Refresh tokens are opaque and belong to the
 * user service; only access tokens are handled here.
 */
#ifndef POLYSHOP_AUTH_H
#define POLYSHOP_AUTH_H
#include <stddef.h>
#include <stdint.h>

#include "polyshop/arena.h"

typedef enum { PS_ROLE_CUSTOMER = 0, PS_ROLE_ADMIN = 1 } ps_role_t;

/* Claims of a verified access token. Strings point into the arena given to ps_jwt_verify. */
typedef struct {
  const char *sub;   /* user id */
  const char *email; /* may be NULL */
  ps_role_t role;
  int64_t iat, exp;  /* seconds since the epoch */
  const char *jti;
} ps_claims_t;

/* Signing keys. Loaded once at start and shared read-only by every thread. */
typedef struct {
  unsigned char key[64];
  size_t key_len;
  unsigned char prev_key[64];
  size_t prev_key_len; /* 0 when there is no previous key */
  int64_t access_ttl;  /* seconds, default 900 */
  const char *issuer;  /* "polyshop" */
} ps_jwt_keys_t;

/* Fills keys from the environment (POLYSHOP_JWT_SECRET, POLYSHOP_JWT_PREVIOUS_SECRET,
 * POLYSHOP_ACCESS_TTL). The secrets are taken as raw bytes, 32 to 64 of them; the previous
 * secret is optional; the TTL is in seconds, 60 to 86400, default 900. issuer is set to
 * "polyshop". Returns 0, or PS_ECONFIG with a message in err (size errlen) when the secret is
 * missing, a secret has the wrong length, or the TTL is not a number in range. */
int ps_jwt_keys_from_env(ps_jwt_keys_t *keys, char *err, size_t errlen);

/* Signs an access token for the user. *out is allocated in the arena. now is the issue time
 * (seconds); the expiry is now + keys->access_ttl. The header is {"alg":"HS256","typ":"JWT"};
 * the payload holds sub, email (when not NULL), role ("customer"/"admin"), iat, exp, iss
 * (keys->issuer, "polyshop" when NULL) and a random jti. Returns 0, or PS_EINVAL for an empty
 * sub, an unknown role, a string that is not UTF-8 or keys without a secret. */
int ps_jwt_sign(const ps_jwt_keys_t *keys, ps_arena_t *a, const char *sub, const char *email,
                ps_role_t role, int64_t now, char **out);

/* Verifies the signature (current key, then previous), the algorithm (only HS256; "none" and
 * every other alg are refused, as is a "crit" header), the issuer and the expiry against now
 * (expired when exp <= now). The payload must be an object with string sub, role and jti,
 * integer iat and exp, and iss equal to keys->issuer. Fills claims with strings from the
 * arena. Returns 0, PS_EEXPIRED for a genuine but expired token, or PS_EAUTH for anything
 * malformed or forged (signature checked first, so a forged token is never "expired").
 * claims is zeroed on failure. */
int ps_jwt_verify(const ps_jwt_keys_t *keys, ps_arena_t *a, const char *token, int64_t now,
                  ps_claims_t *claims);

/* base64url without padding, into the arena. */
char *ps_base64url_encode(ps_arena_t *a, const unsigned char *data, size_t len);
/* Decodes base64url (padding optional) into the arena; *out is NUL-terminated (not counted
 * in *outlen). Non-zero unused trailing bits are refused, so each byte string has one
 * spelling. Returns 0 or PS_EPARSE. */
int ps_base64url_decode(ps_arena_t *a, const char *s, size_t slen, unsigned char **out,
                        size_t *outlen);

#endif
