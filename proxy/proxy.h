/*
 * proxy.h - what the files of the daemon share: the server (listener,
 * acceptor, worker pool, configuration snapshot), one client connection,
 * deadline-bounded socket I/O, the error responses egressd writes itself,
 * and structured logging.
 */
#ifndef EGRESSD_PROXY_H
#define EGRESSD_PROXY_H

#include "../inference/inference.h"
#include "../policy/policy.h"
#include "../tls/tls.h"

#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#define EGRESSD_VERSION "0.1.0"
#define VIA_HEADER      "Via: 1.1 egressd\r\n"

/* ---- log.c ---------------------------------------------------------------- */

/* Fields of one structured log line; NULL strings and negative numbers are
 * left out. */
struct log_fields {
    const char *event, *src, *host, *action, *rule, *reason, *detail;
    const char *route, *protocol, *model, *binary;
    long port, status, pid;
    long long bytes_up, bytes_down, duration_ms, tokens_in, tokens_out;
};
#define LOG_FIELDS_INIT                                                                            \
    {                                                                                              \
        .port = -1, .status = -1, .pid = -1, .bytes_up = -1, .bytes_down = -1, .duration_ms = -1,  \
        .tokens_in = -1, .tokens_out = -1                                                          \
    }

void log_configure(enum log_format fmt, enum log_level level);
bool log_enabled(enum log_level level);
void log_event(enum log_level level, const struct log_fields *f);
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- io.c ----------------------------------------------------------------- */

/* A CLOCK_MONOTONIC time ms from now, for condition variables set to that clock. */
struct timespec deadline_in(unsigned ms);
void set_nodelay(int fd);
void format_sockaddr(const struct sockaddr *sa, char *buf, size_t len);

/* ---- respond.c ------------------------------------------------------------ */

struct proxy_error {
    int status;
    const char *code;
};
extern const struct proxy_error ERR_BAD_REQUEST, ERR_HEADERS_TOO_LARGE, ERR_REQUEST_TIMEOUT,
    ERR_POLICY_DENIED, ERR_SSRF_DENIED, ERR_DNS_FAILURE, ERR_UPSTREAM_UNREACHABLE,
    ERR_UPSTREAM_TIMEOUT, ERR_OVERLOADED, ERR_USE_CONNECT, ERR_UPSTREAM_ERROR;

/* Write egressd's own JSON error response; rule may be NULL. */
void respond_error(int fd, const struct proxy_error *e, const char *detail, const char *rule);

/* What interception needs: made when a policy has [inference], shared by
 * the snapshots whose [tls] is the same. */
struct intercept {
    atomic_int refs;
    struct tls_settings set;
    struct tls_server *tls_server;
    struct tls_client *tls_client; /* NULL when upstream_ca could not be read */
    struct backend_pool *pool;
};

/* snapshot.c: the configuration in force, swapped whole on reload. */
struct snapshot {
    atomic_int refs;
    struct policy *pol;
    struct intercept *ic; /* NULL without [inference] */
};
struct snapshot_holder {
    _Atomic(struct snapshot *) cur;
    atomic_int acquiring;
    atomic_uint generation;
};
/* Takes over the reference to p; reuses prev's interception resources when
 * [tls] is unchanged.  NULL with err on failure (p is then the caller's). */
struct snapshot *snapshot_new(struct policy *p, const struct snapshot *prev, char *err,
                              size_t errlen);
struct snapshot *snapshot_ref(struct snapshot *s);
void snapshot_unref(struct snapshot *s);
void holder_init(struct snapshot_holder *h, struct snapshot *first);
struct snapshot *holder_acquire(struct snapshot_holder *h);
void holder_swap(struct snapshot_holder *h, struct snapshot *next);
unsigned holder_generation(struct snapshot_holder *h);

/* ---- server.c ------------------------------------------------------------- */

struct server;

struct server *server_start(struct snapshot *first, const char *config_path);
/* Runs the signal loop until SIGTERM/SIGINT, then drains; returns exit code. */
int server_run(struct server *s);
/* The configuration in force, with a reference the caller drops. */
struct snapshot *server_snapshot(struct server *s);
/* Changes at every reload: long-lived connections check their destination again. */
unsigned server_generation(struct server *s);
/* Trust on first use of executables: kept across reloads. */
struct trust_store *server_trust(struct server *s);

/* Pool and cache state, for /metrics. */
struct metrics_gauges {
    unsigned queue, busy, total;
    struct tls_cache_stats cache;
};
void server_gauges(struct server *s, struct metrics_gauges *g);
bool server_stopping(struct server *s);
/* A listening socket on addr (logged with what); -1 after logging why. */
int listen_socket(const struct sockaddr_storage *addr, socklen_t len, const char *text,
                  const char *what);

/* ---- metrics.c and admin.c -------------------------------------------------- */

