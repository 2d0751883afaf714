/*
 * example.c — "example-tag", a complete small cpbridge stage to copy when
 * writing your own (docs/STAGE_AUTHORING.md explains every part).
 *
 * A CPB_STEP stage: for each claimed order it adds
 *   "example_tag": { "tag": <option tag>, "priority": <option priority>,
 *                    "lines": <number of order lines> }
 * to the record's result object, which later steps and after-commit stages
 * can read. An order without lines is held for review (CPB_FAIL) with a
 * reason a person can act on.
 *
 * Build it out of tree against the installed header (see Makefile):
 *   cc -std=c11 -shared -fPIC -fvisibility=hidden \
 *      $(pkg-config --cflags cpbridge-stage) -o example-tag.so example.c \
 *      $(pkg-config --libs cpbridge-stage)
 * and install example-tag.so (mode 0644) into a stage directory.
 */
#include <cpbridge/stage.h>
#include <stdlib.h>

/* The options struct the host fills from the pipeline file, as declared in
 * example_tag_options[] below. Strings stay valid until fini. */
struct example_tag_options {
    const char *tag;  /* CPB_OPT_STRING: const char * */
    int64_t priority; /* CPB_OPT_INT: int64_t */
};

/* One instance's state: everything lives here, nothing in globals, so two
 * instances of this stage can run side by side. */
struct example_tag_state {
    const struct cpb_host *host;           /* borrowed until fini */
    struct cpb_ctx *ctx;                   /* borrowed until fini */
    const struct example_tag_options *opt; /* borrowed until fini */
    int64_t tagged;                        /* orders tagged by this instance */
};

static const struct cpb_option example_tag_options[] = {
    {.name = "tag",
     .type = CPB_OPT_STRING,
     .flags = CPB_OPT_REQUIRED,
     .min = 1,
     .max = 40,
     .offset = offsetof(struct example_tag_options, tag),
     .help = "The text stored in result.example_tag.tag (1 to 40 bytes)."},
    {.name = "priority",
     .type = CPB_OPT_INT,
     .default_value = "5",
     .min = 0,
     .max = 9,
     .offset = offsetof(struct example_tag_options, priority),
     .help = "A number from 0 to 9 stored in result.example_tag.priority."},
    {.name = NULL},
};

/*
 * Set up one instance. host, ctx and options are borrowed until fini;
 * *state receives a new state owned by this stage. Returns 0, or -1 after
 * logging why (fini is still called).
 */
static int example_tag_init(const struct cpb_host *host, struct cpb_ctx *ctx, const void *options,
                            void **state)
{
    struct example_tag_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        host->log(ctx, CPB_LOG_ERROR, "out of memory");
        return -1;
    }
    st->host = host;
    st->ctx = ctx;
    st->opt = options;
    *state = st;
    host->log(ctx, CPB_LOG_INFO, "tagging orders with '%s' (priority %lld)", st->opt->tag,
              (long long)st->opt->priority);
    return 0;
}

/*
 * Tag one order. `rec` and everything in it are borrowed for the call;
 * json_object_set_new hands the new object to rec->result, which the host
 * owns.
 */
static enum cpb_status example_tag_process(void *state, struct cpb_record *rec)
{
    struct example_tag_state *st = state;
    json_t *lines = rec->order != NULL ? json_object_get(rec->order, "lines") : NULL;

    if (!json_is_array(lines) || json_array_size(lines) == 0) {
        st->host->reason(st->ctx, "example.no_lines",
                         "order %s has no lines to tag; check it in the store", rec->external_id);
        return CPB_FAIL;
    }
    json_t *tag =
        json_pack("{s:s, s:I, s:I}", "tag", st->opt->tag, "priority", (json_int_t)st->opt->priority,
                  "lines", (json_int_t)json_array_size(lines));
    if (tag == NULL || json_object_set_new(rec->result, "example_tag", tag) != 0) {
        /* json_object_set_new released tag even when it failed. */
        st->host->reason(st->ctx, "example.memory", "out of memory while tagging order %s",
                         rec->external_id);
        return CPB_RETRY;
    }
    st->tagged++;
    st->host->log(st->ctx, CPB_LOG_DEBUG, "tagged order %s", rec->external_id);
    return CPB_OK;
}

/* Release the state (takes ownership); accepts NULL. */
static void example_tag_fini(void *state)
{
    struct example_tag_state *st = state;
    if (st == NULL) {
        return;
    }
    st->host->log(st->ctx, CPB_LOG_DEBUG, "tagged %lld orders", (long long)st->tagged);
    free(st);
}

/* The descriptor. Not static: a test built with -DCPB_STAGE_STATIC links
 * it by name (-fvisibility=hidden keeps it out of the .so's exports). */
extern const struct cpb_stage example_tag_stage;
const struct cpb_stage example_tag_stage = {
    CPB_STAGE_HEADER,
    .name = "example-tag",
    .version = "1.0.0",
    .summary = "Example step: adds example_tag to each order's result.",
    .kind = CPB_STEP,
    .options = example_tag_options,
    .options_size = sizeof(struct example_tag_options),
    .init = example_tag_init,
    .process = example_tag_process,
    .fini = example_tag_fini,
};

/* The one exported symbol: cpb_stage_entry() returns &example_tag_stage.
 * Written once, at the end, followed by a semicolon. */
CPB_STAGE_ENTRY(example_tag_stage);
