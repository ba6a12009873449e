/*
 * test_http.c - the http module: the strict head parser, the chunked
 * scanner, the body pump over socket pairs, the first-bytes classifier,
 * JSON, the hop-by-hop table and the error answers.
 */
#include "../../http/http.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
    cr_assert(m.has_length);
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
        "HTTP/1.1 099 Odd\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", /* chunked twice */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked,\r\n\r\n"};
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
                                       "/%41",
                                       "/a/;/b",
                                       "/a/x;../b",
                                       "/a/..x;/b"};
    static const char *const bad[] = {
        "", "v1/models", "/v1/models/..", "/v1/models/.", "/a/../b", "/a/./b", "/a/%2Fb", "/a/%2fb",
        "/%2e%2e", "/%2E", "/a%5cb", "/a\\b", "/a%00b", "/a#frag", "/..", "/a/b/..",
        /* Tomcat and Jetty cut ;params before resolving dots */
        "/a/..;/b", "/a/..;x=1/b", "/a/.;/b", "/a/b/..;", "/a/..%3Bx/b", "/a/..%3b/b"};
    const char *why;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert_eq(http_path_check(good[i], strlen(good[i]), &why), 0, "%s: %s", good[i], why);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(http_path_check(bad[i], strlen(bad[i]), &why), -1, "accepted %s", bad[i]);
}

/* ---- the first bytes of a tunnel ---- */

static enum peek_kind classify(const char *s, size_t n)
{
    return http_peek_classify((const unsigned char *)s, n);
}

Test(peek, tls_record_types_against_methods)
{
    /* only a handshake record (0x16) starts a TLS session; 0x14, 0x15, 0x17, 0x18
     * are TLS content types but not a first message */
    for (unsigned type = 0x14; type <= 0x18; type++) {
        for (unsigned minor = 0; minor <= 5; minor++) {
            unsigned char rec[5] = {(unsigned char)type, 0x03, (unsigned char)minor, 0x00, 0x50};
            enum peek_kind k = http_peek_classify(rec, sizeof(rec));
            enum peek_kind want = type == 0x16 && minor <= 4 ? PEEK_TLS : PEEK_OTHER;
            cr_assert_eq(k, want, "type %02x version 3.%u: %d", type, minor, k);
        }
    }
    static const char *const methods[] = {"GET ",     "POST ", "PUT ",   "DELETE ",
                                          "OPTIONS ", "HEAD ", "PATCH ", "PROPFIND "};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        cr_assert_eq(classify(methods[i], strlen(methods[i])), PEEK_HTTP, "%s", methods[i]);
}

Test(peek, partial_prefixes_wait)
{
    cr_assert_eq(classify("", 0), PEEK_MORE);
    cr_assert_eq(classify("\x16", 1), PEEK_MORE);
    cr_assert_eq(classify("\x16\x03", 2), PEEK_MORE);
    cr_assert_eq(classify("P", 1), PEEK_MORE);
    cr_assert_eq(classify("POS", 3), PEEK_MORE);
    cr_assert_eq(classify("POST", 4), PEEK_MORE);
}

Test(peek, garbage)
{
    cr_assert_eq(classify("\x16\x02\x01", 3), PEEK_OTHER);
    cr_assert_eq(classify("\x16\x03\x05", 3), PEEK_OTHER);
    cr_assert_eq(classify(" GET", 4), PEEK_OTHER);
    cr_assert_eq(classify("GE\x00T", 4), PEEK_OTHER);
    cr_assert_eq(classify("\x00\x01\x02", 3), PEEK_OTHER);
    cr_assert_eq(classify("SSH-2.0-OpenSSH\r\n", 17), PEEK_OTHER);
    cr_assert_eq(classify("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG ", 34), PEEK_OTHER, "word too long");
    /* shaped like a request line: the parser answers it, 400 when it is bad */
    cr_assert_eq(classify("get /", 5), PEEK_HTTP);
    cr_assert_eq(classify("GE/T / HTTP/1.1", 15), PEEK_HTTP);
    cr_assert_eq(classify("ABCDEFGHIJKLMNOPQRSTU ", 22), PEEK_HTTP);
    cr_assert_eq(classify("PRI * HTTP/2.0", 14), PEEK_HTTP,
                 "h2 preface: parsed (and refused) as HTTP");
}

/* ---- JSON ---- */

static const char *const model_key[] = {"model"};

static enum json_result scan_model(const char *js, size_t len, struct json_span *sp)
{
    const char *why;
    return json_object_scan(js, len, model_key, 1, sp, &why);
}

static void model_span(const char *js, const char *want_token)
{
    struct json_span sp;
    cr_assert_eq(scan_model(js, strlen(js), &sp), JSON_OK, "%s", js);
    cr_assert(sp.found, "%s", js);
    cr_assert_eq(sp.end - sp.start, strlen(want_token), "%s: span %zu", js, sp.end - sp.start);
    cr_assert_eq(memcmp(js + sp.start, want_token, sp.end - sp.start), 0, "%s", js);
}

