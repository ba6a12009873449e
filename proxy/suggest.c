/*
 * suggest.c - `egressd --suggest [-c FILE] [--from LOG | --admin URL]`:
 * [allow] sections proposed for what was denied, printed, never written.
 *
 * The denials come from a JSON log (lines with a "denial" field; --from -
 * reads standard input) or from a running egressd's GET /denials (--admin
 * host:port or unix:/path; by default the configuration's own `admin`),
 * fetched with one blocking request under one deadline.  They are
 * aggregated in a denial record like the daemon's, grouped into proposals
 * by policy_suggest (policy/suggest.c), and each proposal is loaded with
 * the configuration, as `egressd -t` would: one that does not load is
 * printed commented out with the problem, one that loads with a warning
 * says so.  Every proposal carries its denial counts.
 */
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define FETCH_MS     10000       /* the whole admin request */
#define FETCH_MAX    (64u << 20) /* the admin's answer */
#define LOG_LINE_MAX (64 * 1024) /* longer log lines are not egressd's */
#define CONFIG_MAX   (64u << 20)
#define PROBLEM_MAX  300  /* what the check says of a proposal */
#define FIELD_TEXT   2056 /* a decoded path, as logged, fits */

enum { F_DENIAL, F_HOST, F_PORT, F_BINARY, F_METHOD, F_PATH, F_RULE, F_REASON, F_COUNT, F_N };

/* ---- reading denials ------------------------------------------------------------- */

static int stage_from(const char *s)
{
    for (int i = 0; i < DENIAL_STAGES; i++)
        if (strcmp(s, denial_stage_name((enum denial_stage)i)) == 0)
            return i;
    return -1;
}

/* A member as text into out (strings decoded, numbers as written); "" when absent. */
static void member(const char *js, const struct json_span *sp, char *out, size_t cap)
{
    const char *why;
    size_t n = sp->end - sp->start;
    out[0] = '\0';
    if (!sp->found)
        return;
    if (js[sp->start] != '"')
        snprintf(out, cap, "%.*s", (int)n, js + sp->start);
    else if (json_string(js + sp->start, n, out, cap, &why) < 0)
        out[0] = '\0';
}

/* One denial (a log line, whose stage is "denial", or an entry of
 * /denials, whose stage is "stage") into the record: how many it counts
 * for, 0 when it is no denial. */
static unsigned long long add_one(struct denials *rec, const char *js, size_t len,
                                  const char *stage_key)
{
    const char *const keys[F_N] = {stage_key, "host", "port",   "binary", "method",
                                   "path",    "rule", "reason", "count"};
    struct json_span sp[F_N];
    char f[F_N][FIELD_TEXT];
    const char *why;
    if (json_object_scan(js, len, keys, F_N, sp, &why) != JSON_OK || !sp[F_DENIAL].found)
        return 0;
    for (int i = 0; i < F_N; i++)
        member(js, &sp[i], f[i], sizeof(f[i]));
    int stage = stage_from(f[F_DENIAL]);
    unsigned long port = strtoul(f[F_PORT], NULL, 10);
    unsigned long long count = sp[F_COUNT].found ? strtoull(f[F_COUNT], NULL, 10) : 1;
    if (stage < 0 || f[F_HOST][0] == '\0' || port == 0 || port > 65535 || count == 0)
        return 0;
    bool rq = f[F_METHOD][0] != '\0' && f[F_PATH][0] == '/';
    struct denial_note n = {.stage = (enum denial_stage)stage,
                            .host = f[F_HOST],
                            .port = (unsigned)port,
                            .binary = f[F_BINARY][0] ? f[F_BINARY] : NULL,
                            .method = rq ? f[F_METHOD] : NULL,
                            .path = rq ? f[F_PATH] : NULL,
                            .rule = f[F_RULE],
                            .reason = f[F_REASON]};
    denials_add(rec, &n, count, 0, 0);
    return count;
}

/* Denials from a JSON log, one line at a time; how many, or -1. */
static long from_log(struct denials *rec, const char *path)
{
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long found = 0;
    if (in == NULL) {
        fprintf(stderr, "egressd: --from %s: %s\n", path, strerror(errno));
        return -1;
    }
    while ((n = getline(&line, &cap, in)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n < LOG_LINE_MAX)
            found += (long)add_one(rec, line, (size_t)n, "denial");
    }
    free(line);
    if (in != stdin)
        fclose(in);
    return found;
}

