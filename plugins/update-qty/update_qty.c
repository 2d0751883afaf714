/*
 * update_qty.c — the "update-qty" step stage: commits the quantities of the
 * order document create-order wrote against Counterpoint's inventory, in
 * the order's transaction:
 *  - per line, IM_INV.<column> += quantity at the stock location (the
 *    column is QTY_ON_SO or QTY_COMMIT, chosen from a fixed list by the
 *    `column` option; the text of the config never reaches the SQL). This
 *    is done set-based, from the document's PS_DOC_LIN rows, by one UPDATE
 *    that changes every item's row or none (it checks that each distinct
 *    item has its row) and one INSERT ... SELECT into USER_ORDER_INV; when
 *    an item has no row, nothing was changed and the line-by-line path
 *    below runs instead, which names the missing items or creates them;
 *  - a line whose item has no IM_INV row at the location fails the order
 *    (inventory.missing), or, with create_missing, gets a new row with zero
 *    quantities and the line's quantity in the column;
 *  - PS_DOC_HDR.IS_DOC_COMMITTED = 'Y';
 *  - exactly what it changed is recorded in USER_ORDER_INV (one row per
 *    line: staging id, document, line, item, location, column, quantity,
 *    whether the IM_INV row was created), which rollback uses to undo it.
 * An adopted document (create-order found it already there) is skipped:
 * whoever wrote it also committed its quantities.
 *
 * All SQL is portable (SQLite, PostgreSQL, SQL Server) with every value
 * bound; no statement differs by dialect.
 */
#include <cpbridge/stage.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "stage_util.h"

#define LEN_LOC_ID 10

enum qty_column { COL_QTY_ON_SO = 0, COL_QTY_COMMIT = 1 };

struct update_qty_options {
    int column; /* enum qty_column */
    const char *location;
    bool create_missing;
};

static const char *const column_choices[] = {"QTY_ON_SO", "QTY_COMMIT", NULL};

static const struct cpb_option update_qty_options_table[] = {
    {.name = "column",
     .type = CPB_OPT_ENUM,
     .default_value = "QTY_ON_SO",
     .choices = column_choices,
     .offset = offsetof(struct update_qty_options, column),
     .help = "IM_INV quantity column raised by each line's quantity: QTY_ON_SO (outside"
             " QTY_AVAIL) or QTY_COMMIT (reduces QTY_AVAIL)."},
    {.name = "location",
     .type = CPB_OPT_STRING,
     .min = 1,
     .max = LEN_LOC_ID,
     .offset = offsetof(struct update_qty_options, location),
     .help = "Stock location (IM_INV.LOC_ID); default: the document's, from create-order."},
    {.name = "create_missing",
     .type = CPB_OPT_BOOL,
     .default_value = "false",
     .offset = offsetof(struct update_qty_options, create_missing),
     .help = "Create a missing IM_INV row (zero quantities) instead of holding the order."},
    {.name = NULL},
};

/* The statements per column: the column name is part of the SQL text, so
 * each choice has its own fixed text. Parameters: quantity, time, item,
 * location. */
static const char *const update_sql[] = {
    [COL_QTY_ON_SO] = "UPDATE IM_INV SET QTY_ON_SO = QTY_ON_SO + ?, LST_MAINT_DT = ?"
                      " WHERE ITEM_NO = ? AND LOC_ID = ?",
    [COL_QTY_COMMIT] = "UPDATE IM_INV SET QTY_COMMIT = QTY_COMMIT + ?, LST_MAINT_DT = ?"
                       " WHERE ITEM_NO = ? AND LOC_ID = ?",
};

/* The set-based path. Every item of the document gets its lines' total
 * quantity in the column, or (when an item of the document has no row at
 * the location) nothing changes at all: the row count is then 0, else the
 * number of distinct items. Parameters: document, time, location, document,
 * document, location, document. */
#define SET_UPDATE(col)                                                                            \
    "UPDATE IM_INV SET " col " = " col " + (SELECT SUM(l.QTY_SOLD) FROM PS_DOC_LIN l"              \
    " WHERE l.DOC_ID = ? AND l.ITEM_NO = IM_INV.ITEM_NO), LST_MAINT_DT = ?"                        \
    " WHERE LOC_ID = ? AND ITEM_NO IN (SELECT ITEM_NO FROM PS_DOC_LIN WHERE DOC_ID = ?)"           \
    " AND (SELECT COUNT(DISTINCT d.ITEM_NO) FROM PS_DOC_LIN d WHERE d.DOC_ID = ?)"                 \
    " = (SELECT COUNT(*) FROM IM_INV v WHERE v.LOC_ID = ?"                                         \
    " AND v.ITEM_NO IN (SELECT ITEM_NO FROM PS_DOC_LIN WHERE DOC_ID = ?))"
