/*
 * peek.c - fuzzes peek_classify (http/peek.c), which tells a TLS
 * handshake from an HTTP request in the first bytes of an intercepted
 * tunnel.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks, against
 * DESIGN section 7 written out independently here:
 * - no bytes: PEEK_MORE; PEEK_TLS exactly for 16 03 00..04; PEEK_HTTP
 *   exactly for 1 to 16 upper-case letters and a space;
 * - a verdict other than PEEK_MORE on a prefix stays the same for every
 *   longer input (waiting for more bytes never changes an answer given);
 * - from PEEK_TOKEN_MAX + 1 bytes on the answer is never PEEK_MORE (the peek loop ends).
 */
#include "../http/http.h"
#include "fuzz.h"

#define METHOD_MAX PEEK_TOKEN_MAX

/* The contract, independently: what n bytes of p say. */
static enum peek_kind expected(const unsigned char *p, size_t n)
{
    if (n == 0)
        return PEEK_MORE;
    if (p[0] == 0x16) {
        if ((n >= 2 && p[1] != 0x03) || (n >= 3 && p[2] > 0x04))
            return PEEK_OTHER;
        return n >= 3 ? PEEK_TLS : PEEK_MORE;
    }
    /* a request line's first word: printable ASCII, then a space (the
     * parser, not the classifier, decides whether it is a valid method) */
    size_t i = 0;
    while (i < n && i < METHOD_MAX && p[i] > 0x20 && p[i] < 0x7f)
        i++;
    if (i < n && p[i] == ' ')
        return i > 0 ? PEEK_HTTP : PEEK_OTHER;
    if (i == n && n <= METHOD_MAX)
        return PEEK_MORE;
    return PEEK_OTHER;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum peek_kind full = http_peek_classify(data, size), first = PEEK_MORE;
    CHECK(full == expected(data, size));
    if (size > METHOD_MAX)
        CHECK(full != PEEK_MORE);
    size_t upto = size < 64 ? size : 64;
    for (size_t n = 0; n <= upto; n++) {
        enum peek_kind k = http_peek_classify(data, n);
        CHECK(k == PEEK_TLS || k == PEEK_HTTP || k == PEEK_MORE || k == PEEK_OTHER);
        if (n == 0)
            CHECK(k == PEEK_MORE);
        if (first != PEEK_MORE)
            CHECK(k == first);
        else
            first = k;
    }
    if (first != PEEK_MORE)
        CHECK(full == first);
    return 0;
}
