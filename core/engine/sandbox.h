/*
 * sandbox.h — a throwaway copy of a pipeline's database, for `cpbridge
 * test`: the real database is only read, the copy is written by a run and
 * dropped after it. The one place where how a copy is made differs by
 * dialect:
 *
 *   sqlite      `VACUUM INTO` a file in the caller's directory (a consistent
 *               snapshot, WAL included); the copy's order-state tables are
 *               then emptied. The connection string gets Database=<copy>.
 *   postgresql  a new schema cpb_test_<random hex> in the same database,
 *               holding a copy of every table of the connection's current
 *               schema (LIKE ... INCLUDING ALL: columns, defaults, checks,
 *               indexes, identities; no foreign keys, no triggers) with its
 *               rows, except the order-state tables, which stay empty. The
 *               connection string gets ConnSettings=SET search_path TO it.
 *               (A default calling nextval() on a sequence would still use
 *               the real sequence; the engine's tables use identities.)
 *               Closing drops the schema (DROP SCHEMA ... CASCADE).
 *   mssql       refused (CPB_EXIT_CONFIG): not supported yet.
 *
 * The order-state tables (sandbox_state_tables) are the engine's tables
 * that hold orders, runs, events and cursors; master data and mappings
 * (USER_CUSTOMER_MAP, USER_ITEM_MAP, USER_DOC_COUNTER, USER_SCHEMA_VERSION)
 * and every Counterpoint table are copied with their rows.
 */
#ifndef CPB_SANDBOX_H
#define CPB_SANDBOX_H

#include <stdbool.h>

#include "engine/config.h"
#include "lib/err.h"

struct sandbox;

/* The engine's order-state tables, NULL-terminated, children first. */
extern const char *const sandbox_state_tables[];

/* 0 when a copy of database `c` (borrowed) can be made; -1 with err
 * CPB_EXIT_CONFIG otherwise (an unknown dialect, or mssql). */
int sandbox_check(const struct config_database *c, struct err *err);

/*
 * Make a copy of the database `c` (borrowed for the call) describes. `dir` (borrowed) is
 * an existing private directory for a SQLite copy, `tag` ([A-Za-z0-9_-],
 * borrowed) names the copy's file in it. On success *out is new
 * (sandbox_close). Returns 0 or -1 with err: CPB_EXIT_UNAVAILABLE (the
 * database cannot be reached or refused a statement), CPB_EXIT_CONFIG (a
 * dialect or connection string that cannot be copied), CPB_EXIT_IOERR.
 */
int sandbox_open(const struct config_database *c, const char *dir, const char *tag,
                 struct sandbox **out, struct err *err);

/* The connection string of the copy (borrowed from `sb`). */
const char *sandbox_connection(const struct sandbox *sb);

/* Where the copy is, for people: "/tmp/x/case.db" or "schema cpb_test_..."
 * (borrowed from `sb`). */
const char *sandbox_where(const struct sandbox *sb);

/* Drop the copy (unless `keep`) and free `sb`; NULL is accepted. Returns 0,
 * or -1 with err when the copy could not be dropped (its name is in the
 * message). */
int sandbox_close(struct sandbox *sb, bool keep, struct err *err);

#endif
