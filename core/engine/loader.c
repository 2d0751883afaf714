/*
 * loader.c — finding, opening and checking stage shared objects (see
 * loader.h). A stage file is refused before dlopen when it is not a regular
 * file or when it or its directory is world-writable; after dlopen its
 * descriptor is checked field by field, reading only the version fields
 * until the ABI major is known to match.
 */
#include "engine/loader.h"

#include <dlfcn.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/options.h"
#include "lib/buf.h"

#ifndef CPB_STAGE_INSTALL_DIR
#define CPB_STAGE_INSTALL_DIR "/usr/local/lib/cpbridge/stages"
#endif
#ifndef CPB_STAGE_BUILD_DIR
#define CPB_STAGE_BUILD_DIR ""
#endif

/* The environment variable naming extra stage directories. */
#define LOADER_PATH_ENV "CPBRIDGE_STAGE_PATH"
/* Longest stage name (loader_valid_name). */
#define LOADER_NAME_MAX 63

_Static_assert(sizeof(cpb_stage_entry_fn) == sizeof(void *),
               "dlsym's void * must hold a function pointer (POSIX)");

/* One directory of the search path and where it came from. */
struct dir_ent {
    const char *dir;    /* borrowed from the caller, the env copy or a macro */
    const char *origin; /* "stage_dirs", "CPBRIDGE_STAGE_PATH", ... */
};

struct dir_list {
    struct dir_ent *v;
    size_t n;
    size_t cap;
    char *env_copy; /* the split copy of CPBRIDGE_STAGE_PATH (new) */
};

/* The smallest descriptor size a stage built for each minor may have: the
 * end of that minor's last member, which stays fixed as the struct grows.
 * Append one entry per new minor. */
#define STAGE_END_OF(member)                                                                       \
    (offsetof(struct cpb_stage, member) + sizeof(((const struct cpb_stage *)NULL)->member))
static const size_t stage_size_by_minor[] = {
    STAGE_END_OF(fini),          /* 1.0 */
    STAGE_END_OF(process_batch), /* 1.1 */
    STAGE_END_OF(process_batch), /* 1.2: only the host grew */
    STAGE_END_OF(receive),       /* 1.3 */
    STAGE_END_OF(receive),       /* 1.4: result.rolled_back for after-commit stages */
    STAGE_END_OF(receive),       /* 1.5: record stages, emit_records; the host grew */
};
_Static_assert(sizeof stage_size_by_minor / sizeof stage_size_by_minor[0] == CPB_ABI_MINOR + 1,
               "stage_size_by_minor needs one entry per ABI minor");

/* Copy `s` into out[n] for a message: control bytes shown as '?', cut at
 * n - 1 bytes with "..." appended. NULL shows as "(null)". Returns out. */
