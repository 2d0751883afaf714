/*
 * create_order.c — the "create-order" step stage: writes a validated web
 * order into Counterpoint as an order document (DOC_TYP 'O', lines LIN_TYP
 * 'O') inside the order's transaction: PS_DOC_HDR, PS_DOC_LIN per line
 * (multi-row INSERTs of up to 10 rows), PS_DOC_HDR_TOT, PS_DOC_HDR_MISC_CHRG
 * (shipping, fees), PS_DOC_CONTACT (bill-to 1, ship-to 2, one INSERT),
 * PS_DOC_PMT and PS_DOC_NOTE. It never commits: the
 * engine commits the document together with the staging row's APPLIED mark,
 * and rolls everything back when any step fails.
 *
 * It reads what validate resolved from rec->result ("cp_cust_no",
 * "cp_stk_loc_id", "cp_items") and refuses to run without it. When validate
 * found the order's document already ("cp_adopt_doc_id"), it adopts that
 * document and writes nothing.
 *
 * Numbers are taken under row locks inside the transaction, never MAX()+1:
 *  - DOC_ID from USER_DOC_COUNTER 'DOC_ID' (seeded by migration 1):
 *    UPDATE ... SET NEXT_VAL = NEXT_VAL + 1 first (the row lock serializes
 *    concurrent runners until their commit), then SELECT NEXT_VAL - 1;
 *  - TKT_NO from USER_DOC_COUNTER 'TKT_NO:<store>' (ticket_counter =
 *    engine; created at 1 on first use) formatted
 *    "<prefix><store>-<6 digits>", or from the store's
 *    PS_STR_CFG_PS.NXT_ORD_NO (ticket_counter = store) formatted
 *    "<prefix><number>". A ticket number that would not fit TKT_NO (15) is
 *    refused, never cut: cutting would repeat numbers.
 * DOC_ID is taken first, so its row lock already serializes the creation of
 * a store's ticket counter row between runners of this stage; should another
 * writer create it concurrently, the INSERT loses on the primary key and the
 * row the winner made is used (or the order is retried).
 *
 * Money columns that are DEC(15,2) get amounts rounded to cents, half away
 * from zero, from the exact ten-thousandths of the normalized order; unit
 * prices and quantities keep four decimals. No double is ever involved.
 *
 * Open question (schema reference §8.3): which PS_DOC_HDR_TOT rows
 * Counterpoint itself writes for an order (NCR's tests expect three; an 'S',
 * 'O' and 'L' guess). This stage writes the one row it can fill with
 * certainty, TOT_TYP 'O', carrying the order's amounts; verify against an
 * order entered in Counterpoint and add rows here if needed.
 *
 * All SQL is portable (SQLite, PostgreSQL, SQL Server) with every value
 * bound; no statement differs by dialect.
 */
#include <cpbridge/stage.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage_util.h"

/* Counterpoint column lengths (bytes). */
#define LEN_STR_ID     10
#define LEN_STA_ID     10
#define LEN_DRW_ID     10
#define LEN_USR_ID     10
#define LEN_LOC_ID     10
#define LEN_PAY_COD    10
#define LEN_TKT_NO     15
#define LEN_DESCR      250
#define LEN_PMT_DESCR  40
#define LEN_NAM        40
#define LEN_COUNTER_ID 40
/* The note id the customer's note is stored under in PS_DOC_NOTE. */
#define NOTE_ID "WEB"

enum ref_column { REF_REF = 0, REF_CUST_PO_NO = 1 };
enum ticket_counter { TICKET_ENGINE = 0, TICKET_STORE = 1 };

struct create_order_options {
    const char *store;
    const char *station;
    const char *drawer;
    const char *user;
    const char *location;
    const char *pay_code;
    bool payment_final;
    int ref_column;     /* enum ref_column */
    int ticket_counter; /* enum ticket_counter */
    const char *ticket_prefix;
    int64_t fee_misc_charge;
};

static const char *const ref_column_choices[] = {"REF", "CUST_PO_NO", NULL};
static const char *const ticket_counter_choices[] = {"engine", "store", NULL};

