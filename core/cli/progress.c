/*
 * progress.c — the progress line of `cpbridge run` on a terminal (see
 * progress.h).
 */
#include "cli/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "services/log.h"

bool progress_wanted(bool json)
{
    const char *term = getenv("TERM");
    if (json || !isatty(STDERR_FILENO)) {
        return false;
    }
    if (getenv("INVOCATION_ID") != NULL || getenv("JOURNAL_STREAM") != NULL) {
        return false; /* systemd: the journal, not a person, reads stderr */
    }
    return term != NULL && term[0] != '\0' && strcmp(term, "dumb") != 0;
}

void progress_draw(void *arg, const struct run_progress *p)
{
    char line[LOG_STATUS_MAX];
    char eta[32] = "-";
    (void)arg;
    if (p->done) {
        log_status(NULL);
        return;
    }
    double rate = p->elapsed_ms > 0 ? (double)p->processed * 1000.0 / (double)p->elapsed_ms : 0;
    if (rate > 0 && p->backlog > p->processed) {
        long left = (long)((double)(p->backlog - p->processed) / rate + 0.5);
        snprintf(eta, sizeof eta, "%ld:%02ld", left / 60, left % 60);
    } else if (p->backlog > 0 && p->processed >= p->backlog) {
        snprintf(eta, sizeof eta, "0:00");
    }
    snprintf(line, sizeof line,
             "staged %u | applied %u | invalid %u | retry %u | %lu/%lu | %.0f orders/s | ETA %s",
             p->counts->staged, p->counts->applied, p->counts->invalid, p->counts->retry,
             p->processed, p->backlog, rate, eta);
    log_status(line);
}
