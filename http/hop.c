/*
 * hop.c - what passes from one hop to the next: RFC 9110's hop-by-hop
 * fields (and any field a message's Connection header names) stop at
 * egressd, and so do the framing fields, Content-Length,
 * Transfer-Encoding and Host: egressd writes those itself from what it
 * parsed, so that no message can name one in Connection and make the next
 * hop frame it differently (request smuggling).  One table for requests
 * and responses, forwarded, intercepted or inspected.
 */
#include "http.h"

#include <string.h>

static const char *const hop_fields[] = {
    "connection", "keep-alive", "proxy-connection",  "proxy-authorization", "proxy-authenticate",
    "te",         "trailer",    "transfer-encoding", "content-length",      "upgrade",
    "host",
};

static bool named_in_connection(const struct http_msg *m, const struct http_header *h)
{
    char name[64];
    if (h->name_len >= sizeof(name))
        return false;
    memcpy(name, h->name, h->name_len);
    name[h->name_len] = '\0';
    for (size_t i = 0; i < m->n_headers; i++)
        if (http_name_is(&m->headers[i], "connection") &&
            http_list_has(m->headers[i].value, m->headers[i].value_len, name))
            return true;
    return false;
}

bool http_hop_by_hop(const struct http_msg *m, const struct http_header *h)
{
    for (size_t i = 0; i < sizeof(hop_fields) / sizeof(hop_fields[0]); i++)
        if (http_name_is(h, hop_fields[i]))
            return true;
    if (m->expect_continue && http_name_is(h, "expect"))
        return true; /* egressd answers 100 Continue itself */
    return named_in_connection(m, h);
}

void http_put_fields(struct sbuf *b, const struct http_msg *m, const struct http_swaps *sw)
{
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http_header *h = &m->headers[i];
        if (http_hop_by_hop(m, h))
            continue;
        sbuf_add(b, h->name, h->name_len);
        sbuf_str(b, ": ");
        http_put_value(b, h, sw);
        sbuf_str(b, "\r\n");
    }
}

void http_put_framing(struct sbuf *b, enum http_framing framing, uint64_t length, bool has_length)
{
    if (framing == BODY_CHUNKED)
        sbuf_str(b, "Transfer-Encoding: chunked\r\n");
    else if (has_length)
        sbuf_printf(b, "Content-Length: %llu\r\n", (unsigned long long)length);
}

void http_put_end_to_end(struct sbuf *b, const struct http_msg *m)
{
    http_put_fields(b, m, NULL);
    http_put_framing(b, m->framing, m->content_length, m->has_length);
}
