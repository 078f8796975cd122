/* auth.c - HS256 JWT access tokens: signing keys from the environment, sign, verify, and the
 * base64url codec they use (see auth.h). HMAC and randomness come from libsodium, JSON from
 * jansson. */
#include "polyshop/auth.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "polyshop/error.h"

enum {
  JWT_MIN_SECRET = 32,
  JWT_MAX_SECRET = 64,
  JWT_MAX_TOKEN = 8192, /* far above any token we issue; bounds the work on garbage */
  JWT_SIG_LEN = crypto_auth_hmacsha256_BYTES,
  JWT_JTI_BYTES = 16,
};

static const char JWT_DEFAULT_ISSUER[] = "polyshop";
/* base64url of {"alg":"HS256","typ":"JWT"}: every token we sign starts with it. */
static const char JWT_HEADER_B64[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok;

static void sodium_init_once(void) { sodium_ok = sodium_init() >= 0; }

static int ensure_sodium(void) {
  pthread_once(&sodium_once, sodium_init_once);
  return sodium_ok ? 0 : PS_EINTERNAL;
}

/* ---- base64url ---- */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *ps_base64url_encode(ps_arena_t *a, const unsigned char *data, size_t len) {
  char *out = ps_arena_alloc(a, (len + 2) / 3 * 4 + 1);
  char *p = out;
  size_t i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
    *p++ = B64URL[v >> 18 & 63];
    *p++ = B64URL[v >> 12 & 63];
    *p++ = B64URL[v >> 6 & 63];
    *p++ = B64URL[v & 63];
  }
  if (len - i == 1) {
    uint32_t v = (uint32_t)data[i] << 16;
    *p++ = B64URL[v >> 18 & 63];
    *p++ = B64URL[v >> 12 & 63];
  } else if (len - i == 2) {
    uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
    *p++ = B64URL[v >> 18 & 63];
    *p++ = B64URL[v >> 12 & 63];
    *p++ = B64URL[v >> 6 & 63];
  }
  *p = '\0';
  return out;
}

static int b64url_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

int ps_base64url_decode(ps_arena_t *a, const char *s, size_t slen, unsigned char **out,
                        size_t *outlen) {
  /* Padding is optional, but when present it must complete the last quantum exactly. */
  if (slen % 4 == 0 && slen > 0 && s[slen - 1] == '=') {
    slen--;
    if (s[slen - 1] == '=') slen--;
  }
  if (slen % 4 == 1) return PS_EPARSE;
  unsigned char *buf = ps_arena_alloc(a, slen / 4 * 3 + 3);
  size_t n = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < slen; i++) {
    int v = b64url_value((unsigned char)s[i]);
    if (v < 0) return PS_EPARSE;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      buf[n++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  /* Leftover bits must be zero: otherwise two spellings decode to the same bytes, and a
   * "tampered" signature would still verify. */
  if (acc != 0) return PS_EPARSE;
  buf[n] = '\0';
  *out = buf;
  *outlen = n;
  return 0;
}

/* ---- keys ---- */

static int load_secret(const char *name, const char *val, unsigned char *key, size_t *key_len,
                       char *err, size_t errlen) {
  size_t len = strlen(val);
  if (len < JWT_MIN_SECRET || len > JWT_MAX_SECRET) {
    snprintf(err, errlen, "%s must be %d to %d bytes long (got %zu)", name, JWT_MIN_SECRET,
             JWT_MAX_SECRET, len);
    return PS_ECONFIG;
  }
  memcpy(key, val, len);
  *key_len = len;
  return 0;
}

int ps_jwt_keys_from_env(ps_jwt_keys_t *keys, char *err, size_t errlen) {
  memset(keys, 0, sizeof(*keys));
  keys->access_ttl = 900;
  keys->issuer = JWT_DEFAULT_ISSUER;
  if (ensure_sodium()) {
    snprintf(err, errlen, "libsodium failed to initialise");
    return PS_EINTERNAL;
  }

  const char *secret = getenv("POLYSHOP_JWT_SECRET");
  if (!secret || !*secret) {
    snprintf(err, errlen, "POLYSHOP_JWT_SECRET is not set (%d to %d bytes)", JWT_MIN_SECRET,
             JWT_MAX_SECRET);
    return PS_ECONFIG;
  }
  int rc = load_secret("POLYSHOP_JWT_SECRET", secret, keys->key, &keys->key_len, err, errlen);
  if (rc) return rc;

  const char *prev = getenv("POLYSHOP_JWT_PREVIOUS_SECRET");
  if (prev && *prev) {
    rc = load_secret("POLYSHOP_JWT_PREVIOUS_SECRET", prev, keys->prev_key, &keys->prev_key_len,
                     err, errlen);
    if (rc) return rc;
  }

  const char *ttl = getenv("POLYSHOP_ACCESS_TTL");
  if (ttl && *ttl) {
    char *end;
    errno = 0;
    long long v = strtoll(ttl, &end, 10);
    if (errno || *end || end == ttl || v < 60 || v > 86400) {
      snprintf(err, errlen, "POLYSHOP_ACCESS_TTL must be a number of seconds from 60 to 86400 "
               "(got \"%s\")", ttl);
      return PS_ECONFIG;
    }
    keys->access_ttl = v;
  }
  return 0;
}

/* ---- sign / verify ---- */

static const char *issuer_of(const ps_jwt_keys_t *keys) {
  return keys->issuer ? keys->issuer : JWT_DEFAULT_ISSUER;
}

static void hmac(const unsigned char *key, size_t key_len, const char *msg, size_t len,
                 unsigned char mac[JWT_SIG_LEN]) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key, key_len);
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, len);
  crypto_auth_hmacsha256_final(&st, mac);
  sodium_memzero(&st, sizeof(st));
}

