/*
 * config.c - loading the INI file into a policy.
 *
 * inih splits lines into "key = value"; everything else is ours.  inih 55
 * does not tell a handler its line number, nor call it for a section header,
 * so we feed it through our own reader: the reader counts lines and sees
 * every section header first (so an empty or repeated section is noticed,
 * and each key lands in the section the reader opened for it).
 *
 * A header names one of the section kinds listed below; the kind's table
 * says which keys it takes, and keys.c handles every key the same way.
 * Each kind lives with its keys: [proxy] and [tls] here, rules and
 * [inference] in rulekeys.c, routes in routekeys.c, budgets in
 * budgetkeys.c.  Sections are kept until the end, when each kind's finish
 * hook checks what a section needs as a whole (a rule without a host) and
 * fills in defaults.
 *
 * Nothing in the file is ignored: unknown sections and keys, repeated keys,
 * bad values and duplicate names are all errors, each reported once with
 * its line, and loading goes on so that one run shows every problem.
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

/* ---- [proxy] and [tls] ------------------------------------------------- */

enum proxy_key {
    PROXY_LISTEN,
    PROXY_WORKERS,
    PROXY_MAX_WORKERS,
    PROXY_QUEUE,
    PROXY_QUEUE_TIMEOUT,
    PROXY_HEADER_TIMEOUT,
    PROXY_CONNECT_TIMEOUT,
    PROXY_DNS_TIMEOUT,
    PROXY_IDLE_TIMEOUT,
    PROXY_SHUTDOWN_TIMEOUT,
    PROXY_LOG_FORMAT,
    PROXY_LOG_LEVEL,
    PROXY_UNSAFE_ALLOW_LOOPBACK,
    PROXY_ADMIN,
    PROXY_SANDBOX_PID,
    PROXY_AUDIT,
    PROXY_HINTS,
    PROXY_DENIAL_RECORD,
    PROXY_KEYS
};

enum tls_key { TLS_CA_CERT, TLS_CA_KEY, TLS_BUNDLE, TLS_UPSTREAM_CA, TLS_CERT_CACHE, TLS_KEYS };

static void set_listen(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    struct proxy_settings *ps = S->obj;
    (void)k;
    if (parse_sockaddr(v, &ps->listen_addr, &ps->listen_len) != 0 ||
        strlen(v) >= sizeof(ps->listen)) {
        line_problem(L, "listen: '%s' is not an address (127.0.0.1:3128, [::1]:3128)", v);
        return;
    }
    snprintf(ps->listen, sizeof(ps->listen), "%s", v);
}

static void set_admin(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    struct proxy_settings *ps = S->obj;
    (void)k;
    if ((parse_unix_sockaddr(v, &ps->admin_addr, &ps->admin_len) != 0 &&
         parse_sockaddr(v, &ps->admin_addr, &ps->admin_len) != 0) ||
        strlen(v) >= sizeof(ps->admin)) {
        ps->admin_len = 0;
        line_problem(
            L, "admin: '%s' is not an address (127.0.0.1:9128, or unix:/run/egressd/admin.sock)",
            v);
        return;
    }
    snprintf(ps->admin, sizeof(ps->admin), "%s", v);
}

static const char *const log_formats[] = {[LOGF_JSON] = "json", [LOGF_TEXT] = "text", NULL};
static const char *const log_levels[] = {
    [LOGL_DEBUG] = "debug",
    [LOGL_INFO] = "info",
    [LOGL_WARN] = "warn",
    [LOGL_ERROR] = "error",
    NULL,
};
_Static_assert(sizeof(enum log_format) == sizeof(int) && sizeof(enum log_level) == sizeof(int),
               "V_CHOICE writes an int");

