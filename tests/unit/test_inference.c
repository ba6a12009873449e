/*
 * test_inference.c - the inference module's pure parts: the API table,
 * routes, /v1 joining, the header allowlist, error bodies, the SSE cut
 * event, usage, model aliases, retry eligibility, and the budget registry
 * (windows, reloads, many workers at once).
 */
#include "../../inference/infer_int.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* ---- budgets: windows and counters ---- */

static struct policy *budget_policy(const char *budgets)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "[route a]\nendpoint = mock://a\n[route b]\nendpoint = mock://b\n%s", budgets);
    struct policy *p = policy_load_string(text, NULL, NULL);
    cr_assert_not_null(p, "%s", budgets);
    return p;
}

static bool admit_at(struct budget_registry *reg, const struct policy *p, size_t route, int64_t t,
                     struct budget_refusal *why)
{
    struct caller who = {0};
    uint64_t admitted = 0;
    return budget_admit(reg, p, policy_route(p, route), &who, t, &admitted, why);
}

static void charge_at(struct budget_registry *reg, const struct policy *p, size_t route, int64_t t,
                      long long in, long long out)
{
    struct caller who = {0};
    struct usage u = {in, out};
    budget_charge(reg, p, policy_route(p, route), &who, &u, t);
}

Test(budget, fixed_window_counts_requests)
{
    struct policy *p =
        budget_policy("[budget b]\nroutes = a\nrequests = 3\nwindow = 10s\nwindow_type = fixed\n");
    struct budget_registry *reg = budget_registry_new();
    struct budget_refusal why;
    budget_registry_sync(reg, p, 1000);
    for (int i = 0; i < 3; i++)
        cr_assert(admit_at(reg, p, 0, 1000 + i * 1000, &why), "request %d", i);
    cr_assert_not(admit_at(reg, p, 0, 4000, &why));
    cr_assert_str_eq(why.budget, "b");
    cr_assert_str_eq(why.kind, "requests");
    cr_assert_eq(why.retry_after_s, 7, "the window that began at 1000 ends at 11000");
    cr_assert_not(admit_at(reg, p, 0, 10999, &why), "a refusal counts nothing");
    cr_assert_eq(why.retry_after_s, 1, "rounded up, never 0");
    cr_assert(admit_at(reg, p, 1, 5000, &why), "route b is not in the budget");
    cr_assert(admit_at(reg, p, 0, 11000, &why), "a new window");
    budget_registry_free(reg);
    policy_unref(p);
}

Test(budget, sliding_window_counts_tokens)
{
    /* 60 s in 60 slots of 1 s: usage leaves the count 60 s after its slot began */
    struct policy *p = budget_policy("[budget t]\nroutes = *\ntokens = 100\nwindow = 60s\n");
    struct budget_registry *reg = budget_registry_new();
    struct budget_refusal why;
    budget_registry_sync(reg, p, 0);
    cr_assert(admit_at(reg, p, 0, 0, &why));
    charge_at(reg, p, 0, 500, 40, 20); /* slot 0: 60 */
    cr_assert(admit_at(reg, p, 1, 30000, &why), "60 of 100");
    charge_at(reg, p, 1, 30500, -1, 50); /* slot 30: 50; "not reported" counts nothing */
    cr_assert_not(admit_at(reg, p, 0, 31000, &why), "110 of 100: spent");
    cr_assert_str_eq(why.kind, "tokens");
    cr_assert_eq(why.retry_after_s, 29, "slot 0 leaves at 60 s");
    cr_assert_not(admit_at(reg, p, 0, 59999, &why));
    cr_assert(admit_at(reg, p, 0, 60000, &why), "50 of 100 now");
    charge_at(reg, p, 0, 60000, 60, 0);
    cr_assert_not(admit_at(reg, p, 0, 61000, &why), "110 again");
    cr_assert_eq(why.retry_after_s, 29, "slot 30 must leave too: at 90 s");
    cr_assert(admit_at(reg, p, 0, 90000, &why));
    budget_registry_free(reg);
    policy_unref(p);
}

