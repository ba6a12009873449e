/*
 * config.c - loading the INI file into a policy.
 *
 * inih splits lines into "key = value"; everything else is ours.  inih 55
 * does not tell a handler its line number, nor call it for a section header,
 * so we feed it through our own reader: the reader counts lines and sees
 * every section header first (so an empty or repeated section is noticed,
 * and each key lands in the section object the reader opened for it).
 * Nothing in the file is ignored: unknown sections and keys, repeated keys,
 * bad values and duplicate rule names are all errors, each reported once
 * with its line, and loading goes on so that one run shows every problem.
 */
#include "policy_int.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_FILE_MAX (64u << 20)
#define MAX_RULES       4096
#define SIZE_KEY_MAX    (1u << 30) /* 1 GiB: larger bodies are not inference traffic */

enum section { SEC_NONE, SEC_PROXY, SEC_TLS, SEC_INFERENCE, SEC_RULE, SEC_ROUTE, SEC_BAD };

enum vtype { V_LISTEN, V_ADMIN, V_UINT, V_DURATION, V_BOOL, V_LOGFMT, V_LOGLVL, V_PATH, V_SIZE };

struct key_spec {
    const char *name;
    enum vtype type;
    size_t off; /* in struct policy */
    unsigned min, max;
};

#define P(field) offsetof(struct policy, settings.field)
static const struct key_spec proxy_keys[] = {
    {"listen", V_LISTEN, 0, 0, 0},
    {"workers", V_UINT, P(workers), 1, 4096},
    {"max_workers", V_UINT, P(max_workers), 1, 16384},
    {"queue", V_UINT, P(queue), 1, 1u << 20},
    {"queue_timeout", V_DURATION, P(queue_timeout_ms), 1, 0},
    {"header_timeout", V_DURATION, P(header_timeout_ms), 1, 0},
    {"connect_timeout", V_DURATION, P(connect_timeout_ms), 1, 0},
    {"dns_timeout", V_DURATION, P(dns_timeout_ms), 1, 0},
    {"idle_timeout", V_DURATION, P(idle_timeout_ms), 1, 0},
    {"shutdown_timeout", V_DURATION, P(shutdown_timeout_ms), 0, 0},
    {"log_format", V_LOGFMT, P(log_format), 0, 0},
    {"log_level", V_LOGLVL, P(log_level), 0, 0},
    {"unsafe_allow_loopback", V_BOOL, P(unsafe_allow_loopback), 0, 0},
    {"admin", V_ADMIN, 0, 0, 0},
    {"sandbox_pid", V_UINT, P(sandbox_pid), 1, 4194304},
    {NULL, 0, 0, 0, 0},
};
#undef P
#define T(field) offsetof(struct policy, tls.field)
static const struct key_spec tls_keys[] = {
    {"ca_cert", V_PATH, T(ca_cert), 0, 0},
    {"ca_key", V_PATH, T(ca_key), 0, 0},
    {"bundle", V_PATH, T(bundle), 0, 0},
    {"upstream_ca", V_PATH, T(upstream_ca), 0, 0},
    {"cert_cache", V_UINT, T(cert_cache), 1, 65536},
    {NULL, 0, 0, 0, 0},
};
#undef T
#define I(field) offsetof(struct policy, inference.field)
static const struct key_spec inference_keys[] = {
    {"max_request_body", V_SIZE, I(max_request_body), 1, SIZE_KEY_MAX},
    {"max_response_body", V_SIZE, I(max_response_body), 1, SIZE_KEY_MAX},
    {"stream_idle_timeout", V_DURATION, I(stream_idle_timeout_ms), 1, 0},
    {"keepalive_timeout", V_DURATION, I(keepalive_timeout_ms), 1, 0},
    {NULL, 0, 0, 0, 0},
};
#undef I

#define MAX_SECTION_KEYS 16
#define MAX_ROUTES       256

