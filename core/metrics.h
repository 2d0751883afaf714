/*
 * metrics.h — the Prometheus textfile a pipeline names (metrics.file),
 * rewritten atomically at the end of every run for node_exporter's textfile
 * collector: this run's orders by result and per-stage durations, and the
 * business gauges read from the database (pending, oldest pending age,
 * invalid, dead, last success).
 */
#ifndef CPB_METRICS_H
#define CPB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "err.h"
#include "staging.h"

struct metrics_stage {
    const char *id;      /* stage instance id (borrowed) */
    const char *kind;    /* "source", "step", "after-commit", "notify" */
    unsigned long calls;
    double seconds;      /* total time in the stage during the run */
};

struct metrics_run {
    const char *pipeline;           /* borrowed */
    int exit_code;
    int64_t started_ms;             /* UTC ms */
    int64_t duration_ms;
    const struct run_counts *counts;/* borrowed */
    unsigned notify_failed;
    const struct metrics_stage *stages; /* borrowed, n_stages entries */
    size_t n_stages;
};

/* Write `path` atomically (a temporary file in the same directory, fsync,
 * rename). `db` (borrowed, may be NULL when the run could not connect) is
 * read for the gauges. Returns 0, or -1 with err (CPB_EXIT_IOERR). */
int metrics_write(const char *path, struct db *db, const struct metrics_run *run,
                  struct err *err);

#endif
