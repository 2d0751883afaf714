/*
 * test_options.c — declared option tables (core/engine/options.c) against real
 * libconfig files: every type with good and bad values, ranges, required,
 * defaults, deprecated warnings, unknown keys with a did-you-mean, "file:"
 * secrets and their redaction, table checks, describe and value printing.
 */
#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cpbtest.h"
#include "engine/options.h"
#include "lib/err.h"
#include "services/log.h"

struct demo_opts {
    const char *path;
    int64_t max_qty;
    bool strict;
    int64_t price_check;
    int64_t timeout_ms;
    int mode;
    const char *const *tags;
    const char *password;
    int64_t old_limit;
    const char *const *hosts;
};

static const char *const modes[] = {"fast", "safe", NULL};

static const struct cpb_option demo_table[] = {
    {"path", CPB_OPT_STRING, CPB_OPT_REQUIRED, NULL, 1, 100, NULL, offsetof(struct demo_opts, path),
     "Where the orders are."},
    {"max_qty", CPB_OPT_INT, 0, "10", 1, 1000, NULL, offsetof(struct demo_opts, max_qty),
     "Largest quantity | per line."},
    {"strict", CPB_OPT_BOOL, 0, "true", 0, 0, NULL, offsetof(struct demo_opts, strict),
     "Refuse unknown items."},
    {"price_check", CPB_OPT_DECIMAL, 0, "0.01", 0, 1000000, NULL,
     offsetof(struct demo_opts, price_check), "Largest price difference allowed."},
    {"timeout", CPB_OPT_DURATION, 0, "30s", 1000, 3600000, NULL,
     offsetof(struct demo_opts, timeout_ms), "How long to wait."},
    {"mode", CPB_OPT_ENUM, 0, "safe", 0, 0, modes, offsetof(struct demo_opts, mode), "How to run."},
    {"tags", CPB_OPT_LIST, 0, "a, b", 0, 3, NULL, offsetof(struct demo_opts, tags), "Labels."},
    {"password", CPB_OPT_STRING, CPB_OPT_SECRET, NULL, 0, 0, NULL,
     offsetof(struct demo_opts, password), "The store's password."},
    {"old_limit", CPB_OPT_INT, CPB_OPT_DEPRECATED, NULL, 0, 0, NULL,
     offsetof(struct demo_opts, old_limit), "Use max_qty instead."},
    {"hosts", CPB_OPT_LIST, 0, NULL, 0, 0, NULL, offsetof(struct demo_opts, hosts), "Hosts."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};

/* One loaded file and one fill, released by release(). */
static config_t g_lc;
static bool g_lc_live;
static struct opt_store *g_store;
static struct demo_opts g_opts;
static struct err g_err;

static void release(void)
{
    opt_store_free(g_store);
    g_store = NULL;
    if (g_lc_live) {
        config_destroy(&g_lc);
        g_lc_live = false;
    }
    memset(&g_opts, 0, sizeof g_opts);
    memset(&g_err, 0, sizeof g_err);
}

/* Write `text` to o.cfg, parse it like the engine does, and return the
 * `options` group (NULL when absent). */
static const config_setting_t *load(const char *text)
{
    release();
    const char *path = cpbtest_path("o.cfg");
    CU_ASSERT_FATAL(cpbtest_write(path, text) == 0);
    config_init(&g_lc);
    g_lc_live = true;
    config_set_options(&g_lc, config_get_options(&g_lc) & ~CONFIG_OPTION_AUTOCONVERT);
    if (config_read_file(&g_lc, path) != CONFIG_TRUE) {
        fprintf(stderr, "parse error: %s:%d\n", config_error_text(&g_lc), config_error_line(&g_lc));
        CU_FAIL_FATAL("test file did not parse");
    }
    return config_lookup(&g_lc, "options");
}

/* Load and fill; returns options_fill's result. */
static int fill(const char *text)
{
    const config_setting_t *group = load(text);
    return options_fill(demo_table, group, &g_opts, &g_store, "stage 'demo'", &g_err);
}

/* Fill must fail with CPB_EXIT_CONFIG and a message containing `want`. */
static void expect_error(const char *text, const char *want)
{
    int rc = fill(text);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_EQUAL(g_err.code, CPB_EXIT_CONFIG);
    if (strstr(g_err.msg, want) == NULL) {
        fprintf(stderr, "\n  want: %s\n  got:  %s\n", want, g_err.msg);
        CU_FAIL("message differs");
    }
    release();
}

static void test_table_check(void)
{
    struct err e = {0};
    CU_ASSERT_EQUAL(options_check_table(demo_table, sizeof(struct demo_opts), "stage 'demo'", &e),
                    0);
    CU_ASSERT_EQUAL(e.code, 0);
    CU_ASSERT_EQUAL(options_check_table(NULL, 0, "stage 'none'", &e), 0);

    struct bad {
        const char *want;
        struct cpb_option table[3];
        size_t size;
    } cases[] = {
        {"option 'a' is declared twice",
         {{"a", CPB_OPT_INT, 0, NULL, 0, 0, NULL, 0, "x"},
          {"a", CPB_OPT_INT, 0, NULL, 0, 0, NULL, 8, "x"},
          {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}},
         16},
        {"lies outside the options struct of 8 bytes",
         {{"a", CPB_OPT_INT, 0, NULL, 0, 0, NULL, 8, "x"}, {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}},
         8},
        {"enum option 'e' has no choices",
         {{"e", CPB_OPT_ENUM, 0, NULL, 0, 0, NULL, 0, "x"},
          {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}},
         8},
        {"the default of option 'n' must be an integer, not \"ten\"",
         {{"n", CPB_OPT_INT, 0, "ten", 0, 0, NULL, 0, "x"},
          {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}},
         8},
        {"the default of option 'n' must be between 1 and 5, not 9",
         {{"n", CPB_OPT_INT, 0, "9", 1, 5, NULL, 0, "x"}, {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}},
         8},
        {"the default of option 'd' must be a duration",
         {{"d", CPB_OPT_DURATION, 0, "30", 0, 0, NULL, 0, "x"},
          {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}},
         8},
        {"option 'r' is required and also has a default",
         {{"r", CPB_OPT_STRING, CPB_OPT_REQUIRED, "x", 0, 0, NULL, 0, "x"},
          {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}},
         8},
        {"option 't' has an unknown type 99",
         {{"t", (enum cpb_opt_type)99, 0, NULL, 0, 0, NULL, 0, "x"},
          {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}},
         8},
        {"option 'm' has min 5 above max 1",
         {{"m", CPB_OPT_INT, 0, NULL, 5, 1, NULL, 0, "x"}, {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}},
         8},
        {"option 'o' has a misaligned offset 4",
         {{"o", CPB_OPT_INT, 0, NULL, 0, 0, NULL, 4, "x"}, {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}},
         16},
        {"option 'f' has unknown flags 0x10",
         {{"f", CPB_OPT_BOOL, 16, NULL, 0, 0, NULL, 0, "x"},
          {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}},
         8},
        {"the default of option 'l' has an empty element",
         {{"l", CPB_OPT_LIST, 0, "a,,b", 0, 0, NULL, 0, "x"},
          {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}},
         8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct err b = {0};
        CU_ASSERT_EQUAL(options_check_table(cases[i].table, cases[i].size, "stage 'x'", &b), -1);
        CU_ASSERT_EQUAL(b.code, CPB_EXIT_CONFIG);
        if (strstr(b.msg, cases[i].want) == NULL || strncmp(b.msg, "stage 'x': ", 11) != 0) {
            fprintf(stderr, "\n  want: %s\n  got:  %s\n", cases[i].want, b.msg);
            CU_FAIL("table check message differs");
        }
    }
}

static void test_defaults(void)
{
    CU_ASSERT_EQUAL(fill("options = { path = \"/srv/orders\"; };\n"), 0);
    CU_ASSERT_STRING_EQUAL(g_opts.path, "/srv/orders");
    CU_ASSERT_EQUAL(g_opts.max_qty, 10);
    CU_ASSERT_TRUE(g_opts.strict);
    CU_ASSERT_EQUAL(g_opts.price_check, 100);
    CU_ASSERT_EQUAL(g_opts.timeout_ms, 30000);
    CU_ASSERT_EQUAL(g_opts.mode, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_opts.tags);
    CU_ASSERT_STRING_EQUAL(g_opts.tags[0], "a");
    CU_ASSERT_STRING_EQUAL(g_opts.tags[1], "b");
    CU_ASSERT_PTR_NULL(g_opts.tags[2]);
    CU_ASSERT_PTR_NULL(g_opts.password);
    CU_ASSERT_EQUAL(g_opts.old_limit, 0);
    /* An unset list without a default is empty, never NULL. */
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_opts.hosts);
    CU_ASSERT_PTR_NULL(g_opts.hosts[0]);
    release();
}

static void test_good_values(void)
{
    CU_ASSERT_EQUAL(fill("options = {\n"
                         "  path = \"p\";\n"
                         "  max_qty = 1000;\n"
                         "  strict = false;\n"
                         "  price_check = \"2.89855\";\n"
                         "  timeout = \"1h\";\n"
                         "  mode = \"fast\";\n"
                         "  tags = [\"x\", \"y\", \"z\"];\n"
                         "  hosts = (\"h1\");\n"
                         "};\n"),
                    0);
    CU_ASSERT_EQUAL(g_err.code, 0);
    CU_ASSERT_EQUAL(g_opts.max_qty, 1000);
    CU_ASSERT_FALSE(g_opts.strict);
    CU_ASSERT_EQUAL(g_opts.price_check, 28986);
    CU_ASSERT_EQUAL(g_opts.timeout_ms, 3600000);
    CU_ASSERT_EQUAL(g_opts.mode, 0);
    CU_ASSERT_STRING_EQUAL(g_opts.tags[2], "z");
    CU_ASSERT_PTR_NULL(g_opts.tags[3]);
    CU_ASSERT_STRING_EQUAL(g_opts.hosts[0], "h1");
    CU_ASSERT_PTR_NULL(g_opts.hosts[1]);
    release();

    /* 64-bit integers, and decimals given as numbers. */
    CU_ASSERT_EQUAL(fill("options = { path = \"p\"; max_qty = 7L; price_check = 5; };\n"), 0);
    CU_ASSERT_EQUAL(g_opts.max_qty, 7);
    CU_ASSERT_EQUAL(g_opts.price_check, 50000);
    release();
    CU_ASSERT_EQUAL(fill("options = { path = \"p\"; price_check = 0.25; };\n"), 0);
    CU_ASSERT_EQUAL(g_opts.price_check, 2500);
    release();
    CU_ASSERT_EQUAL(fill("options = { path = \"p\"; price_check = 0.1; };\n"), 0);
    CU_ASSERT_EQUAL(g_opts.price_check, 1000); /* exact, not 999.99... */
    release();
    CU_ASSERT_EQUAL(fill("options = { path = \"p\"; tags = []; };\n"), 0);
    CU_ASSERT_PTR_NULL(g_opts.tags[0]);
    release();
}

static void test_wrong_types(void)
{
    expect_error("options = {\n  path = \"p\";\n  max_qty = \"3\";\n};\n",
                 "o.cfg:3: stage 'demo': option 'max_qty' must be an integer, not a string");
    expect_error("options = { path = \"p\";\n max_qty = 2.5; };\n",
                 "o.cfg:2: stage 'demo': option 'max_qty' must be an integer, not a "
                 "floating-point number");
    expect_error("options = { path = \"p\";\n strict = \"true\"; };\n",
                 "o.cfg:2: stage 'demo': option 'strict' must be a boolean (true or false), not a "
                 "string");
    expect_error("options = { path = \"p\";\n strict = 1; };\n",
                 "o.cfg:2: stage 'demo': option 'strict' must be a boolean (true or false), not an "
                 "integer");
    expect_error("options = { path = \"p\";\n timeout = 30; };\n",
                 "o.cfg:2: stage 'demo': option 'timeout' must be a duration string with a unit "
                 "such as \"30s\", not an integer");
    expect_error("options = { path = \"p\";\n price_check = true; };\n",
                 "o.cfg:2: stage 'demo': option 'price_check' must be a decimal (a string such as "
                 "\"0.01\" or a number), not a boolean");
    expect_error("options = { path = \"p\";\n mode = 1; };\n",
                 "o.cfg:2: stage 'demo': option 'mode' must be a string, not an integer");
    expect_error("options = { path = 5; };\n",
                 "o.cfg:1: stage 'demo': option 'path' must be a string, not an integer");
    expect_error("options = { path = \"p\";\n tags = \"a,b\"; };\n",
                 "o.cfg:2: stage 'demo': option 'tags' must be a list of strings such as [\"a\", "
                 "\"b\"], not a string");
    expect_error("options = { path = \"p\";\n tags = (\"a\", 2); };\n",
                 "o.cfg:2: stage 'demo': option 'tags' must be a list of strings; element 2 is an "
                 "integer");
    expect_error("options = { path = \"p\";\n tags = { a = \"b\"; }; };\n",
                 "option 'tags' must be a list of strings such as [\"a\", \"b\"], not a group");
    expect_error("options = 5;\n",
                 "o.cfg:1: stage 'demo': the options must be a group { key = value; ... }, not an "
                 "integer");
}

static void test_bad_values(void)
{
    expect_error("options = { path = \"p\";\n timeout = \"2 minutes\"; };\n",
                 "o.cfg:2: stage 'demo': option 'timeout' must be a duration: a whole number and "
                 "one unit of ms, s, m, h, d (\"30s\", \"5m\"), not \"2 minutes\"");
    expect_error("options = { path = \"p\";\n timeout = \"-5s\"; };\n",
                 "option 'timeout' must be a duration");
    expect_error("options = { path = \"p\";\n mode = \"Fast\"; };\n",
                 "o.cfg:2: stage 'demo': option 'mode' must be one of \"fast\", \"safe\", not "
                 "\"Fast\" (did you mean \"fast\"?)");
    expect_error("options = { path = \"p\";\n mode = \"fastt\"; };\n",
                 "not \"fastt\" (did you mean \"fast\"?)");
    expect_error("options = { path = \"p\";\n mode = \"turbo\"; };\n",
                 "option 'mode' must be one of \"fast\", \"safe\", not \"turbo\"");
    expect_error("options = { path = \"p\";\n price_check = \"1e5\"; };\n",
                 "o.cfg:2: stage 'demo': option 'price_check' must be a decimal number such as "
                 "\"0.01\"");
    expect_error("options = { path = \"p\";\n price_check = \" 1\"; };\n",
                 "option 'price_check' must be a decimal number such as \"0.01\" (digits, one "
                 "optional '.', below 900000000000000), not \" 1\"");
    expect_error("options = { path = \"p\";\n price_check = 1e20; };\n",
                 "o.cfg:2: stage 'demo': option 'price_check' must be a decimal below "
                 "900000000000000, not 1e+20");
    expect_error("options = { path = \"p\";\n price_check = 900000000000000L; };\n",
                 "option 'price_check' must be a decimal below 900000000000000, not "
                 "900000000000000");
    /* Hostile bytes in a value are escaped and cut in the message. */
    expect_error("options = { path = \"p\";\n mode = \"a\\x01\\x1b[31mb\"; };\n",
                 "not \"a\\x01\\x1b[31mb\"");
    int rc = fill(
        "options = { path = \"p\";\n"
        " mode = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "\"; };\n");
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_err.msg, "xxxx...\""));
    char run[66];
    memset(run, 'x', 65);
    run[65] = '\0';
    CU_ASSERT_PTR_NULL(strstr(g_err.msg, run)); /* cut at 64 bytes */
    release();
}

