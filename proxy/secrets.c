/*
 * secrets.c - the secrets of one request (DESIGN section 11): which
 * placeholders its head holds, whether each may be swapped for its value
 * toward this destination and for this caller, and the swaps to make.
 *
 * A placeholder in the head that may not go where the request goes
 * refuses the request (403 secret_not_allowed, nothing forwarded); one in
 * a body is never looked for unless a secret bound here swaps in bodies,
 * so that an agent quoting a placeholder to a model is never refused.
 * Values go only into requests egressd sends over TLS: plain HTTP, even
 * to a bound host and port, would hand them to anyone on the path; and
 * never into a TRACE, which the origin sends back to the sandbox.
 * Matching and swapping are http/swap.c's; binding is the policy's.
 */
#include "proxy.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SECRET_BODY_MAX (256 * 1024) /* DESIGN section 11: larger bodies get 413 */

/* TRACE (and IIS's TRACK) asks the origin to send the request back, and
 * Apache httpd answers it by default: a value in it reaches the sandbox. */
static bool echoed(const struct http_msg *m)
{
    return m->method_len == 5 &&
           (strncasecmp(m->method, "TRACE", 5) == 0 || strncasecmp(m->method, "TRACK", 5) == 0);
}

void secrets_find(struct request_secrets *rs, const struct policy *p, const struct http_msg *m,
                  const struct host *h, uint16_t port, const struct identity *id, bool cleartext)
{
    size_t n = policy_secret_count(p);
    *rs = (struct request_secrets){.refused = -1};
    rs->sw.v = rs->v;
    rs->sw.n = n < HTTP_SWAPS_MAX ? n : HTTP_SWAPS_MAX;
    if (n == 0)
        return;
    for (size_t i = 0; i < rs->sw.n; i++) {
        struct secret_view sv;
        policy_secret_view(p, i, &sv);
        rs->v[i] = (struct http_swap){sv.placeholder, sv.value, sv.placeholder_len, sv.value_len};
        rs->names[i] = sv.name;
        const char *why = policy_secret_refusal(p, i, h, port, id);
        if (why == NULL && cleartext) /* anyone on the path would read it */
            why = "the request would carry it unencrypted (secrets go only into HTTPS requests)";
        if (why == NULL && echoed(m))
            why = "the origin sends a TRACE back to the client, value and all";
        if (why == NULL && sv.in_body)
            rs->body |= 1ull << i;
        if (why != NULL)
            rs->unbound |= 1ull << i;
        rs->why[i] = why;
    }
    uint64_t found = http_swaps_in_head(m, &rs->sw);
    rs->sw.use = found & ~rs->unbound;
    for (size_t i = 0; rs->refused < 0 && i < rs->sw.n; i++)
        if (found & rs->unbound & 1ull << i)
            rs->refused = (int)i;
}

/* Count the secrets whose bits are in mask under result ("substituted",
 * "refused") and name them in rs->used. */
static void count_used(struct request_secrets *rs, uint64_t mask, const char *result)
{
    struct sbuf b;
    sbuf_init(&b, rs->used, sizeof(rs->used));
    for (size_t i = 0; i < rs->sw.n; i++) {
        if (!(mask >> i & 1))
            continue;
        sbuf_printf(&b, "%s%s", b.len ? "," : "", rs->names[i]);
        metrics_secret(rs->names[i], result);
    }
}

void secrets_refuse(struct request_secrets *rs, const struct host *h, uint16_t port, char *out,
                    size_t cap, struct log_fields *f)
{
    int i = rs->refused;
    snprintf(out, cap, "the placeholder of secret '%s' may not go to %s:%u: %s", rs->names[i],
             h->name, port, rs->why[i]);
    count_used(rs, 1ull << i, "refused");
    f->secrets = rs->used;
    f->action = "deny", f->reason = NULL;
}

/* When a secret bound here swaps into bodies and the request has one: the
 * body taken whole into x (at most 256 KiB, by deadline), the swaps made
 * added to *swapped.  NULL, or the error to answer (x->why says more). */
static const struct http_error *take_body(const struct request_secrets *rs, struct exchange *x,
                                          int64_t deadline, uint64_t *swapped)
{
    if (rs->body == 0 || x->framing == BODY_NONE)
        return NULL;
    struct http_swaps in_body = {rs->v, rs->sw.n, rs->body};
    uint64_t found;
    enum send_result rc = exchange_take_body(x, &in_body, SECRET_BODY_MAX, deadline, &found);
    if (rc == SENT) {
        *swapped |= found;
        return NULL;
    }
    if (rc == CLIENT_TOO_LARGE && x->why == NULL)
        x->why = "a body secrets are swapped into is larger than 256 KiB";
    const struct http_error *e = exchange_client_error(rc, &ERR_OVERLOADED);
    return e != NULL ? e : &ERR_BAD_REQUEST; /* a client gone mid-body: nothing goes up */
}

const struct http_error *secrets_finish_head(struct request_secrets *rs, struct exchange *x,
                                             struct sbuf *o, int64_t deadline, struct log_fields *f)
{
    uint64_t swapped = rs->sw.use;
    const struct http_error *e = take_body(rs, x, deadline, &swapped);
    exchange_end_head(x, o);
    if (e == NULL && o->cut)
        e = &ERR_HEADERS_TOO_LARGE, x->why = "request head too large to forward";
    count_used(rs, swapped, "substituted");
    x->secrets_sent |= swapped != 0;
    f->secrets = rs->used[0] ? rs->used : NULL;
    return e;
}
