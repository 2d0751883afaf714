/*
 * test_ops.c — the operations commands (core/cli/ops.c and cmd_*.c) end
 * to end through ops_main, against a real SQLite database through its ODBC driver (suite
 * "sqlite") and the throwaway PostgreSQL of tests/services/pg.sh (suite
 * "postgresql", a new database per test). Each test sets up the rows a run
 * and the Counterpoint stages would have written with plain SQL (the demo
 * Counterpoint subset from schema_init), runs a command with its stdout and
 * stderr captured, and checks the exit code, the output and the database:
 * every health state, status, orders show with its events, dlq retry and
 * cancel with their audit trail and refusals, and rollback restoring IM_INV
 * exactly while touching no other document.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/ops.h"
#include "cpbtest.h"
#include "engine/host.h"
#include "engine/schema.h"
#include "engine/staging.h"
#include "services/db.h"
#include "services/log.h"
#include "services/sql.h"

static enum db_dialect dialect;
static char conn[1024];
static char pg_names[64][64];
static unsigned n_pg;
static unsigned case_no;

/* The output of the last command. */
static struct {
    int code;
    char *out;
    char *err;
} R;

/* ---- databases ------------------------------------------------------------ */

/* A new empty database for the current suite into `conn`. */
static int fresh_db(void)
{
    if (dialect == DB_SQLITE) {
        snprintf(conn, sizeof conn, "%s", cpbtest_sqlite_conn());
        return 0;
    }
    const char *base = cpbtest_pg_conn();
    if (base == NULL || n_pg >= sizeof pg_names / sizeof pg_names[0]) {
        return -1;
    }
    struct db *admin = NULL;
    struct err e = {0};
    if (db_connect(base, DB_POSTGRESQL, 5000, &admin, &e) != 0) {
        fprintf(stderr, "postgresql: %s\n", e.msg);
        return -1;
    }
    char *name = pg_names[n_pg++];
    char sql[200];
    snprintf(name, 64, "cpbops_%ld_%u", (long)getpid(), n_pg);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    enum cpb_status rc = db_exec(admin, sql);
    db_close(admin);
    if (rc != CPB_OK) {
        return -1;
    }
    /* The same connection string with Database= replaced. */
    const char *d = strstr(base, "Database=");
    if (d == NULL) {
        return -1;
    }
    const char *end = strchr(d, ';');
    snprintf(conn, sizeof conn, "%.*sDatabase=%s%s", (int)(d - base), base, name,
             end != NULL ? end : "");
    return 0;
}

static struct db *connect_db(void)
{
    struct db *db = NULL;
    struct err e = {0};
    if (db_connect(conn, dialect, 5000, &db, &e) != 0) {
        fprintf(stderr, "connect: %s\n", e.msg);
        return NULL;
    }
    return db;
}

/* A fresh database with the engine schema and the Counterpoint subset. */
static struct db *new_db(void)
{
    int from = 0;
    int to = 0;
    struct err e = {0};
    CU_ASSERT_EQUAL_FATAL(fresh_db(), 0);
    struct db *db = connect_db();
    CU_ASSERT_PTR_NOT_NULL_FATAL(db);
    if (schema_init(db, true, 0, &from, &to, &e) != 0) {
        fprintf(stderr, "schema_init: %s\n", e.msg);
        CU_FAIL_FATAL("schema_init failed");
    }
    return db;
}

/* Write a pipeline file for the current database with a health block.
 * Returns its path (static rotation). */
static const char *pipeline_with(const char *connection, const char *health)
{
    char name[64];
    char text[4096];
    snprintf(name, sizeof name, "ops%u.cfg", ++case_no);
    snprintf(text, sizeof text,
             "name = \"ops-test\";\n"
             "database = { dialect = \"%s\"; connection = \"%s\"; login_timeout = \"2s\"; };\n"
             "health = { %s };\n"
             "stages = ( { stage = \"create-order\"; options = { user = \"WEBBOT\"; }; } );\n",
             dialect == DB_SQLITE ? "sqlite" : "postgresql", connection,
             health != NULL ? health : "");
    /* A copy: cpbtest_path's buffers rotate with every command run. */
    static char paths[16][1024];
    static unsigned next;
    char *path = paths[next++ % 16];
    snprintf(path, 1024, "%s", cpbtest_path(name));
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(path, text), 0);
    return path;
}

static const char *pipeline(const char *health)
{
    return pipeline_with(conn, health);
}

/* ---- running a command ---------------------------------------------------- */

/* Run `cpbridge VERB ARGS...` (NULL-terminated) through ops_main with
 * stdout and stderr captured into R. Returns the exit code. */
static int run_ops(const char *verb, ...)
{
    char *argv[40];
    int argc = 0;
    va_list ap;
    free(R.out);
    free(R.err);
    R.out = NULL;
    R.err = NULL;
    argv[argc++] = strdup(verb);
    va_start(ap, verb);
    for (const char *a = va_arg(ap, const char *); a != NULL && argc < 39;
         a = va_arg(ap, const char *)) {
        argv[argc++] = strdup(a);
    }
    va_end(ap);
    argv[argc] = NULL;

    const char *out_path = cpbtest_path("ops.out");
    const char *err_path = cpbtest_path("ops.err");
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1);
    int saved_err = dup(2);
    int fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CU_ASSERT_FATAL(saved_out >= 0 && saved_err >= 0 && fo >= 0 && fe >= 0);
    dup2(fo, 1);
    dup2(fe, 2);
    R.code = ops_main(verb, argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    close(fo);
    close(fe);
    for (int i = 0; i < argc; i++) {
        free(argv[i]);
    }
    R.out = cpbtest_slurp(out_path, NULL);
    R.err = cpbtest_slurp(err_path, NULL);
    if (R.out == NULL) {
        R.out = strdup("");
    }
    if (R.err == NULL) {
        R.err = strdup("");
    }
    if (getenv("CPB_TEST_VERBOSE") != NULL) {
        fprintf(stderr, "\n$ cpbridge %s ... -> %d\n%s%s", verb, R.code, R.out, R.err);
    }
    return R.code;
}

static void expect_out(const char *needle)
{
    if (strstr(R.out, needle) == NULL) {
        fprintf(stderr, "\nexpected in stdout: %s\n--- stdout:\n%s--- stderr:\n%s\n", needle, R.out,
                R.err);
        CU_FAIL("text missing from stdout");
    }
}

static void expect_err(const char *needle)
{
    if (strstr(R.err, needle) == NULL) {
        fprintf(stderr, "\nexpected in stderr: %s\n--- stderr:\n%s\n", needle, R.err);
        CU_FAIL("text missing from stderr");
    }
}

/* The first line of stdout starts with `prefix`. */
static void expect_first_line(const char *prefix)
{
    if (strncmp(R.out, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "\nexpected first line: %s...\n--- stdout:\n%s--- stderr:\n%s\n", prefix,
                R.out, R.err);
        CU_FAIL("first line differs");
    }
}

static json_t *out_json(void)
{
    json_error_t e;
    json_t *j = json_loads(R.out, 0, &e);
    if (j == NULL) {
        fprintf(stderr, "\nnot JSON (%s):\n%s\n", e.text, R.out);
        CU_FAIL("output is not JSON");
    }
    return j;
}

/* A JSON string member equals `want` (a missing member fails, never crashes). */
static void expect_jstr(json_t *obj, const char *key, const char *want)
{
    const char *got = json_string_value(json_object_get(obj, key));
    if (got == NULL || strcmp(got, want) != 0) {
        fprintf(stderr, "\nJSON %s: got %s, want %s\n", key, got != NULL ? got : "(none)", want);
        CU_FAIL("JSON member differs");
    }
}

/* ---- seeding rows ------------------------------------------------------------ */

struct seed {
    const char *ext;
    const char *status;
    int attempts;
    const char *err_code;
    const char *err_msg;
    int64_t received;
    int64_t doc_id;
    const char *tkt;
    int adopted;
    int64_t applied;
    int after_pending;
    int changed;
    int64_t lease_until; /* 0: no lease */
};

