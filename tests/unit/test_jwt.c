/* test_jwt.c - HS256 access tokens and base64url (lib/auth.c): round trip, expiry, every way a
 * token can be forged or malformed, key rotation, configuration from the environment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "polyshop/auth.h"
#include "polyshop/error.h"

static const char KEY[] = "0123456789abcdef0123456789abcdef";        /* 32 bytes */
static const char OTHER_KEY[] = "ffffffffffffffffffffffffffffffff-other"; /* 38 bytes */

static void keys_with(ps_jwt_keys_t *k, const char *key, const char *prev) {
  memset(k, 0, sizeof(*k));
  k->key_len = strlen(key);
  memcpy(k->key, key, k->key_len);
  if (prev) {
    k->prev_key_len = strlen(prev);
    memcpy(k->prev_key, prev, k->prev_key_len);
  }
  k->access_ttl = 900;
  k->issuer = "polyshop";
}

/* Builds a token from raw header and payload JSON, signed with key: a forger who knows the
 * key, so the claim checks are reached. */
static char *forge(ps_arena_t *a, const char *header, const char *payload, const char *key) {
  char *h = ps_base64url_encode(a, (const unsigned char *)header, strlen(header));
  char *p = ps_base64url_encode(a, (const unsigned char *)payload, strlen(payload));
  char *si = ps_arena_sprintf(a, "%s.%s", h, p);
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, (const unsigned char *)key, strlen(key));
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)si, strlen(si));
  crypto_auth_hmacsha256_final(&st, mac);
  return ps_arena_sprintf(a, "%s.%s", si, ps_base64url_encode(a, mac, sizeof(mac)));
}

