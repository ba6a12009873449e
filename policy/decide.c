/*
 * decide.c - what the policy says about a destination.
 *
 * Order (DESIGN section 4): any matching deny rule denies; else a match of
 * [inference] intercepts; else the first matching allow rule, in file
 * order, allows; else the default is deny.  A rule with `binary` matches
 * only when the calling programs do (every holder of the socket for allow
 * and [inference], any for deny, and doubt denies).  The address check then
 * runs on every resolved address of an allowed destination, with the rule
 * that allowed it, and a deny rule naming an IP literal covers names that
 * resolve to it.
 */
#include "policy_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

const char *policy_action_name(enum policy_action a)
{
    switch (a) {
    case ACTION_ALLOW:
        return "allow";
    case ACTION_INTERCEPT:
        return "intercept";
    case ACTION_DENY:
        break;
    }
    return "deny";
}

static bool destination_matches(const struct rule *r, const struct host *h, uint16_t port)
{
    return ports_match(r->ports, r->n_ports, port) && hostset_match(&r->hosts, h);
}

/* Does this process or one of its ancestors run a listed executable? */
static bool chain_matches(char *const *globs, size_t n, const struct identity_holder *h)
{
    for (size_t c = 0; c < h->n; c++)
        for (size_t b = 0; b < n; b++)
            if (path_glob_match(globs[b], h->chain[c]))
                return true;
    return false;
}

/* Whether a `binary` list takes in the caller.  Any process holding the
 * socket can write the request, so admitting needs every holder to match;
 * a limit (a deny rule, a budget) takes any holder, and an identity that
 * could not be established (or was not looked up) as a match: doubt
 * denies, and doubt counts. */
static bool binaries_match(char *const *globs, size_t n, bool limit, const struct identity *id)
{
    if (n == 0)
        return true;
    bool unknown = id == NULL || id->unresolved != NULL || id->n == 0;
    if (limit) {
        for (size_t h = 0; !unknown && h < id->n; h++)
            if (chain_matches(globs, n, &id->holder[h]))
                return true;
        return unknown;
    }
    for (size_t h = 0; !unknown && h < id->n; h++)
        if (!chain_matches(globs, n, &id->holder[h]))
            return false;
    return !unknown;
}

static bool binary_matches(const struct rule *r, const struct identity *id)
{
    return binaries_match(r->binaries, r->n_binaries, r->kind == RULE_DENY, id);
}

bool budget_counts_caller(const struct budget *b, const struct identity *id)
{
    return binaries_match(b->binaries, b->n_binaries, true, id);
}

struct matcher {
    const struct policy *p;
    const struct host *h;
    uint16_t port;
    const struct identity *id;
    const char *missed; /* a binary rule that matched all but the process */
};

static int first_match(struct matcher *m, enum rule_kind kind)
{
    for (size_t i = 0; i < m->p->n_rules; i++) {
        const struct rule *r = &m->p->rules[i];
        if (r->kind != kind || !destination_matches(r, m->h, m->port))
            continue;
        if (binary_matches(r, m->id))
            return (int)i;
        if (m->missed == NULL && kind != RULE_DENY)
            m->missed = r->name;
    }
    return -1;
}

bool policy_wants_identity(const struct policy *p, const struct host *h, uint16_t port)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (p->rules[i].n_binaries > 0 && destination_matches(&p->rules[i], h, port))
            return true;
    return false;
}

void policy_decide(const struct policy *p, const struct host *h, uint16_t port,
                   struct policy_decision *out)
{
    policy_decide_as(p, h, port, NULL, out);
}

void policy_decide_as(const struct policy *p, const struct host *h, uint16_t port,
                      const struct identity *id, struct policy_decision *out)
{
    struct matcher m = {p, h, port, id, NULL};
    int i = first_match(&m, RULE_DENY);
    if (i >= 0) {
        const char *why = "denied by rule";
        if (p->rules[i].n_binaries > 0 && (id == NULL || id->unresolved != NULL))
            why = id ? id->unresolved : "denied by rule: the calling program is not known";
        *out = (struct policy_decision){ACTION_DENY, p->rules[i].name, why, i};
        return;
    }
    i = first_match(&m, RULE_INTERCEPT);
    if (i >= 0) {
        *out = (struct policy_decision){ACTION_INTERCEPT, p->rules[i].name,
                                        "inference host: intercepted", i};
        return;
    }
    i = first_match(&m, RULE_ALLOW);
    if (i >= 0) {
        *out = (struct policy_decision){ACTION_ALLOW, p->rules[i].name, "allowed by rule", i};
        return;
    }
    const char *why = "no rule allows this destination";
    if (m.missed != NULL && id == NULL)
        why = "a rule names binaries, and the calling process was not looked up";
    else if (m.missed != NULL && id->unresolved != NULL)
        why = id->unresolved; /* deny with the reason, never allow on doubt */
    else if (m.missed != NULL && id->n > 1)
        why = "the client's socket is shared by processes the rule does not all allow";
    else if (m.missed != NULL)
        why = "the calling binary is not one the rule allows";
    *out = (struct policy_decision){ACTION_DENY, m.missed, why, -1};
}

