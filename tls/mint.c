/*
 * mint.c - leaf certificates for intercepted hosts.
 *
 * Each leaf: the host as SubjectAltName (dNSName or iPAddress) and as CN
 * when it fits, SKI and AKI (Python's strict verification wants AKI),
 * EKU serverAuth, CA:FALSE, digitalSignature, a random 127-bit serial,
 * valid from a day ago (clock skew) for LEAF_DAYS.  mbedTLS 2.28 has no
 * setter for SAN or EKU, so their DER is written here with the asn1write
 * functions (which write backwards, from the end of the buffer).
 */
#include "tls_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/oid.h>
#include <mbedtls/x509_crt.h>

#define DER_MAX 4096

/* DER of a SEQUENCE holding one GeneralName; its length, or < 0.  The
 * result ends at buf + size. */
static int san_der(unsigned char *buf, size_t size, const char *host)
{
    unsigned char ip[16];
    unsigned char *p = buf + size;
    int len = 0, ret;
    int iplen = inet_pton(AF_INET, host, ip) == 1 ? 4 : inet_pton(AF_INET6, host, ip) == 1 ? 16 : 0;
    if (iplen > 0) {
        MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(&p, buf, ip, (size_t)iplen));
        MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, (size_t)iplen));
        MBEDTLS_ASN1_CHK_ADD(len,
                             mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7));
    } else {
        size_t n = strlen(host);
        MBEDTLS_ASN1_CHK_ADD(
            len, mbedtls_asn1_write_raw_buffer(&p, buf, (const unsigned char *)host, n));
        MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, n));
        MBEDTLS_ASN1_CHK_ADD(len,
                             mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2));
    }
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, (size_t)len));
    MBEDTLS_ASN1_CHK_ADD(
        len, mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
    return len;
}

static int eku_der(unsigned char *buf, size_t size)
{
    unsigned char *p = buf + size;
    int len = 0, ret;
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_SERVER_AUTH,
                                                     MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, (size_t)len));
    MBEDTLS_ASN1_CHK_ADD(
        len, mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
    return len;
}

static void x509_time(time_t t, char out[16])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 16, "%Y%m%d%H%M%S", &tm);
}

/* A random positive serial of 16 bytes. */
static int random_serial(mbedtls_mpi *serial)
{
    unsigned char raw[16];
    int rc = tls_rng(NULL, raw, sizeof(raw));
    if (rc != 0)
        return rc;
    raw[0] &= 0x7f;
    raw[0] |= 0x01; /* never zero, never negative */
    return mbedtls_mpi_read_binary(serial, raw, sizeof(raw));
}

/* Set everything but the extensions we build ourselves. */
static int leaf_basics(mbedtls_x509write_cert *w, struct ca *ca, const char *host,
                       mbedtls_mpi *serial)
{
    char subject[96], from[16], to[16];
    time_t now = time(NULL);
    int rc;
    /* CN holds at most 64 characters (RFC 5280); the SAN always holds the host */
    if (strlen(host) <= 64)
        snprintf(subject, sizeof(subject), "CN=%s", host);
    else
        snprintf(subject, sizeof(subject), "O=egressd");
    x509_time(now - 86400, from);
    x509_time(now + LEAF_DAYS * 86400, to);
    mbedtls_x509write_crt_set_version(w, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(w, &ca->leaf_key);
    mbedtls_x509write_crt_set_issuer_key(w, &ca->key);
    if ((rc = random_serial(serial)) != 0 ||
        (rc = mbedtls_x509write_crt_set_serial(w, serial)) != 0 ||
        (rc = mbedtls_x509write_crt_set_validity(w, from, to)) != 0 ||
        (rc = mbedtls_x509write_crt_set_subject_name(w, subject)) != 0 ||
        (rc = mbedtls_x509write_crt_set_issuer_name(w, ca->issuer)) != 0 ||
        (rc = mbedtls_x509write_crt_set_basic_constraints(w, 0, -1)) != 0 ||
        (rc = mbedtls_x509write_crt_set_key_usage(w, MBEDTLS_X509_KU_DIGITAL_SIGNATURE)) != 0 ||
        (rc = mbedtls_x509write_crt_set_subject_key_identifier(w)) != 0 ||
        (rc = mbedtls_x509write_crt_set_authority_key_identifier(w)) != 0)
        return rc;
    return 0;
}

static int leaf_extensions(mbedtls_x509write_cert *w, const char *host)
{
    unsigned char san[600], eku[64];
    int san_len = san_der(san, sizeof(san), host);
    int eku_len = eku_der(eku, sizeof(eku));
    int rc;
    if (san_len < 0)
        return san_len;
    if (eku_len < 0)
        return eku_len;
    if ((rc = mbedtls_x509write_crt_set_extension(
             w, MBEDTLS_OID_SUBJECT_ALT_NAME, MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0,
             san + sizeof(san) - san_len, (size_t)san_len)) != 0)
        return rc;
    return mbedtls_x509write_crt_set_extension(w, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                                               MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0,
                                               eku + sizeof(eku) - eku_len, (size_t)eku_len);
}

int mint_leaf(struct ca *ca, const char *host, struct leaf *l, char *err, size_t errlen)
{
    mbedtls_x509write_cert w;
    mbedtls_mpi serial;
    unsigned char der[DER_MAX];
    mbedtls_x509write_crt_init(&w);
    mbedtls_mpi_init(&serial);
    int rc = leaf_basics(&w, ca, host, &serial);
    if (rc == 0)
        rc = leaf_extensions(&w, host);
    int len = rc == 0 ? mbedtls_x509write_crt_der(&w, der, sizeof(der), tls_rng, NULL) : rc;
    mbedtls_x509write_crt_free(&w);
    mbedtls_mpi_free(&serial);
    if (len < 0) {
        tls_describe(len, false, err, errlen);
        return -1;
    }
    mbedtls_x509_crt_init(&l->crt);
    rc = mbedtls_x509_crt_parse_der(&l->crt, der + sizeof(der) - len, (size_t)len);
    if (rc != 0) {
        mbedtls_x509_crt_free(&l->crt);
        tls_describe(rc, false, err, errlen);
        return -1;
    }
    snprintf(l->host, sizeof(l->host), "%s", host);
    l->renew_after = time(NULL) + LEAF_DAYS * 86400 - LEAF_RENEW_SECS;
    return 0;
}
