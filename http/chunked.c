/*
 * chunked.c - an incremental validator of the chunked transfer coding.
 *
 * Bodies are relayed byte for byte; this scanner only follows the framing so
 * that egressd knows where a message ends (for keep-alive) and refuses
 * framing a lenient peer could read another way: sizes with whitespace or
 * more than 16 hex digits, bare LF, control bytes in extensions or
 * trailers, overlong size lines and trailers, too many chunks.
 */
#include "http.h"

#include <ctype.h>
#include <string.h>

#define CHUNK_LINE_MAX 4096         /* a size line with its extensions, or all trailers */
#define CHUNK_SIZE_MAX (1ull << 40) /* 1 TiB: no real client sends more in one chunk */

enum {
    S_SIZE,
    S_EXT,
    S_SIZE_LF,
    S_DATA,
    S_DATA_CR,
    S_DATA_LF,
    S_TRAILER_START,
    S_TRAILER_NAME,
    S_TRAILER,
    S_TRAILER_LF,
    S_END_LF,
    S_DONE,
};

void chunked_init(struct chunked *c, uint64_t max_chunks)
{
    *c = (struct chunked){.state = S_SIZE, .max_chunks = max_chunks};
}

static bool is_tchar(unsigned char ch)
{
    return isalnum(ch) || (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int hexval(unsigned char ch)
{
    if (isdigit(ch))
        return ch - '0';
    ch = (unsigned char)tolower(ch);
    return (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10 : -1;
}

/* One byte of the non-data states; returns 0, or -1 with *why. */
static int step(struct chunked *c, unsigned char ch, const char **why)
{
    if (++c->line_bytes > CHUNK_LINE_MAX) {
        *why = "chunk size line or trailer too long";
        return -1;
    }
    switch (c->state) {
    case S_SIZE:
        if (hexval(ch) >= 0 && c->digits < 16) {
            c->remaining = c->remaining * 16 + (uint64_t)hexval(ch);
            c->digits++;
            if (c->remaining > CHUNK_SIZE_MAX) {
                *why = "chunk size too large";
                return -1;
            }
            return 0;
        }
        if ((ch == ';' || ch == '\r') && c->digits > 0) {
            c->state = ch == ';' ? S_EXT : S_SIZE_LF;
            return 0;
        }
        *why = "invalid chunk size";
        return -1;
    case S_EXT:
    case S_TRAILER:
        if (ch == '\r')
            c->state = c->state == S_EXT ? S_SIZE_LF : S_TRAILER_LF;
        else if (ch != '\t' && (ch < 0x20 || ch == 0x7f)) {
            *why = "control character in chunk extension or trailer";
            return -1;
        }
        return 0;
    case S_SIZE_LF:
        if (ch != '\n')
            break;
        if (c->max_chunks && ++c->chunks > c->max_chunks) {
            *why = "too many chunks";
            return -1;
        }
        c->state = c->remaining ? S_DATA : S_TRAILER_START;
        c->line_bytes = 0;
        return 0;
    case S_DATA_CR:
        if (ch != '\r')
            break;
        c->state = S_DATA_LF;
        return 0;
    case S_DATA_LF:
        if (ch != '\n')
            break;
        c->state = S_SIZE, c->digits = 0, c->remaining = 0, c->line_bytes = 0;
        return 0;
    case S_TRAILER_START: /* the end, or a field name: never a fold, never a control byte */
        if (ch == '\r') {
            c->state = S_END_LF;
            return 0;
        }
        if (!is_tchar(ch)) {
            *why = ch == ' ' || ch == '\t' ? "obsolete line folding in trailer"
                                           : "malformed trailer field name";
            return -1;
        }
        c->state = S_TRAILER_NAME;
        return 0;
    case S_TRAILER_NAME:
        if (ch == ':')
            c->state = S_TRAILER;
        else if (!is_tchar(ch)) {
            *why = "malformed trailer field name";
            return -1;
        }
        return 0;
    case S_TRAILER_LF:
        if (ch != '\n')
            break;
        c->state = S_TRAILER_START;
        return 0;
    case S_END_LF:
        if (ch != '\n')
            break;
        c->state = S_DONE;
        return 0;
    }
    *why = "malformed chunk framing (expected CRLF)";
    return -1;
}

ssize_t chunked_scan(struct chunked *c, const char *p, size_t len, bool *done, const char **why)
{
    return chunked_decode(c, p, len, done, why, NULL, NULL);
}

ssize_t chunked_decode(struct chunked *c, const char *p, size_t len, bool *done, const char **why,
                       chunk_data_fn on_data, void *ctx)
{
    size_t i = 0;
    *done = c->state == S_DONE;
    while (i < len && c->state != S_DONE) {
        if (c->state == S_DATA) {
            uint64_t take = len - i < c->remaining ? len - i : c->remaining;
            if (on_data != NULL && on_data(ctx, p + i, (size_t)take) != 0) {
                *why = "body consumer failed";
                return -1;
            }
            i += take;
            c->remaining -= take;
            if (c->remaining == 0)
                c->state = S_DATA_CR;
            continue;
        }
        if (step(c, (unsigned char)p[i++], why) != 0)
            return -1;
    }
    *done = c->state == S_DONE;
    return (ssize_t)i;
}
