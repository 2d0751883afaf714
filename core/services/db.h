/*
 * db.h — the database layer over unixODBC: one connection, transactions,
 * prepared statements with bound parameters only (struct cpb_stmt, the same
 * type stages get through the host), and SQLSTATE/native-code
 * classification into retryable (CPB_RETRY) and permanent (CPB_FAIL) per
 * driver. See ../shared/reference/odbc-and-test-services.md for the quirks
 * this layer absorbs:
 *  - SQLite: autocommit stays on and transactions are explicit
 *    BEGIN IMMEDIATE / COMMIT / ROLLBACK statements; every error is HY000
 *    with the SQLite code as native (5 busy and 6 locked are retryable,
 *    19 constraint permanent).
 *  - PostgreSQL / SQL Server: autocommit off, SQLEndTran.
 *  - SQL_NO_DATA from an UPDATE/DELETE hitting nothing is success, 0 rows.
 *  - A failed statement does not abort the transaction in either driver, so
 *    callers roll back themselves on any error (the runner does).
 *  - SQLite refuses SQLDisconnect inside a transaction: db_close rolls back.
 */
#ifndef CPB_DB_H
#define CPB_DB_H

#include <stdbool.h>
#include <stdint.h>

#include "cpbridge/stage.h"
#include "lib/err.h"

enum db_dialect { DB_SQLITE = 0, DB_POSTGRESQL = 1, DB_MSSQL = 2 };

struct db;

/* "sqlite", "postgresql", "mssql" <-> enum. parse returns 0 or -1. */
int db_dialect_parse(const char *name, enum db_dialect *out);
const char *db_dialect_name(enum db_dialect d);

/*
 * Connect with an ODBC connection string ("Driver=...;..." via
 * SQLDriverConnect, or "DSN=name;..."). The string is a secret: messages
 * never contain it. On failure returns -1 with err CPB_EXIT_UNAVAILABLE and
 * the driver's SQLSTATE and message. *out: new, free with db_close.
 */
int db_connect(const char *connection, enum db_dialect dialect, int64_t login_timeout_ms,
               struct db **out, struct err *err);

/* Roll back any open transaction, release statements, disconnect. NULL ok. */
void db_close(struct db *db);

enum db_dialect db_get_dialect(const struct db *db);

/* Transactions. begin fails if one is open. After any failed statement the
 * caller decides: the runner always rolls back. */
enum cpb_status db_begin(struct db *db);
enum cpb_status db_commit(struct db *db);
enum cpb_status db_rollback(struct db *db);
bool db_in_transaction(const struct db *db);

/* Run one statement without parameters (DDL, migrations). */
enum cpb_status db_exec(struct db *db, const char *sql);

/*
 * Prepared statements. db_prepare keeps a per-connection cache keyed by the
 * SQL text: preparing the same text again returns the cached statement
 * (reset, bindings cleared) instead of a new prepare. db_finalize returns a
 * statement to the cache. The remaining functions match the host services
 * of the same names in cpbridge/stage.h, with the same contracts.
 */
enum cpb_status db_prepare(struct db *db, const char *sql, struct cpb_stmt **stmt);
enum cpb_status db_bind_text(struct cpb_stmt *stmt, unsigned idx, const char *value);
enum cpb_status db_bind_int(struct cpb_stmt *stmt, unsigned idx, int64_t value);
enum cpb_status db_bind_decimal(struct cpb_stmt *stmt, unsigned idx, int64_t value);
enum cpb_status db_bind_null(struct cpb_stmt *stmt, unsigned idx);
enum cpb_status db_execute(struct cpb_stmt *stmt, int64_t *rows);
enum cpb_status db_fetch(struct cpb_stmt *stmt);
enum cpb_status db_col_text(struct cpb_stmt *stmt, unsigned col, const char **value);
enum cpb_status db_col_int(struct cpb_stmt *stmt, unsigned col, int64_t *value, bool *is_null);
enum cpb_status db_col_decimal(struct cpb_stmt *stmt, unsigned col, int64_t *value, bool *is_null);
void db_finalize(struct cpb_stmt *stmt);
enum cpb_status db_bind_time(struct cpb_stmt *stmt, unsigned idx, int64_t ms);
enum cpb_status db_col_time(struct cpb_stmt *stmt, unsigned col, int64_t *ms, bool *is_null);

/* The message of the last failure on this connection ("SQLSTATE 23505
 * (native 1): ..."), "" when none. Borrowed until the next call. */
const char *db_last_error(const struct db *db);
/* The SQLSTATE of the last failure ("" when none). */
const char *db_last_sqlstate(const struct db *db);
/* The connection that owns a statement. */
struct db *db_stmt_db(struct cpb_stmt *stmt);
/* A tag the caller keeps on a statement while it is in use (borrowed, not
 * freed; cleared by db_finalize), so code handed only the statement knows
 * whose it is: the host tags a stage's statements with its context. */
void db_stmt_set_owner(struct cpb_stmt *stmt, void *owner);
void *db_stmt_owner(const struct cpb_stmt *stmt);

/* True after an error that means the connection is gone (SQLSTATE class
 * 08, or the driver's equivalent): the caller reconnects. */
bool db_broken(const struct db *db);

/* Pure classification used by all of the above; exposed for tests.
 * Returns CPB_RETRY or CPB_FAIL. */
enum cpb_status db_classify(enum db_dialect dialect, const char *sqlstate, long native,
                            const char *message);

#endif
