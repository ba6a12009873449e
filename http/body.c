/*
 * body.c - the body pump: one body, framed as its message says, from a
 * source to a sink.
 *
 * Every body egressd moves goes through here: a forwarded request's and
 * its response, an intercepted request's (kept whole for routing) and the
 * backend's answer, an inspected exchange's.  The framing is followed, never
 * guessed: Content-Length counts bytes, chunked is followed by the strict
 * scanner, a close-delimited response ends with the connection, and the
 * pump never reads into the next message.  The sink gets either the bytes
 * as framed (a proxy relays them unchanged) or only the data (for a body
 * kept whole, or re-framed toward the client).  Limits are checked before a
 * byte that would pass them is handed on; waits end at the idle limit, or
 * at the whole body's deadline when there is one.
 */
#include "http.h"

#include <stdlib.h>
#include <string.h>

struct pump {
    const struct body_limits *lim;
    const struct body_sink *sink;
    uint64_t data;      /* data bytes seen so far */
    uint64_t delivered; /* bytes the sink took */
    bool too_large, sink_failed;
};

/* Count data bytes against the limit; false when they pass it. */
static bool count(struct pump *p, size_t n)
{
    p->data += n;
    if (p->lim->max != 0 && p->data > p->lim->max)
        p->too_large = true;
    return !p->too_large;
}

static bool put(struct pump *p, const char *b, size_t n)
{
    if (n > 0 && p->sink->put(p->sink->ctx, b, n) != 0)
        p->sink_failed = true;
    else
        p->delivered += n;
    return !p->sink_failed;
}

/* chunked_decode's callback: each piece of chunk data. */
static int on_data(void *ctx, const char *b, size_t n)
{
    struct pump *p = ctx;
    if (!count(p, n))
        return -1;
    return p->lim->decode && !put(p, b, n) ? -1 : 0;
}

/* More bytes into an empty buffer, within the idle limit and the deadline. */
static enum io_result refill(struct bufconn *src, const struct body_limits *lim)
{
    int64_t until = now_ms() + lim->idle_ms;
    if (lim->deadline != 0 && lim->deadline < until)
        until = lim->deadline;
    return stream_read(src->s, src->buf, src->cap, &src->len, until);
}

/* The bytes of the buffer that belong to the body, handed on; how many, or
 * -1 when the pump must stop (*r says why). */
static ssize_t step(struct pump *p, struct bufconn *src, enum http_framing framing,
                    uint64_t *remaining, struct chunked *ch, bool *done, enum pump_result *r,
                    const char **why)
{
    size_t take = src->len;
    if (framing == BODY_CHUNKED) {
        ssize_t n = chunked_decode(ch, src->buf, src->len, done, why, on_data, p);
        if (n < 0) {
            *r = p->too_large ? PUMP_TOO_LARGE : p->sink_failed ? PUMP_SINK_FAILED : PUMP_MALFORMED;
            return -1;
        }
        take = (size_t)n;
    } else {
        if (framing == BODY_LENGTH && take > *remaining)
            take = (size_t)*remaining;
        *remaining -= framing == BODY_LENGTH ? take : 0;
        *done = framing == BODY_LENGTH && *remaining == 0;
        if (!count(p, take)) {
            *r = PUMP_TOO_LARGE;
            return -1;
        }
        if (p->lim->decode && !put(p, src->buf, take)) {
            *r = PUMP_SINK_FAILED;
            return -1;
        }
    }
    if (!p->lim->decode && !put(p, src->buf, take)) {
        *r = PUMP_SINK_FAILED;
        return -1;
    }
    return (ssize_t)take;
}

static enum pump_result read_failed(enum io_result io, enum http_framing framing, const char **why)
{
    if (io == IO_EOF && framing == BODY_UNTIL_CLOSE)
        return PUMP_DONE;
    *why = io == IO_EOF       ? "the body ended early"
           : io == IO_TIMEOUT ? "the body did not come in time"
                              : "reading the body failed";
    return io == IO_EOF ? PUMP_CUT : io == IO_TIMEOUT ? PUMP_TIMEOUT : PUMP_READ_ERROR;
}

enum pump_result http_pump_body(struct bufconn *src, enum http_framing framing, uint64_t length,
                                const struct body_limits *lim, const struct body_sink *sink,
                                uint64_t *moved, const char **why)
{
    struct pump p = {lim, sink, 0, 0, false, false};
    struct chunked ch;
    uint64_t remaining = length;
    bool done = framing == BODY_NONE || (framing == BODY_LENGTH && length == 0);
    enum pump_result r = PUMP_DONE;
    if (framing == BODY_LENGTH && lim->max != 0 && length > lim->max) {
        *why = "the body is larger than allowed";
        done = true, r = PUMP_TOO_LARGE;
    }
    chunked_init(&ch, lim->max_chunks);
    while (!done && r == PUMP_DONE) {
        enum io_result io = src->len > 0 ? IO_OK : refill(src, lim);
        if (io != IO_OK) {
            r = read_failed(io, framing, why);
            break;
        }
        ssize_t used = step(&p, src, framing, &remaining, &ch, &done, &r, why);
        if (used >= 0)
            bufconn_consume(src, (size_t)used);
        else if (r == PUMP_TOO_LARGE)
            *why = "the body is larger than allowed";
        else if (r == PUMP_SINK_FAILED)
            *why = "the receiving side stopped taking the body";
    }
    *moved = p.delivered;
    return r;
}

int stream_sink_put(void *ctx, const char *p, size_t n)
{
    struct stream_sink *ss = ctx;
    return stream_write_all(ss->s, p, n, now_ms() + ss->idle_ms) == IO_OK ? 0 : -1;
}

int body_buffer_put(void *ctx, const char *p, size_t n)
{
    struct body_buffer *b = ctx;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->p, cap);
        if (grown == NULL)
            return -1;
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

void body_buffer_free(struct body_buffer *b)
{
    free(b->p);
    *b = (struct body_buffer){0};
}
