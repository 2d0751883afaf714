/*
 * test_config.c — reading pipeline files (core/engine/config.c): the fixtures in
 * tests/fixtures/config (good and broken), generated files for every other
 * error path, ${...} interpolation, @include, PIPELINE_DIR, file: secrets,
 * engine defaults and the exported engine option tables.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpbtest.h"
#include "engine/config.h"
#include "engine/options.h"
#include "lib/err.h"
#include "services/log.h"

static const char *fixture(const char *name)
{
    static char path[8][1024];
    static unsigned next;
    char *b = path[next++ % 8];
    snprintf(b, 1024, "%s", cpbtest_src("tests/fixtures/config/"));
    size_t n = strlen(b);
    snprintf(b + n, 1024 - n, "%s", name);
    return b;
}

/* config_load must fail with `code` and a message containing `want`. */
static void expect_load_error(const char *path, int code, const char *want)
{
    struct config *cfg = (struct config *)1;
    struct err e = {0};
    CU_ASSERT_EQUAL(config_load(path, &cfg, &e), -1);
    CU_ASSERT_PTR_NULL(cfg);
    CU_ASSERT_EQUAL(e.code, code);
    if (strstr(e.msg, want) == NULL) {
        fprintf(stderr, "\n  file: %s\n  want: %s\n  got:  %s\n", path, want, e.msg);
        CU_FAIL("message differs");
    }
}

/* Write `text` as a pipeline file in the scratch directory; returns its path. */
static const char *scratch(const char *name, const char *text)
{
    const char *path = cpbtest_path(name);
    CU_ASSERT_FATAL(cpbtest_write(path, text) == 0);
    return path;
}

#define HEAD      "name = \"t\";\ndatabase = { connection = \"x\"; };\n"
#define ONE_STAGE "stages = ( { stage = \"validate\"; } );\n"

