/*
 * test_proxy.c - the proxy module's building blocks: the tunnel relay's
 * half-close handling over real loopback TCP connections.
 */
#include "../../proxy/proxy.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <unistd.h>

/* A connected loopback TCP pair. */
static void tcp_pair(int fds[2])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(l >= 0);
    cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(l, 1), 0);
    cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    fds[0] = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(fds[0], (struct sockaddr *)&a, sizeof(a)), 0);
    fds[1] = accept(l, NULL, NULL);
    cr_assert(fds[1] >= 0);
    close(l);
}

struct relay_job {
    int a, b;
    struct relay_stats st;
    bool kept_pipes; /* the worker's pipes were still there when the tunnel ended */
};

static void *relay_thread(void *arg)
{
    struct relay_job *j = arg;
    fcntl(j->a, F_SETFL, O_NONBLOCK);
    fcntl(j->b, F_SETFL, O_NONBLOCK);
    struct relay_pipes rp = RELAY_PIPES_INIT;
    relay(j->a, j->b, 5000, NULL, &rp, &j->st);
    j->kept_pipes = rp.fd[0][0] >= 0 || rp.fd[1][0] >= 0;
    relay_pipes_close(&rp);
    close(j->a);
    close(j->b);
    return NULL;
}

Test(relay, half_close_delivers_everything)
{
    int client[2], origin[2];
    tcp_pair(client); /* client[0]: the client, client[1]: egressd's side */
    tcp_pair(origin); /* origin[0]: egressd's side, origin[1]: the origin */
    struct relay_job j = {client[1], origin[0], {0}, false};
    pthread_t t;
    pthread_create(&t, NULL, relay_thread, &j);

    /* client sends a request and shuts its write side, as `curl -T - ` or nc -N do */
    cr_assert_eq(write(client[0], "request", 7), 7);
    shutdown(client[0], SHUT_WR);
    char buf[256 * 1024];
    size_t got = 0;
    ssize_t n;
    while ((n = read(origin[1], buf + got, sizeof(buf) - got)) > 0)
        got += (size_t)n;
    cr_assert_eq(got, 7, "origin sees the request then EOF");
    /* the origin answers after the client's EOF: the answer must still arrive */
    static char big[200 * 1024];
    memset(big, 'x', sizeof(big));
    size_t off = 0;
    while (off < sizeof(big) && (n = write(origin[1], big + off, sizeof(big) - off)) > 0)
        off += (size_t)n;
    close(origin[1]);
    got = 0;
    while ((n = read(client[0], buf + got, sizeof(buf) - got)) > 0)
        got += (size_t)n;
    cr_assert_eq(got, sizeof(big));
    pthread_join(t, NULL);
    close(client[0]);
    cr_assert_eq(j.st.up, 7);
    cr_assert_eq(j.st.down, sizeof(big));
    cr_assert(j.kept_pipes, "uncrowded: the worker keeps its pipes for the next tunnel");
}

