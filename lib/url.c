/* url.c - URLs with their passwords hidden, for logs and configuration errors (url.h). */
#include "polyshop/url.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Copies the n bytes of s to the end of buf (len used of size), marking a cut with "...". */
static void put(char *buf, size_t size, size_t *len, const char *s, size_t n) {
  if (*len + n < size) {
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = '\0';
    return;
  }
  size_t room = size - 1 - *len;
  memcpy(buf + *len, s, room);
  *len = size - 1;
  buf[*len] = '\0';
  memcpy(buf + size - 4, "...", 3);
}

/* Length of "scheme://" at the start of url, or 0 when it does not start with one. */
static size_t scheme_len(const char *url) {
  const char *p = url;
  if (!isalpha((unsigned char)*p)) return 0;
  while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.') p++;
  return strncmp(p, "://", 3) == 0 ? (size_t)(p - url) + 3 : 0;
}

/* libpq's "host=... password=secret ..." form: every password value becomes ***. */
static void redact_conninfo(char *buf, size_t size, size_t *len, const char *s) {
  const char *p = s, *hit;
  while ((hit = strstr(p, "password")) != NULL) {
    const char *v = hit + 8;
    while (*v == ' ') v++;
    if (*v != '=' || (hit > s && !isspace((unsigned char)hit[-1]))) {
      put(buf, size, len, p, (size_t)(v - p));
      p = v;
      continue;
    }
    v++;
    while (*v == ' ') v++;
    put(buf, size, len, p, (size_t)(v - p));
    put(buf, size, len, "***", 3);
    if (*v == '\'') { /* a quoted value ends at the next unescaped quote */
      for (v++; *v && *v != '\''; v++)
        if (*v == '\\' && v[1]) v++;
      if (*v) v++;
    } else {
      while (*v && !isspace((unsigned char)*v)) v++;
    }
    p = v;
  }
  put(buf, size, len, p, strlen(p));
}

char *ps_url_redact(char *buf, size_t size, const char *url) {
  size_t len = 0;
  buf[0] = '\0';
  if (!url) return buf;
  size_t head = scheme_len(url);
  const char *at = strrchr(url + head, '@');
  if (!head) {
    if (at) {
      put(buf, size, &len, "***", 3);
      put(buf, size, &len, at, strlen(at));
    } else {
      redact_conninfo(buf, size, &len, url);
    }
    return buf;
  }
  const char *colon = at ? memchr(url + head, ':', (size_t)(at - url - head)) : NULL;
  if (!colon) {
    put(buf, size, &len, url, strlen(url));
    return buf;
  }
  put(buf, size, &len, url, (size_t)(colon + 1 - url));
  put(buf, size, &len, "***", 3);
  put(buf, size, &len, at, strlen(at));
  return buf;
}
