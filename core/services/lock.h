/*
 * lock.h — one run of a pipeline at a time on a host: an exclusive,
 * non-blocking flock on a lock file, released by the kernel if the process
 * dies (no stale lock files to clean up by hand).
 */
#ifndef CPB_LOCK_H
#define CPB_LOCK_H

#include <stddef.h>

#include "lib/err.h"

/* The default lock file for a pipeline: $TMPDIR (or /tmp)
 * /cpbridge-<name>.lock, written into out. Returns 0, or -1 when too long. */
int lock_default_path(const char *pipeline, char *out, size_t n);

/* Take the lock. Returns 0 with *fd set when taken, 1 when another process
 * holds it, -1 with err (CPB_EXIT_IOERR) when the file cannot be opened. */
int lock_acquire(const char *path, int *fd, struct err *err);

/* Release (close) the lock; fd < 0 is ignored. */
void lock_release(int fd);

#endif
