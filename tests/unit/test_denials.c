/*
 * test_denials.c - denials an agent can act on: the reason-phrase builder
 * (nothing a host name holds reaches the status line but printable ASCII),
 * hints (the smallest [allow] section that admits what was denied, and
 * that loads), path folding, the denial record's bound and order, the
 * grouping of --suggest, and the checks on an access request.
 */
#include "../../proxy/proxy.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct policy *load(const char *text)
{
    struct policy *p = policy_load_string(text, NULL, NULL);
    cr_assert_not_null(p, "policy did not load: %s", text);
    return p;
}

static struct host host_of(const char *name)
{
    struct host h;
    const char *why;
    cr_assert_eq(host_parse(name, strlen(name), &h, &why), 0, "%s", name);
    return h;
}

static bool printable_line(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

/* ---- the reason phrase ---- */

Test(phrase, says_what_happened_and_what_to_do)
{
    char out[HTTP_PHRASE_MAX + 1];
    struct http_error_info info = {.e = &ERR_POLICY_DENIED, .host = "example.com", .port = 443};
    http_error_phrase(out, sizeof(out), &info);
    cr_assert_str_eq(out, "egressd policy: example.com:443 is not allowed (ask the operator to add "
                          "an [allow] rule)");
    info.rule = "meta", info.by_deny_rule = true;
    http_error_phrase(out, sizeof(out), &info);
    cr_assert_str_eq(out, "egressd policy: example.com:443 is denied by rule meta (a deny rule: do "
                          "not retry)");
    info.message = "ask the platform team";
    http_error_phrase(out, sizeof(out), &info);
    cr_assert_str_eq(
        out, "egressd policy: example.com:443 is denied by rule meta (ask the platform team)");
    info = (struct http_error_info){.e = &ERR_POLICY_DENIED,
                                    .host = "::1",
                                    .port = 8080,
                                    .method = "POST",
                                    .path = "/repos/acme/tool/issues"};
    http_error_phrase(out, sizeof(out), &info);
    cr_assert_str_eq(out, "egressd policy: POST /repos/acme/tool/issues on [::1]:8080 is not "
                          "allowed (ask the operator to add an [allow] rule)");
    info =
        (struct http_error_info){.e = &ERR_UPSTREAM_TIMEOUT, .host = "slow.example", .port = 443};
    http_error_phrase(out, sizeof(out), &info);
    cr_assert(strstr(out, "slow.example:443 did not answer in time") != NULL, "%s", out);
    cr_assert(strstr(out, "not a policy decision") != NULL, "%s", out);
    struct http_error odd = {429, "rate_limit_exceeded"};
    info = (struct http_error_info){.e = &odd, .detail = "budget spent"};
    http_error_phrase(out, sizeof(out), &info);
    cr_assert_str_eq(out, "egressd: rate_limit_exceeded (budget spent)");
}

Test(phrase, nothing_but_printable_ascii_reaches_the_status_line)
{
    static const char *const hostile[] = {
        "evil.com\r\nSet-Cookie: a=b",
        "evil.com\nX: y",
        "a\tb\001c\177d",
        "\xc3\xa9t\xc3\xa9.example",
        "\xff\xfe\r\n\r\nHTTP/1.1 200 OK",
    };
    char out[HTTP_PHRASE_MAX + 1];
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        const struct http_error *codes[] = {&ERR_POLICY_DENIED, &ERR_SSRF_DENIED, &ERR_DNS_FAILURE,
                                            &ERR_BAD_REQUEST, &ERR_MISDIRECTED};
        for (size_t k = 0; k < sizeof(codes) / sizeof(codes[0]); k++) {
            struct http_error_info info = {.e = codes[k],
                                           .host = hostile[i],
                                           .port = 443,
                                           .method = hostile[i],
                                           .path = hostile[i],
                                           .rule = hostile[i],
                                           .message = hostile[i],
                                           .detail = hostile[i]};
            http_error_phrase(out, sizeof(out), &info);
            cr_assert(printable_line(out), "code %s, host %zu: %s", codes[k]->code, i, out);
            cr_assert(strlen(out) <= HTTP_PHRASE_MAX);
        }
    }
    char big[4096];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct http_error_info info = {.e = &ERR_POLICY_DENIED, .host = big, .port = 1, .message = big};
    http_error_phrase(out, sizeof(out), &info);
    cr_assert_eq(strlen(out), HTTP_PHRASE_MAX, "bounded");
    cr_assert_str_eq(out + HTTP_PHRASE_MAX - 3, "...", "cut, and says so");
    char small[16];
    http_error_phrase(small, sizeof(small), &info);
    cr_assert_eq(strlen(small), 15);
}