Test(json, top_level_member_only)
{
    model_span("{\"model\":\"gpt-4o\"}", "\"gpt-4o\"");
    model_span(" { \"a\" : {\"model\":\"inner\"} , \"model\" : \"outer\" } ", "\"outer\"");
    model_span("{\"a\":[{\"model\":1}],\"b\":\"\\\"model\\\"\",\"model\":\"m\"}", "\"m\"");
    model_span("{\"mod\\u0065l\":\"escaped-key\"}", "\"escaped-key\"");
    model_span("{\"n\":-1.5e+300,\"big\":123456789012345678901234567890,\"model\":null}", "null");
    model_span("{\"t\":true,\"f\":false,\"model\":{\"x\":[1,2]}}", "{\"x\":[1,2]}");
    model_span("{\"e\":[],\"o\":{},\"u\":\"\xc3\xa9\xf0\x9f\x98\x80\",\"model\":0}", "0");
    struct json_span sp;
    cr_assert_eq(scan_model("{\"other\":1}", 11, &sp), JSON_OK);
    cr_assert_not(sp.found);
    cr_assert_eq(scan_model("{}", 2, &sp), JSON_OK);
    cr_assert_not(sp.found);
    static const char *const bad[] = {"",
                                      "[]",
                                      "{\"model\"}",
                                      "{\"model\":}",
                                      "{\"a\":\"unterminated}",
                                      "{\"a\":1,}",
                                      "{\"a\":[1,2}",
                                      "{\"a\":[1,]}",
                                      "{\"a\":\"\\x\"}",
                                      "{model:\"x\"}",
                                      "{\"a\":1 \"model\":\"x\"}",
                                      "{\"a\":\"ctl\x01\"}",
                                      "{\"a\":\"\\u12\"}",
                                      "{\"a\":01}",
                                      "{\"a\":1.}",
                                      "{\"a\":.5}",
                                      "{\"a\":+1}",
                                      "{\"a\":truefalse}",
                                      "{\"a\":nul}",
                                      "{\"a\":NaN}",
                                      "{\"a\":\"\xff\"}",
                                      "{\"a\":\"\xc0\xaf\"}",
                                      "{\"a\":\"\xed\xa0\x80\"}",
                                      "{\"model\":\"x\"} {\"model\":\"y\"}",
                                      "{\"model\":\"x\"}x",
                                      "\xef\xbb\xbf{\"model\":\"x\"}",
                                      "{\"a\":{\"b\" 1}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(scan_model(bad[i], strlen(bad[i]), &sp), JSON_INVALID, "accepted %s", bad[i]);
}

Test(json, a_model_any_parser_could_read_elsewhere_is_ambiguous)
{
    /* Python, Go and JavaScript keep the last duplicate; Go matches names
     * case-insensitively (with U+017F and U+212A folding); C stops at NUL */
    static const char *const ambiguous[] = {
        "{\"model\":\"gpt-4o-mini\",\"messages\":[],\"model\":\"gpt-4o\"}",
        "{\"model\":\"a\",\"mod\\u0065l\":\"b\"}",
        "{\"model\\u0000\":\"gpt-4o\"}",
        "{\"model\":\"a\",\"model\\u0000x\":\"b\"}",
        "{\"Model\":\"gpt-4o\"}",
        "{\"model\":\"a\",\"MODEL\":\"b\"}",
        "{\"MoDeL\":\"x\"}",
    };
    struct json_span sp;
    for (size_t i = 0; i < sizeof(ambiguous) / sizeof(ambiguous[0]); i++)
        cr_assert_eq(scan_model(ambiguous[i], strlen(ambiguous[i]), &sp), JSON_AMBIGUOUS, "%s",
                     ambiguous[i]);
    const char *nul = "{\"model\":\"a\",\"x\\u0000model\":\"b\",\"models\":1,\"mode\":2}";
    cr_assert_eq(scan_model(nul, strlen(nul), &sp), JSON_OK, "other names are other names");
    const char *stream_keys[] = {"stream"};
    const char *why;
    const char *kelvin = "{\"\xc5\xbftream\":true}"; /* U+017F: Go reads "stream" */
    cr_assert_eq(json_object_scan(kelvin, strlen(kelvin), stream_keys, 1, &sp, &why),
                 JSON_AMBIGUOUS);
    /* a duplicate that is not wanted is not our business */
    const char *dup = "{\"a\":1,\"a\":2,\"model\":\"m\"}";
    cr_assert_eq(scan_model(dup, strlen(dup), &sp), JSON_OK);
}

Test(json, deep_nesting_is_bounded)
{
    size_t n = 100000;
    char *js = malloc(n * 2 + 32);
    size_t o = (size_t)sprintf(js, "{\"a\":");
    for (size_t i = 0; i < n; i++)
        js[o++] = '[';
    for (size_t i = 0; i < n; i++)
        js[o++] = ']';
    o += (size_t)sprintf(js + o, ",\"model\":\"m\"}");
    struct json_span sp;
    cr_assert_eq(scan_model(js, o, &sp), JSON_INVALID, "refused, not a stack overflow");
    free(js);
}

Test(json, string_decoding)
{
    char out[64];
    const char *why;
    cr_assert_eq(json_string("\"plain\"", 7, out, sizeof(out), &why), 5);
    cr_assert_str_eq(out, "plain");
    const char *esc = "\"a\\\"b\\\\c\\/d\\n\\u00e9\\ud83d\\ude00\"";
    cr_assert_geq(json_string(esc, strlen(esc), out, sizeof(out), &why), 0);
    cr_assert_str_eq(out, "a\"b\\c/d\n\xc3\xa9\xf0\x9f\x98\x80");
    cr_assert_eq(json_string("123", 3, out, sizeof(out), &why), -1);
    cr_assert_eq(json_string("\"toolong\"", 9, out, 4, &why), -1);
    cr_assert_eq(json_string("\"gpt\\u0000x\"", 12, out, sizeof(out), &why), -1,
                 "a NUL would cut the name egressd routes on");
    const char *lone = "\"\\ud800x\"";
    cr_assert_geq(json_string(lone, strlen(lone), out, sizeof(out), &why), 0);
    cr_assert_str_eq(out, "\xef\xbf\xbdx", "a lone surrogate becomes U+FFFD");
}

Test(json, escape_keeps_log_lines_valid)
{
    char out[64];
    json_escape(out, sizeof(out), "ok \xff\xc3(\xc3\xa9");
    cr_assert_str_eq(out, "ok \\ufffd\\ufffd(\xc3\xa9", "invalid UTF-8 replaced, valid kept");
    json_escape(out, sizeof(out), "\xf0\x9f\x98\x80\x7f");
    cr_assert_str_eq(out, "\xf0\x9f\x98\x80\\u007f");
    json_escape(out, sizeof(out),
                "a\xe2\x80\xa8"
                "b\xe2\x80\xa9");
    cr_assert_str_eq(out, "a\\u2028b\\u2029", "line separators would split a log line");
}

/* ---- reading heads, and the answers egressd writes ---- */

Test(log, json_escape)
{
    char out[64];
    json_escape(out, sizeof(out), "a\"b\\c\n\x01");
    cr_assert_str_eq(out, "a\\\"b\\\\c\\u000a\\u0001");
    /* a small buffer cuts the string, leaving room for a whole escape: never overruns */
    memset(out, '#', sizeof(out));
    json_escape(out, 8, "abcdefghijklmnop");
    cr_assert(strlen(out) < 8);
    cr_assert_eq(out[8], '#');
    json_escape(out, 16, "abcdefghijklmnop");
    cr_assert_str_eq(out, "abcdefghi");
}

static void read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0, got;
    while (n < cap - 1 && fd_read(fd, buf + n, cap - 1 - n, &got, now_ms() + 2000) == IO_OK)
        n += got;
    buf[n] = '\0';
}