static int64_t add_order(struct db *db, const struct seed *s)
{
    int64_t now = host_now_ms();
    int64_t received = s->received != 0 ? s->received : now;
    int64_t id = 0;
    char hash[80];
    snprintf(hash, sizeof hash, "hash-%s", s->ext);
    struct sql_arg a[] = {
        sql_text(s->ext),
        sql_text(s->ext),
        sql_text(s->status),
        sql_text(hash),
        sql_int(s->attempts),
        sql_time(received),
        sql_text(s->err_code),
        sql_text(s->err_msg),
        sql_int_or_null(s->doc_id),
        sql_text(s->tkt),
        sql_int(s->adopted),
        sql_int(s->after_pending),
        sql_int(s->changed),
        sql_time(received),
        sql_time(received),
        s->applied != 0 ? sql_time(s->applied) : sql_null(),
        s->lease_until != 0 ? sql_text("lease-token") : sql_null(),
        s->lease_until != 0 ? sql_text("otherhost:4242") : sql_null(),
        s->lease_until != 0 ? sql_time(s->lease_until) : sql_null(),
    };
    enum cpb_status rc = sql_exec(
        db,
        "INSERT INTO USER_ORDER_STAGING (SOURCE, EXT_ORDER_ID, ORDER_NO, STATUS, PAYLOAD,"
        " PAYLOAD_HASH, ATTEMPTS, NEXT_ATTEMPT_DT, LAST_ERROR_CODE, LAST_ERROR, CP_DOC_ID,"
        " CP_TKT_NO, CP_ADOPTED, AFTER_PENDING, CHANGED_AFTER_APPLY, RECEIVED_DT, UPDATED_DT,"
        " APPLIED_DT, LEASE_TOKEN, LEASE_OWNER, LEASE_UNTIL, BILL_NAM, CURRENCY, ORDER_TOTAL)"
        " VALUES ('woo', ?, ?, ?, '{}', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
        " 'Ann Lee', 'USD', 25.5)",
        a, SQL_NARGS(a), NULL);
    if (rc != CPB_OK) {
        fprintf(stderr, "add_order: %s\n", db_last_error(db));
    }
    CU_ASSERT_EQUAL_FATAL(rc, CPB_OK);
    CU_ASSERT_EQUAL_FATAL(
        sql_query_int(db,
                      "SELECT STAGING_ID FROM USER_ORDER_STAGING WHERE SOURCE = 'woo'"
                      " AND EXT_ORDER_ID = ?",
                      (struct sql_arg[]){sql_text(s->ext)}, 1, &id, NULL),
        CPB_OK);
    return id;
}

static int64_t simple_order(struct db *db, const char *ext, const char *status)
{
    struct seed s = {.ext = ext, .status = status};
    if (strcmp(status, "DEAD") == 0) {
        s.attempts = 3;
        s.err_code = "db.retryable";
        s.err_msg = "deadlock, gave up";
    } else if (strcmp(status, "INVALID") == 0) {
        s.err_code = "item.unknown";
        s.err_msg = "no item for SKU X";
    }
    return add_order(db, &s);
}

static void add_line(struct db *db, int64_t id, int seq, const char *sku, int64_t qty)
{
    struct sql_arg a[] = {sql_int(id),   sql_int(seq),     sql_text(sku),
                          sql_text(sku), sql_decimal(qty), sql_decimal(100000)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO USER_ORDER_STAGING_LIN (STAGING_ID, LIN_SEQ_NO, SKU,"
                             " ITEM_NO, NAME, QTY, PRC, LINE_TOTAL) VALUES (?, ?, ?, ?, 'Mug',"
                             " ?, ?, 20)",
                             a, SQL_NARGS(a), NULL),
                    CPB_OK);
}

static void add_run(struct db *db, const char *run_id, int64_t started, int64_t ended,
                    const char *result, int exit_code, int applied, int64_t duration_ms)
{
    struct sql_arg a[] = {sql_text(run_id), sql_time(started),   sql_time(ended),
                          sql_text(result), sql_int(exit_code),  sql_int(applied),
                          sql_int(applied), sql_int(duration_ms)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO USER_SYNC_LOG (RUN_ID, PIPELINE, HOST_NAM, STARTED_DT,"
                             " ENDED_DT, RESULT, EXIT_CODE, N_STAGED, N_APPLIED, DURATION_MS)"
                             " VALUES (?, 'ops-test', 'host1', ?, ?, ?, ?, ?, ?, ?)",
                             a, SQL_NARGS(a), NULL),
                    CPB_OK);
}

/* A successful run that ended `ago_ms` ago. */
static void good_run(struct db *db, int64_t ago_ms)
{
    int64_t now = host_now_ms();
    add_run(db, "run-good", now - ago_ms - 1500, now - ago_ms, "OK", 0, 3, 1500);
}

/* A document as create-order writes it: header, `lines` lines of `item`,
 * totals, a misc charge, a payment, two contacts and a note. */
static void add_doc(struct db *db, int64_t doc, const char *tkt, int lines, const char *item,
                    const char *user, int64_t maint)
{
    char guid[64];
    snprintf(guid, sizeof guid, "00000000-0000-4000-8000-%012lld", (long long)doc);
    struct sql_arg h[] = {sql_int(doc),   sql_text(guid),  sql_text(tkt),
                          sql_int(lines), sql_time(maint), sql_text(user)};
    enum cpb_status rc =
        sql_exec(db,
                 "INSERT INTO PS_DOC_HDR (DOC_ID, DOC_GUID, DOC_TYP, TKT_TYP, STR_ID, STA_ID,"
                 " TKT_NO, CUST_NO, ORD_LINS, LST_MAINT_DT, LST_MAINT_USR_ID) VALUES (?, ?, 'O',"
                 " 'T', 'OPS', 'WEB', ?, 'C1', ?, ?, ?)",
                 h, SQL_NARGS(h), NULL);
    if (rc != CPB_OK) {
        fprintf(stderr, "add_doc: %s\n", db_last_error(db));
    }
    CU_ASSERT_EQUAL_FATAL(rc, CPB_OK);
    for (int i = 1; i <= lines; i++) {
        char lguid[80];
        snprintf(lguid, sizeof lguid, "00000000-%04d-4000-8000-%012lld", i, (long long)doc);
        struct sql_arg l[] = {sql_int(doc), sql_int(i), sql_text(tkt), sql_text(item),
                              sql_text(lguid)};
        CU_ASSERT_EQUAL(
            sql_exec(db,
                     "INSERT INTO PS_DOC_LIN (DOC_ID, LIN_SEQ_NO, STR_ID, STA_ID, TKT_NO, LIN_TYP,"
                     " ITEM_NO, QTY_SOLD, EXT_PRC, GROSS_EXT_PRC, CALC_EXT_PRC, LIN_GUID)"
                     " VALUES (?, ?, 'OPS', 'WEB', ?, 'O', ?, 1, 10, 10, 10, ?)",
                     l, SQL_NARGS(l), NULL),
            CPB_OK);
    }
    struct sql_arg d[] = {sql_int(doc)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO PS_DOC_HDR_TOT (DOC_ID, TOT_TYP, LINS, SUB_TOT, TAX_AMT,"
                             " NORM_TAX_AMT, TOT_MISC, TOT_HDR_DISC, TOT_LIN_DISC, TOT, AMT_DUE,"
                             " TOT_TND, INITIAL_MIN_DUE, TAX_AMT_SHIPPED, TOT_WEIGHT, TOT_CUBE)"
                             " VALUES (?, 'O', 1, 20, 0, 0, 5, 0, 0, 25, 0, 25, 0, 0, 0, 0)",
                             d, 1, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO PS_DOC_HDR_MISC_CHRG (DOC_ID, TOT_TYP, MISC_CHRG_NO,"
                             " MISC_TYP, MISC_AMT) VALUES (?, 'O', 1, 'A', 5)",
                             d, 1, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO PS_DOC_PMT (DOC_ID, PMT_SEQ_NO, PAY_COD, AMT, FINAL_PMT)"
                             " VALUES (?, 1, 'WEB', 25, 'N')",
                             d, 1, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO PS_DOC_CONTACT (DOC_ID, CONTACT_ID, NAM) VALUES"
                             " (?, 1, 'Ann Lee')",
                             d, 1, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO PS_DOC_CONTACT (DOC_ID, CONTACT_ID, NAM) VALUES"
                             " (?, 2, 'Ann Lee')",
                             d, 1, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO PS_DOC_NOTE (DOC_ID, NOTE_ID, NOTE) VALUES"
                             " (?, 'WEB', 'leave at the door')",
                             d, 1, NULL),
                    CPB_OK);
}

static void add_inv(struct db *db, const char *item, int64_t on_so, int64_t commit)
{
    struct sql_arg a[] = {sql_text(item), sql_decimal(on_so), sql_decimal(commit)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO IM_INV (ITEM_NO, LOC_ID, QTY_ON_HND, QTY_ON_SO,"
                             " QTY_COMMIT) VALUES (?, 'OPS', 100, ?, ?)",
                             a, SQL_NARGS(a), NULL),
                    CPB_OK);
}

static void add_order_inv(struct db *db, int64_t id, int seq, int64_t doc, const char *item,
                          const char *column, int64_t qty, int created)
{
    struct sql_arg a[] = {sql_int(id),      sql_int(seq),     sql_int(doc),    sql_text(item),
                          sql_text(column), sql_decimal(qty), sql_int(created)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO USER_ORDER_INV (STAGING_ID, LIN_SEQ_NO, DOC_ID, ITEM_NO,"
                             " LOC_ID, QTY_COLUMN, QTY, CREATED_ROW) VALUES (?, ?, ?, ?, 'OPS',"
                             " ?, ?, ?)",
                             a, SQL_NARGS(a), NULL),
                    CPB_OK);
}

static void add_event(struct db *db, int64_t id, const char *kind, const char *from, const char *to,
                      const char *actor, int64_t at)
{
    struct staging_event ev = {id, "run-1", kind, NULL, from, to, NULL, NULL, actor, 12};
    CU_ASSERT_EQUAL(staging_event(db, &ev, at), CPB_OK);
}

/* ---- reading back -------------------------------------------------------------- */

static int64_t count_of(struct db *db, const char *sql, int64_t arg)
{
    int64_t v = -1;
    if (sql_query_int(db, sql, (struct sql_arg[]){sql_int(arg)}, 1, &v, NULL) != CPB_OK) {
        fprintf(stderr, "count_of %s: %s\n", sql, db_last_error(db));
        return -1;
    }
    return v;
}

/* The first column of `sql` with one integer argument as text (new). */
static char *text_of(struct db *db, const char *sql, int64_t arg)
{
    struct cpb_stmt *st = NULL;
    const char *v = NULL;
    char *out = NULL;
    if (sql_query(db, sql, (struct sql_arg[]){sql_int(arg)}, 1, &st) == CPB_OK &&
        db_fetch(st) == CPB_OK && db_col_text(st, 1, &v) == CPB_OK) {
        out = strdup(v != NULL ? v : "(null)");
    }
    db_finalize(st);
    return out != NULL ? out : strdup("(none)");
}

static void expect_text(struct db *db, const char *sql, int64_t arg, const char *want)
{
    char *got = text_of(db, sql, arg);
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "\n%s [%lld]: got '%s', want '%s'\n", sql, (long long)arg, got, want);
        CU_FAIL("value differs");
    }
    free(got);
}

