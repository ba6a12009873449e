/*
 * test_config.c - the INI loader: defaults, every value type, and every
 * error it reports, with the line it reports it at.
 */
#include "../../policy/policy_int.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct problems {
    int n;
    int lines[32];
    char msgs[32][256];
};

static void collect(void *ctx, const char *file, int line, const char *msg)
{
    struct problems *p = ctx;
    (void)file;
    if (p->n < 32) {
        p->lines[p->n] = line;
        snprintf(p->msgs[p->n], sizeof(p->msgs[0]), "%s", msg);
    }
    p->n++;
}

/* Load text that must fail with exactly one problem, on line, saying what. */
static void expect_error(const char *text, int line, const char *what)
{
    struct problems p = {0};
    struct policy *pol = policy_load_string(text, collect, &p);
    cr_assert_null(pol, "loaded although bad: %s", text);
    cr_assert_eq(p.n, 1, "%d problems for %s (first: %s)", p.n, text, p.msgs[0]);
    cr_assert_eq(p.lines[0], line, "line %d, not %d, for %s: %s", p.lines[0], line, text,
                 p.msgs[0]);
    cr_assert(strstr(p.msgs[0], what) != NULL, "'%s' does not say '%s'", p.msgs[0], what);
}

static struct policy *load_ok(const char *text)
{
    struct problems p = {0};
    struct policy *pol = policy_load_string(text, collect, &p);
    cr_assert_not_null(pol, "failed: %s (line %d)", p.msgs[0], p.lines[0]);
    return pol;
}

Test(config, defaults)
{
    struct policy *p = load_ok("[proxy]\n");
    const struct proxy_settings *s = policy_settings(p);
    cr_assert_str_eq(s->listen, "127.0.0.1:3128");
    cr_assert_eq(s->workers, 16);
    cr_assert_eq(s->max_workers, 16384);
    cr_assert_eq(s->queue, 1024);
    cr_assert_eq(s->header_timeout_ms, 10000);
    cr_assert_eq(s->dns_timeout_ms, 5000);
    cr_assert_eq(s->idle_timeout_ms, 600000);
    cr_assert_eq(s->log_format, LOGF_JSON);
    cr_assert_not(s->unsafe_allow_loopback);
    policy_unref(p);
}

Test(config, every_proxy_key)
{
    struct policy *p = load_ok("[proxy]\nlisten = [::1]:0\nworkers = 2\nmax_workers = 3\n"
                               "queue = 7\nheader_timeout = 250ms\nconnect_timeout = 2s\n"
                               "dns_timeout = 1m\nidle_timeout = 1h\nshutdown_timeout = 0s\n"
                               "log_format = text\nlog_level = debug\n"
                               "unsafe_allow_loopback = yes\n");
    const struct proxy_settings *s = policy_settings(p);
    cr_assert_eq(s->listen_addr.ss_family, AF_INET6);
    cr_assert_eq(s->workers, 2);
    cr_assert_eq(s->max_workers, 3);
    cr_assert_eq(s->queue, 7);
    cr_assert_eq(s->header_timeout_ms, 250);
    cr_assert_eq(s->connect_timeout_ms, 2000);
    cr_assert_eq(s->dns_timeout_ms, 60000);
    cr_assert_eq(s->idle_timeout_ms, 3600000);
    cr_assert_eq(s->shutdown_timeout_ms, 0);
    cr_assert_eq(s->log_format, LOGF_TEXT);
    cr_assert_eq(s->log_level, LOGL_DEBUG);
    cr_assert(s->unsafe_allow_loopback);
    policy_unref(p);
}

Test(config, errors_have_lines)
{
    expect_error("[proxy]\nworkers = 0\n", 2, "workers");
    expect_error("[proxy]\nworkers = many\n", 2, "whole number");
    expect_error("[proxy]\n\nheader_timeout = 10\n", 3, "duration");
    expect_error("[proxy]\nheader_timeout = 0s\n", 2, "above zero");
    expect_error("[proxy]\nidle_timeout = 5 s\n", 2, "duration");
    expect_error("[proxy]\n\nidle_timeout = 25h\n", 3, "up to 24h");
    expect_error("[proxy]\nshutdown_timeout = 3000000s\n", 2, "up to 24h");
    expect_error("[inference]\nhost = a\nstream_idle_timeout = 1000h\n", 3, "up to 24h");
    expect_error("[route r]\nendpoint = mock://x\ntimeout = 48h\n", 3, "up to 24h");
    expect_error("[proxy]\nlog_format = xml\n", 2, "json or text");
    expect_error("[proxy]\nlog_level = loud\n", 2, "debug, info");
    expect_error("[proxy]\nunsafe_allow_loopback = maybe\n", 2, "yes or no");
    expect_error("[proxy]\nlisten = example.com:80\n", 2, "listen");
    expect_error("[proxy]\nlisten = 127.0.0.1\n", 2, "listen");
    expect_error("[proxy]\nlisten = ::1:3128\n", 2, "listen");
    expect_error("[proxy]\nbogus = 1\n", 2, "unknown key 'bogus'");
    expect_error("[proxy]\nqueue = 1\nqueue = 2\n", 3, "set twice");
    expect_error("[proxy]\n[proxy]\n", 2, "duplicate [proxy]");
    expect_error("[proxy]\nworkers = 8\nmax_workers = 4\n", 3, "below workers");
    expect_error("workers = 8\n", 1, "outside any section");
    expect_error("[tunnel x]\nhost = a.com\n", 1, "unknown section");
    expect_error("[allow]\nhost = a.com\n", 1, "exactly one name");
    expect_error("[allow a b]\nhost = a.com\n", 1, "exactly one name");
    expect_error("[allow a/b]\nhost = a.com\n", 1, "invalid rule name");
    expect_error("[allow a]\nhost = a.com\n[deny a]\nhost = b.com\n", 3, "duplicate rule name");
    expect_error("[allow a]\nport = 443\n", 1, "has no host");
    expect_error("[allow a]\nhost = a.com\nhost = b.com\n", 3, "set twice");
    expect_error("[allow a]\nhost = a.com\nports = 443\n", 3, "unknown key 'ports'");
    expect_error("[allow a]\nhost = a.com\nport = 0\n", 3, "invalid port");
    expect_error("[allow a]\nhost = a.com\nport = 70000\n", 3, "invalid port");
    expect_error("[allow a]\nhost = a.com\nport = 90-80\n", 3, "invalid port");
    expect_error("[allow a]\nhost = a.com\nport = 80,,443\n", 3, "empty item");
    expect_error("[allow a]\nhost = a.com\nallowed_ips = 10.0.0.1/24\n", 3, "bits set");
    expect_error("[allow a]\nhost = a.com\nallowed_ips = 10.0.0.0/33\n", 3, "prefix");
    expect_error("[allow a]\nhost = a.com\nallowed_ips = ten\n", 3, "invalid address");
    expect_error("[deny a]\nhost = a.com\nallowed_ips = 10.0.0.0/8\n", 3, "deny rule");
    expect_error("[allow a]\nhost = *\n", 2, "bare wildcard");
    expect_error("[allow a]\nhost = \n", 2, "empty value");
    expect_error("[allow a\nhost = a.com\n", 1, "without ']'");
    expect_error("[proxy]\nthis is not ini\n", 2, "syntax error");
}