int ps_jwt_sign(const ps_jwt_keys_t *keys, ps_arena_t *a, const char *sub, const char *email,
                ps_role_t role, int64_t now, char **out) {
  *out = NULL;
  if (!keys || keys->key_len < JWT_MIN_SECRET || !sub || !*sub) return PS_EINVAL;
  if (role != PS_ROLE_CUSTOMER && role != PS_ROLE_ADMIN) return PS_EINVAL;
  if (ensure_sodium()) return PS_EINTERNAL;

  unsigned char jti_raw[JWT_JTI_BYTES];
  randombytes_buf(jti_raw, sizeof(jti_raw));
  const char *jti = ps_base64url_encode(a, jti_raw, sizeof(jti_raw));

  json_t *claims = json_object();
  json_object_set_new(claims, "sub", json_string(sub));
  if (email) json_object_set_new(claims, "email", json_string(email));
  json_object_set_new(claims, "role", json_string(role == PS_ROLE_ADMIN ? "admin" : "customer"));
  json_object_set_new(claims, "iat", json_integer(now));
  json_object_set_new(claims, "exp", json_integer(now + keys->access_ttl));
  json_object_set_new(claims, "iss", json_string(issuer_of(keys)));
  json_object_set_new(claims, "jti", json_string(jti));
  /* json_string() returns NULL for invalid UTF-8, and set_new then fails silently: check. */
  int complete = json_object_size(claims) == (email ? 7u : 6u);
  char *payload = complete ? json_dumps(claims, JSON_COMPACT) : NULL;
  json_decref(claims);
  if (!payload) return PS_EINVAL;

  char *payload_b64 = ps_base64url_encode(a, (const unsigned char *)payload, strlen(payload));
  free(payload); /* from jansson's allocator */
  char *signing_input = ps_arena_sprintf(a, "%s.%s", JWT_HEADER_B64, payload_b64);
  unsigned char mac[JWT_SIG_LEN];
  hmac(keys->key, keys->key_len, signing_input, strlen(signing_input), mac);
  *out = ps_arena_sprintf(a, "%s.%s", signing_input, ps_base64url_encode(a, mac, sizeof(mac)));
  return 0;
}

/* Decodes one base64url segment holding a JSON object; NULL when it is anything else. The
 * caller owns the returned reference. */
static json_t *decode_json_segment(ps_arena_t *a, const char *s, size_t len) {
  unsigned char *raw;
  size_t raw_len;
  if (len == 0 || ps_base64url_decode(a, s, len, &raw, &raw_len)) return NULL;
  json_t *j = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES, NULL);
  if (j && !json_is_object(j)) {
    json_decref(j);
    return NULL;
  }
  return j;
}

