/*
 * relay.c - the byte pump of a tunnel.
 *
 * One thread moves both directions, so it never blocks on one: it polls
 * both sockets and moves bytes with splice(2) through a pipe per direction
 * (kernel to kernel, no copy through user space).  The pipes belong to the
 * worker thread and serve its tunnels one after the other (made when a
 * direction first carries data), so a busy worker's next tunnel costs no
 * pipe syscalls; a tunnel that goes quiet for a second gives them back, so
 * that thousands of idle tunnels hold two descriptors each, not six.  A
 * direction copies its first PIPE_AFTER bytes through a small buffer and
 * takes a pipe only when more come: most tunnels carry a few requests, and
 * a burst of thousands of them then costs no pipes.  When
 * no pipe can be had, or descriptors are crowded (three quarters of the
 * limit in use: they are kept for sockets, two a tunnel, rather than pipes,
 * four), bytes are copied through a small buffer instead, for the rest of
 * that tunnel: a tunnel never dies, and a new one is never refused, for
 * want of a pipe.
 * When one side stops sending (EOF), the other side's write half is shut
 * once everything before the EOF has been delivered, and the tunnel lives
 * on until both directions have ended: half-closed clients get their whole
 * response.  No byte either way for idle_timeout ends it, and so does a
 * reload whose policy no longer allows the destination (checked at least
 * once a second).
 */
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#define SPLICE_CHUNK  (1 << 20)
#define RECHECK_MS    1000 /* a reload that forbids a tunnel closes it within this */
#define PUMP_ROUNDS   16
#define PUMP_MORE_MIN (16 * 1024)
#define SPILL_SIZE    (8 * 1024)  /* the copying fallback's buffer, per direction */
#define PIPE_AFTER    (64 * 1024) /* bytes a direction copies before it takes a pipe */

struct direction {
    int src, dst;
    struct direction *other;
    int *pipe;      /* the worker's pipe for this direction: kept between tunnels */
    size_t in_pipe; /* bytes read from src, not yet written to dst */
    char *spill;    /* without a pipe: a buffer, held only while it holds bytes */
    size_t spill_off, spill_len;
    bool copying; /* a pipe was refused (crowded, or none to be had): copy to the end */
    bool eof, shut;
    uint64_t bytes;
};

/* Linux hands out the lowest free descriptor, so a pipe numbered in the
 * last quarter of the limit says that three quarters are in use. */
static bool crowded(int fd)
{
    struct rlimit rl;
    return getrlimit(RLIMIT_NOFILE, &rl) != 0 ||
           (rl.rlim_cur != RLIM_INFINITY && (rlim_t)fd >= rl.rlim_cur / 4 * 3);
}

/* The worker's pipe for this direction, made if need be; false: copy. */
static bool have_pipe(struct direction *d)
{
    if (d->pipe[0] >= 0)
        return true;
    if (d->copying || d->bytes < PIPE_AFTER)
        return false;
    if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) == 0 && !crowded(d->pipe[1]))
        return true;
    if (d->pipe[0] >= 0) {
        close(d->pipe[0]);
        close(d->pipe[1]);
        d->pipe[0] = d->pipe[1] = -1;
    }
    d->copying = true;
    return false;
}

/* Bytes read from src and not yet written to dst, in the pipe or spill. */
static size_t held(const struct direction *d)
{
    return d->in_pipe + d->spill_len;
}

/* Only bytes in flight hold a copying buffer: ten thousand idle tunnels
 * hold none. */
static void release_spill(struct direction *d)
{
    free(d->spill);
    d->spill = NULL;
}

/* Read from src into the pipe, or into spill when no pipe can be had; the
 * count (0 when nothing came), or -1 on a reset. */
