/*
 * infer_int.h - shared by the files that serve intercepted requests.
 */
#ifndef EGRESSD_INFER_INT_H
#define EGRESSD_INFER_INT_H

#include "inference.h"

#define BACKEND_BUF (64 * 1024)

/* A connection to a backend, with the bytes read from it not yet used. */
struct backend_conn {
    int fd;
    struct stream *s;
    char key[POLICY_HOST_MAX + 16]; /* scheme://host:port */
    int64_t idle_since;
    struct backend_conn *next;
    size_t len;
    char buf[BACKEND_BUF];
};

/* A pooled connection for route, or a new one; NULL with err.  *reused
 * says which (a reused one may turn out closed: the caller retries once). */
struct backend_conn *backend_open(const struct inference_env *env, const struct route *r,
                                  bool fresh, bool *reused, char *err, size_t errlen);
/* Back to the pool when reusable, closed otherwise. */
void backend_done(const struct inference_env *env, struct backend_conn *b, bool reusable);

/* What goes back to the client: a head, then pieces, then the end. */
struct reply {
    struct inference_client *cl;
    int io_ms;
    bool chunked, head_sent, failed;
    uint64_t bytes;
};
int reply_head(struct reply *rp, int status, const char *reason, const char *headers,
               long long content_length);
int reply_piece(struct reply *rp, const char *p, size_t n);
int reply_end(struct reply *rp);
int reply_whole(struct reply *rp, int status, const char *reason, const char *headers,
                const char *body, size_t len);

/* mock.c: the canned answer of a mock:// route. */
int mock_respond(struct reply *rp, enum protocol proto, const char *model, bool stream);

#endif
