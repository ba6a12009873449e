/*
 * test_policy.c - host parsing, host patterns, ports, decisions and the
 * SSRF address classes.
 */
#include "../../http/http.h"
#include "../../policy/policy_int.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct policy *load(const char *text)
{
    struct policy *p = policy_load_string(text, NULL, NULL);
    cr_assert_not_null(p, "policy did not load: %s", text);
    return p;
}

/* ---- host parsing ---- */

Test(host, accepted_and_normalised)
{
    static const struct {
        const char *in, *out;
        enum host_kind kind;
    } cases[] = {
        {"Example.COM", "example.com", HOST_NAME},
        {"example.com.", "example.com", HOST_NAME},
        {"a-b_c.example.com", "a-b_c.example.com", HOST_NAME},
        {"10.1.2.3", "10.1.2.3", HOST_IPV4},
        {"0.0.0.0", "0.0.0.0", HOST_IPV4},
        {"[::1]", "::1", HOST_IPV6},
        {"[0:0:0:0:0:0:0:1]", "::1", HOST_IPV6},
        {"[2001:DB8::1]", "2001:db8::1", HOST_IPV6},
        {"[::ffff:127.0.0.1]", "::ffff:127.0.0.1", HOST_IPV6},
        {"xn--bcher-kva.example", "xn--bcher-kva.example", HOST_NAME},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct host h;
        const char *why = NULL;
        cr_assert_eq(host_parse(cases[i].in, strlen(cases[i].in), &h, &why), 0, "%s: %s",
                     cases[i].in, why);
        cr_assert_str_eq(h.name, cases[i].out);
        cr_assert_eq(h.kind, cases[i].kind, "%s", cases[i].in);
    }
}

Test(host, rejected)
{
    static const char *const bad[] = {
        "0x7f.0.0.1", "0x7f000001", "2130706433", "127.1",   "0177.0.0.1", "127.0.0.01",
        "1.2.3",      "1.2.3.4.5",  "256.1.1.1",  "::1",     "[::1",       "[fe80::1%eth0]",
        "user@host",  "a%2eb.com",  "bücher.de",  "a..b",    "-a.com",     "a-.com",
        "",           ".",          "a b.com",    "a/b.com", "[1.2.3.4]",  "example.123",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct host h;
        const char *why = NULL;
        cr_assert_neq(host_parse(bad[i], strlen(bad[i]), &h, &why), 0, "accepted '%s'", bad[i]);
        cr_assert_not_null(why);
    }
    struct host h;
    const char *why;
    cr_assert_neq(host_parse("[::1\0junk]", 11, &h, &why), 0, "a NUL inside brackets");
    cr_assert_neq(host_parse("a.com\0.evil", 11, &h, &why), 0);
}

Test(host, with_port)
{
    struct host h;
    uint16_t port;
    const char *why;
    cr_assert_eq(host_port_parse("example.com:8443", 16, 0, &h, &port, &why), 0);
    cr_assert_eq(port, 8443);
    cr_assert_eq(host_port_parse("[::1]:443", 9, 0, &h, &port, &why), 0);
    cr_assert_str_eq(h.name, "::1");
    cr_assert_eq(host_port_parse("example.com", 11, 80, &h, &port, &why), 0);
    cr_assert_eq(port, 80);
    cr_assert_neq(host_port_parse("example.com", 11, 0, &h, &port, &why), 0);
    cr_assert_neq(host_port_parse("example.com:", 12, 0, &h, &port, &why), 0);
    cr_assert_neq(host_port_parse("example.com:0", 13, 0, &h, &port, &why), 0);
    cr_assert_neq(host_port_parse("example.com:65536", 17, 0, &h, &port, &why), 0);
    cr_assert_neq(host_port_parse("example.com:+80", 15, 0, &h, &port, &why), 0);
    cr_assert_neq(host_port_parse("::1:443", 7, 0, &h, &port, &why), 0);
    cr_assert_neq(host_port_parse("[::1]x:443", 10, 0, &h, &port, &why), 0);
    cr_assert_neq(host_port_parse("u:p@example.com:443", 19, 0, &h, &port, &why), 0);
}

/* ---- patterns ---- */

struct pat_case {
    const char *pattern, *host;
    bool match;
};

