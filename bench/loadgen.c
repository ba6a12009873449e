/*
 * loadgen.c - the load generator of egressd's benchmarks.
 *
 * Threads run one mode against a proxy (or, with --proxy direct, straight
 * against the origin) for a fixed time and report operations per second,
 * median and p99 latency, and for bulk the throughput.  TLS is OpenSSL's,
 * so that the client side costs little next to the proxy under test.
 *
 *   tunnel       new CONNECT tunnel, one request, close
 *   keepalive    requests on one kept-alive tunnel per thread
 *   bulk         one large download per tunnel, MB/s
 *   forward      absolute-form http:// requests on a kept-alive connection
 *   tls-new      new intercepted TLS connection (full handshake) + one request
 *   tls-resume   the same, resuming the previous session (tickets)
 *   tls-keep     requests inside one intercepted TLS connection per thread
 *   stream       a streamed answer whose pieces carry the backend's send
 *                time (mock backend, ?stamp=1): delay until they arrive
 *   hold         open --count tunnels (at most --inflight being set up at
 *                once), one request in each, then keep them open and idle
 *                until stdin closes or --seconds pass; one line when they
 *                are open, one when they are released (single thread, epoll)
 *   slow         --count clients that each send one byte of a CONNECT head
 *                per second (a head too long to finish in --seconds), each
 *                reconnecting when cut; counts how the proxy cut them
 *
 * usage: loadgen MODE --proxy HOST:PORT|direct --target HOST:PORT [--path P]
 *        [--host NAME] [--concurrency N] [--seconds S] [--cafile F]
 *        [--method GET|POST] [--body JSON] [--ops N] [--pause-us US]
 *        [--count N] [--inflight N] [--open-seconds S]
 *
 * --ops stops after N operations (errors included), --seconds still bounds
 * the run; --pause-us sleeps between one thread's operations (a gentler
 * load, for the soak).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (1 << 20)
#define BUF         (256 * 1024)

static const char *mode, *proxy = "direct", *target, *path = "/", *host_hdr, *cafile;
static const char *method = "GET", *body = "";
static int concurrency = 1, seconds = 3;
static int count = 1000, inflight_max = 256, open_seconds = 120;
static long ops_limit, pause_us;
static atomic_bool stop;
static atomic_ulong ops, errors, bytes;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static double *samples; /* latencies, microseconds */
static size_t n_samples;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void sample(double us)
{
    pthread_mutex_lock(&mu);
    if (n_samples < MAX_SAMPLES)
        samples[n_samples++] = us;
    pthread_mutex_unlock(&mu);
}

static bool parse_addr(const char *hostport, struct sockaddr_in *a)
{
    char h[256], *colon;
    snprintf(h, sizeof(h), "%s", hostport);
    colon = strrchr(h, ':');
    if (colon == NULL)
        return false;
    *colon = '\0';
    *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    return inet_pton(AF_INET, h, &a->sin_addr) == 1;
}