static const char HS256[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
static const char GOOD_PAYLOAD[] = "{\"sub\":\"u1\",\"role\":\"customer\",\"iat\":1000,"
                                   "\"exp\":2000,\"iss\":\"polyshop\",\"jti\":\"j\"}";

static int verify(const ps_jwt_keys_t *k, ps_arena_t *a, const char *tok, int64_t now) {
  ps_claims_t c;
  return ps_jwt_verify(k, a, tok, now, &c);
}

static void test_round_trip(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_jwt_keys_t k;
  keys_with(&k, KEY, NULL);
  char *tok;
  assert_int_equal(ps_jwt_sign(&k, &a, "user-7", "ada@example.com", PS_ROLE_ADMIN, 1000, &tok), 0);
  assert_int_equal(strncmp(tok, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37), 0);
  ps_claims_t c;
  assert_int_equal(ps_jwt_verify(&k, &a, tok, 1000 + 899, &c), 0);
  assert_string_equal(c.sub, "user-7");
  assert_string_equal(c.email, "ada@example.com");
  assert_int_equal(c.role, PS_ROLE_ADMIN);
  assert_int_equal(c.iat, 1000);
  assert_int_equal(c.exp, 1900);
  assert_true(strlen(c.jti) >= 16);

  /* jti is random: two tokens for the same user and second differ. */
  char *tok2;
  assert_int_equal(ps_jwt_sign(&k, &a, "user-7", "ada@example.com", PS_ROLE_ADMIN, 1000, &tok2), 0);
  assert_string_not_equal(tok, tok2);

  /* email is optional. */
  assert_int_equal(ps_jwt_sign(&k, &a, "user-8", NULL, PS_ROLE_CUSTOMER, 1000, &tok), 0);
  assert_int_equal(ps_jwt_verify(&k, &a, tok, 1001, &c), 0);
  assert_null(c.email);
  assert_int_equal(c.role, PS_ROLE_CUSTOMER);
  assert_string_equal(c.sub, "user-8");

  /* Bad arguments to sign. */
  assert_int_equal(ps_jwt_sign(&k, &a, "", NULL, PS_ROLE_CUSTOMER, 1000, &tok), PS_EINVAL);
  assert_int_equal(ps_jwt_sign(&k, &a, NULL, NULL, PS_ROLE_CUSTOMER, 1000, &tok), PS_EINVAL);
  assert_int_equal(ps_jwt_sign(&k, &a, "u", "\xff\xfe", PS_ROLE_CUSTOMER, 1000, &tok), PS_EINVAL);
  assert_int_equal(ps_jwt_sign(&k, &a, "u", NULL, (ps_role_t)7, 1000, &tok), PS_EINVAL);
  ps_arena_reset(&a);
}

/* A token signed by an independent implementation (Python's hmac module) verifies. */
static void test_interop_vector(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_jwt_keys_t k;
  keys_with(&k, KEY, NULL);
  const char *tok =
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
      "eyJzdWIiOiJ1LTQyIiwiZW1haWwiOiJhZGFAZXhhbXBsZS5jb20iLCJyb2xlIjoiYWRtaW4iLCJpYXQiOjEwMDAs"
      "ImV4cCI6MjAwMCwiaXNzIjoicG9seXNob3AiLCJqdGkiOiJhYmMifQ."
      "gcjvIwAVWTbGNFEHwGgfgvni6fJOYk8zR1PCe0XdT8k";
  ps_claims_t c;
  assert_int_equal(ps_jwt_verify(&k, &a, tok, 1500, &c), 0);
  assert_string_equal(c.sub, "u-42");
  assert_string_equal(c.email, "ada@example.com");
  assert_int_equal(c.role, PS_ROLE_ADMIN);
  assert_string_equal(c.jti, "abc");
  assert_int_equal(c.exp, 2000);
  ps_arena_reset(&a);
}

static void test_expired(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_jwt_keys_t k;
  keys_with(&k, KEY, NULL);
  char *tok;
  assert_int_equal(ps_jwt_sign(&k, &a, "u", NULL, PS_ROLE_CUSTOMER, 1000, &tok), 0);
  ps_claims_t c;
  assert_int_equal(ps_jwt_verify(&k, &a, tok, 1900, &c), PS_EEXPIRED); /* exp == now */
  assert_null(c.sub);
  assert_int_equal(verify(&k, &a, tok, 100000), PS_EEXPIRED);
  /* An expired token under the wrong key is a forgery, not "expired". */
  ps_jwt_keys_t other;
  keys_with(&other, OTHER_KEY, NULL);
  assert_int_equal(verify(&other, &a, tok, 100000), PS_EAUTH);
  ps_arena_reset(&a);
}

static void test_tampered(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_jwt_keys_t k;
  keys_with(&k, KEY, NULL);
  char *tok;
  assert_int_equal(ps_jwt_sign(&k, &a, "u1", NULL, PS_ROLE_CUSTOMER, 1000, &tok), 0);
  char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');

  /* Payload swapped for one claiming admin, signature kept. */
  const char *admin = "{\"sub\":\"u1\",\"role\":\"admin\",\"iat\":1000,\"exp\":1900,"
                      "\"iss\":\"polyshop\",\"jti\":\"x\"}";
  char *forged = ps_arena_sprintf(
      &a, "%.*s.%s%s", (int)(dot1 - tok), tok,
      ps_base64url_encode(&a, (const unsigned char *)admin, strlen(admin)), dot2);
  assert_int_equal(verify(&k, &a, forged, 1001), PS_EAUTH);

  /* Every single character of the token flipped in turn. */
  size_t n = strlen(tok);
  for (size_t i = 0; i < n; i++) {
    if (tok[i] == '.') continue;
    char *t = ps_arena_strdup(&a, tok);
    t[i] = t[i] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(&k, &a, t, 1001), PS_EAUTH);
  }
  /* Signature truncated or extended. */
  char *t = ps_arena_strndup(&a, tok, n - 1);
  assert_int_equal(verify(&k, &a, t, 1001), PS_EAUTH);
  t = ps_arena_sprintf(&a, "%sAAAA", tok);
  assert_int_equal(verify(&k, &a, t, 1001), PS_EAUTH);
  /* Empty signature. */
  t = ps_arena_strndup(&a, tok, (size_t)(dot2 - tok) + 1);
  assert_int_equal(verify(&k, &a, t, 1001), PS_EAUTH);
  ps_arena_reset(&a);
}

