/*
 * json.c - just enough JSON for a proxy that must not change a body, and
 * must never read one differently from the backend behind it.
 *
 * json_object_scan validates a whole body as one JSON object (RFC 8259:
 * strict numbers and literals, UTF-8 strings, escapes, a depth bound, no
 * trailing bytes) and finds the byte spans of a few top-level members.  A
 * member that some common parser could take for a wanted key, though
 * egressd would not, makes the body ambiguous: the same name twice (Python,
 * Go and JavaScript keep the last, egressd would see the first), a name
 * equal but for case (Go matches struct fields case-insensitively, folding
 * U+017F to 's' and U+212A to 'k' too), or a name equal up to a NUL (what a
 * C parser reads).  A proxy that routes on one member while the backend
 * reads another has been bypassed, so such bodies are refused, never
 * guessed at.  The walk is iterative, builds no tree, and a rewrite replaces
 * one span, leaving every other byte as it was.
 *
 * json_escape writes any bytes as the inside of a JSON string: control
 * characters and the Unicode line separators escaped, invalid UTF-8
 * replaced by U+FFFD, so that a log line or an error body stays one valid
 * JSON line whatever a client sent.
 */
#include "http.h"

#include <stdio.h>
#include <string.h>

#define JSON_MAX_DEPTH 256

static size_t skip_ws(const char *p, size_t i, size_t n)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* Length of the well-formed UTF-8 sequence at p (at most n bytes): 1 to 4,
 * or 0 when it is not one (overlong forms, surrogates, > U+10FFFF). */
static size_t utf8_len(const unsigned char *p, size_t n, unsigned *cp)
{
    unsigned c = p[0];
    size_t len;
    unsigned min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80, c &= 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800, c &= 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000, c &= 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((p[k] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[k] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c < 0xe000))
        return 0;
    *cp = c;
    return len;
}

static int hexdigit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char)(ch | 0x20);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