static const char *shown(const char *s, char *out, size_t n)
{
    size_t i = 0;
    size_t j = 0;
    if (s == NULL) {
        snprintf(out, n, "(null)");
        return out;
    }
    for (i = 0; s[i] != '\0' && j + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    out[j] = '\0';
    if (s[i] != '\0' && n > 4) {
        memcpy(out + n - 4, "...", 4);
    }
    return out;
}

/* `name` is borrowed. */
int loader_valid_name(const char *name)
{
    if (name == NULL || name[0] == '\0') {
        return 0;
    }
    size_t i = 0;
    for (i = 0; name[i] != '\0'; i++) {
        char c = name[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (i >= LOADER_NAME_MAX) {
            return 0;
        }
        if (!alnum && !(i > 0 && c == '-')) {
            return 0;
        }
    }
    return 1;
}

/* An error for a name that is not a valid stage name. Returns -1. */
static int bad_name(const char *name, struct err *err)
{
    char nm[80];
    return err_set(err, CPB_EXIT_CONFIG,
                   "invalid stage name '%s': a stage name is 1 to 63 characters of a-z, 0-9 "
                   "and '-', starting with a letter or digit (no '/', no '.', no \".so\")",
                   shown(name, nm, sizeof nm));
}

/* Length of `dir` without trailing slashes (but "/" stays "/"). */
static size_t dir_len(const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') {
        n--;
    }
    return n;
}

/* Append `dir` unless empty or already listed (same text up to trailing
 * slashes). Returns 0, or -1 when out of memory. */
static int dirs_add(struct dir_list *l, const char *dir, const char *origin)
{
    if (dir == NULL || dir[0] == '\0') {
        return 0;
    }
    size_t n = dir_len(dir);
    for (size_t i = 0; i < l->n; i++) {
        if (dir_len(l->v[i].dir) == n && strncmp(l->v[i].dir, dir, n) == 0) {
            return 0;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 8 : l->cap * 2;
        struct dir_ent *grown = realloc(l->v, cap * sizeof *grown);
        if (grown == NULL) {
            return -1;
        }
        l->v = grown;
        l->cap = cap;
    }
    l->v[l->n].dir = dir;
    l->v[l->n].origin = origin;
    l->n++;
    return 0;
}

static void dirs_free(struct dir_list *l)
{
    free(l->v);
    free(l->env_copy);
    memset(l, 0, sizeof *l);
}

/* The search path in order: `dirs`, CPBRIDGE_STAGE_PATH (empty elements
 * skipped: they would mean the current directory), the install directory,
 * the build tree's stage directory. Returns 0, or -1 when out of memory. */
static int dirs_collect(const char *const *dirs, struct dir_list *l)
{
    int rc = -1;
    memset(l, 0, sizeof *l);
    if (dirs != NULL) {
        for (size_t i = 0; dirs[i] != NULL; i++) {
            if (dirs_add(l, dirs[i], "stage_dirs") != 0) {
                goto out;
            }
        }
    }
    const char *env = getenv(LOADER_PATH_ENV);
    if (env != NULL && env[0] != '\0') {
        l->env_copy = strdup(env);
        if (l->env_copy == NULL) {
            goto out;
        }
        char *p = l->env_copy;
        for (;;) {
            char *colon = strchr(p, ':');
            if (colon != NULL) {
                *colon = '\0';
            }
            if (dirs_add(l, p, LOADER_PATH_ENV) != 0) {
                goto out;
            }
            if (colon == NULL) {
                break;
            }
            p = colon + 1;
        }
    }
    if (dirs_add(l, CPB_STAGE_INSTALL_DIR, "install directory") != 0) {
        goto out;
    }
    if (dirs_add(l, CPB_STAGE_BUILD_DIR, "build tree") != 0) {
        goto out;
    }
    rc = 0;
out:
    if (rc != 0) {
        dirs_free(l);
    }
    return rc;
}

/* True when directory `i` of the list is an existing directory that no
 * earlier existing entry already names (same device and inode). */
static int dirs_is_new_existing(const struct dir_list *l, size_t i)
{
    struct stat st;
    if (stat(l->v[i].dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return 0;
    }
    for (size_t j = 0; j < i; j++) {
        struct stat prev;
        if (stat(l->v[j].dir, &prev) == 0 && S_ISDIR(prev.st_mode) && prev.st_dev == st.st_dev &&
            prev.st_ino == st.st_ino) {
            return 0;
        }
    }
    return 1;
}

/* `dirs` and `arg` are borrowed; the dir handed to fn is borrowed for the
 * call. */
void loader_each_dir(const char *const *dirs, void (*fn)(const char *dir, void *arg), void *arg)
{
    struct dir_list l;
    if (fn == NULL || dirs_collect(dirs, &l) != 0) {
        return;
    }
    for (size_t i = 0; i < l.n; i++) {
        if (dirs_is_new_existing(&l, i)) {
            fn(l.v[i].dir, arg);
        }
    }
    dirs_free(&l);
}

/* `name` and `dirs` are borrowed; *path is new (free()). The first
 * directory holding NAME.so wins, even if the file is refused later:
 * a shadowed stage never loads silently in its place. */
int loader_find(const char *name, const char *const *dirs, char **path, struct err *err)
{
    struct dir_list l;
    struct buf searched = BUF_INIT;
    char *found = NULL;
    int rc = -1;

    if (path != NULL) {
        *path = NULL;
    }
    if (!loader_valid_name(name)) {
        return bad_name(name, err);
    }
    if (path == NULL) {
        return err_set(err, CPB_EXIT_SOFTWARE, "loader_find: no place for the path");
    }
    if (dirs_collect(dirs, &l) != 0) {
        return err_set(err, CPB_EXIT_SOFTWARE, "out of memory while listing stage directories");
    }
    for (size_t i = 0; i < l.n; i++) {
        char shown_dir[256];
        shown(l.v[i].dir, shown_dir, sizeof shown_dir);
        if (!dirs_is_new_existing(&l, i)) {
            struct stat st;
            if (stat(l.v[i].dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
                buf_addf(&searched, "%s%s (%s, missing)", searched.len > 0 ? ", " : "", shown_dir,
                         l.v[i].origin);
            }
            continue;
        }
        char candidate[PATH_MAX];
        int n = snprintf(candidate, sizeof candidate, "%.*s/%s.so", (int)dir_len(l.v[i].dir),
                         l.v[i].dir, name);
        if (n < 0 || (size_t)n >= sizeof candidate) {
            err_set(err, CPB_EXIT_CONFIG, "stage directory %s (%s) is too long a path", shown_dir,
                    l.v[i].origin);
            goto out;
        }
        struct stat st;
        if (stat(candidate, &st) == 0) {
            found = strdup(candidate);
            if (found == NULL) {
                err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
                goto out;
            }
            break;
        }
        if (errno != ENOENT && errno != ENOTDIR) {
            char shown_path[300];
            err_set(err, CPB_EXIT_CONFIG, "cannot look at stage file %s: %s",
                    shown(candidate, shown_path, sizeof shown_path), strerror(errno));
            goto out;
        }
        buf_addf(&searched, "%s%s (%s)", searched.len > 0 ? ", " : "", shown_dir, l.v[i].origin);
    }
    if (found == NULL) {
        err_set(err, CPB_EXIT_CONFIG,
                "stage '%s' not found: no file %s.so in %s; install it into one of these "
                "directories, or add its directory to stage_dirs or " LOADER_PATH_ENV,
                name, name, searched.len > 0 ? buf_str(&searched) : "any stage directory");
        goto out;
    }
    *path = found;
    found = NULL;
    rc = 0;
out:
    free(found);
    buf_free(&searched);
    dirs_free(&l);
    return rc;
}

/* Refuse `file` when its directory is world-writable: anyone could put
 * other code in its place. `shown_file` names the stage file in messages.
 * Returns 0 or -1 with err. */
static int check_one_dir(const char *file, const char *shown_file, struct err *err)
{
    char copy[PATH_MAX];
    char sd[300];
    int n = snprintf(copy, sizeof copy, "%s", file);
    if (n < 0 || (size_t)n >= sizeof copy) {
        return err_set(err, CPB_EXIT_CONFIG, "refusing %s: the path is too long", shown_file);
    }
    const char *dir = dirname(copy);
    struct stat st;
    if (stat(dir, &st) != 0) {
        return err_set(err, CPB_EXIT_CONFIG, "refusing %s: cannot look at its directory %s: %s",
                       shown_file, shown(dir, sd, sizeof sd), strerror(errno));
    }
    if ((st.st_mode & S_IWOTH) != 0) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "refusing %s: the directory %s is world-writable (mode %04o); remove o+w",
                       shown_file, shown(dir, sd, sizeof sd), (unsigned)(st.st_mode & 07777));
    }
    return 0;
}

/* Refuse a stage file that is not a regular file, or that is (or whose
 * directory is) world-writable. Through a symlink both the link's directory
 * and the real file's directory are checked. Returns 0 or -1 with err. */
static int check_file(const char *path, struct err *err)
{
    char sp[300];
    char *real = NULL;
    int rc = -1;
    struct stat st;

    shown(path, sp, sizeof sp);
    if (stat(path, &st) != 0) {
        err_set(err, CPB_EXIT_CONFIG, "cannot open stage file %s: %s", sp, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(err, CPB_EXIT_CONFIG, "refusing %s: not a regular file (%s)", sp,
                S_ISDIR(st.st_mode) ? "a directory" : "a device, socket or pipe");
        goto out;
    }
    if ((st.st_mode & S_IWOTH) != 0) {
        err_set(err, CPB_EXIT_CONFIG,
                "refusing %s: the file is world-writable (mode %04o); remove o+w", sp,
                (unsigned)(st.st_mode & 07777));
        goto out;
    }
    if (check_one_dir(path, sp, err) != 0) {
        goto out;
    }
    /* Through a symlink, the directory holding the real file counts too. */
    real = realpath(path, NULL);
    if (real == NULL) {
        err_set(err, CPB_EXIT_CONFIG, "cannot resolve stage file %s: %s", sp, strerror(errno));
        goto out;
    }
    if (check_one_dir(real, sp, err) != 0) {
        goto out;
    }
    rc = 0;
out:
    free(real);
    return rc;
}

/* The file name of `path` without directory, borrowed from path. */
static const char *base_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

/* All arguments are borrowed; path may be NULL for a static stage (then no
 * file name is compared). */
int loader_check(const char *name, const char *path, const struct cpb_stage *desc, struct err *err)
{
    char nm[80];
    char sp[300];
    char what[400];

    shown(name, nm, sizeof nm);
    shown(path != NULL ? path : "static", sp, sizeof sp);
    snprintf(what, sizeof what, "stage '%s' (%s)", nm, sp);
    if (!loader_valid_name(name)) {
        return bad_name(name, err);
    }
    if (desc == NULL) {
        return err_set(err, CPB_EXIT_CONFIG, "%s: cpb_stage_entry() returned no descriptor (NULL)",
                       what);
    }
    /* Only abi_major, abi_minor and size are laid out alike in every ABI:
     * nothing else is read until the major is known to match. */
    if (desc->abi_major != CPB_ABI_MAJOR) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s was built for ABI %u.%u; this cpbridge speaks ABI %d.%d: rebuild it "
                       "against this cpbridge's <cpbridge/stage.h>",
                       what, (unsigned)desc->abi_major, (unsigned)desc->abi_minor, CPB_ABI_MAJOR,
                       CPB_ABI_MINOR);
    }
    if (desc->abi_minor > CPB_ABI_MINOR) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s needs ABI %u.%u, newer than this cpbridge's %d.%d: upgrade cpbridge",
                       what, (unsigned)desc->abi_major, (unsigned)desc->abi_minor, CPB_ABI_MAJOR,
                       CPB_ABI_MINOR);
    }
    size_t need = stage_size_by_minor[desc->abi_minor];
    if (desc->size < need) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s: descriptor size %u, expected at least %zu for ABI %u.%u: the "
                       "descriptor is damaged or was not declared with CPB_STAGE_HEADER",
                       what, (unsigned)desc->size, need, (unsigned)desc->abi_major,
                       (unsigned)desc->abi_minor);
    }
    const char *file = path != NULL ? base_of(path) : NULL;
    size_t nlen = strlen(name);
    int file_ok =
        file == NULL || (strncmp(file, name, nlen) == 0 && strcmp(file + nlen, ".so") == 0);
    int desc_ok = desc->name != NULL && strcmp(desc->name, name) == 0;
    if (!file_ok || !desc_ok) {
        char dn[80];
        return err_set(err, CPB_EXIT_CONFIG,
                       "stage name mismatch: the pipeline asks for '%s', the file is %s, and its "
                       "descriptor says '%s'; the file must be NAME.so and the descriptor's name "
                       "NAME, for the NAME the pipeline uses",
                       nm, sp, shown(desc->name, dn, sizeof dn));
    }
    int kind = (int)desc->kind;
    if (kind < CPB_SOURCE || kind > CPB_RECORD || (kind == CPB_RECORD && desc->abi_minor < 5)) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s: unknown kind %d (expected 1 source, 2 step, 3 after-commit, "
                       "4 notify, or 5 record from ABI 1.5 on)",
                       what, kind);
    }
    if (desc->process == NULL) {
        return err_set(err, CPB_EXIT_CONFIG, "%s: the descriptor has no process function", what);
    }
    if (loader_process_batch(desc) != NULL && desc->kind != CPB_AFTER_COMMIT &&
        desc->kind != CPB_RECORD) {
        return err_set(err, CPB_EXIT_CONFIG,
                       "%s: process_batch is for after-commit and record stages only (kind %d)",
                       what, kind);
    }
    if (loader_receive(desc) != NULL && desc->kind != CPB_SOURCE) {
        return err_set(err, CPB_EXIT_CONFIG, "%s: receive is for source stages only (kind %d)",
                       what, kind);
    }
    if (desc->version == NULL || desc->summary == NULL) {
        return err_set(err, CPB_EXIT_CONFIG, "%s: the descriptor has no %s", what,
                       desc->version == NULL ? "version" : "summary");
    }
    if (desc->options == NULL) {
        if (desc->options_size != 0) {
            return err_set(err, CPB_EXIT_CONFIG,
                           "%s: options_size is %zu but the descriptor declares no option table",
                           what, desc->options_size);
        }
        return 0;
    }
    return options_check_table(desc->options, desc->options_size, what, err);
}

