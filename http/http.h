/*
 * http.h - the public face of the http module: the HTTP/1.1 wire format of
 * every path through egressd (forwarded, intercepted, inspected).
 *
 * egressd sits between two parsers and must never read a message
 * differently from either of them, so one strict parser reads every head,
 * one chunked scanner follows every chunked body, one body pump moves every
 * body and one hop-by-hop table decides what passes: a request that the
 * forward path would frame one way and the inference path another cannot
 * exist.  Around them: the buffered connection (a stream plus the bytes
 * read from it and not used yet), the first-bytes classifier of a tunnel,
 * JSON scanning and escaping, bounded string building, and the error
 * answers egressd writes itself.  It depends on tls/'s streams only.
 *
 * Error convention: parsers return 0 (or HTTP_OK) and -1 with a static
 * reason in *why; readers and the pump return named enums; builders append
 * to a struct sbuf and the caller checks ->cut once.
 */
#ifndef EGRESSD_HTTP_H
#define EGRESSD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../tls/tls.h"

#define HTTP_HEAD_MAX    8192        /* request head, terminator included */
#define HTTP_RESP_MAX    (32 * 1024) /* response head: origins send more cookies */
#define HTTP_MAX_HEADERS 100

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

/* ---- parse.c: heads ---- */

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

/* A parsed head: its pointers point into the caller's buffer. */
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
    bool conn_close, expect_continue;
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
const struct http_header *http_header_find(const struct http_msg *m, const char *name);
bool http_name_is(const struct http_header *h, const char *name);
/* Does a comma-separated header value (like Connection) list this token? */
bool http_list_has(const char *value, size_t len, const char *token);
bool http_method_is(const struct http_msg *m, const char *method);
/* The method a method override field names (X-HTTP-Method-Override,
 * X-HTTP-Method, X-Method-Override), trimmed into out; NULL when there is
 * none; "?" (no method at all) when there are two or it does not fit. */
const char *http_method_override(const struct http_msg *m, char *out, size_t cap);
/* Is the path of an origin-form target (the query not included) one that
 * every server reads the same way?  0, or -1 with *why: not starting with
 * '/', a dot segment, an encoded '/', '\\', '.' or NUL (any case), a
 * backslash, NUL or '#'. */
int http_path_check(const char *target, size_t len, const char **why);
/* The path of an origin-form target as rules see it (DESIGN section 10),
 * after http_path_check: the query dropped, percent-escapes decoded into
 * out; and into folded the same with ASCII letters lowered, ";parameters"
 * dropped from each segment and repeated '/' collapsed (what an origin may
 * read alike).  0, or -1 with *why: a malformed escape, an encoded control
 * character, or too long. */
int http_path_view(const char *target, size_t len, char *out, size_t cap, char *folded, size_t fcap,
                   const char **why);
/* The byte at p[i] of a URL, a percent-escape decoded; *used: how many
 * bytes it took.  -1 for a malformed escape. */
int http_pct_byte(const char *p, size_t i, size_t len, size_t *used);
/* The reason phrase egressd writes for a status it answers itself. */
const char *http_reason_phrase(int status);

/* ---- peek.c: what the first bytes of a tunnel are ---- */

#define PEEK_TOKEN_MAX 32 /* longest first word of a request line taken for HTTP */
enum peek_kind {
    PEEK_TLS,   /* a TLS handshake record: 16 03 00..04 */
    PEEK_HTTP,  /* printable ASCII and a space: a request line, well formed or not */
    PEEK_MORE,  /* a prefix of either: wait for more */
    PEEK_OTHER, /* neither: not served */
};
enum peek_kind http_peek_classify(const unsigned char *p, size_t n);

/* ---- conn.c: a stream and the bytes read from it but not used yet ---- */

struct bufconn {
    struct stream *s;
    char *buf;
    size_t cap, len;
};

enum head_status { HEAD_OK, HEAD_EOF, HEAD_PARTIAL_EOF, HEAD_TIMEOUT, HEAD_TOO_LARGE, HEAD_ERROR };

void bufconn_init(struct bufconn *b, struct stream *s, char *buf, size_t cap);
/* Drop the first n bytes (a message or a piece that has been handled). */
void bufconn_consume(struct bufconn *b, size_t n);
/* Read until buf holds a whole head (http_head_length) or the deadline
 * passes; len counts every byte read, which may go past the head. */
enum head_status bufconn_read_head(struct bufconn *b, int64_t deadline);

/* The final response head (1xx other than 101 skipped) from an upstream. */
enum response_status {
    RESPONSE_OK,
    RESPONSE_CLOSED,    /* closed before a byte of it: a kept connection gone stale */
    RESPONSE_TIMEOUT,   /* not all of it by the deadline */
    RESPONSE_TOO_LARGE, /* larger than the buffer */
    RESPONSE_MALFORMED, /* *why says how */
};
enum response_status bufconn_read_response(struct bufconn *b, bool for_head, struct http_msg *r,
                                           int64_t deadline, const char **why);