static void test_good(void)
{
    struct config *cfg = NULL;
    struct err e = {0};
    char fixdir[PATH_MAX];
    char want[PATH_MAX + 64];
    unsetenv("CPBT_LOCK_DIR");
    unsetenv("PIPELINE_DIR");
    log_reset();
    CU_ASSERT_PTR_NOT_NULL_FATAL(realpath(fixture("."), fixdir));
    int rc = config_load(fixture("good.cfg"), &cfg, &e);
    if (rc != 0) {
        fprintf(stderr, "\n  %s\n", e.msg);
    }
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(cfg->dir, fixdir);
    CU_ASSERT_STRING_EQUAL(cfg->path, fixture("good.cfg"));
    CU_ASSERT_STRING_EQUAL(cfg->name, "good-pipeline_1.0");
    snprintf(want, sizeof want, "%s/stages", fixdir);
    CU_ASSERT_STRING_EQUAL(cfg->stage_dirs[0], want);
    CU_ASSERT_STRING_EQUAL(cfg->stage_dirs[1], "/opt/cpbridge/stages");
    CU_ASSERT_PTR_NULL(cfg->stage_dirs[2]);

    CU_ASSERT_STRING_EQUAL(cfg->database.dialect, "postgresql");
    CU_ASSERT_EQUAL(cfg->database.dialect_index, 1);
    /* The file: secret, with its trailing CRLF removed. */
    CU_ASSERT_STRING_EQUAL(cfg->database.connection,
                           "Driver=PostgreSQL Unicode;Server=127.0.0.1;Pwd=Tr0ub4dor&3");
    CU_ASSERT_EQUAL(cfg->database.login_timeout_ms, 5000);
    CU_ASSERT_EQUAL(cfg->run.batch, 20);
    CU_ASSERT_EQUAL(cfg->run.lease_ms, 90000);
    CU_ASSERT_STRING_EQUAL(cfg->run.lock_file, "/tmp/good.lock");
    CU_ASSERT_EQUAL(cfg->run.stale_after_ms, 7200000);
    CU_ASSERT_EQUAL(cfg->run.expect_every_ms, 600000);
    /* From the @include. */
    CU_ASSERT_EQUAL(cfg->retry.max_attempts, 5);
    CU_ASSERT_EQUAL(cfg->retry.base_ms, 10000);
    CU_ASSERT_EQUAL(cfg->retry.cap_ms, 1800000);
    CU_ASSERT_EQUAL(cfg->log.level, CPB_LOG_DEBUG);
    CU_ASSERT_EQUAL(cfg->log.format, 1);
    CU_ASSERT_EQUAL(cfg->health.pending_warn, 10);
    CU_ASSERT_EQUAL(cfg->health.pending_crit, 100);
    CU_ASSERT_EQUAL(cfg->health.dead_warn, 2);
    CU_ASSERT_EQUAL(cfg->health.dead_crit, 20);
    CU_ASSERT_EQUAL(cfg->health.invalid_warn, 3);
    CU_ASSERT_EQUAL(cfg->health.invalid_crit, 30);
    CU_ASSERT_EQUAL(cfg->health.oldest_pending_warn_ms, 600000);
    CU_ASSERT_EQUAL(cfg->health.oldest_pending_crit_ms, 3600000);
    CU_ASSERT_EQUAL(cfg->health.last_success_warn_ms, 1200000);
    CU_ASSERT_EQUAL(cfg->health.last_success_crit_ms, 10800000);
    /* $$ is a literal $. */
    CU_ASSERT_STRING_EQUAL(cfg->metrics.file, "${literal}/cpbridge.prom");

    CU_ASSERT_EQUAL_FATAL(cfg->n_stages, 3);
    const struct config_stage *s = &cfg->stages[0];
    CU_ASSERT_STRING_EQUAL(s->stage, "source-file");
    CU_ASSERT_STRING_EQUAL(s->id, "samples");
    CU_ASSERT_TRUE(s->enabled);
    CU_ASSERT_PTR_NULL(s->on);
    CU_ASSERT_EQUAL(s->line, 20);
    CU_ASSERT_PTR_NOT_NULL(strstr(s->file, "good.cfg"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(s->options);
    const char *path = NULL;
    CU_ASSERT_EQUAL(config_setting_lookup_string(s->options, "path", &path), CONFIG_TRUE);
    snprintf(want, sizeof want, "%s/orders", fixdir);
    CU_ASSERT_STRING_EQUAL(path, want);
    s = &cfg->stages[1];
    CU_ASSERT_STRING_EQUAL(s->stage, "validate");
    CU_ASSERT_STRING_EQUAL(s->id, "validate");
    CU_ASSERT_PTR_NULL(s->options);
    CU_ASSERT_EQUAL(s->line, 22);
    s = &cfg->stages[2];
    CU_ASSERT_STRING_EQUAL(s->id, "mail");
    CU_ASSERT_FALSE(s->enabled);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s->on);
    CU_ASSERT_STRING_EQUAL(s->on[0], "order.dead");
    CU_ASSERT_STRING_EQUAL(s->on[1], "order.invalid");
    CU_ASSERT_PTR_NULL(s->on[2]);

    /* The connection is a secret: registered for masking. */
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    log_set_stream(f);
    log_msg(CPB_LOG_ERROR, NULL, 0, "cannot connect with %s", cfg->database.connection);
    fclose(f);
    log_set_stream(NULL);
    CU_ASSERT_PTR_NULL(strstr(mem, "Tr0ub4dor"));
    CU_ASSERT_PTR_NOT_NULL(strstr(mem, "cannot connect with ********"));
    free(mem);

    /* Engine values print through the exported tables, secrets masked. */
    mem = NULL;
    f = open_memstream(&mem, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    options_print_values(f, config_engine_table("database"), &cfg->database);
    fclose(f);
    CU_ASSERT_STRING_EQUAL(mem, "  dialect = \"postgresql\"\n"
                                "  connection = ********\n"
                                "  login_timeout = 5s\n");
    free(mem);
    config_free(cfg);
    log_reset();
}

static void test_lock_dir_from_env(void)
{
    struct config *cfg = NULL;
    struct err e = {0};
    setenv("CPBT_LOCK_DIR", "/var/lock/cpb", 1);
    CU_ASSERT_EQUAL_FATAL(config_load(fixture("good.cfg"), &cfg, &e), 0);
    CU_ASSERT_STRING_EQUAL(cfg->run.lock_file, "/var/lock/cpb/good.lock");
    config_free(cfg);
    /* Empty counts as unset for :- */
    setenv("CPBT_LOCK_DIR", "", 1);
    CU_ASSERT_EQUAL_FATAL(config_load(fixture("good.cfg"), &cfg, &e), 0);
    CU_ASSERT_STRING_EQUAL(cfg->run.lock_file, "/tmp/good.lock");
    config_free(cfg);
    unsetenv("CPBT_LOCK_DIR");
    log_reset();
}

static void test_minimal_defaults(void)
{
    struct config *cfg = NULL;
    struct err e = {0};
    CU_ASSERT_EQUAL_FATAL(config_load(fixture("minimal.cfg"), &cfg, &e), 0);
    CU_ASSERT_STRING_EQUAL(cfg->name, "minimal");
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg->stage_dirs);
    CU_ASSERT_PTR_NULL(cfg->stage_dirs[0]);
    CU_ASSERT_STRING_EQUAL(cfg->database.dialect, "sqlite");
    CU_ASSERT_EQUAL(cfg->database.login_timeout_ms, 10000);
    CU_ASSERT_EQUAL(cfg->run.batch, 50);
    CU_ASSERT_EQUAL(cfg->run.lease_ms, 120000);
    CU_ASSERT_PTR_NULL(cfg->run.lock_file);
    CU_ASSERT_EQUAL(cfg->run.stale_after_ms, 3600000);
    CU_ASSERT_EQUAL(cfg->run.expect_every_ms, 900000);
    CU_ASSERT_EQUAL(cfg->retry.max_attempts, 3);
    CU_ASSERT_EQUAL(cfg->retry.base_ms, 30000);
    CU_ASSERT_EQUAL(cfg->retry.cap_ms, 3600000);
    CU_ASSERT_EQUAL(cfg->log.level, CPB_LOG_INFO);
    CU_ASSERT_EQUAL(cfg->log.format, 0);
    CU_ASSERT_PTR_NULL(cfg->metrics.file);
    CU_ASSERT_EQUAL(cfg->health.pending_warn, 50);
    CU_ASSERT_EQUAL(cfg->health.pending_crit, 500);
    CU_ASSERT_EQUAL(cfg->health.dead_warn, 1);
    CU_ASSERT_EQUAL(cfg->health.dead_crit, 10);
    CU_ASSERT_EQUAL(cfg->health.invalid_warn, 1);
    CU_ASSERT_EQUAL(cfg->health.invalid_crit, 25);
    CU_ASSERT_EQUAL(cfg->health.oldest_pending_warn_ms, 1800000);
    CU_ASSERT_EQUAL(cfg->health.oldest_pending_crit_ms, 7200000);
    CU_ASSERT_EQUAL(cfg->health.last_success_warn_ms, 1800000);
    CU_ASSERT_EQUAL(cfg->health.last_success_crit_ms, 7200000);
    CU_ASSERT_EQUAL_FATAL(cfg->n_stages, 1);
    CU_ASSERT_STRING_EQUAL(cfg->stages[0].id, "validate");
    CU_ASSERT_TRUE(cfg->stages[0].enabled);
    CU_ASSERT_PTR_NULL(cfg->stages[0].on);
    CU_ASSERT_PTR_NULL(cfg->stages[0].options);
    CU_ASSERT_EQUAL(cfg->stages[0].line, 4);
    config_free(cfg);
    config_free(NULL);
    log_reset();
}

static void test_broken_fixtures(void)
{
    unsetenv("CPBT_NEVER_SET_X");
    unsetenv("CPBT_NEVER_SET_Y");
    expect_load_error(fixture("bad-syntax.cfg"), CPB_EXIT_CONFIG, "bad-syntax.cfg:4: syntax error");
    expect_load_error(fixture("bad-unknown-key.cfg"), CPB_EXIT_CONFIG,
                      "bad-unknown-key.cfg:3: unknown key 'stage_dir' (did you mean "
                      "'stage_dirs'?)");
    expect_load_error(fixture("bad-type.cfg"), CPB_EXIT_CONFIG,
                      "bad-type.cfg:5: block 'run': option 'batch' must be an integer, not a "
                      "string");
    expect_load_error(fixture("bad-range.cfg"), CPB_EXIT_CONFIG,
                      "bad-range.cfg:4: block 'retry': option 'max_attempts' must be between 1 and "
                      "100, not 0");
    expect_load_error(fixture("bad-dup-id.cfg"), CPB_EXIT_CONFIG,
                      "bad-dup-id.cfg:7: stage id 'src' is used twice (first at ");
    expect_load_error(fixture("bad-dup-id.cfg"), CPB_EXIT_CONFIG, "bad-dup-id.cfg:5); give one");
    expect_load_error(fixture("bad-include.cfg"), CPB_EXIT_CONFIG,
                      "bad-include.cfg:3: cannot open include file");
    expect_load_error(fixture("bad-stage-key.cfg"), CPB_EXIT_CONFIG,
                      "bad-stage-key.cfg:7: stage entry 2: unknown key 'optoins' (did you mean "
                      "'options'?)");
    expect_load_error(fixture("bad-interp.cfg"), CPB_EXIT_CONFIG,
                      "bad-interp.cfg:4: environment variable 'CPBT_NEVER_SET_X' is not set or "
                      "empty (write ${CPBT_NEVER_SET_X:-default} to give a default)");
    setenv("CPBT_NEVER_SET_X", "x", 1);
    expect_load_error(fixture("bad-interp.cfg"), CPB_EXIT_CONFIG,
                      "bad-interp.cfg:5: environment variable 'CPBT_NEVER_SET_Y' is not set or "
                      "empty: set CPBT_NEVER_SET_Y to the dialect");
    unsetenv("CPBT_NEVER_SET_X");
    expect_load_error(fixture("bad-bigint.cfg"), CPB_EXIT_CONFIG,
                      "bad-bigint.cfg:4: the integer 4294967297 does not fit in 32 bits "
                      "(libconfig would change it silently); write 4294967297L for a 64-bit "
                      "integer");
    expect_load_error(fixture("bad-secret.cfg"), CPB_EXIT_CONFIG,
                      "bad-secret.cfg:4: block 'database': option 'connection' cannot read the "
                      "secret file \"");
    expect_load_error(fixture("bad-secret.cfg"), CPB_EXIT_CONFIG,
                      "no-such-secret.txt\": No such file or directory");
    expect_load_error(fixture("bad-retry-cap.cfg"), CPB_EXIT_CONFIG,
                      "bad-retry-cap.cfg:4: block 'retry': cap (1m) must not be below base (5m)");
    log_reset();
}

static void test_not_found(void)
{
    expect_load_error(cpbtest_path("no-such-pipeline.cfg"), CPB_EXIT_NOINPUT,
                      "cannot read the pipeline file '");
    expect_load_error(cpbtest_path("no-such-pipeline.cfg"), CPB_EXIT_NOINPUT,
                      "no-such-pipeline.cfg': No such file or directory");
    expect_load_error(cpbtest_tmpdir(), CPB_EXIT_NOINPUT, "is not a regular file");
    expect_load_error("", CPB_EXIT_USAGE, "no pipeline file given");
}

static void test_top_level(void)
{
    expect_load_error(scratch("t1.cfg", "database = { connection = \"x\"; };\n" ONE_STAGE),
                      CPB_EXIT_CONFIG, "t1.cfg: missing required key 'name'");
    expect_load_error(
        scratch("t2.cfg", "name = 5;\ndatabase = { connection = \"x\"; };\n" ONE_STAGE),
        CPB_EXIT_CONFIG, "t2.cfg:1: 'name' must be a string, not an integer");
    expect_load_error(
        scratch("t3.cfg", "name = \"a b\";\ndatabase = { connection = \"x\"; };\n" ONE_STAGE),
        CPB_EXIT_CONFIG,
        "t3.cfg:1: 'name' must be 1 to 64 letters, digits, '_', '.' or '-', not \"a b\"");
    expect_load_error(
        scratch("t4.cfg",
                "name = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\";\n"
                "database = { connection = \"x\"; };\n" ONE_STAGE),
        CPB_EXIT_CONFIG, "t4.cfg:1: 'name' must be 1 to 64 letters");
    expect_load_error(scratch("t5.cfg", HEAD "nmae = \"x\";\n" ONE_STAGE), CPB_EXIT_CONFIG,
                      "t5.cfg:3: unknown key 'nmae' (known keys: name, stage_dirs, database, run, "
                      "retry, log, metrics, health, alerts, serve, stages)");
    expect_load_error(scratch("t6.cfg", HEAD "healht = { };\n" ONE_STAGE), CPB_EXIT_CONFIG,
                      "t6.cfg:3: unknown key 'healht' (did you mean 'health'?)");
    expect_load_error(
        scratch("t7.cfg", HEAD "stage_dirs = \"/opt\";\n" ONE_STAGE), CPB_EXIT_CONFIG,
        "t7.cfg:3: 'stage_dirs' must be a list of strings such as [\"a\", \"b\"], not "
        "a string");
    expect_load_error(scratch("t8.cfg", HEAD "stage_dirs = (\"/opt\", 3);\n" ONE_STAGE),
                      CPB_EXIT_CONFIG,
                      "t8.cfg:3: 'stage_dirs' must be a list of strings; element 2 is an integer");
    expect_load_error(scratch("t9.cfg", HEAD "stage_dirs = [\"\"];\n" ONE_STAGE), CPB_EXIT_CONFIG,
                      "t9.cfg:3: 'stage_dirs': element 1 is an empty string");
}

static void test_engine_blocks(void)
{
    expect_load_error(scratch("e1.cfg", "name = \"t\";\n" ONE_STAGE), CPB_EXIT_CONFIG,
                      "e1.cfg: block 'database': missing required option 'connection'");
    expect_load_error(scratch("e2.cfg", "name = \"t\";\ndatabase = \"sqlite\";\n" ONE_STAGE),
                      CPB_EXIT_CONFIG,
                      "e2.cfg:2: 'database' must be a group { key = value; ... }, not a string");
    expect_load_error(
        scratch("e3.cfg", "name = \"t\";\ndatabase = {\n connection = \"x\";\n dialect = "
                          "\"mysql\"; };\n" ONE_STAGE),
        CPB_EXIT_CONFIG,
        "e3.cfg:4: block 'database': option 'dialect' must be one of \"sqlite\", \"postgresql\", "
        "\"mssql\", not \"mysql\" (did you mean \"mssql\"?)");
    expect_load_error(
        scratch("e4.cfg", "name = \"t\";\ndatabase = { connection = \"\"; };\n" ONE_STAGE),
        CPB_EXIT_CONFIG,
        "e4.cfg:2: block 'database': option 'connection' must be between 1 and 8192 "
        "bytes long, not 0");
    expect_load_error(scratch("e5.cfg", HEAD "run = { batch = 1001; };\n" ONE_STAGE),
                      CPB_EXIT_CONFIG,
                      "e5.cfg:3: block 'run': option 'batch' must be between 1 and 1000, not 1001");
    expect_load_error(scratch("e6.cfg", HEAD "run = { lease = 120; };\n" ONE_STAGE),
                      CPB_EXIT_CONFIG,
                      "e6.cfg:3: block 'run': option 'lease' must be a duration string with a unit "
                      "such as \"30s\", not an integer");
    expect_load_error(scratch("e7.cfg", HEAD "run = { leese = \"2m\"; };\n" ONE_STAGE),
                      CPB_EXIT_CONFIG,
                      "e7.cfg:3: block 'run': unknown option 'leese' (did you mean 'lease'?)");
    expect_load_error(scratch("e8.cfg", HEAD "log = { level = \"verbose\"; };\n" ONE_STAGE),
                      CPB_EXIT_CONFIG,
                      "e8.cfg:3: block 'log': option 'level' must be one of \"error\", \"warn\", "
                      "\"info\", \"debug\", not \"verbose\"");
    expect_load_error(scratch("e9.cfg", HEAD "health = {\n pending_warn = 600; };\n" ONE_STAGE),
                      CPB_EXIT_CONFIG,
                      "e9.cfg:3: block 'health': pending_warn (600) must not be above pending_crit "
                      "(500)");
    expect_load_error(
        scratch("e10.cfg", HEAD "health = { last_success_warn = \"3h\"; };\n" ONE_STAGE),
        CPB_EXIT_CONFIG,
        "block 'health': last_success_warn (3h) must not be above last_success_crit (2h)");
    expect_load_error(scratch("e11.cfg", HEAD "retry = { max_attempts = true; };\n" ONE_STAGE),
                      CPB_EXIT_CONFIG,
                      "e11.cfg:3: block 'retry': option 'max_attempts' must be an integer, not a "
                      "boolean");
    expect_load_error(scratch("e12.cfg", HEAD "metrics = { file = \"\"; };\n" ONE_STAGE),
                      CPB_EXIT_CONFIG,
                      "e12.cfg:3: block 'metrics': option 'file' must be between 1 and 4096 bytes "
                      "long, not 0");
    /* Edges accepted: 64-bit literal with L, a cap equal to base. */
    struct config *cfg = NULL;
    struct err e = {0};
    CU_ASSERT_EQUAL(config_load(scratch("e13.cfg", HEAD
                                        "run = { batch = 1000L; };\n"
                                        "retry = { base = \"1h\"; cap = \"1h\"; };\n" ONE_STAGE),
                                &cfg, &e),
                    0);
    if (cfg != NULL) {
        CU_ASSERT_EQUAL(cfg->run.batch, 1000);
        CU_ASSERT_EQUAL(cfg->retry.cap_ms, cfg->retry.base_ms);
    }
    config_free(cfg);
    log_reset();
}

static void test_stages(void)
{
    expect_load_error(scratch("s1.cfg", HEAD), CPB_EXIT_CONFIG,
                      "s1.cfg: missing required key 'stages'");
    expect_load_error(scratch("s2.cfg", HEAD "stages = ();\n"), CPB_EXIT_CONFIG,
                      "s2.cfg:3: 'stages' is empty: a pipeline needs at least one stage");
    expect_load_error(scratch("s3.cfg", HEAD "stages = { stage = \"validate\"; };\n"),
                      CPB_EXIT_CONFIG, "s3.cfg:3: 'stages' must be a list of groups");
    expect_load_error(scratch("s4.cfg", HEAD "stages = ( \"validate\" );\n"), CPB_EXIT_CONFIG,
                      "s4.cfg:3: stage entry 1: must be a group { stage = \"...\"; ... }, not a "
                      "string");
    expect_load_error(scratch("s5.cfg", HEAD "stages = ( { id = \"x\"; } );\n"), CPB_EXIT_CONFIG,
                      "s5.cfg:3: stage entry 1: missing required key 'stage'");
    expect_load_error(scratch("s6.cfg", HEAD "stages = ( { stage = \"Create_Order\"; } );\n"),
                      CPB_EXIT_CONFIG,
                      "s6.cfg:3: stage entry 1: 'stage' must be a stage name (lower-case letters, "
                      "digits and '-', such as \"create-order\"), not \"Create_Order\"");
    expect_load_error(scratch("s7.cfg", HEAD "stages = ( { stage = \"-x\"; } );\n"),
                      CPB_EXIT_CONFIG, "'stage' must be a stage name");
    expect_load_error(scratch("s8.cfg", HEAD "stages = ( { stage = 3; } );\n"), CPB_EXIT_CONFIG,
                      "s8.cfg:3: stage entry 1: 'stage' must be a string, not an integer");
    expect_load_error(scratch("s9.cfg", HEAD "stages = ( { stage = \"v\"; id = \"a/b\"; } );\n"),
                      CPB_EXIT_CONFIG,
                      "s9.cfg:3: stage entry 1: 'id' must be 1 to 64 letters, digits, '_', '.' or "
                      "'-', not \"a/b\"");
    expect_load_error(
        scratch("s10.cfg", HEAD "stages = ( { stage = \"v\"; enabled = \"no\"; } );\n"),
        CPB_EXIT_CONFIG,
        "s10.cfg:3: stage entry 1: 'enabled' must be a boolean (true or false), not a "
        "string");
    expect_load_error(scratch("s11.cfg", HEAD "stages = ( { stage = \"v\"; on = [1]; } );\n"),
                      CPB_EXIT_CONFIG,
                      "s11.cfg:3: stage entry 1: 'on' must be a list of strings; element 1 is an "
                      "integer");
    expect_load_error(scratch("s12.cfg", HEAD "stages = ( { stage = \"v\"; options = 4; } );\n"),
                      CPB_EXIT_CONFIG,
                      "s12.cfg:3: stage entry 1: 'options' must be a group { key = value; ... }, "
                      "not an integer");
    expect_load_error(scratch("s13.cfg", HEAD "stages = ( { stage = \"v\"; },\n"
                                              "  { stage = \"v\"; enabled = false; } );\n"),
                      CPB_EXIT_CONFIG, "s13.cfg:4: stage id 'v' is used twice (first at ");
    expect_load_error(scratch("s14.cfg", HEAD "stages = ( { stage = \"v\"; idd = \"x\"; } );\n"),
                      CPB_EXIT_CONFIG,
                      "s14.cfg:3: stage entry 1: unknown key 'idd' (did you mean 'id'?)");
    /* Same stage twice with distinct ids is fine; options stay unchecked here. */
    struct config *cfg = NULL;
    struct err e = {0};
    CU_ASSERT_EQUAL(config_load(scratch("s15.cfg", HEAD "stages = ( { stage = \"v\"; id = \"v1\"; "
                                                        "options = { anything = 1; }; },\n"
                                                        " { stage = \"v\"; id = \"v2\"; } );\n"),
                                &cfg, &e),
                    0);
    if (cfg != NULL) {
        CU_ASSERT_EQUAL(cfg->n_stages, 2);
        CU_ASSERT_STRING_EQUAL(cfg->stages[1].id, "v2");
        CU_ASSERT_EQUAL(cfg->stages[1].line, 4);
    }
    config_free(cfg);
    log_reset();
}

static void test_includes(void)
{
    scratch("inc-a.inc", "database = { connection = \"x\"; };\n@include \"inc-b.inc\"\n");
    scratch("inc-b.inc", "\n\nrun = { batch = 3000000000; };\n");
    expect_load_error(scratch("i1.cfg", "name = \"t\";\n@include \"inc-a.inc\"\n" ONE_STAGE),
                      CPB_EXIT_CONFIG,
                      "inc-b.inc:3: the integer 3000000000 does not fit in 32 bits");
    scratch("inc-c.inc", "run = {\n  batch = \"${CPBT_UNSET_IN_INCLUDE}\"; };\n");
    unsetenv("CPBT_UNSET_IN_INCLUDE");
    expect_load_error(scratch("i2.cfg", HEAD "@include \"inc-c.inc\"\n" ONE_STAGE), CPB_EXIT_CONFIG,
                      "inc-c.inc:2: environment variable 'CPBT_UNSET_IN_INCLUDE' is not set");
    scratch("inc-d.inc", "run = {\n  bacth = 5; };\n");
    expect_load_error(scratch("i3.cfg", HEAD "@include \"inc-d.inc\"\n" ONE_STAGE), CPB_EXIT_CONFIG,
                      "inc-d.inc:2: block 'run': unknown option 'bacth' (did you mean 'batch'?)");
    scratch("loop.inc", "@include \"loop.inc\"\n");
    expect_load_error(scratch("i4.cfg", HEAD "@include \"loop.inc\"\n" ONE_STAGE), CPB_EXIT_CONFIG,
                      "@include nested deeper than 10 files");
    /* An include naming a directory: libconfig 1.5's scanner would exit()
     * the process; cpbridge refuses the file before libconfig reads it. */
    expect_load_error(scratch("incdir.cfg", "name = \"x\";\n@include \"\"\n" ONE_STAGE),
                      CPB_EXIT_CONFIG,
                      "incdir.cfg:2: cannot include \"\": it is not a regular file");
    expect_load_error(scratch("incmissing.cfg", "name = \"x\";\n@include \"nope.inc\"\n" ONE_STAGE),
                      CPB_EXIT_CONFIG, "incmissing.cfg:2: cannot open include file \"nope.inc\"");
    /* libconfig reads an include name across line breaks; cpbridge refuses
     * such names (and backslashes) rather than guess what libconfig opens. */
    expect_load_error(scratch("incnl.cfg", "name = \"x\";\n@include \"a\nb\"\n" ONE_STAGE),
                      CPB_EXIT_CONFIG,
                      "incnl.cfg:3: an @include file name must be one quoted line");
    expect_load_error(scratch("incbs.cfg", "name = \"x\";\n@include \"a\\\\b\"\n" ONE_STAGE),
                      CPB_EXIT_CONFIG,
                      "incbs.cfg:2: an @include file name must be one quoted line");
    /* A valid include works from another working directory too. */
    scratch("inc-ok.inc", "run = { batch = 7; };\n");
    char cwd[PATH_MAX];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof cwd));
    CU_ASSERT_EQUAL_FATAL(chdir("/"), 0);
    struct config *cfg = NULL;
    struct err e = {0};
    int rc = config_load(scratch("i5.cfg", HEAD "@include \"inc-ok.inc\"\n" ONE_STAGE), &cfg, &e);
    CU_ASSERT_EQUAL(chdir(cwd), 0);
    CU_ASSERT_EQUAL(rc, 0);
    if (cfg != NULL) {
        CU_ASSERT_EQUAL(cfg->run.batch, 7);
    }
    config_free(cfg);
    log_reset();
}

