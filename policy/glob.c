/*
 * glob.c - the path glob of `binary` rules and of request `paths`: '*'
 * matches within one segment, '**' across segments, everything else
 * itself (or, for deny rules, itself in any case).  Matching simulates the pattern's automaton over
 * the path, one character at a time, so its cost is bounded by pattern length times path length
 * whatever the stars: a rule cannot be written, nor a path sent, that makes a decision slow.
 */
#include "policy_int.h"

#include <string.h>

enum glob_token { GLOB_LITERAL, GLOB_STAR, GLOB_DOUBLE_STAR };

/* Step the set of pattern positions reached over one more character c
 * (c == 0: none, just follow the stars that may match nothing). */
static bool glob_step(const uint8_t *kind, const uint8_t *lit, size_t m, uint8_t *cur, int c)
{
    uint8_t next[GLOB_PATTERN_MAX + 1];
    bool any = false;
    if (c != 0) {
        memset(next, 0, m + 1);
        for (size_t k = 0; k < m; k++) {
            if (!cur[k])
                continue;
            if (kind[k] == GLOB_LITERAL)
                next[k + 1] |= lit[k] == c;
            else
                next[k] |= kind[k] == GLOB_DOUBLE_STAR || c != '/';
        }
        memcpy(cur, next, m + 1);
    }
    for (size_t k = 0; k <= m; k++) { /* a star may match nothing */
        if (k < m && cur[k] && kind[k] != GLOB_LITERAL)
            cur[k + 1] = 1;
        any |= cur[k];
    }
    return any;
}

static uint8_t fold_byte(uint8_t c, bool fold)
{
    return fold && c >= 'A' && c <= 'Z' ? (uint8_t)(c | 0x20) : c;
}

/* A simulation of the pattern's automaton, one character at a time: time
 * bounded by pattern length times path length, whatever the stars (the
 * recursive matcher it replaces backtracked exponentially). */
static bool glob_match(const char *p, const char *s, size_t n, bool fold)
{
    uint8_t kind[GLOB_PATTERN_MAX], cur[GLOB_PATTERN_MAX + 1] = {1};
    uint8_t lit[GLOB_PATTERN_MAX]; /* unsigned: compared with unsigned bytes of the path */
    size_t m = 0;
    for (; *p != '\0'; m++) {
        if (m == GLOB_PATTERN_MAX)
            return false; /* the loader refuses longer patterns */
        bool star = *p == '*', twice = star && p[1] == '*';
        kind[m] = twice ? GLOB_DOUBLE_STAR : star ? GLOB_STAR : GLOB_LITERAL;
        lit[m] = fold_byte((uint8_t)*p, fold);
        p += twice ? 2 : 1;
    }
    if (!glob_step(kind, lit, m, cur, 0))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!glob_step(kind, lit, m, cur, fold_byte((uint8_t)s[i], fold)))
            return false;
    return cur[m];
}

bool path_glob_match(const char *pattern, const char *path)
{
    return glob_match(pattern, path, strlen(path), false);
}

bool path_glob_match_fold(const char *pattern, const char *path, size_t len)
{
    return glob_match(pattern, path, len, true);
}
