/*
 * fuzz.h - what the libFuzzer targets in fuzz/ share: the entry point's
 * prototype, CHECK (an invariant that holds whatever the input; a failure
 * prints the condition and aborts, which libFuzzer reports as a crash with
 * the input saved), and a small deterministic generator for targets that
 * derive their own choices (split points, buffer sizes) from the input.
 */
#ifndef EGRESSD_FUZZ_H
#define EGRESSD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* FNV-1a over the input: the same input always makes the same choices. */
static inline uint64_t fuzz_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3u;
    return h;
}

/* xorshift64: never returns to 0 from a non-zero state. */
static inline uint64_t fuzz_next(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15u;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* A heap copy of exactly n bytes (so that AddressSanitizer sees one byte
 * too far), plus a NUL when nul is true. */
static inline char *fuzz_copy(const uint8_t *p, size_t n, int nul)
{
    char *c = malloc(n + (nul ? 1 : 0) + (n == 0 && !nul));
    if (c == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        c[i] = (char)p[i];
    if (nul)
        c[n] = '\0';
    return c;
}

#endif