static const struct cpb_option create_order_options_table[] = {
    {.name = "store",
     .type = CPB_OPT_STRING,
     .default_value = "WEB",
     .min = 1,
     .max = LEN_STR_ID,
     .offset = offsetof(struct create_order_options, store),
     .help = "Counterpoint store (STR_ID) the documents belong to."},
    {.name = "station",
     .type = CPB_OPT_STRING,
     .default_value = "WEB-01",
     .min = 1,
     .max = LEN_STA_ID,
     .offset = offsetof(struct create_order_options, station),
     .help = "Station (STA_ID) the documents are entered on."},
    {.name = "drawer",
     .type = CPB_OPT_STRING,
     .min = 1,
     .max = LEN_DRW_ID,
     .offset = offsetof(struct create_order_options, drawer),
     .help = "Drawer (DRW_ID) of the documents; unset: none."},
    {.name = "user",
     .type = CPB_OPT_STRING,
     .default_value = "CPBRIDGE",
     .min = 1,
     .max = LEN_USR_ID,
     .offset = offsetof(struct create_order_options, user),
     .help = "Counterpoint user (USR_ID, LST_MAINT_USR_ID) recorded on the documents."},
    {.name = "location",
     .type = CPB_OPT_STRING,
     .min = 1,
     .max = LEN_LOC_ID,
     .offset = offsetof(struct create_order_options, location),
     .help = "Stock and price location; default: the one validate used, else the store's"
             " PS_STR_CFG_PS.STK_LOC_ID."},
    {.name = "pay_code",
     .type = CPB_OPT_STRING,
     .default_value = "EC_WOOCOMM",
     .min = 1,
     .max = LEN_PAY_COD,
     .offset = offsetof(struct create_order_options, pay_code),
     .help = "Pay code (SY_PAY_COD) of the web payment."},
    {.name = "payment_final",
     .type = CPB_OPT_BOOL,
     .default_value = "false",
     .offset = offsetof(struct create_order_options, payment_final),
     .help = "FINAL_PMT 'Y' (charged at release) instead of 'N' (paid now, a deposit)."},
    {.name = "ref_column",
     .type = CPB_OPT_ENUM,
     .default_value = "REF",
     .choices = ref_column_choices,
     .offset = offsetof(struct create_order_options, ref_column),
     .help = "PS_DOC_HDR column the web order number goes in; must match validate's."},
    {.name = "ticket_counter",
     .type = CPB_OPT_ENUM,
     .default_value = "engine",
     .choices = ticket_counter_choices,
     .offset = offsetof(struct create_order_options, ticket_counter),
     .help = "Where ticket numbers come from: engine (USER_DOC_COUNTER, \"<prefix><store>-"
             "000001\") or store (PS_STR_CFG_PS.NXT_ORD_NO, \"<prefix><number>\")."},
    {.name = "ticket_prefix",
     .type = CPB_OPT_STRING,
     .default_value = "W",
     .min = 0,
     .max = 5,
     .offset = offsetof(struct create_order_options, ticket_prefix),
     .help = "Text put before every ticket number."},
    {.name = "fee_misc_charge",
     .type = CPB_OPT_INT,
     .default_value = "2",
     .min = 0,
     .max = 5,
     .offset = offsetof(struct create_order_options, fee_misc_charge),
     .help = "Misc charge (2..5) the order's fees go in; 0 or 1: added to misc charge 1 with"
             " the shipping."},
    {.name = NULL},
};

/* The header insert, by ref_column (a fixed list: never config text). */
#define HDR_COLUMNS                                                                                \
    "DOC_ID, DOC_GUID, DOC_TYP, TKT_TYP, STR_ID, STA_ID, DRW_ID, TKT_NO, CUST_NO, TKT_DT,"         \
    " USR_ID, STK_LOC_ID, PRC_LOC_ID, BILL_TO_CONTACT_ID, SHIP_TO_CONTACT_ID, ORD_LINS,"           \
    " SAL_LINS, RET_LINS, SAL_LIN_TOT, IS_DOC_COMMITTED, LST_MAINT_DT, LST_MAINT_USR_ID"
#define HDR_VALUES "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
static const char *const header_sql[] = {
    [REF_REF] = "INSERT INTO PS_DOC_HDR (" HDR_COLUMNS ", REF) VALUES (" HDR_VALUES ")",
    [REF_CUST_PO_NO] =
        "INSERT INTO PS_DOC_HDR (" HDR_COLUMNS ", CUST_PO_NO) VALUES (" HDR_VALUES ")",
};

static const char counter_update_sql[] =
    "UPDATE USER_DOC_COUNTER SET NEXT_VAL = NEXT_VAL + 1 WHERE COUNTER_ID = ?";
static const char counter_select_sql[] =
    "SELECT NEXT_VAL - 1 FROM USER_DOC_COUNTER WHERE COUNTER_ID = ?";
static const char counter_insert_sql[] =
    "INSERT INTO USER_DOC_COUNTER (COUNTER_ID, NEXT_VAL) VALUES (?, ?)";
static const char store_counter_update_sql[] =
    "UPDATE PS_STR_CFG_PS SET NXT_ORD_NO = CAST(CAST(NXT_ORD_NO AS BIGINT) + 1 AS VARCHAR(15))"
    " WHERE STR_ID = ?";
static const char store_counter_select_sql[] =
    "SELECT NXT_ORD_NO FROM PS_STR_CFG_PS WHERE STR_ID = ?";
static const char store_location_sql[] = "SELECT STK_LOC_ID FROM PS_STR_CFG_PS WHERE STR_ID = ?";
static const char adopt_sql[] = "SELECT TKT_NO, STK_LOC_ID FROM PS_DOC_HDR WHERE DOC_ID = ?";
/* PS_DOC_LIN rows go in by multi-row INSERTs of up to LINE_CHUNK rows: one
 * text per row count, built once in init (struct create_order_state). */
#define LINE_CHUNK 10
#define LINE_COLS  18
static const char line_head[] =
    "INSERT INTO PS_DOC_LIN (DOC_ID, LIN_SEQ_NO, STR_ID, STA_ID, TKT_NO, LIN_TYP, ITEM_NO,"
    " DESCR, QTY_SOLD, SELL_UNIT, PRC, EXT_PRC, GROSS_EXT_PRC, CALC_EXT_PRC, USR_ENTD_PRC,"
    " STK_LOC_ID, PRC_LOC_ID, LIN_GUID) VALUES ";
