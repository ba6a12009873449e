/*
 * ini.c - fuzzes the configuration loader (policy/config.c, through inih
 * and the value and host-pattern parsers): policy_load_string on the input
 * as a NUL-terminated string (cut at its first NUL, as a C string is).
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks:
 * - the loader returns a policy exactly when it reported no problem;
 * - every problem names the file "<string>", a line between 0 (the whole
 *   file) and the number of lines, and a non-empty one-line message;
 * - a loaded policy has sane settings (workers <= max_workers, non-zero
 *   timeouts and queue, routes with protocols and timeouts), its fallback
 *   chains end, its model aliases have both sides, its budgets limit
 *   something over a window of at least a second; it decides a few
 *   destinations with a rule index inside its rules, and explains them in a
 *   small buffer; it is then released.
 */
#include "../policy/policy.h"
#include "fuzz.h"

#include <string.h>

struct problems {
    size_t count, lines;
};

static void report(void *ctx, const char *file, int line, const char *msg)
{
    struct problems *pr = ctx;
    CHECK(file != NULL && strcmp(file, "<string>") == 0);
    CHECK(line >= 0 && (size_t)line <= pr->lines);
    CHECK(msg != NULL && msg[0] != '\0' && strlen(msg) < 512 && strchr(msg, '\n') == NULL);
    pr->count++;
}

static void check_policy(struct policy *p)
{
    const struct proxy_settings *s = policy_settings(p);
    CHECK(s->workers >= 1 && s->workers <= s->max_workers && s->queue >= 1);
    CHECK(s->header_timeout_ms > 0 && s->connect_timeout_ms > 0 && s->dns_timeout_ms > 0);
    CHECK(s->idle_timeout_ms > 0 && s->listen_len > 0);
    CHECK(policy_tls(p)->cert_cache >= 1);
    CHECK(policy_inference(p)->max_request_body > 0 && policy_inference(p)->max_response_body > 0);
    size_t n = policy_route_count(p);
    for (size_t i = 0; i < n; i++) {
        const struct route *r = policy_route(p, i);
        CHECK(r->protocols != 0 && r->timeout_ms > 0 && r->name[0] != '\0');
        CHECK(r->stream_idle_timeout_ms > 0 && r->retries <= ROUTE_RETRIES_MAX && r->index == i);
        for (size_t j = 0; j < r->n_model_map; j++)
            CHECK(r->model_map[j].from[0] != '\0' && r->model_map[j].to[0] != '\0' &&
                  strpbrk(r->model_map[j].to, "\"\\") == NULL);
        size_t hops = 0; /* no cycle: every chain ends within n hops */
        for (const struct route *f = r; f->fallback >= 0 && hops <= n; hops++) {
            CHECK((size_t)f->fallback < n);
            f = policy_route(p, (size_t)f->fallback);
        }
        CHECK(hops < n || n == 0);
    }
    for (size_t i = 0; i < policy_budget_count(p); i++) {
        const struct budget *b = policy_budget(p, i);
        CHECK(b->window_ms >= 1000 && (b->tokens > 0 || b->requests > 0) && b->name[0] != '\0');
    }
    static const char *const dests[] = {"api.openai.com", "github.com", "raw.githubusercontent.com",
                                        "169.254.169.254", "[::1]"};
    static const uint16_t ports[] = {443, 80, 8080};
    for (size_t i = 0; i < sizeof(dests) / sizeof(dests[0]); i++) {
        struct host h;
        const char *why;
        CHECK(host_parse(dests[i], strlen(dests[i]), &h, &why) == 0);
        for (size_t k = 0; k < sizeof(ports) / sizeof(ports[0]); k++) {
            struct policy_decision d;
            char explained[64];
            policy_decide(p, &h, ports[k], &d);
            CHECK(d.reason != NULL);
            CHECK(d.rule_index >= -1 &&
                  (d.rule_index < 0 || (size_t)d.rule_index < policy_rule_count(p)));
            CHECK(d.rule_index >= 0 || d.action == ACTION_DENY);
            policy_explain(p, &h, ports[k], NULL, NULL, explained, sizeof(explained));
            CHECK(memchr(explained, '\0', sizeof(explained)) != NULL);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_copy(data, size, 1);
    struct problems pr = {0, 1};
    for (const char *q = text; *q; q++)
        pr.lines += *q == '\n';
    struct policy *p = policy_load_string(text, report, &pr);
    CHECK((p != NULL) == (pr.count == 0));
    if (p != NULL) {
        check_policy(p);
        policy_unref(p);
    }
    free(text);
    return 0;
}
