/*
 * ops.h — the operations commands: health, status, orders, dlq, rollback
 * and report. Each reads the pipeline file (no stages are loaded), connects
 * to its database, and prints for a person (or JSON with --json).
 */
#ifndef CPB_OPS_H
#define CPB_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct db;

/* True when `verb` is one of the operations commands. */
bool ops_has(const char *verb);

/* Run the command `verb` with its arguments (argv[0] is the verb).
 * Returns the process exit code (enum cpb_exit; for health the Nagios codes
 * 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). Prints its own messages. */
int ops_main(const char *verb, int argc, char **argv);

/* What ops_undo_for_store needs of the pipeline (both borrowed). */
struct ops_undo {
    struct config *cfg;
    const char *path;
};

/*
 * A run's rollback of an order the store cancelled (run_options.undo, with
 * `arg` a struct ops_undo): `cpbridge rollback`'s own checks and changes in
 * one transaction on `db`, the audit event coded store.rollback with `why`
 * as its reason, never forced. Returns 0 rolled back, 1 refused (the reason
 * in msg[n]), 2 a run holds the order, -1 a database failure (msg[n]).
 */
int ops_undo_for_store(void *arg, struct db *db, int64_t id, const char *why, bool note_due,
                       char *msg, size_t n);

#endif