Test(phrase, clean_in_place)
{
    char s[] = "a\r\nb\x80";
    http_phrase_clean(s, 100);
    cr_assert_str_eq(s, "a??b?");
    char t[] = "abcdefghij";
    http_phrase_clean(t, 6);
    cr_assert_str_eq(t, "abc...");
}

Test(phrase, the_answer_carries_it_and_the_hint)
{
    char buf[4096];
    struct sbuf b;
    struct http_error_info info = {.e = &ERR_POLICY_DENIED,
                                   .host = "x.test",
                                   .port = 443,
                                   .hint = "[allow x.test]\nhost = x.test\nport = 443\n"};
    sbuf_init(&b, buf, sizeof(buf));
    http_put_error_json(&b, &info);
    cr_assert(strstr(buf, ",\"hint\":\"[allow x.test]\\u000ahost = x.test\\u000aport = "
                          "443\\u000a\"}") != NULL,
              "%s", buf);
}

/* ---- hints ---- */

static const char policy_text[] = "[proxy]\n"
                                  "[deny meta]\nhost = metadata.google.internal\n"
                                  "[allow gh]\nhost = api.github.com\nmethods = GET\n"
                                  "paths = /repos/acme/**\n"
                                  "[allow example.org]\nhost = other.test\n";

/* The hint loads appended to the policy and allows what was denied. */
static void hint_round_trip(const char *text, const char *hint, const char *host, uint16_t port,
                            const struct identity *id, const struct request_view *rq)
{
    size_t n = strlen(text) + strlen(hint) + 2;
    char *both = malloc(n);
    snprintf(both, n, "%s\n%s", text, hint);
    struct policy *p = load(both);
    struct host h = host_of(host);
    struct policy_decision d;
    if (rq != NULL)
        policy_decide_request(p, &h, port, id, rq, &d);
    else
        policy_decide_as(p, &h, port, id, &d);
    cr_assert_neq(d.action, ACTION_DENY, "the hint admits it:\n%s", both);
    policy_unref(p);
    free(both);
}

Test(hint, a_destination)
{
    struct policy *p = load(policy_text);
    struct host h = host_of("example.org");
    struct policy_decision d;
    char hint[POLICY_HINT_MAX];
    policy_decide(p, &h, 8443, &d);
    cr_assert(policy_hint(p, &h, 8443, NULL, NULL, &d, hint, sizeof(hint)));
    cr_assert_str_eq(hint, "[allow example.org-2]\nhost = example.org\nport = 8443\n",
                     "the name is made unique: a rule example.org exists");
    hint_round_trip(policy_text, hint, "example.org", 8443, NULL, NULL);
    policy_unref(p);
}

Test(hint, none_where_a_deny_rule_refused)
{
    struct policy *p = load(policy_text);
    struct host h = host_of("metadata.google.internal");
    struct policy_decision d;
    char hint[POLICY_HINT_MAX];
    policy_decide(p, &h, 80, &d);
    cr_assert_eq(d.action, ACTION_DENY);
    cr_assert_not(policy_hint(p, &h, 80, NULL, NULL, &d, hint, sizeof(hint)));
    cr_assert_str_eq(hint, "");
    h = host_of("other.test");
    policy_decide(p, &h, 443, &d);
    cr_assert_not(policy_hint(p, &h, 443, NULL, NULL, &d, hint, sizeof(hint)), "not denied");
    policy_unref(p);
}

