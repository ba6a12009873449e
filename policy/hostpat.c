/*
 * hostpat.c - strict host parsing and host pattern matching.
 *
 * Every host that reaches a decision went through host_parse(): lower-cased,
 * one trailing dot dropped, and refused when it could mean different things
 * to different parsers (0x7f.1, 2130706433, 0177.0.0.1, user@host, %2e).
 * IP literals are kept in canonical text form so that "::1" and
 * "0:0:0:0:0:0:0:1" match the same pattern.
 *
 * Patterns are exact names, "*.suffix" (exactly one more label) and
 * "**.suffix" (one or more labels).  Each kind is a sorted array; matching
 * a name costs one binary search per label.
 */
#include "policy_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_label_char(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_';
}

/* Canonical dotted quad only: four decimal parts, 0-255, no leading zeros. */
static bool is_dotted_quad(const char *s)
{
    int parts = 0;
    while (parts < 4) {
        if (!isdigit((unsigned char)s[0]))
            return false;
        if (s[0] == '0' && isdigit((unsigned char)s[1]))
            return false;
        unsigned v = 0;
        int digits = 0;
        while (isdigit((unsigned char)*s) && digits < 4) {
            v = v * 10 + (unsigned)(*s++ - '0');
            digits++;
        }
        if (digits > 3 || v > 255)
            return false;
        parts++;
        if (parts < 4 && *s++ != '.')
            return false;
    }
    return *s == '\0';
}

static int name_check(const char *s, const char **why)
{
    size_t len = strlen(s);
    if (len == 0 || len > POLICY_HOST_MAX) {
        *why = "host name empty or longer than 253 characters";
        return -1;
    }
    const char *label = s;
    for (const char *p = s;; p++) {
        if (*p == '.' || *p == '\0') {
            size_t l = (size_t)(p - label);
            if (l == 0 || l > 63) {
                *why = "host name has an empty or over-long label";
                return -1;
            }
            if (label[0] == '-' || p[-1] == '-') {
                *why = "host name label starts or ends with '-'";
                return -1;
            }
            if (*p == '\0')
                break;
            label = p + 1;
        } else if (!is_label_char((unsigned char)*p)) {
            *why = (unsigned char)*p >= 0x80 ? "non-ASCII host name (use punycode)"
                   : *p == '%'               ? "percent-escapes are not allowed in hosts"
                   : *p == '@'               ? "userinfo is not allowed in hosts"
                                             : "invalid character in host name";
            return -1;
        }
    }
    /* A name whose last label starts with a digit is an IPv4 spelling that
     * some resolver would read as octal, hex or a bare integer. */
    if (isdigit((unsigned char)label[0])) {
        *why = "ambiguous IPv4 spelling (only canonical dotted quads are accepted)";
        return -1;
    }
    return 0;
}

int host_parse(const char *s, size_t len, struct host *out, const char **why)
{
    char buf[POLICY_HOST_MAX + 3];
    memset(out, 0, sizeof(*out));
    if (memchr(s, '\0', len) != NULL) { /* "[::1\0anything]" must not be ::1 */
        *why = "NUL in host";
        return -1;
    }
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        if (len - 2 >= INET6_ADDRSTRLEN) {
            *why = "IPv6 literal too long";
            return -1;
        }
        memcpy(buf, s + 1, len - 2);
        buf[len - 2] = '\0';
        if (inet_pton(AF_INET6, buf, &out->ip.v6) != 1) {
            *why = "invalid IPv6 literal (zone ids are not accepted)";
            return -1;
        }
        out->kind = HOST_IPV6;
        inet_ntop(AF_INET6, &out->ip.v6, out->name, sizeof(out->name));
        return 0;
    }
    if (len > 0 && s[len - 1] == '.')
        len--; /* one trailing dot: the same name, fully qualified */
    if (len == 0 || len > POLICY_HOST_MAX) {
        *why = len ? "host name longer than 253 characters" : "empty host";
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)tolower((unsigned char)s[i]);
    buf[len] = '\0';
    if (is_dotted_quad(buf)) {
        inet_pton(AF_INET, buf, &out->ip.v4);
        out->kind = HOST_IPV4;
        memcpy(out->name, buf, len + 1);
        return 0;
    }
    if (strchr(buf, ':') != NULL) {
        *why = "IPv6 literals must be written in brackets";
        return -1;
    }
    if (name_check(buf, why) != 0)
        return -1;
    out->kind = HOST_NAME;
    memcpy(out->name, buf, len + 1);
    return 0;
}

