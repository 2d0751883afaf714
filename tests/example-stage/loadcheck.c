/*
 * loadcheck.c — a tiny stand-alone host used by check.sh: compiled against
 * the INSTALLED <cpbridge/stage.h> only, it dlopens the example-tag stage
 * built out of tree, checks its descriptor the way the engine does, fills
 * its options from the declared defaults (and tag from argv), and runs
 * init / process / fini through the descriptor.
 *
 *   loadcheck PATH/example-tag.so TAG
 *
 * Exits 0 when everything holds, 1 with a message on stderr otherwise.
 */
#include <cpbridge/stage.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char reason_code[64];

static void host_log(struct cpb_ctx *ctx, enum cpb_log_level level, const char *fmt, ...)
    CPB_PRINTF(3, 4);
static void host_log(struct cpb_ctx *ctx, enum cpb_log_level level, const char *fmt, ...)
{
    va_list ap;
    (void)ctx;
    fprintf(stderr, "loadcheck: stage log (%d): ", (int)level);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void host_reason(struct cpb_ctx *ctx, const char *code, const char *fmt, ...)
    CPB_PRINTF(3, 4);
static void host_reason(struct cpb_ctx *ctx, const char *code, const char *fmt, ...)
{
    va_list ap;
    (void)ctx;
    snprintf(reason_code, sizeof reason_code, "%s", code);
    fprintf(stderr, "loadcheck: stage reason %s: ", code);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int fail(const char *what)
{
    fprintf(stderr, "loadcheck: %s\n", what);
    return -1;
}

/* Check the descriptor as the engine's loader does. Returns 0 or -1. */
static int check_descriptor(const struct cpb_stage *d)
{
    if (d == NULL) {
        return fail("cpb_stage_entry() returned NULL");
    }
    if (d->abi_major != CPB_ABI_MAJOR || d->abi_minor > CPB_ABI_MINOR) {
        return fail("ABI version differs from the installed header's");
    }
    if (d->size < sizeof(struct cpb_stage)) {
        return fail("descriptor smaller than the installed header's struct cpb_stage");
    }
    if (d->name == NULL || strcmp(d->name, "example-tag") != 0) {
        return fail("descriptor name is not example-tag");
    }
    if (d->kind != CPB_STEP || d->process == NULL || d->version == NULL || d->summary == NULL) {
        return fail("descriptor is not a complete CPB_STEP stage");
    }
    if (d->options == NULL || d->options_size == 0) {
        return fail("descriptor declares no options");
    }
    return 0;
}

/* Fill `opts` from the table: defaults, and `tag` for the option "tag".
 * Returns 0 or -1. */
static int fill_options(const struct cpb_stage *d, void *opts, const char *tag)
{
    int seen_tag = 0;
    int seen_priority = 0;
    for (const struct cpb_option *o = d->options; o->name != NULL; o++) {
        char *at = (char *)opts + o->offset;
        if (strcmp(o->name, "tag") == 0 && o->type == CPB_OPT_STRING &&
            o->offset + sizeof(const char *) <= d->options_size) {
            memcpy(at, &tag, sizeof tag);
            seen_tag = 1;
        } else if (strcmp(o->name, "priority") == 0 && o->type == CPB_OPT_INT &&
                   o->default_value != NULL && o->offset + sizeof(int64_t) <= d->options_size) {
            char *end = NULL;
            errno = 0;
            long long v = strtoll(o->default_value, &end, 10);
            if (errno != 0 || end == o->default_value || *end != '\0') {
                return fail("priority has a default that is not an integer");
            }
            int64_t v64 = (int64_t)v;
            memcpy(at, &v64, sizeof v64);
            seen_priority = 1;
        }
    }
    if (!seen_tag || !seen_priority) {
        return fail(
            "the option table lacks a string 'tag' or an integer 'priority' with a default");
    }
    return 0;
}

/* Run init / process / fini; returns 0 or -1. */
static int run_stage(const struct cpb_stage *d, const char *tag)
{
    struct cpb_host host;
    void *opts = NULL;
    void *state = NULL;
    int marker = 0;
    json_t *order = NULL;
    json_t *result = NULL;
    int rc = -1;

    memset(&host, 0, sizeof host);
    host.size = sizeof host;
    host.abi_major = CPB_ABI_MAJOR;
    host.abi_minor = CPB_ABI_MINOR;
    host.log = host_log;
    host.reason = host_reason;

    opts = calloc(1, d->options_size);
    order = json_pack("{s:s, s:[{s:i}, {s:i}]}", "id", "1001", "lines", "seq", 1, "seq", 2);
    result = json_object();
    if (opts == NULL || order == NULL || result == NULL) {
        fail("out of memory");
        goto out;
    }
    if (fill_options(d, opts, tag) != 0) {
        goto out;
    }
    if (d->init != NULL && d->init(&host, (struct cpb_ctx *)&marker, opts, &state) != 0) {
        fail("init failed");
        goto out;
    }
    struct cpb_record rec;
    memset(&rec, 0, sizeof rec);
    rec.size = sizeof rec;
    rec.id = 1;
    rec.source = "loadcheck";
    rec.external_id = "1001";
    rec.attempt = 1;
    rec.payload = order;
    rec.order = order;
    rec.result = result;
    if (d->process(state, &rec) != CPB_OK) {
        fail("process did not return CPB_OK for an order with lines");
        goto out;
    }
    json_t *got = json_object_get(result, "example_tag");
    const char *got_tag = json_string_value(json_object_get(got, "tag"));
    if (got_tag == NULL || strcmp(got_tag, tag) != 0 ||
        json_integer_value(json_object_get(got, "lines")) != 2 ||
        !json_is_integer(json_object_get(got, "priority"))) {
        fail("result.example_tag is not {tag, priority, lines: 2}");
        goto out;
    }
    json_object_del(order, "lines");
    if (d->process(state, &rec) != CPB_FAIL || strcmp(reason_code, "example.no_lines") != 0) {
        fail("an order without lines did not FAIL with reason example.no_lines");
        goto out;
    }
    rc = 0;
out:
    if (d->fini != NULL) {
        d->fini(state);
    }
    json_decref(order);
    json_decref(result);
    free(opts);
    return rc;
}

int main(int argc, char **argv)
{
    void *handle = NULL;
    int rc = 1;

    if (argc != 3) {
        fprintf(stderr, "usage: loadcheck PATH/example-tag.so TAG\n");
        return 64;
    }
    handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        fprintf(stderr, "loadcheck: %s\n", dlerror());
        goto out;
    }
    void *sym = dlsym(handle, CPB_STAGE_ENTRY_SYMBOL);
    if (sym == NULL) {
        fprintf(stderr, "loadcheck: %s\n", dlerror());
        goto out;
    }
    cpb_stage_entry_fn entry = NULL;
    memcpy(&entry, &sym, sizeof entry);
    const struct cpb_stage *d = entry();
    if (check_descriptor(d) != 0 || run_stage(d, argv[2]) != 0) {
        goto out;
    }
    printf("loadcheck: %s: %s %s (ABI %u.%u, %u bytes) loaded and ran\n", argv[1], d->name,
           d->version, (unsigned)d->abi_major, (unsigned)d->abi_minor, (unsigned)d->size);
    rc = 0;
out:
    if (handle != NULL) {
        dlclose(handle);
    }
    return rc;
}