/* ---- the admin endpoint ---------------------------------------------------------------- */

/* "127.0.0.1:9128", "[::1]:9128", "unix:/run/egressd/admin.sock", an
 * http:// before it or a path after it ignored; 0 or -1. */
static int admin_address(const char *url, struct sockaddr_storage *ss, socklen_t *len)
{
    char a[256];
    if (strncmp(url, "http://", 7) == 0)
        url += 7;
    snprintf(a, sizeof(a), "%s", url);
    char *slash = strncmp(a, "unix:", 5) == 0 ? NULL : strchr(a, '/');
    if (slash != NULL)
        *slash = '\0';
    return parse_unix_sockaddr(a, ss, len) == 0 || parse_sockaddr(a, ss, len) == 0 ? 0 : -1;
}

static int connect_by(const struct sockaddr_storage *ss, socklen_t len, int64_t deadline)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)ss, len) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    int err = 0;
    socklen_t elen = sizeof(err);
    int64_t left = deadline - now_ms();
    if (left <= 0 || fd_wait(fd, POLLOUT, (int)left) <= 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
        close(fd);
        errno = err ? err : ETIMEDOUT;
        return -1;
    }
    return fd;
}

/* The whole answer to GET /denials, read until the admin closes. */
static char *fetch(int fd, int64_t deadline, size_t *len)
{
    static const char req[] = "GET /denials HTTP/1.1\r\nHost: egressd\r\nConnection: close\r\n\r\n";
    size_t cap = 64 * 1024, n = 0, got;
    char *buf = malloc(cap);
    enum io_result r = IO_OK;
    if (buf == NULL || fd_write_all(fd, req, sizeof(req) - 1, deadline) != IO_OK) {
        free(buf);
        return NULL;
    }
    while ((r = fd_read(fd, buf + n, cap - n - 1, &got, deadline)) == IO_OK) {
        n += got;
        if (n + 1 == cap) {
            char *grown = cap < FETCH_MAX ? realloc(buf, cap * 2) : NULL;
            if (grown == NULL)
                break;
            buf = grown, cap *= 2;
        }
    }
    if (r != IO_EOF) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Denials from a running egressd; how many entries, or -1 (said why). */
static long from_admin(struct denials *rec, const char *url)
{
    struct sockaddr_storage ss;
    socklen_t slen;
    struct http_msg r;
    struct json_span arr, el;
    const char *why, *keys[1] = {"denials"};
    size_t len = 0, pos = 0;
    long found = 0;
    int64_t deadline = now_ms() + FETCH_MS;
    if (admin_address(url, &ss, &slen) != 0) {
        fprintf(stderr, "egressd: --admin %s: not host:port or unix:/path\n", url);
        return -1;
    }
    int fd = connect_by(&ss, slen, deadline);
    char *answer = fd >= 0 ? fetch(fd, deadline, &len) : NULL;
    if (fd >= 0)
        close(fd);
    size_t head = answer ? http_head_length(answer, len) : 0;
    if (head == 0 || http_parse_response(answer, head, false, &r, &why) != HTTP_OK ||
        r.status != 200 ||
        json_object_scan(answer + head, len - head, keys, 1, &arr, &why) != JSON_OK || !arr.found) {
        fprintf(stderr, "egressd: --admin %s: %s\n", url,
                answer == NULL ? "no answer (is egressd running there?)"
                               : "not a GET /denials answer");
        free(answer);
        return -1;
    }
    const char *body = answer + head;
    while (json_array_next(body, &arr, &pos, &el))
        found += (long)add_one(rec, body + el.start, el.end - el.start, "stage");
    free(answer);
    return found;
}

/* ---- proposing ---------------------------------------------------------------------------- */

struct printer {
    const char *config; /* the file's text, to load each proposal with */
    size_t base_warnings;
    size_t proposed, refused, noted;
};

/* The configuration's text (the loader has read it already: it fits). */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    bool sized = f != NULL && fstat(fileno(f), &st) == 0 && st.st_size <= (off_t)CONFIG_MAX;
    char *buf = sized ? malloc((size_t)st.st_size + 1) : NULL;
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    if (f != NULL)
        fclose(f);
    if (buf != NULL)
        buf[n] = '\0';
    return buf;
}

