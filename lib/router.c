/* router.c - pattern compilation and matching (see router.h). */
#include "polyshop/router.h"

#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"

static int compile(ps_compiled_route_t *cr, const char *method, const char *pattern) {
  if (pattern[0] != '/') return PS_EINVAL;
  cr->method = method;
  cr->pattern_copy = ps_strdup(pattern);
  cr->nsegments = 0;
  int nparams = 0;
  char *save = NULL;
  for (char *seg = strtok_r(cr->pattern_copy, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
    if (cr->nsegments == PS_ROUTE_MAX_SEGMENTS) return PS_EINVAL;
    size_t len = strlen(seg);
    int param = seg[0] == '{';
    if (param) {
      if (len < 3 || seg[len - 1] != '}' || ++nparams > PS_ROUTE_MAX_PARAMS) return PS_EINVAL;
      seg[len - 1] = '\0';
      seg++;
    }
    cr->segments[cr->nsegments] = seg;
    cr->is_param[cr->nsegments] = (unsigned char)param;
    cr->nsegments++;
  }
  return 0;
}

int ps_router_init(ps_router_t *r, const char *const *methods, const char *const *patterns,
                   size_t n) {
  r->routes = ps_calloc(n ? n : 1, sizeof(*r->routes));
  r->nroutes = n;
  for (size_t i = 0; i < n; i++) {
    if (compile(&r->routes[i], methods[i], patterns[i])) {
      ps_router_cleanup(r);
      return PS_EINVAL;
    }
  }
  return 0;
}

void ps_router_cleanup(ps_router_t *r) {
  for (size_t i = 0; i < r->nroutes; i++) ps_free(r->routes[i].pattern_copy);
  ps_free(r->routes);
  r->routes = NULL;
  r->nroutes = 0;
}

/* Splits path into segments without copying; empty segments ("//") are kept so that they
 * never match a literal or a parameter. Returns the count or -1 when there are too many. */
static int split_path(const char *path, const char **starts, size_t *lens) {
  int n = 0;
  const char *p = path;
  if (*p != '/') return -1;
  if (p[1] == '\0') return 0;
  while (*p == '/') {
    const char *s = ++p;
    while (*p && *p != '/') p++;
    if (n == PS_ROUTE_MAX_SEGMENTS) return -1;
    starts[n] = s;
    lens[n] = (size_t)(p - s);
    n++;
  }
  return n;
}

static int segments_match(const ps_compiled_route_t *cr, int n, const char **starts,
                          const size_t *lens, ps_param_t *params, int *nparams) {
  if (cr->nsegments != n) return 0;
  int np = 0;
  for (int i = 0; i < n; i++) {
    if (lens[i] == 0) return 0;
    if (cr->is_param[i]) {
      params[np].name = cr->segments[i];
      params[np].value = starts[i];
      params[np].len = lens[i];
      np++;
    } else if (strlen(cr->segments[i]) != lens[i] || memcmp(cr->segments[i], starts[i], lens[i])) {
      return 0;
    }
  }
  *nparams = np;
  return 1;
}

int ps_router_match(const ps_router_t *r, const char *method, const char *path,
                    ps_param_t *params, int *nparams, char *allow, size_t allowlen) {
  const char *starts[PS_ROUTE_MAX_SEGMENTS];
  size_t lens[PS_ROUTE_MAX_SEGMENTS];
  int n = split_path(path, starts, lens);
  *nparams = 0;
  if (allowlen) allow[0] = '\0';
  if (n < 0) return PS_ROUTE_NOT_FOUND;
  int path_known = 0;
  for (size_t i = 0; i < r->nroutes; i++) {
    ps_param_t tmp[PS_ROUTE_MAX_PARAMS];
    int ntmp;
    if (!segments_match(&r->routes[i], n, starts, lens, tmp, &ntmp)) continue;
    if (strcmp(r->routes[i].method, method) == 0) {
      memcpy(params, tmp, sizeof(tmp[0]) * (size_t)ntmp);
      *nparams = ntmp;
      return (int)i;
    }
    /* Collect the other methods of this path for the Allow header, once each. */
    const char *m = r->routes[i].method;
    size_t used = strlen(allow), mlen = strlen(m);
    if (!strstr(allow, m) && used + mlen + 3 < allowlen) {
      if (used) memcpy(allow + used, ", ", 2), used += 2;
      memcpy(allow + used, m, mlen + 1);
    }
    path_known = 1;
  }
  return path_known ? PS_ROUTE_BAD_METHOD : PS_ROUTE_NOT_FOUND;
}
