/*
 * identity.c - which programs are on the other end of a client connection
 * (DESIGN section 6), for rules with `binary`.
 *
 * The client's socket is the one whose local address is our peer and whose
 * remote address is us: asked of the kernel with sock_diag, or read from
 * /proc/net/tcp{,6} (of the sandbox process, /proc/<pid>/net, when egressd
 * runs in another network namespace).  Then every process of the socket's
 * user is searched for that inode in /proc/<pid>/fd, and in
 * /proc/<pid>/task/<tid>/fd for each of its tasks with a file table of its
 * own (kcmp(2) tells): a socket can be held by several processes (inherited
 * across fork, kept by a parent that started an allowed program), and any
 * of them can write the request, so every holder is judged.  Each
 * holder's chain is its executable and its ancestors' (up to 64), each
 * checked against the trust store.  The whole lookup has one deadline,
 * looked at in every loop over /proc and while hashing.  Whatever cannot
 * be established (in time) is a reason to deny, never to allow.
 */
#include "policy_int.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/inet_diag.h>
#include <linux/kcmp.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_TCP_LINES 1000000
#define LATE          "process identity: the lookup ran out of time"

/* One search for the client's socket, by its deadline. */
struct scan {
    const char *want; /* "socket:[inode]", as /proc/<pid>/fd links read */
    int64_t deadline; /* now_ms() time */
    bool late;        /* the deadline passed: what was not found may exist */
};

/* Still before the deadline?  Once past it, every loop of the search stops. */
static bool in_time(struct scan *sc)
{
    if (!sc->late && now_ms() > sc->deadline)
        sc->late = true;
    return !sc->late;
}

/* ---- building an identity ---------------------------------------------------------- */

struct identity *identity_new(void)
{
    return calloc(1, sizeof(struct identity));
}

void identity_free(struct identity *id)
{
    if (id == NULL)
        return;
    for (size_t h = 0; h < id->n; h++)
        for (size_t i = 0; i < id->holder[h].n; i++)
            free(id->holder[h].chain[i]);
    free(id);
}

int identity_add_holder(struct identity *id, long pid)
{
    if (id->n == IDENTITY_HOLDERS_MAX)
        return -1;
    id->holder[id->n] = (struct identity_holder){.pid = pid};
    return (int)id->n++;
}

int identity_add_exe(struct identity *id, size_t holder, const char *path)
{
    struct identity_holder *h = &id->holder[holder];
    if (h->n == IDENTITY_CHAIN_MAX || (h->chain[h->n] = strdup(path)) == NULL)
        return -1;
    h->n++;
    return 0;
}

/* ---- the socket ---------------------------------------------------------------------- */

/* "0100007F:1F90" or 32 hex digits and a port, in the kernel's byte order. */
static int proc_address(const char *hex, unsigned port, struct sockaddr_storage *ss)
{
    size_t n = strlen(hex);
    memset(ss, 0, sizeof(*ss));
    uint32_t words[4];
    if (n != 8 && n != 32)
        return -1;
    for (size_t i = 0; i < n / 8; i++) {
        char w[9];
        memcpy(w, hex + 8 * i, 8);
        w[8] = '\0';
        words[i] = (uint32_t)strtoul(w, NULL, 16); /* printed as a host-order u32 */
    }
    bool mapped = n == 32 && words[0] == 0 && words[1] == 0 && words[2] == htonl(0xffff);
    if (n == 8 || mapped) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        memcpy(&in->sin_addr, &words[n == 8 ? 0 : 3], 4);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        memcpy(&in6->sin6_addr, words, 16);
    }
    return 0;
}