/* ---- chunked.c: the chunked transfer coding, incrementally ---- */

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

/* ---- body.c: the body pump ---- */

/* Where a pumped body goes: put() takes bytes, non-zero when it failed. */
struct body_sink {
    int (*put)(void *ctx, const char *p, size_t n);
    void *ctx;
};

struct body_limits {
    uint64_t max;        /* most data bytes (0: no limit) */
    uint64_t max_chunks; /* 0: no limit */
    int idle_ms;         /* longest wait for the next bytes */
    int64_t deadline;    /* the whole body by then (0: no such deadline) */
    bool decode;         /* the sink gets the data only (else the bytes as framed) */
};

enum pump_result {
    PUMP_DONE,
    PUMP_MALFORMED,   /* the source broke the framing (*why) */
    PUMP_CUT,         /* the source closed before the body ended */
    PUMP_TIMEOUT,     /* idle too long, or past the deadline */
    PUMP_READ_ERROR,  /* reading the source failed */
    PUMP_TOO_LARGE,   /* more than limits->max */
    PUMP_SINK_FAILED, /* the sink said no */
};

/* Move one body, framed as framing/length say, from src (buffered bytes
 * first) to sink; *moved counts the bytes the sink took.  The pump never
 * reads past the body: what follows stays in src for the next message. */
enum pump_result http_pump_body(struct bufconn *src, enum http_framing framing, uint64_t length,
                                const struct body_limits *lim, const struct body_sink *sink,
                                uint64_t *moved, const char **why);
/* A sink writing to a stream, each put within idle_ms. */
struct stream_sink {
    struct stream *s;
    int idle_ms;
};
int stream_sink_put(void *ctx, const char *p, size_t n);
/* A sink keeping the body in memory, grown as it comes (the pump's max
 * bounds it); p[len] is a NUL, for the JSON scanner's convenience. */
struct body_buffer {
    char *p;
    size_t len, cap;
};
int body_buffer_put(void *ctx, const char *p, size_t n);
void body_buffer_free(struct body_buffer *b);

/* ---- hop.c: what passes from one hop to the next ---- */

/* Is h for this hop only: a hop-by-hop field, one the message's Connection
 * names, or a framing field (Content-Length, Transfer-Encoding, Host),
 * which egressd writes itself from what it parsed? */
bool http_hop_by_hop(const struct http_msg *m, const struct http_header *h);
/* The fields that pass as lines, then the framing egressd parsed (a
 * Transfer-Encoding with the message's own codings). */
void http_put_end_to_end(struct sbuf *b, const struct http_msg *m);
/* Is a chunked body coded further ("gzip, chunked"), so that its data,
 * de-chunked, is not the content? */
bool http_transfer_coded(const struct http_msg *m);

/* ---- swap.c: placeholders swapped for credentials (DESIGN section 11) ---- */

#define HTTP_SWAPS_MAX 64

struct http_swap {
    const char *from, *to; /* a placeholder and the value that replaces it */
    size_t from_len, to_len;
};
struct http_swaps {
    const struct http_swap *v;
    size_t n;     /* at most HTTP_SWAPS_MAX */
    uint64_t use; /* bit i: v[i] is swapped; the others are left as they are */
};
/* Which placeholders (bit i for v[i]) a request head holds anywhere: in
 * its target as written or percent-encoded, in any field line, or inside
 * the credentials of an `Authorization: Basic` field. */
uint64_t http_swaps_in_head(const struct http_msg *m, const struct http_swaps *sw);
/* The request target, the used placeholders (as written or encoded)
 * replaced by their values, percent-encoded. */
void http_put_target(struct sbuf *b, const char *target, size_t len, const struct http_swaps *sw);
/* One field's value with the used swaps done (Basic credentials decoded,
 * swapped and encoded again); sw may be NULL. */
void http_put_value(struct sbuf *b, const struct http_header *h, const struct http_swaps *sw);
/* hop.c: the fields that pass as lines, with the used swaps done in
 * their values (sw may be NULL); no framing. */
void http_put_fields(struct sbuf *b, const struct http_msg *m, const struct http_swaps *sw);
/* hop.c: the framing egressd writes itself (Transfer-Encoding: chunked, or
 * Content-Length when the message had one): for requests, whose only
 * transfer coding is chunked; a response's goes by http_put_end_to_end. */
void http_put_framing(struct sbuf *b, enum http_framing framing, uint64_t length, bool has_length);
/* in with the used swaps done, into out (empty: it gets one buffer of the
 * final size), at most max bytes; *swapped has the bits of the swaps made.
 * -1 when out would pass max (or out of memory). */
