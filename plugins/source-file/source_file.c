/*
 * source-file — a source stage that reads orders in the WooCommerce REST
 * shape from a file or a directory: one order (an object), several (an
 * array), or a saved API page (an array, or an object whose "data" member is
 * one). For the embedded demo, offline imports and replaying saved orders.
 * Files are only read, never modified. A bad file (unreadable, too large, not
 * JSON, not orders) is reported with its name and the parser's line and
 * column, and skipped; the other files are still read.
 */
#include <cpbridge/stage.h>

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stage_util.h"

/* Larger files are refused: orders are small; a huge file is a mistake. */
#define SOURCE_FILE_MAX_BYTES (64L * 1024 * 1024)

struct source_file_opts {
    const char *path;
    const char *pattern;
};

static const struct cpb_option source_file_options[] = {
    {"path", CPB_OPT_STRING, CPB_OPT_REQUIRED, NULL, 1, 4096, NULL,
     offsetof(struct source_file_opts, path),
     "A JSON file, or a directory whose matching files are read in name order."},
    {"pattern", CPB_OPT_STRING, 0, "*.json", 1, 255, NULL,
     offsetof(struct source_file_opts, pattern),
     "Which files of a directory to read (a shell pattern)."},
    {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL},
};

struct source_file {
    const struct cpb_host *host;
    struct cpb_ctx *ctx;
    const struct source_file_opts *opts;
};

/* Orders are staged this many at a time, in one transaction each group. */
#define SOURCE_FILE_GROUP 100

struct tally {
    unsigned files;
    unsigned bad_files;
    unsigned orders;
    unsigned staged;
    json_t *group[SOURCE_FILE_GROUP]; /* read, not yet staged (references) */
    size_t ngroup;
};

static int source_file_init(const struct cpb_host *host, struct cpb_ctx *ctx, const void *options,
                            void **state)
{
    struct source_file *s = stage_state_new(host, ctx, sizeof *s, state);
    if (s == NULL) {
        return -1;
    }
    s->host = host;
    s->ctx = ctx;
    s->opts = options;
    return 0;
}

static void bad_file(struct source_file *s, struct tally *t, const char *path, const char *why)
{
    t->bad_files++;
    s->host->log(s->ctx, CPB_LOG_WARN, "skipped %s: %s", path, why);
    json_t *d = json_pack("{s:s, s:s}", "file", path, "message", why);
    s->host->event(s->ctx, "source.bad_file", d);
    json_decref(d);
}

/* Stage the group read so far (one transaction) and release it. Returns
 * CPB_RETRY when an order of it could not be staged (stop reading). */
static enum cpb_status flush(struct source_file *s, struct tally *t)
{
    enum cpb_status out[SOURCE_FILE_GROUP];
    enum cpb_status rc = CPB_OK;
    if (t->ngroup > 0) {
        /* Built for ABI 1.2 or later, which the host has (it refuses a
         * stage newer than itself): emit_many is there. */
        rc = s->host->emit_many(s->ctx, t->group, t->ngroup, out);
    }
    for (size_t i = 0; i < t->ngroup; i++) {
        t->staged += out[i] == CPB_OK;
        json_decref(t->group[i]);
    }
    t->ngroup = 0;
    return rc == CPB_RETRY ? CPB_RETRY : CPB_OK;
}

/* Queue one order (borrowed) for staging; returns CPB_RETRY when staging
 * failed (stop reading). */
static enum cpb_status emit_one(struct source_file *s, struct tally *t, json_t *order)
{
    t->orders++;
    t->group[t->ngroup++] = json_incref(order);
    return t->ngroup == SOURCE_FILE_GROUP ? flush(s, t) : CPB_OK;
}

static enum cpb_status read_file(struct source_file *s, struct tally *t, const char *path)
{
    struct stat sb;
    json_error_t jerr;
    json_t *doc = NULL;
    enum cpb_status rc = CPB_OK;
    char why[400];

