/* error.h - the one error convention of polyshop.
 *
 * Every fallible core function returns 0 on success or a negative PS_E* code. The codes come
 * from one table (PS_ERRNO_MAP) that also gives their names and messages, so a log line or a
 * problem reply can always say what went wrong. Driver errors (libpq, libmongoc, hiredis,
 * libcurl, SQLite) are converted to these codes at the adapter boundary.
 */
#ifndef POLYSHOP_ERROR_H
#define POLYSHOP_ERROR_H

#define PS_ERRNO_MAP(X)                                                    \
  X(INVAL, -1, "invalid argument")                                         \
  X(NOMEM, -2, "out of memory")                                            \
  X(NOTFOUND, -3, "not found")                                             \
  X(EXISTS, -4, "already exists")                                          \
  X(CONFLICT, -5, "conflicting state")                                     \
  X(IO, -6, "input/output error")                                          \
  X(TIMEOUT, -7, "timed out")                                              \
  X(UNAVAIL, -8, "service or store unavailable")                           \
  X(AUTH, -9, "authentication failed")                                     \
  X(FORBIDDEN, -10, "not allowed")                                         \
  X(RANGE, -11, "value out of range")                                      \
  X(PARSE, -12, "malformed input")                                         \
  X(TOOBIG, -13, "too large")                                              \
  X(LIMIT, -14, "rate limit exceeded")                                     \
  X(EXPIRED, -15, "expired")                                               \
  X(STORE, -16, "store error")                                             \
  X(UPSTREAM, -17, "upstream service error")                               \
  X(CONFIG, -18, "bad configuration")                                      \
  X(INTERNAL, -19, "internal error")                                       \
  X(BREAKER, -20, "circuit breaker open")                                  \
  X(INSUFFICIENT, -21, "insufficient quantity")                            \
  X(CANCELED, -22, "canceled")

typedef enum {
  PS_OK = 0,
#define PS__ERR_ENUM(name, code, msg) PS_E##name = (code),
  PS_ERRNO_MAP(PS__ERR_ENUM)
#undef PS__ERR_ENUM
} ps_err_t;

/* Returns a static human message for a PS_E* code ("unknown error" for anything else). */
const char *ps_strerror(int err);

/* Returns the static symbolic name of a PS_E* code, e.g. "PS_ENOTFOUND". */
const char *ps_err_name(int err);

#endif
