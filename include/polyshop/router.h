/* router.h - matching "METHOD /path" against a table of route patterns with {named}
 * parameters, e.g. "/api/v1/users/{id}". Patterns are compiled once at start; matching
 * allocates nothing. */
#ifndef POLYSHOP_ROUTER_H
#define POLYSHOP_ROUTER_H
#include <stddef.h>

enum { PS_ROUTE_MAX_PARAMS = 4, PS_ROUTE_MAX_SEGMENTS = 12 };

typedef struct {
  const char *name; /* parameter name (points into the pattern copy) */
  const char *value;
  size_t len; /* value is NOT NUL-terminated: it points into the matched path */
} ps_param_t;

typedef struct {
  char *pattern_copy;
  const char *segments[PS_ROUTE_MAX_SEGMENTS];
  unsigned char is_param[PS_ROUTE_MAX_SEGMENTS];
  int nsegments;
  const char *method;
} ps_compiled_route_t;

typedef struct {
  ps_compiled_route_t *routes;
  size_t nroutes;
} ps_router_t;

/* Compiles patterns[i] with methods[i]. Returns 0, or PS_EINVAL for a malformed pattern
 * (not starting with '/', too many segments or parameters, empty "{}"). */
int ps_router_init(ps_router_t *r, const char *const *methods, const char *const *patterns,
                   size_t n);
void ps_router_cleanup(ps_router_t *r);

enum { PS_ROUTE_NOT_FOUND = -1, PS_ROUTE_BAD_METHOD = -2 };

/* Finds the route for method and path (without query). Returns its index and fills
 * params/nparams; PS_ROUTE_BAD_METHOD when the path exists for other methods (their names
 * are joined into allow, e.g. "GET, PATCH"), or PS_ROUTE_NOT_FOUND. Routes are tried in
 * table order and the first whose pattern matches the path and whose method is method wins;
 * nothing ranks a literal segment above a parameter. So a literal route must come before a
 * parameter route that also matches its paths ("/users/me" before "/users/{id}"): listed
 * after it, the literal route is never reached for that method ("me" becomes the id). */
int ps_router_match(const ps_router_t *r, const char *method, const char *path,
                    ps_param_t *params, int *nparams, char *allow, size_t allowlen);

#endif
