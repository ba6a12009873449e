/*
 * ca.c - egressd's certificate authority, and the bundle the sandbox trusts.
 *
 * The CA is loaded from ca_cert/ca_key, or created (ECDSA P-256, ten years,
 * key written 0600 and never overwritten) when both are missing; one
 * without the other is an error, never a silent replacement.  A leaf for a
 * test host is minted and verified against the CA before anything is
 * served, so a CA whose name or key cannot produce verifiable leaves is
 * found at start, not by the first client.  The bundle is the upstream
 * roots followed by our CA, written atomically (temporary file + rename).
 */
#include "tls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/x509_crt.h>

#define CA_SUBJECT "CN=egressd interception CA,O=egressd"
#define CA_YEARS   10

static int gen_p256(mbedtls_pk_context *pk)
{
    int rc = mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (rc == 0)
        rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk), tls_rng, NULL);
    return rc;
}

/* Write data to a new file with mode; refuses to overwrite. */
static int write_new_file(const char *path, const void *data, size_t len, mode_t mode, char *err,
                          size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    ssize_t n = write(fd, data, len);
    int rc = (n == (ssize_t)len && fsync(fd) == 0) ? 0 : -1;
    if (rc != 0)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    if (close(fd) != 0 && rc == 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        rc = -1;
    }
    if (rc != 0)
        unlink(path);
    return rc;
}

static int self_signed_pem(mbedtls_pk_context *key, unsigned char *out, size_t outlen)
{
    mbedtls_x509write_cert w;
    mbedtls_mpi serial;
    char from[16], to[16];
    unsigned char raw[16];
    time_t now = time(NULL);
    struct tm tm;
    mbedtls_x509write_crt_init(&w);
    mbedtls_mpi_init(&serial);
    gmtime_r(&(time_t){now - 86400}, &tm);
    strftime(from, sizeof(from), "%Y%m%d%H%M%S", &tm);
    gmtime_r(&(time_t){now + (time_t)CA_YEARS * 365 * 86400}, &tm);
    strftime(to, sizeof(to), "%Y%m%d%H%M%S", &tm);
    mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w, key);
    mbedtls_x509write_crt_set_issuer_key(&w, key);
    int rc = tls_rng(NULL, raw, sizeof(raw));
    raw[0] = (unsigned char)((raw[0] & 0x7f) | 1);
    if (rc == 0 && (rc = mbedtls_mpi_read_binary(&serial, raw, sizeof(raw))) == 0 &&
        (rc = mbedtls_x509write_crt_set_serial(&w, &serial)) == 0 &&
        (rc = mbedtls_x509write_crt_set_validity(&w, from, to)) == 0 &&
        (rc = mbedtls_x509write_crt_set_subject_name(&w, CA_SUBJECT)) == 0 &&
        (rc = mbedtls_x509write_crt_set_issuer_name(&w, CA_SUBJECT)) == 0 &&
        (rc = mbedtls_x509write_crt_set_basic_constraints(&w, 1, 0)) == 0 &&
        (rc = mbedtls_x509write_crt_set_key_usage(&w, MBEDTLS_X509_KU_KEY_CERT_SIGN |
                                                          MBEDTLS_X509_KU_CRL_SIGN)) == 0 &&
        (rc = mbedtls_x509write_crt_set_subject_key_identifier(&w)) == 0 &&
        (rc = mbedtls_x509write_crt_set_authority_key_identifier(&w)) == 0)
        rc = mbedtls_x509write_crt_pem(&w, out, outlen, tls_rng, NULL);
    mbedtls_x509write_crt_free(&w);
    mbedtls_mpi_free(&serial);
    return rc;
}

/* The directory of path, created (0700) when it is missing. */
static int ensure_dir_of(const char *path, char *err, size_t errlen)
{
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return 0;
    *slash = '\0';
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return 0;
    snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
    return -1;
}

