/*
 * policy.h - the public face of the policy module.
 *
 * A policy is everything egressd reads from its INI file: the [proxy]
 * settings and the ordered deny/allow rules.  It is loaded and validated as
 * a whole (every problem reported with its line number), then never changes:
 * workers share it read-only and hold a reference while they use it, so a
 * reload can swap in a new one without disturbing connections in flight.
 *
 * The module also owns the strict parsing of host names and IP literals,
 * the address classes of the SSRF check, and process identity (who is on
 * the other end of a client socket), because "which destinations may be
 * reached, and by whom" is one question and should have one answer.
 *
 * Error convention: loaders return the policy or NULL after reporting every
 * problem through the caller's report function; parsers return 0 or -1
 * with a static reason in *why; decisions fill a struct policy_decision
 * and never fail (doubt denies).
 */
#ifndef EGRESSD_POLICY_H
#define EGRESSD_POLICY_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define POLICY_HOST_MAX   253   /* longest DNS name, without the trailing dot */
#define API_KEY_MAX       4096  /* a route's key, its NUL included */
#define DENIAL_RECORD_MAX 65536 /* [proxy] denial_record */

enum log_format { LOGF_JSON, LOGF_TEXT };
enum log_level { LOGL_DEBUG, LOGL_INFO, LOGL_WARN, LOGL_ERROR };

/* The [proxy] section; durations in milliseconds. */
struct proxy_settings {
    char listen[64]; /* as written, for logs */
    struct sockaddr_storage listen_addr;
    socklen_t listen_len;
    unsigned workers, max_workers, queue, queue_timeout_ms;
    unsigned header_timeout_ms, connect_timeout_ms, dns_timeout_ms;
    unsigned idle_timeout_ms, shutdown_timeout_ms;
    enum log_format log_format;
    enum log_level log_level;
    bool unsafe_allow_loopback;
    unsigned sandbox_pid;   /* 0: egressd shares the sandbox's network namespace */
    bool audit;             /* every would-be denial is logged as audit and let through */
    bool hints;             /* a denial's 403 proposes an [allow] section */
    unsigned denial_record; /* denials kept in the record (least recently seen out first) */
    char admin[128];        /* "" when there is no admin endpoint; "unix:/path" for a socket file */
    struct sockaddr_storage admin_addr;
    socklen_t admin_len;
};

/* The [tls] section: paths, and the size of the minted-leaf cache. */
struct tls_settings {
    char ca_cert[256], ca_key[256], bundle[256], upstream_ca[256];
    unsigned cert_cache;
};

/* The [inference] section's limits (its host and port act as a rule);
 * timeout and stream_idle_timeout are the defaults of routes that do not
 * set their own. */
struct inference_settings {
    uint64_t max_request_body, max_response_body;
    unsigned stream_idle_timeout_ms, keepalive_timeout_ms, timeout_ms;
};

/* The API shapes egressd recognises inside an intercepted connection. */
enum protocol {
    PROTO_OPENAI_CHAT,
    PROTO_OPENAI_COMPLETIONS,
    PROTO_OPENAI_RESPONSES,
    PROTO_OPENAI_EMBEDDINGS,
    PROTO_ANTHROPIC_MESSAGES,
    PROTO_MODEL_DISCOVERY,
    PROTO_COUNT
};
const char *protocol_name(enum protocol p);

enum provider { PROVIDER_OPENAI, PROVIDER_ANTHROPIC, PROVIDER_NVIDIA };
enum endpoint_scheme { ENDPOINT_HTTP, ENDPOINT_HTTPS, ENDPOINT_MOCK };

#define POLICY_ROUTES_MAX 256
#define ROUTE_ALIASES_MAX 64
#define ROUTE_RETRIES_MAX 10
#define ROUTE_MODEL_MAX   256 /* a model name, its NUL included */

/* retry_on: the failures of one attempt that send the request again. */
enum retry_on {
    RETRY_ON_CONNECT = 1u << 0, /* no answer: dial, TLS, send, closed before a response head */
    RETRY_ON_5XX = 1u << 1,     /* an answer with a 5xx status */
    RETRY_ON_429 = 1u << 2,     /* an answer with 429 */
};

/* One model_map entry: a requested model (exact, or an fnmatch glob) and
 * the model the backend gets instead. */
struct model_alias {
    char *from, *to; /* to: spliced into JSON as it is, so no quote or backslash */
};

