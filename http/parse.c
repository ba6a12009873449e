/*
 * parse.c - strict HTTP/1.1 head parsing (RFC 9112), and request paths
 * that every server reads the same way.
 *
 * Strict means: CRLF line ends only, no NUL or other control bytes, no
 * obs-fold, no whitespace between a field name and its colon, tokens where
 * the grammar says token, one Content-Length or one "chunked"
 * Transfer-Encoding but never both, one Host.  Anything a lenient parser
 * might read differently is refused, because egressd sits between two
 * parsers and must never disagree with either of them about where a message
 * ends.
 */
#include "http.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

size_t http_head_length(const char *buf, size_t len)
{
    for (const char *p = memchr(buf, '\n', len); p != NULL;
         p = memchr(p + 1, '\n', len - (size_t)(p + 1 - buf))) {
        size_t at = (size_t)(p - buf) + 1;
        if (at < len && buf[at] == '\n')
            return at + 1;
        if (at + 1 < len && buf[at] == '\r' && buf[at + 1] == '\n')
            return at + 2;
        if (at >= len - 1)
            break;
    }
    return 0;
}

static bool is_tchar(unsigned char c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_field_vchar(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* One line without its CRLF; NULL if it ends in a bare LF or holds a CR. */
static const char *line_end(const char *p, const char *end)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    if (lf == NULL || lf == p || lf[-1] != '\r')
        return NULL;
    if (memchr(p, '\r', (size_t)(lf - 1 - p)) != NULL)
        return NULL;
    return lf - 1;
}

static int parse_version(const char *p, const char *end, int *minor)
{
    if (end - p != 8 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1'))
        return -1;
    *minor = p[7] - '0';
    return 0;
}

static enum http_result parse_content_length(struct http_msg *m, const struct http_header *h,
                                             const char **why)
{
    if (m->framing == BODY_LENGTH) {
        *why = "more than one Content-Length";
        return HTTP_BAD;
    }
    if (h->value_len == 0 || h->value_len > 18) {
        *why = "invalid Content-Length";
        return HTTP_BAD;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < h->value_len; i++) {
        if (!isdigit((unsigned char)h->value[i])) {
            *why = "invalid Content-Length";
            return HTTP_BAD;
        }
        v = v * 10 + (uint64_t)(h->value[i] - '0');
    }
    m->content_length = v;
    m->has_length = true;
    m->framing = BODY_LENGTH;
    return HTTP_OK;
}

/* Codings that end with chunked, applied once (RFC 9112 section 6.1): the
 * value is passed on as it is, so chunked twice would make the next hop
 * de-chunk data that is not chunked. */
static bool chunked_last_and_once(const struct http_header *h)
{
    const char *p = h->value, *end = h->value + h->value_len;
    int chunked = 0;
    for (;;) { /* each element, an empty one after a trailing comma too */
        const char *comma = memchr(p, ',', (size_t)(end - p)), *e = comma ? comma : end;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        bool last = t - p == 7 && strncasecmp(p, "chunked", 7) == 0;
        chunked += last;
        if (comma == NULL)
            return last && chunked == 1;
        p = comma + 1;
    }
}

/* Framing headers, seen once each; is_request picks the request rules. */
static enum http_result note_header(struct http_msg *m, const struct http_header *h,
                                    bool is_request, int *hosts, int *te, const char **why)
{
    if (http_name_is(h, "content-length"))
        return parse_content_length(m, h, why);
    if (http_name_is(h, "transfer-encoding")) {
        if ((*te)++ > 0) {
            *why = "more than one Transfer-Encoding";
            return HTTP_BAD;
        }
        bool exact = h->value_len == 7 && strncasecmp(h->value, "chunked", 7) == 0;
        if (is_request ? !exact : !chunked_last_and_once(h)) {
            *why = "unsupported Transfer-Encoding (only chunked)";
            return HTTP_BAD;
        }
        return HTTP_OK;
    }
    if (http_name_is(h, "host"))
        ++*hosts;
    else if (http_name_is(h, "connection"))
        m->conn_close |= http_list_has(h->value, h->value_len, "close");
    else if (http_name_is(h, "expect")) {
        m->expect_continue = h->value_len == 12 && !strncasecmp(h->value, "100-continue", 12);
    }
    return HTTP_OK;
}

static enum http_result parse_field(const char *p, const char *eol, struct http_header *h,
                                    const char **why)
{
    const char *colon = p;
    while (colon < eol && is_tchar((unsigned char)*colon))
        colon++;
    if (colon == p || colon == eol || *colon != ':') {
        *why = (*p == ' ' || *p == '\t') ? "obsolete line folding" : "malformed header field name";
        return HTTP_BAD;
    }
    const char *v = colon + 1, *vend = eol;
    while (v < vend && (*v == ' ' || *v == '\t'))
        v++;
    while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
        vend--;
    for (const char *q = v; q < vend; q++) {
        if (!is_field_vchar((unsigned char)*q)) {
            *why = "control character in header value";
            return HTTP_BAD;
        }
    }
    *h = (struct http_header){p, v, (size_t)(colon - p), (size_t)(vend - v)};
    return HTTP_OK;
}

static enum http_result parse_fields(const char *p, const char *end, struct http_msg *m,
                                     bool is_request, const char **why)
{
    int hosts = 0, te = 0;
    m->n_headers = 0;
    for (;;) {
        const char *eol = line_end(p, end);
        if (eol == NULL) {
            *why = "line not ended by CRLF";
            return HTTP_BAD;
        }
        if (eol == p)
            break;
        if (m->n_headers == HTTP_MAX_HEADERS) {
            *why = "too many header fields";
            return HTTP_BAD;
        }
        struct http_header *h = &m->headers[m->n_headers++];
        if (parse_field(p, eol, h, why) != HTTP_OK ||
            note_header(m, h, is_request, &hosts, &te, why) != HTTP_OK)
            return HTTP_BAD;
        p = eol + 2;
    }
    if (te > 0 && m->framing == BODY_LENGTH) {
        *why = "both Content-Length and Transfer-Encoding";
        return HTTP_BAD;
    }
    if (te > 0 && m->minor == 0) {
        *why = "Transfer-Encoding in an HTTP/1.0 message";
        return HTTP_BAD;
    }
    if (te > 0)
        m->framing = BODY_CHUNKED;
    if (is_request && (hosts > 1 || (hosts == 0 && m->minor == 1))) {
        *why = hosts ? "more than one Host header" : "HTTP/1.1 request without Host";
        return HTTP_BAD;
    }
    return HTTP_OK;
}

static enum http_result check_head(const char *buf, size_t len, struct http_msg *m,
                                   const char **why)
{
    memset(m, 0, sizeof(*m));
    m->head_len = http_head_length(buf, len);
    if (m->head_len == 0)
        return HTTP_INCOMPLETE;
    if (memchr(buf, '\0', m->head_len) != NULL) {
        *why = "NUL byte in head";
        return HTTP_BAD;
    }
    return HTTP_OK;
}

enum http_result http_parse_request(const char *buf, size_t len, struct http_msg *m,
                                    const char **why)
{
    enum http_result r = check_head(buf, len, m, why);
    if (r != HTTP_OK)
        return r;
    const char *end = buf + m->head_len, *eol = line_end(buf, end);
    const char *sp1 = eol ? memchr(buf, ' ', (size_t)(eol - buf)) : NULL;
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (eol == NULL || sp1 == NULL || sp2 == NULL || sp1 == buf || sp2 == sp1 + 1) {
        *why = "malformed request line";
        return HTTP_BAD;
    }
    for (const char *q = buf; q < sp1; q++)
        if (!is_tchar((unsigned char)*q)) {
            *why = "invalid method";
            return HTTP_BAD;
        }
    for (const char *q = sp1 + 1; q < sp2; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) {
            *why = "invalid character in request target";
            return HTTP_BAD;
        }
    if (parse_version(sp2 + 1, eol, &m->minor) != 0) {
        *why = "unsupported HTTP version";
        return HTTP_BAD;
    }
    m->method = buf, m->method_len = (size_t)(sp1 - buf);
    m->target = sp1 + 1, m->target_len = (size_t)(sp2 - sp1 - 1);
    return parse_fields(eol + 2, end, m, true, why);
}

enum http_result http_parse_response(const char *buf, size_t len, bool for_head, struct http_msg *m,
                                     const char **why)
{
    enum http_result r = check_head(buf, len, m, why);
    if (r != HTTP_OK)
        return r;
    const char *end = buf + m->head_len, *eol = line_end(buf, end);
    if (eol == NULL || eol - buf < 12 || buf[8] != ' ' || parse_version(buf, buf + 8, &m->minor) ||
        !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) ||
        !isdigit((unsigned char)buf[11]) || (eol - buf > 12 && buf[12] != ' ')) {
        *why = "malformed status line";
        return HTTP_BAD;
    }
    m->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    if (m->status < 100) {
        *why = "malformed status line";
        return HTTP_BAD;
    }
    if (parse_fields(eol + 2, end, m, false, why) != HTTP_OK)
        return HTTP_BAD;
    if (for_head || m->status < 200 || m->status == 204 || m->status == 304)
        m->framing = BODY_NONE;
    else if (m->framing == BODY_NONE)
        m->framing = BODY_UNTIL_CLOSE;
    return HTTP_OK;
}

bool http_method_is(const struct http_msg *m, const char *method)
{
    return strlen(method) == m->method_len && memcmp(m->method, method, m->method_len) == 0;
}

/* Is the field one of the method override spellings frameworks honour? */
static bool is_override_field(const struct http_header *h)
{
    static const char *const fields[] = {"x-http-method-override", "x-http-method",
                                         "x-method-override"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (http_name_is(h, fields[i]))
            return true;
    return false;
}

const char *http_method_override(const struct http_msg *m, char *out, size_t cap)
{
    const char *found = NULL;
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http_header *h = &m->headers[i];
        if (!is_override_field(h))
            continue;
        size_t n = h->value_len;
        while (n > 0 && (h->value[n - 1] == ' ' || h->value[n - 1] == '\t'))
            n--;
        if (n == 0)
            continue; /* an empty override overrides nothing anywhere */
        /* Two overrides, or one too long to hold, cannot be read one way:
         * "?" is no method, so no allow rule lists it. */
        if (found != NULL || n >= cap) {
            return "?";
        }
        memcpy(out, h->value, n);
        out[n] = '\0';
        found = out;
    }
    return found;
}

bool http_name_is(const struct http_header *h, const char *name)
{
    return strlen(name) == h->name_len && strncasecmp(h->name, name, h->name_len) == 0;
}

const struct http_header *http_header_find(const struct http_msg *m, const char *name)
{
    for (size_t i = 0; i < m->n_headers; i++)
        if (http_name_is(&m->headers[i], name))
            return &m->headers[i];
    return NULL;
}

bool http_list_has(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = value, *end = value + len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *q = p;
        while (q < end && *q != ',')
            q++;
        const char *e = q;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - p) == tlen && strncasecmp(p, token, tlen) == 0)
            return true;
        p = q;
    }
    return false;
}