Test(patterns, table)
{
    static const struct pat_case cases[] = {
        {"example.com", "example.com", true},
        {"example.com", "EXAMPLE.com.", true},
        {"example.com", "www.example.com", false},
        {"*.example.com", "www.example.com", true},
        {"*.example.com", "a.b.example.com", false},
        {"*.example.com", "example.com", false},
        {"**.example.com", "www.example.com", true},
        {"**.example.com", "a.b.c.example.com", true},
        {"**.example.com", "example.com", false},
        {"**.example.com", "badexample.com", false},
        {"*.example.com", "wwwexample.com", false},
        {"10.0.0.1", "10.0.0.1", true},
        {"10.0.0.1", "10.0.0.2", false},
        {"::1", "[0::1]", true},
        {"[2001:db8::1]", "[2001:DB8:0::1]", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct hostset hs = {0};
        struct host h;
        const char *why = NULL;
        cr_assert_eq(hostset_add(&hs, cases[i].pattern, &why), 0, "%s: %s", cases[i].pattern, why);
        hostset_finish(&hs);
        cr_assert_eq(host_parse(cases[i].host, strlen(cases[i].host), &h, &why), 0);
        cr_assert_eq(hostset_match(&hs, &h), cases[i].match, "%s vs %s", cases[i].pattern,
                     cases[i].host);
        hostset_free(&hs);
    }
}

Test(patterns, rejected)
{
    static const char *const bad[] = {"*",         "**",         "*.com",      "**.com",
                                      "a.*.com",   "*a.com",     "***.a.com",  "www.*",
                                      "*.*.a.com", "*.10.0.0.1", "bücher.de",  "0x7f.0.0.1",
                                      "a b.com",   "*.",         "**.a.com.*", "[::1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct hostset hs = {0};
        const char *why = NULL;
        cr_assert_neq(hostset_add(&hs, bad[i], &why), 0, "accepted '%s'", bad[i]);
        cr_assert_not_null(why);
        hostset_free(&hs);
    }
}

/* ---- ports ---- */

Test(ports, lists_and_ranges)
{
    struct port_range *r;
    size_t n;
    char err[128];
    cr_assert_eq(parse_ports("80, 443, 8000-8100", &r, &n, err, sizeof(err)), 0);
    cr_assert_eq(n, 3);
    cr_assert(ports_match(r, n, 80));
    cr_assert(ports_match(r, n, 443));
    cr_assert(ports_match(r, n, 8000));
    cr_assert(ports_match(r, n, 8050));
    cr_assert(ports_match(r, n, 8100));
    cr_assert_not(ports_match(r, n, 8101));
    cr_assert_not(ports_match(r, n, 81));
    free(r);
    static const char *const bad[] = {"",       "0",     "65536", "80-",    "-80", "a",
                                      "80 443", "1-2-3", "443,",  "100-99", "08x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_neq(parse_ports(bad[i], &r, &n, err, sizeof(err)), 0, "accepted '%s'", bad[i]);
}

/* ---- decisions ---- */

static struct policy_decision decide(struct policy *p, const char *host, uint16_t port)
{
    struct host h;
    const char *why;
    struct policy_decision d;
    cr_assert_eq(host_parse(host, strlen(host), &h, &why), 0, "%s", host);
    policy_decide(p, &h, port, &d);
    return d;
}

Test(decide, order)
{
    struct policy *p = load("[allow all-github]\nhost = **.github.com, github.com\nport = 443, 22\n"
                            "[deny gist]\nhost = gist.github.com\n"
                            "[allow second]\nhost = api.github.com\nport = 443\n"
                            "[allow web]\nhost = example.com\nport = 80\n");
    struct policy_decision d = decide(p, "github.com", 443);
    cr_assert_eq(d.action, ACTION_ALLOW);
    cr_assert_str_eq(d.rule, "all-github");
    d = decide(p, "api.github.com", 443); /* first allow in file order */
    cr_assert_str_eq(d.rule, "all-github");
    d = decide(p, "gist.github.com", 443); /* deny wins though it comes later */
    cr_assert_eq(d.action, ACTION_DENY);
    cr_assert_str_eq(d.rule, "gist");
    d = decide(p, "gist.github.com", 8080); /* deny rules cover every port by default */
    cr_assert_eq(d.action, ACTION_DENY);
    cr_assert_str_eq(d.rule, "gist");
    d = decide(p, "github.com", 80);
    cr_assert_eq(d.action, ACTION_DENY);
    cr_assert_null(d.rule);
    d = decide(p, "example.com", 443); /* allow rules default to 443 only if no port */
    cr_assert_eq(d.action, ACTION_DENY);
    d = decide(p, "example.com", 80);
    cr_assert_eq(d.action, ACTION_ALLOW);
    d = decide(p, "nothing.org", 443);
    cr_assert_eq(d.action, ACTION_DENY);
    policy_unref(p);
}

Test(decide, explain)
{
    struct policy *p = load("[allow a]\nhost = a.com\n");
    struct host h;
    const char *why;
    char buf[256];
    host_parse("a.com", 5, &h, &why);
    policy_explain(p, &h, 443, NULL, NULL, buf, sizeof(buf));
    cr_assert(strstr(buf, "allow by [allow a] (line 1)") != NULL, "%s", buf);
    policy_explain(p, &h, 80, NULL, NULL, buf, sizeof(buf));
    cr_assert(strstr(buf, "deny (no rule allows this destination)") != NULL, "%s", buf);
    policy_unref(p);
}

/* ---- addresses ---- */

static struct sockaddr_storage addr(const char *s)
{
    struct sockaddr_storage ss = {0};
    if (strchr(s, ':') != NULL) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        cr_assert_eq(inet_pton(AF_INET6, s, &in6->sin6_addr), 1, "%s", s);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        cr_assert_eq(inet_pton(AF_INET, s, &in->sin_addr), 1, "%s", s);
    }
    return ss;
}

Test(addr, classes)
{
    static const struct {
        const char *a;
        enum addr_class cls;
    } cases[] = {
        {"8.8.8.8", ADDR_GLOBAL},
        {"1.1.1.1", ADDR_GLOBAL},
        {"2606:4700::1111", ADDR_GLOBAL},
        {"127.0.0.1", ADDR_LOOPBACK},
        {"127.255.255.254", ADDR_LOOPBACK},
        {"::1", ADDR_LOOPBACK},
        {"0.0.0.0", ADDR_BLOCKED},
        {"0.1.2.3", ADDR_BLOCKED},
        {"::", ADDR_BLOCKED},
        {"169.254.169.254", ADDR_BLOCKED},
        {"fe80::1", ADDR_BLOCKED},
        {"febf::1", ADDR_BLOCKED},
        {"224.0.0.1", ADDR_BLOCKED},
        {"239.255.255.250", ADDR_BLOCKED},
        {"ff02::1", ADDR_BLOCKED},
        {"255.255.255.255", ADDR_BLOCKED},
        {"240.0.0.1", ADDR_BLOCKED},
        {"10.0.0.1", ADDR_INTERNAL},
        {"172.16.0.1", ADDR_INTERNAL},
        {"172.31.255.255", ADDR_INTERNAL},
        {"172.32.0.1", ADDR_GLOBAL},
        {"192.168.1.1", ADDR_INTERNAL},
        {"100.64.0.1", ADDR_INTERNAL},
        {"100.127.255.255", ADDR_INTERNAL},
        {"100.128.0.1", ADDR_GLOBAL},
        {"192.0.0.8", ADDR_INTERNAL},
        {"198.18.0.1", ADDR_INTERNAL},
        {"198.19.255.255", ADDR_INTERNAL},
        {"198.20.0.1", ADDR_GLOBAL},
        {"192.0.2.1", ADDR_INTERNAL},
        {"198.51.100.7", ADDR_INTERNAL},
        {"203.0.113.9", ADDR_INTERNAL},
        {"fc00::1", ADDR_INTERNAL},
        {"fd12:3456::1", ADDR_INTERNAL},
        /* IPv4 inside IPv6: judged by the IPv4 address */
        {"::ffff:127.0.0.1", ADDR_LOOPBACK},
        {"::ffff:169.254.169.254", ADDR_BLOCKED},
        {"::ffff:10.0.0.1", ADDR_INTERNAL},
        {"::ffff:8.8.8.8", ADDR_GLOBAL},
        {"::127.0.0.1", ADDR_LOOPBACK},
        {"::169.254.169.254", ADDR_BLOCKED},
        {"::ffff:0:127.0.0.1", ADDR_LOOPBACK},
        {"64:ff9b::127.0.0.1", ADDR_LOOPBACK},
        {"64:ff9b::a9fe:a9fe", ADDR_BLOCKED},
        {"64:ff9b::808:808", ADDR_GLOBAL},
        {"2002:7f00:1::", ADDR_LOOPBACK},
        {"2002:a9fe:a9fe::1", ADDR_BLOCKED},
        {"2002:c0a8:101::1", ADDR_INTERNAL},
        {"2001:0:4136:e378:8000:63bf:80ff:fffe", ADDR_LOOPBACK}, /* Teredo, client 127.0.0.1 */
        {"64:ff9b:1::1", ADDR_INTERNAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss = addr(cases[i].a);
        const char *what = NULL;
        enum addr_class got = addr_classify((struct sockaddr *)&ss, &what);
        cr_assert_eq(got, cases[i].cls, "%s: got %d (%s), want %d", cases[i].a, got, what,
                     cases[i].cls);
        cr_assert_not_null(what);
    }
}

Test(addr, permitted)
{
    struct policy *p = load("[allow lan]\nhost = lan.test\nallowed_ips = 10.0.5.0/24, fd00::/8\n"
                            "[allow pub]\nhost = pub.test\n");
    struct policy_decision lan = decide(p, "lan.test", 443), pub = decide(p, "pub.test", 443);
    const char *why;
    struct sockaddr_storage a = addr("10.0.5.7"), b = addr("10.0.6.1"), c = addr("8.8.8.8"),
                            d = addr("::ffff:10.0.5.9"), e = addr("127.0.0.1"), f = addr("fd00::5"),
                            g = addr("169.254.169.254");
    cr_assert(policy_address_permitted(p, &lan, (struct sockaddr *)&a, &why));
    cr_assert_not(policy_address_permitted(p, &lan, (struct sockaddr *)&b, &why));
    cr_assert(policy_address_permitted(p, &lan, (struct sockaddr *)&c, &why));
    cr_assert(policy_address_permitted(p, &lan, (struct sockaddr *)&d, &why));
    cr_assert(policy_address_permitted(p, &lan, (struct sockaddr *)&f, &why));
    cr_assert_not(policy_address_permitted(p, &lan, (struct sockaddr *)&e, &why));
    cr_assert_not(policy_address_permitted(p, &lan, (struct sockaddr *)&g, &why));
    cr_assert_not(policy_address_permitted(p, &pub, (struct sockaddr *)&a, &why));
    cr_assert(strstr(why, "private") != NULL, "%s", why);
    cr_assert(policy_address_permitted(p, &pub, (struct sockaddr *)&c, &why));
    policy_unref(p);
}

Test(addr, deny_rules_on_addresses_cover_names_resolving_to_them)
{
    struct policy *p = load("[deny meta]\nhost = 169.254.169.254, [fd00:ec2::254], 203.0.113.9\n"
                            "[deny web-only]\nhost = 198.51.100.7\nport = 80\n"
                            "[allow all]\nhost = example.com\n");
    struct sockaddr_storage a = addr("203.0.113.9"), mapped = addr("::ffff:203.0.113.9"),
                            six = addr("fd00:ec2::254"), other = addr("203.0.113.10"),
                            web = addr("198.51.100.7");
    cr_assert_eq(policy_address_denied(p, (struct sockaddr *)&a, 443, NULL), 0);
    cr_assert_str_eq(policy_rule_name(p, 0), "meta");
    cr_assert_eq(policy_address_denied(p, (struct sockaddr *)&mapped, 443, NULL), 0,
                 "the same address in an IPv6 form");
    cr_assert_eq(policy_address_denied(p, (struct sockaddr *)&six, 443, NULL), 0);
    cr_assert_eq(policy_address_denied(p, (struct sockaddr *)&other, 443, NULL), -1);
    cr_assert_eq(policy_address_denied(p, (struct sockaddr *)&web, 443, NULL), -1, "port 80 only");
    cr_assert_eq(policy_address_denied(p, (struct sockaddr *)&web, 80, NULL), 1);
    policy_unref(p);
}

Test(addr, loopback_only_when_unsafe)
{
    struct policy *p =
        load("[proxy]\nunsafe_allow_loopback = yes\n[allow l]\nhost = localhost\nport = 1-65535\n");
    struct policy_decision d = decide(p, "localhost", 8080);
    struct sockaddr_storage lo = addr("127.0.0.1"), lo6 = addr("::1"), ll = addr("169.254.1.1");
    const char *why;
    cr_assert(policy_address_permitted(p, &d, (struct sockaddr *)&lo, &why));
    cr_assert(policy_address_permitted(p, &d, (struct sockaddr *)&lo6, &why));
    cr_assert_not(policy_address_permitted(p, &d, (struct sockaddr *)&ll, &why));
    policy_unref(p);
}

/* ---- process identity ---- */

Test(identity, path_globs)
{
    static const struct {
        char pattern[48], path[48];
        bool match;
    } cases[] = {
        {"/usr/bin/git", "/usr/bin/git", true},
        {"/usr/bin/git", "/usr/bin/gitk", false},
        {"/usr/lib/git-core/**", "/usr/lib/git-core/git-remote-https", true},
        {"/usr/lib/git-core/**", "/usr/lib/git-core/sub/dir/x", true},
        {"/usr/lib/git-core/**", "/usr/lib/git-core2/x", false},
        {"/usr/lib/git-core/*", "/usr/lib/git-core/x", true},
        {"/usr/lib/git-core/*", "/usr/lib/git-core/sub/x", false},
        {"/usr/bin/python3*", "/usr/bin/python3.11", true},
        {"/usr/bin/python3*", "/usr/bin/python3/x", false},
        {"/opt/**/bin/node", "/opt/node/v20/bin/node", true},
        {"/opt/**/bin/node", "/opt/bin/node", false},
        {"/a/*/c", "/a/b/c", true},
        {"/a/*/c", "/a//c", true},
        {"**", "/anything/at/all", true},
        {"/a/**", "/a/", true},
        {"/a/**/b", "/a/x/y/b", true},
        {"/a/*b*c", "/a/xbyc", true},
        {"/a/*b*c", "/a/xb/c", false},
        {"*", "", true},
        {"", "", true},
        {"", "x", false},
        {"/x**", "/x", true},
        {"/a***", "/a/b", true},
        {"/usr/bin/\xc3\xa9t\xc3\xa9", "/usr/bin/\xc3\xa9t\xc3\xa9", true},
        {"/opt/*\xaf", "/opt/x\xaf", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_assert_eq(path_glob_match(cases[i].pattern, cases[i].path), cases[i].match, "%s vs %s",
                     cases[i].pattern, cases[i].path);
}

Test(identity, glob_is_not_exponential, .timeout = 5)
{
    /* `binary = /(**a)x4` against a 510-character path took 9.5 s of
     * CPU per decision with the backtracking matcher */
    char path[512], pattern[64];
    memset(path, 'a', sizeof(path) - 2);
    path[0] = '/';
    path[sizeof(path) - 2] = 'b';
    path[sizeof(path) - 1] = '\0';
    snprintf(pattern, sizeof(pattern), "/**a**a**a**a**a**a**a**a");
    for (int i = 0; i < 200; i++)
        cr_assert_not(path_glob_match(pattern, path));
    snprintf(pattern, sizeof(pattern), "/*a*a*a*a*a*a*a*a");
    for (int i = 0; i < 200; i++)
        cr_assert_not(path_glob_match(pattern, path));
    path[sizeof(path) - 2] = 'a';
    cr_assert(path_glob_match("/**a**a**a**a**a**a**a**a", path));
}

static struct sockaddr_storage sa(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss = addr(ip);
    ((struct sockaddr_in *)&ss)->sin_port = htons(port); /* same offset in both */
    return ss;
}

static bool same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    size_t n = a->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    return a->ss_family == b->ss_family && memcmp(a, b, n) == 0;
}

Test(identity, proc_net_tcp_lines)
{
    struct proc_socket ps;
    const char *v4 = "   3: 0100007F:A1B2 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  "
                     "1000        0 4242 1 0000000000000000 20 4 30 10 -1";
    cr_assert_eq(proc_net_tcp_line(v4, &ps), 0);
    struct sockaddr_storage l = sa("127.0.0.1", 0xA1B2), r = sa("127.0.0.1", 3128);
    cr_assert(same(&ps.local, &l));
    cr_assert(same(&ps.remote, &r));
    cr_assert_eq(ps.uid, 1000);
    cr_assert_eq(ps.inode, 4242);
    const char *v6 =
        "   0: 00000000000000000000000001000000:1F90 B80D0120000000000000000001000000:01BB 01 "
        "00000000:00000000 00:00000000 00000000     0        0 77 1 0 20 4 30 10 -1";
    cr_assert_eq(proc_net_tcp_line(v6, &ps), 0);
    struct sockaddr_storage l6 = sa("::1", 8080), r6 = sa("2001:db8::1", 443);
    cr_assert(same(&ps.local, &l6));
    cr_assert(same(&ps.remote, &r6));
    cr_assert_eq(ps.inode, 77);
    const char *mapped =
        "   1: 0000000000000000FFFF00000100007F:D431 0000000000000000FFFF00000100007F:0C38 "
        "01 00000000:00000000 00:00000000 00000000     0        0 99 1";
    cr_assert_eq(proc_net_tcp_line(mapped, &ps), 0);
    struct sockaddr_storage lm = sa("127.0.0.1", 0xD431);
    cr_assert(same(&ps.local, &lm), "IPv4-mapped becomes IPv4");
    cr_assert_eq(proc_net_tcp_line("  sl  local_address rem_address   st tx_queue rx_queue", &ps),
                 -1);
    cr_assert_eq(proc_net_tcp_line("   0: 0100007F 0100007F:0C38 01", &ps), -1);
}

/* An identity of holders, each given as a NULL-ended chain of executables. */
static struct identity *holders(const char *const *chains[], size_t n)
{
    struct identity *id = identity_new();
    cr_assert_not_null(id);
    for (size_t h = 0; h < n; h++) {
        cr_assert_eq(identity_add_holder(id, (long)(100 + h)), (int)h);
        for (const char *const *c = chains[h]; *c != NULL; c++)
            cr_assert_eq(identity_add_exe(id, h, *c), 0);
    }
    return id;
}

Test(identity, binary_rules)
{
    struct policy *p =
        load("[allow git]\nhost = github.com\nbinary = /usr/lib/git-core/**, /opt/x/git\n"
             "[allow curl]\nhost = github.com\nbinary = /opt/y/curl\n");
    struct host h;
    const char *why;
    host_parse("github.com", 10, &h, &why);
    cr_assert(policy_wants_identity(p, &h, 443));
    struct policy_decision d;
    policy_decide(p, &h, 443, &d);
    cr_assert_eq(d.action, ACTION_DENY, "unknown process: denied, with a reason");
    cr_assert(strstr(d.reason, "not looked up") != NULL, "%s", d.reason);
    struct identity *id = identity_new();
    id->unresolved = "process identity: gone";
    policy_decide_as(p, &h, 443, id, &d);
    cr_assert_eq(d.action, ACTION_DENY);
    cr_assert_str_eq(d.reason, "process identity: gone");
    identity_free(id);
    const char *const chain[] = {"/usr/bin/curl", "/usr/bin/bash",
                                 "/usr/lib/git-core/git-remote-https", NULL};
    const char *const *one[] = {chain};
    id = holders(one, 1);
    policy_decide_as(p, &h, 443, id, &d);
    cr_assert_eq(d.action, ACTION_ALLOW, "an ancestor matches");
    cr_assert_str_eq(d.rule, "git");
    identity_free(id);
    const char *const short_chain[] = {"/usr/bin/curl", "/usr/bin/bash", NULL};
    const char *const *other[] = {short_chain};
    id = holders(other, 1);
    policy_decide_as(p, &h, 443, id, &d);
    cr_assert_eq(d.action, ACTION_DENY);
    cr_assert(strstr(d.reason, "not one the rule allows") != NULL);
    identity_free(id);
    const char *const curl[] = {"/opt/y/curl", NULL};
    const char *const *c[] = {curl};
    id = holders(c, 1);
    policy_decide_as(p, &h, 443, id, &d);
    cr_assert_str_eq(d.rule, "curl");
    identity_free(id);
    policy_unref(p);
}

Test(identity, every_holder_of_a_shared_socket_must_match)
{
    /* a process no rule allows forks; a grandchild execs git while the
     * original keeps the socket and writes the request */
    struct policy *p = load("[allow git]\nhost = github.com\nbinary = /usr/bin/git\n");
    struct host h;
    const char *why;
    host_parse("github.com", 10, &h, &why);
    const char *const git[] = {"/usr/bin/git", "/usr/lib/systemd/systemd", NULL};
    const char *const python[] = {"/usr/bin/python3.11", "/usr/bin/bash", NULL};
    const char *const *shared[] = {git, python};
    struct identity *id = holders(shared, 2);
    struct policy_decision d;
    policy_decide_as(p, &h, 443, id, &d);
    cr_assert_eq(d.action, ACTION_DENY, "the python holder is not allowed");
    cr_assert(strstr(d.reason, "shared") != NULL, "%s", d.reason);
    identity_free(id);
    const char *const *both_git[] = {git, git};
    id = holders(both_git, 2);
    policy_decide_as(p, &h, 443, id, &d);
    cr_assert_eq(d.action, ACTION_ALLOW, "git and git's fork");
    identity_free(id);
    policy_unref(p);
}

Test(identity, a_deny_rule_naming_binaries_denies_on_doubt)
{
    struct policy *p = load("[deny no-curl]\nhost = example.com\nbinary = /usr/bin/curl\n"
                            "[allow all]\nhost = example.com\n");
    struct host h;
    const char *why;
    host_parse("example.com", 11, &h, &why);
    struct policy_decision d;
    struct identity *id = identity_new();
    id->unresolved = "process identity: the socket is not in /proc/net/tcp";
    policy_decide_as(p, &h, 443, id, &d);
    cr_assert_eq(d.action, ACTION_DENY, "unknown identity: the deny rule applies");
    cr_assert_str_eq(d.rule, "no-curl");
    identity_free(id);
    policy_decide(p, &h, 443, &d);
    cr_assert_eq(d.action, ACTION_DENY, "not looked up: the same");
    const char *const python[] = {"/usr/bin/python3.11", NULL};
    const char *const curl[] = {"/usr/bin/curl", NULL};
    const char *const *py[] = {python};
    id = holders(py, 1);
    policy_decide_as(p, &h, 443, id, &d);
    cr_assert_eq(d.action, ACTION_ALLOW, "known and not curl");
    identity_free(id);
    const char *const *mixed[] = {python, curl};
    id = holders(mixed, 2);
    policy_decide_as(p, &h, 443, id, &d);
    cr_assert_eq(d.action, ACTION_DENY, "curl among the holders");
    identity_free(id);
    policy_unref(p);
}

static int write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    fputs(content, f);
    fclose(f);
    return open(path, O_RDONLY);
}

Test(trust, first_use_pins_the_content)
{
    char dir[] = "/tmp/egressd-fp-XXXXXX", path[64], other[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/tool", dir);
    snprintf(other, sizeof(other), "%s/other", dir);
    struct trust_store *fp = trust_store_new();
    int fd = write_file(path, "version one");
    cr_assert_null(trust_check(fp, fd, path, now_ms() + 5000), "first use is trusted");
    cr_assert_null(trust_check(fp, fd, path, now_ms() + 5000), "unchanged");
    close(fd);
    usleep(20000); /* a distinct mtime */
    fd = write_file(path, "version two");
    const char *why = trust_check(fp, fd, path, now_ms() + 5000);
    cr_assert_not_null(why, "changed in place: refused");
    cr_assert(strstr(why, "binary integrity") != NULL, "%s", why);
    close(fd);
    fd = write_file(other, "version two");
    cr_assert_null(trust_check(fp, fd, other, now_ms() + 5000),
                   "the same content elsewhere is its own path");
    close(fd);
    fd = write_file(path, "version one");
    cr_assert_null(trust_check(fp, fd, path, now_ms() + 5000), "back to what was trusted");
    close(fd);
    trust_store_free(fp);
    unlink(path);
    unlink(other);
    rmdir(dir);
}

Test(trust, too_large_or_too_late_is_denied)
{
    char dir[] = "/tmp/egressd-fp-XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/huge", dir);
    struct trust_store *fp = trust_store_new();
    int fd = write_file(path, "");
    cr_assert_eq(truncate(path, (off_t)TRUST_HASH_MAX + 1), 0); /* sparse: no disk used */
    const char *why = trust_check(fp, fd, path, now_ms() + 5000);
    cr_assert(why != NULL && strstr(why, "too large to hash") != NULL, "%s", why ? why : "trusted");
    close(fd);
    fd = write_file(path, "a small tool");
    why = trust_check(fp, fd, path, now_ms() - 1);
    cr_assert(why != NULL && strstr(why, "ran out of time") != NULL, "%s", why ? why : "trusted");
    cr_assert_null(trust_check(fp, fd, path, now_ms() + 5000),
                   "in time: trusted, never pinned late");
    close(fd);
    trust_store_free(fp);
    unlink(path);
    rmdir(dir);
}

/* The lookup of a real loopback connection's holder, by a deadline. */
static const char *lookup_reason(int64_t deadline)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(l >= 0 && c >= 0);
    cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(l, 1), 0);
    cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
    int s = accept(l, NULL, NULL);
    struct trust_store *ts = trust_store_new();
    struct identity *id = identity_lookup(s, 0, ts, deadline);
    cr_assert_not_null(id);
    const char *why = id->unresolved; /* static */
    identity_free(id);
    trust_store_free(ts);
    close(s), close(c), close(l);
    return why;
}

