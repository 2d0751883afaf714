/*
 * test_metrics.c — the Prometheus textfile (core/engine/metrics.c): the file is
 * parsed back line by line (every line a comment or `name{labels} value`,
 * label values unescaped and compared with what went in, HELP and TYPE
 * before every family), the figures read from a real database (suites
 * "sqlite" and "postgresql") match the rows set up, the last success is
 * kept from the run log or the previous file when a run fails, and the
 * write is atomic: no temporary file is left, a symlink at the target is
 * replaced and not followed, a failed write leaves the old file whole.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpbtest.h"
#include "engine/host.h"
#include "engine/metrics.h"
#include "engine/schema.h"
#include "engine/staging.h"
#include "services/db.h"
#include "services/log.h"
#include "services/sql.h"

static enum db_dialect dialect;
static char conn[1024];
static char pg_names[16][64];
static unsigned n_pg;
static unsigned dir_no;

/* ---- a database ------------------------------------------------------------- */

static struct db *new_db(void)
{
    struct db *db = NULL;
    struct err e = {0};
    int from = 0;
    int to = 0;
    if (dialect == DB_SQLITE) {
        snprintf(conn, sizeof conn, "%s", cpbtest_sqlite_conn());
    } else {
        const char *base = cpbtest_pg_conn();
        CU_ASSERT_PTR_NOT_NULL_FATAL(base);
        CU_ASSERT_FATAL(n_pg < sizeof pg_names / sizeof pg_names[0]);
        CU_ASSERT_EQUAL_FATAL(db_connect(base, DB_POSTGRESQL, 5000, &db, &e), 0);
        char *name = pg_names[n_pg++];
        char sql[128];
        snprintf(name, 64, "cpbmetrics_%ld_%u", (long)getpid(), n_pg);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
        CU_ASSERT_EQUAL_FATAL(db_exec(db, sql), CPB_OK);
        db_close(db);
        db = NULL;
        const char *d = strstr(base, "Database=");
        CU_ASSERT_PTR_NOT_NULL_FATAL(d);
        const char *end = strchr(d, ';');
        snprintf(conn, sizeof conn, "%.*sDatabase=%s%s", (int)(d - base), base, name,
                 end != NULL ? end : "");
    }
    CU_ASSERT_EQUAL_FATAL(db_connect(conn, dialect, 5000, &db, &e), 0);
    CU_ASSERT_EQUAL_FATAL(schema_init(db, false, 0, &from, &to, &e), 0);
    return db;
}

static void add_order(struct db *db, const char *ext, const char *status, int64_t received)
{
    struct sql_arg a[] = {sql_text(ext), sql_text(status), sql_time(received), sql_time(received),
                          sql_time(received)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO USER_ORDER_STAGING (SOURCE, EXT_ORDER_ID, STATUS,"
                             " PAYLOAD, PAYLOAD_HASH, NEXT_ATTEMPT_DT, RECEIVED_DT, UPDATED_DT)"
                             " VALUES ('woo', ?, ?, '{}', 'h', ?, ?, ?)",
                             a, SQL_NARGS(a), NULL),
                    CPB_OK);
}

static void add_run(struct db *db, const char *run_id, const char *pipeline, int64_t ended,
                    const char *result)
{
    struct sql_arg a[] = {sql_text(run_id), sql_text(pipeline), sql_time(ended - 1000),
                          sql_time(ended), sql_text(result)};
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO USER_SYNC_LOG (RUN_ID, PIPELINE, STARTED_DT, ENDED_DT,"
                             " RESULT) VALUES (?, ?, ?, ?, ?)",
                             a, SQL_NARGS(a), NULL),
                    CPB_OK);
}

/* ---- parsing the exposition format ----------------------------------------- */

struct sample {
    char name[128];
    char labels[8][2][256]; /* name, unescaped value */
    int n_labels;
    double value;
};