static void expect_status(struct db *db, int64_t id, const char *want)
{
    expect_text(db, "SELECT STATUS FROM USER_ORDER_STAGING WHERE STAGING_ID = ?", id, want);
}

/* IM_INV column of item at location OPS in ten-thousandths; -999999 when missing. */
static int64_t inv_of(struct db *db, const char *column, const char *item)
{
    char sql[200];
    struct cpb_stmt *st = NULL;
    int64_t v = -999999;
    bool null = false;
    snprintf(sql, sizeof sql, "SELECT %s FROM IM_INV WHERE ITEM_NO = ? AND LOC_ID = 'OPS'", column);
    if (sql_query(db, sql, (struct sql_arg[]){sql_text(item)}, 1, &st) == CPB_OK &&
        db_fetch(st) == CPB_OK) {
        (void)db_col_decimal(st, 1, &v, &null);
    }
    db_finalize(st);
    return v;
}

static const char *const doc_tables[] = {"PS_DOC_HDR",           "PS_DOC_LIN", "PS_DOC_HDR_TOT",
                                         "PS_DOC_HDR_MISC_CHRG", "PS_DOC_PMT", "PS_DOC_CONTACT",
                                         "PS_DOC_NOTE"};

/* Rows of document `doc` in every document table, into counts[7]. */
static void doc_counts(struct db *db, int64_t doc, int64_t counts[7])
{
    for (size_t i = 0; i < 7; i++) {
        char sql[120];
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s WHERE DOC_ID = ?", doc_tables[i]);
        counts[i] = count_of(db, sql, doc);
    }
}

static int64_t events_of(struct db *db, int64_t id, const char *kind)
{
    int64_t v = -1;
    (void)sql_query_int(db,
                        "SELECT COUNT(*) FROM USER_ORDER_EVENT WHERE STAGING_ID = ? AND KIND = ?",
                        (struct sql_arg[]){sql_int(id), sql_text(kind)}, 2, &v, NULL);
    return v;
}

static const char *id_text(int64_t id, char *buf, size_t n)
{
    snprintf(buf, n, "%lld", (long long)id);
    return buf;
}

#define MIN_MS (60 * 1000)
#define HEALTH_BLOCK                                                                               \
    "pending_warn = 5; pending_crit = 8; dead_warn = 1; dead_crit = 3; invalid_warn = 2;"          \
    " invalid_crit = 20; oldest_pending_warn = \"30m\"; oldest_pending_crit = \"1h\";"             \
    " last_success_warn = \"30m\"; last_success_crit = \"2h\";"

/* ---- health ------------------------------------------------------------------- */

static void test_health_ok(void)
{
    struct db *db = new_db();
    good_run(db, 3 * MIN_MS + 5000);
    db_close(db);
    const char *p = pipeline(HEALTH_BLOCK);
    CU_ASSERT_EQUAL(run_ops("health", p, NULL), 0);
    expect_first_line("CPBRIDGE OK - 0 pending, 0 dead, 0 invalid, last success 3m ago |");
    /* Thresholds come from the file, not the defaults (50/500, 1/10). */
    expect_out("pending=0;5;8");
    expect_out("dead=0;1;3");
    expect_out("last_success=18");
    expect_out(";1800;7200");
}

static void test_health_warning_and_critical_by_pending(void)
{
    struct db *db = new_db();
    char ext[32];
    good_run(db, MIN_MS);
    for (int i = 0; i < 6; i++) {
        snprintf(ext, sizeof ext, "p%d", i);
        simple_order(db, ext, "PENDING");
    }
    const char *p = pipeline(HEALTH_BLOCK);
    CU_ASSERT_EQUAL(run_ops("health", p, NULL), 1);
    expect_first_line("CPBRIDGE WARNING - 6 pending (>= warn 5), 0 dead");
    expect_out("pending=6;5;8");
    for (int i = 6; i < 9; i++) {
        snprintf(ext, sizeof ext, "p%d", i);
        simple_order(db, ext, "PENDING");
    }
    CU_ASSERT_EQUAL(run_ops("health", p, NULL), 2);
    expect_first_line("CPBRIDGE CRITICAL - 9 pending (>= crit 8)");
    /* The defaults (pending_warn 50) would call 9 pending OK. */
    CU_ASSERT_EQUAL(run_ops("health", pipeline(""), NULL), 0);
    expect_first_line("CPBRIDGE OK - 9 pending, 0 dead");
    db_close(db);
}

static void test_health_critical_by_dead(void)
{
    struct db *db = new_db();
    good_run(db, MIN_MS);
    simple_order(db, "d1", "DEAD");
    const char *p = pipeline(HEALTH_BLOCK);
    CU_ASSERT_EQUAL(run_ops("health", p, NULL), 1);
    expect_first_line("CPBRIDGE WARNING - 0 pending, 1 dead (>= warn 1)");
    simple_order(db, "d2", "DEAD");
    simple_order(db, "d3", "DEAD");
    CU_ASSERT_EQUAL(run_ops("health", p, NULL), 2);
    expect_first_line("CPBRIDGE CRITICAL - 0 pending, 3 dead (>= crit 3)");
    expect_out("dead=3;1;3");
    expect_out("next: cpbridge dlq");
    db_close(db);
}

