/*
 * conn.c - a stream and the bytes read from it that no message has used
 * yet: what every reader of heads and bodies works on.  Bytes a client
 * sends behind a head (the next pipelined request, a body's start) stay
 * here for whoever reads next, so nothing is read twice or lost.
 */
#include "http.h"

#include <string.h>

void bufconn_init(struct bufconn *b, struct stream *s, char *buf, size_t cap)
{
    *b = (struct bufconn){s, buf, cap, 0};
}

void bufconn_consume(struct bufconn *b, size_t n)
{
    memmove(b->buf, b->buf + n, b->len - n);
    b->len -= n;
}

enum head_status bufconn_read_head(struct bufconn *b, int64_t deadline)
{
    while (http_head_length(b->buf, b->len) == 0) {
        if (b->len >= b->cap)
            return HEAD_TOO_LARGE;
        size_t got;
        switch (stream_read(b->s, b->buf + b->len, b->cap - b->len, &got, deadline)) {
        case IO_OK:
            b->len += got;
            break;
        case IO_EOF:
            return b->len ? HEAD_PARTIAL_EOF : HEAD_EOF;
        case IO_TIMEOUT:
            return HEAD_TIMEOUT;
        case IO_ERROR:
            return HEAD_ERROR;
        }
    }
    return HEAD_OK;
}

enum response_status bufconn_read_response(struct bufconn *b, bool for_head, struct http_msg *r,
                                           int64_t deadline, const char **why)
{
    for (;;) {
        switch (bufconn_read_head(b, deadline)) {
        case HEAD_OK:
            break;
        case HEAD_EOF:
        case HEAD_ERROR:
            *why = "the upstream closed the connection without a response";
            return RESPONSE_CLOSED;
        case HEAD_PARTIAL_EOF:
            *why = "the upstream closed the connection in the middle of its response head";
            return RESPONSE_MALFORMED;
        case HEAD_TIMEOUT:
            *why = "the upstream sent no response in time";
            return RESPONSE_TIMEOUT;
        case HEAD_TOO_LARGE:
            *why = "the upstream's response head is too large";
            return RESPONSE_TOO_LARGE;
        }
        if (http_parse_response(b->buf, b->len, for_head, r, why) != HTTP_OK)
            return RESPONSE_MALFORMED;
        if (r->status >= 200 || r->status == 101)
            return RESPONSE_OK;
        bufconn_consume(b, r->head_len); /* 1xx: informational, egressd's own business */
    }
}
