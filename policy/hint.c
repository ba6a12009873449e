/*
 * hint.c - [allow] sections that would admit what the policy denied: the
 * `hint` of a 403 (the smallest section that admits that one request)
 * and the proposals of `egressd --suggest` (suggest.c), written by one
 * writer so that both read the same and both load.
 *
 * The writer makes every value one the loader takes back: a name that is
 * valid and not yet used; a binary only when it can be written as a list
 * item; methods only as the loader spells them; each path a glob matching
 * the path itself, a segment the loader would refuse (a comma, space,
 * '%', '?', '#', backslash) written as '*', which still matches it.  A
 * hint is only given where an allow rule can help: not when a deny rule
 * refused the request.
 */
#include "policy_int.h"

#include <stdio.h>
#include <string.h>

#define NAME_BASE_MAX (RULE_NAME_MAX - 8) /* room for a "-NN" that makes it unique */
#define HINT_PATH_MAX 256                 /* longer paths are hinted by their first segments */
#define FOLD_SEGMENTS 3

static bool name_used(const struct policy *p, const struct allow_proposal *a, const char *name)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (strcmp(p->rules[i].name, name) == 0)
            return true;
    for (size_t i = 0; i < a->n_taken; i++)
        if (strcmp(a->taken[i], name) == 0)
            return true;
    return false;
}

/* A rule name from base: the characters a name may hold, others '-'. */
void policy_rule_name_for(const struct policy *p, const struct allow_proposal *a, char *out,
                          size_t cap)
{
    char base[NAME_BASE_MAX + 1];
    size_t n = 0;
    for (const char *s = a->name; *s != '\0' && n < NAME_BASE_MAX; s++) {
        char ch = *s;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.';
        base[n++] = ok ? ch : '-';
    }
    base[n] = '\0';
    snprintf(out, cap, "%s", n > 0 ? base : "suggested");
    for (unsigned k = 2; name_used(p, a, out) && k < 100000; k++)
        snprintf(out, cap, "%s-%u", n > 0 ? base : "suggested", k);
}

/* Can s be one item of a rule's comma list as the loader reads it? */
static bool list_item_ok(const char *s)
{
    if (*s == '\0' || *s == ' ' || s[strlen(s) - 1] == ' ')
        return false;
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f || *q == ',' || (*q == ';' && q[-1] == ' '))
            return false;
    return true;
}

static bool binary_ok(const char *b)
{
    size_t stars = 0;
    for (const char *q = b; *q; q++)
        stars += *q == '*';
    return b[0] == '/' && stars == 0 && strlen(b) < IDENTITY_PATH_MAX && list_item_ok(b);
}

bool policy_method_ok(const char *m)
{
    size_t n = strlen(m);
    bool ok = n > 0 && n <= 32;
    for (const char *q = m; ok && *q; q++)
        ok = (*q >= 'A' && *q <= 'Z') || (*q == '-' && q > m);
    return ok;
}

/* A path as a glob the loader takes and that matches it: each segment the
 * loader would refuse becomes '*'. */