Test(errors, json_error_shape)
{
    int sv[2];
    char buf[2048];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct stream *s = stream_plain(sv[0]);
    cr_assert_eq(
        http_send_error(s, &ERR_POLICY_DENIED, "no \"rule\" allows x", "gh", now_ms() + 1000),
        IO_OK);
    stream_free(s);
    close(sv[0]);
    read_all(sv[1], buf, sizeof(buf));
    close(sv[1]);
    cr_assert(strncmp(buf, "HTTP/1.1 403 egressd policy: the destination is not allowed (", 61) ==
                  0,
              "the reason phrase says what happened: %s", buf);
    cr_assert(strstr(buf, "Content-Type: application/json\r\n") != NULL);
    cr_assert(strstr(buf, "Connection: close\r\n") != NULL);
    cr_assert(strstr(buf, "X-Egressd-Error: policy_denied\r\n") != NULL);
    const char *body = strstr(buf, "\r\n\r\n") + 4;
    cr_assert_str_eq(body, "{\"error\":\"policy_denied\",\"detail\":\"no \\\"rule\\\" allows x\","
                           "\"rule\":\"gh\"}\n");
    char cl[64];
    snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", strlen(body));
    cr_assert(strstr(buf, cl) != NULL, "%s", buf);
}

Test(conn, read_head_outcomes)
{
    int sv[2];
    char buf[64];
    struct bufconn b;
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct stream *st = stream_plain(sv[1]);
    bufconn_init(&b, st, buf, sizeof(buf));
    cr_assert_eq(bufconn_read_head(&b, now_ms() + 50), HEAD_TIMEOUT);
    write(sv[0], "GET / HTTP/1.1\r\n\r\nbody", 22);
    cr_assert_eq(bufconn_read_head(&b, now_ms() + 1000), HEAD_OK);
    cr_assert_eq(b.len, 22);
    bufconn_consume(&b, 18);
    cr_assert_eq(b.len, 4, "the body's start stays for whoever reads next");
    cr_assert_eq(memcmp(b.buf, "body", 4), 0);
    b.len = 0;
    char big[100];
    memset(big, 'a', sizeof(big));
    write(sv[0], big, sizeof(big));
    cr_assert_eq(bufconn_read_head(&b, now_ms() + 1000), HEAD_TOO_LARGE);
    close(sv[0]);
    b.len = 0;
    char rest[64];
    while (read(sv[1], rest, sizeof(rest)) > 0)
        ;
    cr_assert_eq(bufconn_read_head(&b, now_ms() + 1000), HEAD_EOF);
    stream_free(st);
    close(sv[1]);
}

