/*
 * progress.h — `cpbridge run`'s progress line on a terminal: one line on
 * stderr, redrawn as the run goes (staged, applied, invalid, retry, orders
 * a second, the time left for the claimed backlog), kept apart from the log
 * lines by log_status. Off a terminal, with --json, under systemd
 * (INVOCATION_ID, JOURNAL_STREAM) or with TERM=dumb there is none.
 */
#ifndef CPB_PROGRESS_H
#define CPB_PROGRESS_H

#include <stdbool.h>

#include "engine/runner.h"

/* Whether a run shows the line: stderr is a terminal, `json` is false, and
 * neither systemd nor a dumb terminal is in the environment. */
bool progress_wanted(bool json);

/* A run_options.progress callback (arg unused): draws the line, and erases
 * it when p->done. */
void progress_draw(void *arg, const struct run_progress *p);

#endif
