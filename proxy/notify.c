/*
 * notify.c - telling systemd how egressd is doing (sd_notify), when it runs
 * under a Type=notify unit; without NOTIFY_SOCKET every call is a no-op.
 */
#include "proxy.h"

#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

static void send_state(const char *state)
{
    int rc = sd_notify(0, state);
    if (rc < 0)
        log_msg(LOGL_WARN, "server", "sd_notify failed: %s", strerror(-rc));
}

void notify_ready(const char *status)
{
    char msg[300];
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
    send_state(msg);
}

void notify_reloading(void)
{
    struct timespec ts;
    char msg[96];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    send_state(msg);
}

void notify_stopping(void)
{
    send_state("STOPPING=1\nSTATUS=draining connections");
}

void notify_watchdog(void)
{
    send_state("WATCHDOG=1");
}

unsigned notify_watchdog_ms(void)
{
    uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? (unsigned)(usec / 1000) : 0;
}
