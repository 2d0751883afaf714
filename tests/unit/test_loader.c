/*
 * test_loader.c — the stage loader against real shared objects: the fixture
 * stages built into ${CMAKE_BINARY_DIR}/fixture-stages (one good stage and
 * one per way a stage must be refused), world-writable files and
 * directories made at test time, the search order and the name rules.
 */
#include <jansson.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpbtest.h"
#include "engine/loader.h"
#include "engine/options.h"

static char fixtures[1024];

/* What the fake host services saw (the test's own host, not a mock of a
 * component: stages only ever reach the engine through this table). */
static int log_calls;
static char last_log[512];
static char last_reason_code[64];
static char last_reason[512];
static struct cpb_ctx *seen_ctx;

static void host_log(struct cpb_ctx *ctx, enum cpb_log_level level, const char *fmt, ...)
    CPB_PRINTF(3, 4);
static void host_log(struct cpb_ctx *ctx, enum cpb_log_level level, const char *fmt, ...)
{
    va_list ap;
    (void)level;
    seen_ctx = ctx;
    log_calls++;
    va_start(ap, fmt);
    vsnprintf(last_log, sizeof last_log, fmt, ap);
    va_end(ap);
}

static void host_reason(struct cpb_ctx *ctx, const char *code, const char *fmt, ...)
    CPB_PRINTF(3, 4);
static void host_reason(struct cpb_ctx *ctx, const char *code, const char *fmt, ...)
{
    va_list ap;
    seen_ctx = ctx;
    snprintf(last_reason_code, sizeof last_reason_code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(last_reason, sizeof last_reason, fmt, ap);
    va_end(ap);
}

static const char *fixture(const char *name)
{
    static char bufs[4][1100];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, 1100, "%s/%s.so", fixtures, name);
    return b;
}

static int suite_setup(void)
{
    snprintf(fixtures, sizeof fixtures, "%s", cpbtest_build("fixture-stages"));
    if (access(fixture("good-stage"), R_OK) != 0) {
        fprintf(stderr, "test_loader: %s is missing: build the fixture stages first\n",
                fixture("good-stage"));
        return 1;
    }
    return 0;
}

/* Assert that `msg` contains `part`, printing both when it does not. */
static void expect_in(const char *msg, const char *part)
{
    int found = strstr(msg, part) != NULL;
    if (!found) {
        fprintf(stderr, "\n  expected \"%s\"\n  in       \"%s\"\n", part, msg);
    }
    CU_ASSERT_TRUE(found);
}

/* Open `path` as stage `name`, expect a refusal with CPB_EXIT_CONFIG whose
 * message contains every string of the NULL-terminated list. */