Test(hint, a_request_with_its_method_path_and_program)
{
    struct policy *p = load(policy_text);
    struct host h = host_of("api.github.com");
    struct request_view rq = {"POST", "/repos/other/tool/issues", "/repos/other/tool/issues", NULL};
    struct policy_decision d;
    char hint[POLICY_HINT_MAX];
    struct identity *id = identity_new();
    cr_assert_eq(identity_add_holder(id, 42), 0);
    cr_assert_eq(identity_add_exe(id, 0, "/usr/bin/gh"), 0);
    policy_decide_request(p, &h, 443, id, &rq, &d);
    cr_assert_eq(d.action, ACTION_DENY);
    cr_assert(policy_hint(p, &h, 443, id, &rq, &d, hint, sizeof(hint)));
    cr_assert_str_eq(hint, "[allow api.github.com]\nhost = api.github.com\nport = 443\n"
                           "binary = /usr/bin/gh\nmethods = POST\n"
                           "paths = /repos/other/tool/issues\n");
    hint_round_trip(policy_text, hint, "api.github.com", 443, id, &rq);
    identity_free(id);
    policy_unref(p);
}

Test(hint, paths_the_loader_would_refuse_become_stars)
{
    char out[256];
    policy_path_glob("/a b/c,d/%41/x", out, sizeof(out));
    cr_assert_str_eq(out, "/*/*/*/x");
    policy_path_glob("/plain/path/", out, sizeof(out));
    cr_assert_str_eq(out, "/plain/path/");
    policy_path_glob("", out, sizeof(out));
    cr_assert_str_eq(out, "/");
    struct policy *p = load(policy_text);
    struct host h = host_of("api.github.com");
    struct request_view rq = {"get", "/a b/c", "/a b/c", NULL};
    struct policy_decision d;
    char hint[POLICY_HINT_MAX];
    policy_decide_request(p, &h, 443, NULL, &rq, &d);
    cr_assert(policy_hint(p, &h, 443, NULL, &rq, &d, hint, sizeof(hint)));
    cr_assert(strstr(hint, "methods") == NULL, "a method rules cannot spell: any method\n%s", hint);
    cr_assert(strstr(hint, "paths = /*/c\n") != NULL, "%s", hint);
    hint_round_trip(policy_text, hint, "api.github.com", 443, NULL, &rq);
    policy_unref(p);
}

/* ---- path folding ---- */

Test(fold, first_three_segments)
{
    static const struct {
        char in[64], out[64];
    } cases[] = {
        {"/", "/"},
        {"/a", "/a"},
        {"/a/b/c", "/a/b/c"},
        {"/a/b/c/", "/a/b/c/"},
        {"/a/b/c/d", "/a/b/c/**"},
        {"/repos/acme/tool/issues/1", "/repos/acme/tool/**"},
        {"//x/y/z", "//x/y/**"},
        {"", "/"},
    };
    char out[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        policy_path_fold(cases[i].in, out, sizeof(out));
        cr_assert_str_eq(out, cases[i].out, "%s", cases[i].in);
    }
    char tiny[6];
    policy_path_fold("/abcdefgh/i", tiny, sizeof(tiny));
    cr_assert_str_eq(tiny, "/**", "too long to keep: any path below");
    cr_assert(path_glob_match("/repos/acme/tool/**", "/repos/acme/tool/issues/1"),
              "the folded path matches what it folds, as a glob");
}

/* ---- the record ---- */

static void note(struct denials *d, const char *host, unsigned port, const char *method,
                 const char *path)
{
    struct denial_note n = {.stage = method ? DENIAL_REQUEST : DENIAL_CONNECT,
                            .host = host,
                            .port = port,
                            .method = method,
                            .path = path,
                            .reason = "no rule allows this destination"};
    denials_note(d, &n);
}

struct seen {
    char host[64][64];
    unsigned long long count[64];
    char path[64][64];
    size_t n;
};

static void seen_one(void *ctx, const struct denial_seen *s)
{
    struct seen *l = ctx;
    if (l->n == 64)
        return;
    snprintf(l->host[l->n], 64, "%s", s->host);
    snprintf(l->path[l->n], 64, "%s", s->path ? s->path : "");
    l->count[l->n++] = s->count;
}

