/* test_smtp.c - smoke test of the SMTP sink that scripts/engines starts: libcurl sends a mail
 * to POLYSHOP_TEST_SMTP_URL, and the test finds it, envelope and body, in the maildir named by
 * POLYSHOP_TEST_SMTP_MAILDIR, as notification-service tests will. */
#include "itest.h"

#include <dirent.h>
#include <sys/stat.h>

typedef struct {
  const char *data;
  size_t left;
} upload_t;

static size_t read_cb(char *buf, size_t size, size_t nmemb, void *userp) {
  upload_t *u = userp;
  size_t n = size * nmemb < u->left ? size * nmemb : u->left;
  memcpy(buf, u->data, n);
  u->data += n;
  u->left -= n;
  return n;
}

/* Returns the malloc'd content of the first file in dir/new containing needle, or NULL. */
static char *find_mail(const char *maildir, const char *needle) {
  char newdir[1024];
  snprintf(newdir, sizeof(newdir), "%s/new", maildir);
  DIR *d = opendir(newdir);
  if (!d) return NULL;
  char *hit = NULL;
  struct dirent *e;
  while (!hit && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[2048];
    snprintf(path, sizeof(path), "%s/%s", newdir, e->d_name);
    FILE *f = fopen(path, "rb");
    if (!f) continue;
    char *buf = calloc(1, 65537);
    size_t n = fread(buf, 1, 65536, f);
    fclose(f);
    buf[n] = '\0';
    if (strstr(buf, needle)) hit = buf;
    else free(buf);
  }
  closedir(d);
  return hit;
}

static void test_send_and_read_back(void **state) {
  (void)state;
  const char *url = itest_env("POLYSHOP_TEST_SMTP_URL");
  const char *maildir = itest_env("POLYSHOP_TEST_SMTP_MAILDIR");
  char tag[64], msg[1024];
  itest_unique(tag, sizeof(tag), "itest-smtp-");
  snprintf(msg, sizeof(msg),
           "From: PolyShop <no-reply@polyshop.test>\r\n"
           "To: Ada <ada@example.com>\r\n"
           "Subject: Order confirmed %s\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n"
           "\r\n"
           "Your order %s is confirmed.\r\n",
           tag, tag);

  CURL *c = curl_easy_init();
  assert_non_null(c);
  struct curl_slist *rcpt = curl_slist_append(NULL, "<ada@example.com>");
  upload_t up = {msg, strlen(msg)};
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, "<no-reply@polyshop.test>");
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
  curl_easy_setopt(c, CURLOPT_READDATA, &up);
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(rcpt);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK) fail_msg("sending mail to %s failed: %s (%s)", url, curl_easy_strerror(rc), errbuf);

  /* The sink writes the message when the DATA command completes; allow a moment. */
  char *mail = NULL;
  for (int i = 0; i < 50 && !mail; i++) {
    mail = find_mail(maildir, tag);
    if (!mail) usleep(100 * 1000);
  }
  if (!mail) fail_msg("mail with subject tag %s not found in %s/new", tag, maildir);
  char want[256];
  snprintf(want, sizeof(want), "Subject: Order confirmed %s", tag);
  assert_non_null(strstr(mail, want));
  snprintf(want, sizeof(want), "Your order %s is confirmed.", tag);
  assert_non_null(strstr(mail, want));
  assert_non_null(strstr(mail, "X-MailFrom: no-reply@polyshop.test"));
  assert_non_null(strstr(mail, "X-RcptTo: ada@example.com"));
  free(mail);
}

static int global_setup(void **state) {
  (void)state;
  return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int global_teardown(void **state) {
  (void)state;
  curl_global_cleanup();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_send_and_read_back),
  };
  return cmocka_run_group_tests_name("integration.smtp", tests, global_setup, global_teardown);
}
