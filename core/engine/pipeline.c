/*
 * pipeline.c — assembling a pipeline from its file (see pipeline.h).
 */
#include "engine/pipeline.h"

#include <stdlib.h>
#include <string.h>

#include "engine/options.h"
#include "services/log.h"

static int open_stage(struct pipeline *p, struct stage_inst *s, struct err *err)
{
    const struct config_stage *cs = s->cs;
    char *path = NULL;
    char what[160];
    bool located = false;
    int rc = -1;

    if (loader_find(cs->stage, p->cfg->stage_dirs, &path, err) != 0) {
        goto out;
    }
    if (loader_open(cs->stage, path, &s->ls, err) != 0) {
        goto out;
    }
    const struct cpb_stage *d = s->ls.desc;
    if (d->kind == CPB_NOTIFY && cs->on == NULL) {
        err_set(err, CPB_EXIT_CONFIG,
                "notifier '%s' has no `on` list: name the events it should receive, e.g."
                " on = [\"order.invalid\", \"order.dead\"]",
                cs->id);
        goto out;
    }
    if (d->kind != CPB_NOTIFY && cs->on != NULL) {
        err_set(err, CPB_EXIT_CONFIG, "`on` is only for notifier stages; '%s' is a %s stage",
                cs->id, loader_kind_name(d->kind));
        goto out;
    }
    s->opts = calloc(1, d->options_size > 0 ? d->options_size : 1);
    if (s->opts == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    snprintf(what, sizeof what, "stage '%s'", cs->id);
    if (options_fill(d->options, cs->options, s->opts, &s->store, what, err) != 0) {
        /* Errors inside an options group carry their own file:line. */
        located = cs->options != NULL;
        goto out;
    }
    s->ctx = host_ctx_new(cs->id, &p->env);
    if (s->ctx == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    rc = 0;
out:
    if (rc != 0 && !located) {
        err_prefix(err, "%s:%d: ", cs->file, cs->line);
    }
    free(path);
    return rc;
}

int pipeline_open(const char *path, struct pipeline **out, struct err *err)
{
    struct pipeline *p = calloc(1, sizeof *p);
    int rc = -1;
    *out = NULL;
    if (p == NULL) {
        return err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
    }
    if (config_load(path, &p->cfg, err) != 0) {
        goto out;
    }
    p->env.pipeline = p->cfg->name;
    p->st = calloc(p->cfg->n_stages, sizeof *p->st);
    if (p->st == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < p->cfg->n_stages; i++) {
        if (!p->cfg->stages[i].enabled) {
            continue;
        }
        struct stage_inst *s = &p->st[p->n++];
        s->cs = &p->cfg->stages[i];
        if (open_stage(p, s, err) != 0) {
            goto out;
        }
    }
    rc = 0;
out:
    if (rc != 0) {
        pipeline_close(p);
        p = NULL;
    }
    *out = p;
    return rc;
}

int pipeline_init(struct pipeline *p, struct err *err)
{
    for (size_t i = 0; i < p->n; i++) {
        struct stage_inst *s = &p->st[i];
        const struct cpb_stage *d = s->ls.desc;
        s->inited = true;
        if (d->init == NULL) {
            continue;
        }
        host_reason_clear(s->ctx);
        if (d->init(host_services(), s->ctx, s->opts, &s->state) != 0) {
            const char *why = host_reason_message(s->ctx);
            return err_set(err, CPB_EXIT_CONFIG, "%s:%d: stage '%s' could not start%s%s",
                           s->cs->file, s->cs->line, s->cs->id, why[0] != '\0' ? ": " : "",
                           why[0] != '\0' ? why : " (see the messages above)");
        }
    }
    return 0;
}

/* fini (when initialised), unload and free one instance's parts. */
static void stage_free(struct stage_inst *s)
{
    if (s->inited && s->ls.desc != NULL && s->ls.desc->fini != NULL) {
        s->ls.desc->fini(s->state);
    }
    host_ctx_free(s->ctx);
    opt_store_free(s->store);
    free(s->opts);
    loader_close(&s->ls);
}

void pipeline_remove(struct pipeline *p, size_t i)
{
    stage_free(&p->st[i]);
    memmove(&p->st[i], &p->st[i + 1], (p->n - i - 1) * sizeof *p->st);
    p->n--;
}

int pipeline_insert(struct pipeline *p, size_t at, const struct config_stage *cs, struct err *err)
{
    struct stage_inst *grown = realloc(p->st, (p->n + 1) * sizeof *grown);
    if (grown == NULL) {
        return err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
    }
    p->st = grown;
    memmove(&p->st[at + 1], &p->st[at], (p->n - at) * sizeof *p->st);
    memset(&p->st[at], 0, sizeof p->st[at]);
    p->st[at].cs = cs;
    p->n++;
    if (open_stage(p, &p->st[at], err) != 0) {
        pipeline_remove(p, at);
        return -1;
    }
    return 0;
}

void pipeline_close(struct pipeline *p)
{
    if (p == NULL) {
        return;
    }
    for (size_t i = p->n; i-- > 0;) {
        stage_free(&p->st[i]);
    }
    free(p->st);
    config_free(p->cfg);
    free(p);
}

bool pipeline_subscribed(const struct stage_inst *s, const char *name)
{
    if (s->cs->on == NULL) {
        return false;
    }
    for (const char *const *on = s->cs->on; *on != NULL; on++) {
        size_t n = strlen(*on);
        if (strcmp(*on, "*") == 0 || strcmp(*on, name) == 0) {
            return true;
        }
        if (n >= 2 && (*on)[n - 1] == '*' && (*on)[n - 2] == '.' &&
            strncmp(*on, name, n - 1) == 0) {
            return true;
        }
    }
    return false;
}
