/*
 * test_http.c - the strict HTTP/1.1 head parser and the chunked scanner.
 */
#include "../../inference/inference.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static enum http_result req(const char *s, struct http_msg *m, const char **why)
{
    return http_parse_request(s, strlen(s), m, why);
}

Test(http, connect_request)
{
    struct http_msg m;
    const char *why = NULL;
    const char *s = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                    "User-Agent: t\r\n\r\nEXTRA";
    cr_assert_eq(req(s, &m, &why), HTTP_OK, "%s", why);
    cr_assert_eq(m.method_len, 7);
    cr_assert_eq(memcmp(m.target, "example.com:443", m.target_len), 0);
    cr_assert_eq(m.minor, 1);
    cr_assert_eq(m.n_headers, 2);
    cr_assert_eq(m.head_len, strlen(s) - 5);
    cr_assert_eq(m.framing, BODY_NONE);
}

Test(http, framing_and_connection)
{
    struct http_msg m;
    const char *why = NULL;
    cr_assert_eq(req("POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n"
                     "Connection: keep-alive, Close\r\nExpect: 100-continue\r\n\r\n",
                     &m, &why),
                 HTTP_OK, "%s", why);
    cr_assert_eq(m.framing, BODY_LENGTH);
    cr_assert_eq(m.content_length, 12);
    cr_assert(m.conn_close);
    cr_assert(m.conn_keep_alive);
    cr_assert(m.expect_continue);
    cr_assert_eq(
        req("POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", &m, &why),
        HTTP_OK);
    cr_assert_eq(m.framing, BODY_CHUNKED);
    cr_assert_eq(req("GET http://a/ HTTP/1.0\r\n\r\n", &m, &why), HTTP_OK);
    cr_assert_eq(m.minor, 0);
    const struct http_header *h;
    cr_assert_eq(req("GET http://a/ HTTP/1.1\r\nHost: a\r\nX-Pad:   v  \r\n\r\n", &m, &why),
                 HTTP_OK);
    h = http_header_find(&m, "x-pad");
    cr_assert_not_null(h);
    cr_assert_eq(h->value_len, 1);
}

Test(http, incomplete)
{
    struct http_msg m;
    const char *why;
    cr_assert_eq(req("CONNECT a:1 HTTP/1.1\r\nHost: a\r\n", &m, &why), HTTP_INCOMPLETE);
    cr_assert_eq(req("CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r", &m, &why), HTTP_INCOMPLETE);
    cr_assert_eq(req("", &m, &why), HTTP_INCOMPLETE);
}

/* Every one of these must be refused: each is read differently by some
 * server or proxy somewhere, which is what request smuggling feeds on. */