struct parsed {
    struct sample s[128];
    int n;
    char help[32][128]; /* families with HELP, in order */
    int n_help;
    char type[32][128];
    int n_type;
    int bad_lines;
};

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* One sample line; returns false when it is not `name{labels} value`. */
static bool parse_sample(const char *line, struct sample *s)
{
    const char *p = line;
    size_t n = 0;
    memset(s, 0, sizeof *s);
    while (name_char(*p, n == 0) && n + 1 < sizeof s->name) {
        s->name[n++] = *p++;
    }
    if (n == 0 || *p != '{') {
        return false;
    }
    p++;
    while (*p != '}') {
        if (s->n_labels == 8) {
            return false;
        }
        char *ln = s->labels[s->n_labels][0];
        char *lv = s->labels[s->n_labels][1];
        n = 0;
        while (name_char(*p, n == 0) && n + 1 < 256) {
            ln[n++] = *p++;
        }
        if (n == 0 || p[0] != '=' || p[1] != '"') {
            return false;
        }
        p += 2;
        n = 0;
        while (*p != '"') {
            char c = *p;
            if (c == '\0' || c == '\n' || n + 1 >= 256) {
                return false;
            }
            if (c == '\\') {
                p++;
                if (*p == 'n') {
                    c = '\n';
                } else if (*p == '\\' || *p == '"') {
                    c = *p;
                } else {
                    return false; /* no other escapes exist */
                }
            }
            lv[n++] = c;
            p++;
        }
        p++;
        s->n_labels++;
        if (*p == ',') {
            p++;
        } else if (*p != '}') {
            return false;
        }
    }
    p++;
    if (*p != ' ') {
        return false;
    }
    p++;
    char *end = NULL;
    s->value = strtod(p, &end);
    return end != p && *end == '\0';
}

static void parse_file(const char *path, struct parsed *out)
{
    char *text = cpbtest_slurp(path, NULL);
    memset(out, 0, sizeof *out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    size_t len = strlen(text);
    CU_ASSERT(len > 0 && text[len - 1] == '\n');
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char fam[128];
        if (strncmp(line, "# HELP ", 7) == 0 && sscanf(line + 7, "%127s", fam) == 1 &&
            out->n_help < 32) {
            snprintf(out->help[out->n_help++], 128, "%s", fam);
        } else if (strncmp(line, "# TYPE ", 7) == 0 && sscanf(line + 7, "%127s", fam) == 1 &&
                   out->n_type < 32) {
            CU_ASSERT_PTR_NOT_NULL(strstr(line, " gauge"));
            snprintf(out->type[out->n_type++], 128, "%s", fam);
        } else if (line[0] == '#') {
            continue;
        } else if (out->n < 128 && parse_sample(line, &out->s[out->n])) {
            /* The family was announced before its first sample. */
            bool help = false;
            bool type = false;
            for (int i = 0; i < out->n_help; i++) {
                help = help || strcmp(out->help[i], out->s[out->n].name) == 0;
            }
            for (int i = 0; i < out->n_type; i++) {
                type = type || strcmp(out->type[i], out->s[out->n].name) == 0;
            }
            if (!help || !type) {
                fprintf(stderr, "no HELP/TYPE before: %s\n", line);
            }
            CU_ASSERT(help && type);
            out->n++;
        } else {
            fprintf(stderr, "bad line: %s\n", line);
            out->bad_lines++;
        }
    }
    free(text);
}

static const char *label(const struct sample *s, const char *name)
{
    for (int i = 0; i < s->n_labels; i++) {
        if (strcmp(s->labels[i][0], name) == 0) {
            return s->labels[i][1];
        }
    }
    return NULL;
}

/* The sample `name` with label k = v (k may be NULL); NULL when absent. */
static const struct sample *find(const struct parsed *p, const char *name, const char *k,
                                 const char *v)
{
    for (int i = 0; i < p->n; i++) {
        const struct sample *s = &p->s[i];
        if (strcmp(s->name, name) != 0) {
            continue;
        }
        if (k == NULL || (label(s, k) != NULL && strcmp(label(s, k), v) == 0)) {
            return s;
        }
    }
    return NULL;
}

static double value_of(const struct parsed *p, const char *name, const char *k, const char *v)
{
    const struct sample *s = find(p, name, k, v);
    if (s == NULL) {
        fprintf(stderr, "missing sample %s{%s=%s}\n", name, k != NULL ? k : "", v != NULL ? v : "");
        CU_FAIL("sample missing");
        return -1;
    }
    return s->value;
}

/* A new empty directory for one test's file. */
static const char *new_dir(void)
{
    static char dir[1024];
    char name[32];
    snprintf(name, sizeof name, "m%u", ++dir_no);
    snprintf(dir, sizeof dir, "%s", cpbtest_path(name));
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0755), 0);
    return dir;
}

