/*
 * fuzz_config.c — libFuzzer entry point for the pipeline file reader: the
 * input is written to a fixed file in a scratch directory (beside an
 * include file and a secret file it may name) and read with config_load;
 * the same bytes, as a C string, go through config_interpolate. Neither may
 * crash, leak, hang or read out of bounds, and what they return must keep
 * the contract of config.h and err.h (checked here; a broken promise aborts).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/config.h"
#include "services/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The scratch directory and the pipeline file inside it. */
static char dir[512];
static char pipeline[600];
/* Where log lines go (an option may warn): nowhere. */
static FILE *devnull;

/* Write `text` to dir/name; abort on failure (the harness is broken). */
static void write_file(const char *name, const void *text, size_t len)
{
    char path[700];
    FILE *f = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL) {
        abort();
    }
    if (len > 0 && fwrite(text, 1, len, f) != len) {
        abort();
    }
    if (fclose(f) != 0) {
        abort();
    }
}

/* Remove the scratch directory at exit (best effort). libFuzzer ends a
 * -max_total_time run with _Exit, which skips this: run.sh points TMPDIR
 * into its work directory and empties it before each run. */
static void cleanup(void)
{
    static const char *const names[] = {"pipeline.cfg", "engine.inc", "secret.txt", NULL};
    char path[700];
    for (size_t i = 0; names[i] != NULL; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        (void)unlink(path);
    }
    (void)rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char inc[] = "retry = { max_attempts = 5; base = \"10s\"; cap = \"30m\"; };\n"
                              "log = { level = \"debug\"; format = \"json\"; };\n";
    static const char secret[] = "Driver=SQLite3;Database=/tmp/fuzz.sqlite\n";
    const char *tmp = getenv("TMPDIR");
    char secret_ref[600];
    (void)argc;
    (void)argv;
    if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 400) {
        tmp = "/tmp";
    }
    snprintf(dir, sizeof dir, "%s/cpb-fuzz-config-XXXXXX", tmp);
    if (mkdtemp(dir) == NULL) {
        abort();
    }
    atexit(cleanup);
    snprintf(pipeline, sizeof pipeline, "%s/pipeline.cfg", dir);
    write_file("engine.inc", inc, sizeof inc - 1);
    write_file("secret.txt", secret, sizeof secret - 1);
    /* Variables the seeds use: set, empty, and one that names a file. */
    setenv("CPBF_HOST", "db.example", 1);
    setenv("CPBF_EMPTY", "", 1);
    setenv("CPBF_DIALECT", "postgresql", 1);
    snprintf(secret_ref, sizeof secret_ref, "file:%s/secret.txt", dir);
    setenv("CPBF_SECRET", secret_ref, 1);
    setenv("CPBF_NESTED", "${CPBF_HOST}", 1);
    unsetenv("CPBF_UNSET");
    unsetenv("PIPELINE_DIR");
    devnull = fopen("/dev/null", "w");
    if (devnull == NULL) {
        abort();
    }
    log_set_stream(devnull);
    return 0;
}

/* Abort unless the error is set the way err.h promises. */
static void check_error(const struct err *e)
{
    size_t n = strnlen(e->msg, sizeof e->msg);
    if (n == 0 || n == sizeof e->msg) {
        abort();
    }
    if (e->code != CPB_EXIT_CONFIG && e->code != CPB_EXIT_NOINPUT && e->code != CPB_EXIT_IOERR &&
        e->code != CPB_EXIT_SOFTWARE) {
        abort();
    }
}

