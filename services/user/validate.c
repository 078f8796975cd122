/* validate.c - the rules for emails and passwords, kept apart from the handlers so they can
 * be unit-tested and reused. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "user.h"

void user_normalize_email(const char *email, char *out, size_t outlen) {
  size_t i = 0;
  for (; email[i] && i + 1 < outlen; i++) out[i] = (char)tolower((unsigned char)email[i]);
  out[i] = '\0';
}

static int local_char_ok(unsigned char c) {
  return isalnum(c) || strchr("!#$%&'*+/=?^_`{|}~.-", c) != NULL;
}

/* A practical subset of RFC 5321: local@domain with a dot in the domain, no spaces, no
 * quoted local parts, labels of letters, digits and inner hyphens. */
const char *user_check_email(const char *email) {
  size_t len = strlen(email);
  if (len < 3 || len > 254) return "email must have 3 to 254 characters";
  const char *at = strchr(email, '@');
  if (!at || strchr(at + 1, '@')) return "email must have exactly one @";
  size_t local_len = (size_t)(at - email);
  if (local_len == 0 || local_len > 64) return "the part before @ must have 1 to 64 characters";
  if (email[0] == '.' || at[-1] == '.' || strstr(email, ".."))
    return "email has a misplaced dot";
  for (const char *p = email; p < at; p++)
    if (!local_char_ok((unsigned char)*p)) return "email has a character that is not allowed";
  const char *domain = at + 1;
  if (!strchr(domain, '.')) return "the domain of the email must contain a dot";
  const char *label = domain;
  for (const char *p = domain;; p++) {
    if (*p == '.' || *p == '\0') {
      size_t n = (size_t)(p - label);
      if (n == 0 || n > 63 || label[0] == '-' || p[-1] == '-')
        return "the domain of the email is not valid";
      if (*p == '\0') break;
      label = p + 1;
    } else if (!isalnum((unsigned char)*p) && *p != '-') {
      return "the domain of the email is not valid";
    }
  }
  return NULL;
}

/* NIST 800-63B style: length matters most; also refuse single-class passwords and the email
 * itself. */
const char *user_check_password(const char *password, const char *email) {
  size_t len = strlen(password);
  if (len < 10) return "password must have at least 10 characters";
  if (len > 128) return "password must have at most 128 characters";
  int letters = 0, others = 0;
  for (const unsigned char *p = (const unsigned char *)password; *p; p++) {
    if (isalpha(*p)) letters = 1;
    else others = 1;
  }
  if (!letters || !others)
    return "password must mix letters with digits, spaces or symbols";
  if (email) {
    const char *at = strchr(email, '@');
    size_t local = at ? (size_t)(at - email) : strlen(email);
    if (local >= 4 && strncasecmp(password, email, local) == 0 && len - local < 4)
      return "password must not be your email";
    if (strcasecmp(password, email) == 0) return "password must not be your email";
  }
  return NULL;
}
