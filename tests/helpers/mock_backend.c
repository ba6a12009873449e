/*
 * mock_backend.c - a model backend for the integration tests.
 *
 * Speaks enough of the OpenAI and Anthropic HTTP APIs (JSON and SSE) for
 * SDKs to be satisfied, keeps connections alive, and appends every request
 * it receives (method, path, headers, body) as one JSON line to a record
 * file, so that tests can check what egressd forwarded.  It parses HTTP on
 * its own, independently of egressd's parser.
 *
 * Behaviour is chosen by the query string, which egressd forwards:
 *   delay_ms=N   wait before answering
 *   status=N     answer with this status and an error body
 *   fail=N       with status: only the first N requests carrying this key=
 *                (default "") get that status; the ones after are answered
 *                normally (a backend that fails N times, then recovers)
 *   chunks=N     stream N content pieces (default 3)
 *   hold=1       after the first event, wait for GET /control/release
 *   cut=1        after the first event, close the connection mid-stream
 *   close=1      answer without Content-Length, ending with the connection
 *   stamp=1      streamed pieces carry their monotonic send time ("t=<ns>"),
 *                2 ms apart (for the streaming latency benchmark)
 *
 * usage: mock-backend RECORD_FILE     (prints its port on the first line)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX (64 * 1024)
#define BODY_MAX (64 << 20)

static FILE *record;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t released = PTHREAD_COND_INITIALIZER;
static unsigned long releases, connections;
static struct {
    char key[64];
    long seen;
} counters[64]; /* fail=N: requests seen per key= */

struct req {
    char method[16], path[5200], query[5200];
    char head[HEAD_MAX];
    char *body;
    size_t body_len;
    bool stream;
    char model[256];
    unsigned long conn; /* which connection it came on: tests check reuse */
};

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static long query_num(const struct req *r, const char *key, long dflt)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "%s=", key);
    for (const char *q = r->query; (q = strstr(q, pat)) != NULL; q++)
        if (q == r->query || q[-1] == '&')
            return strtol(q + strlen(pat), NULL, 10);
    return dflt;
}

static void query_str(const struct req *r, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "%s=", key);
    out[0] = '\0';
    for (const char *q = r->query; (q = strstr(q, pat)) != NULL; q++)
        if (q == r->query || q[-1] == '&') {
            snprintf(out, cap, "%.*s", (int)strcspn(q + strlen(pat), "&"), q + strlen(pat));
            return;
        }
}

/* How many requests with this fail key have come, this one included. */
static long count_key(const struct req *r)
{
    char key[64];
    long n = 0;
    query_str(r, "key", key, sizeof(key));
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        if (counters[i].seen == 0)
            snprintf(counters[i].key, sizeof(counters[i].key), "%s", key);
        if (strcmp(counters[i].key, key) == 0) {
            n = ++counters[i].seen;
            break;
        }
    }
    pthread_mutex_unlock(&mu);
    return n;
}

static void json_str(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void record_request(const struct req *r)
{
    pthread_mutex_lock(&mu);
    fprintf(record, "{\"conn\":%lu,\"method\":\"%s\",\"path\":", r->conn, r->method);
    char full[10500];
    int n = snprintf(full, sizeof(full), "%s%s%s", r->path, r->query[0] ? "?" : "", r->query);
    json_str(record, full, (size_t)n);
    fputs(",\"headers\":[", record);
    const char *line = strstr(r->head, "\r\n") + 2;
    for (bool first = true; strncmp(line, "\r\n", 2) != 0; first = false) {
        const char *eol = strstr(line, "\r\n"), *colon = memchr(line, ':', (size_t)(eol - line));
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        fputs(first ? "[" : ",[", record);
        json_str(record, line, (size_t)(colon - line));
        fputc(',', record);
        json_str(record, v, (size_t)(eol - v));
        fputc(']', record);
        line = eol + 2;
    }
    fputs("],\"body\":", record);
    json_str(record, r->body ? r->body : "", r->body_len);
    fputs("}\n", record);
    fflush(record);
    pthread_mutex_unlock(&mu);
}

static const char *header(const struct req *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *l = strstr(r->head, "\r\n"); l && strncmp(l, "\r\n\r\n", 4);
         l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, name, n) == 0 && l[2 + n] == ':') {
            const char *v = l + 3 + n;
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)strcspn(v, "\r"), v);
            return out;
        }
    }
    return NULL;
}

