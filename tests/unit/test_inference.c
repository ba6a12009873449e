/*
 * test_inference.c - the inference module's pure parts: the API table,
 * routes, /v1 joining, the header allowlist, error bodies, the SSE cut
 * event, usage.
 */
#include "../../inference/inference.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
