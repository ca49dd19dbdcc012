/*
 * loadgen: the load generator of sockserve's benchmark suite.
 *
 * Why C and one thread: the benchmark machine has two cores, and a Python
 * client would burn as much CPU per round trip as the Python servers it
 * drives, so the numbers would measure the client.  One epoll loop with
 * non-blocking sockets costs a few microseconds per round trip, which leaves
 * the server the other core.
 *
 * Modes (all bounded in time; every run stops by itself):
 *   pingpong  N connections, each sends a message, waits for the full echo,
 *             verifies every byte, repeats until the duration ends.
 *   churn     C concurrent slots: connect, one round trip, close, repeat.
 *   burst     N connects issued at once, one round trip each, then close;
 *             counts how many were served before the timeout.
 *   hold      N connections, one round trip each, then kept open and idle
 *             until stdin closes (or --hold seconds pass); the result line is
 *             printed as soon as the connections are established, so the
 *             caller can sample the server while they are held.  --ramp K
 *             keeps at most K connections opening at once (K no larger than
 *             the server's listen backlog: thousands of SYNs at once would
 *             measure SYN retransmission, not memory).
 *   udp       N UDP sockets ping-ponging datagrams; a datagram without an
 *             answer within --udp-timeout-ms counts as lost and is replaced.
 *
 * TLS: with --ca FILE the TCP modes run over TLS (loadgen_tls.c): each
 * connection verifies the server's certificate against FILE and the name
 * --server-name (default 127.0.0.1), then does its round trips through the
 * session; churn is then "new TLS connections per second", a full handshake
 * each unless --resume 1.  The connect-to-answer latency includes the handshake.
 *
 * --warmup 1 (pingpong): open every connection, and its TLS session, before
 * the clock starts; then print {"ready":N} on its own line, so the caller can
 * take its own "before" sample.  The window then holds round trips only.
 *
 * --sources K spreads TCP connections over the source addresses 127.0.0.1 ..
 * 127.0.0.K: each source address has its own ephemeral port range, for more
 * connections than net.ipv4.ip_local_port_range holds.
 *
 * --proxy v1|v2 opens every TCP connection with a PROXY protocol header, as a
 * load balancer does (HAProxy send-proxy / send-proxy-v2), naming the client
 * --proxy-src (default 192.0.2.1; its port changes with every connection) and
 * the server's address.  Over plain TCP the header goes out in the same
 * segment as the first message (one sendmsg), as a proxy that already holds
 * the client's first bytes sends it; over TLS it goes first, on its own,
 * before the handshake.  The server consumes it: echoes never include it, so
 * a server not reading headers shows up as mismatches.
 *
 * Output: one JSON object on one line on stdout.  Latencies go into a
 * log-linear histogram (128 sub-buckets per power of two, < 0.8% error).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "loadgen_tls.h"

#define SUB_BITS 7
#define SUB_COUNT (1 << SUB_BITS)
#define HIST_BUCKETS (2 * SUB_COUNT + 64 * SUB_COUNT)
#define PATTERN_PERIOD 251 /* prime, so offsets of consecutive messages differ */
#define MAX_EVENTS 512
#define SCRATCH_SIZE (256 * 1024)
#define UDP_HEADER 8
#define PROXY_MAX 108 /* a v1 line is at most 107 bytes; a v2 TCP4 header 28 */

enum mode { M_PINGPONG, M_CHURN, M_BURST, M_HOLD, M_UDP };
enum state { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_ACTIVE, S_DONE, S_FAILED };

struct options {
    enum mode mode;
    const char *host;
    int port;
    int conns;
    size_t size;
    double duration;   /* pingpong, churn, udp */
    double timeout;    /* burst, hold: time allowed to get served */
    double hold;       /* hold: longest time to keep connections open */
    int udp_timeout_ms;
    uint64_t max_ops;  /* hard cap on round trips / connections */
    int ramp;          /* hold: most connections opening at once (0: all) */
    int sources;       /* source addresses 127.0.0.1 .. 127.0.0.sources */
    const char *ca;    /* TLS: the CA file to verify the server with (NULL: plain TCP) */
    const char *server_name;
    int resume;        /* TLS: offer the last session ticket to the next connection */
    int warmup;        /* pingpong: connect (and handshake) before the clock starts */
    int proxy;         /* 0: no PROXY header; 1 or 2: that version first on each connection */
    const char *proxy_src; /* the client address the header names */
};

struct conn {
    int fd;
    int id;
    enum state state;
    uint64_t seq;       /* messages completed on this connection */
    size_t sent;
    size_t recvd;
    uint64_t t_begin;   /* start of the current round trip (ns) */
    uint64_t t_connect; /* start of the current connection attempt (ns) */
    uint32_t events;    /* epoll interest currently registered */
    int served;         /* completed at least one round trip */
    int ever_connected;
    int in_flight;      /* a round trip is under way (sent, or being sent, not yet echoed) */
    struct tls_session *tls; /* NULL over plain TCP */
    unsigned char proxy[PROXY_MAX]; /* this connection's PROXY header (--proxy) */
    size_t proxy_len;
    size_t proxy_sent;
};

