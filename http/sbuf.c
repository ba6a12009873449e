/*
 * sbuf.c - bounded string building: appends that never write past the
 * buffer and remember that something did not fit, so that a head or a
 * line is either whole or known to be cut, and one check at the end says
 * which.  (The alternative, `n += snprintf(...)`, overflows the moment one
 * piece does not fit: snprintf returns what it would have written.)
 */
#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void sbuf_init(struct sbuf *b, char *buf, size_t cap)
{
    *b = (struct sbuf){buf, cap, 0, false};
    if (cap > 0)
        buf[0] = '\0';
}

void sbuf_add(struct sbuf *b, const char *p, size_t n)
{
    if (b->cut || b->len + n >= b->cap) {
        b->cut = true;
        return;
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

void sbuf_str(struct sbuf *b, const char *s)
{
    sbuf_add(b, s, strlen(s));
}

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
    if (b->cut)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= b->cap - b->len) {
        b->cut = true;
        b->buf[b->len] = '\0'; /* the piece that did not fit is not half there */
        return;
    }
    b->len += (size_t)w;
}