static void test_health_critical_when_database_unreachable(void)
{
    char bad[1024];
    if (dialect == DB_SQLITE) {
        snprintf(bad, sizeof bad,
                 "Driver=SQLite3;Database=%s/no/such/dir/x.db;NoCreat=1;Timeout=100",
                 cpbtest_tmpdir());
    } else {
        /* Port 1 on the loopback: nothing listens there. */
        snprintf(bad, sizeof bad,
                 "Driver=PostgreSQL Unicode;Server=127.0.0.1;Port=1;Database=x;Uid=app;Pwd=x");
    }
    const char *p = pipeline_with(bad, HEALTH_BLOCK);
    CU_ASSERT_EQUAL(run_ops("health", p, NULL), 2);
    expect_first_line("CPBRIDGE CRITICAL - database unreachable:");
    CU_ASSERT_EQUAL(run_ops("health", p, "--json", NULL), 2);
    json_t *j = out_json();
    expect_jstr(j, "status", "CRITICAL");
    CU_ASSERT_TRUE(json_is_false(json_object_get(j, "database_reachable")));
    json_decref(j);
    /* The other commands say 69. */
    CU_ASSERT_EQUAL(run_ops("status", p, NULL), 69);
    CU_ASSERT_EQUAL(run_ops("dlq", p, "list", NULL), 69);
}

static void test_health_unknown(void)
{
    /* The pipeline file cannot be read. */
    CU_ASSERT_EQUAL(run_ops("health", cpbtest_path("no-such.cfg"), NULL), 3);
    expect_first_line("CPBRIDGE UNKNOWN - cannot read the pipeline file:");
    /* A database without `cpbridge db init`. */
    CU_ASSERT_EQUAL_FATAL(fresh_db(), 0);
    CU_ASSERT_EQUAL(run_ops("health", pipeline(HEALTH_BLOCK), NULL), 3);
    expect_first_line("CPBRIDGE UNKNOWN - schema not ready:");
    /* A fresh install: no run, nothing staged: not OK, UNKNOWN. */
    struct db *db = new_db();
    const char *p = pipeline(HEALTH_BLOCK);
    CU_ASSERT_EQUAL(run_ops("health", p, NULL), 3);
    expect_first_line("CPBRIDGE UNKNOWN - 0 pending, 0 dead, 0 invalid, no run yet |");
    expect_out("last_success=U;1800;7200");
    /* Orders staged, but no run ever succeeded (one crashed long ago). */
    simple_order(db, "x1", "PENDING");
    int64_t now = host_now_ms();
    struct sql_arg a[] = {sql_time(now - 3 * 3600 * 1000)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO USER_SYNC_LOG (RUN_ID, PIPELINE, STARTED_DT, RESULT)"
                             " VALUES ('crashed', 'ops-test', ?, 'RUNNING')",
                             a, 1, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(run_ops("health", p, NULL), 2);
    expect_first_line("CPBRIDGE CRITICAL - 1 pending, 0 dead, 0 invalid, orders staged but no run"
                      " has succeeded yet");
    /* Another pipeline's success does not count for this one. */
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO USER_SYNC_LOG (RUN_ID, PIPELINE, STARTED_DT, ENDED_DT,"
                             " RESULT) VALUES ('other', 'other-pipeline', ?, ?, 'OK')",
                             (struct sql_arg[]){sql_time(now - 1000), sql_time(now)}, 2, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(run_ops("health", p, NULL), 2);
    db_close(db);
}

static void test_health_ages_and_json(void)
{
    struct db *db = new_db();
    int64_t now = host_now_ms();
    /* Last success 45 minutes ago: WARNING (30m); oldest pending 90m: CRITICAL (1h). */
    good_run(db, 45 * MIN_MS);
    struct seed s = {.ext = "old", .status = "PENDING", .received = now - 90 * MIN_MS};
    add_order(db, &s);
    simple_order(db, "i1", "INVALID");
    const char *p = pipeline(HEALTH_BLOCK);
    CU_ASSERT_EQUAL(run_ops("health", p, NULL), 2);
    expect_first_line("CPBRIDGE CRITICAL - 1 pending, 0 dead, 1 invalid, oldest pending 90m (>="
                      " crit 1h), last success 45m ago (>= warn 30m)");
    CU_ASSERT_EQUAL(run_ops("health", p, "--json", NULL), 2);
    json_t *j = out_json();
    expect_jstr(j, "status", "CRITICAL");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "code")), 2);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "pending")), 1);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "pending_due")), 1);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "invalid")), 1);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "dead")), 0);
    json_int_t age = json_integer_value(json_object_get(j, "oldest_pending_age_seconds"));
    CU_ASSERT(age >= 90 * 60 && age < 92 * 60);
    age = json_integer_value(json_object_get(j, "last_success_age_seconds"));
    CU_ASSERT(age >= 45 * 60 && age < 47 * 60);
    expect_jstr(json_object_get(j, "last_run"), "result", "OK");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(j, "orders"), "INVALID")),
                    1);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "checks")), 5);
    json_decref(j);
    db_close(db);
}

/* ---- status ------------------------------------------------------------------- */

static void test_status(void)
{
    struct db *db = new_db();
    int64_t now = host_now_ms();
    char line[200];
    add_run(db, "run-a", now - 20 * MIN_MS, now - 20 * MIN_MS + 4000, "ATTENTION", 1, 2, 4000);
    add_run(db, "run-b", now - 5 * MIN_MS, now - 5 * MIN_MS + 1500, "OK", 0, 3, 1500);
    int64_t dead = simple_order(db, "2001", "DEAD");
    int64_t inv = simple_order(db, "2002", "INVALID");
    simple_order(db, "2003", "PENDING");
    struct seed ch = {.ext = "2004",
                      .status = "APPLIED",
                      .doc_id = 900000100,
                      .tkt = "OPS-000100",
                      .applied = now,
                      .changed = 1};
    int64_t changed = add_order(db, &ch);
    const char *p = pipeline(HEALTH_BLOCK);
    CU_ASSERT_EQUAL(run_ops("status", p, NULL), 0);
    expect_out("Pipeline ops-test");
    expect_out("PENDING             1");
    expect_out("DEAD                1");
    expect_out("ATTENTION");
    expect_out("2.00"); /* 3 applied in 1.5 s */
    expect_out("1.500s");
    expect_out("Dead letters (DEAD 1, INVALID 1)");
    expect_out("woo:2001");
    expect_out("db.retryable: deadlock, gave up");
    expect_out("item.unknown");
    expect_out("Changed in the store after they were applied (1)");
    snprintf(line, sizeof line, "%-8lld woo:2004", (long long)changed);
    expect_out(line);
    /* The newest run comes first. */
    const char *b = strstr(R.out, "  OK ");
    const char *a = strstr(R.out, "ATTENTION");
    CU_ASSERT(b != NULL && a != NULL && b < a);

    CU_ASSERT_EQUAL(run_ops("status", p, "--json", NULL), 0);
    json_t *j = out_json();
    CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "runs")), 2);
    json_t *first = json_array_get(json_object_get(j, "runs"), 0);
    expect_jstr(first, "result", "OK");
    expect_jstr(first, "orders_per_second", "2.00");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(j, "orders"), "DEAD")), 1);
    json_t *dl = json_object_get(j, "dead_letters");
    CU_ASSERT_EQUAL(json_array_size(dl), 2);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(dl, 0), "id")), dead);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(dl, 1), "id")), inv);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "changed")), 1);
    json_decref(j);
    db_close(db);
}

/* ---- orders ------------------------------------------------------------------- */

