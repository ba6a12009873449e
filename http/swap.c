/*
 * swap.c - placeholders in requests swapped for the credentials they stand
 * for (DESIGN section 11), wherever a client may have put one: a field
 * value, the user:password inside `Authorization: Basic`, the target (as
 * written or percent-encoded), and a body egressd has read whole.
 *
 * The caller says which placeholders may be swapped (struct http_swaps'
 * use bits); finding them is done on the whole head, so that a
 * placeholder headed where its secret may not go is seen wherever it is.
 * Placeholders hold no '%', '"', '\' or space and none holds another
 * (policy checks both), so one left-to-right pass finds each exactly once;
 * nor '/', '?', '#' or ';', so that swapping one out of a target never
 * changes the target's shape.
 * Values go into a target percent-encoded (a '/' in a value must not make
 * a new path segment), and into fields as they are (policy refused values
 * with control characters, so a value cannot start a new line).
 */
#include "http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Decoded user:password: any that fit in a request head, so that padding
 * credentials never hides a placeholder in them. */
#define BASIC_MAX (HTTP_HEAD_MAX / 4 * 3)

typedef int (*put_fn)(void *ctx, const char *p, size_t n);

static int sbuf_put(void *ctx, const char *p, size_t n)
{
    sbuf_add(ctx, p, n);
    return 0;
}

/* Which used swap's placeholder starts at in[i]; -1 for none. */
static int swap_at(const char *in, size_t len, size_t i, const struct http_swaps *sw)
{
    for (size_t j = 0; j < sw->n; j++) {
        const struct http_swap *s = &sw->v[j];
        if ((sw->use >> j & 1) && in[i] == s->from[0] && len - i >= s->from_len &&
            memcmp(in + i, s->from, s->from_len) == 0)
            return (int)j;
    }
    return -1;
}

/* in through put, used placeholders replaced by their values; the bits of
 * those replaced are set in *swapped. */
static int swap_through(const char *in, size_t len, const struct http_swaps *sw, put_fn put,
                        void *ctx, uint64_t *swapped)
{
    size_t run = 0; /* bytes from here on copied as they are */
    for (size_t i = 0; i < len;) {
        int j = sw != NULL && sw->use != 0 ? swap_at(in, len, i, sw) : -1;
        if (j < 0) {
            i++;
            continue;
        }
        const struct http_swap *s = &sw->v[j];
        if (put(ctx, in + run, i - run) != 0 || put(ctx, s->to, s->to_len) != 0)
            return -1;
        *swapped |= 1ull << j;
        i += s->from_len;
        run = i;
    }
    return put(ctx, in + run, len - run);
}

/* ---- Basic credentials ------------------------------------------------------------ */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

/* Base64 as RFC 7617 writes it, its padding optional as Node and Java
 * read it (a placeholder in unpadded credentials is found and swapped
 * too); -1 for anything else. */
static int b64_decode(const char *in, size_t len, char *out, size_t cap, size_t *n)
{
    size_t padded = (len + 3) / 4 * 4;
    if (len == 0 || len % 4 == 1 || padded / 4 * 3 > cap)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < padded; i += 4) {
        bool last = i + 4 == padded;
        int v[4];
        for (int k = 0; k < 4; k++) {
            char c = i + k < len ? in[i + k] : '=';
            v[k] = last && k >= 2 && c == '=' ? -2 : b64_value(c);
        }
        if (v[0] < 0 || v[1] < 0 || v[2] == -1 || v[3] == -1 || (v[2] == -2 && v[3] != -2))
            return -1;
        out[o++] = (char)(v[0] << 2 | v[1] >> 4);
        if (v[2] >= 0)
            out[o++] = (char)((v[1] & 15) << 4 | v[2] >> 2);
        if (v[3] >= 0)
            out[o++] = (char)((v[2] & 3) << 6 | v[3]);
    }
    *n = o;
    return 0;
}

void http_base64_encode(struct sbuf *b, const unsigned char *in, size_t len)
{
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        char q[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63], i + 1 < len ? b64[v >> 6 & 63] : '=',
                     i + 2 < len ? b64[v & 63] : '='};
        sbuf_add(b, q, 4);
    }
}

/* The decoded credentials of a Basic field value into out; -1 when it is
 * not one ("Basic", spaces, one base64 token). */
static int basic_credentials(const char *v, size_t len, char *out, size_t cap, size_t *n)
{
    if (len < 6 || strncasecmp(v, "Basic ", 6) != 0)
        return -1;
    size_t i = 6;
    while (i < len && v[i] == ' ')
        i++;
    return b64_decode(v + i, len - i, out, cap, n);
}

static bool is_authorization(const struct http_header *h)
{
    return http_name_is(h, "authorization");
}

/* ---- finding ---------------------------------------------------------------------- */

/* How many target bytes from t[i] spell p, each byte as written or
 * percent-encoded; 0 when they do not. */
static size_t spelled_at(const char *t, size_t len, size_t i, const char *p, size_t plen)
{
    size_t start = i, used;
    for (size_t k = 0; k < plen; k++, i += used) {
        if (i >= len || http_pct_byte(t, i, len, &used) != (unsigned char)p[k])
            return 0;
    }
    return i - start;
}