struct counters {
    uint64_t ops;            /* round trips, or connections for churn/burst */
    uint64_t bytes;          /* payload bytes echoed and verified */
    uint64_t mismatches;     /* bytes that differed from what was sent */
    uint64_t connect_errors;
    uint64_t resets;
    uint64_t eofs;           /* server closed a connection mid-run */
    uint64_t other_errors;
    uint64_t lost;           /* udp: datagrams never answered in time */
    uint64_t late;           /* udp: answers that arrived after being given up */
    uint64_t attempts;       /* connection attempts (churn, burst) */
    uint64_t tls_errors;     /* handshakes or records that failed (not resets) */
};

static uint64_t hist[HIST_BUCKETS];
static uint64_t hist_count, hist_max, hist_sum;
static unsigned char *pattern;
static unsigned char scratch[SCRATCH_SIZE];
static struct counters ctr;
static struct sockaddr_in server_addr;
static int draining; /* past the deadline: finish what is in flight, count nothing */
static int settled;  /* burst, hold: connections done or failed for good */
static int n_sources = 1;
static int use_tls;
static struct rusage ru_start; /* CPU used before the run (set-up, loading the CA) */
static int warming_up;         /* --warmup: sessions are being set up, no round trips yet */
static int proxy_version;      /* --proxy: 0 (none), 1 or 2 */
static struct in_addr proxy_src;
static uint64_t proxy_serial;  /* gives each header a source port of its own */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int hist_index(uint64_t v) {
    if (v < 2 * SUB_COUNT) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - SUB_BITS;
    int top = (int)(v >> shift); /* in [SUB_COUNT, 2 * SUB_COUNT) */
    int idx = 2 * SUB_COUNT + (shift - 1) * SUB_COUNT + (top - SUB_COUNT);
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static double hist_value(int idx) {
    if (idx < 2 * SUB_COUNT) return (double)idx;
    int shift = (idx - 2 * SUB_COUNT) / SUB_COUNT + 1;
    uint64_t top = (uint64_t)((idx - 2 * SUB_COUNT) % SUB_COUNT + SUB_COUNT);
    double lo = (double)(top << shift);
    double hi = (double)((top + 1) << shift);
    return (lo + hi) / 2.0;
}

static void hist_record(uint64_t ns) {
    hist[hist_index(ns)]++;
    hist_count++;
    hist_sum += ns;
    if (ns > hist_max) hist_max = ns;
}

/* Latency in microseconds at quantile q (0 < q <= 1); 0 when empty. */
static double hist_quantile(double q) {
    if (hist_count == 0) return 0.0;
    uint64_t target = (uint64_t)(q * (double)hist_count + 0.999999);
    if (target < 1) target = 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen >= target) {
            double v = hist_value(i);
            if (v > (double)hist_max) v = (double)hist_max;
            return v / 1000.0;
        }
    }
    return (double)hist_max / 1000.0;
}

static int epfd = -1;

static void set_interest(struct conn *c, uint32_t ev) {
    if (c->events == ev) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(epfd, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e);
    c->events = ev;
}

static int is_settled(enum state s) { return s == S_DONE || s == S_FAILED; }

static void set_state(struct conn *c, enum state s) {
    if (is_settled(s) && !is_settled(c->state)) settled++;
    c->state = s;
}

static void close_conn(struct conn *c, enum state final) {
    if (c->tls) {
        /* close_notify only on a session that is up and not being given up on */
        int clean = final != S_FAILED && (c->state == S_ACTIVE || c->state == S_DONE);
        tls_close(c->tls, clean);
        c->tls = NULL;
    }
    if (c->fd >= 0) {
        if (c->events) epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->events = 0;
    set_state(c, final);
}

/* The message of round trip `seq` on connection `id` starts at this offset. */
static const unsigned char *message_for(const struct conn *c) {
    return pattern + (((uint64_t)c->id * 31u + c->seq) % PATTERN_PERIOD);
}

/* The PROXY header of the connection being opened: --proxy-src, a fresh port, the server. */
static void build_proxy_header(struct conn *c) {
    uint16_t sport = (uint16_t)(1024 + proxy_serial++ % 64000);
    uint16_t dport = ntohs(server_addr.sin_port);
    c->proxy_sent = 0;
    if (proxy_version == 1) {
        char src[INET_ADDRSTRLEN], dst[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &proxy_src, src, sizeof src);
        inet_ntop(AF_INET, &server_addr.sin_addr, dst, sizeof dst);
        int n = snprintf((char *)c->proxy, sizeof c->proxy, "PROXY TCP4 %s %s %u %u\r\n", src,
                         dst, (unsigned)sport, (unsigned)dport);
        c->proxy_len = (size_t)n;
        return;
    }
    static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                          0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    unsigned char *h = c->proxy;
    memcpy(h, sig, sizeof sig);
    h[12] = 0x21; /* version 2, PROXY */
    h[13] = 0x11; /* TCP over IPv4 */
    h[14] = 0;
    h[15] = 12; /* addresses: 4 + 4 + 2 + 2 bytes */
    memcpy(h + 16, &proxy_src.s_addr, 4);
    memcpy(h + 20, &server_addr.sin_addr.s_addr, 4);
    uint16_t ports[2] = {htons(sport), htons(dport)};
    memcpy(h + 24, ports, 4);
    c->proxy_len = 28;
}

static void count_mismatch(const unsigned char *got, const unsigned char *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i]) ctr.mismatches++;
}

