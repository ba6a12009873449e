/*
 * local.c - http://egressd.local/, which egressd answers itself: the
 * sandbox's own window on its denials, and its way to ask for access.
 *
 *   GET  /denials    the denial record, as the admin endpoint shows it
 *   POST /requests   an access request (access.c reads it); 201, or 400
 *                    with the reason it was refused
 *
 * A request for egressd.local never reaches the policy and is never
 * dialled, whatever the rules say: the name is egressd's.  Nothing here is
 * allowed by asking; an access request is recorded for the operator, with
 * the caller's pid and program when identity is configured, and logged as
 * one access_request line.  Bodies are read whole and bounded, so that the
 * connection can carry the next request.
 */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ANSWER_MS 2000 /* to write an answer: a peer that will not take it loses it */

bool local_host(const struct host *h)
{
    return h->kind == HOST_NAME && strcmp(h->name, LOCAL_HOST) == 0;
}

/* Is the target's path (its query aside) exactly p? */
static bool path_is(const char *path, size_t len, const char *p)
{
    size_t n = strlen(p);
    return len >= n && memcmp(path, p, n) == 0 && (len == n || path[n] == '?');
}

/* A 2xx with a JSON body; true when the connection goes on. */
static bool answer(struct conn *c, int status, const char *body, size_t len, bool keep)
{
    size_t cap = len + 256;
    char *out = malloc(cap);
    struct sbuf o;
    if (out == NULL)
        return false;
    sbuf_init(&o, out, cap);
    http_put_answer(&o, status, status == 201 ? "Created" : "OK", NULL, "application/json", NULL,
                    body, len, keep);
    bool sent = !o.cut && stream_write_all(c->in.s, o.buf, o.len, now_ms() + ANSWER_MS) == IO_OK;
    keep = keep && sent;
    free(out);
    return keep;
}

/* An error in section 5's shape; true when the connection goes on. */
static bool refuse(struct conn *c, struct log_fields *f, const struct http_error *e,
                   const char *detail, bool keep)
{
    struct http_error_info info = {.e = e, .detail = detail, .keep = keep};
    conn_fail_info(c, f, &info);
    return keep;
}

static bool serve_denials(struct conn *c, bool keep)
{
    size_t len;
    char *json = denials_json(c->rt->denials, &len);
    if (json == NULL)
        return false;
    keep = answer(c, 200, json, len, keep);
    free(json);
    return keep;
}

/* The body of an access request, whole and bounded; false with *why. */
static bool read_request_body(struct conn *c, const struct http_msg *m, struct body_buffer *b,
                              const char **why)
{
    uint64_t moved;
    struct body_limits lim = {.max = ACCESS_BODY_MAX,
                              .max_chunks = 64,
                              .idle_ms = (int)c->set->header_timeout_ms,
                              .deadline = now_ms() + c->set->header_timeout_ms,
                              .decode = true};
    struct body_sink sink = {body_buffer_put, b};
    static const char go_on[] = "HTTP/1.1 100 Continue\r\n\r\n"; /* curl waits for it */
    if (m->expect_continue && m->framing != BODY_NONE &&
        stream_write_all(c->in.s, go_on, sizeof(go_on) - 1, lim.deadline) != IO_OK) {
        *why = "the client went away";
        return false;
    }
    enum pump_result r =
        http_pump_body(&c->in, m->framing, m->content_length, &lim, &sink, &moved, why);
    if (r == PUMP_TOO_LARGE)
        *why = "the request is larger than 4 KiB";
    else if (r != PUMP_DONE && (*why == NULL || r != PUMP_MALFORMED))
        *why = "the request body did not arrive whole";
    return r == PUMP_DONE;
}

static void log_access(struct conn *c, struct log_fields *f, const struct access_request *r,
                       unsigned long long id)
{
    f->event = "access_request";
    f->src = c->src;
    f->host = r->host;
    f->port = r->port;
    f->method = r->method[0] ? r->method : NULL;
    f->path = r->path[0] ? r->path : NULL;
    f->reason = r->reason;
    f->action = NULL;
    f->status = id > 0 ? 201 : 503;
    log_event(LOGL_INFO, f);
    metrics_access_request();
}

static bool serve_request(struct conn *c, struct log_fields *f, const struct http_msg *m, bool keep)
{
    struct body_buffer body = {0};
    struct access_request r;
    const char *why = NULL;
    char err[200], reply[96];
    if (!read_request_body(c, m, &body, &why)) {
        body_buffer_free(&body);
        return refuse(c, f, &ERR_BAD_REQUEST, why, false);
    }
    int rc = access_parse(body.p ? body.p : "", body.len, &r, err, sizeof(err));
    body_buffer_free(&body);
    if (rc != 0)
        return refuse(c, f, &ERR_BAD_REQUEST, err, keep);
    conn_identify(c, f);
    unsigned long long id = access_log_add(c->rt->access, &r, c->src, f->pid, f->binary);
    log_access(c, f, &r, id);
    if (id == 0)
        return refuse(c, f, &ERR_OVERLOADED, "out of memory", false);
    int n = snprintf(reply, sizeof(reply),
                     "{\"id\":%llu,\"status\":\"recorded\",\"allowed\":false}\n", id);
    return answer(c, 201, reply, (size_t)n, keep);
}

bool local_serve(struct conn *c, const struct http_msg *m, const char *path, size_t path_len)
{
    struct log_fields f = LOG_FIELDS_INIT;
    bool keep = m->minor == 1 && !m->conn_close;
    bool denials = http_method_is(m, "GET") && path_is(path, path_len, "/denials");
    bool request = http_method_is(m, "POST") && path_is(path, path_len, "/requests");
    f.event = "forward";
    f.host = LOCAL_HOST;
    f.action = "local";
    bufconn_consume(&c->in, m->head_len); /* m's pointers die here, but for its framing */
    if (request)
        return serve_request(c, &f, m, keep);
    keep = conn_drain_request(c, m);
    if (denials)
        return serve_denials(c, keep);
    return refuse(c, &f, &ERR_NOT_FOUND,
                  LOCAL_HOST " answers GET /denials and POST /requests (JSON: host, port, method, "
                             "path, reason)",
                  keep);
}
