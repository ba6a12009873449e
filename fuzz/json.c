/*
 * json.c - fuzzes the JSON scanner (http/json.c): json_object_scan for
 * "model" and "stream" on the input, json_string on the member's span and
 * on the whole input, and json_escape on the input's bytes (up to its first
 * NUL) with a round trip through json_string.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks:
 * - the verdict does not depend on which keys are asked for together: the
 *   spans found for "model" alone are those found with "stream", and a body
 *   valid for one question is valid for the other (ambiguity aside);
 * - a member's span [start, end) is non-empty, lies inside the input and
 *   starts at a non-blank byte, and the span alone re-parses as the same
 *   value: in {"k":SPAN} the member "k" is exactly SPAN;
 * - a string span decodes (it is valid), into no more than its length - 2
 *   bytes, NUL-terminated; with cap exactly one more than that it still
 *   fits, with one less it is refused (-1), never written past cap;
 * - json_escape writes a NUL-terminated string of the length it returns,
 *   and "escaped" decodes back to the original bytes (when they are UTF-8
 *   without a NUL); inside {"model":...} the scanner finds it whole; cut short by a small cap, the
 * output is a prefix of the full escape made of whole escapes (it decodes to a prefix of the
 * input).
 */
#include "../http/http.h"
#include "fuzz.h"

#include <string.h>

static void check_string_token(const char *tok, size_t len, int n)
{
    const char *why;
    if (n < 0)
        return;
    CHECK(len >= 2 && (size_t)n <= len - 2);
    char *exact = malloc((size_t)n + 1);
    CHECK(exact != NULL);
    CHECK(json_string(tok, len, exact, (size_t)n + 1, &why) == n && exact[n] == '\0');
    if (n > 0) {
        char *tight = malloc((size_t)n);
        CHECK(tight != NULL);
        CHECK(json_string(tok, len, tight, (size_t)n, &why) == -1);
        free(tight);
    }
    free(exact);
}

/* The span of key in js alone, or found == false. */
static enum json_result scan_one(const char *js, size_t len, const char *key, struct json_span *sp)
{
    const char *why;
    return json_object_scan(js, len, &key, 1, sp, &why);
}

static void check_span(const char *js, size_t len, struct json_span sp)
{
    const char *why;
    CHECK(sp.start < sp.end && sp.end <= len);
    CHECK(strchr(" \t\r\n", js[sp.start]) == NULL);
    size_t vlen = sp.end - sp.start, wlen = vlen + 6;
    char *w = malloc(wlen);
    CHECK(w != NULL);
    memcpy(w, "{\"k\":", 5);
    memcpy(w + 5, js + sp.start, vlen);
    w[wlen - 1] = '}';
    struct json_span ws;
    CHECK(scan_one(w, wlen, "k", &ws) == JSON_OK && ws.found && ws.start == 5 &&
          ws.end == 5 + vlen);
    free(w);
    if (js[sp.start] == '"') {
        char *out = malloc(vlen);
        CHECK(out != NULL);
        int n = json_string(js + sp.start, vlen, out, vlen, &why);
        CHECK(n < 0 || out[n] == '\0'); /* a NUL inside is refused */
        check_string_token(js + sp.start, vlen, n);
        free(out);
    }
}

static void check_scan(const char *js, size_t len)
{
    static const char *const both[] = {"model", "stream"};
    struct json_span m, st, two[2];
    const char *why;
    enum json_result rm = scan_one(js, len, "model", &m), rs = scan_one(js, len, "stream", &st);
    enum json_result r2 = json_object_scan(js, len, both, 2, two, &why);
    CHECK((rm == JSON_INVALID) == (rs == JSON_INVALID) &&
          (r2 == JSON_INVALID) == (rm == JSON_INVALID));
    CHECK((r2 == JSON_AMBIGUOUS) == (rm == JSON_AMBIGUOUS || rs == JSON_AMBIGUOUS));
    if (r2 != JSON_OK)
        return;
    CHECK(two[0].found == m.found && two[1].found == st.found);
    if (m.found) {
        CHECK(two[0].start == m.start && two[0].end == m.end);
        check_span(js, len, m);
    }
    if (st.found)
        check_span(js, len, st);
}

/* Well-formed UTF-8 without NUL: what json_escape keeps byte for byte. */
static bool plain_utf8(const char *s, size_t n)
{
    char tok[8];
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        if (i + len > n)
            return false;
        tok[0] = '"', memcpy(tok + 1, s + i, len), tok[len + 1] = '"';
        char out[8];
        const char *why;
        if (json_string(tok, len + 2, out, sizeof(out), &why) != (int)len)
            return false;
        i += len;
    }
    return true;
}

static void check_escape(const char *src, uint64_t h)
{
    const char *why;
    size_t sl = strlen(src), cap = 6 * sl + 8;
    char *esc = malloc(cap), *tok = malloc(cap + 16), *dec = malloc(3 * sl + 1);
    CHECK(esc != NULL && tok != NULL && dec != NULL);
    size_t n = json_escape(esc, cap, src);
    CHECK(n < cap && strlen(esc) == n);
    tok[0] = '"';
    memcpy(tok + 1, esc, n);
    tok[n + 1] = '"';
    int d = json_string(tok, n + 2, dec, 3 * sl + 1, &why);
    CHECK(d >= 0); /* whatever the bytes, the escape is a valid JSON string */
    if (plain_utf8(src, sl))
        CHECK((size_t)d == sl && memcmp(dec, src, sl) == 0);

    /* inside an object, as an error body carries it */
    struct json_span sp;
    size_t olen = n + 12;
    memcpy(tok, "{\"model\":\"", 10);
    memcpy(tok + 10, esc, n);
    memcpy(tok + 10 + n, "\"}", 2);
    CHECK(scan_one(tok, olen, "model", &sp) == JSON_OK && sp.found && sp.start == 9 &&
          sp.end == olen - 1);

    /* cut short: a prefix of the whole escape, made of whole escapes */
    size_t cap2 = (size_t)(h % 40);
    char *cut = malloc(cap2 ? cap2 : 1);
    CHECK(cut != NULL);
    size_t n2 = json_escape(cut, cap2, src);
    if (cap2 > 0) {
        CHECK(n2 < cap2 && strlen(cut) == n2 && n2 <= n && memcmp(cut, esc, n2) == 0);
        tok[0] = '"';
        memcpy(tok + 1, cut, n2);
        tok[n2 + 1] = '"';
        CHECK(json_string(tok, n2 + 2, dec, 3 * sl + 1, &why) >= 0);
    } else {
        CHECK(n2 == 0);
    }
    free(cut);
    free(esc);
    free(tok);
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *js = (const char *)data, *why;
    check_scan(js, size);

    char *out = malloc(size ? size : 1);
    CHECK(out != NULL);
    int n = json_string(js, size, out, size, &why);
    if (n >= 0)
        CHECK(out[n] == '\0');
    check_string_token(js, size, n);
    free(out);

    char *src = fuzz_copy(data, size, 1);
    check_escape(src, fuzz_hash(data, size));
    free(src);
    return 0;
}
