/*
 * infer_int.h - shared by the files that serve intercepted requests, and
 * nobody else.  Within the module the calls run one way:
 * serve.c -> call.c -> backend.c, mock.c; serve.c, call.c -> budget.c;
 * serve.c, call.c, mock.c -> reply.c.
 */
#ifndef EGRESSD_INFER_INT_H
#define EGRESSD_INFER_INT_H

#include "inference.h"

#define BACKEND_BUF     (64 * 1024)
#define FWD_HEADERS_MAX HTTP_HEAD_MAX
#define PATH_MAX_LEN    2048

/* ---- backend.c ---- */

/* A connection to a backend, with the bytes read from it not yet used. */
struct backend_conn {
    int fd;
    struct bufconn in;
    char key[POLICY_HOST_MAX + 16]; /* scheme://host:port */
    int64_t idle_since;
    struct backend_conn *next;
    char buf[BACKEND_BUF];
};

/* A pooled connection for route, or a new one; NULL with err.  *reused
 * says which (a reused one may turn out closed: the caller retries once). */
struct backend_conn *backend_open(const struct inference_env *env, const struct route *r,
                                  bool fresh, bool *reused, char *err, size_t errlen);
/* Back to the pool when reusable, closed otherwise. */
void backend_done(const struct inference_env *env, struct backend_conn *b, bool reusable);

/* ---- reply.c: what goes back to the client ---- */

struct reply {
    struct stream *s;
    int io_ms; /* longest wait to write one piece */
    bool chunked, head_sent, failed;
    uint64_t bytes;
};
int reply_head(struct reply *rp, int status, const char *reason, const char *headers,
               long long content_length);
int reply_piece(struct reply *rp, const char *p, size_t n);
int reply_end(struct reply *rp);
/* Head and body in one write: one TLS record, one packet when small. */
int reply_whole(struct reply *rp, int status, const char *reason, const char *headers,
                const char *body, size_t len);

/* The request being served, from its head to its logged answer. */
struct exchange {
    const struct inference_env *env;
    struct bufconn *cl;
    const struct inference_settings *lim;
    enum err_style style;
    enum protocol proto;
    const struct route *route;
    int minor;
    bool client_close, has_model, stream;
    struct json_span model; /* the top-level "model" member's value in body */
    char method[16];
    char path[PATH_MAX_LEN];
    const char *denied_rule;   /* a request rule refused it: its name, for the status line */
    char fwd[FWD_HEADERS_MAX]; /* the client headers that may pass, as lines */
    size_t fwd_len;
    bool has_anthropic_version;
    struct body_buffer body;      /* as the client sent it */
    struct body_buffer rewritten; /* as the current route's backend gets it, when it differs */
    struct caller who;            /* for budgets with `binary` */
    uint64_t admitted;            /* the budgets that counted this request (by index) */
    struct reply rp;
    struct inference_record rec;
    int64_t t0;
};

/* An error in the request's API shape, recorded for the log; true when the
 * connection may carry another request. */
bool exchange_fail(struct exchange *x, int status, const char *code, const char *message,
                   bool keep);
/* The same, for errors whose API has a code of its own or that carry more
 * headers. */
struct error_answer {
    int status;
    const char *code;     /* X-Egressd-Error and the log; the body's too unless api_code */
    const char *api_code; /* the body's code where the API has its own, else NULL */
    const char *headers;  /* more header lines ("Name: value\r\n"), or NULL */
};
bool exchange_answer_error(struct exchange *x, const struct error_answer *e, const char *message,
                           bool keep);
/* 429 for a request a budget refuses: the API's rate-limit code, and
 * Retry-After in seconds; the connection stays. */
bool exchange_limited(struct exchange *x, const struct budget_refusal *why);

/* ---- call.c ---- */

/* The call to x's route's backend, again or to its fallbacks while its
 * failures allow, and the answer relayed; true: keep-alive. */
bool call_backend(struct exchange *x);

/* ---- mock.c: the canned answer of a mock:// route ---- */

/* The usage the canned answer reports goes into *u, as a backend's would. */
int mock_respond(struct reply *rp, enum protocol proto, const char *model, bool stream,
                 struct usage *u);
/* x answered by its route's mock, as logged; true: keep-alive. */
bool mock_answer(struct exchange *x);

#endif
