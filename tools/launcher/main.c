/* polyshop-run: starts every built polyshop service as its own process plus nginx as the
 * edge, restarts what crashes (with exponential backoff), and stops everything on
 * SIGINT/SIGTERM. The one-machine shape of the shop; `make run` calls it. */
#include "launcher.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_S 0.25
#define BACKOFF_MAX_S 30.0
#define STABLE_AFTER_S 10.0   /* up this long: the next crash starts the backoff afresh */
#define READY_DEADLINE_S 60.0 /* sanitizer builds start slowly */
#define PROBE_EVERY_S 0.1

typedef struct lr_child_s {
  char name[LR_NAME_MAX]; /* service name, or "edge" */
  char path[LR_PATH_MAX];
  char *argv[16];
  char listen_env[96]; /* POLYSHOP_LISTEN value; empty for the edge */
  const char *probe_host;
  int probe_port;
  bool is_edge;
  pid_t pid; /* 0 while not running */
  double started_at;
  double restart_at; /* > 0 while waiting for a restart */
  double backoff;
  int restarts;
  bool ready;
} lr_child_t;

static lr_child_t children[LR_MAX_SERVICES + 1];
static int nchildren;
static pid_t launcher_pid;

static void usage(FILE *f) {
  fputs("usage: polyshop-run [options]\n"
        "Starts every built polyshop service and the nginx edge; Ctrl-C stops them all.\n"
        "  --root DIR           project root for the defaults below (POLYSHOP_ROOT, default .)\n"
        "  --services FILE      services table (POLYSHOP_SERVICES_TSV, default ROOT/deploy/services.tsv)\n"
        "  --bin-dir DIR        where polyshop-NAME binaries are: DIR/NAME/polyshop-NAME or\n"
        "                       DIR/polyshop-NAME (POLYSHOP_BIN_DIR, default ROOT/build/services)\n"
        "  --data DIR           data folder (POLYSHOP_DATA_DIR, default ROOT/data)\n"
        "  --web-dir DIR        the client's files (POLYSHOP_WEB_DIR, default ROOT/web)\n"
        "  --edge-template FILE nginx template (default ROOT/deploy/edge/nginx.conf.in)\n"
        "  --edge-port N        edge port (POLYSHOP_EDGE_PORT, default 8080)\n"
        "  --edge-host ADDR     edge address (POLYSHOP_EDGE_HOST, default 127.0.0.1)\n"
        "  --port-offset N      added to every service port (POLYSHOP_PORT_OFFSET, default 0)\n"
        "  --only LIST          start only these services (comma-separated)\n"
        "  --nginx PATH         nginx binary (POLYSHOP_NGINX, default /usr/sbin/nginx)\n"
        "  --stop-timeout S     seconds between SIGTERM and SIGKILL on stop (default 10)\n"
        "  --no-edge            do not start nginx\n"
        "  --write-edge-config  write DATA/edge/nginx.conf and exit\n",
        f);
}

static const char *env_or(const char *name, const char *dflt) {
  const char *v = getenv(name);
  return v && *v ? v : dflt;
}

static int parse_int(const char *what, const char *s, int lo, int hi, int *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || !*s || *end || v < lo || v > hi) {
    fprintf(stderr, "polyshop-run: bad %s '%s' (expected an integer %d..%d)\n", what, s, lo, hi);
    return -1;
  }
  *out = (int)v;
  return 0;
}

/* Turns path into an absolute one (the file need not exist). */
static int absolutize(char *path) {
  if (path[0] == '/') return 0;
  char cwd[LR_PATH_MAX], tmp[LR_PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return -1;
  const char *p = path;
  while (p[0] == '.' && p[1] == '/') p += 2;
  if (strcmp(p, ".") == 0) p = "";
  if (lr_fmt(tmp, sizeof tmp, "%s%s%s", cwd, *p ? "/" : "", p)) return -1;
  memcpy(path, tmp, strlen(tmp) + 1);
  return 0;
}

static bool in_list(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && strncmp(p, name, n) == 0) return true;
    if (!e) break;
    p = e + 1;
  }
  return false;
}

/* Fails early, with a clear message, when something already listens on a port we need. */
static bool port_free(const char *host, int port) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return true; /* let the server decide */
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return true;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  bool ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
  close(fd);
  return ok;
}

