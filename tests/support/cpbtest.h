/*
 * cpbtest.h — support for the CUnit test programs: a main that exits
 * non-zero on any failure, scratch directories, and the connection strings
 * of the real databases the test run provides.
 *
 * Environment (set by CTest and scripts/test.sh):
 *   CPB_TEST_SRC    the source tree          CPB_TEST_BUILD  the build tree
 *   CPB_TEST_PG     ODBC connection string of the throwaway PostgreSQL
 *                   cluster started by tests/services/pg.sh (a test that
 *                   needs it fails, never skips, when it is missing)
 */
#ifndef CPBTEST_H
#define CPBTEST_H

#include <CUnit/CUnit.h>
#include <stddef.h>

#include "services/db.h"

/* A test suite: name, optional setup/teardown, and NULL-terminated tests. */
struct cpbtest_case {
    const char *name;
    void (*fn)(void);
};
struct cpbtest_suite {
    const char *name;
    int (*setup)(void);
    int (*teardown)(void);
    const struct cpbtest_case *cases; /* ends with {NULL, NULL} */
};

/* Run the suites (NULL-terminated array); returns the process exit status:
 * 0 when every test passed, 1 on any failed assertion, test or suite init.
 * argv[1], when given, runs only the suite of that name. */
int cpbtest_run(int argc, char **argv, const struct cpbtest_suite *const *suites);

/* A new scratch directory under $TMPDIR, removed at exit unless the run
 * failed and CPB_TEST_KEEP is set. Borrowed path, valid until exit. */
const char *cpbtest_tmpdir(void);

/* "<tmpdir>/<name>" into a static buffer rotation of 8 (borrowed). */
const char *cpbtest_path(const char *name);

/* Source-tree and build-tree paths (borrowed, static rotation of 8). */
const char *cpbtest_src(const char *rel);
const char *cpbtest_build(const char *rel);

/* ODBC connection string for a fresh SQLite file in the scratch directory
 * (new name each call; static rotation of 8). */
const char *cpbtest_sqlite_conn(void);

/* The PostgreSQL connection string from CPB_TEST_PG; fails the current
 * test (and returns NULL) when it is not set. */
const char *cpbtest_pg_conn(void);

/* Connect to `conn` (borrowed), create the engine schema and the
 * Counterpoint demo tables and data, disconnect. Returns 0, or -1 after
 * printing why. */
int cpbtest_db_init_demo(const char *conn, enum db_dialect dialect);

/* A fresh demo database for a test program: a new SQLite file, or on
 * PostgreSQL (CPB_TEST_PG) a new schema `<prefix>_<pid>` that every
 * connection of `conn` works in (search_path). Writes the connection string
 * into conn (n bytes). Returns 0, or -1 after printing why. */
int cpbtest_db_fresh(enum db_dialect dialect, const char *prefix, char *conn, size_t n);

/* Connect to `conn` (borrowed) in `dialect`; fails the current test, and
 * stops it, when that is not possible. The caller closes the connection. */
struct db *cpbtest_connect(const char *conn, enum db_dialect dialect);

/* Drop what cpbtest_db_fresh made on PostgreSQL (nothing on SQLite). */
void cpbtest_db_drop(void);

/* The integer the query `sql` gives (its first column of the first row),
 * with `arg` (borrowed; NULL: no parameter) bound to its one `?`: 0 for SQL
 * NULL, -1 after printing why when the query fails or returns no row. */
int64_t cpbtest_q_int(struct db *db, const char *sql, const char *arg);

/* As cpbtest_q_int, for text: a new string (free()), NULL for SQL NULL,
 * no row or a failure. */
char *cpbtest_q_text(struct db *db, const char *sql, const char *arg);

/* Read a whole file into a new NUL-terminated string (free()); NULL on
 * error. *len (may be NULL) receives the length. */
char *cpbtest_slurp(const char *path, size_t *len);

/* Write a file (creating or truncating it). Returns 0 or -1. */
int cpbtest_write(const char *path, const char *text);

/* Run a shell command; returns its exit status (or -1). */
int cpbtest_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
