/*
 * rng.c - random numbers for mbedTLS, and its error codes in words.
 *
 * A CTR-DRBG may be shared once seeded, but its reseeding is not
 * thread-safe, so each thread gets its own, seeded from getrandom(2) on
 * first use and freed when the thread ends (the pool shrinks).  No entropy
 * context is shared between threads at all.
 */
#include "tls_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>

static pthread_key_t rng_key;
static pthread_once_t rng_once = PTHREAD_ONCE_INIT;
static int rng_key_rc;

static void rng_free(void *p)
{
    mbedtls_ctr_drbg_free(p);
    free(p);
}

static void rng_make_key(void)
{
    rng_key_rc = pthread_key_create(&rng_key, rng_free);
}

static int getrandom_entropy(void *unused, unsigned char *out, size_t len)
{
    (void)unused;
    while (len > 0) {
        ssize_t n = getrandom(out, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
        out += n;
        len -= (size_t)n;
    }
    return 0;
}

static mbedtls_ctr_drbg_context *thread_drbg(void)
{
    if (pthread_once(&rng_once, rng_make_key) != 0 || rng_key_rc != 0)
        return NULL;
    mbedtls_ctr_drbg_context *d = pthread_getspecific(rng_key);
    if (d != NULL)
        return d;
    d = malloc(sizeof(*d));
    if (d == NULL)
        return NULL;
    mbedtls_ctr_drbg_init(d);
    static const unsigned char personal[] = "egressd";
    if (mbedtls_ctr_drbg_seed(d, getrandom_entropy, NULL, personal, sizeof(personal) - 1) != 0 ||
        pthread_setspecific(rng_key, d) != 0) {
        rng_free(d);
        return NULL;
    }
    return d;
}

int tls_rng(void *unused, unsigned char *out, size_t len)
{
    (void)unused;
    mbedtls_ctr_drbg_context *d = thread_drbg();
    if (d == NULL)
        return MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
    return mbedtls_ctr_drbg_random(d, out, len);
}

void tls_describe(int rc, bool timed_out, char *buf, size_t len)
{
    if (timed_out) {
        snprintf(buf, len, "timed out");
        return;
    }
    switch (rc) {
    case MBEDTLS_ERR_SSL_CONN_EOF:
    case MBEDTLS_ERR_NET_RECV_FAILED:
        snprintf(buf, len, "peer closed the connection");
        return;
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
        snprintf(buf, len, "peer sent a fatal alert (does it trust egressd's CA?)");
        return;
    default:
        break;
    }
    char msg[160];
    mbedtls_strerror(rc, msg, sizeof(msg));
    snprintf(buf, len, "%s (-0x%04x)", msg, (unsigned)-rc);
}

void tls_describe_verify(uint32_t flags, char *buf, size_t len)
{
    /* mbedTLS ends every reason with a newline: a log line takes one line */
    char lines[512];
    if (len == 0)
        return;
    buf[0] = '\0';
    if (mbedtls_x509_crt_verify_info(lines, sizeof(lines), "", flags) <= 0) {
        snprintf(buf, len, "verification failed (flags 0x%x)", (unsigned)flags);
        return;
    }
    size_t used = 0;
    char *save = NULL;
    for (char *l = strtok_r(lines, "\n", &save); l != NULL && used < len;
         l = strtok_r(NULL, "\n", &save)) {
        int n = snprintf(buf + used, len - used, "%s%s", used ? "; " : "", l);
        used += n > 0 ? (size_t)n : 0;
    }
}
