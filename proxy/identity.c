/*
 * identity.c - which program is on the other end of a client connection
 * (DESIGN section 6), for rules with `binary`.
 *
 * The client's socket is the one whose local address is our peer and whose
 * remote address is us: asked of the kernel with sock_diag, or read from
 * /proc/net/tcp{,6} (the sandbox process's /proc/<pid>/net when egressd
 * runs in another network namespace).  Its inode is looked for in
 * /proc/<pid>/fd: first among the processes that owned recent sockets,
 * then newest first among the processes of the socket's user; an ancestor
 * of the owner that holds the same socket must run the same program.  The chain is the owner's exe
 * and its ancestors' (up to 64).  Each exe is hashed (SHA-256) the first time its path is seen and
 * whenever its (dev, inode, size, mtime, ctime) change; a path whose content changes after its
 * first use is refused (trust on first use). Whatever cannot be established is a reason to deny,
 * never to allow.
 */
#include "proxy.h"

#include <dirent.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PIDS         65536 /* processes of the socket's user considered, newest first */
#define MAX_TCP_LINES    1000000
#define FINGERPRINTS_MAX 4096
#define RECENT_OWNERS    32

struct fingerprint {
    char path[IDENTITY_PATH_MAX];
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    unsigned char first[32]; /* the content trusted at first use */
};

struct fingerprints {
    pthread_mutex_t mu;
    size_t n;
    struct fingerprint *rows;   /* FINGERPRINTS_MAX; beyond it paths are hashed every time */
    long recent[RECENT_OWNERS]; /* who held the last sockets: an agent connects again and again */
    unsigned next_recent;
};

struct fingerprints *fingerprints_new(void)
{
    struct fingerprints *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->rows = calloc(FINGERPRINTS_MAX, sizeof(*f->rows))) == NULL) {
        free(f);
        return NULL;
    }
    pthread_mutex_init(&f->mu, NULL);
    return f;
}

void fingerprints_free(struct fingerprints *f)
{
    if (f == NULL)
        return;
    pthread_mutex_destroy(&f->mu);
    free(f->rows);
    free(f);
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
}

/* IPv4-mapped IPv6 as IPv4, the way proc_net_tcp_line reports it. */
static void normalise(struct sockaddr_storage *ss)
{
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (ss->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
        return;
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = in6->sin6_port};
    memcpy(&in.sin_addr, in6->sin6_addr.s6_addr + 12, 4);
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &in, sizeof(in));
}

/* The inode of the socket local->remote in dir/tcp or dir/tcp6; 0 if none. */
static unsigned long find_inode(const char *dir, const struct sockaddr_storage *local,
                                const struct sockaddr_storage *remote, unsigned *uid)
{
    static const char *const files[] = {"tcp", "tcp6"};
    char path[96], line[512];
    for (int f = 0; f < 2; f++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[f]);
        FILE *fp = fopen(path, "re");
        if (fp == NULL)
            continue;
        struct proc_socket ps;
        unsigned long inode = 0;
        for (int n = 0; inode == 0 && n < MAX_TCP_LINES && fgets(line, sizeof(line), fp); n++)
            if (proc_net_tcp_line(line, &ps) == 0 && same_addr(&ps.local, local) &&
                same_addr(&ps.remote, remote)) {
                inode = ps.inode;
                *uid = ps.uid;
            }
        fclose(fp);
        if (inode != 0)
            return inode;
    }
    return 0;
}

/* Ask the kernel for the one socket local->remote (sock_diag): O(1), where
 * reading /proc/net/tcp costs a line per socket, TIME_WAIT ones included.
 * The inode, or 0 when the kernel has none or cannot say. */
