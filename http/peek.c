/*
 * peek.c - what the first bytes of a tunnel are: a TLS handshake record,
 * the start of an HTTP request line, a prefix of either (wait for more), or
 * something egressd does not serve.  The bytes are only looked at, never
 * consumed: whoever reads next (mbedTLS, or the head reader) sees them whole.
 */
#include "http.h"

enum peek_kind http_peek_classify(const unsigned char *p, size_t n)
{
    if (n == 0)
        return PEEK_MORE;
    if (p[0] == 0x16) { /* a TLS handshake record: 16 03 00..04 */
        if (n >= 2 && p[1] != 0x03)
            return PEEK_OTHER;
        if (n >= 3 && p[2] > 0x04)
            return PEEK_OTHER;
        return n >= 3 ? PEEK_TLS : PEEK_MORE;
    }
    /* Something shaped like a request line: printable ASCII, then a space.
     * Whether it is a valid method is the parser's question, so that a bad
     * request line gets its 400 instead of a silent close. */
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ')
            return i > 0 ? PEEK_HTTP : PEEK_OTHER;
        if (p[i] <= 0x20 || p[i] >= 0x7f || i == PEEK_TOKEN_MAX)
            return PEEK_OTHER;
    }
    return PEEK_MORE;
}