/* ---- the body pump, over a socket pair ---- */

struct pumped {
    int sv[2];
    struct stream *st;
    struct bufconn in;
    char buf[256];
    struct body_buffer got;
    struct body_sink sink;
};

static void pump_setup(struct pumped *p, const char *already)
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->sv), 0);
    p->st = stream_plain(p->sv[1]);
    bufconn_init(&p->in, p->st, p->buf, sizeof(p->buf));
    p->in.len = strlen(already); /* bytes read along with the head */
    memcpy(p->buf, already, p->in.len);
    p->got = (struct body_buffer){0};
    p->sink = (struct body_sink){body_buffer_put, &p->got};
}

static void pump_teardown(struct pumped *p)
{
    stream_free(p->st);
    close(p->sv[0]);
    close(p->sv[1]);
    body_buffer_free(&p->got);
}

static enum pump_result pump(struct pumped *p, enum http_framing f, uint64_t len,
                             const struct body_limits *lim, uint64_t *moved)
{
    const char *why = NULL;
    enum pump_result r = http_pump_body(&p->in, f, len, lim, &p->sink, moved, &why);
    cr_assert(r == PUMP_DONE || why != NULL, "a failure says why");
    return r;
}

Test(pump, content_length_stops_at_the_body)
{
    struct pumped p;
    struct body_limits lim = {.idle_ms = 1000};
    uint64_t moved;
    pump_setup(&p, "hello");
    write(p.sv[0],
          " world"
          "GET /next",
          15);
    cr_assert_eq(pump(&p, BODY_LENGTH, 11, &lim, &moved), PUMP_DONE);
    cr_assert_eq(moved, 11);
    cr_assert_eq(p.got.len, 11);
    cr_assert_str_eq(p.got.p, "hello world");
    cr_assert_eq(p.in.len, 9, "the next message stays");
    cr_assert_eq(memcmp(p.in.buf, "GET /next", 9), 0);
    pump_teardown(&p);
}

Test(pump, chunked_with_extensions_and_trailers_raw_and_decoded)
{
    static const char body[] = "5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    struct body_limits raw = {.idle_ms = 1000}, dec = {.idle_ms = 1000, .decode = true};
    uint64_t moved;
    struct pumped p;
    pump_setup(&p, "");
    write(p.sv[0], body, strlen(body));
    write(p.sv[0], "NEXT", 4);
    cr_assert_eq(pump(&p, BODY_CHUNKED, 0, &raw, &moved), PUMP_DONE);
    cr_assert_eq(p.got.len, strlen(body), "raw: the bytes as framed, trailers too");
    cr_assert_eq(memcmp(p.got.p, body, strlen(body)), 0);
    cr_assert_eq(moved, strlen(body));
    cr_assert_eq(p.in.len, 4);
    pump_teardown(&p);
    pump_setup(&p, "");
    write(p.sv[0], body, strlen(body));
    cr_assert_eq(pump(&p, BODY_CHUNKED, 0, &dec, &moved), PUMP_DONE);
    cr_assert_str_eq(p.got.p, "hello world", "decoded: the data only");
    cr_assert_eq(moved, 11);
    pump_teardown(&p);
}

