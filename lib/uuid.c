/* uuid.c - random UUIDs (see uuid.h). Formatted by hand: with vsnprintf's sixteen arguments
 * a UUID cost ~13k instructions, a noticeable share of a payment (callgrind). */
#include "polyshop/uuid.h"

#include <sodium.h>
#include <stdint.h>
#include <time.h>

static char *format(ps_arena_t *a, const unsigned char b[16]) {
  static const char hex[] = "0123456789abcdef";
  char *out = ps_arena_alloc(a, 37), *o = out;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
    *o++ = hex[b[i] >> 4];
    *o++ = hex[b[i] & 15];
  }
  *o = '\0';
  return out;
}

static char *finish(ps_arena_t *a, unsigned char b[16], unsigned version) {
  b[6] = (unsigned char)((b[6] & 0x0f) | (version << 4));
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 9562 variant */
  return format(a, b);
}

char *ps_uuid_v4(ps_arena_t *a) {
  unsigned char b[16];
  randombytes_buf(b, sizeof(b));
  return finish(a, b, 4);
}

char *ps_uuid_v7(ps_arena_t *a) {
  unsigned char b[16];
  randombytes_buf(b, sizeof(b));
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  for (int i = 0; i < 6; i++) b[i] = (unsigned char)(ms >> (40 - 8 * i));
  return finish(a, b, 7);
}
