/* timestamp.c - RFC 3339 UTC timestamps for public answers (see timestamp.h). */
#include <stdio.h>
#include <time.h>

#include "polyshop/timestamp.h"

/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z. */
#define MIN_SECONDS (-62167219200LL)
#define MAX_SECONDS 253402300799LL

char *ps_time_rfc3339_buf(char out[PS_TIME_RFC3339_SIZE], int64_t seconds) {
  if (seconds < MIN_SECONDS) seconds = MIN_SECONDS;
  if (seconds > MAX_SECONDS) seconds = MAX_SECONDS;
  time_t t = (time_t)seconds;
  struct tm tm;
  if (!gmtime_r(&t, &tm)) {
    snprintf(out, PS_TIME_RFC3339_SIZE, "1970-01-01T00:00:00Z");
    return out;
  }
  /* The modulos change nothing after the clamp above; they show GCC's -O2 format check that
   * the text fits (-Werror=format-truncation). */
  snprintf(out, PS_TIME_RFC3339_SIZE, "%04u-%02u-%02uT%02u:%02u:%02uZ",
           (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
           (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
           (unsigned)tm.tm_sec % 100u);
  return out;
}

char *ps_time_rfc3339(ps_arena_t *a, int64_t seconds) {
  return ps_time_rfc3339_buf(ps_arena_alloc(a, PS_TIME_RFC3339_SIZE), seconds);
}
