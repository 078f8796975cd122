/* timestamp.h - the one way public answers spell a point in time: RFC 3339 in UTC, to the
 * second ("2026-11-24T20:07:46Z"). Stores keep Unix seconds; answers convert at the edge of
 * the service. */
#ifndef POLYSHOP_TIMESTAMP_H
#define POLYSHOP_TIMESTAMP_H
#include <stdint.h>

#include "polyshop/arena.h"

/* Room for any RFC 3339 UTC second from year 0 to 9999, with its NUL ("YYYY-MM-DDTHH:MM:SSZ"
 * is 20 characters; the rest covers out-of-range years). */
#define PS_TIME_RFC3339_SIZE 32

/* Writes seconds (since the Unix epoch, UTC) as "YYYY-MM-DDTHH:MM:SSZ" into out, which has
 * PS_TIME_RFC3339_SIZE bytes. Returns out. Times before 0000 or after 9999 are clamped to
 * those years' ends, so the result is always valid RFC 3339. */
char *ps_time_rfc3339_buf(char out[PS_TIME_RFC3339_SIZE], int64_t seconds);

/* The same, allocated in the arena (released with it). */
char *ps_time_rfc3339(ps_arena_t *a, int64_t seconds);

#endif