static int header_ok(json_t *h) {
  const char *alg = json_string_value(json_object_get(h, "alg"));
  if (!alg || strcmp(alg, "HS256") != 0) return 0; /* "none", RS256, HS384, absent... */
  json_t *typ = json_object_get(h, "typ");
  if (typ && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0)) return 0;
  /* We understand no critical extensions, so any "crit" must be refused (RFC 7515 4.1.11). */
  if (json_object_get(h, "crit")) return 0;
  return 1;
}

/* A non-empty string claim copied into the arena, or NULL. */
static const char *string_claim(ps_arena_t *a, json_t *p, const char *name) {
  const char *v = json_string_value(json_object_get(p, name));
  return v && *v ? ps_arena_strdup(a, v) : NULL;
}

int ps_jwt_verify(const ps_jwt_keys_t *keys, ps_arena_t *a, const char *token, int64_t now,
                  ps_claims_t *claims) {
  memset(claims, 0, sizeof(*claims));
  if (!keys || keys->key_len == 0 || !token) return PS_EAUTH;
  size_t len = strnlen(token, JWT_MAX_TOKEN + 1);
  if (len == 0 || len > JWT_MAX_TOKEN) return PS_EAUTH;

  const char *dot1 = memchr(token, '.', len);
  if (!dot1) return PS_EAUTH;
  const char *dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
  if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token))) return PS_EAUTH;
  size_t header_len = (size_t)(dot1 - token);
  size_t payload_len = (size_t)(dot2 - dot1 - 1);
  size_t signing_len = (size_t)(dot2 - token);
  const char *sig_b64 = dot2 + 1;
  size_t sig_b64_len = len - signing_len - 1;

  json_t *header = decode_json_segment(a, token, header_len);
  int ok = header && header_ok(header);
  json_decref(header);
  if (!ok) return PS_EAUTH;

  unsigned char *sig;
  size_t sig_len;
  if (ps_base64url_decode(a, sig_b64, sig_b64_len, &sig, &sig_len) || sig_len != JWT_SIG_LEN)
    return PS_EAUTH;
  unsigned char mac[JWT_SIG_LEN];
  hmac(keys->key, keys->key_len, token, signing_len, mac);
  ok = sodium_memcmp(mac, sig, JWT_SIG_LEN) == 0;
  if (!ok && keys->prev_key_len) {
    hmac(keys->prev_key, keys->prev_key_len, token, signing_len, mac);
    ok = sodium_memcmp(mac, sig, JWT_SIG_LEN) == 0;
  }
  if (!ok) return PS_EAUTH;

  /* Only a token we signed gets this far; its claims are still checked in full. */
  json_t *p = decode_json_segment(a, dot1 + 1, payload_len);
  if (!p) return PS_EAUTH;
  int rc = PS_EAUTH;
  const char *iss = json_string_value(json_object_get(p, "iss"));
  json_t *exp = json_object_get(p, "exp");
  json_t *iat = json_object_get(p, "iat");
  json_t *email = json_object_get(p, "email");
  const char *role = json_string_value(json_object_get(p, "role"));
  if (!iss || strcmp(iss, issuer_of(keys)) != 0) goto out;
  if (!json_is_integer(exp) || !json_is_integer(iat)) goto out;
  if (email && !json_is_string(email)) goto out;
  if (!role) goto out;
  if (strcmp(role, "customer") == 0)
    claims->role = PS_ROLE_CUSTOMER;
  else if (strcmp(role, "admin") == 0)
    claims->role = PS_ROLE_ADMIN;
  else
    goto out;
  claims->sub = string_claim(a, p, "sub");
  claims->jti = string_claim(a, p, "jti");
  if (!claims->sub || !claims->jti) goto out;
  claims->email = email ? ps_arena_strdup(a, json_string_value(email)) : NULL;
  claims->iat = json_integer_value(iat);
  claims->exp = json_integer_value(exp);
  if (claims->exp <= now) {
    rc = PS_EEXPIRED;
    goto out;
  }
  rc = 0;
out:
  json_decref(p);
  if (rc) memset(claims, 0, sizeof(*claims)); /* no half-filled claims on failure */
  return rc;
}