static void expect_refused(const char *name, const char *path, ...)
{
    struct loaded_stage s;
    struct err err = {0};
    memset(&s, 0x5a, sizeof s);
    int rc = loader_open(name, path, &s, &err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_EQUAL(err.code, CPB_EXIT_CONFIG);
    CU_ASSERT_PTR_NULL(s.desc);
    CU_ASSERT_PTR_NULL(s.handle);
    CU_ASSERT_PTR_NULL(s.path);
    va_list ap;
    va_start(ap, path);
    for (const char *part = va_arg(ap, const char *); part != NULL;
         part = va_arg(ap, const char *)) {
        expect_in(err.msg, part);
    }
    va_end(ap);
    if (rc == 0) {
        loader_close(&s);
    }
}

static void test_good_stage_runs(void)
{
    struct loaded_stage s = {0};
    struct err err = {0};
    config_t cfg;
    struct opt_store *store = NULL;
    void *opts = NULL;
    void *state = NULL;
    int marker = 0;
    struct cpb_ctx *ctx = (struct cpb_ctx *)&marker;
    json_t *order = json_object();
    json_t *result = json_object();
    struct cpb_host host = {.size = sizeof host,
                            .abi_major = CPB_ABI_MAJOR,
                            .abi_minor = CPB_ABI_MINOR,
                            .log = host_log,
                            .reason = host_reason};

    config_init(&cfg);
    int rc = loader_open("good-stage", fixture("good-stage"), &s, &err);
    if (rc != 0) {
        fprintf(stderr, "\n  %s\n", err.msg);
    }
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(s.handle);
    CU_ASSERT_STRING_EQUAL(s.path, fixture("good-stage"));
    CU_ASSERT_STRING_EQUAL(s.desc->name, "good-stage");
    CU_ASSERT_STRING_EQUAL(s.desc->version, "1.2.3");
    CU_ASSERT_EQUAL(s.desc->kind, CPB_STEP);
    CU_ASSERT_EQUAL(s.desc->abi_major, CPB_ABI_MAJOR);

    /* Options as the engine fills them: from a libconfig group. */
    CU_ASSERT_EQUAL_FATAL(config_read_string(&cfg, "options = { tag = \"hello\"; count = 3; };"),
                          CONFIG_TRUE);
    opts = calloc(1, s.desc->options_size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(opts);
    rc = options_fill(s.desc->options, config_lookup(&cfg, "options"), opts, &store,
                      "stage 'good-stage'", &err);
    if (rc != 0) {
        fprintf(stderr, "\n  %s\n", err.msg);
    }
    CU_ASSERT_EQUAL_FATAL(rc, 0);

    log_calls = 0;
    CU_ASSERT_EQUAL_FATAL(s.desc->init(&host, ctx, opts, &state), 0);
    CU_ASSERT_PTR_NOT_NULL(state);
    CU_ASSERT_EQUAL(log_calls, 1);
    CU_ASSERT_PTR_EQUAL(seen_ctx, ctx);
    expect_in(last_log, "tag hello");

    struct cpb_record rec = {.size = sizeof rec,
                             .id = 7,
                             .source = "test",
                             .external_id = "1001",
                             .attempt = 1,
                             .payload = order,
                             .order = order,
                             .result = result};
    CU_ASSERT_EQUAL(s.desc->process(state, &rec), CPB_OK);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(result, "good_tag")), "hello");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(result, "good_count")), 3);

    /* A record without an order: FAIL with a reason through the host. */
    rec.order = NULL;
    last_reason_code[0] = '\0';
    CU_ASSERT_EQUAL(s.desc->process(state, &rec), CPB_FAIL);
    CU_ASSERT_STRING_EQUAL(last_reason_code, "good.no_order");
    expect_in(last_reason, "record 7");

    s.desc->fini(state);
    loader_close(&s);
    CU_ASSERT_PTR_NULL(s.desc);
    CU_ASSERT_PTR_NULL(s.handle);
    CU_ASSERT_PTR_NULL(s.path);
    loader_close(&s); /* safe on a zeroed struct */

    opt_store_free(store);
    free(opts);
    config_destroy(&cfg);
    json_decref(order);
    json_decref(result);
}

static void test_wrong_major(void)
{
    char speaks[64];
    snprintf(speaks, sizeof speaks, "this cpbridge speaks ABI %d.%d", CPB_ABI_MAJOR, CPB_ABI_MINOR);
    expect_refused("wrong-major", fixture("wrong-major"), "stage 'wrong-major'",
                   fixture("wrong-major"), "was built for ABI 2.0", speaks,
                   "rebuild it against this cpbridge's <cpbridge/stage.h>", NULL);
}

static void test_newer_minor(void)
{
    char needs[64];
    char ours[64];
    snprintf(needs, sizeof needs, "needs ABI %d.%d", CPB_ABI_MAJOR, CPB_ABI_MINOR + 1);
    snprintf(ours, sizeof ours, "newer than this cpbridge's %d.%d: upgrade cpbridge", CPB_ABI_MAJOR,
             CPB_ABI_MINOR);
    expect_refused("newer-minor", fixture("newer-minor"), "stage 'newer-minor'",
                   fixture("newer-minor"), needs, ours, NULL);
}

