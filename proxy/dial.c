/*
 * dial.c - from an allowed host to a connected upstream socket.
 *
 * The name is resolved once; every address is checked against the policy
 * before any connection is tried, and only those checked addresses are
 * dialled: a second lookup could answer differently (DNS rebinding).  One
 * blocked address refuses the whole destination, since a name that mixes
 * public and internal addresses is the shape of a rebinding attack.
 *
 * getaddrinfo has no timeout, so it runs in a short-lived detached thread
 * while the worker waits on a condition variable with dns_timeout; the last
 * of the two to let go frees the lookup.  Lookups in flight are bounded.
 */
#include "proxy.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LOOKUPS  256
#define LOOKUP_STACK (256 * 1024)
#define MAX_ADDRS    16

static atomic_int lookups_in_flight;

struct lookup {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool done;
    int rc;
    struct addrinfo *res;
    char host[POLICY_HOST_MAX + 1];
};

static void lookup_put(struct lookup *l)
{
    pthread_mutex_lock(&l->mu);
    bool last = --l->refs == 0;
    pthread_mutex_unlock(&l->mu);
    if (!last)
        return;
    if (l->res != NULL)
        freeaddrinfo(l->res);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
    atomic_fetch_sub(&lookups_in_flight, 1);
}

static void *lookup_thread(void *arg)
{
    struct lookup *l = arg;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(l->host, NULL, &hints, &res);
    pthread_mutex_lock(&l->mu);
    l->rc = rc;
    l->res = res;
    l->done = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    lookup_put(l);
    return NULL;
}

static struct lookup *lookup_start(const char *host, const char **why)
{
    if (atomic_fetch_add(&lookups_in_flight, 1) >= MAX_LOOKUPS) {
        atomic_fetch_sub(&lookups_in_flight, 1);
        *why = "too many DNS lookups in flight";
        return NULL;
    }
    struct lookup *l = calloc(1, sizeof(*l));
    pthread_condattr_t ca;
    pthread_attr_t ta;
    pthread_t t;
    if (l == NULL) {
        atomic_fetch_sub(&lookups_in_flight, 1);
        *why = "out of memory";
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(l->host, sizeof(l->host), "%s", host);
    l->refs = 2;
    pthread_attr_init(&ta);
    pthread_attr_setstacksize(&ta, LOOKUP_STACK);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &ta, lookup_thread, l);
    pthread_attr_destroy(&ta);
    if (rc != 0) {
        l->refs = 1;
        lookup_put(l);
        *why = "cannot start a DNS lookup thread";
        return NULL;
    }
    return l;
}

/* Resolve into addrs; returns the count, or -1 with *why. */
static int resolve(const char *host, int timeout_ms, struct sockaddr_storage *addrs,
                   const char **why)
{
    struct lookup *l = lookup_start(host, why);
    if (l == NULL)
        return -1;
    struct timespec dl = deadline_in((unsigned)timeout_ms);
    int n = 0;
    pthread_mutex_lock(&l->mu);
    while (!l->done && pthread_cond_timedwait(&l->cv, &l->mu, &dl) != ETIMEDOUT)
        ;
    if (!l->done) {
        *why = "DNS lookup timed out";
        n = -1;
    } else if (l->rc != 0) {
        *why = l->rc == EAI_NONAME || l->rc == EAI_NODATA ? "name does not resolve"
                                                          : "DNS lookup failed";
        n = -1;
    } else {
        for (struct addrinfo *ai = l->res; ai != NULL && n < MAX_ADDRS; ai = ai->ai_next)
            if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
                memcpy(&addrs[n++], ai->ai_addr, ai->ai_addrlen);
        if (n == 0) {
            *why = "name has no IP address";
            n = -1;
        }
    }
    pthread_mutex_unlock(&l->mu);
    lookup_put(l);
    return n;
}

static int literal_address(const struct host *h, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (h->kind == HOST_IPV4) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_addr = h->ip.v4;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = h->ip.v6;
    }
    return 1;
}

/* Wait for a non-blocking connect to finish: 0, or why it failed.  Linux
 * flags a failed connect POLLERR, so a plain POLLOUT needs no SO_ERROR. */
static int connect_wait(int fd, int64_t deadline)
{
    int64_t left = deadline - now_ms();
    int w = left > 0 ? fd_wait(fd, POLLOUT, (int)left) : 0;
    if (w <= 0)
        return w == 0 ? ETIMEDOUT : errno;
    if (!(w & (POLLERR | POLLHUP)))
        return 0;
    int err = 0;
    socklen_t elen = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
        return errno;
    return err != 0 ? err : ECONNREFUSED;
}