/* Read one request; 0, or -1 when the connection is done. */
static int read_request(int fd, char *buf, size_t *len, struct req *r)
{
    char *end;
    while ((end = memmem(buf, *len, "\r\n\r\n", 4)) == NULL) {
        if (*len >= HEAD_MAX - 1)
            return -1;
        ssize_t n = recv(fd, buf + *len, HEAD_MAX - 1 - *len, 0);
        if (n <= 0)
            return -1;
        *len += (size_t)n;
    }
    size_t hlen = (size_t)(end - buf) + 4;
    memcpy(r->head, buf, hlen);
    r->head[hlen] = '\0';
    memmove(buf, buf + hlen, *len - hlen);
    *len -= hlen;
    char target[5200];
    if (sscanf(r->head, "%15s %5199s", r->method, target) != 2)
        return -1;
    char *q = strchr(target, '?');
    snprintf(r->query, sizeof(r->query), "%s", q ? q + 1 : "");
    if (q)
        *q = '\0';
    snprintf(r->path, sizeof(r->path), "%s", target);
    char v[64];
    size_t want = header(r, "content-length", v, sizeof(v)) ? strtoul(v, NULL, 10) : 0;
    if (want > BODY_MAX)
        return -1;
    r->body = malloc(want + 1);
    while (*len < want) { /* the body follows in buf */
        ssize_t n = recv(fd, buf + *len, HEAD_MAX - 1 - *len, 0);
        if (n <= 0 || *len + (size_t)n > HEAD_MAX - 1)
            break;
        *len += (size_t)n;
    }
    size_t have = *len < want ? *len : want;
    memcpy(r->body, buf, have);
    memmove(buf, buf + have, *len - have);
    *len -= have;
    while (have < want) {
        ssize_t n = recv(fd, r->body + have, want - have, 0);
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
    r->body[want] = '\0';
    r->body_len = want;
    r->stream = strstr(r->body, "\"stream\":true") || strstr(r->body, "\"stream\": true");
    const char *m = strstr(r->body, "\"model\"");
    if (m && (m = strchr(m + 7, '"')))
        snprintf(r->model, sizeof(r->model), "%.*s", (int)strcspn(m + 1, "\""), m + 1);
    else
        snprintf(r->model, sizeof(r->model), "mock-model");
    return 0;
}

static int respond(int fd, int status, const char *ctype, const char *body, bool close_delim)
{
    char head[512];
    int n = close_delim ? snprintf(head, sizeof(head),
                                   "HTTP/1.1 %d X\r\nContent-Type: %s\r\nConnection: close\r\n\r\n",
                                   status, ctype)
                        : snprintf(head, sizeof(head),
                                   "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                                   "X-Mock-Backend: yes\r\n\r\n",
                                   status, ctype, strlen(body));
    return write_all(fd, head, (size_t)n) || write_all(fd, body, strlen(body)) ? -1 : 0;
}

static int chunk(int fd, const char *data)
{
    char size[32];
    int n = snprintf(size, sizeof(size), "%zx\r\n", strlen(data));
    return write_all(fd, size, (size_t)n) || write_all(fd, data, strlen(data)) ||
                   write_all(fd, "\r\n", 2)
               ? -1
               : 0;
}

static void wait_release(unsigned long seen)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 20;
    pthread_mutex_lock(&mu);
    while (releases == seen && pthread_cond_timedwait(&released, &mu, &dl) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&mu);
}

/* An SSE stream; -1 ends the connection (a cut, or a broken peer). */
static int stream_events(int fd, const struct req *r, bool anthropic)
{
    char ev[1024];
    long pieces = query_num(r, "chunks", 3);
    pthread_mutex_lock(&mu);
    unsigned long seen = releases;
    pthread_mutex_unlock(&mu);
    const char *head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                       "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    if (write_all(fd, head, strlen(head)))
        return -1;
    if (anthropic)
        snprintf(
            ev, sizeof(ev),
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
            "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"%s\",\"content\":[],"
            "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":11,"
            "\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":"
            "\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":"
            "\"\"}}\n\n",
            r->model);
    else
        snprintf(
            ev, sizeof(ev),
            "data: "
            "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"%s\","
            "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
            "\"finish_reason\":null}]}\n\n",
            r->model);
    if (chunk(fd, ev))
        return -1;
    if (query_num(r, "cut", 0))
        return -1;
    if (query_num(r, "hold", 0))
        wait_release(seen);
    bool stamp = query_num(r, "stamp", 0) != 0;
    for (long i = 0; i < pieces; i++) {
        if (stamp) {
            struct timespec ts;
            usleep(2000);
            clock_gettime(CLOCK_MONOTONIC, &ts);
            snprintf(ev, sizeof(ev),
                     "data: {\"choices\":[{\"delta\":{\"content\":\"t=%lld\"}}]}\n\n",
                     (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
            if (chunk(fd, ev))
                return -1;
            continue;
        }
        if (anthropic)
            snprintf(
                ev, sizeof(ev),
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
                "\"delta\":{\"type\":\"text_delta\",\"text\":\"piece%ld \"}}\n\n",
                i);
        else
            snprintf(
                ev, sizeof(ev),
                "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                "\"model\":\"%s\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"piece%ld \"},"
                "\"finish_reason\":null}]}\n\n",
                r->model, i);
        if (chunk(fd, ev))
            return -1;
    }
    if (anthropic)
        snprintf(
            ev, sizeof(ev),
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
            "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":%ld}}\n\n"
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            pieces);
    else
        snprintf(
            ev, sizeof(ev),
            "data: "
            "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"%s\","
            "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":"
            "{\"prompt_tokens\":11,\"completion_tokens\":%ld,\"total_tokens\":%ld}}\n\ndata: "
            "[DONE]\n\n",
            r->model, pieces, pieces + 11);
    return chunk(fd, ev) || write_all(fd, "0\r\n\r\n", 5) ? -1 : 0;
}

