/*
 * glob.c - fuzzes the path glob of `binary =` rules, path_glob_match
 * (policy/identity.c).  The input is "PATTERN\nPATH" (split at the first
 * NUL or newline; no separator: the path is empty).  Each side is cut to
 * 511 bytes and patterns with more than 8 '*' are skipped: that is what
 * the loader accepts for `binary` and what a process path can be
 * (IDENTITY_PATH_MAX), so every input here is one a real rule could meet.
 *
 * The glob backtracks, so a slow input is a finding: the runner gives
 * libFuzzer a -timeout, and fuzz/known-findings.txt lists the open ones.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks:
 * - a pattern without '*' matches exactly the equal path;
 * - every pattern matches its own text (a '*' matches a literal '*');
 * - widening every '*' into '**' never loses a match (checked when the
 *   widened pattern is still one the loader accepts).
 */
#include "../policy/policy.h"
#include "fuzz.h"

#include <string.h>

#define SIDE_MAX  511 /* IDENTITY_PATH_MAX - 1 */
#define STARS_MAX 8   /* what config.c accepts in a `binary` pattern */

static char *side(const uint8_t *p, size_t n)
{
    return fuzz_copy(p, n > SIDE_MAX ? SIDE_MAX : n, 1);
}

static void check(const char *pat, const char *path)
{
    bool m = path_glob_match(pat, path);
    if (strchr(pat, '*') == NULL)
        CHECK(m == (strcmp(pat, path) == 0));
    CHECK(path_glob_match(pat, pat));

    char wide[2 * SIDE_MAX + 1];
    size_t w = 0, wide_stars = 0;
    for (const char *q = pat; *q;) {
        if (*q == '*') {
            q += q[1] == '*' ? 2 : 1; /* one token, as the matcher reads it */
            wide[w++] = '*';
            wide[w++] = '*';
            wide_stars += 2;
        } else {
            wide[w++] = *q++;
        }
    }
    wide[w] = '\0';
    if (m && wide_stars <= STARS_MAX && w <= SIDE_MAX) /* one the loader would take too */
        CHECK(path_glob_match(wide, path));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cut = 0;
    while (cut < size && data[cut] != '\0' && data[cut] != '\n')
        cut++;
    char *pat = side(data, cut);
    char *path = cut < size ? side(data + cut + 1, size - cut - 1) : side(data, 0);
    size_t stars = 0;
    for (const char *q = pat; *q; q++)
        stars += *q == '*';
    if (stars <= STARS_MAX)
        check(pat, path);
    free(pat);
    free(path);
    return 0;
}
