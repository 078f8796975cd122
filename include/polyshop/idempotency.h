/* idempotency.h - the one rule for the Idempotency-Key header, shared by every service that
 * takes one (order, payment).
 *
 * A key is 1 to PS_IDEMPOTENCY_KEY_MAX (255) visible ASCII characters, 0x21..0x7e: no
 * spaces, no control characters, no UTF-8. Clients usually send a UUID.
 */
#ifndef POLYSHOP_IDEMPOTENCY_H
#define POLYSHOP_IDEMPOTENCY_H

#include "polyshop/http.h"

#define PS_IDEMPOTENCY_KEY_MAX 255

/* Returns NULL when key is a valid Idempotency-Key, or a sentence saying what is wrong
 * (a static string; NULL and "" are "missing"). */
const char *ps_idempotency_key_check(const char *key);

/* Reads the Idempotency-Key header into *key (a pointer into the request, valid until the
 * answer is sent). When the header is absent and required is 0, returns 0 with *key NULL.
 * Otherwise a missing or invalid key is answered with a 400 problem whose field is
 * "Idempotency-Key" and PS_EINVAL is returned. */
int ps_idempotency_key_or_reply(ps_req_t *req, int required, const char **key);

#endif