static void upper(char *dst, size_t size, const char *src) {
  size_t i = 0;
  for (; src[i] && i + 1 < size; i++) dst[i] = (char)toupper((unsigned char)src[i]);
  dst[i] = '\0';
}

static void describe_status(int status, char *buf, size_t size) {
  if (WIFEXITED(status))
    snprintf(buf, size, "exit %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, size, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(buf, size, "status %d", status);
}

static int spawn(lr_child_t *c) {
  pid_t pid = fork();
  if (pid < 0) {
    lr_log("error", "spawn_failed", "s", "service", c->name, "s", "error", strerror(errno), NULL);
    return -1;
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Own process group: a terminal's Ctrl-C reaches only the launcher, which stops the
     * children in order. The parent-death signal covers a launcher that is killed. */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != launcher_pid) _exit(1);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull >= 0) dup2(devnull, 0);
    if (c->listen_env[0]) setenv("POLYSHOP_LISTEN", c->listen_env, 1);
    execv(c->path, c->argv);
    dprintf(2, "polyshop-run: cannot execute %s: %s\n", c->path, strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid); /* also from here, so that the group exists before any kill(-pid) */
  c->pid = pid;
  c->started_at = lr_now();
  c->restart_at = 0;
  c->ready = false;
  lr_log("info", "started", "s", "service", c->name, "i", "pid", (int)pid, "s", "path", c->path, "s",
         "listen", c->is_edge ? NULL : c->listen_env, NULL);
  return 0;
}

static lr_child_t *child_by_pid(pid_t pid) {
  for (int i = 0; i < nchildren; i++)
    if (children[i].pid == pid) return &children[i];
  return NULL;
}

/* Collects every exited child; schedules restarts unless stopping. */
static void reap(bool stopping) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    lr_child_t *c = child_by_pid(pid);
    if (!c) continue;
    char how[96];
    describe_status(status, how, sizeof how);
    double up = lr_now() - c->started_at;
    c->pid = 0;
    c->ready = false;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    if (stopping) {
      lr_log(code == 0 ? "info" : "warn", "stopped", "s", "service", c->name, "i", "pid", (int)pid, "s",
             "status", how, "i", "exit_code", code, "i", "signal", sig, NULL);
      continue;
    }
    if (up >= STABLE_AFTER_S) c->backoff = BACKOFF_MIN_S;
    c->restart_at = lr_now() + c->backoff;
    lr_log("error", "crashed", "s", "service", c->name, "i", "pid", (int)pid, "s", "status", how, "i",
           "exit_code", code, "i", "signal", sig, "d", "uptime_s", up, "d", "restart_in_s", c->backoff, NULL);
    c->backoff *= 2;
    if (c->backoff > BACKOFF_MAX_S) c->backoff = BACKOFF_MAX_S;
  }
}

static int running_count(void) {
  int n = 0;
  for (int i = 0; i < nchildren; i++)
    if (children[i].pid > 0) n++;
  return n;
}

/* Runs `nginx -t` on the rendered configuration so a bad template fails at once. */
static int nginx_check(const lr_child_t *edge) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    char *argv[16];
    int n = 0;
    argv[n++] = edge->argv[0];
    argv[n++] = "-t";
    argv[n++] = "-q";
    for (int i = 1; edge->argv[i]; i++) argv[n++] = edge->argv[i];
    argv[n] = NULL;
    execv(edge->path, argv);
    dprintf(2, "polyshop-run: cannot execute %s: %s\n", edge->path, strerror(errno));
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void print_banner(const lr_config_t *cfg, const lr_table_t *t, bool admin_new, bool all_ready) {
  const char *shown = strcmp(cfg->edge_host, "127.0.0.1") == 0 || strcmp(cfg->edge_host, "0.0.0.0") == 0
                          ? "localhost"
                          : cfg->edge_host;
  printf("\npolyshop %s", all_ready ? "is up" : "started (some parts are not ready yet, see the log)");
  if (!cfg->no_edge) printf(" at http://%s:%d/  (API under /api/v1)", shown, cfg->edge_port);
  printf("\n  data:      %s\n  services: ", cfg->data_dir);
  int absent = 0;
  for (int i = 0; i < t->n; i++) {
    bool found = false;
    for (int j = 0; j < nchildren; j++)
      if (strcmp(children[j].name, t->svc[i].name) == 0) found = true;
    if (found)
      printf(" %s(:%d)", t->svc[i].name, t->svc[i].port);
    else
      absent++;
  }
  if (absent) {
    printf("\n  not built:");
    for (int i = 0; i < t->n; i++) {
      bool found = false;
      for (int j = 0; j < nchildren; j++)
        if (strcmp(children[j].name, t->svc[i].name) == 0) found = true;
      if (!found) printf(" %s", t->svc[i].name);
    }
  }
  const char *email = getenv("POLYSHOP_ADMIN_EMAIL");
  if (admin_new)
    printf("\n  first admin: %s  password: %s\n"
           "               (generated now, kept in %s/secrets.env; shown only this once)",
           email, getenv("POLYSHOP_ADMIN_PASSWORD"), cfg->data_dir);
  else
    printf("\n  admin:     %s (password in POLYSHOP_ADMIN_PASSWORD or %s/secrets.env)", email, cfg->data_dir);
  printf("\n  Ctrl-C stops everything.\n\n");
  fflush(stdout);
}