void policy_path_glob(const char *path, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return;
    for (const char *seg = path; *seg == '/' && o + 1 < cap;) {
        const char *end = strchr(seg + 1, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        bool plain = strcspn(seg, "?#% \t\\,") >= len;
        for (size_t k = 0; plain && k < len; k++)
            plain = (unsigned char)seg[k] >= 0x20 && seg[k] != 0x7f;
        int w = plain ? snprintf(out + o, cap - o, "%.*s", (int)len, seg)
                      : snprintf(out + o, cap - o, "/%s", len > 1 ? "*" : "");
        if (w < 0 || (size_t)w >= cap - o)
            break;
        o += (size_t)w;
        seg += len;
    }
    out[o] = '\0';
    size_t stars = 0;
    for (const char *q = out; *q; q++)
        stars += *q == '*';
    if (o == 0 || stars > PATH_STARS_MAX) /* the loader's bound: then any path */
        snprintf(out, cap, o == 0 ? "/" : "/**");
}

void policy_path_fold(const char *path, char *out, size_t cap)
{
    const char *p = path;
    int segments = 0;
    while (*p == '/' && segments < FOLD_SEGMENTS) {
        const char *end = strchr(p + 1, '/');
        p = end ? end : p + strlen(p);
        segments++;
    }
    size_t keep = (size_t)(p - path) + (*p == '/' && p[1] == '\0'); /* a trailing '/' stays */
    bool more = *p == '/' && p[1] != '\0';
    if (keep + 4 > cap) /* a segment too long for out: any path */
        snprintf(out, cap, "/**");
    else
        snprintf(out, cap, "%.*s%s", (int)keep, path, more ? "/**" : "");
    if (out[0] == '\0')
        snprintf(out, cap, "/");
}

static void put_list(char *buf, size_t len, const char *key, const char *const *items, size_t n)
{
    text_append(buf, len, "%s = ", key);
    for (size_t i = 0; i < n; i++)
        text_append(buf, len, "%s%s", i ? ", " : "", items[i]);
    text_append(buf, len, "\n");
}

int policy_allow_section(const struct policy *p, const struct allow_proposal *a, char *buf,
                         size_t len)
{
    char name[RULE_NAME_MAX];
    const char *methods[32];
    size_t n_methods = 0;
    policy_rule_name_for(p, a, name, sizeof(name));
    buf[0] = '\0';
    text_append(buf, len, "[allow %s]\n", name);
    put_list(buf, len, "host", a->hosts, a->n_hosts);
    text_append(buf, len, "port = ");
    for (size_t i = 0; i < a->n_ports; i++)
        text_append(buf, len, "%s%u", i ? ", " : "", a->ports[i]);
    text_append(buf, len, "\n");
    if (a->binary != NULL && binary_ok(a->binary))
        text_append(buf, len, "binary = %s\n", a->binary);
    for (size_t i = 0; i < a->n_methods && n_methods < 32; i++)
        if (policy_method_ok(a->methods[i]))
            methods[n_methods++] = a->methods[i];
    if (a->access != NULL)
        text_append(buf, len, "access = %s\n", a->access);
    else if (n_methods > 0 && n_methods == a->n_methods) /* one it cannot spell: any method */
        put_list(buf, len, "methods", methods, n_methods);
    if (a->n_paths > 0)
        put_list(buf, len, "paths", a->paths, a->n_paths);
    return strlen(buf) + 1 < len ? 0 : -1;
}

bool policy_hint(const struct policy *p, const struct host *h, uint16_t port,
                 const struct identity *id, const struct request_view *rq,
                 const struct policy_decision *d, char *buf, size_t len)
{
    char path[HINT_PATH_MAX + 8];
    const char *hosts[1] = {h->name}, *methods[1], *paths[1] = {path};
    uint16_t ports[1] = {port};
    buf[0] = '\0';
    if (d->action != ACTION_DENY || policy_rule_is_deny(p, d->rule_index))
        return false;
    struct allow_proposal a = {
        .name = h->name, .hosts = hosts, .n_hosts = 1, .ports = ports, .n_ports = 1};
    if (id != NULL && id->unresolved == NULL && id->n == 1 && id->holder[0].n > 0)
        a.binary = id->holder[0].chain[0];
    if (rq != NULL) {
        methods[0] = rq->method;
        a.methods = methods, a.n_methods = 1;
        if (strlen(rq->path) > HINT_PATH_MAX) {
            char folded[HINT_PATH_MAX];
            policy_path_fold(rq->path, folded, sizeof(folded));
            policy_path_glob(folded, path, sizeof(path));
        } else {
            policy_path_glob(rq->path, path, sizeof(path));
        }
        a.paths = paths, a.n_paths = 1;
    }
    if (policy_allow_section(p, &a, buf, len) != 0) {
        buf[0] = '\0';
        return false;
    }
    return true;
}

bool policy_rule_is_deny(const struct policy *p, int i)
{
    return i >= 0 && (size_t)i < p->n_rules && p->rules[i].kind == RULE_DENY;
}

bool policy_uses_identity(const struct policy *p)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (p->rules[i].n_binaries > 0)
            return true;
    return false;
}
