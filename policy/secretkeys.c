/*
 * secretkeys.c - the [secret NAME] sections (DESIGN section 11): a
 * credential kept out of the sandbox, the placeholder the sandbox holds
 * instead, and where (hosts, ports) and for whom (binary) egressd may put
 * the real value in a request.
 *
 * The value is read at load, from egressd's environment or a file, so that
 * a missing one stops a load or a reload, and a reload reads a rotated
 * file again.  Its binding is a rule's destination and binary list, parsed
 * and matched by the rules' own code.  Placeholders are checked against
 * each other when the load finishes: unique, and none inside another, so
 * that finding one in a request never means finding two.
 */
#include "policy_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum secret_key {
    SECRET_VALUE_ENV,
    SECRET_VALUE_FILE,
    SECRET_PLACEHOLDER,
    SECRET_HOSTS,
    SECRET_PORT,
    SECRET_BINARY,
    SECRET_ENV,
    SECRET_IN_BODY,
    SECRET_KEYS
};

#define DEFAULT_PLACEHOLDER_PREFIX "egressd-secret-"

/* The secret a section opened; never kept, as opening the next one moves it. */
static struct secret *secret_of(struct loader *L, const struct section *S)
{
    return &L->p->secrets[S->index];
}

static bool value_free(struct loader *L, const struct secret *s)
{
    if (s->value == NULL)
        return true;
    line_problem(L, "give value_env or value_file, not both");
    return false;
}

static void set_value_env(struct loader *L, struct section *S, const struct key_def *k,
                          const char *var)
{
    struct secret *s = secret_of(L, S);
    char err[256];
    (void)k;
    if (value_free(L, s) && (s->value = credential_from_env(var, err, sizeof(err))) == NULL)
        line_problem(L, "value_env: %s", err);
}

/* A file others may read is the secret handed to them: said, not refused
 * (the operator may know the sandbox cannot reach it). */
static void set_value_file(struct loader *L, struct section *S, const struct key_def *k,
                           const char *path)
{
    struct secret *s = secret_of(L, S);
    char err[256];
    struct stat st;
    (void)k;
    if (!value_free(L, s))
        return;
    if ((s->value = credential_from_file(path, err, sizeof(err))) == NULL) {
        line_problem(L, "value_file: %s", err);
        return;
    }
    if (stat(path, &st) == 0 && (st.st_mode & S_IROTH) != 0) {
        snprintf(err, sizeof(err), "secret '%s': %s is readable by every user", s->name, path);
        if (policy_warn(L->p, L->line, err) != 0)
            line_problem(L, "out of memory");
    }
}

/* Printable ASCII without space, '%', '"' or '\': characters that read
 * the same in a header, a URL and a JSON string, so that one search finds
 * the placeholder wherever a client put it.  Nor '/', '?', '#' or ';',
 * which give a target its shape: swapping a placeholder out of a target
 * takes them with it, and "/ok/ph?x/../../no", decided as the path /ok/ph,
 * would go up as "/ok/VALUE/../../no". */
static const char *placeholder_problem(const char *v)
{
    size_t n = strlen(v);
    if (n < PLACEHOLDER_MIN || n >= PLACEHOLDER_MAX)
        return "it must be 16 to 255 characters long";
    for (; *v; v++) {
        if (*v <= ' ' || *v > '~' || *v == '%' || *v == '"' || *v == '\\')
            return "printable ASCII without space, '%', '\"' or '\\' only";
        if (strchr("/?#;", *v) != NULL)
            return "no '/', '?', '#' or ';': they would change a URL's shape when it is swapped "
                   "out";
    }
    return NULL;
}

static void set_placeholder(struct loader *L, struct section *S, const struct key_def *k,
                            const char *v)
{
    const char *why = placeholder_problem(v);
    (void)k;
    if (why != NULL)
        line_problem(L, "placeholder: %s", why);
    else
        snprintf(secret_of(L, S)->placeholder, PLACEHOLDER_MAX, "%s", v);
}

static void set_hosts(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    rule_key_host(L, &secret_of(L, S)->bind, k, v);
}

static void set_port(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    (void)k;
    rule_key_port(L, &secret_of(L, S)->bind, v);
}

static void set_binary(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    rule_key_binary(L, &secret_of(L, S)->bind, k, v);
}

struct env_ctx {
    struct loader *L;
    struct secret *s;
};

static int add_env(void *vctx, const char *item)
{
    struct env_ctx *c = vctx;
    size_t n = strlen(item);
    bool ok =
        n > 0 && n < SECRET_ENV_NAME_MAX && (isalpha((unsigned char)item[0]) || item[0] == '_');
    for (size_t i = 1; ok && i < n; i++)
        ok = isalnum((unsigned char)item[i]) || item[i] == '_';
    if (!ok) {
        line_problem(c->L, "env: '%s' is not an environment variable name", item);
        return -1;
    }
    char **grown = realloc(c->s->env, (c->s->n_env + 1) * sizeof(*grown));
    if (grown == NULL || (grown[c->s->n_env] = strdup(item)) == NULL) {
        if (grown != NULL)
            c->s->env = grown;
        line_problem(c->L, "out of memory");
        return -1;
    }
    c->s->env = grown;
    c->s->n_env++;
    return 0;
}

