/*
 * schema.h — the database schema the engine carries (sql/<dialect>/NNN_name.sql and the demo files,
 * embedded at build time) and `cpbridge db init`: numbered migrations
 * (NNN_name.sql) applied in order, each in one transaction together with
 * its row in USER_SCHEMA_VERSION, so re-running is safe and an older schema
 * is upgraded; and, with --demo, the Counterpoint development subset and
 * demo data (cp_subset.sql, cp_demo.sql), refused on a database that
 * already has Counterpoint tables of its own.
 */
#ifndef CPB_SCHEMA_H
#define CPB_SCHEMA_H

#include <stdbool.h>

#include "lib/err.h"
#include "services/db.h"

struct schema_file {
    const char *dialect; /* "sqlite", "postgresql", "mssql" */
    const char *name;    /* file name, e.g. "001_engine.sql" */
    const char *sql;     /* statements, each ending with ';' at a line end */
};

/* Every embedded file; ends with an all-NULL entry. */
extern const struct schema_file schema_files[];

/* The highest migration number for a dialect (0 when none). */
int schema_latest(enum db_dialect d);

/* The version recorded in the database: 0 when USER_SCHEMA_VERSION does
 * not exist yet. Returns 0, or -1 with err (CPB_EXIT_UNAVAILABLE). */
int schema_current(struct db *db, int *version, struct err *err);

/*
 * Bring the schema up to date, then (demo) add the Counterpoint subset and
 * demo data. *from and *to receive the versions before and after. When
 * `upto` > 0, stop after that migration (tests of upgrades). Returns 0, or
 * -1 with err: CPB_EXIT_DATAERR when demo data is refused, CPB_EXIT_CONFIG
 * when the database's schema is newer than this cpbridge, otherwise the
 * database's failure (CPB_EXIT_UNAVAILABLE) naming the file and statement.
 */
int schema_init(struct db *db, bool demo, int upto, int *from, int *to, struct err *err);

/* Split `sql` (borrowed) into statements, calling fn on each (a new
 * NUL-terminated copy, borrowed for the call). Statements end with ';' at
 * the end of a line; `--` comment lines are dropped. Returns the first
 * non-zero value of fn, or 0. */
int schema_each_statement(const char *sql, int (*fn)(const char *stmt, void *arg), void *arg);

#endif
