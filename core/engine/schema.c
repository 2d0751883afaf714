/*
 * schema.c — migrations and demo data (see schema.h).
 */
#include "engine/schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/staging.h"
#include "lib/buf.h"
#include "services/sql.h"

/* USER_SYNC_STATE key saying the demo subset was installed by cpbridge. */
#define SCHEMA_DEMO_MARKER "cpbridge/demo-installed"

/* The version table itself, per dialect: the only DDL outside sql/. */
static const char *const version_table_sql[] = {
    [DB_SQLITE] = "CREATE TABLE USER_SCHEMA_VERSION (VERSION INTEGER NOT NULL PRIMARY KEY,"
                  " NAME VARCHAR(100) NOT NULL, APPLIED_DT TEXT NOT NULL)",
    [DB_POSTGRESQL] = "CREATE TABLE USER_SCHEMA_VERSION (VERSION INT NOT NULL PRIMARY KEY,"
                      " NAME VARCHAR(100) NOT NULL, APPLIED_DT TIMESTAMP(3) NOT NULL)",
    [DB_MSSQL] = "CREATE TABLE USER_SCHEMA_VERSION (VERSION INT NOT NULL PRIMARY KEY,"
                 " NAME NVARCHAR(100) NOT NULL, APPLIED_DT DATETIME2(3) NOT NULL)",
};

/* The migration number of "NNN_name.sql", or 0 for other files. */
static int migration_number(const char *name)
{
    int n = 0;
    for (int i = 0; i < 3; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return 0;
        }
        n = n * 10 + (name[i] - '0');
    }
    return name[3] == '_' ? n : 0;
}

static const struct schema_file *find_file(enum db_dialect d, const char *name)
{
    for (const struct schema_file *f = schema_files; f->name != NULL; f++) {
        if (strcmp(f->dialect, db_dialect_name(d)) == 0 && strcmp(f->name, name) == 0) {
            return f;
        }
    }
    return NULL;
}

int schema_latest(enum db_dialect d)
{
    int latest = 0;
    for (const struct schema_file *f = schema_files; f->name != NULL; f++) {
        int n = migration_number(f->name);
        if (strcmp(f->dialect, db_dialect_name(d)) == 0 && n > latest) {
            latest = n;
        }
    }
    return latest;
}

int schema_each_statement(const char *sql, int (*fn)(const char *stmt, void *arg), void *arg)
{
    struct buf stmt = BUF_INIT;
    const char *p = sql;
    int rc = 0;
    while (*p != '\0' && rc == 0) {
        const char *eol = strchr(p, '\n');
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        const char *q = p;
        while (q < p + len && (*q == ' ' || *q == '\t')) {
            q++;
        }
        size_t end = len;
        while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t' || p[end - 1] == '\r')) {
            end--;
        }
        if (!(q + 1 < p + len && q[0] == '-' && q[1] == '-') && q < p + end) {
            int last = p[end - 1] == ';';
            buf_add(&stmt, p, last ? end - 1 : end);
            buf_adds(&stmt, "\n");
            if (last) {
                rc = fn(buf_str(&stmt), arg);
                buf_reset(&stmt);
            }
        }
        p += len;
        if (*p == '\n') {
            p++;
        }
    }
    /* A trailing statement without ';' still runs. */
    if (rc == 0 && stmt.len > 0) {
        size_t i = 0;
        while (i < stmt.len && (stmt.data[i] == '\n' || stmt.data[i] == ' ')) {
            i++;
        }
        if (i < stmt.len) {
            rc = fn(buf_str(&stmt), arg);
        }
    }
    if (stmt.oom && rc == 0) {
        rc = -1;
    }
    buf_free(&stmt);
    return rc;
}

struct apply_ctx {
    struct db *db;
    const char *file;
    unsigned count;
    struct err *err;
};

static int apply_one(const char *stmt, void *arg)
{
    struct apply_ctx *a = arg;
    a->count++;
    if (db_exec(a->db, stmt) == CPB_OK) {
        return 0;
    }
    char head[81];
    snprintf(head, sizeof head, "%s", stmt);
    for (char *c = head; *c != '\0'; c++) {
        if (*c == '\n') {
            *c = ' ';
        }
    }
    return err_set(a->err, CPB_EXIT_UNAVAILABLE, "%s, statement %u (%s...): %s", a->file, a->count,
                   head, db_last_error(a->db));
}

