/* load: the benchmark's load generator for echo servers (direct or relayed).
 *
 *   load latency HOST PORT N
 *       One connection (TCP_NODELAY); N round trips of a 64-byte message,
 *       each waiting for all 64 bytes to come back, after N/10 (at least 50)
 *       unrecorded warm-up round trips. Prints
 *       "latency n=N p50_us=.. p99_us=.. mean_us=.. max_us=..".
 *   load connect HOST PORT N [MAX_SECONDS]
 *       N sequential connections: connect, send one byte, wait for its echo,
 *       close; fewer (at least 10) if MAX_SECONDS (default 60) run out first.
 *       The time of each is socket() to echoed byte. Prints
 *       "connect n=DONE seconds=.. conn_per_s=.. p50_ms=.. p99_ms=..".
 *   load hold HOST PORT N [RATE [WINDOW]]
 *       Opens N connections, at most RATE new ones a second (default 2000)
 *       and at most WINDOW (default 32) not yet verified at a time; each one
 *       sends 8 bytes and must get them back. Progress goes to stderr. Then
 *       prints "ready N" and holds them all, reading commands on stdin:
 *       "check" sends 8 more bytes on every connection (CHECK_BATCH at a
 *       time) and prints "ok N" when every one echoed them; "quit", end of input, SIGTERM or SIGINT close
 *       everything and exit. Holding ends by itself after HOLD_MAX_S (600 s).
 *   load ready HOST PORT SECONDS
 *       Tries "connect, one byte, echo" until it works (exit 0) or SECONDS
 *       have passed (exit 1).
 *   load ports K [BASE]
 *       Prints K TCP ports on 127.0.0.1 that are free now, from BASE
 *       (default 21000) up, one a line.
 *   load udp-rr HOST PORT N SIZE
 *       One UDP socket; N request/response round trips of SIZE-byte datagrams
 *       (each carrying its number), after N/10 (at least 50) unrecorded ones.
 *       A datagram not answered within UDP_WAIT_MS counts as lost (and so do
 *       wrong bytes). Prints "udp_rr n=N p50_us=.. p99_us=.. lost=..".
 *   load udp-rate HOST PORT SECONDS SIZE [WINDOW]
 *       One UDP socket keeping WINDOW (default 32) datagrams of SIZE bytes in
 *       flight for SECONDS: each answer sends the next; a window that hears
 *       nothing for UDP_WAIT_MS is refilled, its datagrams counted lost.
 *       Prints "udp_rate n=.. seconds=.. per_s=.. lost=..".
 *   load udp-ready HOST PORT SECONDS
 *       Sends a datagram until one comes back (exit 0) or SECONDS pass (exit 1).
 *
 * Any failure (refused, reset, timeout, wrong bytes) prints a line on stderr
 * and exits 1. Every wait is bounded (IO_TIMEOUT_S per operation).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 10
#define HOLD_MAX_S 600
#define MSG 64
#define CHECK_BATCH 256  /* connections checked at once */

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "load: %s\n", what);
  exit(1);
}

static struct sockaddr_in target;

static void resolve(const char *host, const char *port) {
  memset(&target, 0, sizeof target);
  target.sin_family = AF_INET;
  long p = strtol(port, NULL, 10);
  if (p <= 0 || p > 65535) die("bad port");
  target.sin_port = htons((uint16_t)p);
  if (inet_pton(AF_INET, host, &target.sin_addr) != 1) die("HOST must be an IPv4 address");
}