static const char total_sql[] =
    "INSERT INTO PS_DOC_HDR_TOT (DOC_ID, TOT_TYP, LINS, SUB_TOT, TAX_AMT, NORM_TAX_AMT,"
    " TOT_MISC, TOT_HDR_DISC, TOT_LIN_DISC, TOT, AMT_DUE, TOT_TND, INITIAL_MIN_DUE,"
    " TAX_AMT_SHIPPED, TOT_WEIGHT, TOT_CUBE)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
static const char misc_sql[] =
    "INSERT INTO PS_DOC_HDR_MISC_CHRG (DOC_ID, TOT_TYP, MISC_CHRG_NO, MISC_TYP, MISC_AMT,"
    " MISC_PCT) VALUES (?, ?, ?, ?, ?, ?)";
/* Both contacts (bill-to 1, ship-to 2) in one statement, 15 columns each. */
#define CONTACT_COLS 15
static const char contact_sql[] =
    "INSERT INTO PS_DOC_CONTACT (DOC_ID, CONTACT_ID, NAM, FST_NAM, LST_NAM, ADRS_1, ADRS_2,"
    " ADRS_3, CITY, STATE, ZIP_COD, CNTRY, PHONE_1, EMAIL_ADRS_1, NAM_TYP)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?),"
    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
static const char payment_sql[] =
    "INSERT INTO PS_DOC_PMT (DOC_ID, PMT_SEQ_NO, PAY_COD, AMT, HOME_CURNCY_AMT, FINAL_PMT,"
    " PAY_DAT, DESCR, STR_ID, STA_ID, TKT_NO) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
static const char note_sql[] = "INSERT INTO PS_DOC_NOTE (DOC_ID, NOTE_ID, NOTE) VALUES (?, ?, ?)";

struct create_order_state {
    const struct cpb_host *host;            /* borrowed until fini */
    struct cpb_ctx *ctx;                    /* borrowed until fini */
    const struct create_order_options *opt; /* borrowed until fini */
    /* line_sql[k - 1]: the PS_DOC_LIN INSERT of k rows. */
    char line_sql[LINE_CHUNK][sizeof line_head + LINE_CHUNK * (LINE_COLS * 3 + 4)];
};

/* The document being written. */
struct doc {
    int64_t doc_id;
    char tkt_no[LEN_TKT_NO + 1];
    char location[LEN_LOC_ID + 1];
    const char *cust_no; /* borrowed from rec->result */
    int64_t created_ms;
    int64_t paid_ms;
    int64_t now_ms;
};

/* ---- small helpers ------------------------------------------------------ */

/* s, or NULL (SQL NULL) when s is empty. */
static const char *or_null(const char *s)
{
    return (s != NULL && s[0] != '\0') ? s : NULL;
}

/* ---- database helpers --------------------------------------------------- */

/* A query with one text parameter whose first row's first column is read
 * as an integer: CPB_OK, CPB_SKIP (no row, or NULL), or an error. */
static enum cpb_status query_int(struct create_order_state *st, const char *sql, const char *param,
                                 int64_t *value)
{
    struct cpb_stmt *stmt = NULL;
    bool null = false;
    const struct stage_arg a[] = {stage_arg_text(param)};
    enum cpb_status rc = stage_db_query(st->host, st->ctx, sql, a, STAGE_NARGS(a), &stmt);
    if (rc == CPB_OK) {
        rc = st->host->db_col_int(stmt, 1, value, &null);
    }
    if (rc == CPB_OK && null) {
        rc = CPB_SKIP;
    }
    st->host->db_finalize(stmt);
    return rc;
}

/* A query with one parameter (text, or an integer when text is NULL) whose
 * first row's column `col` is copied into out: CPB_OK, CPB_SKIP (no row),
 * or an error. A NULL value reads as "". CPB_FAIL with a reason when the
 * value does not fit. */
static enum cpb_status query_text(struct create_order_state *st, const char *sql, const char *text,
                                  int64_t num, unsigned ncols, char *out[], const size_t outlen[])
{
    struct cpb_stmt *stmt = NULL;
    const char *v = NULL;
    const struct stage_arg a[] = {text != NULL ? stage_arg_text(text) : stage_arg_int(num)};
    enum cpb_status rc = stage_db_query(st->host, st->ctx, sql, a, STAGE_NARGS(a), &stmt);
    for (unsigned c = 0; rc == CPB_OK && c < ncols; c++) {
        rc = st->host->db_col_text(stmt, c + 1, &v);
        if (rc != CPB_OK) {
            break;
        }
        if (stage_copy(v, out[c], outlen[c]) != 0) {
            st->host->reason(st->ctx, "create-order.bad_value",
                             "column %u of \"%.60s...\" holds a value longer than %zu bytes", c + 1,
                             sql, outlen[c] - 1);
            rc = CPB_FAIL;
        }
    }
    st->host->db_finalize(stmt);
    return rc;
}

/* ---- numbering ---------------------------------------------------------- */

/*
 * Take the next value of USER_DOC_COUNTER row `id` into *value: the UPDATE
 * takes the row lock first, then the value is read. A missing row is
 * created at 1 when `create` (a concurrent creation fails on the primary
 * key: the row exists then, and the UPDATE is repeated), else it is a
 * failure naming the row.
 */
