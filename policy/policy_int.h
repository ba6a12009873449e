/*
 * policy_int.h - what the policy module's files share with each other and
 * nobody else: the layout of a loaded policy and its rules, and the pieces
 * of the loader (config.c reads lines and section headers, keys.c fills
 * sections from their key tables, rulekeys.c, routekeys.c, budgetkeys.c
 * and secretkeys.c describe the rule, route, budget and secret sections).
 */
#ifndef EGRESSD_POLICY_INT_H
#define EGRESSD_POLICY_INT_H

#include "policy.h"

#include <stdatomic.h>

#define RULE_NAME_MAX  64
#define PATH_STARS_MAX 16 /* in one `paths` glob */

struct port_range {
    uint16_t lo, hi;
};

struct cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t net[16];
    unsigned prefix;
};

/* Host patterns of one rule, each kind kept sorted for binary search, so a
 * rule with thousands of hosts costs a few comparisons per label. */
struct hostset {
    char **exact; /* names and canonical IP literals */
    char **one;   /* "*.suffix": the suffix */
    char **many;  /* "**.suffix": the suffix */
    size_t n_exact, n_one, n_many;
};

enum rule_kind { RULE_DENY, RULE_ALLOW, RULE_INTERCEPT };

struct rule {
    enum rule_kind kind;
    char name[RULE_NAME_MAX];
    int line;
    struct hostset hosts;
    struct port_range *ports;
    size_t n_ports;
    struct cidr *allowed;
    size_t n_allowed;
    char **binaries; /* path globs, symlinks resolved at load */
    size_t n_binaries;
    /* request keys (DESIGN section 10): with any of them the rule rules on
     * each request of an inspected connection, not on the destination */
    bool request_keys;
    char **methods; /* upper case; none: any method */
    size_t n_methods;
    char **paths; /* path globs over the decoded path, no query; none: any path */
    size_t n_paths;
    bool audit;       /* requests this rule would deny are forwarded, logged audit */
    char *message;    /* shown in this rule's denials */
    bool holder_only; /* binaries: the socket's holders themselves, not their ancestors */
};

/* A [secret NAME] section (DESIGN section 11): a credential egressd puts
 * in requests in place of its placeholder.  Where it may go and for whom
 * is a rule's destination and binary list, so they match the same way. */
#define SECRETS_MAX         64 /* one bit each in a request's set */
#define PLACEHOLDER_MIN     16
#define PLACEHOLDER_MAX     256
#define SECRET_ENV_NAME_MAX 64

struct secret {
    char name[RULE_NAME_MAX];
    int line;
    char *value; /* never logged, never in an answer; wiped when freed */
    size_t value_len;
    char placeholder[PLACEHOLDER_MAX];
    struct rule bind; /* hosts, ports, binaries: where and for whom the value may go */
    char **env;       /* --print-env names */
    size_t n_env;
    bool in_body;
};

struct policy {
    atomic_int refs;
    struct proxy_settings settings;
    struct tls_settings tls;
    struct inference_settings inference;
    struct rule *rules; /* deny, allow, and the [inference] section as an intercept rule */
    size_t n_rules;
    struct route *routes;
    size_t n_routes;
    struct budget *budgets;
    size_t n_budgets;
    struct secret *secrets;
    size_t n_secrets;
    struct warning {
        int line;
        char *msg;
    } * warnings; /* not errors: said by -t and at start and reload */
    size_t n_warnings;
};

/* problems.c: remember a warning (a copy of msg); -1 when out of memory. */
int policy_warn(struct policy *p, int line, const char *msg);
/* explain.c: warn about allow rules a deny rule covers entirely. */
void policy_find_shadowed(struct policy *p);

/* decide.c: does the rule name this host and port; does its binary list
 * admit the caller (for an allow rule: every holder; doubt: no)? */
bool rule_names_destination(const struct rule *r, const struct host *h, uint16_t port);
bool rule_admits_caller(const struct rule *r, const struct identity *id);

/* hostpat.c */
int hostset_add(struct hostset *hs, const char *pattern, const char **why);
void hostset_finish(struct hostset *hs);
bool hostset_match(const struct hostset *hs, const struct host *h);
void hostset_free(struct hostset *hs);

int listen_addr_parse(const char *s, struct host *out, uint16_t *port, const char **why);

/* values.c */
int parse_ports(const char *s, struct port_range **out, size_t *n, char *err, size_t errlen);
bool ports_match(const struct port_range *r, size_t n, uint16_t port);
int parse_cidr(const char *s, struct cidr *out, const char **why);
bool cidr_contains(const struct cidr *c, const struct sockaddr *sa);
int parse_bool(const char *s, bool *out);
int parse_endpoint(const char *s, struct route *r, const char **why);
int parse_protocols(const char *s, unsigned *mask, char *err, size_t errlen);
int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);
/* A credential (a route's key, a secret's value): one line of 1 to
 * API_KEY_MAX - 1 bytes without control characters, from an environment
 * variable or a file (its trailing white space dropped).  A malloc'd copy,
 * or NULL with the reason in err (which never quotes the value). */
char *credential_from_env(const char *var, char *err, size_t errlen);
char *credential_from_file(const char *path, char *err, size_t errlen);
void credential_free(char *value);
/* Split a comma-separated list in place and call fn for each trimmed item;
 * an empty item (a stray comma) is not passed on but reported. */
enum list_result { LIST_OK, LIST_ITEM_FAILED, LIST_EMPTY_ITEM };
enum list_result list_foreach(char *s, int (*fn)(void *ctx, const char *item), void *ctx);

/* ---- loading ----------------------------------------------------------- */