Test(pump, close_delimited_and_cut)
{
    struct body_limits lim = {.idle_ms = 1000};
    uint64_t moved;
    struct pumped p;
    pump_setup(&p, "abc");
    write(p.sv[0], "def", 3);
    shutdown(p.sv[0], SHUT_WR);
    cr_assert_eq(pump(&p, BODY_UNTIL_CLOSE, 0, &lim, &moved), PUMP_DONE);
    cr_assert_str_eq(p.got.p, "abcdef");
    pump_teardown(&p);
    pump_setup(&p, "abc");
    shutdown(p.sv[0], SHUT_WR);
    cr_assert_eq(pump(&p, BODY_LENGTH, 10, &lim, &moved), PUMP_CUT);
    cr_assert_eq(moved, 3, "what came was passed on");
    pump_teardown(&p);
    pump_setup(&p, "5\r\nab");
    shutdown(p.sv[0], SHUT_WR);
    cr_assert_eq(pump(&p, BODY_CHUNKED, 0, &lim, &moved), PUMP_CUT);
    pump_teardown(&p);
}

Test(pump, limits)
{
    struct body_limits lim = {.idle_ms = 1000, .max = 8, .decode = true};
    uint64_t moved;
    struct pumped p;
    pump_setup(&p, "");
    cr_assert_eq(pump(&p, BODY_LENGTH, 9, &lim, &moved), PUMP_TOO_LARGE, "said up front");
    cr_assert_eq(p.got.len, 0);
    pump_teardown(&p);
    pump_setup(&p, "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n");
    cr_assert_eq(pump(&p, BODY_CHUNKED, 0, &lim, &moved), PUMP_TOO_LARGE);
    cr_assert(p.got.len <= 8, "nothing past the limit was passed on (%zu)", p.got.len);
    pump_teardown(&p);
    struct body_limits chunks = {.idle_ms = 1000, .max_chunks = 2};
    pump_setup(&p, "1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n");
    cr_assert_eq(pump(&p, BODY_CHUNKED, 0, &chunks, &moved), PUMP_MALFORMED, "too many chunks");
    pump_teardown(&p);
}

Test(pump, idle_and_whole_body_deadlines)
{
    uint64_t moved;
    struct pumped p;
    struct body_limits idle = {.idle_ms = 50};
    pump_setup(&p, "ab");
    cr_assert_eq(pump(&p, BODY_LENGTH, 5, &idle, &moved), PUMP_TIMEOUT);
    cr_assert_eq(moved, 2);
    pump_teardown(&p);
    /* each byte comes well within the idle limit, the whole not by the deadline */
    struct body_limits whole = {.idle_ms = 1000, .deadline = now_ms() + 150};
    pump_setup(&p, "");
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < 20; i++) {
            write(p.sv[0], "x", 1);
            usleep(30000);
        }
        _exit(0);
    }
    cr_assert_eq(pump(&p, BODY_LENGTH, 20, &whole, &moved), PUMP_TIMEOUT);
    cr_assert(moved < 20);
    pump_teardown(&p);
}

static int refuse(void *ctx, const char *p, size_t n)
{
    (void)ctx, (void)p, (void)n;
    return -1;
}

Test(pump, a_sink_that_fails_stops_it)
{
    uint64_t moved;
    struct pumped p;
    struct body_limits lim = {.idle_ms = 1000};
    pump_setup(&p, "hello");
    p.sink = (struct body_sink){refuse, NULL};
    cr_assert_eq(pump(&p, BODY_LENGTH, 5, &lim, &moved), PUMP_SINK_FAILED);
    cr_assert_eq(moved, 0);
    pump_teardown(&p);
    pump_setup(&p, "5\r\nhello\r\n0\r\n\r\n");
    p.sink = (struct body_sink){refuse, NULL};
    struct body_limits dec = {.idle_ms = 1000, .decode = true};
    cr_assert_eq(pump(&p, BODY_CHUNKED, 0, &dec, &moved), PUMP_SINK_FAILED);
    pump_teardown(&p);
}

/* ---- the hop-by-hop table ---- */

Test(hop, framing_is_egressds_and_connection_names_stop_here)
{
    struct http_msg m;
    const char *why;
    char out[512];
    struct sbuf b;
    cr_assert_eq(req("POST http://a/ HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, X-Drop\r\n"
                     "Content-Length: 5\r\nX-Drop: 1\r\nX-Keep: 2\r\nKeep-Alive: 5\r\n"
                     "Proxy-Authorization: secret\r\n\r\n",
                     &m, &why),
                 HTTP_OK, "%s", why);
    sbuf_init(&b, out, sizeof(out));
    http_put_end_to_end(&b, &m);
    cr_assert_str_eq(out, "X-Keep: 2\r\nContent-Length: 5\r\n");
    cr_assert_eq(req("POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                     "Connection: transfer-encoding\r\n\r\n",
                     &m, &why),
                 HTTP_OK);
    sbuf_init(&b, out, sizeof(out));
    http_put_end_to_end(&b, &m);
    cr_assert_str_eq(out, "Transfer-Encoding: chunked\r\n",
                     "written by egressd, whatever Connection says");
}