Test(record, aggregates_by_key)
{
    struct denials *d = denials_new(16);
    struct seen l = {.n = 0};
    for (int i = 0; i < 100; i++)
        note(d, i % 3 == 0 ? "a.test" : i % 3 == 1 ? "b.test" : "c.test", 443, NULL, NULL);
    note(d, "a.test", 80, NULL, NULL);
    note(d, "a.test", 443, "GET", "/repos/acme/tool/issues/1");
    note(d, "a.test", 443, "GET", "/repos/acme/tool/issues/2");
    note(d, "a.test", 443, "POST", "/repos/acme/tool/issues/2");
    denials_each(d, seen_one, &l);
    cr_assert_eq(l.n, 6);
    cr_assert_str_eq(l.host[0], "a.test", "most recent first");
    cr_assert_str_eq(l.path[1], "/repos/acme/tool/**");
    cr_assert_eq(l.count[1], 2, "two requests folded into one entry");
    unsigned long long total = 0;
    for (size_t i = 3; i < 6; i++)
        total += l.count[i];
    cr_assert_eq(total, 100);
    size_t len;
    char *json = denials_json(d, &len);
    cr_assert_not_null(json);
    cr_assert(strstr(json, "\"entries\":6") != NULL, "%s", json);
    cr_assert(strstr(json, "\"method\":\"GET\",\"path\":\"/repos/acme/tool/**\",\"stage\":"
                           "\"request\",\"count\":2") != NULL,
              "%s", json);
    free(json);
    cr_assert_eq(denials_clear(d), 6);
    json = denials_json(d, &len);
    cr_assert(strstr(json, "\"entries\":0") != NULL);
    free(json);
    denials_free(d);
}

Test(record, least_recently_seen_out_first)
{
    struct denials *d = denials_new(3);
    struct seen l = {.n = 0};
    note(d, "one.test", 443, NULL, NULL);
    note(d, "two.test", 443, NULL, NULL);
    note(d, "three.test", 443, NULL, NULL);
    note(d, "one.test", 443, NULL, NULL); /* seen again: now the newest */
    note(d, "four.test", 443, NULL, NULL);
    denials_each(d, seen_one, &l);
    cr_assert_eq(l.n, 3);
    cr_assert_str_eq(l.host[0], "four.test");
    cr_assert_str_eq(l.host[1], "one.test");
    cr_assert_str_eq(l.host[2], "three.test", "two.test was the least recently seen");
    cr_assert_eq(l.count[1], 2);
    for (int i = 0; i < 5000; i++) {
        char h[32];
        snprintf(h, sizeof(h), "h%d.test", i);
        note(d, h, 443, NULL, NULL);
    }
    l.n = 0;
    denials_each(d, seen_one, &l);
    cr_assert_eq(l.n, 3, "the bound holds");
    cr_assert_str_eq(l.host[0], "h4999.test");
    cr_assert_str_eq(l.host[2], "h4997.test");
    size_t len;
    char *json = denials_json(d, &len);
    cr_assert(strstr(json, "\"evicted\":5001") != NULL, "%s", json);
    free(json);
    denials_resize(d, 1);
    l.n = 0;
    denials_each(d, seen_one, &l);
    cr_assert_eq(l.n, 1);
    cr_assert_str_eq(l.host[0], "h4999.test", "a smaller bound keeps the newest");
    denials_resize(d, 0);
    note(d, "x.test", 443, NULL, NULL);
    l.n = 0;
    denials_each(d, seen_one, &l);
    cr_assert_eq(l.n, 0, "a record of 0 keeps nothing");
    denials_free(d);
}

static void *noter(void *arg)
{
    struct denials *d = arg;
    char h[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(h, sizeof(h), "h%d.test", i % 50);
        note(d, h, 443, NULL, NULL);
    }
    return NULL;
}

Test(record, many_workers_at_once)
{
    struct denials *d = denials_new(40);
    pthread_t t[4];
    struct seen l = {.n = 0};
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, noter, d);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    denials_each(d, seen_one, &l);
    cr_assert_eq(l.n, 40);
    denials_free(d);
}