static int create_ca(const struct tls_settings *set, char *err, size_t errlen)
{
    mbedtls_pk_context key;
    unsigned char key_pem[1024], crt_pem[4096];
    mbedtls_pk_init(&key);
    int rc = gen_p256(&key);
    if (rc == 0)
        rc = mbedtls_pk_write_key_pem(&key, key_pem, sizeof(key_pem));
    if (rc == 0)
        rc = self_signed_pem(&key, crt_pem, sizeof(crt_pem));
    mbedtls_pk_free(&key);
    if (rc != 0) {
        char why[200];
        tls_describe(rc, false, why, sizeof(why));
        snprintf(err, errlen, "cannot create a CA: %s", why);
        explicit_bzero(key_pem, sizeof(key_pem));
        return -1;
    }
    rc = ensure_dir_of(set->ca_key, err, errlen) || ensure_dir_of(set->ca_cert, err, errlen)
             ? -1
             : write_new_file(set->ca_key, key_pem, strlen((char *)key_pem), 0600, err, errlen);
    explicit_bzero(key_pem, sizeof(key_pem));
    if (rc == 0 &&
        write_new_file(set->ca_cert, crt_pem, strlen((char *)crt_pem), 0644, err, errlen) != 0) {
        unlink(set->ca_key); /* never leave one file without the other */
        rc = -1;
    }
    return rc;
}

/* A CA key other users can read lets them mint certificates every sandbox
 * trusts: refused, as sshd refuses a private key open to others. */
static int key_private(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "ca_key %s: %s", path, strerror(errno));
        return -1;
    }
    if ((st.st_mode & 0027) != 0) {
        snprintf(err, errlen,
                 "ca_key %s is open to other users (mode %04o): make it 0600 (chmod 600 %s)", path,
                 (unsigned)(st.st_mode & 07777), path);
        return -1;
    }
    return 0;
}

static int load_ca(struct ca *ca, const struct tls_settings *set, char *err, size_t errlen)
{
    char why[200];
    if (key_private(set->ca_key, err, errlen) != 0)
        return -1;
    int rc = mbedtls_x509_crt_parse_file(&ca->crt, set->ca_cert);
    if (rc != 0) {
        tls_describe(rc, false, why, sizeof(why));
        snprintf(err, errlen, "ca_cert %s: %s", set->ca_cert, rc > 0 ? "not a certificate" : why);
        return -1;
    }
    rc = mbedtls_pk_parse_keyfile(&ca->key, set->ca_key, NULL);
    if (rc != 0) {
        tls_describe(rc, false, why, sizeof(why));
        snprintf(err, errlen, "ca_key %s: %s", set->ca_key, why);
        return -1;
    }
    if (!ca->crt.ca_istrue) {
        snprintf(err, errlen, "ca_cert %s is not a CA certificate (basicConstraints CA:FALSE)",
                 set->ca_cert);
        return -1;
    }
    if (mbedtls_pk_check_pair(&ca->crt.pk, &ca->key) != 0) {
        snprintf(err, errlen, "ca_key %s does not belong to ca_cert %s", set->ca_key, set->ca_cert);
        return -1;
    }
    if (mbedtls_x509_dn_gets(ca->issuer, sizeof(ca->issuer), &ca->crt.subject) < 0) {
        snprintf(err, errlen, "ca_cert %s: subject name too long", set->ca_cert);
        return -1;
    }
    return 0;
}

/* Mint and verify one leaf; this also builds the EC tables of both keys
 * while only one thread runs (they are built lazily and not thread-safe). */
static int self_test(struct ca *ca, char *err, size_t errlen)
{
    struct leaf l = {0};
    uint32_t flags = 0;
    char why[200];
    if (mint_leaf(ca, "egressd.selftest", &l, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "cannot mint with this CA: %s", why);
        return -1;
    }
    int rc =
        mbedtls_x509_crt_verify(&l.crt, &ca->crt, NULL, "egressd.selftest", &flags, NULL, NULL);
    mbedtls_x509_crt_free(&l.crt);
    if (rc != 0) {
        tls_describe_verify(flags, why, sizeof(why));
        snprintf(err, errlen, "leaves minted with this CA do not verify: %s", why);
        return -1;
    }
    return 0;
}

