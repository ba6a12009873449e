/*
 * chunked.c - fuzzes the incremental chunked-body scanner
 * (http/chunked.c): chunked_scan and chunked_decode, the input fed
 * once whole and once in pieces whose sizes (one byte at a time, small or
 * large) and whose chunk limit are drawn from a hash of the input.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks:
 * - a call returns -1 (with a reason) or a count <= len, the whole len
 *   unless the body ended inside it (then done is set); a call after the
 *   end, or with no bytes, consumes nothing;
 * - chunked_scan and chunked_decode agree, and splitting the input changes
 *   nothing: the same count, the same done, the same reason for a refusal,
 *   and the same decoded bytes;
 * - every piece handed to on_data is non-empty and lies inside the bytes of
 *   that call; the decoded body is shorter than the bytes consumed;
 * - a finished body ends in CRLF; the chunk count stays within max_chunks;
 * - a consumer that fails stops the decode with "body consumer failed", or
 *   changes nothing when the body had no data.
 */
#include "../http/http.h"
#include "fuzz.h"

#include <string.h>

struct sink {
    char *out;
    size_t len, cap, calls, fail_at;
    const char *lo, *hi; /* the bytes of the current call */
};

static int on_data(void *ctx, const char *p, size_t n)
{
    struct sink *s = ctx;
    CHECK(n > 0 && p >= s->lo && p + n <= s->hi);
    if (++s->calls == s->fail_at)
        return 1;
    CHECK(s->len + n <= s->cap);
    memcpy(s->out + s->len, p, n);
    s->len += n;
    return 0;
}

static uint64_t pick_max_chunks(uint64_t h)
{
    switch (h % 3) {
    case 0:
        return 0; /* no limit */
    case 1:
        return 1 + (h >> 8) % 8;
    }
    return 1000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    uint64_t h = fuzz_hash(data, size), rng = h;
    uint64_t max_chunks = pick_max_chunks(h);
    struct chunked c;
    bool done_a, done;
    const char *why_a = NULL, *why = NULL;

    /* whole, through chunked_decode */
    struct sink a = {.out = malloc(size + 1), .cap = size, .lo = buf, .hi = buf + size};
    CHECK(a.out != NULL);
    chunked_init(&c, max_chunks);
    ssize_t ra = chunked_decode(&c, buf, size, &done_a, &why_a, on_data, &a);
    if (ra < 0) {
        CHECK(why_a != NULL);
    } else {
        CHECK((size_t)ra <= size);
        CHECK(done_a || (size_t)ra == size);
        CHECK(a.len < (size_t)ra || ra == 0);
        if (done_a) {
            CHECK(ra >= 5 && buf[ra - 2] == '\r' && buf[ra - 1] == '\n');
            CHECK(chunked_decode(&c, buf + ra, size - (size_t)ra, &done, &why, on_data, &a) == 0);
            CHECK(done);
        }
        CHECK(chunked_decode(&c, buf, 0, &done, &why, on_data, &a) == 0 && done == done_a);
    }
    if (max_chunks > 0 && ra >= 0)
        CHECK(c.chunks <= max_chunks);

    /* whole, through chunked_scan */
    chunked_init(&c, max_chunks);
    why = NULL;
    CHECK(chunked_scan(&c, buf, size, &done, &why) == ra);
    CHECK(why == why_a && (ra < 0 || done == done_a));

    /* in pieces */
    struct sink b = {.out = malloc(size + 1), .cap = size};
    CHECK(b.out != NULL);
    int mode = (int)(fuzz_next(&rng) % 4); /* 0: bytes, 1-2: small pieces, 3: large */
    chunked_init(&c, max_chunks);
    size_t off = 0;
    ssize_t rb = 0;
    done = false;
    why = NULL;
    while (off < size && !done) {
        size_t n = mode == 0   ? 1
                   : mode == 3 ? 1 + (size_t)(fuzz_next(&rng) % 4096)
                               : (size_t)(fuzz_next(&rng) % 17); /* 0 too */
        if (n > size - off)
            n = size - off;
        b.lo = buf + off, b.hi = buf + off + n;
        ssize_t k = chunked_decode(&c, buf + off, n, &done, &why, on_data, &b);
        if (k < 0) {
            rb = -1;
            break;
        }
        CHECK((size_t)k <= n && (done || (size_t)k == n));
        off += (size_t)k;
        rb += k;
    }
    CHECK(rb == ra && why == why_a);
    if (ra >= 0)
        CHECK(done == done_a && b.len == a.len && memcmp(a.out, b.out, a.len) == 0);

    /* a consumer that gives up at its first piece */
    struct sink f = {.out = b.out, .cap = size, .fail_at = 1, .lo = buf, .hi = buf + size};
    chunked_init(&c, max_chunks);
    why = NULL;
    ssize_t rf = chunked_decode(&c, buf, size, &done, &why, on_data, &f);
    if (a.calls == 0)
        CHECK(rf == ra && why == why_a);
    else
        CHECK(rf == -1 && why != NULL && strcmp(why, "body consumer failed") == 0);

    free(a.out);
    free(b.out);
    return 0;
}
