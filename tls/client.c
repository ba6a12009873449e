/*
 * client.c - TLS toward HTTPS backends.
 *
 * Verified against upstream_ca, with the backend's name set for both SNI
 * and the certificate name check (without mbedtls_ssl_set_hostname, 2.28
 * would verify the chain and skip the name), TLS 1.2, P-256 first.
 */
#include "tls_int.h"

#include <stdio.h>
#include <stdlib.h>

static const mbedtls_ecp_group_id client_curves[] = {
    MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_SECP521R1, MBEDTLS_ECP_DP_NONE};
static const char *client_alpn[] = {"http/1.1", NULL};

struct tls_client {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt roots;
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
    free(tc);
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
    if (rc != 0) {
        tls_describe(rc, false, err, errlen);
    } else if (stream_handshake(s, err, errlen) == 0) {
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
