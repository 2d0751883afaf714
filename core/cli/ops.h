/*
 * ops.h — the operations commands: health, status, orders, dlq, rollback
 * and report. Each reads the pipeline file (no stages are loaded), connects
 * to its database, and prints for a person (or JSON with --json).
 */
#ifndef CPB_OPS_H
#define CPB_OPS_H

#include <stdbool.h>

/* True when `verb` is one of the operations commands. */
bool ops_has(const char *verb);

/* Run the command `verb` with its arguments (argv[0] is the verb).
 * Returns the process exit code (enum cpb_exit; for health the Nagios codes
 * 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). Prints its own messages. */
int ops_main(const char *verb, int argc, char **argv);

#endif
