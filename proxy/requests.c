/*
 * requests.c - a client connection's requests, one after the other.
 *
 * Each head is read within header_timeout, parsed strictly, and handed to
 * the CONNECT (tunnel.c) or absolute-form (forward.c) path; whatever
 * happens, the client gets an answer in egressd's JSON error shape and one
 * log line.  Every request, the first one too, is decided under the
 * configuration in force when its head is in; a kept-alive connection
 * that sends nothing more within header_timeout is closed quietly: an idle
 * client, not a slow one.
 */
#include "proxy.h"

#include <string.h>
#include <strings.h>

static void head_failed(struct conn *c, enum head_status st)
{
    struct log_fields f = LOG_FIELDS_INIT;
    f.event = "connect";
    f.action = "deny";
    switch (st) {
    case HEAD_TIMEOUT:
        conn_fail(c, &f, &ERR_REQUEST_TIMEOUT, "request head not received in time");
        break;
    case HEAD_TOO_LARGE:
        conn_fail(c, &f, &ERR_HEADERS_TOO_LARGE, "request head larger than 8 KiB");
        break;
    case HEAD_PARTIAL_EOF: /* it may still read: say why nothing happened */
        conn_fail(c, &f, &ERR_BAD_REQUEST, "the request head ended before its blank line");
        break;
    default:
        break; /* connected and left, or reset: nothing to say to anybody */
    }
}

static bool target_has_scheme(const struct http_msg *m, const char *scheme)
{
    size_t n = strlen(scheme);
    return m->target_len >= n && strncasecmp(m->target, scheme, n) == 0;
}

/* One request; true when the connection may carry another. */
static bool dispatch(struct conn *c, struct http_msg *m)
{
    struct log_fields f = LOG_FIELDS_INIT;
    f.event = "forward";
    f.action = "deny";
    if (http_method_is(m, "CONNECT"))
        tunnel_serve(c, m);
    else if (target_has_scheme(m, "http://"))
        return forward_serve(c, m);
    else if (target_has_scheme(m, "https://"))
        conn_fail(c, &f, &ERR_USE_CONNECT,
                  "https:// URLs go through CONNECT; set HTTPS_PROXY, not an absolute https URL");
    else
        conn_fail(c, &f, &ERR_BAD_REQUEST,
                  "egressd is a proxy: send CONNECT host:port or an absolute http:// URL");
    return false;
}

/* Before each request, the first included: a reload's rules, and no
 * upstream connection whose address was checked under the old ones. */
static void follow_reload(struct conn *c)
{
    unsigned gen = c->generation;
    conn_follow_reload(c);
    if (c->generation != gen)
        forward_release(c);
}

/* Read and answer requests until one ends the connection; why it ended. */
static const char *serve_requests(struct conn *c)
{
    for (bool first = true;; first = false) {
        enum head_status st = bufconn_read_head(&c->in, now_ms() + c->set->header_timeout_ms);
        if (st != HEAD_OK) {
            if (first || c->in.len > 0)
                head_failed(c, st);
            return first ? "no request" : "idle between requests";
        }
        if (!first)
            c->t0 = now_ms();
        follow_reload(c); /* the first too: a reload may have come since the accept */
        struct http_msg m;
        const char *why = NULL;
        if (http_parse_request(c->in.buf, c->in.len, &m, &why) != HTTP_OK) {
            struct log_fields f = LOG_FIELDS_INIT;
            f.event = "connect";
            f.action = "deny";
            conn_fail(c, &f, &ERR_BAD_REQUEST, why);
            return "malformed request";
        }
        if (!dispatch(c, &m))
            return "request handled";
    }
}

void serve_connection(struct runtime *rt, int fd, const struct sockaddr_storage *peer,
                      struct relay_pipes *pipes)
{
    struct conn *c = conn_open(rt, fd, peer, pipes);
    if (c == NULL)
        return;
    const char *why = serve_requests(c);
    forward_release(c);
    conn_close(c, why);
}
