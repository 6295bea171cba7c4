/* echo_server: the benchmark's echo backend.
 *
 *   echo_server [PORT [MAX_SECONDS]]
 *
 * Listens on 127.0.0.1:PORT (0 or absent: a port the kernel picks), prints
 * the port on stdout as one line, then echoes every byte it receives on every
 * connection until SIGTERM/SIGINT or MAX_SECONDS (default 3600) have passed.
 *
 * One thread, one level-triggered epoll loop, nonblocking sockets and a small
 * buffer per connection (ECHO_BUF bytes): when a write cannot take everything
 * the connection stops reading until the rest has gone out, so a slow reader
 * costs at most ECHO_BUF bytes. A connection is closed when its peer closes
 * (after the pending bytes have been written, or failed to).
 *
 * It is meant for 64-byte request/response latency, connect-to-first-byte
 * and thousands of held idle connections; bulk throughput uses iperf3 -s.
 *
 * It also echoes UDP datagrams on the same port number (127.0.0.1:PORT/udp):
 * each one goes back to its sender as it came, for the UDP rows.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#define ECHO_BUF 4096
#define MAX_EVENTS 256

struct conn {
  char *buf;      /* allocated on first use, ECHO_BUF bytes */
  int len;        /* bytes in buf not yet written */
  int off;        /* first unwritten byte */
  int writing;    /* registered for EPOLLOUT instead of EPOLLIN */
};

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static struct conn *conns;  /* indexed by fd */
static int max_fds;
static int ep;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void close_conn(int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  free(conns[fd].buf);
  memset(&conns[fd], 0, sizeof conns[fd]);
}

static void set_interest(int fd, int want_write) {
  struct conn *c = &conns[fd];
  if (c->writing == want_write) return;
  struct epoll_event ev = {.events = want_write ? EPOLLOUT : EPOLLIN, .data.fd = fd};
  epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
  c->writing = want_write;
}

/* Write what is pending. Returns 0 when all is written, 1 when the socket is
 * full, -1 when the connection is gone (closed here). */
static int flush_conn(int fd) {
  struct conn *c = &conns[fd];
  while (c->len > 0) {
    ssize_t n = send(fd, c->buf + c->off, (size_t)c->len, MSG_NOSIGNAL);
    if (n > 0) {
      c->off += (int)n;
      c->len -= (int)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
    close_conn(fd);
    return -1;
  }
  c->off = 0;
  return 0;
}

static void on_readable(int fd) {
  struct conn *c = &conns[fd];
  if (!c->buf && !(c->buf = malloc(ECHO_BUF))) {
    close_conn(fd);
    return;
  }
  /* A bounded number of reads per event keeps one busy connection from
   * starving the others (level triggered: epoll reports it again). */
  for (int round = 0; round < 16; round++) {
    ssize_t n = recv(fd, c->buf, ECHO_BUF, 0);
    if (n == 0) {
      close_conn(fd);
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      close_conn(fd);
      return;
    }
    c->off = 0;
    c->len = (int)n;
    int r = flush_conn(fd);
    if (r < 0) return;
    if (r > 0) {
      set_interest(fd, 1);
      return;
    }
    if (n < ECHO_BUF) return;
  }
}

static void on_writable(int fd) {
  int r = flush_conn(fd);
  if (r == 0) set_interest(fd, 0);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  double max_seconds = argc > 2 ? atof(argv[2]) : 3600;
  if (port < 0 || port > 65535 || max_seconds <= 0) {
    fprintf(stderr, "usage: echo_server [PORT [MAX_SECONDS]]\n");
    return 2;
  }

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  max_fds = (int)(rl.rlim_cur > 1048576 ? 1048576 : rl.rlim_cur);
  conns = calloc((size_t)max_fds, sizeof *conns);
  if (!conns) {
    perror("calloc");
    return 1;
  }

  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
    perror("echo_server: bind/listen");
    return 1;
  }
  socklen_t alen = sizeof addr;
  getsockname(lfd, (struct sockaddr *)&addr, &alen);
  printf("%d\n", ntohs(addr.sin_port));
  fflush(stdout);

  int ufd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (ufd < 0 || bind(ufd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    perror("echo_server: udp bind");
    return 1;
  }
  static char dgram[65536];

  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event uev = {.events = EPOLLIN, .data.fd = ufd};
  epoll_ctl(ep, EPOLL_CTL_ADD, ufd, &uev);

  struct epoll_event events[MAX_EVENTS];
  double deadline = now_s() + max_seconds;
  while (!stop_flag && now_s() < deadline) {
    int n = epoll_wait(ep, events, MAX_EVENTS, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == ufd) {
        /* Bounded per wake-up, like accepts: a datagram goes back at once. */
        for (int k = 0; k < 256; k++) {
          struct sockaddr_in from;
          socklen_t flen = sizeof from;
          ssize_t got = recvfrom(ufd, dgram, sizeof dgram, 0, (struct sockaddr *)&from, &flen);
          if (got < 0) break;
          sendto(ufd, dgram, (size_t)got, 0, (struct sockaddr *)&from, flen);
        }
        continue;
      }
      if (fd == lfd) {
        /* Bounded accepts per wake-up; level triggered brings us back. */
        for (int k = 0; k < 256; k++) {
          int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE)
              fprintf(stderr, "echo_server: out of descriptors\n");
            break;
          }
          if (cfd >= max_fds) {
            close(cfd);
            continue;
          }
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          memset(&conns[cfd], 0, sizeof conns[cfd]);
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
        }
        continue;
      }
      if (conns[fd].writing) {
        if (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(fd);
      } else if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        on_readable(fd);
      }
    }
  }
  return 0;
}