static ssize_t take_in(struct direction *d)
{
    ssize_t n;
    if (d->spill_len > 0) {
        return 0; /* copying: one buffer at a time */
    } else if (have_pipe(d)) {
        n = splice(d->src, NULL, d->pipe[1], NULL, SPLICE_CHUNK, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0)
            d->in_pipe += (size_t)n;
    } else if (d->spill == NULL && (d->spill = malloc(SPILL_SIZE)) == NULL) {
        return -1; /* neither a pipe nor memory: this tunnel cannot go on */
    } else {
        n = recv(d->src, d->spill, SPILL_SIZE, MSG_DONTWAIT);
        if (n > 0) {
            d->spill_off = 0, d->spill_len = (size_t)n;
        } else {
            int e = errno;
            release_spill(d); /* nothing came: no buffer is held for it */
            errno = e;
        }
    }
    if (n == 0)
        d->eof = true;
    return n < 0 ? (errno == EAGAIN || errno == EINTR ? 0 : -1) : n;
}

/* Write what is held to dst; -1 on a reset. */
static int give_out(struct direction *d, bool *moved)
{
    ssize_t n = 0;
    if (d->in_pipe > 0) {
        n = splice(d->pipe[0], NULL, d->dst, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0)
            d->in_pipe -= (size_t)n;
    } else if (d->spill_len > 0) {
        n = send(d->dst, d->spill + d->spill_off, d->spill_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0)
            d->spill_off += (size_t)n, d->spill_len -= (size_t)n;
        if (d->spill_len == 0)
            release_spill(d);
    }
    if (n > 0) {
        d->bytes += (uint64_t)n;
        *moved = true;
    }
    return n < 0 && errno != EAGAIN && errno != EINTR ? -1 : 0;
}

/* Move what can be moved now; -1 ends the tunnel (reset, broken pipe).
 * *more: the read was large enough that the socket may hold more. */
static int pump_once(struct direction *d, short src_ready, bool *moved, bool *more)
{
    *more = false;
    if ((src_ready & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) && !d->eof) {
        ssize_t n = take_in(d);
        if (n < 0)
            return -1;
        if (n > 0) {
            *moved = true;
            /* a peer's EOF behind the bytes: take it now, not after a poll */
            *more = n >= PUMP_MORE_MIN || (src_ready & (POLLRDHUP | POLLHUP));
        }
    }
    /* a non-blocking splice just tries: poll only said when to wake */
    if (give_out(d, moved) != 0)
        return -1;
    if (d->eof && held(d) == 0 && !d->shut) {
        /* the last direction to end needs no shutdown: both peers have
         * sent their EOF, nothing is left unread, and the close right after
         * sends the FIN */
        if (!d->other->shut)
            shutdown(d->dst, SHUT_WR);
        d->shut = true;
    }
    if (held(d) > 0)
        *more = false; /* dst is full: wait for POLLOUT */
    return 0;
}

/* While bytes flow, keep moving them without going back to poll (a bulk
 * transfer would otherwise pay a poll per pipe-full); bounded, so that the
 * other direction gets its turn.  A small read nearly always emptied the
 * socket: trying again would cost a splice that says EAGAIN (one per
 * message in request/response traffic), so only large reads, or reads
 * with the peer's EOF already announced, go round. */
static int pump(struct direction *d, short src_ready, bool *moved)
{
    bool more = true;
    for (int round = 0; round < PUMP_ROUNDS && more; round++) {
        if (pump_once(d, src_ready, moved, &more) != 0)
            return -1;
    }
    return 0;
}

static short wanted(const struct direction *d, int fd)
{
    short ev = 0;
    if (fd == d->src && !d->eof)
        ev |= POLLIN | POLLRDHUP;
    if (fd == d->dst && held(d) > 0)
        ev |= POLLOUT;
    return ev;
}

void relay_pipes_close(struct relay_pipes *rp)
{
    for (int d = 0; d < 2; d++) {
        for (int i = 0; i < 2; i++) {
            if (rp->fd[d][i] >= 0)
                close(rp->fd[d][i]);
            rp->fd[d][i] = -1;
        }
    }
}

