/*
 * addr.c - address classes for the SSRF check.
 *
 * A resolved address is global (fine), internal (only where a rule's
 * allowed_ips says so), loopback (only with unsafe_allow_loopback, for tests)
 * or blocked outright.  IPv6 forms that carry an IPv4 address inside them
 * (mapped, compatible, translated, NAT64, 6to4, Teredo) are judged by the
 * IPv4 address they carry, since that is where the packets end up.
 */
#include "policy_int.h"

#include <arpa/inet.h>
#include <string.h>

struct range4 {
    uint32_t net;
    unsigned prefix;
    enum addr_class cls;
    const char *what;
};

#define IP4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((c) << 8) | (d))

static const struct range4 ranges4[] = {
    {IP4(0, 0, 0, 0), 8, ADDR_BLOCKED, "unspecified address (0.0.0.0/8)"},
    {IP4(127, 0, 0, 0), 8, ADDR_LOOPBACK, "loopback address"},
    {IP4(169, 254, 0, 0), 16, ADDR_BLOCKED, "link-local address"},
    {IP4(224, 0, 0, 0), 4, ADDR_BLOCKED, "multicast address"},
    {IP4(240, 0, 0, 0), 4, ADDR_BLOCKED, "reserved or broadcast address"},
    {IP4(10, 0, 0, 0), 8, ADDR_INTERNAL, "private address (10/8)"},
    {IP4(172, 16, 0, 0), 12, ADDR_INTERNAL, "private address (172.16/12)"},
    {IP4(192, 168, 0, 0), 16, ADDR_INTERNAL, "private address (192.168/16)"},
    {IP4(100, 64, 0, 0), 10, ADDR_INTERNAL, "shared address space (100.64/10)"},
    {IP4(192, 0, 0, 0), 24, ADDR_INTERNAL, "IETF protocol assignment (192.0.0/24)"},
    {IP4(198, 18, 0, 0), 15, ADDR_INTERNAL, "benchmarking address (198.18/15)"},
    {IP4(192, 0, 2, 0), 24, ADDR_INTERNAL, "documentation address (TEST-NET-1)"},
    {IP4(198, 51, 100, 0), 24, ADDR_INTERNAL, "documentation address (TEST-NET-2)"},
    {IP4(203, 0, 113, 0), 24, ADDR_INTERNAL, "documentation address (TEST-NET-3)"},
    {IP4(192, 88, 99, 0), 24, ADDR_INTERNAL, "6to4 relay anycast (192.88.99/24)"},
};

static enum addr_class classify4(uint32_t a, const char **what)
{
    for (size_t i = 0; i < sizeof(ranges4) / sizeof(ranges4[0]); i++) {
        uint32_t mask = ranges4[i].prefix ? ~0u << (32 - ranges4[i].prefix) : 0;
        if ((a & mask) == ranges4[i].net) {
            *what = ranges4[i].what;
            return ranges4[i].cls;
        }
    }
    *what = "public address";
    return ADDR_GLOBAL;
}

static uint32_t load32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* The IPv4 address an IPv6 address carries, if it is one of the embedding
 * forms; false for plain IPv6. */
static bool embedded_v4(const uint8_t *a, uint32_t *v4)
{
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    bool zero80 = all_zero(a, 10);
    if (zero80 && a[10] == 0xff && a[11] == 0xff) { /* ::ffff:a.b.c.d mapped */
        *v4 = load32(a + 12);
        return true;
    }
    if (all_zero(a, 8) && a[8] == 0xff && a[9] == 0xff && a[10] == 0 && a[11] == 0) {
        *v4 = load32(a + 12); /* ::ffff:0:a.b.c.d translated (SIIT) */
        return true;
    }
    if (zero80 && a[10] == 0 && a[11] == 0 && load32(a + 12) > 1) {
        *v4 = load32(a + 12); /* ::a.b.c.d compatible (:: and ::1 excluded) */
        return true;
    }
    if (memcmp(a, nat64, 12) == 0) { /* 64:ff9b::/96 */
        *v4 = load32(a + 12);
        return true;
    }
    if (a[0] == 0x20 && a[1] == 0x02) { /* 2002::/16 6to4 */
        *v4 = load32(a + 2);
        return true;
    }
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) { /* Teredo client */
        *v4 = ~load32(a + 12);
        return true;
    }
    return false;
}

static enum addr_class classify6(const uint8_t *a, const char **what)
{
    uint32_t v4;
    if (all_zero(a, 16)) {
        *what = "unspecified address (::)";
        return ADDR_BLOCKED;
    }
    if (all_zero(a, 15) && a[15] == 1) {
        *what = "loopback address";
        return ADDR_LOOPBACK;
    }
    if (embedded_v4(a, &v4))
        return classify4(v4, what);
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) {
        *what = "link-local address";
        return ADDR_BLOCKED;
    }
    if (a[0] == 0xff) {
        *what = "multicast address";
        return ADDR_BLOCKED;
    }
    if ((a[0] & 0xfe) == 0xfc) {
        *what = "unique local address (fc00::/7)";
        return ADDR_INTERNAL;
    }
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) {
        *what = "site-local address (fec0::/10)";
        return ADDR_INTERNAL;
    }
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8) {
        *what = "documentation address (2001:db8::/32)";
        return ADDR_INTERNAL;
    }
    if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b && a[4] == 0 && a[5] == 1) {
        *what = "local-use NAT64 address (64:ff9b:1::/48)";
        return ADDR_INTERNAL;
    }
    if (a[0] == 0x01 && all_zero(a + 1, 7)) {
        *what = "discard-only address (100::/64)";
        return ADDR_BLOCKED;
    }
    *what = "public address";
    return ADDR_GLOBAL;
}

enum addr_class addr_classify(const struct sockaddr *sa, const char **what)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return classify4(ntohl(in->sin_addr.s_addr), what);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        return classify6(in6->sin6_addr.s6_addr, what);
    }
    *what = "not an IP address";
    return ADDR_BLOCKED;
}

bool addr_embedded_v4(const struct sockaddr *sa, struct in_addr *out)
{
    uint32_t v4;
    if (sa->sa_family != AF_INET6 ||
        !embedded_v4(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, &v4))
        return false;
    out->s_addr = htonl(v4);
    return true;
}

/* allowed_ips are compared with the address the packets really go to: an
 * IPv4 CIDR also covers that IPv4 address inside any IPv6 embedding. */
bool cidr_contains(const struct cidr *c, const struct sockaddr *sa)
{
    uint8_t bytes[16];
    int family = sa->sa_family;
    if (family == AF_INET) {
        memcpy(bytes, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        uint32_t v4;
        if (c->family == AF_INET && embedded_v4(a, &v4)) {
            v4 = htonl(v4);
            memcpy(bytes, &v4, 4);
            family = AF_INET;
        } else {
            memcpy(bytes, a, 16);
        }
    } else {
        return false;
    }
    if (family != c->family)
        return false;
    unsigned full = c->prefix / 8, rem = c->prefix % 8;
    if (memcmp(bytes, c->net, full) != 0)
        return false;
    if (rem == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rem));
    return (bytes[full] & mask) == (c->net[full] & mask);
}