static void test_orders_show_and_list(void)
{
    struct db *db = new_db();
    int64_t now = host_now_ms();
    char idbuf[32];
    struct seed s = {.ext = "3001",
                     .status = "APPLIED",
                     .attempts = 1,
                     .doc_id = 900000001,
                     .tkt = "OPS-000001",
                     .applied = now - 1000};
    int64_t id = add_order(db, &s);
    add_line(db, id, 1, "SKU-A", 20000);
    add_line(db, id, 2, "SKU-B", 10000);
    add_doc(db, 900000001, "OPS-000001", 2, "SKU-A", "WEBBOT", now - 2000);
    add_event(db, id, "staged", NULL, "PENDING", NULL, now - 5000);
    add_event(db, id, "applied", "PENDING", "APPLIED", NULL, now - 1000);
    add_event(db, id, "after.done", NULL, NULL, "runner", now - 500);
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO USER_ORDER_STEP (STAGING_ID, STAGE_ID, DONE_DT)"
                             " VALUES (?, 'sync-status', ?)",
                             (struct sql_arg[]){sql_int(id), sql_time(now - 500)}, 2, NULL),
                    CPB_OK);
    add_order_inv(db, id, 1, 900000001, "SKU-A", "QTY_ON_SO", 20000, 0);
    simple_order(db, "3002", "DEAD");
    const char *p = pipeline(NULL);

    CU_ASSERT_EQUAL(run_ops("orders", p, "show", "woo:3001", NULL), 0);
    expect_out("Order ");
    expect_out("woo:3001");
    expect_out("APPLIED, 1 attempt");
    expect_out("SKU-A");
    expect_out("2.0000");
    expect_out("25.50 USD");
    expect_out("document 900000001, ticket OPS-000001, written by cpbridge");
    expect_out("open (still in PS_DOC_HDR)");
    expect_out("sync-status");
    expect_out("IM_INV SKU-A @ OPS QTY_ON_SO +2.0000");
    expect_out("(by runner)");
    const char *events = strstr(R.out, "Events:");
    CU_ASSERT_PTR_NOT_NULL_FATAL(events);
    const char *e1 = strstr(events, "staged");
    const char *e2 = strstr(events, " applied ");
    const char *e3 = strstr(events, "after.done");
    CU_ASSERT(e1 != NULL && e2 != NULL && e3 != NULL && e1 < e2 && e2 < e3);
    expect_out("PENDING->APPLIED");
    expect_out("cpbridge rollback");

    CU_ASSERT_EQUAL(run_ops("orders", p, "show", id_text(id, idbuf, sizeof idbuf), "--json", NULL),
                    0);
    json_t *j = out_json();
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "id")), id);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "lines")), 2);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "events")), 3);
    expect_jstr(json_array_get(json_object_get(j, "events"), 2), "kind", "after.done");
    CU_ASSERT_TRUE(json_is_true(json_object_get(j, "document_open")));
    CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "after_steps_done")), 1);
    json_decref(j);

    /* The document posted in Counterpoint (gone from PS_DOC_*). */
    for (size_t i = 7; i-- > 0;) {
        char sql[100];
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE DOC_ID = 900000001", doc_tables[i]);
        if (i == 0) {
            continue;
        }
        CU_ASSERT_EQUAL(db_exec(db, sql), CPB_OK);
    }
    CU_ASSERT_EQUAL(db_exec(db, "DELETE FROM PS_DOC_HDR WHERE DOC_ID = 900000001"), CPB_OK);
    CU_ASSERT_EQUAL(run_ops("orders", p, "show", "woo:3001", NULL), 0);
    expect_out("gone (posted or released");

    CU_ASSERT_EQUAL(run_ops("orders", p, "list", NULL), 0);
    expect_out("woo:3001");
    expect_out("woo:3002");
    CU_ASSERT_EQUAL(run_ops("orders", p, "list", "--state", "dead", NULL), 0);
    expect_out("woo:3002");
    CU_ASSERT_PTR_NULL(strstr(R.out, "woo:3001"));
    CU_ASSERT_EQUAL(run_ops("orders", p, "list", "--limit", "1", "--json", NULL), 0);
    j = out_json();
    CU_ASSERT_EQUAL(json_array_size(j), 1);
    /* Newest first. */
    expect_jstr(json_array_get(j, 0), "external_id", "3002");
    json_decref(j);
    CU_ASSERT_EQUAL(run_ops("orders", p, "list", "--changed", NULL), 0);
    expect_out("no orders");

    CU_ASSERT_EQUAL(run_ops("orders", p, "show", "999999", NULL), 66);
    expect_err("no order '999999'");
    CU_ASSERT_EQUAL(run_ops("orders", p, "show", "woo:nope", NULL), 66);
    CU_ASSERT_EQUAL(run_ops("orders", p, "show", "nonsense", NULL), 64);
    CU_ASSERT_EQUAL(run_ops("orders", p, "list", "--state", "BOGUS", NULL), 64);
    CU_ASSERT_EQUAL(run_ops("orders", p, "list", "--limit", "0", NULL), 64);
    CU_ASSERT_EQUAL(run_ops("orders", p, "list", "--limit", "5x", NULL), 64);
    db_close(db);
}

/* Text the store sent is printed as text, never as terminal control. */
static void test_untrusted_text_is_escaped(void)
{
    struct db *db = new_db();
    /* PostgreSQL refuses bytes that are not UTF-8; SQLite stores them. */
    bool pg = dialect == DB_POSTGRESQL;
    struct seed s = {.ext = "4001",
                     .status = "INVALID",
                     .err_code = "x",
                     .err_msg = pg ? "bad\x1b[2Jname\n\xc2\x9b end" : "bad\x1b[2Jname\n\xff end"};
    add_order(db, &s);
    const char *p = pipeline(NULL);
    CU_ASSERT_EQUAL(run_ops("dlq", p, "list", NULL), 0);
    CU_ASSERT_PTR_NULL(strchr(R.out, '\x1b'));
    expect_out(pg ? "bad\\x1b[2Jname\\x0a\\xc2\\x9b end" : "bad\\x1b[2Jname\\x0a\\xff end");
    CU_ASSERT_EQUAL(run_ops("dlq", p, "list", "--json", NULL), 0);
    json_t *j = out_json();
    CU_ASSERT_EQUAL(json_array_size(j), 1);
    json_decref(j);
    db_close(db);
}

/* ---- dlq ------------------------------------------------------------------------ */

static void expect_event(struct db *db, int64_t id, const char *kind, const char *from,
                         const char *to, const char *message)
{
    struct cpb_stmt *st = NULL;
    const char *v[5] = {NULL};
    CU_ASSERT_EQUAL_FATAL(sql_query(db,
                                    "SELECT STATUS_FROM, STATUS_TO, ACTOR, MESSAGE, KIND FROM"
                                    " USER_ORDER_EVENT WHERE STAGING_ID = ? AND KIND = ?"
                                    " ORDER BY EVENT_ID DESC",
                                    (struct sql_arg[]){sql_int(id), sql_text(kind)}, 2, &st),
                          CPB_OK);
    CU_ASSERT_EQUAL_FATAL(db_fetch(st), CPB_OK);
    for (unsigned i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(db_col_text(st, i + 1, &v[i]), CPB_OK);
    }
    CU_ASSERT(v[0] != NULL && strcmp(v[0], from) == 0);
    CU_ASSERT(v[1] != NULL && strcmp(v[1], to) == 0);
    CU_ASSERT(v[2] != NULL && strcmp(v[2], "opstester") == 0);
    if (message != NULL) {
        CU_ASSERT(v[3] != NULL && strstr(v[3], message) != NULL);
    }
    db_finalize(st);
}

