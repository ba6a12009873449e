/*
 * decide.c - what the policy says about a destination.
 *
 * Order (DESIGN section 4): any matching deny rule denies; else the first
 * matching allow rule, in file order, allows; else the default is deny.  The
 * address check then runs on every resolved address of an allowed
 * destination, with the rule that allowed it.
 */
#include "policy_int.h"

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

static bool rule_matches(const struct rule *r, const struct host *h, uint16_t port)
{
    return ports_match(r->ports, r->n_ports, port) && hostset_match(&r->hosts, h);
}

static int first_match(const struct policy *p, enum rule_kind kind, const struct host *h,
                       uint16_t port)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (p->rules[i].kind == kind && rule_matches(&p->rules[i], h, port))
            return (int)i;
    return -1;
}

void policy_decide(const struct policy *p, const struct host *h, uint16_t port,
                   struct policy_decision *out)
{
    int i = first_match(p, RULE_DENY, h, port);
    if (i >= 0) {
        *out = (struct policy_decision){ACTION_DENY, p->rules[i].name, "denied by rule", i};
        return;
    }
    i = first_match(p, RULE_INTERCEPT, h, port);
    if (i >= 0) {
        *out = (struct policy_decision){ACTION_INTERCEPT, p->rules[i].name,
                                        "inference host: intercepted", i};
        return;
    }
    i = first_match(p, RULE_ALLOW, h, port);
    if (i >= 0) {
        *out = (struct policy_decision){ACTION_ALLOW, p->rules[i].name, "allowed by rule", i};
        return;
    }
    *out = (struct policy_decision){ACTION_DENY, NULL, "no rule allows this destination", -1};
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

void policy_explain(const struct policy *p, const struct host *h, uint16_t port, char *buf,
                    size_t len)
{
    struct policy_decision d;
    policy_decide(p, h, port, &d);
    if (d.rule_index < 0) {
        snprintf(buf, len, "%s:%u -> deny (no rule matches; the default is deny)\n", h->name, port);
        return;
    }
    const struct rule *r = &p->rules[d.rule_index];
    int n = snprintf(buf, len, "%s:%u -> %s by [%s %s] (line %d)\n", h->name, port,
                     policy_action_name(d.action), r->kind == RULE_DENY ? "deny" : "allow", r->name,
                     r->line);
    if (n > 0 && (size_t)n < len && d.action == ACTION_ALLOW) {
        if (r->n_allowed > 0)
            snprintf(buf + n, len - (size_t)n,
                     "  private addresses reachable through allowed_ips (%zu entries)\n",
                     r->n_allowed);
        else
            snprintf(buf + n, len - (size_t)n,
                     "  resolved addresses must be public (no allowed_ips in this rule)\n");
    }
}