/* A [route NAME] section: where matching inference requests go. */
struct route {
    char name[64];
    int line;
    unsigned index; /* its place among the policy's routes */
    enum endpoint_scheme scheme;
    char host[POLICY_HOST_MAX + 1]; /* as written in the endpoint (names resolve at dial time) */
    uint16_t port;
    char base_path[256]; /* the endpoint's path, no trailing slash ("" or "/v1") */
    enum provider provider;
    unsigned protocols; /* bit (1 << enum protocol) */
    char model[256];    /* rewrite to this; "" keeps the request's */
    char **models;      /* fnmatch globs; none: any model */
    size_t n_models;
    char *api_key;           /* secret: never logged, never sent to a client; < API_KEY_MAX */
    char api_key_secret[64]; /* the [secret] the key is, or "" */
    unsigned timeout_ms;     /* head, and a buffered answer whole; all attempts together */
    unsigned stream_idle_timeout_ms; /* between two pieces of a streamed answer */
    struct model_alias *model_map;   /* first match wins, before `model` */
    size_t n_model_map;
    char fallback_name[64]; /* "" when none */
    int fallback;           /* the route tried when this one fails (its index), -1: none */
    unsigned retries;       /* attempts on this route after the first */
    unsigned retry_on;      /* enum retry_on bits */
};

/* A [budget NAME] section: how much its routes may serve per window.
 * Its usage lives with the daemon (inference/budget.c), not here: a policy
 * is replaced whole on reload, and a budget that keeps its name keeps its
 * usage. */
#define POLICY_BUDGETS_MAX 64
enum budget_window { WINDOW_SLIDING, WINDOW_FIXED };
struct budget {
    char name[64];
    int line;
    bool all_routes;
    uint64_t route_bits[POLICY_ROUTES_MAX / 64]; /* by route index */
    char **route_names;                          /* as written, until resolved at load */
    size_t n_route_names;
    char **binaries; /* path globs; none: every caller */
    size_t n_binaries;
    uint64_t tokens, requests; /* per window; 0: not limited */
    unsigned window_ms;
    enum budget_window window_type;
};

struct policy;

/* Called once per problem found while loading; line is 0 when the problem
 * concerns the whole file. */
typedef void (*policy_report_fn)(void *ctx, const char *file, int line, const char *msg);

/* Load and validate; NULL (after reporting every problem) on failure.  The
 * result holds one reference. */
struct policy *policy_load_file(const char *path, policy_report_fn report, void *ctx);
struct policy *policy_load_string(const char *text, policy_report_fn report, void *ctx);
void policy_unref(struct policy *p);

const struct proxy_settings *policy_settings(const struct policy *p);
const struct tls_settings *policy_tls(const struct policy *p);
const struct inference_settings *policy_inference(const struct policy *p);
size_t policy_rule_count(const struct policy *p);
/* Is there an [inference] section (and so interception, and the CA)? */
bool policy_intercepts(const struct policy *p);
size_t policy_route_count(const struct policy *p);
const struct route *policy_route(const struct policy *p, size_t i);
size_t policy_budget_count(const struct policy *p);
const struct budget *policy_budget(const struct policy *p, size_t i);
/* Does the budget count requests served by route r? */
bool budget_covers_route(const struct budget *b, const struct route *r);

/* ---- hosts ---------------------------------------------------------- */

enum host_kind { HOST_NAME, HOST_IPV4, HOST_IPV6 };

struct host {
    enum host_kind kind;
    char name[POLICY_HOST_MAX + 1]; /* lower case, no trailing dot; IPs canonical, no brackets */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } ip;
};

/* Parse a host as it appears in a request target or Host header (no port).
 * IPv6 literals come with their brackets here.  Rejects userinfo, percent
 * escapes, non-ASCII, and the octal, hex and integer spellings of IPv4.
 * Returns 0, or -1 with *why set to a static explanation. */
int host_parse(const char *s, size_t len, struct host *out, const char **why);

/* Split "host:port" / "[v6]:port" (port required when default_port is 0). */
int host_port_parse(const char *s, size_t len, uint16_t default_port, struct host *out,
                    uint16_t *port, const char **why);
/* Does a Host header's value name h:port (its port, when absent, being the
 * scheme's default_port)?  Compared as parsed: case, one trailing dot and
 * IPv6 spellings do not matter; anything malformed names nothing. */
