/*
 * suggest.c - `egressd --suggest`: [allow] sections proposed for the
 * denials seen (from the denial record or a log), never written anywhere
 * by egressd itself.
 *
 * Each denial is first judged under the policy as it is now: one a deny
 * rule made, an SSRF or secret refusal (no allow rule helps there), or one
 * the policy now allows, is noted and not proposed.  The rest are grouped
 * by host: exact names, except that three or more denied subdomains of one
 * parent domain become "*.parent" (or "**.domain" for three or more at
 * mixed depths under one registrable domain), never a wildcard over a
 * public suffix.  A group's section merges its ports, names the program
 * when every denial came from the same one, and for inspected requests
 * lists their methods (access = read-only when they are all reads) and
 * paths (as the record folds them).  Groups come out most denied first,
 * each with a note of what it comes from; hint.c writes the sections.
 */
#include "policy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_MIN     3  /* denied subdomains that make a wildcard */
#define LIST_MAX      32 /* methods or paths in one proposal; more paths: any path */
#define PORTS_MAX     64
#define NOTE_ITEMS    8
#define SECTION_MAX   (16 * 1024)
#define NOTE_MAX      1024
#define SUGGEST_PATHS 512

/* One denial to propose a rule for. */
struct cand {
    const struct denial_seen *s;
    size_t host; /* index of its host among the distinct ones */
    int group;
};

/* A distinct host and the group it falls in. */
struct dhost {
    const char *name;
    const char *parent; /* without its first label; NULL for IPs and one-label names */
    const char *reg;    /* registrable domain; NULL when none */
    int group;          /* -1 until grouped */
};

struct group {
    char pattern[POLICY_HOST_MAX + 4]; /* "*.p", "**.d", or the host */
    const char *domain;                /* what the pattern covers (the host itself) */
    const char *apex;                  /* the domain itself, when it was denied too */
    unsigned long long count;
};

struct suggestion {
    const struct policy *p;
    struct cand *c;
    size_t nc;
    struct dhost *h;
    size_t nh;
    struct group *g;
    size_t ng;
    const char **taken; /* names given so far */
    size_t n_taken;
    char (*names)[RULE_NAME_MAX];
};

/* ---- registrable domains ------------------------------------------------------ */

static size_t labels(const char *name)
{
    size_t n = 1;
    for (const char *q = name; *q; q++)
        n += *q == '.';
    return n;
}

/* The start of the last k labels of name. */
static const char *last_labels(const char *name, size_t k)
{
    const char *p = name + strlen(name);
    for (size_t seen = 0; p > name; p--)
        if (p[-1] == '.' && ++seen == k)
            break;
    return p;
}

/* A two-letter country code's common second levels (co.uk, com.au, ...). */
static bool country_second_level(const char *name)
{
    static const char *const sld[] = {"co", "com", "net", "org", "gov", "edu", "ac",
                                      "or", "ne",  "go",  "gv",  "mil", "ltd", "plc"};
    const char *tld = last_labels(name, 1), *second = last_labels(name, 2);
    size_t len = (size_t)(tld - second); /* the second level and its dot */
    if (labels(name) < 2 || strlen(tld) != 2)
        return false;
    for (size_t i = 0; i < sizeof(sld) / sizeof(sld[0]); i++)
        if (strlen(sld[i]) + 1 == len && strncmp(second, sld[i], len - 1) == 0)
            return true;
    return false;
}

const char *policy_registrable(const char *name)
{
    size_t need = country_second_level(name) ? 3 : 2, have = labels(name);
    if (have < need || strchr(name, ':') != NULL)
        return NULL;
    return last_labels(name, need);
}

/* ---- judging each denial under the policy now ---------------------------------- */

/* A request as the record keeps it: its folded path, without the double
 * star that stands for what followed. */
static void request_of(const struct denial_seen *s, char *path, char *folded, size_t cap,
                       struct request_view *rq)
{
    size_t n = strlen(s->path);
    if (n >= 3 && strcmp(s->path + n - 3, "/**") == 0)
        n -= 3;
    snprintf(path, cap, "%.*s", (int)n, n ? s->path : "/");
    for (size_t i = 0; (folded[i] = path[i]) != '\0'; i++)
        if (folded[i] >= 'A' && folded[i] <= 'Z')
            folded[i] = (char)(folded[i] | 0x20);
    *rq = (struct request_view){s->method, path, folded, NULL};
}

/* What the policy says now; NULL when a rule should be proposed, else
 * why not (into why). */