Test(budget, spent_by_one_limit_of_two_frees_when_both_allow)
{
    struct policy *p = budget_policy("[budget x]\nroutes = a\ntokens = 10\nrequests = 2\n"
                                     "window = 10s\nwindow_type = fixed\n"
                                     "[budget y]\nroutes = a\nrequests = 1\nwindow = 100s\n"
                                     "window_type = fixed\n");
    struct budget_registry *reg = budget_registry_new();
    struct budget_refusal why;
    budget_registry_sync(reg, p, 0);
    cr_assert(admit_at(reg, p, 0, 0, &why));
    cr_assert_not(admit_at(reg, p, 0, 1000, &why));
    cr_assert_str_eq(why.budget, "y", "the one that frees last is named");
    cr_assert_eq(why.retry_after_s, 99);
    budget_registry_free(reg);
    policy_unref(p);
}

Test(budget, usage_survives_a_reload_that_keeps_the_name)
{
    struct budget_registry *reg = budget_registry_new();
    struct budget_refusal why;
    struct policy *p1 = budget_policy("[budget keep]\nroutes = a\nrequests = 2\nwindow = 1h\n"
                                      "[budget drop]\nroutes = a\nrequests = 2\nwindow = 1h\n");
    budget_registry_sync(reg, p1, 0);
    cr_assert(admit_at(reg, p1, 0, 0, &why));
    cr_assert(admit_at(reg, p1, 0, 1, &why));
    cr_assert_not(admit_at(reg, p1, 0, 2, &why));
    /* keep: same name, another window and limit; drop: renamed */
    struct policy *p2 = budget_policy("[budget keep]\nroutes = a\nrequests = 3\nwindow = 2h\n"
                                      "window_type = fixed\n"
                                      "[budget dropped]\nroutes = b\nrequests = 2\nwindow = 1h\n");
    budget_registry_sync(reg, p2, 10);
    cr_assert(admit_at(reg, p2, 0, 20, &why), "2 of 3 were used: one more");
    cr_assert_not(admit_at(reg, p2, 0, 30, &why), "the usage came over");
    cr_assert_str_eq(why.budget, "keep");
    cr_assert(admit_at(reg, p2, 1, 30, &why), "a new name starts empty");
    cr_assert(admit_at(reg, p1, 0, 40, &why) == false,
              "the old policy's 'keep' is the same budget");
    budget_registry_free(reg);
    policy_unref(p1);
    policy_unref(p2);
}

static int lookups;
static struct identity *curl_id;
static const struct identity *lookup_curl(void *ctx)
{
    (void)ctx;
    lookups++;
    return curl_id;
}

Test(budget, binary_budgets_look_the_caller_up_once_and_only_when_needed)
{
    struct policy *p = budget_policy("[budget all]\nroutes = *\nrequests = 100\nwindow = 1h\n"
                                     "[budget curl]\nroutes = b\nbinary = /usr/bin/curl\n"
                                     "requests = 1\nwindow = 1h\n");
    struct budget_registry *reg = budget_registry_new();
    struct budget_refusal why;
    curl_id = identity_new();
    cr_assert(identity_add_holder(curl_id, 7) == 0 &&
              identity_add_exe(curl_id, 0, "/usr/bin/curl") == 0);
    budget_registry_sync(reg, p, 0);
    struct caller who = {.lookup = lookup_curl};
    uint64_t admitted = 0;
    cr_assert(budget_admit(reg, p, policy_route(p, 0), &who, 0, &admitted, &why));
    cr_assert_eq(lookups, 0, "route a has no budget with binary");
    cr_assert_eq(admitted, 1u, "budget 0 counted");
    cr_assert(budget_admit(reg, p, policy_route(p, 1), &who, 0, &admitted, &why));
    cr_assert_eq(lookups, 1);
    cr_assert_eq(admitted, 3u, "budget 1 counted; budget 0 not twice");
    struct caller who2 = {.lookup = lookup_curl};
    uint64_t again = 0;
    cr_assert_not(budget_admit(reg, p, policy_route(p, 1), &who2, 0, &again, &why));
    cr_assert_str_eq(why.budget, "curl");
    cr_assert(budget_admit(reg, p, policy_route(p, 0), &who2, 0, &again, &why),
              "route a: only 'all' applies");
    struct caller nobody = {0};
    uint64_t none = 0;
    cr_assert_not(budget_admit(reg, p, policy_route(p, 1), &nobody, 0, &none, &why),
                  "a caller not known counts against a binary budget");
    cr_assert_eq(lookups, 2);
    identity_free(curl_id);
    budget_registry_free(reg);
    policy_unref(p);
}