Test(hop, transfer_codings_pass_with_the_body)
{
    static const struct {
        const char *te;
        bool coded;
    } cases[] = {{"gzip, chunked", true},
                 {"gzip,chunked", true},
                 {"chunked", false},
                 {"Chunked", false},
                 {"x-custom ,\tchunked", true}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char head[256], out[256], want[128];
        struct http_msg m;
        const char *why = NULL;
        struct sbuf b;
        snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nTransfer-Encoding: %s\r\n\r\n",
                 cases[i].te);
        cr_assert_eq(http_parse_response(head, strlen(head), false, &m, &why), HTTP_OK, "%s: %s",
                     cases[i].te, why);
        sbuf_init(&b, out, sizeof(out));
        http_put_end_to_end(&b, &m);
        snprintf(want, sizeof(want), "Transfer-Encoding: %s\r\n", cases[i].te);
        cr_assert_str_eq(out, want, "the origin's codings, not a bare chunked");
        cr_assert_eq(http_transfer_coded(&m), cases[i].coded, "%s", cases[i].te);
    }
}

Test(sbuf, never_writes_past_and_remembers_the_cut)
{
    char out[8];
    struct sbuf b;
    memset(out, '#', sizeof(out));
    sbuf_init(&b, out, 6);
    sbuf_str(&b, "abc");
    sbuf_printf(&b, "%s", "defgh");
    cr_assert(b.cut);
    cr_assert_str_eq(out, "abc", "the piece that did not fit is not half there");
    cr_assert_eq(out[6], '#');
    sbuf_str(&b, "x");
    cr_assert_str_eq(out, "abc", "nothing after a cut");
}

Test(http, path_views)
{
    char out[64], folded[64];
    const char *why;
    cr_assert_eq(http_path_view("/Repos/%41cme;v=2//x/?q=%2F", 27, out, sizeof(out), folded,
                                sizeof(folded), &why),
                 0);
    cr_assert_str_eq(out, "/Repos/Acme;v=2//x/", "decoded, the query dropped");
    cr_assert_str_eq(folded, "/repos/acme/x/", "lower case, no ;params, one '/' at a time");
    cr_assert_eq(http_path_view("/a%zz", 5, out, sizeof(out), folded, sizeof(folded), &why), -1);
    cr_assert_eq(http_path_view("/a%0a", 5, out, sizeof(out), folded, sizeof(folded), &why), -1,
                 "an encoded control character");
    cr_assert_eq(http_path_view("/aaaa", 5, out, 4, folded, sizeof(folded), &why), -1, "too long");
}

Test(http, error_json_with_request_fields)
{
    char buf[512];
    struct sbuf b;
    sbuf_init(&b, buf, sizeof(buf));
    struct http_error_info info = {.e = &ERR_POLICY_DENIED,
                                   .detail = "the rule does not allow this method",
                                   .rule = "gh-read",
                                   .method = "DELETE",
                                   .path = "/a\"b\\c",
                                   .message = "ask\nthe operator"};
    http_put_error_json(&b, &info);
    cr_assert_not(b.cut);
    cr_assert_str_eq(buf, "{\"error\":\"policy_denied\",\"detail\":\"the rule does not allow this "
                          "method\",\"rule\":\"gh-read\",\"method\":\"DELETE\",\"path\":"
                          "\"/a\\\"b\\\\c\",\"message\":\"ask\\u000athe operator\"}\n");
    sbuf_init(&b, buf, sizeof(buf));
    http_put_error_json(&b, &(struct http_error_info){.e = &ERR_MISDIRECTED});
    cr_assert_str_eq(buf, "{\"error\":\"misdirected_request\",\"detail\":\"\"}\n");
    cr_assert_eq(ERR_MISDIRECTED.status, 421);
    cr_assert_eq(ERR_UNSUPPORTED_PROTOCOL.status, 403);
    cr_assert_eq(ERR_UPSTREAM_TLS.status, 502);
}

/* ---- placeholders swapped for secrets (swap.c) ---- */

#define PH1 "egressd-secret-one-000000"
#define PH2 "egressd-secret-two-111111"

static const struct http_swap test_swaps[] = {
    {PH1, "REAL/one", sizeof(PH1) - 1, 8},
    {PH2, "real-two", sizeof(PH2) - 1, 8},
};

static uint64_t found_in(const char *head)
{
    struct http_msg m;
    const char *why;
    struct http_swaps sw = {test_swaps, 2, 0};
    cr_assert_eq(http_parse_request(head, strlen(head), &m, &why), HTTP_OK, "%s", why);
    return http_swaps_in_head(&m, &sw);
}