static const char *const set_update_sql[] = {
    [COL_QTY_ON_SO] = SET_UPDATE("QTY_ON_SO"),
    [COL_QTY_COMMIT] = SET_UPDATE("QTY_COMMIT"),
};

/* What the set-based UPDATE changed, one USER_ORDER_INV row per document
 * line (CREATED_ROW 0: no row was created). Parameters: staging id,
 * location, column name, document. */
static const char set_record_sql[] =
    "INSERT INTO USER_ORDER_INV (STAGING_ID, DOC_ID, LIN_SEQ_NO, ITEM_NO, LOC_ID, QTY_COLUMN,"
    " QTY, CREATED_ROW) SELECT CAST(? AS BIGINT), DOC_ID, LIN_SEQ_NO, ITEM_NO,"
    " CAST(? AS VARCHAR(10)), CAST(? AS VARCHAR(20)), QTY_SOLD, 0 FROM PS_DOC_LIN"
    " WHERE DOC_ID = ?";

/* A new IM_INV row with zero quantities and the line's quantity in the
 * column. Parameters: item, location, the quantity for QTY_ON_SO, the
 * quantity for QTY_COMMIT, time (the other quantities are bound zeros). */
static const char insert_sql[] =
    "INSERT INTO IM_INV (ITEM_NO, LOC_ID, QTY_ON_SO, QTY_COMMIT, QTY_ON_HND, QTY_ON_ORD,"
    " QTY_ON_LWY, QTY_ON_BO, QTY_ON_PO, MIN_QTY, MAX_QTY, LST_MAINT_DT)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

static const char commit_doc_sql[] =
    "UPDATE PS_DOC_HDR SET IS_DOC_COMMITTED = ?, LST_MAINT_DT = ? WHERE DOC_ID = ?";

static const char record_sql[] =
    "INSERT INTO USER_ORDER_INV (STAGING_ID, DOC_ID, LIN_SEQ_NO, ITEM_NO, LOC_ID, QTY_COLUMN,"
    " QTY, CREATED_ROW) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

struct update_qty_state {
    const struct cpb_host *host;          /* borrowed until fini */
    struct cpb_ctx *ctx;                  /* borrowed until fini */
    const struct update_qty_options *opt; /* borrowed until fini */
};

/* What the line loop needs, prepared once and re-bound per line. */
struct stmts {
    struct cpb_stmt *update;
    struct cpb_stmt *insert;
    struct cpb_stmt *record;
};

/* The message listing missing inventory rows. */
struct missing {
    char text[400];
    size_t len;
    unsigned count;
    bool cut;
};

static void missing_add(struct missing *m, int64_t seq, const char *item)
{
    char part[80];
    int n = snprintf(part, sizeof part, "%sline %" PRId64 " item %s", m->count > 0 ? ", " : "", seq,
                     item);
    m->count++;
    if (m->cut) {
        return;
    }
    if (n > 0 && m->len + (size_t)n < sizeof m->text - 8) {
        memcpy(m->text + m->len, part, (size_t)n + 1);
        m->len += (size_t)n;
    } else {
        memcpy(m->text + m->len, ", ...", 6);
        m->len += 5;
        m->cut = true;
    }
}

/* Insert a zero IM_INV row carrying qty in the configured column. */
static enum cpb_status insert_row(struct update_qty_state *st, struct stmts *s, int64_t qty,
                                  int64_t now, const char *item, const char *loc)
{
    const struct stage_arg a[] = {
        stage_arg_text(item),
        stage_arg_text(loc),
        stage_arg_dec(st->opt->column == COL_QTY_ON_SO ? qty : 0),
        stage_arg_dec(st->opt->column == COL_QTY_COMMIT ? qty : 0),
        stage_arg_dec(0), /* QTY_ON_HND */
        stage_arg_dec(0), /* QTY_ON_ORD */
        stage_arg_dec(0), /* QTY_ON_LWY */
        stage_arg_dec(0), /* QTY_ON_BO */
        stage_arg_dec(0), /* QTY_ON_PO */
        stage_arg_dec(0), /* MIN_QTY */
        stage_arg_dec(0), /* MAX_QTY */
        stage_arg_time(now),
    };
    enum cpb_status rc =
        stage_db_prepare(st->host, st->ctx, insert_sql, a, STAGE_NARGS(a), &s->insert);
    if (rc == CPB_OK) {
        rc = st->host->db_execute(s->insert, NULL);
    }
    return rc;
}

