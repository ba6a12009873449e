/*
 * clock.c - the one clock of every deadline in egressd: milliseconds of
 * CLOCK_MONOTONIC, which no change of the wall clock moves.  It lives in
 * the lowest layer because the identity lookup, down here, has a deadline
 * too; every module above reaches it through policy.h.
 */
#include "policy.h"

#include <time.h>

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
