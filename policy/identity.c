/*
 * identity.c - the pure parts of process identity: path globs for `binary`
 * rules, and reading one line of /proc/net/tcp{,6}.  The /proc walk that
 * uses them lives with the daemon (proxy/identity.c).
 */
#include "policy_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum glob_token { GLOB_LITERAL, GLOB_STAR, GLOB_DOUBLE_STAR };

/* Step the set of pattern positions reached over one more character c
 * (c == 0: none, just follow the stars that may match nothing). */
static bool glob_step(const uint8_t *kind, const char *lit, size_t m, uint8_t *cur, int c)
{
    uint8_t next[GLOB_PATTERN_MAX + 1];
    bool any = false;
    if (c != 0) {
        memset(next, 0, m + 1);
        for (size_t k = 0; k < m; k++) {
            if (!cur[k])
                continue;
            if (kind[k] == GLOB_LITERAL)
                next[k + 1] |= lit[k] == c;
            else
                next[k] |= kind[k] == GLOB_DOUBLE_STAR || c != '/';
        }
        memcpy(cur, next, m + 1);
    }
    for (size_t k = 0; k <= m; k++) { /* a star may match nothing */
        if (k < m && cur[k] && kind[k] != GLOB_LITERAL)
            cur[k + 1] = 1;
        any |= cur[k];
    }
    return any;
}

/* A simulation of the pattern's automaton, one character at a time: time
 * bounded by pattern length times path length, whatever the stars (the
 * recursive matcher it replaces backtracked exponentially). */
bool path_glob_match(const char *p, const char *s)
{
    uint8_t kind[GLOB_PATTERN_MAX], cur[GLOB_PATTERN_MAX + 1] = {1};
    char lit[GLOB_PATTERN_MAX];
    size_t m = 0;
    for (; *p != '\0'; m++) {
        if (m == GLOB_PATTERN_MAX)
            return false; /* the loader refuses longer patterns */
        bool star = *p == '*', twice = star && p[1] == '*';
        kind[m] = twice ? GLOB_DOUBLE_STAR : star ? GLOB_STAR : GLOB_LITERAL;
        lit[m] = *p;
        p += twice ? 2 : 1;
    }
    if (!glob_step(kind, lit, m, cur, 0))
        return false;
    for (; *s != '\0'; s++)
        if (!glob_step(kind, lit, m, cur, (unsigned char)*s))
            return false;
    return cur[m];
}

/* "0100007F:1F90" or 32 hex digits and a port, in the kernel's byte order. */
static int proc_address(const char *hex, unsigned port, struct sockaddr_storage *ss)
{
    size_t n = strlen(hex);
    memset(ss, 0, sizeof(*ss));
    uint32_t words[4];
    if (n != 8 && n != 32)
        return -1;
    for (size_t i = 0; i < n / 8; i++) {
        char w[9];
        memcpy(w, hex + 8 * i, 8);
        w[8] = '\0';
        words[i] = (uint32_t)strtoul(w, NULL, 16); /* printed as a host-order u32 */
    }
    bool mapped = n == 32 && words[0] == 0 && words[1] == 0 && words[2] == htonl(0xffff);
    if (n == 8 || mapped) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        memcpy(&in->sin_addr, &words[n == 8 ? 0 : 3], 4);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        memcpy(&in6->sin6_addr, words, 16);
    }
    return 0;
}

int proc_net_tcp_line(const char *line, struct proc_socket *out)
{
    char local[40], remote[40];
    unsigned lport, rport, state;
    if (sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %39[0-9A-Fa-f]:%x %x %*s %*s %*s %u %*u %lu", local,
               &lport, remote, &rport, &state, &out->uid, &out->inode) != 7)
        return -1;
    if (lport > 65535 || rport > 65535)
        return -1;
    return proc_address(local, lport, &out->local) || proc_address(remote, rport, &out->remote) ? -1
                                                                                                : 0;
}
