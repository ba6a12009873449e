/*
 * http_checks.h - invariants of a parsed HTTP head, shared by the request
 * and response targets: every span lies inside the head, the head is the
 * input's first head and ends in CRLF CRLF, header names are tokens and
 * values hold no CR, LF or NUL nor surrounding blanks, and the framing is
 * the one the framing headers say (at most one Content-Length, at most one
 * Transfer-Encoding, never both).
 */
#ifndef EGRESSD_FUZZ_HTTP_CHECKS_H
#define EGRESSD_FUZZ_HTTP_CHECKS_H

#include "../http/http.h"
#include "fuzz.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

static inline void check_span(const char *buf, size_t head_len, const char *p, size_t n)
{
    CHECK(p != NULL && p >= buf && n <= head_len && (size_t)(p - buf) <= head_len - n);
}

static inline bool fuzz_is_tchar(unsigned char c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* What every parse says, whatever the input. */
static inline void check_result(enum http_result r, const struct http_msg *m, const char *why,
                                const char *buf, size_t len)
{
    CHECK(r == HTTP_OK || r == HTTP_INCOMPLETE || r == HTTP_BAD);
    CHECK(m->head_len == http_head_length(buf, len));
    CHECK(m->head_len <= len);
    CHECK((r == HTTP_INCOMPLETE) == (m->head_len == 0));
    if (r == HTTP_BAD)
        CHECK(why != NULL && why[0] != '\0');
    if (m->head_len > 0)
        CHECK(buf[m->head_len - 1] == '\n');
}

/* A head that parsed: is_request picks the request rules. */
static inline void check_head(const char *buf, const struct http_msg *m, bool is_request)
{
    size_t hl = m->head_len;
    CHECK(hl >= 4 && memcmp(buf + hl - 4, "\r\n\r\n", 4) == 0);
    CHECK(memchr(buf, '\0', hl) == NULL);
    CHECK(m->minor == 0 || m->minor == 1);
    CHECK(m->n_headers <= HTTP_MAX_HEADERS);
    size_t cl = 0, te = 0, hosts = 0;
    const struct http_header *clh = NULL, *teh = NULL;
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http_header *h = &m->headers[i];
        check_span(buf, hl, h->name, h->name_len);
        check_span(buf, hl, h->value, h->value_len);
        CHECK(h->name_len > 0 && h->name[h->name_len] == ':');
        CHECK(h->value > h->name + h->name_len);
        for (size_t k = 0; k < h->name_len; k++)
            CHECK(fuzz_is_tchar((unsigned char)h->name[k]));
        for (size_t k = 0; k < h->value_len; k++) {
            unsigned char c = (unsigned char)h->value[k];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (h->value_len > 0) {
            CHECK(h->value[0] != ' ' && h->value[0] != '\t');
            CHECK(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
        }
        if (http_name_is(h, "content-length"))
            cl++, clh = h;
        else if (http_name_is(h, "transfer-encoding"))
            te++, teh = h;
        else if (http_name_is(h, "host"))
            hosts++;
    }
    CHECK(cl <= 1 && te <= 1 && !(cl && te));
    if (te)
        CHECK(m->minor == 1);
    if (cl) {
        uint64_t v = 0;
        CHECK(clh->value_len >= 1 && clh->value_len <= 18);
        for (size_t k = 0; k < clh->value_len; k++) {
            CHECK(isdigit((unsigned char)clh->value[k]));
            v = v * 10 + (uint64_t)(clh->value[k] - '0');
        }
        CHECK(m->content_length == v);
    } else {
        CHECK(m->content_length == 0);
    }
    if (is_request) {
        CHECK(m->framing == (te ? BODY_CHUNKED : cl ? BODY_LENGTH : BODY_NONE));
        if (te)
            CHECK(teh->value_len == 7 && strncasecmp(teh->value, "chunked", 7) == 0);
        CHECK(m->minor == 1 ? hosts == 1 : hosts <= 1);
    } else {
        if (te)
            CHECK(teh->value_len >= 7 &&
                  strncasecmp(teh->value + teh->value_len - 7, "chunked", 7) == 0);
    }
}

/* Two parses of the same bytes agree (framing aside: the caller compares it). */
static inline void check_same(const struct http_msg *a, const struct http_msg *b)
{
    CHECK(a->method == b->method && a->method_len == b->method_len);
    CHECK(a->target == b->target && a->target_len == b->target_len);
    CHECK(a->status == b->status && a->minor == b->minor);
    CHECK(a->n_headers == b->n_headers);
    for (size_t i = 0; i < a->n_headers; i++) {
        CHECK(a->headers[i].name == b->headers[i].name);
        CHECK(a->headers[i].name_len == b->headers[i].name_len);
        CHECK(a->headers[i].value == b->headers[i].value);
        CHECK(a->headers[i].value_len == b->headers[i].value_len);
    }
    CHECK(a->content_length == b->content_length);
    CHECK(a->conn_close == b->conn_close && a->has_length == b->has_length);
    CHECK(a->expect_continue == b->expect_continue);
    CHECK(a->head_len == b->head_len);
}

#endif