struct loader {
    const char *file;
    const char *text;
    size_t pos, len;
    int line;
    bool at_line_start;
    policy_report_fn report;
    void *rctx;
    int errors;
    int last_error_line;
    struct policy *p;
    enum section sec;
    size_t rule;                       /* index of the open rule */
    size_t route;                      /* index of the open route */
    int section_line[3];               /* [proxy], [tls], [inference]: 0 until seen */
    int key_line[3][MAX_SECTION_KEYS]; /* where each of their keys was set */
    int rule_key_line[4];              /* host, port, allowed_ips, binary of the open rule */
    int route_key_line[8];
    bool route_has_endpoint[MAX_ROUTES]; /* said, well or badly: no second complaint */
    unsigned sections;                   /* headers seen, good or bad */
};

static void problem(struct loader *L, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(struct loader *L, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    L->errors++;
    L->last_error_line = line;
    if (L->report != NULL)
        L->report(L->rctx, L->file, line, msg);
}

/* ---- section headers (seen by the reader) ----------------------------- */

static bool valid_rule_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= RULE_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
            return false;
    return true;
}

static bool name_taken(const struct policy *p, const char *name)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (p->rules[i].kind != RULE_INTERCEPT && strcmp(p->rules[i].name, name) == 0)
            return true;
    return false;
}

static bool route_taken(const struct policy *p, const char *name)
{
    for (size_t i = 0; i < p->n_routes; i++)
        if (strcmp(p->routes[i].name, name) == 0)
            return true;
    return false;
}

/* Grow an array of n elements by one zeroed element; NULL when out of memory. */
static void *grow(void *arr, size_t n, size_t size)
{
    char *grown = realloc(arr, (n + 1) * size);
    if (grown != NULL)
        memset(grown + n * size, 0, size);
    return grown;
}

static void open_rule(struct loader *L, enum rule_kind kind, const char *name)
{
    if (kind != RULE_INTERCEPT && !valid_rule_name(name)) {
        problem(L, L->line, "invalid rule name '%s' (letters, digits, '-', '_', '.'; < 64)", name);
        return;
    }
    if (kind != RULE_INTERCEPT && name_taken(L->p, name)) {
        problem(L, L->line, "duplicate rule name '%s'", name);
        return;
    }
    if (L->p->n_rules >= MAX_RULES) {
        problem(L, L->line, "too many rules (at most %d)", MAX_RULES);
        return;
    }
    struct rule *grown = grow(L->p->rules, L->p->n_rules, sizeof(*grown));
    if (grown == NULL) {
        problem(L, L->line, "out of memory");
        return;
    }
    L->p->rules = grown;
    L->rule = L->p->n_rules++;
    struct rule *r = &grown[L->rule];
    r->kind = kind;
    r->line = L->line;
    snprintf(r->name, sizeof(r->name), "%.63s", name);
    memset(L->rule_key_line, 0, sizeof(L->rule_key_line));
    L->sec = kind == RULE_INTERCEPT ? SEC_INFERENCE : SEC_RULE;
}

static void open_route(struct loader *L, const char *name)
{
    if (!valid_rule_name(name)) {
        problem(L, L->line, "invalid route name '%s' (letters, digits, '-', '_', '.'; < 64)", name);
        return;
    }
    if (route_taken(L->p, name)) {
        problem(L, L->line, "duplicate route name '%s'", name);
        return;
    }
    if (L->p->n_routes >= MAX_ROUTES) {
        problem(L, L->line, "too many routes (at most %d)", MAX_ROUTES);
        return;
    }
    struct route *grown = grow(L->p->routes, L->p->n_routes, sizeof(*grown));
    if (grown == NULL) {
        problem(L, L->line, "out of memory");
        return;
    }
    L->p->routes = grown;
    L->route = L->p->n_routes++;
    snprintf(grown[L->route].name, sizeof(grown[L->route].name), "%.63s", name);
    grown[L->route].line = L->line;
    memset(L->route_key_line, 0, sizeof(L->route_key_line));
    L->sec = SEC_ROUTE;
}

/* [proxy], [tls] and [inference]: at most once each.  The caller opens the
 * section: [inference] is open only once its rule is. */
static bool open_single(struct loader *L, int which, const char *name)
{
    if (L->section_line[which] != 0) {
        problem(L, L->line, "duplicate [%s] section (first at line %d)", name,
                L->section_line[which]);
        return false;
    }
    L->section_line[which] = L->line;
    return true;
}