bool host_header_names(const char *value, size_t len, const struct host *h, uint16_t port,
                       uint16_t default_port);

/* ---- decisions ------------------------------------------------------ */

/* What happens to a connection (or, inside an inspected one, to a request):
 * denied; tunnelled (a request: forwarded); intercepted for inference; or
 * inspected, each request decided on its own (DESIGN section 10). */
enum policy_action { ACTION_DENY, ACTION_ALLOW, ACTION_INTERCEPT, ACTION_INSPECT, ACTION_COUNT };

/* The calling programs, for rules with `binary` (DESIGN section 6): every
 * process holding the client's socket, each with its executable and its
 * ancestors'. */
#define IDENTITY_CHAIN_MAX   65 /* a process and up to 64 ancestors */
#define IDENTITY_HOLDERS_MAX 16 /* more processes on one socket: not established */
#define IDENTITY_PATH_MAX    512
struct identity_holder {
    long pid; /* the process; a task of it when only that task's own file table holds the socket */
    size_t n;
    char *chain[IDENTITY_CHAIN_MAX]; /* exe of pid, of its parent, ... */
};
struct identity {
    const char *unresolved; /* NULL when resolved, else why not (and n is 0) */
    size_t n;
    struct identity_holder holder[IDENTITY_HOLDERS_MAX];
};

struct policy_decision {
    enum policy_action action;
    const char *rule;    /* rule name, or NULL for the default deny */
    const char *reason;  /* short, static, for logs and error bodies */
    int rule_index;      /* -1 when no rule matched */
    const char *message; /* the rule's `message`, shown in its denials; NULL */
    bool audit;          /* the policy would deny: audit mode lets it through */
};

/* "allow", "deny", "intercept", "inspect"; "audit" for an audited one. */
const char *policy_action_name(enum policy_action a);
const char *policy_decision_name(const struct policy_decision *d);

void policy_decide(const struct policy *p, const struct host *h, uint16_t port,
                   struct policy_decision *out);
/* The same, with the calling process known (id NULL: not looked up). */
void policy_decide_as(const struct policy *p, const struct host *h, uint16_t port,
                      const struct identity *id, struct policy_decision *out);

/* One request inside an inspected connection, as the rules see it: its
 * method, its path percent-decoded without the query (what allow rules
 * match, exactly), and the same folded (lower case, no ;parameters, no
 * repeated '/': what deny rules match, so that a spelling the origin reads
 * alike cannot slip past one).  Both made by http_path_decode. */
struct request_view {
    const char *method;
    const char *path;
    const char *folded;
    const char *override; /* a method override field's value (X-HTTP-Method-Override...), or NULL */
};
/* DESIGN section 10's order: a deny rule matching host, port, binary,
 * method and path denies; inference hosts stay inference; the first allow
 * rule matching all five allows; else deny.  Audit (the rule's or the
 * policy's) turns a denial into an audited allow. */
void policy_decide_request(const struct policy *p, const struct host *h, uint16_t port,
                           const struct identity *id, const struct request_view *rq,
                           struct policy_decision *out);
/* Is the destination inspected: does a rule with request keys name its
 * host and port, or a secret its host (on any port: a placeholder headed
 * to the wrong port must be seen to be refused)? */
bool policy_inspects(const struct policy *p, const struct host *h, uint16_t port);
/* Does the policy need egressd's CA (interception or inspection)? */
bool policy_uses_tls(const struct policy *p);

/* ---- secrets (DESIGN section 11) ---- */

#define POLICY_SECRETS_MAX 64

/* What the proxy needs of one secret to find and swap its placeholder. */
struct secret_view {
    const char *name, *placeholder, *value; /* value: never logged, never answered */
    size_t placeholder_len, value_len;
    bool in_body; /* also swapped in request bodies */
};
size_t policy_secret_count(const struct policy *p);
void policy_secret_view(const struct policy *p, size_t i, struct secret_view *out);
/* May secret i's value go to this host and port for this caller (its
 * hosts, ports and binary list; a caller that could not be established:
 * no)?  NULL when it may, else why not (never the value). */
const char *policy_secret_refusal(const struct policy *p, size_t i, const struct host *h,
                                  uint16_t port, const struct identity *id);
/* The j-th name under which --print-env hands out secret i's placeholder;
 * NULL past the last. */
const char *policy_secret_env(const struct policy *p, size_t i, size_t j);