/* Entries of dir other than . and .. */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (d == NULL) {
        return -1;
    }
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* ---- tests ------------------------------------------------------------------ */

static const struct metrics_stage stages[] = {
    {"samples \"woo\" \\x", "source", 1, 0.5, NULL},
    {"create-order", "step", 4, 1.25, NULL},
    {"odd\nid", "after-commit", 2, 0.001, NULL},
};

static void test_format_and_figures(void)
{
    struct db *db = new_db();
    struct parsed p;
    struct err e = {0};
    int64_t now = host_now_ms();
    const struct run_counts counts = {3, 4, 2, 1, 1, 0, 2, 1, 0, 0, 0, 0, 0};
    const struct metrics_run run = {"ops-test", 0, now - 2500, 2500, &counts, 1, stages, 3};
    add_order(db, "1", "PENDING", now - 10 * 60 * 1000);
    add_order(db, "2", "PENDING", now - 60 * 1000);
    add_order(db, "3", "DEAD", now);
    add_order(db, "4", "APPLIED", now);
    add_order(db, "5", "ROLLED_BACK", now);
    char path[1024];
    snprintf(path, sizeof path, "%s/cpbridge.prom", new_dir());

    CU_ASSERT_EQUAL_FATAL(metrics_write(path, db, &run, &e), 0);
    parse_file(path, &p);
    CU_ASSERT_EQUAL(p.bad_lines, 0);
    CU_ASSERT(p.n > 20);
    /* Every sample carries the pipeline label. */
    for (int i = 0; i < p.n; i++) {
        CU_ASSERT(label(&p.s[i], "pipeline") != NULL &&
                  strcmp(label(&p.s[i], "pipeline"), "ops-test") == 0);
    }
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_last_run_timestamp_seconds", NULL, NULL),
                           (double)(now - 2500) / 1000.0, 0.0011);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_last_run_duration_seconds", NULL, NULL), 2.5,
                           1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_last_run_exit_code", NULL, NULL), 0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_last_success_timestamp_seconds", NULL, NULL),
                           (double)now / 1000.0, 0.0011);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_run_orders", "result", "staged"), 3, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_run_orders", "result", "applied"), 2, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_run_orders", "result", "retry"), 1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_run_orders", "result", "invalid"), 1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_run_orders", "result", "dead"), 0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_run_orders", "result", "after_done"), 2, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_run_orders", "result", "after_failed"), 1, 1e-9);
    /* Label values come back exactly after unescaping. */
    const struct sample *s = find(&p, "cpbridge_stage_calls", "stage", "samples \"woo\" \\x");
    CU_ASSERT_PTR_NOT_NULL(s);
    if (s != NULL) {
        CU_ASSERT_DOUBLE_EQUAL(s->value, 1, 1e-9);
        CU_ASSERT(label(s, "kind") != NULL && strcmp(label(s, "kind"), "source") == 0);
    }
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_stage_calls", "stage", "odd\nid"), 2, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_stage_seconds", "stage", "create-order"), 1.25,
                           1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_stage_seconds", "stage", "odd\nid"), 0.001, 1e-9);
    /* The business gauges, from the database. */
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_orders", "state", "PENDING"), 2, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_orders", "state", "DEAD"), 1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_orders", "state", "APPLIED"), 1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_orders", "state", "INVALID"), 0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_orders", "state", "CANCELLED"), 0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_orders", "state", "ROLLED_BACK"), 1, 1e-9);
    double age = value_of(&p, "cpbridge_oldest_pending_age_seconds", NULL, NULL);
    CU_ASSERT(age >= 600.0 && age < 660.0);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_notify_failures", NULL, NULL), 1, 1e-9);
    db_close(db);
}