/* ---- suggestions ---- */

struct proposals {
    char text[8192];
    int sections, notes;
};

static void collect(void *ctx, const char *section, const char *note_text)
{
    struct proposals *p = ctx;
    size_t used = strlen(p->text);
    snprintf(p->text + used, sizeof(p->text) - used, "; %s\n%s", note_text, section ? section : "");
    if (section)
        p->sections++;
    else
        p->notes++;
}

Test(suggest, three_subdomains_make_a_wildcard)
{
    struct policy *p = load("[proxy]\n[deny meta]\nhost = metadata.google.internal\n");
    struct denial_seen seen[] = {
        {.host = "a.example.org", .port = 443, .stage = "connect", .count = 3},
        {.host = "b.example.org", .port = 443, .stage = "connect", .count = 2},
        {.host = "c.example.org", .port = 80, .stage = "connect", .count = 1},
        {.host = "pypi.org", .port = 443, .stage = "connect", .count = 1, .binary = "/usr/bin/pip"},
        {.host = "x.co.uk", .port = 443, .stage = "connect", .count = 1},
        {.host = "y.co.uk", .port = 443, .stage = "connect", .count = 1},
        {.host = "z.co.uk", .port = 443, .stage = "connect", .count = 1},
        {.host = "metadata.google.internal", .port = 80, .stage = "connect", .count = 9},
        {.host = "10.0.0.1", .port = 443, .stage = "ssrf", .count = 1},
    };
    struct proposals out = {.text = ""};
    policy_suggest(p, seen, sizeof(seen) / sizeof(seen[0]), collect, &out);
    cr_assert(strstr(out.text, "[allow example.org]\nhost = *.example.org\nport = 80, 443\n") !=
                  NULL,
              "%s", out.text);
    cr_assert(strstr(out.text, "[allow pypi.org]\nhost = pypi.org\nport = 443\nbinary = "
                               "/usr/bin/pip\n") != NULL,
              "%s", out.text);
    cr_assert(strstr(out.text, "*.co.uk") == NULL, "never a wildcard over a public suffix");
    cr_assert(strstr(out.text, "host = x.co.uk\n") != NULL, "%s", out.text);
    cr_assert(strstr(out.text, "denied by deny rule meta") != NULL, "%s", out.text);
    cr_assert(strstr(out.text, "10.0.0.1:443 (1): resolves to an address") != NULL, "%s", out.text);
    cr_assert_eq(out.sections, 5);
    cr_assert_eq(out.notes, 2);
    cr_assert(strncmp(out.text, "; 6 denials: a.example.org", 26) == 0, "most denied first: %s",
              out.text);
    policy_unref(p);
}

Test(suggest, two_subdomains_stay_exact_and_requests_keep_their_keys)
{
    struct policy *p = load("[proxy]\n[allow gh]\nhost = api.github.com\naccess = read-only\n");
    struct denial_seen seen[] = {
        {.host = "a.example.org", .port = 443, .stage = "connect", .count = 1},
        {.host = "b.example.org", .port = 443, .stage = "connect", .count = 1},
        {.host = "api.github.com",
         .port = 443,
         .stage = "request",
         .method = "POST",
         .path = "/repos/acme/tool/**",
         .count = 4},
        {.host = "api.github.com",
         .port = 443,
         .stage = "request",
         .method = "GET",
         .path = "/user",
         .count = 1},
    };
    struct proposals out = {.text = ""};
    policy_suggest(p, seen, sizeof(seen) / sizeof(seen[0]), collect, &out);
    cr_assert(strstr(out.text, "host = a.example.org\n") != NULL, "%s", out.text);
    cr_assert(strstr(out.text, "*.example.org") == NULL, "%s", out.text);
    cr_assert(strstr(out.text, "[allow api.github.com]\nhost = api.github.com\nport = 443\n"
                               "methods = POST\npaths = /repos/acme/tool/**\n") != NULL,
              "GET /user is allowed now: only POST is proposed\n%s", out.text);
    cr_assert(strstr(out.text, "now allowed (rule gh)") != NULL, "%s", out.text);
    policy_unref(p);
}

