/* url.h - showing connection URLs safely: store and engine URLs carry passwords, and a log
 * line or a configuration error must never print one. */
#ifndef POLYSHOP_URL_H
#define POLYSHOP_URL_H
#include <stddef.h>

/* A buffer that holds the redacted form of any URL our configuration accepts. */
#define PS_URL_REDACT_MAX 512

/* Writes into buf (size bytes, at least 8) the URL with the password of its userinfo
 * replaced by "***" ("postgresql://shop:***@db:5432/shop"), and returns buf. A URL without
 * a password is copied as it is; a "key=value" libpq string gets "password=***". When in
 * doubt it hides more, never less: the userinfo ends at the URL's last '@' (passwords are
 * not always percent-encoded), and text that is not a URL but holds an '@' keeps only what
 * follows the last one ("***@host"). A result longer than buf ends in "...". NULL gives "". */
char *ps_url_redact(char *buf, size_t size, const char *url);

#endif