static int dial(const char *hostport)
{
    struct sockaddr_in a;
    if (!parse_addr(hostport, &a))
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct timeval tv = {10, 0};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)); /* bounds connect() too */
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A connection to the target: through a CONNECT tunnel, or direct. */
static int open_tunnel(void)
{
    bool direct = strcmp(proxy, "direct") == 0;
    int fd = dial(direct ? target : proxy);
    if (fd < 0 || direct)
        return fd;
    char req[512], resp[1024];
    const char *name = host_hdr ? host_hdr : target;
    int n = snprintf(req, sizeof(req), "CONNECT %s%s%s HTTP/1.1\r\nHost: %s\r\n\r\n", name,
                     strchr(name, ':') ? "" : ":",
                     strchr(name, ':') ? "" : strrchr(target, ':') + 1, name);
    if (write(fd, req, (size_t)n) != n)
        goto fail;
    /* Peek at the head and consume exactly it: two reads per tunnel.  Only
     * a head that came in pieces is read a byte at a time. */
    ssize_t got = recv(fd, resp, sizeof(resp) - 1, MSG_PEEK);
    if (got <= 0)
        goto fail;
    resp[got] = '\0';
    char *end = strstr(resp, "\r\n\r\n");
    size_t head = end ? (size_t)(end + 4 - resp) : 0;
    if (end != NULL && recv(fd, resp, head, 0) != (ssize_t)head)
        goto fail;
    while (end == NULL && head < sizeof(resp) - 1) {
        if (read(fd, resp + head, 1) != 1)
            goto fail;
        head++;
        if (head >= 4 && memcmp(resp + head - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    if (head < 12 || memcmp(resp + 9, "200", 3) != 0)
        goto fail;
    return fd;
fail:
    close(fd);
    return -1;
}

struct io {
    int fd;
    SSL *ssl;
};

static ssize_t io_read(struct io *io, char *b, size_t n)
{
    return io->ssl ? SSL_read(io->ssl, b, (int)n) : read(io->fd, b, n);
}

static int io_write(struct io *io, const char *b, size_t n)
{
    return (io->ssl ? SSL_write(io->ssl, b, (int)n) : write(io->fd, b, n)) == (ssize_t)n ? 0 : -1;
}

/* Send a request and read its whole response; body bytes, or -1. */
static long exchange(struct io *io, char *buf, bool absolute, bool close_after)
{
    char req[2048];
    const char *name = host_hdr ? host_hdr : target;
    int n = snprintf(req, sizeof(req),
                     "%s %s%s%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s\r\n%s",
                     method, absolute ? "http://" : "", absolute ? name : "", path, name,
                     strlen(body), close_after ? "Connection: close\r\n" : "", body);
    if (io_write(io, req, (size_t)n) != 0)
        return -1;
    size_t got = 0;
    char *end = NULL;
    while (end == NULL) {
        ssize_t r = io_read(io, buf + got, BUF - 1 - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head = (size_t)(end + 4 - buf), have = got - head;
    char *cl = strcasestr(buf, "\r\ncontent-length:");
    bool chunked = strcasestr(buf, "\r\ntransfer-encoding: chunked") != NULL && (!cl || cl > end);
    long want = cl && cl < end ? atol(cl + 17) : -1;
    if (chunked) { /* read until the last chunk; pieces are small in these benchmarks */
        memmove(buf, buf + head, have);
        while (memmem(buf, have, "0\r\n\r\n", 5) == NULL) {
            ssize_t r = io_read(io, buf + have, BUF - 1 - have);
            if (r <= 0)
                return -1;
            have += (size_t)r;
        }
        return (long)have;
    }
    long total = (long)have;
    while (want < 0 ? true : total < want) {
        ssize_t r = io_read(io, buf, BUF);
        if (r <= 0)
            return want < 0 ? total : -1;
        total += r;
    }
    return total;
}

/* A streamed answer whose pieces carry "t=<ns>", the backend's monotonic
 * send time: each piece's delay is sampled as it arrives.  0 or -1. */
static int stream_exchange(struct io *io, char *buf)
{
    char req[2048];
    const char *name = host_hdr ? host_hdr : target;
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, name, strlen(body), body);
    if (io_write(io, req, (size_t)n) != 0)
        return -1;
    for (;;) {
        ssize_t r = io_read(io, buf, BUF - 1);
        if (r <= 0)
            return -1;
        double arrived = now_us();
        buf[r] = '\0';
        for (char *t = strstr(buf, "t="); t; t = strstr(t + 2, "t="))
            sample(arrived - atof(t + 2) / 1e3);
        if (memmem(buf, (size_t)r, "0\r\n\r\n", 5) != NULL)
            return 0;
    }
}

static SSL_CTX *client_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cafile == NULL || SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
        fprintf(stderr, "loadgen: cannot load --cafile\n");
        exit(2);
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    return ctx;
}

static SSL *tls_open(SSL_CTX *ctx, int fd, SSL_SESSION **sess)
{
    SSL *ssl = SSL_new(ctx);
    const char *name = host_hdr ? host_hdr : "localhost";
    char sni[256];
    snprintf(sni, sizeof(sni), "%.*s", (int)strcspn(name, ":"), name);
    SSL_set_tlsext_host_name(ssl, sni);
    SSL_set1_host(ssl, sni);
    SSL_set_fd(ssl, fd);
    if (sess && *sess)
        SSL_set_session(ssl, *sess);
    if (SSL_connect(ssl) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    if (sess) {
        if (*sess)
            SSL_SESSION_free(*sess);
        *sess = SSL_get1_session(ssl);
    }
    return ssl;
}

static void *worker(void *arg)
{
    (void)arg;
    char *buf = malloc(BUF);
    SSL_CTX *ctx = strncmp(mode, "tls", 3) == 0 ? client_ctx() : NULL;
    SSL_SESSION *sess = NULL;
    struct io keep = {-1, NULL};
    for (bool first = true; !atomic_load(&stop); first = false) {
        if (!first && pause_us > 0)
            usleep((useconds_t)pause_us);
        if (ops_limit > 0 && (long)(atomic_load(&ops) + atomic_load(&errors)) >= ops_limit) {
            atomic_store(&stop, true);
            break;
        }
        double t0 = now_us();
        long got = -1;
        if (!strcmp(mode, "tunnel") || !strcmp(mode, "bulk") || !strncmp(mode, "tls-", 4)) {
            bool tls = !strcmp(mode, "tls-new") || !strcmp(mode, "tls-resume");
            bool tls_keep = !strcmp(mode, "tls-keep");
            /* tls-keep opens its one tunnel only when it has none */
            struct io io = {tls_keep && keep.fd >= 0 ? -1 : open_tunnel(), NULL};
            if (io.fd >= 0 && tls)
                io.ssl = tls_open(ctx, io.fd, !strcmp(mode, "tls-resume") ? &sess : NULL);
            if (tls_keep) {
                if (keep.fd < 0 && io.fd >= 0) {
                    keep = io;
                    keep.ssl = tls_open(ctx, io.fd, NULL);
                }
                got = keep.ssl ? exchange(&keep, buf, false, false) : -1;
                if (got < 0) {
                    if (keep.ssl)
                        SSL_free(keep.ssl);
                    if (keep.fd >= 0)
                        close(keep.fd);
                    keep = (struct io){-1, NULL};
                }
            } else if (io.fd >= 0 && (!tls || io.ssl)) {
                got = exchange(&io, buf, false, true);
            }
            if (!tls_keep) {
                if (io.ssl) {
                    SSL_shutdown(io.ssl);
                    SSL_free(io.ssl);
                }
                if (io.fd >= 0)
                    close(io.fd);
            }
        } else { /* keepalive, forward, stream: one connection, many requests */
            bool fwd = !strcmp(mode, "forward");
            if (keep.fd < 0)
                keep.fd = fwd && strcmp(proxy, "direct") ? dial(proxy) : open_tunnel();
            if (!strcmp(mode, "stream")) {
                if (keep.fd >= 0 && stream_exchange(&keep, buf) == 0) {
                    atomic_fetch_add(&ops, 1);
                    continue;
                }
                got = -1;
            } else {
                got =
                    keep.fd >= 0 ? exchange(&keep, buf, fwd && strcmp(proxy, "direct"), false) : -1;
            }
            if (got < 0 && keep.fd >= 0) {
                close(keep.fd);
                keep.fd = -1;
            }
        }
        if (got < 0) {
            atomic_fetch_add(&errors, 1);
            usleep(1000);
            continue;
        }
        atomic_fetch_add(&ops, 1);
        atomic_fetch_add(&bytes, (unsigned long)got);
        sample(now_us() - t0);
    }
    free(buf);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- hold and slow: many sockets in one thread, with epoll ---------------- */

/* As many descriptors as the hard limit allows, raising it when we may. */
static void raise_nofile(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_max < want) {
        struct rlimit up = {want, want};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return;
    }
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
}

static int dial_nonblock(const struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    return err;
}

/* "HTTP/1.x NNN": NNN, or 0. */
static int status_of(const char *b, size_t n)
{
    if (n < 12 || memcmp(b, "HTTP/1.", 7) != 0)
        return 0;
    return atoi(b + 9);
}

static void report_statuses(const unsigned long *st)
{
    for (int i = 0; i < 600; i++)
        if (st[i])
            printf(" status_%d=%lu", i, st[i]);
}

static double percentile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp);
    size_t i = (size_t)(n * q);
    return v[i < n ? i : n - 1];
}

enum { T_CONNECTING = 1, T_HEAD, T_RESP, T_IDLE, T_DONE };

#define TUN_BUF       4096
#define TUN_TIMEOUT_S 10.0

struct tun {
    int fd;
    unsigned char st;
    unsigned short got;
    double t0;
    char *buf; /* only while the tunnel is being set up */
};

struct hold_counts {
    unsigned long ok, failed, connect, closed, reset, timeout, status, other;
    unsigned long closed_after, reset_after; /* after the 200, during the request */
    unsigned long statuses[600];
    int first_errno;
};

static void tun_end(struct tun *t, int epfd)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, t->fd, NULL);
    close(t->fd);
    t->fd = -1;
    free(t->buf);
    t->buf = NULL;
    t->st = T_DONE;
}