static const char *judge(const struct policy *p, const struct denial_seen *s, char *why, size_t cap)
{
    struct host h;
    const char *err;
    char spelled[POLICY_HOST_MAX + 3], path[SUGGEST_PATHS], folded[SUGGEST_PATHS];
    if (strcmp(s->stage, "ssrf") == 0)
        return "resolves to an address no allow rule opens (allowed_ips may, for private ones)";
    if (strcmp(s->stage, "secret") == 0)
        return "a secret refused for this host or program: see its [secret] section";
    snprintf(spelled, sizeof(spelled), strchr(s->host, ':') ? "[%s]" : "%s", s->host);
    if (host_parse(spelled, strlen(spelled), &h, &err) != 0)
        return err;
    struct identity *id = NULL;
    if (s->binary != NULL && ((id = identity_new()) == NULL || identity_add_holder(id, 0) != 0 ||
                              identity_add_exe(id, 0, s->binary) != 0)) {
        identity_free(id);
        return "out of memory";
    }
    struct policy_decision d;
    struct request_view rq;
    if (s->method != NULL && s->path != NULL) {
        request_of(s, path, folded, sizeof(path), &rq);
        policy_decide_request(p, &h, s->port, id, &rq, &d);
    } else {
        policy_decide_as(p, &h, s->port, id, &d);
    }
    identity_free(id);
    if (d.action != ACTION_DENY)
        snprintf(why, cap, "now allowed (rule %s)", d.rule ? d.rule : "?");
    else if (policy_rule_is_deny(p, d.rule_index))
        snprintf(why, cap, "denied by deny rule %s: an allow rule would not help", d.rule);
    else
        return NULL;
    return why;
}

/* ---- grouping ---------------------------------------------------------------------- */

/* A key to sort distinct hosts by, and the host's index. */
struct keyed {
    const char *key;
    size_t i;
};

static int by_key(const void *a, const void *b)
{
    return strcmp(((const struct keyed *)a)->key, ((const struct keyed *)b)->key);
}

static int by_host(const void *a, const void *b)
{
    return strcmp(((const struct cand *)a)->s->host, ((const struct cand *)b)->s->host);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct dhost *)a)->name, ((const struct dhost *)b)->name);
}

static int by_group(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    return x->group < y->group ? -1 : x->group > y->group;
}

/* A new group named pattern; its index, or -1 when out of memory. */
static int group_new(struct suggestion *sg, const char *fmt, const char *domain)
{
    struct group *g = realloc(sg->g, (sg->ng + 1) * sizeof(*g));
    if (g == NULL)
        return -1;
    sg->g = g;
    g = &sg->g[sg->ng];
    memset(g, 0, sizeof(*g));
    snprintf(g->pattern, sizeof(g->pattern), fmt, domain);
    g->domain = domain;
    return (int)sg->ng++;
}

/* Runs of GROUP_MIN or more hosts sharing a key become one group each. */
static int group_runs(struct suggestion *sg, struct keyed *k, size_t n, const char *fmt)
{
    qsort(k, n, sizeof(*k), by_key);
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && strcmp(k[j].key, k[i].key) == 0; j++)
            ;
        if (j - i < GROUP_MIN)
            continue;
        int g = group_new(sg, fmt, k[i].key);
        if (g < 0)
            return -1;
        for (size_t m = i; m < j; m++)
            sg->h[k[m].i].group = g;
    }
    return 0;
}

/* Wildcards: three or more names under one parent ("*.parent"), then
 * three or more, at any depth, under one registrable domain ("**."); the
 * domain itself joins its group when it was denied too. */
static int group_hosts(struct suggestion *sg)
{
    struct keyed *k = malloc((sg->nh + 1) * sizeof(*k));
    size_t n = 0;
    if (k == NULL)
        return -1;
    for (size_t i = 0; i < sg->nh; i++)
        if (sg->h[i].parent != NULL && policy_registrable(sg->h[i].parent) != NULL)
            k[n++] = (struct keyed){sg->h[i].parent, i};
    int rc = group_runs(sg, k, n, "*.%s");
    n = 0;
    for (size_t i = 0; rc == 0 && i < sg->nh; i++)
        if (sg->h[i].group < 0 && sg->h[i].reg != NULL && strcmp(sg->h[i].reg, sg->h[i].name) != 0)
            k[n++] = (struct keyed){sg->h[i].reg, i};
    if (rc == 0)
        rc = group_runs(sg, k, n, "**.%s");
    free(k);
    for (size_t g = 0; rc == 0 && g < sg->ng; g++) {
        struct dhost key = {.name = sg->g[g].domain};
        struct dhost *apex = bsearch(&key, sg->h, sg->nh, sizeof(*sg->h), by_name);
        if (apex != NULL && apex->group < 0) {
            apex->group = (int)g;
            sg->g[g].apex = apex->name;
        }
    }
    for (size_t i = 0; rc == 0 && i < sg->nh; i++)
        if (sg->h[i].group < 0 && (sg->h[i].group = group_new(sg, "%s", sg->h[i].name)) < 0)
            rc = -1;
    return rc;
}

