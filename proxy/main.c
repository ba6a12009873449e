/*
 * main.c - the command line of egressd (DESIGN section 2).
 *
 *   egressd [-c FILE]                   run
 *   egressd -t [-c FILE]                check the configuration
 *   egressd --explain HOST:PORT [-c F]  show the decision for a destination
 *   egressd --print-env [-c FILE]       environment for sandboxed processes
 *   egressd -V | -h
 */
#include "proxy.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONFIG "/etc/egressd/egressd.ini"

static void usage(FILE *out)
{
    fprintf(out, "usage: egressd [-c FILE]                 run the proxy\n"
                 "       egressd -t [-c FILE]              check the configuration\n"
                 "       egressd --explain HOST:PORT [--binary PATH] [-c FILE]\n"
                 "                                         show the policy decision\n"
                 "       egressd --print-env [-c FILE]     the environment of a sandboxed process\n"
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

static int explain(struct policy *p, const char *target, const char *binary)
{
    struct host h;
    uint16_t port;
    const char *why;
    char out[1024];
    struct identity *id = NULL;
    if (host_port_parse(target, strlen(target), 443, &h, &port, &why) != 0) {
        fprintf(stderr, "egressd: %s: %s\n", target, why);
        return 2;
    }
    if (binary != NULL) {
        char real[4096];
        /* as the kernel would report it: symlinks resolved */
        if ((id = identity_new()) == NULL || identity_add_holder(id, 0) != 0 ||
            identity_add_exe(id, 0, realpath(binary, real) != NULL ? real : binary) != 0) {
            fprintf(stderr, "egressd: out of memory\n");
            identity_free(id);
            return 1;
        }
    }
    policy_explain(p, &h, port, id, out, sizeof(out));
    identity_free(id);
    fputs(out, stdout);
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
    if (policy_intercepts(p))
        printf("SSL_CERT_FILE=%s\nREQUESTS_CA_BUNDLE=%s\nCURL_CA_BUNDLE=%s\nGIT_SSL_CAINFO=%s\n"
               "NODE_EXTRA_CA_CERTS=%s\n",
               t->bundle, t->bundle, t->bundle, t->bundle, t->ca_cert);
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
    struct pool *pool = rt->trust && rt->budgets ? pool_start(rt, &ps) : NULL;
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
    log_msg(LOGL_INFO, "server", "egressd %s started with %s (%zu rules)", EGRESSD_VERSION, path,
            policy_rule_count(p));
    server_run(srv);
    return stop(rt, srv, admin, pool);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"explain", required_argument, NULL, 'e'}, {"print-env", no_argument, NULL, 'E'},
        {"binary", required_argument, NULL, 'b'},  {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},       {NULL, 0, NULL, 0}};
    const char *path = DEFAULT_CONFIG, *target = NULL, *binary = NULL;
    bool check = false, env = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:thV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check = true;
            break;
        case 'e':
            target = optarg;
            break;
        case 'E':
            env = true;
            break;
        case 'b':
            binary = optarg;
            break;
        case 'V':
            printf("egressd %s\n", EGRESSD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "egressd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    int problems = 0;
    struct policy *p = policy_load_file(path, report_to_stderr, &problems);
    if (p == NULL) {
        fprintf(stderr, "egressd: %s: %d problem%s%s\n", path, problems, problems == 1 ? "" : "s",
                check || target || env ? "" : "; not started");
        return 1;
    }
    int rc;
    if (check) {
        printf("%s: ok (%zu rules)\n", path, policy_rule_count(p));
        rc = 0;
    } else if (target != NULL) {
        rc = explain(p, target, binary);
    } else if (env) {
        rc = print_env(p);
    } else {
        return run(p, path); /* the server owns the policy from here */
    }
    policy_unref(p);
    return rc;
}
