/*
 * rulekeys.c - the [deny NAME] and [allow NAME] rules, and [inference],
 * which is an intercept rule with limits of its own.
 *
 * Each section of these kinds appends a rule to the policy (in file order,
 * which is the order allow rules are tried in).  Its keys are lists, parsed
 * item by item so that every bad item is reported; a rule that does not
 * say `port` gets its kind's ports when the load finishes.
 */
#include "policy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RULES    4096
#define SIZE_KEY_MAX (1u << 30) /* 1 GiB: larger bodies are not inference traffic */

enum rule_key {
    RULE_HOST,
    RULE_PORT,
    RULE_ALLOWED_IPS,
    RULE_BINARY,
    RULE_METHODS,
    RULE_ACCESS,
    RULE_PATHS,
    RULE_AUDIT,
    RULE_MESSAGE,
    RULE_KEYS
};

#define METHOD_MAX       32
#define RULE_MESSAGE_MAX 256

enum inference_key {
    INFERENCE_HOST,
    INFERENCE_PORT,
    INFERENCE_BINARY,
    INFERENCE_MAX_REQUEST_BODY,
    INFERENCE_MAX_RESPONSE_BODY,
    INFERENCE_STREAM_IDLE_TIMEOUT,
    INFERENCE_KEEPALIVE_TIMEOUT,
    INFERENCE_TIMEOUT,
    INFERENCE_KEYS
};

/* The rule a section opened; never kept, as opening the next rule moves it. */
static struct rule *rule_of(struct loader *L, const struct section *S)
{
    return &L->p->rules[S->index];
}

struct list_ctx {
    struct loader *L;
    struct rule *r;
};

static int add_host(void *vctx, const char *item)
{
    struct list_ctx *c = vctx;
    const char *why;
    if (hostset_add(&c->r->hosts, item, &why) != 0) {
        line_problem(c->L, "host '%s': %s", item, why);
        return -1;
    }
    return 0;
}

static int add_allowed_ip(void *vctx, const char *item)
{
    struct list_ctx *c = vctx;
    struct cidr cidr;
    const char *why;
    if (parse_cidr(item, &cidr, &why) != 0) {
        line_problem(c->L, "allowed_ips '%s': %s", item, why);
        return -1;
    }
    struct cidr *grown = realloc(c->r->allowed, (c->r->n_allowed + 1) * sizeof(*grown));
    if (grown == NULL) {
        line_problem(c->L, "out of memory");
        return -1;
    }
    c->r->allowed = grown;
    c->r->allowed[c->r->n_allowed++] = cidr;
    return 0;
}

/* A `binary` pattern: absolute, few stars, symlinks of its fixed part resolved
 * (so that /bin/curl and /usr/bin/curl are one binary). */
int binary_list_add(struct loader *L, char ***list, size_t *n, const char *item)
{
    char fixed[IDENTITY_PATH_MAX], real[4096], out[IDENTITY_PATH_MAX];
    size_t stars = 0;
    for (const char *q = item; *q; q++)
        stars += *q == '*';
    if (item[0] != '/' || stars > 8 || strlen(item) >= sizeof(fixed)) {
        line_problem(L, "binary '%s': an absolute path or glob (at most 8 '*')", item);
        return -1;
    }
    const char *star = strchr(item, '*');
    size_t cut =
        star ? (size_t)(memrchr(item, '/', (size_t)(star - item)) - (void *)item) : strlen(item);
    memcpy(fixed, item, cut);
    fixed[cut] = '\0';
    if (cut > 0 && realpath(fixed, real) != NULL &&
        snprintf(out, sizeof(out), "%s%s", real, item + cut) < (int)sizeof(out))
        item = out; /* a path that does not exist yet is kept as written */
    char **grown = realloc(*list, (*n + 1) * sizeof(*grown));
    if (grown == NULL || (grown[*n] = strdup(item)) == NULL) {
        if (grown != NULL)
            *list = grown;
        line_problem(L, "out of memory");
        return -1;
    }
    *list = grown;
    ++*n;
    return 0;
}

static int add_binary(void *vctx, const char *item)
{
    struct list_ctx *c = vctx;
    return binary_list_add(c->L, &c->r->binaries, &c->r->n_binaries, item);
}