static void test_last_success_kept_when_a_run_fails(void)
{
    struct db *db = new_db();
    struct parsed p;
    struct err e = {0};
    int64_t now = host_now_ms();
    int64_t ok_end = now - 3600 * 1000 + 250;
    add_run(db, "r-ok", "ops-test", ok_end, "OK");
    add_run(db, "r-other", "another", now - 1000, "OK");
    const struct metrics_run failed = {"ops-test", 69, now - 100, 100, NULL, 0, NULL, 0};
    char path[1024];
    snprintf(path, sizeof path, "%s/cpbridge.prom", new_dir());

    /* Failed with the database readable: the log's last success for this
     * pipeline (not another pipeline's). */
    CU_ASSERT_EQUAL_FATAL(metrics_write(path, db, &failed, &e), 0);
    parse_file(path, &p);
    CU_ASSERT_EQUAL(p.bad_lines, 0);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_last_success_timestamp_seconds", NULL, NULL),
                           (double)ok_end / 1000.0, 0.0011);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_last_run_exit_code", NULL, NULL), 69, 1e-9);
    /* No counts: the run's orders are zeros, never missing. */
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_run_orders", "result", "applied"), 0, 1e-9);
    CU_ASSERT_PTR_NULL(find(&p, "cpbridge_stage_seconds", NULL, NULL));

    /* Failed without a database: the previous file's value is kept. */
    CU_ASSERT_EQUAL_FATAL(metrics_write(path, NULL, &failed, &e), 0);
    parse_file(path, &p);
    CU_ASSERT_EQUAL(p.bad_lines, 0);
    CU_ASSERT_DOUBLE_EQUAL(value_of(&p, "cpbridge_last_success_timestamp_seconds", NULL, NULL),
                           (double)ok_end / 1000.0, 0.0011);
    /* Without a database there are no database figures. */
    CU_ASSERT_PTR_NULL(find(&p, "cpbridge_orders", NULL, NULL));
    CU_ASSERT_PTR_NULL(find(&p, "cpbridge_oldest_pending_age_seconds", NULL, NULL));

    /* Nothing known: the series is left out rather than made up. */
    char fresh[1024];
    snprintf(fresh, sizeof fresh, "%s/cpbridge.prom", new_dir());
    CU_ASSERT_EQUAL_FATAL(metrics_write(fresh, NULL, &failed, &e), 0);
    parse_file(fresh, &p);
    CU_ASSERT_PTR_NULL(find(&p, "cpbridge_last_success_timestamp_seconds", NULL, NULL));
    db_close(db);
}

static void test_snapshot(void)
{
    struct db *db = new_db();
    struct metrics_snapshot s;
    struct err e = {0};
    int64_t now = host_now_ms();
    CU_ASSERT_EQUAL(metrics_snapshot(db, "ops-test", now, &s, &e), 0);
    CU_ASSERT_EQUAL(s.total, 0);
    CU_ASSERT_FALSE(s.has_pending);
    CU_ASSERT_FALSE(s.has_success);
    CU_ASSERT_FALSE(s.has_run);
    add_order(db, "1", "PENDING", now - 5000);
    add_order(db, "2", "PENDING", now + 60000); /* not due yet (NEXT_ATTEMPT_DT) */
    add_order(db, "3", "INVALID", now);
    add_run(db, "r1", "ops-test", now - 2000, "ATTENTION");
    CU_ASSERT_EQUAL(sql_exec(db,
                             "INSERT INTO USER_SYNC_LOG (RUN_ID, PIPELINE, STARTED_DT, RESULT)"
                             " VALUES ('r2', 'ops-test', ?, 'RUNNING')",
                             (struct sql_arg[]){sql_time(now - 500)}, 1, NULL),
                    CPB_OK);
    CU_ASSERT_EQUAL(metrics_snapshot(db, "ops-test", now, &s, &e), 0);
    CU_ASSERT_EQUAL(s.total, 3);
    CU_ASSERT_EQUAL(s.by_state[metrics_state_index("PENDING")], 2);
    CU_ASSERT_EQUAL(s.by_state[metrics_state_index("INVALID")], 1);
    CU_ASSERT_EQUAL(s.pending_due, 1);
    CU_ASSERT_TRUE(s.has_pending);
    CU_ASSERT_EQUAL(s.oldest_pending_ms, now - 5000);
    CU_ASSERT_TRUE(s.has_success); /* ATTENTION counts as a success */
    CU_ASSERT_EQUAL(s.last_success_ms, now - 2000);
    CU_ASSERT_TRUE(s.has_run);
    CU_ASSERT_STRING_EQUAL(s.last_result, "RUNNING");
    CU_ASSERT_FALSE(s.last_run_ended);
    CU_ASSERT_EQUAL(metrics_state_index("NOPE"), -1);
    db_close(db);
}

