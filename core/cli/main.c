/*
 * main.c — the cpbridge command line: parses the verb and its options,
 * runs it, prints the result, and turns errors into documented exit codes
 * (see README.md and docs/CLI.md). The only place that exits.
 */
#include <dirent.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd_test.h"
#include "cli/ops.h"
#include "cli/progress.h"
#include "engine/config.h"
#include "engine/loader.h"
#include "engine/options.h"
#include "engine/pipeline.h"
#include "engine/runner.h"
#include "engine/schema.h"
#include "engine/serve.h"
#include "lib/err.h"
#include "lib/text.h"
#include "services/db.h"
#include "services/http.h"
#include "services/log.h"

static const char usage_main[] =
    "usage: cpbridge COMMAND [ARGS]\n"
    "\n"
    "Moves WooCommerce orders into NCR Counterpoint through a pipeline of stages.\n"
    "\n"
    "Commands:\n"
    "  run PIPELINE        run the pipeline once (schedule it every few minutes)\n"
    "  serve PIPELINE      receive the store's webhooks and apply orders at once\n"
    "  check PIPELINE      validate the pipeline file, its stages and options\n"
    "  db init PIPELINE    create or upgrade the database schema (--demo: demo data)\n"
    "  health PIPELINE     business health for monitoring (exit 0/1/2/3)\n"
    "  status PIPELINE     counts per state, recent runs, dead letters\n"
    "  report PIPELINE     an HTML page (or --json) of how the last days went\n"
    "  orders PIPELINE     list orders, or show one order's whole story\n"
    "  dlq PIPELINE        list, retry or cancel orders that need a person\n"
    "  records PIPELINE    list records that are not orders (stock), retry dead ones\n"
    "  rollback PIPELINE ID  undo an applied order in Counterpoint\n"
    "  drift PIPELINE      compare (and --fix) cpbridge's inventory commitments\n"
    "  test PIPELINE DIR   run order fixtures against a throwaway copy of the database\n"
    "  stages              list installed stages, or describe one\n"
    "  version             print the version and ABI\n"
    "\n"
    "Run `cpbridge COMMAND --help` for a command's options.\n"
    "Exit codes: 0 ok, 1 done but needs attention, 64 usage, 65 data, 66 no input,\n"
    "69 database unavailable, 70 internal error, 74 I/O error, 75 another run holds\n"
    "the lock, 78 configuration error (docs/CLI.md has the details).\n";

static const char usage_run[] =
    "usage: cpbridge run PIPELINE [--dry-run] [--limit N] [--since TIME]\n"
    "                    [--log-level LEVEL] [--log-format text|json] [--json]\n"
    "\n"
    "Runs the pipeline once: sources stage new orders, applied orders the store\n"
    "cancelled since are flagged or rolled back (run.store_cancel), due orders go\n"
    "through the steps in one transaction each, after-commit steps and notifiers\n"
    "follow.\n"
    "\n"
    "  --dry-run          run the steps and roll every order back; sources,\n"
    "                     after-commit steps, record stages and notifiers do not\n"
    "                     run; nothing is written\n"
    "  --limit N          process at most N orders in this run\n"
    "  --since TIME       hand sources a start time (YYYY-MM-DDTHH:MM:SS, UTC) to\n"
    "                     read again from, for a backfill\n"
    "  --log-level LEVEL  error, warn, info or debug (default: the pipeline's)\n"
    "  --log-format FMT   text or json (default: the pipeline's)\n"
    "  --json             print the run's summary as JSON on stdout\n"
    "\n"
    "On a terminal, stderr shows one progress line while the run goes (staged,\n"
    "applied, invalid, retry, orders/s, ETA); not off a terminal, with --json,\n"
    "under systemd or with TERM=dumb.\n"
    "\n"
    "Exit: 0 ok; 1 done but an order was held (invalid, dead), a source, an\n"
    "after-commit step or a notifier failed; 69 database unreachable; 75 another\n"
    "run of this pipeline is running (nothing done); 78 configuration error.\n";