Test(identity, the_lookup_has_a_deadline)
{
    /* the only holder is this process, which the lookup never counts */
    const char *why = lookup_reason(now_ms() + 5000);
    cr_assert(why != NULL && strstr(why, "no visible process") != NULL, "%s", why ? why : "none");
    why = lookup_reason(now_ms() - 1);
    cr_assert(why != NULL && strstr(why, "ran out of time") != NULL, "%s", why ? why : "none");
}

/* ---- request rules (DESIGN section 10) ---- */

static struct policy_decision decide_request(struct policy *p, const char *host, uint16_t port,
                                             const char *method, const char *path)
{
    struct host h;
    const char *why;
    char decoded[512], folded[512];
    struct policy_decision d;
    cr_assert_eq(host_parse(host, strlen(host), &h, &why), 0, "%s", host);
    cr_assert_eq(
        http_path_view(path, strlen(path), decoded, sizeof(decoded), folded, sizeof(folded), &why),
        0, "%s", path);
    struct request_view rq = {method, decoded, folded, NULL};
    policy_decide_request(p, &h, port, NULL, &rq, &d);
    return d;
}

static const char github[] =
    "[allow github-read]\nhost = api.github.com\naccess = read-only\n"
    "paths = /repos/acme/**, /user\nmessage = ask the operator for write access\n"
    "[allow github-issues]\nhost = api.github.com\nmethods = POST\n"
    "paths = /repos/acme/*/issues, /repos/acme/*/issues/*/comments\n"
    "[deny no-secrets-api]\nhost = api.github.com\npaths = /repos/**/actions/secrets/**\n"
    "message = secrets stay with the operator\n"
    "[allow opaque]\nhost = example.com\n";

