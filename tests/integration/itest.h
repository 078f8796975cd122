/* itest.h - helpers shared by the engine smoke tests: connection settings from the
 * environment that `scripts/engines env` prints (a missing one fails the test, it never skips),
 * unique names so reruns against the same data folder do not collide, and a small libcurl
 * request helper for the HTTP engines. Header-only: each test is one program. */
#ifndef POLYSHOP_ITEST_H
#define POLYSHOP_ITEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Returns the value of environment variable name; fails the current test when it is unset or
 * empty, since that means the engines were not brought up (`scripts/engines exec -- TEST`). */
static inline const char *itest_env(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) {
    fail_msg("%s is not set: run this test as `scripts/engines exec -- %s` after "
             "`scripts/engines up` (or through ctest -L integration)",
             name, "<test>");
  }
  return v;
}

/* Writes "<prefix><pid><seconds><counter>" (lowercase letters and digits only, so it is a
 * valid bucket, index, keyspace, table or key name on every engine) into buf. */
static inline void itest_unique(char *buf, size_t n, const char *prefix) {
  static unsigned counter;
  snprintf(buf, n, "%s%ld%ld%u", prefix, (long)getpid(), (long)time(NULL) % 100000, counter++);
}

/* Parses "scheme://host:port..." into host (at most hostlen-1 chars) and port. Returns 0, or -1
 * when the URL has no host:port. */
static inline int itest_host_port(const char *url, char *host, size_t hostlen, int *port) {
  const char *p = strstr(url, "://");
  p = p ? p + 3 : url;
  const char *at = strchr(p, '@');
  const char *slash = strchr(p, '/');
  if (at && (!slash || at < slash)) p = at + 1;
  const char *colon = strchr(p, ':');
  if (!colon || (size_t)(colon - p) >= hostlen) return -1;
  memcpy(host, p, (size_t)(colon - p));
  host[colon - p] = '\0';
  *port = atoi(colon + 1);
  return *port > 0 ? 0 : -1;
}

/* One HTTP exchange. Fill the request fields, call itest_http, read status and body (NUL
 * terminated, owned by the response until itest_resp_free). */
typedef struct {
  const char *method;        /* "GET", "PUT", "POST", "DELETE", "HEAD" */
  const char *url;
  const char *content_type;  /* NULL: no Content-Type header */
  const char *body;          /* NULL: no body */
  size_t body_len;
  const char *userpwd;       /* "user:password" for basic auth or SigV4 keys, or NULL */
  const char *aws_sigv4;     /* CURLOPT_AWS_SIGV4 provider string, or NULL */
  const char *bearer;        /* Authorization: Bearer <token>, or NULL */
  const char *header;        /* one more "Name: value" header, or NULL */
} itest_req_t;

typedef struct {
  long status;
  char *body;
  size_t len;
} itest_resp_t;

static inline size_t itest__collect(char *data, size_t size, size_t nmemb, void *userp) {
  itest_resp_t *r = userp;
  size_t n = size * nmemb;
  char *grown = realloc(r->body, r->len + n + 1);
  if (!grown) return 0;
  r->body = grown;
  memcpy(r->body + r->len, data, n);
  r->len += n;
  r->body[r->len] = '\0';
  return n;
}

static inline void itest_resp_free(itest_resp_t *r) {
  free(r->body);
  memset(r, 0, sizeof(*r));
}

/* Performs req and fills resp. Fails the test on a transport error (engine not listening),
 * naming the URL and curl's message; an HTTP error status is returned for the caller to check. */
static inline void itest_http(const itest_req_t *req, itest_resp_t *resp) {
  memset(resp, 0, sizeof(*resp));
  resp->body = calloc(1, 1);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  struct curl_slist *headers = NULL;
  char line[512];
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_URL, req->url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
  if (strcmp(req->method, "HEAD") == 0) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  if (req->body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
  } else if (strcmp(req->method, "PUT") == 0 || strcmp(req->method, "POST") == 0) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
  }
  if (req->content_type) {
    snprintf(line, sizeof(line), "Content-Type: %s", req->content_type);
    headers = curl_slist_append(headers, line);
  } else if (req->body || strcmp(req->method, "PUT") == 0 || strcmp(req->method, "POST") == 0) {
    headers = curl_slist_append(headers, "Content-Type:");
  }
  if (req->bearer) {
    snprintf(line, sizeof(line), "Authorization: Bearer %s", req->bearer);
    headers = curl_slist_append(headers, line);
  }
  if (req->header) headers = curl_slist_append(headers, req->header);
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  if (req->userpwd) curl_easy_setopt(c, CURLOPT_USERPWD, req->userpwd);
  if (req->aws_sigv4) curl_easy_setopt(c, CURLOPT_AWS_SIGV4, req->aws_sigv4);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, itest__collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK) {
    itest_resp_free(resp);
    fail_msg("%s %s failed: %s (%s); is the engine up? see `scripts/engines status`", req->method,
             req->url, curl_easy_strerror(rc), errbuf);
  }
}

/* Fails with the response body when the status differs from want. */
#define itest_expect_status(resp, want, what)                                                    \
  do {                                                                                           \
    if ((resp)->status != (want)) {                                                              \
      fail_msg("%s: HTTP %ld, expected %d; body: %.2000s", (what), (resp)->status, (int)(want), \
               (resp)->body ? (resp)->body : "");                                                \
    }                                                                                            \
  } while (0)

/* Fails unless actual is a string equal to want (a NULL actual fails with a message instead of
 * crashing inside strcmp). */
#define itest_assert_str(actual, want)                                                     \
  do {                                                                                     \
    const char *itest__a = (actual);                                                       \
    if (!itest__a) fail_msg("%s is missing, expected \"%s\"", #actual, (want));            \
    if (strcmp(itest__a, (want)) != 0)                                                     \
      fail_msg("%s is \"%s\", expected \"%s\"", #actual, itest__a, (want));                \
  } while (0)

#endif