Test(http, malformed_and_smuggling)
{
    static const char *const bad[] = {
        "GET http://a/ HTTP/1.1\nHost: a\n\n",                           /* bare LF */
        "GET http://a/ HTTP/1.1\r\nHost: a\n\r\n",                       /* one bare LF */
        "GET http://a/ HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",          /* bare CR */
        "GET http://a/ HTTP/1.1\r\nHost: a\r\nX: a\r\n  folded\r\n\r\n", /* obs-fold */
        "GET http://a/ HTTP/1.1\r\nHost: a\r\nX: a\r\n\tfolded\r\n\r\n", /* obs-fold tab */
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n", /* CL + TE */
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        "Content-Length: 5\r\n\r\n", /* TE + CL */
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
        "Content-Length: 6\r\n\r\n", /* two CLs */
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
        "Content-Length: 5\r\n\r\n",                                          /* repeated CL */
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", /* CL list */
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",   /* signed CL */
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",  /* hex CL */
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", /* empty CL */
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
        "POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",                                       /* two TEs */
        "POST http://a/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",            /* TE in 1.0 */
        "GET http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", /* space */
        "GET http://a/ HTTP/1.1\r\nHost: a\r\n: empty-name\r\n\r\n",
        "GET http://a/ HTTP/1.1\r\nHost: a\r\nBad[Name]: x\r\n\r\n",
        "GET http://a/ HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
        "GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", /* two Hosts */
        "GET http://a/ HTTP/1.1\r\n\r\n",                       /* no Host */
        "GET  http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",           /* double SP */
        "GET http://a/  HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://a/ HTTP/1.1 \r\nHost: a\r\n\r\n",
        "GET http://a/\r\nHost: a\r\n\r\n", /* HTTP/0.9 */
        "GET http://a/ HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET http://a/ http/1.1\r\nHost: a\r\n\r\n",
        "GET http://a/ HTTP/1.10\r\nHost: a\r\n\r\n",
        "G(T http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",            /* bad method */
        "GET http://a/\x7f HTTP/1.1\r\nHost: a\r\n\r\n",        /* DEL in target */
        "GET http://a/\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",    /* raw UTF-8 */
        "\r\nGET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",        /* leading CRLF */
        "GET http://a/ HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", /* control */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct http_msg m;
        const char *why = NULL;
        enum http_result r = http_parse_request(bad[i], strlen(bad[i]), &m, &why);
        cr_assert_eq(r, HTTP_BAD, "accepted #%zu: %s", i, bad[i]);
        cr_assert_not_null(why);
    }
}

Test(http, nul_in_head)
{
    static const char s[] = "GET http://a/ HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    struct http_msg m;
    const char *why = NULL;
    cr_assert_eq(http_parse_request(s, sizeof(s) - 1, &m, &why), HTTP_BAD);
    cr_assert_str_eq(why, "NUL byte in head");
}

Test(http, too_many_headers)
{
    char buf[HTTP_HEAD_MAX * 2];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET http://a/ HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < HTTP_MAX_HEADERS; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-%d: v\r\n", i);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
    struct http_msg m;
    const char *why = NULL;
    cr_assert_eq(http_parse_request(buf, n, &m, &why), HTTP_BAD);
    cr_assert_str_eq(why, "too many header fields");
}

Test(http, responses)
{
    struct http_msg m;
    const char *why = NULL;
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    cr_assert_eq(http_parse_response(ok, strlen(ok), false, &m, &why), HTTP_OK);
    cr_assert_eq(m.status, 200);
    cr_assert_eq(m.framing, BODY_LENGTH);
    cr_assert_eq(http_parse_response(ok, strlen(ok), true, &m, &why), HTTP_OK);
    cr_assert_eq(m.framing, BODY_NONE, "HEAD responses have no body");
    const char *eof = "HTTP/1.0 200 OK\r\nServer: x\r\n\r\n";
    cr_assert_eq(http_parse_response(eof, strlen(eof), false, &m, &why), HTTP_OK);
    cr_assert_eq(m.framing, BODY_UNTIL_CLOSE);
    const char *nc = "HTTP/1.1 204 No Content\r\n\r\n";
    cr_assert_eq(http_parse_response(nc, strlen(nc), false, &m, &why), HTTP_OK);
    cr_assert_eq(m.framing, BODY_NONE);
    const char *gz = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    cr_assert_eq(http_parse_response(gz, strlen(gz), false, &m, &why), HTTP_OK);
    cr_assert_eq(m.framing, BODY_CHUNKED);
    const char *noreason = "HTTP/1.1 404\r\n\r\n";
    cr_assert_eq(http_parse_response(noreason, strlen(noreason), false, &m, &why), HTTP_OK);
    cr_assert_eq(m.status, 404);
    static const char *const bad[] = {
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\nServer: x\n\n",
        "HTTP/1.1 099 Odd\r\n\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(http_parse_response(bad[i], strlen(bad[i]), false, &m, &why), HTTP_BAD,
                     "accepted %s", bad[i]);
}