static const char usage_serve[] =
    "usage: cpbridge serve PIPELINE [--port-file FILE] [--log-level LEVEL]\n"
    "                      [--log-format text|json]\n"
    "\n"
    "Runs until SIGTERM or SIGINT: listens on serve.listen:serve.port (HTTPS with\n"
    "serve.tls_cert and serve.tls_key) for the store's webhooks, POSTed to\n"
    "/webhooks/<source id>, and answers each only once the order is staged; a few\n"
    "workers (serve.workers) apply staged orders shortly after (serve.coalesce) and\n"
    "at least every serve.sweep. GET /health answers \"ok\". Keep the scheduled\n"
    "`cpbridge run` beside it: a store can drop or disable webhooks.\n"
    "\n"
    "  --port-file FILE   write the port listened on (useful with serve.port = 0)\n"
    "  --log-level LEVEL  error, warn, info or debug (default: the pipeline's)\n"
    "  --log-format FMT   text or json (default: the pipeline's)\n"
    "\n"
    "Exit: 0 stopped by a signal after finishing the work in flight; 69 database\n"
    "unreachable, the port cannot be bound or the TLS library refuses the\n"
    "certificate; 74 --port-file cannot be written; 78 configuration error (no\n"
    "source stage receives, a bad address, an unreadable certificate or key).\n";

static const char usage_check[] =
    "usage: cpbridge check PIPELINE [--connect]\n"
    "\n"
    "Reads the pipeline file, loads every stage, validates every option and calls\n"
    "each stage's init, without side effects. Prints the stages and their options\n"
    "(secrets masked).\n"
    "\n"
    "  --connect   also connect to the database and check its schema version\n"
    "\n"
    "Exit: 0 ok; 66 the file does not exist; 69 database unreachable (--connect);\n"
    "78 anything wrong in the file, a stage or an option.\n";

static const char usage_db[] =
    "usage: cpbridge db init PIPELINE [--demo]\n"
    "\n"
    "Creates the engine's tables, or upgrades them, in the pipeline's database.\n"
    "Safe to run again.\n"
    "\n"
    "  --demo   also create the Counterpoint development subset and demo data\n"
    "           (refused where Counterpoint tables already exist)\n"
    "\n"
    "Exit: 0 ok; 65 demo refused; 69 database unreachable; 78 configuration error.\n";

static const char usage_stages[] =
    "usage: cpbridge stages [--describe NAME] [--markdown] [--path DIR]\n"
    "\n"
    "Lists the stages found in the stage directories (CPBRIDGE_STAGE_PATH, the\n"
    "installed and the build-tree directories), or describes one stage's options.\n"
    "`--describe engine` describes the pipeline file's own keys.\n"
    "\n"
    "  --describe NAME  print a stage's kind, version and option table\n"
    "  --markdown       print the description as Markdown (docs/CONFIGURATION.md)\n"
    "  --path DIR       search DIR first\n";

static int usage_error(const char *usage, const char *fmt, ...) CPB_PRINTF(2, 3);
static int usage_error(const char *usage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cpbridge: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n\n%s", usage);
    va_end(ap);
    return CPB_EXIT_USAGE;
}

static int report(const struct err *e)
{
    if (e->code == CPB_EXIT_TEMPFAIL) {
        log_msg(CPB_LOG_INFO, NULL, 0, "%s", e->msg);
    } else {
        struct buf clean = BUF_INIT;
        log_redact_into(e->msg, &clean);
        fprintf(stderr, "cpbridge: %s\n", buf_str(&clean));
        buf_free(&clean);
    }
    return e->code != 0 ? e->code : CPB_EXIT_SOFTWARE;
}

/* Apply --log-level / --log-format over the pipeline's settings. */
static int setup_log(const struct config *cfg, const char *level, const char *format,
                     const char *usage)
{
    enum cpb_log_level lv = (enum cpb_log_level)cfg->log.level;
    enum log_format fmt = cfg->log.format != 0 ? LOG_JSON : LOG_TEXT;
    if (level != NULL && log_level_parse(level, &lv) != 0) {
        return usage_error(usage, "unknown log level '%s' (error, warn, info, debug)", level);
    }
    if (format != NULL) {
        if (strcmp(format, "json") == 0) {
            fmt = LOG_JSON;
        } else if (strcmp(format, "text") == 0) {
            fmt = LOG_TEXT;
        } else {
            return usage_error(usage, "unknown log format '%s' (text, json)", format);
        }
    }
    log_configure(lv, fmt);
    return 0;
}