const char *http_reason_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 408:
        return "Request Timeout";
    case 404:
        return "Not Found";
    case 413:
        return "Payload Too Large";
    case 421:
        return "Misdirected Request";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    }
    return "Error";
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'                     ? c - '0'
           : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                    : -1;
}

int http_pct_byte(const char *p, size_t i, size_t len, size_t *used)
{
    *used = 1;
    if (p[i] != '%')
        return (unsigned char)p[i];
    int hi = i + 1 < len ? hexval(p[i + 1]) : -1, lo = i + 2 < len ? hexval(p[i + 2]) : -1;
    if (hi < 0 || lo < 0)
        return -1;
    *used = 3;
    return hi * 16 + lo;
}

int http_path_view(const char *target, size_t len, char *out, size_t cap, char *folded, size_t fcap,
                   const char **why)
{
    const char *q = memchr(target, '?', len);
    size_t plen = q ? (size_t)(q - target) : len, o = 0, f = 0, used;
    bool in_params = false;
    for (size_t i = 0; i < plen; i += used) {
        int c = http_pct_byte(target, i, plen, &used);
        if (c < 0 || c < 0x20 || c == 0x7f) {
            *why = c < 0 ? "a malformed percent-escape in the request path"
                         : "an encoded control character in the request path";
            return -1;
        }
        if (o + 1 >= cap || f + 1 >= fcap) {
            *why = "the request path is too long";
            return -1;
        }
        out[o++] = (char)c;
        in_params = c == '/' ? false : in_params || c == ';';
        if (!in_params && !(c == '/' && f > 0 && folded[f - 1] == '/'))
            folded[f++] = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
    }
    out[o] = folded[f] = '\0';
    return 0;
}