Test(request, connections_with_request_rules_are_inspected)
{
    struct policy *p = load(github);
    struct policy_decision d = decide(p, "api.github.com", 443);
    cr_assert_eq(d.action, ACTION_INSPECT, "a deny rule with paths does not deny the connection");
    cr_assert_str_eq(d.rule, "github-read");
    d = decide(p, "example.com", 443);
    cr_assert_eq(d.action, ACTION_ALLOW, "no request rule: an opaque tunnel");
    d = decide(p, "api.github.com", 80);
    cr_assert_eq(d.action, ACTION_DENY);
    cr_assert(policy_uses_tls(p));
    policy_unref(p);
}

Test(request, methods_and_access_presets)
{
    struct policy *p = load(github);
    static const struct {
        char method[16], path[64];
        enum policy_action action;
        char rule[32];
    } cases[] = {
        {"GET", "/repos/acme/tool", ACTION_ALLOW, "github-read"},
        {"HEAD", "/repos/acme/tool/pulls", ACTION_ALLOW, "github-read"},
        {"OPTIONS", "/user", ACTION_ALLOW, "github-read"},
        {"DELETE", "/repos/acme/tool", ACTION_DENY, "github-read"},
        {"PUT", "/repos/acme/tool", ACTION_DENY, "github-read"},
        {"POST", "/repos/acme/tool/issues", ACTION_ALLOW, "github-issues"},
        {"POST", "/repos/acme/tool/issues/7/comments", ACTION_ALLOW, "github-issues"},
        {"POST", "/repos/acme/tool/pulls", ACTION_DENY, "github-read"},
        {"get", "/repos/acme/tool", ACTION_DENY, "github-read"},
        {"GET", "/repos/other/tool", ACTION_DENY, "github-read"},
        {"GET", "/user/keys", ACTION_DENY, "github-read"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct policy_decision d =
            decide_request(p, "api.github.com", 443, cases[i].method, cases[i].path);
        cr_assert_eq(d.action, cases[i].action, "%s %s: %d", cases[i].method, cases[i].path,
                     d.action);
        cr_assert_str_eq(d.rule, cases[i].rule, "%s %s", cases[i].method, cases[i].path);
    }
    struct policy_decision d = decide_request(p, "api.github.com", 443, "DELETE", "/repos/acme/x");
    cr_assert_str_eq(d.message, "ask the operator for write access", "the missed rule's message");
    cr_assert(strstr(d.reason, "method") != NULL, "%s", d.reason);
    d = decide_request(p, "api.github.com", 443, "GET", "/repos/other/x");
    cr_assert(strstr(d.reason, "path") != NULL, "%s", d.reason);
    policy_unref(p);
}

Test(request, deny_rules_read_paths_as_origins_might)
{
    struct policy *p = load(github);
    static const char *const spellings[] = {
        "/repos/acme/x/actions/secrets/KEY",   "/repos/ACME/x/Actions/Secrets/KEY",
        "/repos/acme/x/actions/%73ecrets/KEY", "/repos/acme/x/actions;v=1/secrets/KEY",
        "/repos/acme/x/actions//secrets/KEY",  "/repos/acme/x/actions/secrets/KEY?x=1",
    };
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        struct policy_decision d = decide_request(p, "api.github.com", 443, "GET", spellings[i]);
        cr_assert_eq(d.action, ACTION_DENY, "%s", spellings[i]);
        cr_assert_str_eq(d.rule, "no-secrets-api", "%s", spellings[i]);
        cr_assert_str_eq(d.message, "secrets stay with the operator");
    }
    /* allow rules are exact: another case is another path to them */
    struct policy_decision d = decide_request(p, "api.github.com", 443, "GET", "/REPOS/acme/x");
    cr_assert_eq(d.action, ACTION_DENY);
    d = decide_request(p, "api.github.com", 443, "GET", "/repos/%61cme/x");
    cr_assert_eq(d.action, ACTION_ALLOW, "decoded before matching");
    policy_unref(p);
}

