/*
 * test_proxy.c - the proxy module's building blocks: JSON escaping, the
 * error responses, deadline-bounded head reading, and the tunnel relay's
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
#include <unistd.h>

Test(log, json_escape)
{
    char out[64];
    json_escape(out, sizeof(out), "a\"b\\c\n\x01");
    cr_assert_str_eq(out, "a\\\"b\\\\c\\u000a\\u0001");
    /* a small buffer cuts the string, leaving room for a whole escape: never overruns */
    memset(out, '#', sizeof(out));
    json_escape(out, 8, "abcdefghijklmnop");
    cr_assert(strlen(out) < 8);
    cr_assert_eq(out[8], '#');
    json_escape(out, 16, "abcdefghijklmnop");
    cr_assert_str_eq(out, "abcdefghi");
}

static void read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0, got;
    while (n < cap - 1 && fd_read(fd, buf + n, cap - 1 - n, &got, now_ms() + 2000) == IO_OK)
        n += got;
    buf[n] = '\0';
}

Test(respond, json_error_shape)
{
    int sv[2];
    char buf[2048];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    respond_error(sv[0], &ERR_POLICY_DENIED, "no \"rule\" allows x", "gh");
    close(sv[0]);
    read_all(sv[1], buf, sizeof(buf));
    close(sv[1]);
    cr_assert(strncmp(buf, "HTTP/1.1 403 Forbidden\r\n", 24) == 0, "%s", buf);
    cr_assert(strstr(buf, "Content-Type: application/json\r\n") != NULL);
    cr_assert(strstr(buf, "Connection: close\r\n") != NULL);
    cr_assert(strstr(buf, "X-Egressd-Error: policy_denied\r\n") != NULL);
    const char *body = strstr(buf, "\r\n\r\n") + 4;
    cr_assert_str_eq(body, "{\"error\":\"policy_denied\",\"detail\":\"no \\\"rule\\\" allows x\","
                           "\"rule\":\"gh\"}\n");
    char cl[64];
    snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", strlen(body));
    cr_assert(strstr(buf, cl) != NULL, "%s", buf);
}

Test(io, read_head_outcomes)
{
    int sv[2];
    char buf[64];
    size_t len = 0;
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct stream *st = stream_plain(sv[1]);
    cr_assert_eq(http_read_head(st, buf, sizeof(buf), &len, now_ms() + 50), HEAD_TIMEOUT);
    write(sv[0], "GET / HTTP/1.1\r\n\r\nbody", 22);
    cr_assert_eq(http_read_head(st, buf, sizeof(buf), &len, now_ms() + 1000), HEAD_OK);
    cr_assert_eq(len, 22);
    len = 0;
    char big[100];
    memset(big, 'a', sizeof(big));
    write(sv[0], big, sizeof(big));
    cr_assert_eq(http_read_head(st, buf, sizeof(buf), &len, now_ms() + 1000), HEAD_TOO_LARGE);
    close(sv[0]);
    len = 0;
    char rest[64];
    while (read(sv[1], rest, sizeof(rest)) > 0)
        ;
    cr_assert_eq(http_read_head(st, buf, sizeof(buf), &len, now_ms() + 1000), HEAD_EOF);
    stream_free(st);
    close(sv[1]);
}

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
};

static void *relay_thread(void *arg)
{
    struct relay_job *j = arg;
    fcntl(j->a, F_SETFL, O_NONBLOCK);
    fcntl(j->b, F_SETFL, O_NONBLOCK);
    struct relay_pipes rp = RELAY_PIPES_INIT;
    relay(j->a, j->b, 5000, NULL, &rp, &j->st);
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
    struct relay_job j = {client[1], origin[0], {0}};
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