/* ---- options ---- */

/* What the command line and the environment asked for, before defaults are applied. */
typedef struct {
  const char *root, *services, *bin_dir, *data, *web, *tpl, *only;
  const char *edge_port, *port_offset, *stop_timeout;
} lr_args_t;

enum { GO_ON = -1 }; /* parse_args: carry on (otherwise the exit code) */

/* Reads the environment, then the options over it, into cfg and *a. */
static int parse_args(int argc, char **argv, lr_config_t *cfg, lr_args_t *a) {
  *a = (lr_args_t){.root = env_or("POLYSHOP_ROOT", "."), .services = getenv("POLYSHOP_SERVICES_TSV"),
                   .bin_dir = getenv("POLYSHOP_BIN_DIR"), .data = getenv("POLYSHOP_DATA_DIR"),
                   .web = getenv("POLYSHOP_WEB_DIR"),
                   .edge_port = env_or("POLYSHOP_EDGE_PORT", "8080"),
                   .port_offset = env_or("POLYSHOP_PORT_OFFSET", "0"), .stop_timeout = "10"};
  snprintf(cfg->nginx, sizeof cfg->nginx, "%s", env_or("POLYSHOP_NGINX", "/usr/sbin/nginx"));
  snprintf(cfg->edge_host, sizeof cfg->edge_host, "%s", env_or("POLYSHOP_EDGE_HOST", "127.0.0.1"));

  enum { O_ROOT = 256, O_SERVICES, O_BIN, O_DATA, O_WEB, O_TPL, O_EPORT, O_EHOST, O_OFFSET, O_ONLY,
         O_NGINX, O_STOP, O_NOEDGE, O_WRITE };
  static const struct option opts[] = {
      {"root", required_argument, 0, O_ROOT},
      {"services", required_argument, 0, O_SERVICES},
      {"bin-dir", required_argument, 0, O_BIN},
      {"data", required_argument, 0, O_DATA},
      {"web-dir", required_argument, 0, O_WEB},
      {"edge-template", required_argument, 0, O_TPL},
      {"edge-port", required_argument, 0, O_EPORT},
      {"edge-host", required_argument, 0, O_EHOST},
      {"port-offset", required_argument, 0, O_OFFSET},
      {"only", required_argument, 0, O_ONLY},
      {"nginx", required_argument, 0, O_NGINX},
      {"stop-timeout", required_argument, 0, O_STOP},
      {"no-edge", no_argument, 0, O_NOEDGE},
      {"write-edge-config", no_argument, 0, O_WRITE},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0},
  };
  int opt;
  while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (opt) {
    case O_ROOT: a->root = optarg; break;
    case O_SERVICES: a->services = optarg; break;
    case O_BIN: a->bin_dir = optarg; break;
    case O_DATA: a->data = optarg; break;
    case O_WEB: a->web = optarg; break;
    case O_TPL: a->tpl = optarg; break;
    case O_EPORT: a->edge_port = optarg; break;
    case O_EHOST: snprintf(cfg->edge_host, sizeof cfg->edge_host, "%s", optarg); break;
    case O_OFFSET: a->port_offset = optarg; break;
    case O_ONLY: a->only = optarg; break;
    case O_NGINX: snprintf(cfg->nginx, sizeof cfg->nginx, "%s", optarg); break;
    case O_STOP: a->stop_timeout = optarg; break;
    case O_NOEDGE: cfg->no_edge = true; break;
    case O_WRITE: cfg->write_edge_config_only = true; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  return GO_ON;
}

