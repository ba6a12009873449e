/*
 * exchange.c - one HTTP exchange relayed between a client and an upstream
 * connection: the request's head (built by the caller) and its body up,
 * the response's head and its body down.  The forward path and inspected
 * connections both relay through here, and every body through http/'s
 * pump, framed as egressd parsed it and never re-framed, so that egressd
 * knows where each message ends and reads none of them two ways.  The one
 * exception is a body a secret is swapped into (DESIGN section 11): read
 * whole, bounded, decoded, rewritten, and sent with its new
 * Content-Length.
 *
 * `Expect: 100-continue` is egressd's to answer (it streams the body as it
 * comes, so it never waits on the origin's 100); 1xx answers from the
 * origin are informational and go no further; a 101 is only accepted for a
 * WebSocket upgrade the client asked for, when it answers the client's
 * key (http/websocket.c), and then the caller relays raw.
 */
#include "proxy.h"

#include <string.h>

#define SWAPPED_BODY_MAX (1024 * 1024) /* a body with its secrets swapped in */

void exchange_begin(struct exchange *x, struct bufconn *client, struct bufconn *upstream,
                    const struct http_msg *m, int io_ms)
{
    const struct http_header *up = http_header_find(m, "upgrade");
    *x = (struct exchange){.client = client,
                           .upstream = upstream,
                           .io_ms = io_ms,
                           .framing = m->framing,
                           .length = m->content_length,
                           .has_length = m->has_length,
                           .expect_continue = m->expect_continue,
                           .is_head = http_method_is(m, "HEAD"),
                           .client_close = m->conn_close,
                           .minor = m->minor};
    x->websocket = up != NULL && http_list_has(up->value, up->value_len, "websocket") &&
                   http_websocket_key(m, x->ws_key);
}

/* The client's failures while its body moves come before any response. */
static enum send_result body_result(enum pump_result pr)
{
    switch (pr) {
    case PUMP_DONE:
        return SENT;
    case PUMP_MALFORMED:
    case PUMP_CUT:
    case PUMP_TOO_LARGE:
        return CLIENT_BAD;
    case PUMP_TIMEOUT:
        return CLIENT_SLOW;
    case PUMP_READ_ERROR:
        return CLIENT_GONE;
    case PUMP_SINK_FAILED:
        break;
    }
    return UPSTREAM_FAILED;
}

void exchange_put_head(struct sbuf *o, const struct http_msg *m, const struct outgoing_head *oh)
{
    bool v6 = oh->h->kind == HOST_IPV6;
    sbuf_add(o, m->method, m->method_len);
    sbuf_str(o, oh->target_len == 0 || oh->target[0] != '/' ? " /" : " ");
    http_put_target(o, oh->target, oh->target_len, oh->swaps);
    sbuf_printf(o, " HTTP/1.%d\r\nHost: %s%s%s", m->minor, v6 ? "[" : "", oh->h->name,
                v6 ? "]" : "");
    if (oh->port != oh->default_port)
        sbuf_printf(o, ":%u", oh->port);
    sbuf_str(o, "\r\n");
    http_put_fields(o, m, oh->swaps);
}

void exchange_end_head(const struct exchange *x, struct sbuf *o)
{
    http_put_framing(o, x->framing, x->length, x->has_length || x->body_taken);
    if (x->websocket)
        sbuf_str(o, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    sbuf_str(o, VIA_HEADER "\r\n");
}

/* 100 Continue, when the client waits for it before sending its body. */
static enum send_result answer_continue(struct exchange *x)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (!x->expect_continue || x->minor != 1)
        return SENT;
    x->expect_continue = false;
    if (stream_write_all(x->client->s, cont, sizeof(cont) - 1, now_ms() + x->io_ms) != IO_OK) {
        x->why = "client went away";
        return CLIENT_GONE;
    }
    return SENT;
}

