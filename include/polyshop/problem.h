/* problem.h - every error answer is application/problem+json (RFC 9457):
 *   {"type":"urn:polyshop:problem:validation","title":"Invalid input","status":400,
 *    "detail":"quantity must be between 1 and 1000","field":"quantity","request_id":"..."}
 * The type URIs and titles come from one table and never change once published; the
 * detail is for humans. Every error answer leaves through this module (ps_reply_problem, or
 * ps_reply_problem_text for a document stored to be replayed), which counts them for /metrics. */
#ifndef POLYSHOP_PROBLEM_H
#define POLYSHOP_PROBLEM_H

#include "polyshop/http.h"

#define PS_PROBLEM_MAP(X)                                                           \
  X(MALFORMED_JSON, 400, "malformed-json", "Malformed JSON")                        \
  X(VALIDATION, 400, "validation", "Invalid input")                                 \
  X(BAD_QUERY, 400, "bad-query", "Invalid query parameter")                         \
  X(MALFORMED_REQUEST, 400, "malformed-request", "Malformed HTTP request")          \
  X(LENGTH_REQUIRED, 411, "length-required", "Content-Length required")             \
  X(HEADERS_TOO_LARGE, 431, "headers-too-large", "Request headers too large")       \
  X(UNAUTHORIZED, 401, "unauthorized", "Authentication required")                   \
  X(TOKEN_EXPIRED, 401, "token-expired", "Token expired")                           \
  X(FORBIDDEN, 403, "forbidden", "Not allowed")                                     \
  X(NOT_FOUND, 404, "not-found", "Not found")                                       \
  X(METHOD_NOT_ALLOWED, 405, "method-not-allowed", "Method not allowed")            \
  X(CONFLICT, 409, "conflict", "Conflict")                                          \
  X(DUPLICATE, 409, "duplicate", "Already exists")                                  \
  X(PAYLOAD_TOO_LARGE, 413, "payload-too-large", "Request body too large")          \
  X(UNSUPPORTED_MEDIA_TYPE, 415, "unsupported-media-type", "Unsupported media type") \
  X(UNPROCESSABLE, 422, "unprocessable", "Unprocessable request")                   \
  X(IDEMPOTENCY_MISMATCH, 422, "idempotency-key-reuse", "Idempotency key reused")   \
  X(IDEMPOTENCY_IN_PROGRESS, 503, "idempotency-in-progress", "Request in progress")  \
  X(INSUFFICIENT_STOCK, 409, "insufficient-stock", "Insufficient stock")            \
  X(ORDER_FAILED, 409, "order-failed", "Order failed")                              \
  X(PAYMENT_DECLINED, 402, "payment-declined", "Payment declined")                  \
  X(PAYMENT_REJECTED, 422, "payment-rejected", "Payment rejected")                  \
  X(RATE_LIMITED, 429, "rate-limited", "Too many requests")                         \
  X(INTERNAL, 500, "internal", "Internal error")                                    \
  X(NOT_IMPLEMENTED, 501, "not-implemented", "Not implemented")                     \
  X(UPSTREAM, 502, "upstream", "Upstream service failed")                           \
  X(UNAVAILABLE, 503, "unavailable", "Service unavailable")                         \
  X(TIMEOUT, 504, "upstream-timeout", "Upstream service timed out")

typedef enum {
#define PS__PROBLEM_ENUM(name, status, slug, title) PS_PROBLEM_##name,
  PS_PROBLEM_MAP(PS__PROBLEM_ENUM)
#undef PS__PROBLEM_ENUM
  PS_PROBLEM__COUNT
} ps_problem_t;

/* Sends the problem with a formatted detail; field names the offending input (may be NULL).
 * 503 answers carry Retry-After: 1, 429 answers Retry-After from the caller's header if set. */
void ps_reply_problem(ps_req_t *req, ps_problem_t problem, const char *field, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

/* The document ps_reply_problem would send (detail taken as is, field may be NULL), as a
 * new jansson reference the caller owns: for answers that carry extension members or are
 * stored to be replayed for an Idempotency-Key. Send it with ps_reply_problem_text. */
json_t *ps_problem_json(ps_req_t *req, ps_problem_t problem, const char *field,
                        const char *detail);

/* Sends a problem document made earlier by ps_problem_json (now, or stored by an earlier
 * request with the same Idempotency-Key) with its status, the same headers and logging as
 * ps_reply_problem. text stays the caller's. */
void ps_reply_problem_text(ps_req_t *req, int status, const char *text);

/* Maps a PS_E* code to the matching problem and sends it with detail (or ps_strerror). */
void ps_reply_error(ps_req_t *req, int err, const char *detail);

/* The status, type URI and title of a problem. */
int ps_problem_status(ps_problem_t p);
const char *ps_problem_type(ps_problem_t p);
const char *ps_problem_title(ps_problem_t p);

#endif
