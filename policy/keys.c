/*
 * keys.c - one mechanism for the keys of every kind of section.
 *
 * A section kind (see policy_int.h) has a table of key definitions indexed
 * by its own enum.  Each "key = value" line of an open section comes here:
 * the key is looked up in the table, a repeat is refused with the line
 * where the key was first set (each section keeps that line per key, so
 * finish hooks can ask whether and where a key was set), then the value is
 * parsed.  Typed values (numbers, durations, sizes, booleans, paths, one of
 * a few words) land in the section's object at the key's offset, with one
 * message per type; other keys bring a parse function that reports its own
 * problems.
 *
 * The key is judged before its value: an unknown key is named as such even
 * when empty, a repeat is a repeat, and "key =" still counts as said, so a
 * rule with "host =" is not told again that it has no host.
 */
#include "policy_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void text_append(char *buf, size_t len, const char *fmt, ...)
{
    size_t used = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    if (used < len)
        vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

const char *word_separator(size_t i, size_t n)
{
    return i == 0 ? "" : i + 1 < n ? ", " : " or ";
}

static const struct key_def *key_find(const struct section_kind *K, const char *name)
{
    for (size_t i = 0; i < K->n_keys; i++)
        if (strcmp(K->keys[i].name, name) == 0)
            return &K->keys[i];
    return NULL;
}

static void unknown_key(struct loader *L, const struct section *S, const char *name)
{
    const struct section_kind *K = S->kind;
    char expected[512] = "";
    for (size_t i = 0; i < K->n_keys && !K->unlisted_keys; i++)
        text_append(expected, sizeof(expected), "%s%s", i == 0 ? " (expected " : ", ",
                    K->keys[i].name);
    if (expected[0] != '\0')
        text_append(expected, sizeof(expected), ")");
    if (K->named)
        line_problem(L, "unknown key '%s' in [%s %s]%s", name, K->name, S->name, expected);
    else
        line_problem(L, "unknown key '%s' in [%s]%s", name, K->name, expected);
}

/* One line per key.  A repeated list is told to become one list, and names
 * its rule even in [inference], which has no NAME but is a rule. */
static void repeated_key(struct loader *L, const struct section *S, const struct key_def *k,
                         int first)
{
    const struct section_kind *K = S->kind;
    bool list = k->flags & KEY_LIST;
    char where[RULE_NAME_MAX + 32] = "";
    if (K->noun != NULL && (K->named || list))
        snprintf(where, sizeof(where), " in %s '%s'", K->noun, S->name);
    line_problem(L, "%s is set twice%s (first at line %d)%s", k->name, where, first,
                 list ? "; use one list" : "");
}

/* "1G", "512K", "1 byte", "1000 bytes": a size bound as an operator writes it. */
static void size_text(uint64_t n, char *buf, size_t len)
{
    static const char units[] = "GMK";
    for (int i = 0; i < 3; i++) {
        uint64_t unit = 1ull << (10 * (3 - i));
        if (n >= unit && n % unit == 0) {
            snprintf(buf, len, "%llu%c", (unsigned long long)(n / unit), units[i]);
            return;
        }
    }
    snprintf(buf, len, "%llu byte%s", (unsigned long long)n, n == 1 ? "" : "s");
}

static void set_size(struct loader *L, void *field, const struct key_def *k, const char *v)
{
    uint64_t size;
    if (parse_size(v, &size) != 0 || size < k->min || size > k->max) {
        char lo[32], hi[32];
        size_text(k->min, lo, sizeof(lo));
        size_text(k->max, hi, sizeof(hi));
        line_problem(L, "%s: '%s' is not a size from %s to %s (like 512K, 10M)", k->name, v, lo,
                     hi);
        return;
    }
    *(uint64_t *)field = size;
}

static void set_choice(struct loader *L, void *field, const struct key_def *k, const char *v)
{
    size_t n = 0;
    while (k->choices[n] != NULL)
        n++;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v, k->choices[i]) == 0) {
            *(int *)field = (int)i;
            return;
        }
    }
    char words[256] = "";
    for (size_t i = 0; i < n; i++)
        text_append(words, sizeof(words), "%s%s", word_separator(i, n), k->choices[i]);
    line_problem(L, "%s: '%s' is not %s", k->name, v, words);
}

static void set_typed(struct loader *L, void *obj, const struct key_def *k, const char *v)
{
    char *field = (char *)obj + k->off;
    unsigned u;
    bool b;
    switch (k->type) {
    case V_UINT:
        if (parse_uint(v, (unsigned)k->min, (unsigned)k->max, &u) == 0)
            *(unsigned *)field = u;
        else
            line_problem(L, "%s: '%s' is not a whole number from %u to %u", k->name, v,
                         (unsigned)k->min, (unsigned)k->max);
        return;
    case V_DURATION:
        if (parse_duration_ms(v, &u) == 0 && u >= k->min)
            *(unsigned *)field = u;
        else
            line_problem(L, "%s: '%s' is not a duration (like 500ms, 10s, 5m, 1h)%s up to 24h",
                         k->name, v, k->min ? " above zero" : "");
        return;
    case V_SIZE:
        set_size(L, field, k, v);
        return;
    case V_BOOL:
        if (parse_bool(v, &b) == 0)
            *(bool *)field = b;
        else
            line_problem(L, "%s: '%s' is not yes or no", k->name, v);
        return;
    case V_PATH:
        if (v[0] == '/' && strlen(v) < k->max)
            snprintf(field, k->max, "%s", v);
        else
            line_problem(L, "%s: '%s' is not an absolute path (under %u bytes)", k->name, v,
                         (unsigned)k->max);
        return;
    case V_CHOICE:
        set_choice(L, field, k, v);
        return;
    case V_CUSTOM:
        return; /* not typed: section_key calls k->parse */
    }
}

void section_key(struct loader *L, struct section *S, const char *name, const char *value)
{
    const struct section_kind *K = S->kind;
    const struct key_def *k = key_find(K, name);
    if (k == NULL) {
        unknown_key(L, S, name);
        return;
    }
    int *line = &S->line_of[k - K->keys];
    if (*line != 0) {
        repeated_key(L, S, k, *line);
        return;
    }
    *line = L->line;
    if (value[0] == '\0')
        line_problem(L, "'%s' has an empty value", name);
    else if (k->type == V_CUSTOM)
        k->parse(L, S, k, value);
    else
        set_typed(L, S->obj, k, value);
}

void key_list(struct loader *L, const struct key_def *k, const char *v,
              int (*fn)(void *ctx, const char *item), void *ctx)
{
    char *copy = strdup(v);
    if (copy == NULL) {
        line_problem(L, "out of memory");
        return;
    }
    if (list_foreach(copy, fn, ctx) == LIST_EMPTY_ITEM)
        line_problem(L, "%s: an empty item in the list (a stray comma?)", k->name);
    free(copy);
}
