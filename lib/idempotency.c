/* idempotency.c - validation of the Idempotency-Key header (see idempotency.h). */
#include <string.h>

#include "polyshop/error.h"
#include "polyshop/idempotency.h"
#include "polyshop/problem.h"

const char *ps_idempotency_key_check(const char *key) {
  if (!key || !*key) return "send an Idempotency-Key header (1 to 255 visible ASCII characters)";
  size_t n = strlen(key);
  if (n > PS_IDEMPOTENCY_KEY_MAX) return "the Idempotency-Key has more than 255 characters";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)key[i];
    if (c < 0x21 || c > 0x7e)
      return "the Idempotency-Key may hold only visible ASCII characters (no spaces)";
  }
  return NULL;
}

int ps_idempotency_key_or_reply(ps_req_t *req, int required, const char **key) {
  *key = ps_req_header(req, "Idempotency-Key");
  if (!*key && !required) return 0;
  const char *why = ps_idempotency_key_check(*key);
  if (!why) return 0;
  ps_reply_problem(req, PS_PROBLEM_VALIDATION, "Idempotency-Key", "%s", why);
  return PS_EINVAL;
}