static void set_timeouts(int fd) {
  struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static void nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* A blocking connected socket with timeouts, or -1 (errno set). */
static int dial(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  set_timeouts(fd);  /* SO_SNDTIMEO bounds connect() too */
  if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  nodelay(fd);
  return fd;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Blocking read of exactly n bytes (the socket's SO_RCVTIMEO bounds it).
 * Returns 0, or -1 with errno set (0 for end of stream). */
static int read_all(int fd, char *p, size_t n) {
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) errno = 0;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static const char *err_text(void) { return errno ? strerror(errno) : "closed by peer"; }

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, long n, double p) {
  long k = (long)(p / 100.0 * (double)n + 0.999999);
  if (k < 1) k = 1;
  if (k > n) k = n;
  return v[k - 1];
}

static long parse_count(const char *s, long max) {
  char *end;
  long n = strtol(s, &end, 10);
  if (*end || n <= 0 || n > max) die("bad count");
  return n;
}

static int mode_latency(long n) {
  int fd = dial();
  if (fd < 0) {
    fprintf(stderr, "load: connect: %s\n", strerror(errno));
    return 1;
  }
  char out[MSG], in[MSG];
  double *t = malloc(sizeof(double) * (size_t)n);
  if (!t) die("out of memory");
  long warm = n / 10 < 50 ? 50 : n / 10;
  for (long i = -warm; i < n; i++) {
    memset(out, 'a' + (int)((i + warm) % 26), sizeof out);
    double t0 = now_s();
    if (write_all(fd, out, MSG) < 0 || read_all(fd, in, MSG) < 0) {
      fprintf(stderr, "load: latency round trip %ld: %s\n", i + warm, err_text());
      return 1;
    }
    double t1 = now_s();
    if (memcmp(in, out, MSG) != 0) die("latency: echoed bytes differ");
    if (i >= 0) t[i] = (t1 - t0) * 1e6;
  }
  close(fd);
  double sum = 0;
  for (long i = 0; i < n; i++) sum += t[i];
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  printf("latency n=%ld p50_us=%.1f p99_us=%.1f mean_us=%.1f max_us=%.1f\n", n, pct(t, n, 50),
         pct(t, n, 99), sum / (double)n, t[n - 1]);
  free(t);
  return 0;
}

/* One connection: connect, one byte, its echo, close. 0 or -1. */
static int one_connect(char byte) {
  int fd = dial();
  if (fd < 0) return -1;
  char in;
  int rc = 0;
  if (write_all(fd, &byte, 1) < 0 || read_all(fd, &in, 1) < 0) rc = -1;
  else if (in != byte) {
    errno = EPROTO;
    rc = -1;
  }
  int e = errno;
  close(fd);
  errno = e;
  return rc;
}

static int mode_connect(long n, double max_seconds) {
  double *t = malloc(sizeof(double) * (size_t)n);
  if (!t) die("out of memory");
  double start = now_s();
  for (long i = 0; i < n; i++) {
    if (i >= 10 && now_s() - start > max_seconds) {
      n = i;
      break;
    }
    double t0 = now_s();
    if (one_connect((char)('A' + i % 26)) < 0) {
      fprintf(stderr, "load: connection %ld: %s\n", i, err_text());
      return 1;
    }
    t[i] = (now_s() - t0) * 1e3;
  }
  double total = now_s() - start;
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  printf("connect n=%ld seconds=%.3f conn_per_s=%.1f p50_ms=%.3f p99_ms=%.3f\n", n, total,
         (double)n / total, pct(t, n, 50), pct(t, n, 99));
  free(t);
  return 0;
}

static int mode_ready(double seconds) {
  double deadline = now_s() + seconds;
  for (int attempt = 0; attempt < 100000; attempt++) {
    if (one_connect('r') == 0) return 0;
    if (now_s() >= deadline || stop_flag) break;
    usleep(100 * 1000);
  }
  fprintf(stderr, "load: %s:%d not echoing after %.0f s: %s\n", inet_ntoa(target.sin_addr),
          ntohs(target.sin_port), seconds, err_text());
  return 1;
}

static int mode_ports(long k, long base) {
  int *held = calloc((size_t)k, sizeof *held);
  long found = 0;
  for (long p = base; p <= 65535 && found < k; p++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 1) == 0) {
      held[found++] = fd;
      printf("%ld\n", p);
    } else {
      close(fd);
    }
  }
  for (long i = 0; i < found; i++) close(held[i]);
  free(held);
  return found == k ? 0 : 1;
}

/* ---- hold -------------------------------------------------------------- */

struct held {
  int fd;
  int state;  /* 0 connecting, 1 waiting for the echo, 2 verified */
  int got;
  double since;
  char want[8];
  char buf[8];
};

static void token(char out[8], long i, int round) {
  uint32_t v = (uint32_t)i;
  memcpy(out, &v, 4);
  out[4] = 'h';
  out[5] = (char)('0' + round % 10);
  out[6] = 'l';
  out[7] = 'd';
}