/* Apply one file and, for a migration, its version row, in one transaction. */
static int apply_file(struct db *db, const struct schema_file *f, int version, struct err *err)
{
    struct apply_ctx a = {db, f->name, 0, err};
    if (db_begin(db) != CPB_OK) {
        return err_set(err, CPB_EXIT_UNAVAILABLE, "could not begin a transaction for %s: %s",
                       f->name, db_last_error(db));
    }
    int rc = schema_each_statement(f->sql, apply_one, &a);
    if (rc == 0 && version > 0) {
        struct sql_arg v[] = {sql_int(version), sql_text(f->name),
                              sql_time((int64_t)time(NULL) * 1000)};
        if (sql_exec(db,
                     "INSERT INTO USER_SCHEMA_VERSION (VERSION, NAME, APPLIED_DT)"
                     " VALUES (?, ?, ?)",
                     v, SQL_NARGS(v), NULL) != CPB_OK) {
            rc = err_set(err, CPB_EXIT_UNAVAILABLE, "recording schema version %d: %s", version,
                         db_last_error(db));
        }
    }
    if (rc == 0 && db_commit(db) != CPB_OK) {
        rc = err_set(err, CPB_EXIT_UNAVAILABLE, "committing %s: %s", f->name, db_last_error(db));
    }
    if (rc != 0) {
        (void)db_rollback(db);
        err_set(err, CPB_EXIT_UNAVAILABLE, "%s failed", f->name);
    }
    return rc;
}

int schema_current(struct db *db, int *version, struct err *err)
{
    int64_t v = 0;
    bool null = false;
    *version = 0;
    enum cpb_status rc =
        sql_query_int(db, "SELECT MAX(VERSION) FROM USER_SCHEMA_VERSION", NULL, 0, &v, &null);
    if (rc == CPB_FAIL && !db_broken(db)) {
        /* No version table yet: a database cpbridge has never touched —
         * unless the connection died under the query with an error the
         * driver did not class as one (psqlODBC, a backend terminated):
         * only a connection that still answers proves the table missing. */
        int64_t one = 0;
        if (sql_query_int(db, "SELECT 1", NULL, 0, &one, NULL) == CPB_OK) {
            return 0;
        }
    }
    if (rc != CPB_OK) {
        return err_set(err, CPB_EXIT_UNAVAILABLE, "reading the schema version: %s",
                       db_last_error(db));
    }
    *version = null ? 0 : (int)v;
    return 0;
}

/* True when the table exists (a query against it succeeds). */
static bool table_exists(struct db *db, const char *probe_sql)
{
    struct cpb_stmt *st = NULL;
    enum cpb_status rc = sql_query(db, probe_sql, NULL, 0, &st);
    db_finalize(st);
    return rc == CPB_OK;
}

static int install_demo(struct db *db, struct err *err)
{
    enum db_dialect d = db_get_dialect(db);
    char *marker = NULL;
    if (table_exists(db, "SELECT 1 FROM PS_DOC_HDR WHERE 1 = 0")) {
        int rc = 0;
        if (staging_state_get(db, SCHEMA_DEMO_MARKER, &marker) != CPB_OK || marker == NULL) {
            rc = err_set(err, CPB_EXIT_DATAERR,
                         "refusing --demo: this database already has Counterpoint tables"
                         " (PS_DOC_HDR) that cpbridge did not create; the demo subset is only"
                         " for an empty development database");
        }
        free(marker);
        return rc;
    }
    const char *names[] = {"cp_subset.sql", "cp_demo.sql"};
    for (size_t i = 0; i < 2; i++) {
        const struct schema_file *f = find_file(d, names[i]);
        if (f == NULL) {
            return err_set(err, CPB_EXIT_SOFTWARE, "this cpbridge carries no %s for %s", names[i],
                           db_dialect_name(d));
        }
        if (apply_file(db, f, 0, err) != 0) {
            return -1;
        }
    }
    if (staging_state_set(db, SCHEMA_DEMO_MARKER, "1", (int64_t)time(NULL) * 1000) != CPB_OK) {
        return err_set(err, CPB_EXIT_UNAVAILABLE, "recording the demo marker: %s",
                       db_last_error(db));
    }
    return 0;
}

int schema_init(struct db *db, bool demo, int upto, int *from, int *to, struct err *err)
{
    enum db_dialect d = db_get_dialect(db);
    int current = 0;
    int latest = schema_latest(d);
    if (schema_current(db, &current, err) != 0) {
        return -1;
    }
    *from = current;
    *to = current;
    if (current > latest) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "the database's schema is version %d, newer than this cpbridge knows"
                       " (%d): upgrade cpbridge",
                       current, latest);
    }
    if (current == 0 && !table_exists(db, "SELECT 1 FROM USER_SCHEMA_VERSION WHERE 1 = 0")) {
        if (db_exec(db, version_table_sql[d]) != CPB_OK) {
            return err_set(err, CPB_EXIT_UNAVAILABLE, "creating USER_SCHEMA_VERSION: %s",
                           db_last_error(db));
        }
    }
    for (int v = current + 1; v <= latest && (upto <= 0 || v <= upto); v++) {
        const struct schema_file *f = NULL;
        for (const struct schema_file *c = schema_files; c->name != NULL; c++) {
            if (strcmp(c->dialect, db_dialect_name(d)) == 0 && migration_number(c->name) == v) {
                f = c;
            }
        }
        if (f == NULL) {
            return err_set(err, CPB_EXIT_SOFTWARE, "migration %03d is missing for %s", v,
                           db_dialect_name(d));
        }
        if (apply_file(db, f, v, err) != 0) {
            return -1;
        }
        *to = v;
    }
    if (demo) {
        return install_demo(db, err);
    }
    return 0;
}