Test(config, every_problem_in_one_run)
{
    struct problems p = {0};
    cr_assert_null(policy_load_string("[proxy]\nworkers = 0\nqueue = x\n[allow a]\nhost = *.com\n",
                                      collect, &p));
    cr_assert_eq(p.n, 3);
    cr_assert_eq(p.lines[0], 2);
    cr_assert_eq(p.lines[1], 3);
    cr_assert_eq(p.lines[2], 5);
}

Test(config, comments_and_case)
{
    struct policy *p = load_ok("; a comment\n# another\n[allow a] ; trailing\n"
                               "host = A.Example.COM. ; the dot and case go\n");
    struct host h;
    const char *why;
    struct policy_decision d;
    cr_assert_eq(host_parse("a.example.com", 13, &h, &why), 0);
    policy_decide(p, &h, 443, &d);
    cr_assert_eq(d.action, ACTION_ALLOW);
    policy_unref(p);
}

Test(config, indented_line_is_not_a_continuation)
{
    /* multi-line values are off: an indented host cannot extend a list silently */
    struct problems p = {0};
    cr_assert_null(policy_load_string("[allow a]\nhost = a.com\n  b.com\n", collect, &p));
    cr_assert_eq(p.lines[0], 3);
}

Test(config, thousands_of_hosts_on_one_line)
{
    size_t n = 5000, cap = n * 24 + 64;
    char *text = malloc(cap);
    size_t off = (size_t)snprintf(text, cap, "[allow many]\nhost = ");
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(text + off, cap - off, "%shost%zu.example.org", i ? ", " : "", i);
    snprintf(text + off, cap - off, "\nport = 443\n[allow after]\nhost = z.org\n");
    struct policy *p = load_ok(text);
    free(text);
    struct host h;
    const char *why;
    struct policy_decision d;
    cr_assert_eq(host_parse("host4999.example.org", 20, &h, &why), 0);
    policy_decide(p, &h, 443, &d);
    cr_assert_str_eq(d.rule, "many");
    cr_assert_eq(host_parse("z.org", 5, &h, &why), 0);
    policy_decide(p, &h, 443, &d);
    cr_assert_str_eq(d.rule, "after");
    policy_unref(p);
}

Test(config, error_line_after_a_long_line)
{
    size_t cap = 20000;
    char *text = malloc(cap);
    size_t off = (size_t)snprintf(text, cap, "[allow a]\nhost = ");
    for (int i = 0; i < 500; i++)
        off += (size_t)snprintf(text + off, cap - off, "h%d.example.org,", i);
    snprintf(text + off, cap - off, "x.org\n[proxy]\nworkers = -1\n");
    expect_error(text, 4, "workers");
    free(text);
}

Test(config, nul_byte_is_refused)
{
    struct problems p = {0};
    char text[] = "[proxy]\nworkers = 2\n";
    /* policy_load_string sees a C string; the file loader checks the whole file */
    char path[] = "/tmp/egressd-test-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fwrite(text, 1, sizeof(text), f); /* includes the terminating NUL */
    fclose(f);
    cr_assert_null(policy_load_file(path, collect, &p));
    unlink(path);
    cr_assert(strstr(p.msgs[0], "NUL") != NULL);
}

Test(config, missing_file)
{
    struct problems p = {0};
    cr_assert_null(policy_load_file("/nonexistent/egressd.ini", collect, &p));
    cr_assert_eq(p.n, 1);
    cr_assert(strstr(p.msgs[0], "cannot open") != NULL);
}

Test(config, values)
{
    unsigned ms;
    uint64_t sz;
    cr_assert_eq(parse_duration_ms("1500ms", &ms), 0);
    cr_assert_eq(ms, 1500);
    cr_assert_eq(parse_duration_ms("2h", &ms), 0);
    cr_assert_eq(ms, 7200000);
    cr_assert_neq(parse_duration_ms("10", &ms), 0);
    cr_assert_neq(parse_duration_ms("-1s", &ms), 0);
    cr_assert_neq(parse_duration_ms("5000000h", &ms), 0);
    cr_assert_eq(parse_duration_ms("24h", &ms), 0); /* the longest: still an int of ms */
    cr_assert_eq(ms, 86400000);
    cr_assert_eq(parse_duration_ms("86400000ms", &ms), 0);
    cr_assert_neq(parse_duration_ms("25h", &ms), 0);
    cr_assert_neq(parse_duration_ms("1441m", &ms), 0);
    cr_assert_neq(parse_duration_ms("86401s", &ms), 0);
    cr_assert_neq(parse_duration_ms("86400001ms", &ms), 0);
    cr_assert_neq(parse_duration_ms("2147484s", &ms), 0); /* past INT_MAX ms once cast */
    cr_assert_eq(parse_size("10M", &sz), 0);
    cr_assert_eq(sz, 10u << 20);
    cr_assert_eq(parse_size("2k", &sz), 0);
    cr_assert_eq(sz, 2048);
    cr_assert_eq(parse_size("77", &sz), 0);
    cr_assert_eq(sz, 77);
    cr_assert_neq(parse_size("1T", &sz), 0);
    cr_assert_neq(parse_size("1MB", &sz), 0);
}