static void test_short_size(void)
{
    char expected[64];
    /* The fixture declares this ABI, 1.3, whose descriptor ends with
     * receive. */
    snprintf(expected, sizeof expected, "expected at least %zu",
             offsetof(struct cpb_stage, receive) + sizeof(loader_receive_fn));
    expect_refused("short-size", fixture("short-size"), fixture("short-size"), "descriptor size 8",
                   expected, NULL);
}

/* A stage built against ABI 1.0 (minor 0, descriptor ending with fini)
 * still loads, and the host never reads the members added after it. */
static void test_older_minor_loads(void)
{
    struct loaded_stage s = {0};
    struct err err = {0};
    CU_ASSERT_EQUAL_FATAL(loader_open("abi-1-0", fixture("abi-1-0"), &s, &err), 0);
    CU_ASSERT_EQUAL(s.desc->abi_minor, 0);
    CU_ASSERT_EQUAL(s.desc->size, offsetof(struct cpb_stage, fini) + sizeof(void (*)(void *)));
    CU_ASSERT_PTR_NULL(loader_process_batch(s.desc));
    CU_ASSERT_PTR_NULL(loader_receive(s.desc));
    CU_ASSERT_EQUAL(s.desc->process(NULL, NULL), CPB_OK);
    loader_close(&s);
}

static void test_missing_symbol(void)
{
    expect_refused("missing-symbol", fixture("missing-symbol"), fixture("missing-symbol"),
                   "does not export cpb_stage_entry", "undefined symbol", NULL);
}

static void test_null_descriptor(void)
{
    expect_refused("null-descriptor", fixture("null-descriptor"), fixture("null-descriptor"),
                   "returned no descriptor", NULL);
}

static void test_name_mismatch(void)
{
    /* The file and the pipeline agree; the descriptor does not. */
    expect_refused("name-mismatch", fixture("name-mismatch"), "name mismatch",
                   "asks for 'name-mismatch'", fixture("name-mismatch"),
                   "descriptor says 'other-name'", NULL);
    /* The descriptor and the pipeline agree; the file name does not: it is
     * refused before dlopen runs any of its code. */
    expect_refused("other-name", fixture("name-mismatch"), "name mismatch", "asks for 'other-name'",
                   fixture("name-mismatch"), "must be the file other-name.so", NULL);
    expect_refused("x", "/etc/passwd", "name mismatch", "must be the file x.so", NULL);
}

static void test_bad_options(void)
{
    /* The table check is options_check_table's (options.c); the loader
     * must call it and say which stage file the table came from. */
    expect_refused("bad-options", fixture("bad-options"), "stage 'bad-options'",
                   fixture("bad-options"), "option 'limit'", "twice", NULL);
    expect_refused("bad-offset", fixture("bad-offset"), "stage 'bad-offset'", fixture("bad-offset"),
                   "option 'window'", "outside", NULL);
}

static void test_not_a_stage(void)
{
    const char *dir = cpbtest_path("junk");
    char path[1100];
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/garbage.so", dir);
    CU_ASSERT_EQUAL_FATAL(cpbtest_write(path, "this is not an ELF file\n"), 0);
    expect_refused("garbage", path, "cannot load stage 'garbage'", path, NULL);

    snprintf(path, sizeof path, "%s/dir-stage.so", dir);
    CU_ASSERT_EQUAL_FATAL(mkdir(path, 0755), 0);
    expect_refused("dir-stage", path, "refusing", path, "not a regular file", NULL);

    snprintf(path, sizeof path, "%s/absent.so", dir);
    expect_refused("absent", path, "cannot open stage file", path, NULL);
}

