/* test_s3.c - smoke test of the S3 engine (Versity Gateway) that scripts/engines starts: with
 * libcurl's SigV4 signing and the root keys from the environment it creates a bucket, puts an
 * object, gets it back, lists it, fetches it once more through a presigned URL that this test
 * signs itself (SigV4 query signing, as services will hand out to browsers), sees a tampered
 * signature refused, then deletes object and bucket. */
#include "itest.h"

#include <sodium.h>

typedef struct {
  const char *base;
  const char *access;
  const char *secret;
  const char *region;
  char userpwd[256];
  char sigv4[128];
} s3_t;

static void s3_from_env(s3_t *s) {
  s->base = itest_env("POLYSHOP_TEST_S3_URL");
  s->access = itest_env("POLYSHOP_TEST_S3_ACCESS_KEY");
  s->secret = itest_env("POLYSHOP_TEST_S3_SECRET_KEY");
  s->region = itest_env("POLYSHOP_TEST_S3_REGION");
  snprintf(s->userpwd, sizeof(s->userpwd), "%s:%s", s->access, s->secret);
  snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%s:s3", s->region);
}

static void hex(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

static void s3_call(const s3_t *s, const char *method, const char *path, const char *body,
                    itest_resp_t *r) {
  char url[1024], sha_header[128];
  snprintf(url, sizeof(url), "%s%s", s->base, path);
  /* S3 wants the payload's SHA-256 in x-amz-content-sha256; libcurl 7.88 signs the header
   * but does not compute it. */
  unsigned char digest[crypto_hash_sha256_BYTES];
  char digest_hex[2 * crypto_hash_sha256_BYTES + 1];
  crypto_hash_sha256(digest, (const unsigned char *)(body ? body : ""), body ? strlen(body) : 0);
  hex(digest, sizeof(digest), digest_hex);
  snprintf(sha_header, sizeof(sha_header), "x-amz-content-sha256: %s", digest_hex);
  itest_http(&(itest_req_t){.method = method, .url = url, .body = body,
                            .body_len = body ? strlen(body) : 0,
                            .content_type = body ? "text/plain" : NULL,
                            .userpwd = s->userpwd, .aws_sigv4 = s->sigv4, .header = sha_header},
             r);
}

static void hmac(const unsigned char *key, size_t keylen, const char *msg, unsigned char *out) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key, keylen);
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, strlen(msg));
  crypto_auth_hmacsha256_final(&st, out);
}

/* Builds a SigV4 presigned GET URL for path ("/bucket/key", already URL-safe) valid for
 * `expires` seconds from now, into url. Host is taken from the base URL. */
static void presign_get(const s3_t *s, const char *path, int expires, char *url, size_t urlsize) {
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  char amzdate[32], day[16];
  strftime(amzdate, sizeof(amzdate), "%Y%m%dT%H%M%SZ", &tm);
  strftime(day, sizeof(day), "%Y%m%d", &tm);
  const char *host = strstr(s->base, "://");
  host = host ? host + 3 : s->base;

  char scope[128], query[1024], canonical[2048], sts[512];
  snprintf(scope, sizeof(scope), "%s/%s/s3/aws4_request", day, s->region);
  snprintf(query, sizeof(query),
           "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s%%2F%s%%2F%s%%2Fs3%%2Faws4_request"
           "&X-Amz-Date=%s&X-Amz-Expires=%d&X-Amz-SignedHeaders=host",
           s->access, day, s->region, amzdate, expires);
  snprintf(canonical, sizeof(canonical), "GET\n%s\n%s\nhost:%s\n\nhost\nUNSIGNED-PAYLOAD", path,
           query, host);
  unsigned char digest[crypto_hash_sha256_BYTES];
  char digest_hex[2 * crypto_hash_sha256_BYTES + 1];
  crypto_hash_sha256(digest, (const unsigned char *)canonical, strlen(canonical));
  hex(digest, sizeof(digest), digest_hex);
  snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", amzdate, scope, digest_hex);

  char secret[256];
  snprintf(secret, sizeof(secret), "AWS4%s", s->secret);
  unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
  hmac((const unsigned char *)secret, strlen(secret), day, k1);
  hmac(k1, 32, s->region, k2);
  hmac(k2, 32, "s3", k3);
  hmac(k3, 32, "aws4_request", k4);
  hmac(k4, 32, sts, sig);
  char sig_hex[65];
  hex(sig, 32, sig_hex);
  snprintf(url, urlsize, "%s%s?%s&X-Amz-Signature=%s", s->base, path, query, sig_hex);
}