static void print_summary(const struct pipeline *p, const struct run_result *res, int json)
{
    const struct run_counts *c = &res->counts;
    if (json) {
        json_t *o = json_pack(
            "{s:s, s:s, s:i, s:I, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}, s:i, s:b}",
            "pipeline", p->cfg->name, "run_id", res->run_id, "exit_code", res->exit_code,
            "duration_ms", (json_int_t)res->duration_ms, "counts", "staged", c->staged, "claimed",
            c->claimed, "applied", c->applied, "retry", c->retry, "invalid", c->invalid, "dead",
            c->dead, "after_done", c->after_done, "after_failed", c->after_failed, "notify_failed",
            res->notify_failed, "source_failed", res->source_failed);
        if (c->rec_queued + c->rec_claimed > 0) {
            json_object_set_new(o, "records",
                                json_pack("{s:i, s:i, s:i, s:i, s:i}", "queued", c->rec_queued,
                                          "claimed", c->rec_claimed, "done", c->rec_done, "retry",
                                          c->rec_retry, "dead", c->rec_dead));
        }
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s != NULL) {
            printf("%s\n", s);
        }
        free(s);
        json_decref(o);
        return;
    }
    printf("%s: staged %u, applied %u, invalid %u, retrying %u, dead %u; after-commit done %u,"
           " failed %u; %.2f s\n",
           p->cfg->name, c->staged, c->applied, c->invalid, c->retry, c->dead, c->after_done,
           c->after_failed, (double)res->duration_ms / 1000.0);
    if (c->rec_queued + c->rec_claimed > 0) {
        printf("  records: queued %u, done %u, retrying %u, dead %u\n", c->rec_queued, c->rec_done,
               c->rec_retry, c->rec_dead);
    }
    if (res->source_failed) {
        printf("  a source failed: see the log above; its cursor did not move\n");
    }
    if (res->notify_failed > 0) {
        printf("  %u alert(s) could not be delivered: see the log above\n", res->notify_failed);
    }
}

static int cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dry-run", no_argument, NULL, 'n'},
        {"limit", required_argument, NULL, 'l'},
        {"since", required_argument, NULL, 's'},
        {"log-level", required_argument, NULL, 'L'},
        {"log-format", required_argument, NULL, 'F'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct run_options o = {0};
    const char *level = NULL;
    const char *format = NULL;
    int json = 0;
    int opt;
    int64_t n = 0;
    int64_t since_ms = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'n':
            o.dry_run = true;
            break;
        case 'l':
            if (text_parse_int(optarg, &n) != 0 || n < 1) {
                return usage_error(usage_run, "--limit wants a positive integer, not '%s'", optarg);
            }
            o.limit = (unsigned long)n;
            break;
        case 's':
            if (text_parse_time(optarg, &since_ms) != 0) {
                return usage_error(usage_run,
                                   "--since wants a UTC time like 2026-11-01T00:00:00, not '%s'",
                                   optarg);
            }
            o.since = optarg;
            break;
        case 'L':
            level = optarg;
            break;
        case 'F':
            format = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(usage_run, stdout);
            return CPB_EXIT_OK;
        default:
            fputs(usage_run, stderr);
            return CPB_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        return usage_error(usage_run, "%s", "run wants exactly one PIPELINE file");
    }
    o.pipeline_path = argv[optind];

    struct err e = {0};
    struct pipeline *p = NULL;
    struct run_result res;
    int code;
    if (pipeline_open(o.pipeline_path, &p, &e) != 0) {
        return report(&e);
    }
    code = setup_log(p->cfg, level, format, usage_run);
    if (code != 0) {
        pipeline_close(p);
        return code;
    }
    if (pipeline_init(p, &e) != 0) {
        pipeline_close(p);
        return report(&e);
    }
    struct ops_undo undo = {p->cfg, o.pipeline_path};
    o.undo = ops_undo_for_store;
    o.undo_arg = &undo;
    if (progress_wanted(json != 0)) {
        o.progress = progress_draw;
    }
    code = runner_run(p, &o, &res, &e);
    if (e.code != 0) {
        report(&e);
    }
    if (code == CPB_EXIT_OK || code == CPB_EXIT_ATTENTION) {
        print_summary(p, &res, json);
    }
    pipeline_close(p);
    return code;
}

