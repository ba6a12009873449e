/*
 * json.c - just enough JSON for a proxy that must not change a body: find
 * one member of the top-level object (its value's exact byte span), decode
 * a string token, and escape a string.  The walk is iterative with a depth
 * bound, validates strings and structure as it goes, and never builds a
 * tree; a model rewrite replaces one span and leaves every other byte as it
 * was (number spellings, escapes, key order, whitespace).
 */
#include "inference.h"

#include <stdio.h>
#include <string.h>

#define JSON_MAX_DEPTH 256

static size_t skip_ws(const char *p, size_t i, size_t n)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* Index just past the string starting at i (a quote), or 0 when malformed. */
static size_t skip_string(const char *p, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '"')
            return i + 1;
        if (ch < 0x20)
            return 0;
        if (ch == '\\') {
            if (++i >= n)
                return 0;
            if (p[i] == 'u') {
                for (int k = 1; k <= 4; k++)
                    if (i + (size_t)k >= n || !strchr("0123456789abcdefABCDEF", p[i + (size_t)k]) ||
                        p[i + (size_t)k] == '\0')
                        return 0;
                i += 4;
            } else if (!strchr("\"\\/bfnrt", p[i]) || p[i] == '\0') {
                return 0;
            }
        }
    }
    return 0;
}

/* Index just past the value starting at i, or 0 when malformed. */
static size_t skip_value(const char *p, size_t i, size_t n)
{
    char stack[JSON_MAX_DEPTH];
    int depth = 0;
    do {
        i = skip_ws(p, i, n);
        if (i >= n)
            return 0;
        char ch = p[i];
        if (ch == '"') {
            if ((i = skip_string(p, i, n)) == 0)
                return 0;
        } else if (ch == '{' || ch == '[') {
            if (depth == JSON_MAX_DEPTH)
                return 0;
            stack[depth++] = ch == '{' ? '}' : ']';
            i++;
        } else if (ch == '}' || ch == ']') {
            if (depth == 0 || stack[depth - 1] != ch)
                return 0;
            depth--;
            i++;
        } else if (ch == ',' || ch == ':') {
            if (depth == 0)
                return 0;
            i++;
        } else {
            size_t start = i; /* number or literal: checked loosely, spans are all we need */
            while (i < n && strchr("0123456789+-.eEtruefalsn", p[i]) && p[i] != '\0')
                i++;
            if (i == start)
                return 0;
        }
    } while (depth > 0);
    return i;
}

int json_member(const char *js, size_t len, const char *key, size_t *vstart, size_t *vend)
{
    size_t i = skip_ws(js, 0, len);
    if (i >= len || js[i] != '{')
        return -1;
    i = skip_ws(js, i + 1, len);
    if (i < len && js[i] == '}')
        return -1;
    while (i < len) {
        char name[64];
        size_t kend = js[i] == '"' ? skip_string(js, i, len) : 0;
        if (kend == 0)
            return -1;
        bool match =
            json_string(js + i, kend - i, name, sizeof(name)) >= 0 && strcmp(name, key) == 0;
        i = skip_ws(js, kend, len);
        if (i >= len || js[i] != ':')
            return -1;
        size_t vs = skip_ws(js, i + 1, len), ve = skip_value(js, vs, len);
        if (ve == 0)
            return -1;
        if (match) {
            *vstart = vs;
            *vend = ve;
            return 0;
        }
        i = skip_ws(js, ve, len);
        if (i >= len || js[i] != ',')
            return -1; /* '}' here: the key is absent */
        i = skip_ws(js, i + 1, len);
    }
    return -1;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char ch = p[k];
        v = v * 16 + (ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
    }
    return v;
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* One escape at p[i] (after the backslash); the code point, and *used. */
static unsigned unescape(const char *p, size_t i, size_t end, size_t *used)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (p[i] != 'u') {
        *used = 1;
        return (unsigned char)to[strchr(from, p[i]) - from];
    }
    unsigned cp = (unsigned)hex4(p + i + 1);
    *used = 5;
    if (cp >= 0xd800 && cp < 0xdc00 && i + 11 <= end && p[i + 5] == '\\' && p[i + 6] == 'u') {
        unsigned lo = (unsigned)hex4(p + i + 7);
        if (lo >= 0xdc00 && lo < 0xe000) {
            *used = 11;
            return 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
    }
    return cp >= 0xd800 && cp < 0xe000 ? 0xfffd : cp; /* a lone surrogate */
}

int json_string(const char *tok, size_t len, char *out, size_t cap)
{
    if (len < 2 || tok[0] != '"' || skip_string(tok, 0, len) != len || cap == 0)
        return -1;
    size_t o = 0, end = len - 1;
    for (size_t i = 1; i < end;) {
        char utf8[4];
        size_t n = 1, used;
        if (tok[i] == '\\') {
            n = put_utf8(utf8, unescape(tok, i + 1, end, &used));
            i += 1 + used;
        } else {
            utf8[0] = tok[i++];
        }
        if (o + n >= cap)
            return -1;
        memcpy(out + o, utf8, n);
        o += n;
    }
    out[o] = '\0';
    return (int)o;
}

size_t json_escape(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p && n + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            n += (size_t)snprintf(dst + n, cap - n, "\\u%04x", *p);
        } else {
            dst[n++] = (char)*p;
        }
    }
    if (cap > 0)
        dst[n < cap ? n : cap - 1] = '\0';
    return n;
}
