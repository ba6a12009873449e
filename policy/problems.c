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
