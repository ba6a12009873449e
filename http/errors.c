/*
 * errors.c - the answers egressd writes itself (DESIGN section 5).
 *
 * Every error is JSON with a stable machine-readable code, repeated in the
 * X-Egressd-Error header so that a client that hides bodies still shows
 * why.  One writer frames them all: section 5's shape written here, the
 * inference APIs' shapes (built by inference/) and the admin endpoint's
 * plain answers.  After an error the connection closes unless its caller
 * read the request whole and keeps it.  The status line's reason phrase
 * says what happened and what to do (phrase.c); the body adds the hint,
 * an [allow] section that would admit a denied request.
 */
#include "http.h"

const struct http_error ERR_BAD_REQUEST = {400, "bad_request"};
const struct http_error ERR_HEADERS_TOO_LARGE = {431, "headers_too_large"};
const struct http_error ERR_REQUEST_TIMEOUT = {408, "request_timeout"};
const struct http_error ERR_POLICY_DENIED = {403, "policy_denied"};
const struct http_error ERR_SSRF_DENIED = {403, "ssrf_denied"};
const struct http_error ERR_DNS_FAILURE = {502, "dns_failure"};
const struct http_error ERR_UPSTREAM_UNREACHABLE = {502, "upstream_unreachable"};
const struct http_error ERR_UPSTREAM_TIMEOUT = {504, "upstream_timeout"};
const struct http_error ERR_OVERLOADED = {503, "overloaded"};
const struct http_error ERR_USE_CONNECT = {400, "use_connect"};
const struct http_error ERR_UPSTREAM_ERROR = {502, "upstream_error"};
const struct http_error ERR_MISDIRECTED = {421, "misdirected_request"};
const struct http_error ERR_UNSUPPORTED_PROTOCOL = {403, "unsupported_protocol"};
const struct http_error ERR_UPSTREAM_TLS = {502, "upstream_tls"};
const struct http_error ERR_SECRET_NOT_ALLOWED = {403, "secret_not_allowed"};
const struct http_error ERR_BODY_TOO_LARGE = {413, "body_too_large"};
const struct http_error ERR_NOT_FOUND = {404, "not_found"};

void http_put_answer(struct sbuf *out, int status, const char *phrase, const char *code,
                     const char *ctype, const char *extra, const char *body, size_t blen, bool keep)
{
    sbuf_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n", status,
                phrase ? phrase : http_reason_phrase(status), ctype, blen);
    if (code != NULL)
        sbuf_printf(out, "X-Egressd-Error: %s\r\n", code);
    if (extra != NULL)
        sbuf_str(out, extra);
    sbuf_str(out, keep ? "\r\n" : "Connection: close\r\n\r\n");
    sbuf_add(out, body, blen);
}

void http_put_error_json(struct sbuf *out, const struct http_error_info *info)
{
    sbuf_printf(out, "{\"error\":\"%s\"", info->e->code);
    json_put_member(out, "detail", info->detail ? info->detail : "");
    json_put_member(out, "rule", info->rule);
    json_put_member(out, "method", info->method);
    json_put_member(out, "path", info->path);
    json_put_member(out, "message", info->message);
    json_put_member(out, "hint", info->hint);
    sbuf_str(out, "}\n");
}

enum io_result http_send_error_info(struct stream *s, const struct http_error_info *info,
                                    int64_t deadline)
{
    char body[4096], out[4096 + 512], phrase[HTTP_PHRASE_MAX + 1];
    struct sbuf b, o;
    sbuf_init(&b, body, sizeof(body));
    http_put_error_json(&b, info);
    if (b.cut) { /* never a cut JSON body: the code alone */
        struct http_error_info bare = {.e = info->e, .keep = info->keep};
        sbuf_init(&b, body, sizeof(body));
        http_put_error_json(&b, &bare);
    }
    http_error_phrase(phrase, sizeof(phrase), info);
    sbuf_init(&o, out, sizeof(out));
    http_put_answer(&o, info->e->status, phrase, info->e->code, "application/json", NULL, b.buf,
                    b.len, info->keep);
    return o.cut ? IO_ERROR : stream_write_all(s, o.buf, o.len, deadline); /* never a cut answer */
}

enum io_result http_send_error(struct stream *s, const struct http_error *e, const char *detail,
                               const char *rule, int64_t deadline)
{
    struct http_error_info info = {.e = e, .detail = detail, .rule = rule};
    return http_send_error_info(s, &info, deadline);
}