static void test_world_writable(void)
{
    const char *dir = cpbtest_path("ww");
    char path[1100];
    char dirmsg[1200];
    struct loaded_stage s = {0};
    struct err err = {0};

    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/good-stage.so", dir);
    CU_ASSERT_EQUAL_FATAL(cpbtest_sh("cp '%s' '%s'", fixture("good-stage"), path), 0);

    CU_ASSERT_EQUAL_FATAL(chmod(path, 0666), 0);
    expect_refused("good-stage", path, "refusing", path,
                   "the file is world-writable (mode 0666); remove o+w", NULL);

    CU_ASSERT_EQUAL_FATAL(chmod(path, 0644), 0);
    CU_ASSERT_EQUAL_FATAL(chmod(dir, 0777), 0);
    snprintf(dirmsg, sizeof dirmsg, "the directory %s is world-writable (mode 0777); remove o+w",
             dir);
    expect_refused("good-stage", path, "refusing", path, dirmsg, NULL);

    /* Sticky like /tmp is still world-writable. */
    CU_ASSERT_EQUAL_FATAL(chmod(dir, 01777), 0);
    expect_refused("good-stage", path, "(mode 1777)", NULL);

    /* A symlink in a safe directory to a file in an unsafe one. */
    const char *safe = cpbtest_path("safe");
    char link[1100];
    CU_ASSERT_EQUAL_FATAL(mkdir(safe, 0755), 0);
    snprintf(link, sizeof link, "%s/good-stage.so", safe);
    CU_ASSERT_EQUAL_FATAL(symlink(path, link), 0);
    expect_refused("good-stage", link, "refusing", link, "is world-writable", NULL);

    /* Fixed permissions: the same file loads, so the refusals were theirs. */
    CU_ASSERT_EQUAL_FATAL(chmod(dir, 0755), 0);
    int rc = loader_open("good-stage", link, &s, &err);
    if (rc != 0) {
        fprintf(stderr, "\n  %s\n", err.msg);
    }
    CU_ASSERT_EQUAL(rc, 0);
    loader_close(&s);
}

/* Make dir (0755) with a copy of good-stage.so in it. */
static void stage_dir_with_good(const char *dir)
{
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0755), 0);
    CU_ASSERT_EQUAL_FATAL(cpbtest_sh("cp '%s' '%s/'", fixture("good-stage"), dir), 0);
}

static void test_search_order(void)
{
    char a[1024];
    char b[1024];
    char want[1100];
    char env[2100];
    char *path = NULL;
    struct err err = {0};
    snprintf(a, sizeof a, "%s", cpbtest_path("order-a"));
    snprintf(b, sizeof b, "%s", cpbtest_path("order-b"));
    stage_dir_with_good(a);
    stage_dir_with_good(b);
    snprintf(env, sizeof env, "%s/missing::%s", a, b);
    CU_ASSERT_EQUAL_FATAL(setenv("CPBRIDGE_STAGE_PATH", env, 1), 0);

    /* stage_dirs come before CPBRIDGE_STAGE_PATH. */
    const char *dirs_a[] = {a, NULL};
    CU_ASSERT_EQUAL_FATAL(loader_find("good-stage", dirs_a, &path, &err), 0);
    snprintf(want, sizeof want, "%s/good-stage.so", a);
    CU_ASSERT_STRING_EQUAL(path, want);
    free(path);
    path = NULL;

    /* Without stage_dirs, the environment's directories, in order (the
     * missing and empty elements skipped). */
    CU_ASSERT_EQUAL_FATAL(loader_find("good-stage", NULL, &path, &err), 0);
    snprintf(want, sizeof want, "%s/good-stage.so", b);
    CU_ASSERT_STRING_EQUAL(path, want);
    free(path);
    path = NULL;

    /* A trailing slash is accepted and not doubled in the path. */
    char a_slash[1100];
    snprintf(a_slash, sizeof a_slash, "%s/", b);
    const char *dirs_slash[] = {a_slash, NULL};
    CU_ASSERT_EQUAL_FATAL(loader_find("good-stage", dirs_slash, &path, &err), 0);
    CU_ASSERT_STRING_EQUAL(path, want);
    free(path);
    path = NULL;

    /* A missing stage lists every directory searched, and where each came
     * from; the missing ones are marked. */
    const char *dirs_missing[] = {"/nonexistent-cpb-dir", a, NULL};
    CU_ASSERT_EQUAL(loader_find("no-such-stage", dirs_missing, &path, &err), -1);
    CU_ASSERT_PTR_NULL(path);
    CU_ASSERT_EQUAL(err.code, CPB_EXIT_CONFIG);
    expect_in(err.msg, "stage 'no-such-stage' not found: no file no-such-stage.so in ");
    expect_in(err.msg, "/nonexistent-cpb-dir (stage_dirs, missing)");
    snprintf(want, sizeof want, "%s (stage_dirs)", a);
    expect_in(err.msg, want);
    snprintf(want, sizeof want, "%s (CPBRIDGE_STAGE_PATH)", b);
    expect_in(err.msg, want);
    expect_in(err.msg, CPB_STAGE_INSTALL_DIR);
    /* stage_dirs are listed before the environment's. */
    CU_ASSERT_TRUE(strstr(err.msg, a) < strstr(err.msg, b));

    CU_ASSERT_EQUAL(unsetenv("CPBRIDGE_STAGE_PATH"), 0);
}