/* ---- [tls], [inference], [route] ---- */

Test(config, inference_sections)
{
    setenv("EGRESSD_TEST_KEY", "sk-test-123", 1);
    struct policy *p = load_ok("[tls]\nca_cert = /x/ca.pem\ncert_cache = 9\n"
                               "[inference]\nhost = inference.local, api.openai.com\n"
                               "max_request_body = 1M\nstream_idle_timeout = 5s\n"
                               "[route local]\nendpoint = http://127.0.0.1:8000/v1/\n"
                               "provider = openai\nmodel = llama\nmodels = gpt-4*, llama*\n"
                               "api_key_env = EGRESSD_TEST_KEY\ntimeout = 30s\n"
                               "[route claude]\nendpoint = https://api.anthropic.com\n"
                               "provider = anthropic\n"
                               "[route canned]\nendpoint = mock://x\n"
                               "protocols = openai_embeddings, model_discovery\n");
    cr_assert(policy_intercepts(p));
    cr_assert_str_eq(policy_tls(p)->ca_cert, "/x/ca.pem");
    cr_assert_str_eq(policy_tls(p)->ca_key, "/var/lib/egressd/ca.key");
    cr_assert_eq(policy_tls(p)->cert_cache, 9);
    cr_assert_eq(policy_inference(p)->max_request_body, 1u << 20);
    cr_assert_eq(policy_inference(p)->max_response_body, 32u << 20);
    cr_assert_eq(policy_inference(p)->stream_idle_timeout_ms, 5000);
    cr_assert_eq(policy_route_count(p), 3);
    const struct route *r = policy_route(p, 0);
    cr_assert_eq(r->scheme, ENDPOINT_HTTP);
    cr_assert_str_eq(r->host, "127.0.0.1");
    cr_assert_eq(r->port, 8000);
    cr_assert_str_eq(r->base_path, "/v1");
    cr_assert_str_eq(r->model, "llama");
    cr_assert_eq(r->n_models, 2);
    cr_assert_str_eq(r->api_key, "sk-test-123");
    cr_assert_eq(r->timeout_ms, 30000);
    cr_assert(r->protocols & (1u << PROTO_OPENAI_CHAT));
    cr_assert_not(r->protocols & (1u << PROTO_ANTHROPIC_MESSAGES));
    r = policy_route(p, 1);
    cr_assert_eq(r->scheme, ENDPOINT_HTTPS);
    cr_assert_eq(r->port, 443);
    cr_assert_str_eq(r->base_path, "");
    cr_assert_eq(r->protocols, (1u << PROTO_ANTHROPIC_MESSAGES) | (1u << PROTO_MODEL_DISCOVERY));
    cr_assert_null(r->api_key);
    r = policy_route(p, 2);
    cr_assert_eq(r->scheme, ENDPOINT_MOCK);
    cr_assert_eq(r->protocols, (1u << PROTO_OPENAI_EMBEDDINGS) | (1u << PROTO_MODEL_DISCOVERY));

    struct host h;
    const char *why;
    struct policy_decision d;
    host_parse("inference.local", 15, &h, &why);
    policy_decide(p, &h, 443, &d);
    cr_assert_eq(d.action, ACTION_INTERCEPT);
    policy_decide(p, &h, 80, &d);
    cr_assert_eq(d.action, ACTION_INTERCEPT, "[inference] covers 443 and 80 by default");
    policy_decide(p, &h, 8443, &d);
    cr_assert_eq(d.action, ACTION_DENY);
    policy_unref(p);
}

Test(config, deny_beats_inference)
{
    struct policy *p =
        load_ok("[inference]\nhost = api.openai.com\n[deny no]\nhost = api.openai.com\n");
    struct host h;
    const char *why;
    struct policy_decision d;
    host_parse("api.openai.com", 14, &h, &why);
    policy_decide(p, &h, 443, &d);
    cr_assert_eq(d.action, ACTION_DENY);
    cr_assert_str_eq(d.rule, "no");
    policy_unref(p);
}

Test(config, api_key_file)
{
    char path[] = "/tmp/egressd-key-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(write(fd, "sk-from-file\n", 13) == 13);
    close(fd);
    char text[256];
    snprintf(text, sizeof(text), "[route r]\nendpoint = http://h:1\napi_key_file = %s\n", path);
    struct policy *p = load_ok(text);
    cr_assert_str_eq(policy_route(p, 0)->api_key, "sk-from-file");
    policy_unref(p);
    unlink(path);
    expect_error(text, 3, "cannot read");
}