static int start_connect(struct conn *c, uint64_t t) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ctr.other_errors++;
        set_state(c, S_FAILED);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (n_sources > 1) {
        /* The port is chosen at connect(), per destination, not at bind(). */
        struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
        src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + (uint32_t)(c->id % n_sources));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            ctr.other_errors++;
            close(fd);
            set_state(c, S_FAILED);
            return -1;
        }
    }
    c->fd = fd;
    c->events = 0;
    c->t_connect = t;
    c->sent = c->recvd = 0;
    c->proxy_len = c->proxy_sent = 0;
    if (proxy_version) build_proxy_header(c);
    ctr.attempts++;
    int rc = connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr);
    if (rc < 0 && errno != EINPROGRESS) {
        ctr.connect_errors++;
        close_conn(c, S_FAILED);
        return -1;
    }
    c->state = S_CONNECTING;
    set_interest(c, EPOLLOUT);
    return 0;
}

#define IO_AGAIN (-1) /* nothing now: wait for the socket */
#define IO_ERROR (-2) /* the connection failed (already counted) */

/* Count a failed TLS call; returns IO_AGAIN for the "wait" results. */
static ssize_t tls_failure(ssize_t r) {
    if (r == TLS_WANT_READ || r == TLS_WANT_WRITE) return IO_AGAIN;
    if (r == TLS_RESET) ctr.resets++;
    else ctr.tls_errors++;
    return IO_ERROR;
}

/* Bytes sent (> 0), IO_AGAIN or IO_ERROR, over TCP or TLS. */
static ssize_t io_send(struct conn *c, const void *buf, size_t n) {
    if (c->tls) {
        ssize_t r = tls_send(c->tls, buf, n);
        return r > 0 ? r : tls_failure(r);
    }
    for (;;) {
        ssize_t r = send(c->fd, buf, n, MSG_NOSIGNAL);
        if (r > 0) return r;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return IO_AGAIN;
        if (r < 0 && errno == EINTR) continue;
        if (errno == ECONNRESET || errno == EPIPE) ctr.resets++;
        else ctr.other_errors++;
        return IO_ERROR;
    }
}

/* Bytes received (> 0), 0 at the peer's close, IO_AGAIN or IO_ERROR, over TCP or TLS. */
static ssize_t io_recv(struct conn *c, void *buf, size_t n) {
    if (c->tls) {
        ssize_t r = tls_recv(c->tls, buf, n);
        return r >= 0 ? r : tls_failure(r);
    }
    for (;;) {
        ssize_t r = recv(c->fd, buf, n, 0);
        if (r >= 0) return r;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return IO_AGAIN;
        if (errno == EINTR) continue;
        if (errno == ECONNRESET) ctr.resets++;
        else ctr.other_errors++;
        return IO_ERROR;
    }
}

/*
 * Plain TCP with a PROXY header not all sent: what is left of it and of the
 * message in one sendmsg, so both go out in one segment.  Returns the message
 * bytes sent (0 if only header bytes went), IO_AGAIN or IO_ERROR.
 */