Test(suggest, registrable_domains)
{
    cr_assert_str_eq(policy_registrable("a.b.example.org"), "example.org");
    cr_assert_str_eq(policy_registrable("example.org"), "example.org");
    cr_assert_str_eq(policy_registrable("www.bbc.co.uk"), "bbc.co.uk");
    cr_assert_null(policy_registrable("co.uk"));
    cr_assert_null(policy_registrable("localhost"));
}

/* ---- access requests ---- */

Test(access, checked_before_kept)
{
    struct access_request r;
    char err[200];
    static const struct {
        char body[160], why[64];
    } bad[] = {
        {"not json", "not a valid JSON object"},
        {"{\"port\":443,\"reason\":\"x\"}", "host: missing"},
        {"{\"host\":\"a b\",\"port\":443,\"reason\":\"x\"}", "host:"},
        {"{\"host\":\"pypi.org\",\"reason\":\"x\"}", "port: missing"},
        {"{\"host\":\"pypi.org\",\"port\":70000,\"reason\":\"x\"}", "port: not a number"},
        {"{\"host\":\"pypi.org\",\"port\":\"443\",\"reason\":\"x\"}", "port: not a number"},
        {"{\"host\":\"pypi.org\",\"port\":443}", "reason: missing"},
        {"{\"host\":\"pypi.org\",\"port\":443,\"reason\":\"  \"}", "reason: missing"},
        {"{\"host\":\"pypi.org\",\"port\":443,\"reason\":1}", "reason: not a string"},
        {"{\"host\":\"pypi.org\",\"port\":443,\"reason\":\"x\",\"method\":\"get\"}", "method:"},
        {"{\"host\":\"pypi.org\",\"port\":443,\"reason\":\"x\",\"path\":\"simple\"}", "path:"},
        {"{\"host\":\"a\",\"host\":\"b\",\"port\":443,\"reason\":\"x\"}", "appears twice"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(access_parse(bad[i].body, strlen(bad[i].body), &r, err, sizeof(err)), -1, "%s",
                     bad[i].body);
        cr_assert(strstr(err, bad[i].why) != NULL, "%s: %s", bad[i].body, err);
    }
    const char *good = "{\"host\":\"PyPI.org.\",\"port\":443,\"method\":\"GET\",\"path\":"
                       "\"/simple/\",\"reason\":\"pip install numpy\",\"extra\":[1]}";
    cr_assert_eq(access_parse(good, strlen(good), &r, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(r.host, "pypi.org");
    cr_assert_eq(r.port, 443);
    cr_assert_str_eq(r.method, "GET");
    cr_assert_str_eq(r.path, "/simple/");
    struct access_log *a = access_log_new();
    for (int i = 0; i < 300; i++)
        cr_assert_eq(access_log_add(a, &r, "127.0.0.1:1", i, "/usr/bin/pip"), (unsigned)i + 1);
    size_t len;
    char *json = access_log_json(a, &len);
    cr_assert(strncmp(json, "{\"requests\":[\n{\"id\":300,", 24) == 0, "%.80s", json);
    cr_assert(strstr(json, "\"id\":45,") != NULL && strstr(json, "\"id\":44,") == NULL,
              "the last 256 are kept");
    free(json);
    access_log_free(a);
}

Test(json, array_elements)
{
    const char *js = "{\"denials\":[ {\"a\":1} , [2,3], \"x\" ],\"n\":1}";
    const char *keys[1] = {"denials"};
    struct json_span arr, el;
    const char *why;
    size_t pos = 0;
    int n = 0;
    cr_assert_eq(json_object_scan(js, strlen(js), keys, 1, &arr, &why), JSON_OK);
    while (json_array_next(js, &arr, &pos, &el))
        n++;
    cr_assert_eq(n, 3);
    const char *empty = "{\"denials\":[ ]}";
    pos = 0;
    cr_assert_eq(json_object_scan(empty, strlen(empty), keys, 1, &arr, &why), JSON_OK);
    cr_assert_not(json_array_next(empty, &arr, &pos, &el));
}