Test(config, inference_errors)
{
    unsetenv("EGRESSD_NO_SUCH_KEY");
    expect_error("[tls]\nca_cert = relative.pem\n", 2, "absolute path");
    expect_error("[tls]\ncert_cache = 0\n", 2, "cert_cache");
    expect_error("[tls]\nca = /x\n", 2, "unknown key 'ca'");
    expect_error("[tls]\n[tls]\n", 2, "duplicate [tls]");
    expect_error("[inference]\nhost = a.com\nmax_request_body = 10X\n", 3, "size");
    expect_error("[inference]\nhost = a.com\nallowed_ips = 10.0.0.0/8\n", 3, "unknown key");
    expect_error("[inference]\nmax_request_body = 1M\n", 1, "has no host");
    expect_error("[inference]\nhost = a.com\n[inference]\nhost = b.com\n", 3, "duplicate");
    expect_error("[route r]\nendpoint = ftp://h/\n", 2, "expected http://");
    expect_error("[route r]\nendpoint = http://user:pw@h/\n", 2, "credentials");
    expect_error("[route r]\nendpoint = http://h/v1?x=1\n", 2, "query");
    expect_error("[route r]\nendpoint = http://h:99999/\n", 2, "endpoint");
    expect_error("[route r]\nprovider = openai\n", 1, "no endpoint");
    expect_error("[route r]\nendpoint = http://h\nprovider = google\n", 3, "provider");
    expect_error("[route r]\nendpoint = http://h\nprotocols = openai_chat, x\n", 3,
                 "unknown protocol");
    expect_error("[route r]\nendpoint = http://h\napi_key_env = EGRESSD_NO_SUCH_KEY\n", 3,
                 "not set");
    expect_error("[route r]\nendpoint = http://h\nmodel = a\"b\n", 3, "quotes");
    expect_error("[route r]\nendpoint = http://h\ntimeout = 0s\n", 3, "timeout");
    expect_error("[route r]\nendpoint = http://h\nbogus = 1\n", 3, "unknown key 'bogus'");
    expect_error("[route r]\nendpoint = http://h\n[route r]\nendpoint = http://h\n", 3,
                 "duplicate route");
}

Test(config, empty_list_items_are_errors_with_lines)
{
    /* a trailing comma in `models =` once freed the list and used it again */
    expect_error("[route r]\nendpoint = http://h\nmodels = gpt-4*,\n", 3, "empty item");
    expect_error("[route r]\nendpoint = http://h\nmodels = a,,b\n", 3, "empty item");
    expect_error("[route r]\nendpoint = http://h\nprotocols = openai_embeddings,\n", 3,
                 "empty item");
    expect_error("[allow a]\nhost = a.com,\n", 2, "empty item");
    expect_error("[allow a]\nhost = a.com\nport = 443,\n", 3, "empty item");
    expect_error("[allow a]\nhost = a.com\nbinary = /usr/bin/git, \n", 3, "empty item");
    expect_error("[allow a]\nhost = a.com\nallowed_ips = ,10.0.0.0/8\n", 3, "empty item");
    expect_error("[inference]\nhost = , a.com\n", 2, "empty item");
}

Test(config, sizes_are_bounded)
{
    expect_error("[inference]\nhost = a.com\nmax_response_body = 18446744073709551615\n", 3,
                 "max_response_body");
    expect_error("[inference]\nhost = a.com\nmax_request_body = 2G\n", 3, "1G");
    struct policy *p = load_ok("[inference]\nhost = a.com\nmax_response_body = 1G\n");
    cr_assert_eq(policy_inference(p)->max_response_body, 1u << 30);
    policy_unref(p);
}

Test(config, an_empty_file_is_refused)
{
    /* a reload catching a file half written must keep the running policy */
    expect_error("", 0, "no sections");
    expect_error("; only a comment\n\n", 0, "no sections");
}

/* ---- the exact report: every message, its line, their order ---- */

/* Load text that must fail, and compare every problem, one "line: message"
 * per line, with want. */
static void expect_report(const char *text, const char *want)
{
    struct problems p = {0};
    struct policy *pol = policy_load_string(text, collect, &p);
    char got[10000] = "";
    size_t off = 0;
    for (int i = 0; i < p.n && i < 32 && off < sizeof(got); i++)
        off += (size_t)snprintf(got + off, sizeof(got) - off, "%d: %s\n", p.lines[i], p.msgs[i]);
    cr_assert_null(pol, "loaded although bad: %s", text);
    cr_assert_str_eq(got, want, "for %s\ngot:\n%s", text, got);
}

Test(config, unknown_keys_name_the_section_and_its_keys)
{
    expect_report("[proxy]\nbogus = 1\n", "2: unknown key 'bogus' in [proxy]\n");
    expect_report("[tls]\nca = /x\n",
                  "2: unknown key 'ca' in [tls] (expected ca_cert, ca_key, bundle, upstream_ca, "
                  "cert_cache)\n");
    expect_report("[inference]\nhost = a.com\nallowed_ips = 10.0.0.0/8\n",
                  "3: unknown key 'allowed_ips' in [inference] (expected host, port, binary, "
                  "max_request_body, max_response_body, stream_idle_timeout, keepalive_timeout, "
                  "timeout)\n");
    expect_report("[allow a]\nhost = a.com\nports = 443\n",
                  "3: unknown key 'ports' in [allow a] (expected host, port, allowed_ips, binary, "
                  "methods, access, paths, audit, "
                  "message)\n");
    expect_report("[deny d]\nhost = a.com\nx = 1\n",
                  "3: unknown key 'x' in [deny d] (expected host, port, allowed_ips, binary, "
                  "methods, access, paths, audit, "
                  "message)\n");
    expect_report("[route r]\nendpoint = mock://x\nbogus = 1\n",
                  "3: unknown key 'bogus' in [route r] (expected endpoint, provider, protocols, "
                  "model, models, api_key_env, api_key_file, api_key_secret, timeout, "
                  "stream_idle_timeout, model_map, fallback, retries, retry_on)\n");
}

Test(config, repeated_keys_say_where_first)
{
    expect_report("[proxy]\nqueue = 1\nqueue = 2\n", "3: queue is set twice (first at line 2)\n");
    expect_report("[tls]\nca_key = /k\nca_key = /k\n",
                  "3: ca_key is set twice (first at line 2)\n");
    expect_report("[inference]\nhost = a\nkeepalive_timeout = 1s\nkeepalive_timeout = 2s\n",
                  "4: keepalive_timeout is set twice (first at line 3)\n");
    expect_report("[inference]\nhost = a\nhost = b\n",
                  "3: host is set twice in rule 'inference' (first at line 2); use one list\n");
    expect_report("[allow a]\nhost = a\nport = 1\nport = 2\n",
                  "4: port is set twice in rule 'a' (first at line 3); use one list\n");
    expect_report("[route r]\nendpoint = mock://x\nendpoint = mock://y\n",
                  "3: endpoint is set twice in route 'r' (first at line 2)\n");
}