    t->files++;
    if (stat(path, &sb) != 0) {
        snprintf(why, sizeof why, "%s", strerror(errno));
        bad_file(s, t, path, why);
        goto out;
    }
    if (sb.st_size > SOURCE_FILE_MAX_BYTES) {
        snprintf(why, sizeof why, "larger than %ld bytes", SOURCE_FILE_MAX_BYTES);
        bad_file(s, t, path, why);
        goto out;
    }
    doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        snprintf(why, sizeof why, "not valid JSON at line %d, column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        bad_file(s, t, path, why);
        goto out;
    }
    json_t *list = doc;
    if (json_is_object(doc) && json_is_array(json_object_get(doc, "data"))) {
        list = json_object_get(doc, "data");
    }
    if (json_is_object(list)) {
        rc = emit_one(s, t, list);
        goto out;
    }
    if (!json_is_array(list)) {
        bad_file(s, t, path, "neither an order (object) nor a list of orders (array)");
        goto out;
    }
    size_t i;
    json_t *order;
    json_array_foreach(list, i, order)
    {
        if (!json_is_object(order)) {
            snprintf(why, sizeof why, "element %zu is not an order object", i);
            bad_file(s, t, path, why);
            continue;
        }
        rc = emit_one(s, t, order);
        if (rc != CPB_OK) {
            goto out;
        }
    }
out:
    json_decref(doc);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static enum cpb_status read_dir(struct source_file *s, struct tally *t, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    char **names = NULL;
    size_t n = 0;
    size_t cap = 0;
    enum cpb_status rc = CPB_OK;
    if (d == NULL) {
        s->host->reason(s->ctx, "source.unreadable", "cannot read directory %s: %s", dir,
                        strerror(errno));
        return CPB_FAIL;
    }
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.' || fnmatch(s->opts->pattern, ent->d_name, 0) != 0) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap != 0 ? cap * 2 : 32;
            char **grown = realloc(names, ncap * sizeof *names);
            if (grown == NULL) {
                rc = CPB_RETRY;
                goto out;
            }
            names = grown;
            cap = ncap;
        }
        names[n] = strdup(ent->d_name);
        if (names[n] == NULL) {
            rc = CPB_RETRY;
            goto out;
        }
        n++;
    }
    if (n > 0) {
        qsort(names, n, sizeof *names, by_name);
    }
    for (size_t i = 0; i < n && rc == CPB_OK; i++) {
        char path[4096];
        struct stat sb;
        int len = snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (len < 0 || (size_t)len >= sizeof path) {
            bad_file(s, t, names[i], "path too long");
            continue;
        }
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            continue;
        }
        rc = read_file(s, t, path);
    }
out:
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
    closedir(d);
    return rc;
}

static enum cpb_status source_file_process(void *state, struct cpb_record *rec)
{
    struct source_file *s = state;
    struct tally t = {.files = 0};
    struct stat sb;
    enum cpb_status rc;
    (void)rec;
    if (stat(s->opts->path, &sb) != 0) {
        s->host->reason(s->ctx, "source.path_missing", "cannot read %s: %s", s->opts->path,
                        strerror(errno));
        return CPB_FAIL;
    }
    if (S_ISDIR(sb.st_mode)) {
        rc = read_dir(s, &t, s->opts->path);
    } else {
        rc = read_file(s, &t, s->opts->path);
    }
    enum cpb_status last = flush(s, &t); /* what is left of the last group */
    if (rc == CPB_OK) {
        rc = last;
    }
    if (rc == CPB_RETRY) {
        s->host->reason(s->ctx, "source.stage_failed",
                        "could not stage every order from %s; the rest is read next run",
                        s->opts->path);
    }
    s->host->log(s->ctx, CPB_LOG_INFO, "read %u order(s) from %u file(s): %u new or changed%s",
                 t.orders, t.files, t.staged, t.bad_files > 0 ? ", some files skipped" : "");
    if (rc == CPB_OK && t.bad_files > 0) {
        s->host->reason(s->ctx, "source.bad_files", "%u file(s) could not be read (see the log)",
                        t.bad_files);
        return CPB_FAIL;
    }
    return rc;
}

const struct cpb_stage source_file_stage = {
    CPB_STAGE_HEADER,
    .name = "source-file",
    .version = "1.1.0",
    .summary = "Read orders (WooCommerce REST JSON) from a file or a directory",
    .kind = CPB_SOURCE,
    .options = source_file_options,
    .options_size = sizeof(struct source_file_opts),
    .init = source_file_init,
    .process = source_file_process,
    .fini = stage_state_free, /* the state owns nothing else */
};

CPB_STAGE_ENTRY(source_file_stage);