Test(request, a_trailing_slash_does_not_dodge_a_deny_rule)
{
    struct policy *p = load("[deny d]\nhost = h.test\npaths = /admin, /repos/*/x\n"
                            "[allow a]\nhost = h.test\n");
    static const char *const spellings[] = {"/admin/", "/ADMIN//", "/admin/;v=1", "/repos/r/x/"};
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        struct policy_decision d = decide_request(p, "h.test", 443, "GET", spellings[i]);
        cr_assert_eq(d.action, ACTION_DENY, "%s: most routers read it without its last slash",
                     spellings[i]);
    }
    cr_assert_eq(decide_request(p, "h.test", 443, "GET", "/").action, ACTION_ALLOW);
    cr_assert_eq(decide_request(p, "h.test", 443, "GET", "/admin/y").action, ACTION_ALLOW);
    cr_assert_eq(decide_request(p, "h.test", 443, "GET", "/repos/r/x/y").action, ACTION_ALLOW);
    policy_unref(p);
}

Test(request, order_deny_inference_allow_audit)
{
    struct policy *p = load("[inference]\nhost = api.openai.com\n[route m]\nendpoint = mock://x\n"
                            "[allow everything]\nhost = api.openai.com, h.test\npaths = /**\n"
                            "[deny no-admin]\nhost = h.test\nmethods = DELETE\npaths = /admin/**\n"
                            "[allow audited]\nhost = a.test\nmethods = GET\naudit = yes\n");
    struct policy_decision d = decide_request(p, "api.openai.com", 443, "POST", "/v1/x");
    cr_assert_eq(d.action, ACTION_INTERCEPT, "inference hosts stay inference");
    d = decide_request(p, "h.test", 443, "DELETE", "/admin/users");
    cr_assert_eq(d.action, ACTION_DENY, "a deny rule wins over an earlier allow");
    d = decide_request(p, "h.test", 443, "delete", "/Admin/users");
    cr_assert_eq(d.action, ACTION_DENY, "deny rules match methods without case");
    d = decide_request(p, "h.test", 443, "GET", "/admin/users");
    cr_assert_eq(d.action, ACTION_ALLOW);
    d = decide_request(p, "a.test", 443, "POST", "/x");
    cr_assert_eq(d.action, ACTION_ALLOW, "the rule's audit lets its denial through");
    cr_assert(d.audit);
    cr_assert_str_eq(d.rule, "audited");
    cr_assert_str_eq(policy_decision_name(&d), "audit");
    policy_unref(p);
    p = load("[proxy]\naudit = yes\n[allow a]\nhost = a.test\nmethods = GET\n"
             "[deny d]\nhost = d.test\n");
    d = decide_request(p, "a.test", 443, "POST", "/x");
    cr_assert(d.audit && d.action == ACTION_ALLOW, "the policy's audit: every denial");
    d = decide(p, "d.test", 443);
    cr_assert(d.audit && d.action == ACTION_ALLOW, "connections too");
    d = decide(p, "nowhere.test", 443);
    cr_assert(d.audit && d.action == ACTION_ALLOW && d.rule == NULL);
    policy_unref(p);
}