static void open_section(struct loader *L, char *head)
{
    char kind[32] = "", name[256] = "", extra[2];
    int n = sscanf(head, "%31s %255s %1s", kind, name, extra);
    bool named =
        strcmp(kind, "deny") == 0 || strcmp(kind, "allow") == 0 || strcmp(kind, "route") == 0;
    L->sec = SEC_BAD; /* until proven good: its keys are then not reported again */
    L->sections++;
    if (n == 1 && strcmp(kind, "proxy") == 0) {
        if (open_single(L, 0, kind))
            L->sec = SEC_PROXY;
    } else if (n == 1 && strcmp(kind, "tls") == 0) {
        if (open_single(L, 1, kind))
            L->sec = SEC_TLS;
    } else if (n == 1 && strcmp(kind, "inference") == 0) {
        if (open_single(L, 2, kind))
            open_rule(L, RULE_INTERCEPT, "inference");
    } else if (n == 2 && strcmp(kind, "deny") == 0) {
        open_rule(L, RULE_DENY, name);
    } else if (n == 2 && strcmp(kind, "allow") == 0) {
        open_rule(L, RULE_ALLOW, name);
    } else if (n == 2 && strcmp(kind, "route") == 0) {
        open_route(L, name);
    } else if (named) {
        problem(L, L->line, "[%s] needs exactly one name: [%s NAME]", kind, kind);
    } else {
        problem(L, L->line,
                "unknown section [%s] (expected proxy, tls, inference, deny NAME, allow NAME "
                "or route NAME)",
                head);
    }
}

/* Called for the first piece of every line, before inih parses it. */
static void line_start(struct loader *L, char *line)
{
    while (isspace((unsigned char)*line))
        line++;
    if (*line != '[')
        return;
    char *close = strchr(line, ']');
    if (close == NULL) {
        problem(L, L->line, "section header without ']'");
        L->sec = SEC_BAD;
        return;
    }
    char head[320];
    size_t n = (size_t)(close - line - 1);
    if (n >= sizeof(head))
        n = sizeof(head) - 1;
    memcpy(head, line + 1, n);
    head[n] = '\0';
    open_section(L, head);
}

static char *reader(char *str, int num, void *stream)
{
    struct loader *L = stream;
    if (L->pos >= L->len || num < 2)
        return NULL;
    size_t n = 0;
    bool starting = L->at_line_start;
    while (n < (size_t)num - 1 && L->pos < L->len) {
        char c = L->text[L->pos++];
        str[n++] = c;
        if (c == '\n')
            break;
    }
    str[n] = '\0';
    if (starting) {
        L->line++;
        line_start(L, str);
    }
    L->at_line_start = str[n - 1] == '\n';
    return str;
}

/* ---- keys -------------------------------------------------------------- */

