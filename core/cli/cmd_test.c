/*
 * cmd_test.c — `cpbridge test PIPELINE CASES_DIR`: pipeline tests from order
 * fixtures, for integrators. Each case is CASES_DIR/NAME.json (an order as
 * the store sends it, or a saved API page) with CASES_DIR/NAME.expect.json
 * (the expected outcome). Each case runs through the pipeline as `run` runs
 * it, against a throwaway copy of the pipeline's database (engine/sandbox.c),
 * with the pipeline's sources replaced by source-file reading the case file
 * and without its after-commit steps and notifiers (they reach the outside
 * world). Then the copy is read: the staged orders' states and reason codes,
 * the PS_DOC_LIN rows of their documents and the IM_INV quantities changed,
 * and compared with the expectation. Results are TAP on stdout
 * (docs/CLI.md). Every byte of a case file is untrusted: a bad one is a
 * "not ok" naming the file, and the exit code says so (65).
 */
#include "cli/cmd_test.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/ops_common.h"
#include "cli/report.h"
#include "engine/config.h"
#include "engine/pipeline.h"
#include "engine/runner.h"
#include "engine/sandbox.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/text.h"
#include "services/db.h"
#include "services/log.h"
#include "services/sql.h"

static const char usage_test[] =
    "usage: cpbridge test PIPELINE CASES_DIR [--source ID] [--keep] [--junit FILE]\n"
    "                     [--log-level LEVEL]\n"
    "\n"
    "Runs each case of CASES_DIR through the pipeline, each against a throwaway\n"
    "copy of the pipeline's database (the real one is only read), and prints TAP.\n"
    "A case is NAME.json (an order as the store sends it, or a saved API page)\n"
    "and NAME.expect.json, the expected outcome:\n"
    "  {\"status\": \"APPLIED\", \"lines\": [{\"ITEM_NO\": \"...\", \"QTY_SOLD\": 2}],\n"
    "   \"inventory\": [{\"ITEM_NO\": \"...\", \"LOC_ID\": \"...\", \"QTY_ON_SO\": 2}]}\n"
    "  {\"status\": \"INVALID\", \"reason\": \"item.unknown\"}\n"
    "The pipeline's sources are replaced by source-file reading the case file;\n"
    "after-commit steps and notifiers do not run. SQLite and PostgreSQL only.\n"
    "\n"
    "  --source ID        stage the cases as source ID (default: the id of the\n"
    "                     pipeline's first source stage)\n"
    "  --keep             keep each case's copy of the database and print where\n"
    "  --junit FILE       also write the results as JUnit XML to FILE\n"
    "  --log-level LEVEL  the runs' log on stderr: error (default), warn, info, debug\n"
    "\n"
    "Exit: 0 every case passed; 1 a case did not; 64 usage; 65 a case file is bad\n"
    "(its test is \"not ok\", naming the file); 66 PIPELINE or CASES_DIR missing,\n"
    "or no cases; 69 database unreachable; 74 temporary files or the --junit file;\n"
    "78 configuration error (SQL Server is not supported).\n";

/* Case files larger than this are refused: a case is one page of orders. */
#define TEST_MAX_FILE (64L * 1024 * 1024)

/* The PS_DOC_LIN columns an expectation may name (fixed: only these reach
 * SQL), and whether each compares as a decimal. */
static const char *const lin_names[] = {
    "LIN_SEQ_NO",   "LIN_TYP",      "ITEM_NO",    "DESCR",      "QTY_SOLD",
    "QTY_UNIT",     "SELL_UNIT",    "PRC",        "EXT_PRC",    "GROSS_EXT_PRC",
    "CALC_EXT_PRC", "USR_ENTD_PRC", "STK_LOC_ID", "PRC_LOC_ID", "CATEG_COD",
    "IS_TXBL",      "STR_ID",       "STA_ID",     "TKT_NO"};
static const bool lin_decimal[] = {true,  false, false, false, true,  false, false,
                                   true,  true,  true,  true,  false, false, false,
                                   false, false, false, false, false};
#define N_LIN (sizeof lin_names / sizeof lin_names[0])
_Static_assert(sizeof lin_names / sizeof lin_names[0] == sizeof lin_decimal / sizeof lin_decimal[0],
               "one flag per PS_DOC_LIN column");

/* The IM_INV quantity columns compared before and after each case. */
static const char *const inv_names[] = {"QTY_ON_HND", "QTY_COMMIT", "QTY_ON_ORD", "QTY_ON_LWY",
                                        "QTY_ON_SO",  "QTY_ON_BO",  "QTY_ON_PO"};
#define N_INV (sizeof inv_names / sizeof inv_names[0])

static const char *const expect_keys[] = {"status", "reason", "lines", "inventory"};
static const char *const statuses[] = {"APPLIED", "INVALID", "DEAD"};

struct tcase {
    char *name;
    char *order;  /* NAME.json, or NULL */
    char *expect; /* NAME.expect.json, or NULL */
};

struct inv_row {
    char *item, *loc;
    int64_t q[N_INV];
};

struct inv {
    struct inv_row *v;
    size_t n, cap;
};

/* One IM_INV change: after minus before (0 where a row is missing). */
struct delta {
    const char *item, *loc; /* borrowed from a struct inv */
    size_t col;
    int64_t d;
    bool expected;
};

/* A case's result, for --junit. */
struct result {
    char *name; /* cleaned */
    char *diag; /* its diagnostics, "#   " lines */
    bool failed, bad;
    double seconds;
};

struct tst {
    const char *path;      /* PIPELINE, as given */
    const char *dir;       /* CASES_DIR */
    const char *source_id; /* --source, or the pipeline's first source's id */
    char *source_owned;
    bool keep;
    char tmp[4096]; /* the private temporary directory */
    char lock[4200];
    config_t lc; /* holds the options of the replacement source */
    config_setting_t *path_setting;
    struct config_stage src;
    struct tcase *cases;
    size_t n, cap;
    struct buf diag;     /* the current case's diagnostics */
    bool failed;         /* the current case */
    const char *junit;   /* --junit FILE, or NULL */
    struct result *done; /* the cases run so far, for --junit */
    size_t ndone;
    char bailed[1024]; /* the Bail out! message, or "" */
};

