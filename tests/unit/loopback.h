/* loopback.h - for unit tests that run a raw server in a thread: a listening socket on
 * 127.0.0.1 with a port the kernel picks, and a port where nothing listens. */
#ifndef POLYSHOP_TEST_LOOPBACK_H
#define POLYSHOP_TEST_LOOPBACK_H
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* Returns the listening socket and sets *port, or -1. */
static inline int test_loopback_listen(int backlog, int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, backlog) ||
      getsockname(fd, (struct sockaddr *)&sa, &sl)) {
    if (fd >= 0) close(fd);
    return -1;
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

/* A loopback port nothing listens on (bound, then closed): calls to it are refused. */
static inline int test_loopback_closed_port(void) {
  int port = 0, fd = test_loopback_listen(1, &port);
  if (fd >= 0) close(fd);
  return port;
}
#endif