/* Both ways at once, a pattern that shows any byte out of place. */
static void *write_pattern(void *arg)
{
    int fd = *(int *)arg;
    static char out[300 * 1024];
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (char)(i % 251);
    for (size_t off = 0; off < sizeof(out);) {
        ssize_t n = write(fd, out + off, sizeof(out) - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    return NULL;
}

static size_t read_pattern(int fd)
{
    char buf[16 * 1024];
    size_t got = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        for (ssize_t i = 0; i < n; i++, got++)
            cr_assert_eq((unsigned char)buf[i], got % 251, "byte %zu out of place", got);
    return got;
}

Test(relay, crowded_descriptors_copy_instead_of_splicing)
{
    int client[2], origin[2];
    tcp_pair(client);
    tcp_pair(origin);
    /* Descriptors filled up to the last quarter of a limit that still
     * leaves room: a pipe made now lands there, is given back as crowded,
     * and both directions copy. */
    int fill[256];
    size_t nfill = 0;
    fill[nfill++] = open("/dev/null", O_RDONLY);
    cr_assert(fill[0] >= 0);
    rlim_t limit = (rlim_t)fill[0] + 64;
    while ((rlim_t)fill[nfill - 1] + 1 < limit / 4 * 3) {
        fill[nfill] = dup(fill[0]);
        cr_assert(fill[nfill++] >= 0);
    }
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = limit;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    struct relay_job j = {client[1], origin[0], {0}, false};
    pthread_t t, up, down;
    pthread_create(&t, NULL, relay_thread, &j);
    pthread_create(&up, NULL, write_pattern, &client[0]);
    pthread_create(&down, NULL, write_pattern, &origin[1]);
    cr_assert_eq(read_pattern(origin[1]), 300 * 1024);
    cr_assert_eq(read_pattern(client[0]), 300 * 1024);
    pthread_join(up, NULL);
    pthread_join(down, NULL);
    pthread_join(t, NULL);
    cr_assert_eq(j.st.up, 300 * 1024);
    cr_assert_eq(j.st.down, 300 * 1024);
    cr_assert_not(j.kept_pipes, "crowded: the tunnel copied, no pipe was kept");
    close(client[0]);
    close(origin[1]);
    for (size_t i = 0; i < nfill; i++)
        close(fill[i]);
}

Test(relay, idle_timeout_ends_it)
{
    int client[2], origin[2];
    tcp_pair(client);
    tcp_pair(origin);
    fcntl(client[1], F_SETFL, O_NONBLOCK);
    fcntl(origin[0], F_SETFL, O_NONBLOCK);
    struct relay_stats st;
    struct relay_pipes rp = RELAY_PIPES_INIT;
    relay(client[1], origin[0], 100, NULL, &rp, &st);
    relay_pipes_close(&rp);
    cr_assert_str_eq(st.end, "idle timeout");
    for (int i = 0; i < 2; i++) {
        close(client[i]);
        close(origin[i]);
    }
}

/* ---- trust on first use ---- */

/* ---- a body secrets are swapped into: taken whole, re-framed ---- */

static void put_all(int fd, const char *s)
{
    cr_assert_eq(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* A client that sent head (parsed into m) and body, and an exchange begun
 * on its connection. */
struct client_exchange {
    int fds[2];
    char buf[4096];
    struct bufconn in;
    struct http_msg m;
    struct exchange x;
};

static void exchange_from(struct client_exchange *c, const char *head, const char *body)
{
    const char *why;
    tcp_pair(c->fds);
    put_all(c->fds[0], body);
    bufconn_init(&c->in, stream_plain(c->fds[1]), c->buf, sizeof(c->buf));
    cr_assert_eq(http_parse_request(head, strlen(head), &c->m, &why), HTTP_OK);
    exchange_begin(&c->x, &c->in, NULL, &c->m, 2000);
}

static void exchange_done(struct client_exchange *c, char *out, size_t cap)
{
    exchange_end(&c->x, out, cap);
    stream_free(c->in.s);
    close(c->fds[0]);
    close(c->fds[1]);
}

Test(exchange, a_chunked_body_taken_whole_gets_a_content_length)
{
    struct client_exchange c;
    exchange_from(&c, "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
                  "4\r\ntok:\r\n12\r\negressd-secret-abc\r\n0\r\n\r\n");
    char out[1024];
    static const struct http_swap sw1[] = {{"egressd-secret-abc", "VALUE", 18, 5}};
    struct http_swaps sw = {sw1, 1, 1};
    struct host h;
    const char *why;
    host_parse("h", 1, &h, &why);
    struct outgoing_head oh = {&h, 80, 80, c.m.target, c.m.target_len, &sw};
    struct sbuf o;
    sbuf_init(&o, out, sizeof(out));
    exchange_put_head(&o, &c.m, &oh);
    uint64_t swapped;
    cr_assert_eq(exchange_take_body(&c.x, &sw, 1024, now_ms() + 2000, &swapped), SENT);
    exchange_end_head(&c.x, &o);
    cr_assert_eq(swapped, 1);
    cr_assert_str_eq(c.x.body.p, "tok:VALUE");
    cr_assert(strstr(out, "Content-Length: 9\r\n") != NULL, "%s", out);
    cr_assert_null(strstr(out, "chunked"), "%s", out);
    c.x.secrets_sent = true; /* as prepare sets it */
    exchange_done(&c, out, sizeof(out));
    for (size_t i = 0; i < sizeof(out); i++)
        cr_assert_eq(out[i], 0, "the head that held a value is wiped");
}

Test(exchange, a_body_over_the_bound_is_too_large)
{
    static char big[2001];
    memset(big, 'a', 2000);
    struct client_exchange c;
    exchange_from(&c, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\n\r\n", big);
    struct http_swaps sw = {NULL, 0, 0};
    uint64_t swapped;
    cr_assert_eq(exchange_take_body(&c.x, &sw, 1024, now_ms() + 2000, &swapped), CLIENT_TOO_LARGE);
    cr_assert_eq(exchange_client_error(CLIENT_TOO_LARGE, NULL)->status, 413);
    exchange_done(&c, NULL, 0);
}