static ssize_t send_with_header(struct conn *c, const unsigned char *msg, size_t n) {
    struct iovec iov[2] = {
        {.iov_base = c->proxy + c->proxy_sent, .iov_len = c->proxy_len - c->proxy_sent},
        {.iov_base = (void *)msg, .iov_len = n},
    };
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    for (;;) {
        ssize_t r = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (r >= 0) {
            size_t header = c->proxy_len - c->proxy_sent;
            size_t took = (size_t)r < header ? (size_t)r : header;
            c->proxy_sent += took;
            return (ssize_t)((size_t)r - took);
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return IO_AGAIN;
        if (errno == EINTR) continue;
        if (errno == ECONNRESET || errno == EPIPE) ctr.resets++;
        else ctr.other_errors++;
        return IO_ERROR;
    }
}

/* Send what is left of the current message; ask for EPOLLOUT if it did not fit. */
static int pump_send(struct conn *c, size_t size) {
    const unsigned char *msg = message_for(c);
    while (c->proxy_sent < c->proxy_len && !c->tls) {
        ssize_t n = send_with_header(c, msg + c->sent, size - c->sent);
        if (n == IO_AGAIN) break;
        if (n < 0) return -1;
        c->sent += (size_t)n;
    }
    while (c->sent < size && c->proxy_sent == c->proxy_len) {
        ssize_t n = io_send(c, msg + c->sent, size - c->sent);
        if (n > 0) {
            c->sent += (size_t)n;
            continue;
        }
        if (n == IO_AGAIN) break;
        return -1;
    }
    int more = c->sent < size || c->proxy_sent < c->proxy_len;
    set_interest(c, more ? (EPOLLIN | EPOLLOUT) : EPOLLIN);
    return 0;
}

static void begin_round_trip(struct conn *c, size_t size, uint64_t t) {
    c->in_flight = 1;
    c->sent = c->recvd = 0;
    c->t_begin = t;
    if (pump_send(c, size) < 0) close_conn(c, S_FAILED);
}

/*
 * Read everything available and verify it against the message in flight.
 * Returns 1 when the echo is complete, 0 when more is needed, -1 on error.
 */
static int pump_recv(struct conn *c, size_t size) {
    const unsigned char *msg = message_for(c);
    for (;;) {
        ssize_t n = io_recv(c, scratch, sizeof scratch);
        if (n > 0) {
            size_t got = (size_t)n;
            size_t expected = size - c->recvd;
            size_t cmp = got < expected ? got : expected;
            if (memcmp(scratch, msg + c->recvd, cmp) != 0)
                count_mismatch(scratch, msg + c->recvd, cmp);
            if (got > expected) {
                ctr.mismatches += got - expected; /* bytes nobody sent */
                return -1;
            }
            c->recvd += got;
            if (c->recvd == size) return 1;
            continue;
        }
        if (n == 0) {
            ctr.eofs++;
            return -1;
        }
        return n == IO_AGAIN ? 0 : -1;
    }
}

/* A connect finished (or failed); returns 0 when it is usable. */
static int finish_connect(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
        ctr.connect_errors++;
        close_conn(c, S_FAILED);
        return -1;
    }
    c->ever_connected = 1;
    if (!use_tls) {
        c->state = S_ACTIVE;
        return 0;
    }
    if (c->proxy_len) {
        /* Before the handshake, on its own: a fresh socket's buffer takes 108 bytes. */
        ssize_t n = send(c->fd, c->proxy, c->proxy_len, MSG_NOSIGNAL);
        if (n != (ssize_t)c->proxy_len) {
            ctr.other_errors++;
            close_conn(c, S_FAILED);
            return -1;
        }
        c->proxy_sent = c->proxy_len;
    }
    c->tls = tls_start(c->fd);
    if (!c->tls) {
        ctr.tls_errors++;
        close_conn(c, S_FAILED);
        return -1;
    }
    c->state = S_HANDSHAKE;
    return 0;
}

/* Advance a TLS handshake; returns 1 once the session is up, 0 to wait, -1 on failure. */
static int advance_handshake(struct conn *c) {
    int r = tls_handshake(c->tls);
    if (r == 1) {
        c->state = S_ACTIVE;
        return 1;
    }
    if (r == TLS_WANT_READ || r == TLS_WANT_WRITE) {
        set_interest(c, r == TLS_WANT_READ ? EPOLLIN : EPOLLOUT);
        return 0;
    }
    tls_failure(r);
    close_conn(c, S_FAILED);
    return -1;
}

static int ms_until(uint64_t deadline, uint64_t t) {
    if (t >= deadline) return 0;
    uint64_t ms = (deadline - t + 999999) / 1000000;
    return ms > 1000 ? 1000 : (int)ms;
}

/* What one round trip finishing means for each TCP mode. */
static void on_echo_complete(const struct options *o, struct conn *c, uint64_t t,
                             uint64_t deadline) {
    c->in_flight = 0;
    if (draining) {
        c->sent = c->recvd = 0; /* nothing in flight any more */
        if (o->mode == M_CHURN) close_conn(c, S_IDLE);
        else set_interest(c, EPOLLIN);
        return;
    }
    ctr.bytes += o->size;
    c->served = 1;
    switch (o->mode) {
    case M_PINGPONG:
        hist_record(t - c->t_begin);
        ctr.ops++;
        c->seq++;
        if (t < deadline && ctr.ops < o->max_ops) {
            begin_round_trip(c, o->size, t);
        } else {
            c->sent = c->recvd = 0; /* quiescent: nothing in flight */
            set_interest(c, EPOLLIN);
        }
        break;
    case M_CHURN:
        hist_record(t - c->t_connect);
        ctr.ops++;
        close_conn(c, S_IDLE);
        if (t < deadline && ctr.attempts < o->max_ops) start_connect(c, t);
        break;
    case M_BURST:
        hist_record(t - c->t_connect);
        ctr.ops++;
        close_conn(c, S_DONE);
        break;
    case M_HOLD:
        hist_record(t - c->t_connect);
        ctr.ops++;
        set_state(c, S_DONE);
        set_interest(c, EPOLLIN); /* keep watching: an EOF means the server dropped it */
        break;
    case M_UDP:
        break;
    }
}

