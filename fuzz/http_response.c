/*
 * http_response.c - fuzzes http_parse_response (http/parse.c) with
 * for_head false and true on the same bytes.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks:
 * - the head_len, HTTP_INCOMPLETE and reason rules of every parse
 *   (http_checks.h), and on HTTP_OK the span, CRLF, token, value and
 *   framing-header rules;
 * - the status line: "HTTP/1.x NNN", status 100..999, matching its digits;
 * - for_head changes nothing but the framing: the same verdict, reason and
 *   spans; with for_head the framing is BODY_NONE; without it, 1xx, 204 and
 *   304 have no body, and otherwise the framing is chunked, Content-Length
 *   or until-close exactly as the headers say;
 * - the verdict depends on the head alone: the first head_len bytes parse
 *   the same, and every shorter prefix is HTTP_INCOMPLETE.
 */
#include "http_checks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data, *why[2] = {NULL, NULL};
    struct http_msg *m = malloc(3 * sizeof(*m));
    if (m == NULL)
        abort();
    enum http_result r = http_parse_response(buf, size, false, &m[0], &why[0]);
    enum http_result rh = http_parse_response(buf, size, true, &m[1], &why[1]);
    check_result(r, &m[0], why[0], buf, size);
    check_result(rh, &m[1], why[1], buf, size);
    CHECK(r == rh);
    if (r == HTTP_BAD)
        CHECK(why[0] == why[1]);
    if (r == HTTP_OK) {
        check_head(buf, &m[0], false);
        check_same(&m[0], &m[1]);
        CHECK(memcmp(buf, "HTTP/1.", 7) == 0 && buf[8] == ' ');
        CHECK(m[0].status >= 100 && m[0].status <= 999);
        CHECK(m[0].status == (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0'));
        CHECK(m[0].method == NULL && m[0].target == NULL);
        CHECK(m[1].framing == BODY_NONE);
        bool te = false, cl = false;
        for (size_t i = 0; i < m[0].n_headers; i++) {
            te |= http_name_is(&m[0].headers[i], "transfer-encoding");
            cl |= http_name_is(&m[0].headers[i], "content-length");
        }
        int st = m[0].status;
        enum http_framing want = st < 200 || st == 204 || st == 304 ? BODY_NONE
                                 : te                               ? BODY_CHUNKED
                                 : cl                               ? BODY_LENGTH
                                                                    : BODY_UNTIL_CLOSE;
        CHECK(m[0].framing == want);
    }
    if (m[0].head_len > 0) {
        size_t hl = m[0].head_len;
        const char *why2 = NULL;
        enum http_result r2 = http_parse_response(buf, hl, false, &m[2], &why2);
        CHECK(r2 == r);
        if (r == HTTP_BAD) {
            CHECK(why2 == why[0]);
        } else {
            check_same(&m[0], &m[2]);
            CHECK(m[0].framing == m[2].framing);
        }
        size_t cuts[2] = {hl - 1, (size_t)(fuzz_hash(data, hl) % hl)};
        for (int i = 0; i < 2; i++)
            CHECK(http_parse_response(buf, cuts[i], i, &m[2], &why2) == HTTP_INCOMPLETE);
    }
    free(m);
    return 0;
}
