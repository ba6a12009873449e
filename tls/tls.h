/*
 * tls.h - the public face of the tls module: byte streams over a socket,
 * plain or TLS, and the two ends egressd speaks TLS on.
 *
 *   - tls_server: egressd's own CA (loaded, or created on first start), the
 *     leaf certificates it mints per intercepted host (kept in an LRU), and
 *     the server side of intercepted connections.
 *   - tls_client: connections to HTTPS backends, verified against the
 *     configured roots, with SNI and a host name check.
 *
 * Like curl's vtls layer, this header is the whole interface: nothing
 * outside tls/ sees mbedTLS.  Every wait has a deadline; a stream never owns
 * its socket (the caller closes it).
 *
 * Error convention: I/O returns enum io_result; constructors return a
 * pointer, or NULL with the reason in the caller's err buffer.
 */
#ifndef EGRESSD_TLS_H
#define EGRESSD_TLS_H

#include "../policy/policy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- socket I/O with deadlines (every socket is non-blocking) ----
 *
 * Every wait has a deadline in now_ms() time that covers a whole phase (a
 * head, a handshake, a body, a reply): a peer sending or reading one byte
 * at a time gains nothing.  Results are enum io_result. */

enum io_result {
    IO_OK,      /* done (a read brought at least one byte) */
    IO_EOF,     /* the peer closed (reads only) */
    IO_TIMEOUT, /* the deadline passed */
    IO_ERROR,   /* the connection failed (errno may say why) */
};

/* now_ms(), the clock of every deadline, is policy/'s (policy.h): the
 * lowest layer needs it too. */

/* One poll(2): revents (> 0) when ready, 0 on timeout, -1 on error. */
int fd_wait(int fd, short events, int timeout_ms);
enum io_result fd_read(int fd, void *buf, size_t cap, size_t *got, int64_t deadline);
enum io_result fd_write_all(int fd, const void *buf, size_t len, int64_t deadline);

/* ---- streams ---- */

struct stream;

/* A plain stream over fd (NULL when out of memory). */
struct stream *stream_plain(int fd);
enum io_result stream_read(struct stream *s, void *buf, size_t cap, size_t *got, int64_t deadline);
enum io_result stream_write_all(struct stream *s, const void *buf, size_t len, int64_t deadline);
int stream_fd(const struct stream *s);
bool stream_is_tls(const struct stream *s);
/* Bytes a read would return (or make progress on) without the socket
 * becoming readable: decrypted, or received and not yet decrypted.  A
 * poll(2) on the socket cannot see them. */
size_t stream_pending(const struct stream *s);
/* Ends TLS politely (close_notify, briefly) and frees; never closes the socket. */
void stream_free(struct stream *s);

/* ---- the interception side ---- */

struct tls_server;

/* Load the CA, or create it when both files are missing; write the bundle
 * (upstream roots + CA); prepare the server configuration.  NULL with err
 * set on failure. */
struct tls_server *tls_server_new(const struct tls_settings *set, char *err, size_t errlen);
void tls_server_free(struct tls_server *ts);

/* TLS handshake on fd as `host` (the CONNECT host).  pre holds bytes the
 * caller already read from fd; they are fed to the handshake first.  A
 * client SNI other than host is refused.  NULL with err set on failure. */
struct stream *tls_server_accept(struct tls_server *ts, int fd, const char *host, const void *pre,
                                 size_t prelen, int64_t deadline, char *err, size_t errlen);

struct tls_cache_stats {
    uint64_t hits, misses;
    size_t size;
};
void tls_server_stats(struct tls_server *ts, struct tls_cache_stats *st);

/* ---- the backend side ---- */

struct tls_client;

struct tls_client *tls_client_new(const char *ca_path, char *err, size_t errlen);
void tls_client_free(struct tls_client *tc);
struct stream *tls_client_connect(struct tls_client *tc, int fd, const char *hostname,
                                  int64_t deadline, char *err, size_t errlen);

#endif