/* dst = given, or ROOT/dflt when nothing was given; then made absolute. Returns nonzero when
 * the path does not fit. */
static int path_or_default(char *dst, size_t size, const char *given, const char *root,
                           const char *dflt) {
  int too_long = given ? lr_fmt(dst, size, "%s", given) : lr_fmt(dst, size, "%s/%s", root, dflt);
  return too_long || absolutize(dst);
}

/* Numbers and paths of cfg from *a; 0, or the exit code after printing why. */
static int apply_args(lr_config_t *cfg, const lr_args_t *a) {
  int stop_s;
  if (parse_int("edge port", a->edge_port, 1, 65535, &cfg->edge_port) ||
      parse_int("port offset", a->port_offset, -60000, 60000, &cfg->port_offset) ||
      parse_int("stop timeout", a->stop_timeout, 1, 3600, &stop_s))
    return 2;
  cfg->stop_timeout_s = stop_s;
  bool too_long = lr_fmt(cfg->root, sizeof cfg->root, "%s", a->root) != 0;
  too_long |= absolutize(cfg->root) != 0;
  too_long |= path_or_default(cfg->services_tsv, sizeof cfg->services_tsv, a->services, cfg->root,
                              "deploy/services.tsv") != 0;
  too_long |= path_or_default(cfg->bin_dir, sizeof cfg->bin_dir, a->bin_dir, cfg->root,
                              "build/services") != 0;
  too_long |= path_or_default(cfg->data_dir, sizeof cfg->data_dir, a->data, cfg->root, "data") != 0;
  too_long |= path_or_default(cfg->web_dir, sizeof cfg->web_dir, a->web, cfg->root, "web") != 0;
  too_long |= path_or_default(cfg->edge_template, sizeof cfg->edge_template, a->tpl, cfg->root,
                              "deploy/edge/nginx.conf.in") != 0;
  if (too_long) {
    fprintf(stderr, "polyshop-run: a path is too long\n");
    return 2;
  }
  return 0;
}

/* ---- the children's environment ---- */

/* The environment every child inherits: where the others are, where data goes. */
static void export_environment(const lr_config_t *cfg, const lr_table_t *t) {
  setenv("POLYSHOP_DATA_DIR", cfg->data_dir, 1);
  char val[LR_PATH_MAX + 64], key[LR_NAME_MAX + 16], up[LR_NAME_MAX];
  if (!cfg->no_edge) {
    snprintf(val, sizeof val, "http://localhost:%d", cfg->edge_port);
    setenv("POLYSHOP_PUBLIC_URL", val, 0);
    /* Services listen on loopback behind the edge, so the client address it passes is true. */
    setenv("POLYSHOP_TRUST_PROXY", "1", 0);
  }
  for (int i = 0; i < t->n; i++) {
    upper(up, sizeof up, t->svc[i].name);
    snprintf(key, sizeof key, "%s_URL", up);
    snprintf(val, sizeof val, "http://127.0.0.1:%d", t->svc[i].port);
    setenv(key, val, 1);
    snprintf(key, sizeof key, "%s_STORE", up);
    snprintf(val, sizeof val, "sqlite://%s/%s.db", cfg->data_dir, t->svc[i].name);
    setenv(key, val, 0); /* an engine URL given by the caller wins */
  }
}

/* ---- the children ---- */

