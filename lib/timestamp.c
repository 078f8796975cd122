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
  snprintf(out, PS_TIME_RFC3339_SIZE, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return out;
}

char *ps_time_rfc3339(ps_arena_t *a, int64_t seconds) {
  return ps_time_rfc3339_buf(ps_arena_alloc(a, PS_TIME_RFC3339_SIZE), seconds);
}