struct section;
#define SECTION_KINDS_MAX 16

/* One load in progress (config.c reads, the section files fill). */
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
    struct section *sections; /* every section opened, in file order */
    size_t n_sections, cap_sections;
    struct section *open;             /* where keys go: NULL outside any usable section */
    bool refused;                     /* after a refused header: its keys are not reported */
    int kind_line[SECTION_KINDS_MAX]; /* kinds without a NAME: where first seen, or 0 */
    unsigned headers;                 /* seen, good or bad */
};

/* problems.c: a problem at a line (0: the whole file), or at the line
 * being read. */
void load_problem(struct loader *L, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void line_problem(struct loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* values.c: the array of what sections of S's kind opened (*n of them,
 * at most max), grown by one zeroed element for S: S->index is that
 * element's and *n counts it.  NULL, said on the line, when it is full
 * (`too many <what>`) or out of memory; arr is then unchanged. */
struct section;
void *section_grow(struct loader *L, struct section *S, void *arr, size_t *n, size_t max,
                   size_t size, const char *what);

/* How a key's value is read.  keys.c parses the typed ones into the
 * section's object, at the key's offset; V_CUSTOM keys bring a parse
 * function (lists, addresses, values with messages of their own). */
enum value_type {
    V_UINT,     /* unsigned, from min to max */
    V_DURATION, /* unsigned milliseconds; min 1: above zero */
    V_SIZE,     /* uint64_t bytes, from min to max */
    V_BOOL,     /* bool: yes/no, true/false, on/off, 1/0 */
    V_PATH,     /* char[max], an absolute path */
    V_CHOICE,   /* an int-sized enum: the index of the value among choices */
    V_CUSTOM,   /* parse() */
};

/* One of a rule's lists (host, port...): a repeat names the rule and asks
 * for one list. */
#define KEY_LIST 0x1u

struct key_def {
    const char *name;
    enum value_type type;
    size_t off; /* in the section's object */
    uint64_t min, max;
    const char *const *choices; /* V_CHOICE: indexed by the enum, NULL-terminated */
    void (*parse)(struct loader *L, struct section *S, const struct key_def *k, const char *v);
    unsigned flags;
};

/* Sections are finished after the last line, stage by stage, each stage in
 * file order: the report lists settings, then routes, then rules, and a
 * kind that names sections of another (a budget its routes) must come
 * after it. */
enum finish_stage {
    FINISH_SETTINGS,
    FINISH_SECRETS,
    FINISH_ROUTES,
    FINISH_RULES,
    FINISH_BUDGETS,
    FINISH_STAGES
};

/* A kind of section: [proxy], [allow NAME]... */
struct section_kind {
    const char *name;           /* as in its header */
    bool named;                 /* [name NAME] */
    const char *noun;           /* what a NAME names ("rule 'x'"); needed when named */
    const struct key_def *keys; /* indexed by the kind's enum of keys */
    size_t n_keys;
    bool unlisted_keys; /* an unknown key's message does not list the keys */
    enum finish_stage stage;
    /* Make the object the keys fill (S->obj, S->index); false when refused
     * (reported). */
    bool (*open)(struct loader *L, struct section *S);
    void (*finish)(struct loader *L, struct section *S); /* optional */
};

#define SECTION_KEYS_MAX 32

/* One section of the file, kept until the end of the load. */
struct section {
    const struct section_kind *kind;
    char name[RULE_NAME_MAX];      /* its NAME, or the kind's name */
    int line;                      /* of its header */
    void *obj;                     /* where typed keys land; NULL once the section is over */
    size_t index;                  /* of the rule or route it opened */
    int line_of[SECTION_KEYS_MAX]; /* by the kind's key enum: where set, 0 if not */
};

/* config.c: every kind, for the reader (and the tests) */
extern const struct section_kind *const section_kinds[];
extern const size_t n_section_kinds;

/* keys.c */
void section_key(struct loader *L, struct section *S, const char *name, const char *value);
/* A comma list, item by item through fn (which reports its own failures);
 * an empty item is reported once, under the key's name. */
void key_list(struct loader *L, const struct key_def *k, const char *v,
              int (*fn)(void *ctx, const char *item), void *ctx);
/* What goes before the i-th of n words in "a, b or c". */
const char *word_separator(size_t i, size_t n);
/* Append to a NUL-terminated buffer, cutting what does not fit. */
void text_append(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* rulekeys.c, routekeys.c, budgetkeys.c, secretkeys.c */
extern const struct section_kind inference_section, deny_section, allow_section;
extern const struct section_kind route_section, budget_section, secret_section;
void rule_free(struct rule *r);
void route_free(struct route *r);
void budget_free(struct budget *b);
void secret_free(struct secret *s);
/* rulekeys.c: one `binary` item (an absolute path or glob, symlinks of its
 * fixed part resolved) appended to a list; 0, or -1 after reporting. */
int binary_list_add(struct loader *L, char ***list, size_t *n, const char *item);
/* A rule's host, port and binary keys, for the sections that bind like a
 * rule (secrets). */
void rule_key_host(struct loader *L, struct rule *r, const struct key_def *k, const char *v);
void rule_key_port(struct loader *L, struct rule *r, const char *v);
void rule_key_binary(struct loader *L, struct rule *r, const struct key_def *k, const char *v);
/* A rule's ports when it says none (allow rules: 443); -1: out of memory. */
int rule_default_ports(struct rule *r);
/* routekeys.c: the route of that name, or NULL. */
const struct route *route_named(const struct policy *p, const char *name);
/* secrets.c: the secret named so, or NULL. */
const struct secret *secret_find(const struct policy *p, const char *name);

#endif
