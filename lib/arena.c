/* arena.c - bump allocation in chunks, released together (see arena.h). */
#include "polyshop/arena.h"

#include <stdalign.h>
#include <stdio.h>
#include <string.h>

#include "polyshop/alloc.h"

struct ps_arena_chunk {
  ps_arena_chunk_t *next;
  size_t size, used;
  alignas(max_align_t) unsigned char data[];
};

struct ps_arena_defer {
  ps_arena_defer_t *next;
  ps_arena_cleanup_cb cb;
  void *data;
};

enum { ARENA_FIRST_CHUNK = 4096 - sizeof(ps_arena_chunk_t) };

void ps_arena_init(ps_arena_t *a) {
  a->chunks = NULL;
  a->defers = NULL;
  a->chunk_size = ARENA_FIRST_CHUNK;
}

void ps_arena_reset(ps_arena_t *a) {
  while (a->defers) {
    ps_arena_defer_t *d = a->defers;
    a->defers = d->next;
    d->cb(d->data); /* d itself lives in a chunk, freed below */
  }
  while (a->chunks) {
    ps_arena_chunk_t *c = a->chunks;
    a->chunks = c->next;
    ps_free(c);
  }
  a->chunk_size = ARENA_FIRST_CHUNK;
}

void ps_arena_recycle(ps_arena_t *a) {
  while (a->defers) {
    ps_arena_defer_t *d = a->defers;
    a->defers = d->next;
    d->cb(d->data);
  }
  while (a->chunks && a->chunks->next) {
    ps_arena_chunk_t *c = a->chunks;
    a->chunks = c->next;
    ps_free(c);
  }
  if (a->chunks && a->chunks->size > ARENA_FIRST_CHUNK) { /* a big first block: give it back */
    ps_free(a->chunks);
    a->chunks = NULL;
  }
  if (a->chunks) a->chunks->used = 0;
  a->chunk_size = ARENA_FIRST_CHUNK;
}

void *ps_arena_alloc(ps_arena_t *a, size_t n) {
  const size_t align = alignof(max_align_t);
  n = (n + align - 1) & ~(align - 1);
  ps_arena_chunk_t *c = a->chunks;
  if (!c || c->size - c->used < n) {
    size_t size = a->chunk_size;
    if (size < n) size = n;
    c = ps_malloc(sizeof(*c) + size);
    c->size = size;
    c->used = 0;
    c->next = a->chunks;
    a->chunks = c;
    if (a->chunk_size < 1u << 20) a->chunk_size *= 2; /* fewer mallocs for big answers */
  }
  void *p = c->data + c->used;
  c->used += n;
  memset(p, 0, n);
  return p;
}

char *ps_arena_strndup(ps_arena_t *a, const char *s, size_t n) {
  char *d = ps_arena_alloc(a, n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *ps_arena_strdup(ps_arena_t *a, const char *s) { return ps_arena_strndup(a, s, strlen(s)); }

char *ps_arena_vsprintf(ps_arena_t *a, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) n = 0;
  char *d = ps_arena_alloc(a, (size_t)n + 1);
  vsnprintf(d, (size_t)n + 1, fmt, ap);
  return d;
}

char *ps_arena_sprintf(ps_arena_t *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *d = ps_arena_vsprintf(a, fmt, ap);
  va_end(ap);
  return d;
}

void ps_arena_defer(ps_arena_t *a, ps_arena_cleanup_cb cb, void *data) {
  ps_arena_defer_t *d = ps_arena_alloc(a, sizeof(*d));
  d->cb = cb;
  d->data = data;
  d->next = a->defers;
  a->defers = d;
}
