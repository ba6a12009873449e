/*
 * main.c - the command line of egressd (DESIGN section 2).
 *
 *   egressd [-c FILE]                   run
 *   egressd -t [-c FILE]                check the configuration
 *   egressd --explain HOST:PORT [-c F]  show the decision for a destination
 *   egressd --print-env [-c FILE]       environment for sandboxed processes
 *   egressd --suggest [-c FILE] [--from LOG | --admin URL]
 *                                       rules proposed for what was denied
 *   egressd -V | -h
 */
#include "proxy.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#define DEFAULT_CONFIG "/etc/egressd/egressd.ini"

static void usage(FILE *out)
{
    fprintf(out, "usage: egressd [-c FILE]                 run the proxy\n"
                 "       egressd -t [-c FILE]              check the configuration\n"
                 "       egressd --explain HOST:PORT [--method M] [--path P] [--binary PATH]\n"
                 "                       [-c FILE]         show the policy decision\n"
                 "       egressd --print-env [-c FILE]     the environment of a sandboxed process\n"
                 "       egressd --suggest [-c FILE] [--from LOG | --admin URL]\n"
                 "                                         [allow] rules proposed for denials\n"
                 "       egressd -V | -h                   version | this help\n"
                 "FILE defaults to " DEFAULT_CONFIG "\n");
}

static void report_to_stderr(void *ctx, const char *file, int line, const char *msg)
{
    int *count = ctx;
    ++*count;
    if (line > 0)
        fprintf(stderr, "%s:%d: %s\n", file, line, msg);
    else
        fprintf(stderr, "%s: %s\n", file, msg);
}

struct options {
    const char *config, *target, *binary, *method, *path, *from, *admin;
    bool check, env, suggest;
};

/* The calling program --explain was given, as the kernel would report it
 * (symlinks resolved); NULL with *fail set when out of memory. */
static struct identity *explained_identity(const char *binary, bool *fail)
{
    char real[4096];
    struct identity *id = NULL;
    *fail = false;
    if (binary == NULL)
        return NULL;
    if ((id = identity_new()) == NULL || identity_add_holder(id, 0) != 0 ||
        identity_add_exe(id, 0, realpath(binary, real) != NULL ? real : binary) != 0) {
        identity_free(id);
        *fail = true;
        return NULL;
    }
    return id;
}

/* A request for --explain: its method and path as rules see them. */
static int explained_request(const struct options *o, struct request_view *rq, char *path,
                             char *folded, size_t cap)
{
    const char *why, *target = o->path ? o->path : "/";
    if (http_path_check(target, strlen(target), &why) != 0 ||
        http_path_view(target, strlen(target), path, cap, folded, cap, &why) != 0) {
        fprintf(stderr, "egressd: --path %s: %s\n", target, why);
        return -1;
    }
    *rq = (struct request_view){o->method ? o->method : "GET", path, folded, NULL};
    return 0;
}

static int explain(struct policy *p, const struct options *o)
{
    struct host h;
    uint16_t port;
    const char *why;
    char out[4096], path[2048], folded[2048];
    struct request_view rq;
    bool fail, request = o->method != NULL || o->path != NULL;
    if (host_port_parse(o->target, strlen(o->target), 443, &h, &port, &why) != 0) {
        fprintf(stderr, "egressd: %s: %s\n", o->target, why);
        return 2;
    }
    if (request && explained_request(o, &rq, path, folded, sizeof(path)) != 0)
        return 2;
    struct identity *id = explained_identity(o->binary, &fail);
    if (fail) {
        fprintf(stderr, "egressd: out of memory\n");
        return 1;
    }
    policy_explain(p, &h, port, id, request ? &rq : NULL, out, sizeof(out));
    identity_free(id);
    fputs(out, stdout);
    return 0;
}

/* -t: ok, and the warnings (rules that can never match). */
static int check(const struct policy *p, const char *file)
{
    for (size_t i = 0; i < policy_warning_count(p); i++) {
        int line;
        const char *msg = policy_warning(p, i, &line);
        fprintf(stderr, "%s:%d: warning: %s\n", file, line, msg);
    }
    printf("%s: ok (%zu rules)\n", file, policy_rule_count(p));
    return 0;
}

/* The environment a sandboxed process needs to use egressd and trust its CA. */
static int print_env(const struct policy *p)
{
    const struct proxy_settings *set = policy_settings(p);
    const struct tls_settings *t = policy_tls(p);
    printf("HTTP_PROXY=http://%s\nHTTPS_PROXY=http://%s\nhttp_proxy=http://%s\n"
           "https_proxy=http://%s\nNO_PROXY=localhost,127.0.0.1,::1\n"
           "no_proxy=localhost,127.0.0.1,::1\nNODE_USE_ENV_PROXY=1\n",
           set->listen, set->listen, set->listen, set->listen);
    if (policy_uses_tls(p))
        printf("SSL_CERT_FILE=%s\nREQUESTS_CA_BUNDLE=%s\nCURL_CA_BUNDLE=%s\nGIT_SSL_CAINFO=%s\n"
               "NODE_EXTRA_CA_CERTS=%s\n",
               t->bundle, t->bundle, t->bundle, t->bundle, t->ca_cert);
    for (size_t i = 0; i < policy_secret_count(p); i++) { /* placeholders, never values */
        struct secret_view sv;
        policy_secret_view(p, i, &sv);
        const char *name;
        for (size_t j = 0; (name = policy_secret_env(p, i, j)) != NULL; j++)
            printf("%s=%s\n", name, sv.placeholder);
    }
    return 0;
}

/* Signals are taken by the main thread with sigwait: every thread inherits
 * this mask, so no handler ever runs inside a worker. */