static int answer(int fd, const struct req *r)
{
    char body[4096];
    bool close_delim = query_num(r, "close", 0) != 0;
    long status = query_num(r, "status", 200), delay = query_num(r, "delay_ms", 0);
    long fail = query_num(r, "fail", -1);
    if (fail >= 0 && count_key(r) > fail)
        status = 200; /* failed its N times: recovered */
    if (delay > 0)
        usleep((useconds_t)delay * 1000);
    if (strcmp(r->path, "/control/release") == 0) {
        pthread_mutex_lock(&mu);
        releases++;
        pthread_cond_broadcast(&released);
        pthread_mutex_unlock(&mu);
        return respond(fd, 200, "text/plain", "released\n", false);
    }
    if (status != 200) {
        snprintf(body, sizeof(body),
                 "{\"error\":{\"message\":\"mock error %ld\",\"type\":\"mock\"}}", status);
        return respond(fd, (int)status, "application/json", body, false);
    }
    bool anthropic = strcmp(r->path, "/v1/messages") == 0;
    if (r->stream && (anthropic || strcmp(r->path, "/v1/chat/completions") == 0))
        return stream_events(fd, r, anthropic);
    if (anthropic)
        snprintf(body, sizeof(body),
                 "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"%s\","
                 "\"content\":[{\"type\":\"text\",\"text\":\"hello from "
                 "mock\"}],\"stop_reason\":\"end_turn\","
                 "\"stop_sequence\":null,\"usage\":{\"input_tokens\":11,\"output_tokens\":3}}",
                 r->model);
    else if (strcmp(r->path, "/v1/embeddings") == 0) /* [0.5, -0.25]: floats, or float32 LE */
        snprintf(
            body, sizeof(body),
            "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":"
            "%s}],\"model\":\"%s\",\"usage\":{\"prompt_tokens\":4,\"total_tokens\":4}}",
            strstr(r->body, "\"base64\"") ? "\"AAAAPwAAgL4=\"" : "[0.5,-0.25]", r->model);
    else if (strncmp(r->path, "/v1/models", 10) == 0)
        snprintf(body, sizeof(body),
                 "{\"object\":\"list\",\"data\":[{\"id\":\"m1\",\"object\":\"model\",\"created\":1,"
                 "\"owned_by\":\"mock\"}]}");
    else
        snprintf(
            body, sizeof(body),
            "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"%s\","
            "\"choices\":"
            "[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hello from mock\"},"
            "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3,"
            "\"total_tokens\":14}}",
            r->model);
    int rc = respond(fd, 200, "application/json", body, close_delim);
    return close_delim ? -1 : rc;
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(HEAD_MAX);
    pthread_mutex_lock(&mu);
    unsigned long conn = ++connections;
    pthread_mutex_unlock(&mu);
    size_t len = 0;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    for (;;) {
        struct req *r = calloc(1, sizeof(*r));
        r->conn = conn;
        int rc = read_request(fd, buf, &len, r);
        if (rc == 0 && strcmp(r->path, "/control/release") != 0)
            record_request(r);
        if (rc == 0)
            rc = answer(fd, r);
        free(r->body);
        free(r);
        if (rc != 0)
            break;
    }
    free(buf);
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mock-backend RECORD_FILE\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    record = fopen(argv[1], "a");
    int l = socket(AF_INET, SOCK_STREAM, 0); /* no SO_REUSEADDR with port 0: see egressd's */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (record == NULL || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 128) ||
        getsockname(l, (struct sockaddr *)&a, &alen)) {
        perror("mock-backend");
        return 1;
    }
    printf("%u\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept(l, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd);
    }
}