static bool in_target(const struct http_msg *m, const struct http_swap *s)
{
    for (size_t i = 0; i < m->target_len; i++)
        if (spelled_at(m->target, m->target_len, i, s->from, s->from_len) > 0)
            return true;
    return false;
}

/* The placeholders inside the Basic credentials of every Authorization
 * field (each is swapped when it holds one, so each is looked in). */
static uint64_t in_basic(const struct http_msg *m, const struct http_swaps *sw)
{
    char basic[BASIC_MAX];
    size_t n;
    uint64_t found = 0;
    bool used = false; /* wiped only when credentials may have been decoded into it */
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http_header *h = &m->headers[i];
        if (!is_authorization(h))
            continue;
        used = true;
        if (basic_credentials(h->value, h->value_len, basic, sizeof(basic), &n) != 0)
            continue;
        for (size_t j = 0; j < sw->n && j < HTTP_SWAPS_MAX; j++)
            if (memmem(basic, n, sw->v[j].from, sw->v[j].from_len) != NULL)
                found |= 1ull << j;
    }
    if (used)
        explicit_bzero(basic, sizeof(basic));
    return found;
}

uint64_t http_swaps_in_head(const struct http_msg *m, const struct http_swaps *sw)
{
    uint64_t found = in_basic(m, sw);
    for (size_t j = 0; j < sw->n && j < HTTP_SWAPS_MAX; j++) {
        const struct http_swap *s = &sw->v[j];
        if (memmem(m->method, m->head_len, s->from, s->from_len) != NULL || in_target(m, s))
            found |= 1ull << j;
    }
    return found;
}

/* ---- writing ---------------------------------------------------------------------- */

static void put_encoded(struct sbuf *b, const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z' ? 1
                                                   : (c >= '0' && c <= '9') || strchr("-._~", c))
            sbuf_add(b, v + i, 1);
        else
            sbuf_printf(b, "%%%02X", c);
    }
}

void http_put_target(struct sbuf *b, const char *target, size_t len, const struct http_swaps *sw)
{
    size_t run = 0;
    for (size_t i = 0; sw != NULL && sw->use != 0 && i < len; i++) {
        for (size_t j = 0; j < sw->n; j++) {
            size_t n;
            if (!(sw->use >> j & 1) ||
                (n = spelled_at(target, len, i, sw->v[j].from, sw->v[j].from_len)) == 0)
                continue;
            sbuf_add(b, target + run, i - run);
            put_encoded(b, sw->v[j].to, sw->v[j].to_len);
            i += n - 1;
            run = i + 1;
            break;
        }
    }
    sbuf_add(b, target + run, len - run);
}

/* Basic credentials with the used swaps done, encoded again into b; false
 * when h holds none or no swap was made (b untouched).  The buffers are
 * wiped only here, where credentials were decoded into them. */
static bool put_basic(struct sbuf *b, const struct http_header *h, const struct http_swaps *sw)
{
    char basic[BASIC_MAX], swapped[3 * BASIC_MAX]; /* more values than fit: 431 */
    size_t n;
    uint64_t bits = 0;
    struct sbuf s;
    sbuf_init(&s, swapped, sizeof(swapped));
    if (basic_credentials(h->value, h->value_len, basic, sizeof(basic), &n) != 0)
        return false;
    bool done = swap_through(basic, n, sw, sbuf_put, &s, &bits) == 0 && bits != 0;
    if (done) {
        sbuf_str(b, "Basic ");
        http_base64_encode(b, (const unsigned char *)s.buf, s.len);
        if (s.cut)
            b->cut = true; /* never half a credential */
    }
    explicit_bzero(basic, n);
    explicit_bzero(swapped, s.len);
    return done;
}

void http_put_value(struct sbuf *b, const struct http_header *h, const struct http_swaps *sw)
{
    uint64_t swapped_bits = 0;
    if (sw == NULL || sw->use == 0 || !is_authorization(h) || !put_basic(b, h, sw))
        (void)swap_through(h->value, h->value_len, sw, sbuf_put, b, &swapped_bits);
}

/* ---- bodies ----------------------------------------------------------------------- */

struct bounded {
    struct body_buffer *out;
    size_t max;
};

static int bounded_put(void *ctx, const char *p, size_t n)
{
    struct bounded *b = ctx;
    if (b->out->len + n > b->max)
        return -1;
    return body_buffer_put(b->out, p, n);
}

static int count_put(void *ctx, const char *p, size_t n)
{
    (void)p;
    *(size_t *)ctx += n;
    return 0;
}

int http_swap_bytes(const char *in, size_t len, const struct http_swaps *sw,
                    struct body_buffer *out, size_t max, uint64_t *swapped)
{
    struct bounded b = {out, max};
    size_t need = 0;
    *swapped = 0;
    (void)swap_through(in, len, sw, count_put, &need, swapped);
    if (need > max)
        return -1;
    /* one buffer of the final size: growing one would leave copies of the
     * values in freed memory, where no wipe reaches them */
    if ((out->p = malloc(need + 1)) == NULL)
        return -1;
    out->cap = need + 1, out->len = 0;
    *swapped = 0;
    return swap_through(in, len, sw, bounded_put, &b, swapped);
}