Test(config, empty_values)
{
    /* the key is judged first: an unknown key is named, an empty value
     * counts as said (no "no host" or "no endpoint" after it, "set twice"
     * for a repeat) */
    expect_report("[allow a]\nhost = a\nbogus =\n",
                  "3: unknown key 'bogus' in [allow a] (expected host, port, allowed_ips, binary, "
                  "methods, access, paths, audit, "
                  "message)\n");
    expect_report("[allow a]\nhost =\nhost = b\n",
                  "2: 'host' has an empty value\n"
                  "3: host is set twice in rule 'a' (first at line 2); use one list\n");
    expect_report("[inference]\nhost =\n", "2: 'host' has an empty value\n");
    expect_report("[deny a]\nhost = a\nallowed_ips =\n", "3: 'allowed_ips' has an empty value\n");
    /* settings and routes once refused the empty value first: an unknown
     * key was "empty", a repeat went unseen, and "endpoint =" was followed
     * by "route 'r' has no endpoint" */
    expect_report("[proxy]\nbogus =\n", "2: unknown key 'bogus' in [proxy]\n");
    expect_report("[proxy]\nqueue =\nqueue = 2\n",
                  "2: 'queue' has an empty value\n3: queue is set twice (first at line 2)\n");
    expect_report("[proxy]\nqueue = 1\nqueue =\n", "3: queue is set twice (first at line 2)\n");
    expect_report("[inference]\nhost = a\nbogus =\n",
                  "3: unknown key 'bogus' in [inference] (expected host, port, binary, "
                  "max_request_body, max_response_body, stream_idle_timeout, keepalive_timeout, "
                  "timeout)\n");
    expect_report("[route r]\nendpoint = mock://x\nmodels =\nmodels = a\n",
                  "3: 'models' has an empty value\n"
                  "4: models is set twice in route 'r' (first at line 3)\n");
    expect_report("[route r]\nendpoint =\n", "2: 'endpoint' has an empty value\n");
}

Test(config, value_messages)
{
    expect_report(
        "[proxy]\nlisten = example.com:80\nadmin = nope\nheader_timeout = 10\n"
        "shutdown_timeout = x\nlog_format = xml\nlog_level = loud\n"
        "unsafe_allow_loopback = maybe\nsandbox_pid = 0\nqueue = 99999999\n",
        "2: listen: 'example.com:80' is not an address (127.0.0.1:3128, [::1]:3128)\n"
        "3: admin: 'nope' is not an address (127.0.0.1:9128, or "
        "unix:/run/egressd/admin.sock)\n"
        "4: header_timeout: '10' is not a duration (like 500ms, 10s, 5m, 1h) above zero up "
        "to 24h\n"
        "5: shutdown_timeout: 'x' is not a duration (like 500ms, 10s, 5m, 1h) up to 24h\n"
        "6: log_format: 'xml' is not json or text\n"
        "7: log_level: 'loud' is not debug, info, warn or error\n"
        "8: unsafe_allow_loopback: 'maybe' is not yes or no\n"
        "9: sandbox_pid: '0' is not a whole number from 1 to 4194304\n"
        "10: queue: '99999999' is not a whole number from 1 to 1048576\n");
    expect_report("[tls]\nca_cert = relative.pem\n[inference]\nhost = a\nmax_request_body = 2G\n",
                  "2: ca_cert: 'relative.pem' is not an absolute path (under 256 bytes)\n"
                  "5: max_request_body: '2G' is not a size from 1 byte to 1G (like 512K, 10M)\n");
    expect_report("[route r]\nendpoint = http://h\nprovider = google\nmodel = a\"b\ntimeout = 0s\n"
                  "models = a,,b\n",
                  "3: provider: 'google' is not openai, anthropic or nvidia\n"
                  "4: model: 'a\"b' is too long or has quotes or backslashes\n"
                  "5: timeout: '0s' is not a duration above zero up to 24h\n"
                  "6: models: an empty item in the list (a stray comma?)\n");
}

Test(config, section_headers)
{
    expect_report("[tunnel x]\n[proxy x]\n[]\n",
                  "1: unknown section [tunnel x] (expected proxy, tls, inference, deny NAME, "
                  "allow NAME, route NAME, budget NAME or secret NAME)\n"
                  "2: unknown section [proxy x] (expected proxy, tls, inference, deny NAME, "
                  "allow NAME, route NAME, budget NAME or secret NAME)\n"
                  "3: unknown section [] (expected proxy, tls, inference, deny NAME, "
                  "allow NAME, route NAME, budget NAME or secret NAME)\n");
    expect_report("[allow]\n[route a b]\n[deny a/b]\n[route a/b]\n",
                  "1: [allow] needs exactly one name: [allow NAME]\n"
                  "2: [route] needs exactly one name: [route NAME]\n"
                  "3: invalid rule name 'a/b' (letters, digits, '-', '_', '.'; < 64)\n"
                  "4: invalid route name 'a/b' (letters, digits, '-', '_', '.'; < 64)\n");
    expect_report("[allow a]\nhost = a\n[deny a]\n[route a]\nendpoint = mock://x\n[route a]\n"
                  "[inference]\nhost = x\n[inference]\n[tls]\n[tls]\n",
                  "3: duplicate rule name 'a'\n6: duplicate route name 'a'\n"
                  "9: duplicate [inference] section (first at line 7)\n"
                  "11: duplicate [tls] section (first at line 10)\n");
    /* a rule and a route may share a name, and [inference] is no rule name */
    policy_unref(load_ok("[allow a]\nhost = a\n[route a]\nendpoint = mock://x\n"
                         "[inference]\nhost = b\n[allow inference]\nhost = c\n"));
}