/* Append a copy of s to a list of strings; -1 when out of memory (reported). */
static int push_copy(struct loader *L, char ***arr, size_t *n, const char *s)
{
    char **grown = realloc(*arr, (*n + 1) * sizeof(**arr));
    if (grown == NULL || (grown[*n] = strdup(s)) == NULL) {
        if (grown != NULL)
            *arr = grown;
        line_problem(L, "out of memory");
        return -1;
    }
    *arr = grown;
    (*n)++;
    return 0;
}

/* A method as HTTP spells it: methods are case-sensitive, so a lower-case
 * one is a mistake worth saying, not one to fold silently. */
static int add_method(void *vctx, const char *item)
{
    struct list_ctx *c = vctx;
    size_t n = strlen(item);
    bool token = n > 0 && n <= METHOD_MAX;
    for (const char *q = item; token && *q; q++)
        token = (*q >= 'A' && *q <= 'Z') || (*q == '-' && q > item);
    if (!token) {
        line_problem(c->L, "methods: '%s' is not a method (upper case, like GET or PROPFIND)",
                     item);
        return -1;
    }
    return push_copy(c->L, &c->r->methods, &c->r->n_methods, item);
}

/* A path glob: what a decoded path looks like, '*' within a segment and
 * '**' across them; no query (queries are not matched) and no escapes
 * (rules see decoded paths: %41 is A there). */
static int add_path(void *vctx, const char *item)
{
    struct list_ctx *c = vctx;
    size_t stars = 0;
    for (const char *q = item; *q; q++)
        stars += *q == '*';
    if (item[0] != '/' || strpbrk(item, "?#% \t\\") != NULL || stars > PATH_STARS_MAX ||
        strlen(item) >= GLOB_PATTERN_MAX) {
        line_problem(c->L,
                     "paths: '%s' is not a path glob (it starts with '/'; no query, '%%', space "
                     "or backslash; at most %d '*')",
                     item, PATH_STARS_MAX);
        return -1;
    }
    return push_copy(c->L, &c->r->paths, &c->r->n_paths, item);
}

static void set_methods(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    struct list_ctx c = {L, rule_of(L, S)};
    c.r->request_keys = true;
    key_list(L, k, v, add_method, &c);
}

/* The presets of DESIGN section 10. */
static void set_access(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    static const char *const read_only[] = {"GET", "HEAD", "OPTIONS", NULL};
    static const char *const read_write[] = {"GET", "HEAD",  "OPTIONS", "POST",
                                             "PUT", "PATCH", NULL};
    struct rule *r = rule_of(L, S);
    const char *const *preset = !strcmp(v, "read-only")    ? read_only
                                : !strcmp(v, "read-write") ? read_write
                                                           : NULL;
    (void)k;
    r->request_keys = true;
    if (preset == NULL && strcmp(v, "full") != 0) {
        line_problem(L, "access: '%s' is not read-only, read-write or full", v);
        return;
    }
    for (size_t i = 0; preset != NULL && preset[i] != NULL; i++)
        if (push_copy(L, &r->methods, &r->n_methods, preset[i]) != 0)
            return;
}

static void set_paths(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    struct list_ctx c = {L, rule_of(L, S)};
    c.r->request_keys = true;
    key_list(L, k, v, add_path, &c);
}

static void set_audit(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    (void)k;
    if (parse_bool(v, &rule_of(L, S)->audit) != 0)
        line_problem(L, "audit: '%s' is not yes or no", v);
}

static void set_message(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    struct rule *r = rule_of(L, S);
    (void)k;
    for (const char *q = v; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f) {
            line_problem(L, "message: control characters are not allowed");
            return;
        }
    if (strlen(v) >= RULE_MESSAGE_MAX)
        line_problem(L, "message: longer than %d bytes", RULE_MESSAGE_MAX - 1);
    else if ((r->message = strdup(v)) == NULL)
        line_problem(L, "out of memory");
}

void rule_key_host(struct loader *L, struct rule *r, const struct key_def *k, const char *v)
{
    struct list_ctx c = {L, r};
    key_list(L, k, v, add_host, &c);
}