static void test_dlq_retry(void)
{
    struct db *db = new_db();
    char a[32], b[32];
    int64_t now = host_now_ms();
    setenv("USER", "opstester", 1);
    unsetenv("SUDO_USER");
    int64_t d1 = simple_order(db, "5001", "DEAD");
    int64_t i1 = simple_order(db, "5002", "INVALID");
    int64_t d2 = simple_order(db, "5003", "DEAD");
    CU_ASSERT_EQUAL(sql_exec(db,
                             "UPDATE USER_ORDER_STAGING SET LAST_ERROR_CODE = 'item.unknown'"
                             " WHERE STAGING_ID = ?",
                             (struct sql_arg[]){sql_int(d2)}, 1, NULL),
                    CPB_OK);
    int64_t ap = simple_order(db, "5004", "APPLIED");
    struct seed gave_up = {.ext = "5005",
                           .status = "APPLIED",
                           .doc_id = 900000005,
                           .tkt = "OPS-5",
                           .applied = now,
                           .after_pending = 2,
                           .err_code = "sync.failed",
                           .err_msg = "store said 500"};
    int64_t gu = add_order(db, &gave_up);
    const char *p = pipeline(NULL);

    CU_ASSERT_EQUAL(run_ops("dlq", p, "list", NULL), 0);
    expect_out("woo:5001");
    expect_out("woo:5002");
    expect_out("woo:5003");
    CU_ASSERT_PTR_NULL(strstr(R.out, "woo:5004"));

    CU_ASSERT_EQUAL(
        run_ops("dlq", p, "retry", id_text(d1, a, sizeof a), "--why", "fixed the item", NULL), 0);
    expect_out("DEAD -> PENDING");
    expect_status(db, d1, "PENDING");
    CU_ASSERT_EQUAL(
        count_of(db, "SELECT ATTEMPTS FROM USER_ORDER_STAGING WHERE STAGING_ID = ?", d1), 0);
    expect_text(db, "SELECT LAST_ERROR_CODE FROM USER_ORDER_STAGING WHERE STAGING_ID = ?", d1,
                "(null)");
    expect_text(db, "SELECT LAST_ERROR FROM USER_ORDER_STAGING WHERE STAGING_ID = ?", d1, "(null)");
    /* Due now: a run starting now claims it. */
    int64_t due = -1;
    CU_ASSERT_EQUAL(sql_query_int(db,
                                  "SELECT COUNT(*) FROM USER_ORDER_STAGING WHERE STAGING_ID = ?"
                                  " AND NEXT_ATTEMPT_DT <= ?",
                                  (struct sql_arg[]){sql_int(d1), sql_time(host_now_ms())}, 2, &due,
                                  NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(due, 1);
    expect_event(db, d1, "dlq.retry", "DEAD", "PENDING", "fixed the item");

    /* An applied order is refused, and nothing is written. */
    CU_ASSERT_EQUAL(run_ops("dlq", p, "retry", id_text(ap, a, sizeof a), NULL), 65);
    expect_err("is APPLIED");
    expect_err("rollback");
    expect_status(db, ap, "APPLIED");
    CU_ASSERT_EQUAL(events_of(db, ap, "dlq.retry"), 0);
    /* Retrying a pending order again is refused too. */
    CU_ASSERT_EQUAL(run_ops("dlq", p, "retry", id_text(d1, a, sizeof a), NULL), 65);
    expect_err("is PENDING");

    /* An unknown id among known ones: nothing at all is done. */
    CU_ASSERT_EQUAL(run_ops("dlq", p, "retry", id_text(i1, a, sizeof a), "woo:99999", NULL), 66);
    expect_status(db, i1, "INVALID");

    /* --all --reason: only the orders with that error code. */
    CU_ASSERT_EQUAL(run_ops("dlq", p, "retry", "--all", "--reason", "item.unknown", NULL), 0);
    expect_status(db, i1, "PENDING");
    expect_status(db, d2, "PENDING");
    CU_ASSERT_EQUAL(events_of(db, i1, "dlq.retry"), 1);
    CU_ASSERT_EQUAL(run_ops("dlq", p, "retry", "--all", NULL), 0);
    expect_out("nothing to retry");

    /* After-commit work given up: queued again, never re-created. */
    CU_ASSERT_EQUAL(run_ops("dlq", p, "retry", "woo:5005", NULL), 0);
    expect_out("after-commit steps queued again");
    expect_status(db, gu, "APPLIED");
    CU_ASSERT_EQUAL(
        count_of(db, "SELECT AFTER_PENDING FROM USER_ORDER_STAGING WHERE STAGING_ID = ?", gu), 1);
    CU_ASSERT_EQUAL(
        count_of(db, "SELECT CP_DOC_ID FROM USER_ORDER_STAGING WHERE STAGING_ID = ?", gu),
        900000005);
    expect_event(db, gu, "dlq.retry", "APPLIED", "APPLIED", NULL);

    /* Usage. */
    CU_ASSERT_EQUAL(run_ops("dlq", p, "retry", NULL), 64);
    CU_ASSERT_EQUAL(run_ops("dlq", p, "retry", "--all", id_text(d1, b, sizeof b), NULL), 64);
    CU_ASSERT_EQUAL(run_ops("dlq", p, "retry", "--reason", "x", id_text(d1, b, sizeof b), NULL),
                    64);
    db_close(db);
}

static void test_dlq_cancel(void)
{
    struct db *db = new_db();
    char a[32];
    int64_t now = host_now_ms();
    setenv("USER", "opstester", 1);
    unsetenv("SUDO_USER");
    int64_t d1 = simple_order(db, "6001", "DEAD");
    int64_t ap = simple_order(db, "6002", "APPLIED");
    struct seed leased = {.ext = "6003", .status = "PENDING", .lease_until = now + 10 * MIN_MS};
    int64_t pl = add_order(db, &leased);
    int64_t p2 = simple_order(db, "6004", "PENDING");
    const char *p = pipeline(NULL);

    /* --why is required. */
    CU_ASSERT_EQUAL(run_ops("dlq", p, "cancel", id_text(d1, a, sizeof a), NULL), 64);
    expect_err("--why");
    expect_status(db, d1, "DEAD");

    CU_ASSERT_EQUAL(run_ops("dlq", p, "cancel", "woo:6001", "--why", "duplicate of 6000", NULL), 0);
    expect_out("DEAD -> CANCELLED");
    expect_status(db, d1, "CANCELLED");
    expect_event(db, d1, "dlq.cancel", "DEAD", "CANCELLED", "duplicate of 6000");

    /* Applied, leased and cancelled orders are refused. */
    CU_ASSERT_EQUAL(run_ops("dlq", p, "cancel", id_text(ap, a, sizeof a), "--why", "x", NULL), 65);
    expect_err("is APPLIED");
    expect_status(db, ap, "APPLIED");
    CU_ASSERT_EQUAL(run_ops("dlq", p, "cancel", id_text(pl, a, sizeof a), "--why", "x", NULL), 65);
    expect_err("otherhost:4242");
    expect_status(db, pl, "PENDING");
    CU_ASSERT_EQUAL(events_of(db, pl, "dlq.cancel"), 0);
    CU_ASSERT_EQUAL(run_ops("dlq", p, "retry", id_text(d1, a, sizeof a), NULL), 65);
    expect_err("is CANCELLED");

    /* A pending order without a lease can be cancelled; SUDO_USER wins. */
    setenv("SUDO_USER", "opstester", 1);
    setenv("USER", "root", 1);
    CU_ASSERT_EQUAL(
        run_ops("dlq", p, "cancel", id_text(p2, a, sizeof a), "--why", "test order", NULL), 0);
    expect_status(db, p2, "CANCELLED");
    expect_event(db, p2, "dlq.cancel", "PENDING", "CANCELLED", "test order");
    unsetenv("SUDO_USER");
    db_close(db);
}

/* ---- rollback ------------------------------------------------------------------- */

struct two_orders {
    int64_t x, y;
};

/*
 * Two applied orders on the same item. X (document 900000011): line 1 item
 * OPS-A 3 on QTY_ON_SO, line 2 item OPS-B 5 on QTY_COMMIT, line 3 item OPS-C
 * 4 on QTY_ON_SO in a row cpbridge created. Y (document 900000012): OPS-A 2.
 * IM_INV before: OPS-A QTY_ON_SO 15 (10 + 3 + 2), OPS-B QTY_COMMIT 7, OPS-C 4.
 */
static struct two_orders two_applied(struct db *db, const char *x_user, int64_t x_maint_offset,
                                     int x_doc_lines)
{
    int64_t now = host_now_ms();
    struct two_orders t;
    struct seed x = {.ext = "7001",
                     .status = "APPLIED",
                     .attempts = 1,
                     .doc_id = 900000011,
                     .tkt = "OPS-000011",
                     .applied = now - 60000};
    struct seed y = {.ext = "7002",
                     .status = "APPLIED",
                     .attempts = 1,
                     .doc_id = 900000012,
                     .tkt = "OPS-000012",
                     .applied = now - 50000};
    t.x = add_order(db, &x);
    t.y = add_order(db, &y);
    add_line(db, t.x, 1, "OPS-A", 30000);
    add_line(db, t.x, 2, "OPS-B", 50000);
    add_line(db, t.x, 3, "OPS-C", 40000);
    add_line(db, t.y, 1, "OPS-A", 20000);
    add_doc(db, 900000011, "OPS-000011", x_doc_lines, "OPS-A", x_user,
            x.applied - 100 + x_maint_offset);
    add_doc(db, 900000012, "OPS-000012", 1, "OPS-A", "WEBBOT", y.applied - 100);
    add_inv(db, "OPS-A", 150000, 0);
    add_inv(db, "OPS-B", 0, 70000);
    add_inv(db, "OPS-C", 40000, 0);
    add_order_inv(db, t.x, 1, 900000011, "OPS-A", "QTY_ON_SO", 30000, 0);
    add_order_inv(db, t.x, 2, 900000011, "OPS-B", "QTY_COMMIT", 50000, 0);
    add_order_inv(db, t.x, 3, 900000011, "OPS-C", "QTY_ON_SO", 40000, 1);
    add_order_inv(db, t.y, 1, 900000012, "OPS-A", "QTY_ON_SO", 20000, 0);
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO USER_ORDER_STEP (STAGING_ID, STAGE_ID, DONE_DT)"
                             " VALUES (?, 'sync-status', ?)",
                             (struct sql_arg[]){sql_int(t.x), sql_time(now)}, 2, NULL),
                    CPB_OK);
    return t;
}