static void set_value(struct loader *L, const struct key_spec *k, const char *v)
{
    struct proxy_settings *ps = &L->p->settings;
    char *field = (char *)L->p + k->off;
    unsigned u;
    uint64_t size;
    bool b;
    switch (k->type) {
    case V_LISTEN:
        if (parse_sockaddr(v, &ps->listen_addr, &ps->listen_len) != 0 ||
            strlen(v) >= sizeof(ps->listen)) {
            problem(L, L->line, "listen: '%s' is not an address (127.0.0.1:3128, [::1]:3128)", v);
            return;
        }
        snprintf(ps->listen, sizeof(ps->listen), "%s", v);
        return;
    case V_ADMIN:
        if ((parse_unix_sockaddr(v, &ps->admin_addr, &ps->admin_len) != 0 &&
             parse_sockaddr(v, &ps->admin_addr, &ps->admin_len) != 0) ||
            strlen(v) >= sizeof(ps->admin)) {
            ps->admin_len = 0;
            problem(
                L, L->line,
                "admin: '%s' is not an address (127.0.0.1:9128, or unix:/run/egressd/admin.sock)",
                v);
            return;
        }
        snprintf(ps->admin, sizeof(ps->admin), "%s", v);
        return;
    case V_UINT:
        if (parse_uint(v, k->min, k->max, &u) != 0) {
            problem(L, L->line, "%s: '%s' is not a whole number from %u to %u", k->name, v, k->min,
                    k->max);
            return;
        }
        *(unsigned *)field = u;
        return;
    case V_DURATION:
        if (parse_duration_ms(v, &u) != 0 || u < k->min) {
            problem(L, L->line, "%s: '%s' is not a duration (like 500ms, 10s, 5m, 1h)%s", k->name,
                    v, k->min ? " above zero" : "");
            return;
        }
        *(unsigned *)field = u;
        return;
    case V_SIZE:
        if (parse_size(v, &size) != 0 || size < k->min || size > k->max) {
            problem(L, L->line, "%s: '%s' is not a size from 1 byte to 1G (like 512K, 10M)",
                    k->name, v);
            return;
        }
        *(uint64_t *)field = size;
        return;
    case V_PATH:
        if (v[0] != '/' || strlen(v) >= 256) {
            problem(L, L->line, "%s: '%s' is not an absolute path (under 256 bytes)", k->name, v);
            return;
        }
        snprintf(field, 256, "%s", v);
        return;
    case V_BOOL:
        if (parse_bool(v, &b) != 0) {
            problem(L, L->line, "%s: '%s' is not yes or no", k->name, v);
            return;
        }
        *(bool *)field = b;
        return;
    case V_LOGFMT:
        if (strcmp(v, "json") == 0)
            ps->log_format = LOGF_JSON;
        else if (strcmp(v, "text") == 0)
            ps->log_format = LOGF_TEXT;
        else
            problem(L, L->line, "log_format: '%s' is not json or text", v);
        return;
    case V_LOGLVL: {
        static const char *const names[] = {"debug", "info", "warn", "error"};
        for (unsigned i = 0; i < 4; i++) {
            if (strcmp(v, names[i]) == 0) {
                ps->log_level = (enum log_level)i;
                return;
            }
        }
        problem(L, L->line, "log_level: '%s' is not debug, info, warn or error", v);
        return;
    }
    }
}

/* A key of [proxy], [tls] or [inference]; false when the table has no such key. */
static bool table_key(struct loader *L, int which, const struct key_spec *keys, const char *name,
                      const char *value)
{
    for (size_t i = 0; keys[i].name != NULL; i++) {
        if (strcmp(keys[i].name, name) != 0)
            continue;
        if (L->key_line[which][i] != 0) {
            problem(L, L->line, "%s is set twice (first at line %d)", name, L->key_line[which][i]);
            return true;
        }
        L->key_line[which][i] = L->line;
        set_value(L, &keys[i], value);
        return true;
    }
    return false;
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
        problem(c->L, c->L->line, "host '%s': %s", item, why);
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
        problem(c->L, c->L->line, "allowed_ips '%s': %s", item, why);
        return -1;
    }
    struct cidr *grown = realloc(c->r->allowed, (c->r->n_allowed + 1) * sizeof(*grown));
    if (grown == NULL) {
        problem(c->L, c->L->line, "out of memory");
        return -1;
    }
    c->r->allowed = grown;
    c->r->allowed[c->r->n_allowed++] = cidr;
    return 0;
}

/* A `binary` pattern: absolute, few stars, symlinks of its fixed part resolved
 * (so that /bin/curl and /usr/bin/curl are one binary). */