static void test_alg_none_and_others(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_jwt_keys_t k;
  keys_with(&k, KEY, NULL);
  /* alg:none with empty signature, and with a valid-looking HMAC. */
  const char *none = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
  char *h = ps_base64url_encode(&a, (const unsigned char *)none, strlen(none));
  char *p = ps_base64url_encode(&a, (const unsigned char *)GOOD_PAYLOAD, strlen(GOOD_PAYLOAD));
  assert_int_equal(verify(&k, &a, ps_arena_sprintf(&a, "%s.%s.", h, p), 1500), PS_EAUTH);
  assert_int_equal(verify(&k, &a, ps_arena_sprintf(&a, "%s.%s", h, p), 1500), PS_EAUTH);
  assert_int_equal(verify(&k, &a, forge(&a, none, GOOD_PAYLOAD, KEY), 1500), PS_EAUTH);
  assert_int_equal(verify(&k, &a, forge(&a, "{\"alg\":\"None\"}", GOOD_PAYLOAD, KEY), 1500),
                   PS_EAUTH);
  assert_int_equal(verify(&k, &a, forge(&a, "{\"alg\":\"HS512\"}", GOOD_PAYLOAD, KEY), 1500),
                   PS_EAUTH);
  assert_int_equal(verify(&k, &a, forge(&a, "{\"alg\":\"RS256\"}", GOOD_PAYLOAD, KEY), 1500),
                   PS_EAUTH);
  assert_int_equal(verify(&k, &a, forge(&a, "{\"typ\":\"JWT\"}", GOOD_PAYLOAD, KEY), 1500),
                   PS_EAUTH);
  assert_int_equal(verify(&k, &a, forge(&a, "{\"alg\":256}", GOOD_PAYLOAD, KEY), 1500), PS_EAUTH);
  assert_int_equal(
      verify(&k, &a, forge(&a, "{\"alg\":\"HS256\",\"crit\":[\"x\"]}", GOOD_PAYLOAD, KEY), 1500),
      PS_EAUTH);
  assert_int_equal(verify(&k, &a, forge(&a, "[\"HS256\"]", GOOD_PAYLOAD, KEY), 1500), PS_EAUTH);
  assert_int_equal(verify(&k, &a, forge(&a, "{\"alg\":\"HS256\",\"alg\":\"none\"}", GOOD_PAYLOAD,
                                        KEY), 1500),
                   PS_EAUTH);
  /* Header without typ is fine (typ is optional in RFC 7519). */
  assert_int_equal(verify(&k, &a, forge(&a, "{\"alg\":\"HS256\"}", GOOD_PAYLOAD, KEY), 1500), 0);
  assert_int_equal(verify(&k, &a, forge(&a, HS256, GOOD_PAYLOAD, KEY), 1500), 0);
  ps_arena_reset(&a);
}

/* Correctly signed tokens whose claims are wrong: the forger has the key, the claims check
 * must still hold. */
static void test_bad_claims(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_jwt_keys_t k;
  keys_with(&k, KEY, NULL);
  static const char *const bad[] = {
      "[1,2,3]",
      "\"a string\"",
      "42",
      "null",
      "{}",
      "not json",
      "{\"sub\":\"u1\",\"role\":\"customer\",\"iat\":1000,\"iss\":\"polyshop\",\"jti\":\"j\"}",
      "{\"sub\":\"u1\",\"role\":\"customer\",\"iat\":1000,\"exp\":\"2000\",\"iss\":\"polyshop\","
      "\"jti\":\"j\"}",
      "{\"sub\":\"u1\",\"role\":\"customer\",\"iat\":1000,\"exp\":2000.5,\"iss\":\"polyshop\","
      "\"jti\":\"j\"}",
      "{\"sub\":\"u1\",\"role\":\"customer\",\"iat\":1000,"
      "\"exp\":2000,\"iss\":\"evil\",\"jti\":\"j\"}",
      "{\"sub\":\"u1\",\"role\":\"customer\",\"iat\":1000,\"exp\":2000,\"jti\":\"j\"}",
      "{\"sub\":\"u1\",\"role\":\"root\",\"iat\":1000,"
      "\"exp\":2000,\"iss\":\"polyshop\",\"jti\":\"j\"}",
      "{\"sub\":\"\",\"role\":\"customer\",\"iat\":1000,"
      "\"exp\":2000,\"iss\":\"polyshop\",\"jti\":\"j\"}",
      "{\"sub\":7,\"role\":\"customer\",\"iat\":1000,"
      "\"exp\":2000,\"iss\":\"polyshop\",\"jti\":\"j\"}",
      "{\"sub\":\"u1\",\"role\":\"customer\",\"iat\":1000,\"exp\":2000,\"iss\":\"polyshop\"}",
      "{\"sub\":\"u1\",\"role\":\"customer\",\"exp\":2000,\"iss\":\"polyshop\",\"jti\":\"j\"}",
      "{\"sub\":\"u1\",\"email\":5,\"role\":\"customer\",\"iat\":1000,\"exp\":2000,"
      "\"iss\":\"polyshop\",\"jti\":\"j\"}",
      "{\"sub\":\"u1\",\"sub\":\"u2\",\"role\":\"customer\",\"iat\":1000,\"exp\":2000,"
      "\"iss\":\"polyshop\",\"jti\":\"j\"}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ps_claims_t c;
    int rc = ps_jwt_verify(&k, &a, forge(&a, HS256, bad[i], KEY), 1500, &c);
    if (rc != PS_EAUTH) fail_msg("payload %zu (%s): got %d", i, bad[i], rc);
    assert_null(c.sub);
  }
  ps_arena_reset(&a);
}

