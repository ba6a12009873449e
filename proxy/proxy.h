/*
 * proxy.h - what the files of the daemon share.
 *
 * The calls run one way, file by file:
 *   main -> server -> pool -> requests -> tunnel, forward, intercept
 *        -> local -> conn -> dial, relay, denials, log, metrics
 * with local -> access; main -> admin -> pool (its gauges), denials,
 * access; main -> suggest -> denials.  A connection carries a small
 * runtime (the configuration holder, the trust store, the denial record
 * and access requests, the stop flag), not the server, so nothing below
 * the server can call back into it.
 *
 * Error conventions: handlers return a bool, true when the connection may
 * carry another request; pipeline steps return an enum named for them
 * (enum send_result, ...); constructors return a pointer or NULL, with an
 * error buffer where the reason matters; every failure is logged once,
 * where it is answered.
 */
#ifndef EGRESSD_PROXY_H
#define EGRESSD_PROXY_H

#include "../http/http.h"
#include "../inference/inference.h"
#include "../policy/policy.h"
#include "../tls/tls.h"

#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#define EGRESSD_VERSION     "0.2.0"
#define VIA_HEADER          "Via: 1.1 egressd\r\n"
#define CONNECT_ESTABLISHED "HTTP/1.1 200 Connection Established\r\n\r\n"