/* Nothing of the state set up by two_applied changed. */
static void expect_untouched(struct db *db, const struct two_orders *t, int64_t x_doc_lines)
{
    int64_t c[7];
    const int64_t want[7] = {1, x_doc_lines, 1, 1, 1, 2, 1};
    expect_status(db, t->x, "APPLIED");
    CU_ASSERT_EQUAL(inv_of(db, "QTY_ON_SO", "OPS-A"), 150000);
    CU_ASSERT_EQUAL(inv_of(db, "QTY_COMMIT", "OPS-B"), 70000);
    CU_ASSERT_EQUAL(inv_of(db, "QTY_ON_SO", "OPS-C"), 40000);
    doc_counts(db, 900000011, c);
    for (int i = 0; i < 7; i++) {
        CU_ASSERT_EQUAL(c[i], want[i]);
    }
    CU_ASSERT_EQUAL(count_of(db, "SELECT COUNT(*) FROM USER_ORDER_INV WHERE STAGING_ID = ?", t->x),
                    3);
    CU_ASSERT_EQUAL(count_of(db, "SELECT COUNT(*) FROM USER_ORDER_STEP WHERE STAGING_ID = ?", t->x),
                    1);
    CU_ASSERT_EQUAL(events_of(db, t->x, "rollback"), 0);
}

static void test_rollback_restores_exactly(void)
{
    struct db *db = new_db();
    char a[32];
    int64_t c[7];
    setenv("USER", "opstester", 1);
    unsetenv("SUDO_USER");
    struct two_orders t = two_applied(db, "WEBBOT", 0, 3);
    int64_t before_y[7];
    doc_counts(db, 900000012, before_y);
    const char *p = pipeline(NULL);

    CU_ASSERT_EQUAL(
        run_ops("rollback", p, id_text(t.x, a, sizeof a), "--why", "wrong customer", NULL), 0);
    expect_out("Rolled back order");
    expect_out("IM_INV OPS-A @ OPS QTY_ON_SO: 15.0000 -> 12.0000 (-3.0000)");
    expect_out("IM_INV OPS-B @ OPS QTY_COMMIT: 7.0000 -> 2.0000 (-5.0000)");
    expect_out("IM_INV OPS-C @ OPS QTY_ON_SO: 4.0000 -> 0.0000 (-4.0000); the row was created by"
               " cpbridge and is left in place");
    expect_out("PS_DOC_LIN             3 rows deleted");
    expect_out("PS_DOC_CONTACT         2 rows deleted");

    /* IM_INV exactly restored; the created row stays, at zero. */
    CU_ASSERT_EQUAL(inv_of(db, "QTY_ON_SO", "OPS-A"), 120000);
    CU_ASSERT_EQUAL(inv_of(db, "QTY_COMMIT", "OPS-B"), 20000);
    CU_ASSERT_EQUAL(inv_of(db, "QTY_ON_SO", "OPS-C"), 0);
    CU_ASSERT_EQUAL(inv_of(db, "QTY_ON_HND", "OPS-A"), 1000000);
    /* X's document is gone from every table; Y's is whole. */
    doc_counts(db, 900000011, c);
    for (int i = 0; i < 7; i++) {
        CU_ASSERT_EQUAL(c[i], 0);
    }
    doc_counts(db, 900000012, c);
    for (int i = 0; i < 7; i++) {
        CU_ASSERT_EQUAL(c[i], before_y[i]);
    }
    CU_ASSERT_EQUAL(before_y[5], 2);
    CU_ASSERT_EQUAL(count_of(db, "SELECT COUNT(*) FROM USER_ORDER_INV WHERE STAGING_ID = ?", t.x),
                    0);
    CU_ASSERT_EQUAL(count_of(db, "SELECT COUNT(*) FROM USER_ORDER_INV WHERE STAGING_ID = ?", t.y),
                    1);
    CU_ASSERT_EQUAL(count_of(db, "SELECT COUNT(*) FROM USER_ORDER_STEP WHERE STAGING_ID = ?", t.x),
                    0);
    expect_status(db, t.x, "ROLLED_BACK");
    expect_status(db, t.y, "APPLIED");
    /* The document id stays on the row for the record. */
    CU_ASSERT_EQUAL(
        count_of(db, "SELECT CP_DOC_ID FROM USER_ORDER_STAGING WHERE STAGING_ID = ?", t.x),
        900000011);
    expect_event(db, t.x, "rollback", "APPLIED", "ROLLED_BACK", "wrong customer");
    expect_event(db, t.x, "rollback", "APPLIED", "ROLLED_BACK", "document 900000011");

    /* A second rollback is refused; a retry applies it afresh. */
    CU_ASSERT_EQUAL(run_ops("rollback", p, id_text(t.x, a, sizeof a), NULL), 65);
    expect_err("ROLLED_BACK");
    CU_ASSERT_EQUAL(run_ops("dlq", p, "retry", id_text(t.x, a, sizeof a), NULL), 0);
    expect_status(db, t.x, "PENDING");
    expect_text(db, "SELECT CP_DOC_ID FROM USER_ORDER_STAGING WHERE STAGING_ID = ?", t.x, "(null)");
    db_close(db);
}

static void test_rollback_dry_run_changes_nothing(void)
{
    struct db *db = new_db();
    char a[32];
    struct two_orders t = two_applied(db, "WEBBOT", 0, 3);
    const char *p = pipeline(NULL);
    CU_ASSERT_EQUAL(run_ops("rollback", p, id_text(t.x, a, sizeof a), "--dry-run", NULL), 0);
    expect_out("Dry run");
    expect_out("PS_DOC_HDR             1 row deleted");
    expect_out("PS_DOC_NOTE            1 row deleted");
    expect_out("QTY_ON_SO: 15.0000 -> 12.0000");
    expect_out("USER_ORDER_INV         3 rows deleted");
    expect_out("Nothing was changed");
    expect_untouched(db, &t, 3);
    db_close(db);
}