static void on_tcp_event(const struct options *o, struct conn *c, uint32_t ev, uint64_t t,
                         uint64_t deadline) {
    if (c->state == S_CONNECTING || c->state == S_HANDSHAKE) {
        int up = c->state == S_CONNECTING ? finish_connect(c) : 0;
        if (up == 0 && c->state == S_HANDSHAKE) up = advance_handshake(c);
        if (up < 0) {
            if (o->mode == M_CHURN && t < deadline) start_connect(c, t);
            return;
        }
        if (c->state == S_ACTIVE && warming_up) set_interest(c, EPOLLIN);
        else if (c->state == S_ACTIVE) begin_round_trip(c, o->size, t);
        return;
    }
    if (c->state == S_DONE || (c->state == S_ACTIVE && !c->in_flight)) {
        /* Held (hold mode), set up (--warmup) or past the deadline: the server has
         * nothing to say.  TLS session tickets are read and dropped by io_recv; any
         * data is counted as bad bytes, an EOF as the server dropping the connection. */
        if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) || c->tls) {
            ssize_t n = io_recv(c, scratch, sizeof scratch);
            if (n == 0) ctr.eofs++;
            else if (n > 0) ctr.mismatches += (uint64_t)n;
            if (n != IO_AGAIN) close_conn(c, S_FAILED);
        }
        return;
    }
    if (c->state != S_ACTIVE) return;
    /* A TLS record may need the other direction (a write waiting for a read): try both. */
    int tls = c->tls != NULL;
    int unsent = c->sent < o->size || c->proxy_sent < c->proxy_len;
    if (((ev & EPOLLOUT) || tls) && unsent && pump_send(c, o->size) < 0) {
        close_conn(c, S_FAILED);
        return;
    }
    if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) || tls) {
        int r = pump_recv(c, o->size);
        if (r < 0) {
            close_conn(c, S_FAILED);
            if (o->mode == M_CHURN && t < deadline) start_connect(c, t);
            return;
        }
        if (r == 1 && c->sent == o->size) on_echo_complete(o, c, now_ns(), deadline);
    }
}

static int count_state(const struct conn *cs, int n, enum state s) {
    int k = 0;
    for (int i = 0; i < n; i++) k += cs[i].state == s;
    return k;
}

static int in_flight(const struct conn *cs, int n) {
    int k = 0;
    for (int i = 0; i < n; i++) k += cs[i].state == S_ACTIVE && cs[i].in_flight;
    return k;
}

/*
 * After the deadline, wait (at most a second) for the echoes still in flight
 * before closing: closing a socket with unread data sends a reset, and the
 * servers would then spend the end of the run logging errors they did not cause.
 */
static void drain(const struct options *o, struct conn *cs) {
    struct epoll_event events[MAX_EVENTS];
    draining = 1;
    for (int i = 0; i < o->conns; i++)
        if (cs[i].state == S_CONNECTING || cs[i].state == S_HANDSHAKE) close_conn(&cs[i], S_IDLE);
    uint64_t end = now_ns() + 1000000000ull;
    for (;;) {
        uint64_t t = now_ns();
        if (t >= end || in_flight(cs, o->conns) == 0) return;
        int n = epoll_wait(epfd, events, MAX_EVENTS, ms_until(end, t));
        if (n < 0 && errno != EINTR) return;
        for (int i = 0; i < n; i++)
            on_tcp_event(o, (struct conn *)events[i].data.ptr, events[i].events, t, 0);
    }
}

/* hold --ramp: open more connections as earlier ones settle. */
static int ramp_up(const struct options *o, struct conn *cs, int started) {
    int limit = o->mode == M_HOLD && o->ramp > 0 ? o->ramp : o->conns;
    while (started < o->conns && started - settled < limit) start_connect(&cs[started++], now_ns());
    return started;
}

/*
 * --warmup: bring every connection up (TLS included) within --timeout, then
 * say so and start the round trips.  Returns how many are up.
 */
static int warm_up(const struct options *o, struct conn *cs) {
    struct epoll_event events[MAX_EVENTS];
    uint64_t deadline = now_ns() + (uint64_t)(o->timeout * 1e9);
    warming_up = 1;
    ramp_up(o, cs, 0);
    for (;;) {
        uint64_t t = now_ns();
        int up = count_state(cs, o->conns, S_ACTIVE);
        if (t >= deadline || up + count_state(cs, o->conns, S_FAILED) == o->conns) break;
        int n = epoll_wait(epfd, events, MAX_EVENTS, ms_until(deadline, t));
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < n; i++)
            on_tcp_event(o, (struct conn *)events[i].data.ptr, events[i].events, now_ns(), deadline);
    }
    warming_up = 0;
    int up = count_state(cs, o->conns, S_ACTIVE);
    for (int i = 0; i < o->conns; i++)
        if (cs[i].state != S_ACTIVE) close_conn(&cs[i], S_FAILED); /* never came up */
    printf("{\"ready\":%d}\n", up);
    fflush(stdout);
    return up;
}

