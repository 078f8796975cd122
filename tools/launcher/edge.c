/* polyshop-run: renders the nginx edge configuration from deploy/edge/nginx.conf.in and the
 * services table. */
#include "launcher.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Prefix of the problem "type" URIs the edge answers with: the one of include/polyshop/problem.h. */
#define PROBLEM_BASE "urn:polyshop:problem:"

static char *read_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  char *buf = NULL;
  size_t cap = 0, len = 0;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 16384;
      char *nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = nb;
    }
    size_t r = fread(buf + len, 1, cap - len - 1, f);
    len += r;
    if (r == 0) break;
  }
  fclose(f);
  buf[len] = '\0';
  return buf;
}

typedef struct subst_s {
  const char *key; /* without the @@ */
  const char *value;
} subst_t;

/* Copies the template to out, replacing every @@KEY@@; an unknown key is an error so that a
 * typo in the template cannot reach nginx. */
static int render(const char *tpl, const subst_t *subs, int nsubs, FILE *out, const char *tpl_path) {
  const char *p = tpl;
  for (;;) {
    const char *open = strstr(p, "@@");
    if (!open) {
      fputs(p, out);
      return 0;
    }
    fwrite(p, 1, (size_t)(open - p), out);
    const char *close = strstr(open + 2, "@@");
    if (!close) {
      fprintf(stderr, "polyshop-run: %s: unterminated @@ placeholder\n", tpl_path);
      return -1;
    }
    size_t klen = (size_t)(close - open - 2);
    int i;
    for (i = 0; i < nsubs; i++)
      if (strlen(subs[i].key) == klen && strncmp(subs[i].key, open + 2, klen) == 0) break;
    if (i == nsubs) {
      fprintf(stderr, "polyshop-run: %s: unknown placeholder @@%.*s@@\n", tpl_path, (int)klen, open + 2);
      return -1;
    }
    fputs(subs[i].value, out);
    p = close + 2;
  }
}

int lr_edge_write_config(const lr_config_t *cfg, const lr_table_t *t, char *conf_path) {
  char edge_dir[LR_PATH_MAX], tmp_dir[LR_PATH_MAX], tmp_path[LR_PATH_MAX];
  if (lr_fmt(edge_dir, sizeof edge_dir, "%s/edge", cfg->data_dir) ||
      lr_fmt(tmp_dir, sizeof tmp_dir, "%s/edge/tmp", cfg->data_dir) ||
      lr_fmt(conf_path, LR_PATH_MAX, "%s/edge/nginx.conf", cfg->data_dir) ||
      lr_fmt(tmp_path, sizeof tmp_path, "%s/edge/nginx.conf.tmp", cfg->data_dir)) {
    fprintf(stderr, "polyshop-run: data folder path too long\n");
    return -1;
  }
  if (lr_mkdirs(tmp_dir, 0755)) {
    fprintf(stderr, "polyshop-run: cannot create %s: %s\n", tmp_dir, strerror(errno));
    return -1;
  }
  char *tpl = read_file(cfg->edge_template);
  if (!tpl) {
    fprintf(stderr, "polyshop-run: cannot read edge template %s: %s\n", cfg->edge_template, strerror(errno));
    return -1;
  }

  char *ups = NULL, *locs = NULL;
  size_t ups_len = 0, locs_len = 0;
  FILE *u = open_memstream(&ups, &ups_len);
  FILE *l = open_memstream(&locs, &locs_len);
  if (!u || !l) abort();
  for (int i = 0; i < t->n; i++) {
    const lr_service_t *s = &t->svc[i];
    /* max_fails=0: with a single server, never mark it down; a restarted service must be
     * reachable as soon as it listens again. */
    fprintf(u,
            "  upstream polyshop_%s {\n"
            "    server 127.0.0.1:%d max_fails=0;\n"
            "    keepalive 64;\n"
            "    keepalive_requests 100000;\n"
            "    keepalive_timeout 60s;\n"
            "  }\n",
            s->name, s->port);
    for (int j = 0; j < s->nprefixes; j++) {
      fprintf(l,
              "    location = /api/v1%s { proxy_pass http://polyshop_%s; }\n"
              "    location /api/v1%s/ { proxy_pass http://polyshop_%s; }\n",
              s->prefixes[j], s->name, s->prefixes[j], s->name);
    }
  }
  fclose(u);
  fclose(l);
  /* nginx cuts a trailing newline of neither block; drop it to keep the output tidy. */
  if (ups_len && ups[ups_len - 1] == '\n') ups[ups_len - 1] = '\0';
  if (locs_len && locs[locs_len - 1] == '\n') locs[locs_len - 1] = '\0';

  char listen[128];
  lr_fmt(listen, sizeof listen, "%s:%d", cfg->edge_host, cfg->edge_port);
  const char *workers = getenv("POLYSHOP_EDGE_WORKERS");
  /* Running as root (the one-machine default), nginx's workers would otherwise drop to
   * "nobody", which cannot enter a private data folder or a checkout under /root. */
  const char *user = geteuid() == 0 ? "user root;" : "# (not root: nginx workers keep this user)";
  subst_t subs[] = {
      {"USER_DIRECTIVE", user},
      {"WORKERS", workers && *workers ? workers : "auto"},
      {"EDGE_DIR", edge_dir},
      {"EDGE_LISTEN", listen},
      {"WEB_ROOT", cfg->web_dir},
      {"UPSTREAMS", ups},
      {"LOCATIONS", locs},
      {"PROBLEM_BASE", PROBLEM_BASE},
  };

  int rc = -1;
  FILE *out = fopen(tmp_path, "w");
  if (!out) {
    fprintf(stderr, "polyshop-run: cannot write %s: %s\n", tmp_path, strerror(errno));
    goto done;
  }
  fprintf(out, "# GENERATED by polyshop-run from %s and %s; edits here are overwritten.\n",
          cfg->edge_template, cfg->services_tsv);
  int r = render(tpl, subs, (int)(sizeof subs / sizeof subs[0]), out, cfg->edge_template);
  if (fclose(out) != 0 || r != 0) {
    if (r == 0) fprintf(stderr, "polyshop-run: cannot write %s: %s\n", tmp_path, strerror(errno));
    unlink(tmp_path);
    goto done;
  }
  if (rename(tmp_path, conf_path) != 0) {
    fprintf(stderr, "polyshop-run: cannot write %s: %s\n", conf_path, strerror(errno));
    goto done;
  }
  rc = 0;
done:
  free(tpl);
  free(ups);
  free(locs);
  return rc;
}