/* Warnings found at load (a rule that can never match): not errors. */
size_t policy_warning_count(const struct policy *p);
const char *policy_warning(const struct policy *p, size_t i, int *line);
/* Does a rule with `binary` match this destination, so that the caller
 * should look the process up before deciding? */
bool policy_wants_identity(const struct policy *p, const struct host *h, uint16_t port);
/* Does a budget count this caller?  Without `binary`, every caller; with it,
 * when any process holding the socket (or an ancestor) runs a listed
 * program, and when the caller is not known (id NULL or unresolved): like a
 * deny rule, doubt counts against the limit. */
bool budget_counts_caller(const struct budget *b, const struct identity *id);

/* ---- process identity (identity.c, trust.c, glob.c) ---- */

/* Milliseconds of CLOCK_MONOTONIC (clock.c): the clock of every deadline. */
int64_t now_ms(void);

#define IDENTITY_LOOKUP_MS 5000        /* a whole lookup: /proc scans and hashing */
#define TRUST_HASH_MAX     (256 << 20) /* a larger executable is not hashed: denied */

/* Trust on first use: the content of each executable path, pinned. */
struct trust_store;
struct trust_store *trust_store_new(void);
void trust_store_free(struct trust_store *t);
/* NULL when the content fd reads is what path held when first seen (hashed
 * again only when its inode, size or times change), else why not; also
 * why not when it is larger than TRUST_HASH_MAX or hashing it would go
 * past the deadline (now_ms() time). */
const char *trust_check(struct trust_store *t, int fd, const char *path, int64_t deadline);

/* Who holds the client socket fd (our accepted end), looked up in /proc
 * (of sandbox_pid's network namespace when not 0), all of it by the
 * deadline (now_ms() time; IDENTITY_LOOKUP_MS from its start is the
 * daemon's): a lookup out of time is unresolved.  NULL only when out of
 * memory; check ->unresolved. */
struct identity *identity_lookup(int fd, unsigned sandbox_pid, struct trust_store *t,
                                 int64_t deadline);
/* For callers that know the programs (--explain, tests): an empty identity,
 * a holder (its index, or -1 when full), an executable in its chain. */
struct identity *identity_new(void);
int identity_add_holder(struct identity *id, long pid);
int identity_add_exe(struct identity *id, size_t holder, const char *path);
void identity_free(struct identity *id);

/* Glob over paths: '*' stays within a segment, '**' crosses them; time
 * linear in the path for a given pattern (at most GLOB_PATTERN_MAX). */
#define GLOB_PATTERN_MAX 1024
bool path_glob_match(const char *pattern, const char *path);
/* The same over path's first len bytes, ASCII letters compared without
 * case (for deny rules). */
bool path_glob_match_fold(const char *pattern, const char *path, size_t len);
/* One line of /proc/net/tcp or tcp6: the socket's local and remote
 * addresses (IPv4-mapped IPv6 normalised to IPv4), uid and inode.  0, or -1
 * for a header or malformed line. */
struct proc_socket {
    struct sockaddr_storage local, remote;
    unsigned uid;
    unsigned long inode;
};
int proc_net_tcp_line(const char *line, struct proc_socket *out);

/* ---- SSRF ----------------------------------------------------------- */

enum addr_class {
    ADDR_GLOBAL,   /* public: allowed */
    ADDR_INTERNAL, /* private ranges: only with the rule's allowed_ips */
    ADDR_LOOPBACK, /* blocked, unless unsafe_allow_loopback (tests) */
    ADDR_BLOCKED,  /* never */
};

/* Classify an address, looking through IPv4-mapped, IPv4-compatible,
 * IPv4-translated, NAT64, 6to4 and Teredo forms.  *what names the range. */
enum addr_class addr_classify(const struct sockaddr *sa, const char **what);

/* May the decision's rule connect to this resolved address?  Returns true, or
 * false with *why explaining (a static string). */
bool policy_address_permitted(const struct policy *p, const struct policy_decision *d,
                              const struct sockaddr *sa, const char **why);

/* The deny rule (its index, else -1) naming this resolved address as an IP
 * literal on port: a name that resolves to a denied address is denied like
 * the address itself. */
int policy_address_denied(const struct policy *p, const struct sockaddr *sa, uint16_t port,
                          const struct identity *id);