/* A CLOCK_MONOTONIC time ms from now, for condition variables set to that clock. */
static inline struct timespec deadline_in(unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

/* ---- log.c ---------------------------------------------------------------- */

/* Fields of one structured log line; NULL strings and negative numbers are
 * left out. */
struct log_fields {
    const char *event, *src, *host, *action, *rule, *reason, *detail, *method, *path;
    const char *denial; /* a denial's stage, for the record and --suggest --from */
    const char *route, *protocol, *model, *binary, *next_route, *secrets;
    long port, status, pid, attempt, attempts;
    long long bytes_up, bytes_down, duration_ms, tokens_in, tokens_out;
};
#define LOG_FIELDS_INIT                                                                            \
    {                                                                                              \
        .port = -1, .status = -1, .pid = -1, .attempt = -1, .attempts = -1, .bytes_up = -1,        \
        .bytes_down = -1, .duration_ms = -1, .tokens_in = -1, .tokens_out = -1                     \
    }

void log_configure(enum log_format fmt, enum log_level level);
bool log_enabled(enum log_level level);
void log_event(enum log_level level, const struct log_fields *f);
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The policy's warnings (rules that can never match), one line each. */
void log_policy_warnings(const struct policy *p, const char *file);

/* ---- sockets.c ------------------------------------------------------------- */

void set_nodelay(int fd);
void format_sockaddr(const struct sockaddr *sa, char *buf, size_t len);
/* A listening socket on addr (logged with what); -1 after logging why. */
int listen_socket(const struct sockaddr_storage *addr, socklen_t len, const char *text,
                  const char *what);

/* ---- snapshot.c: the configuration in force, swapped whole on reload ------- */

/* What interception needs: made when a policy has [inference], shared by
 * the snapshots whose [tls] is the same. */
struct intercept {
    atomic_int refs;
    struct tls_settings set;
    struct tls_server *tls_server;
    struct tls_client *tls_client; /* NULL when upstream_ca could not be read */
    struct backend_pool *pool;
};

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

/* What every connection needs of the daemon. */
struct runtime {
    struct snapshot_holder cfg;
    struct trust_store *trust;       /* trust on first use: kept across reloads */
    struct budget_registry *budgets; /* what [budget] sections used: kept across reloads */
    struct denials *denials;         /* the denial record: kept across reloads */
    struct access_log *access;       /* access requests: kept across reloads */
    atomic_bool stopping;
};

/* ---- denials.c: the denial record ------------------------------------------- */

/* Where a denial happened: the destination (connect), its address (ssrf),
 * a request inside an inspected connection (request), a secret sent where
 * it may not go (secret). */
enum denial_stage { DENIAL_CONNECT, DENIAL_SSRF, DENIAL_REQUEST, DENIAL_SECRET, DENIAL_STAGES };
const char *denial_stage_name(enum denial_stage s); /* metrics.c: its labels */

/* One denial; NULL strings are not known.  method and path (the decoded
 * path; the record folds it) only for a request. */
struct denial_note {
    enum denial_stage stage;
    const char *host;
    unsigned port;
    const char *binary, *method, *path, *rule, *reason;
};
struct denials;
/* A record of at most cap entries (0: none kept, only counted). */
struct denials *denials_new(unsigned cap);
void denials_free(struct denials *d);
/* The one entry point for a denial: counted (egressd_denials_total{stage})
 * and recorded; d may be NULL (counted only).  Thread-safe. */
void denials_note(struct denials *d, const struct denial_note *n);
/* Recorded count times, seen from first_ms to last_ms (wall clock):
 * for --suggest reading a log.  Not counted. */
void denials_add(struct denials *d, const struct denial_note *n, unsigned long long count,
                 int64_t first_ms, int64_t last_ms);
/* After a reload: a new bound (the least recently seen go first). */
void denials_resize(struct denials *d, unsigned cap);
/* Empty it; how many entries there were. */
size_t denials_clear(struct denials *d);
/* Every entry, most recently seen first (under the record's lock: fn must
 * not call back into it; its strings live until the record changes). */
void denials_each(struct denials *d, void (*fn)(void *ctx, const struct denial_seen *s), void *ctx);
/* The record as JSON (malloc'd, *len bytes); NULL when out of memory. */
char *denials_json(struct denials *d, size_t *len);
/* Milliseconds of the wall clock, and as "2026-01-02T03:04:05.678Z". */
int64_t wall_ms(void);
void format_wall_ms(int64_t ms, char *buf, size_t cap);

/* ---- access.c: access requests (POST http://egressd.local/requests) -------- */

#define ACCESS_BODY_MAX   4096
#define ACCESS_REASON_MAX 512
struct access_request {
    char host[POLICY_HOST_MAX + 1];
    uint16_t port;
    char method[33], path[1024]; /* "" when not given */
    char reason[ACCESS_REASON_MAX];
};
/* Read and check one (a JSON object); 0, or -1 with why in err. */
int access_parse(const char *body, size_t len, struct access_request *r, char *err, size_t errlen);
struct access_log;
struct access_log *access_log_new(void);
void access_log_free(struct access_log *a);
/* Keep r, asked from src by pid (-1: not known) running binary (NULL);
 * its id (0 when out of memory).  The oldest is dropped past the bound. */
unsigned long long access_log_add(struct access_log *a, const struct access_request *r,
                                  const char *src, long pid, const char *binary);
/* The kept requests as JSON, newest first (malloc'd); NULL when out of memory. */
char *access_log_json(struct access_log *a, size_t *len);

/* ---- metrics.c -------------------------------------------------------------- */

void metrics_connection(enum policy_action a);
void metrics_tunnel(int delta);
void metrics_bytes(uint64_t up, uint64_t down);
void metrics_upstream_error(const char *code);
void metrics_reload(bool ok);
/* Connections answered 503 before any worker saw them, by why. */
enum refused { REFUSED_QUEUE_FULL, REFUSED_BUSY, REFUSED_DESCRIPTORS, REFUSED_STOPPING, REFUSED_N };
void metrics_refused(enum refused why);
void metrics_inference(const char *route, int status);
/* One inspected request, by what was decided (allow, deny, audit). */
void metrics_request(const struct policy_decision *d);
/* A secret swapped into a request, or refused one ("substituted", "refused"). */
void metrics_secret(const char *secret, const char *result);
/* Tokens an answer reported (-1: not reported), by the route that answered. */
void metrics_tokens(const char *route, long long in, long long out);
/* One attempt at a backend, by route and result (struct attempt_record). */
void metrics_attempt(const char *route, const char *result);
void metrics_denial(enum denial_stage stage);
void metrics_access_request(void);
/* What the owners of state report when /metrics is asked for. */
struct metrics_gauges {
    unsigned queue, busy, total;
    struct tls_cache_stats cache;
    struct budget_gauge budgets[2 * POLICY_BUDGETS_MAX];
    size_t n_budgets;
};
size_t metrics_render(char *buf, size_t cap, const struct metrics_gauges *g);

/* ---- notify.c: sd_notify, or nothing outside systemd ------------------------- */

void notify_ready(const char *status);
void notify_reloading(void);
void notify_stopping(void);
void notify_watchdog(void);
unsigned notify_watchdog_ms(void); /* 0: no watchdog */

/* ---- relay.c: a tunnel's bytes, both ways, until both have ended ----------- */

struct relay_stats {
    uint64_t up, down;
    const char *end; /* why it ended */
};
struct relay_check {
    bool (*still_allowed)(void *ctx); /* cheap when nothing changed: called often */
    void *ctx;
};
/* A worker's two pipes (one per direction), -1 while closed. */
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
/* The same between two streams, TLS on either side (a WebSocket inside an
 * inspected connection): copied through a buffer, until either side ends. */
void relay_streams(struct stream *client, struct stream *upstream, int idle_ms,
                   const struct relay_check *check, struct relay_stats *st);

/* ---- conn.c: one client connection ------------------------------------------ */

struct conn {
    struct runtime *rt;
    struct relay_pipes *pipes; /* the worker's */
    struct snapshot *snap;
    unsigned generation; /* of the configuration snap was taken from */
    struct policy *pol;  /* snap->pol */
    const struct proxy_settings *set;
    int fd;
    struct bufconn in; /* the client: its stream, and bytes read and not yet used */
    char src[INET6_ADDRSTRLEN + 8];
    int64_t t0;
    struct upstream *upstream; /* forward.c: the kept upstream connection */
    struct identity *id;       /* looked up once, when a rule needs it */
    bool closed_cleanly;       /* tunnel.c: both directions ended with EOF */
    char *buf;                 /* HTTP_HEAD_MAX bytes for heads; a tunnel gives it back */
};

/* A connection for fd (NULL when out of memory: fd is closed). */
struct conn *conn_open(struct runtime *rt, int fd, const struct sockaddr_storage *peer,
                       struct relay_pipes *pipes);
/* The end: upstreams closed, the socket drained and closed, all freed. */
void conn_close(struct conn *c, const char *reason);
/* A tunnel past its head needs no head buffer: freed for the next
 * connection, so ten thousand held tunnels do not each keep one. */
void conn_drop_buffer(struct conn *c);
/* The program on the other end: looked up once per connection, on the
 * first need (NULL when out of memory; check ->unresolved). */
const struct identity *conn_identity(struct conn *c);
/* Decide for the connection's client, looking it up when a rule names
 * binaries; fills the log's pid and binary. */
void conn_decide(struct conn *c, const struct host *h, uint16_t port, struct policy_decision *d,
                 struct log_fields *f);
/* After a reload (the generation moved past *gen): the new snapshot, with a
 * reference, and its decision for h:port; NULL when nothing changed. */
struct snapshot *conn_redecide(struct conn *c, const struct host *h, uint16_t port, unsigned *gen,
                               struct policy_decision *d);
/* For a relay (struct relay_check): after a reload, is the destination
 * still decided `want`, and its address still permitted? */
struct conn_recheck {
    struct conn *c;
    const struct host *h;
    uint16_t port;
    int upstream; /* the connected socket whose address is checked again */
    unsigned generation;
    enum policy_action want;
};
bool conn_still_allowed(void *ctx);
/* Before a kept-alive client's next request: the configuration in force. */
void conn_follow_reload(struct conn *c);
/* Log a decision or an error for this connection and answer with e. */
void conn_fail(struct conn *c, const struct log_fields *f, const struct http_error *e,
               const char *detail);
/* The same with all an answer can say (method, path, message; keep). */
void conn_fail_info(struct conn *c, const struct log_fields *f, const struct http_error_info *info);
/* A destination denied by policy: 403 policy_denied with the rule, its
 * reason, the rule's message and a hint; closes. */
void conn_deny(struct conn *c, const struct log_fields *f, const struct host *h, uint16_t port,
               const struct policy_decision *d);
/* What a 403 for a denial d (made by p) says: detail, rule, message, whether a deny
 * rule made it, and the hint (into hint, cap bytes; POLICY_HINT_MAX) when
 * [proxy] hints is on.  rq: the request, or NULL for the destination. */
void conn_denial_info(struct conn *c, const struct policy *p, const struct host *h, uint16_t port,
                      const struct request_view *rq, const struct policy_decision *d,
                      struct http_error_info *info, char *hint, size_t cap);
/* When identity is configured (a rule names binaries): the caller looked
 * up, once, and its pid and binary into f. */
void conn_identify(struct conn *c, struct log_fields *f);
/* A denial answered elsewhere (conn_fail_info notes its own): into the
 * record and egressd_denials_total, from f's host, port and caller and
 * info's method, path, rule and detail; f gets the stage for its log line. */
void conn_note_denial(struct conn *c, struct log_fields *f, const struct http_error_info *info,
                      enum denial_stage stage);
/* After egressd answered a request itself (its head consumed): may the
 * connection carry the next one?  Only an HTTP/1.1 request not asking to
 * close, whose body was read and dropped here (bounded: a larger body is
 * not read), and not one waiting for 100 Continue: its client sends no
 * body until told, so the answer goes at once and the connection ends. */
bool conn_drain_request(struct conn *c, const struct http_msg *m);

/* ---- dial.c: resolve, check every address, connect to a checked one --------- */

struct dial_result {
    int fd;
    const struct http_error *err; /* NULL on success */
    const char *rule;             /* a deny rule that named a resolved address */
    char detail[320];
};
void dial(const struct conn *c, const struct host *h, uint16_t port,
          const struct policy_decision *d, struct dial_result *r);
/* Connect to an inference backend (no address check: the operator chose it). */
int dial_backend(const struct proxy_settings *set, const char *host, uint16_t port, char *err,
                 size_t errlen);

/* ---- exchange.c: one HTTP exchange between a client and an upstream --------- */

/* An upstream connection's buffer: a response head must fit it whole. */
#define UP_BUF_SIZE (64 * 1024)
/* A head egressd rebuilds, toward an upstream (from a request head of at
 * most HTTP_HEAD_MAX) or toward the client (from a response head of at
 * most UP_BUF_SIZE): the largest it reads, plus what it adds (a space after
 * each colon, a Host line, Via, Connection and the upgrade lines).  So a
 * rebuilt head fits, but for a request whose swapped secrets (section 11)
 * grow it past the room: that one is refused with 431, never sent cut. */
#define OUT_HEAD_MAX (UP_BUF_SIZE + HTTP_MAX_HEADERS + POLICY_HOST_MAX + 1024)
_Static_assert(OUT_HEAD_MAX > HTTP_HEAD_MAX + HTTP_MAX_HEADERS + POLICY_HOST_MAX + 1024,
               "a request head fits too");

/* How sending a request went. */
enum send_result {
    SENT,
    CLIENT_BAD,
    CLIENT_SLOW,
    CLIENT_GONE,
    CLIENT_TOO_LARGE, /* a body egressd had to read whole was larger than it may */
    UPSTREAM_FAILED,
    UPSTREAM_STALE
};

struct exchange {
    struct bufconn *client, *upstream;
    int io_ms; /* no byte either way for this long: the exchange fails */
    /* the request, kept past its head */
    enum http_framing framing;
    uint64_t length;
    bool has_length, expect_continue, is_head, client_close;
    bool websocket;                   /* Upgrade: websocket, with a key */
    char ws_key[HTTP_WS_KEY_LEN + 1]; /* the 101 must answer it */
    int minor;
    /* the response */
    int status;
    bool upstream_keep;
    uint64_t up_bytes, down_bytes;
    const char *why; /* what went wrong, for the log */
    char detail[320];
    /* a body read whole to swap placeholders in it (exchange_take_body) */
    struct body_buffer body;
    bool body_taken;
    bool secrets_sent; /* values in the head or body: upstream bytes never quoted, buffers wiped */
};
/* From the request head m, before it is consumed. */
void exchange_begin(struct exchange *x, struct bufconn *client, struct bufconn *upstream,
                    const struct http_msg *m, int io_ms);
/* What goes into a request head toward the origin besides the client's. */
struct outgoing_head {
    const struct host *h;        /* Host names it (and port, when not default_port) */
    uint16_t port, default_port; /* default_port: the scheme's (443 or 80) */
    const char *target;          /* origin form; "" or "?q" get their '/' */
    size_t target_len;
    const struct http_swaps *swaps; /* placeholders to swap in target and fields; NULL: none */
};
/* The request head toward the origin into o, in two steps around the
 * client's head being consumed (and its body perhaps taken whole): first
 * its method, target and end-to-end fields (placeholders swapped) and
 * Host; then the framing (a Content-Length for a body taken whole),
 * WebSocket's upgrade, Via and the blank line. */
void exchange_put_head(struct sbuf *o, const struct http_msg *m, const struct outgoing_head *oh);
void exchange_end_head(const struct exchange *x, struct sbuf *o);
/* Read the client's body whole, at most max bytes by deadline (answering
 * 100-continue first), and swap placeholders in it; the bits of those
 * swapped go in *swapped.  exchange_send then sends it as it is now. */
enum send_result exchange_take_body(struct exchange *x, const struct http_swaps *sw, size_t max,
                                    int64_t deadline, uint64_t *swapped);
/* The head (built by the caller) and the body upstream; reused: the
 * upstream connection was kept from an earlier request. */
enum send_result exchange_send(struct exchange *x, const char *head, size_t len, bool reused);
/* What the exchange holds past its request (a body taken whole), and the
 * caller's head buffer (head_cap bytes; NULL: none) wiped when values went
 * into either. */
void exchange_end(struct exchange *x, char *head, size_t head_cap);
/* The answer to a send that failed: the client's faults (400, 408, 413),
 * else err or 502; NULL when the client is gone (nobody to answer). */
const struct http_error *exchange_client_error(enum send_result rc, const struct http_error *err);
/* The final response head: NULL, or the error to answer (*stale: a kept
 * connection closed before it said anything). */
const struct http_error *exchange_response(struct exchange *x, struct http_msg *r, bool *stale);
/* The response head (built in out) and body to the client; true when both
 * ends may carry another exchange (or after a 101: the caller relays). */
bool exchange_relay(struct exchange *x, const struct http_msg *r, char *out, size_t cap);
/* After a 101: both ways, raw, until either side ends. */
void exchange_upgraded(struct exchange *x, struct relay_pipes *pipes,
                       const struct relay_check *check, struct relay_stats *st);

/* ---- secrets.c: the secrets of one request (DESIGN section 11) ---------------- */

struct request_secrets {
    struct http_swap v[HTTP_SWAPS_MAX];
    const char *names[HTTP_SWAPS_MAX], *why[HTTP_SWAPS_MAX]; /* why: not bound here */
    struct http_swaps sw; /* .use: found in the head and bound here, so swapped */
    uint64_t unbound;     /* may not go where this request goes */
    uint64_t body;        /* bound here and swapped in bodies too */
    int refused;          /* the first found in the head that may not go here, or -1 */
    char used[256];       /* the names swapped, for the log line */
};
/* Which placeholders m's head holds and which of them may be swapped
 * toward h:port for the caller id (none when the request goes out in
 * cleartext). */
void secrets_find(struct request_secrets *rs, const struct policy *p, const struct http_msg *m,
                  const struct host *h, uint16_t port, const struct identity *id, bool cleartext);
/* rs->refused's placeholder may not go to h:port: why in out (the 403's
 * detail), the secret counted as refused and f made a denial naming it. */
void secrets_refuse(struct request_secrets *rs, const struct host *h, uint16_t port, char *out,
                    size_t cap, struct log_fields *f);
/* With the request head put into o and m consumed: a body that secrets
 * bound here swap into taken whole into x (at most 256 KiB, by deadline),
 * the head ended, the swaps counted and named in f.  NULL, or the error to
 * answer (x->why says more); the connection ends after it. */
const struct http_error *secrets_finish_head(struct request_secrets *rs, struct exchange *x,
                                             struct sbuf *o, int64_t deadline,
                                             struct log_fields *f);

/* ---- the handlers: true when the client connection may carry another ------- */

/* tunnel.c: CONNECT; the connection ends with the tunnel. */
void tunnel_serve(struct conn *c, const struct http_msg *m);
/* forward.c: an absolute-form http:// request. */
bool forward_serve(struct conn *c, const struct http_msg *m);
void forward_release(struct conn *c);
/* intercept.c: answer a CONNECT 200 (logged with f), classify the first
 * bytes, and for TLS finish a handshake as h with a minted leaf: the TLS
 * stream, or NULL for plain HTTP on c->in; *ok false when the connection
 * is over (logged). */
struct stream *tunnel_accept_client(struct conn *c, const struct host *h, struct tls_server *ts,
                                    struct log_fields *f, bool *ok);
/* intercept.c: after the decision to intercept a CONNECT to h. */
void intercept_tunnel(struct conn *c, const struct host *h, struct log_fields *f);
/* inspect.c: after the decision to inspect a CONNECT to h:port (d) and
 * the dial of its checked addresses (upstream_fd, taken over). */
void inspect_tunnel(struct conn *c, const struct host *h, uint16_t port,
                    const struct policy_decision *d, struct log_fields *f, int upstream_fd);
/* local.c: egressd.local, answered by egressd itself (never dialled):
 * GET /denials and POST /requests. */
#define LOCAL_HOST "egressd.local"
bool local_host(const struct host *h);
bool local_serve(struct conn *c, const struct http_msg *m, const char *path, size_t path_len);
/* intercept.c: an absolute-form request to an inference host. */
bool intercept_forward(struct conn *c, const struct http_msg *m, const struct host *h,
                       uint16_t port);

/* ---- requests.c: a connection's requests, one after the other --------------- */

void serve_connection(struct runtime *rt, int fd, const struct sockaddr_storage *peer,
                      struct relay_pipes *pipes);

/* ---- pool.c: the worker threads ------------------------------------------------ */

struct pool;
struct pool_settings {
    unsigned base, max, queue, queue_wait_ms;
};
struct pool *pool_start(struct runtime *rt, const struct pool_settings *ps);
/* A new connection: to an idle worker, else queued, else answered 503. */
void pool_submit(struct pool *p, int fd, const struct sockaddr_storage *peer);
/* Sockets queued longer than queue_wait_ms get their 503. */
void pool_reap(struct pool *p);
void pool_resize(struct pool *p, const struct pool_settings *ps);
/* No new work; queued sockets get 503; wait up to timeout_ms for the busy
 * ones.  Returns how many were still busy (the pool is then leaked: the
 * process exits). */
unsigned pool_stop(struct pool *p, unsigned timeout_ms);
void pool_gauges(struct pool *p, struct metrics_gauges *g);
/* Answer a socket no worker will serve, and close it. */
void pool_refuse(int fd, const char *why);
/* The acceptor answered one itself: descriptors ran out (counted, logged). */
void pool_note_shed(struct pool *p);

/* ---- server.c: the listener, the acceptor, reload and stop -------------------- */

struct server;
struct server *server_start(struct runtime *rt, struct pool *pool, const char *config_path);
/* Runs the signal loop until SIGTERM/SIGINT; returns when told to stop. */
void server_run(struct server *s);
/* Stop accepting and free the server (the pool is stopped by the caller). */
void server_stop(struct server *s);

/* ---- suggest.c: egressd --suggest ----------------------------------------------- */

/* Proposals for the denials in a JSON log (from; "-": standard input) or
 * at a running egressd's admin endpoint (admin, else p's own), checked
 * against the configuration file config; the exit status. */
int suggest_run(const struct policy *p, const char *config, const char *from, const char *admin);

/* ---- admin.c: GET /metrics, /healthz, /denials, /requests; POST /denials/clear -- */

struct admin;
struct admin *admin_start(struct runtime *rt, struct pool *pool, const struct proxy_settings *set);
void admin_stop(struct admin *a);

#endif
