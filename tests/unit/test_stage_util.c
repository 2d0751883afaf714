/*
 * test_stage_util.c — the helpers stages share (plugins/common/stage_util.c),
 * compiled into this program as into every stage: JSON members, rounding
 * half away from zero (negative values, exact halves, the int64 limits),
 * UTF-8 floors and cuts at multi-byte boundaries, quoting of hostile text,
 * UTC dates (and the junk and impossible dates they refuse), and the bound
 * argument and statement helpers through the engine's real host services on
 * real SQLite (its ODBC driver) and real PostgreSQL, plus state allocation
 * and the init failure reason.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpbtest.h"
#include "engine/host.h"
#include "lib/err.h"
#include "services/db.h"
#include "stage_util.h"

/* ---- JSON ------------------------------------------------------------------ */

static void test_json(void)
{
    json_t *o = json_pack("{s:I, s:s, s:f, s:s, s:n, s:[i]}", "n", (json_int_t)INT64_MAX, "s",
                          "text", "real", 5.0, "num", "5", "nul", "list", 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    CU_ASSERT_EQUAL(stage_json_int(o, "n", 0), INT64_MAX);
    CU_ASSERT_EQUAL(stage_json_int(o, "missing", -7), -7);
    CU_ASSERT_EQUAL(stage_json_int(o, "num", -7), -7); /* a string is no integer */
    CU_ASSERT_EQUAL(stage_json_int(o, "real", -7), -7);
    CU_ASSERT_EQUAL(stage_json_int(o, "nul", -7), -7);
    CU_ASSERT_EQUAL(stage_json_int(NULL, "n", 3), 3);
    CU_ASSERT_EQUAL(stage_json_int(json_object_get(o, "list"), "n", 3), 3);

    /* Borrowed from the object, not a copy. */
    CU_ASSERT_PTR_EQUAL(stage_json_str(o, "s"), json_string_value(json_object_get(o, "s")));
    CU_ASSERT_STRING_EQUAL(stage_json_str(o, "s"), "text");
    CU_ASSERT_STRING_EQUAL(stage_json_str(o, "n"), "");
    CU_ASSERT_STRING_EQUAL(stage_json_str(o, "missing"), "");
    CU_ASSERT_STRING_EQUAL(stage_json_str(NULL, "s"), "");
    CU_ASSERT_STRING_EQUAL(stage_json_str(json_object_get(o, "list"), "s"), "");
    json_decref(o);
}

/* ---- money ----------------------------------------------------------------- */

static void test_div_round(void)
{
    static const struct {
        int64_t num, den, want;
    } cases[] = {
        {0, 7, 0},
        {4, 2, 2},
        {5, 2, 3}, /* 2.5 */
        {-5, 2, -3},
        {7, 2, 4}, /* 3.5 */
        {-7, 2, -4},
        {1, 3, 0},
        {2, 3, 1},
        {-1, 3, 0},
        {-2, 3, -1},
        {149, 100, 1},
        {150, 100, 2},
        {-149, 100, -1},
        {-150, 100, -2},
        {19990000, 3, 6663333}, /* 6663333.33 */
        {20000000, 3, 6666667}, /* 6666666.67 */
        {INT64_MAX, 1, INT64_MAX},
        {INT64_MIN, 1, INT64_MIN},
        {INT64_MAX, 2, INT64_C(4611686018427387904)},      /* ...903.5 */
        {INT64_MIN + 1, 2, -INT64_C(4611686018427387904)}, /* ...903.5 */
        {INT64_MIN, 2, -INT64_C(4611686018427387904)},
        {INT64_MAX, INT64_MAX, 1},
        {INT64_MAX / 2, INT64_MAX, 0}, /* just below a half */
        {INT64_MAX / 2 + 1, INT64_MAX, 1},
        {5, 0, 0}, /* no divisor: 0, never a trap */
        {5, -2, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t got = stage_div_round(cases[i].num, cases[i].den);
        if (got != cases[i].want) {
            fprintf(stderr, "stage_div_round(%lld, %lld) = %lld, want %lld\n",
                    (long long)cases[i].num, (long long)cases[i].den, (long long)got,
                    (long long)cases[i].want);
        }
        CU_ASSERT_EQUAL(got, cases[i].want);
    }
}

static void test_cents(void)
{
    static const struct {
        int64_t v, want;
    } cases[] = {
        {0, 0},
        {49, 0},
        {50, 100}, /* 0.0050 -> 0.01 */
        {51, 100},
        {149, 100},
        {150, 200},
        {12345, 12300},
        {12350, 12400},
        {1000000, 1000000},
        {-49, 0},
        {-50, -100}, /* -0.0050 -> -0.01, away from zero */
        {-51, -100},
        {-149, -100},
        {-150, -200},
        {-12350, -12400},
        {-12349, -12300},
        {INT64_MAX, INT64_C(9223372036854775800)},
        {INT64_C(9223372036854775750), INT64_C(9223372036854775800)},
        {INT64_C(9223372036854775749), INT64_C(9223372036854775700)},
        {INT64_MIN, -INT64_C(9223372036854775800)},
        {-INT64_C(9223372036854775750), -INT64_C(9223372036854775800)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t got = stage_cents(cases[i].v);
        if (got != cases[i].want) {
            fprintf(stderr, "stage_cents(%lld) = %lld, want %lld\n", (long long)cases[i].v,
                    (long long)got, (long long)cases[i].want);
        }
        CU_ASSERT_EQUAL(got, cases[i].want);
    }
}

/* ---- text ------------------------------------------------------------------ */

#define E_ACUTE "\xC3\xA9"         /* é, 2 bytes */
#define EURO    "\xE2\x82\xAC"     /* €, 3 bytes */
#define SMILE   "\xF0\x9F\x98\x80" /* U+1F600, 4 bytes */

static void test_utf8_floor(void)
{
    const char *s = "a" E_ACUTE EURO SMILE "z";
    /* bytes: a(0) é(1,2) €(3..5) smile(6..9) z(10) NUL(11) */
    static const size_t want[] = {0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10, 11};
    for (size_t len = 0; len < sizeof want / sizeof want[0]; len++) {
        CU_ASSERT_EQUAL(stage_utf8_floor(s, len), want[len]);
    }
    /* Nothing but continuation bytes: nothing is a whole character. */
    CU_ASSERT_EQUAL(stage_utf8_floor("\x80\x80\x80", 2), 0);
    CU_ASSERT_EQUAL(stage_utf8_floor("", 0), 0);
}

static void test_utf8_cut(void)
{
    char out[64];
    stage_utf8_cut("h" E_ACUTE "llo", 3, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "h" E_ACUTE "l");
    stage_utf8_cut(EURO EURO EURO, 2, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, EURO EURO);
    stage_utf8_cut(SMILE "a", 1, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, SMILE);
    stage_utf8_cut("abc", 3, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "abc");
    stage_utf8_cut("abc", 0, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "");

    /* The buffer, not the count, decides: whole characters only. */
    stage_utf8_cut(EURO EURO EURO, 10, out, 7);
    CU_ASSERT_STRING_EQUAL(out, EURO EURO);
    stage_utf8_cut(EURO EURO EURO, 10, out, 6);
    CU_ASSERT_STRING_EQUAL(out, EURO);
    stage_utf8_cut(EURO, 10, out, 3);
    CU_ASSERT_STRING_EQUAL(out, "");
    stage_utf8_cut("abc", 10, out, 1);
    CU_ASSERT_STRING_EQUAL(out, "");
    out[0] = 'x';
    stage_utf8_cut("abc", 10, out, 0); /* no room at all: nothing written */
    CU_ASSERT_EQUAL(out[0], 'x');

    /* A character cut short by the end of the text is dropped, never read
     * past the NUL. */
    stage_utf8_cut("ab\xE2\x82", 10, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "ab");
    stage_utf8_cut("\xFF", 10, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "");
    stage_utf8_cut(NULL, 10, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "");
}

static void test_quote(void)
{
    char out[4 * 40 + 8];
    char big[200];

    stage_quote("O'Brien\n\x7f"
                "x",
                40, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "O?Brien??x");
    stage_quote(NULL, 40, out, sizeof out);
    CU_ASSERT_STRING_EQUAL(out, "");

    /* Exactly max_chars: no "...". One more: cut and marked. */
    memset(big, 'a', 40);
    big[40] = '\0';
    stage_quote(big, 40, out, sizeof out);
    CU_ASSERT_EQUAL(strlen(out), 40);
    big[40] = 'b';
    big[41] = '\0';
    stage_quote(big, 40, out, sizeof out);
    CU_ASSERT_EQUAL(strlen(out), 43);
    CU_ASSERT_STRING_EQUAL(out + 40, "...");

    /* Characters, not bytes, are counted: 41 four-byte characters keep 40. */
    for (size_t i = 0; i < 41; i++) {
        memcpy(big + 4 * i, SMILE, 4);
    }
    big[4 * 41] = '\0';
    char wide[4 * 41 + 8];
    stage_quote(big, 41, wide, sizeof wide);
    CU_ASSERT_STRING_EQUAL(wide, big);
    stage_quote(big, 40, wide, sizeof wide);
    CU_ASSERT_EQUAL(strlen(wide), 4 * 40 + 3);
    CU_ASSERT_EQUAL(memcmp(wide, big, 4 * 40), 0);
    CU_ASSERT_STRING_EQUAL(wide + 4 * 40, "...");

    /* A buffer too small stops inside a character: the whole character is
     * dropped (the text stays valid UTF-8) and the cut is marked. */
    char small[10];
    memset(small, 0x80 | 0x29, sizeof small); /* continuation-looking junk */
    stage_quote(E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE, 40, small, sizeof small);
    CU_ASSERT_STRING_EQUAL(small, E_ACUTE E_ACUTE "...");
    memset(small, 0x80 | 0x29, sizeof small);
    stage_quote(EURO EURO EURO, 40, small, sizeof small);
    CU_ASSERT_STRING_EQUAL(small, EURO "...");

    /* Tiny buffers never overflow: room for the mark only, then nothing. */
    char tiny[5];
    stage_quote("abcdef", 40, tiny, sizeof tiny);
    CU_ASSERT_STRING_EQUAL(tiny, "...");
    stage_quote("abcdef", 40, tiny, 4);
    CU_ASSERT_STRING_EQUAL(tiny, "...");
    stage_quote("abcdef", 40, tiny, 3);
    CU_ASSERT_STRING_EQUAL(tiny, "");
    stage_quote("abcdef", 40, tiny, 1);
    CU_ASSERT_STRING_EQUAL(tiny, "");
    tiny[0] = 'x';
    stage_quote("abcdef", 40, tiny, 0);
    CU_ASSERT_EQUAL(tiny[0], 'x');
}

static void test_copy(void)
{
    char out[4];
    CU_ASSERT_EQUAL(stage_copy("abc", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "abc");
    CU_ASSERT_EQUAL(stage_copy("abcd", out, sizeof out), -1);
    CU_ASSERT_STRING_EQUAL(out, "abc"); /* cut, still terminated */
    CU_ASSERT_EQUAL(stage_copy(NULL, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_EQUAL(stage_copy("", out, 1), 0);
    CU_ASSERT_EQUAL(stage_copy("a", out, 1), -1);
}

/* ---- time ------------------------------------------------------------------ */

static void test_parse_utc(void)
{
    int64_t ms = 0;
    CU_ASSERT_EQUAL(stage_parse_utc("2024-02-29T12:34:56", true, &ms), 0);
    CU_ASSERT_EQUAL(ms, INT64_C(1709210096000));
    CU_ASSERT_EQUAL(stage_parse_utc("1970-01-01T00:00:00", true, &ms), 0);
    CU_ASSERT_EQUAL(ms, 0);
    CU_ASSERT_EQUAL(stage_parse_utc("2038-01-19T03:14:08", true, &ms), 0);
    CU_ASSERT_EQUAL(ms, INT64_C(2147483648000));
    CU_ASSERT_EQUAL(stage_parse_utc("9999-12-31T23:59:59", true, &ms), 0);
    CU_ASSERT_EQUAL(ms, INT64_C(253402300799000));
    CU_ASSERT_EQUAL(stage_parse_utc("2015-01-01", false, &ms), 0);
    CU_ASSERT_EQUAL(ms, INT64_C(1420070400000));
    CU_ASSERT_EQUAL(stage_parse_utc("2024-02-29", false, &ms), 0);

    const char *const junk_time[] = {
        "",
        "junk",
        "2024-02-30T00:00:00", /* no such day */
        "2023-02-29T00:00:00", /* not a leap year */
        "2024-04-31T00:00:00",
        "2024-13-01T00:00:00",
        "2024-00-10T00:00:00",
        "2024-01-00T00:00:00",
        "2024-01-01T24:00:00",
        "2024-01-01T23:60:00",
        "2024-01-01T23:59:60", /* a leap second: not a time this side keeps */
        "2024-01-01T12:00:60", /* (strptime takes it; timegm makes it 12:01) */
        "2024-12-31T23:59:61",
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00.5",
        "2024-01-01T00:00:00+01:00",
        "2024-01-01 00:00:00",
        "2024-01-01T00:00",
        "2024-01-01",
        "2024-01-01T00:00:00\n",
        "2024-01-01T00:00:00 x",
        "2024/01/01T00:00:00",
        "\xEF\xBC\x92\xEF\xBC\x90\xEF\xBC\x92\xEF\xBC\x94-01-01T00:00:00", /* fullwidth */
        "2024-01-01T00:00:00\xC3\xA9",
    };
    for (size_t i = 0; i < sizeof junk_time / sizeof junk_time[0]; i++) {
        ms = 42;
        int rc = stage_parse_utc(junk_time[i], true, &ms);
        if (rc != -1) {
            fprintf(stderr, "stage_parse_utc accepted \"%s\"\n", junk_time[i]);
        }
        CU_ASSERT_EQUAL(rc, -1);
        CU_ASSERT_EQUAL(ms, 42); /* untouched */
    }
    const char *const junk_date[] = {"",        "2015-02-30", "2015-1-1x", "2015-01-01T00:00:00",
                                     "2015-01", "2015-01-01 "};
    for (size_t i = 0; i < sizeof junk_date / sizeof junk_date[0]; i++) {
        ms = 42;
        CU_ASSERT_EQUAL(stage_parse_utc(junk_date[i], false, &ms), -1);
        CU_ASSERT_EQUAL(ms, 42);
    }
    CU_ASSERT_EQUAL(stage_parse_utc(NULL, true, &ms), -1);
    CU_ASSERT_EQUAL(stage_parse_utc(NULL, false, &ms), -1);
    CU_ASSERT_EQUAL(ms, 42);
}

/* ---- state and init ---------------------------------------------------------- */

static void test_state(void)
{
    struct host_env env;
    memset(&env, 0, sizeof env);
    env.pipeline = "util";
    struct cpb_ctx *ctx = host_ctx_new("util", &env);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    const struct cpb_host *host = host_services();

    void *state = (void *)&env; /* overwritten */
    unsigned char *p = stage_state_new(host, ctx, 64, &state);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_PTR_EQUAL(state, p);
    size_t nonzero = 0;
    for (size_t i = 0; i < 64; i++) {
        nonzero += p[i] != 0;
    }
    CU_ASSERT_EQUAL(nonzero, 0);
    stage_state_free(state);
    stage_state_free(NULL);

    host_reason_clear(ctx);
    CU_ASSERT_EQUAL(stage_init_fail(host, ctx, "statuses: \"%.5s\" is %d", "abcdefgh", 7), -1);
    CU_ASSERT_STRING_EQUAL(host_reason_code(ctx), "config.invalid");
    CU_ASSERT_STRING_EQUAL(host_reason_message(ctx), "statuses: \"abcde\" is 7");

    /* A message longer than the buffer is cut, not overflowed. */
    char longer[2000];
    memset(longer, 'm', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    CU_ASSERT_EQUAL(stage_init_fail(host, ctx, "%s", longer), -1);
    CU_ASSERT_STRING_EQUAL(host_reason_code(ctx), "config.invalid");
    size_t len = strlen(host_reason_message(ctx));
    CU_ASSERT(len > 0 && len < 600);
    host_ctx_free(ctx);
}

/* ---- database ---------------------------------------------------------------- */

static void db_roundtrip(const char *conn, enum db_dialect dialect)
{
    struct db *db = NULL;
    struct err e = {0};
    struct host_env env;
    struct cpb_stmt *stmt = NULL;
    int64_t rows = -1;
    const char *text = NULL;
    int64_t v = 0;
    bool null = true;

    if (db_connect(conn, dialect, 10000, &db, &e) != 0) {
        fprintf(stderr, "test_stage_util: %s\n", e.msg);
        CU_FAIL_FATAL("cannot connect to the test database");
    }
    CU_ASSERT_EQUAL_FATAL(db_exec(db, "CREATE TEMPORARY TABLE util_t (ID INTEGER, NAM "
                                      "VARCHAR(40), AMT DECIMAL(15,4), AT TIMESTAMP)"),
                          CPB_OK);
    memset(&env, 0, sizeof env);
    env.db = db;
    env.in_order_tx = true;
    env.pipeline = "util";
    struct cpb_ctx *ctx = host_ctx_new("util", &env);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    const struct cpb_host *host = host_services();
    CU_ASSERT_EQUAL_FATAL(db_begin(db), CPB_OK);

    /* Every type of argument, in order, and SQL NULL. */
    const char *ins = "INSERT INTO util_t (ID, NAM, AMT, AT) VALUES (?, ?, ?, ?)";
    const struct stage_arg a1[] = {stage_arg_int(1), stage_arg_text("caf" E_ACUTE),
                                   stage_arg_dec(-123456), stage_arg_time(INT64_C(1709210096123))};
    CU_ASSERT_EQUAL(stage_db_exec(host, ctx, ins, a1, STAGE_NARGS(a1), &rows), CPB_OK);
    CU_ASSERT_EQUAL(rows, 1);
    const struct stage_arg a2[] = {stage_arg_int(2), stage_arg_text(NULL), stage_arg_dec(5),
                                   stage_arg_time(0)};
    CU_ASSERT_EQUAL(stage_db_exec(host, ctx, ins, a2, STAGE_NARGS(a2), NULL), CPB_OK);

    /* A query prepared once and run again with other arguments. */
    const char *sel = "SELECT NAM, AMT, AT FROM util_t WHERE ID = ?";
    const struct stage_arg k1[] = {stage_arg_int(1)};
    CU_ASSERT_EQUAL_FATAL(stage_db_query(host, ctx, sel, k1, 1, &stmt), CPB_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(stmt);
    CU_ASSERT_EQUAL(host->db_col_text(stmt, 1, &text), CPB_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_STRING_EQUAL(text, "caf" E_ACUTE);
    CU_ASSERT_EQUAL(host->db_col_decimal(stmt, 2, &v, &null), CPB_OK);
    CU_ASSERT_EQUAL(v, -123456);
    CU_ASSERT_FALSE(null);
    CU_ASSERT_EQUAL(host->db_col_time(stmt, 3, &v, &null), CPB_OK);
    CU_ASSERT_EQUAL(v, INT64_C(1709210096123));
    struct cpb_stmt *first = stmt;
    const struct stage_arg k2[] = {stage_arg_int(2)};
    CU_ASSERT_EQUAL(stage_db_query(host, ctx, sel, k2, 1, &stmt), CPB_OK);
    CU_ASSERT_PTR_EQUAL(stmt, first); /* reused, not prepared again */
    CU_ASSERT_EQUAL(host->db_col_text(stmt, 1, &text), CPB_OK);
    CU_ASSERT_PTR_NULL(text);
    CU_ASSERT_EQUAL(host->db_col_decimal(stmt, 2, &v, &null), CPB_OK);
    CU_ASSERT_EQUAL(v, 5);
    const struct stage_arg k3[] = {stage_arg_int(99)};
    CU_ASSERT_EQUAL(stage_db_query(host, ctx, sel, k3, 1, &stmt), CPB_SKIP);
    host->db_finalize(stmt);
    stmt = NULL;

    /* Text arguments compare as text; an UPDATE that hits nothing is OK. */
    const struct stage_arg u1[] = {stage_arg_dec(10000), stage_arg_text("caf" E_ACUTE)};
    CU_ASSERT_EQUAL(
        stage_db_exec(host, ctx, "UPDATE util_t SET AMT = AMT + ? WHERE NAM = ?", u1, 2, &rows),
        CPB_OK);
    CU_ASSERT_EQUAL(rows, 1);
    const struct stage_arg u2[] = {stage_arg_dec(1), stage_arg_text("nobody")};
    CU_ASSERT_EQUAL(
        stage_db_exec(host, ctx, "UPDATE util_t SET AMT = AMT + ? WHERE NAM = ?", u2, 2, &rows),
        CPB_OK);
    CU_ASSERT_EQUAL(rows, 0);

    /* stage_db_prepare binds without running; stage_db_bind re-binds. */
    CU_ASSERT_EQUAL(
        stage_db_prepare(host, ctx, "SELECT AMT FROM util_t WHERE ID = ?", k2, 1, &stmt), CPB_OK);
    CU_ASSERT_EQUAL(stage_db_bind(host, stmt, k1, 1), CPB_OK);
    CU_ASSERT_EQUAL(host->db_execute(stmt, NULL), CPB_OK);
    CU_ASSERT_EQUAL(host->db_fetch(stmt), CPB_OK);
    CU_ASSERT_EQUAL(host->db_col_decimal(stmt, 1, &v, &null), CPB_OK);
    CU_ASSERT_EQUAL(v, -123456 + 10000);
    host->db_finalize(stmt);
    stmt = NULL;

    /* A failing statement's status comes back, with the host's reason
     * (last: on PostgreSQL it spoils the transaction). */
    host_reason_clear(ctx);
    CU_ASSERT_NOT_EQUAL(
        stage_db_exec(host, ctx, "INSERT INTO no_such_table VALUES (?)", k1, 1, NULL), CPB_OK);
    CU_ASSERT_NOT_EQUAL(host_reason_code(ctx)[0], '\0');
    CU_ASSERT_NOT_EQUAL(stage_db_query(host, ctx, "SELECT x FROM no_such_table", NULL, 0, &stmt),
                        CPB_OK);
    host->db_finalize(stmt);

    CU_ASSERT_EQUAL(db_rollback(db), CPB_OK);
    host_ctx_free(ctx);
    db_close(db);
}

static void test_db_sqlite(void)
{
    db_roundtrip(cpbtest_sqlite_conn(), DB_SQLITE);
}

static void test_db_postgresql(void)
{
    const char *conn = cpbtest_pg_conn();
    CU_ASSERT_PTR_NOT_NULL_FATAL(conn);
    db_roundtrip(conn, DB_POSTGRESQL);
}

static const struct cpbtest_case pure_cases[] = {
    {"json", test_json},         {"div_round", test_div_round},
    {"cents", test_cents},       {"utf8_floor", test_utf8_floor},
    {"utf8_cut", test_utf8_cut}, {"quote", test_quote},
    {"copy", test_copy},         {"parse_utc", test_parse_utc},
    {"state", test_state},       {NULL, NULL}};

static const struct cpbtest_case db_cases[] = {
    {"sqlite", test_db_sqlite}, {"postgresql", test_db_postgresql}, {NULL, NULL}};

static const struct cpbtest_suite pure_suite = {"stage_util", NULL, NULL, pure_cases};
static const struct cpbtest_suite db_suite = {"stage_util_db", NULL, NULL, db_cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *suites[] = {&pure_suite, &db_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
