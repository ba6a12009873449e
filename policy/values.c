/*
 * values.c - parsers for the value types of the INI file: durations (ms, s,
 * m, h), sizes (K, M, G), booleans, bounded integers, comma lists, port
 * lists with ranges, CIDRs and listen addresses, and credentials (from the
 * environment or a file).  Each refuses anything it does not fully
 * understand; the loader adds the line number.
 */
#include "policy_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

/* A plain decimal number with nothing but an optional suffix after it. */
static int parse_number(const char *s, uint64_t *v, const char **suffix)
{
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    *v = n;
    *suffix = end;
    return 0;
}

_Static_assert(DURATION_MAX_MS <= INT_MAX, "a duration is an int of milliseconds");

int parse_duration_ms(const char *s, unsigned *out)
{
    static const struct {
        const char *suffix;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    uint64_t v;
    const char *suffix;
    if (parse_number(s, &v, &suffix) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(suffix, units[i].suffix) == 0) {
            if (v > DURATION_MAX_MS / units[i].ms) /* exact: every unit divides the maximum */
                return -1;
            *out = (unsigned)(v * units[i].ms);
            return 0;
        }
    }
    return -1; /* a bare number is ambiguous: seconds or milliseconds? */
}

int parse_size(const char *s, uint64_t *out)
{
    uint64_t v, mult = 1;
    const char *suffix;
    if (parse_number(s, &v, &suffix) != 0)
        return -1;
    if (*suffix != '\0') {
        const char *units = "KMG";
        const char *u = strchr(units, toupper((unsigned char)*suffix));
        if (u == NULL || suffix[1] != '\0')
            return -1;
        mult = 1ull << (10 * (u - units + 1));
    }
    if (v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

int parse_bool(const char *s, bool *out)
{
    if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcmp(s, "1") ||
        !strcasecmp(s, "on")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(s, "no") || !strcasecmp(s, "false") || !strcmp(s, "0") ||
        !strcasecmp(s, "off")) {
        *out = false;
        return 0;
    }
    return -1;
}

int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    uint64_t v;
    const char *suffix;
    if (parse_number(s, &v, &suffix) != 0 || *suffix != '\0' || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

enum list_result list_foreach(char *s, int (*fn)(void *ctx, const char *item), void *ctx)
{
    enum list_result rc = LIST_OK;
    for (char *item = s; item != NULL;) {
        char *comma = strchr(item, ',');
        if (comma != NULL)
            *comma = '\0';
        const char *t = trim(item);
        if (*t == '\0') /* "a,,b" or a trailing comma: a typo, never "nothing" */
            rc = LIST_EMPTY_ITEM;
        else if (fn(ctx, t) != 0 && rc == LIST_OK)
            rc = LIST_ITEM_FAILED;
        item = comma ? comma + 1 : NULL;
    }
    return rc;
}

struct ports_ctx {
    struct port_range *r;
    size_t n;
    char *err;
    size_t errlen;
};

/* "N" or "N-M"; *end is left after the number. */
static int port_number(const char *s, const char **end, unsigned *out)
{
    char digits[8];
    size_t n = 0;
    while (isdigit((unsigned char)s[n]) && n < sizeof(digits) - 1) {
        digits[n] = s[n];
        n++;
    }
    digits[n] = '\0';
    *end = s + n;
    return parse_uint(digits, 1, 65535, out);
}

static int add_port_item(void *vctx, const char *item)
{
    struct ports_ctx *c = vctx;
    unsigned lo, hi;
    const char *p;
    int rc = port_number(item, &p, &lo);
    hi = lo;
    if (rc == 0 && *p == '-')
        rc = port_number(p + 1, &p, &hi);
    if (rc != 0 || *p != '\0' || lo > hi) {
        snprintf(c->err, c->errlen, "invalid port '%s' (N or N-M, from 1 to 65535)", item);
        return -1;
    }
    struct port_range *grown = realloc(c->r, (c->n + 1) * sizeof(*grown));
    if (grown == NULL) {
        snprintf(c->err, c->errlen, "out of memory");
        return -1;
    }
    c->r = grown;
    c->r[c->n++] = (struct port_range){(uint16_t)lo, (uint16_t)hi};
    return 0;
}

int parse_ports(const char *s, struct port_range **out, size_t *n, char *err, size_t errlen)
{
    char *copy = strdup(s);
    struct ports_ctx c = {NULL, 0, err, errlen};
    if (copy == NULL)
        return -1;
    enum list_result rc = list_foreach(copy, add_port_item, &c);
    free(copy);
    if (rc == LIST_EMPTY_ITEM)
        snprintf(err, errlen, "an empty item in the list (a stray comma?)");
    if (rc != LIST_OK) {
        free(c.r);
        return -1;
    }
    *out = c.r;
    *n = c.n;
    return 0;
}

bool ports_match(const struct port_range *r, size_t n, uint16_t port)
{
    for (size_t i = 0; i < n; i++)
        if (port >= r[i].lo && port <= r[i].hi)
            return true;
    return false;
}

int parse_cidr(const char *s, struct cidr *out, const char **why)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    memset(out, 0, sizeof(*out));
    if (alen >= sizeof(addr)) {
        *why = "invalid address";
        return -1;
    }
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET, addr, out->net) == 1) {
        out->family = AF_INET, out->prefix = 32;
    } else if (inet_pton(AF_INET6, addr, out->net) == 1) {
        out->family = AF_INET6, out->prefix = 128;
    } else {
        *why = "invalid address (expected an IPv4 or IPv6 address or CIDR)";
        return -1;
    }
    if (slash != NULL &&
        parse_uint(slash + 1, 0, out->family == AF_INET ? 32 : 128, &out->prefix) != 0) {
        *why = "invalid prefix length";
        return -1;
    }
    for (unsigned bit = out->prefix; bit < (out->family == AF_INET ? 32u : 128u); bit++) {
        if (out->net[bit / 8] & (0x80 >> (bit % 8))) {
            *why = "address has bits set beyond the prefix length";
            return -1;
        }
    }
    return 0;
}