static void test_hostile_numbers(void)
{
    /* Each would be silently changed by libconfig 1.5. */
    expect_load_error(scratch("n1.cfg", HEAD "run = { batch = -2147483649; };\n" ONE_STAGE),
                      CPB_EXIT_CONFIG, "n1.cfg:3: the integer -2147483649 does not fit in 32 bits");
    expect_load_error(scratch("n2.cfg", HEAD "run = { batch = 0x100000001; };\n" ONE_STAGE),
                      CPB_EXIT_CONFIG, "n2.cfg:3: the integer 0x100000001 does not fit in 32 bits");
    expect_load_error(
        scratch("n3.cfg", HEAD "run = { batch = 99999999999999999999L; };\n" ONE_STAGE),
        CPB_EXIT_CONFIG, "n3.cfg:3: the integer 99999999999999999999L does not fit in 64 bits");
    /* Digits inside strings, comments and names are not numbers. */
    struct config *cfg = NULL;
    struct err e = {0};
    CU_ASSERT_EQUAL(
        config_load(scratch("n4.cfg",
                            "# 99999999999999999999\n/* 4294967297 */ // 4294967297\n"
                            "name = \"n4294967297\";\n"
                            "database = { connection = \"x=99999999999999999999\"; };\n"
                            "run = { batch = 2147483647L; };\n"
                            "health = { pending_crit = 2147483647; dead_crit = 2000000000;"
                            " pending_warn = -0; };\n"
                            "stages = ( { stage = \"v\"; options = { f = 1e300; "
                            "g = 2147483647; h = -2147483648; a1 = 0x7fffffff; }; } );\n"),
                    &cfg, &e),
        -1); /* batch 2147483647 is out of its range: the number itself got through */
    CU_ASSERT_PTR_NOT_NULL(
        strstr(e.msg, "option 'batch' must be between 1 and 1000, not 2147483647"));
    log_reset();
}