/* Adds service s as a child when its binary exists; false when its port is taken. */
static bool add_service(const lr_config_t *cfg, const lr_service_t *s) {
  lr_child_t *c = &children[nchildren];
  memset(c, 0, sizeof *c);
  snprintf(c->name, sizeof c->name, "%s", s->name);
  char p1[LR_PATH_MAX], p2[LR_PATH_MAX];
  lr_fmt(p1, sizeof p1, "%s/%s/polyshop-%s", cfg->bin_dir, s->name, s->name);
  lr_fmt(p2, sizeof p2, "%s/polyshop-%s", cfg->bin_dir, s->name);
  if (access(p1, X_OK) == 0) {
    snprintf(c->path, sizeof c->path, "%s", p1);
  } else if (access(p2, X_OK) == 0) {
    snprintf(c->path, sizeof c->path, "%s", p2);
  } else {
    lr_log("info", "not_built", "s", "service", s->name, "s", "looked_for", p1, NULL);
    return true;
  }
  c->argv[0] = c->path;
  snprintf(c->listen_env, sizeof c->listen_env, "127.0.0.1:%d", s->port);
  c->probe_host = "127.0.0.1";
  c->probe_port = s->port;
  c->backoff = BACKOFF_MIN_S;
  nchildren++;
  if (port_free("127.0.0.1", s->port)) return true;
  fprintf(stderr, "polyshop-run: port %d (service %s) is already in use; stop what uses it or pass "
                  "--port-offset\n", s->port, s->name);
  return false;
}

/* Every name in the comma-separated list only is a service of t; 0, or 2 after saying which
 * is not. */
static int check_only(const char *only, const lr_table_t *t) {
  for (const char *p = only; p && *p;) {
    size_t len = strcspn(p, ",");
    bool known = false;
    for (int i = 0; i < t->n; i++)
      if (strlen(t->svc[i].name) == len && strncmp(t->svc[i].name, p, len) == 0) known = true;
    if (!known) {
      fprintf(stderr, "polyshop-run: --only names an unknown service '%.*s'\n", (int)len, p);
      return 2;
    }
    p += len;
    if (*p == ',') p++;
  }
  return 0;
}

/* Adds nginx as the last child, with the configuration at conf_path. Returns 0, or the exit
 * code after printing why; *ports_ok turns false when the edge port is taken. */
static int add_edge(const lr_config_t *cfg, const char *conf_path, bool *ports_ok) {
  lr_child_t *c = &children[nchildren];
  memset(c, 0, sizeof *c);
  static char edge_dir[LR_PATH_MAX], error_log[LR_PATH_MAX], conf[LR_PATH_MAX];
  snprintf(c->name, sizeof c->name, "edge");
  snprintf(c->path, sizeof c->path, "%s", cfg->nginx);
  lr_fmt(edge_dir, sizeof edge_dir, "%s/edge/", cfg->data_dir);
  lr_fmt(error_log, sizeof error_log, "%s/edge/error.log", cfg->data_dir);
  snprintf(conf, sizeof conf, "%s", conf_path);
  char *argv[] = {"nginx", "-p", edge_dir, "-e", error_log, "-c", conf, NULL};
  memcpy(c->argv, argv, sizeof argv);
  c->is_edge = true;
  c->probe_host = strcmp(cfg->edge_host, "0.0.0.0") == 0 ? "127.0.0.1" : cfg->edge_host;
  c->probe_port = cfg->edge_port;
  c->backoff = BACKOFF_MIN_S;
  if (access(cfg->nginx, X_OK) != 0) {
    fprintf(stderr, "polyshop-run: nginx not found at %s (scripts/install-deps installs nginx-light)\n",
            cfg->nginx);
    return 1;
  }
  if (!port_free(cfg->edge_host, cfg->edge_port)) {
    fprintf(stderr, "polyshop-run: edge port %d is already in use; set POLYSHOP_EDGE_PORT or --edge-port\n",
            cfg->edge_port);
    *ports_ok = false;
  }
  nchildren++;
  if (*ports_ok && nginx_check(c)) {
    fprintf(stderr, "polyshop-run: nginx rejected %s (see above)\n", conf_path);
    return 1;
  }
  return 0;
}

/* The children: every service whose binary exists (of only, when given), then the edge.
 * Returns 0, or the exit code after printing why. */
static int add_children(const lr_config_t *cfg, const lr_table_t *t, const char *only,
                        const char *conf_path) {
  bool ports_ok = true;
  for (int i = 0; i < t->n; i++)
    if (!only || in_list(only, t->svc[i].name)) ports_ok &= add_service(cfg, &t->svc[i]);
  int rc = check_only(only, t);
  if (rc) return rc;
  if (nchildren == 0)
    lr_log("warn", "no_services", "s", "bin_dir", cfg->bin_dir, "s", "hint", "build first: make run builds them",
           NULL);
  if (!cfg->no_edge && (rc = add_edge(cfg, conf_path, &ports_ok))) return rc;
  return ports_ok ? 0 : 1;
}