static unsigned long diag_inode(const struct sockaddr_storage *local,
                                const struct sockaddr_storage *remote, unsigned *uid)
{
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } req = {.nlh = {.nlmsg_len = sizeof(req),
                     .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                     .nlmsg_flags = NLM_F_REQUEST},
             .r = {.sdiag_family = (uint8_t)local->ss_family,
                   .sdiag_protocol = IPPROTO_TCP,
                   .idiag_states = ~0u}};
    req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (local->ss_family == AF_INET) {
        const struct sockaddr_in *l = (const void *)local, *r = (const void *)remote;
        req.r.id.idiag_sport = l->sin_port;
        req.r.id.idiag_dport = r->sin_port;
        memcpy(req.r.id.idiag_src, &l->sin_addr, 4);
        memcpy(req.r.id.idiag_dst, &r->sin_addr, 4);
    } else {
        const struct sockaddr_in6 *l = (const void *)local, *r = (const void *)remote;
        req.r.id.idiag_sport = l->sin6_port;
        req.r.id.idiag_dport = r->sin6_port;
        memcpy(req.r.id.idiag_src, &l->sin6_addr, 16);
        memcpy(req.r.id.idiag_dst, &r->sin6_addr, 16);
    }
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return 0;
    union {
        struct nlmsghdr h;
        char buf[1024];
    } ans;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    unsigned long inode = 0;
    ssize_t n = -1;
    struct timeval tv = {1, 0}; /* the kernel answers at once; never wait long */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
        sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) ==
            (ssize_t)sizeof(req))
        n = recv(fd, &ans, sizeof(ans), 0);
    if (n >= (ssize_t)NLMSG_LENGTH(sizeof(struct inet_diag_msg)) &&
        ans.h.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
        const struct inet_diag_msg *m = NLMSG_DATA(&ans.h);
        inode = m->idiag_inode;
        *uid = m->idiag_uid;
    }
    close(fd);
    return inode;
}

static bool holds_socket(long pid, const char *want)
{
    char path[64], link[64];
    snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return false;
    bool found = false;
    size_t wlen = strlen(want);
    for (struct dirent *e; !found && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        ssize_t n = readlinkat(dirfd(d), e->d_name, link, sizeof(link));
        found = n == (ssize_t)wlen && memcmp(link, want, wlen) == 0;
    }
    closedir(d);
    return found;
}

static int by_pid_desc(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

static long recent_owner(struct fingerprints *fp, const char *want)
{
    long pids[RECENT_OWNERS];
    pthread_mutex_lock(&fp->mu);
    memcpy(pids, fp->recent, sizeof(pids));
    pthread_mutex_unlock(&fp->mu);
    for (int i = 0; i < RECENT_OWNERS; i++)
        if (pids[i] > 0 && holds_socket(pids[i], want))
            return pids[i];
    return -1;
}

static void remember_owner(struct fingerprints *fp, long pid)
{
    pthread_mutex_lock(&fp->mu);
    bool known = false;
    for (int i = 0; i < RECENT_OWNERS && !known; i++)
        known = fp->recent[i] == pid;
    if (!known)
        fp->recent[fp->next_recent++ % RECENT_OWNERS] = pid;
    pthread_mutex_unlock(&fp->mu);
}

/* The process holding the socket: one of the recent owners, or else looked
 * for newest first (a process that just started is the likeliest) among
 * those running as the socket's owner: the pid, or -1. */
static long find_owner(struct fingerprints *fp, const char *want, unsigned uid, long *pids,
                       size_t cap)
{
    long pid = recent_owner(fp, want);
    if (pid > 0)
        return pid;
    size_t n = 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return -1;
    long self = (long)getpid();
    for (struct dirent *e; n < cap && (e = readdir(d)) != NULL;) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        struct stat st;
        if (*end == '\0' && pid > 0 && pid != self && fstatat(dirfd(d), e->d_name, &st, 0) == 0 &&
            st.st_uid == uid)
            pids[n++] = pid;
    }
    closedir(d);
    qsort(pids, n, sizeof(*pids), by_pid_desc);
    for (size_t i = 0; i < n; i++) {
        if (holds_socket(pids[i], want)) {
            remember_owner(fp, pids[i]);
            return pids[i];
        }
    }
    return -1;
}

static int exe_of(long pid, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/exe", pid);
    ssize_t n = readlink(path, out, cap - 1);
    if (n <= 0 || (size_t)n >= cap - 1)
        return -1;
    out[n] = '\0';
    size_t len = (size_t)n, tag = strlen(" (deleted)");
    if (len > tag && strcmp(out + len - tag, " (deleted)") == 0)
        out[len - tag] = '\0';
    return 0;
}

static long parent_of(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *close_paren = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
    long ppid;
    return close_paren && sscanf(close_paren + 1, " %*c %ld", &ppid) == 1 ? ppid : -1;
}