/* One USER_ORDER_INV row. */
static enum cpb_status record_line(struct update_qty_state *st, struct stmts *s,
                                   struct cpb_record *rec, int64_t doc_id, int64_t seq,
                                   const char *item, const char *loc, int64_t qty, bool created)
{
    const struct stage_arg a[] = {
        stage_arg_int(rec->id), stage_arg_int(doc_id),
        stage_arg_int(seq),     stage_arg_text(item),
        stage_arg_text(loc),    stage_arg_text(column_choices[st->opt->column]),
        stage_arg_dec(qty),     stage_arg_int(created ? 1 : 0),
    };
    enum cpb_status rc =
        stage_db_prepare(st->host, st->ctx, record_sql, a, STAGE_NARGS(a), &s->record);
    if (rc == CPB_OK) {
        rc = st->host->db_execute(s->record, NULL);
    }
    return rc;
}

/* The set-based path: *done tells whether it changed IM_INV (and recorded
 * it in USER_ORDER_INV); when not, nothing was written and the per-line
 * path must run. */
static enum cpb_status update_set(struct update_qty_state *st, struct cpb_record *rec,
                                  int64_t doc_id, int64_t now, const char *loc, bool *done)
{
    int64_t rows = 0;
    *done = false;
    const struct stage_arg u[] = {
        stage_arg_int(doc_id), stage_arg_time(now), stage_arg_text(loc),   stage_arg_int(doc_id),
        stage_arg_int(doc_id), stage_arg_text(loc), stage_arg_int(doc_id),
    };
    enum cpb_status rc =
        stage_db_exec(st->host, st->ctx, set_update_sql[st->opt->column], u, STAGE_NARGS(u), &rows);
    if (rc != CPB_OK || rows == 0) {
        return rc;
    }
    const struct stage_arg r[] = {
        stage_arg_int(rec->id),
        stage_arg_text(loc),
        stage_arg_text(column_choices[st->opt->column]),
        stage_arg_int(doc_id),
    };
    rc = stage_db_exec(st->host, st->ctx, set_record_sql, r, STAGE_NARGS(r), NULL);
    if (rc == CPB_OK) {
        *done = true;
    }
    return rc;
}

/* Keeps host, ctx and options (borrowed until fini); *state is new. */
static int update_qty_init(const struct cpb_host *host, struct cpb_ctx *ctx, const void *options,
                           void **state)
{
    struct update_qty_state *st = stage_state_new(host, ctx, sizeof *st, state);
    if (st == NULL) {
        return -1;
    }
    st->host = host;
    st->ctx = ctx;
    st->opt = options;
    return 0;
}

/* `rec` is borrowed; adds cp_qty_column to rec->result. */
static enum cpb_status update_qty_process(void *state, struct cpb_record *rec)
{
    struct update_qty_state *st = state;
    json_t *result = rec->result;
    json_t *lines = json_object_get(rec->order, "lines");
    json_t *items = json_object_get(result, "cp_items");
    json_t *doc = json_object_get(result, "cp_doc_id");
    const char *loc = st->opt->location;
    struct stmts s = {NULL, NULL, NULL};
    struct missing m;
    enum cpb_status rc = CPB_OK;
    size_t i;
    json_t *line;

    memset(&m, 0, sizeof m);
    if (json_is_true(json_object_get(result, "cp_adopted"))) {
        st->host->log(st->ctx, CPB_LOG_INFO,
                      "order %s: document %" JSON_INTEGER_FORMAT
                      " was adopted, its quantities are not committed again",
                      rec->external_id != NULL ? rec->external_id : "?", json_integer_value(doc));
        st->host->reason(st->ctx, "update-qty.adopted", "the document was adopted");
        return CPB_SKIP;
    }
    if (loc == NULL) {
        loc = json_string_value(json_object_get(result, "cp_stk_loc_id"));
    }
    size_t n = json_array_size(lines);
    if (!json_is_integer(doc) || !json_is_array(items) || n == 0 || json_array_size(items) != n ||
        loc == NULL || loc[0] == '\0' || strlen(loc) > LEN_LOC_ID) {
        st->host->reason(st->ctx, "update-qty.needs_create_order",
                         "update-qty needs create-order's results (cp_doc_id, cp_stk_loc_id)"
                         " and validate's cp_items: put it after create-order in the pipeline");
        return CPB_FAIL;
    }
    int64_t doc_id = (int64_t)json_integer_value(doc);
    int64_t now = st->host->now_ms(st->ctx);