/* The denials to propose for (c), and their distinct hosts (h, by name). */
static int collect(struct suggestion *sg, const struct denial_seen *seen, size_t n)
{
    char why[160];
    if ((sg->c = malloc((n + 1) * sizeof(*sg->c))) == NULL ||
        (sg->h = malloc((n + 1) * sizeof(*sg->h))) == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (judge(sg->p, &seen[i], why, sizeof(why)) == NULL)
            sg->c[sg->nc++] = (struct cand){.s = &seen[i]};
    qsort(sg->c, sg->nc, sizeof(*sg->c), by_host);
    for (size_t i = 0; i < sg->nc; i++) {
        const char *name = sg->c[i].s->host;
        if (sg->nh == 0 || strcmp(sg->h[sg->nh - 1].name, name) != 0) {
            /* an IP literal, or a name with no registrable domain, is never grouped */
            const char *dot = strchr(name, '.'), *reg = policy_registrable(name);
            char last = name[strlen(name) - 1];
            bool lone = strchr(name, ':') != NULL || reg == NULL || (last >= '0' && last <= '9');
            sg->h[sg->nh++] =
                (struct dhost){name, lone || dot == NULL ? NULL : dot + 1, lone ? NULL : reg, -1};
        }
        sg->c[i].host = sg->nh - 1;
    }
    return 0;
}

/* ---- one proposal -------------------------------------------------------------------- */

/* What a group's denials ask for, merged. */
struct merged {
    uint16_t ports[PORTS_MAX];
    size_t n_ports;
    const char *binary;
    bool one_binary, requests, reads_only, any_path, ports_cut;
    const char *methods[LIST_MAX];
    size_t n_methods;
    char paths[LIST_MAX][SUGGEST_PATHS];
    const char *path_list[LIST_MAX];
    size_t n_paths;
};

static bool listed(const char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

static void add_port(struct merged *m, uint16_t port)
{
    size_t i = 0;
    while (i < m->n_ports && m->ports[i] < port)
        i++;
    if (i < m->n_ports && m->ports[i] == port)
        return;
    if (m->n_ports == PORTS_MAX) {
        m->ports_cut = true; /* said in the note */
        return;
    }
    memmove(&m->ports[i + 1], &m->ports[i], (m->n_ports - i) * sizeof(m->ports[0]));
    m->ports[i] = port;
    m->n_ports++;
}

static void add_request(struct merged *m, const struct denial_seen *s)
{
    char glob[SUGGEST_PATHS];
    m->requests = true;
    m->reads_only =
        m->reads_only && (strcmp(s->method, "GET") == 0 || strcmp(s->method, "HEAD") == 0 ||
                          strcmp(s->method, "OPTIONS") == 0);
    if (!listed(m->methods, m->n_methods, s->method) && m->n_methods < LIST_MAX)
        m->methods[m->n_methods++] = s->method;
    policy_path_glob(s->path, glob, sizeof(glob));
    if (listed(m->path_list, m->n_paths, glob))
        return;
    if (m->n_paths == LIST_MAX) {
        m->any_path = true; /* too many to list: any path, said in the note */
        return;
    }
    snprintf(m->paths[m->n_paths], SUGGEST_PATHS, "%s", glob);
    m->path_list[m->n_paths] = m->paths[m->n_paths];
    m->n_paths++;
}

static void merge(struct merged *m, const struct cand *c, size_t n)
{
    memset(m, 0, sizeof(*m));
    m->one_binary = m->reads_only = true;
    for (size_t i = 0; i < n; i++) {
        const struct denial_seen *s = c[i].s;
        add_port(m, s->port);
        if (s->binary == NULL || (m->binary != NULL && strcmp(m->binary, s->binary) != 0))
            m->one_binary = false;
        m->binary = m->binary ? m->binary : s->binary;
        if (s->method != NULL && s->path != NULL)
            add_request(m, s);
    }
}

/* "; 7 denials: a.example.org:443 (3), GET /x on b.example.org:443 (4)" */
static void note_for(const struct cand *c, size_t n, unsigned long long total,
                     const struct merged *m, char *note, size_t cap)
{
    snprintf(note, cap, "%llu denial%s:", total, total == 1 ? "" : "s");
    for (size_t i = 0; i < n && i < NOTE_ITEMS; i++) {
        const struct denial_seen *s = c[i].s;
        if (s->method != NULL && s->path != NULL)
            text_append(note, cap, "%s %s %.128s on", i ? "," : "", s->method, s->path);
        else if (i > 0)
            text_append(note, cap, ",");
        text_append(note, cap, " %s:%u (%llu)", s->host, s->port, s->count);
    }
    if (n > NOTE_ITEMS)
        text_append(note, cap, " and %zu more", n - NOTE_ITEMS);
    if (m->binary != NULL && m->one_binary)
        text_append(note, cap, "; all from %s", m->binary);
    if (m->any_path)
        text_append(note, cap, "; more than %d paths: any path proposed", LIST_MAX);
    if (m->ports_cut)
        text_append(note, cap, "; more than %d ports: the others not proposed", PORTS_MAX);
}

static int propose(struct suggestion *sg, const struct group *g, const struct cand *c, size_t n,
                   suggest_fn emit, void *ctx)
{
    struct merged *m = malloc(sizeof(*m));
    char *section = malloc(SECTION_MAX), note[NOTE_MAX];
    const char *hosts[2] = {g->pattern, g->apex};
    int rc = -1;
    if (m != NULL && section != NULL) {
        merge(m, c, n);
        struct allow_proposal a = {.name = g->domain,
                                   .hosts = hosts,
                                   .n_hosts = g->apex ? 2 : 1,
                                   .ports = m->ports,
                                   .n_ports = m->n_ports,
                                   .binary = m->one_binary ? m->binary : NULL,
                                   .taken = sg->taken,
                                   .n_taken = sg->n_taken};
        if (m->requests && m->reads_only)
            a.access = "read-only";
        else if (m->requests)
            a.methods = m->methods, a.n_methods = m->n_methods;
        if (m->requests && !m->any_path)
            a.paths = m->path_list, a.n_paths = m->n_paths;
        policy_rule_name_for(sg->p, &a, sg->names[sg->n_taken], RULE_NAME_MAX);
        sg->taken[sg->n_taken] = sg->names[sg->n_taken];
        sg->n_taken++;
        note_for(c, n, g->count, m, note, sizeof(note));
        if ((rc = policy_allow_section(sg->p, &a, section, SECTION_MAX)) == 0)
            emit(ctx, section, note);
    }
    free(m);
    free(section);
    return rc;
}

/* ---- all of it --------------------------------------------------------------------------- */

/* Groups by pointer: most denied first, then by pattern. */
static int group_order(const void *a, const void *b)
{
    const struct group *x = *(const struct group *const *)a, *y = *(const struct group *const *)b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->pattern, y->pattern);
}

/* What is not proposed, and why: one note per denial. */
static void notes(const struct policy *p, const struct denial_seen *seen, size_t n, suggest_fn emit,
                  void *ctx)
{
    char why[160], note[NOTE_MAX];
    for (size_t i = 0; i < n; i++) {
        const struct denial_seen *s = &seen[i];
        const char *no = judge(p, s, why, sizeof(why));
        if (no == NULL)
            continue;
        bool rq = s->method != NULL && s->path != NULL;
        snprintf(note, sizeof(note), "%s%s%.128s%s%s:%u (%llu): %s", rq ? s->method : "",
                 rq ? " " : "", rq ? s->path : "", rq ? " on " : "", s->host, s->port, s->count,
                 no);
        emit(ctx, NULL, note);
    }
}

/* The proposals, group by group, most denied first. */
static int propose_all(struct suggestion *sg, suggest_fn emit, void *ctx)
{
    const struct group **order = malloc((sg->ng + 1) * sizeof(*order));
    size_t *start = malloc((sg->ng + 1) * sizeof(*start));
    sg->taken = malloc((sg->ng + 1) * sizeof(*sg->taken));
    sg->names = malloc((sg->ng + 1) * sizeof(*sg->names));
    int rc = order && start && sg->taken && sg->names ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < sg->nc; i++) {
        sg->c[i].group = sg->h[sg->c[i].host].group;
        sg->g[sg->c[i].group].count += sg->c[i].s->count;
    }
    if (rc == 0) {
        qsort(sg->c, sg->nc, sizeof(*sg->c), by_group);
        for (size_t g = 0, i = 0; g <= sg->ng; g++) {
            while (i < sg->nc && sg->c[i].group < (int)g)
                i++;
            start[g] = i;
        }
        for (size_t g = 0; g < sg->ng; g++)
            order[g] = &sg->g[g];
        qsort(order, sg->ng, sizeof(*order), group_order);
    }
    for (size_t k = 0; rc == 0 && k < sg->ng; k++) {
        size_t g = (size_t)(order[k] - sg->g);
        rc = propose(sg, order[k], &sg->c[start[g]], start[g + 1] - start[g], emit, ctx);
    }
    free(order);
    free(start);
    return rc;
}

void policy_suggest(const struct policy *p, const struct denial_seen *seen, size_t n,
                    suggest_fn emit, void *ctx)
{
    struct suggestion sg = {.p = p};
    if (collect(&sg, seen, n) != 0 || group_hosts(&sg) != 0 || propose_all(&sg, emit, ctx) != 0)
        emit(ctx, NULL, "out of memory: the proposals above are not all there are");
    notes(p, seen, n, emit, ctx);
    free(sg.c);
    free(sg.h);
    free(sg.g);
    free(sg.taken);
    free(sg.names);
}