static int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"connect", no_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int connect = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            connect = 1;
            break;
        case 'h':
            fputs(usage_check, stdout);
            return CPB_EXIT_OK;
        default:
            fputs(usage_check, stderr);
            return CPB_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        return usage_error(usage_check, "%s", "check wants exactly one PIPELINE file");
    }
    struct err e = {0};
    struct pipeline *p = NULL;
    int code = CPB_EXIT_OK;
    if (pipeline_open(argv[optind], &p, &e) != 0) {
        return report(&e);
    }
    if (pipeline_init(p, &e) != 0) {
        code = report(&e);
        goto out;
    }
    printf("pipeline %s (%s): %zu stage(s)\n", p->cfg->name, p->cfg->path, p->n);
    for (size_t i = 0; i < p->n; i++) {
        const struct stage_inst *s = &p->st[i];
        printf("  %-14s %-16s %s %s (%s)\n", loader_kind_name(s->ls.desc->kind), s->cs->id,
               s->ls.desc->name, s->ls.desc->version, s->ls.path);
        options_print_values(stdout, s->ls.desc->options, s->opts);
    }
    if (connect) {
        struct db *db = NULL;
        enum db_dialect d;
        int version = 0;
        const struct config_database *c = &p->cfg->database;
        if (db_dialect_parse(c->dialect, &d) != 0 ||
            db_connect(c->connection, d, c->login_timeout_ms, &db, &e) != 0) {
            code = report(&e);
            goto out;
        }
        if (schema_current(db, &version, &e) != 0) {
            db_close(db);
            code = report(&e);
            goto out;
        }
        printf("database: %s reachable, schema version %d of %d%s\n", c->dialect, version,
               schema_latest(d), version < schema_latest(d) ? " (run `cpbridge db init`)" : "");
        db_close(db);
        if (version < schema_latest(d)) {
            code = CPB_EXIT_CONFIG;
            goto out;
        }
    }
    printf("ok\n");
out:
    pipeline_close(p);
    return code;
}

static int cmd_db(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"demo", no_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int demo = 0;
    int opt;
    if (argc >= 2 && strcmp(argv[1], "init") == 0) {
        argc--;
        argv++;
    } else if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage_db, stdout);
        return CPB_EXIT_OK;
    } else {
        return usage_error(usage_db, "%s", "db wants a subcommand: init");
    }
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'd':
            demo = 1;
            break;
        case 'h':
            fputs(usage_db, stdout);
            return CPB_EXIT_OK;
        default:
            fputs(usage_db, stderr);
            return CPB_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        return usage_error(usage_db, "%s", "db init wants exactly one PIPELINE file");
    }
    struct err e = {0};
    struct config *cfg = NULL;
    struct db *db = NULL;
    enum db_dialect d;
    int from = 0;
    int to = 0;
    int code = CPB_EXIT_OK;
    if (config_load(argv[optind], &cfg, &e) != 0) {
        return report(&e);
    }
    if (db_dialect_parse(cfg->database.dialect, &d) != 0 ||
        db_connect(cfg->database.connection, d, cfg->database.login_timeout_ms, &db, &e) != 0) {
        code = report(&e);
        goto out;
    }
    if (schema_init(db, demo != 0, 0, &from, &to, &e) != 0) {
        code = report(&e);
        goto out;
    }
    if (from == to) {
        printf("%s: schema is at version %d, nothing to do\n", cfg->name, to);
    } else {
        printf("%s: schema upgraded from version %d to %d\n", cfg->name, from, to);
    }
    if (demo) {
        printf("%s: Counterpoint demo subset and data present\n", cfg->name);
    }