bool policy_address_permitted(const struct policy *p, const struct policy_decision *d,
                              const struct sockaddr *sa, const char **why)
{
    enum addr_class cls = addr_classify(sa, why);
    switch (cls) {
    case ADDR_GLOBAL:
        return true;
    case ADDR_LOOPBACK:
        return p->settings.unsafe_allow_loopback;
    case ADDR_BLOCKED:
        return false;
    case ADDR_INTERNAL:
        break;
    }
    if (d->rule_index < 0)
        return false;
    const struct rule *r = &p->rules[d->rule_index];
    for (size_t i = 0; i < r->n_allowed; i++)
        if (cidr_contains(&r->allowed[i], sa))
            return true;
    return false;
}

/* The address as a host, for matching IP-literal patterns; false when it
 * is not an IP address. */
static bool address_host(const struct sockaddr *sa, struct host *h)
{
    memset(h, 0, sizeof(*h));
    if (sa->sa_family == AF_INET) {
        h->kind = HOST_IPV4;
        h->ip.v4 = ((const struct sockaddr_in *)sa)->sin_addr;
        return inet_ntop(AF_INET, &h->ip.v4, h->name, sizeof(h->name)) != NULL;
    }
    if (sa->sa_family == AF_INET6) {
        h->kind = HOST_IPV6;
        h->ip.v6 = ((const struct sockaddr_in6 *)sa)->sin6_addr;
        return inet_ntop(AF_INET6, &h->ip.v6, h->name, sizeof(h->name)) != NULL;
    }
    return false;
}

int policy_address_denied(const struct policy *p, const struct sockaddr *sa, uint16_t port,
                          const struct identity *id)
{
    struct host as_host, carried;
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    if (!address_host(sa, &as_host))
        return -1;
    /* an IPv6 form carrying an IPv4 address is judged by that address too */
    bool also_v4 = sa->sa_family == AF_INET6 && addr_embedded_v4(sa, &v4.sin_addr) &&
                   address_host((const struct sockaddr *)&v4, &carried);
    for (size_t i = 0; i < p->n_rules; i++) {
        const struct rule *r = &p->rules[i];
        if (r->kind != RULE_DENY || !ports_match(r->ports, r->n_ports, port) ||
            !binary_matches(r, id))
            continue;
        if (hostset_match(&r->hosts, &as_host) || (also_v4 && hostset_match(&r->hosts, &carried)))
            return (int)i;
    }
    return -1;
}

const char *policy_rule_name(const struct policy *p, int i)
{
    return i >= 0 && (size_t)i < p->n_rules ? p->rules[i].name : NULL;
}

static const char *rule_kind_name(enum rule_kind k)
{
    return k == RULE_DENY ? "deny" : k == RULE_ALLOW ? "allow" : "inference";
}

void policy_explain(const struct policy *p, const struct host *h, uint16_t port,
                    const struct identity *id, char *buf, size_t len)
{
    struct policy_decision d;
    policy_decide_as(p, h, port, id, &d);
    if (d.rule_index < 0) {
        snprintf(buf, len, "%s:%u -> deny (%s%s%s)\n", h->name, port, d.reason,
                 d.rule ? "; rule " : "", d.rule ? d.rule : "");
        return;
    }
    const struct rule *r = &p->rules[d.rule_index];
    int n = r->kind == RULE_INTERCEPT
                ? snprintf(buf, len, "%s:%u -> intercept by [inference] (line %d)\n", h->name, port,
                           r->line)
                : snprintf(buf, len, "%s:%u -> %s by [%s %s] (line %d)\n", h->name, port,
                           policy_action_name(d.action), rule_kind_name(r->kind), r->name, r->line);
    if (n > 0 && (size_t)n < len && r->n_binaries > 0 && id != NULL && id->n > 0)
        n += snprintf(buf + n, len - (size_t)n, "  binary %s is on the rule's binary list\n",
                      id->holder[0].chain[0]);
    if (n > 0 && (size_t)n < len && d.action == ACTION_ALLOW && r->n_allowed > 0)
        snprintf(buf + n, len - (size_t)n,
                 "  private addresses reachable through allowed_ips (%zu entries)\n", r->n_allowed);
    else if (n > 0 && (size_t)n < len && d.action == ACTION_ALLOW)
        snprintf(buf + n, len - (size_t)n,
                 "  resolved addresses must be public (no allowed_ips in this rule)\n");
}
