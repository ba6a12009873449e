/*
 * swap.c - fuzzes http/swap.c, which finds secrets' placeholders in a
 * request head and swaps them for values (DESIGN section 11), on heads
 * the strict parser accepted.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks:
 * - every placeholder written as is anywhere in the head is found
 *   (http_swaps_in_head), and one swapped is gone: from the target however
 *   it was spelled (raw or percent-encoded, byte by byte), from every field
 *   value, from the decoded credentials of a Basic field;
 * - a swap not used leaves its placeholder where it was;
 * - bodies: every used placeholder is replaced, no unused one is, and the
 *   bound is never passed.
 */
#include "../http/http.h"
#include "fuzz.h"

#include <string.h>

#define PH_A "egressd-secret-alpha"
#define PH_B "egressd-secret-b"

static const struct http_swap swaps[] = {
    {PH_A, "VALUE/A+1", sizeof(PH_A) - 1, 9},
    {PH_B, "V", sizeof(PH_B) - 1, 1},
};

/* Does the percent-decoded text spell a placeholder somewhere? */
static int decoded_has(const char *t, size_t n, const char *ph)
{
    char *d = malloc(n + 1);
    size_t o = 0, used;
    if (d == NULL)
        abort();
    for (size_t i = 0; i < n; i += used) {
        int c = http_pct_byte(t, i, n, &used);
        d[o++] = c < 0 ? t[i] : (char)c;
        used = c < 0 ? 1 : used;
    }
    int has = memmem(d, o, ph, strlen(ph)) != NULL;
    free(d);
    return has;
}

static void check_head(const struct http_msg *m, const struct http_swaps *sw)
{
    uint64_t found = http_swaps_in_head(m, sw);
    for (size_t j = 0; j < sw->n; j++)
        if (memmem(m->method, m->head_len, sw->v[j].from, sw->v[j].from_len) != NULL)
            CHECK(found >> j & 1);
    char *out = malloc(3 * 65536);
    struct sbuf b;
    if (out == NULL)
        abort();
    sbuf_init(&b, out, 3 * 65536);
    http_put_target(&b, m->target, m->target_len, sw);
    CHECK(!b.cut);
    for (size_t j = 0; j < sw->n; j++)
        if (sw->use >> j & 1)
            CHECK(!decoded_has(b.buf, b.len, sw->v[j].from));
    for (size_t i = 0; i < m->n_headers; i++) {
        sbuf_init(&b, out, 3 * 65536);
        http_put_value(&b, &m->headers[i], sw);
        for (size_t j = 0; !b.cut && j < sw->n; j++) {
            int had = memmem(m->headers[i].value, m->headers[i].value_len, sw->v[j].from,
                             sw->v[j].from_len) != NULL;
            int has = memmem(b.buf, b.len, sw->v[j].from, sw->v[j].from_len) != NULL;
            CHECK((sw->use >> j & 1) ? !has : had == has);
        }
    }
    free(out);
}

static void check_body(const char *in, size_t n, const struct http_swaps *sw)
{
    struct body_buffer out = {0};
    uint64_t swapped;
    size_t max = 4 * n + 64;
    if (http_swap_bytes(in, n, sw, &out, max, &swapped) == 0) {
        CHECK(out.len <= max);
        for (size_t j = 0; j < sw->n; j++) {
            if (sw->use >> j & 1)
                CHECK(memmem(out.p ? out.p : "", out.len, sw->v[j].from, sw->v[j].from_len) ==
                      NULL);
            CHECK(((swapped >> j) & 1) == 0 || (sw->use >> j & 1));
        }
    }
    body_buffer_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_copy(data, size, 0);
    struct http_msg *m = malloc(sizeof(*m));
    const char *why;
    if (m == NULL)
        abort();
    struct http_swaps sw = {swaps, 2, fuzz_hash(data, size) % 4};
    if (http_parse_request(buf, size, m, &why) == HTTP_OK)
        check_head(m, &sw);
    check_body(buf, size, &sw);
    free(m);
    free(buf);
    return 0;
}