    json_array_foreach(lines, i, line)
    {
        const char *item = json_string_value(json_array_get(items, i));
        if (item == NULL || item[0] == '\0' || stage_json_int(line, "qty", 0) <= 0) {
            st->host->reason(st->ctx, "update-qty.needs_create_order",
                             "line %" PRId64 " has no resolved item or quantity", (int64_t)i + 1);
            return CPB_FAIL;
        }
    }
    bool done = false;
    rc = update_set(st, rec, doc_id, now, loc, &done);
    if (rc == CPB_OK && !done) {
        rc = st->host->db_prepare(st->ctx, update_sql[st->opt->column], &s.update);
    }
    json_array_foreach(lines, i, line)
    {
        if (rc != CPB_OK || done) {
            break;
        }
        const char *item = json_string_value(json_array_get(items, i));
        int64_t qty = stage_json_int(line, "qty", 0);
        int64_t seq = (int64_t)i + 1; /* create-order's LIN_SEQ_NO */
        int64_t rows = 0;
        bool created = false;
        const struct stage_arg a[] = {stage_arg_dec(qty), stage_arg_time(now), stage_arg_text(item),
                                      stage_arg_text(loc)};
        rc = stage_db_bind(st->host, s.update, a, STAGE_NARGS(a));
        if (rc == CPB_OK) {
            rc = st->host->db_execute(s.update, &rows);
        }
        if (rc != CPB_OK) {
            break;
        }
        if (rows == 0 && !st->opt->create_missing) {
            missing_add(&m, seq, item);
            continue;
        }
        if (rows == 0) {
            rc = insert_row(st, &s, qty, now, item, loc);
            created = true;
        }
        if (rc == CPB_OK) {
            rc = record_line(st, &s, rec, doc_id, seq, item, loc, qty, created);
        }
    }
    if (rc == CPB_OK && m.count > 0) {
        st->host->reason(st->ctx, "inventory.missing",
                         "no IM_INV row at location %s for %s: add the item%s to the location"
                         " in Counterpoint, or set update-qty's create_missing",
                         loc, m.text, m.count > 1 ? "s" : "");
        rc = CPB_FAIL;
    }
    if (rc == CPB_OK) {
        int64_t rows = 0;
        const struct stage_arg a[] = {stage_arg_text("Y"), stage_arg_time(now),
                                      stage_arg_int(doc_id)};
        rc = stage_db_exec(st->host, st->ctx, commit_doc_sql, a, STAGE_NARGS(a), &rows);
        if (rc == CPB_OK && rows == 0) {
            st->host->reason(st->ctx, "update-qty.no_document",
                             "document %" PRId64 " is not in PS_DOC_HDR", doc_id);
            rc = CPB_FAIL;
        }
    }
    if (rc == CPB_OK && json_object_set_new(result, "cp_qty_column",
                                            json_string(column_choices[st->opt->column])) != 0) {
        st->host->reason(st->ctx, "update-qty.oom", "out of memory");
        rc = CPB_RETRY;
    }
    st->host->db_finalize(s.update);
    st->host->db_finalize(s.insert);
    st->host->db_finalize(s.record);
    return rc;
}

/* The stage descriptor: the one exported thing (through cpb_stage_entry, or
 * by name in static builds); constant, borrowed by the host. */
extern const struct cpb_stage update_qty_stage;
const struct cpb_stage update_qty_stage = {
    CPB_STAGE_HEADER,
    .name = "update-qty",
    .version = "1.0.0",
    .summary = "Commit an order document's quantities in Counterpoint's IM_INV.",
    .kind = CPB_STEP,
    .options = update_qty_options_table,
    .options_size = sizeof(struct update_qty_options),
    .init = update_qty_init,
    .process = update_qty_process,
    .fini = stage_state_free, /* the state owns nothing else */
};

CPB_STAGE_ENTRY(update_qty_stage);
