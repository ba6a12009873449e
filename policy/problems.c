/*
 * problems.c - what loading found wrong, with the line it was found at:
 * counted, remembered (so that inih's own "syntax error" is not reported a
 * second time for the same line) and handed to the caller's report
 * function, which prints them or logs them.  Every file of the loader
 * reports through here and calls nothing else of the loader's.
 */
#include "policy_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void vproblem(struct loader *L, int line, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    L->errors++;
    L->last_error_line = line;
    if (L->report != NULL)
        L->report(L->rctx, L->file, line, msg);
}

void load_problem(struct loader *L, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vproblem(L, line, fmt, ap);
    va_end(ap);
}

void line_problem(struct loader *L, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vproblem(L, L->line, fmt, ap);
    va_end(ap);
}

/* Warnings: not problems (the policy loads), but worth saying. */

int policy_warn(struct policy *p, int line, const char *msg)
{
    struct warning *grown = realloc(p->warnings, (p->n_warnings + 1) * sizeof(*grown));
    if (grown == NULL)
        return -1;
    p->warnings = grown;
    if ((grown[p->n_warnings].msg = strdup(msg)) == NULL)
        return -1;
    grown[p->n_warnings++].line = line;
    return 0;
}

size_t policy_warning_count(const struct policy *p)
{
    return p->n_warnings;
}

const char *policy_warning(const struct policy *p, size_t i, int *line)
{
    *line = p->warnings[i].line;
    return p->warnings[i].msg;
}