Test(config, whole_file_checks_come_last_in_their_order)
{
    /* settings first, then routes, then rules, each in file order */
    expect_report("[allow a]\nport = 1\n[route r]\nprovider = openai\n[proxy]\nmax_workers = 1\n"
                  "workers = 2\n[deny b]\nport = 2\nhost = \n[inference]\nport = 3\n[route s]\n"
                  "timeout = 1s\n[allow c]\nhost = c,\n",
                  "10: 'host' has an empty value\n"
                  "16: host: an empty item in the list (a stray comma?)\n"
                  "6: max_workers (1) is below workers (2)\n"
                  "3: route 'r' has no endpoint\n"
                  "13: route 's' has no endpoint\n"
                  "1: rule 'a' has no host\n"
                  "11: rule 'inference' has no host\n");
}

Test(config, api_key_messages)
{
    char long_key[5000];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    setenv("EGRESSD_TEST_LONG_KEY", long_key, 1);
    setenv("EGRESSD_TEST_TWO_LINES", "a\nb", 1);
    setenv("EGRESSD_TEST_KEY", "sk-test-123", 1);
    expect_report("[route r]\nendpoint = mock://x\napi_key_env = EGRESSD_TEST_KEY\n"
                  "api_key_file = /etc/hostname\n"
                  "[route s]\nendpoint = mock://x\napi_key_env = EGRESSD_TEST_LONG_KEY\n"
                  "[route t]\nendpoint = mock://x\napi_key_env = EGRESSD_TEST_TWO_LINES\n",
                  "4: give one of api_key_env, api_key_file and api_key_secret\n"
                  "7: api_key_env: environment variable EGRESSD_TEST_LONG_KEY is longer than 4095 "
                  "bytes\n"
                  "10: api_key_env: environment variable EGRESSD_TEST_TWO_LINES is not one line of "
                  "printable characters\n");
}

Test(config, a_refused_inference_section_keeps_its_keys)
{
    /* [inference] refused for want of room once set the previous rule's
     * keys from its own lines ("host is set twice in rule 'r4095'") */
    size_t cap = 4096 * 40 + 64;
    char *text = malloc(cap);
    size_t off = 0;
    for (int i = 0; i < 4096; i++)
        off += (size_t)snprintf(text + off, cap - off, "[allow r%d]\nhost = h%d.com\n", i, i);
    snprintf(text + off, cap - off, "[inference]\nhost = x.com\nport = 443\n");
    expect_report(text, "8193: too many rules (at most 4096)\n");
    free(text);
}

Test(config, keys_without_a_usable_section)
{
    /* the empty value was judged first: a second complaint under a refused
     * header, and the wrong one outside any section */
    expect_report("[tunnel x]\nhost =\nport = 1\n",
                  "1: unknown section [tunnel x] (expected proxy, tls, inference, deny NAME, "
                  "allow NAME, route NAME, budget NAME or secret NAME)\n");
    expect_report("[allow a/b]\nhost =\n",
                  "1: invalid rule name 'a/b' (letters, digits, '-', '_', '.'; < 64)\n");
    expect_report("workers =\n[proxy]\n", "1: 'workers' is outside any section\n");
}

Test(config, every_key_table_is_whole)
{
    /* a key enum value without its designated initializer leaves a hole */
    for (size_t i = 0; i < n_section_kinds; i++) {
        const struct section_kind *K = section_kinds[i];
        cr_assert(K->n_keys <= SECTION_KEYS_MAX, "[%s] has too many keys", K->name);
        cr_assert(!K->named || K->noun != NULL, "[%s NAME] does not say what NAME is", K->name);
        cr_assert_not_null(K->open, "[%s] has no open hook", K->name);
        for (size_t j = 0; j < K->n_keys; j++) {
            const struct key_def *k = &K->keys[j];
            cr_assert_not_null(k->name, "[%s]: key %zu has no table entry", K->name, j);
            cr_assert_eq(k->type == V_CUSTOM, k->parse != NULL, "[%s] %s", K->name, k->name);
            cr_assert(k->type != V_CHOICE || k->choices != NULL, "[%s] %s", K->name, k->name);
            for (size_t m = 0; m < j; m++)
                cr_assert_str_neq(K->keys[m].name, k->name, "[%s] %s twice", K->name, k->name);
        }
    }
}

/* ---- route depth: fallback, retries, aliases, timeouts; budgets ---- */

Test(config, route_depth_keys)
{
    struct policy *p =
        load_ok("[inference]\nhost = a.com\ntimeout = 30s\nstream_idle_timeout = 9s\n"
                "[route a]\nendpoint = http://h:1/v1\nfallback = b\nretries = 2\n"
                "retry_on = 429, connect\nstream_idle_timeout = 2s\n"
                "model_map = gpt-4o=llama-70b, gpt-4o-mini = llama-8b, o* =x\n"
                "[route b]\nendpoint = mock://x\ntimeout = 5s\n");
    const struct route *a = policy_route(p, 0), *b = policy_route(p, 1);
    cr_assert_eq(a->fallback, 1);
    cr_assert_str_eq(a->fallback_name, "b");
    cr_assert_eq(a->retries, 2);
    cr_assert_eq(a->retry_on, RETRY_ON_429 | RETRY_ON_CONNECT);
    cr_assert_eq(a->timeout_ms, 30000, "[inference] timeout is the default");
    cr_assert_eq(a->stream_idle_timeout_ms, 2000);
    cr_assert_eq(a->n_model_map, 3);
    cr_assert_str_eq(a->model_map[1].from, "gpt-4o-mini");
    cr_assert_str_eq(a->model_map[1].to, "llama-8b", "trimmed around '='");
    cr_assert_str_eq(a->model_map[2].from, "o*");
    cr_assert_eq(b->fallback, -1);
    cr_assert_eq(b->retries, 0);
    cr_assert_eq(b->retry_on, RETRY_ON_CONNECT | RETRY_ON_5XX, "the default: connect, 5xx");
    cr_assert_eq(b->timeout_ms, 5000);
    cr_assert_eq(b->stream_idle_timeout_ms, 9000, "[inference] stream_idle_timeout");
    cr_assert_eq(b->index, 1);
    policy_unref(p);
    p = load_ok("[route r]\nendpoint = mock://x\n");
    cr_assert_eq(policy_route(p, 0)->timeout_ms, 60000);
    cr_assert_eq(policy_route(p, 0)->stream_idle_timeout_ms, 120000);
    policy_unref(p);
}

