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

#endif