Test(swap, placeholders_found_anywhere_in_a_head)
{
    cr_assert_eq(found_in("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(found_in("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " PH1 "\r\n\r\n"), 1);
    cr_assert_eq(found_in("GET /x/" PH2 "/y HTTP/1.1\r\nHost: a\r\n\r\n"), 2, "a path segment");
    cr_assert_eq(found_in("GET /?t=%65gressd-secret-two-11111%31 HTTP/1.1\r\nHost: a\r\n\r\n"), 2,
                 "percent-encoded in the query");
    cr_assert_eq(found_in("GET / HTTP/1.1\r\nHost: a\r\nX-" PH1 ": 1\r\nB: " PH2 "\r\n\r\n"), 3,
                 "a field name counts as the head too");
    /* Basic: base64("u:" PH2) */
    char head[512], b64[128];
    struct sbuf b;
    sbuf_init(&b, b64, sizeof(b64));
    static const char cred[] = "u:" PH2;
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < sizeof(cred) - 1; i += 3) {
        size_t n = sizeof(cred) - 1 - i;
        unsigned v = (unsigned)(unsigned char)cred[i] << 16 |
                     (n > 1 ? (unsigned)(unsigned char)cred[i + 1] << 8 : 0) |
                     (n > 2 ? (unsigned char)cred[i + 2] : 0);
        char q[4] = {tbl[v >> 18 & 63], tbl[v >> 12 & 63], n > 1 ? tbl[v >> 6 & 63] : '=',
                     n > 2 ? tbl[v & 63] : '='};
        sbuf_add(&b, q, 4);
    }
    snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: basic %s\r\n\r\n",
             b64);
    cr_assert_eq(found_in(head), 2, "inside Basic credentials");
    snprintf(
        head, sizeof(head),
        "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\nAuthorization: Basic %s\r\n\r\n",
        b64);
    cr_assert_eq(found_in(head), 2, "inside the Basic credentials of a second Authorization field");
    /* credentials padded past 3 KiB: still read, as any that fit in a head */
    static char padded[HTTP_HEAD_MAX], longhead[HTTP_HEAD_MAX];
    int n = snprintf(padded, sizeof(padded), "u:" PH2 "%04000d", 0);
    struct sbuf lb;
    sbuf_init(&lb, longhead, sizeof(longhead));
    sbuf_str(&lb, "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic ");
    http_base64_encode(&lb, (const unsigned char *)padded, (size_t)n);
    sbuf_str(&lb, "\r\n\r\n");
    cr_assert_not(lb.cut);
    cr_assert_eq(found_in(longhead), 2, "inside Basic credentials of %d bytes", n);
}

static void put_head(const char *head, uint64_t use, char *out, size_t cap)
{
    struct http_msg m;
    const char *why;
    struct http_swaps sw = {test_swaps, 2, use};
    struct sbuf b;
    cr_assert_eq(http_parse_request(head, strlen(head), &m, &why), HTTP_OK, "%s", why);
    sbuf_init(&b, out, cap);
    http_put_target(&b, m.target, m.target_len, &sw);
    sbuf_str(&b, "\n");
    http_put_fields(&b, &m, &sw);
    cr_assert_not(b.cut);
}

Test(swap, targets_fields_and_basic_rewritten)
{
    char out[1024];
    put_head("GET /a/" PH1 "?q=%65gressd-secret-one-00000%30&k=" PH2 " HTTP/1.1\r\nHost: h\r\n"
             "Authorization: Bearer " PH1 "\r\nX-Two: " PH2 "\r\nContent-Length: 0\r\n\r\n",
             1, out, sizeof(out));
    cr_assert_str_eq(out,
                     "/a/REAL%2Fone?q=REAL%2Fone&k=" PH2 "\n"
                     "Authorization: Bearer REAL/one\r\nX-Two: " PH2 "\r\n",
                     "only the used swap, the value percent-encoded in the target");
    /* Basic "u:" PH1 -> "u:REAL/one", encoded again */
    put_head("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic "
             "dTplZ3Jlc3NkLXNlY3JldC1vbmUtMDAwMDAw\r\n\r\n",
             1, out, sizeof(out));
    cr_assert_str_eq(out, "/\nAuthorization: Basic dTpSRUFML29uZQ==\r\n");
    put_head("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic not*base64\r\n\r\n", 3, out,
             sizeof(out));
    cr_assert_str_eq(out, "/\nAuthorization: Basic not*base64\r\n", "not Basic: left as it is");
    /* Basic "ux:" PH1 without its padding, as Node and Java read it */
    static const char unpadded[] = "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic "
                                   "dXg6ZWdyZXNzZC1zZWNyZXQtb25lLTAwMDAwMA\r\n\r\n";
    cr_assert_eq(found_in(unpadded), 1, "found without its padding");
    put_head(unpadded, 1, out, sizeof(out));
    cr_assert_str_eq(out, "/\nAuthorization: Basic dXg6UkVBTC9vbmU=\r\n");
    put_head(
        "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic dXg6ZWdyZXNzZC1zZWNyZXQtb25lLTAwMDAwMA="
        "\r\n\r\n",
        1, out, sizeof(out));
    cr_assert_str_eq(out, "/\nAuthorization: Basic dXg6UkVBTC9vbmU=\r\n", "half its padding");
    put_head("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic dXg6Z\r\n\r\n", 1, out,
             sizeof(out));
    cr_assert_str_eq(out, "/\nAuthorization: Basic dXg6Z\r\n", "no base64 leaves one char over");
}