/* ---- supervising ---- */

/* Signals are taken synchronously with sigtimedwait, never in handlers. */
static void take_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGCHLD);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGHUP);
  sigprocmask(SIG_BLOCK, set, NULL);
  /* A non-interactive shell starts background jobs with SIGINT ignored, and an ignored
   * signal is dropped rather than queued for sigtimedwait; an inherited SIG_IGN for SIGCHLD
   * would reap the children behind our back. Blocked, the default dispositions are safe. */
  signal(SIGCHLD, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGHUP, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
}

/* Restarts the children whose backoff is over; returns the earliest pending restart time
 * before wake (or wake). *all_ready turns false when a child is not ready. */
static double restart_due(double now, double wake, bool *all_ready) {
  for (int i = 0; i < nchildren; i++) {
    lr_child_t *c = &children[i];
    if (c->pid == 0 && c->restart_at > 0) {
      if (c->restart_at <= now) {
        c->restarts++;
        lr_log("info", "restarting", "s", "service", c->name, "i", "restarts", c->restarts, NULL);
        if (spawn(c)) c->restart_at = now + c->backoff;
      } else if (c->restart_at < wake) {
        wake = c->restart_at;
      }
    }
    if (!c->ready) *all_ready = false;
  }
  return wake;
}

/* Asks each running child that is not ready yet for /healthz; true when all are ready. */
static bool probe_children(void) {
  bool all_ready = true;
  for (int i = 0; i < nchildren; i++) {
    lr_child_t *c = &children[i];
    if (c->pid > 0 && !c->ready && lr_http_ok(c->probe_host, c->probe_port, "/healthz", 300)) {
      c->ready = true;
      lr_log("info", "ready", "s", "service", c->name, "i", "pid", (int)c->pid, "d", "after_s",
             lr_now() - c->started_at, NULL);
    }
    if (!c->ready) all_ready = false;
  }
  return all_ready;
}

static void announce(const lr_config_t *cfg, const lr_table_t *t, bool admin_new, bool all_ready,
                     double t0) {
  if (all_ready) {
    lr_log("info", "all_ready", "d", "after_s", lr_now() - t0, NULL);
  } else {
    for (int i = 0; i < nchildren; i++)
      if (!children[i].ready) lr_log("warn", "not_ready", "s", "service", children[i].name, NULL);
  }
  print_banner(cfg, t, admin_new, all_ready);
}

/* Re-renders the edge configuration (services.tsv may have changed) and reloads nginx. */
static void reload_edge(const lr_config_t *cfg, char *conf_path) {
  lr_table_t fresh;
  if (cfg->no_edge || lr_services_load(cfg->services_tsv, cfg->port_offset, &fresh) != 0 ||
      lr_edge_write_config(cfg, &fresh, conf_path) != 0)
    return;
  for (int i = 0; i < nchildren; i++)
    if (children[i].is_edge && children[i].pid > 0) kill(children[i].pid, SIGHUP);
  lr_log("info", "edge_reloaded", NULL);
}

