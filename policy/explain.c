/*
 * explain.c - the policy in words: `egressd --explain` (which rule decides
 * a destination or a request, and why), and the warnings `-t` prints about
 * allow rules that can never allow anything because a deny rule covers
 * everything they name.
 */
#include "policy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *rule_kind_name(enum rule_kind k)
{
    return k == RULE_DENY ? "deny" : k == RULE_ALLOW ? "allow" : "inference";
}

/* The first line: the decision and the rule that made it. */
static void explain_head(const struct policy *p, const struct host *h, uint16_t port,
                         const struct request_view *rq, const struct policy_decision *d, char *out,
                         size_t cap)
{
    char what[POLICY_HOST_MAX + 300];
    if (rq != NULL)
        snprintf(what, sizeof(what), "%s %s:%u%.256s", rq->method, h->name, port, rq->path);
    else
        snprintf(what, sizeof(what), "%s:%u", h->name, port);
    if (d->rule_index < 0) {
        snprintf(out, cap, "%s -> %s (%s%s%s)\n", what, policy_decision_name(d), d->reason,
                 d->rule ? "; rule " : "", d->rule ? d->rule : "");
        return;
    }
    const struct rule *r = &p->rules[d->rule_index];
    if (r->kind == RULE_INTERCEPT)
        snprintf(out, cap, "%s -> intercept by [inference] (line %d)\n", what, r->line);
    else
        snprintf(out, cap, "%s -> %s by [%s %s] (line %d)%s%s\n", what, policy_decision_name(d),
                 rule_kind_name(r->kind), r->name, r->line, d->audit ? ": " : "",
                 d->audit ? d->reason : "");
}

/* The secrets whose hosts and port take in the destination: each one's
 * placeholder and whether this caller gets it swapped (never its value). */
static void explain_secrets(const struct policy *p, const struct host *h, uint16_t port,
                            const struct identity *id, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < p->n_secrets; i++) {
        const struct secret *s = &p->secrets[i];
        if (!rule_names_destination(&s->bind, h, port))
            continue;
        const char *why = policy_secret_refusal(p, i, h, port, id);
        if (s->bind.n_binaries > 0 && id == NULL)
            text_append(out, cap, "  secret '%s': %s is swapped for it in requests from %s%s\n",
                        s->name, s->placeholder, s->bind.binaries[0],
                        s->bind.n_binaries > 1 ? " and the other programs listed" : "");
        else if (why != NULL)
            text_append(out, cap, "  secret '%s': %s is refused here: %s\n", s->name,
                        s->placeholder, why);
        else
            text_append(out, cap, "  secret '%s': %s is swapped for it in requests%s\n", s->name,
                        s->placeholder, s->in_body ? " (bodies too)" : "");
    }
}

void policy_explain(const struct policy *p, const struct host *h, uint16_t port,
                    const struct identity *id, const struct request_view *rq, char *buf, size_t len)
{
    char secrets[1024];
    struct policy_decision d;
    char head[1024], binary[IDENTITY_PATH_MAX + 128] = "", message[320] = "", addrs[128] = "";
    if (rq != NULL)
        policy_decide_request(p, h, port, id, rq, &d);
    else
        policy_decide_as(p, h, port, id, &d);
    explain_head(p, h, port, rq, &d, head, sizeof(head));
    const struct rule *r = d.rule_index >= 0 ? &p->rules[d.rule_index] : NULL;
    const char *who = id != NULL && id->n > 0 ? id->holder[0].chain[0] : NULL;
    if (d.action == ACTION_DENY && r != NULL && r->kind != RULE_DENY) /* the rule came close */
        snprintf(binary, sizeof(binary), "  %s%s%s\n", d.reason, who ? "; the caller is " : "",
                 who ? who : "");
    else if (r != NULL && r->n_binaries > 0 && who != NULL)
        snprintf(binary, sizeof(binary), "  binary %s is on the rule's binary list\n", who);
    if (d.message != NULL)
        snprintf(message, sizeof(message), "  message: %s\n", d.message);
    if (d.action == ACTION_INSPECT && rq == NULL)
        snprintf(addrs, sizeof(addrs), "  inspected: each request is decided by method and path\n");
    else if ((d.action == ACTION_ALLOW || d.action == ACTION_INSPECT) && r != NULL &&
             r->n_allowed > 0)
        snprintf(addrs, sizeof(addrs),
                 "  private addresses reachable through allowed_ips (%zu entries)\n", r->n_allowed);
    else if (d.action == ACTION_ALLOW && rq == NULL)
        snprintf(addrs, sizeof(addrs),
                 "  resolved addresses must be public (no allowed_ips in this rule)\n");
    explain_secrets(p, h, port, id, secrets, sizeof(secrets));
    snprintf(buf, len, "%s%s%s%s%s", head, binary, message, addrs, secrets);
}

/* ---- rules that can never match ------------------------------------------------------ */

/* Does the union of ranges cover lo..hi? */
static bool ports_cover(const struct port_range *r, size_t n, unsigned lo, unsigned hi)
{
    while (lo <= hi) {
        size_t i = 0;
        while (i < n && !(r[i].lo <= lo && lo <= r[i].hi))
            i++;
        if (i == n)
            return false;
        lo = (unsigned)r[i].hi + 1;
    }
    return true;
}