static bool same_stat(const struct fingerprint *f, const struct stat *st)
{
    return f->dev == st->st_dev && f->ino == st->st_ino && f->size == st->st_size &&
           f->mtime.tv_sec == st->st_mtim.tv_sec && f->mtime.tv_nsec == st->st_mtim.tv_nsec &&
           f->ctime.tv_sec == st->st_ctim.tv_sec && f->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

/* Trust on first use of path, whose content fd reads; NULL, or why not. */
const char *fingerprint_check(struct fingerprints *fp, int fd, const char *path)
{
    struct stat st;
    unsigned char sum[32];
    if (fstat(fd, &st) != 0)
        return "process identity: its executable cannot be read";
    pthread_mutex_lock(&fp->mu);
    struct fingerprint *f = NULL;
    for (size_t i = 0; i < fp->n && f == NULL; i++)
        if (strcmp(fp->rows[i].path, path) == 0)
            f = &fp->rows[i];
    bool known_same = f != NULL && same_stat(f, &st);
    pthread_mutex_unlock(&fp->mu);
    const char *why = NULL;
    if (!known_same) { /* hashed outside the lock: a big binary must not stall the others */
        if (sha256_fd(fd, sum) != 0) {
            why = "process identity: its executable cannot be read";
        } else {
            pthread_mutex_lock(&fp->mu);
            if (f != NULL && memcmp(f->first, sum, 32) != 0) {
                why = "binary integrity: the executable changed since its first use";
            } else if (f == NULL && fp->n < FINGERPRINTS_MAX) {
                f = &fp->rows[fp->n++];
                snprintf(f->path, sizeof(f->path), "%s", path);
                memcpy(f->first, sum, 32);
            }
            if (why == NULL && f != NULL) {
                f->dev = st.st_dev, f->ino = st.st_ino, f->size = st.st_size;
                f->mtime = st.st_mtim, f->ctime = st.st_ctim;
            }
            pthread_mutex_unlock(&fp->mu);
        }
    }
    return why;
}

static const char *check_process(struct fingerprints *fp, long pid, const char *path)
{
    char exe[64];
    snprintf(exe, sizeof(exe), "/proc/%ld/exe", pid);
    int fd = open(exe, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return "process identity: its executable cannot be read";
    const char *why = fingerprint_check(fp, fd, path);
    close(fd);
    return why;
}

static const char *resolve(const struct conn *c, struct fingerprints *fp, struct identity *id,
                           long *pids)
{
    struct sockaddr_storage peer, local;
    socklen_t pl = sizeof(peer), ll = sizeof(local);
    char dir[64] = "/proc/net", want[48];
    unsigned uid = 0;
    if (getpeername(c->fd, (struct sockaddr *)&peer, &pl) != 0 ||
        getsockname(c->fd, (struct sockaddr *)&local, &ll) != 0)
        return "process identity: the connection's addresses are unknown";
    normalise(&peer);
    normalise(&local);
    if (c->set->sandbox_pid != 0)
        snprintf(dir, sizeof(dir), "/proc/%u/net", c->set->sandbox_pid);
    /* in our own network namespace the kernel answers directly; the
     * sandbox's (sandbox_pid) is read through /proc/<pid>/net */
    unsigned long inode = c->set->sandbox_pid == 0 ? diag_inode(&peer, &local, &uid) : 0;
    if (inode == 0)
        inode = find_inode(dir, &peer, &local, &uid);
    if (inode == 0)
        return "process identity: the client's socket is not in /proc/net/tcp (another network "
               "namespace? set sandbox_pid)";
    snprintf(want, sizeof(want), "socket:[%lu]", inode);
    long pid = find_owner(fp, want, uid, pids, MAX_PIDS);
    if (pid < 0)
        return "process identity: no visible process holds the client's socket";
    if (exe_of(pid, id->chain[0], sizeof(id->chain[0])) != 0)
        return "process identity: the process's executable cannot be read";
    id->pid = pid;
    id->n = 1;
    const char *why = check_process(fp, pid, id->chain[0]);
    /* An ancestor that holds the same socket (it made it, then started the
     * program we found) must be the same program: else it is the one talking. */
    while (why == NULL && id->n < IDENTITY_CHAIN_MAX && (pid = parent_of(pid)) > 1 &&
           exe_of(pid, id->chain[id->n], sizeof(id->chain[0])) == 0) {
        if (strcmp(id->chain[id->n], id->chain[0]) != 0 && holds_socket(pid, want))
            return "process identity: processes of different programs share the socket";
        why = check_process(fp, pid, id->chain[id->n]);
        id->n++;
    }
    return why;
}

struct identity *identity_lookup(const struct conn *c, struct fingerprints *fp)
{
    struct identity *id = calloc(1, sizeof(*id));
    long *pids = malloc(MAX_PIDS * sizeof(*pids));
    if (id == NULL || pids == NULL) {
        free(id);
        free(pids);
        return NULL;
    }
    id->pid = -1;
    id->unresolved = resolve(c, fp, id, pids);
    free(pids);
    return id;
}
