/*
 * test_inference.c - the inference module's pure parts: the first-bytes
 * classifier, the API table, routes, /v1 joining, the header allowlist,
 * JSON member spans and decoding, error bodies, the SSE cut event, usage.
 */
#include "../../inference/inference.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum peek_kind classify(const char *s, size_t n)
{
    return peek_classify((const unsigned char *)s, n);
}

Test(peek, tls_record_types_against_methods)
{
    /* only a handshake record (0x16) starts a TLS session; 0x14, 0x15, 0x17, 0x18
     * are TLS content types but not a first message */
    for (unsigned type = 0x14; type <= 0x18; type++) {
        for (unsigned minor = 0; minor <= 5; minor++) {
            unsigned char rec[5] = {(unsigned char)type, 0x03, (unsigned char)minor, 0x00, 0x50};
            enum peek_kind k = peek_classify(rec, sizeof(rec));
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

struct api_case {
    char method[8], path[64];
    int proto; /* -1: not served */
};

Test(api, pattern_table)
{
    static const struct api_case cases[] = {
        {"POST", "/v1/chat/completions", PROTO_OPENAI_CHAT},
        {"POST", "/v1/chat/completions?x=1", PROTO_OPENAI_CHAT},
        {"POST", "/v1/completions", PROTO_OPENAI_COMPLETIONS},
        {"POST", "/v1/responses", PROTO_OPENAI_RESPONSES},
        {"POST", "/v1/messages", PROTO_ANTHROPIC_MESSAGES},
        {"POST", "/v1/embeddings", PROTO_OPENAI_EMBEDDINGS},
        {"GET", "/v1/models", PROTO_MODEL_DISCOVERY},
        {"GET", "/v1/models/gpt-4o", PROTO_MODEL_DISCOVERY},
        {"GET", "/v1/models/", -1},
        {"GET", "/v1/models/a/b", -1},
        {"GET", "/v1/chat/completions", -1},
        {"POST", "/v1/models", -1},
        {"POST", "/v1/chat/completions/", -1},
        {"POST", "/v1/files", -1},
        {"POST", "/v2/chat/completions", -1},
        {"POST", "/V1/CHAT/COMPLETIONS", -1},
        {"DELETE", "/v1/models/x", -1},
        {"POST", "/v1/messages/count_tokens", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum protocol p = PROTO_COUNT;
        int rc = api_match(cases[i].method, strlen(cases[i].method), cases[i].path,
                           strlen(cases[i].path), &p);
        if (cases[i].proto < 0)
            cr_assert_eq(rc, -1, "%s %s served", cases[i].method, cases[i].path);
        else
            cr_assert(rc == 0 && (int)p == cases[i].proto, "%s %s", cases[i].method, cases[i].path);
    }
    cr_assert(api_is_streamed(PROTO_OPENAI_CHAT));
    cr_assert(api_is_streamed(PROTO_ANTHROPIC_MESSAGES));
    cr_assert_not(api_is_streamed(PROTO_OPENAI_EMBEDDINGS));
    cr_assert_not(api_is_streamed(PROTO_MODEL_DISCOVERY));
}

Test(api, route_selection)
{
    struct policy *p = policy_load_string(
        "[route gpt]\nendpoint = http://a:1/v1\nmodels = gpt-4*, o1\n"
        "protocols = openai_chat_completions\n"
        "[route anything]\nendpoint = http://b:1/v1\n"
        "[route claude]\nendpoint = http://c:1\nprovider = anthropic\nmodels = claude-*\n",
        NULL, NULL);
    cr_assert_not_null(p);
    cr_assert_str_eq(route_select(p, PROTO_OPENAI_CHAT, "gpt-4o")->name, "gpt");
    cr_assert_str_eq(route_select(p, PROTO_OPENAI_CHAT, "o1")->name, "gpt");
    cr_assert_str_eq(route_select(p, PROTO_OPENAI_CHAT, "llama")->name, "anything");
    cr_assert_str_eq(route_select(p, PROTO_OPENAI_CHAT, NULL)->name, "anything");
    cr_assert_str_eq(route_select(p, PROTO_OPENAI_EMBEDDINGS, "gpt-4o")->name, "anything");
    cr_assert_str_eq(route_select(p, PROTO_ANTHROPIC_MESSAGES, "claude-3")->name, "claude");
    cr_assert_null(route_select(p, PROTO_ANTHROPIC_MESSAGES, "gpt-4o"));
    cr_assert_null(route_select(p, PROTO_ANTHROPIC_MESSAGES, NULL));
    cr_assert_str_eq(route_select(p, PROTO_MODEL_DISCOVERY, NULL)->name, "anything");
    policy_unref(p);
}

Test(api, v1_joining)
{
    static const struct {
        char base[32], path[48], want[64];
    } cases[] = {
        {"/v1", "/v1/chat/completions", "/v1/chat/completions"},
        {"", "/v1/chat/completions", "/v1/chat/completions"},
        {"/openai/v1", "/v1/models?x=1", "/openai/v1/models?x=1"},
        {"/api", "/v1/messages", "/api/v1/messages"},
        {"/v1", "/v1", "/v1"},
        {"/v1", "/v10/x", "/v1/v10/x"},
        {"/prefix/v1x", "/v1/models", "/prefix/v1x/v1/models"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[128];
        cr_assert_eq(
            path_join(out, sizeof(out), cases[i].base, cases[i].path, strlen(cases[i].path)), 0);
        cr_assert_str_eq(out, cases[i].want, "%s + %s", cases[i].base, cases[i].path);
    }
    char tiny[8];
    cr_assert_eq(path_join(tiny, sizeof(tiny), "/v1", "/v1/chat/completions", 20), -1);
}

static struct http_header hdr(const char *name)
{
    return (struct http_header){name, "v", strlen(name), 1};
}

Test(api, header_allowlist)
{
    static const char *const pass[] = {
        "Content-Type",        "accept",      "Accept-Encoding",   "User-Agent",
        "OpenAI-Organization", "openai-beta", "anthropic-version", "Anthropic-Beta"};
    static const char *const drop[] = {"authorization",  "x-api-key",           "cookie",
                                       "host",           "proxy-authorization", "x-forwarded-for",
                                       "openai-project", "content-length",      "transfer-encoding",
                                       "connection"};
    for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++) {
        struct http_header h = hdr(pass[i]);
        cr_assert(header_forwardable(&h), "%s", pass[i]);
    }
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        struct http_header h = hdr(drop[i]);
        cr_assert_not(header_forwardable(&h), "%s", drop[i]);
    }
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
    json_escape(out, sizeof(out), "a\xe2\x80\xa8" "b\xe2\x80\xa9");
    cr_assert_str_eq(out, "a\\u2028b\\u2029", "line separators would split a log line");
}

/* ---- responses egressd writes ---- */

Test(api, error_bodies_in_each_shape)
{
    char out[512];
    cr_assert_gt(api_error_body(out, sizeof(out), STYLE_OPENAI, "no_route", "say \"hi\""), 0);
    cr_assert_str_eq(out, "{\"error\":{\"message\":\"say \\\"hi\\\"\",\"type\":\"egressd_error\","
                          "\"code\":\"no_route\"}}");
    cr_assert_gt(api_error_body(out, sizeof(out), STYLE_ANTHROPIC, "body_too_large", "x"), 0);
    cr_assert_str_eq(
        out, "{\"type\":\"error\",\"error\":{\"type\":\"body_too_large\",\"message\":\"x\"}}");
}

Test(api, sse_error_is_escaped)
{
    char out[512];
    int n = sse_error_event(out, sizeof(out), "bad \"quote\"\nand\\slash");
    cr_assert_gt(n, 0);
    cr_assert_str_eq(out,
                     "data: {\"error\":{\"message\":\"response truncated: bad \\\"quote\\\"\\u000a"
                     "and\\\\slash\",\"type\":\"proxy_stream_error\"}}\n\n");
    cr_assert_eq(strchr(out, '\n'), out + n - 2, "one event: no newline before its end");
}

Test(api, usage_scan)
{
    struct usage u = {-1, -1};
    const char *openai = "{\"usage\":{\"prompt_tokens\":11,\"completion_tokens\": 3}}";
    usage_scan(&u, openai, strlen(openai));
    cr_assert_eq(u.in, 11);
    cr_assert_eq(u.out, 3);
    struct usage a = {-1, -1};
    const char *start = "data: {\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}";
    const char *delta = "data: {\"usage\":{\"output_tokens\":40}}";
    usage_scan(&a, start, strlen(start));
    usage_scan(&a, delta, strlen(delta));
    cr_assert_eq(a.in, 25);
    cr_assert_eq(a.out, 40, "the last report wins");
    struct usage none = {-1, -1};
    usage_scan(&none, "data: {\"x\":1}", 13);
    cr_assert_eq(none.in, -1);
}
