/* webhook.c - checking Stripe's webhook signatures (see payment.h).
 *
 * Stripe-Signature is "t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]"; each v1 is
 * HMAC-SHA256 under the endpoint's signing secret of "<t>.<raw body>". Several v1 values
 * appear while a secret is being rolled; any one matching is enough. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "payment.h"
#include "polyshop/error.h"

enum { HEADER_MAX = 4096, SIG_HEX = 2 * crypto_auth_hmacsha256_BYTES };

static void hmac(const unsigned char *secret, size_t secret_len, const char *t, size_t tlen,
                 const char *payload, size_t len, unsigned char out[crypto_auth_hmacsha256_BYTES]) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, secret, secret_len);
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)t, tlen);
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)payload, len);
  crypto_auth_hmacsha256_final(&st, out);
}

int payment_webhook_verify(const char *header, const char *payload, size_t len,
                           const unsigned char *secret, size_t secret_len, int64_t now,
                           int64_t tolerance) {
  if (!header || !secret || secret_len == 0) return PS_EPARSE;
  size_t hlen = strlen(header);
  if (hlen == 0 || hlen > HEADER_MAX) return PS_EPARSE;

  const char *t = NULL;
  size_t tlen = 0;
  const char *sigs[16];
  int nsigs = 0;
  for (const char *p = header; *p;) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    while (n && *p == ' ') p++, n--;
    if (n > 2 && p[0] == 't' && p[1] == '=') {
      if (t) return PS_EPARSE; /* one timestamp only */
      t = p + 2;
      tlen = n - 2;
    } else if (n > 3 && strncmp(p, "v1=", 3) == 0) {
      if (n - 3 != SIG_HEX) return PS_EPARSE;
      if (nsigs < (int)(sizeof(sigs) / sizeof(sigs[0]))) sigs[nsigs++] = p + 3;
    }
    /* other schemes (v0: Stripe's test scheme) are ignored, as Stripe's libraries do */
    p += n;
    if (*p == ',') p++;
  }
  if (!t || tlen == 0 || tlen > 12 || nsigs == 0) return PS_EPARSE;
  int64_t ts = 0;
  for (size_t i = 0; i < tlen; i++) {
    if (t[i] < '0' || t[i] > '9') return PS_EPARSE;
    ts = ts * 10 + (t[i] - '0');
  }

  unsigned char want[crypto_auth_hmacsha256_BYTES];
  hmac(secret, secret_len, t, tlen, payload, len, want);
  int match = 0;
  for (int i = 0; i < nsigs; i++) {
    unsigned char got[crypto_auth_hmacsha256_BYTES];
    size_t got_len = 0;
    if (sodium_hex2bin(got, sizeof(got), sigs[i], SIG_HEX, NULL, &got_len, NULL) != 0 ||
        got_len != sizeof(got))
      continue;
    if (sodium_memcmp(got, want, sizeof(want)) == 0) match = 1;
  }
  /* The signature is checked before the time, so a forged request never learns that its
   * timestamp was the only thing wrong. */
  if (!match) return PS_EAUTH;
  if (ts < now - tolerance || ts > now + tolerance) return PS_EEXPIRED;
  return 0;
}

char *payment_webhook_sign(ps_arena_t *a, const char *payload, size_t len,
                           const unsigned char *secret, size_t secret_len, int64_t t) {
  char ts[24];
  int tlen = snprintf(ts, sizeof(ts), "%lld", (long long)t);
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  hmac(secret, secret_len, ts, (size_t)tlen, payload, len, mac);
  char hex[SIG_HEX + 1];
  sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
  return ps_arena_sprintf(a, "t=%s,v1=%s", ts, hex);
}