out:
    db_close(db);
    config_free(cfg);
    return code;
}

struct list_ctx {
    const char *seen[256];
    size_t n;
};

static void list_dir(const char *dir, void *arg)
{
    struct list_ctx *lc = arg;
    DIR *d = opendir(dir);
    struct dirent *ent;
    if (d == NULL) {
        return;
    }
    while ((ent = readdir(d)) != NULL) {
        size_t len = strlen(ent->d_name);
        char name[256];
        char path[4096];
        struct loaded_stage ls = {0};
        struct err e = {0};
        int dup = 0;
        if (len < 4 || strcmp(ent->d_name + len - 3, ".so") != 0 || len - 3 >= sizeof name) {
            continue;
        }
        memcpy(name, ent->d_name, len - 3);
        name[len - 3] = '\0';
        if (!loader_valid_name(name)) {
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        for (size_t i = 0; i < lc->n; i++) {
            if (strcmp(lc->seen[i], name) == 0) {
                dup = 1;
            }
        }
        if (dup) {
            continue;
        }
        if (loader_open(name, path, &ls, &e) != 0) {
            printf("  %-16s (unusable: %s)\n", name, e.msg);
            continue;
        }
        printf("  %-16s %-12s %-8s %s\n", name, loader_kind_name(ls.desc->kind), ls.desc->version,
               ls.desc->summary != NULL ? ls.desc->summary : "");
        if (lc->n < sizeof lc->seen / sizeof lc->seen[0]) {
            lc->seen[lc->n++] = strdup(name);
        }
        loader_close(&ls);
    }
    closedir(d);
}

static int cmd_stages(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"describe", required_argument, NULL, 'd'},
        {"markdown", no_argument, NULL, 'm'},
        {"path", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *describe = NULL;
    const char *dirs[2] = {NULL, NULL};
    int markdown = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'd':
            describe = optarg;
            break;
        case 'm':
            markdown = 1;
            break;
        case 'p':
            dirs[0] = optarg;
            break;
        case 'h':
            fputs(usage_stages, stdout);
            return CPB_EXIT_OK;
        default:
            fputs(usage_stages, stderr);
            return CPB_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        return usage_error(usage_stages, "unexpected argument '%s'", argv[optind]);
    }
    if (describe != NULL && strcmp(describe, "engine") == 0) {
        for (const char *const *b = config_engine_blocks; *b != NULL; b++) {
            printf(markdown ? "\n### `%s`\n\n" : "%s:\n", *b);
            options_describe(stdout, config_engine_table(*b), markdown);
        }
        return CPB_EXIT_OK;
    }
    if (describe != NULL) {
        struct err e = {0};
        char *path = NULL;
        struct loaded_stage ls = {0};
        if (!loader_valid_name(describe)) {
            return usage_error(usage_stages, "'%s' is not a stage name", describe);
        }
        if (loader_find(describe, dirs[0] != NULL ? dirs : NULL, &path, &e) != 0 ||
            loader_open(describe, path, &ls, &e) != 0) {
            free(path);
            return report(&e);
        }
        if (markdown) {
            printf("## `%s` (%s)\n\n%s\n\n", ls.desc->name, loader_kind_name(ls.desc->kind),
                   ls.desc->summary);
        } else {
            printf("%s %s (%s stage, ABI %u.%u)\n  %s\n  file: %s\n\noptions:\n", ls.desc->name,
                   ls.desc->version, loader_kind_name(ls.desc->kind), ls.desc->abi_major,
                   ls.desc->abi_minor, ls.desc->summary, path);
        }
        options_describe(stdout, ls.desc->options, markdown);
        loader_close(&ls);
        free(path);
        return CPB_EXIT_OK;
    }
    struct list_ctx lc = {{NULL}, 0};
    printf("stages:\n");
    loader_each_dir(dirs[0] != NULL ? dirs : NULL, list_dir, &lc);
    for (size_t i = 0; i < lc.n; i++) {
        free((void *)lc.seen[i]);
    }
    return CPB_EXIT_OK;
}