static int start_connect(struct held *h) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int r = connect(fd, (struct sockaddr *)&target, sizeof target);
  if (r < 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  nodelay(fd);
  h->fd = fd;
  h->state = 0;
  h->got = 0;
  h->since = now_s();
  return 0;
}

/* Send 8 fresh bytes on connections [from, to) and wait (bounded) until
 * every one of them has echoed them. Returns -1 and sets *bad on failure. */
static int check_batch(struct held *hs, long from, long to, int round, long *bad) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  long waiting = 0;
  for (long i = from; i < to; i++) {
    struct held *h = &hs[i];
    token(h->want, i, round);
    h->got = 0;
    if (send(h->fd, h->want, 8, MSG_NOSIGNAL) != 8) {
      *bad = i;
      close(ep);
      return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, h->fd, &ev);
    waiting++;
  }
  double deadline = now_s() + IO_TIMEOUT_S;
  struct epoll_event evs[64];
  while (waiting > 0) {
    int left_ms = (int)((deadline - now_s()) * 1000);
    if (left_ms <= 0 || stop_flag) {
      for (long i = from; i < to; i++)
        if (hs[i].got < 8) *bad = i;
      errno = ETIMEDOUT;
      close(ep);
      return -1;
    }
    int k = epoll_wait(ep, evs, 64, left_ms);
    if (k < 0 && errno != EINTR) die("epoll_wait");
    for (int e = 0; e < k; e++) {
      long i = (long)evs[e].data.u64;
      struct held *h = &hs[i];
      ssize_t r = recv(h->fd, h->buf + h->got, (size_t)(8 - h->got), 0);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0 || (h->got + r == 8 && memcmp(h->buf, h->want, 8) != 0)) {
        if (r == 0) errno = 0;
        else if (r > 0) errno = EPROTO;
        *bad = i;
        close(ep);
        return -1;
      }
      h->got += (int)r;
      if (h->got == 8) {
        epoll_ctl(ep, EPOLL_CTL_DEL, h->fd, NULL);
        waiting--;
      }
    }
  }
  close(ep);
  return 0;
}