int parse_sockaddr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    struct host h;
    uint16_t port;
    const char *why;
    memset(ss, 0, sizeof(*ss));
    if (listen_addr_parse(s, &h, &port, &why) != 0)
        return -1;
    if (h.kind == HOST_IPV4) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        in->sin_addr = h.ip.v4;
        *len = sizeof(*in);
    } else if (h.kind == HOST_IPV6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        in6->sin6_addr = h.ip.v6;
        *len = sizeof(*in6);
    } else if (strcmp(h.name, "localhost") == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof(*in);
    } else {
        return -1; /* listen on addresses, not names that may resolve anywhere */
    }
    return 0;
}

int parse_unix_sockaddr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    if (strncmp(s, "unix:/", 6) != 0 || strlen(s + 5) >= sizeof(un->sun_path))
        return -1;
    memset(ss, 0, sizeof(*ss));
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, s + 5, strlen(s + 5) + 1);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(s + 5) + 1);
    return 0;
}

static const char *const protocol_names[PROTO_COUNT] = {
    [PROTO_OPENAI_CHAT] = "openai_chat_completions",
    [PROTO_OPENAI_COMPLETIONS] = "openai_completions",
    [PROTO_OPENAI_RESPONSES] = "openai_responses",
    [PROTO_OPENAI_EMBEDDINGS] = "openai_embeddings",
    [PROTO_ANTHROPIC_MESSAGES] = "anthropic_messages",
    [PROTO_MODEL_DISCOVERY] = "model_discovery",
};

const char *protocol_name(enum protocol p)
{
    return p < PROTO_COUNT ? protocol_names[p] : "unknown";
}

struct protocols_ctx {
    unsigned mask;
    char *err;
    size_t errlen;
};

static int add_protocol(void *vctx, const char *item)
{
    struct protocols_ctx *c = vctx;
    for (int i = 0; i < PROTO_COUNT; i++) {
        if (strcmp(item, protocol_names[i]) == 0) {
            c->mask |= 1u << i;
            return 0;
        }
    }
    snprintf(c->err, c->errlen, "protocols: unknown protocol '%s'", item);
    return -1;
}

