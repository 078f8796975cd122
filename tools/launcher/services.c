/* polyshop-run: reads deploy/services.tsv (name, port, comma-separated public prefixes). */
#include "launcher.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool valid_name(const char *s) {
  if (!*s || strlen(s) >= LR_NAME_MAX) return false;
  for (; *s; s++)
    if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_') return false;
  return true;
}

/* A prefix must be a plain path that nginx can take literally: "/word[/word...]". */
static bool valid_prefix(const char *s) {
  if (s[0] != '/' || s[1] == '\0' || strlen(s) >= LR_PREFIX_MAX) return false;
  if (s[strlen(s) - 1] == '/') return false;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && !strchr("/-_.", *s)) return false;
  return true;
}

int lr_services_load(const char *path, int port_offset, lr_table_t *t) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "polyshop-run: cannot open services table %s: %s\n", path, strerror(errno));
    return -1;
  }
  memset(t, 0, sizeof *t);
  char line[4096];
  int lineno = 0, rc = -1;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    line[strcspn(line, "\r\n")] = '\0';
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '\0' || *p == '#') continue;

    char *save = NULL;
    char *name = strtok_r(p, "\t", &save);
    char *port = strtok_r(NULL, "\t", &save);
    char *prefixes = strtok_r(NULL, "\t", &save);
    if (!name || !port || !prefixes) {
      fprintf(stderr, "%s:%d: expected 3 tab-separated columns: name, port, prefixes\n", path, lineno);
      goto out;
    }
    if (!valid_name(name)) {
      fprintf(stderr, "%s:%d: bad service name '%s' (lowercase letters, digits, _)\n", path, lineno, name);
      goto out;
    }
    char *end = NULL;
    long pv = strtol(port, &end, 10);
    if (*end != '\0' || pv < 1 || pv + port_offset > 65535 || pv + port_offset < 1) {
      fprintf(stderr, "%s:%d: bad port '%s' (with offset %d)\n", path, lineno, port, port_offset);
      goto out;
    }
    if (t->n == LR_MAX_SERVICES) {
      fprintf(stderr, "%s:%d: more than %d services\n", path, lineno, LR_MAX_SERVICES);
      goto out;
    }
    lr_service_t *s = &t->svc[t->n];
    for (int i = 0; i < t->n; i++) {
      if (strcmp(t->svc[i].name, name) == 0 || t->svc[i].port == (int)pv + port_offset) {
        fprintf(stderr, "%s:%d: service name or port repeated\n", path, lineno);
        goto out;
      }
    }
    snprintf(s->name, sizeof s->name, "%s", name);
    s->port = (int)pv + port_offset;
    char *psave = NULL;
    for (char *pre = strtok_r(prefixes, ",", &psave); pre; pre = strtok_r(NULL, ",", &psave)) {
      while (*pre == ' ') pre++;
      if (!valid_prefix(pre)) {
        fprintf(stderr, "%s:%d: bad prefix '%s' (like /users, no trailing slash)\n", path, lineno, pre);
        goto out;
      }
      if (s->nprefixes == LR_MAX_PREFIXES) {
        fprintf(stderr, "%s:%d: too many prefixes\n", path, lineno);
        goto out;
      }
      snprintf(s->prefixes[s->nprefixes++], LR_PREFIX_MAX, "%s", pre);
    }
    t->n++;
  }
  if (t->n == 0) {
    fprintf(stderr, "%s: no services\n", path);
    goto out;
  }
  rc = 0;
out:
  fclose(f);
  return rc;
}