struct dir_seen {
    const char *dirs[16];
    size_t n;
};

static void collect_dir(const char *dir, void *arg)
{
    struct dir_seen *seen = arg;
    if (seen->n < 16) {
        seen->dirs[seen->n] = strdup(dir);
    }
    seen->n++;
}

static void test_each_dir(void)
{
    char a[1024];
    char b[1024];
    char a_slash[1100];
    char link[1100];
    char env[3200];
    struct dir_seen seen = {{NULL}, 0};
    snprintf(a, sizeof a, "%s", cpbtest_path("each-a"));
    snprintf(b, sizeof b, "%s", cpbtest_path("each-b"));
    snprintf(a_slash, sizeof a_slash, "%s/", a);
    snprintf(link, sizeof link, "%s", cpbtest_path("each-link"));
    CU_ASSERT_EQUAL_FATAL(mkdir(a, 0755), 0);
    CU_ASSERT_EQUAL_FATAL(mkdir(b, 0755), 0);
    CU_ASSERT_EQUAL_FATAL(symlink(a, link), 0);
    snprintf(env, sizeof env, "%s:%s:%s", b, a, b);
    CU_ASSERT_EQUAL_FATAL(setenv("CPBRIDGE_STAGE_PATH", env, 1), 0);

    const char *dirs[] = {a, a_slash, "/nonexistent-cpb-dir", link, NULL};
    loader_each_dir(dirs, collect_dir, &seen);
    CU_ASSERT_TRUE_FATAL(seen.n >= 2 && seen.n <= 16);
    CU_ASSERT_STRING_EQUAL(seen.dirs[0], a);
    CU_ASSERT_STRING_EQUAL(seen.dirs[1], b);
    for (size_t i = 2; i < seen.n; i++) {
        /* Only the install and build directories may follow. */
        CU_ASSERT_STRING_NOT_EQUAL(seen.dirs[i], a);
        CU_ASSERT_STRING_NOT_EQUAL(seen.dirs[i], b);
        CU_ASSERT_STRING_NOT_EQUAL(seen.dirs[i], link);
        CU_ASSERT_STRING_NOT_EQUAL(seen.dirs[i], "/nonexistent-cpb-dir");
        CU_ASSERT_TRUE(strcmp(seen.dirs[i], CPB_STAGE_INSTALL_DIR) == 0 ||
                       strcmp(seen.dirs[i], CPB_STAGE_BUILD_DIR) == 0);
    }
    for (size_t i = 0; i < seen.n && i < 16; i++) {
        free((void *)seen.dirs[i]);
    }
    CU_ASSERT_EQUAL(unsetenv("CPBRIDGE_STAGE_PATH"), 0);
}