Test(request, keys_are_checked_with_lines)
{
    struct policy *p = policy_load_string("[allow a]\nhost = a.com\nmethods = get\n", NULL, NULL);
    cr_assert_null(p, "methods are case-sensitive");
    p = policy_load_string("[allow a]\nhost = a.com\naccess = read\n", NULL, NULL);
    cr_assert_null(p);
    p = policy_load_string("[allow a]\nhost = a.com\nmethods = GET\naccess = full\n", NULL, NULL);
    cr_assert_null(p, "methods or access");
    p = policy_load_string("[allow a]\nhost = a.com\npaths = repos/**\n", NULL, NULL);
    cr_assert_null(p, "not starting with /");
    p = policy_load_string("[allow a]\nhost = a.com\npaths = /a?b\n", NULL, NULL);
    cr_assert_null(p, "a query");
    p = policy_load_string("[allow a]\nhost = a.com\npaths = /a%2Fb\n", NULL, NULL);
    cr_assert_null(p, "an escape");
    p = policy_load_string("[allow a]\nhost = a.com\naudit = yes\n", NULL, NULL);
    cr_assert_null(p, "audit without request keys");
    p = policy_load_string("[allow a]\nhost = a.com\nmessage = a\x01\n", NULL, NULL);
    cr_assert_null(p);
    p = load("[allow a]\nhost = a.com\naccess = full\n");
    struct host h;
    const char *why;
    host_parse("a.com", 5, &h, &why);
    cr_assert(policy_inspects(p, &h, 443), "access = full still inspects");
    policy_unref(p);
}

