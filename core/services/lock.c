/*
 * lock.c — the per-host run lock (see lock.h).
 */
#include "services/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int lock_default_path(const char *pipeline, char *out, size_t n)
{
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || dir[0] == '\0') {
        dir = "/tmp";
    }
    int len = snprintf(out, n, "%s/cpbridge-%s.lock", dir, pipeline);
    return len < 0 || (size_t)len >= n ? -1 : 0;
}

int lock_acquire(const char *path, int *fd, struct err *err)
{
    *fd = -1;
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (f < 0) {
        return err_set(err, CPB_EXIT_IOERR, "cannot open the lock file %s: %s", path,
                       strerror(errno));
    }
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(f);
        if (e == EWOULDBLOCK) {
            return 1;
        }
        return err_set(err, CPB_EXIT_IOERR, "cannot lock %s: %s", path, strerror(e));
    }
    /* The pid is informational (for a person looking at the file). */
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) == 0 && n > 0) {
        ssize_t w = write(f, pid, (size_t)n);
        (void)w;
    }
    *fd = f;
    return 0;
}

void lock_release(int fd)
{
    if (fd >= 0) {
        close(fd);
    }
}
