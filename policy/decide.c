/*
 * decide.c - what the policy says about a destination, and about one
 * request inside an inspected connection.
 *
 * Destinations (DESIGN section 4): any matching deny rule without request
 * keys denies; else a match of [inference] intercepts; else the first
 * matching allow rule, in file order, allows, as an opaque tunnel or, when
 * a rule with request keys names the destination, inspected; else deny.
 * Requests (section 10) add method and path: a matching deny rule denies,
 * inference hosts stay inference, the first allow rule matching all of
 * host, port, binary, method and path allows, else deny.  A rule with
 * `binary` matches only when the calling programs do (every holder of the
 * socket for allow rules, any for deny rules, and doubt denies).  Deny
 * rules compare methods and paths without case and on the folded path, so
 * that a spelling an origin reads alike (a last slash too) cannot slip
 * past them; allow rules compare exactly.  Audit, the rule's or the
 * policy's, lets a would-be denial through and says so.  The address check then runs on every
 * resolved address of an allowed destination, with the rule that allowed
 * it, and a deny rule naming an IP literal covers names resolving to it.
 */
#include "policy_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *policy_action_name(enum policy_action a)
{
    switch (a) {
    case ACTION_ALLOW:
        return "allow";
    case ACTION_INTERCEPT:
        return "intercept";
    case ACTION_INSPECT:
        return "inspect";
    case ACTION_DENY:
    case ACTION_COUNT:
        break;
    }
    return "deny";
}

const char *policy_decision_name(const struct policy_decision *d)
{
    return d->audit ? "audit" : policy_action_name(d->action);
}

bool rule_names_destination(const struct rule *r, const struct host *h, uint16_t port)
{
    return ports_match(r->ports, r->n_ports, port) && hostset_match(&r->hosts, h);
}

/* Does this process (or, with depth > 1, one of its ancestors) run a
 * listed executable? */