const char *policy_rule_name(const struct policy *p, int i);
/* The IPv4 address an IPv6 address carries (mapped, compatible, NAT64,
 * 6to4, Teredo...); false for plain IPv6 and for IPv4. */
bool addr_embedded_v4(const struct sockaddr *sa, struct in_addr *out);

/* For "egressd --explain": a human description of a decision; with rq, of
 * that request's (NULL: of the connection's). */
void policy_explain(const struct policy *p, const struct host *h, uint16_t port,
                    const struct identity *id, const struct request_view *rq, char *buf,
                    size_t len);

/* ---- hint.c, suggest.c: [allow] sections for what was denied ---------- */

/* An [allow] section to propose: hosts as rules write them, ports, a
 * program (NULL: any), and for requests access (a preset) or methods, and
 * paths (none: any).  name is the wanted NAME: the writer makes it valid
 * and unused by the policy's rules and by taken. */
struct allow_proposal {
    const char *name;
    const char *const *hosts;
    size_t n_hosts;
    const uint16_t *ports;
    size_t n_ports;
    const char *binary;
    const char *access;
    const char *const *methods;
    size_t n_methods;
    const char *const *paths;
    size_t n_paths;
    const char *const *taken;
    size_t n_taken;
};
#define POLICY_HINT_MAX 1024
/* The section as INI text into buf; 0, or -1 when it does not fit. */
int policy_allow_section(const struct policy *p, const struct allow_proposal *a, char *buf,
                         size_t len);
/* The rule name policy_allow_section gives a proposal. */
void policy_rule_name_for(const struct policy *p, const struct allow_proposal *a, char *out,
                          size_t cap);
/* The smallest [allow] section that would admit what d denied: h:port,
 * from the identified program (when one, resolved), and with rq (NULL: a
 * connection) its method and path.  False, buf empty, when no allow rule
 * would admit it (a deny rule refused it) or it was not denied. */
bool policy_hint(const struct policy *p, const struct host *h, uint16_t port,
                 const struct identity *id, const struct request_view *rq,
                 const struct policy_decision *d, char *buf, size_t len);
/* A path as the denial record keys it: its first three segments, then
 * a double star (any path below) when more followed. */
void policy_path_fold(const char *path, char *out, size_t cap);
/* A path as a `paths` glob that the loader takes and that matches it. */
void policy_path_glob(const char *path, char *out, size_t cap);
/* Would the loader take m in `methods`? */
bool policy_method_ok(const char *m);
/* Is rule i a deny rule? */
bool policy_rule_is_deny(const struct policy *p, int i);
/* Does any rule name binaries (so that callers are worth identifying)? */
bool policy_uses_identity(const struct policy *p);

/* One entry of denials seen (the record, or a log), for --suggest. */
struct denial_seen {
    const char *host;
    uint16_t port;
    const char *binary;        /* NULL: not known */
    const char *method, *path; /* NULL: a connection, not a request; path as folded */
    const char *stage;         /* connect, ssrf, request, secret */
    unsigned long long count;
};
/* One proposal of policy_suggest: an [allow] section with the note that
 * says what it comes from, or (section NULL) a note on denials it does not
 * propose a rule for. */
typedef void (*suggest_fn)(void *ctx, const char *section, const char *note);
/* Proposals for the denials seen under policy p (DESIGN: --suggest): one
 * per host, or one per parent domain with three or more denied
 * subdomains; ports merged, binary when one program, access or methods
 * and paths for requests.  Denials a deny rule made, SSRF and secret
 * refusals, and what p now allows, are noted, not proposed. */
void policy_suggest(const struct policy *p, const struct denial_seen *seen, size_t n,
                    suggest_fn emit, void *ctx);
/* The registrable domain of a name, approximately (no public suffix list:
 * the last two labels, or three under a two-letter country code's common
 * second level such as co.uk); a pointer into name. */
const char *policy_registrable(const char *name);

/* ---- value parsers shared with tests ---------------------------------- */

/* "500ms", "10s", "5m", "1h": at most DURATION_MAX_MS, since the daemon
 * turns durations into int milliseconds (poll timeouts, deadlines). */
#define DURATION_MAX_MS (24u * 60 * 60 * 1000)
int parse_duration_ms(const char *s, unsigned *out);
int parse_size(const char *s, uint64_t *out);
int parse_sockaddr(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* "unix:/absolute/path" (shorter than sun_path) as a Unix socket address. */
int parse_unix_sockaddr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

#endif