static void tun_fail(struct tun *t, int epfd, struct hold_counts *c, unsigned long *kind, int err)
{
    (*kind)++;
    c->failed++;
    if (err && !c->first_errno)
        c->first_errno = err;
    tun_end(t, epfd);
}

/* The tunnel is ready to go on: returns true when it is open and idle. */
static bool tun_step(struct tun *t, int epfd, struct hold_counts *c, const char *req, size_t reqlen)
{
    if (t->st == T_CONNECTING) {
        int err = connect_result(t->fd);
        if (err) {
            tun_fail(t, epfd, c, &c->connect, err);
            return false;
        }
        char head[512];
        const char *name = host_hdr ? host_hdr : target;
        int n = snprintf(head, sizeof(head), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", name, name);
        if (write(t->fd, head, (size_t)n) != n) {
            tun_fail(t, epfd, c, &c->other, errno);
            return false;
        }
        t->st = T_HEAD;
        return false; /* the caller switches the events */
    }
    ssize_t r = read(t->fd, t->buf + t->got, TUN_BUF - 1 - t->got);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        bool after = t->st == T_RESP;
        unsigned long *kind = r == 0 ? (after ? &c->closed_after : &c->closed)
                                     : (after ? &c->reset_after : &c->reset);
        tun_fail(t, epfd, c, kind, r == 0 ? 0 : errno);
        return false;
    }
    if (r < 0)
        return false;
    t->got += (unsigned short)r;
    t->buf[t->got] = '\0';
    char *end = strstr(t->buf, "\r\n\r\n");
    if (end == NULL) {
        if (t->got >= TUN_BUF - 1)
            tun_fail(t, epfd, c, &c->other, 0);
        return false;
    }
    size_t head = (size_t)(end + 4 - t->buf);
    int status = status_of(t->buf, t->got);
    if (status != 200) {
        c->statuses[status > 0 && status < 600 ? status : 0]++;
        tun_fail(t, epfd, c, &c->status, 0);
        return false;
    }
    if (t->st == T_HEAD) {
        memmove(t->buf, t->buf + head, t->got - head);
        t->got -= (unsigned short)head;
        t->buf[t->got] = '\0';
        if (write(t->fd, req, reqlen) != (ssize_t)reqlen) {
            tun_fail(t, epfd, c, &c->other, errno);
            return false;
        }
        t->st = T_RESP;
        return t->got > 0 ? tun_step(t, epfd, c, req, reqlen) : false;
    }
    char *cl = strcasestr(t->buf, "\r\ncontent-length:");
    bool whole = cl && cl < end ? t->got >= head + (size_t)atol(cl + 17)
                                : memmem(t->buf + head, t->got - head, "0\r\n\r\n", 5) != NULL;
    if (!whole)
        return false;
    free(t->buf);
    t->buf = NULL;
    t->st = T_IDLE;
    c->ok++;
    return true;
}