/* Is seg (the bytes between two slashes) "." or ".." once its ;params
 * are cut, as Tomcat and Jetty cut them (';' written or as %3B) before
 * resolving dot segments: "/a/..;/b" is "/b" to them. */
static bool dot_segment(const char *seg, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (seg[i] == ';' ||
            (seg[i] == '%' && i + 2 < n && seg[i + 1] == '3' && (seg[i + 2] | 0x20) == 'b')) {
            n = i;
            break;
        }
    return (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.');
}

int http_path_check(const char *target, size_t len, const char **why)
{
    const char *q = memchr(target, '?', len);
    size_t plen = q ? (size_t)(q - target) : len;
    if (plen == 0 || target[0] != '/') {
        *why = "the request target is not an origin-form path";
        return -1;
    }
    for (size_t i = 0, seg = 1; i <= plen; i++) {
        char ch = i < plen ? target[i] : '/';
        if (ch == '\\' || ch == '\0' || ch == '#') {
            *why = "backslash, NUL or fragment in the request path";
            return -1;
        }
        if (ch == '%') {
            char a = i + 1 < plen ? target[i + 1] : 0;
            char b = i + 2 < plen ? (char)tolower((unsigned char)target[i + 2]) : 0;
            if ((a == '2' && (b == 'f' || b == 'e')) || (a == '5' && b == 'c') ||
                (a == '0' && b == '0')) {
                *why = "an encoded '/', '\\', '.' or NUL in the request path";
                return -1;
            }
        }
        if (ch == '/' && i > 0) {
            if (dot_segment(target + seg, i - seg)) {
                *why = "a dot segment ('.' or '..') in the request path";
                return -1;
            }
            seg = i + 1;
        }
    }
    return 0;
}
