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

bool path_glob_match(const char *p, const char *s)
{
    while (*p != '\0') {
        if (p[0] == '*') {
            bool cross = p[1] == '*'; /* '**' crosses '/', '*' does not */
            p += cross ? 2 : 1;
            for (const char *t = s;; t++) {
                if (path_glob_match(p, t))
                    return true;
                if (*t == '\0' || (!cross && *t == '/'))
                    return false;
            }
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    return *s == '\0';
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
