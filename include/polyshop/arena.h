/* arena.h - a per-request memory arena.
 *
 * Everything a request handler allocates while building its answer comes from the request's
 * arena and is released at once after the response is sent, so handlers never free and
 * cannot leak on an early return. Objects owned by other libraries (a jansson value, a
 * prepared statement) are tied to the arena with ps_arena_defer().
 */
#ifndef POLYSHOP_ARENA_H
#define POLYSHOP_ARENA_H
#include <stdarg.h>
#include <stddef.h>

typedef struct ps_arena_chunk ps_arena_chunk_t;
typedef struct ps_arena_defer ps_arena_defer_t;

typedef struct {
  ps_arena_chunk_t *chunks; /* newest first */
  ps_arena_defer_t *defers; /* run in reverse order of registration */
  size_t chunk_size;
} ps_arena_t;

typedef void (*ps_arena_cleanup_cb)(void *data);

/* Prepares an empty arena; nothing is allocated until the first ps_arena_alloc(). */
void ps_arena_init(ps_arena_t *a);

/* Runs the deferred cleanups and frees every block. The arena can be reused afterwards. */
void ps_arena_reset(ps_arena_t *a);

/* Like ps_arena_reset, but keeps the oldest block (the first, smallest one) for the next
 * use, so an arena reused request after request (the server's, one per connection) costs no
 * malloc for a small request. ps_arena_reset frees it. */
void ps_arena_recycle(ps_arena_t *a);

/* Returns n bytes aligned for any type, zeroed. Never NULL (out of memory aborts). The
 * memory belongs to the arena. */
void *ps_arena_alloc(ps_arena_t *a, size_t n);

/* Copies of strings, owned by the arena. */
char *ps_arena_strdup(ps_arena_t *a, const char *s);
char *ps_arena_strndup(ps_arena_t *a, const char *s, size_t n);
char *ps_arena_sprintf(ps_arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *ps_arena_vsprintf(ps_arena_t *a, const char *fmt, va_list ap);

/* Registers cb(data) to run at the next ps_arena_reset(); the arena takes ownership of data. */
void ps_arena_defer(ps_arena_t *a, ps_arena_cleanup_cb cb, void *data);

#endif
