/*
 * runner.h — one run of a pipeline (DESIGN §3): lock, connect, source,
 * claim, the transactional steps of each order in one transaction, the
 * after-commit steps, outcomes with retry/backoff/dead-letter, events to
 * notifiers, and the run's summary in the run log.
 */
#ifndef CPB_RUNNER_H
#define CPB_RUNNER_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/pipeline.h"
#include "engine/staging.h"
#include "lib/err.h"

struct run_options {
    bool dry_run;              /* steps run and roll back; no source, no
                                  after-commit, no notifier, nothing written */
    unsigned long limit;       /* orders to process at most; 0: no limit */
    const char *since;         /* handed to sources as "since", or NULL */
    const char *pipeline_path; /* as given on the command line, for the
                                  commands put into alerts */
};

struct run_result {
    char run_id[37];
    struct run_counts counts;
    unsigned notify_failed;
    bool source_failed;
    int64_t duration_ms;
    int exit_code;             /* enum cpb_exit */
};

/*
 * Run `p` (opened and initialised). Returns the exit code (also in
 * res->exit_code): CPB_EXIT_OK, CPB_EXIT_ATTENTION, or a fatal code with
 * err set: CPB_EXIT_TEMPFAIL (another run holds the lock; nothing done),
 * CPB_EXIT_UNAVAILABLE (database unreachable), CPB_EXIT_CONFIG (schema
 * missing or too old), CPB_EXIT_IOERR.
 */
int runner_run(struct pipeline *p, const struct run_options *o, struct run_result *res,
               struct err *err);

#endif