static int cmd_serve(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port-file", required_argument, NULL, 'p'},
        {"log-level", required_argument, NULL, 'L'},
        {"log-format", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct serve_options o = {0};
    const char *level = NULL;
    const char *format = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'p':
            o.port_file = optarg;
            break;
        case 'L':
            level = optarg;
            break;
        case 'F':
            format = optarg;
            break;
        case 'h':
            fputs(usage_serve, stdout);
            return CPB_EXIT_OK;
        default:
            fputs(usage_serve, stderr);
            return CPB_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        return usage_error(usage_serve, "%s", "serve wants exactly one PIPELINE file");
    }
    o.pipeline_path = argv[optind];

    /* The log settings first, as run does; the server takes the pipeline. */
    struct err e = {0};
    struct pipeline *p = NULL;
    if (pipeline_open(o.pipeline_path, &p, &e) != 0) {
        return report(&e);
    }
    int code = setup_log(p->cfg, level, format, usage_serve);
    if (code != 0) {
        pipeline_close(p);
        return code;
    }
    /* The signals are taken by this thread only: block them before the
     * server's threads start (they inherit the mask). */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    struct server *srv = NULL;
    struct ops_undo undo = {p->cfg, o.pipeline_path};
    o.undo = ops_undo_for_store;
    o.undo_arg = &undo;
    if (serve_start(&o, p, &srv, &e) != 0) {
        return report(&e);
    }
    const struct timespec second = {1, 0};
    for (;;) {
        int sig = sigtimedwait(&stop, NULL, &second);
        if (sig == SIGTERM || sig == SIGINT) {
            log_msg(CPB_LOG_INFO, NULL, 0, "%s: finishing the work in flight, then stopping",
                    sig == SIGTERM ? "SIGTERM" : "SIGINT");
            break;
        }
        serve_tick(srv);
    }
    serve_stop(srv);
    return CPB_EXIT_OK;
}

int main(int argc, char **argv)
{
    struct err e = {0};
    int code;
    if (argc < 2) {
        fputs(usage_main, stderr);
        return CPB_EXIT_USAGE;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
        fputs(usage_main, stdout);
        return CPB_EXIT_OK;
    }
    if (strcmp(verb, "version") == 0 || strcmp(verb, "--version") == 0) {
        printf("cpbridge %s (stage ABI %d.%d)\n", CPB_VERSION, CPB_ABI_MAJOR, CPB_ABI_MINOR);
        return CPB_EXIT_OK;
    }
    /* A peer closing a socket must be an error return, never a signal. */
    signal(SIGPIPE, SIG_IGN);
    if (http_global_init(&e) != 0) {
        return report(&e);
    }
    argc--;
    argv++;
    if (strcmp(verb, "run") == 0) {
        code = cmd_run(argc, argv);
    } else if (strcmp(verb, "serve") == 0) {
        code = cmd_serve(argc, argv);
    } else if (strcmp(verb, "check") == 0) {
        code = cmd_check(argc, argv);
    } else if (strcmp(verb, "db") == 0) {
        code = cmd_db(argc, argv);
    } else if (strcmp(verb, "stages") == 0) {
        code = cmd_stages(argc, argv);
    } else if (strcmp(verb, "test") == 0) {
        code = cmd_test_main(argc, argv);
    } else if (ops_has(verb)) {
        code = ops_main(verb, argc, argv);
    } else {
        static const char *const verbs[] = {"run",    "serve",  "check",  "db",      "health",
                                            "status", "orders", "stages", "dlq",     "rollback",
                                            "drift",  "report", "test",   "records", "version"};
        int s = text_suggest(verb, verbs, sizeof verbs / sizeof verbs[0]);
        fprintf(stderr, "cpbridge: unknown command '%s'%s%s%s\n\n%s", verb,
                s >= 0 ? " (did you mean '" : "", s >= 0 ? verbs[s] : "", s >= 0 ? "'?)" : "",
                usage_main);
        code = CPB_EXIT_USAGE;
    }
    http_global_cleanup();
    log_reset();
    return code;
}