Test(budget, gauges)
{
    struct policy *p = budget_policy("[budget g]\nroutes = a\ntokens = 1000\nrequests = 5\n"
                                     "window = 1h\n[budget h]\nroutes = b\nrequests = 1\n"
                                     "window = 1h\n");
    struct budget_registry *reg = budget_registry_new();
    struct budget_refusal why;
    struct budget_gauge g[8];
    budget_registry_sync(reg, p, 0);
    cr_assert(admit_at(reg, p, 0, 0, &why));
    charge_at(reg, p, 0, 0, 400, 700);
    size_t n = budget_gauges(reg, p, 1, g, 8);
    cr_assert_eq(n, 3);
    cr_assert(strcmp(g[0].budget, "g") == 0 && strcmp(g[0].kind, "tokens") == 0 &&
                  g[0].remaining == 0,
              "overspent: 0, never negative");
    cr_assert(strcmp(g[1].kind, "requests") == 0 && g[1].remaining == 4);
    cr_assert(strcmp(g[2].budget, "h") == 0 && g[2].remaining == 1);
    cr_assert_eq(budget_gauges(reg, p, 1, g, 2), 2, "bounded by the caller's room");
    budget_registry_free(reg);
    policy_unref(p);
}

#define WORKERS     8
#define PER_WORKER  2000
#define ADMIT_LIMIT 5000

struct hammer {
    struct budget_registry *reg;
    const struct policy *p;
    int admitted;
};

static void *hammer_budget(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < PER_WORKER; i++) {
        struct caller who = {0};
        struct budget_refusal why;
        struct usage u = {1, 2};
        uint64_t mask = 0;
        if (budget_admit(h->reg, h->p, policy_route(h->p, 0), &who, 5, &mask, &why)) {
            h->admitted++;
            budget_charge(h->reg, h->p, policy_route(h->p, 0), &who, &u, 5);
        }
    }
    return NULL;
}

