/* polyshop-run: the launcher's own structured log, one JSON object per line on stderr. */
#include "launcher.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static void put_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"': fputs("\\\"", f); break;
    case '\\': fputs("\\\\", f); break;
    case '\n': fputs("\\n", f); break;
    case '\r': fputs("\\r", f); break;
    case '\t': fputs("\\t", f); break;
    default:
      if (*p < 0x20)
        fprintf(f, "\\u%04x", *p);
      else
        fputc(*p, f);
    }
  }
  fputc('"', f);
}

void lr_log(const char *level, const char *event, ...) {
  /* Build the line in memory so that it reaches stderr in one write and does not
   * interleave with the children's own log lines. */
  char *line = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&line, &len);
  if (!f) return;

  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char ts[40];
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(f, "{\"ts\":\"%s.%03ldZ\",\"level\":", ts, (long)(tv.tv_usec / 1000));
  put_json_string(f, level);
  fputs(",\"component\":\"launcher\",\"event\":", f);
  put_json_string(f, event);

  va_list ap;
  va_start(ap, event);
  for (;;) {
    const char *type = va_arg(ap, const char *);
    if (!type) break;
    const char *key = va_arg(ap, const char *);
    fputc(',', f);
    put_json_string(f, key);
    fputc(':', f);
    if (strcmp(type, "s") == 0) {
      const char *v = va_arg(ap, const char *);
      if (v)
        put_json_string(f, v);
      else
        fputs("null", f);
    } else if (strcmp(type, "i") == 0) {
      fprintf(f, "%d", va_arg(ap, int));
    } else {
      fprintf(f, "%.3f", va_arg(ap, double));
    }
  }
  va_end(ap);
  fputs("}\n", f);
  fclose(f);
  fwrite(line, 1, len, stderr);
  fflush(stderr);
  free(line);
}