/* pingpong, churn, burst and hold share one event loop. */
static int run_tcp(const struct options *o, struct conn *cs, uint64_t *elapsed_ns) {
    struct epoll_event events[MAX_EVENTS];
    int started = o->conns;
    if (o->mode == M_PINGPONG && o->warmup) {
        warm_up(o, cs);
        getrusage(RUSAGE_SELF, &ru_start); /* the client's CPU, too, counts round trips only */
        for (int i = 0; i < o->conns; i++)
            if (cs[i].state == S_ACTIVE) begin_round_trip(&cs[i], o->size, now_ns());
    } else {
        started = ramp_up(o, cs, 0);
    }
    uint64_t t0 = now_ns();
    double window = (o->mode == M_BURST || o->mode == M_HOLD) ? o->timeout : o->duration;
    uint64_t deadline = t0 + (uint64_t)(window * 1e9);
    for (;;) {
        uint64_t t = now_ns();
        if (t >= deadline) break;
        if ((o->mode == M_BURST || o->mode == M_HOLD) && settled == o->conns) break;
        if (o->mode == M_CHURN && ctr.attempts >= o->max_ops &&
            count_state(cs, o->conns, S_ACTIVE) + count_state(cs, o->conns, S_CONNECTING) +
                    count_state(cs, o->conns, S_HANDSHAKE) ==
                0)
            break;
        if (o->mode == M_PINGPONG && ctr.ops >= o->max_ops) break;
        int n = epoll_wait(epfd, events, MAX_EVENTS, ms_until(deadline, t));
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return -1;
        }
        t = now_ns();
        for (int i = 0; i < n; i++)
            on_tcp_event(o, (struct conn *)events[i].data.ptr, events[i].events, t, deadline);
        if (started < o->conns) started = ramp_up(o, cs, started);
    }
    *elapsed_ns = now_ns() - t0;
    if (o->mode == M_PINGPONG || o->mode == M_CHURN) drain(o, cs);
    return 0;
}

/* hold: after the result line, keep the connections until stdin closes. */
static void hold_until_released(const struct options *o) {
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    uint64_t end = now_ns() + (uint64_t)(o->hold * 1e9);
    for (;;) {
        uint64_t t = now_ns();
        if (t >= end) return;
        int ms = ms_until(end, t);
        int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return;
        if (r > 0) {
            char buf[256];
            ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
            if (n <= 0) return; /* EOF: the caller is done sampling */
        }
    }
}

/* ---- UDP ---------------------------------------------------------------- */

static void udp_fill(unsigned char *buf, const struct conn *c, size_t size) {
    uint32_t id = (uint32_t)c->id, seq = (uint32_t)c->seq;
    memcpy(buf, &id, 4);
    memcpy(buf + 4, &seq, 4);
    memcpy(buf + UDP_HEADER, message_for(c), size - UDP_HEADER);
}

static void udp_send(struct conn *c, size_t size, uint64_t t) {
    unsigned char *buf = scratch + SCRATCH_SIZE / 2;
    udp_fill(buf, c, size);
    c->t_begin = t;
    ssize_t n = send(c->fd, buf, size, 0);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        if (errno == ECONNREFUSED) ctr.connect_errors++;
        else ctr.other_errors++;
    }
}

static void udp_receive(const struct options *o, struct conn *c, uint64_t deadline) {
    for (;;) {
        ssize_t n = recv(c->fd, scratch, SCRATCH_SIZE / 2, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR) continue;
            if (errno == ECONNREFUSED) ctr.connect_errors++;
            else ctr.other_errors++;
            return;
        }
        uint32_t id, seq;
        if ((size_t)n < UDP_HEADER) {
            ctr.mismatches += (uint64_t)n;
            continue;
        }
        memcpy(&id, scratch, 4);
        memcpy(&seq, scratch + 4, 4);
        if (id != (uint32_t)c->id || seq != (uint32_t)c->seq) {
            ctr.late++; /* an answer we already gave up on */
            continue;
        }
        uint64_t t = now_ns();
        unsigned char *want = scratch + SCRATCH_SIZE / 2;
        udp_fill(want, c, o->size);
        if ((size_t)n != o->size) {
            size_t cmp = (size_t)n < o->size ? (size_t)n : o->size;
            count_mismatch(scratch, want, cmp);
            ctr.mismatches += (size_t)n > o->size ? (size_t)n - o->size : o->size - (size_t)n;
        } else if (memcmp(scratch, want, o->size) != 0) {
            count_mismatch(scratch, want, o->size);
        } else {
            ctr.bytes += o->size;
        }
        hist_record(t - c->t_begin);
        ctr.ops++;
        c->served = 1;
        c->seq++;
        if (t < deadline && ctr.ops < o->max_ops) udp_send(c, o->size, t);
        else c->state = S_DONE;
    }
}

static int run_udp(const struct options *o, struct conn *cs, uint64_t *elapsed_ns) {
    struct epoll_event events[MAX_EVENTS];
    uint64_t t0 = now_ns();
    uint64_t deadline = t0 + (uint64_t)(o->duration * 1e9);
    uint64_t give_up = (uint64_t)o->udp_timeout_ms * 1000000ull;
    for (int i = 0; i < o->conns; i++) {
        struct conn *c = &cs[i];
        c->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0) {
            perror("udp socket");
            return -1;
        }
        c->events = 0;
        set_interest(c, EPOLLIN);
        c->state = S_ACTIVE;
        c->ever_connected = 1;
        udp_send(c, o->size, now_ns());
    }
    for (;;) {
        uint64_t t = now_ns();
        if (t >= deadline || ctr.ops >= o->max_ops) break;
        /* resend what timed out; wake up no later than the next give-up time */
        uint64_t next = deadline;
        for (int i = 0; i < o->conns; i++) {
            struct conn *c = &cs[i];
            if (c->state != S_ACTIVE) continue;
            if (t - c->t_begin >= give_up) {
                ctr.lost++;
                c->seq++;
                udp_send(c, o->size, t);
            }
            if (c->t_begin + give_up < next) next = c->t_begin + give_up;
        }
        int n = epoll_wait(epfd, events, MAX_EVENTS, ms_until(next, t));
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return -1;
        }
        for (int i = 0; i < n; i++) udp_receive(o, (struct conn *)events[i].data.ptr, deadline);
    }
    *elapsed_ns = now_ns() - t0;
    return 0;
}