Test(http, list_tokens)
{
    cr_assert(http_list_has("keep-alive, close", 17, "close"));
    cr_assert(http_list_has(" Close ", 7, "close"));
    cr_assert_not(http_list_has("closed", 6, "close"));
    cr_assert_not(http_list_has("", 0, "close"));
}

/* ---- chunked ---- */

static ssize_t scan_all(const char *s, size_t len, bool *done, const char **why, size_t step)
{
    struct chunked c;
    chunked_init(&c, 0);
    size_t off = 0;
    while (off < len) {
        size_t n = len - off < step ? len - off : step;
        ssize_t used = chunked_scan(&c, s + off, n, done, why);
        if (used < 0)
            return -1;
        off += (size_t)used;
        if (*done)
            return (ssize_t)off;
    }
    return (ssize_t)off;
}

Test(chunked, valid_in_any_split)
{
    const char *body = "5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n"
                       "Trailer: x\r\n\r\nNEXT";
    size_t len = strlen(body), end = len - 4;
    for (size_t step = 1; step <= len; step++) {
        bool done = false;
        const char *why = NULL;
        ssize_t n = scan_all(body, len, &done, &why, step);
        cr_assert(done, "step %zu: not done (%s)", step, why);
        cr_assert_eq((size_t)n, end, "step %zu: ended at %zd", step, n);
    }
}

Test(chunked, malformed)
{
    static const char *const bad[] = {
        "5\nhello\r\n0\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n",
        "5\r\nhelloX\r\n0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",
        "5 \r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "\r\n",
        "g\r\n",
        "11111111111111111\r\n",
        "5;a\x01\r\nhello\r\n",
        "0\r\nX: a\nb\r\n\r\n",
        "0\r\n\n",
        "0\r\r\n",
        /* trailers are judged from their first byte: no fold, no control, no NUL */
        "0\r\nX: a\r\n b\r\n\r\n",
        "0\r\n\tX: a\r\n\r\n",
        "0\r\n X: a\r\n\r\n",
        "0\r\n\x01X: a\r\n\r\n",
        "0\r\nX\x01: a\r\n\r\n",
        "0\r\nX a: b\r\n\r\n",
        "0\r\nX: a\x7f\r\n\r\n",
        /* sizes no real client sends */
        "10000000001\r\n",
        "ffffffffffffffff\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bool done = false;
        const char *why = NULL;
        cr_assert_eq(scan_all(bad[i], strlen(bad[i]), &done, &why, 64), -1, "accepted #%zu", i);
        cr_assert_not_null(why);
    }
}

Test(chunked, limits)
{
    struct chunked c;
    bool done;
    const char *why = NULL;
    chunked_init(&c, 2);
    const char *three = "1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n";
    cr_assert_eq(chunked_scan(&c, three, strlen(three), &done, &why), -1);
    cr_assert_str_eq(why, "too many chunks");
    char longext[6000] = "1;";
    memset(longext + 2, 'x', sizeof(longext) - 3);
    chunked_init(&c, 0);
    cr_assert_eq(chunked_scan(&c, longext, strlen(longext), &done, &why), -1);
}

Test(http, path_safety)
{
    static const char *const good[] = {"/",
                                       "/v1/models/gpt-4o",
                                       "/a/b.c/..d/e..",
                                       "/a%20b",
                                       "/a?x=../..%2F",
                                       "/.well-known/x",
                                       "/a/...",
                                       "/%41"};
    static const char *const bad[] = {"",        "v1/models", "/v1/models/..", "/v1/models/.",
                                      "/a/../b", "/a/./b",    "/a/%2Fb",       "/a/%2fb",
                                      "/%2e%2e", "/%2E",      "/a%5cb",        "/a\\b",
                                      "/a%00b",  "/a#frag",   "/..",           "/a/b/.."};
    const char *why;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert_eq(http_path_check(good[i], strlen(good[i]), &why), 0, "%s: %s", good[i], why);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(http_path_check(bad[i], strlen(bad[i]), &why), -1, "accepted %s", bad[i]);
}