static void test_ranges(void)
{
    expect_error("options = { path = \"p\";\n max_qty = 0; };\n",
                 "o.cfg:2: stage 'demo': option 'max_qty' must be between 1 and 1000, not 0");
    expect_error("options = { path = \"p\";\n max_qty = 1001; };\n",
                 "option 'max_qty' must be between 1 and 1000, not 1001");
    expect_error("options = { path = \"p\";\n max_qty = -9223372036854775807L; };\n",
                 "option 'max_qty' must be between 1 and 1000, not -9223372036854775807");
    expect_error("options = { path = \"p\";\n price_check = \"100.0001\"; };\n",
                 "option 'price_check' must be between 0 and 100, not 100.0001");
    expect_error("options = { path = \"p\";\n price_check = \"-0.01\"; };\n",
                 "option 'price_check' must be between 0 and 100, not -0.01");
    expect_error("options = { path = \"p\";\n timeout = \"61m\"; };\n",
                 "option 'timeout' must be between 1s and 1h, not 61m");
    expect_error("options = { path = \"p\";\n timeout = \"999ms\"; };\n",
                 "option 'timeout' must be between 1s and 1h, not 999ms");
    expect_error(
        "options = { path = \"\"; };\n",
        "o.cfg:1: stage 'demo': option 'path' must be between 1 and 100 bytes long, not 0");
    expect_error("options = { path = \"p\";\n tags = [\"a\", \"b\", \"c\", \"d\"]; };\n",
                 "option 'tags' must have between 0 and 3 elements, not 4");
    /* The edges themselves are fine. */
    CU_ASSERT_EQUAL(fill("options = { path = \"p\"; max_qty = 1; price_check = \"100\"; "
                         "timeout = \"1s\"; };\n"),
                    0);
    release();
}