int proc_net_tcp_line(const char *line, struct proc_socket *out)
{
    char local[40], remote[40];
    unsigned lport, rport, state;
    if (sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %39[0-9A-Fa-f]:%x %x %*s %*s %*s %u %*u %lu", local,
               &lport, remote, &rport, &state, &out->uid, &out->inode) != 7)
        return -1;
    if (lport > 65535 || rport > 65535)
        return -1;
    return proc_address(local, lport, &out->local) || proc_address(remote, rport, &out->remote) ? -1
                                                                                                : 0;
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
                                const struct sockaddr_storage *remote, unsigned *uid,
                                struct scan *sc)
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
        for (int n = 0; inode == 0 && n < MAX_TCP_LINES && (n % 1024 != 0 || in_time(sc)) &&
                        fgets(line, sizeof(line), fp);
             n++)
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

/* The inode and owner of the client's end of fd; 0 when not found. */
static unsigned long socket_inode(int fd, unsigned sandbox_pid, unsigned *uid, struct scan *sc)
{
    struct sockaddr_storage peer, local;
    socklen_t pl = sizeof(peer), ll = sizeof(local);
    char dir[64] = "/proc/net";
    if (getpeername(fd, (struct sockaddr *)&peer, &pl) != 0 ||
        getsockname(fd, (struct sockaddr *)&local, &ll) != 0)
        return 0;
    normalise(&peer);
    normalise(&local);
    /* in our own network namespace the kernel answers directly; the
     * sandbox's (sandbox_pid) is read through /proc/<pid>/net */
    unsigned long inode = sandbox_pid == 0 ? diag_inode(&peer, &local, uid) : 0;
    if (sandbox_pid != 0)
        snprintf(dir, sizeof(dir), "/proc/%u/net", sandbox_pid);
    return inode != 0 ? inode : find_inode(dir, &peer, &local, uid, sc);
}

/* ---- its holders ------------------------------------------------------------------------ */

/* Is `want` among the descriptors listed in fd_dir (under /proc)? */
static bool holds_socket(int proc, const char *fd_dir, struct scan *sc)
{
    char link[64];
    int dfd = openat(proc, fd_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d == NULL) {
        if (dfd >= 0)
            close(dfd);
        return false; /* gone, or not ours to see */
    }
    bool found = false;
    size_t wlen = strlen(sc->want);
    for (struct dirent *e; !found && in_time(sc) && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        ssize_t n = readlinkat(dirfd(d), e->d_name, link, sizeof(link));
        found = n == (ssize_t)wlen && memcmp(link, sc->want, wlen) == 0;
    }
    closedir(d);
    return found;
}

/* May task tid of process pid have a file table of its own?  kcmp(2) says
 * whether it shares the leader's; when kcmp cannot say (not built into the
 * kernel, refused), it may. */
static bool own_files(long pid, long tid)
{
    return syscall(SYS_kcmp, (pid_t)pid, (pid_t)tid, KCMP_FILES, 0, 0) != 0;
}

/* The task of process pid (its name in /proc: pid_s) that holds the
 * socket, or 0.  Threads share the leader's file table, except a task
 * cloned without CLONE_FILES or one that called unshare(CLONE_FILES): such
 * a table is searched too, or a holder could hide in it.  A process is one
 * holder however many of its tasks hold the socket: they run one
 * executable and have the same ancestors. */
static long holding_task(int proc, const char *pid_s, long pid, struct scan *sc)
{
    char path[2 * NAME_MAX + 16];
    snprintf(path, sizeof(path), "%s/fd", pid_s);
    if (holds_socket(proc, path, sc))
        return pid;
    snprintf(path, sizeof(path), "%s/task", pid_s);
    int dfd = openat(proc, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d == NULL) {
        if (dfd >= 0)
            close(dfd);
        return 0;
    }
    long found = 0;
    for (struct dirent *e; found == 0 && in_time(sc) && (e = readdir(d)) != NULL;) {
        char *end;
        long tid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || tid <= 0 || tid == pid || !own_files(pid, tid))
            continue;
        snprintf(path, sizeof(path), "%s/task/%s/fd", pid_s, e->d_name);
        if (holds_socket(proc, path, sc))
            found = tid;
    }
    closedir(d);
    return found;
}