static void block_signals(void)
{
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN); /* a write to a closed peer must fail with EPIPE, not kill us */
}

/* Stop accepting, let running connections finish for shutdown_timeout. */
static int stop(struct runtime *rt, struct server *srv, struct admin *admin, struct pool *pool)
{
    struct snapshot *snap = holder_acquire(&rt->cfg);
    unsigned timeout_ms = policy_settings(snap->pol)->shutdown_timeout_ms;
    snapshot_unref(snap);
    atomic_store(&rt->stopping, true);
    notify_stopping();
    server_stop(srv);
    admin_stop(admin);
    log_msg(LOGL_INFO, "server", "stopping: no new connections; waiting up to %u ms", timeout_ms);
    unsigned busy = pool_stop(pool, timeout_ms);
    if (busy > 0) {
        log_msg(LOGL_WARN, "server", "exiting with %u connections still open", busy);
        return 0; /* their workers still use the runtime: the process exit reclaims it */
    }
    snapshot_unref(atomic_load(&rt->cfg.cur));
    trust_store_free(rt->trust);
    budget_registry_free(rt->budgets);
    denials_free(rt->denials);
    access_log_free(rt->access);
    free(rt);
    log_msg(LOGL_INFO, "server", "stopped");
    return 0;
}

static int run(struct policy *p, const char *path)
{
    const struct proxy_settings *set = policy_settings(p);
    char err[400];
    log_configure(set->log_format, set->log_level);
    block_signals();
    struct pool_settings ps = {set->workers, set->max_workers, set->queue, set->queue_timeout_ms};
    struct runtime *rt = calloc(1, sizeof(*rt));
    struct snapshot *first = rt ? snapshot_new(p, NULL, err, sizeof(err)) : NULL;
    if (first == NULL) {
        log_msg(LOGL_ERROR, "config", "%s", rt ? err : "out of memory");
        policy_unref(p);
        free(rt);
        return 1;
    }
    holder_init(&rt->cfg, first);
    rt->trust = trust_store_new();
    rt->budgets = budget_registry_new();
    if (rt->budgets != NULL)
        budget_registry_sync(rt->budgets, p, now_ms());
    rt->denials = denials_new(set->denial_record);
    rt->access = access_log_new();
    bool made = rt->trust && rt->budgets && rt->denials && rt->access;
    struct pool *pool = made ? pool_start(rt, &ps) : NULL;
    struct server *srv = pool ? server_start(rt, pool, path) : NULL;
    if (srv == NULL) {
        log_msg(LOGL_ERROR, "server", "cannot start: %s",
                pool ? "see above" : "out of memory for the worker pool");
        return 1; /* the process exits: nothing to tidy for */
    }
    struct admin *admin = admin_start(rt, pool, set);
    if (set->admin_len > 0 && admin == NULL)
        log_msg(LOGL_ERROR, "server",
                "the admin endpoint did not start; the proxy runs without it");
    log_policy_warnings(p, path);
    log_msg(LOGL_INFO, "server", "egressd %s started with %s (%zu rules)", EGRESSD_VERSION, path,
            policy_rule_count(p));
    server_run(srv);
    return stop(rt, srv, admin, pool);
}

/* The command line into o; -1 (after usage) when it is wrong, 1 when done
 * (version, help). */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {{"explain", required_argument, NULL, 'e'},
                                             {"print-env", no_argument, NULL, 'E'},
                                             {"binary", required_argument, NULL, 'b'},
                                             {"method", required_argument, NULL, 'm'},
                                             {"path", required_argument, NULL, 'p'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {"suggest", no_argument, NULL, 'S'},
                                             {"from", required_argument, NULL, 'f'},
                                             {"admin", required_argument, NULL, 'a'},
                                             {NULL, 0, NULL, 0}};
    int c;
    *o = (struct options){.config = DEFAULT_CONFIG};
    while ((c = getopt_long(argc, argv, "c:thV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config = optarg;
            break;
        case 't':
            o->check = true;
            break;
        case 'e':
            o->target = optarg;
            break;
        case 'E':
            o->env = true;
            break;
        case 'b':
            o->binary = optarg;
            break;
        case 'm':
            o->method = optarg;
            break;
        case 'p':
            o->path = optarg;
            break;
        case 'S':
            o->suggest = true;
            break;
        case 'f':
            o->from = optarg;
            break;
        case 'a':
            o->admin = optarg;
            break;
        case 'V':
            printf("egressd %s\n", EGRESSD_VERSION);
            return 1;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "egressd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    if ((o->from || o->admin) && (!o->suggest || (o->from && o->admin))) {
        fprintf(stderr, "egressd: --from and --admin go with --suggest, one of them\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options o;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? 2 : 0;
    /* secrets and keys live in this process: no core file, no ptrace by
     * the same user, no /proc/<pid>/mem */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        fprintf(stderr, "egressd: prctl(PR_SET_DUMPABLE): %s\n", strerror(errno));
        return 1;
    }
    int problems = 0;
    struct policy *p = policy_load_file(o.config, report_to_stderr, &problems);
    if (p == NULL) {
        fprintf(stderr, "egressd: %s: %d problem%s%s\n", o.config, problems,
                problems == 1 ? "" : "s",
                o.check || o.target || o.env || o.suggest ? "" : "; not started");
        return 1;
    }
    if (o.check)
        rc = check(p, o.config);
    else if (o.target != NULL)
        rc = explain(p, &o);
    else if (o.env)
        rc = print_env(p);
    else if (o.suggest)
        rc = suggest_run(p, o.config, o.from, o.admin);
    else
        return run(p, o.config); /* the server owns the policy from here */
    policy_unref(p);
    return rc;
}
