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