static int hex4(const char *p, size_t avail)
{
    int v = 0;
    if (avail < 4)
        return -1;
    for (int k = 0; k < 4; k++) {
        int d = hexdigit(p[k]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Index just past the string starting at i (a quote), or 0 when malformed. */
static size_t skip_string(const char *p, size_t i, size_t n)
{
    for (i++; i < n;) {
        unsigned char ch = (unsigned char)p[i];
        unsigned cp;
        if (ch == '"')
            return i + 1;
        if (ch < 0x20)
            return 0;
        if (ch == '\\') {
            if (i + 1 >= n)
                return 0;
            char e = p[i + 1];
            if (e == 'u') {
                if (hex4(p + i + 2, n - i - 2) < 0)
                    return 0;
                i += 6;
            } else if (e != '\0' && strchr("\"\\/bfnrt", e) != NULL) {
                i += 2;
            } else {
                return 0;
            }
            continue;
        }
        size_t len = utf8_len((const unsigned char *)p + i, n - i, &cp);
        if (len == 0)
            return 0;
        i += len;
    }
    return 0;
}

/* One code point of a validated string token at p[i]; returns the index
 * after it.  A lone surrogate escape decodes to U+FFFD. */
static size_t next_codepoint(const char *p, size_t i, size_t end, unsigned *cp)
{
    if (p[i] != '\\') {
        size_t len = utf8_len((const unsigned char *)p + i, end - i, cp);
        return i + (len ? len : 1);
    }
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (p[i + 1] != 'u') {
        *cp = (unsigned char)to[strchr(from, p[i + 1]) - from];
        return i + 2;
    }
    unsigned v = (unsigned)hex4(p + i + 2, 4);
    if (v >= 0xd800 && v < 0xdc00 && i + 12 <= end && p[i + 6] == '\\' && p[i + 7] == 'u') {
        int lo = hex4(p + i + 8, 4);
        if (lo >= 0xdc00 && lo < 0xe000) {
            *cp = 0x10000 + ((v - 0xd800) << 10) + ((unsigned)lo - 0xdc00);
            return i + 12;
        }
    }
    *cp = v >= 0xd800 && v < 0xe000 ? 0xfffd : v;
    return i + 6;
}

/* A number (RFC 8259 grammar) or true, false, null at i: index past it, or 0. */
static size_t skip_scalar(const char *p, size_t i, size_t n)
{
    static const char *const literals[] = {"true", "false", "null"};
    for (size_t k = 0; k < 3; k++) {
        size_t len = strlen(literals[k]);
        if (n - i >= len && memcmp(p + i, literals[k], len) == 0)
            return i + len;
    }
    size_t start = i;
#define DIGITS(at) ((at) < n && p[at] >= '0' && p[at] <= '9')
    if (i < n && p[i] == '-')
        i++;
    if (!DIGITS(i))
        return 0;
    if (p[i] == '0')
        i++;
    else
        while (DIGITS(i))
            i++;
    if (i < n && p[i] == '.') {
        if (!DIGITS(i + 1))
            return 0;
        for (i++; DIGITS(i); i++)
            ;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (!DIGITS(i))
            return 0;
        while (DIGITS(i))
            i++;
    }
#undef DIGITS
    return i > start ? i : 0;
}

/* A member name and its colon at i: the index of the value, or 0. */
static size_t skip_name(const char *p, size_t i, size_t n)
{
    i = skip_ws(p, i, n);
    if (i >= n || p[i] != '"' || (i = skip_string(p, i, n)) == 0)
        return 0;
    i = skip_ws(p, i, n);
    return i < n && p[i] == ':' ? i + 1 : 0;
}

/* Index just past the value starting at or after i, or 0 when malformed. */
static size_t skip_value(const char *p, size_t i, size_t n)
{
    char closer[JSON_MAX_DEPTH];
    int depth = 0;
    for (;;) {
        i = skip_ws(p, i, n); /* a value is expected here */
        if (i >= n)
            return 0;
        if (p[i] == '{' || p[i] == '[') {
            if (depth == JSON_MAX_DEPTH)
                return 0;
            closer[depth++] = p[i] == '{' ? '}' : ']';
            i = skip_ws(p, i + 1, n);
            if (i < n && p[i] == closer[depth - 1]) {
                depth--, i++; /* empty: a whole value */
            } else {
                if (closer[depth - 1] == '}' && (i = skip_name(p, i, n)) == 0)
                    return 0;
                continue;
            }
        } else if ((i = p[i] == '"' ? skip_string(p, i, n) : skip_scalar(p, i, n)) == 0) {
            return 0;
        }
        for (;;) { /* after a value: close containers, or a comma and the next */
            if (depth == 0)
                return i;
            i = skip_ws(p, i, n);
            if (i >= n)
                return 0;
            if (p[i] == closer[depth - 1]) {
                depth--, i++;
                continue;
            }
            if (p[i] != ',')
                return 0;
            i++;
            if (closer[depth - 1] == '}' && (i = skip_name(p, i, n)) == 0)
                return 0;
            break;
        }
    }
}

enum name_match { NAME_NONE, NAME_EXACT, NAME_LOOKALIKE };

/* Go's case folding, as far as it can reach a lower-case ASCII key. */
static unsigned fold(unsigned cp)
{
    if (cp >= 'A' && cp <= 'Z')
        return cp | 0x20;
    if (cp == 0x17f)
        return 's';
    if (cp == 0x212a)
        return 'k';
    return cp;
}

/* How the name token [s, e) (quotes included) compares with key. */
static enum name_match name_match(const char *p, size_t s, size_t e, const char *key)
{
    size_t i = s + 1, end = e - 1, k = 0, klen = strlen(key);
    bool exact = true;
    while (i < end) {
        unsigned cp;
        i = next_codepoint(p, i, end, &cp);
        if (cp == 0) /* where a C parser stops reading */
            return k == klen ? NAME_LOOKALIKE : NAME_NONE;
        if (k == klen || fold(cp) != (unsigned char)key[k])
            return NAME_NONE;
        exact = exact && cp == (unsigned char)key[k];
        k++;
    }
    if (k != klen)
        return NAME_NONE;
    return exact ? NAME_EXACT : NAME_LOOKALIKE;
}

/* Note one top-level member against the wanted keys; false: ambiguous. */
static bool note_member(const char *js, size_t ns, size_t ne, size_t vs, size_t ve,
                        const char *const *keys, size_t nkeys, struct json_span *spans)
{
    for (size_t k = 0; k < nkeys; k++) {
        enum name_match m = name_match(js, ns, ne, keys[k]);
        if (m == NAME_NONE)
            continue;
        if (m == NAME_LOOKALIKE || spans[k].found)
            return false;
        spans[k] = (struct json_span){vs, ve, true};
    }
    return true;
}

enum json_result json_object_scan(const char *js, size_t len, const char *const *keys, size_t nkeys,
                                  struct json_span *spans, const char **why)
{
    memset(spans, 0, nkeys * sizeof(*spans));
    *why = "the body is not a valid JSON object";
    size_t i = skip_ws(js, 0, len);
    if (i >= len || js[i] != '{')
        return JSON_INVALID;
    i = skip_ws(js, i + 1, len);
    if (i < len && js[i] == '}')
        return skip_ws(js, i + 1, len) == len ? JSON_OK : JSON_INVALID;
    bool ambiguous = false; /* said only once the whole body is known to be valid */
    for (;;) {
        size_t ns = i, vs;
        if (i >= len || js[i] != '"' || (i = skip_string(js, i, len)) == 0)
            return JSON_INVALID;
        size_t ne = i;
        i = skip_ws(js, i, len);
        if (i >= len || js[i] != ':')
            return JSON_INVALID;
        vs = skip_ws(js, i + 1, len);
        if ((i = skip_value(js, vs, len)) == 0)
            return JSON_INVALID;
        if (!ambiguous && !note_member(js, ns, ne, vs, i, keys, nkeys, spans))
            ambiguous = true;
        i = skip_ws(js, i, len);
        if (i < len && js[i] == '}')
            break;
        if (i >= len || js[i] != ',')
            return JSON_INVALID;
        i = skip_ws(js, i + 1, len);
    }
    if (skip_ws(js, i + 1, len) != len)
        return JSON_INVALID;
    if (ambiguous)
        *why = "a member name appears twice, or differs from another only in case or after a NUL";
    return ambiguous ? JSON_AMBIGUOUS : JSON_OK;
}

bool json_array_next(const char *js, const struct json_span *arr, size_t *pos,
                     struct json_span *elem)
{
    size_t i = *pos ? *pos : arr->start, end = arr->end;
    if (*pos == 0 && (i >= end || js[i] != '['))
        return false;
    if (*pos != 0 && ((i = skip_ws(js, i, end)) >= end || js[i] != ','))
        return false; /* the closing bracket, or not an array's element */
    i = skip_ws(js, i + 1, end);
    size_t e = i < end && js[i] != ']' ? skip_value(js, i, end) : 0;
    if (e == 0)
        return false;
    *elem = (struct json_span){i, e, true};
    *pos = e;
    return true;
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

int json_string(const char *tok, size_t len, char *out, size_t cap, const char **why)
{
    if (len < 2 || tok[0] != '"' || skip_string(tok, 0, len) != len || cap == 0) {
        *why = "not a JSON string";
        return -1;
    }
    size_t o = 0, end = len - 1;
    for (size_t i = 1; i < end;) {
        char utf8[4];
        unsigned cp;
        i = next_codepoint(tok, i, end, &cp);
        if (cp == 0) {
            *why = "the string contains a NUL";
            return -1;
        }
        size_t n = put_utf8(utf8, cp);
        if (o + n >= cap) {
            *why = "the string is too long";
            return -1;
        }
        memcpy(out + o, utf8, n);
        o += n;
    }
    out[o] = '\0';
    return (int)o;
}

size_t json_escape(char *dst, size_t cap, const char *src)
{
    size_t n = 0, left = strlen(src);
    for (const unsigned char *p = (const unsigned char *)src; left > 0 && n + 7 < cap;) {
        unsigned cp;
        size_t len = utf8_len(p, left, &cp);
        if (len == 0) { /* not UTF-8: say so in a way every JSON reader takes */
            memcpy(dst + n, "\\ufffd", 6);
            n += 6, p++, left--;
        } else if (*p == '"' || *p == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char)*p;
            p++, left--;
        } else if (*p < 0x20 || *p == 0x7f || cp == 0x2028 || cp == 0x2029) {
            /* U+2028 and U+2029 too: some line readers break lines there */
            n += (size_t)snprintf(dst + n, cap - n, "\\u%04x", cp);
            p += len, left -= len;
        } else {
            memcpy(dst + n, p, len);
            n += len, p += len, left -= len;
        }
    }
    if (cap > 0)
        dst[n < cap ? n : cap - 1] = '\0';
    return n;
}

void json_put_member(struct sbuf *b, const char *name, const char *value)
{
    char esc[JSON_MEMBER_MAX * 6 + 1];
    if (value == NULL)
        return;
    json_escape(esc, sizeof(esc), value);
    sbuf_printf(b, ",\"%s\":\"%s\"", name, esc);
}