static int mode_hold(long n, double rate, int window) {
  struct held *hs = calloc((size_t)n, sizeof *hs);
  if (!hs) die("out of memory");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  long started = 0, verified = 0, inflight = 0, oldest = 0;
  double t_start = now_s();
  double open_deadline = t_start + 60 + (double)n / rate * 3;
  long next_report = 1000;
  struct epoll_event evs[64];

  while (verified < n) {
    if (stop_flag) return 1;
    double now = now_s();
    if (now > open_deadline) {
      fprintf(stderr, "load: hold: only %ld of %ld connections echoed before the deadline\n",
              verified, n);
      return 1;
    }
    /* Start new connections within the window and the rate. */
    long allowed = (long)((now - t_start) * rate) + 1;
    while (started < n && inflight < window && started < allowed) {
      struct held *h = &hs[started];
      if (start_connect(h) < 0) {
        fprintf(stderr, "load: hold: connection %ld: %s\n", started, strerror(errno));
        return 1;
      }
      struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)started};
      epoll_ctl(ep, EPOLL_CTL_ADD, h->fd, &ev);
      started++;
      inflight++;
    }
    int k = epoll_wait(ep, evs, 64, 5);
    if (k < 0 && errno != EINTR) die("epoll_wait");
    for (int e = 0; e < k; e++) {
      long i = (long)evs[e].data.u64;
      struct held *h = &hs[i];
      if (h->state == 0) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
          fprintf(stderr, "load: hold: connection %ld: %s\n", i, strerror(err));
          return 1;
        }
        token(h->want, i, 0);
        if (send(h->fd, h->want, 8, MSG_NOSIGNAL) != 8) {
          fprintf(stderr, "load: hold: connection %ld: send: %s\n", i, strerror(errno));
          return 1;
        }
        h->state = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
        epoll_ctl(ep, EPOLL_CTL_MOD, h->fd, &ev);
      } else if (h->state == 1) {
        ssize_t r = recv(h->fd, h->buf + h->got, (size_t)(8 - h->got), 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r <= 0) {
          fprintf(stderr, "load: hold: connection %ld: %s\n", i,
                  r == 0 ? "closed by peer" : strerror(errno));
          return 1;
        }
        h->got += (int)r;
        if (h->got < 8) continue;
        if (memcmp(h->buf, h->want, 8) != 0) {
          fprintf(stderr, "load: hold: connection %ld: wrong bytes echoed\n", i);
          return 1;
        }
        h->state = 2;
        epoll_ctl(ep, EPOLL_CTL_DEL, h->fd, NULL);
        inflight--;
        verified++;
        if (verified >= next_report) {
          fprintf(stderr, "load: hold: %ld/%ld connections open and echoing (%.1f s)\n", verified,
                  n, now_s() - t_start);
          next_report += 1000;
        }
      }
    }
    /* The oldest connection not yet verified must not wait too long. */
    while (oldest < started && hs[oldest].state == 2) oldest++;
    if (oldest < started && now_s() - hs[oldest].since > IO_TIMEOUT_S) {
      fprintf(stderr, "load: hold: connection %ld: no echo within %d s\n", oldest, IO_TIMEOUT_S);
      return 1;
    }
  }
  close(ep);
  printf("ready %ld seconds=%.2f\n", n, now_s() - t_start);
  fflush(stdout);

  /* Hold until told otherwise; bounded. */
  double hold_deadline = now_s() + HOLD_MAX_S;
  char line[128];
  size_t used = 0;
  int round = 0;
  while (!stop_flag && now_s() < hold_deadline) {
    struct pollfd p = {.fd = 0, .events = POLLIN};
    int pr = poll(&p, 1, 1000);
    if (pr <= 0) continue;
    ssize_t r = read(0, line + used, sizeof line - 1 - used);
    if (r <= 0) break;  /* end of input */
    used += (size_t)r;
    line[used] = 0;
    char *nl;
    int quit = 0;
    while ((nl = strchr(line, '\n'))) {
      *nl = 0;
      if (strcmp(line, "check") == 0) {
        round++;
        for (long from = 0; from < n; from += CHECK_BATCH) {
          long to = from + CHECK_BATCH < n ? from + CHECK_BATCH : n, bad = from;
          if (check_batch(hs, from, to, round, &bad) < 0) {
            fprintf(stderr, "load: hold: check: connection %ld: %s\n", bad, err_text());
            printf("fail %ld\n", bad);
            fflush(stdout);
            return 1;
          }
        }
        printf("ok %ld\n", n);
        fflush(stdout);
      } else if (strcmp(line, "quit") == 0) {
        quit = 1;
      }
      size_t rest = used - (size_t)(nl + 1 - line);
      memmove(line, nl + 1, rest + 1);
      used = rest;
    }
    if (quit) break;
    if (used >= sizeof line - 1) used = 0;  /* an over-long line: drop it */
  }
  for (long i = 0; i < n; i++) close(hs[i].fd);
  free(hs);
  return 0;
}

/* ------------------------------------------------------------------ UDP */
#define UDP_WAIT_MS 1000

static int udp_dial(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&target, sizeof target) < 0) return -1;
  int big = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  return fd;
}

/* The datagram numbered `seq`: the number, then a pattern of it. */
static void udp_fill(char *buf, size_t size, uint64_t seq) {
  memset(buf, 'a' + (int)(seq % 26), size);
  memcpy(buf, &seq, size < sizeof seq ? size : sizeof seq);
}

/* Waits up to `ms` for a datagram; its length, or -1 on timeout. */
static ssize_t udp_wait(int fd, char *buf, size_t cap, int ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, ms) != 1) return -1;
  return recv(fd, buf, cap, 0);
}

