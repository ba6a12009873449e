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

enum section { SEC_NONE, SEC_PROXY, SEC_RULE, SEC_BAD };

enum vtype { V_LISTEN, V_UINT, V_DURATION, V_BOOL, V_LOGFMT, V_LOGLVL };

struct proxy_key {
    const char *name;
    enum vtype type;
    size_t off;
    unsigned min, max;
};

#define S(field) offsetof(struct proxy_settings, field)
static const struct proxy_key proxy_keys[] = {
    {"listen", V_LISTEN, 0, 0, 0},
    {"workers", V_UINT, S(workers), 1, 4096},
    {"max_workers", V_UINT, S(max_workers), 1, 16384},
    {"queue", V_UINT, S(queue), 1, 1u << 20},
    {"header_timeout", V_DURATION, S(header_timeout_ms), 1, 0},
    {"connect_timeout", V_DURATION, S(connect_timeout_ms), 1, 0},
    {"dns_timeout", V_DURATION, S(dns_timeout_ms), 1, 0},
    {"idle_timeout", V_DURATION, S(idle_timeout_ms), 1, 0},
    {"shutdown_timeout", V_DURATION, S(shutdown_timeout_ms), 0, 0},
    {"log_format", V_LOGFMT, S(log_format), 0, 0},
    {"log_level", V_LOGLVL, S(log_level), 0, 0},
    {"unsafe_allow_loopback", V_BOOL, S(unsafe_allow_loopback), 0, 0},
};
#undef S
#define N_PROXY_KEYS (sizeof(proxy_keys) / sizeof(proxy_keys[0]))

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
    size_t rule;                      /* index of the open rule */
    int proxy_line;                   /* 0 until [proxy] is seen */
    int proxy_key_line[N_PROXY_KEYS]; /* where each key was set */
    int rule_key_line[3];             /* host, port, allowed_ips of the open rule */
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

static bool rule_name_taken(const struct policy *p, const char *name)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (strcmp(p->rules[i].name, name) == 0)
            return true;
    return false;
}

static void open_rule(struct loader *L, enum rule_kind kind, const char *name)
{
    if (!valid_rule_name(name)) {
        problem(L, L->line, "invalid rule name '%s' (letters, digits, '-', '_', '.'; < 64)", name);
        return;
    }
    if (rule_name_taken(L->p, name)) {
        problem(L, L->line, "duplicate rule name '%s'", name);
        return;
    }
    if (L->p->n_rules >= MAX_RULES) {
        problem(L, L->line, "too many rules (at most %d)", MAX_RULES);
        return;
    }
    struct rule *grown = realloc(L->p->rules, (L->p->n_rules + 1) * sizeof(*grown));
    if (grown == NULL) {
        problem(L, L->line, "out of memory");
        return;
    }
    L->p->rules = grown;
    L->rule = L->p->n_rules++;
    struct rule *r = &grown[L->rule];
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    r->line = L->line;
    snprintf(r->name, sizeof(r->name), "%s", name);
    memset(L->rule_key_line, 0, sizeof(L->rule_key_line));
    L->sec = SEC_RULE;
}