#define P(field) offsetof(struct proxy_settings, field)
static const struct key_def proxy_keys[PROXY_KEYS] = {
    [PROXY_LISTEN] = {.name = "listen", .type = V_CUSTOM, .parse = set_listen},
    [PROXY_WORKERS] = {.name = "workers", .type = V_UINT, .off = P(workers), .min = 1, .max = 4096},
    [PROXY_MAX_WORKERS] =
        {.name = "max_workers", .type = V_UINT, .off = P(max_workers), .min = 1, .max = 16384},
    [PROXY_QUEUE] = {.name = "queue", .type = V_UINT, .off = P(queue), .min = 1, .max = 1u << 20},
    [PROXY_QUEUE_TIMEOUT] = {.name = "queue_timeout",
                             .type = V_DURATION,
                             .off = P(queue_timeout_ms),
                             .min = 1},
    [PROXY_HEADER_TIMEOUT] = {.name = "header_timeout",
                              .type = V_DURATION,
                              .off = P(header_timeout_ms),
                              .min = 1},
    [PROXY_CONNECT_TIMEOUT] = {.name = "connect_timeout",
                               .type = V_DURATION,
                               .off = P(connect_timeout_ms),
                               .min = 1},
    [PROXY_DNS_TIMEOUT] = {.name = "dns_timeout",
                           .type = V_DURATION,
                           .off = P(dns_timeout_ms),
                           .min = 1},
    [PROXY_IDLE_TIMEOUT] = {.name = "idle_timeout",
                            .type = V_DURATION,
                            .off = P(idle_timeout_ms),
                            .min = 1},
    [PROXY_SHUTDOWN_TIMEOUT] = {.name = "shutdown_timeout",
                                .type = V_DURATION,
                                .off = P(shutdown_timeout_ms),
                                .min = 0},
    [PROXY_LOG_FORMAT] = {.name = "log_format",
                          .type = V_CHOICE,
                          .off = P(log_format),
                          .choices = log_formats},
    [PROXY_LOG_LEVEL] = {.name = "log_level",
                         .type = V_CHOICE,
                         .off = P(log_level),
                         .choices = log_levels},
    [PROXY_UNSAFE_ALLOW_LOOPBACK] = {.name = "unsafe_allow_loopback",
                                     .type = V_BOOL,
                                     .off = P(unsafe_allow_loopback)},
    [PROXY_ADMIN] = {.name = "admin", .type = V_CUSTOM, .parse = set_admin},
    [PROXY_SANDBOX_PID] =
        {.name = "sandbox_pid", .type = V_UINT, .off = P(sandbox_pid), .min = 1, .max = 4194304},
    [PROXY_AUDIT] = {.name = "audit", .type = V_BOOL, .off = P(audit)},
    [PROXY_HINTS] = {.name = "hints", .type = V_BOOL, .off = P(hints)},
    [PROXY_DENIAL_RECORD] = {.name = "denial_record",
                             .type = V_UINT,
                             .off = P(denial_record),
                             .min = 0,
                             .max = DENIAL_RECORD_MAX},
};
#undef P

#define PATH_IN_TLS(field)                                                                         \
    .type = V_PATH, .off = offsetof(struct tls_settings, field),                                   \
    .max = sizeof(((struct tls_settings *)0)->field)
static const struct key_def tls_keys[TLS_KEYS] = {
    [TLS_CA_CERT] = {.name = "ca_cert", PATH_IN_TLS(ca_cert)},
    [TLS_CA_KEY] = {.name = "ca_key", PATH_IN_TLS(ca_key)},
    [TLS_BUNDLE] = {.name = "bundle", PATH_IN_TLS(bundle)},
    [TLS_UPSTREAM_CA] = {.name = "upstream_ca", PATH_IN_TLS(upstream_ca)},
    [TLS_CERT_CACHE] = {.name = "cert_cache",
                        .type = V_UINT,
                        .off = offsetof(struct tls_settings, cert_cache),
                        .min = 1,
                        .max = 65536},
};
#undef PATH_IN_TLS

_Static_assert(PROXY_KEYS <= SECTION_KEYS_MAX && TLS_KEYS <= SECTION_KEYS_MAX,
               "a section's keys fit its line_of");

static bool open_proxy(struct loader *L, struct section *S)
{
    S->obj = &L->p->settings;
    return true;
}

