/*
 * http_request.c - fuzzes http_parse_request (http/parse.c), the one
 * strict parser of request heads.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks:
 * - head_len is http_head_length(input): 0 exactly when the result is
 *   HTTP_INCOMPLETE, never more than the input, and the head ends in LF;
 *   a refusal always says why;
 * - on HTTP_OK: method, target and every header span lie inside the head;
 *   the method is a token at the start of the input, the target is visible
 *   ASCII followed by " HTTP/1.x"; the head ends in CRLF CRLF and holds no
 *   NUL; the framing, Content-Length and Host rules hold (http_checks.h);
 * - the verdict depends on the head alone: parsing only the first head_len
 *   bytes gives the same result (the same reason, or the same message), and
 *   every shorter prefix is HTTP_INCOMPLETE (a head split across reads is
 *   read the same way).
 */
#include "http_checks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data, *why = NULL;
    struct http_msg *m = malloc(2 * sizeof(*m));
    if (m == NULL)
        abort();
    enum http_result r = http_parse_request(buf, size, &m[0], &why);
    check_result(r, &m[0], why, buf, size);
    if (r == HTTP_OK) {
        check_head(buf, &m[0], true);
        CHECK(m[0].method == buf && m[0].method_len > 0);
        for (size_t k = 0; k < m[0].method_len; k++)
            CHECK(fuzz_is_tchar((unsigned char)buf[k]));
        CHECK(m[0].target == buf + m[0].method_len + 1 && m[0].target_len > 0);
        check_span(buf, m[0].head_len, m[0].target, m[0].target_len + 8);
        for (size_t k = 0; k < m[0].target_len; k++)
            CHECK(m[0].target[k] > 0x20 && m[0].target[k] < 0x7f);
        CHECK(memcmp(m[0].target + m[0].target_len, " HTTP/1.", 8) == 0);
        CHECK(m[0].status == 0 && m[0].framing != BODY_UNTIL_CLOSE);
    }
    if (m[0].head_len > 0) {
        size_t hl = m[0].head_len;
        const char *why2 = NULL;
        enum http_result r2 = http_parse_request(buf, hl, &m[1], &why2);
        CHECK(r2 == r);
        if (r == HTTP_BAD) {
            CHECK(why2 == why);
        } else {
            check_same(&m[0], &m[1]);
            CHECK(m[0].framing == m[1].framing);
        }
        size_t cuts[2] = {hl - 1, (size_t)(fuzz_hash(data, hl) % hl)};
        for (int i = 0; i < 2; i++)
            CHECK(http_parse_request(buf, cuts[i], &m[1], &why2) == HTTP_INCOMPLETE);
    }
    free(m);
    return 0;
}
