/* polyshop-run: small helpers (clock, mkdir -p, randomness, a tiny HTTP probe, checked
 * formatting) that the other launcher files share. */
#include "launcher.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double lr_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int lr_mkdirs(const char *path, mode_t mode) {
  char tmp[LR_PATH_MAX];
  if (lr_fmt(tmp, sizeof tmp, "%s", path)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -1;
  return 0;
}

int lr_random(void *buf, size_t n) {
  unsigned char *p = buf;
  while (n > 0) {
    ssize_t r = getrandom(p, n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

int lr_fmt(char *buf, size_t size, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, size, fmt, ap);
  va_end(ap);
  return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

/* Waits until fd is ready for the given events or the deadline passes. */
static bool wait_fd(int fd, short events, double deadline) {
  for (;;) {
    int left = (int)((deadline - lr_now()) * 1000);
    if (left <= 0) return false;
    struct pollfd pfd = {.fd = fd, .events = events};
    int r = poll(&pfd, 1, left);
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

bool lr_http_ok(const char *host, int port, const char *path, int timeout_ms) {
  double deadline = lr_now() + timeout_ms / 1000.0;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return false;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool ok = false;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    if (errno != EINPROGRESS || !wait_fd(fd, POLLOUT, deadline)) goto out;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) goto out;
  }
  char req[512];
  if (lr_fmt(req, sizeof req, "GET %s HTTP/1.0\r\nHost: localhost\r\nUser-Agent: polyshop-run\r\n\r\n", path))
    goto out;
  size_t off = 0, len = strlen(req);
  while (off < len) {
    if (!wait_fd(fd, POLLOUT, deadline)) goto out;
    ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      goto out;
    }
    off += (size_t)w;
  }
  char resp[64];
  size_t got = 0;
  while (got < 12) {
    if (!wait_fd(fd, POLLIN, deadline)) goto out;
    ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      goto out;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  resp[got] = '\0';
  /* "HTTP/1.x 200" */
  ok = got >= 12 && strncmp(resp, "HTTP/1.", 7) == 0 && strncmp(resp + 8, " 200", 4) == 0;
out:
  close(fd);
  return ok;
}