Test(config, route_depth_errors)
{
    const char *r = "[route r]\nendpoint = mock://x\n";
    char text[2048];
    static const struct {
        char key[96], what[64];
    } cases[] = {
        {"fallback = nope", "no route named 'nope'"},
        {"fallback = r", "a cycle (r -> r)"},
        {"fallback = a, b", "not one route name"},
        {"retries = 11", "from 0 to 10"},
        {"retries = -1", "retries"},
        {"retry_on = connect, 4xx", "'4xx' is not connect, 5xx or 429"},
        {"retry_on = connect,", "empty item"},
        {"model_map = gpt-4o", "not REQUESTED=MODEL"},
        {"model_map = a=b=c", "not REQUESTED=MODEL"},
        {"model_map = =b", "a name on each side"},
        {"model_map = a= ", "a name on each side"},
        {"model_map = a=b\"c", "without quotes or backslashes"},
        {"model_map = a\\b=c", "without quotes or backslashes"},
        {"model_map = a=b,,c=d", "empty item"},
        {"stream_idle_timeout = 0s", "stream_idle_timeout"},
        {"stream_idle_timeout = 5", "duration"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "%s%s\n", r, cases[i].key);
        expect_error(text, 3, cases[i].what);
    }
    expect_error("[inference]\nhost = a\ntimeout = 0s\n", 3, "timeout");
    /* a cycle is reported once, at the first route of it, on its fallback line */
    expect_report("[route a]\nendpoint = mock://x\nfallback = b\n"
                  "[route b]\nendpoint = mock://x\nfallback = c\n"
                  "[route c]\nendpoint = mock://x\nfallback = a\n"
                  "[route d]\nendpoint = mock://x\nfallback = a\n",
                  "3: fallback: a cycle (a -> b -> c -> a)\n");
    /* a chain that ends is fine, whatever its order in the file */
    policy_unref(load_ok("[route a]\nendpoint = mock://x\nfallback = c\n"
                         "[route b]\nendpoint = mock://x\n"
                         "[route c]\nendpoint = mock://x\nfallback = b\n"));
}

Test(config, budgets)
{
    struct policy *p = load_ok("[route a]\nendpoint = mock://x\n[route b]\nendpoint = mock://y\n"
                               "[budget day]\nroutes = b\ntokens = 2000000\nrequests = 10\n"
                               "window = 24h\n"
                               "[budget curl]\nroutes = *\nbinary = /usr/bin/curl\nrequests = 1\n"
                               "window = 2s\nwindow_type = fixed\n");
    cr_assert_eq(policy_budget_count(p), 2);
    const struct budget *day = policy_budget(p, 0), *curl = policy_budget(p, 1);
    cr_assert_str_eq(day->name, "day");
    cr_assert_eq(day->tokens, 2000000);
    cr_assert_eq(day->requests, 10);
    cr_assert_eq(day->window_ms, 24 * 3600 * 1000u);
    cr_assert_eq(day->window_type, WINDOW_SLIDING, "sliding by default");
    cr_assert_not(budget_covers_route(day, policy_route(p, 0)));
    cr_assert(budget_covers_route(day, policy_route(p, 1)));
    cr_assert(budget_covers_route(curl, policy_route(p, 0)));
    cr_assert_eq(curl->window_type, WINDOW_FIXED);
    cr_assert_eq(curl->tokens, 0, "not limited");
    cr_assert_eq(curl->n_binaries, 1);

    struct identity *py = identity_new(), *cu = identity_new();
    cr_assert(identity_add_holder(py, 1) == 0 && identity_add_exe(py, 0, "/usr/bin/python3") == 0);
    cr_assert(identity_add_holder(cu, 2) == 0 && identity_add_exe(cu, 0, "/usr/bin/curl") == 0);
    cr_assert(budget_counts_caller(curl, cu));
    cr_assert_not(budget_counts_caller(curl, py));
    cr_assert(budget_counts_caller(curl, NULL), "an unknown caller counts: doubt counts");
    cr_assert(budget_counts_caller(day, py), "no binary: every caller");
    identity_free(py);
    identity_free(cu);
    policy_unref(p);
}

