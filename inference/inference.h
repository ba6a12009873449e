/*
 * inference.h - the public face of the inference module.
 *
 * So far: the one strict HTTP/1.1 message parser of egressd.  The forward
 * proxy and the inference loop both read messages through it, so a request
 * that one of them would read differently from the other (the root of
 * request smuggling) cannot exist.  The parser works on a complete head held
 * in a caller's buffer and points into it; it copies nothing.
 */
#ifndef EGRESSD_INFERENCE_H
#define EGRESSD_INFERENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../tls/tls.h"

#define HTTP_HEAD_MAX    8192 /* request or response head, terminator included */
#define HTTP_MAX_HEADERS 100

struct http_header {
    const char *name, *value;
    size_t name_len, value_len;
};

enum http_framing {
    BODY_NONE,        /* no body */
    BODY_LENGTH,      /* Content-Length bytes */
    BODY_CHUNKED,     /* chunked transfer coding */
    BODY_UNTIL_CLOSE, /* responses only: the body ends when the connection does */
};

struct http_msg {
    const char *method, *target; /* requests */
    size_t method_len, target_len;
    int status; /* responses */
    int minor;  /* HTTP/1.minor */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t n_headers;
    enum http_framing framing;
    uint64_t content_length;
    bool has_length; /* a Content-Length was given (also on HEAD, 204 and 304 answers) */
    bool conn_close, conn_keep_alive, expect_continue;
    size_t head_len; /* bytes of the head, final blank line included */
};

enum http_result {
    HTTP_OK = 0,
    HTTP_INCOMPLETE = 1, /* need more bytes */
    HTTP_BAD = -1,       /* malformed: *why says how */
};

/* Length of the head (through its blank line) if buf holds all of it, else
 * 0.  A bare-LF blank line also ends the head so that the parser can refuse
 * it instead of waiting for a CRLF that never comes. */
size_t http_head_length(const char *buf, size_t len);

enum http_result http_parse_request(const char *buf, size_t len, struct http_msg *m,
                                    const char **why);
/* for_head: the request was HEAD, so the response has no body */
enum http_result http_parse_response(const char *buf, size_t len, bool for_head, struct http_msg *m,
                                     const char **why);

/* Is the path of an origin-form target (the query not included) one that
 * every server reads the same way?  0, or -1 with *why: not starting with
 * '/', a dot segment, an encoded '/', '\\', '.' or NUL (any case), a
 * backslash, NUL or '#'. */
int http_path_check(const char *target, size_t len, const char **why);
/* The reason phrase egressd writes for its own error statuses. */
const char *http_reason_phrase(int status);
const struct http_header *http_header_find(const struct http_msg *m, const char *name);
bool http_name_is(const struct http_header *h, const char *name);
/* Does a comma-separated header value (like Connection) list this token? */
bool http_list_has(const char *value, size_t len, const char *token);

enum head_status { HEAD_OK, HEAD_EOF, HEAD_PARTIAL_EOF, HEAD_TIMEOUT, HEAD_TOO_LARGE, HEAD_ERROR };
/* Read from s until buf holds a whole head (http_head_length) or the
 * deadline (now_ms() clock) passes; *len counts every byte read, which may
 * go past the head. */
enum head_status http_read_head(struct stream *s, char *buf, size_t cap, size_t *len,
                                int64_t deadline);

/* Incremental scanner of a chunked body: it validates the framing and says
 * where the body ends, so that bytes can be relayed as they are. */
struct chunked {
    int state;
    uint64_t remaining; /* data bytes left in this chunk */
    unsigned digits;
    size_t line_bytes; /* bytes in the current size or trailer line */
    uint64_t chunks, max_chunks;
};

void chunked_init(struct chunked *c, uint64_t max_chunks);
/* Scan len bytes; returns how many belong to the body (fewer than len only
 * when the body ended inside them: then *done is true), or -1 on a framing
 * error (*why set). */
ssize_t chunked_scan(struct chunked *c, const char *p, size_t len, bool *done, const char **why);
/* The same, handing each piece of data to on_data (non-zero return: stop). */
typedef int (*chunk_data_fn)(void *ctx, const char *p, size_t n);
ssize_t chunked_decode(struct chunked *c, const char *p, size_t len, bool *done, const char **why,
                       chunk_data_fn on_data, void *ctx);

/* ---- api.c ---- */

/* What the first bytes of an intercepted tunnel are. */
#define PEEK_TOKEN_MAX 32 /* longest first word of a request line taken for HTTP */
enum peek_kind {
    PEEK_TLS,   /* a TLS handshake record: 16 03 00..04 */
    PEEK_HTTP,  /* printable ASCII and a space: a request line, well formed or not */
    PEEK_MORE,  /* a prefix of either: wait for more */
    PEEK_OTHER, /* neither: not served */
};
enum peek_kind peek_classify(const unsigned char *p, size_t n);

