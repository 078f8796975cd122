/* problem.c - RFC 9457 problem answers from one table (see problem.h). */
#include "polyshop/problem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polyshop/error.h"
#include "polyshop/log.h"

typedef struct {
  int status;
  const char *type, *title;
} problem_info_t;

static const problem_info_t problems[] = {
#define PS__PROBLEM_INFO(name, status, slug, title) {status, "urn:polyshop:problem:" slug, title},
    PS_PROBLEM_MAP(PS__PROBLEM_INFO)
#undef PS__PROBLEM_INFO
};

int ps_problem_status(ps_problem_t p) { return problems[p].status; }
const char *ps_problem_type(ps_problem_t p) { return problems[p].type; }
const char *ps_problem_title(ps_problem_t p) { return problems[p].title; }

json_t *ps_problem_json(ps_req_t *req, ps_problem_t problem, const char *field,
                        const char *detail) {
  const problem_info_t *info = &problems[problem];
  json_t *body = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "type", info->type, "title",
                           info->title, "status", info->status, "detail", detail ? detail : "",
                           "instance", req->path, "request_id", req->request_id);
  if (field) json_object_set_new(body, "field", json_string(field));
  return body;
}

static void send_problem(ps_req_t *req, int status, const char *text) {
  if (status == 503 || status == 429) ps_reply_header(req, "Retry-After", "1");
  ps_reply_raw(req, status, "application/problem+json", text, text ? strlen(text) : 0);
}

void ps_reply_problem_text(ps_req_t *req, int status, const char *text) {
  if (status >= 500)
    ps_log(PS_LOG_WARN, req->request_id, "%s %s: %d (stored answer)", req->method, req->path,
           status);
  send_problem(req, status, text);
}

void ps_reply_problem(ps_req_t *req, ps_problem_t problem, const char *field, const char *fmt,
                      ...) {
  const problem_info_t *info = &problems[problem];
  va_list ap;
  va_start(ap, fmt);
  char *detail = ps_arena_vsprintf(&req->arena, fmt, ap);
  va_end(ap);
  if (info->status >= 500)
    ps_log(PS_LOG_WARN, req->request_id, "%s %s: %d %s", req->method, req->path, info->status,
           detail);
  json_t *body = ps_problem_json(req, problem, field, detail);
  char *text = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  send_problem(req, info->status, text);
  free(text);
}

void ps_reply_error(ps_req_t *req, int err, const char *detail) {
  ps_problem_t p;
  switch (err) {
    case PS_EINVAL:
    case PS_ERANGE:
    case PS_EPARSE: p = PS_PROBLEM_VALIDATION; break;
    case PS_ENOTFOUND: p = PS_PROBLEM_NOT_FOUND; break;
    case PS_EEXISTS: p = PS_PROBLEM_DUPLICATE; break;
    case PS_ECONFLICT: p = PS_PROBLEM_CONFLICT; break;
    case PS_EAUTH: p = PS_PROBLEM_UNAUTHORIZED; break;
    case PS_EEXPIRED: p = PS_PROBLEM_TOKEN_EXPIRED; break;
    case PS_EFORBIDDEN: p = PS_PROBLEM_FORBIDDEN; break;
    case PS_ETOOBIG: p = PS_PROBLEM_PAYLOAD_TOO_LARGE; break;
    case PS_ELIMIT: p = PS_PROBLEM_RATE_LIMITED; break;
    case PS_EINSUFFICIENT: p = PS_PROBLEM_INSUFFICIENT_STOCK; break;
    case PS_ETIMEOUT: p = PS_PROBLEM_TIMEOUT; break;
    case PS_EUPSTREAM: p = PS_PROBLEM_UPSTREAM; break;
    case PS_EUNAVAIL:
    case PS_EBREAKER:
    case PS_ESTORE:
    case PS_EIO: p = PS_PROBLEM_UNAVAILABLE; break;
    default: p = PS_PROBLEM_INTERNAL; break;
  }
  ps_reply_problem(req, p, NULL, "%s", detail ? detail : ps_strerror(err));
}