static void test_names(void)
{
    char longest[64];
    char too_long[65];
    memset(longest, 'a', 63);
    longest[63] = '\0';
    memset(too_long, 'a', 64);
    too_long[64] = '\0';

    CU_ASSERT_TRUE(loader_valid_name("a"));
    CU_ASSERT_TRUE(loader_valid_name("good-stage"));
    CU_ASSERT_TRUE(loader_valid_name("9lives"));
    CU_ASSERT_TRUE(loader_valid_name(longest));
    CU_ASSERT_FALSE(loader_valid_name(too_long));
    CU_ASSERT_FALSE(loader_valid_name("../x"));
    CU_ASSERT_FALSE(loader_valid_name("A"));
    CU_ASSERT_FALSE(loader_valid_name("x.so"));
    CU_ASSERT_FALSE(loader_valid_name(""));
    CU_ASSERT_FALSE(loader_valid_name(NULL));
    CU_ASSERT_FALSE(loader_valid_name("-x"));
    CU_ASSERT_FALSE(loader_valid_name("x/y"));
    CU_ASSERT_FALSE(loader_valid_name("x_y"));
    CU_ASSERT_FALSE(loader_valid_name("x y"));

    const char *bad[] = {"../x", "A", "x.so", "", "/etc/passwd"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct err err = {0};
        char *path = (char *)"untouched";
        char want[80];
        snprintf(want, sizeof want, "invalid stage name '%s'", bad[i]);
        CU_ASSERT_EQUAL(loader_find(bad[i], NULL, &path, &err), -1);
        CU_ASSERT_PTR_NULL(path);
        CU_ASSERT_EQUAL(err.code, CPB_EXIT_CONFIG);
        expect_in(err.msg, want);
        expect_refused(bad[i], fixture("good-stage"), want, NULL);
    }

    /* Control bytes in a name are not echoed raw. */
    struct err err = {0};
    char *path = NULL;
    CU_ASSERT_EQUAL(loader_find("bad\033[2Jname", NULL, &path, &err), -1);
    CU_ASSERT_PTR_NULL(strchr(err.msg, '\033'));
    expect_in(err.msg, "bad?[2Jname");
}

static enum cpb_status receive_noop(void *state, const struct cpb_delivery *d,
                                    struct cpb_answer *ans)
{
    (void)state;
    (void)d;
    ans->status = 200;
    return CPB_SKIP;
}

static void batch_noop(void *state, struct cpb_record *const *recs, size_t n, enum cpb_status *out)
{
    (void)state;
    (void)recs;
    for (size_t i = 0; i < n; i++) {
        out[i] = CPB_OK;
    }
}