/* The protocol of a call (method and origin-form path), or -1 when egressd
 * does not serve it. */
int api_match(const char *method, size_t mlen, const char *path, size_t plen, enum protocol *proto);
/* Streamed protocols relay the answer as it comes; the others buffer it. */
bool api_is_streamed(enum protocol proto);
/* The first route serving proto whose models filter admits model (NULL: the
 * request named none). */
const struct route *route_select(const struct policy *p, enum protocol proto, const char *model);
/* The backend path: base (the endpoint's path) + path, one "/v1" where both
 * have it.  0, or -1 when it does not fit. */
int path_join(char *out, size_t cap, const char *base, const char *path, size_t plen);
/* Is this client header one the backend may see? */
bool header_forwardable(const struct http_header *h);

enum err_style { STYLE_OPENAI, STYLE_ANTHROPIC };
/* An error body in the shape the API's SDKs show; its length or -1. */
int api_error_body(char *out, size_t cap, enum err_style style, const char *code,
                   const char *message);
/* The one SSE event that tells a client its stream was cut; length or -1. */
int sse_error_event(char *out, size_t cap, const char *why);

struct usage {
    long long in, out; /* -1: not reported */
};
void usage_scan(struct usage *u, const char *p, size_t n);

/* ---- serving intercepted connections (serve.c, backend.c, mock.c) ---- */

struct backend_pool;
/* Idle keep-alive connections to backends, at most max_idle of them. */
struct backend_pool *backend_pool_new(size_t max_idle);
void backend_pool_free(struct backend_pool *bp);

/* One inference request, as logged. */
struct inference_record {
    const char *route, *protocol, *error;
    char model[256];
    char detail[320]; /* for the log only: may name what the client must not see */
    int status;
    uint64_t bytes_up, bytes_down;
    long long duration_ms;
    struct usage usage;
};

struct inference_env {
    const struct policy *pol;
    struct tls_client *tls; /* toward https:// backends; NULL when it could not load */
    struct backend_pool *pool;
    /* connect to a backend: a connected non-blocking fd, or -1 with err */
    int (*dial)(void *ctx, const char *host, uint16_t port, char *err, size_t errlen);
    void *dial_ctx;
    void (*log)(void *ctx, const struct inference_record *r);
    void *log_ctx;
    /* before each request after the first: may bring env up to date (a
     * reload); false ends the connection (no longer intercepted). May be NULL. */
    bool (*refresh)(void *ctx, struct inference_env *env);
    void *refresh_ctx;
};

/* The client side of an intercepted connection: its stream, and a buffer
 * holding what was read from it and not yet used (a head, then leftovers). */
struct inference_client {
    struct stream *s;
    char *buf;
    size_t cap, len;
};

/* Serve the request whose head m was parsed from cl->buf; true when the
 * connection may carry another. */
bool inference_serve_request(const struct inference_env *env, struct inference_client *cl,
                             const struct http_msg *m);
/* Read and serve requests until the client leaves, errs or idles out; the
 * first head must come within first_wait_ms. */
void inference_serve(const struct inference_env *env, struct inference_client *cl,
                     int first_wait_ms);

/* ---- sbuf.c: bounded string building ---- */

struct sbuf {
    char *buf;
    size_t cap, len; /* buf[len] is always NUL */
    bool cut;        /* something did not fit: the text is incomplete */
};
void sbuf_init(struct sbuf *b, char *buf, size_t cap);
void sbuf_add(struct sbuf *b, const char *p, size_t n);
void sbuf_str(struct sbuf *b, const char *s);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- json.c ---- */

struct json_span {
    size_t start, end; /* the value's bytes, when found */
    bool found;
};

enum json_result {
    JSON_OK,        /* one valid object; each wanted key found at most once */
    JSON_INVALID,   /* not exactly one valid JSON object */
    JSON_AMBIGUOUS, /* some parser could read a wanted key from another member */
};

/* Validate js as one JSON object and find its top-level members named
 * keys[i] (lower-case ASCII).  A member that a common parser would take for
 * a key while egressd would not (a repeated name, one differing in case, or
 * one equal up to a NUL) makes the body JSON_AMBIGUOUS; *why says so. */
enum json_result json_object_scan(const char *js, size_t len, const char *const *keys, size_t nkeys,
                                  struct json_span *spans, const char **why);
/* Decode a JSON string token (quotes included) to UTF-8; its length, or -1
 * with *why (not a string, contains a NUL, does not fit). */
int json_string(const char *tok, size_t len, char *out, size_t cap, const char **why);
/* Any bytes as the inside of a JSON string (control characters escaped,
 * invalid UTF-8 as U+FFFD), always NUL-terminated, cut if needed. */
size_t json_escape(char *dst, size_t cap, const char *src);

#endif
