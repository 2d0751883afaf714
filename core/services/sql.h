/*
 * sql.h — run one engine statement with its values in a single call: the
 * values are an array of typed arguments, bound in order (every value is a
 * bound parameter; nothing is pasted into SQL text).
 *
 *   struct sql_arg a[] = {sql_text(status), sql_int(id), sql_time(now)};
 *   st = sql_exec(db, "UPDATE ... SET STATUS = ? WHERE STAGING_ID = ? ...",
 *                 a, SQL_NARGS(a), &rows);
 */
#ifndef CPB_SQL_H
#define CPB_SQL_H

#include <stddef.h>
#include <stdint.h>

#include "services/db.h"

enum sql_arg_type { SQL_ARG_NULL, SQL_ARG_TEXT, SQL_ARG_INT, SQL_ARG_DECIMAL, SQL_ARG_TIME };

struct sql_arg {
    enum sql_arg_type type;
    const char *text; /* borrowed until the statement ran */
    int64_t value;
};

#define SQL_NARGS(a) (sizeof(a) / sizeof((a)[0]))

/* Argument constructors. sql_text(NULL) is SQL NULL. */
struct sql_arg sql_text(const char *s);
struct sql_arg sql_int(int64_t v);
/* SQL NULL when v == 0 (ids that are 0 when absent). */
struct sql_arg sql_int_or_null(int64_t v);
struct sql_arg sql_decimal(int64_t ten_thousandths);
struct sql_arg sql_time(int64_t ms);
struct sql_arg sql_null(void);

/* Bind args (borrowed) to a prepared statement, in order, from 1. */
enum cpb_status sql_bind(struct cpb_stmt *st, const struct sql_arg *args, size_t n);

/* Prepare, bind, execute and finalize; *rows (may be NULL) gets the count. */
enum cpb_status sql_exec(struct db *db, const char *sql, const struct sql_arg *args, size_t n,
                         int64_t *rows);

/* Prepare, bind and execute a query; on CPB_OK *stmt is ready for db_fetch
 * and the caller db_finalize()s it. */
enum cpb_status sql_query(struct db *db, const char *sql, const struct sql_arg *args, size_t n,
                          struct cpb_stmt **stmt);

/* A query returning one integer (first column of the first row): CPB_SKIP
 * when there is no row; *is_null (may be NULL) for SQL NULL. */
enum cpb_status sql_query_int(struct db *db, const char *sql, const struct sql_arg *args,
                              size_t n, int64_t *value, bool *is_null);

/* Run `fn` inside a transaction: commit on CPB_OK, roll back otherwise. */
enum cpb_status sql_tx(struct db *db, enum cpb_status (*fn)(struct db *db, void *arg), void *arg);

#endif
