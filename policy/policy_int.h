/*
 * policy_int.h - what the policy module's files share with each other and
 * nobody else: the layout of a loaded policy and its rules.
 */
#ifndef EGRESSD_POLICY_INT_H
#define EGRESSD_POLICY_INT_H

#include "policy.h"

#include <stdatomic.h>

#define RULE_NAME_MAX 64

struct port_range {
    uint16_t lo, hi;
};

struct cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t net[16];
    unsigned prefix;
};

/* Host patterns of one rule, each kind kept sorted for binary search, so a
 * rule with thousands of hosts costs a few comparisons per label. */
struct hostset {
    char **exact; /* names and canonical IP literals */
    char **one;   /* "*.suffix": the suffix */
    char **many;  /* "**.suffix": the suffix */
    size_t n_exact, n_one, n_many;
};

enum rule_kind { RULE_DENY, RULE_ALLOW, RULE_INTERCEPT };

struct rule {
    enum rule_kind kind;
    char name[RULE_NAME_MAX];
    int line;
    bool has_host, has_port;
    struct hostset hosts;
    struct port_range *ports;
    size_t n_ports;
    struct cidr *allowed;
    size_t n_allowed;
    char **binaries; /* path globs, symlinks resolved at load */
    size_t n_binaries;
};

struct policy {
    atomic_int refs;
    struct proxy_settings settings;
    struct tls_settings tls;
    struct inference_settings inference;
    struct rule *rules; /* deny, allow, and the [inference] section as an intercept rule */
    size_t n_rules;
    struct route *routes;
    size_t n_routes;
};

/* hostpat.c */
int hostset_add(struct hostset *hs, const char *pattern, const char **why);
void hostset_finish(struct hostset *hs);
bool hostset_match(const struct hostset *hs, const struct host *h);
void hostset_free(struct hostset *hs);

int listen_addr_parse(const char *s, struct host *out, uint16_t *port, const char **why);

/* values.c */
int parse_ports(const char *s, struct port_range **out, size_t *n, char *err, size_t errlen);
bool ports_match(const struct port_range *r, size_t n, uint16_t port);
int parse_cidr(const char *s, struct cidr *out, const char **why);
bool cidr_contains(const struct cidr *c, const struct sockaddr *sa);
int parse_bool(const char *s, bool *out);
int parse_endpoint(const char *s, struct route *r, const char **why);
int parse_protocols(const char *s, unsigned *mask, char *err, size_t errlen);
int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);
/* Split a comma-separated list in place and call fn for each trimmed item;
 * an empty item (a stray comma) is not passed on but reported. */
enum list_result { LIST_OK, LIST_ITEM_FAILED, LIST_EMPTY_ITEM };
enum list_result list_foreach(char *s, int (*fn)(void *ctx, const char *item), void *ctx);

#endif