/*
 * The handshake signs with leaf_signer, not leaf_key.  mbedTLS 2.28 signs
 * with an ECKEY context through a temporary copy of its group, so every
 * signature recomputes the comb table of the base point (1.5 ms instead of
 * 0.7 ms here); an ECDSA context is signed with directly and keeps the
 * table it computed.  The table is computed here, on one thread, by a
 * first signature: afterwards concurrent handshakes only read it.
 * leaf_key stays the ECKEY context, which is what certificate writing needs.
 */
static int make_leaf_signer(struct ca *ca)
{
    unsigned char hash[32] = {0}, sig[MBEDTLS_ECDSA_MAX_LEN];
    size_t siglen;
    int rc = mbedtls_pk_setup(&ca->leaf_signer, mbedtls_pk_info_from_type(MBEDTLS_PK_ECDSA));
    if (rc == 0)
        rc =
            mbedtls_ecdsa_from_keypair(mbedtls_pk_ec(ca->leaf_signer), mbedtls_pk_ec(ca->leaf_key));
    if (rc == 0)
        rc = mbedtls_pk_sign(&ca->leaf_signer, MBEDTLS_MD_SHA256, hash, sizeof(hash), sig, &siglen,
                             tls_rng, NULL);
    return rc;
}

int ca_load_or_create(struct ca *ca, const struct tls_settings *set, char *err, size_t errlen)
{
    mbedtls_x509_crt_init(&ca->crt);
    mbedtls_pk_init(&ca->key);
    mbedtls_pk_init(&ca->leaf_key);
    mbedtls_pk_init(&ca->leaf_signer);
    bool have_crt = access(set->ca_cert, F_OK) == 0, have_key = access(set->ca_key, F_OK) == 0;
    if (have_crt != have_key) {
        snprintf(err, errlen,
                 "%s exists but %s does not: restore it, or remove both to create a new CA",
                 have_crt ? set->ca_cert : set->ca_key, have_crt ? set->ca_key : set->ca_cert);
        return -1;
    }
    if (!have_crt && create_ca(set, err, errlen) != 0)
        return -1;
    if (load_ca(ca, set, err, errlen) != 0)
        return -1;
    int rc = gen_p256(&ca->leaf_key);
    if (rc == 0)
        rc = make_leaf_signer(ca);
    if (rc != 0) {
        char why[200];
        tls_describe(rc, false, why, sizeof(why));
        snprintf(err, errlen, "cannot make the leaf key: %s", why);
        return -1;
    }
    return self_test(ca, err, errlen);
}

void ca_free(struct ca *ca)
{
    mbedtls_x509_crt_free(&ca->crt);
    mbedtls_pk_free(&ca->key);
    mbedtls_pk_free(&ca->leaf_key);
    mbedtls_pk_free(&ca->leaf_signer);
}

static int append_file(FILE *out, const char *path, char *err, size_t errlen)
{
    char buf[65536];
    size_t n;
    FILE *in = fopen(path, "rb");
    if (in == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        if (fwrite(buf, 1, n, out) != n)
            break;
    }
    int rc = ferror(in) || ferror(out) ? -1 : 0;
    fclose(in);
    if (rc != 0)
        snprintf(err, errlen, "cannot copy %s into the bundle", path);
    return rc;
}

int ca_write_bundle(const struct tls_settings *set, char *err, size_t errlen)
{
    char tmp[300];
    err[0] = '\0';
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", set->bundle, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *out = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (out == NULL) {
        snprintf(err, errlen, "cannot write the bundle %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int rc = append_file(out, set->upstream_ca, err, errlen);
    if (rc == 0)
        rc = fputs("\n", out) < 0 ? -1 : append_file(out, set->ca_cert, err, errlen);
    if (fflush(out) != 0 || fsync(fileno(out)) != 0)
        rc = -1;
    if (fclose(out) != 0)
        rc = -1;
    if (rc == 0 && rename(tmp, set->bundle) != 0) {
        snprintf(err, errlen, "cannot write the bundle %s: %s", set->bundle, strerror(errno));
        rc = -1;
    }
    if (rc != 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "cannot write the bundle %s", set->bundle);
        unlink(tmp);
    }
    return rc;
}
