/* ratelimit.c - in-process fixed-window counters for login attempts (the embedded fallback;
 * several replicas share Redis counters instead). One mutex: login is rare and slow anyway
 * (argon2id), so contention here never matters. */
#include <pthread.h>
#include <string.h>

#include "polyshop/alloc.h"
#include "polyshop/error.h"
#include "user.h"

enum { RL_BUCKETS = 1024 };

typedef struct entry {
  struct entry *next;
  int64_t window_start;
  int count;
  char key[];
} entry_t;

struct ratelimit {
  pthread_mutex_t lock;
  int max, window;
  entry_t *buckets[RL_BUCKETS];
};

ratelimit_t *ratelimit_new(int max, int window_seconds) {
  ratelimit_t *r = ps_calloc(1, sizeof(*r));
  pthread_mutex_init(&r->lock, NULL);
  r->max = max;
  r->window = window_seconds;
  return r;
}

void ratelimit_free(ratelimit_t *r) {
  if (!r) return;
  for (int i = 0; i < RL_BUCKETS; i++) {
    while (r->buckets[i]) {
      entry_t *e = r->buckets[i];
      r->buckets[i] = e->next;
      ps_free(e);
    }
  }
  pthread_mutex_destroy(&r->lock);
  ps_free(r);
}

static unsigned hash(const char *s) {
  unsigned h = 2166136261u; /* FNV-1a */
  while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
  return h % RL_BUCKETS;
}

/* Finds key's entry, dropping expired entries of the bucket on the way so memory stays
 * bounded by the keys active in one window. */
static entry_t **find(ratelimit_t *r, const char *key, int64_t now) {
  entry_t **pp = &r->buckets[hash(key)];
  while (*pp) {
    entry_t *e = *pp;
    if (strcmp(e->key, key) == 0) return pp;
    if (now - e->window_start >= r->window) {
      *pp = e->next;
      ps_free(e);
      continue;
    }
    pp = &e->next;
  }
  return pp;
}

int ratelimit_hit(ratelimit_t *r, const char *key, int64_t now, int *retry_after) {
  pthread_mutex_lock(&r->lock);
  entry_t **pp = find(r, key, now);
  entry_t *e = *pp;
  if (!e) {
    size_t n = strlen(key);
    e = ps_malloc(sizeof(*e) + n + 1);
    memcpy(e->key, key, n + 1);
    e->next = NULL;
    e->count = 0;
    e->window_start = now;
    *pp = e;
  } else if (now - e->window_start >= r->window) {
    e->window_start = now;
    e->count = 0;
  }
  int rc = 0;
  if (e->count >= r->max) {
    *retry_after = (int)(e->window_start + r->window - now);
    if (*retry_after < 1) *retry_after = 1;
    rc = PS_ELIMIT;
  } else {
    e->count++;
  }
  pthread_mutex_unlock(&r->lock);
  return rc;
}

void ratelimit_clear(ratelimit_t *r, const char *key) {
  pthread_mutex_lock(&r->lock);
  entry_t **pp = find(r, key, 0);
  if (*pp && strcmp((*pp)->key, key) == 0) {
    entry_t *e = *pp;
    *pp = e->next;
    ps_free(e);
  }
  pthread_mutex_unlock(&r->lock);
}