static void test_check_descriptor(void)
{
    struct loaded_stage s = {0};
    struct err err = {0};
    CU_ASSERT_EQUAL_FATAL(loader_open("good-stage", fixture("good-stage"), &s, &err), 0);
    struct cpb_stage d = *s.desc;

    /* A static stage (no file) with a sound descriptor passes. */
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &err), 0);

    /* init and fini are optional; process is not. */
    d.init = NULL;
    d.fini = NULL;
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &err), 0);
    CU_ASSERT_EQUAL(err.code, 0);

    d.process = NULL;
    CU_ASSERT_EQUAL(loader_check("good-stage", "/x/good-stage.so", &d, &err), -1);
    expect_in(err.msg, "stage 'good-stage' (/x/good-stage.so)");
    expect_in(err.msg, "no process function");
    d.process = s.desc->process;

    int kinds[] = {0, 6, -1};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        struct err e = {0};
        char want[40];
        memcpy(&d.kind, &kinds[i], sizeof d.kind);
        snprintf(want, sizeof want, "unknown kind %d", kinds[i]);
        CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e), -1);
        expect_in(e.msg, want);
    }
    d.kind = CPB_NOTIFY;
    struct err e1 = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e1), 0);

    /* The record kind (ABI 1.5) is known to stages built for 1.5 only; a
     * stage built for 1.4 still loads with the kinds it knew. */
    d.kind = CPB_RECORD;
    struct err e1a = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e1a), 0);
    d.abi_minor = 4;
    struct err e1b = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e1b), -1);
    expect_in(e1b.msg, "unknown kind 5");
    expect_in(e1b.msg, "record from ABI 1.5 on");
    d.kind = CPB_STEP;
    struct err e1c = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e1c), 0);
    d.abi_minor = CPB_ABI_MINOR;
    CU_ASSERT_STRING_EQUAL(loader_kind_name(CPB_RECORD), "record");
    CU_ASSERT_STRING_EQUAL(loader_kind_name((enum cpb_kind)9), "?");

    d.name = NULL;
    struct err e2 = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e2), -1);
    expect_in(e2.msg, "descriptor says '(null)'");
    d.name = "good-stage";

    d.version = NULL;
    struct err e3 = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e3), -1);
    expect_in(e3.msg, "no version");
    d.version = "1";

    d.options = NULL;
    struct err e4 = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e4), -1);
    expect_in(e4.msg, "declares no option table");
    d.options_size = 0;
    struct err e5 = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e5), 0);

    struct err e6 = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, NULL, &e6), -1);
    expect_in(e6.msg, "returned no descriptor");

    /* process_batch (ABI 1.1) belongs to after-commit stages only. */
    d.process_batch = batch_noop;
    d.kind = CPB_STEP;
    struct err e7 = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e7), -1);
    expect_in(e7.msg, "process_batch is for after-commit and record stages only");
    d.kind = CPB_AFTER_COMMIT;
    struct err e8 = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e8), 0);
    CU_ASSERT_PTR_EQUAL(loader_process_batch(&d), batch_noop);
    d.kind = CPB_RECORD;
    struct err e8a = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e8a), 0);
    d.kind = CPB_AFTER_COMMIT;

    /* receive (ABI 1.3) belongs to source stages only, and is not read
     * from a descriptor built before 1.3. */
    d.process_batch = NULL;
    d.receive = receive_noop;
    struct err e9 = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e9), -1);
    expect_in(e9.msg, "receive is for source stages only");
    d.kind = CPB_SOURCE;
    struct err e10 = {0};
    CU_ASSERT_EQUAL(loader_check("good-stage", NULL, &d, &e10), 0);
    CU_ASSERT_PTR_EQUAL(loader_receive(&d), receive_noop);
    d.abi_minor = 2;
    CU_ASSERT_PTR_NULL(loader_receive(&d));

    loader_close(&s);
}

int main(int argc, char **argv)
{
    static const struct cpbtest_case cases[] = {
        {"good stage loads, runs and unloads", test_good_stage_runs},
        {"wrong ABI major refused", test_wrong_major},
        {"newer ABI minor refused", test_newer_minor},
        {"short descriptor refused", test_short_size},
        {"ABI 1.0 stage loads without the 1.1 members", test_older_minor_loads},
        {"missing entry symbol refused", test_missing_symbol},
        {"NULL descriptor refused", test_null_descriptor},
        {"name mismatch refused", test_name_mismatch},
        {"bad option tables refused", test_bad_options},
        {"non-stage files refused", test_not_a_stage},
        {"world-writable file and directory refused", test_world_writable},
        {"search order and not-found message", test_search_order},
        {"each_dir: existing, ordered, no duplicates", test_each_dir},
        {"stage names", test_names},
        {"descriptor checks", test_check_descriptor},
        {NULL, NULL},
    };
    static const struct cpbtest_suite suite = {"loader", suite_setup, NULL, cases};
    static const struct cpbtest_suite *const suites[] = {&suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
