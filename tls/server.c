/*
 * server.c - the TLS server side of intercepted connections.
 *
 * One shared configuration: TLS 1.2 only (mbedTLS 2.28 has no 1.3), ALPN
 * http/1.1 only, X25519 then P-256 for the key exchange (mbedTLS picks by
 * its own list; its default starts with P-521 at four times the cost, and
 * X25519 costs 2.2 ms where P-256 costs 2.8 ms, since 2.28 recomputes
 * P-256's base-point table for every handshake's fresh group), session
 * tickets on, so that a returning client resumes for a fraction of a full
 * handshake.  The leaf is chosen per connection, before the handshake, for
 * the CONNECT host: from the cache, or minted (one thread at a time: the
 * CA key's EC tables are not thread-safe) and cached.  The SNI callback
 * refuses a name other than the CONNECT host; 2.28 gives it no user data,
 * but it gets the SSL context, whose BIO pointer is our stream.
 */
#include "tls_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/cipher.h>

/* Stored by pointer in the configuration: static. */
static const mbedtls_ecp_group_id curves[] = {MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1,
                                              MBEDTLS_ECP_DP_SECP384R1, MBEDTLS_ECP_DP_NONE};
static const char *alpn[] = {"http/1.1", NULL};

#define TICKET_LIFETIME_S 86400

static int sni_check(void *unused, mbedtls_ssl_context *ssl, const unsigned char *name, size_t len)
{
    (void)unused;
    struct stream *s = ssl->p_bio; /* our BIO context: see mbedtls_ssl_set_bio in stream.c */
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len != strlen(s->expected_host) || strncasecmp((const char *)name, s->expected_host, len)) {
        s->sni_mismatch = true;
        return -1;
    }
    return 0;
}

static int server_config(struct tls_server *ts, char *err, size_t errlen)
{
    mbedtls_ssl_config *c = &ts->conf;
    int rc = mbedtls_ssl_config_defaults(c, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                         MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc == 0)
        rc = mbedtls_ssl_ticket_setup(&ts->tickets, tls_rng, NULL, MBEDTLS_CIPHER_AES_256_GCM,
                                      TICKET_LIFETIME_S);
    if (rc == 0)
        rc = mbedtls_ssl_conf_alpn_protocols(c, alpn);
    if (rc != 0) {
        char why[200];
        tls_describe(rc, false, why, sizeof(why));
        snprintf(err, errlen, "TLS server setup: %s", why);
        return -1;
    }
    mbedtls_ssl_conf_min_version(c, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_rng(c, tls_rng, NULL);
    mbedtls_ssl_conf_curves(c, curves);
    mbedtls_ssl_conf_session_tickets_cb(c, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse,
                                        &ts->tickets);
    mbedtls_ssl_conf_sni(c, sni_check, NULL);
    return 0;
}

struct tls_server *tls_server_new(const struct tls_settings *set, char *err, size_t errlen)
{
    struct tls_server *ts = calloc(1, sizeof(*ts));
    if (ts == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    mbedtls_ssl_config_init(&ts->conf);
    mbedtls_ssl_ticket_init(&ts->tickets);
    pthread_mutex_init(&ts->mint_mu, NULL);
    ts->cache = leaf_cache_new(set->cert_cache);
    if (ts->cache == NULL) {
        snprintf(err, errlen, "out of memory");
    } else if (ca_load_or_create(&ts->ca, set, err, errlen) == 0 &&
               ca_write_bundle(set, err, errlen) == 0 && server_config(ts, err, errlen) == 0) {
        return ts;
    }
    tls_server_free(ts);
    return NULL;
}

void tls_server_free(struct tls_server *ts)
{
    if (ts == NULL)
        return;
    mbedtls_ssl_config_free(&ts->conf);
    mbedtls_ssl_ticket_free(&ts->tickets);
    ca_free(&ts->ca);
    leaf_cache_free(ts->cache);
    pthread_mutex_destroy(&ts->mint_mu);
    free(ts);
}

/* The leaf for host, referenced: cached, or minted once however many ask. */
static struct leaf *leaf_for(struct tls_server *ts, const char *host, char *err, size_t errlen)
{
    struct leaf *l = leaf_cache_get(ts->cache, host, time(NULL));
    if (l != NULL)
        return l;
    pthread_mutex_lock(&ts->mint_mu);
    l = leaf_cache_get(ts->cache, host, time(NULL)); /* minted while we waited? */
    if (l == NULL) {
        l = calloc(1, sizeof(*l));
        if (l == NULL)
            snprintf(err, errlen, "out of memory");
        else if (mint_leaf(&ts->ca, host, l, err, errlen) != 0) {
            free(l);
            l = NULL;
        } else {
            l->refs = 1; /* ours; the cache takes another */
            leaf_cache_put(ts->cache, l);
        }
    }
    pthread_mutex_unlock(&ts->mint_mu);
    return l;
}

struct stream *tls_server_accept(struct tls_server *ts, int fd, const char *host, const void *pre,
                                 size_t prelen, int64_t deadline, char *err, size_t errlen)
{
    struct leaf *l = leaf_for(ts, host, err, errlen);
    if (l == NULL)
        return NULL;
    struct stream *s = stream_tls_new(fd, &ts->conf, deadline);
    int rc = -1;
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
    } else {
        s->pre = pre;
        s->prelen = prelen;
        s->expected_host = host;
        rc = mbedtls_ssl_set_hs_own_cert(&s->tls->ssl, &l->crt, &ts->ca.leaf_signer);
        if (rc == 0)
            rc = stream_handshake(s, err, errlen);
        else
            tls_describe(rc, false, err, errlen);
        if (rc != 0 && s->sni_mismatch)
            snprintf(err, errlen, "client SNI differs from the CONNECT host %s", host);
    }
    leaf_release(ts->cache, l); /* the handshake is over: the session no longer needs it */
    if (rc != 0) {
        stream_free(s);
        return NULL;
    }
    s->pre = NULL;
    s->prelen = 0;
    s->expected_host = NULL;
    return s;
}

void tls_server_stats(struct tls_server *ts, struct tls_cache_stats *st)
{
    leaf_cache_stats(ts->cache, st);
}
