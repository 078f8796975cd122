/* json.c - validated reading of JSON request bodies and query parameters (see json.h). */
#include "polyshop/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "polyshop/error.h"
#include "polyshop/problem.h"

static void decref_cb(void *v) { json_decref(v); }

int ps_json_has_operator_key(const json_t *v) {
  if (json_is_object(v)) {
    const char *key;
    json_t *child;
    json_object_foreach((json_t *)v, key, child) {
      if (key[0] == '$' || ps_json_has_operator_key(child)) return 1;
    }
  } else if (json_is_array(v)) {
    size_t i;
    json_t *child;
    json_array_foreach(v, i, child) {
      if (ps_json_has_operator_key(child)) return 1;
    }
  }
  return 0;
}

static int is_json_type(const char *ct) {
  if (!ct) return 1; /* lenient: curl -d without a type still works */
  size_t n = strcspn(ct, ";");
  while (n && ct[n - 1] == ' ') n--;
  if (n == 16 && strncasecmp(ct, "application/json", 16) == 0) return 1;
  return n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0;
}

int ps_json_body_or_reply(ps_req_t *req, json_t **out) {
  if (req->json) {
    *out = req->json;
    return 0;
  }
  if (!is_json_type(ps_req_header(req, "Content-Type"))) {
    ps_reply_problem(req, PS_PROBLEM_UNSUPPORTED_MEDIA_TYPE, NULL,
                     "send the body as application/json");
    return PS_EINVAL;
  }
  json_error_t err;
  json_t *v = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &err);
  if (!v) {
    ps_reply_problem(req, PS_PROBLEM_MALFORMED_JSON, NULL, "%s at line %d, column %d",
                     req->body_len ? err.text : "the body is empty", err.line, err.column);
    return PS_EINVAL;
  }
  ps_arena_defer(&req->arena, decref_cb, v);
  if (!json_is_object(v)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, NULL, "the body must be a JSON object");
    return PS_EINVAL;
  }
  if (ps_json_has_operator_key(v)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, NULL,
                     "keys starting with '$' are not allowed");
    return PS_EINVAL;
  }
  req->json = v;
  *out = v;
  return 0;
}

static int str_check(ps_req_t *req, json_t *v, const char *key, size_t min, size_t max,
                     const char **out) {
  if (!json_is_string(v)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, key, "%s must be a string", key);
    return PS_EINVAL;
  }
  size_t len = json_string_length(v);
  if (len < min || len > max || strlen(json_string_value(v)) != len) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, key, "%s must have %zu to %zu characters", key,
                     min, max);
    return PS_EINVAL;
  }
  *out = json_string_value(v);
  return 0;
}

int ps_json_str_or_reply(ps_req_t *req, json_t *obj, const char *key, size_t min, size_t max,
                         const char **out) {
  json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, key, "%s is required", key);
    return PS_EINVAL;
  }
  return str_check(req, v, key, min, max, out);
}

int ps_json_opt_str_or_reply(ps_req_t *req, json_t *obj, const char *key, size_t min,
                             size_t max, const char **out) {
  json_t *v = json_object_get(obj, key);
  *out = NULL;
  if (!v || json_is_null(v)) return 0;
  return str_check(req, v, key, min, max, out);
}

static int int_check(ps_req_t *req, json_t *v, const char *key, long long min, long long max,
                     long long *out) {
  if (!json_is_integer(v)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, key, "%s must be a whole number", key);
    return PS_EINVAL;
  }
  long long n = json_integer_value(v);
  if (n < min || n > max) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, key, "%s must be between %lld and %lld", key,
                     min, max);
    return PS_EINVAL;
  }
  *out = n;
  return 0;
}

int ps_json_int_or_reply(ps_req_t *req, json_t *obj, const char *key, long long min,
                         long long max, long long *out) {
  json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, key, "%s is required", key);
    return PS_EINVAL;
  }
  return int_check(req, v, key, min, max, out);
}

int ps_json_opt_int_or_reply(ps_req_t *req, json_t *obj, const char *key, long long min,
                             long long max, long long *out, int *present) {
  json_t *v = json_object_get(obj, key);
  *present = v && !json_is_null(v);
  if (!*present) return 0;
  return int_check(req, v, key, min, max, out);
}

int ps_json_opt_bool_or_reply(ps_req_t *req, json_t *obj, const char *key, int *out,
                              int *present) {
  json_t *v = json_object_get(obj, key);
  *present = v && !json_is_null(v);
  if (!*present) return 0;
  if (!json_is_boolean(v)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, key, "%s must be true or false", key);
    return PS_EINVAL;
  }
  *out = json_is_true(v);
  return 0;
}

int ps_json_object_or_reply(ps_req_t *req, json_t *obj, const char *key, json_t **out) {
  json_t *v = json_object_get(obj, key);
  if (!json_is_object(v)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, key, "%s must be an object", key);
    return PS_EINVAL;
  }
  *out = v;
  return 0;
}

int ps_json_array_or_reply(ps_req_t *req, json_t *obj, const char *key, size_t min, size_t max,
                           json_t **out) {
  json_t *v = json_object_get(obj, key);
  if (!json_is_array(v)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, key, "%s must be an array", key);
    return PS_EINVAL;
  }
  size_t n = json_array_size(v);
  if (n < min || n > max) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, key, "%s must have %zu to %zu entries", key,
                     min, max);
    return PS_EINVAL;
  }
  *out = v;
  return 0;
}

int ps_json_only_keys_at_or_reply(ps_req_t *req, json_t *obj, const char *const *allowed,
                                  const char *path) {
  if (path && !json_is_object(obj)) {
    ps_reply_problem(req, PS_PROBLEM_VALIDATION, path, "%s must be an object", path);
    return PS_EINVAL;
  }
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    int ok = 0;
    for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(*a, key) == 0;
    if (!ok) {
      const char *field = path ? ps_arena_sprintf(&req->arena, "%s.%s", path, key) : key;
      ps_reply_problem(req, PS_PROBLEM_VALIDATION, field, "%s is not a field of this resource",
                       field);
      return PS_EINVAL;
    }
  }
  return 0;
}

int ps_json_only_keys_or_reply(ps_req_t *req, json_t *obj, const char *const *allowed) {
  return ps_json_only_keys_at_or_reply(req, obj, allowed, NULL);
}

int ps_query_int_or_reply(ps_req_t *req, const char *name, long long def, long long min,
                          long long max, long long *out) {
  const char *s = ps_req_query(req, name);
  if (!s) {
    *out = def;
    return 0;
  }
  char *end;
  errno = 0;
  long long n = strtoll(s, &end, 10);
  if (errno || end == s || *end || n < min || n > max) {
    ps_reply_problem(req, PS_PROBLEM_BAD_QUERY, name, "%s must be a whole number between %lld and %lld",
                     name, min, max);
    return PS_EINVAL;
  }
  *out = n;
  return 0;
}

char *ps_json_dump(ps_arena_t *a, const json_t *v) {
  char *s = json_dumps(v, JSON_COMPACT);
  char *out = ps_arena_strdup(a, s ? s : "null");
  free(s);
  return out;
}