Test(request, a_deny_rule_that_covers_an_allow_rule_is_a_warning)
{
    struct policy *p = load("[allow gh]\nhost = api.github.com, *.github.com\nmethods = GET\n"
                            "[deny all-github]\nhost = **.github.com\n"
                            "[allow ok]\nhost = example.com\npaths = /a/**\n"
                            "[deny partly]\nhost = example.com\npaths = /a/b/**\n");
    cr_assert_eq(policy_warning_count(p), 1);
    int line;
    const char *msg = policy_warning(p, 0, &line);
    cr_assert_eq(line, 1);
    cr_assert(strstr(msg, "'gh' can never allow") && strstr(msg, "'all-github'"), "%s", msg);
    policy_unref(p);
}

Test(request, a_broader_allow_rule_that_makes_request_keys_moot_is_a_warning)
{
    struct policy *p = load("[allow gh-read]\nhost = api.github.com\naccess = read-only\n"
                            "[allow github]\nhost = github.com, *.github.com\n"
                            "[allow tools]\nhost = example.com\nbinary = /usr/bin/git\n"
                            "[allow ex-read]\nhost = example.com\nmethods = GET\n"
                            "[allow other]\nhost = example.org\nport = 8443\n"
                            "[allow org-read]\nhost = example.org\nmethods = GET\n");
    cr_assert_eq(policy_warning_count(p), 1, "a binary-bound rule or other ports leave room");
    int line;
    const char *msg = policy_warning(p, 0, &line);
    cr_assert_eq(line, 1);
    cr_assert(strstr(msg, "'gh-read' limits methods or paths") && strstr(msg, "'github' (line 4)"),
              "%s", msg);
    policy_unref(p);
}