/* Abort unless a loaded config keeps config.h's promises. */
static void check_config(const struct config *cfg)
{
    size_t n = 0;
    if (cfg->name == NULL || cfg->name[0] == '\0' || strlen(cfg->name) > 64 ||
        cfg->stage_dirs == NULL || cfg->n_stages == 0 || cfg->stages == NULL ||
        cfg->database.connection == NULL || cfg->database.dialect == NULL) {
        abort();
    }
    if (strcmp(cfg->database.dialect, "sqlite") != 0 &&
        strcmp(cfg->database.dialect, "postgresql") != 0 &&
        strcmp(cfg->database.dialect, "mssql") != 0) {
        abort();
    }
    if (cfg->run.batch < 1 || cfg->run.batch > 1000 || cfg->run.lease_ms < 10000 ||
        cfg->retry.max_attempts < 1 || cfg->retry.max_attempts > 100 ||
        cfg->retry.cap_ms < cfg->retry.base_ms || cfg->log.level < 0 || cfg->log.level > 3 ||
        cfg->health.pending_warn > cfg->health.pending_crit) {
        abort();
    }
    while (cfg->stage_dirs[n] != NULL) {
        n++;
    }
    for (size_t i = 0; i < cfg->n_stages; i++) {
        const struct config_stage *st = &cfg->stages[i];
        if (st->stage == NULL || st->stage[0] == '\0' || st->id == NULL || st->id[0] == '\0' ||
            st->file == NULL) {
            abort();
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->stages[j].id, st->id) == 0) {
                abort(); /* ids are unique */
            }
        }
    }
}

/* Interpolate the raw bytes as one string. */
static void fuzz_interpolate(const uint8_t *data, size_t size)
{
    struct err e = {0};
    char *out = NULL;
    char *in = malloc(size + 1);
    if (in == NULL) {
        return;
    }
    memcpy(in, data, size);
    in[size] = '\0';
    if (config_interpolate(in, "fuzz:1", &out, &e) == 0) {
        if (out == NULL || e.code != 0) {
            abort();
        }
        /* Text without '$' comes back unchanged. */
        if (strchr(in, '$') == NULL && strcmp(in, out) != 0) {
            abort();
        }
    } else {
        if (out != NULL) {
            abort();
        }
        check_error(&e);
    }
    free(out);
    free(in);
}

/*
 * Whether an @include in the input leaves the harness's directory: ".."
 * would let libconfig read any file on the machine (a device that never
 * ends, say). Names that are not regular files (an empty name is the
 * directory itself, which made libconfig 1.5's scanner exit(2): see
 * tests/fuzz/findings/) are no longer skipped: config_load refuses them
 * before libconfig reads the file, and the fuzzer checks that it does.
 */
static bool include_out_of_bounds(const uint8_t *data, size_t size)
{
    static const char tag[] = "@include";
    const size_t tag_len = sizeof tag - 1;
    for (size_t i = 0; i + tag_len <= size; i++) {
        if (memcmp(data + i, tag, tag_len) != 0) {
            continue;
        }
        size_t j = i + tag_len;
        while (j < size && (data[j] == ' ' || data[j] == '\t')) {
            j++;
        }
        if (j >= size || data[j] != '"') {
            continue;
        }
        size_t start = ++j;
        while (j < size && data[j] != '"' && data[j] != '\n' && data[j] != '\0') {
            j++;
        }
        char name[256];
        if (j - start >= sizeof name) {
            return true;
        }
        memcpy(name, data + start, j - start);
        name[j - start] = '\0';
        if (strstr(name, "..") != NULL || name[0] == '/') {
            return true;
        }
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = NULL;
    struct err e = {0};

    fuzz_interpolate(data, size);

    if (include_out_of_bounds(data, size)) {
        return 0;
    }
    write_file("pipeline.cfg", data, size);
    if (config_load(pipeline, &cfg, &e) == 0) {
        if (cfg == NULL || e.code != 0) {
            abort();
        }
        check_config(cfg);
    } else {
        if (cfg != NULL) {
            abort();
        }
        check_error(&e);
    }
    config_free(cfg);
    /* Secrets registered by this input are forgotten, so the table never
     * fills up across inputs. */
    log_reset();
    log_set_stream(devnull);
    return 0;
}