/* Is suffix s covered by the "**." or "*." suffixes of d (one label: *)? */
static bool wildcard_covered(const struct hostset *d, const char *s, bool one_label)
{
    for (size_t i = 0; i < d->n_many; i++) {
        size_t dl = strlen(d->many[i]), sl = strlen(s);
        if (strcmp(s, d->many[i]) == 0 ||
            (sl > dl && s[sl - dl - 1] == '.' && strcmp(s + sl - dl, d->many[i]) == 0))
            return true;
    }
    for (size_t i = 0; one_label && i < d->n_one; i++)
        if (strcmp(s, d->one[i]) == 0)
            return true;
    return false;
}

/* Does every host pattern of a fall under d's? */
static bool hosts_cover(const struct hostset *d, const struct hostset *a)
{
    for (size_t i = 0; i < a->n_exact; i++) {
        struct host h;
        const char *why;
        bool ip = strchr(a->exact[i], ':') != NULL;
        char spelled[POLICY_HOST_MAX + 3];
        snprintf(spelled, sizeof(spelled), ip ? "[%s]" : "%s", a->exact[i]);
        if (host_parse(spelled, strlen(spelled), &h, &why) != 0 || !hostset_match(d, &h))
            return false;
    }
    for (size_t i = 0; i < a->n_one; i++)
        if (!wildcard_covered(d, a->one[i], true))
            return false;
    for (size_t i = 0; i < a->n_many; i++)
        if (!wildcard_covered(d, a->many[i], false))
            return false;
    return true;
}

/* Does d's request keys cover every request a's admit? */
static bool requests_cover(const struct rule *d, const struct rule *a)
{
    bool methods = d->n_methods == 0;
    if (!methods && a->n_methods > 0) {
        methods = true;
        for (size_t i = 0; methods && i < a->n_methods; i++) {
            bool listed = false;
            for (size_t j = 0; !listed && j < d->n_methods; j++)
                listed = strcmp(a->methods[i], d->methods[j]) == 0;
            methods = listed;
        }
    }
    bool paths = d->n_paths == 0;
    for (size_t j = 0; !paths && j < d->n_paths; j++)
        paths = strcmp(d->paths[j], "/**") == 0;
    return methods && paths;
}

/* Do b's hosts and ports take in every destination of a? */
static bool destinations_cover(const struct rule *b, const struct rule *a)
{
    for (size_t i = 0; i < a->n_ports; i++)
        if (!ports_cover(b->ports, b->n_ports, a->ports[i].lo, a->ports[i].hi))
            return false;
    return hosts_cover(&b->hosts, &a->hosts);
}

/* Does deny rule d deny everything allow rule a could allow? */
static bool shadows(const struct rule *d, const struct rule *a)
{
    if (d->n_binaries > 0 || d->audit)
        return false; /* a deny rule for some programs, or one only audited, leaves room */
    return destinations_cover(d, a) && requests_cover(d, a);
}

/* Does allow rule b let through every request to a's destinations, so
 * that a's methods and paths restrict nothing?  (Allow rules add up: the
 * first that matches a request allows it.) */
static bool overrides(const struct rule *b, const struct rule *a)
{
    return b->n_binaries == 0 && !b->request_keys && destinations_cover(b, a);
}

/* Request keys on an allow rule narrow that rule only: a broader allow
 * rule for the same destinations still allows the rest, which an operator
 * coming from squid's ordered http_access may not expect. */
static void policy_find_overridden(struct policy *p)
{
    char msg[400];
    for (size_t a = 0; a < p->n_rules; a++) {
        const struct rule *ra = &p->rules[a];
        for (size_t b = 0; ra->kind == RULE_ALLOW && ra->request_keys && b < p->n_rules; b++) {
            const struct rule *rb = &p->rules[b];
            if (b == a || rb->kind != RULE_ALLOW || !overrides(rb, ra))
                continue;
            snprintf(msg, sizeof(msg),
                     "rule '%s' limits methods or paths, but allow rule '%s' (line %d) allows "
                     "every request to its destinations; use a deny rule with methods or paths "
                     "to refuse requests",
                     ra->name, rb->name, rb->line);
            policy_warn(p, ra->line, msg);
            break;
        }
    }
}

void policy_find_shadowed(struct policy *p)
{
    char msg[400];
    for (size_t a = 0; a < p->n_rules; a++) {
        const struct rule *ra = &p->rules[a];
        for (size_t d = 0; ra->kind == RULE_ALLOW && d < p->n_rules; d++) {
            const struct rule *rd = &p->rules[d];
            if (rd->kind != RULE_DENY || !shadows(rd, ra))
                continue;
            snprintf(msg, sizeof(msg),
                     "rule '%s' can never allow anything: deny rule '%s' (line %d) covers every "
                     "host, port and request it names",
                     ra->name, rd->name, rd->line);
            policy_warn(p, ra->line, msg);
            break;
        }
    }
    policy_find_overridden(p);
}