Test(request, host_header_names_the_connect_host)
{
    struct host h;
    const char *why;
    host_parse("api.github.com", 14, &h, &why);
    cr_assert(host_header_names("api.github.com", 14, &h, 443, 443));
    cr_assert(host_header_names("API.GitHub.com.", 15, &h, 443, 443), "case, a trailing dot");
    cr_assert(host_header_names("api.github.com:443", 18, &h, 443, 443));
    cr_assert_not(host_header_names("api.github.com:8443", 19, &h, 443, 443));
    cr_assert_not(host_header_names("evil.com", 8, &h, 443, 443), "no domain fronting");
    cr_assert_not(host_header_names("api.github.com", 14, &h, 8443, 443),
                  "a port that is not the default must be named");
    cr_assert(host_header_names("api.github.com:8443", 19, &h, 8443, 443));
    cr_assert_not(host_header_names("api.github.com@evil.com", 23, &h, 443, 443));
    struct host v6;
    host_parse("[2001:db8::1]", 13, &v6, &why);
    cr_assert(host_header_names("[2001:0db8:0::1]", 16, &v6, 443, 443), "IPv6 spellings");
    cr_assert(host_header_names("[2001:db8::1]:443", 17, &v6, 443, 443));
    cr_assert_not(host_header_names("2001:db8::1", 11, &v6, 443, 443), "brackets required");
}

/* ---- secrets: where a value may go ---- */

Test(secrets, bound_to_hosts_ports_and_programs)
{
    setenv("EGRESSD_TEST_SECRET", "v", 1);
    struct policy *p = load("[secret gh]\nvalue_env = EGRESSD_TEST_SECRET\nhosts = api.github.com\n"
                            "binary = /usr/bin/git\n"
                            "[secret any]\nvalue_env = EGRESSD_TEST_SECRET\nhosts = *.example.com\n"
                            "port = 8443\n"
                            "[allow gh]\nhost = api.github.com\n");
    struct host gh, other, ex;
    const char *why;
    host_parse("api.github.com", 14, &gh, &why);
    host_parse("github.com", 10, &other, &why);
    host_parse("a.example.com", 13, &ex, &why);
    struct identity *git = identity_new(), *py = identity_new();
    identity_add_exe(git, (size_t)identity_add_holder(git, 10), "/usr/bin/git");
    identity_add_exe(py, (size_t)identity_add_holder(py, 11), "/usr/bin/python3.11");
    cr_assert_null(policy_secret_refusal(p, 0, &gh, 443, git));
    cr_assert(strstr(policy_secret_refusal(p, 0, &gh, 443, py), "calling program"));
    struct identity *child = identity_new();
    size_t hc = (size_t)identity_add_holder(child, 12);
    identity_add_exe(child, hc, "/usr/bin/python3.11");
    identity_add_exe(child, hc, "/usr/bin/git");
    cr_assert_not_null(policy_secret_refusal(p, 0, &gh, 443, child),
                       "a child of a bound program does not inherit its credential");
    identity_free(child);
    cr_assert_not_null(policy_secret_refusal(p, 0, &gh, 443, NULL), "doubt: never the value");
    cr_assert(strstr(policy_secret_refusal(p, 0, &other, 443, git), "host and port"));
    cr_assert_not_null(policy_secret_refusal(p, 0, &gh, 8443, git), "443 by default");
    cr_assert_null(policy_secret_refusal(p, 1, &ex, 8443, NULL));
    cr_assert_not_null(policy_secret_refusal(p, 1, &ex, 443, NULL));
    /* inspection follows a secret's hosts, on every port; a secret allows nothing */
    cr_assert(policy_inspects(p, &gh, 443));
    cr_assert(policy_inspects(p, &gh, 8443));
    cr_assert_not(policy_inspects(p, &other, 443));
    struct policy_decision d;
    policy_decide_as(p, &ex, 8443, NULL, &d);
    cr_assert_eq(d.action, ACTION_DENY, "no allow rule, no tunnel, secret or not");
    policy_decide_as(p, &gh, 443, NULL, &d);
    cr_assert_eq(d.action, ACTION_INSPECT);
    cr_assert(policy_wants_identity(p, &gh, 443), "a secret bound to programs needs the caller");
    cr_assert(policy_uses_tls(p));
    char buf[2048];
    policy_explain(p, &gh, 443, py, NULL, buf, sizeof(buf));
    cr_assert(strstr(buf, "secret 'gh': egressd-secret-gh is refused here"), "%s", buf);
    cr_assert_null(strstr(buf, "=v"), "never the value");
    identity_free(git);
    identity_free(py);
    policy_unref(p);
}

Test(request, a_method_override_counts_as_a_second_method)
{
    struct policy *p = load("[deny no-delete]\nhost = a.com\nmethods = DELETE\n"
                            "[allow rw]\nhost = a.com\naccess = read-write\n");
    struct host h;
    const char *why;
    host_parse("a.com", 5, &h, &why);
    struct policy_decision d;
    struct request_view plain = {"POST", "/x", "/x", NULL};
    policy_decide_request(p, &h, 443, NULL, &plain, &d);
    cr_assert_eq(d.action, ACTION_ALLOW);
    struct request_view over = {"POST", "/x", "/x", "delete"};
    policy_decide_request(p, &h, 443, NULL, &over, &d);
    cr_assert_eq(d.action, ACTION_DENY, "a deny rule takes the override, in any case");
    cr_assert_str_eq(d.rule, "no-delete");
    policy_unref(p);
    p = load("[allow rw]\nhost = a.com\naccess = read-write\n");
    struct request_view purge = {"POST", "/x", "/x", "PURGE"};
    policy_decide_request(p, &h, 443, NULL, &purge, &d);
    cr_assert_eq(d.action, ACTION_DENY, "an allow rule must list both methods");
    struct request_view put = {"POST", "/x", "/x", "PUT"};
    policy_decide_request(p, &h, 443, NULL, &put, &d);
    cr_assert_eq(d.action, ACTION_ALLOW);
    policy_unref(p);
}