Test(config, budget_errors)
{
    const char *head = "[route a]\nendpoint = mock://x\n[budget b]\nroutes = a\nwindow = 1h\n";
    char text[2048];
    static const struct {
        char key[64], what[64];
    } cases[] = {
        {"tokens = 0", "not a whole number above zero"},
        {"tokens = -5", "not a whole number above zero"},
        {"tokens = 10k", "not a whole number above zero"},
        {"requests = 0", "requests: '0'"},
        {"requests = 1e3", "requests"},
        {"tokens = 2000000000000000", "above zero"},
        {"window_type = rolling", "not sliding or fixed"},
        {"binary = usr/bin/curl", "absolute path"},
        {"color = red", "unknown key 'color' in [budget b]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "%s%s\nrequests = 1\n", head, cases[i].key);
        if (strncmp(cases[i].key, "requests", 8) == 0)
            snprintf(text, sizeof(text), "%s%s\ntokens = 1\n", head, cases[i].key);
        expect_error(text, 6, cases[i].what);
    }
    expect_error("[route a]\nendpoint = mock://x\n[budget b]\nroutes = a\nwindow = 500ms\n"
                 "tokens = 1\n",
                 5, "from 1s to 24h");
    expect_error("[route a]\nendpoint = mock://x\n[budget b]\nroutes = a\nwindow = 25h\n"
                 "tokens = 1\n",
                 5, "from 1s to 24h");
    expect_error("[route a]\nendpoint = mock://x\n[budget b]\nroutes = a\nwindow = 1x\n"
                 "tokens = 1\n",
                 5, "window");
    expect_report("[budget b]\nroutes = a, , *\ntokens = 1\n"
                  "[budget c]\nbinary = /usr/bin/curl\n"
                  "[budget b]\nroutes = *\nwindow = 1h\nrequests = 1\n",
                  "2: routes: an empty item in the list (a stray comma?)\n"
                  "2: routes: '*' is every route; name no others beside it\n"
                  "6: duplicate budget name 'b'\n"
                  "1: budget 'b' has no window (like 1h, 24h)\n"
                  "2: routes: no route named 'a'\n"
                  "4: budget 'c' has no routes (a list of routes, or *)\n"
                  "4: budget 'c' has no window (like 1h, 24h)\n"
                  "4: budget 'c' limits nothing: give tokens, requests or both\n");
    /* a budget and a route may share a name */
    policy_unref(load_ok("[route a]\nendpoint = mock://x\n[budget a]\nroutes = a\nwindow = 1h\n"
                         "requests = 3\n"));
}

/* ---- [secret NAME] ---- */

Test(config, secrets_load_and_refuse_with_their_lines)
{
    setenv("EGRESSD_TEST_SECRET", "s3cr3t-value", 1);
    setenv("EGRESSD_TEST_SECRET_NL", "a\nb", 1);
    struct policy *p =
        load_ok("[secret gh]\nvalue_env = EGRESSD_TEST_SECRET\nhosts = api.github.com\n"
                "env = GH_TOKEN, GITHUB_TOKEN\n"
                "[secret npm]\nvalue_env = EGRESSD_TEST_SECRET\n"
                "placeholder = npm_0000000000000000\nhosts = registry.npmjs.org\n"
                "binary = /usr/bin/npm\nin_body = yes\n"
                "[route r]\nendpoint = mock://x\napi_key_secret = gh\n");
    struct secret_view sv;
    cr_assert_eq(policy_secret_count(p), 2);
    policy_secret_view(p, 0, &sv);
    cr_assert_str_eq(sv.placeholder, "egressd-secret-gh", "the default placeholder");
    cr_assert_str_eq(sv.value, "s3cr3t-value");
    cr_assert_not(sv.in_body);
    cr_assert_str_eq(policy_secret_env(p, 0, 1), "GITHUB_TOKEN");
    cr_assert_null(policy_secret_env(p, 0, 2));
    policy_secret_view(p, 1, &sv);
    cr_assert(sv.in_body);
    cr_assert_str_eq(policy_route(p, 0)->api_key, "s3cr3t-value", "api_key_secret");
    policy_unref(p);
    expect_error("[secret a]\nhosts = x.com\n", 1, "secret 'a' has no value_env or value_file");
    expect_error("[secret a]\nvalue_env = EGRESSD_TEST_SECRET\n", 1, "secret 'a' has no hosts");
    expect_error("[secret a]\nvalue_env = EGRESSD_TEST_SECRET_NL\nhosts = x.com\n", 2,
                 "not one line of printable characters");
    expect_error(
        "[secret a]\nvalue_env = EGRESSD_TEST_SECRET\nhosts = x.com\nplaceholder = short\n", 4,
        "16 to 255 characters");
    expect_error("[secret a]\nvalue_env = EGRESSD_TEST_SECRET\nhosts = x.com\n"
                 "placeholder = has space 0000000000\n",
                 4, "without space");
    /* a placeholder swapped out of a target takes its characters with it:
     * with a question mark in it, "/ok/ph?x=0/../../no" passes a rule for
     * the paths under /ok and goes up as "/ok/VALUE/../../no" */
    static const char *const structural[] = {"ghp?egressd=placeholder0", "ghp/egressd/placeholder0",
                                             "ghp#egressd-placeholder0",
                                             "ghp;egressd-placeholder0"};
    for (size_t i = 0; i < sizeof(structural) / sizeof(structural[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "[secret a]\nvalue_env = EGRESSD_TEST_SECRET\nhosts = x.com\nplaceholder = %s\n",
                 structural[i]);
        expect_error(text, 4, "'/', '?', '#' or ';'");
    }
    expect_error("[secret a]\nvalue_env = EGRESSD_TEST_SECRET\nhosts = x.com\n"
                 "placeholder = 0000000000000000\n"
                 "[secret b]\nvalue_env = EGRESSD_TEST_SECRET\nhosts = x.com\n"
                 "placeholder = x0000000000000000\n",
                 5, "one holds the other");
    expect_error("[secret a]\nvalue_env = EGRESSD_TEST_SECRET\nhosts = x.com\nenv = A\n"
                 "[secret b]\nvalue_env = EGRESSD_TEST_SECRET\nhosts = y.com\nenv = A\n",
                 5, "env A is secret 'a''s already");
    expect_error("[secret a]\nvalue_env = EGRESSD_TEST_SECRET\nhosts = x.com\nenv = 1BAD\n", 4,
                 "not an environment variable name");
    expect_error("[route r]\nendpoint = mock://x\napi_key_secret = none\n", 3,
                 "api_key_secret: no [secret none]");
    expect_error("[secret a]\nvalue_env = EGRESSD_TEST_SECRET\nvalue_file = /etc/hostname\n"
                 "hosts = x.com\n",
                 3, "give value_env or value_file, not both");
}