/* Non-blocking connect with a deadline: fd, or -1 (errno ETIMEDOUT on timeout). */
static int connect_one(struct sockaddr_storage *ss, uint16_t port, int64_t deadline)
{
    socklen_t len =
        ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    ((struct sockaddr_in *)ss)->sin_port = htons(port); /* same offset in both */
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)ss, len) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    int err = connect_wait(fd, deadline);
    if (err != 0) {
        close(fd);
        errno = err;
        return -1;
    }
    set_nodelay(fd);
    return fd;
}

static void fail(struct dial_result *r, const struct http_error *e, const char *fmt, const char *a,
                 const char *b)
{
    r->fd = -1;
    r->err = e;
    snprintf(r->detail, sizeof(r->detail), fmt, a, b);
}

/* Addresses of h: itself when it is an IP literal, else resolved. */
static int addresses(const struct host *h, int dns_ms, struct sockaddr_storage *addrs,
                     const char **why)
{
    return h->kind == HOST_NAME ? resolve(h->name, dns_ms, addrs, why) : literal_address(h, addrs);
}

/* Connect to the first address that answers within one deadline for all;
 * fd, or -1 with errno (ETIMEDOUT when the deadline passed). */
static int connect_any(struct sockaddr_storage *addrs, int n, uint16_t port, unsigned timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    int last_errno = ECONNREFUSED;
    for (int i = 0; i < n; i++) {
        int fd = connect_one(&addrs[i], port, deadline);
        if (fd >= 0)
            return fd;
        last_errno = errno;
        if (errno == ETIMEDOUT)
            break;
    }
    errno = last_errno;
    return -1;
}

void dial(const struct conn *c, const struct host *h, uint16_t port,
          const struct policy_decision *d, struct dial_result *r)
{
    struct sockaddr_storage addrs[MAX_ADDRS];
    const char *why = NULL;
    char ip[INET6_ADDRSTRLEN + 8];
    r->rule = NULL; /* every failure's too: callers read it */
    int n = addresses(h, (int)c->set->dns_timeout_ms, addrs, &why);
    if (n < 0)
        return fail(r, &ERR_DNS_FAILURE, "%s: %s", h->name, why);
    for (int i = 0; i < n; i++) {
        int deny = policy_address_denied(c->pol, (struct sockaddr *)&addrs[i], port, c->id);
        if (deny >= 0 && h->kind == HOST_NAME) {
            r->rule = policy_rule_name(c->pol, deny);
            return fail(r, &ERR_POLICY_DENIED, "%s resolves to an address rule %s denies", h->name,
                        r->rule);
        }
        if (!policy_address_permitted(c->pol, d, (struct sockaddr *)&addrs[i], &why)) {
            format_sockaddr((struct sockaddr *)&addrs[i], ip, sizeof(ip));
            *strrchr(ip, ':') = '\0'; /* the port is not set yet */
            return fail(r, &ERR_SSRF_DENIED, "%s resolves to a %s", ip, why);
        }
    }
    r->fd = connect_any(addrs, n, port, c->set->connect_timeout_ms);
    r->err = NULL;
    if (r->fd >= 0)
        return;
    if (errno == ETIMEDOUT)
        return fail(r, &ERR_UPSTREAM_TIMEOUT, "connect to %s timed out%s", h->name, "");
    if (errno == EMFILE || errno == ENFILE) /* ours, not the destination's fault */
        return fail(r, &ERR_OVERLOADED, "out of file descriptors to connect to %s%s", h->name, "");
    if (errno == ENOBUFS || errno == ENOMEM)
        return fail(r, &ERR_OVERLOADED, "egressd cannot open a connection to %s now: %s", h->name,
                    strerror(errno));
    fail(r, &ERR_UPSTREAM_UNREACHABLE, "connect to %s: %s", h->name, strerror(errno));
}

/* Backends are the operator's own choice (often on loopback or a private
 * network), so they get no address check: only the connect itself. */
int dial_backend(const struct proxy_settings *set, const char *host, uint16_t port, char *err,
                 size_t errlen)
{
    struct sockaddr_storage addrs[MAX_ADDRS];
    struct host h;
    const char *why = NULL;
    char bracketed[POLICY_HOST_MAX + 3];
    snprintf(bracketed, sizeof(bracketed), strchr(host, ':') ? "[%s]" : "%s", host);
    int n = host_parse(bracketed, strlen(bracketed), &h, &why) == 0
                ? addresses(&h, (int)set->dns_timeout_ms, addrs, &why)
                : -1;
    if (n < 0) {
        snprintf(err, errlen, "backend %s: %s", host, why);
        return -1;
    }
    int fd = connect_any(addrs, n, port, set->connect_timeout_ms);
    if (fd < 0)
        snprintf(err, errlen, "backend %s:%u: %s", host, port, strerror(errno));
    return fd;
}