void rule_key_port(struct loader *L, struct rule *r, const char *v)
{
    char err[160];
    if (parse_ports(v, &r->ports, &r->n_ports, err, sizeof(err)) != 0)
        line_problem(L, "port: %s", err);
}

void rule_key_binary(struct loader *L, struct rule *r, const struct key_def *k, const char *v)
{
    struct list_ctx c = {L, r};
    key_list(L, k, v, add_binary, &c);
}

static void set_host(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    rule_key_host(L, rule_of(L, S), k, v);
}

static void set_port(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    (void)k;
    rule_key_port(L, rule_of(L, S), v);
}

static void set_allowed_ips(struct loader *L, struct section *S, const struct key_def *k,
                            const char *v)
{
    struct list_ctx c = {L, rule_of(L, S)};
    if (c.r->kind == RULE_DENY)
        line_problem(L, "allowed_ips has no meaning in a deny rule");
    else
        key_list(L, k, v, add_allowed_ip, &c);
}

static void set_binary(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    rule_key_binary(L, rule_of(L, S), k, v);
}

static const struct key_def rule_keys[RULE_KEYS] = {
    [RULE_HOST] = {.name = "host", .type = V_CUSTOM, .parse = set_host, .flags = KEY_LIST},
    [RULE_PORT] = {.name = "port", .type = V_CUSTOM, .parse = set_port, .flags = KEY_LIST},
    [RULE_ALLOWED_IPS] = {.name = "allowed_ips",
                          .type = V_CUSTOM,
                          .parse = set_allowed_ips,
                          .flags = KEY_LIST},
    [RULE_BINARY] = {.name = "binary", .type = V_CUSTOM, .parse = set_binary, .flags = KEY_LIST},
    [RULE_METHODS] = {.name = "methods", .type = V_CUSTOM, .parse = set_methods, .flags = KEY_LIST},
    [RULE_ACCESS] = {.name = "access", .type = V_CUSTOM, .parse = set_access},
    [RULE_PATHS] = {.name = "paths", .type = V_CUSTOM, .parse = set_paths, .flags = KEY_LIST},
    [RULE_AUDIT] = {.name = "audit", .type = V_CUSTOM, .parse = set_audit},
    [RULE_MESSAGE] = {.name = "message", .type = V_CUSTOM, .parse = set_message},
};

#define I(field) offsetof(struct inference_settings, field)
static const struct key_def inference_keys[INFERENCE_KEYS] = {
    [INFERENCE_HOST] = {.name = "host", .type = V_CUSTOM, .parse = set_host, .flags = KEY_LIST},
    [INFERENCE_PORT] = {.name = "port", .type = V_CUSTOM, .parse = set_port, .flags = KEY_LIST},
    [INFERENCE_BINARY] = {.name = "binary",
                          .type = V_CUSTOM,
                          .parse = set_binary,
                          .flags = KEY_LIST},
    [INFERENCE_MAX_REQUEST_BODY] = {.name = "max_request_body",
                                    .type = V_SIZE,
                                    .off = I(max_request_body),
                                    .min = 1,
                                    .max = SIZE_KEY_MAX},
    [INFERENCE_MAX_RESPONSE_BODY] = {.name = "max_response_body",
                                     .type = V_SIZE,
                                     .off = I(max_response_body),
                                     .min = 1,
                                     .max = SIZE_KEY_MAX},
    [INFERENCE_STREAM_IDLE_TIMEOUT] = {.name = "stream_idle_timeout",
                                       .type = V_DURATION,
                                       .off = I(stream_idle_timeout_ms),
                                       .min = 1},
    [INFERENCE_KEEPALIVE_TIMEOUT] = {.name = "keepalive_timeout",
                                     .type = V_DURATION,
                                     .off = I(keepalive_timeout_ms),
                                     .min = 1},
    [INFERENCE_TIMEOUT] = {.name = "timeout", .type = V_DURATION, .off = I(timeout_ms), .min = 1},
};
#undef I

_Static_assert(RULE_KEYS <= SECTION_KEYS_MAX && INFERENCE_KEYS <= SECTION_KEYS_MAX,
               "a section's keys fit its line_of");