static int add_binary(void *vctx, const char *item)
{
    struct list_ctx *c = vctx;
    char fixed[IDENTITY_PATH_MAX], real[4096], out[IDENTITY_PATH_MAX];
    size_t stars = 0;
    for (const char *q = item; *q; q++)
        stars += *q == '*';
    if (item[0] != '/' || stars > 8 || strlen(item) >= sizeof(fixed)) {
        problem(c->L, c->L->line, "binary '%s': an absolute path or glob (at most 8 '*')", item);
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
    char **grown = realloc(c->r->binaries, (c->r->n_binaries + 1) * sizeof(*grown));
    if (grown == NULL || (grown[c->r->n_binaries] = strdup(item)) == NULL) {
        if (grown != NULL)
            c->r->binaries = grown;
        problem(c->L, c->L->line, "out of memory");
        return -1;
    }
    c->r->binaries = grown;
    c->r->n_binaries++;
    return 0;
}

static void rule_key(struct loader *L, const char *name, const char *value)
{
    static const char *const keys[] = {"host", "port", "allowed_ips", "binary"};
    struct rule *r = &L->p->rules[L->rule];
    size_t k = 0;
    while (k < 4 && strcmp(keys[k], name) != 0)
        k++;
    if (k == 4 || (k == 2 && r->kind == RULE_INTERCEPT)) {
        if (r->kind == RULE_INTERCEPT)
            problem(L, L->line,
                    "unknown key '%s' in [inference] (expected host, port, binary, "
                    "max_request_body, max_response_body, stream_idle_timeout, keepalive_timeout)",
                    name);
        else
            problem(L, L->line,
                    "unknown key '%s' in [%s %s] (expected host, port, allowed_ips, binary)", name,
                    r->kind == RULE_DENY ? "deny" : "allow", r->name);
        return;
    }
    if (L->rule_key_line[k] != 0) {
        problem(L, L->line, "%s is set twice in rule '%s' (first at line %d); use one list", name,
                r->name, L->rule_key_line[k]);
        return;
    }
    L->rule_key_line[k] = L->line;
    if (value[0] == '\0') {
        r->has_host |= k == 0; /* said once: not again as "no host" */
        problem(L, L->line, "'%s' has an empty value", name);
        return;
    }
    char *copy = strdup(value);
    struct list_ctx c = {L, r};
    char err[160];
    if (copy == NULL) {
        problem(L, L->line, "out of memory");
        return;
    }
    enum list_result lr = LIST_OK;
    if (k == 0) {
        r->has_host = true;
        lr = list_foreach(copy, add_host, &c);
    } else if (k == 1) {
        r->has_port = true;
        if (parse_ports(value, &r->ports, &r->n_ports, err, sizeof(err)) != 0)
            problem(L, L->line, "port: %s", err);
    } else if (k == 3) {
        lr = list_foreach(copy, add_binary, &c);
    } else if (r->kind == RULE_DENY) {
        problem(L, L->line, "allowed_ips has no meaning in a deny rule");
    } else {
        lr = list_foreach(copy, add_allowed_ip, &c);
    }
    if (lr == LIST_EMPTY_ITEM)
        problem(L, L->line, "%s: an empty item in the list (a stray comma?)", name);
    free(copy);
}

static int set_api_key_file(struct route *r, const char *path, char *err, size_t errlen)
{
    char buf[API_KEY_MAX + 1];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "api_key_file: cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    bool too_long = n == sizeof(buf) - 1;
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        buf[--n] = '\0';
    if (n == 0 || too_long || strpbrk(buf, "\r\n") != NULL) {
        snprintf(err, errlen, "api_key_file: %s must hold one key on one line", path);
        return -1;
    }
    r->api_key = strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    return r->api_key ? 0 : -1;
}

static int set_api_key_env(struct route *r, const char *var, char *err, size_t errlen)
{
    const char *v = getenv(var);
    if (v == NULL || *v == '\0' || strpbrk(v, "\r\n") != NULL || strlen(v) >= API_KEY_MAX) {
        snprintf(err, errlen, "api_key_env: environment variable %s is %s", var,
                 v == NULL || *v == '\0'    ? "not set"
                 : strlen(v) >= API_KEY_MAX ? "longer than 4095 bytes"
                                            : "not one line");
        return -1;
    }
    r->api_key = strdup(v);
    return r->api_key ? 0 : -1;
}

struct models_ctx {
    struct loader *L;
    struct route *r;
};

static int add_model_glob(void *vctx, const char *item)
{
    struct models_ctx *c = vctx;
    char **grown = realloc(c->r->models, (c->r->n_models + 1) * sizeof(*grown));
    if (grown == NULL) {
        problem(c->L, c->L->line, "models: out of memory");
        return -1;
    }
    c->r->models = grown; /* the old array is gone: never keep its pointer */
    if ((grown[c->r->n_models] = strdup(item)) == NULL) {
        problem(c->L, c->L->line, "models: out of memory");
        return -1;
    }
    c->r->n_models++;
    return 0;
}

static void route_value(struct loader *L, struct route *r, size_t k, const char *v)
{
    char err[400] = "";
    const char *why;
    switch (k) {
    case 0:
        if (parse_endpoint(v, r, &why) != 0)
            snprintf(err, sizeof(err), "endpoint '%s': %s", v, why);
        break;
    case 1:
        if (!strcmp(v, "openai"))
            r->provider = PROVIDER_OPENAI;
        else if (!strcmp(v, "anthropic"))
            r->provider = PROVIDER_ANTHROPIC;
        else if (!strcmp(v, "nvidia"))
            r->provider = PROVIDER_NVIDIA;
        else
            snprintf(err, sizeof(err), "provider: '%s' is not openai, anthropic or nvidia", v);
        break;
    case 2:
        parse_protocols(v, &r->protocols, err, sizeof(err));
        break;
    case 3:
        if (strlen(v) >= sizeof(r->model) || strpbrk(v, "\"\\") != NULL)
            snprintf(err, sizeof(err), "model: '%s' is too long or has quotes or backslashes", v);
        else
            snprintf(r->model, sizeof(r->model), "%s", v);
        break;
    case 4: {
        char *copy = strdup(v);
        struct models_ctx c = {L, r};
        if (copy != NULL && list_foreach(copy, add_model_glob, &c) == LIST_EMPTY_ITEM)
            snprintf(err, sizeof(err), "models: an empty item in the list (a stray comma?)");
        free(copy);
        break;
    }
    case 5:
    case 6:
        if (r->api_key != NULL)
            snprintf(err, sizeof(err), "give api_key_env or api_key_file, not both");
        else if (k == 5)
            set_api_key_env(r, v, err, sizeof(err));
        else
            set_api_key_file(r, v, err, sizeof(err));
        break;
    case 7:
        if (parse_duration_ms(v, &r->timeout_ms) != 0 || r->timeout_ms == 0)
            snprintf(err, sizeof(err), "timeout: '%s' is not a duration above zero", v);
        break;
    }
    if (err[0] != '\0')
        problem(L, L->line, "%s", err);
}

static void route_key(struct loader *L, const char *name, const char *value)
{
    static const char *const keys[] = {"endpoint", "provider",    "protocols",    "model",
                                       "models",   "api_key_env", "api_key_file", "timeout"};
    struct route *r = &L->p->routes[L->route];
    size_t k = 0;
    while (k < 8 && strcmp(keys[k], name) != 0)
        k++;
    if (k == 8) {
        problem(L, L->line,
                "unknown key '%s' in [route %s] (expected endpoint, provider, protocols, model, "
                "models, api_key_env, api_key_file, timeout)",
                name, r->name);
        return;
    }
    if (L->route_key_line[k] != 0) {
        problem(L, L->line, "%s is set twice in route '%s' (first at line %d)", name, r->name,
                L->route_key_line[k]);
        return;
    }
    L->route_key_line[k] = L->line;
    L->route_has_endpoint[L->route] |= k == 0;
    route_value(L, r, k, value);
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct loader *L = user;
    (void)section; /* the reader already opened the section this key belongs to */
    bool is_rule_key =
        L->sec == SEC_RULE ||
        (L->sec == SEC_INFERENCE &&
         (!strcmp(name, "host") || !strcmp(name, "port") || !strcmp(name, "binary")));
    if (value[0] == '\0' && !is_rule_key) {
        problem(L, L->line, "'%s' has an empty value", name);
        return 1;
    }
    switch (L->sec) {
    case SEC_NONE:
        problem(L, L->line, "'%s' is outside any section", name);
        break;
    case SEC_PROXY:
        if (!table_key(L, 0, proxy_keys, name, value))
            problem(L, L->line, "unknown key '%s' in [proxy]", name);
        break;
    case SEC_TLS:
        if (!table_key(L, 1, tls_keys, name, value))
            problem(L, L->line,
                    "unknown key '%s' in [tls] (expected ca_cert, ca_key, bundle, upstream_ca, "
                    "cert_cache)",
                    name);
        break;
    case SEC_INFERENCE:
        if (is_rule_key || !table_key(L, 2, inference_keys, name, value))
            rule_key(L, name, value);
        break;
    case SEC_ROUTE:
        route_key(L, name, value);
        break;
    case SEC_RULE:
        rule_key(L, name, value);
        break;
    case SEC_BAD:
        break; /* the section header was reported already */
    }
    return 1; /* always go on: we want every problem in one run */
}

/* ---- whole-file checks and entry points --------------------------------- */

static void set_defaults(struct policy *p)
{
    struct proxy_settings *s = &p->settings;
    snprintf(p->tls.ca_cert, sizeof(p->tls.ca_cert), "/var/lib/egressd/ca.pem");
    snprintf(p->tls.ca_key, sizeof(p->tls.ca_key), "/var/lib/egressd/ca.key");
    snprintf(p->tls.bundle, sizeof(p->tls.bundle), "/var/lib/egressd/ca-bundle.pem");
    snprintf(p->tls.upstream_ca, sizeof(p->tls.upstream_ca), "/etc/ssl/certs/ca-certificates.crt");
    p->tls.cert_cache = 256;
    p->inference.max_request_body = 10u << 20;
    p->inference.max_response_body = 32u << 20;
    p->inference.stream_idle_timeout_ms = 120000;
    p->inference.keepalive_timeout_ms = 60000;
    snprintf(s->listen, sizeof(s->listen), "127.0.0.1:3128");
    parse_sockaddr(s->listen, &s->listen_addr, &s->listen_len);
    s->workers = 16;
    s->max_workers = 16384;
    s->queue = 1024;
    s->queue_timeout_ms = 1000;
    s->header_timeout_ms = 10000;
    s->connect_timeout_ms = 10000;
    s->dns_timeout_ms = 5000;
    s->idle_timeout_ms = 600000;
    s->shutdown_timeout_ms = 30000;
    s->log_format = LOGF_JSON;
    s->log_level = LOGL_INFO;
}

static void finish_route(struct loader *L, struct route *r)
{
    static const unsigned openai_protocols =
        1u << PROTO_OPENAI_CHAT | 1u << PROTO_OPENAI_COMPLETIONS | 1u << PROTO_OPENAI_RESPONSES |
        1u << PROTO_OPENAI_EMBEDDINGS | 1u << PROTO_MODEL_DISCOVERY;
    if (!L->route_has_endpoint[r - L->p->routes])
        problem(L, r->line, "route '%s' has no endpoint", r->name);
    if (r->protocols == 0) /* what the provider's API speaks */
        r->protocols = r->provider == PROVIDER_ANTHROPIC
                           ? 1u << PROTO_ANTHROPIC_MESSAGES | 1u << PROTO_MODEL_DISCOVERY
                           : openai_protocols;
    if (r->timeout_ms == 0)
        r->timeout_ms = 60000;
}

static void finish(struct loader *L)
{
    struct proxy_settings *s = &L->p->settings;
    if (s->max_workers < s->workers) {
        problem(L, L->key_line[0][2] ? L->key_line[0][2] : L->key_line[0][1],
                "max_workers (%u) is below workers (%u)", s->max_workers, s->workers);
    }
    for (size_t i = 0; i < L->p->n_routes; i++)
        finish_route(L, &L->p->routes[i]);
    for (size_t i = 0; i < L->p->n_rules; i++) {
        struct rule *r = &L->p->rules[i];
        if (!r->has_host)
            problem(L, r->line, "rule '%s' has no host", r->name);
        if (!r->has_port) {
            r->ports = malloc(sizeof(*r->ports));
            if (r->ports == NULL) {
                problem(L, r->line, "out of memory");
                continue;
            }
            /* allow rules: HTTPS; deny rules: every port; [inference]: 443 and 80 */
            r->ports[0] = r->kind == RULE_DENY ? (struct port_range){1, 65535}
                                               : (struct port_range){443, 443};
            r->n_ports = 1;
            struct port_range *two =
                r->kind == RULE_INTERCEPT ? realloc(r->ports, 2 * sizeof(*two)) : NULL;
            if (two != NULL) {
                r->ports = two;
                r->ports[r->n_ports++] = (struct port_range){80, 80};
            }
        }
        hostset_finish(&r->hosts);
    }
}

static struct policy *load(struct loader *L)
{
    L->p = calloc(1, sizeof(*L->p));
    if (L->p == NULL) {
        problem(L, 0, "out of memory");
        return NULL;
    }
    atomic_init(&L->p->refs, 1);
    set_defaults(L->p);
    if (memchr(L->text, '\0', L->len) != NULL) {
        problem(L, 0, "the file contains a NUL byte");
        policy_unref(L->p);
        return NULL;
    }
    /* Debian's libinih exports its build options as globals (upstream has
     * them only as compile-time macros).  Heap lines that grow let a rule
     * list thousands of hosts on one line; multi-line values are off so an
     * indented line cannot silently extend a host list. */
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_initial_alloc = 4096;
    ini_max_line = (int)CONFIG_FILE_MAX;
    ini_allow_multiline = false;
    ini_stop_on_first_error = false;
    L->at_line_start = true;
    int rc = ini_parse_stream(reader, L, handler, L);
    if (rc == -2)
        problem(L, 0, "out of memory");
    else if (rc > 0 && rc != L->last_error_line)
        problem(L, rc, "syntax error (expected 'key = value' or '[section]')");
    if (L->sections == 0 && L->errors == 0) /* reload: never deny-all for a half-written file */
        problem(L, 0, "the file has no sections (empty, or written only in part?)");
    finish(L);
    if (L->errors > 0) {
        policy_unref(L->p);
        return NULL;
    }
    return L->p;
}

struct policy *policy_load_string(const char *text, policy_report_fn report, void *ctx)
{
    struct loader L = {
        .file = "<string>", .text = text, .len = strlen(text), .report = report, .rctx = ctx};
    return load(&L);
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (f == NULL || fstat(fileno(f), &st) != 0) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        if (f != NULL)
            fclose(f);
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (off_t)CONFIG_FILE_MAX) {
        snprintf(err, errlen, "not a regular file of at most 64 MiB");
        fclose(f);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    if (buf == NULL || ferror(f)) {
        snprintf(err, errlen, "%s", buf == NULL ? "out of memory" : "read error");
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

struct policy *policy_load_file(const char *path, policy_report_fn report, void *ctx)
{
    struct loader L = {.file = path, .report = report, .rctx = ctx};
    char err[128];
    char *text = read_file(path, &L.len, err, sizeof(err));
    if (text == NULL) {
        if (report != NULL)
            report(ctx, path, 0, err);
        return NULL;
    }
    L.text = text;
    struct policy *p = load(&L);
    free(text);
    return p;
}

struct policy *policy_ref(struct policy *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void policy_unref(struct policy *p)
{
    if (p == NULL || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < p->n_rules; i++) {
        hostset_free(&p->rules[i].hosts);
        for (size_t j = 0; j < p->rules[i].n_binaries; j++)
            free(p->rules[i].binaries[j]);
        free(p->rules[i].binaries);
        free(p->rules[i].ports);
        free(p->rules[i].allowed);
    }
    free(p->rules);
    for (size_t i = 0; i < p->n_routes; i++) {
        struct route *r = &p->routes[i];
        for (size_t j = 0; j < r->n_models; j++)
            free(r->models[j]);
        free(r->models);
        if (r->api_key != NULL) {
            explicit_bzero(r->api_key, strlen(r->api_key));
            free(r->api_key);
        }
    }
    free(p->routes);
    free(p);
}

const struct proxy_settings *policy_settings(const struct policy *p)
{
    return &p->settings;
}

const struct tls_settings *policy_tls(const struct policy *p)
{
    return &p->tls;
}

const struct inference_settings *policy_inference(const struct policy *p)
{
    return &p->inference;
}

size_t policy_rule_count(const struct policy *p)
{
    return p->n_rules;
}

bool policy_intercepts(const struct policy *p)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (p->rules[i].kind == RULE_INTERCEPT)
            return true;
    return false;
}

size_t policy_route_count(const struct policy *p)
{
    return p->n_routes;
}

const struct route *policy_route(const struct policy *p, size_t i)
{
    return &p->routes[i];
}