/* ---- setup and report ---------------------------------------------------- */

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen MODE --port N [--host 127.0.0.1] [--conns N] [--size BYTES]\n"
            "               [--duration S] [--timeout S] [--hold S] [--udp-timeout-ms MS]\n"
            "               [--max-ops N] [--ramp N] [--sources N]\n"
            "               [--ca FILE [--server-name NAME] [--resume 0|1]] [--warmup 0|1]\n"
            "               [--proxy v1|v2 [--proxy-src IPV4]]\n"
            "MODE: pingpong | churn | burst | hold | udp\n");
    exit(2);
}

static void parse(int argc, char **argv, struct options *o) {
    if (argc < 2) usage();
    const char *m = argv[1];
    if (!strcmp(m, "pingpong")) o->mode = M_PINGPONG;
    else if (!strcmp(m, "churn")) o->mode = M_CHURN;
    else if (!strcmp(m, "burst")) o->mode = M_BURST;
    else if (!strcmp(m, "hold")) o->mode = M_HOLD;
    else if (!strcmp(m, "udp")) o->mode = M_UDP;
    else usage();
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--host")) o->host = v;
        else if (!strcmp(k, "--port")) o->port = atoi(v);
        else if (!strcmp(k, "--conns")) o->conns = atoi(v);
        else if (!strcmp(k, "--size")) o->size = (size_t)strtoull(v, NULL, 10);
        else if (!strcmp(k, "--duration")) o->duration = atof(v);
        else if (!strcmp(k, "--timeout")) o->timeout = atof(v);
        else if (!strcmp(k, "--hold")) o->hold = atof(v);
        else if (!strcmp(k, "--udp-timeout-ms")) o->udp_timeout_ms = atoi(v);
        else if (!strcmp(k, "--max-ops")) o->max_ops = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--ramp")) o->ramp = atoi(v);
        else if (!strcmp(k, "--sources")) o->sources = atoi(v);
        else if (!strcmp(k, "--ca")) o->ca = v;
        else if (!strcmp(k, "--server-name")) o->server_name = v;
        else if (!strcmp(k, "--resume")) o->resume = atoi(v);
        else if (!strcmp(k, "--warmup")) o->warmup = atoi(v);
        else if (!strcmp(k, "--proxy")) {
            if (!strcmp(v, "v1")) o->proxy = 1;
            else if (!strcmp(v, "v2")) o->proxy = 2;
            else usage();
        } else if (!strcmp(k, "--proxy-src")) o->proxy_src = v;
        else usage();
    }
    if (o->port <= 0 || o->port > 65535 || o->conns <= 0 || o->size == 0 || o->ramp < 0 ||
        o->sources < 1 || o->sources > 254)
        usage();
    if (o->size > SCRATCH_SIZE / 2) {
        fprintf(stderr, "loadgen: --size is limited to %d bytes\n", SCRATCH_SIZE / 2);
        exit(2);
    }
    if (o->mode == M_UDP && o->ca) {
        fprintf(stderr, "loadgen: TLS (--ca) is for the TCP modes\n");
        exit(2);
    }
    if (o->mode == M_UDP && o->proxy) {
        fprintf(stderr, "loadgen: PROXY headers (--proxy) are for the TCP modes\n");
        exit(2);
    }
    if (o->mode == M_UDP && o->size < UDP_HEADER + 1) {
        fprintf(stderr, "loadgen: udp needs --size of at least %d\n", UDP_HEADER + 1);
        exit(2);
    }
    if (o->duration <= 0 || o->duration > 600 || o->timeout <= 0 || o->timeout > 600 ||
        o->hold < 0 || o->hold > 600) {
        fprintf(stderr, "loadgen: durations must be in (0, 600] seconds\n");
        exit(2);
    }
}

/* Enough descriptors for thousands of connections: within the hard limit, or
 * past it where the process may raise it (root); too few is reported. */
static void raise_fd_limit(int want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t need = (rlim_t)want + 64;
    if (rl.rlim_cur >= need) return;
    if (rl.rlim_max < need) {
        struct rlimit more = {.rlim_cur = need, .rlim_max = need};
        if (setrlimit(RLIMIT_NOFILE, &more) == 0) return;
    }
    rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need)
        fprintf(stderr, "loadgen: only %lu descriptors for %d connections (ulimit -Hn)\n",
                (unsigned long)rl.rlim_cur, want);
}

static const char *mode_name(enum mode m) {
    static const char *names[] = {"pingpong", "churn", "burst", "hold", "udp"};
    return names[m];
}