static bool open_rule(struct loader *L, struct section *S, enum rule_kind kind)
{
    struct policy *p = L->p;
    struct rule *grown =
        section_grow(L, S, p->rules, &p->n_rules, MAX_RULES, sizeof(*grown), "rules");
    if (grown == NULL)
        return false;
    p->rules = grown;
    struct rule *r = &grown[S->index];
    r->kind = kind;
    r->line = S->line;
    snprintf(r->name, sizeof(r->name), "%s", S->name);
    S->obj = r;
    return true;
}

static bool open_deny(struct loader *L, struct section *S)
{
    return open_rule(L, S, RULE_DENY);
}

static bool open_allow(struct loader *L, struct section *S)
{
    return open_rule(L, S, RULE_ALLOW);
}

/* Its host list is a rule's; its limits are the policy's. */
static bool open_inference(struct loader *L, struct section *S)
{
    if (!open_rule(L, S, RULE_INTERCEPT))
        return false;
    S->obj = &L->p->inference;
    return true;
}

/* allow rules: HTTPS; deny rules: every port; [inference]: 443 and 80 */
int rule_default_ports(struct rule *r)
{
    static const struct port_range deny[] = {{1, 65535}}, allow[] = {{443, 443}},
                                   intercept[] = {{443, 443}, {80, 80}};
    const struct port_range *ports = r->kind == RULE_DENY    ? deny
                                     : r->kind == RULE_ALLOW ? allow
                                                             : intercept;
    size_t n = r->kind == RULE_INTERCEPT ? 2 : 1;
    r->ports = malloc(n * sizeof(*r->ports));
    if (r->ports == NULL)
        return -1;
    memcpy(r->ports, ports, n * sizeof(*r->ports));
    r->n_ports = n;
    return 0;
}

static void finish_rule(struct loader *L, struct section *S, bool said_host, bool said_port)
{
    struct rule *r = rule_of(L, S);
    if (!said_host)
        load_problem(L, r->line, "rule '%s' has no host", r->name);
    if (!said_port && rule_default_ports(r) != 0) {
        load_problem(L, r->line, "out of memory");
        return;
    }
    hostset_finish(&r->hosts);
}

static void finish_deny_allow(struct loader *L, struct section *S)
{
    struct rule *r = rule_of(L, S);
    finish_rule(L, S, S->line_of[RULE_HOST] != 0, S->line_of[RULE_PORT] != 0);
    if (S->line_of[RULE_METHODS] != 0 && S->line_of[RULE_ACCESS] != 0)
        load_problem(L, S->line_of[RULE_ACCESS], "give methods or access, not both");
    if (r->audit && !r->request_keys)
        load_problem(L, S->line_of[RULE_AUDIT],
                     "audit applies to rules with methods, access or paths (for the whole "
                     "policy: [proxy] audit = yes)");
}

static void finish_inference(struct loader *L, struct section *S)
{
    finish_rule(L, S, S->line_of[INFERENCE_HOST] != 0, S->line_of[INFERENCE_PORT] != 0);
}

const struct section_kind deny_section = {
    .name = "deny",
    .named = true,
    .noun = "rule",
    .keys = rule_keys,
    .n_keys = RULE_KEYS,
    .stage = FINISH_RULES,
    .open = open_deny,
    .finish = finish_deny_allow,
};

const struct section_kind allow_section = {
    .name = "allow",
    .named = true,
    .noun = "rule",
    .keys = rule_keys,
    .n_keys = RULE_KEYS,
    .stage = FINISH_RULES,
    .open = open_allow,
    .finish = finish_deny_allow,
};

const struct section_kind inference_section = {
    .name = "inference",
    .noun = "rule",
    .keys = inference_keys,
    .n_keys = INFERENCE_KEYS,
    .stage = FINISH_RULES,
    .open = open_inference,
    .finish = finish_inference,
};

void rule_free(struct rule *r)
{
    hostset_free(&r->hosts);
    for (size_t j = 0; j < r->n_binaries; j++)
        free(r->binaries[j]);
    free(r->binaries);
    free(r->ports);
    free(r->allowed);
    for (size_t j = 0; j < r->n_methods; j++)
        free(r->methods[j]);
    free(r->methods);
    for (size_t j = 0; j < r->n_paths; j++)
        free(r->paths[j]);
    free(r->paths);
    free(r->message);
}