int parse_protocols(const char *s, unsigned *mask, char *err, size_t errlen)
{
    char *copy = strdup(s);
    struct protocols_ctx c = {0, err, errlen};
    if (copy == NULL)
        return -1;
    enum list_result rc = list_foreach(copy, add_protocol, &c);
    free(copy);
    if (rc == LIST_EMPTY_ITEM)
        snprintf(err, errlen, "protocols: an empty item in the list (a stray comma?)");
    *mask = c.mask;
    return rc == LIST_OK ? 0 : -1;
}

/* http://host[:port][/path], https://..., or mock://anything. */
int parse_endpoint(const char *s, struct route *r, const char **why)
{
    static const struct {
        const char *prefix;
        enum endpoint_scheme scheme;
        uint16_t port;
    } schemes[] = {{"http://", ENDPOINT_HTTP, 80},
                   {"https://", ENDPOINT_HTTPS, 443},
                   {"mock://", ENDPOINT_MOCK, 0}};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(schemes[i].prefix);
        if (strncasecmp(s, schemes[i].prefix, n) != 0)
            continue;
        r->scheme = schemes[i].scheme;
        if (r->scheme == ENDPOINT_MOCK)
            return 0;
        const char *auth = s + n, *path = auth + strcspn(auth, "/?#");
        if (*path == '?' || *path == '#' || strpbrk(path, "?#") != NULL) {
            *why = "no query or fragment in an endpoint";
            return -1;
        }
        struct host h;
        if (memchr(auth, '@', (size_t)(path - auth)) != NULL) {
            *why = "put credentials in api_key_env or api_key_file, not in the URL";
            return -1;
        }
        if (host_port_parse(auth, (size_t)(path - auth), schemes[i].port, &h, &r->port, why) != 0)
            return -1;
        size_t plen = strlen(path);
        while (plen > 0 && path[plen - 1] == '/')
            plen--;
        if (plen >= sizeof(r->base_path)) {
            *why = "path too long";
            return -1;
        }
        memcpy(r->base_path, path, plen);
        r->base_path[plen] = '\0';
        snprintf(r->host, sizeof(r->host), "%s", h.name);
        return 0;
    }
    *why = "expected http://, https:// or mock://";
    return -1;
}

void *section_grow(struct loader *L, struct section *S, void *arr, size_t *n, size_t max,
                   size_t size, const char *what)
{
    if (*n >= max) {
        line_problem(L, "too many %s (at most %zu)", what, max);
        return NULL;
    }
    char *grown = realloc(arr, (*n + 1) * size);
    if (grown == NULL) {
        line_problem(L, "out of memory");
        return NULL;
    }
    memset(grown + *n * size, 0, size);
    S->index = (*n)++;
    return grown;
}

/* ---- credentials ---------------------------------------------------------------- */

/* One line with no control character: a value that goes into header
 * lines must not be able to start another. */
static const char *credential_problem(const char *v, size_t n)
{
    if (n == 0)
        return "empty";
    if (n >= API_KEY_MAX)
        return "longer than 4095 bytes";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return "not one line of printable characters";
    return NULL;
}

char *credential_from_env(const char *var, char *err, size_t errlen)
{
    const char *v = getenv(var);
    const char *why = v == NULL ? "not set" : credential_problem(v, strlen(v));
    char *copy = why == NULL ? strdup(v) : NULL;
    if (why == NULL && copy == NULL)
        why = "out of memory";
    if (why != NULL)
        snprintf(err, errlen, "environment variable %s is %s", var, why);
    return copy;
}

char *credential_from_file(const char *path, char *err, size_t errlen)
{
    char buf[API_KEY_MAX + 1];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    bool failed = ferror(f) != 0;
    fclose(f);
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        n--;
    buf[n] = '\0';
    const char *why = failed ? "cannot be read" : credential_problem(buf, n);
    char *copy = why == NULL ? strdup(buf) : NULL;
    if (why == NULL && copy == NULL)
        why = "out of memory";
    if (why != NULL)
        snprintf(err, errlen, "%s is %s", path, why);
    explicit_bzero(buf, sizeof(buf));
    return copy;
}

void credential_free(char *value)
{
    if (value == NULL)
        return;
    explicit_bzero(value, strlen(value));
    free(value);
}
