/*
 * client.c - TLS toward HTTPS backends.
 *
 * Verified against upstream_ca, with the backend's name set for both SNI
 * and the certificate name check (without mbedtls_ssl_set_hostname, 2.28
 * would verify the chain and skip the name), TLS 1.2, P-256 first.
 *
 * Sessions are kept per host name (at most SESSIONS_MAX, least recently
 * used out first) and offered again: a resumed handshake skips the two
 * ECDSA verifications and the key exchange that make up most of a new
 * inspected connection's cost.  A session was established with this
 * client's roots and a verified certificate for that name; a reload that
 * changes the roots makes a new client, and with it an empty cache.
 */
#include "tls_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESSIONS_MAX 256

static const mbedtls_ecp_group_id client_curves[] = {
    MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_SECP521R1, MBEDTLS_ECP_DP_NONE};
static const char *client_alpn[] = {"http/1.1", NULL};

struct cached_session {
    char host[POLICY_HOST_MAX + 1]; /* "": a free slot */
    mbedtls_ssl_session s;
    uint64_t used; /* the cache's clock when last offered or stored */
};

struct tls_client {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt roots;
    pthread_mutex_t mu;              /* guards what follows */
    struct cached_session *sessions; /* SESSIONS_MAX, made on first use */
    uint64_t clock;
};

struct tls_client *tls_client_new(const char *ca_path, char *err, size_t errlen)
{
    struct tls_client *tc = calloc(1, sizeof(*tc));
    char why[200];
    if (tc == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    mbedtls_ssl_config_init(&tc->conf);
    mbedtls_x509_crt_init(&tc->roots);
    pthread_mutex_init(&tc->mu, NULL);
    int rc = mbedtls_x509_crt_parse_file(&tc->roots, ca_path);
    if (rc < 0) { /* > 0: some certificates in the bundle were skipped, the rest loaded */
        tls_describe(rc, false, why, sizeof(why));
        snprintf(err, errlen, "upstream_ca %s: %s", ca_path, why);
        tls_client_free(tc);
        return NULL;
    }
    rc = mbedtls_ssl_config_defaults(&tc->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                     MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc == 0)
        rc = mbedtls_ssl_conf_alpn_protocols(&tc->conf, client_alpn);
    if (rc != 0) {
        tls_describe(rc, false, why, sizeof(why));
        snprintf(err, errlen, "TLS client setup: %s", why);
        tls_client_free(tc);
        return NULL;
    }
    mbedtls_ssl_conf_min_version(&tc->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_authmode(&tc->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&tc->conf, &tc->roots, NULL);
    mbedtls_ssl_conf_rng(&tc->conf, tls_rng, NULL);
    mbedtls_ssl_conf_curves(&tc->conf, client_curves);
    return tc;
}

void tls_client_free(struct tls_client *tc)
{
    if (tc == NULL)
        return;
    mbedtls_ssl_config_free(&tc->conf);
    mbedtls_x509_crt_free(&tc->roots);
    for (size_t i = 0; tc->sessions != NULL && i < SESSIONS_MAX; i++)
        mbedtls_ssl_session_free(&tc->sessions[i].s);
    free(tc->sessions);
    pthread_mutex_destroy(&tc->mu);
    free(tc);
}

/* The slot of host's session, or (want_free) the slot to put one in: a
 * free one, else the least recently used; NULL when there is none.  Under
 * tc->mu. */
static struct cached_session *session_slot(struct tls_client *tc, const char *host, bool want_free)
{
    if (tc->sessions == NULL && want_free) {
        tc->sessions = calloc(SESSIONS_MAX, sizeof(*tc->sessions));
        for (size_t i = 0; tc->sessions != NULL && i < SESSIONS_MAX; i++)
            mbedtls_ssl_session_init(&tc->sessions[i].s);
    }
    struct cached_session *oldest = NULL;
    for (size_t i = 0; tc->sessions != NULL && i < SESSIONS_MAX; i++) {
        struct cached_session *c = &tc->sessions[i];
        if (c->host[0] != '\0' && strcmp(c->host, host) == 0)
            return c;
        if (oldest == NULL || c->used < oldest->used)
            oldest = c;
    }
    return want_free ? oldest : NULL;
}

/* Offer host's session, when there is one, to the handshake to come. */
static void session_offer(struct tls_client *tc, mbedtls_ssl_context *ssl, const char *host)
{
    pthread_mutex_lock(&tc->mu);
    struct cached_session *c = session_slot(tc, host, false);
    if (c != NULL && mbedtls_ssl_set_session(ssl, &c->s) == 0)
        c->used = ++tc->clock;
    pthread_mutex_unlock(&tc->mu);
}

/* Keep the session of a finished handshake for host's next connection. */
static void session_keep(struct tls_client *tc, const mbedtls_ssl_context *ssl, const char *host)
{
    if (strlen(host) >= sizeof(tc->sessions[0].host))
        return;
    pthread_mutex_lock(&tc->mu);
    struct cached_session *c = session_slot(tc, host, true);
    if (c != NULL) {
        mbedtls_ssl_session_free(&c->s);
        mbedtls_ssl_session_init(&c->s);
        bool kept = mbedtls_ssl_get_session(ssl, &c->s) == 0;
        snprintf(c->host, sizeof(c->host), "%s", kept ? host : "");
        c->used = ++tc->clock;
    }
    pthread_mutex_unlock(&tc->mu);
}

struct stream *tls_client_connect(struct tls_client *tc, int fd, const char *hostname,
                                  int64_t deadline, char *err, size_t errlen)
{
    struct stream *s = stream_tls_new(fd, &tc->conf, deadline);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int rc = mbedtls_ssl_set_hostname(&s->tls->ssl, hostname);
    if (rc == 0)
        session_offer(tc, &s->tls->ssl, hostname);
    if (rc != 0) {
        tls_describe(rc, false, err, errlen);
    } else if (stream_handshake(s, err, errlen) == 0) {
        session_keep(tc, &s->tls->ssl, hostname);
        return s;
    } else {
        uint32_t flags = mbedtls_ssl_get_verify_result(&s->tls->ssl);
        if (flags != 0 && flags != (uint32_t)-1) {
            char info[200];
            tls_describe_verify(flags, info, sizeof(info));
            snprintf(err, errlen, "backend certificate not trusted: %s", info);
        }
    }
    stream_free(s);
    return NULL;
}
