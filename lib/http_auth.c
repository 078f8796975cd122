/* http_auth.c - the guards a handler calls to require a signed-in user, an admin, or another
 * service of the shop (internal routes). */
#include <sodium.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "polyshop/error.h"
#include "polyshop/http.h"
#include "polyshop/problem.h"

int ps_auth_user_or_reply(ps_req_t *req) {
  const char *h = ps_req_header(req, "Authorization");
  if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7]) {
    ps_reply_header(req, "WWW-Authenticate", "Bearer");
    ps_reply_problem(req, PS_PROBLEM_UNAUTHORIZED, NULL,
                     "send an access token as Authorization: Bearer <token>");
    return PS_EAUTH;
  }
  if (!req->jwt_keys) {
    ps_reply_problem(req, PS_PROBLEM_INTERNAL, NULL, "this service has no token keys");
    return PS_EINTERNAL;
  }
  int rc = ps_jwt_verify(req->jwt_keys, &req->arena, h + 7, (int64_t)time(NULL), &req->claims);
  if (rc) {
    ps_reply_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    if (rc == PS_EEXPIRED)
      ps_reply_problem(req, PS_PROBLEM_TOKEN_EXPIRED, NULL, "the access token has expired; refresh it");
    else
      ps_reply_problem(req, PS_PROBLEM_UNAUTHORIZED, NULL, "the access token is not valid");
    return PS_EAUTH;
  }
  return 0;
}

int ps_auth_admin_or_reply(ps_req_t *req) {
  int rc = ps_auth_user_or_reply(req);
  if (rc) return rc;
  if (req->claims.role != PS_ROLE_ADMIN) {
    ps_reply_problem(req, PS_PROBLEM_FORBIDDEN, NULL, "this needs the admin role");
    return PS_EFORBIDDEN;
  }
  return 0;
}

int ps_auth_internal_or_reply(ps_req_t *req, const char *internal_token) {
  const char *tok = ps_req_header(req, "X-Internal-Token");
  if (!tok || !internal_token || !*internal_token) return ps_auth_admin_or_reply(req);
  /* Hash both sides and compare the digests in constant time: the time depends neither on
   * where the first difference is nor on the secret's length. */
  unsigned char h1[crypto_hash_sha256_BYTES], h2[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h1, (const unsigned char *)tok, strlen(tok));
  crypto_hash_sha256(h2, (const unsigned char *)internal_token, strlen(internal_token));
  int same = strlen(tok) == strlen(internal_token) && sodium_memcmp(h1, h2, sizeof(h1)) == 0;
  if (same) return 0;
  ps_reply_problem(req, PS_PROBLEM_UNAUTHORIZED, NULL, "the internal token is not valid");
  return PS_EAUTH;
}
