/*
 * tls_int.h - shared between the files of the tls module (and its unit
 * tests); nothing else includes it.
 */
#ifndef EGRESSD_TLS_INT_H
#define EGRESSD_TLS_INT_H

#include "tls.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#define CLOSE_NOTIFY_MS 200
#define LEAF_DAYS       7     /* validity of a minted leaf ... */
#define LEAF_RENEW_SECS 86400 /* ... re-minted when less than this is left */

#define STREAM_AHEAD 4096

/* The TLS half of a stream, allocated only for TLS: every connection has a
 * plain stream for its client, and an idle tunnel should not pay for this. */
struct tls_session {
    mbedtls_ssl_context ssl;
    /* Read-ahead: mbedTLS asks for a record's 5-byte header, then for its
     * body; one recv into ahead serves both for records that fit. */
    unsigned char ahead[STREAM_AHEAD];
    size_t ahead_off, ahead_len;
};

struct stream {
    int fd;
    bool timed_out;
    int64_t deadline;         /* of the current call: every wait inside it ends there */
    const unsigned char *pre; /* bytes read before the handshake, fed first */
    size_t prelen;
    const char *expected_host; /* server side: the SNI we accept */
    bool sni_mismatch;
    struct tls_session *tls; /* NULL for a plain stream */
};

int bio_recv(void *ctx, unsigned char *buf, size_t len);
int bio_send(void *ctx, const unsigned char *buf, size_t len);
struct stream *stream_tls_new(int fd, const mbedtls_ssl_config *conf, int64_t deadline);
int stream_handshake(struct stream *s, char *err, size_t errlen);

/* rng.c: a CTR-DRBG per thread, seeded from getrandom(2); for f_rng. */
int tls_rng(void *unused, unsigned char *out, size_t len);
/* One line about an mbedTLS error code. */
void tls_describe(int rc, bool timed_out, char *buf, size_t len);
/* One line about certificate verification flags ("; " between reasons). */
void tls_describe_verify(uint32_t flags, char *buf, size_t len);

/* cache.c: minted leaves by host, least recently used out first.  An entry
 * lives while the cache or a handshake holds it. */
struct leaf {
    char host[POLICY_HOST_MAX + 1];
    mbedtls_x509_crt crt;
    time_t renew_after;
    int refs;
    struct leaf *prev, *next, *hnext;
};
struct leaf_cache;
struct leaf_cache *leaf_cache_new(size_t capacity);
void leaf_cache_free(struct leaf_cache *c);
/* A referenced fresh leaf for host, or NULL (a miss). */
struct leaf *leaf_cache_get(struct leaf_cache *c, const char *host, time_t now);
/* Insert (the cache takes its own reference), evicting what does not fit. */
void leaf_cache_put(struct leaf_cache *c, struct leaf *l);
void leaf_release(struct leaf_cache *c, struct leaf *l);
void leaf_cache_stats(struct leaf_cache *c, struct tls_cache_stats *st);

/* mint.c */
struct ca {
    mbedtls_x509_crt crt;
    mbedtls_pk_context key;
    mbedtls_pk_context leaf_key;    /* one key for every leaf: minting costs a signature only */
    mbedtls_pk_context leaf_signer; /* the same key as an ECDSA context: see make_leaf_signer */
    char issuer[512];               /* the CA's subject, as set on every leaf */
};
/* Mint a leaf for host (a name or an IP literal) into l->crt; 0 or -1 (err). */
int mint_leaf(struct ca *ca, const char *host, struct leaf *l, char *err, size_t errlen);

/* ca.c */
int ca_load_or_create(struct ca *ca, const struct tls_settings *set, char *err, size_t errlen);
void ca_free(struct ca *ca);
int ca_write_bundle(const struct tls_settings *set, char *err, size_t errlen);

struct tls_server {
    struct ca ca;
    mbedtls_ssl_config conf;
    mbedtls_ssl_ticket_context tickets;
    pthread_mutex_t mint_mu; /* signing with the CA key is serialised */
    struct leaf_cache *cache;
};

#endif
