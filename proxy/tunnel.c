/*
 * tunnel.c - CONNECT host:port.
 *
 * Decide, dial, and only then say "200 Connection Established": a client
 * whose destination cannot be reached gets its 4xx/5xx, never a 200
 * followed by a silent close.  Bytes the client sent right behind its
 * CONNECT head (a TLS ClientHello sent optimistically) were read with the
 * head; they go upstream before anything else.
 */
#include "proxy.h"

#include <string.h>
#include <unistd.h>

void tunnel_serve(struct conn *c, const struct http_msg *m)
{
    struct log_fields f = LOG_FIELDS_INIT;
    struct host h;
    uint16_t port;
    const char *why;
    f.event = "connect";
    f.action = "deny";
    if (host_port_parse(m->target, m->target_len, 0, &h, &port, &why) != 0)
        return conn_fail(c, &f, &ERR_BAD_REQUEST, why);
    f.host = h.name;
    f.port = port;
    if (local_host(&h)) /* egressd itself: never a tunnel, whatever a rule says */
        return conn_fail(c, &f, &ERR_BAD_REQUEST,
                         LOCAL_HOST " answers plain http:// only (GET http://" LOCAL_HOST
                                    "/denials)");
    if (m->framing != BODY_NONE && !(m->framing == BODY_LENGTH && m->content_length == 0))
        return conn_fail(c, &f, &ERR_BAD_REQUEST, "CONNECT request with a body");

    struct policy_decision d;
    conn_decide(c, &h, port, &d, &f);
    f.rule = d.rule;
    f.reason = d.reason;
    if (d.action == ACTION_DENY)
        return conn_deny(c, &f, &h, port, &d);
    if (d.action == ACTION_INTERCEPT) {
        bufconn_consume(&c->in, m->head_len);
        return intercept_tunnel(c, &h, &f);
    }

    f.action =
        policy_decision_name(&d); /* the decision; a failed dial below says why it did not work */
    struct dial_result r;
    dial(c, &h, port, &d, &r);
    if (r.err != NULL) {
        f.reason = r.err->code;
        f.rule = r.rule ? r.rule : f.rule;
        return conn_fail(c, &f, r.err, r.detail);
    }
    bufconn_consume(&c->in, m->head_len);
    if (d.action == ACTION_INSPECT)
        return inspect_tunnel(c, &h, port, &d, &f, r.fd);
    int io_ms = (int)c->set->idle_timeout_ms;
    int64_t deadline = now_ms() + c->set->header_timeout_ms;
    size_t early = c->in.len; /* bytes sent behind the head: they go first */
    if ((early > 0 && fd_write_all(r.fd, c->in.buf, early, deadline) != IO_OK) ||
        fd_write_all(c->fd, CONNECT_ESTABLISHED, sizeof(CONNECT_ESTABLISHED) - 1, deadline) !=
            IO_OK) {
        close(r.fd);
        f.reason = "client or upstream went away before the tunnel opened";
        log_event(LOGL_INFO, &f);
        return;
    }
    f.action = policy_decision_name(&d);
    f.src = c->src;
    f.status = 200;
    log_event(LOGL_INFO, &f);
    conn_drop_buffer(c); /* the early bytes went up: from here on bytes are relayed */

    struct relay_stats st;
    struct conn_recheck rc = {c, &h, port, r.fd, c->generation, ACTION_ALLOW};
    struct relay_check check = {conn_still_allowed, &rc};
    metrics_tunnel(1);
    relay(c->fd, r.fd, io_ms, &check, c->pipes, &st);
    metrics_tunnel(-1);
    c->closed_cleanly = strcmp(st.end, "closed") == 0;
    metrics_bytes(st.up + early, st.down);
    close(r.fd);
    f.event = "close";
    f.reason = st.end;
    f.bytes_up = (long long)(st.up + early);
    f.bytes_down = (long long)st.down;
    f.duration_ms = now_ms() - c->t0;
    log_event(LOGL_INFO, &f);
}