static int mode_udp_rr(long n, long size) {
  int fd = udp_dial();
  if (fd < 0) die("udp socket");
  char *out = malloc((size_t)size), *in = malloc(65536);
  double *t = malloc(sizeof(double) * (size_t)n);
  if (!out || !in || !t) die("out of memory");
  long warm = n / 10 < 50 ? 50 : n / 10, lost = 0, got = 0;
  uint64_t seq = 0;
  for (long i = -warm; i < n; i++) {
    udp_fill(out, (size_t)size, ++seq);
    double t0 = now_s();
    if (send(fd, out, (size_t)size, 0) < 0) die("udp send");
    for (;;) {  /* a late answer to an earlier one is not this one's */
      int left = UDP_WAIT_MS - (int)((now_s() - t0) * 1000);
      ssize_t r = left > 0 ? udp_wait(fd, in, 65536, left) : -1;
      if (r < 0) {
        if (i >= 0) lost++;
        break;
      }
      if (r == size && memcmp(in, out, (size_t)size) == 0) {
        if (i >= 0) t[got++] = (now_s() - t0) * 1e6;
        break;
      }
    }
  }
  close(fd);
  if (got == 0) die("udp-rr: no datagram came back");
  qsort(t, (size_t)got, sizeof *t, cmp_double);
  printf("udp_rr n=%ld p50_us=%.1f p99_us=%.1f lost=%ld\n", got, pct(t, got, 50), pct(t, got, 99),
         lost);
  return 0;
}

static int mode_udp_rate(double seconds, long size, long window) {
  int fd = udp_dial();
  if (fd < 0) die("udp socket");
  char *out = malloc((size_t)size), *in = malloc(65536);
  if (!out || !in) die("out of memory");
  uint64_t seq = 0;
  long done = 0, lost = 0, in_flight = 0;
  double t0 = now_s(), end = t0 + seconds;
  while (now_s() < end && !stop_flag) {
    while (in_flight < window) {
      udp_fill(out, (size_t)size, ++seq);
      if (send(fd, out, (size_t)size, 0) < 0) die("udp send");
      in_flight++;
    }
    ssize_t r = udp_wait(fd, in, 65536, UDP_WAIT_MS);
    if (r < 0) {  /* the whole window went unanswered */
      lost += in_flight;
      in_flight = 0;
      continue;
    }
    if (r == size) done++;
    in_flight--;
  }
  double took = now_s() - t0;
  close(fd);
  printf("udp_rate n=%ld seconds=%.2f per_s=%.0f lost=%ld\n", done, took, (double)done / took,
         lost);
  return 0;
}

static int mode_udp_ready(double seconds) {
  int fd = udp_dial();
  if (fd < 0) die("udp socket");
  char buf[65536];
  double end = now_s() + seconds;
  while (now_s() < end) {
    if (send(fd, "ready?", 6, 0) < 0 && errno != ECONNREFUSED) die("udp send");
    ssize_t r = udp_wait(fd, buf, sizeof buf, 200);
    if (r == 6 && memcmp(buf, "ready?", 6) == 0) return 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  if (argc >= 3 && strcmp(argv[1], "ports") == 0)
    return mode_ports(parse_count(argv[2], 1000), argc > 3 ? parse_count(argv[3], 65535) : 21000);
  if (argc < 5) {
    fprintf(stderr,
            "usage: load latency|connect|hold|ready HOST PORT N ...  or  load ports K [BASE]\n");
    return 2;
  }
  resolve(argv[2], argv[3]);
  const char *mode = argv[1];
  if (strcmp(mode, "latency") == 0) return mode_latency(parse_count(argv[4], 10000000));
  if (strcmp(mode, "connect") == 0)
    return mode_connect(parse_count(argv[4], 1000000),
                        argc > 5 ? (double)parse_count(argv[5], 3600) : 60);
  if (strcmp(mode, "ready") == 0) return mode_ready((double)parse_count(argv[4], 3600));
  if (strcmp(mode, "udp-rr") == 0 && argc > 5)
    return mode_udp_rr(parse_count(argv[4], 10000000), parse_count(argv[5], 65507));
  if (strcmp(mode, "udp-rate") == 0 && argc > 5)
    return mode_udp_rate((double)parse_count(argv[4], 3600), parse_count(argv[5], 65507),
                         argc > 6 ? parse_count(argv[6], 4096) : 32);
  if (strcmp(mode, "udp-ready") == 0) return mode_udp_ready((double)parse_count(argv[4], 3600));
  if (strcmp(mode, "hold") == 0) {
    double rate = argc > 5 ? (double)parse_count(argv[5], 1000000) : 2000;
    int window = argc > 6 ? (int)parse_count(argv[6], 4096) : 32;
    return mode_hold(parse_count(argv[4], 1000000), rate, window);
  }
  fprintf(stderr, "load: unknown mode '%s'\n", mode);
  return 2;
}
