/*
 * loader.h — finding and loading stage shared objects. A stage named N is
 * the file N.so in the first of: the pipeline's stage_dirs, the directories
 * of CPBRIDGE_STAGE_PATH (colon-separated), the install directory, and the
 * build tree's stage directory. The loader refuses world-writable files and
 * directories, opens with RTLD_NOW | RTLD_LOCAL, and checks the descriptor:
 * ABI major equal, minor not newer than the host's, size not smaller than
 * the struct of that minor, name equal to the configured name and the file
 * name, a known kind, process() present, and a sound option table.
 */
#ifndef CPB_LOADER_H
#define CPB_LOADER_H

#include "cpbridge/stage.h"
#include "lib/err.h"

struct loaded_stage {
    const struct cpb_stage *desc; /* borrowed from the shared object */
    void *handle;                 /* dlopen handle; NULL for a static stage */
    char *path;                   /* the file loaded (new) */
};

/* True when `name` is a valid stage name: [a-z0-9][a-z0-9-]{0,62}. */
int loader_valid_name(const char *name);

/* Locate N.so. `dirs` (borrowed, NULL-terminated, may be NULL) are the
 * pipeline's stage_dirs. *path: new string. Returns 0 or -1 with err
 * (CPB_EXIT_CONFIG) listing the directories searched. */
int loader_find(const char *name, const char *const *dirs, char **path, struct err *err);

/* Open `path` and check it is the stage `name`. On success fills *out
 * (release with loader_close). Returns 0 or -1 with err (CPB_EXIT_CONFIG)
 * naming the file, both versions and dlerror() where relevant. */
int loader_open(const char *name, const char *path, struct loaded_stage *out, struct err *err);

/* Check an already-linked descriptor (static builds, tests) the same way. */
int loader_check(const char *name, const char *path, const struct cpb_stage *desc,
                 struct err *err);

/* The stage's process_batch (ABI 1.1), or NULL when it has none or was
 * built for ABI 1.0 (whose descriptor ends before the member). */
typedef void (*loader_batch_fn)(void *state, struct cpb_record *const *recs, size_t n,
                                enum cpb_status *out);
loader_batch_fn loader_process_batch(const struct cpb_stage *desc);

/* "source", "step", "after-commit", "notify" or "record" (static); "?" for
 * a kind no loaded stage can have. */
const char *loader_kind_name(enum cpb_kind kind);

/* The stage's receive (ABI 1.3), or NULL when it has none or predates it. */
typedef enum cpb_status (*loader_receive_fn)(void *state, const struct cpb_delivery *d,
                                             struct cpb_answer *ans);
loader_receive_fn loader_receive(const struct cpb_stage *desc);

/* dlclose and free; the struct is zeroed. Safe on a zeroed struct. */
void loader_close(struct loaded_stage *s);

/* The directories searched, in order, for messages and `cpbridge stages`:
 * calls fn(dir, arg) for each existing one. */
void loader_each_dir(const char *const *dirs, void (*fn)(const char *dir, void *arg), void *arg);

#endif