static void test_bucket_object_roundtrip(void **state) {
  (void)state;
  s3_t s;
  s3_from_env(&s);
  char bucket[64], path[256], key_path[256];
  itest_unique(bucket, sizeof(bucket), "itest-s3-");
  snprintf(path, sizeof(path), "/%s", bucket);
  snprintf(key_path, sizeof(key_path), "/%s/media/p1/photo.txt", bucket);
  const char *content = "polyshop object body \xe2\x9c\x93\n";
  itest_resp_t r;

  s3_call(&s, "PUT", path, NULL, &r);
  itest_expect_status(&r, 200, "create bucket");
  itest_resp_free(&r);

  s3_call(&s, "PUT", key_path, content, &r);
  itest_expect_status(&r, 200, "put object");
  itest_resp_free(&r);

  s3_call(&s, "GET", key_path, NULL, &r);
  itest_expect_status(&r, 200, "get object");
  assert_int_equal(r.len, strlen(content));
  assert_memory_equal(r.body, content, r.len);
  itest_resp_free(&r);

  char list_path[300];
  snprintf(list_path, sizeof(list_path), "/%s?list-type=2&prefix=media%%2F", bucket);
  s3_call(&s, "GET", list_path, NULL, &r);
  itest_expect_status(&r, 200, "list objects");
  if (!strstr(r.body, "<Key>media/p1/photo.txt</Key>")) fail_msg("listing lacks the key: %.1000s", r.body);
  if (!strstr(r.body, "<KeyCount>1</KeyCount>")) fail_msg("listing should count 1 key: %.1000s", r.body);
  itest_resp_free(&r);

  /* Presigned GET: no Authorization header at all, the signature is in the query. */
  char url[2048];
  presign_get(&s, key_path, 300, url, sizeof(url));
  itest_http(&(itest_req_t){.method = "GET", .url = url}, &r);
  itest_expect_status(&r, 200, "presigned GET");
  assert_int_equal(r.len, strlen(content));
  assert_memory_equal(r.body, content, r.len);
  itest_resp_free(&r);

  /* Tampered signature: refused. */
  size_t n = strlen(url);
  url[n - 1] = url[n - 1] == '0' ? '1' : '0';
  itest_http(&(itest_req_t){.method = "GET", .url = url}, &r);
  itest_expect_status(&r, 403, "presigned GET with a tampered signature");
  itest_resp_free(&r);

  /* Wrong secret on a signed request: refused. */
  s3_t bad = s;
  snprintf(bad.userpwd, sizeof(bad.userpwd), "%s:not-the-secret", s.access);
  s3_call(&bad, "GET", key_path, NULL, &r);
  itest_expect_status(&r, 403, "GET signed with a wrong secret");
  itest_resp_free(&r);

  s3_call(&s, "DELETE", key_path, NULL, &r);
  itest_expect_status(&r, 204, "delete object");
  itest_resp_free(&r);
  s3_call(&s, "GET", key_path, NULL, &r);
  itest_expect_status(&r, 404, "object gone");
  itest_resp_free(&r);
  s3_call(&s, "DELETE", path, NULL, &r);
  itest_expect_status(&r, 204, "delete bucket");
  itest_resp_free(&r);
}

static int global_setup(void **state) {
  (void)state;
  if (sodium_init() < 0) return -1;
  return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int global_teardown(void **state) {
  (void)state;
  curl_global_cleanup();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bucket_object_roundtrip),
  };
  return cmocka_run_group_tests_name("integration.s3", tests, global_setup, global_teardown);
}