static int port_parse(const char *s, size_t len, bool zero_ok, uint16_t *port, const char **why)
{
    unsigned v = 0;
    if (len == 0 || len > 5) {
        *why = "missing or invalid port";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) {
            *why = "invalid port";
            return -1;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if ((v == 0 && !zero_ok) || v > 65535) {
        *why = "port out of range";
        return -1;
    }
    *port = (uint16_t)v;
    return 0;
}

static int split_host_port(const char *s, size_t len, uint16_t default_port, bool zero_ok,
                           struct host *out, uint16_t *port, const char **why)
{
    const char *colon = NULL;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL) {
            *why = "unterminated IPv6 literal";
            return -1;
        }
        if ((size_t)(close + 1 - s) < len) {
            if (close[1] != ':') {
                *why = "garbage after IPv6 literal";
                return -1;
            }
            colon = close + 1;
        }
    } else {
        colon = memrchr(s, ':', len);
        if (colon != NULL && memchr(s, ':', (size_t)(colon - s)) != NULL) {
            *why = "IPv6 literals must be written in brackets";
            return -1;
        }
    }
    size_t hostlen = colon ? (size_t)(colon - s) : len;
    if (colon == NULL) {
        if (default_port == 0) {
            *why = "missing port";
            return -1;
        }
        *port = default_port;
    } else if (port_parse(colon + 1, len - hostlen - 1, zero_ok, port, why) != 0) {
        return -1;
    }
    return host_parse(s, hostlen, out, why);
}

int host_port_parse(const char *s, size_t len, uint16_t default_port, struct host *out,
                    uint16_t *port, const char **why)
{
    return split_host_port(s, len, default_port, false, out, port, why);
}

bool host_header_names(const char *value, size_t len, const struct host *h, uint16_t port,
                       uint16_t default_port)
{
    struct host named;
    uint16_t named_port;
    const char *why;
    if (host_port_parse(value, len, default_port, &named, &named_port, &why) != 0)
        return false;
    return named_port == port && named.kind == h->kind && strcmp(named.name, h->name) == 0;
}

/* A listen address may ask for port 0: the kernel picks, the log says which. */
int listen_addr_parse(const char *s, struct host *out, uint16_t *port, const char **why)
{
    return split_host_port(s, strlen(s), 0, true, out, port, why);
}

/* ---- patterns --------------------------------------------------------- */

static int push(char ***arr, size_t *n, const char *s)
{
    char *copy = strdup(s);
    if (copy == NULL)
        return -1;
    /* grow by doubling: n is a power of two exactly when the array is full */
    if ((*n & (*n - 1)) == 0) {
        size_t cap = *n ? *n * 2 : 4;
        char **grown = realloc(*arr, cap * sizeof(**arr));
        if (grown == NULL) {
            free(copy);
            return -1;
        }
        *arr = grown;
    }
    (*arr)[(*n)++] = copy;
    return 0;
}

int hostset_add(struct hostset *hs, const char *pattern, const char **why)
{
    size_t len = strlen(pattern);
    size_t skip = 0;
    char ***arr = &hs->exact;
    size_t *n = &hs->n_exact;
    if (strncmp(pattern, "**.", 3) == 0) {
        skip = 3, arr = &hs->many, n = &hs->n_many;
    } else if (strncmp(pattern, "*.", 2) == 0) {
        skip = 2, arr = &hs->one, n = &hs->n_one;
    } else if (strcmp(pattern, "*") == 0 || strcmp(pattern, "**") == 0) {
        *why = "a bare wildcard matches everything; list the hosts instead";
        return -1;
    }
    if (memchr(pattern + skip, '*', len - skip) != NULL) {
        *why = "wildcards are allowed only as the whole first label (*. or **.)";
        return -1;
    }
    const char *rest = pattern + skip;
    bool bracketed = rest[0] == '[';
    struct host h;
    if (!bracketed && strchr(rest, ':') != NULL) {
        char tmp[INET6_ADDRSTRLEN + 2];
        snprintf(tmp, sizeof(tmp), "[%s]", rest);
        if (host_parse(tmp, strlen(tmp), &h, why) != 0)
            return -1;
    } else if (host_parse(rest, strlen(rest), &h, why) != 0) {
        return -1;
    }
    if (skip > 0 && h.kind != HOST_NAME) {
        *why = "wildcards apply to names, not IP addresses";
        return -1;
    }
    if (skip > 0 && strchr(h.name, '.') == NULL) {
        *why = "a wildcard over a top-level domain is too broad";
        return -1;
    }
    if (push(arr, n, h.name) != 0) {
        *why = "out of memory";
        return -1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void sort_strings(char **arr, size_t n)
{
    if (n > 1)
        qsort(arr, n, sizeof(char *), cmp_str);
}

void hostset_finish(struct hostset *hs)
{
    sort_strings(hs->exact, hs->n_exact);
    sort_strings(hs->one, hs->n_one);
    sort_strings(hs->many, hs->n_many);
}

static bool contains(char **arr, size_t n, const char *s)
{
    return n > 0 && bsearch(&s, arr, n, sizeof(char *), cmp_str) != NULL;
}

bool hostset_match(const struct hostset *hs, const struct host *h)
{
    if (contains(hs->exact, hs->n_exact, h->name))
        return true;
    if (h->kind != HOST_NAME)
        return false;
    const char *dot = strchr(h->name, '.');
    if (dot != NULL && contains(hs->one, hs->n_one, dot + 1))
        return true;
    for (; dot != NULL; dot = strchr(dot + 1, '.'))
        if (contains(hs->many, hs->n_many, dot + 1))
            return true;
    return false;
}

static void free_all(char **arr, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(arr[i]);
    free(arr);
}

void hostset_free(struct hostset *hs)
{
    free_all(hs->exact, hs->n_exact);
    free_all(hs->one, hs->n_one);
    free_all(hs->many, hs->n_many);
    memset(hs, 0, sizeof(*hs));
}
