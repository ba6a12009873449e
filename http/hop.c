/*
 * hop.c - what passes from one hop to the next: RFC 9110's hop-by-hop
 * fields (and any field a message's Connection header names) stop at
 * egressd, and so do the framing fields, Content-Length,
 * Transfer-Encoding and Host: egressd writes those itself from what it
 * parsed, so that no message can name one in Connection and make the next
 * hop frame it differently (request smuggling); a Transfer-Encoding keeps
 * its codings ("gzip, chunked"), since the body goes on as framed.  One table for requests
 * and responses, forwarded, intercepted or inspected.
 */
#include "http.h"

#include <string.h>
#include <strings.h>

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

/* The message's own Transfer-Encoding: the parser let only one through,
 * ending in chunked (exactly chunked for requests), and bodies are relayed
 * as they are framed, so a response's "gzip, chunked" stays so and the
 * client still undoes the gzip. */
static void put_transfer_encoding(struct sbuf *b, const struct http_msg *m)
{
    const struct http_header *te = http_header_find(m, "transfer-encoding");
    sbuf_str(b, "Transfer-Encoding: ");
    if (te != NULL)
        sbuf_add(b, te->value, te->value_len);
    else
        sbuf_str(b, "chunked");
    sbuf_str(b, "\r\n");
}

bool http_transfer_coded(const struct http_msg *m)
{
    const struct http_header *te = http_header_find(m, "transfer-encoding");
    return m->framing == BODY_CHUNKED && te != NULL &&
           !(te->value_len == 7 && strncasecmp(te->value, "chunked", 7) == 0);
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
    if (m->framing == BODY_CHUNKED)
        put_transfer_encoding(b, m); /* with the message's own codings */
    else
        http_put_framing(b, m->framing, m->content_length, m->has_length);
}