static enum cpb_status next_counter(struct create_order_state *st, const char *id, bool create,
                                    int64_t *value)
{
    int64_t rows = 0;
    struct stage_arg key[] = {stage_arg_text(id)};
    enum cpb_status rc =
        stage_db_exec(st->host, st->ctx, counter_update_sql, key, STAGE_NARGS(key), &rows);
    if (rc != CPB_OK) {
        return rc;
    }
    if (rows == 0 && !create) {
        st->host->reason(st->ctx, "create-order.counter_missing",
                         "USER_DOC_COUNTER has no row '%s' (migration 1 seeds it): run"
                         " `cpbridge db init` or insert the row",
                         id);
        return CPB_FAIL;
    }
    if (rows == 0) {
        struct stage_arg ins[] = {stage_arg_text(id), stage_arg_int(2)};
        rc = stage_db_exec(st->host, st->ctx, counter_insert_sql, ins, STAGE_NARGS(ins), NULL);
        if (rc == CPB_OK) {
            *value = 1;
            return CPB_OK;
        }
        if (rc != CPB_FAIL) {
            return rc;
        }
        /* Another runner created the row meanwhile: use it. */
        rc = stage_db_exec(st->host, st->ctx, counter_update_sql, key, STAGE_NARGS(key), &rows);
        if (rc != CPB_OK) {
            return rc;
        }
        if (rows == 0) {
            st->host->reason(st->ctx, "create-order.counter_race",
                             "could not create or update USER_DOC_COUNTER row '%s'; will try"
                             " again",
                             id);
            return CPB_RETRY;
        }
    }
    rc = query_int(st, counter_select_sql, id, value);
    if (rc == CPB_SKIP || (rc == CPB_OK && *value < 1)) {
        st->host->reason(st->ctx, "create-order.counter_bad",
                         "USER_DOC_COUNTER row '%s' does not hold a positive number", id);
        return CPB_FAIL;
    }
    return rc;
}

