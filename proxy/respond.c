/*
 * respond.c - the responses egressd writes itself (DESIGN section 5).
 *
 * Every one is JSON with a stable machine-readable code, repeated in the
 * X-Egressd-Error header so that a client that hides bodies still shows
 * why, and closes the connection: after an error egressd no longer trusts
 * the framing of what the client might send next.
 */
#include "proxy.h"

#include <stdio.h>

const struct proxy_error ERR_BAD_REQUEST = {400, "bad_request"};
const struct proxy_error ERR_HEADERS_TOO_LARGE = {431, "headers_too_large"};
const struct proxy_error ERR_REQUEST_TIMEOUT = {408, "request_timeout"};
const struct proxy_error ERR_POLICY_DENIED = {403, "policy_denied"};
const struct proxy_error ERR_SSRF_DENIED = {403, "ssrf_denied"};
const struct proxy_error ERR_DNS_FAILURE = {502, "dns_failure"};
const struct proxy_error ERR_UPSTREAM_UNREACHABLE = {502, "upstream_unreachable"};
const struct proxy_error ERR_UPSTREAM_TIMEOUT = {504, "upstream_timeout"};
const struct proxy_error ERR_OVERLOADED = {503, "overloaded"};
const struct proxy_error ERR_USE_CONNECT = {400, "use_connect"};
const struct proxy_error ERR_UPSTREAM_ERROR = {502, "upstream_error"};

#define RESPOND_TIMEOUT_MS                                                                         \
    2000 /* an error reply is small; a peer that will not take it loses it                         \
          */

void respond_error(int fd, const struct proxy_error *e, const char *detail, const char *rule)
{
    char d[512], r[160], body[800], out[1200];
    json_escape(d, sizeof(d), detail ? detail : "");
    int blen;
    if (rule != NULL) {
        json_escape(r, sizeof(r), rule);
        blen = snprintf(body, sizeof(body),
                        "{\"error\":\"%s\",\"detail\":\"%s\",\"rule\":\"%s\"}\n", e->code, d, r);
    } else {
        blen = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"detail\":\"%s\"}\n", e->code, d);
    }
    if (blen < 0 || (size_t)blen >= sizeof(body))
        blen = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", e->code);
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %d\r\n"
                     "Connection: close\r\n"
                     "X-Egressd-Error: %s\r\n"
                     "\r\n%s",
                     e->status, http_reason_phrase(e->status), blen, e->code, body);
    if (n > 0 && (size_t)n < sizeof(out))
        (void)fd_write_all(fd, out, (size_t)n, now_ms() + RESPOND_TIMEOUT_MS); /* we close next */
}
