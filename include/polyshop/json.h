/* json.h - reading JSON request bodies with validation that answers for itself.
 *
 * Every *_or_reply function returns 0 when the input is good, or PS_EINVAL after it has
 * already sent a 4xx problem naming the field, so a handler reads:
 *
 *   json_t *body;
 *   long long qty;
 *   if (ps_json_body_or_reply(req, &body)) return;
 *   if (ps_json_int_or_reply(req, body, "quantity", 1, 1000, &qty)) return;
 *
 * Strings returned point into jansson values owned by the request (valid until the answer
 * is sent). Keys starting with '$' are refused anywhere in a body, so no input can ever be
 * read as a database operator.
 */
#ifndef POLYSHOP_JSON_H
#define POLYSHOP_JSON_H
#include <jansson.h>
#include <stddef.h>

#include "polyshop/http.h"

/* Parses the body as a JSON object (415 for a non-JSON Content-Type, 400 for malformed JSON,
 * a non-object, or any key starting with '$'). The value is owned by the request. */
int ps_json_body_or_reply(ps_req_t *req, json_t **out);

/* Required string of min..max bytes (UTF-8 already checked by jansson). */
int ps_json_str_or_reply(ps_req_t *req, json_t *obj, const char *key, size_t min, size_t max,
                         const char **out);
/* Optional string: *out stays NULL when the key is absent or null. */
int ps_json_opt_str_or_reply(ps_req_t *req, json_t *obj, const char *key, size_t min,
                             size_t max, const char **out);
/* Required integer in [min, max] (a JSON number with a fraction is refused). */
int ps_json_int_or_reply(ps_req_t *req, json_t *obj, const char *key, long long min,
                         long long max, long long *out);
/* Optional integer: *present tells whether it was given. */
int ps_json_opt_int_or_reply(ps_req_t *req, json_t *obj, const char *key, long long min,
                             long long max, long long *out, int *present);
/* Optional boolean. */
int ps_json_opt_bool_or_reply(ps_req_t *req, json_t *obj, const char *key, int *out,
                              int *present);
/* Required object / array (borrowed reference). */
int ps_json_object_or_reply(ps_req_t *req, json_t *obj, const char *key, json_t **out);
int ps_json_array_or_reply(ps_req_t *req, json_t *obj, const char *key, size_t min, size_t max,
                           json_t **out);
/* Refuses keys of obj that are not in the NULL-terminated allowed list (400 naming it). */
int ps_json_only_keys_or_reply(ps_req_t *req, json_t *obj, const char *const *allowed);
/* The same for an object nested at path (e.g. "items[2]"): requires obj to be an object and
 * names an offending key as "items[2].key". */
int ps_json_only_keys_at_or_reply(ps_req_t *req, json_t *obj, const char *const *allowed,
                                  const char *path);

/* A query parameter as an integer in [min, max], or def when absent (400 bad-query). */
int ps_query_int_or_reply(ps_req_t *req, const char *name, long long def, long long min,
                          long long max, long long *out);

/* Returns 1 when any object key anywhere in v starts with '$'. */
int ps_json_has_operator_key(const json_t *v);

/* Serialises v compactly into the arena. */
char *ps_json_dump(ps_arena_t *a, const json_t *v);

#endif