Test(swap, bodies_bounded)
{
    struct body_buffer out = {0};
    uint64_t swapped;
    struct http_swaps sw = {test_swaps, 2, 3};
    static const char in[] = "{\"a\":\"" PH1 "\",\"b\":\"" PH2 PH1 "\"}";
    cr_assert_eq(http_swap_bytes(in, sizeof(in) - 1, &sw, &out, 1 << 20, &swapped), 0);
    cr_assert_str_eq(out.p, "{\"a\":\"REAL/one\",\"b\":\"real-twoREAL/one\"}");
    cr_assert_eq(swapped, 3);
    cr_assert_eq(out.cap, out.len + 1,
                 "one buffer of the final size: no copy left in freed memory");
    body_buffer_free(&out);
    sw.use = 0;
    cr_assert_eq(http_swap_bytes(in, sizeof(in) - 1, &sw, &out, 1 << 20, &swapped), 0);
    cr_assert_str_eq(out.p, in, "nothing used: nothing swapped");
    cr_assert_eq(swapped, 0);
    body_buffer_free(&out);
    static const struct http_swap grow[] = {
        {"aaaaaaaaaaaaaaaa", "0123456789012345678901234567890123", 16, 34}};
    struct http_swaps g = {grow, 1, 1};
    cr_assert_eq(http_swap_bytes("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 32, &g, &out, 60, &swapped),
                 -1, "the bound holds however much the values grow the body");
    body_buffer_free(&out);
}

/* ---- WebSocket handshakes ---- */

Test(websocket, a_101_must_answer_the_key)
{
    static const char req[] = "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    struct http_msg m, r;
    const char *why;
    char key[HTTP_WS_KEY_LEN + 1];
    cr_assert_eq(http_parse_request(req, strlen(req), &m, &why), HTTP_OK, "%s", why);
    cr_assert(http_websocket_key(&m, key));
    static const char *const answers[] = {
        /* RFC 6455 section 1.3's example */
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOp=\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        cr_assert_eq(http_parse_response(answers[i], strlen(answers[i]), false, &r, &why), HTTP_OK);
        cr_assert_eq(http_websocket_accepted(key, &r), i == 0, "answer %zu", i);
    }
    static const char short_key[] = "GET / HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: abc\r\n\r\n";
    cr_assert_eq(http_parse_request(short_key, strlen(short_key), &m, &why), HTTP_OK);
    cr_assert_not(http_websocket_key(&m, key), "16 random bytes or none");
}

Test(http, method_override_fields)
{
    struct http_msg m;
    const char *why;
    char out[32];
    static const char a[] = "POST / HTTP/1.1\r\nHost: a\r\nX-HTTP-Method-Override: DELETE \r\n\r\n";
    cr_assert_eq(http_parse_request(a, sizeof(a) - 1, &m, &why), HTTP_OK);
    cr_assert_str_eq(http_method_override(&m, out, sizeof(out)), "DELETE");
    static const char b[] = "POST / HTTP/1.1\r\nHost: a\r\nx-method-override: PUT\r\n\r\n";
    cr_assert_eq(http_parse_request(b, sizeof(b) - 1, &m, &why), HTTP_OK);
    cr_assert_str_eq(http_method_override(&m, out, sizeof(out)), "PUT");
    static const char c[] = "POST / HTTP/1.1\r\nHost: a\r\n\r\n";
    cr_assert_eq(http_parse_request(c, sizeof(c) - 1, &m, &why), HTTP_OK);
    cr_assert_null(http_method_override(&m, out, sizeof(out)));
    /* Two overrides, or one too long, are read as no method at all. */
    static const char d[] = "POST / HTTP/1.1\r\nHost: a\r\nX-HTTP-Method: GET\r\n"
                            "X-HTTP-Method-Override: DELETE\r\n\r\n";
    cr_assert_eq(http_parse_request(d, sizeof(d) - 1, &m, &why), HTTP_OK);
    cr_assert_str_eq(http_method_override(&m, out, sizeof(out)), "?");
    static const char e[] = "POST / HTTP/1.1\r\nHost: a\r\nX-HTTP-Method-Override: "
                            "GETGETGETGETGETGETGETGETGETGETGETGET\r\n\r\n";
    cr_assert_eq(http_parse_request(e, sizeof(e) - 1, &m, &why), HTTP_OK);
    cr_assert_str_eq(http_method_override(&m, out, sizeof(out)), "?");
}