static void test_keys_rotation(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_jwt_keys_t old_keys, new_keys, new_only, other;
  keys_with(&old_keys, KEY, NULL);
  keys_with(&new_keys, OTHER_KEY, KEY); /* rotated: OTHER_KEY current, KEY previous */
  keys_with(&new_only, OTHER_KEY, NULL);
  keys_with(&other, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", NULL);
  char *old_tok, *new_tok;
  assert_int_equal(ps_jwt_sign(&old_keys, &a, "u", NULL, PS_ROLE_CUSTOMER, 1000, &old_tok), 0);
  assert_int_equal(ps_jwt_sign(&new_keys, &a, "u", NULL, PS_ROLE_CUSTOMER, 1000, &new_tok), 0);
  assert_int_equal(verify(&new_keys, &a, old_tok, 1001), 0);     /* previous key accepted */
  assert_int_equal(verify(&new_keys, &a, new_tok, 1001), 0);     /* signed with the current */
  assert_int_equal(verify(&old_keys, &a, new_tok, 1001), PS_EAUTH);
  assert_int_equal(verify(&new_only, &a, old_tok, 1001), PS_EAUTH); /* rotation finished */
  assert_int_equal(verify(&other, &a, old_tok, 1001), PS_EAUTH);     /* wrong key */
  ps_arena_reset(&a);
}

static void test_garbage(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  ps_jwt_keys_t k;
  keys_with(&k, KEY, NULL);
  char *tok;
  assert_int_equal(ps_jwt_sign(&k, &a, "u", NULL, PS_ROLE_CUSTOMER, 1000, &tok), 0);
  char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');
  static const char *const junk[] = {
      "", ".", "..", "...", "a", "a.b", "a.b.c", "a.b.c.d", "Bearer x.y.z", "\xff.\xfe.\xfd",
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..", "!!!.###.$$$",
  };
  for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
    int rc = verify(&k, &a, junk[i], 1001);
    if (rc != PS_EAUTH) fail_msg("junk %zu: got %d", i, rc);
  }
  ps_claims_t c;
  assert_int_equal(ps_jwt_verify(&k, &a, NULL, 1001, &c), PS_EAUTH);
  /* 2 segments: header.payload, header.signature. */
  assert_int_equal(verify(&k, &a, ps_arena_strndup(&a, tok, (size_t)(dot2 - tok)), 1001),
                   PS_EAUTH);
  assert_int_equal(verify(&k, &a, ps_arena_sprintf(&a, "%.*s%s", (int)(dot1 - tok), tok, dot2),
                          1001),
                   PS_EAUTH);
  /* 4 segments. */
  assert_int_equal(verify(&k, &a, ps_arena_sprintf(&a, "%s.", tok), 1001), PS_EAUTH);
  assert_int_equal(verify(&k, &a, ps_arena_sprintf(&a, "%s.AAAA", tok), 1001), PS_EAUTH);
  assert_int_equal(verify(&k, &a, ps_arena_sprintf(&a, "x.%s", tok), 1001), PS_EAUTH);
  /* Whitespace around the token. */
  assert_int_equal(verify(&k, &a, ps_arena_sprintf(&a, " %s", tok), 1001), PS_EAUTH);
  assert_int_equal(verify(&k, &a, ps_arena_sprintf(&a, "%s\n", tok), 1001), PS_EAUTH);
  /* Huge input. */
  size_t big = 100000;
  char *huge = ps_arena_alloc(&a, big + 1);
  memset(huge, 'A', big);
  huge[10] = huge[20] = '.';
  assert_int_equal(verify(&k, &a, huge, 1001), PS_EAUTH);
  /* Keys without a secret verify nothing. */
  ps_jwt_keys_t empty;
  memset(&empty, 0, sizeof(empty));
  assert_int_equal(verify(&empty, &a, tok, 1001), PS_EAUTH);
  ps_arena_reset(&a);
}