static bool chain_matches(char *const *globs, size_t n, const struct identity_holder *h,
                          size_t depth)
{
    for (size_t c = 0; c < h->n && c < depth; c++)
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
static bool binaries_match(char *const *globs, size_t n, bool limit, size_t depth,
                           const struct identity *id)
{
    if (n == 0)
        return true;
    bool unknown = id == NULL || id->unresolved != NULL || id->n == 0;
    if (limit) {
        for (size_t h = 0; !unknown && h < id->n; h++)
            if (chain_matches(globs, n, &id->holder[h], depth))
                return true;
        return unknown;
    }
    for (size_t h = 0; !unknown && h < id->n; h++)
        if (!chain_matches(globs, n, &id->holder[h], depth))
            return false;
    return !unknown;
}

/* Whether a rule's `binary` list admits the caller (a deny rule's: as a
 * limit); a rule made holder_only looks at the holders, not their
 * ancestors. */
bool rule_admits_caller(const struct rule *r, const struct identity *id)
{
    return binaries_match(r->binaries, r->n_binaries, r->kind == RULE_DENY,
                          r->holder_only ? 1 : IDENTITY_CHAIN_MAX, id);
}

bool budget_counts_caller(const struct budget *b, const struct identity *id)
{
    return binaries_match(b->binaries, b->n_binaries, true, IDENTITY_CHAIN_MAX, id);
}

/* ---- requests ----------------------------------------------------------------- */

static bool method_listed(const struct rule *r, const char *method, bool fold)
{
    if (r->n_methods == 0)
        return true;
    for (size_t i = 0; i < r->n_methods; i++)
        if (fold ? strcasecmp(r->methods[i], method) == 0 : strcmp(r->methods[i], method) == 0)
            return true;
    return false;
}

/* A deny rule's reading: the folded path, and the same without its last
 * slash, which most routers (Express, Rails, Spring before 6) take for the
 * path without it: "/admin/" must not dodge "/admin". */
static bool folded_listed(const char *pattern, const char *folded)
{
    size_t n = strlen(folded);
    return path_glob_match_fold(pattern, folded, n) ||
           (n > 1 && folded[n - 1] == '/' && path_glob_match_fold(pattern, folded, n - 1));
}

static bool path_listed(const struct rule *r, const struct request_view *rq, bool fold)
{
    if (r->n_paths == 0)
        return true;
    for (size_t i = 0; i < r->n_paths; i++)
        if (fold ? folded_listed(r->paths[i], rq->folded) : path_glob_match(r->paths[i], rq->path))
            return true;
    return false;
}

/* With a method override field, frameworks that honour it run another
 * method than the request line's, and others do not: both count.  A deny
 * rule takes either, an allow rule needs both listed. */
static bool methods_match(const struct rule *r, const struct request_view *rq, bool fold)
{
    bool line = method_listed(r, rq->method, fold);
    if (rq->override == NULL)
        return line;
    bool over = method_listed(r, rq->override, fold);
    return fold ? line || over : line && over;
}

/* Does the request fall under the rule's request keys (none: every request)? */
static bool request_matches(const struct rule *r, const struct request_view *rq)
{
    bool fold = r->kind == RULE_DENY;
    return rq == NULL || !r->request_keys ||
           (methods_match(r, rq, fold) && path_listed(r, rq, fold));
}

/* ---- the decision ----------------------------------------------------------------- */

struct matcher {
    const struct policy *p;
    const struct host *h;
    uint16_t port;
    const struct identity *id;
    const struct request_view *rq; /* NULL: the connection, where request keys do not deny */
    int missed;                    /* a rule that matched all but the process or the request */
    bool missed_request;           /* ... and it was the request */
};

static int first_match(struct matcher *m, enum rule_kind kind)
{
    for (size_t i = 0; i < m->p->n_rules; i++) {
        const struct rule *r = &m->p->rules[i];
        if (r->kind != kind || !rule_names_destination(r, m->h, m->port))
            continue;
        if (kind == RULE_DENY && m->rq == NULL && r->request_keys)
            continue; /* it denies requests, not the connection */
        bool process = rule_admits_caller(r, m->id), request = process && request_matches(r, m->rq);
        if (request)
            return (int)i;
        if (m->missed < 0 && kind != RULE_DENY) {
            m->missed = (int)i;
            m->missed_request = process;
        }
    }
    return -1;
}

static struct policy_decision decision(const struct policy *p, enum policy_action a, int i,
                                       const char *reason)
{
    const struct rule *r = i >= 0 ? &p->rules[i] : NULL;
    return (struct policy_decision){a, r ? r->name : NULL, reason, i, r ? r->message : NULL, false};
}

/* Why nothing allowed it, when a rule came close. */
static const char *missed_reason(const struct matcher *m)
{
    const struct identity *id = m->id;
    if (m->missed >= 0 && m->missed_request)
        return m->rq != NULL && !method_listed(&m->p->rules[m->missed], m->rq->method, false)
                   ? "the rule does not allow this method"
                   : "the rule does not allow this path";
    if (m->missed < 0)
        return m->rq ? "no rule allows this request" : "no rule allows this destination";
    if (id == NULL)
        return "a rule names binaries, and the calling process was not looked up";
    if (id->unresolved != NULL)
        return id->unresolved; /* deny with the reason, never allow on doubt */
    if (id->n > 1)
        return "the client's socket is shared by processes the rule does not all allow";
    return "the calling binary is not one the rule allows";
}

/* What an allowed connection becomes: a tunnel, or inspected. */
static enum policy_action allowed(const struct matcher *m)
{
    return m->rq == NULL && policy_inspects(m->p, m->h, m->port) ? ACTION_INSPECT : ACTION_ALLOW;
}

/* A would-be denial, let through when audit says so. */
static void deny_or_audit(const struct matcher *m, int i, bool rule_audit, const char *reason,
                          struct policy_decision *out)
{
    *out = decision(m->p, ACTION_DENY, i, reason);
    if (rule_audit || m->p->settings.audit) {
        out->action = allowed(m);
        out->audit = true;
    }
}

static void decide(struct matcher *m, struct policy_decision *out)
{
    const struct policy *p = m->p;
    int i = first_match(m, RULE_DENY);
    if (i >= 0) {
        const struct identity *id = m->id;
        const char *why = "denied by rule";
        if (p->rules[i].n_binaries > 0 && (id == NULL || id->unresolved != NULL))
            why = id ? id->unresolved : "denied by rule: the calling program is not known";
        return deny_or_audit(m, i, p->rules[i].audit, why, out);
    }
    if ((i = first_match(m, RULE_INTERCEPT)) >= 0) {
        *out = decision(p, ACTION_INTERCEPT, i, "inference host: intercepted");
        return;
    }
    if ((i = first_match(m, RULE_ALLOW)) >= 0) {
        *out = decision(p, allowed(m), i, "allowed by rule");
        return;
    }
    bool rule_audit = m->missed >= 0 && m->missed_request && p->rules[m->missed].audit;
    deny_or_audit(m, m->missed, rule_audit, missed_reason(m), out);
    if (m->missed >= 0 && !m->missed_request)
        out->message = NULL; /* not the rule's kind of denial: its process did not match */
}

bool policy_wants_identity(const struct policy *p, const struct host *h, uint16_t port)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (p->rules[i].n_binaries > 0 && rule_names_destination(&p->rules[i], h, port))
            return true;
    for (size_t i = 0; i < p->n_secrets; i++)
        if (p->secrets[i].bind.n_binaries > 0 &&
            rule_names_destination(&p->secrets[i].bind, h, port))
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
    struct matcher m = {p, h, port, id, NULL, -1, false};
    decide(&m, out);
}

void policy_decide_request(const struct policy *p, const struct host *h, uint16_t port,
                           const struct identity *id, const struct request_view *rq,
                           struct policy_decision *out)
{
    struct matcher m = {p, h, port, id, rq, -1, false};
    decide(&m, out);
}

bool policy_inspects(const struct policy *p, const struct host *h, uint16_t port)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (p->rules[i].request_keys && rule_names_destination(&p->rules[i], h, port))
            return true;
    /* a secret's hosts on every port: where its value may go, and where its
     * placeholder must be caught going to the wrong port */
    for (size_t i = 0; i < p->n_secrets; i++)
        if (hostset_match(&p->secrets[i].bind.hosts, h))
            return true;
    return false;
}

bool policy_uses_tls(const struct policy *p)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (p->rules[i].kind == RULE_INTERCEPT || p->rules[i].request_keys)
            return true;
    return p->n_secrets > 0;
}

/* ---- addresses -------------------------------------------------------------------- */

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
    if (d->rule_index < 0 || p->rules[d->rule_index].kind == RULE_DENY)
        return false; /* an audited denial reaches public addresses only */
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
        return -1; /* address checks are never relaxed by audit */
    /* an IPv6 form carrying an IPv4 address is judged by that address too */
    bool also_v4 = sa->sa_family == AF_INET6 && addr_embedded_v4(sa, &v4.sin_addr) &&
                   address_host((const struct sockaddr *)&v4, &carried);
    for (size_t i = 0; i < p->n_rules; i++) {
        const struct rule *r = &p->rules[i];
        if (r->kind != RULE_DENY || r->request_keys || !ports_match(r->ports, r->n_ports, port) ||
            !rule_admits_caller(r, id))
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
