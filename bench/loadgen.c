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
 *
 * usage: loadgen MODE --proxy HOST:PORT|direct --target HOST:PORT [--path P]
 *        [--host NAME] [--concurrency N] [--seconds S] [--cafile F]
 *        [--method GET|POST] [--body JSON]
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (1 << 20)
#define BUF         (256 * 1024)

static const char *mode, *proxy = "direct", *target, *path = "/", *host_hdr, *cafile;
static const char *method = "GET", *body = "";
static int concurrency = 1, seconds = 3;
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

static int dial(const char *hostport)
{
    char h[256], *colon;
    snprintf(h, sizeof(h), "%s", hostport);
    colon = strrchr(h, ':');
    if (colon == NULL)
        return -1;
    *colon = '\0';
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, h, &a.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct timeval tv = {10, 0};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
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
    while (!atomic_load(&stop)) {
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
        else {
            fprintf(stderr, "loadgen: unknown option %s\n", k);
            return 2;
        }
    }
    if (target == NULL || concurrency < 1 || seconds < 1) {
        fprintf(stderr, "loadgen: --target is required\n");
        return 2;
    }
    samples = malloc(MAX_SAMPLES * sizeof(*samples));
    pthread_t *t = calloc((size_t)concurrency, sizeof(*t));
    double t0 = now_us();
    for (int i = 0; i < concurrency; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    sleep((unsigned)seconds);
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
