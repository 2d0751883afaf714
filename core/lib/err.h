/*
 * err.h — how the engine reports an error up to main: a message a person can
 * act on and the exit code it maps to. Nothing below main exits.
 */
#ifndef CPB_ERR_H
#define CPB_ERR_H

#include <stddef.h>

#include "cpbridge/stage.h"

/* Exit codes of the cpbridge command. Stable: documented in README.md and
 * docs/EXIT_CODES.md; never renumbered. Values follow sysexits.h. */
enum cpb_exit {
    CPB_EXIT_OK = 0,          /* done; nothing needs a person */
    CPB_EXIT_ATTENTION = 1,   /* done, but something needs a person: an order
                                 held INVALID or DEAD, a source or after-commit
                                 step that failed, a notifier that failed */
    CPB_EXIT_USAGE = 64,      /* bad command line */
    CPB_EXIT_DATAERR = 65,    /* the request does not fit the data (e.g. dlq
                                 retry of an order that is not dead) */
    CPB_EXIT_NOINPUT = 66,    /* a named file or order does not exist */
    CPB_EXIT_UNAVAILABLE = 69,/* the database could not be reached */
    CPB_EXIT_SOFTWARE = 70,   /* an internal error (a bug) */
    CPB_EXIT_IOERR = 74,      /* reading or writing a local file failed */
    CPB_EXIT_TEMPFAIL = 75,   /* another run of this pipeline holds the lock */
    CPB_EXIT_CONFIG = 78      /* the pipeline file, a stage or an option is wrong */
};

/* One error: the message and the exit code it maps to. Zero-initialise. */
struct err {
    int code;        /* enum cpb_exit; 0 while no error was set */
    char msg[1024];  /* one line, no trailing newline */
};

/* Set the error (the first one set wins; later calls are ignored so the root
 * cause is what reaches the user). Returns -1, for `return err_set(...)`. */
int err_set(struct err *e, int code, const char *fmt, ...) CPB_PRINTF(3, 4);

/* Prefix the existing message with more context ("in stage 'x': ..."). */
void err_prefix(struct err *e, const char *fmt, ...) CPB_PRINTF(2, 3);

#endif