static bool open_tls(struct loader *L, struct section *S)
{
    S->obj = &L->p->tls;
    return true;
}

static void finish_proxy(struct loader *L, struct section *S)
{
    const struct proxy_settings *s = &L->p->settings;
    if (s->max_workers < s->workers)
        load_problem(L,
                     S->line_of[PROXY_MAX_WORKERS] ? S->line_of[PROXY_MAX_WORKERS]
                                                   : S->line_of[PROXY_WORKERS],
                     "max_workers (%u) is below workers (%u)", s->max_workers, s->workers);
}

static const struct section_kind proxy_section = {
    .name = "proxy",
    .keys = proxy_keys,
    .n_keys = PROXY_KEYS,
    .unlisted_keys = true, /* its message has never listed its fifteen keys */
    .stage = FINISH_SETTINGS,
    .open = open_proxy,
    .finish = finish_proxy,
};

static const struct section_kind tls_section = {
    .name = "tls",
    .keys = tls_keys,
    .n_keys = TLS_KEYS,
    .stage = FINISH_SETTINGS,
    .open = open_tls,
};

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
    p->inference.timeout_ms = 60000;
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
    s->hints = true;
    s->denial_record = 1024;
}

/* ---- the loader -------------------------------------------------------- */

/* Every kind of section, in the order the "unknown section" message names them. */
const struct section_kind *const section_kinds[] = {
    &proxy_section, &tls_section,   &inference_section, &deny_section,
    &allow_section, &route_section, &budget_section,    &secret_section,
};
#define SECTION_KINDS (sizeof(section_kinds) / sizeof(section_kinds[0]))
_Static_assert(SECTION_KINDS <= SECTION_KINDS_MAX, "struct loader: kind_line");
const size_t n_section_kinds = SECTION_KINDS;

/* ---- section headers (seen by the reader) ----------------------------- */

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= RULE_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
            return false;
    return true;
}

/* Names are unique among the sections whose NAME names the same thing:
 * deny and allow rules share their names, routes have their own. */
static bool name_taken(const struct loader *L, const struct section_kind *K, const char *name)
{
    for (size_t i = 0; i < L->n_sections; i++) {
        const struct section *S = &L->sections[i];
        if (strcmp(S->name, name) == 0 && S->kind->named && strcmp(S->kind->noun, K->noun) == 0)
            return true;
    }
    return false;
}

