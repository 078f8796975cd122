/* alloc.h - the core's allocator: out of memory aborts with a message instead of spreading
 * NULL checks through every caller (as Redis's zmalloc does). Tests may replace the
 * underlying functions to inject failures. */
#ifndef POLYSHOP_ALLOC_H
#define POLYSHOP_ALLOC_H
#include <stddef.h>

void *ps_malloc(size_t n);
void *ps_calloc(size_t count, size_t size);
void *ps_realloc(void *p, size_t n);
char *ps_strdup(const char *s);
char *ps_strndup(const char *s, size_t n);
void ps_free(void *p);

typedef struct {
  void *(*malloc_fn)(size_t);
  void *(*realloc_fn)(void *, size_t);
  void *(*calloc_fn)(size_t, size_t);
  void (*free_fn)(void *);
} ps_allocator_t;

/* Replaces the allocator (tests only); must be called before any allocation. */
void ps_replace_allocator(const ps_allocator_t *a);

#endif