static void check_b64(ps_arena_t *a, const char *raw, size_t raw_len, const char *enc) {
  assert_string_equal(ps_base64url_encode(a, (const unsigned char *)raw, raw_len), enc);
  unsigned char *out;
  size_t out_len;
  assert_int_equal(ps_base64url_decode(a, enc, strlen(enc), &out, &out_len), 0);
  assert_int_equal(out_len, raw_len);
  assert_memory_equal(out, raw, raw_len);
  assert_int_equal(out[out_len], '\0');
}

static void test_base64url_vectors(void **state) {
  ps_arena_t a;
  ps_arena_init(&a);
  /* RFC 4648 section 10, without padding. */
  check_b64(&a, "", 0, "");
  check_b64(&a, "f", 1, "Zg");
  check_b64(&a, "fo", 2, "Zm8");
  check_b64(&a, "foo", 3, "Zm9v");
  check_b64(&a, "foob", 4, "Zm9vYg");
  check_b64(&a, "fooba", 5, "Zm9vYmE");
  check_b64(&a, "foobar", 6, "Zm9vYmFy");
  /* The URL-safe alphabet: 62 and 63 are '-' and '_'. */
  check_b64(&a, "\xfb\xff", 2, "-_8");
  check_b64(&a, "\xff\xff\xff", 3, "____");
  check_b64(&a, "\x00\x00\x00", 3, "AAAA");
  check_b64(&a, "\xfb\xef\xbe", 3, "----");

  unsigned char *out;
  size_t n;
  /* Padding accepted when it completes the quantum. */
  assert_int_equal(ps_base64url_decode(&a, "Zg==", 4, &out, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(out[0], 'f');
  assert_int_equal(ps_base64url_decode(&a, "Zm8=", 4, &out, &n), 0);
  assert_int_equal(n, 2);
  /* Refused: standard alphabet, bad padding, impossible length, non-canonical bits. */
  static const char *const bad[] = {"Zm9v+g", "Zm9v/g", "Zg=", "Zg===", "=", "Z", "Zm9vY",
                                    "Zh", "Zm9", "Zm 9v", "Zm9v\n", "Z=g="};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = ps_base64url_decode(&a, bad[i], strlen(bad[i]), &out, &n);
    if (rc != PS_EPARSE) fail_msg("bad %zu (%s): got %d", i, bad[i], rc);
  }
  /* Length-bounded: only slen characters are read. */
  assert_int_equal(ps_base64url_decode(&a, "Zm9vXXXX", 4, &out, &n), 0);
  assert_int_equal(n, 3);
  assert_memory_equal(out, "foo", 3);

  /* Round trip of every length up to 70 with random bytes. */
  for (size_t len = 0; len < 70; len++) {
    unsigned char raw[70];
    randombytes_buf(raw, len);
    char *enc = ps_base64url_encode(&a, raw, len);
    assert_int_equal(strlen(enc), (len * 4 + 2) / 3);
    assert_int_equal(ps_base64url_decode(&a, enc, strlen(enc), &out, &n), 0);
    assert_int_equal(n, len);
    assert_memory_equal(out, raw, len);
  }
  ps_arena_reset(&a);
}

static void test_keys_from_env(void **state) {
  ps_jwt_keys_t k;
  char err[256];
  unsetenv("POLYSHOP_JWT_SECRET");
  unsetenv("POLYSHOP_JWT_PREVIOUS_SECRET");
  unsetenv("POLYSHOP_ACCESS_TTL");
  assert_int_equal(ps_jwt_keys_from_env(&k, err, sizeof(err)), PS_ECONFIG);
  assert_non_null(strstr(err, "POLYSHOP_JWT_SECRET"));

  setenv("POLYSHOP_JWT_SECRET", "short", 1);
  assert_int_equal(ps_jwt_keys_from_env(&k, err, sizeof(err)), PS_ECONFIG);
  setenv("POLYSHOP_JWT_SECRET", "0123456789abcdef0123456789abcde", 1); /* 31 */
  assert_int_equal(ps_jwt_keys_from_env(&k, err, sizeof(err)), PS_ECONFIG);
  char long_secret[66];
  memset(long_secret, 'x', 65);
  long_secret[65] = '\0';
  setenv("POLYSHOP_JWT_SECRET", long_secret, 1);
  assert_int_equal(ps_jwt_keys_from_env(&k, err, sizeof(err)), PS_ECONFIG);
  long_secret[64] = '\0';
  setenv("POLYSHOP_JWT_SECRET", long_secret, 1);
  assert_int_equal(ps_jwt_keys_from_env(&k, err, sizeof(err)), 0);
  assert_int_equal(k.key_len, 64);

  setenv("POLYSHOP_JWT_SECRET", KEY, 1);
  assert_int_equal(ps_jwt_keys_from_env(&k, err, sizeof(err)), 0);
  assert_int_equal(k.key_len, 32);
  assert_memory_equal(k.key, KEY, 32);
  assert_int_equal(k.prev_key_len, 0);
  assert_int_equal(k.access_ttl, 900);
  assert_string_equal(k.issuer, "polyshop");

  setenv("POLYSHOP_JWT_PREVIOUS_SECRET", "tooshort", 1);
  assert_int_equal(ps_jwt_keys_from_env(&k, err, sizeof(err)), PS_ECONFIG);
  assert_non_null(strstr(err, "POLYSHOP_JWT_PREVIOUS_SECRET"));
  setenv("POLYSHOP_JWT_PREVIOUS_SECRET", OTHER_KEY, 1);
  assert_int_equal(ps_jwt_keys_from_env(&k, err, sizeof(err)), 0);
  assert_int_equal(k.prev_key_len, strlen(OTHER_KEY));

  static const char *const bad_ttl[] = {"59", "86401", "abc", "900s", "-900", " "};
  for (size_t i = 0; i < sizeof(bad_ttl) / sizeof(bad_ttl[0]); i++) {
    setenv("POLYSHOP_ACCESS_TTL", bad_ttl[i], 1);
    if (ps_jwt_keys_from_env(&k, err, sizeof(err)) != PS_ECONFIG) fail_msg("ttl %s", bad_ttl[i]);
    assert_non_null(strstr(err, "POLYSHOP_ACCESS_TTL"));
  }
  setenv("POLYSHOP_ACCESS_TTL", "60", 1);
  assert_int_equal(ps_jwt_keys_from_env(&k, err, sizeof(err)), 0);
  assert_int_equal(k.access_ttl, 60);
  setenv("POLYSHOP_ACCESS_TTL", "86400", 1);
  assert_int_equal(ps_jwt_keys_from_env(&k, err, sizeof(err)), 0);
  assert_int_equal(k.access_ttl, 86400);

  /* Keys from the environment sign tokens that verify, with the configured TTL. */
  ps_arena_t a;
  ps_arena_init(&a);
  char *tok;
  ps_claims_t c;
  assert_int_equal(ps_jwt_sign(&k, &a, "u", NULL, PS_ROLE_CUSTOMER, 1000, &tok), 0);
  assert_int_equal(ps_jwt_verify(&k, &a, tok, 1000, &c), 0);
  assert_int_equal(c.exp, 1000 + 86400);
  ps_arena_reset(&a);
  unsetenv("POLYSHOP_JWT_SECRET");
  unsetenv("POLYSHOP_JWT_PREVIOUS_SECRET");
  unsetenv("POLYSHOP_ACCESS_TTL");
}

int main(void) {
  if (sodium_init() < 0) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_interop_vector),
      cmocka_unit_test(test_expired),         cmocka_unit_test(test_tampered),
      cmocka_unit_test(test_alg_none_and_others), cmocka_unit_test(test_bad_claims),
      cmocka_unit_test(test_keys_rotation),   cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_base64url_vectors), cmocka_unit_test(test_keys_from_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