/* Every process of user uid holding the socket `want`: NULL, or why the
 * search failed. */
static const char *find_holders(struct identity *id, struct scan *sc, unsigned uid)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return "process identity: /proc cannot be read";
    long self = (long)getpid();
    const char *why = NULL;
    for (struct dirent *e; why == NULL && in_time(sc) && (e = readdir(d)) != NULL;) {
        char *end;
        long pid = strtol(e->d_name, &end, 10), task;
        struct stat st;
        if (*end != '\0' || pid <= 0 || pid == self || fstatat(dirfd(d), e->d_name, &st, 0) != 0 ||
            st.st_uid != uid)
            continue;
        if ((task = holding_task(dirfd(d), e->d_name, pid, sc)) != 0 &&
            identity_add_holder(id, task) < 0)
            why = "process identity: too many processes share the client's socket";
    }
    closedir(d);
    if (why == NULL && sc->late) /* a holder not seen yet may exist */
        why = LATE;
    if (why == NULL && id->n == 0)
        why = "process identity: no visible process holds the client's socket";
    return why;
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

/* The trust store's verdict on what pid runs as path. */
static const char *trusted(struct trust_store *ts, long pid, const char *path, int64_t deadline)
{
    char exe[64];
    snprintf(exe, sizeof(exe), "/proc/%ld/exe", pid);
    int fd = open(exe, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return "process identity: its executable cannot be read";
    const char *why = trust_check(ts, fd, path, deadline);
    close(fd);
    return why;
}

/* A holder's executable and its ancestors', each one trusted. */
static const char *walk_chain(struct identity *id, size_t h, struct trust_store *ts,
                              struct scan *sc)
{
    char exe[IDENTITY_PATH_MAX];
    long pid = id->holder[h].pid;
    if (exe_of(pid, exe, sizeof(exe)) != 0)
        return "process identity: the process's executable cannot be read";
    do {
        const char *why = in_time(sc) ? trusted(ts, pid, exe, sc->deadline) : LATE;
        if (why != NULL)
            return why;
        if (identity_add_exe(id, h, exe) != 0)
            return "out of memory";
    } while (id->holder[h].n < IDENTITY_CHAIN_MAX && (pid = parent_of(pid)) > 1 &&
             exe_of(pid, exe, sizeof(exe)) == 0);
    return NULL;
}

static const char *resolve(struct identity *id, int fd, unsigned sandbox_pid,
                           struct trust_store *ts, int64_t deadline)
{
    char want[48];
    unsigned uid = 0;
    struct scan sc = {.want = want, .deadline = deadline};
    unsigned long inode = socket_inode(fd, sandbox_pid, &uid, &sc);
    if (inode == 0)
        return sc.late ? LATE
                       : "process identity: the client's socket is not in /proc/net/tcp (another "
                         "network namespace? set sandbox_pid)";
    snprintf(want, sizeof(want), "socket:[%lu]", inode);
    const char *why = find_holders(id, &sc, uid);
    for (size_t h = 0; why == NULL && h < id->n; h++)
        why = walk_chain(id, h, ts, &sc);
    return why;
}

struct identity *identity_lookup(int fd, unsigned sandbox_pid, struct trust_store *ts,
                                 int64_t deadline)
{
    struct identity *id = identity_new();
    if (id == NULL)
        return NULL;
    id->unresolved = resolve(id, fd, sandbox_pid, ts, deadline);
    if (id->unresolved != NULL) { /* half an identity must never be read as one */
        const char *why = id->unresolved;
        for (size_t h = 0; h < id->n; h++)
            for (size_t i = 0; i < id->holder[h].n; i++)
                free(id->holder[h].chain[i]);
        memset(id, 0, sizeof(*id));
        id->unresolved = why;
    }
    return id;
}