static int hold_main(void)
{
    struct sockaddr_in a;
    if (!parse_addr(proxy, &a)) {
        fprintf(stderr, "loadgen: hold needs --proxy HOST:PORT\n");
        return 2;
    }
    raise_nofile((rlim_t)count + 1024);
    struct tun *t = calloc((size_t)count, sizeof(*t));
    struct hold_counts c = {0};
    char req[1024];
    const char *name = host_hdr ? host_hdr : target;
    int reqlen = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, name);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event evs[256];
    double start = now_us(), last_scan = start, open_deadline = start + open_seconds * 1e6;
    int next = 0, inflight = 0;
    unsigned long done = 0;
    while (done < (unsigned long)count && now_us() < open_deadline) {
        while (inflight < inflight_max && next < count) {
            struct tun *x = &t[next++];
            x->t0 = now_us();
            x->fd = dial_nonblock(&a);
            if (x->fd < 0) {
                c.connect++;
                c.failed++;
                if (!c.first_errno)
                    c.first_errno = errno;
                x->st = T_DONE;
                done++;
                continue;
            }
            x->st = T_CONNECTING;
            x->buf = malloc(TUN_BUF);
            struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)(x - t)};
            epoll_ctl(epfd, EPOLL_CTL_ADD, x->fd, &ev);
            inflight++;
        }
        int n = epoll_wait(epfd, evs, 256, 50);
        for (int i = 0; i < n; i++) {
            struct tun *x = &t[evs[i].data.u32];
            if (x->st == T_DONE || x->st == T_IDLE)
                continue;
            bool was_connecting = x->st == T_CONNECTING;
            bool idle = tun_step(x, epfd, &c, req, (size_t)reqlen);
            if (was_connecting && x->st == T_HEAD) {
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[i].data.u32};
                epoll_ctl(epfd, EPOLL_CTL_MOD, x->fd, &ev);
            }
            if (idle) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP,
                                         .data.u32 = evs[i].data.u32};
                epoll_ctl(epfd, EPOLL_CTL_MOD, x->fd, &ev);
            }
            if (idle || x->st == T_DONE) {
                inflight--;
                done++;
            }
        }
        double now = now_us();
        if (now - last_scan > 100e3) {
            last_scan = now;
            for (int i = 0; i < next; i++)
                if (t[i].st >= T_CONNECTING && t[i].st <= T_RESP &&
                    now - t[i].t0 > TUN_TIMEOUT_S * 1e6) {
                    tun_fail(&t[i], epfd, &c, &c.timeout, 0);
                    inflight--;
                    done++;
                }
        }
    }
    /* the opening phase is over: whatever is still being set up has failed */
    for (int i = 0; i < count; i++) {
        if (t[i].st == 0) {
            t[i].st = T_DONE;
            t[i].fd = -1;
            c.timeout++;
            c.failed++;
        } else if (t[i].st >= T_CONNECTING && t[i].st <= T_RESP) {
            tun_fail(&t[i], epfd, &c, &c.timeout, 0);
        }
    }
    double open_s = (now_us() - start) / 1e6;
    printf("mode=hold count=%d ok=%lu errors=%lu open_s=%.2f err_connect=%lu err_closed=%lu "
           "err_reset=%lu err_closed_after_200=%lu err_reset_after_200=%lu err_timeout=%lu "
           "err_status=%lu err_other=%lu first_errno=%s",
           count, c.ok, c.failed, open_s, c.connect, c.closed, c.reset, c.closed_after,
           c.reset_after, c.timeout, c.status, c.other,
           c.first_errno ? strerrorname_np(c.first_errno) : "none");
    report_statuses(c.statuses);
    printf("\n");
    fflush(stdout);

    /* hold: until stdin ends (or a line arrives), or --seconds pass */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = UINT32_MAX};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
    unsigned long dropped = 0, unexpected = 0;
    double held = now_us(), until = held + seconds * 1e6;
    bool release = false;
    while (!release && now_us() < until) {
        int n = epoll_wait(epfd, evs, 256, 200);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u32 == UINT32_MAX) {
                release = true;
                continue;
            }
            struct tun *x = &t[evs[i].data.u32];
            if (x->st != T_IDLE)
                continue;
            char junk[4096];
            ssize_t r = recv(x->fd, junk, sizeof(junk), MSG_DONTWAIT);
            if (r > 0) {
                unexpected++;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                dropped++;
                tun_end(x, epfd);
            }
        }
    }
    unsigned long still = 0;
    for (int i = 0; i < count; i++) {
        if (t[i].st == T_IDLE) {
            still++;
            close(t[i].fd);
        }
    }
    printf("mode=hold-end held_s=%.1f still_open=%lu dropped=%lu unexpected=%lu\n",
           (now_us() - held) / 1e6, still, dropped, unexpected);
    fflush(stdout);
    close(epfd);
    free(t);
    return 0;
}