static void test_atomic_replace(void)
{
    struct err e = {0};
    struct parsed p;
    int64_t now = host_now_ms();
    const struct metrics_run run = {"ops-test", 1, now, 10, NULL, 0, stages, 3};
    const char *dir = new_dir();
    char path[1024];
    char victim[1024];
    snprintf(path, sizeof path, "%s/cpbridge.prom", dir);
    snprintf(victim, sizeof victim, "%s/victim.txt", dir);

    /* A long old file is replaced whole, never partly overwritten. */
    char *big = malloc(200000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, 'x', 199999);
    big[199999] = '\0';
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(path, big), 0);
    free(big);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(metrics_write(path, NULL, &run, &e), 0);
    }
    parse_file(path, &p);
    CU_ASSERT_EQUAL(p.bad_lines, 0);
    /* exit 1 (attention) is a success too. */
    CU_ASSERT_PTR_NOT_NULL(find(&p, "cpbridge_last_success_timestamp_seconds", NULL, NULL));
    /* Only the file itself: no temporary file left behind. */
    CU_ASSERT_EQUAL(entries(dir), 1);
    struct stat st;
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0644);

    /* A symlink at the target is replaced, and what it pointed at is not
     * written. */
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(victim, "keep me\n"), 0);
    CU_ASSERT_EQUAL_FATAL(unlink(path), 0);
    CU_ASSERT_EQUAL_FATAL(symlink(victim, path), 0);
    CU_ASSERT_EQUAL(metrics_write(path, NULL, &run, &e), 0);
    CU_ASSERT_EQUAL(lstat(path, &st), 0);
    CU_ASSERT_TRUE(S_ISREG(st.st_mode));
    char *kept = cpbtest_slurp(victim, NULL);
    CU_ASSERT(kept != NULL && strcmp(kept, "keep me\n") == 0);
    free(kept);
    CU_ASSERT_EQUAL(entries(dir), 2);

    /* A directory that does not exist: an I/O error naming the file, and
     * nothing created. */
    char missing[1024];
    snprintf(missing, sizeof missing, "%s/no/such/dir/cpbridge.prom", dir);
    CU_ASSERT_EQUAL(metrics_write(missing, NULL, &run, &e), -1);
    CU_ASSERT_EQUAL(e.code, CPB_EXIT_IOERR);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "cpbridge.prom"));

    /* A read-only directory (skipped as root, who may write anyway): the
     * old file stays whole. */
    if (geteuid() != 0) {
        struct err e2 = {0};
        CU_ASSERT_EQUAL_FATAL(chmod(dir, 0555), 0);
        CU_ASSERT_EQUAL(metrics_write(path, NULL, &run, &e2), -1);
        CU_ASSERT_EQUAL(e2.code, CPB_EXIT_IOERR);
        CU_ASSERT_EQUAL(chmod(dir, 0755), 0);
        parse_file(path, &p);
        CU_ASSERT_EQUAL(p.bad_lines, 0);
        CU_ASSERT(p.n > 5);
    }
    /* A relative path works too (the current directory). */
    char cwd[1024];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof cwd));
    CU_ASSERT_EQUAL_FATAL(chdir(dir), 0);
    CU_ASSERT_EQUAL(metrics_write("rel.prom", NULL, &run, &e), 0);
    CU_ASSERT_EQUAL(chdir(cwd), 0);
    CU_ASSERT_EQUAL(entries(dir), 3);
}

/* ---- suites ----------------------------------------------------------------- */

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

static const struct cpbtest_case db_cases[] = {
    {"format parses back, figures from the database", test_format_and_figures},
    {"last success kept when a run fails", test_last_success_kept_when_a_run_fails},
    {"snapshot figures", test_snapshot},
    {NULL, NULL}};

static const struct cpbtest_case file_cases[] = {{"atomic replace", test_atomic_replace},
                                                 {NULL, NULL}};

static const struct cpbtest_suite sqlite_suite = {"sqlite", setup_sqlite, NULL, db_cases};
static const struct cpbtest_suite pg_suite = {"postgresql", setup_pg, teardown_pg, db_cases};
static const struct cpbtest_suite file_suite = {"file", NULL, NULL, file_cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *suites[] = {&sqlite_suite, &pg_suite, &file_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