void metrics_connection(enum policy_action a);
void metrics_tunnel(int delta);
void metrics_bytes(uint64_t up, uint64_t down);
void metrics_upstream_error(const char *code);
void metrics_reload(bool ok);
/* Connections answered 503 before any worker saw them, by why. */
enum refused { REFUSED_QUEUE_FULL, REFUSED_BUSY, REFUSED_DESCRIPTORS, REFUSED_STOPPING, REFUSED_N };
void metrics_refused(enum refused why);
void metrics_inference(const char *route, int status);
size_t metrics_render(char *buf, size_t cap, const struct metrics_gauges *g);

/* notify.c: sd_notify, or nothing outside systemd */
void notify_ready(const char *status);
void notify_reloading(void);
void notify_stopping(void);
void notify_watchdog(void);
unsigned notify_watchdog_ms(void); /* 0: no watchdog */

struct admin;
struct admin *admin_start(struct server *srv, const struct proxy_settings *set);
void admin_stop(struct admin *a);

/* ---- connection handling ---------------------------------------------------- */

struct conn {
    struct server *srv;
    struct relay_pipes *pipes; /* the worker's */
    struct snapshot *snap;
    unsigned generation; /* of the configuration snap was taken from */
    struct policy *pol;  /* snap->pol */
    const struct proxy_settings *set;
    int fd;
    struct stream *cs; /* fd as a plain stream, for head reading */
    char src[INET6_ADDRSTRLEN + 8];
    char buf[HTTP_HEAD_MAX]; /* client bytes: a head, then what followed it */
    size_t len;
    int64_t t0;
    struct upstream *upstream;  /* forward.c: the kept upstream connection */
    const char *intercept_host; /* intercept.c: for the inference log lines */
    long intercept_port;
    struct identity *id; /* looked up once, when a rule needs it */
    bool closed_cleanly; /* tunnel.c: both directions ended with EOF */
};

/* worker.c: decide for the connection's client, looking it up when a rule
 * names binaries; fills the log's pid and binary. */
void conn_decide(struct conn *c, const struct host *h, uint16_t port, struct policy_decision *d,
                 struct log_fields *f);
/* After a reload (the generation moved past *gen): the new snapshot, with a
 * reference, and its decision for h:port; NULL when nothing changed. */
struct snapshot *conn_redecide(struct conn *c, const struct host *h, uint16_t port, unsigned *gen,
                               struct policy_decision *d);

/* worker.c */
void conn_serve(struct server *srv, int fd, const struct sockaddr_storage *peer,
                struct relay_pipes *pipes);
/* Log a decision or an error for this connection and answer with e. */
void conn_fail(struct conn *c, const struct log_fields *f, const struct proxy_error *e,
               const char *detail);

/* dial.c: resolve, check every address, connect to a checked one. */
struct dial_result {
    int fd;
    const struct proxy_error *err; /* NULL on success */
    const char *rule;              /* a deny rule that named a resolved address */
    char detail[320];
};
void dial(const struct conn *c, const struct host *h, uint16_t port,
          const struct policy_decision *d, struct dial_result *r);

/* Connect to an inference backend (no address check: the operator chose it). */
int dial_backend(const struct proxy_settings *set, const char *host, uint16_t port, char *err,
                 size_t errlen);

/* intercept.c: after the decision to intercept a CONNECT to h. */
void intercept_tunnel(struct conn *c, const struct host *h, struct log_fields *f);
/* intercept.c: an absolute-form request to an inference host; true: keep-alive. */
bool intercept_forward(struct conn *c, const struct http_msg *m, const struct host *h,
                       uint16_t port);

/* relay.c: both directions until both have ended, or idle_timeout. */
struct relay_stats {
    uint64_t up, down;
    const char *end; /* why it ended */
};
struct relay_check {
    bool (*still_allowed)(void *ctx); /* cheap when nothing changed: called often */
    void *ctx;
};
/* A worker's two pipes (one per direction), -1 until first used. */
struct relay_pipes {
    int fd[2][2];
};
#define RELAY_PIPES_INIT                                                                           \
    {                                                                                              \
        {                                                                                          \
            {-1, -1},                                                                              \
            {                                                                                      \
                -1, -1                                                                             \
            }                                                                                      \
        }                                                                                          \
    }
void relay(int client, int upstream, int idle_ms, const struct relay_check *check,
           struct relay_pipes *rp, struct relay_stats *st);
void relay_pipes_close(struct relay_pipes *rp);

/* tunnel.c: the connection ends with the tunnel. */
void tunnel_serve(struct conn *c, const struct http_msg *m);
/* forward.c: true when the client connection may carry another request. */
bool forward_serve(struct conn *c, const struct http_msg *m);
void forward_release(struct conn *c);

/* Remove the first n bytes of c->buf (a message that has been handled). */
void conn_consume(struct conn *c, size_t n);

#endif