static void test_rollback_refusals(void)
{
    struct db *db = new_db();
    char a[32];
    int64_t now = host_now_ms();
    const char *p = pipeline(NULL);

    /* Edited in Counterpoint by another user: refused, then --force. */
    struct two_orders t = two_applied(db, "JANE", 0, 3);
    CU_ASSERT_EQUAL(run_ops("rollback", p, id_text(t.x, a, sizeof a), NULL), 65);
    expect_err("edited in Counterpoint");
    expect_err("'JANE'");
    expect_err("--force");
    expect_untouched(db, &t, 3);
    CU_ASSERT_EQUAL(run_ops("rollback", p, id_text(t.x, a, sizeof a), "--force", NULL), 0);
    expect_out("forced past");
    expect_status(db, t.x, "ROLLED_BACK");
    CU_ASSERT_EQUAL(count_of(db, "SELECT COUNT(*) FROM PS_DOC_HDR WHERE DOC_ID = ?", 900000011), 0);
    CU_ASSERT_EQUAL(inv_of(db, "QTY_ON_SO", "OPS-A"), 120000);
    CU_ASSERT_EQUAL(count_of(db, "SELECT COUNT(*) FROM PS_DOC_HDR WHERE DOC_ID = ?", 900000012), 1);
    CU_ASSERT_EQUAL(events_of(db, t.x, "rollback"), 1);
    db_close(db);

    /* Edited after cpbridge applied it (LST_MAINT_DT later). */
    db = new_db();
    p = pipeline(NULL);
    t = two_applied(db, "WEBBOT", 3600 * 1000, 3);
    CU_ASSERT_EQUAL(run_ops("rollback", p, id_text(t.x, a, sizeof a), NULL), 65);
    expect_err("after cpbridge applied it");
    expect_untouched(db, &t, 3);
    db_close(db);

    /* A line added or removed in Counterpoint. */
    db = new_db();
    p = pipeline(NULL);
    t = two_applied(db, "WEBBOT", 0, 2);
    CU_ASSERT_EQUAL(run_ops("rollback", p, id_text(t.x, a, sizeof a), "--dry-run", NULL), 65);
    expect_err("has 2 lines, the order has 3");
    expect_untouched(db, &t, 2);
    db_close(db);

    /* Posted: the document left PS_DOC_*; nothing is touched, not even
     * with --force. */
    db = new_db();
    p = pipeline(NULL);
    struct seed posted = {.ext = "7101",
                          .status = "APPLIED",
                          .doc_id = 900000021,
                          .tkt = "OPS-000021",
                          .applied = now - 60000};
    int64_t pid = add_order(db, &posted);
    add_line(db, pid, 1, "OPS-A", 30000);
    add_inv(db, "OPS-A", 150000, 0);
    add_order_inv(db, pid, 1, 900000021, "OPS-A", "QTY_ON_SO", 30000, 0);
    CU_ASSERT_EQUAL(run_ops("rollback", p, "woo:7101", "--force", NULL), 65);
    expect_err("no longer open in Counterpoint");
    expect_status(db, pid, "APPLIED");
    CU_ASSERT_EQUAL(inv_of(db, "QTY_ON_SO", "OPS-A"), 150000);
    CU_ASSERT_EQUAL(count_of(db, "SELECT COUNT(*) FROM USER_ORDER_INV WHERE STAGING_ID = ?", pid),
                    1);

    /* Adopted: cpbridge did not write it. */
    struct seed adopted = {.ext = "7102",
                           .status = "APPLIED",
                           .doc_id = 900000022,
                           .tkt = "OPS-000022",
                           .adopted = 1,
                           .applied = now - 60000};
    int64_t aid = add_order(db, &adopted);
    add_line(db, aid, 1, "OPS-A", 10000);
    add_doc(db, 900000022, "OPS-000022", 1, "OPS-A", "WEBBOT", now - 70000);
    CU_ASSERT_EQUAL(run_ops("rollback", p, "woo:7102", "--force", NULL), 65);
    expect_err("adopted");
    CU_ASSERT_EQUAL(count_of(db, "SELECT COUNT(*) FROM PS_DOC_LIN WHERE DOC_ID = ?", 900000022), 1);
    expect_status(db, aid, "APPLIED");

    /* Not applied; unknown; usage. */
    int64_t dead = simple_order(db, "7103", "DEAD");
    CU_ASSERT_EQUAL(run_ops("rollback", p, id_text(dead, a, sizeof a), NULL), 65);
    expect_err("it is DEAD, not APPLIED");
    CU_ASSERT_EQUAL(run_ops("rollback", p, "woo:0000", NULL), 66);
    CU_ASSERT_EQUAL(run_ops("rollback", p, NULL), 64);
    CU_ASSERT_EQUAL(run_ops("rollback", p, "1", "--json", NULL), 64);
    db_close(db);
}

/* ---- command lines ------------------------------------------------------------- */

static void test_usage_and_help(void)
{
    const char *verbs[] = {"health", "status", "orders", "dlq", "rollback"};
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        char want[64];
        CU_ASSERT_TRUE(ops_has(verbs[i]));
        CU_ASSERT_EQUAL(run_ops(verbs[i], "--help", NULL), 0);
        snprintf(want, sizeof want, "usage: cpbridge %s", verbs[i]);
        expect_out(want);
    }
    CU_ASSERT_FALSE(ops_has("run"));
    CU_ASSERT_FALSE(ops_has(NULL));
    CU_ASSERT_EQUAL(run_ops("health", NULL), 64);
    CU_ASSERT_EQUAL(run_ops("health", "a.cfg", "b.cfg", NULL), 64);
    CU_ASSERT_EQUAL(run_ops("health", "a.cfg", "--state", "x", NULL), 64);
    expect_err("does not apply");
    CU_ASSERT_EQUAL(run_ops("status", "a.cfg", "--bogus", NULL), 64);
    CU_ASSERT_EQUAL(run_ops("orders", "a.cfg", "frob", NULL), 64);
    CU_ASSERT_EQUAL(run_ops("orders", "a.cfg", "list", "--limit", NULL), 64);
    expect_err("needs a value");
    CU_ASSERT_EQUAL(run_ops("dlq", "a.cfg", "list", "--why", "x", NULL), 64);
    CU_ASSERT_EQUAL(run_ops("status", cpbtest_path("no-such.cfg"), NULL), 66);
    /* A schema that is not there is a configuration matter (78). */
    CU_ASSERT_EQUAL_FATAL(fresh_db(), 0);
    CU_ASSERT_EQUAL(run_ops("status", pipeline(NULL), NULL), 78);
    expect_err("db init");
}

/* ---- suites ----------------------------------------------------------------------- */

static int setup_sqlite(void)
{
    dialect = DB_SQLITE;
    log_set_stream(fopen(cpbtest_path("engine.log"), "w"));
    return 0;
}

static int setup_pg(void)
{
    dialect = DB_POSTGRESQL;
    return 0;
}

/* Drop the databases this run made. */
static int teardown_pg(void)
{
    const char *base = getenv("CPB_TEST_PG");
    struct db *admin = NULL;
    struct err e = {0};
    if (base == NULL || n_pg == 0 || db_connect(base, DB_POSTGRESQL, 5000, &admin, &e) != 0) {
        return 0;
    }
    for (unsigned i = 0; i < n_pg; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", pg_names[i]);
        (void)db_exec(admin, sql);
    }
    db_close(admin);
    n_pg = 0;
    return 0;
}

static const struct cpbtest_case cases[] = {
    {"health OK with thresholds from the file", test_health_ok},
    {"health WARNING and CRITICAL by pending", test_health_warning_and_critical_by_pending},
    {"health WARNING and CRITICAL by dead", test_health_critical_by_dead},
    {"health CRITICAL when the database is unreachable",
     test_health_critical_when_database_unreachable},
    {"health UNKNOWN: no file, no schema, no run", test_health_unknown},
    {"health ages and --json", test_health_ages_and_json},
    {"status", test_status},
    {"orders show and list", test_orders_show_and_list},
    {"untrusted text is escaped", test_untrusted_text_is_escaped},
    {"dlq retry", test_dlq_retry},
    {"dlq cancel", test_dlq_cancel},
    {"rollback restores exactly", test_rollback_restores_exactly},
    {"rollback --dry-run changes nothing", test_rollback_dry_run_changes_nothing},
    {"rollback refusals and --force", test_rollback_refusals},
    {"usage and help", test_usage_and_help},
    {NULL, NULL}};

static const struct cpbtest_suite sqlite_suite = {"sqlite", setup_sqlite, NULL, cases};
static const struct cpbtest_suite pg_suite = {"postgresql", setup_pg, teardown_pg, cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *suites[] = {&sqlite_suite, &pg_suite, NULL};
    int rc = cpbtest_run(argc, argv, suites);
    free(R.out);
    free(R.err);
    return rc;
}
