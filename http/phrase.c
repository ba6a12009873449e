/*
 * phrase.c - the reason phrase of the status line of every error egressd
 * answers itself (DESIGN section 5): one line that says what happened and
 * what to do, because clients and agents' tool outputs show the reason
 * phrase of a refused CONNECT ("Tunnel connection failed: 403 ...") and
 * little else.
 *
 * Each error code has a template; %D stands for the destination (host and
 * port, or the request on it), %R for the rule, %X for the detail and %M
 * for the rule's message or, without one, advice.  A policy denial says
 * whether an allow rule could admit the request or a deny rule refused it.
 * The phrase is composed first and cleaned after: every byte that is not
 * printable ASCII becomes '?', whatever a host name, path or message held,
 * so that nothing can end the status line early or add a header; and it is
 * cut to HTTP_PHRASE_MAX bytes, ending "..." when cut.
 */
#include "http.h"

#include <stdio.h>
#include <string.h>

#define PATH_SHOWN 48 /* of a request's path, in a phrase */

/* Templates by code; codes not listed get "CODE (%X)". */
static const struct {
    const char *code, *text;
} templates[] = {
    {"ssrf_denied", "%D resolves to an address the sandbox may not reach (do not retry)"},
    {"secret_not_allowed", "a secret may not be sent to %D (%X)"},
    {"dns_failure", "%D could not be resolved (check the host name; not a policy decision)"},
    {"upstream_unreachable",
     "%D refused the connection or is unreachable (a network error, not a policy decision)"},
    {"upstream_timeout", "%D did not answer in time (a network error, not a policy decision)"},
    {"upstream_tls", "TLS to %D failed (not a policy decision; tell the operator)"},
    {"upstream_error", "%D sent an answer egressd cannot relay (not a policy decision)"},
    {"upstream_unavailable", "the inference backend is unavailable (retry later)"},
    {"budget_exceeded", "an inference budget is spent (retry after Retry-After seconds)"},
    {"overloaded", "too busy to take this request (retry in a moment)"},
    {"bad_request", "malformed request: %X"},
    {"headers_too_large", "request head larger than 8 KiB (send fewer or smaller headers)"},
    {"request_timeout", "the request was not received in time (send it whole and promptly)"},
    {"use_connect", "https:// URLs go through CONNECT (set HTTPS_PROXY to egressd)"},
    {"misdirected_request", "the Host header does not name %D (one host per tunnel)"},
    {"unsupported_protocol", "only HTTP/1.1 and WebSocket pass to %D (%X)"},
    {"not_inference", "only inference API calls pass to this host (%X)"},
    {"no_route", "no inference route serves this request (%X)"},
    {"body_too_large", "request body too large (%X)"},
    {"not_found", "%X"},
};

static bool is_policy(const char *code)
{
    return strcmp(code, "policy_denied") == 0 || strcmp(code, "ssrf_denied") == 0 ||
           strcmp(code, "secret_not_allowed") == 0;
}

static const char *template_for(const struct http_error_info *info)
{
    if (strcmp(info->e->code, "policy_denied") == 0)
        return info->by_deny_rule ? "%D is denied by rule %R (%M)" : "%D is not allowed (%M)";
    for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++)
        if (strcmp(templates[i].code, info->e->code) == 0)
            return templates[i].text;
    return NULL;
}

/* The destination: "host:port", "GET /path on host:port", "GET /path". */
static void put_destination(struct sbuf *b, const struct http_error_info *info)
{
    if (info->method != NULL && info->path != NULL) {
        size_t n = strlen(info->path);
        sbuf_printf(b, "%.32s %.*s%s", info->method, PATH_SHOWN, info->path,
                    n > PATH_SHOWN ? "..." : "");
        if (info->host != NULL)
            sbuf_str(b, " on ");
    }
    if (info->host != NULL)
        sbuf_printf(b, strchr(info->host, ':') ? "[%.253s]:%u" : "%.253s:%u", info->host,
                    info->port);
    else if (info->method == NULL || info->path == NULL)
        sbuf_str(b, "the destination");
}

static void put_advice(struct sbuf *b, const struct http_error_info *info)
{
    if (info->message != NULL)
        sbuf_str(b, info->message);
    else
        sbuf_str(b, info->by_deny_rule ? "a deny rule: do not retry"
                                       : "ask the operator to add an [allow] rule");
}

static void expand(struct sbuf *b, const char *t, const struct http_error_info *info)
{
    for (; *t != '\0'; t++) {
        if (t[0] != '%' || t[1] == '\0') {
            sbuf_add(b, t, 1);
            continue;
        }
        switch (*++t) {
        case 'D':
            put_destination(b, info);
            break;
        case 'R':
            sbuf_str(b, info->rule ? info->rule : "?");
            break;
        case 'X':
            sbuf_str(b, info->detail ? info->detail : "see the JSON body");
            break;
        case 'M':
            put_advice(b, info);
            break;
        default:
            sbuf_add(b, t - 1, 2);
        }
    }
}

void http_phrase_clean(char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if ((unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e)
            s[n] = '?';
    if (max >= 4 && n > max) /* an ellipsis where it was cut */
        memcpy(s + max - 3, "...", 4);
    else if (n > max)
        s[max] = '\0';
}

void http_error_phrase(char *out, size_t cap, const struct http_error_info *info)
{
    char text[1024]; /* more than a phrase: cut below, with its ellipsis */
    struct sbuf b;
    const char *t = template_for(info);
    sbuf_init(&b, text, sizeof(text));
    sbuf_str(&b, is_policy(info->e->code) ? "egressd policy: " : "egressd: ");
    if (t != NULL)
        expand(&b, t, info);
    else
        sbuf_printf(&b, "%.64s (%.256s)", info->e->code,
                    info->detail ? info->detail : "see the JSON body");
    http_phrase_clean(text, cap > 0 && cap - 1 < HTTP_PHRASE_MAX ? cap - 1 : HTTP_PHRASE_MAX);
    snprintf(out, cap, "%s", text);
}