loader_batch_fn loader_process_batch(const struct cpb_stage *desc)
{
    /* A 1.0 descriptor ends before the member: never read past its size. */
    if (desc->abi_minor < 1 || desc->size < STAGE_END_OF(process_batch)) {
        return NULL;
    }
    return desc->process_batch;
}

loader_receive_fn loader_receive(const struct cpb_stage *desc)
{
    /* Before 1.3 the descriptor ends before the member. */
    if (desc->abi_minor < 3 || desc->size < STAGE_END_OF(receive)) {
        return NULL;
    }
    return desc->receive;
}

/* `name` and `path` are borrowed; *out receives a new handle and a new copy
 * of path, and a descriptor borrowed from the shared object (valid until
 * loader_close). On failure *out is zeroed and nothing stays loaded. */
int loader_open(const char *name, const char *path, struct loaded_stage *out, struct err *err)
{
    char sp[300];
    char local[PATH_MAX];
    void *handle = NULL;
    char *copy = NULL;
    int rc = -1;

    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (!loader_valid_name(name)) {
        return bad_name(name, err);
    }
    if (path == NULL || path[0] == '\0' || out == NULL) {
        return err_set(err, CPB_EXIT_CONFIG, "stage '%s': no file to load", name);
    }
    shown(path, sp, sizeof sp);
    /* Before dlopen runs any of the file's code: it must be NAME.so. */
    const char *file = base_of(path);
    size_t nlen = strlen(name);
    if (strncmp(file, name, nlen) != 0 || strcmp(file + nlen, ".so") != 0) {
        err_set(err, CPB_EXIT_CONFIG,
                "stage name mismatch: the pipeline asks for '%s', but the file is %s; stage "
                "'%s' must be the file %s.so",
                name, sp, name, name);
        goto out;
    }
    if (check_file(path, err) != 0) {
        goto out;
    }
    /* dlopen searches the library path for a name without '/': never. */
    int n = snprintf(local, sizeof local, "%s%s", strchr(path, '/') != NULL ? "" : "./", path);
    if (n < 0 || (size_t)n >= sizeof local) {
        err_set(err, CPB_EXIT_CONFIG, "refusing %s: the path is too long", sp);
        goto out;
    }
    copy = strdup(path);
    if (copy == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    dlerror();
    handle = dlopen(local, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *why = dlerror();
        err_set(err, CPB_EXIT_CONFIG, "cannot load stage '%s' from %s: %s", name, sp,
                why != NULL ? why : "unknown dlopen error");
        goto out;
    }
    dlerror();
    void *sym = dlsym(handle, CPB_STAGE_ENTRY_SYMBOL);
    if (sym == NULL) {
        const char *why = dlerror();
        err_set(err, CPB_EXIT_CONFIG,
                "%s is not a cpbridge stage: it does not export " CPB_STAGE_ENTRY_SYMBOL
                " (%s); a stage defines it with CPB_STAGE_ENTRY(descriptor)",
                sp, why != NULL ? why : "the symbol is NULL");
        goto out;
    }
    cpb_stage_entry_fn entry = NULL;
    memcpy(&entry, &sym, sizeof entry);
    const struct cpb_stage *desc = entry();
    if (loader_check(name, path, desc, err) != 0) {
        goto out;
    }
    out->desc = desc;
    out->handle = handle;
    out->path = copy;
    handle = NULL;
    copy = NULL;
    rc = 0;
out:
    if (handle != NULL) {
        dlclose(handle);
    }
    free(copy);
    return rc;
}

/* Takes ownership of what *s holds; the descriptor is invalid afterwards. */
void loader_close(struct loaded_stage *s)
{
    if (s == NULL) {
        return;
    }
    if (s->handle != NULL) {
        dlclose(s->handle);
    }
    free(s->path);
    memset(s, 0, sizeof *s);
}

const char *loader_kind_name(enum cpb_kind kind)
{
    static const char *const names[] = {"?", "source", "step", "after-commit", "notify", "record"};
    return (int)kind > 0 && (size_t)kind < sizeof names / sizeof names[0] ? names[kind] : "?";
}