enum send_result exchange_take_body(struct exchange *x, const struct http_swaps *sw, size_t max,
                                    int64_t deadline, uint64_t *swapped)
{
    struct body_buffer raw = {0};
    struct body_limits lim = {
        .max = max, .idle_ms = x->io_ms, .deadline = deadline, .decode = true};
    struct body_sink sink = {body_buffer_put, &raw};
    uint64_t moved;
    *swapped = 0;
    enum send_result rc = answer_continue(x);
    if (rc == SENT) {
        enum pump_result pr =
            http_pump_body(x->client, x->framing, x->length, &lim, &sink, &moved, &x->why);
        rc = pr == PUMP_TOO_LARGE ? CLIENT_TOO_LARGE : body_result(pr);
    }
    if (rc == SENT && http_swap_bytes(raw.p ? raw.p : "", raw.len, sw, &x->body, SWAPPED_BODY_MAX,
                                      swapped) != 0) {
        x->why = "the body with its secrets swapped in is larger than 1 MiB";
        rc = CLIENT_TOO_LARGE;
    }
    body_buffer_free(&raw);
    if (rc == SENT) {
        x->body_taken = true;
        x->framing = BODY_LENGTH;
        x->length = x->body.len;
    }
    return rc;
}

const struct http_error *exchange_client_error(enum send_result rc, const struct http_error *err)
{
    switch (rc) {
    case CLIENT_GONE:
        return NULL;
    case CLIENT_BAD:
        return &ERR_BAD_REQUEST;
    case CLIENT_SLOW:
        return &ERR_REQUEST_TIMEOUT;
    case CLIENT_TOO_LARGE:
        return &ERR_BODY_TOO_LARGE;
    case SENT:
    case UPSTREAM_FAILED:
    case UPSTREAM_STALE:
        break;
    }
    return err ? err : &ERR_UPSTREAM_ERROR;
}

void exchange_end(struct exchange *x, char *head, size_t head_cap)
{
    if (x->secrets_sent && head != NULL)
        explicit_bzero(head, head_cap);
    if (x->body.p != NULL)
        explicit_bzero(x->body.p, x->body.cap); /* it holds secrets */
    body_buffer_free(&x->body);
    x->body_taken = false;
}

enum send_result exchange_send(struct exchange *x, const char *head, size_t len, bool reused)
{
    if (stream_write_all(x->upstream->s, head, len, now_ms() + x->io_ms) != IO_OK) {
        x->why = "upstream closed the connection";
        return reused ? UPSTREAM_STALE : UPSTREAM_FAILED;
    }
    if (x->body_taken) {
        x->up_bytes += x->body.len;
        if (stream_write_all(x->upstream->s, x->body.p, x->body.len, now_ms() + x->io_ms) == IO_OK)
            return SENT;
        x->why = "upstream closed the connection";
        return UPSTREAM_FAILED;
    }
    enum send_result rc = answer_continue(x);
    if (rc != SENT)
        return rc;
    /* a streamed body may take long, but never idle long */
    struct body_limits lim = {.idle_ms = x->io_ms};
    struct stream_sink up = {x->upstream->s, x->io_ms};
    struct body_sink sink = {stream_sink_put, &up};
    return body_result(
        http_pump_body(x->client, x->framing, x->length, &lim, &sink, &x->up_bytes, &x->why));
}

/* "why; the upstream sent ..." with its first bytes printable-escaped. */
static void describe_bytes(const char *why, const char *p, size_t n, char *out, size_t cap)
{
    struct sbuf b;
    sbuf_init(&b, out, cap);
    sbuf_printf(&b, "%s; the upstream sent \"", why);
    for (size_t i = 0; i < n && i < 32; i++) {
        unsigned char ch = (unsigned char)p[i];
        sbuf_printf(&b, ch >= 0x20 && ch < 0x7f && ch != '"' ? "%c" : "\\x%02x", ch);
    }
    sbuf_str(&b, "\"");
}

const struct http_error *exchange_response(struct exchange *x, struct http_msg *r, bool *stale)
{
    struct bufconn *in = x->upstream;
    int64_t deadline = now_ms() + x->io_ms;
    enum response_status st = bufconn_read_response(in, x->is_head, r, deadline, &x->why);
    *stale = st == RESPONSE_CLOSED;
    if (st == RESPONSE_MALFORMED && !x->secrets_sent) { /* an echo would quote a value */
        describe_bytes(x->why, in->buf, in->len, x->detail, sizeof(x->detail));
        x->why = x->detail; /* what the upstream sent, for the log */
    }
    if (st == RESPONSE_OK && r->status == 101 &&
        !(x->websocket && http_websocket_accepted(x->ws_key, r))) {
        x->why = x->websocket ? "upstream's 101 does not answer the WebSocket handshake"
                              : "upstream switched protocols unasked";
        return &ERR_UPSTREAM_ERROR;
    }
    return st == RESPONSE_OK        ? NULL
           : st == RESPONSE_TIMEOUT ? &ERR_UPSTREAM_TIMEOUT
                                    : &ERR_UPSTREAM_ERROR;
}

