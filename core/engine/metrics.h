/*
 * metrics.h — the Prometheus textfile a pipeline names (metrics.file),
 * rewritten atomically at the end of every run for node_exporter's textfile
 * collector: this run's orders by result and per-stage durations, and the
 * business gauges read from the database (pending, oldest pending age,
 * invalid, dead, last success).
 */
#ifndef CPB_METRICS_H
#define CPB_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "engine/records.h"
#include "engine/staging.h"
#include "lib/err.h"
#include "services/db.h"

struct metrics_stage {
    const char *id;   /* stage instance id (borrowed) */
    const char *kind; /* "source", "step", "after-commit", "notify" */
    unsigned long calls;
    double seconds; /* total time in the stage during the run */
    json_t *custom; /* borrowed, may be NULL: name -> number, what the stage
                       added with the host's metric_add during the run */
};

struct metrics_run {
    const char *pipeline; /* borrowed */
    int exit_code;
    int64_t started_ms; /* UTC ms */
    int64_t duration_ms;
    const struct run_counts *counts; /* borrowed */
    unsigned notify_failed;
    const struct metrics_stage *stages; /* borrowed, n_stages entries */
    size_t n_stages;
};

/* The order states, in the order of metrics_snapshot.by_state (NULL-ended). */
#define METRICS_N_STATES 6
extern const char *const metrics_states[METRICS_N_STATES + 1];

/*
 * One reading of the business figures, computed in one place for
 * `cpbridge health`, `cpbridge status` and the metrics file. Order counts
 * cover every order in the database (staging rows carry no pipeline); the
 * run figures are this pipeline's (USER_SYNC_LOG.PIPELINE). Times are UTC
 * ms since the epoch, valid only when the matching has_* is true.
 */
struct metrics_snapshot {
    int64_t now_ms;                     /* the engine clock the figures use */
    int64_t by_state[METRICS_N_STATES]; /* indexed like metrics_states */
    int64_t total;                      /* every staged order */
    int64_t pending_due;                /* PENDING and due at now_ms */
    int64_t after_due;                  /* APPLIED, after-commit work due */
    int64_t after_gave_up;              /* APPLIED, after-commit work given up */
    int64_t changed_after_apply;        /* APPLIED, changed in the store since */
    bool has_pending;
    int64_t oldest_pending_ms; /* RECEIVED_DT of the oldest PENDING */
    bool has_success;
    int64_t last_success_ms; /* ENDED_DT of the last OK/ATTENTION run */
    bool has_run;            /* the pipeline has a run log row */
    char last_result[16];    /* RESULT of the latest run ("" if none) */
    int64_t last_run_started_ms;
    bool last_run_ended;
    int64_t last_run_ended_ms;
    int last_exit_code; /* -1 when not recorded */
    struct record_counts records; /* this pipeline's records (ABI 1.5) */
};

/* Index of `state` ("PENDING", ...) in metrics_states, or -1. */
int metrics_state_index(const char *state);

/*
 * Read the figures for pipeline `name` (borrowed) at time `now_ms` from
 * `db` (borrowed) into *out. Returns 0, or -1 with err
 * (CPB_EXIT_UNAVAILABLE) carrying the database's message.
 */
int metrics_snapshot(struct db *db, const char *name, int64_t now_ms, struct metrics_snapshot *out,
                     struct err *err);

/* Write `path` atomically (a temporary file in the same directory, fsync,
 * rename). `path`, `run` and everything it points at are borrowed. `db`
 * (borrowed, may be NULL when the run could not connect) is read for the
 * gauges (metrics_snapshot); without it they are left out. The last
 * success is the run's end when exit_code is 0 or 1, else the last
 * OK/ATTENTION run in USER_SYNC_LOG, else (no db) the previous file's
 * value, else left out. Returns 0, or -1 with err (CPB_EXIT_IOERR). */
int metrics_write(const char *path, struct db *db, const struct metrics_run *run, struct err *err);

#endif