static struct timespec timespec_of(double s) {
  return (struct timespec){.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
}

/* Starts the children and keeps them up (restarts with backoff, readiness probes, the
 * banner once, SIGHUP reloads the edge) until SIGINT or SIGTERM, which it returns. */
static int supervise(const lr_config_t *cfg, const lr_table_t *t, bool admin_new,
                     const sigset_t *set, char *conf_path) {
  lr_log("info", "starting", "s", "data_dir", cfg->data_dir, "s", "services_tsv", cfg->services_tsv, "i",
         "edge_port", cfg->no_edge ? 0 : cfg->edge_port, "i", "children", nchildren, NULL);
  for (int i = 0; i < nchildren; i++) spawn(&children[i]);
  bool announced = false;
  double t0 = lr_now(), next_probe = 0;
  for (;;) {
    double now = lr_now();
    bool all_ready = true;
    double wake = restart_due(now, now + 1.0, &all_ready);
    if (!all_ready && now >= next_probe) {
      all_ready = probe_children();
      next_probe = lr_now() + PROBE_EVERY_S;
    }
    if (!announced && (all_ready || lr_now() - t0 > READY_DEADLINE_S)) {
      announced = true;
      announce(cfg, t, admin_new, all_ready, t0);
    }
    if (!all_ready && next_probe < wake) wake = next_probe;
    double wait = wake - lr_now();
    struct timespec ts = timespec_of(wait < 0.001 ? 0.001 : wait);
    siginfo_t info;
    int sig = sigtimedwait(set, &info, &ts);
    if (sig == SIGCHLD) reap(false);
    else if (sig == SIGINT || sig == SIGTERM) return sig;
    else if (sig == SIGHUP) reload_edge(cfg, conf_path);
  }
}

/* ---- stopping ---- */

/* SIGKILL to every child still running, and collects them. */
static void kill_the_rest(void) {
  for (int i = 0; i < nchildren; i++) {
    if (children[i].pid > 0) {
      lr_log("warn", "killing", "s", "service", children[i].name, "i", "pid", (int)children[i].pid, NULL);
      kill(-children[i].pid, SIGKILL);
      kill(children[i].pid, SIGKILL);
    }
  }
  for (int i = 0; i < nchildren; i++) {
    int status;
    if (children[i].pid > 0 && waitpid(children[i].pid, &status, 0) == children[i].pid) {
      lr_log("warn", "stopped", "s", "service", children[i].name, "i", "pid", (int)children[i].pid, "s",
             "status", "killed", NULL);
      children[i].pid = 0;
    }
  }
}

/* Services first, so the edge answers 503 rather than dropping connections while they
 * drain; then the edge. Everything gets the same deadline; a second signal kills. */
static void stop_all(const lr_config_t *cfg, const sigset_t *set, int stop_signal) {
  /* Any child that exited in the meantime is collected before the stop begins. */
  reap(false);
  lr_log("info", "stopping", "s", "signal", strsignal(stop_signal), "i", "running", running_count(), NULL);
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < nchildren; i++)
      if (children[i].pid > 0 && children[i].is_edge == (pass == 1)) kill(children[i].pid, SIGTERM);
  double deadline = lr_now() + cfg->stop_timeout_s;
  bool forced = false;
  while (running_count() > 0) {
    double left = deadline - lr_now();
    if (left <= 0 || forced) {
      kill_the_rest();
      break;
    }
    struct timespec ts = timespec_of(left);
    siginfo_t info;
    int sig = sigtimedwait(set, &info, &ts);
    if (sig == SIGINT || sig == SIGTERM) forced = true; /* asked twice: do not wait */
    reap(true);
  }
  lr_log("info", "stopped_all", NULL);
}

/* ---- main ---- */

/* The data folder exists and cfg->data_dir is its real path; 0, or 1 after printing why. */
static int make_data_dir(lr_config_t *cfg) {
  if (lr_mkdirs(cfg->data_dir, 0755)) {
    fprintf(stderr, "polyshop-run: cannot create data folder %s: %s\n", cfg->data_dir, strerror(errno));
    return 1;
  }
  char real[PATH_MAX];
  if (realpath(cfg->data_dir, real)) snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", real);
  return 0;
}

int main(int argc, char **argv) {
  lr_config_t cfg;
  memset(&cfg, 0, sizeof cfg);
  launcher_pid = getpid();
  setvbuf(stderr, NULL, _IOLBF, 0);
  lr_args_t args;
  int rc = parse_args(argc, argv, &cfg, &args);
  if (rc != GO_ON) return rc;
  if ((rc = apply_args(&cfg, &args))) return rc;

  lr_table_t table;
  if (lr_services_load(cfg.services_tsv, cfg.port_offset, &table) || make_data_dir(&cfg)) return 1;
  char conf_path[LR_PATH_MAX];
  if (!cfg.no_edge || cfg.write_edge_config_only) {
    if (lr_edge_write_config(&cfg, &table, conf_path)) return 1;
    if (cfg.write_edge_config_only) {
      printf("%s\n", conf_path);
      return 0;
    }
  }
  bool admin_new = false;
  if (lr_secrets_ensure(cfg.data_dir, &admin_new)) return 1;
  export_environment(&cfg, &table);
  if ((rc = add_children(&cfg, &table, args.only, conf_path))) return rc;

  sigset_t set;
  take_signals(&set);
  int stop_signal = supervise(&cfg, &table, admin_new, &set, conf_path);
  stop_all(&cfg, &set, stop_signal);
  return 0;
}