int http_swap_bytes(const char *in, size_t len, const struct http_swaps *sw,
                    struct body_buffer *out, size_t max, uint64_t *swapped);

/* Standard base64 with padding (RFC 4648), as Basic credentials and
 * WebSocket accepts write it. */
void http_base64_encode(struct sbuf *b, const unsigned char *in, size_t len);

/* ---- websocket.c: the handshake that may open a raw relay ---- */

#define HTTP_WS_KEY_LEN 24 /* base64 of the 16 random bytes RFC 6455 asks for */

/* The request's Sec-WebSocket-Key into key (HTTP_WS_KEY_LEN + 1 bytes);
 * false when it has none of the right length. */
bool http_websocket_key(const struct http_msg *m, char *key);
/* Is the 101 r the answer to the handshake that sent key: Upgrade names
 * websocket and Sec-WebSocket-Accept is the key's (RFC 6455 4.2.2)? */
bool http_websocket_accepted(const char *key, const struct http_msg *r);

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
/* The elements of the array arr (a span found by json_object_scan, so
 * valid), one at a time: *pos 0 to begin; false after the last. */
bool json_array_next(const char *js, const struct json_span *arr, size_t *pos,
                     struct json_span *elem);
/* Decode a JSON string token (quotes included) to UTF-8; its length, or -1
 * with *why (not a string, contains a NUL, does not fit). */
int json_string(const char *tok, size_t len, char *out, size_t cap, const char **why);
/* Any bytes as the inside of a JSON string (control characters and line
 * separators escaped, invalid UTF-8 as U+FFFD), NUL-terminated, cut if
 * needed. */
size_t json_escape(char *dst, size_t cap, const char *src);
/* ,"name":"value" onto b, the value escaped and cut (at a character) to
 * fit 6 * JSON_MEMBER_MAX bytes; nothing when value is NULL. */
#define JSON_MEMBER_MAX 1024
void json_put_member(struct sbuf *b, const char *name, const char *value);

/* ---- errors.c: the answers egressd writes itself ---- */

struct http_error {
    int status;
    const char *code;
};
extern const struct http_error ERR_BAD_REQUEST, ERR_HEADERS_TOO_LARGE, ERR_REQUEST_TIMEOUT,
    ERR_POLICY_DENIED, ERR_SSRF_DENIED, ERR_DNS_FAILURE, ERR_UPSTREAM_UNREACHABLE,
    ERR_UPSTREAM_TIMEOUT, ERR_OVERLOADED, ERR_USE_CONNECT, ERR_UPSTREAM_ERROR, ERR_MISDIRECTED,
    ERR_UNSUPPORTED_PROTOCOL, ERR_UPSTREAM_TLS, ERR_SECRET_NOT_ALLOWED, ERR_BODY_TOO_LARGE,
    ERR_NOT_FOUND;

/* One error egressd answers, with what it can say about it (NULL: not
 * said).  keep: the request was read whole and the connection goes on. */
struct http_error_info {
    const struct http_error *e;
    const char *detail, *rule, *method, *path, *message;
    const char *host;  /* the destination, for the reason phrase */
    unsigned port;     /* with host */
    const char *hint;  /* an [allow] section that would admit the request */
    bool by_deny_rule; /* a deny rule refused it: no allow rule would help */
    bool keep;
};

/* ---- phrase.c: the reason phrase of an error ---- */

#define HTTP_PHRASE_MAX 200
/* What happened and what to do, for the status line of info's answer:
 * printable ASCII only (any other byte, from a host name, a path or a
 * message, becomes '?'), at most HTTP_PHRASE_MAX bytes (cut with "..."). */
void http_error_phrase(char *out, size_t cap, const struct http_error_info *info);
/* In place: bytes outside printable ASCII become '?'; longer than max
 * (at least 4): cut to max bytes, the last three "...". */
void http_phrase_clean(char *s, size_t max);

/* An answer's head and body into out: the status line (with phrase, or
 * the status's usual one when NULL), Content-Type, Content-Length,
 * X-Egressd-Error: code, extra header lines ("Name: value\r\n"...; NULL:
 * none), and Connection: close unless keep. */
void http_put_answer(struct sbuf *out, int status, const char *phrase, const char *code,
                     const char *ctype, const char *extra, const char *body, size_t blen,
                     bool keep);
/* DESIGN section 5's body: {"error":code,"detail":...,"rule":...}, with
 * method, path and message (section 10) and hint when known. */
void http_put_error_json(struct sbuf *out, const struct http_error_info *info);
/* A whole section-5 error on s. */
enum io_result http_send_error_info(struct stream *s, const struct http_error_info *info,
                                    int64_t deadline);
/* The same, closing, with detail and rule only (either may be NULL). */
enum io_result http_send_error(struct stream *s, const struct http_error *e, const char *detail,
                               const char *rule, int64_t deadline);

#endif