static void open_section(struct loader *L, char *head)
{
    char kind[32] = "", name[256] = "", extra[2];
    int n = sscanf(head, "%31s %255s %1s", kind, name, extra);
    L->sec = SEC_BAD; /* until proven good: its keys are then not reported again */
    if (n == 1 && strcmp(kind, "proxy") == 0) {
        if (L->proxy_line != 0) {
            problem(L, L->line, "duplicate [proxy] section (first at line %d)", L->proxy_line);
            return;
        }
        L->proxy_line = L->line;
        L->sec = SEC_PROXY;
    } else if (n == 2 && strcmp(kind, "deny") == 0) {
        open_rule(L, RULE_DENY, name);
    } else if (n == 2 && strcmp(kind, "allow") == 0) {
        open_rule(L, RULE_ALLOW, name);
    } else if (n >= 1 && (strcmp(kind, "deny") == 0 || strcmp(kind, "allow") == 0)) {
        problem(L, L->line, "[%s] needs exactly one rule name: [%s NAME]", kind, kind);
    } else {
        problem(L, L->line, "unknown section [%s] (expected proxy, deny NAME or allow NAME)", head);
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

static void set_proxy_value(struct loader *L, const struct proxy_key *k, const char *v)
{
    struct proxy_settings *s = &L->p->settings;
    char *field = (char *)s + k->off;
    unsigned u;
    bool b;
    switch (k->type) {
    case V_LISTEN:
        if (parse_sockaddr(v, &s->listen_addr, &s->listen_len) != 0 ||
            strlen(v) >= sizeof(s->listen)) {
            problem(L, L->line, "listen: '%s' is not an address (127.0.0.1:3128, [::1]:3128)", v);
            return;
        }
        snprintf(s->listen, sizeof(s->listen), "%s", v);
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
    case V_BOOL:
        if (parse_bool(v, &b) != 0) {
            problem(L, L->line, "%s: '%s' is not yes or no", k->name, v);
            return;
        }
        *(bool *)field = b;
        return;
    case V_LOGFMT:
        if (strcmp(v, "json") == 0)
            s->log_format = LOGF_JSON;
        else if (strcmp(v, "text") == 0)
            s->log_format = LOGF_TEXT;
        else
            problem(L, L->line, "log_format: '%s' is not json or text", v);
        return;
    case V_LOGLVL: {
        static const char *const names[] = {"debug", "info", "warn", "error"};
        for (unsigned i = 0; i < 4; i++) {
            if (strcmp(v, names[i]) == 0) {
                s->log_level = (enum log_level)i;
                return;
            }
        }
        problem(L, L->line, "log_level: '%s' is not debug, info, warn or error", v);
        return;
    }
    }
}

static void proxy_key(struct loader *L, const char *name, const char *value)
{
    for (size_t i = 0; i < N_PROXY_KEYS; i++) {
        if (strcmp(proxy_keys[i].name, name) != 0)
            continue;
        if (L->proxy_key_line[i] != 0) {
            problem(L, L->line, "%s is set twice in [proxy] (first at line %d)", name,
                    L->proxy_key_line[i]);
            return;
        }
        L->proxy_key_line[i] = L->line;
        set_proxy_value(L, &proxy_keys[i], value);
        return;
    }
    problem(L, L->line, "unknown key '%s' in [proxy]", name);
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

static void rule_key(struct loader *L, const char *name, const char *value)
{
    static const char *const keys[] = {"host", "port", "allowed_ips"};
    struct rule *r = &L->p->rules[L->rule];
    size_t k = 0;
    while (k < 3 && strcmp(keys[k], name) != 0)
        k++;
    if (k == 3) {
        problem(L, L->line, "unknown key '%s' in [%s %s] (expected host, port, allowed_ips)", name,
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
    if (k == 0) {
        r->has_host = true;
        list_foreach(copy, add_host, &c);
    } else if (k == 1) {
        r->has_port = true;
        if (parse_ports(value, &r->ports, &r->n_ports, err, sizeof(err)) != 0)
            problem(L, L->line, "port: %s", err);
    } else if (r->kind == RULE_DENY) {
        problem(L, L->line, "allowed_ips has no meaning in a deny rule");
    } else {
        list_foreach(copy, add_allowed_ip, &c);
    }
    free(copy);
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct loader *L = user;
    (void)section; /* the reader already opened the section this key belongs to */
    if (value[0] == '\0' && L->sec != SEC_RULE) {
        problem(L, L->line, "'%s' has an empty value", name);
        return 1;
    }
    switch (L->sec) {
    case SEC_NONE:
        problem(L, L->line, "'%s' is outside any section", name);
        break;
    case SEC_PROXY:
        proxy_key(L, name, value);
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

static void set_defaults(struct proxy_settings *s)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->listen, sizeof(s->listen), "127.0.0.1:3128");
    parse_sockaddr(s->listen, &s->listen_addr, &s->listen_len);
    s->workers = 16;
    s->max_workers = 512;
    s->queue = 1024;
    s->header_timeout_ms = 10000;
    s->connect_timeout_ms = 10000;
    s->dns_timeout_ms = 5000;
    s->idle_timeout_ms = 600000;
    s->shutdown_timeout_ms = 30000;
    s->log_format = LOGF_JSON;
    s->log_level = LOGL_INFO;
}

static void finish(struct loader *L)
{
    struct proxy_settings *s = &L->p->settings;
    if (s->max_workers < s->workers) {
        problem(L, L->proxy_key_line[2] ? L->proxy_key_line[2] : L->proxy_key_line[1],
                "max_workers (%u) is below workers (%u)", s->max_workers, s->workers);
    }
    for (size_t i = 0; i < L->p->n_rules; i++) {
        struct rule *r = &L->p->rules[i];
        if (!r->has_host)
            problem(L, r->line, "rule '%s' has no host", r->name);
        if (!r->has_port) {
            /* allow rules open HTTPS unless told otherwise; deny rules close every port */
            r->ports = malloc(sizeof(*r->ports));
            if (r->ports == NULL) {
                problem(L, r->line, "out of memory");
                continue;
            }
            r->ports[0] = r->kind == RULE_DENY ? (struct port_range){1, 65535}
                                               : (struct port_range){443, 443};
            r->n_ports = 1;
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
    set_defaults(&L->p->settings);
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
        free(p->rules[i].ports);
        free(p->rules[i].allowed);
    }
    free(p->rules);
    free(p);
}

const struct proxy_settings *policy_settings(const struct policy *p)
{
    return &p->settings;
}

size_t policy_rule_count(const struct policy *p)
{
    return p->n_rules;
}
