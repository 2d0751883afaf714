/*
 * err.c — error messages carried up to main (see err.h).
 */
#include "lib/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int err_set(struct err *e, int code, const char *fmt, ...)
{
    if (e == NULL || e->code != 0) {
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->code = code != 0 ? code : CPB_EXIT_SOFTWARE;
    return -1;
}

void err_prefix(struct err *e, const char *fmt, ...)
{
    char prefix[512];
    char old[sizeof e->msg];
    if (e == NULL) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t np = strlen(prefix);
    size_t no = strlen(e->msg);
    if (np >= sizeof e->msg) {
        np = sizeof e->msg - 1;
    }
    if (no > sizeof e->msg - 1 - np) {
        no = sizeof e->msg - 1 - np;
    }
    memcpy(old, e->msg, no);
    memcpy(e->msg, prefix, np);
    memcpy(e->msg + np, old, no);
    e->msg[np + no] = '\0';
}
