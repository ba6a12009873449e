/*
 * trust.c - trust on first use for executables (DESIGN section 6).
 *
 * The first time a path is seen running, the content of the running image
 * (read through /proc/<pid>/exe, which works even when the file was
 * replaced or deleted) is hashed with SHA-256 and pinned; later uses of the
 * same path must hash the same, else the rule does not match ("binary
 * integrity").  Hashing is skipped while (dev, inode, size, mtime, ctime)
 * are unchanged, and done outside the lock, so a large binary never stalls
 * other lookups.  At most TRUST_PATHS_MAX paths are pinned; beyond that
 * paths are hashed but not remembered.  An executable larger than
 * TRUST_HASH_MAX is not hashed, and hashing stops at the lookup's
 * deadline: both deny.  SHA-256 is mbedTLS's, the only part
 * of it that this module uses.
 */
#include "policy_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/sha256.h>

#define TRUST_PATHS_MAX 4096

struct pinned {
    char path[IDENTITY_PATH_MAX];
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    unsigned char first[32]; /* the content trusted at first use */
};

struct trust_store {
    pthread_mutex_t mu;
    size_t n;
    struct pinned *rows; /* TRUST_PATHS_MAX of them */
};

struct trust_store *trust_store_new(void)
{
    struct trust_store *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->rows = calloc(TRUST_PATHS_MAX, sizeof(*t->rows))) == NULL) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

void trust_store_free(struct trust_store *t)
{
    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t->rows);
    free(t);
}

#define UNREADABLE "process identity: its executable cannot be read"
#define TOO_LARGE  "process identity: its executable is larger than 256 MiB, too large to hash"
#define LATE       "process identity: the lookup ran out of time (hashing an executable)"
_Static_assert(TRUST_HASH_MAX == 256 << 20, "TOO_LARGE names the limit");

/* SHA-256 of everything readable from fd, streamed, at most TRUST_HASH_MAX
 * bytes and by the deadline; NULL, or why not. */
static const char *sha256_fd(int fd, unsigned char out[32], int64_t deadline)
{
    mbedtls_sha256_context ctx;
    unsigned char buf[65536];
    const char *why = NULL;
    uint64_t total = 0;
    ssize_t n;
    mbedtls_sha256_init(&ctx);
    if (mbedtls_sha256_starts_ret(&ctx, 0) != 0)
        why = UNREADABLE;
    while (why == NULL && (n = read(fd, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            why = UNREADABLE;
        else if ((total += (uint64_t)n) > TRUST_HASH_MAX)
            why = TOO_LARGE; /* it grew since fstat */
        else if (now_ms() > deadline)
            why = LATE;
        else if (mbedtls_sha256_update_ret(&ctx, buf, (size_t)n) != 0)
            why = UNREADABLE;
    }
    if (why == NULL && mbedtls_sha256_finish_ret(&ctx, out) != 0)
        why = UNREADABLE;
    mbedtls_sha256_free(&ctx);
    return why;
}

static bool same_stat(const struct pinned *p, const struct stat *st)
{
    return p->dev == st->st_dev && p->ino == st->st_ino && p->size == st->st_size &&
           p->mtime.tv_sec == st->st_mtim.tv_sec && p->mtime.tv_nsec == st->st_mtim.tv_nsec &&
           p->ctime.tv_sec == st->st_ctim.tv_sec && p->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

static struct pinned *find_locked(struct trust_store *t, const char *path)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->rows[i].path, path) == 0)
            return &t->rows[i];
    return NULL;
}

/* Pin sum for path (or compare with the pinned one) and remember st. */
static const char *pin(struct trust_store *t, const char *path, const struct stat *st,
                       const unsigned char sum[32])
{
    const char *why = NULL;
    pthread_mutex_lock(&t->mu);
    struct pinned *p = find_locked(t, path);
    if (p != NULL && memcmp(p->first, sum, 32) != 0) {
        why = "binary integrity: the executable changed since its first use";
    } else if (p == NULL && t->n < TRUST_PATHS_MAX) {
        p = &t->rows[t->n++];
        snprintf(p->path, sizeof(p->path), "%s", path);
        memcpy(p->first, sum, 32);
    }
    if (why == NULL && p != NULL) {
        p->dev = st->st_dev, p->ino = st->st_ino, p->size = st->st_size;
        p->mtime = st->st_mtim, p->ctime = st->st_ctim;
    }
    pthread_mutex_unlock(&t->mu);
    return why;
}

const char *trust_check(struct trust_store *t, int fd, const char *path, int64_t deadline)
{
    struct stat st;
    unsigned char sum[32];
    if (fstat(fd, &st) != 0)
        return UNREADABLE;
    pthread_mutex_lock(&t->mu);
    const struct pinned *p = find_locked(t, path);
    bool known_same = p != NULL && same_stat(p, &st);
    pthread_mutex_unlock(&t->mu);
    if (known_same)
        return NULL;
    if (st.st_size > TRUST_HASH_MAX) /* hashing it would hold a worker for seconds */
        return TOO_LARGE;
    const char *why = sha256_fd(fd, sum, deadline);
    return why != NULL ? why : pin(t, path, &st, sum);
}
