/* alloc.c - allocation that never returns NULL: running out of memory is fatal (alloc.h). */
#include "polyshop/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ps_allocator_t allocator = {malloc, realloc, calloc, free};

void ps_replace_allocator(const ps_allocator_t *a) { allocator = *a; }

static void oom(size_t n) {
  fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"out of memory allocating %zu bytes\"}\n", n);
  abort();
}

void *ps_malloc(size_t n) {
  void *p = allocator.malloc_fn(n ? n : 1);
  if (!p) oom(n);
  return p;
}

void *ps_calloc(size_t count, size_t size) {
  void *p = allocator.calloc_fn(count ? count : 1, size ? size : 1);
  if (!p) oom(count * size);
  return p;
}

void *ps_realloc(void *p, size_t n) {
  void *q = allocator.realloc_fn(p, n ? n : 1);
  if (!q) oom(n);
  return q;
}

char *ps_strndup(const char *s, size_t n) {
  char *d = ps_malloc(n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *ps_strdup(const char *s) { return ps_strndup(s, strlen(s)); }

void ps_free(void *p) { allocator.free_fn(p); }