Test(budget, many_workers_at_once)
{
    struct policy *p = budget_policy("[budget r]\nroutes = a\nrequests = 5000\nwindow = 1h\n"
                                     "[budget t]\nroutes = *\ntokens = 1000000000\nwindow = 1h\n");
    struct budget_registry *reg = budget_registry_new();
    struct hammer h[WORKERS];
    pthread_t t[WORKERS];
    budget_registry_sync(reg, p, 0);
    for (int i = 0; i < WORKERS; i++) {
        h[i] = (struct hammer){reg, p, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, hammer_budget, &h[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(t[i], NULL);
        total += h[i].admitted;
    }
    cr_assert_eq(total, ADMIT_LIMIT, "exactly the limit, never one more");
    struct budget_gauge g[4];
    cr_assert_eq(budget_gauges(reg, p, 6, g, 4), 2);
    cr_assert_eq(g[0].remaining, 0);
    cr_assert_eq(g[1].remaining, 1000000000 - 3 * ADMIT_LIMIT, "every charge counted");
    budget_registry_free(reg);
    policy_unref(p);
}

/* ---- model aliases ---- */

Test(alias, first_match_then_model_then_as_is)
{
    struct policy *p = policy_load_string(
        "[route a]\nendpoint = mock://a\n"
        "model_map = gpt-4o=llama-3.1-70b, gpt-4o-mini=llama-3.1-8b, gpt-4*=llama-any, o?=tiny\n"
        "[route b]\nendpoint = mock://b\nmodel = fixed\nmodel_map = claude-*=sonnet\n"
        "[route c]\nendpoint = mock://c\n",
        NULL, NULL);
    cr_assert_not_null(p);
    const struct route *a = policy_route(p, 0), *b = policy_route(p, 1), *c = policy_route(p, 2);
    cr_assert_str_eq(route_model_for(a, "gpt-4o"), "llama-3.1-70b");
    cr_assert_str_eq(route_model_for(a, "gpt-4o-mini"), "llama-3.1-8b", "exact, not a prefix");
    cr_assert_str_eq(route_model_for(a, "gpt-4-turbo"), "llama-any", "a glob");
    cr_assert_str_eq(route_model_for(a, "o1"), "tiny");
    cr_assert_null(route_model_for(a, "o1-pro"), "no match and no model: as it is");
    cr_assert_null(route_model_for(a, NULL));
    cr_assert_null(route_model_for(a, "GPT-4O"), "case matters, as for `models`");
    cr_assert_str_eq(route_model_for(b, "claude-3"), "sonnet", "the map before `model`");
    cr_assert_str_eq(route_model_for(b, "other"), "fixed");
    cr_assert_str_eq(route_model_for(b, NULL), "fixed");
    cr_assert_null(route_model_for(c, "gpt-4o"));
    policy_unref(p);
}

Test(alias, listing_names_what_the_sandbox_may_ask_for)
{
    struct policy *p =
        policy_load_string("[route a]\nendpoint = mock://a\nmodels = gpt-4o, llama*, extra\n"
                           "model_map = gpt-4o=l70, gpt-*=l8, gpt-4o=again, o1 = tiny\n",
                           NULL, NULL);
    cr_assert_not_null(p);
    char buf[2048];
    struct sbuf b;
    sbuf_init(&b, buf, sizeof(buf));
    alias_list_body(&b, policy_route(p, 0));
    cr_assert_not(b.cut);
    cr_assert_str_eq(
        buf,
        "{\"object\":\"list\",\"data\":["
        "{\"id\":\"gpt-4o\",\"object\":\"model\",\"created\":0,\"owned_by\":\"egressd\"},"
        "{\"id\":\"o1\",\"object\":\"model\",\"created\":0,\"owned_by\":\"egressd\"},"
        "{\"id\":\"extra\",\"object\":\"model\",\"created\":0,\"owned_by\":\"egressd\"}]}",
        "globs left out, each name once");
    sbuf_init(&b, buf, sizeof(buf));
    cr_assert(alias_model_body(&b, policy_route(p, 0), "gpt-5"), "matches the glob gpt-*");
    cr_assert_str_eq(
        buf, "{\"id\":\"gpt-5\",\"object\":\"model\",\"created\":0,\"owned_by\":\"egressd\"}");
    sbuf_init(&b, buf, sizeof(buf));
    cr_assert(alias_model_body(&b, policy_route(p, 0), "extra"));
    sbuf_init(&b, buf, sizeof(buf));
    cr_assert_not(alias_model_body(&b, policy_route(p, 0), "llama-3"),
                  "a models glob: the backend's");
    cr_assert_eq(b.len, 0);
    policy_unref(p);
}

/* ---- retries ---- */

Test(retry, classes_of_answers)
{
    cr_assert_eq(retry_class_of_status(500), RETRY_ON_5XX);
    cr_assert_eq(retry_class_of_status(503), RETRY_ON_5XX);
    cr_assert_eq(retry_class_of_status(599), RETRY_ON_5XX);
    cr_assert_eq(retry_class_of_status(429), RETRY_ON_429);
    cr_assert_eq(retry_class_of_status(200), 0);
    cr_assert_eq(retry_class_of_status(400), 0);
    cr_assert_eq(retry_class_of_status(404), 0);
    cr_assert_eq(retry_class_of_status(600), 0);
}

Test(retry, eligibility_before_and_after_the_first_byte)
{
    const unsigned dflt = RETRY_ON_CONNECT | RETRY_ON_5XX;
    const unsigned classes[] = {RETRY_ON_CONNECT, RETRY_ON_5XX, RETRY_ON_429};
    const unsigned settings[] = {dflt, RETRY_ON_CONNECT, RETRY_ON_5XX | RETRY_ON_429,
                                 RETRY_ON_CONNECT | RETRY_ON_5XX | RETRY_ON_429};
    for (size_t s = 0; s < sizeof(settings) / sizeof(settings[0]); s++) {
        for (size_t c = 0; c < sizeof(classes) / sizeof(classes[0]); c++) {
            bool named = (settings[s] & classes[c]) != 0;
            cr_assert_eq(retry_eligible(settings[s], classes[c], false), named,
                         "retry_on %#x, class %#x, nothing sent yet", settings[s], classes[c]);
            cr_assert_not(retry_eligible(settings[s], classes[c], true),
                          "never once the head went to the client (%#x, %#x)", settings[s],
                          classes[c]);
        }
        cr_assert_not(retry_eligible(settings[s], 0, false), "an answer that is not a failure");
    }
    cr_assert_not(retry_eligible(dflt, RETRY_ON_429, false), "429 is not in the default");
}

/* ---- the 429 of a spent budget, in each API's shape ---- */

static void limited_answer(enum err_style style, char *out, size_t cap, bool *keep)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct exchange x = {.style = style, .minor = 1};
    x.rp = (struct reply){.s = stream_plain(sv[0]), .io_ms = 1000};
    struct budget_refusal why = {.budget = "daily", .kind = "tokens", .retry_after_s = 42};
    *keep = exchange_limited(&x, &why);
    cr_assert_eq(x.rec.status, 429);
    cr_assert_str_eq(x.rec.error, "budget_exceeded");
    cr_assert(strstr(x.rec.detail, "daily") != NULL);
    stream_free(x.rp.s);
    close(sv[0]);
    ssize_t n = read(sv[1], out, cap - 1);
    cr_assert_gt(n, 0);
    out[n] = '\0';
    close(sv[1]);
}

Test(limit, answer_429_in_both_shapes)
{
    char out[2048];
    bool keep;
    limited_answer(STYLE_OPENAI, out, sizeof(out), &keep);
    cr_assert(keep, "the request was read whole: the connection stays");
    cr_assert(strncmp(out, "HTTP/1.1 429 ", 13) == 0, "%s", out);
    cr_assert(strstr(out, "\r\nRetry-After: 42\r\n") != NULL, "%s", out);
    cr_assert(strstr(out, "\r\nX-Egressd-Error: budget_exceeded\r\n") != NULL, "%s", out);
    cr_assert_null(strstr(out, "Connection: close"));
    const char *body = strstr(out, "\r\n\r\n") + 4;
    cr_assert_str_eq(body, "{\"error\":{\"message\":\"egressd: the tokens budget 'daily' is spent; "
                           "retry in 42 s\",\"type\":\"egressd_error\",\"code\":"
                           "\"rate_limit_exceeded\"}}");
    limited_answer(STYLE_ANTHROPIC, out, sizeof(out), &keep);
    body = strstr(out, "\r\n\r\n") + 4;
    cr_assert(strstr(out, "\r\nRetry-After: 42\r\n") != NULL, "%s", out);
    cr_assert_str_eq(body, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
                           "\"message\":\"egressd: the tokens budget 'daily' is spent; retry in "
                           "42 s\"}}");
}