static void first_problem(void *ctx, const char *file, int line, const char *msg)
{
    char *out = ctx;
    (void)file, (void)line;
    if (out[0] == '\0')
        snprintf(out, PROBLEM_MAX, "%s", msg);
}

/* The configuration with the proposal, loaded as -t would: -1 (problem
 * says why) when it does not load, else how many warnings it adds (the
 * last in problem). */
static int check(const struct printer *pr, const char *section, char *problem)
{
    size_t clen = strlen(pr->config), slen = strlen(section);
    char *text = malloc(clen + slen + 2);
    problem[0] = '\0';
    if (text == NULL) {
        snprintf(problem, PROBLEM_MAX, "out of memory");
        return -1;
    }
    memcpy(text, pr->config, clen);
    text[clen] = '\n';
    memcpy(text + clen + 1, section, slen + 1);
    struct policy *p = policy_load_string(text, first_problem, problem);
    free(text);
    if (p == NULL)
        return -1;
    size_t added = policy_warning_count(p) - pr->base_warnings;
    int line;
    if (added > 0)
        snprintf(problem, PROBLEM_MAX, "%s", policy_warning(p, policy_warning_count(p) - 1, &line));
    policy_unref(p);
    return (int)added;
}

static void print_commented(const char *section)
{
    for (const char *l = section; *l != '\0';) {
        const char *nl = strchr(l, '\n');
        size_t n = nl ? (size_t)(nl - l) : strlen(l);
        printf(";   %.*s\n", (int)n, l);
        l += n + (nl != NULL);
    }
}

static void emit(void *ctx, const char *section, const char *note)
{
    struct printer *pr = ctx;
    char problem[PROBLEM_MAX];
    if (section == NULL) {
        if (pr->noted++ == 0)
            printf("\n; not proposed:\n");
        printf(";   %s\n", note);
        return;
    }
    int warnings = check(pr, section, problem);
    printf("\n; %s\n", note);
    if (warnings < 0) {
        pr->refused++;
        printf("; refused by the configuration check (%s):\n", problem);
        print_commented(section);
        return;
    }
    if (warnings > 0)
        printf("; warning: %s\n", problem);
    fputs(section, stdout);
    pr->proposed++;
}

/* Entries of the record, for policy_suggest (their strings are the record's). */
struct seen_list {
    struct denial_seen *s;
    size_t n;
};

static void collect(void *ctx, const struct denial_seen *s)
{
    struct seen_list *l = ctx;
    l->s[l->n++] = *s;
}

int suggest_run(const struct policy *p, const char *config, const char *from, const char *admin)
{
    struct printer pr = {.base_warnings = policy_warning_count(p)};
    const char *source = from ? from : admin ? admin : policy_settings(p)->admin;
    if (source[0] == '\0') {
        fprintf(stderr, "egressd: --suggest needs --from LOG or --admin URL (%s has no admin)\n",
                config);
        return 2;
    }
    struct denials *rec = denials_new(DENIAL_RECORD_MAX);
    struct seen_list list = {malloc(DENIAL_RECORD_MAX * sizeof(*list.s)), 0};
    char *text = read_text(config);
    long found =
        rec && list.s && text ? (from ? from_log(rec, from) : from_admin(rec, source)) : -1;
    if (found >= 0) {
        pr.config = text;
        denials_each(rec, collect, &list);
        printf("; egressd --suggest: %ld denial%s read from %s.\n"
               "; Proposals only: review them, add what you want to %s, reload.\n",
               found, found == 1 ? "" : "s", source, config);
        policy_suggest(p, list.s, list.n, emit, &pr);
        printf("\n; %zu proposed, %zu refused by the check\n", pr.proposed, pr.refused);
    } else if (!(rec && list.s && text)) {
        fprintf(stderr, "egressd: --suggest: %s\n",
                text ? "out of memory" : "cannot read the configuration");
    }
    free(text);
    free(list.s);
    denials_free(rec);
    return found >= 0 ? 0 : 1;
}