static void test_deep_nesting(void)
{
    char text[4096];
    size_t n = 0;
    n += (size_t)snprintf(text + n, sizeof text - n, "name = \"t\";\nx = ");
    for (int i = 0; i < 70; i++) {
        n += (size_t)snprintf(text + n, sizeof text - n, "{ a = ");
    }
    n += (size_t)snprintf(text + n, sizeof text - n, "1");
    for (int i = 0; i < 70; i++) {
        n += (size_t)snprintf(text + n, sizeof text - n, "; }");
    }
    snprintf(text + n, sizeof text - n, ";\n");
    expect_load_error(scratch("deep.cfg", text), CPB_EXIT_CONFIG,
                      "groups and lists nested more than 64 levels deep");
}

static void test_pipeline_dir(void)
{
    struct config *cfg = NULL;
    struct err e = {0};
    char dir[PATH_MAX];
    char want[PATH_MAX + 32];
    unsetenv("PIPELINE_DIR");
    CU_ASSERT_PTR_NOT_NULL_FATAL(realpath(cpbtest_tmpdir(), dir));
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s",
             scratch("pd.cfg", HEAD "stage_dirs = [ \"${PIPELINE_DIR}/stages\" ];\n" ONE_STAGE));
    CU_ASSERT_EQUAL_FATAL(config_load(path, &cfg, &e), 0);
    snprintf(want, sizeof want, "%s/stages", dir);
    CU_ASSERT_STRING_EQUAL(cfg->stage_dirs[0], want);
    CU_ASSERT_STRING_EQUAL(cfg->dir, dir);
    config_free(cfg);
    /* A relative path gives the same absolute directory. */
    char cwd[PATH_MAX];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof cwd));
    CU_ASSERT_EQUAL_FATAL(chdir(dir), 0);
    cfg = NULL;
    int rc = config_load("pd.cfg", &cfg, &e);
    CU_ASSERT_EQUAL(chdir(cwd), 0);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(cfg->stage_dirs[0], want);
    CU_ASSERT_STRING_EQUAL(cfg->path, "pd.cfg");
    config_free(cfg);
    /* The environment wins. */
    setenv("PIPELINE_DIR", "/from/env", 1);
    cfg = NULL;
    CU_ASSERT_EQUAL_FATAL(config_load(path, &cfg, &e), 0);
    CU_ASSERT_STRING_EQUAL(cfg->stage_dirs[0], "/from/env/stages");
    config_free(cfg);
    unsetenv("PIPELINE_DIR");
    /* A file: secret beside the pipeline. */
    CU_ASSERT_FATAL(cpbtest_write(cpbtest_path("conn.secret"), "DSN=beside\n") == 0);
    chmod(cpbtest_path("conn.secret"), 0600);
    cfg = NULL;
    CU_ASSERT_EQUAL_FATAL(
        config_load(scratch("ps.cfg", "name = \"t\";\ndatabase = { connection = "
                                      "\"file:${PIPELINE_DIR}/conn.secret\"; };\n" ONE_STAGE),
                    &cfg, &e),
        0);
    CU_ASSERT_STRING_EQUAL(cfg->database.connection, "DSN=beside");
    config_free(cfg);
    log_reset();
}

