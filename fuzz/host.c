/*
 * host.c - fuzzes strict host parsing (policy/hostpat.c): host_parse on the
 * input as a Host value, and host_port_parse as a CONNECT target with the
 * default ports 0 (port required), 80 and 443.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks:
 * - a refusal says why; a parsed host has a non-empty, NUL-terminated,
 *   lower-case name without a trailing dot;
 * - names hold only letters, digits, '-', '_' and '.', at most 253 bytes;
 *   IPv4 names are the canonical dotted quad of the address they carry,
 *   IPv6 names the canonical inet_ntop text of theirs (no brackets);
 * - parsing is idempotent: the output name (bracketed for IPv6) parses to
 *   the same kind, name and address;
 * - host_port_parse never yields port 0; with a port written, all three
 *   defaults agree on host and port; without one, default 0 refuses and
 *   80 and 443 give the same host with their own port; the host part is
 *   what host_parse makes of the bytes before the port.
 */
#include "../policy/policy.h"
#include "fuzz.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

static bool same_host(const struct host *a, const struct host *b)
{
    return a->kind == b->kind && strcmp(a->name, b->name) == 0 &&
           (a->kind == HOST_NAME ||
            (a->kind == HOST_IPV4 ? memcmp(&a->ip.v4, &b->ip.v4, sizeof(a->ip.v4))
                                  : memcmp(&a->ip.v6, &b->ip.v6, sizeof(a->ip.v6))) == 0);
}

static void check_host(const struct host *h)
{
    const char *name = h->name;
    CHECK(memchr(name, '\0', sizeof(h->name)) != NULL);
    size_t n = strlen(name);
    CHECK(n > 0 && n <= POLICY_HOST_MAX && name[n - 1] != '.');
    for (size_t i = 0; i < n; i++)
        CHECK(!isupper((unsigned char)name[i]));
    char text[INET6_ADDRSTRLEN];
    switch (h->kind) {
    case HOST_NAME:
        for (size_t i = 0; i < n; i++)
            CHECK(isalnum((unsigned char)name[i]) || strchr("-_.", name[i]) != NULL);
        break;
    case HOST_IPV4:
        CHECK(inet_ntop(AF_INET, &h->ip.v4, text, sizeof(text)) != NULL);
        CHECK(strcmp(text, name) == 0);
        break;
    case HOST_IPV6:
        CHECK(inet_ntop(AF_INET6, &h->ip.v6, text, sizeof(text)) != NULL);
        CHECK(strcmp(text, name) == 0);
        break;
    default:
        CHECK(!"unknown host kind");
    }
    char again[POLICY_HOST_MAX + 3];
    int len = snprintf(again, sizeof(again), h->kind == HOST_IPV6 ? "[%s]" : "%s", name);
    struct host h2;
    const char *why = NULL;
    CHECK(host_parse(again, (size_t)len, &h2, &why) == 0 && same_host(h, &h2));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data, *why = NULL;
    struct host h, hp[3];
    if (host_parse(s, size, &h, &why) == 0)
        check_host(&h);
    else
        CHECK(why != NULL);

    static const uint16_t defaults[3] = {0, 80, 443};
    uint16_t port[3] = {0, 0, 0};
    int rc[3];
    for (int i = 0; i < 3; i++) {
        why = NULL;
        rc[i] = host_port_parse(s, size, defaults[i], &hp[i], &port[i], &why);
        if (rc[i] == 0) {
            check_host(&hp[i]);
            CHECK(port[i] != 0);
        } else {
            CHECK(why != NULL);
        }
    }
    if (rc[0] == 0) { /* a port was written: the defaults change nothing */
        for (int i = 1; i < 3; i++)
            CHECK(rc[i] == 0 && port[i] == port[0] && same_host(&hp[i], &hp[0]));
    } else if (rc[1] == 0 || rc[2] == 0) { /* none was: each default is used */
        CHECK(rc[1] == 0 && rc[2] == 0 && same_host(&hp[1], &hp[2]));
        CHECK(port[1] == 80 && port[2] == 443);
    }
    if (rc[1] == 0) { /* the host part is host_parse's reading of it */
        size_t hostlen = size;
        if (rc[0] == 0) {
            const char *colon = memrchr(s, ':', size);
            CHECK(colon != NULL);
            hostlen = (size_t)(colon - s);
        }
        struct host alone;
        CHECK(host_parse(s, hostlen, &alone, &why) == 0 && same_host(&alone, &hp[1]));
    }
    return 0;
}