static void report(const struct options *o, const struct conn *cs, uint64_t elapsed_ns) {
    int connected = 0, served = 0, open_now = 0;
    for (int i = 0; i < o->conns; i++) {
        connected += cs[i].ever_connected;
        served += cs[i].served;
        open_now += cs[i].fd >= 0 && cs[i].state != S_CONNECTING && cs[i].state != S_HANDSHAKE;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    /* The run's own CPU: set-up is left out, or short runs would charge it per operation. */
    double user = (double)(ru.ru_utime.tv_sec - ru_start.ru_utime.tv_sec) +
                  (double)(ru.ru_utime.tv_usec - ru_start.ru_utime.tv_usec) / 1e6;
    double sys = (double)(ru.ru_stime.tv_sec - ru_start.ru_stime.tv_sec) +
                 (double)(ru.ru_stime.tv_usec - ru_start.ru_stime.tv_usec) / 1e6;
    double mean = hist_count ? (double)hist_sum / (double)hist_count / 1000.0 : 0.0;
    char tls[512] = "null";
    if (use_tls) tls_report(tls, sizeof tls);
    printf("{\"mode\":\"%s\",\"conns\":%d,\"size\":%zu,\"elapsed_s\":%.6f,"
           "\"ops\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"mismatches\":%" PRIu64 ","
           "\"connected\":%d,\"served\":%d,\"open\":%d,\"attempts\":%" PRIu64 ","
           "\"errors\":{\"connect\":%" PRIu64 ",\"reset\":%" PRIu64 ",\"eof\":%" PRIu64
           ",\"other\":%" PRIu64 ",\"tls\":%" PRIu64 "},\"lost\":%" PRIu64 ",\"late\":%" PRIu64
           ",\"tls\":%s,"
           "\"latency_us\":{\"count\":%" PRIu64 ",\"mean\":%.2f,\"p50\":%.2f,\"p90\":%.2f,"
           "\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f},"
           "\"cpu_user_s\":%.6f,\"cpu_sys_s\":%.6f,\"maxrss_kb\":%ld}\n",
           mode_name(o->mode), o->conns, o->size, (double)elapsed_ns / 1e9, ctr.ops, ctr.bytes,
           ctr.mismatches, connected, served, open_now, ctr.attempts, ctr.connect_errors,
           ctr.resets, ctr.eofs, ctr.other_errors, ctr.tls_errors, ctr.lost, ctr.late, tls,
           hist_count, mean,
           hist_quantile(0.50), hist_quantile(0.90), hist_quantile(0.99), hist_quantile(0.999),
           (double)hist_max / 1000.0, user, sys, ru.ru_maxrss);
    fflush(stdout);
}

int main(int argc, char **argv) {
    struct options o = {
        .host = "127.0.0.1", .port = 0, .conns = 1, .size = 64, .duration = 2.0,
        .timeout = 10.0, .hold = 30.0, .udp_timeout_ms = 200, .max_ops = 100000000ull,
        .ramp = 0, .sources = 1, .ca = NULL, .server_name = "127.0.0.1", .resume = 0, .warmup = 0,
        .proxy = 0, .proxy_src = "192.0.2.1",
    };
    parse(argc, argv, &o);
    n_sources = o.sources;
    proxy_version = o.proxy;
    if (inet_pton(AF_INET, o.proxy_src, &proxy_src) != 1) {
        fprintf(stderr, "loadgen: --proxy-src must be an IPv4 address\n");
        return 2;
    }
    if (o.ca) {
        if (tls_init(o.ca, o.server_name, o.resume) != 0) return 2;
        use_tls = 1;
        signal(SIGPIPE, SIG_IGN); /* OpenSSL writes with write(), not send(MSG_NOSIGNAL) */
    }
    raise_fd_limit(o.conns);
    memset(&server_addr, 0, sizeof server_addr);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)o.port);
    if (inet_pton(AF_INET, o.host, &server_addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --host must be an IPv4 address\n");
        return 2;
    }
    pattern = malloc(o.size + PATTERN_PERIOD);
    struct conn *cs = calloc((size_t)o.conns, sizeof *cs);
    if (!pattern || !cs) {
        perror("malloc");
        return 1;
    }
    for (size_t i = 0; i < o.size + PATTERN_PERIOD; i++)
        pattern[i] = (unsigned char)((i * 7u + 13u) & 0xffu);
    for (int i = 0; i < o.conns; i++) {
        cs[i].fd = -1;
        cs[i].id = i;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        perror("epoll_create1");
        return 1;
    }
    uint64_t elapsed = 0;
    getrusage(RUSAGE_SELF, &ru_start);
    int rc = o.mode == M_UDP ? run_udp(&o, cs, &elapsed) : run_tcp(&o, cs, &elapsed);
    if (rc < 0) return 1;
    report(&o, cs, elapsed);
    if (o.mode == M_HOLD) hold_until_released(&o);
    for (int i = 0; i < o.conns; i++)
        if (cs[i].fd >= 0) close(cs[i].fd);
    close(epfd);
    free(cs);
    free(pattern);
    return 0;
}