static void diag(struct tst *t, const char *fmt, ...) CPB_PRINTF(2, 3);
static void diag(struct tst *t, const char *fmt, ...)
{
    va_list ap;
    struct buf line = BUF_INIT;
    char clean[8192]; /* one line: control bytes (a newline in a file name) escaped */
    va_start(ap, fmt);
    buf_vaddf(&line, fmt, ap);
    va_end(ap);
    ops_clean(line.oom ? "out of memory" : buf_str(&line), clean, sizeof clean);
    buf_addf(&t->diag, "#   %s\n", clean);
    buf_free(&line);
    t->failed = true;
}

/* ---- the cases ------------------------------------------------------------ */

static struct tcase *case_get(struct tst *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strlen(t->cases[i].name) == len && strncmp(t->cases[i].name, name, len) == 0) {
            return &t->cases[i];
        }
    }
    if (t->n == t->cap) {
        size_t ncap = t->cap == 0 ? 16 : t->cap * 2;
        struct tcase *grown = realloc(t->cases, ncap * sizeof *grown);
        if (grown == NULL) {
            return NULL;
        }
        t->cases = grown;
        t->cap = ncap;
    }
    struct tcase *c = &t->cases[t->n];
    memset(c, 0, sizeof *c);
    c->name = strndup(name, len);
    if (c->name == NULL) {
        return NULL;
    }
    t->n++;
    return c;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct tcase *)a)->name, ((const struct tcase *)b)->name);
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len > n && strcmp(s + len - n, suffix) == 0;
}

/* Pair NAME.json with NAME.expect.json, in name order. */
static int collect(struct tst *t, struct err *e)
{
    DIR *d = opendir(t->dir);
    struct dirent *ent;
    int rc = 0;
    if (d == NULL) {
        return err_set(e, CPB_EXIT_NOINPUT, "cannot read the cases directory %s: %s", t->dir,
                       strerror(errno));
    }
    while (rc == 0 && (ent = readdir(d)) != NULL) {
        size_t len = strlen(ent->d_name);
        bool expect = ends_with(ent->d_name, len, ".expect.json");
        struct buf path = BUF_INIT;
        struct stat sb;
        if (ent->d_name[0] == '.' || !ends_with(ent->d_name, len, ".json")) {
            continue;
        }
        buf_addf(&path, "%s/%s", t->dir, ent->d_name);
        if (path.oom) {
            rc = err_set(e, CPB_EXIT_SOFTWARE, "out of memory");
        } else if (stat(buf_str(&path), &sb) == 0 && S_ISREG(sb.st_mode)) {
            struct tcase *c = case_get(t, ent->d_name, len - (expect ? 12 : 5));
            if (c == NULL) {
                rc = err_set(e, CPB_EXIT_SOFTWARE, "out of memory");
            } else if (expect) {
                c->expect = buf_take(&path);
            } else {
                c->order = buf_take(&path);
            }
        }
        buf_free(&path);
    }
    closedir(d);
    if (rc == 0 && t->n == 0) {
        rc =
            err_set(e, CPB_EXIT_NOINPUT,
                    "no cases in %s: a case is NAME.json (the order) and NAME.expect.json", t->dir);
    }
    if (rc == 0) {
        qsort(t->cases, t->n, sizeof *t->cases, by_name);
    }
    return rc;
}

/* Read a case file: *doc new, or a message in why[n] naming the file. */
static int load_json(const char *path, json_t **doc, char *why, size_t n)
{
    struct stat sb;
    json_error_t jerr;
    *doc = NULL;
    if (stat(path, &sb) != 0) {
        snprintf(why, n, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (sb.st_size > TEST_MAX_FILE) {
        snprintf(why, n, "%s: larger than %ld bytes", path, TEST_MAX_FILE);
        return -1;
    }
    *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (*doc == NULL) {
        snprintf(why, n, "%s: not valid JSON at line %d, column %d: %s", path, jerr.line,
                 jerr.column, jerr.text);
        return -1;
    }
    return 0;
}

/* A decimal expectation to ten-thousandths: 0, 1 for null, -1 when it is
 * neither an integer, a decimal string nor null. */
static int want_decimal(const json_t *v, int64_t *out)
{
    if (json_is_null(v)) {
        return 1;
    }
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i > 90000000000LL || i < -90000000000LL) {
            return -1;
        }
        *out = (int64_t)i * TEXT_SCALE;
        return 0;
    }
    if (json_is_string(v) && text_parse_decimal(json_string_value(v), out) == 0) {
        return 0;
    }
    return -1;
}