static void set_env(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    struct env_ctx c = {L, secret_of(L, S)};
    key_list(L, k, v, add_env, &c);
}

static void set_in_body(struct loader *L, struct section *S, const struct key_def *k, const char *v)
{
    (void)k;
    if (parse_bool(v, &secret_of(L, S)->in_body) != 0)
        line_problem(L, "in_body: '%s' is not yes or no", v);
}

static const struct key_def secret_keys[SECRET_KEYS] = {
    [SECRET_VALUE_ENV] = {.name = "value_env", .type = V_CUSTOM, .parse = set_value_env},
    [SECRET_VALUE_FILE] = {.name = "value_file", .type = V_CUSTOM, .parse = set_value_file},
    [SECRET_PLACEHOLDER] = {.name = "placeholder", .type = V_CUSTOM, .parse = set_placeholder},
    [SECRET_HOSTS] = {.name = "hosts", .type = V_CUSTOM, .parse = set_hosts, .flags = KEY_LIST},
    [SECRET_PORT] = {.name = "port", .type = V_CUSTOM, .parse = set_port, .flags = KEY_LIST},
    [SECRET_BINARY] = {.name = "binary", .type = V_CUSTOM, .parse = set_binary, .flags = KEY_LIST},
    [SECRET_ENV] = {.name = "env", .type = V_CUSTOM, .parse = set_env, .flags = KEY_LIST},
    [SECRET_IN_BODY] = {.name = "in_body", .type = V_CUSTOM, .parse = set_in_body},
};

_Static_assert(SECRET_KEYS <= SECTION_KEYS_MAX, "a section's keys fit its line_of");

static bool open_secret(struct loader *L, struct section *S)
{
    struct policy *p = L->p;
    struct secret *grown =
        section_grow(L, S, p->secrets, &p->n_secrets, SECRETS_MAX, sizeof(*grown), "secrets");
    if (grown == NULL)
        return false;
    p->secrets = grown;
    struct secret *s = &grown[S->index];
    s->line = S->line;
    snprintf(s->name, sizeof(s->name), "%s", S->name);
    s->bind.kind = RULE_ALLOW;  /* every holder of the socket must be a listed program, */
    s->bind.holder_only = true; /* itself: a bound program's children (git's aliases and
                                   hooks) do not inherit its credential */
    s->bind.line = S->line;
    snprintf(s->bind.name, sizeof(s->bind.name), "%s", S->name);
    S->obj = s;
    return true;
}

/* Against the secrets before it: placeholders unique and none inside
 * another, env names given out once. */
static void check_against_earlier(struct loader *L, const struct secret *s)
{
    for (const struct secret *o = L->p->secrets; o < s; o++) {
        if (strstr(s->placeholder, o->placeholder) != NULL ||
            strstr(o->placeholder, s->placeholder) != NULL)
            load_problem(L, s->line,
                         "secret '%s': its placeholder and that of secret '%s' (line %d) are the "
                         "same or one holds the other",
                         s->name, o->name, o->line);
        for (size_t i = 0; i < s->n_env; i++)
            for (size_t j = 0; j < o->n_env; j++)
                if (strcmp(s->env[i], o->env[j]) == 0)
                    load_problem(L, s->line, "secret '%s': env %s is secret '%s''s already",
                                 s->name, s->env[i], o->name);
    }
}

static void finish_secret(struct loader *L, struct section *S)
{
    struct secret *s = secret_of(L, S);
    if (s->value == NULL && S->line_of[SECRET_VALUE_ENV] == 0 && S->line_of[SECRET_VALUE_FILE] == 0)
        load_problem(L, s->line, "secret '%s' has no value_env or value_file", s->name);
    if (S->line_of[SECRET_HOSTS] == 0)
        load_problem(L, s->line, "secret '%s' has no hosts", s->name);
    if (S->line_of[SECRET_PORT] == 0 && rule_default_ports(&s->bind) != 0)
        load_problem(L, s->line, "out of memory");
    hostset_finish(&s->bind.hosts);
    s->value_len = s->value ? strlen(s->value) : 0;
    if (s->placeholder[0] == '\0') {
        snprintf(s->placeholder, sizeof(s->placeholder), DEFAULT_PLACEHOLDER_PREFIX "%s", s->name);
        const char *why = placeholder_problem(s->placeholder);
        if (why != NULL)
            load_problem(L, s->line, "secret '%s': the default placeholder %s: %s", s->name,
                         s->placeholder, why);
    }
    check_against_earlier(L, s);
}

const struct section_kind secret_section = {
    .name = "secret",
    .named = true,
    .noun = "secret",
    .keys = secret_keys,
    .n_keys = SECRET_KEYS,
    .stage = FINISH_SECRETS,
    .open = open_secret,
    .finish = finish_secret,
};

void secret_free(struct secret *s)
{
    credential_free(s->value);
    rule_free(&s->bind);
    for (size_t i = 0; i < s->n_env; i++)
        free(s->env[i]);
    free(s->env);
}