/* config_interpolate must fail with a message containing `want`. */
static void expect_interp_error(const char *in, const char *want)
{
    char *out = (char *)1;
    struct err e = {0};
    CU_ASSERT_EQUAL(config_interpolate(in, "demo.cfg:12", &out, &e), -1);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_EQUAL(e.code, CPB_EXIT_CONFIG);
    if (strstr(e.msg, want) == NULL) {
        fprintf(stderr, "\n  in:   %s\n  want: %s\n  got:  %s\n", in, want, e.msg);
        CU_FAIL("message differs");
    }
}

static void expect_interp(const char *in, const char *want)
{
    char *out = NULL;
    struct err e = {0};
    int rc = config_interpolate(in, "demo.cfg:12", &out, &e);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0 || out == NULL || strcmp(out, want) != 0) {
        fprintf(stderr, "\n  in:   %s\n  want: %s\n  got:  %s (%s)\n", in, want,
                out != NULL ? out : "(null)", e.msg);
        CU_FAIL("interpolation differs");
    }
    free(out);
}

static void test_interpolate(void)
{
    setenv("CPBT_SET", "X", 1);
    setenv("CPBT_EMPTY", "", 1);
    setenv("CPBT_DOLLAR", "a${CPBT_SET}$b", 1);
    unsetenv("CPBT_UNSET");
    unsetenv("CPBT_UNSET2");
    expect_interp("", "");
    expect_interp("plain", "plain");
    expect_interp("a${CPBT_SET}b", "aXb");
    expect_interp("${CPBT_SET}${CPBT_SET}", "XX");
    expect_interp("${CPBT_UNSET:-dflt}", "dflt");
    expect_interp("${CPBT_EMPTY:-dflt}", "dflt");
    expect_interp("${CPBT_SET:-dflt}", "X");
    expect_interp("${CPBT_UNSET:-}", "");
    expect_interp("${CPBT_UNSET:-a:b-c?d{e}", "a:b-c?d{e");
    expect_interp("${CPBT_UNSET:-${CPBT_UNSET2:-${CPBT_SET}}}", "X");
    expect_interp("${CPBT_UNSET:-<${CPBT_UNSET2:-in}>}", "<in>");
    /* The unused default of a set variable may name unset variables. */
    expect_interp("${CPBT_SET:-${CPBT_UNSET}}", "X");
    expect_interp("${CPBT_SET:?never shown}", "X");
    expect_interp("$$", "$");
    expect_interp("a$$b$$", "a$b$");
    expect_interp("$${CPBT_SET}", "${CPBT_SET}");
    expect_interp("${CPBT_UNSET:-$$}", "$");
    /* Values from the environment are not expanded again. */
    expect_interp("${CPBT_DOLLAR}", "a${CPBT_SET}$b");
    /* 8 levels are fine. */
    expect_interp("${A1:-${A2:-${A3:-${A4:-${A5:-${A6:-${A7:-${CPBT_SET}}}}}}}}", "X");

    expect_interp_error("${CPBT_UNSET}",
                        "demo.cfg:12: environment variable 'CPBT_UNSET' is not set or empty "
                        "(write ${CPBT_UNSET:-default} to give a default)");
    expect_interp_error("${CPBT_EMPTY}", "environment variable 'CPBT_EMPTY' is not set or empty");
    expect_interp_error("${CPBT_UNSET:-${CPBT_UNSET2}}",
                        "environment variable 'CPBT_UNSET2' is not set or empty");
    expect_interp_error("${CPBT_UNSET:?set CPBT_UNSET to the store URL}",
                        "demo.cfg:12: environment variable 'CPBT_UNSET' is not set or empty: set "
                        "CPBT_UNSET to the store URL");
    expect_interp_error("${CPBT_UNSET:?}", "demo.cfg:12: environment variable 'CPBT_UNSET' is not "
                                           "set or empty");
    expect_interp_error("${CPBT_UNSET:?needs ${CPBT_SET}}", "is not set or empty: needs X");
    expect_interp_error("${CPBT_SET", "demo.cfg:12: unterminated '${' (missing '}')");
    expect_interp_error("abc${", "demo.cfg:12: unterminated '${' (missing '}')");
    expect_interp_error("${CPBT_UNSET:-abc", "demo.cfg:12: unterminated '${' (missing '}')");
    expect_interp_error("${CPBT_SET:-${CPBT_UNSET:-x}", "unterminated '${' (missing '}')");
    expect_interp_error("cost $5", "demo.cfg:12: a '$' must start ${VAR}, ${VAR:-default} or "
                                   "${VAR:?message}; write '$$' for a literal '$'");
    expect_interp_error("end$", "a '$' must start ${VAR}");
    expect_interp_error("$HOME/x", "a '$' must start ${VAR}");
    expect_interp_error("${}", "demo.cfg:12: bad variable name in '${...}'");
    expect_interp_error("${1ABC}", "bad variable name in '${...}'");
    expect_interp_error("${A B}", "demo.cfg:12: unsupported form '${A ...}'");
    expect_interp_error("${CPBT_SET:=x}", "unsupported form '${CPBT_SET:...}'");
    expect_interp_error("${CPBT_SET-x}", "unsupported form '${CPBT_SET-...}'");
    expect_interp_error("${A1:-${A2:-${A3:-${A4:-${A5:-${A6:-${A7:-${A8:-${CPBT_SET}}}}}}}}}",
                        "demo.cfg:12: '${...}' nested more than 8 levels deep");
    char longname[400];
    memset(longname, 'A', sizeof longname);
    memcpy(longname, "${", 2);
    longname[sizeof longname - 2] = '}';
    longname[sizeof longname - 1] = '\0';
    expect_interp_error(longname, "variable name longer than 128 bytes");
    unsetenv("CPBT_SET");
    unsetenv("CPBT_EMPTY");
    unsetenv("CPBT_DOLLAR");
}