static void test_required(void)
{
    expect_error("# line 1\noptions = {\n  max_qty = 5;\n};\n",
                 "o.cfg:2: stage 'demo': missing required option 'path' (string: Where the orders "
                 "are.)");
    /* No options group at all. */
    const config_setting_t *none = load("other = 1;\n");
    CU_ASSERT_PTR_NULL(none);
    CU_ASSERT_EQUAL(options_fill(demo_table, NULL, &g_opts, &g_store, "stage 'demo'", &g_err), -1);
    CU_ASSERT_STRING_EQUAL(g_err.msg,
                           "stage 'demo': missing required option 'path' (string: Where the "
                           "orders are.)");
    release();
    /* A table without required options accepts no group. */
    static const struct cpb_option opt_only[] = {
        {"n", CPB_OPT_INT, 0, "4", 0, 0, NULL, 0, "A number."},
        {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};
    int64_t n = 0;
    struct opt_store *st = NULL;
    struct err e = {0};
    CU_ASSERT_EQUAL(options_fill(opt_only, NULL, &n, &st, "stage 'x'", &e), 0);
    CU_ASSERT_EQUAL(n, 4);
    opt_store_free(st);
}

static void test_unknown_keys(void)
{
    expect_error("options = {\n  path = \"p\";\n  price_chek = \"1\";\n};\n",
                 "o.cfg:3: stage 'demo': unknown option 'price_chek' (did you mean "
                 "'price_check'?)");
    expect_error("options = { path = \"p\";\n MAX_QTY = 3; };\n",
                 "o.cfg:2: stage 'demo': unknown option 'MAX_QTY' (did you mean 'max_qty'?)");
    expect_error("options = { path = \"p\";\n zzz = 3; };\n",
                 "o.cfg:2: stage 'demo': unknown option 'zzz' (known options: path, max_qty, "
                 "strict, price_check, timeout, mode, tags, password, old_limit, hosts)");
    /* A stage without options refuses every key. */
    static const struct cpb_option empty[] = {{NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};
    const config_setting_t *g = load("options = {\n  path = \"p\";\n};\n");
    char dummy[8];
    CU_ASSERT_EQUAL(options_fill(empty, g, dummy, &g_store, "stage 'quiet'", &g_err), -1);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(g_err.msg, "o.cfg:2: stage 'quiet': unknown option 'path' (it takes no options)"));
    release();
}

/* Read everything logged while fn-style code ran into `stream`. */
static char *log_text(FILE *stream, char **mem)
{
    fflush(stream);
    fclose(stream);
    log_set_stream(NULL);
    return *mem;
}

static void test_deprecated(void)
{
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    log_set_stream(f);
    CU_ASSERT_EQUAL(fill("options = { path = \"p\";\n old_limit = 9; };\n"), 0);
    CU_ASSERT_EQUAL(g_opts.old_limit, 9);
    char *text = log_text(f, &mem);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "warn"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(text, "o.cfg:2: stage 'demo': option 'old_limit' is deprecated: Use max_qty "
                     "instead."));
    free(text);
    release();
    /* Not set: no warning. */
    mem = NULL;
    f = open_memstream(&mem, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    log_set_stream(f);
    CU_ASSERT_EQUAL(fill("options = { path = \"p\"; };\n"), 0);
    text = log_text(f, &mem);
    CU_ASSERT_PTR_NULL(strstr(text, "deprecated"));
    free(text);
    release();
    log_reset();
}

static void test_secrets(void)
{
    char *mem = NULL;
    size_t len = 0;
    char cfg[2048];
    log_reset();

    /* A literal secret is registered for masking. */
    CU_ASSERT_EQUAL(fill("options = { path = \"p\"; password = \"hunter2-literal\"; };\n"), 0);
    CU_ASSERT_STRING_EQUAL(g_opts.password, "hunter2-literal");
    FILE *f = open_memstream(&mem, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    log_set_stream(f);
    log_msg(CPB_LOG_ERROR, NULL, 0, "login with hunter2-literal failed");
    char *text = log_text(f, &mem);
    CU_ASSERT_PTR_NULL(strstr(text, "hunter2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "login with ******** failed"));
    free(text);
    release();

    /* file: reads the file, one trailing CRLF removed, and masks it. */
    const char *secret = cpbtest_path("pw.txt");
    CU_ASSERT_FATAL(cpbtest_write(secret, "s3cret from file\r\n") == 0);
    chmod(secret, 0600);
    snprintf(cfg, sizeof cfg, "options = { path = \"p\"; password = \"file:%s\"; };\n", secret);
    CU_ASSERT_EQUAL(fill(cfg), 0);
    CU_ASSERT_STRING_EQUAL(g_opts.password, "s3cret from file");
    mem = NULL;
    f = open_memstream(&mem, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    log_set_stream(f);
    log_msg(CPB_LOG_ERROR, NULL, 0, "value=s3cret from file.");
    text = log_text(f, &mem);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "value=********."));
    free(text);
    release();

    /* Only one trailing newline goes; a plain "\n" too. */
    CU_ASSERT_FATAL(cpbtest_write(secret, "two\n\n") == 0);
    CU_ASSERT_EQUAL(fill(cfg), 0);
    CU_ASSERT_STRING_EQUAL(g_opts.password, "two\n");
    release();

    /* Missing file: named, CPB_EXIT_CONFIG. */
    snprintf(cfg, sizeof cfg, "options = { path = \"p\";\n password = \"file:%s\"; };\n",
             cpbtest_path("nope.txt"));
    expect_error(cfg, "o.cfg:2: stage 'demo': option 'password' cannot read the secret file \"");
    CU_ASSERT_EQUAL(fill(cfg), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_err.msg, "nope.txt\": No such file or directory"));
    release();

    /* Empty, too large, a directory, no path. */
    CU_ASSERT_FATAL(cpbtest_write(secret, "\n") == 0);
    snprintf(cfg, sizeof cfg, "options = { path = \"p\"; password = \"file:%s\"; };\n", secret);
    expect_error(cfg, "pw.txt\", which is empty");
    char *big = malloc(64 * 1024 + 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, 'k', 64 * 1024 + 1);
    big[64 * 1024 + 1] = '\0';
    CU_ASSERT_FATAL(cpbtest_write(secret, big) == 0);
    expect_error(cfg, "pw.txt\", which is larger than 64 KiB");
    big[64 * 1024] = '\0'; /* exactly 64 KiB is fine */
    CU_ASSERT_FATAL(cpbtest_write(secret, big) == 0);
    CU_ASSERT_EQUAL(fill(cfg), 0);
    CU_ASSERT_EQUAL(strlen(g_opts.password), 64 * 1024);
    release();
    free(big);
    snprintf(cfg, sizeof cfg, "options = { path = \"p\"; password = \"file:%s\"; };\n",
             cpbtest_tmpdir());
    expect_error(cfg, "for a secret file, which is not a regular file");
    expect_error("options = { path = \"p\"; password = \"file:\"; };\n",
                 "option 'password' names no file after \"file:\"");

    /* "file:" means nothing special for an option that is not secret. */
    CU_ASSERT_EQUAL(fill("options = { path = \"file:/nonexistent\"; };\n"), 0);
    CU_ASSERT_STRING_EQUAL(g_opts.path, "file:/nonexistent");
    release();
    log_reset();
}

static void test_secret_value_hidden(void)
{
    /* A secret that fails a check is never echoed. */
    static const char *const choices[] = {"k1", "k2", NULL};
    static const struct cpb_option t[] = {
        {"key", CPB_OPT_ENUM, CPB_OPT_SECRET, NULL, 0, 0, choices, 0, "A key."},
        {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};
    int v = 0;
    const config_setting_t *g = load("options = { key = \"topsecret-k3\"; };\n");
    CU_ASSERT_EQUAL(options_fill(t, g, &v, &g_store, "stage 's'", &g_err), -1);
    CU_ASSERT_PTR_NULL(strstr(g_err.msg, "topsecret"));
    CU_ASSERT_PTR_NOT_NULL(strstr(g_err.msg, "(a hidden secret value)"));
    release();
    log_reset();
}

static char *capture_describe(const struct cpb_option *table, int markdown)
{
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    options_describe(f, table, markdown);
    fclose(f);
    return mem;
}

static void test_describe(void)
{
    static const struct cpb_option secret_default[] = {
        {"token", CPB_OPT_STRING, CPB_OPT_SECRET, "builtin-token", 0, 0, NULL, 0, "Token."},
        {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}};
    char *text = capture_describe(demo_table, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  path (string; range: 1..100 bytes; required)\n"
                                        "      Where the orders are.\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  max_qty (integer; default: 10; range: 1..1000)\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  price_check (decimal; default: 0.01; range: 0..100)\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  timeout (duration; default: 30s; range: 1s..1h)\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  mode (enum; default: safe; one of: fast, safe)\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  tags (list; default: a, b; range: 0..3 items)\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  password (string; secret)\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  old_limit (integer; deprecated)\n"));
    free(text);

    text = capture_describe(demo_table, 1);
    CU_ASSERT_EQUAL(strncmp(text,
                            "| Option | Type | Default | Range / choices | Flags | Description |\n"
                            "|---|---|---|---|---|---|\n",
                            strlen("| Option | Type | Default | Range / choices | Flags | "
                                   "Description |\n|---|---|---|---|---|---|\n")),
                    0);
    CU_ASSERT_PTR_NOT_NULL(strstr(
        text, "| `max_qty` | integer | `10` | 1..1000 |  | Largest quantity \\| per line. |\n"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(text, "| `mode` | enum | `safe` | fast, safe |  | How to run. |\n"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(text, "| `path` | string |  | 1..100 bytes | required | Where the orders are. |\n"));
    free(text);

    text = capture_describe(secret_default, 0);
    CU_ASSERT_PTR_NULL(strstr(text, "builtin-token"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "default: ********"));
    free(text);
    text = capture_describe(secret_default, 1);
    CU_ASSERT_PTR_NULL(strstr(text, "builtin-token"));
    free(text);

    text = capture_describe(NULL, 0);
    CU_ASSERT_STRING_EQUAL(text, "  (no options)\n");
    free(text);
}

static void test_print_values(void)
{
    CU_ASSERT_EQUAL(
        fill("options = { path = \"a \\\"q\\\"\\n\"; password = \"pw-print\"; old_limit = 2; };\n"),
        0);
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    options_print_values(f, demo_table, &g_opts);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(mem, "  path = \"a \\\"q\\\"\\x0a\"\n"
                                "  max_qty = 10\n"
                                "  strict = true\n"
                                "  price_check = 0.01\n"
                                "  timeout = 30s\n"
                                "  mode = \"safe\"\n"
                                "  tags = [ \"a\", \"b\" ]\n"
                                "  password = ********\n"
                                "  old_limit = 2\n"
                                "  hosts = []\n");
    free(mem);
    release();
    log_reset();
}

static int suite_teardown(void)
{
    release();
    log_reset();
    return 0;
}

static const struct cpbtest_case option_cases[] = {
    {"table_check", test_table_check},
    {"defaults", test_defaults},
    {"good_values", test_good_values},
    {"wrong_types", test_wrong_types},
    {"bad_values", test_bad_values},
    {"ranges", test_ranges},
    {"required", test_required},
    {"unknown_keys", test_unknown_keys},
    {"deprecated", test_deprecated},
    {"secrets", test_secrets},
    {"secret_value_hidden", test_secret_value_hidden},
    {"describe", test_describe},
    {"print_values", test_print_values},
    {NULL, NULL}};

static const struct cpbtest_suite option_suite = {"options", NULL, suite_teardown, option_cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *suites[] = {&option_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