static void build_response(struct sbuf *o, const char *status_line, size_t sl_len,
                           const struct http_msg *r, bool keep)
{
    sbuf_str(o, "HTTP/1.1");
    sbuf_add(o, status_line + 8, sl_len - 8); /* " 200 OK\r\n": the origin's own words */
    http_put_end_to_end(o, r);
    sbuf_str(o, VIA_HEADER);
    if (r->status == 101)
        sbuf_str(o, "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    else
        sbuf_str(o, keep ? "\r\n" : "Connection: close\r\n\r\n");
}

bool exchange_relay(struct exchange *x, const struct http_msg *r, char *out, size_t cap)
{
    struct bufconn *in = x->upstream;
    struct sbuf o;
    bool keep = x->minor == 1 && !x->client_close && r->framing != BODY_UNTIL_CLOSE;
    const char *lf = memchr(in->buf, '\n', r->head_len);
    x->status = r->status;
    x->upstream_keep = r->minor == 1 && !r->conn_close && r->framing != BODY_UNTIL_CLOSE;
    sbuf_init(&o, out, cap);
    build_response(&o, in->buf, (size_t)(lf + 1 - in->buf), r, keep);
    if (o.cut) { /* OUT_HEAD_MAX leaves room: never the case, and never a cut head */
        x->why = "response head too large to forward";
        x->status = ERR_UPSTREAM_ERROR.status;
        (void)http_send_error(x->client->s, &ERR_UPSTREAM_ERROR, x->why, NULL, now_ms() + x->io_ms);
        return false;
    }
    enum http_framing framing = r->framing;
    uint64_t length = r->content_length;
    bufconn_consume(in, r->head_len); /* r's pointers die here */
    struct body_limits lim = {.idle_ms = x->io_ms};
    struct stream_sink down = {x->client->s, x->io_ms};
    struct body_sink sink = {stream_sink_put, &down};
    if (framing == BODY_LENGTH && length <= in->len && length < o.cap - o.len) {
        /* a small answer read whole with its head: one write (one TLS
         * record), and nothing left for the pump */
        sbuf_add(&o, in->buf, (size_t)length);
        bufconn_consume(in, (size_t)length);
        x->down_bytes += length;
        framing = BODY_NONE;
    }
    if (stream_write_all(x->client->s, o.buf, o.len, now_ms() + x->io_ms) != IO_OK)
        return false;
    if (x->status == 101)
        return true; /* the caller relays both ways from here */
    uint64_t moved = 0;
    enum pump_result pr = http_pump_body(in, framing, length, &lim, &sink, &moved, &x->why);
    x->down_bytes += moved;
    if (pr != PUMP_DONE || in->len > 0) /* the upstream said more than its message */
        return false;
    return keep;
}

/* Bytes read ahead on one side go to the other before the raw relay. */
static bool flush_ahead(struct bufconn *from, struct bufconn *to, int io_ms, uint64_t *n)
{
    if (from->len == 0)
        return true;
    *n += from->len;
    bool ok = stream_write_all(to->s, from->buf, from->len, now_ms() + io_ms) == IO_OK;
    from->len = 0;
    return ok;
}

void exchange_upgraded(struct exchange *x, struct relay_pipes *pipes,
                       const struct relay_check *check, struct relay_stats *st)
{
    uint64_t up = 0, down = 0;
    st->up = st->down = 0;
    st->end = "connection error";
    if (!flush_ahead(x->client, x->upstream, x->io_ms, &up) ||
        !flush_ahead(x->upstream, x->client, x->io_ms, &down))
        return;
    if (!stream_is_tls(x->client->s) && !stream_is_tls(x->upstream->s))
        relay(stream_fd(x->client->s), stream_fd(x->upstream->s), x->io_ms, check, pipes, st);
    else
        relay_streams(x->client->s, x->upstream->s, x->io_ms, check, st);
    st->up += up;
    st->down += down;
}