static void test_engine_tables(void)
{
    struct err e = {0};
    size_t sizes[] = {sizeof(struct config_database), sizeof(struct config_run),
                      sizeof(struct config_retry),    sizeof(struct config_log),
                      sizeof(struct config_metrics),  sizeof(struct config_health),
                      sizeof(struct config_alerts),   sizeof(struct config_serve)};
    size_t i = 0;
    for (; config_engine_blocks[i] != NULL; i++) {
        const struct cpb_option *t = config_engine_table(config_engine_blocks[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        CU_ASSERT_FATAL(i < sizeof sizes / sizeof sizes[0]);
        CU_ASSERT_EQUAL(options_check_table(t, sizes[i], config_engine_blocks[i], &e), 0);
        for (size_t k = 0; t[k].name != NULL; k++) {
            CU_ASSERT_PTR_NOT_NULL(t[k].help);
        }
    }
    CU_ASSERT_EQUAL(i, 8);
    CU_ASSERT_PTR_NULL(config_engine_table("stages"));
    CU_ASSERT_PTR_NULL(config_engine_table(NULL));
    if (e.code != 0) {
        fprintf(stderr, "\n  %s\n", e.msg);
    }
}

static const struct cpbtest_case config_cases[] = {{"good", test_good},
                                                   {"lock_dir_from_env", test_lock_dir_from_env},
                                                   {"minimal_defaults", test_minimal_defaults},
                                                   {"broken_fixtures", test_broken_fixtures},
                                                   {"not_found", test_not_found},
                                                   {"top_level", test_top_level},
                                                   {"engine_blocks", test_engine_blocks},
                                                   {"stages", test_stages},
                                                   {"includes", test_includes},
                                                   {"hostile_numbers", test_hostile_numbers},
                                                   {"deep_nesting", test_deep_nesting},
                                                   {"pipeline_dir", test_pipeline_dir},
                                                   {"interpolate", test_interpolate},
                                                   {"engine_tables", test_engine_tables},
                                                   {NULL, NULL}};

static const struct cpbtest_suite config_suite = {"config", NULL, NULL, config_cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *suites[] = {&config_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
