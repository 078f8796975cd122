/* http_auth.c - the guards a handler calls to require a signed-in user or an admin. */
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
