/* log.c - JSON log lines on stderr (see log.h). */
#include "polyshop/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "polyshop/error.h"

static const char *log_service = "polyshop";
static ps_log_level_t log_min = PS_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error", "fatal"};

void ps_log_init(const char *service, ps_log_level_t min_level) {
  log_service = service;
  log_min = min_level;
}

int ps_log_level_parse(const char *s, ps_log_level_t *out) {
  for (int i = 0; i <= PS_LOG_ERROR; i++) {
    if (strcmp(s, level_names[i]) == 0) {
      *out = (ps_log_level_t)i;
      return 0;
    }
  }
  return PS_EINVAL;
}

/* A line under construction in a fixed buffer; long messages are cut, never overflow. */
typedef struct {
  char buf[4096];
  size_t len;
} line_t;

static void put_raw(line_t *l, const char *s, size_t n) {
  size_t room = sizeof(l->buf) - 2 - l->len; /* keep space for "}\n" */
  if (n > room) n = room;
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

static void put_str(line_t *l, const char *s) { put_raw(l, s, strlen(s)); }

static void put_escaped(line_t *l, const char *s) {
  put_raw(l, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    if (*p == '"' || *p == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*p;
      put_raw(l, esc, 2);
    } else if (*p < 0x20) {
      snprintf(esc, sizeof(esc), "\\u%04x", *p);
      put_raw(l, esc, 6);
    } else {
      put_raw(l, (const char *)p, 1);
    }
  }
  put_raw(l, "\"", 1);
}

static void put_field(line_t *l, const char *key, const char *value) {
  put_str(l, ",\"");
  put_str(l, key);
  put_str(l, "\":");
  put_escaped(l, value);
}

static void line_start(line_t *l, ps_log_level_t level, const char *request_id) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  l->len = 0;
  l->len += strftime(l->buf, sizeof(l->buf), "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
  l->len += (size_t)snprintf(l->buf + l->len, sizeof(l->buf) - l->len, ".%03ldZ\"",
                             ts.tv_nsec / 1000000);
  put_field(l, "level", level_names[level]);
  put_field(l, "service", log_service);
  if (request_id) put_field(l, "request_id", request_id);
}

static void line_end(line_t *l) {
  l->buf[l->len++] = '}';
  l->buf[l->len++] = '\n';
  ssize_t w = write(STDERR_FILENO, l->buf, l->len);
  (void)w; /* nowhere left to report a failed log write */
}

void ps_log(ps_log_level_t level, const char *request_id, const char *fmt, ...) {
  if (level < log_min) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  line_t l;
  line_start(&l, level, request_id);
  put_field(&l, "msg", msg);
  line_end(&l);
}

void ps_log_access(const char *request_id, const char *method, const char *path,
                   const char *route, int status, double seconds, const char *client) {
  if (PS_LOG_INFO < log_min) return;
  line_t l;
  char num[64];
  line_start(&l, PS_LOG_INFO, request_id);
  put_field(&l, "msg", "request");
  put_field(&l, "method", method);
  put_field(&l, "path", path);
  put_field(&l, "route", route);
  snprintf(num, sizeof(num), ",\"status\":%d,\"duration_ms\":%.3f", status, seconds * 1e3);
  put_str(&l, num);
  if (client) put_field(&l, "client", client);
  line_end(&l);
}
