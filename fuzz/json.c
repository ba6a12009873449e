/*
 * json.c - fuzzes the JSON scanner (inference/json.c): json_member for
 * "model" and "stream" on the input, json_string on the member's span and
 * on the whole input, and json_escape on the input's bytes (up to its first
 * NUL) with a round trip through json_string.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks:
 * - a member's span [vstart, vend) is non-empty, lies inside the input and
 *   starts at a non-blank byte, and the span alone re-parses as the same
 *   value: in {"k":SPAN} the member "k" is exactly SPAN;
 * - a string span decodes (it is valid), into no more than its length - 2
 *   bytes, NUL-terminated; with cap exactly one more than that it still
 *   fits, with one less it is refused (-1), never written past cap;
 * - json_escape writes a NUL-terminated string of the length it returns,
 *   and "escaped" decodes back to the original bytes; inside {"model":...}
 *   json_member finds it whole; cut short by a small cap, the output is a
 *   prefix of the full escape made of whole escapes (it decodes to a prefix
 *   of the input).
 */
#include "../inference/inference.h"
#include "fuzz.h"

#include <string.h>

static void check_string_token(const char *tok, size_t len, int n)
{
    if (n < 0)
        return;
    CHECK(len >= 2 && (size_t)n <= len - 2);
    char *exact = malloc((size_t)n + 1);
    CHECK(exact != NULL);
    CHECK(json_string(tok, len, exact, (size_t)n + 1) == n && exact[n] == '\0');
    if (n > 0) {
        char *tight = malloc((size_t)n);
        CHECK(tight != NULL);
        CHECK(json_string(tok, len, tight, (size_t)n) == -1);
        free(tight);
    }
    free(exact);
}

static void check_member(const char *js, size_t len, const char *key)
{
    size_t vs = 0, ve = 0;
    if (json_member(js, len, key, &vs, &ve) != 0)
        return;
    CHECK(vs < ve && ve <= len);
    CHECK(strchr(" \t\r\n", js[vs]) == NULL);
    size_t vlen = ve - vs, wlen = vlen + 6, ws = 0, we = 0;
    char *w = malloc(wlen);
    CHECK(w != NULL);
    memcpy(w, "{\"k\":", 5);
    memcpy(w + 5, js + vs, vlen);
    w[wlen - 1] = '}';
    CHECK(json_member(w, wlen, "k", &ws, &we) == 0 && ws == 5 && we == 5 + vlen);
    free(w);
    if (js[vs] == '"') {
        char *out = malloc(vlen);
        CHECK(out != NULL);
        int n = json_string(js + vs, vlen, out, vlen);
        CHECK(n >= 0 && out[n] == '\0');
        check_string_token(js + vs, vlen, n);
        free(out);
    }
}

static void check_escape(const char *src, uint64_t h)
{
    size_t sl = strlen(src), cap = 6 * sl + 8;
    char *esc = malloc(cap), *tok = malloc(cap + 16), *dec = malloc(sl + 1);
    CHECK(esc != NULL && tok != NULL && dec != NULL);
    size_t n = json_escape(esc, cap, src);
    CHECK(n < cap && strlen(esc) == n);
    tok[0] = '"';
    memcpy(tok + 1, esc, n);
    tok[n + 1] = '"';
    CHECK(json_string(tok, n + 2, dec, sl + 1) == (int)sl && memcmp(dec, src, sl) == 0);

    /* inside an object, as an error body carries it */
    size_t vs = 0, ve = 0, olen = n + 12;
    memcpy(tok, "{\"model\":\"", 10);
    memcpy(tok + 10, esc, n);
    memcpy(tok + 10 + n, "\"}", 2);
    CHECK(json_member(tok, olen, "model", &vs, &ve) == 0 && vs == 9 && ve == olen - 1);

    /* cut short */
    size_t cap2 = (size_t)(h % 40);
    char *cut = malloc(cap2 ? cap2 : 1);
    CHECK(cut != NULL);
    size_t n2 = json_escape(cut, cap2, src);
    if (cap2 > 0) {
        CHECK(n2 < cap2 && strlen(cut) == n2 && n2 <= n && memcmp(cut, esc, n2) == 0);
        tok[0] = '"';
        memcpy(tok + 1, cut, n2);
        tok[n2 + 1] = '"';
        int d = json_string(tok, n2 + 2, dec, sl + 1);
        CHECK(d >= 0 && (size_t)d <= sl && memcmp(dec, src, (size_t)d) == 0);
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
    const char *js = (const char *)data;
    check_member(js, size, "model");
    check_member(js, size, "stream");

    char *out = malloc(size ? size : 1);
    CHECK(out != NULL);
    int n = json_string(js, size, out, size);
    if (n >= 0)
        CHECK(out[n] == '\0');
    check_string_token(js, size, n);
    free(out);

    char *src = fuzz_copy(data, size, 1);
    check_escape(src, fuzz_hash(data, size));
    free(src);
    return 0;
}