static int name_index(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(name, names[i]) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* "unknown key 'X' (did you mean 'Y'?)" into why[n]. */
static void unknown_key(const char *file, const char *where, const char *key,
                        const char *const *names, size_t n, char *why, size_t wn)
{
    char clean[120];
    int s = text_suggest(key, names, n);
    ops_clean(key, clean, sizeof clean);
    snprintf(why, wn, "%s: %s: unknown key '%s'%s%s%s", file, where, clean,
             s >= 0 ? " (did you mean '" : "", s >= 0 ? names[s] : "", s >= 0 ? "'?)" : "");
}

/* Check one row of "lines" or "inventory". */
static int check_row(const char *file, const char *where, const json_t *row, bool inventory,
                     char *why, size_t n)
{
    const char *key;
    const json_t *v;
    int64_t dec;
    size_t cols = 0;
    if (!json_is_object(row)) {
        snprintf(why, n, "%s: %s is not an object", file, where);
        return -1;
    }
    json_object_foreach((json_t *)row, key, v)
    {
        bool id = inventory && (strcmp(key, "ITEM_NO") == 0 || strcmp(key, "LOC_ID") == 0);
        int i = inventory ? name_index(key, inv_names, N_INV) : name_index(key, lin_names, N_LIN);
        if (id) {
            if (!json_is_string(v)) {
                snprintf(why, n, "%s: %s: %s is not a string", file, where, key);
                return -1;
            }
            continue;
        }
        if (i < 0) {
            if (inventory) {
                static const char *const all[N_INV + 2] = {"ITEM_NO",    "LOC_ID",     "QTY_ON_HND",
                                                           "QTY_COMMIT", "QTY_ON_ORD", "QTY_ON_LWY",
                                                           "QTY_ON_SO",  "QTY_ON_BO",  "QTY_ON_PO"};
                unknown_key(file, where, key, all, N_INV + 2, why, n);
            } else {
                unknown_key(file, where, key, lin_names, N_LIN, why, n);
            }
            return -1;
        }
        cols++;
        bool decimal = inventory || lin_decimal[i];
        if (decimal && (want_decimal(v, &dec) < 0 || (inventory && json_is_null(v)))) {
            snprintf(why, n,
                     "%s: %s: %s wants an integer or a decimal string such as \"19.99\" (JSON"
                     " numbers with a fraction are not exact)",
                     file, where, key);
            return -1;
        }
        if (!decimal && !json_is_string(v) && !json_is_null(v)) {
            snprintf(why, n, "%s: %s: %s wants a string or null", file, where, key);
            return -1;
        }
    }
    if (inventory && (json_object_get(row, "ITEM_NO") == NULL ||
                      json_object_get(row, "LOC_ID") == NULL || cols == 0)) {
        snprintf(why, n, "%s: %s wants ITEM_NO, LOC_ID and at least one quantity column's change",
                 file, where);
        return -1;
    }
    return 0;
}

static int check_rows(const char *file, const char *where, const json_t *arr, bool inventory,
                      char *why, size_t n)
{
    size_t i;
    const json_t *row;
    char at[160];
    if (!json_is_array(arr)) {
        snprintf(why, n, "%s: %s is not a list", file, where);
        return -1;
    }
    json_array_foreach((json_t *)arr, i, row)
    {
        snprintf(at, sizeof at, "%s[%zu]", where, i);
        if (check_row(file, at, row, inventory, why, n) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Check an expectation file's shape; *orders (new) is its list of per-order
 * expectations (an object is a list of one). */
static int check_expect(const char *file, json_t *doc, json_t **orders, char *why, size_t n)
{
    size_t k;
    json_t *one;
    *orders = json_is_object(doc) ? json_pack("[O]", doc) : json_incref(doc);
    if (!json_is_array(*orders) || json_array_size(*orders) == 0) {
        snprintf(why, n, "%s: wants an object (one order's outcome) or a non-empty list of them",
                 file);
        return -1;
    }
    json_array_foreach(*orders, k, one)
    {
        char where[64];
        const char *key;
        json_t *v;
        snprintf(where, sizeof where, "order %zu", k + 1);
        if (!json_is_object(one)) {
            snprintf(why, n, "%s: %s is not an object", file, where);
            return -1;
        }
        json_object_foreach(one, key, v)
        {
            if (name_index(key, expect_keys, 4) < 0) {
                unknown_key(file, where, key, expect_keys, 4, why, n);
                return -1;
            }
        }
        const char *status = json_string_value(json_object_get(one, "status"));
        if (status == NULL || name_index(status, statuses, 3) < 0) {
            snprintf(why, n, "%s: %s: \"status\" wants \"APPLIED\", \"INVALID\" or \"DEAD\"", file,
                     where);
            return -1;
        }
        json_t *reason = json_object_get(one, "reason");
        bool applied = strcmp(status, "APPLIED") == 0;
        if (applied ? reason != NULL : !json_is_string(reason)) {
            snprintf(why, n, "%s: %s: %s", file, where,
                     applied ? "\"reason\" is only for an order held (INVALID or DEAD)"
                             : "\"reason\" wants the reason code, a string");
            return -1;
        }
        json_t *lines = json_object_get(one, "lines");
        snprintf(where, sizeof where, "order %zu lines", k + 1);
        if (lines != NULL && check_rows(file, where, lines, false, why, n) != 0) {
            return -1;
        }
        json_t *inv = json_object_get(one, "inventory");
        snprintf(where, sizeof where, "order %zu inventory", k + 1);
        if (inv != NULL && check_rows(file, where, inv, true, why, n) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- the pipeline, made for a case ------------------------------------------- */

/* Open the pipeline for the case file `order` (borrowed): every stage but
 * the steps (sources, after-commit steps, notifiers) removed, source-file
 * reading `order` as the source t->source_id in the first source's place,
 * no metrics file, the lock in t->tmp; not initialised (pipeline_init).
 * With `announce`, print what is skipped as TAP comments. *out is new
 * (pipeline_close). Returns 0, or -1 with `e` as pipeline_open's. */
static int prepare(struct tst *t, const char *order, bool announce, struct pipeline **out,
                   struct err *e)
{
    struct pipeline *p = NULL;
    size_t at = 0;
    bool placed = false;
    int rc = -1;
    *out = NULL;
    if (pipeline_open(t->path, &p, e) != 0) {
        goto out;
    }
    if (sandbox_check(&p->cfg->database, e) != 0) {
        goto out;
    }
    for (size_t i = 0; i < p->n;) {
        const struct stage_inst *s = &p->st[i];
        enum cpb_kind kind = s->ls.desc->kind;
        if (kind == CPB_STEP) {
            i++;
            continue;
        }
        if (kind == CPB_SOURCE && t->source_id == NULL) {
            t->source_owned = strdup(s->cs->id);
            t->source_id = t->source_owned;
            if (t->source_id == NULL) {
                err_set(e, CPB_EXIT_SOFTWARE, "out of memory");
                goto out;
            }
        }
        if (kind == CPB_SOURCE && !placed) {
            at = i;
            placed = true;
            t->src.line = s->cs->line;
        }
        if (announce) {
            printf("# skipped %s stage '%s' (%s): %s\n", loader_kind_name(kind), s->cs->id,
                   s->ls.desc->name,
                   kind == CPB_SOURCE ? "the case file is the source"
                                      : "it would reach the outside world");
        }
        pipeline_remove(p, i);
    }
    if (t->source_id == NULL) {
        t->source_id = "test";
    }
    if (config_setting_set_string(t->path_setting, order) != CONFIG_TRUE) {
        err_set(e, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    t->src.id = t->source_id;
    if (pipeline_insert(p, at, &t->src, e) != 0) {
        goto out;
    }
    if (announce) {
        printf("# the cases are staged as source '%s' by source-file\n", t->source_id);
    }
    p->cfg->metrics.file = NULL;     /* the real metrics file is not the test's */
    p->cfg->run.lock_file = t->lock; /* nor is the real run's lock */
    rc = 0;
out:
    if (rc != 0) {
        pipeline_close(p);
        p = NULL;
    }
    *out = p;
    return rc;
}

/* ---- reading the copy ------------------------------------------------------ */

static void inv_free(struct inv *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->v[i].item);
        free(v->v[i].loc);
    }
    free(v->v);
    memset(v, 0, sizeof *v);
}

static int inv_cmp(const void *a, const void *b)
{
    const struct inv_row *x = a;
    const struct inv_row *y = b;
    int c = strcmp(x->item, y->item);
    return c != 0 ? c : strcmp(x->loc, y->loc);
}

/* Every IM_INV row's quantities, sorted by item and location. */
static enum cpb_status inv_read(struct db *db, struct inv *out)
{
    struct buf sql = BUF_INIT;
    struct cpb_stmt *st = NULL;
    enum cpb_status rc = CPB_FAIL;
    buf_adds(&sql, "SELECT ITEM_NO, LOC_ID");
    for (size_t i = 0; i < N_INV; i++) {
        buf_addf(&sql, ", %s", inv_names[i]);
    }
    buf_adds(&sql, " FROM IM_INV");
    if (!sql.oom) {
        rc = sql_query(db, buf_str(&sql), NULL, 0, &st);
    }
    while (rc == CPB_OK && (rc = db_fetch(st)) == CPB_OK) {
        struct rd r = {st, CPB_OK, 0};
        struct inv_row row = {NULL, NULL, {0}};
        ops_rd_raw(&r, &row.item);
        ops_rd_raw(&r, &row.loc);
        for (size_t i = 0; i < N_INV; i++) {
            ops_rd_dec(&r, &row.q[i], NULL);
        }
        rc = r.rc;
        if (rc == CPB_OK && out->n == out->cap) {
            size_t ncap = out->cap == 0 ? 64 : out->cap * 2;
            struct inv_row *grown = realloc(out->v, ncap * sizeof *grown);
            rc = grown != NULL ? CPB_OK : CPB_FAIL;
            if (grown != NULL) {
                out->v = grown;
                out->cap = ncap;
            }
        }
        if (rc != CPB_OK || row.item == NULL || row.loc == NULL) {
            free(row.item);
            free(row.loc);
            rc = rc == CPB_OK ? CPB_FAIL : rc;
            break;
        }
        out->v[out->n++] = row;
    }
    db_finalize(st);
    buf_free(&sql);
    if (rc == CPB_SKIP && out->n > 0) {
        qsort(out->v, out->n, sizeof *out->v, inv_cmp);
    }
    return rc == CPB_SKIP ? CPB_OK : rc;
}

/* The changes from `a` to `b` (both sorted), into *out (new; free()). */
static int inv_diff(const struct inv *a, const struct inv *b, struct delta **out, size_t *n)
{
    size_t i = 0, j = 0, cap = 0;
    *out = NULL;
    *n = 0;
    while (i < a->n || j < b->n) {
        int c = i >= a->n ? 1 : j >= b->n ? -1 : inv_cmp(&a->v[i], &b->v[j]);
        const struct inv_row *x = c <= 0 ? &a->v[i] : NULL;
        const struct inv_row *y = c >= 0 ? &b->v[j] : NULL;
        const struct inv_row *k = y != NULL ? y : x;
        for (size_t col = 0; col < N_INV; col++) {
            int64_t d = (y != NULL ? y->q[col] : 0) - (x != NULL ? x->q[col] : 0);
            if (d == 0) {
                continue;
            }
            if (*n == cap) {
                size_t ncap = cap == 0 ? 16 : cap * 2;
                struct delta *grown = realloc(*out, ncap * sizeof *grown);
                if (grown == NULL) {
                    return -1;
                }
                *out = grown;
                cap = ncap;
            }
            (*out)[(*n)++] = (struct delta){k->item, k->loc, col, d, false};
        }
        i += c <= 0;
        j += c >= 0;
    }
    return 0;
}

/* A staged order of the case, cleaned for printing. */
struct got {
    char ext[200];
    char status[64];
    char code[200];
    char msg[600];
    int64_t doc;
};

static const char staged_sql[] =
    "SELECT EXT_ORDER_ID, STATUS, LAST_ERROR_CODE, LAST_ERROR, CP_DOC_ID"
    " FROM USER_ORDER_STAGING ORDER BY STAGING_ID";

static enum cpb_status read_staged(struct db *db, struct got **out, size_t *n)
{
    struct cpb_stmt *st = NULL;
    size_t cap = 0;
    enum cpb_status rc = sql_query(db, staged_sql, NULL, 0, &st);
    *out = NULL;
    *n = 0;
    while (rc == CPB_OK && (rc = db_fetch(st)) == CPB_OK) {
        if (*n == cap) {
            size_t ncap = cap == 0 ? 8 : cap * 2;
            struct got *grown = realloc(*out, ncap * sizeof *grown);
            if (grown == NULL) {
                rc = CPB_FAIL;
                break;
            }
            *out = grown;
            cap = ncap;
        }
        struct got *g = &(*out)[*n];
        struct rd r = {st, CPB_OK, 0};
        bool null_doc = false;
        ops_rd_text(&r, g->ext, sizeof g->ext, NULL);
        ops_rd_text(&r, g->status, sizeof g->status, NULL);
        ops_rd_text(&r, g->code, sizeof g->code, NULL);
        ops_rd_text(&r, g->msg, sizeof g->msg, NULL);
        ops_rd_int(&r, &g->doc, &null_doc);
        if (null_doc) {
            g->doc = 0;
        }
        rc = r.rc;
        (*n)++;
    }
    db_finalize(st);
    return rc == CPB_SKIP ? CPB_OK : rc;
}

/* ---- comparing ------------------------------------------------------------- */

/* Compare the value `want` (checked by check_row) with column `col` of
 * the current row of `st`. */
static void compare_col(struct tst *t, const char *label, size_t line, struct cpb_stmt *st,
                        size_t col, const json_t *want)
{
    char a[64], b[64];
    if (lin_decimal[col]) {
        int64_t w = 0, v = 0;
        bool is_null = false;
        int wn = want_decimal(want, &w);
        if (db_col_decimal(st, (unsigned)col + 1, &v, &is_null) != CPB_OK) {
            diag(t, "%s line %zu %s: cannot be read as a number", label, line, lin_names[col]);
        } else if ((wn == 1) != is_null || (!is_null && v != w)) {
            diag(t, "%s line %zu %s: expected %s, got %s", label, line, lin_names[col],
                 wn == 1 ? "null" : ops_fmt_dec(w, 4, a, sizeof a),
                 is_null ? "null" : ops_fmt_dec(v, 4, b, sizeof b));
        }
        return;
    }
    const char *v = NULL;
    const char *w = json_string_value(want);
    if (db_col_text(st, (unsigned)col + 1, &v) != CPB_OK) {
        diag(t, "%s line %zu %s: cannot be read", label, line, lin_names[col]);
    } else if ((w == NULL) != (v == NULL) || (w != NULL && strcmp(w, v) != 0)) {
        char wc[300], vc[300];
        ops_clean(w, wc, sizeof wc);
        ops_clean(v, vc, sizeof vc);
        diag(t, "%s line %zu %s: expected %s%s%s, got %s%s%s", label, line, lin_names[col],
             w != NULL ? "\"" : "", w != NULL ? wc : "null", w != NULL ? "\"" : "",
             v != NULL ? "\"" : "", v != NULL ? vc : "null", v != NULL ? "\"" : "");
    }
}

/* A PS_DOC_LIN row beyond the expected ones, shown so that the case can
 * be completed. */
static void unexpected_line(struct tst *t, const char *label, size_t line, struct cpb_stmt *st)
{
    static const size_t show[] = {2, 4, 7}; /* ITEM_NO, QTY_SOLD, PRC */
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < sizeof show / sizeof show[0]; i++) {
        const char *v = NULL;
        char clean[120];
        if (db_col_text(st, (unsigned)show[i] + 1, &v) == CPB_OK) {
            ops_clean(v, clean, sizeof clean);
            buf_addf(&b, "%s%s %s", i > 0 ? ", " : "", lin_names[show[i]],
                     v != NULL ? clean : "null");
        }
    }
    diag(t, "%s line %zu not expected: %s", label, line, b.oom ? "" : buf_str(&b));
    buf_free(&b);
}

/* The document's PS_DOC_LIN rows against "lines". Returns 0 or -1 (the
 * database failed; the message is in the diagnostics). */
static int check_lines(struct tst *t, struct db *db, const char *label, int64_t doc,
                       const json_t *lines)
{
    struct buf sql = BUF_INIT;
    struct cpb_stmt *st = NULL;
    size_t got = 0;
    enum cpb_status rc = CPB_FAIL;
    buf_adds(&sql, "SELECT ");
    for (size_t i = 0; i < N_LIN; i++) {
        buf_addf(&sql, "%s%s", i > 0 ? ", " : "", lin_names[i]);
    }
    buf_adds(&sql, " FROM PS_DOC_LIN WHERE DOC_ID = ? ORDER BY LIN_SEQ_NO");
    struct sql_arg a[] = {sql_int(doc)};
    if (!sql.oom) {
        rc = sql_query(db, buf_str(&sql), a, SQL_NARGS(a), &st);
    }
    while (rc == CPB_OK && (rc = db_fetch(st)) == CPB_OK) {
        const json_t *want = json_array_get(lines, got);
        const char *key;
        const json_t *v;
        got++;
        if (want == NULL) {
            unexpected_line(t, label, got, st);
        }
        json_object_foreach((json_t *)want, key, v)
        {
            compare_col(t, label, got, st, (size_t)name_index(key, lin_names, N_LIN), v);
        }
    }
    db_finalize(st);
    buf_free(&sql);
    if (rc != CPB_SKIP) {
        diag(t, "reading PS_DOC_LIN failed: %s", db_last_error(db));
        return -1;
    }
    if (got != json_array_size(lines)) {
        diag(t, "%s: expected %zu PS_DOC_LIN row(s), got %zu", label, json_array_size(lines), got);
    }
    return 0;
}

/* One staged order against its expectation. */
static int check_order(struct tst *t, struct db *db, size_t k, const struct got *g,
                       const json_t *want)
{
    char label[260];
    const char *status = json_string_value(json_object_get(want, "status"));
    const char *reason = json_string_value(json_object_get(want, "reason"));
    const json_t *lines = json_object_get(want, "lines");
    snprintf(label, sizeof label, "order %zu (%s)", k + 1, g->ext);
    if (strcmp(status, g->status) != 0) {
        diag(t, "%s: expected %s, got %s%s%s%s%s%s", label, status, g->status,
             g->code[0] != '\0' ? " (" : "", g->code, g->code[0] != '\0' ? ": " : "",
             g->code[0] != '\0' ? g->msg : "", g->code[0] != '\0' ? ")" : "");
        return 0;
    }
    if (reason != NULL && strcmp(reason, g->code) != 0) {
        char rc[200];
        ops_clean(reason, rc, sizeof rc);
        diag(t, "%s: %s with reason %s, expected reason %s (%s)", label, g->status, g->code, rc,
             g->msg);
    }
    if (lines == NULL) {
        return 0;
    }
    if (g->doc == 0) {
        diag(t, "%s: has no Counterpoint document, expected %zu PS_DOC_LIN row(s)", label,
             json_array_size(lines));
        return 0;
    }
    return check_lines(t, db, label, g->doc, lines);
}

/* Add the expected change `d` of `col` at (item, loc) to *w, summing. */
struct want_inv {
    const char *item, *loc;
    size_t col;
    int64_t d;
};

/* "inventory" of every order of the case (summed) against the changes. */
static int check_inventory(struct tst *t, const json_t *orders, struct delta *dv, size_t dn)
{
    struct want_inv *w = NULL;
    size_t wn = 0, cap = 0, k;
    const json_t *one;
    bool any = false;
    int rc = 0;
    json_array_foreach((json_t *)orders, k, one)
    {
        const json_t *inv = json_object_get(one, "inventory");
        size_t i;
        const json_t *row;
        any = any || inv != NULL;
        json_array_foreach((json_t *)inv, i, row)
        {
            const char *item = json_string_value(json_object_get(row, "ITEM_NO"));
            const char *loc = json_string_value(json_object_get(row, "LOC_ID"));
            for (size_t col = 0; col < N_INV; col++) {
                int64_t d = 0;
                const json_t *v = json_object_get(row, inv_names[col]);
                size_t x = 0;
                if (v == NULL || want_decimal(v, &d) != 0) {
                    continue;
                }
                while (x < wn && (w[x].col != col || strcmp(w[x].item, item) != 0 ||
                                  strcmp(w[x].loc, loc) != 0)) {
                    x++;
                }
                if (x == wn && wn == cap) {
                    size_t ncap = cap == 0 ? 16 : cap * 2;
                    struct want_inv *grown = realloc(w, ncap * sizeof *grown);
                    if (grown == NULL) {
                        rc = -1;
                        goto out;
                    }
                    w = grown;
                    cap = ncap;
                }
                if (x == wn) {
                    w[wn++] = (struct want_inv){item, loc, col, 0};
                }
                w[x].d += d;
            }
        }
    }
    if (!any) {
        goto out;
    }
    for (size_t x = 0; x < wn; x++) {
        int64_t got = 0;
        char a[64], b[64], item[100], loc[40];
        for (size_t i = 0; i < dn; i++) {
            if (dv[i].col == w[x].col && strcmp(dv[i].item, w[x].item) == 0 &&
                strcmp(dv[i].loc, w[x].loc) == 0) {
                got = dv[i].d;
                dv[i].expected = true;
            }
        }
        if (got != w[x].d) {
            ops_clean(w[x].item, item, sizeof item);
            ops_clean(w[x].loc, loc, sizeof loc);
            diag(t, "IM_INV %s at %s: %s expected to change by %s, changed by %s", item, loc,
                 inv_names[w[x].col], ops_fmt_dec(w[x].d, 4, a, sizeof a),
                 ops_fmt_dec(got, 4, b, sizeof b));
        }
    }
    for (size_t i = 0; i < dn; i++) {
        char a[64], item[100], loc[40];
        if (!dv[i].expected) {
            ops_clean(dv[i].item, item, sizeof item);
            ops_clean(dv[i].loc, loc, sizeof loc);
            diag(t, "IM_INV %s at %s: %s changed by %s, not expected", item, loc,
                 inv_names[dv[i].col], ops_fmt_dec(dv[i].d, 4, a, sizeof a));
        }
    }
out:
    free(w);
    return rc;
}

/* ---- one case ---------------------------------------------------------------- */

/* Print "Bail out!" with the error and return its exit code. */
static int bail(struct tst *t, const struct err *e)
{
    struct buf clean = BUF_INIT;
    log_redact_into(e->msg, &clean);
    snprintf(t->bailed, sizeof t->bailed, "%s", buf_str(&clean));
    printf("Bail out! %s\n", buf_str(&clean));
    fprintf(stderr, "cpbridge test: %s\n", buf_str(&clean));
    buf_free(&clean);
    return e->code != 0 ? e->code : CPB_EXIT_SOFTWARE;
}

/* Check the case's files; *orders (new) is its list of expectations, or a
 * diagnostic naming the file is added. */
static void case_files(struct tst *t, const struct tcase *c, json_t **orders)
{
    char why[1400];
    json_t *doc = NULL;
    *orders = NULL;
    if (c->order == NULL) {
        diag(t, "%s has no %s.json beside it (the order)", c->expect, c->name);
        return;
    }
    if (c->expect == NULL) {
        diag(t, "%s has no %s.expect.json beside it (the expected outcome)", c->order, c->name);
        return;
    }
    if (load_json(c->expect, &doc, why, sizeof why) != 0 ||
        check_expect(c->expect, doc, orders, why, sizeof why) != 0) {
        diag(t, "%s", why);
        json_decref(*orders);
        *orders = NULL;
    }
    json_decref(doc);
    doc = NULL;
    /* source-file reads the case; a syntax error is reported here first, so
     * that the diagnostic names the line and column. */
    if (*orders != NULL && load_json(c->order, &doc, why, sizeof why) != 0) {
        diag(t, "%s", why);
        json_decref(*orders);
        *orders = NULL;
    }
    json_decref(doc);
}

/* Compare the copy after the run with the expectation. */
static int case_check(struct tst *t, struct db *db, const struct tcase *c, const json_t *orders,
                      const struct inv *before, bool source_failed, bool *bad)
{
    struct got *g = NULL;
    struct inv after = {NULL, 0, 0};
    struct delta *dv = NULL;
    size_t gn = 0, dn = 0;
    int rc = -1;
    if (source_failed) {
        diag(t, "source-file could not read every order of %s (--log-level warn shows why)",
             c->order);
        *bad = true;
    }
    if (read_staged(db, &g, &gn) != CPB_OK || inv_read(db, &after) != CPB_OK) {
        diag(t, "reading the copy failed: %s", db_last_error(db));
        goto out;
    }
    if (gn != json_array_size(orders)) {
        diag(t, "%s staged %zu order(s); %s expects %zu", c->order, gn, c->expect,
             json_array_size(orders));
    }
    for (size_t k = 0; k < gn && k < json_array_size(orders); k++) {
        if (check_order(t, db, k, &g[k], json_array_get(orders, k)) != 0) {
            goto out;
        }
    }
    if (inv_diff(before, &after, &dv, &dn) != 0 || check_inventory(t, orders, dv, dn) != 0) {
        diag(t, "out of memory");
        goto out;
    }
    rc = 0;
out:
    free(g);
    free(dv);
    inv_free(&after);
    return rc;
}

/* Run case `i`. Returns 0 (the result printed; *bad when a case file is
 * bad) or a fatal exit code (Bail out! printed). */
static int run_case(struct tst *t, size_t i, bool *bad)
{
    const struct tcase *c = &t->cases[i];
    struct err e = {0};
    struct pipeline *p = NULL;
    struct sandbox *sb = NULL;
    struct db *db = NULL;
    struct inv before = {NULL, 0, 0};
    json_t *orders = NULL;
    struct run_options o = {0};
    struct run_result res;
    enum db_dialect dialect = DB_SQLITE;
    struct timespec start;
    char tag[32];
    char name[200];
    int code = 0;

    buf_reset(&t->diag);
    t->failed = false;
    clock_gettime(CLOCK_MONOTONIC, &start);
    case_files(t, c, &orders);
    if (orders == NULL) {
        *bad = true;
        goto report;
    }
    snprintf(tag, sizeof tag, "case-%zu", i + 1);
    if (prepare(t, c->order, false, &p, &e) != 0 ||
        sandbox_open(&p->cfg->database, t->tmp, tag, &sb, &e) != 0) {
        code = bail(t, &e);
        goto out;
    }
    p->cfg->database.connection = sandbox_connection(sb);
    (void)db_dialect_parse(p->cfg->database.dialect, &dialect); /* checked by prepare */
    if (pipeline_init(p, &e) != 0 || db_connect(sandbox_connection(sb), dialect,
                                                p->cfg->database.login_timeout_ms, &db, &e) != 0) {
        code = bail(t, &e);
        goto out;
    }
    if (inv_read(db, &before) != CPB_OK) {
        err_set(&e, CPB_EXIT_UNAVAILABLE, "reading IM_INV of the copy: %s", db_last_error(db));
        code = bail(t, &e);
        goto out;
    }
    o.pipeline_path = t->path;
    int rc = runner_run(p, &o, &res, &e);
    if (rc != CPB_EXIT_OK && rc != CPB_EXIT_ATTENTION) {
        code = bail(t, &e);
        goto out;
    }
    if (case_check(t, db, c, orders, &before, res.source_failed, bad) != 0) {
        err_set(&e, CPB_EXIT_UNAVAILABLE, "reading the results from the copy: %s",
                db_last_error(db));
        code = bail(t, &e);
        goto out;
    }
report:
    ops_clean(c->name, name, sizeof name);
    printf("%s %zu - %s\n", t->failed ? "not ok" : "ok", i + 1, name);
    if (t->done != NULL) {
        struct timespec end;
        struct result *r = &t->done[t->ndone++];
        clock_gettime(CLOCK_MONOTONIC, &end);
        r->name = strdup(name);
        r->diag = strdup(buf_str(&t->diag));
        r->failed = t->failed;
        r->bad = *bad;
        r->seconds =
            (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
    }
    fputs(buf_str(&t->diag), stdout);
    if (t->keep && sb != NULL) {
        printf("#   kept the copy: %s\n", sandbox_where(sb));
    }
    fflush(stdout);
out:
    db_close(db);
    inv_free(&before);
    json_decref(orders);
    pipeline_close(p);
    if (sandbox_close(sb, t->keep, &e) != 0 && code == 0) {
        code = bail(t, &e);
    }
    return code;
}

/* ---- --junit ------------------------------------------------------------------ */

/* Append diagnostics `d` ("#   " lines) escaped, without their prefixes;
 * with `first`, only the first line. */
static void junit_text(struct buf *x, const char *d, bool first)
{
    struct buf plain = BUF_INIT;
    for (const char *p = d; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        size_t skip = strncmp(p, "#   ", 4) == 0 ? 4 : 0;
        buf_addf(&plain, "%.*s%s", (int)(len - skip), p + skip, first || nl == NULL ? "" : "\n");
        if (first || nl == NULL) {
            break;
        }
        p = nl + 1;
    }
    report_escape(x, plain.oom ? "" : buf_str(&plain));
    buf_free(&plain);
}

/* Write the JUnit XML report of the cases run (and of a Bail out!) to
 * t->junit. Returns 0, or -1 with e (CPB_EXIT_IOERR). */
static int junit_write(const struct tst *t, struct err *e)
{
    struct buf x = BUF_INIT;
    size_t failures = 0, errors = t->bailed[0] != '\0';
    FILE *f = NULL;
    int rc = -1;
    for (size_t i = 0; i < t->ndone; i++) {
        failures += t->done[i].failed && !t->done[i].bad;
        errors += t->done[i].bad;
    }
    buf_adds(&x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"");
    report_escape(&x, t->dir);
    buf_addf(&x, "\" tests=\"%zu\" failures=\"%zu\" errors=\"%zu\">\n",
             t->ndone + (t->bailed[0] != '\0'), failures, errors);
    for (size_t i = 0; i < t->ndone; i++) {
        const struct result *r = &t->done[i];
        const char *tag = r->bad ? "error" : "failure";
        buf_adds(&x, "    <testcase classname=\"cpbridge.test\" name=\"");
        report_escape(&x, r->name);
        buf_addf(&x, "\" time=\"%.3f\"%s\n", r->seconds, r->failed ? ">" : "/>");
        if (r->failed) {
            buf_addf(&x, "      <%s message=\"", tag);
            junit_text(&x, r->diag != NULL ? r->diag : "", true);
            buf_adds(&x, "\">");
            junit_text(&x, r->diag != NULL ? r->diag : "", false);
            buf_addf(&x, "</%s>\n    </testcase>\n", tag);
        }
    }
    if (t->bailed[0] != '\0') {
        buf_adds(&x, "    <testcase classname=\"cpbridge.test\" name=\"bail out\">\n"
                     "      <error message=\"");
        report_escape(&x, t->bailed);
        buf_adds(&x, "\"/>\n    </testcase>\n");
    }
    buf_adds(&x, "  </testsuite>\n</testsuites>\n");
    if (x.oom) {
        err_set(e, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    f = fopen(t->junit, "w");
    if (f == NULL || fwrite(x.data, 1, x.len, f) != x.len) {
        err_set(e, CPB_EXIT_IOERR, "cannot write the JUnit report %s: %s", t->junit,
                strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (f != NULL && fclose(f) != 0 && rc == 0) {
        rc = err_set(e, CPB_EXIT_IOERR, "cannot write the JUnit report %s: %s", t->junit,
                     strerror(errno));
    }
    buf_free(&x);
    return rc;
}

/* ---- the command ------------------------------------------------------------ */

static int usage_error(const char *fmt, ...) CPB_PRINTF(1, 2);
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cpbridge test: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n\n%s", usage_test);
    va_end(ap);
    return CPB_EXIT_USAGE;
}

static void tst_free(struct tst *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->cases[i].name);
        free(t->cases[i].order);
        free(t->cases[i].expect);
    }
    free(t->cases);
    for (size_t i = 0; i < t->ndone; i++) {
        free(t->done[i].name);
        free(t->done[i].diag);
    }
    free(t->done);
    free(t->source_owned);
    buf_free(&t->diag);
    config_destroy(&t->lc);
}

/* The replacement source's entry: source-file with options { path }. */
static int make_source(struct tst *t, struct err *e)
{
    config_setting_t *root = config_root_setting(&t->lc);
    config_setting_t *g = config_setting_add(root, "options", CONFIG_TYPE_GROUP);
    t->path_setting = g != NULL ? config_setting_add(g, "path", CONFIG_TYPE_STRING) : NULL;
    if (t->path_setting == NULL) {
        return err_set(e, CPB_EXIT_SOFTWARE, "out of memory");
    }
    t->src.stage = "source-file";
    t->src.enabled = true;
    t->src.options = g;
    t->src.file = t->path;
    return 0;
}

int cmd_test_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"source", required_argument, NULL, 's'}, {"keep", no_argument, NULL, 'k'},
        {"junit", required_argument, NULL, 'j'},  {"log-level", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    struct tst t;
    struct err e = {0};
    struct pipeline *p = NULL;
    enum cpb_log_level level = CPB_LOG_ERROR;
    const char *tmpdir = getenv("TMPDIR");
    bool bad = false;
    int failed = 0;
    int code = CPB_EXIT_OK;
    int opt;

    memset(&t, 0, sizeof t);
    config_init(&t.lc);
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            if (optarg[0] == '\0' || strlen(optarg) > 100 ||
                !text_utf8_valid(optarg, strlen(optarg))) {
                code = usage_error("--source wants a source id (1 to 100 characters)");
                goto out;
            }
            t.source_id = optarg;
            break;
        case 'k':
            t.keep = true;
            break;
        case 'j':
            t.junit = optarg;
            break;
        case 'L':
            if (log_level_parse(optarg, &level) != 0) {
                code = usage_error("unknown log level '%s' (error, warn, info, debug)", optarg);
                goto out;
            }
            break;
        case 'h':
            fputs(usage_test, stdout);
            goto out;
        default:
            fputs(usage_test, stderr);
            code = CPB_EXIT_USAGE;
            goto out;
        }
    }
    if (optind != argc - 2) {
        code = usage_error("test wants a PIPELINE file and a CASES_DIR");
        goto out;
    }
    t.path = argv[optind];
    t.dir = argv[optind + 1];
    log_configure(level, LOG_TEXT);
    if (make_source(&t, &e) != 0 || collect(&t, &e) != 0) {
        code = bail(&t, &e);
        goto out;
    }
    snprintf(t.tmp, sizeof t.tmp, "%s/cpbridge-test-XXXXXX",
             tmpdir != NULL && tmpdir[0] != '\0' ? tmpdir : "/tmp");
    if (mkdtemp(t.tmp) == NULL) {
        err_set(&e, CPB_EXIT_IOERR, "cannot make a temporary directory %s: %s", t.tmp,
                strerror(errno));
        t.tmp[0] = '\0';
        code = bail(&t, &e);
        goto out;
    }
    snprintf(t.lock, sizeof t.lock, "%s/run.lock", t.tmp);
    printf("# cpbridge test %s %s: %zu case(s), each against a throwaway copy of the database\n",
           t.path, t.dir, t.n);
    if (prepare(&t, t.cases[0].order != NULL ? t.cases[0].order : t.dir, true, &p, &e) != 0 ||
        pipeline_init(p, &e) != 0) {
        code = bail(&t, &e);
        goto out;
    }
    printf("# dialect %s; the real database is only read\n", p->cfg->database.dialect);
    pipeline_close(p);
    p = NULL;
    if (t.junit != NULL) {
        t.done = calloc(t.n, sizeof *t.done);
        if (t.done == NULL) {
            err_set(&e, CPB_EXIT_SOFTWARE, "out of memory");
            code = bail(&t, &e);
            goto out;
        }
    }
    printf("1..%zu\n", t.n);
    fflush(stdout);
    for (size_t i = 0; i < t.n; i++) {
        bool case_bad = false;
        code = run_case(&t, i, &case_bad);
        if (code != 0) {
            goto out;
        }
        bad = bad || case_bad;
        failed += t.failed;
    }
    printf("# %d of %zu case(s) failed\n", failed, t.n);
    code = bad ? CPB_EXIT_DATAERR : failed > 0 ? CPB_EXIT_ATTENTION : CPB_EXIT_OK;
out:
    pipeline_close(p);
    if (t.done != NULL && junit_write(&t, &e) != 0) {
        /* A JUnit file that cannot be written wins over the cases' outcome
         * (a CI reading it would see nothing), not over an earlier fatal. */
        bool outcome =
            code == CPB_EXIT_OK || code == CPB_EXIT_ATTENTION || code == CPB_EXIT_DATAERR;
        code = outcome ? bail(&t, &e) : code;
    }
    if (t.tmp[0] != '\0') {
        (void)remove(t.lock);
        if (!t.keep) {
            (void)rmdir(t.tmp);
        }
    }
    tst_free(&t);
    return code;
}