enum { S_WAIT = 0, S_CONNECTING, S_SENDING };

struct slow {
    int fd;
    unsigned char st;
    unsigned sent;
    double t_conn, next; /* microseconds */
};

struct slow_counts {
    unsigned long attempts, cut_408, cut_status, cut_eof, cut_reset, connect_failed, completed;
    unsigned long statuses[600];
    double *cut_s;
    size_t n_cut;
};

static void slow_end(struct slow *x, int epfd, struct slow_counts *c, unsigned long *kind,
                     double now)
{
    (*kind)++;
    if (kind != &c->connect_failed && c->n_cut < MAX_SAMPLES)
        c->cut_s[c->n_cut++] = (now - x->t_conn) / 1e6;
    epoll_ctl(epfd, EPOLL_CTL_DEL, x->fd, NULL);
    close(x->fd);
    x->fd = -1;
    x->st = S_WAIT;
    /* reconnect at once, but never more often than once a second */
    x->next = now > x->t_conn + 1e6 ? now : x->t_conn + 1e6;
}

static int slow_main(void)
{
    struct sockaddr_in a;
    if (!parse_addr(proxy, &a)) {
        fprintf(stderr, "loadgen: slow needs --proxy HOST:PORT\n");
        return 2;
    }
    raise_nofile((rlim_t)count + 1024);
    /* a head that takes minutes to send at a byte a second */
    char head[512];
    const char *name = host_hdr ? host_hdr : target;
    int len = snprintf(head, sizeof(head),
                       "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: loadgen-slow\r\n"
                       "X-Pad: %0200d\r\n\r\n",
                       name, name, 0);
    struct slow *s = calloc((size_t)count, sizeof(*s));
    struct slow_counts c = {.cut_s = malloc(MAX_SAMPLES * sizeof(double))};
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event evs[256];
    double start = now_us(), end = start + seconds * 1e6;
    for (int i = 0; i < count; i++) { /* first connections spread over a second */
        s[i].fd = -1;
        s[i].next = start + 1e6 * i / count;
    }
    double now;
    while ((now = now_us()) < end) {
        for (int i = 0; i < count; i++) {
            struct slow *x = &s[i];
            if (x->next > now)
                continue;
            if (x->st == S_WAIT) {
                c.attempts++;
                x->t_conn = now;
                x->sent = 0;
                x->fd = dial_nonblock(&a);
                if (x->fd < 0) {
                    c.connect_failed++;
                    x->next = now + 1e6;
                    continue;
                }
                x->st = S_CONNECTING;
                x->next = now + 3600e6; /* the connect's completion decides */
                struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
                epoll_ctl(epfd, EPOLL_CTL_ADD, x->fd, &ev);
            } else if (x->st == S_SENDING) {
                if (x->sent >= (unsigned)len) {
                    x->next = now + 3600e6;
                    continue;
                }
                ssize_t w = send(x->fd, head + x->sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w == 1) {
                    if (++x->sent == (unsigned)len)
                        c.completed++;
                    x->next += 1e6;
                } else if (errno != EAGAIN && errno != EINTR) {
                    slow_end(x, epfd, &c, &c.cut_reset, now);
                }
            }
        }
        int n = epoll_wait(epfd, evs, 256, 20);
        now = now_us();
        for (int i = 0; i < n; i++) {
            struct slow *x = &s[evs[i].data.u32];
            if (x->fd < 0)
                continue;
            if (x->st == S_CONNECTING) {
                if (connect_result(x->fd) != 0) {
                    slow_end(x, epfd, &c, &c.connect_failed, now);
                    continue;
                }
                x->st = S_SENDING;
                x->next = now;
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP,
                                         .data.u32 = evs[i].data.u32};
                epoll_ctl(epfd, EPOLL_CTL_MOD, x->fd, &ev);
                continue;
            }
            char b[512];
            ssize_t r = recv(x->fd, b, sizeof(b) - 1, MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                slow_end(x, epfd, &c, r == 0 ? &c.cut_eof : &c.cut_reset, now);
                continue;
            }
            int status = status_of(b, (size_t)r);
            c.statuses[status > 0 && status < 600 ? status : 0]++;
            slow_end(x, epfd, &c, status == 408 ? &c.cut_408 : &c.cut_status, now);
        }
    }
    unsigned long open_at_end = 0;
    for (int i = 0; i < count; i++)
        if (s[i].fd >= 0) {
            open_at_end++;
            close(s[i].fd);
        }
    double med = percentile(c.cut_s, c.n_cut, 0.5), p90 = percentile(c.cut_s, c.n_cut, 0.9);
    double max = c.n_cut ? c.cut_s[c.n_cut - 1] : 0;
    printf("mode=slow count=%d seconds=%d attempts=%lu cut_408=%lu cut_status=%lu cut_eof=%lu "
           "cut_reset=%lu connect_failed=%lu completed=%lu open_at_end=%lu cut_median_s=%.2f "
           "cut_p90_s=%.2f cut_max_s=%.2f",
           count, seconds, c.attempts, c.cut_408, c.cut_status, c.cut_eof, c.cut_reset,
           c.connect_failed, c.completed, open_at_end, med, p90, max);
    report_statuses(c.statuses);
    printf("\n");
    close(epfd);
    free(c.cut_s);
    free(s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: loadgen MODE --proxy HOST:PORT|direct --target HOST:PORT ...\n");
        return 2;
    }
    mode = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--proxy"))
            proxy = v;
        else if (!strcmp(k, "--target"))
            target = v;
        else if (!strcmp(k, "--path"))
            path = v;
        else if (!strcmp(k, "--host"))
            host_hdr = v;
        else if (!strcmp(k, "--concurrency"))
            concurrency = atoi(v);
        else if (!strcmp(k, "--seconds"))
            seconds = atoi(v);
        else if (!strcmp(k, "--cafile"))
            cafile = v;
        else if (!strcmp(k, "--method"))
            method = v;
        else if (!strcmp(k, "--body"))
            body = v;
        else if (!strcmp(k, "--ops"))
            ops_limit = atol(v);
        else if (!strcmp(k, "--pause-us"))
            pause_us = atol(v);
        else if (!strcmp(k, "--count"))
            count = atoi(v);
        else if (!strcmp(k, "--inflight"))
            inflight_max = atoi(v);
        else if (!strcmp(k, "--open-seconds"))
            open_seconds = atoi(v);
        else {
            fprintf(stderr, "loadgen: unknown option %s\n", k);
            return 2;
        }
    }
    if (target == NULL || concurrency < 1 || seconds < 1 || count < 1 || inflight_max < 1) {
        fprintf(stderr, "loadgen: --target is required\n");
        return 2;
    }
    if (!strcmp(mode, "hold"))
        return hold_main();
    if (!strcmp(mode, "slow"))
        return slow_main();
    samples = malloc(MAX_SAMPLES * sizeof(*samples));
    pthread_t *t = calloc((size_t)concurrency, sizeof(*t));
    double t0 = now_us();
    for (int i = 0; i < concurrency; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    while (!atomic_load(&stop) && now_us() - t0 < seconds * 1e6)
        usleep(10000);
    atomic_store(&stop, true);
    for (int i = 0; i < concurrency; i++)
        pthread_join(t[i], NULL);
    double elapsed = (now_us() - t0) / 1e6;
    qsort(samples, n_samples, sizeof(*samples), cmp);
    double med = n_samples ? samples[n_samples / 2] : 0;
    double p99 = n_samples ? samples[(size_t)(n_samples * 0.99)] : 0;
    printf("mode=%s concurrency=%d ops=%lu errors=%lu rate=%.1f median_us=%.1f p99_us=%.1f "
           "mb_s=%.1f\n",
           mode, concurrency, atomic_load(&ops), atomic_load(&errors), atomic_load(&ops) / elapsed,
           med, p99, atomic_load(&bytes) / elapsed / 1e6);
    return 0;
}
