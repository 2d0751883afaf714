/*
 * runner.h — one run of a pipeline (DESIGN §3): lock, connect, source,
 * claim, the transactional steps of each order in one transaction, the
 * after-commit steps, outcomes with retry/backoff/dead-letter, events to
 * notifiers, and the run's summary in the run log.
 */
#ifndef CPB_RUNNER_H
#define CPB_RUNNER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/pipeline.h"
#include "engine/staging.h"
#include "lib/err.h"

struct db;

/*
 * Undo applied order `id` in Counterpoint the way `cpbridge rollback` does,
 * on connection `db` (borrowed; no transaction open), in one transaction of
 * its own: the run's answer to run.store_cancel = "rollback". `why`
 * (borrowed) is the audit reason. When `note_due`, the order is left with
 * its after-commit steps due (AFTER_PENDING = 1), so that after-commit
 * stages tell the store (result.rolled_back). Returns 0 rolled back; 1
 * refused, nothing changed, the reason in msg[n] (the order is flagged for a
 * person); 2 busy (a run holds it: try again later); -1 a database failure,
 * nothing changed, the message in msg[n].
 */
typedef int (*run_undo_fn)(void *arg, struct db *db, int64_t id, const char *why, bool note_due,
                           char *msg, size_t n);

/* How a run is going, for a progress display (run_options.progress). */
struct run_progress {
    const struct run_counts *counts; /* borrowed for the call */
    unsigned long backlog;           /* orders due when claiming began */
    unsigned long processed;         /* of them, claimed and worked on so far */
    int64_t elapsed_ms;              /* since claiming began */
    bool done;                       /* the last call of the run */
};

struct run_options {
    bool dry_run;              /* steps run and roll back; no source, no
                                  after-commit, no notifier, nothing written */
    unsigned long limit;       /* orders to process at most; 0: no limit */
    const char *since;         /* handed to sources as "since", or NULL */
    const char *pipeline_path; /* as given on the command line, for the
                                  commands put into alerts */
    bool apply_only;           /* no sources and no run lock: serve's workers,
                                  which share the database's claims with
                                  scheduled runs */
    const atomic_bool *stop;   /* when set (may be NULL), claim no more: the
                                  run finishes the orders it holds and ends */
    run_undo_fn undo;          /* run.store_cancel = "rollback"; NULL: flag
                                  instead, saying that this host cannot */
    void *undo_arg;            /* handed to undo */
    /* Called from the run's thread after the sources, then at most every
     * RUN_PROGRESS_MS while orders are worked on, and once with done set
     * at the end; NULL: never (and the backlog is not counted). */
    void (*progress)(void *arg, const struct run_progress *p);
    void *progress_arg;
};

#define RUN_PROGRESS_MS 250

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

/*
 * The intake of `cpbridge serve`: a pipeline whose source stages receive
 * deliveries and stage them through the same emit path a run uses. One
 * intake serves every thread of the server (its calls are serialised).
 * `p` (opened and initialised) and `pipeline_path` are borrowed until
 * runner_intake_close. Returns 0, or -1 with err set (CPB_EXIT_UNAVAILABLE,
 * CPB_EXIT_CONFIG).
 */
struct runner_intake;
int runner_intake_open(struct pipeline *p, const char *pipeline_path, struct runner_intake **out,
                       struct err *err);

/* Hand delivery `d` (borrowed) to the source stage `stage_id` and fill
 * `ans` (the caller's): what the stage's receive returned, or CPB_FAIL with
 * 404 when no source stage of that id receives. */
enum cpb_status runner_intake_receive(struct runner_intake *in, const char *stage_id,
                                      const struct cpb_delivery *d, struct cpb_answer *ans);

/* Deliver the events receiving raised (order.invalid, ...) to the
 * pipeline's notifiers, as a run does at its end. */
void runner_intake_flush(struct runner_intake *in);

/* Persist `value` (borrowed) for `key` (borrowed) in USER_SYNC_STATE through the
 * intake's connection. */
enum cpb_status runner_intake_state_set(struct runner_intake *in, const char *key,
                                        const char *value);

/* Flush, disconnect and free; NULL is accepted. */
void runner_intake_close(struct runner_intake *in);

#endif