void relay(int client, int upstream, int idle_ms, const struct relay_check *check,
           struct relay_pipes *rp, struct relay_stats *st)
{
    struct direction up = {.src = client, .dst = upstream, .pipe = rp->fd[0]};
    struct direction down = {.src = upstream, .dst = client, .pipe = rp->fd[1], .other = &up};
    up.other = &down;
    int64_t last = now_ms();
    st->end = "closed";
    while (!(up.shut && down.shut)) {
        struct pollfd p[2] = {{client, wanted(&up, client) | wanted(&down, client), 0},
                              {upstream, wanted(&up, upstream) | wanted(&down, upstream), 0}};
        int left = (int)(last + idle_ms - now_ms());
        int rc = left > 0 ? poll(p, 2, left < RECHECK_MS ? left : RECHECK_MS) : 0;
        if (check != NULL && !check->still_allowed(check->ctx)) {
            st->end = "closed by reload: no longer allowed";
            break;
        }
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0 || (rc == 0 && now_ms() - last >= idle_ms)) {
            st->end = rc == 0 ? "idle timeout" : "poll failed";
            break;
        }
        if (rc == 0) { /* quiet for a while: the pipes go back */
            if (held(&up) == 0 && held(&down) == 0)
                relay_pipes_close(rp);
            continue;
        }
        if ((p[0].revents | p[1].revents) & POLLERR) {
            st->end = "connection reset";
            break;
        }
        bool moved = false;
        if (pump(&up, p[0].revents, &moved) != 0 || pump(&down, p[1].revents, &moved) != 0) {
            st->end = errno == ECONNRESET ? "connection reset" : "connection error";
            break;
        }
        if (moved)
            last = now_ms();
    }
    struct direction *dirs[2] = {&up, &down};
    for (int d = 0; d < 2; d++) { /* a pipe with bytes left in it is not reused */
        if (dirs[d]->in_pipe > 0) {
            close(dirs[d]->pipe[0]);
            close(dirs[d]->pipe[1]);
            dirs[d]->pipe[0] = dirs[d]->pipe[1] = -1;
        }
    }
    free(up.spill);
    free(down.spill);
    st->up = up.bytes;
    st->down = down.bytes;
}

/* ---- between streams ------------------------------------------------------------- */

#define STREAM_RELAY_BUF (16 * 1024)

/* One side's bytes to the other, if any are there now: -1 when the relay
 * ends (EOF, reset, a write that does not finish within idle_ms). */
static int stream_move(struct stream *from, struct stream *to, char *buf, int idle_ms,
                       uint64_t *moved)
{
    size_t got;
    enum io_result r = stream_read(from, buf, STREAM_RELAY_BUF, &got, now_ms() + idle_ms);
    if (r != IO_OK)
        return -1;
    if (stream_write_all(to, buf, got, now_ms() + idle_ms) != IO_OK)
        return -1;
    *moved += got;
    return 0;
}

void relay_streams(struct stream *client, struct stream *upstream, int idle_ms,
                   const struct relay_check *check, struct relay_stats *st)
{
    char *buf = malloc(STREAM_RELAY_BUF);
    int64_t last = now_ms();
    st->up = st->down = 0;
    st->end = buf ? "closed" : "out of memory";
    while (buf != NULL) {
        bool ready_c = stream_pending(client) > 0, ready_u = stream_pending(upstream) > 0;
        struct pollfd p[2] = {{stream_fd(client), POLLIN, 0}, {stream_fd(upstream), POLLIN, 0}};
        int left = (int)(last + idle_ms - now_ms());
        int rc = ready_c || ready_u ? 0
                 : left > 0         ? poll(p, 2, left < RECHECK_MS ? left : RECHECK_MS)
                                    : 0;
        if (check != NULL && !check->still_allowed(check->ctx)) {
            st->end = "closed by reload: no longer allowed";
            break;
        }
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0 || (rc == 0 && !ready_c && !ready_u && now_ms() - last >= idle_ms)) {
            st->end = rc == 0 ? "idle timeout" : "poll failed";
            break;
        }
        if (((ready_c || p[0].revents) &&
             stream_move(client, upstream, buf, idle_ms, &st->up) != 0) ||
            ((ready_u || p[1].revents) &&
             stream_move(upstream, client, buf, idle_ms, &st->down) != 0))
            break; /* either side's end ends both: an upgraded connection has no half-close */
        if (ready_c || ready_u || p[0].revents || p[1].revents)
            last = now_ms();
    }
    free(buf);
}