static struct section *new_section(struct loader *L)
{
    if (L->n_sections == L->cap_sections) {
        size_t cap = L->cap_sections ? 2 * L->cap_sections : 16;
        struct section *grown = realloc(L->sections, cap * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        L->sections = grown;
        L->cap_sections = cap;
    }
    struct section *S = &L->sections[L->n_sections++];
    memset(S, 0, sizeof(*S));
    return S;
}

static void open_kind(struct loader *L, size_t kind, const char *name)
{
    const struct section_kind *K = section_kinds[kind];
    if (!K->named && L->kind_line[kind] != 0) {
        line_problem(L, "duplicate [%s] section (first at line %d)", K->name, L->kind_line[kind]);
        return;
    }
    if (!K->named)
        L->kind_line[kind] = L->line;
    if (K->named && !valid_name(name)) {
        line_problem(L, "invalid %s name '%s' (letters, digits, '-', '_', '.'; < 64)", K->noun,
                     name);
        return;
    }
    if (K->named && name_taken(L, K, name)) {
        line_problem(L, "duplicate %s name '%s'", K->noun, name);
        return;
    }
    struct section *S = new_section(L);
    if (S == NULL) {
        line_problem(L, "out of memory");
        return;
    }
    S->kind = K;
    S->line = L->line;
    snprintf(S->name, sizeof(S->name), "%.*s", (int)sizeof(S->name) - 1, K->named ? name : K->name);
    if (!K->open(L, S)) {
        L->n_sections--;
        return;
    }
    L->open = S;
    L->refused = false;
}

static void unknown_section(struct loader *L, const char *head)
{
    char expected[256] = "";
    for (size_t i = 0; i < SECTION_KINDS; i++)
        text_append(expected, sizeof(expected), "%s%s%s", word_separator(i, SECTION_KINDS),
                    section_kinds[i]->name, section_kinds[i]->named ? " NAME" : "");
    line_problem(L, "unknown section [%s] (expected %s)", head, expected);
}

static void open_section(struct loader *L, char *head)
{
    char kind[32] = "", name[256] = "", extra[2];
    int n = sscanf(head, "%31s %255s %1s", kind, name, extra);
    size_t i = 0;
    while (i < SECTION_KINDS && strcmp(section_kinds[i]->name, kind) != 0)
        i++;
    L->headers++;
    if (i < SECTION_KINDS && section_kinds[i]->named && n != 2)
        line_problem(L, "[%s] needs exactly one name: [%s NAME]", kind, kind);
    else if (i == SECTION_KINDS || (!section_kinds[i]->named && n != 1))
        unknown_section(L, head);
    else
        open_kind(L, i, name);
}

/* Called for the first piece of every line, before inih parses it. */
static void line_start(struct loader *L, char *line)
{
    while (isspace((unsigned char)*line))
        line++;
    if (*line != '[')
        return;
    if (L->open != NULL)
        L->open->obj = NULL; /* its object may move when the next one opens */
    L->open = NULL;
    L->refused = true; /* until proven good: its keys are then not reported again */
    char *close = strchr(line, ']');
    if (close == NULL) {
        line_problem(L, "section header without ']'");
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

static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct loader *L = user;
    (void)section; /* the reader already opened the section this key belongs to */
    if (L->open != NULL)
        section_key(L, L->open, name, value);
    else if (!L->refused)
        line_problem(L, "'%s' is outside any section", name);
    return 1; /* always go on: we want every problem in one run */
}

/* ---- whole-file checks and entry points --------------------------------- */

static void finish(struct loader *L)
{
    for (int stage = 0; stage < FINISH_STAGES; stage++) {
        for (size_t i = 0; i < L->n_sections; i++) {
            struct section *S = &L->sections[i];
            if (S->kind->stage == (enum finish_stage)stage && S->kind->finish != NULL)
                S->kind->finish(L, S);
        }
    }
}

static struct policy *load(struct loader *L)
{
    L->p = calloc(1, sizeof(*L->p));
    if (L->p == NULL) {
        load_problem(L, 0, "out of memory");
        return NULL;
    }
    atomic_init(&L->p->refs, 1);
    set_defaults(L->p);
    if (memchr(L->text, '\0', L->len) != NULL) {
        load_problem(L, 0, "the file contains a NUL byte");
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
        load_problem(L, 0, "out of memory");
    else if (rc > 0 && rc != L->last_error_line)
        load_problem(L, rc, "syntax error (expected 'key = value' or '[section]')");
    if (L->headers == 0 && L->errors == 0) /* reload: never deny-all for a half-written file */
        load_problem(L, 0, "the file has no sections (empty, or written only in part?)");
    finish(L);
    free(L->sections);
    if (L->errors == 0)
        policy_find_shadowed(L->p);
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

void policy_unref(struct policy *p)
{
    if (p == NULL || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < p->n_rules; i++)
        rule_free(&p->rules[i]);
    free(p->rules);
    for (size_t i = 0; i < p->n_routes; i++)
        route_free(&p->routes[i]);
    free(p->routes);
    for (size_t i = 0; i < p->n_budgets; i++)
        budget_free(&p->budgets[i]);
    free(p->budgets);
    for (size_t i = 0; i < p->n_secrets; i++)
        secret_free(&p->secrets[i]);
    free(p->secrets);
    for (size_t i = 0; i < p->n_warnings; i++)
        free(p->warnings[i].msg);
    free(p->warnings);
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

size_t policy_budget_count(const struct policy *p)
{
    return p->n_budgets;
}

const struct budget *policy_budget(const struct policy *p, size_t i)
{
    return &p->budgets[i];
}