/* Parse a whole decimal number from untrusted text; -1 if it is not one. */
static int parse_number(const char *s, int64_t *out)
{
    char *end = NULL;
    if (s == NULL || s[0] < '0' || s[0] > '9') {
        return -1;
    }
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0) {
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

/* The ticket number into d->tkt_no. */
static enum cpb_status next_ticket(struct create_order_state *st, struct doc *d)
{
    const struct create_order_options *o = st->opt;
    int64_t number = 0;
    int n = 0;
    enum cpb_status rc = CPB_OK;

    if (o->ticket_counter == TICKET_ENGINE) {
        char id[LEN_COUNTER_ID + 1];
        snprintf(id, sizeof id, "TKT_NO:%s", o->store);
        rc = next_counter(st, id, true, &number);
        if (rc != CPB_OK) {
            return rc;
        }
        n = snprintf(d->tkt_no, sizeof d->tkt_no, "%s%s-%06" PRId64, o->ticket_prefix, o->store,
                     number);
    } else {
        char text[32];
        char *out[] = {text};
        const size_t outlen[] = {sizeof text};
        int64_t rows = 0;
        struct stage_arg key[] = {stage_arg_text(o->store)};
        rc = stage_db_exec(st->host, st->ctx, store_counter_update_sql, key, STAGE_NARGS(key),
                           &rows);
        if (rc == CPB_OK && rows == 0) {
            st->host->reason(st->ctx, "create-order.store_unknown",
                             "store '%s' has no row in PS_STR_CFG_PS: fix create-order's store"
                             " option",
                             o->store);
            return CPB_FAIL;
        }
        if (rc == CPB_OK) {
            rc = query_text(st, store_counter_select_sql, o->store, 0, 1, out, outlen);
        }
        if (rc == CPB_SKIP) {
            rc = CPB_FAIL;
        }
        if (rc != CPB_OK) {
            return rc;
        }
        if (parse_number(text, &number) != 0 || number < 2) {
            st->host->reason(st->ctx, "create-order.counter_bad",
                             "PS_STR_CFG_PS.NXT_ORD_NO of store '%s' is not a positive whole"
                             " number: set it in Counterpoint",
                             o->store);
            return CPB_FAIL;
        }
        number--;
        n = snprintf(d->tkt_no, sizeof d->tkt_no, "%s%" PRId64, o->ticket_prefix, number);
    }
    if (n < 0 || (size_t)n >= sizeof d->tkt_no) {
        st->host->reason(st->ctx, "create-order.ticket_too_long",
                         "ticket number %" PRId64 " with prefix '%s' does not fit TKT_NO (%d"
                         " characters): shorten ticket_prefix",
                         number, o->ticket_prefix, LEN_TKT_NO);
        return CPB_FAIL;
    }
    return CPB_OK;
}

/* ---- the rows ----------------------------------------------------------- */

static enum cpb_status insert_header(struct create_order_state *st, const struct doc *d,
                                     json_t *order, size_t nlines)
{
    const struct create_order_options *o = st->opt;
    char guid[37];
    st->host->uuid(st->ctx, guid);
    const struct stage_arg a[] = {
        stage_arg_int(d->doc_id),
        stage_arg_text(guid),
        stage_arg_text("O"),
        stage_arg_text("T"),
        stage_arg_text(o->store),
        stage_arg_text(o->station),
        stage_arg_text(o->drawer),
        stage_arg_text(d->tkt_no),
        stage_arg_text(d->cust_no),
        stage_arg_time(d->created_ms),
        stage_arg_text(o->user),
        stage_arg_text(d->location),
        stage_arg_text(d->location),
        stage_arg_int(1),
        stage_arg_int(2),
        stage_arg_int((int64_t)nlines),
        stage_arg_int(0),
        stage_arg_int(0),
        stage_arg_dec(0),
        stage_arg_text("N"),
        stage_arg_time(d->now_ms),
        stage_arg_text(o->user),
        stage_arg_text(stage_json_str(order, "number")),
    };
    return stage_db_exec(st->host, st->ctx, header_sql[o->ref_column], a, STAGE_NARGS(a), NULL);
}

/* The PS_DOC_LIN INSERT of `rows` (1..LINE_CHUNK) rows into out (outlen
 * bytes): line_head, then "(?, ...)" LINE_COLS times per row. Returns 0, or
 * -1 when out is too small. */
static int build_line_sql(char *out, size_t outlen, unsigned rows)
{
    size_t len = 0;
    int n = snprintf(out, outlen, "%s", line_head);
    if (n < 0 || (size_t)n >= outlen) {
        return -1;
    }
    len = (size_t)n;
    for (unsigned r = 0; r < rows; r++) {
        for (unsigned c = 0; c < LINE_COLS; c++) {
            const char *pre = c == 0 ? (r == 0 ? "(" : ", (") : ", ";
            const char *post = c + 1 == LINE_COLS ? ")" : "";
            n = snprintf(out + len, outlen - len, "%s?%s", pre, post);
            if (n < 0 || (size_t)n >= outlen - len) {
                return -1;
            }
            len += (size_t)n;
        }
    }
    return 0;
}

/* Bind line i (0-based) of the order as row `row` (0-based) of a
 * multi-row PS_DOC_LIN INSERT. */
static enum cpb_status bind_line(struct create_order_state *st, const struct doc *d,
                                 struct cpb_stmt *stmt, unsigned row, size_t i, json_t *line,
                                 json_t *items)
{
    const struct create_order_options *o = st->opt;
    char descr[4 * LEN_DESCR + 1];
    char guid[37];
    stage_utf8_cut(stage_json_str(line, "name"), LEN_DESCR, descr, sizeof descr);
    st->host->uuid(st->ctx, guid);
    struct stage_arg a[] = {
        stage_arg_int(d->doc_id),
        stage_arg_int((int64_t)i + 1),
        stage_arg_text(o->store),
        stage_arg_text(o->station),
        stage_arg_text(d->tkt_no),
        stage_arg_text("O"),
        stage_arg_text(json_string_value(json_array_get(items, i))),
        stage_arg_text(or_null(descr)),
        stage_arg_dec(stage_json_int(line, "qty", 0)),
        stage_arg_text("0"),
        stage_arg_dec(stage_json_int(line, "unit_price", 0)),
        stage_arg_dec(stage_cents(stage_json_int(line, "total", 0))),
        stage_arg_dec(stage_cents(stage_json_int(line, "subtotal", 0))),
        stage_arg_dec(stage_cents(stage_json_int(line, "total", 0))),
        stage_arg_text("Y"),
        stage_arg_text(d->location),
        stage_arg_text(d->location),
        stage_arg_text(guid),
    };
    /* bind_text copies: descr and guid may be reused for the next row. */
    return stage_db_bind_at(st->host, stmt, row * LINE_COLS + 1, a, STAGE_NARGS(a));
}

/* PS_DOC_LIN, LINE_CHUNK rows per statement (the last one shorter). */
static enum cpb_status insert_lines(struct create_order_state *st, const struct doc *d,
                                    json_t *order, json_t *items)
{
    json_t *lines = json_object_get(order, "lines");
    size_t n = json_array_size(lines);
    enum cpb_status rc = CPB_OK;

    for (size_t start = 0; rc == CPB_OK && start < n; start += LINE_CHUNK) {
        unsigned rows = (unsigned)(n - start < LINE_CHUNK ? n - start : LINE_CHUNK);
        struct cpb_stmt *stmt = NULL;
        rc = st->host->db_prepare(st->ctx, st->line_sql[rows - 1], &stmt);
        for (unsigned r = 0; rc == CPB_OK && r < rows; r++) {
            rc = bind_line(st, d, stmt, r, start + r, json_array_get(lines, start + r), items);
        }
        if (rc == CPB_OK) {
            rc = st->host->db_execute(stmt, NULL);
        }
        st->host->db_finalize(stmt);
    }
    return rc;
}

/* PS_DOC_HDR_TOT (TOT_TYP 'O') and the misc charges. */
static enum cpb_status insert_totals(struct create_order_state *st, const struct doc *d,
                                     json_t *order, size_t nlines)
{
    json_t *t = json_object_get(order, "totals");
    int64_t sub = stage_cents(stage_json_int(t, "lines_subtotal", 0));
    int64_t lines = stage_cents(stage_json_int(t, "lines_total", 0));
    int64_t tax = stage_cents(stage_json_int(t, "tax", 0));
    int64_t ship = stage_cents(stage_json_int(t, "shipping", 0));
    int64_t fees = stage_cents(stage_json_int(t, "fees", 0));
    int64_t total = stage_cents(stage_json_int(t, "total", 0));
    int64_t tendered = total; /* the one payment covers the order total */
    int64_t fee_no = st->opt->fee_misc_charge;
    enum cpb_status rc = CPB_OK;

    struct stage_arg a[] = {
        stage_arg_int(d->doc_id),
        stage_arg_text("O"),
        stage_arg_int((int64_t)nlines),
        stage_arg_dec(sub),
        stage_arg_dec(tax),
        stage_arg_dec(tax),
        stage_arg_dec(ship + fees),
        stage_arg_dec(0),
        stage_arg_dec(sub - lines),
        stage_arg_dec(total),
        stage_arg_dec(total - tendered),
        stage_arg_dec(tendered),
        stage_arg_dec(0),
        stage_arg_dec(0),
        stage_arg_dec(0),
        stage_arg_dec(0),
    };
    rc = stage_db_exec(st->host, st->ctx, total_sql, a, STAGE_NARGS(a), NULL);

    /* Shipping in misc charge 1; fees in their own charge, or with it. */
    int64_t charge1 = ship;
    bool fees_apart = fee_no >= 2;
    if (!fees_apart) {
        charge1 += fees;
    }
    if (rc == CPB_OK && (ship > 0 || (!fees_apart && fees != 0))) {
        struct stage_arg m[] = {stage_arg_int(d->doc_id), stage_arg_text("O"),    stage_arg_int(1),
                                stage_arg_text("A"),      stage_arg_dec(charge1), stage_arg_dec(0)};
        rc = stage_db_exec(st->host, st->ctx, misc_sql, m, STAGE_NARGS(m), NULL);
    }
    if (rc == CPB_OK && fees_apart && fees != 0) {
        struct stage_arg m[] = {stage_arg_int(d->doc_id), stage_arg_text("O"),
                                stage_arg_int(fee_no),    stage_arg_text("A"),
                                stage_arg_dec(fees),      stage_arg_dec(0)};
        rc = stage_db_exec(st->host, st->ctx, misc_sql, m, STAGE_NARGS(m), NULL);
    }
    return rc;
}

/* True when the address object has nothing to ship to. */
static bool address_empty(json_t *a)
{
    return stage_json_str(a, "name")[0] == '\0' && stage_json_str(a, "company")[0] == '\0' &&
           stage_json_str(a, "address_1")[0] == '\0' && stage_json_str(a, "city")[0] == '\0' &&
           stage_json_str(a, "postcode")[0] == '\0';
}

/* Bind one PS_DOC_CONTACT row from a normalized address (email may be
 * NULL) as row `row` (0-based) of contact_sql. */
static enum cpb_status bind_contact(struct create_order_state *st, const struct doc *d,
                                    struct cpb_stmt *stmt, unsigned row, int64_t contact_id,
                                    json_t *addr, const char *email)
{
    const char *company = stage_json_str(addr, "company");
    bool business = company[0] != '\0';
    char nam[4 * LEN_NAM + 1];
    stage_utf8_cut(business ? company : stage_json_str(addr, "name"), LEN_NAM, nam, sizeof nam);
    struct stage_arg a[] = {
        stage_arg_int(d->doc_id),
        stage_arg_int(contact_id),
        stage_arg_text(or_null(nam)),
        stage_arg_text(or_null(stage_json_str(addr, "first_name"))),
        stage_arg_text(or_null(stage_json_str(addr, "last_name"))),
        stage_arg_text(or_null(stage_json_str(addr, "address_1"))),
        stage_arg_text(or_null(stage_json_str(addr, "address_2"))),
        stage_arg_text(NULL),
        stage_arg_text(or_null(stage_json_str(addr, "city"))),
        stage_arg_text(or_null(stage_json_str(addr, "state"))),
        stage_arg_text(or_null(stage_json_str(addr, "postcode"))),
        stage_arg_text(or_null(stage_json_str(addr, "country"))),
        stage_arg_text(or_null(stage_json_str(addr, "phone"))),
        stage_arg_text(or_null(email)),
        stage_arg_text(business ? "B" : "P"),
    };
    return stage_db_bind_at(st->host, stmt, row * CONTACT_COLS + 1, a, STAGE_NARGS(a));
}

/* Both PS_DOC_CONTACT rows: bill-to 1, and ship-to 2 (the billing address
 * when there is no shipping address). */
static enum cpb_status insert_contacts(struct create_order_state *st, const struct doc *d,
                                       json_t *billing, json_t *shipping)
{
    struct cpb_stmt *stmt = NULL;
    const char *email = stage_json_str(billing, "email");
    enum cpb_status rc = st->host->db_prepare(st->ctx, contact_sql, &stmt);
    if (rc == CPB_OK) {
        rc = bind_contact(st, d, stmt, 0, 1, billing, email);
    }
    if (rc == CPB_OK) {
        if (!json_is_object(shipping) || address_empty(shipping)) {
            rc = bind_contact(st, d, stmt, 1, 2, billing, email);
        } else {
            rc = bind_contact(st, d, stmt, 1, 2, shipping, NULL);
        }
    }
    if (rc == CPB_OK) {
        rc = st->host->db_execute(stmt, NULL);
    }
    st->host->db_finalize(stmt);
    return rc;
}

/* Contacts, the payment and the note. */
static enum cpb_status insert_rest(struct create_order_state *st, const struct doc *d,
                                   json_t *order)
{
    const struct create_order_options *o = st->opt;
    json_t *billing = json_object_get(order, "billing");
    json_t *shipping = json_object_get(order, "shipping");
    int64_t total = stage_cents(stage_json_int(json_object_get(order, "totals"), "total", 0));
    char descr[4 * LEN_PMT_DESCR + 1];
    const char *title = stage_json_str(order, "payment_title");
    enum cpb_status rc = CPB_OK;

    rc = insert_contacts(st, d, billing, shipping);
    if (rc != CPB_OK) {
        return rc;
    }
    stage_utf8_cut(title[0] != '\0' ? title : stage_json_str(order, "payment_method"),
                   LEN_PMT_DESCR, descr, sizeof descr);
    struct stage_arg p[] = {
        stage_arg_int(d->doc_id),    stage_arg_int(1),
        stage_arg_text(o->pay_code), stage_arg_dec(total),
        stage_arg_dec(total),        stage_arg_text(o->payment_final ? "Y" : "N"),
        stage_arg_time(d->paid_ms),  stage_arg_text(or_null(descr)),
        stage_arg_text(o->store),    stage_arg_text(o->station),
        stage_arg_text(d->tkt_no),
    };
    rc = stage_db_exec(st->host, st->ctx, payment_sql, p, STAGE_NARGS(p), NULL);
    const char *note = stage_json_str(order, "customer_note");
    if (rc == CPB_OK && note[0] != '\0') {
        struct stage_arg n[] = {stage_arg_int(d->doc_id), stage_arg_text(NOTE_ID),
                                stage_arg_text(note)};
        rc = stage_db_exec(st->host, st->ctx, note_sql, n, STAGE_NARGS(n), NULL);
    }
    return rc;
}

/* ---- the stage ---------------------------------------------------------- */

/* Adopt the existing document `doc_id`: record it, write nothing. */
static enum cpb_status adopt(struct create_order_state *st, struct cpb_record *rec, int64_t doc_id)
{
    char tkt[LEN_TKT_NO + 1];
    char loc[LEN_LOC_ID + 1];
    char *out[] = {tkt, loc};
    const size_t outlen[] = {sizeof tkt, sizeof loc};
    enum cpb_status rc = query_text(st, adopt_sql, NULL, doc_id, 2, out, outlen);
    if (rc == CPB_SKIP) {
        st->host->reason(st->ctx, "create-order.adopt_missing",
                         "document %" PRId64 " that validate found is gone; will look again",
                         doc_id);
        return CPB_RETRY;
    }
    if (rc != CPB_OK) {
        return rc;
    }
    if (loc[0] == '\0') {
        snprintf(loc, sizeof loc, "%s", stage_json_str(rec->result, "cp_stk_loc_id"));
    }
    if (json_object_set_new(rec->result, "cp_doc_id", json_integer(doc_id)) != 0 ||
        json_object_set_new(rec->result, "cp_tkt_no", json_string(tkt)) != 0 ||
        json_object_set_new(rec->result, "cp_stk_loc_id", json_string(loc)) != 0 ||
        json_object_set_new(rec->result, "cp_adopted", json_true()) != 0) {
        st->host->reason(st->ctx, "create-order.oom", "out of memory");
        return CPB_RETRY;
    }
    st->host->log(st->ctx, CPB_LOG_INFO, "order %s: adopted document %" PRId64 ", ticket %s",
                  rec->external_id != NULL ? rec->external_id : "?", doc_id, tkt);
    return CPB_OK;
}

/* The stock location: the option, validate's, or the store's. */
static enum cpb_status pick_location(struct create_order_state *st, struct cpb_record *rec,
                                     struct doc *d)
{
    const char *from_validate = json_string_value(json_object_get(rec->result, "cp_stk_loc_id"));
    char *out[] = {d->location};
    const size_t outlen[] = {sizeof d->location};
    if (st->opt->location != NULL) {
        snprintf(d->location, sizeof d->location, "%s", st->opt->location);
        return CPB_OK;
    }
    if (from_validate != NULL && from_validate[0] != '\0' &&
        strlen(from_validate) < sizeof d->location) {
        snprintf(d->location, sizeof d->location, "%s", from_validate);
        return CPB_OK;
    }
    enum cpb_status rc = query_text(st, store_location_sql, st->opt->store, 0, 1, out, outlen);
    if (rc == CPB_OK && d->location[0] == '\0') {
        rc = CPB_SKIP;
    }
    if (rc == CPB_SKIP) {
        st->host->reason(st->ctx, "store.no_location",
                         "store '%s' has no PS_STR_CFG_PS.STK_LOC_ID: set it, or set"
                         " create-order's location option",
                         st->opt->store);
        rc = CPB_FAIL;
    }
    return rc;
}

/* Keeps host, ctx and options (borrowed until fini); *state is new. */
static int create_order_init(const struct cpb_host *host, struct cpb_ctx *ctx, const void *options,
                             void **state)
{
    struct create_order_state *st = stage_state_new(host, ctx, sizeof *st, state);
    if (st == NULL) {
        return -1;
    }
    st->host = host;
    st->ctx = ctx;
    st->opt = options;
    for (unsigned k = 0; k < LINE_CHUNK; k++) {
        if (build_line_sql(st->line_sql[k], sizeof st->line_sql[k], k + 1) != 0) {
            host->log(ctx, CPB_LOG_ERROR, "internal error: PS_DOC_LIN statement too long");
            return -1;
        }
    }
    /* "<prefix><store>-000001" must fit TKT_NO. */
    if (st->opt->ticket_counter == TICKET_ENGINE &&
        strlen(st->opt->ticket_prefix) + strlen(st->opt->store) + 7 > LEN_TKT_NO) {
        host->log(ctx, CPB_LOG_ERROR,
                  "ticket numbers \"%s%s-000001\" would be longer than TKT_NO (%d characters):"
                  " shorten ticket_prefix",
                  st->opt->ticket_prefix, st->opt->store, LEN_TKT_NO);
        return -1;
    }
    return 0;
}

/* `rec` is borrowed; adds cp_doc_id, cp_tkt_no, cp_stk_loc_id (and, when
 * adopting, cp_adopted) to rec->result. */
static enum cpb_status create_order_process(void *state, struct cpb_record *rec)
{
    struct create_order_state *st = state;
    json_t *order = rec->order;
    json_t *result = rec->result;
    struct doc d;
    enum cpb_status rc = CPB_OK;

    memset(&d, 0, sizeof d);
    json_t *lines = json_object_get(order, "lines");
    json_t *items = json_object_get(result, "cp_items");
    d.cust_no = json_string_value(json_object_get(result, "cp_cust_no"));
    size_t n = json_array_size(lines);
    if (!json_is_object(order) || d.cust_no == NULL || d.cust_no[0] == '\0' ||
        !json_is_array(items) || n == 0 || json_array_size(items) != n) {
        st->host->reason(st->ctx, "create-order.needs_validate",
                         "create-order needs validate's results (cp_cust_no, cp_items): put"
                         " the validate stage before create-order in the pipeline");
        return CPB_FAIL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *item = json_string_value(json_array_get(items, i));
        if (item == NULL || item[0] == '\0') {
            st->host->reason(st->ctx, "create-order.needs_validate",
                             "validate resolved no item for line %zu", i + 1);
            return CPB_FAIL;
        }
    }
    json_t *adopt_id = json_object_get(result, "cp_adopt_doc_id");
    if (json_is_integer(adopt_id)) {
        return adopt(st, rec, (int64_t)json_integer_value(adopt_id));
    }

    d.now_ms = st->host->now_ms(st->ctx);
    if (stage_parse_utc(json_string_value(json_object_get(order, "created")), true,
                        &d.created_ms) != 0) {
        d.created_ms = d.now_ms;
    }
    if (stage_parse_utc(json_string_value(json_object_get(order, "paid")), true, &d.paid_ms) != 0) {
        d.paid_ms = d.created_ms;
    }
    rc = pick_location(st, rec, &d);
    if (rc == CPB_OK) {
        rc = next_counter(st, "DOC_ID", false, &d.doc_id);
    }
    if (rc == CPB_OK) {
        rc = next_ticket(st, &d);
    }
    if (rc == CPB_OK) {
        rc = insert_header(st, &d, order, n);
    }
    if (rc == CPB_OK) {
        rc = insert_lines(st, &d, order, items);
    }
    if (rc == CPB_OK) {
        rc = insert_totals(st, &d, order, n);
    }
    if (rc == CPB_OK) {
        rc = insert_rest(st, &d, order);
    }
    if (rc != CPB_OK) {
        return rc; /* the host or this stage recorded the reason */
    }
    if (json_object_set_new(result, "cp_doc_id", json_integer(d.doc_id)) != 0 ||
        json_object_set_new(result, "cp_tkt_no", json_string(d.tkt_no)) != 0 ||
        json_object_set_new(result, "cp_stk_loc_id", json_string(d.location)) != 0) {
        st->host->reason(st->ctx, "create-order.oom", "out of memory");
        return CPB_RETRY;
    }
    st->host->log(st->ctx, CPB_LOG_DEBUG, "order %s: document %" PRId64 ", ticket %s",
                  rec->external_id != NULL ? rec->external_id : "?", d.doc_id, d.tkt_no);
    return CPB_OK;
}

/* The stage descriptor: the one exported thing (through cpb_stage_entry, or
 * by name in static builds); constant, borrowed by the host. */
extern const struct cpb_stage create_order_stage;
const struct cpb_stage create_order_stage = {
    CPB_STAGE_HEADER,
    .name = "create-order",
    .version = "1.0.0",
    .summary = "Write a validated order into Counterpoint as an order document.",
    .kind = CPB_STEP,
    .options = create_order_options_table,
    .options_size = sizeof(struct create_order_options),
    .init = create_order_init,
    .process = create_order_process,
    .fini = stage_state_free, /* the state owns nothing else */
};

CPB_STAGE_ENTRY(create_order_stage);
