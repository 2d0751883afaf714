/*
 * options.c — declared option tables applied to libconfig groups: strict
 * type checks (no silent conversion), ranges, enum choices, required keys,
 * defaults parsed from text, unknown keys refused with a did-you-mean,
 * "file:" secrets, redaction, and the describe/markdown/value printers
 * (see options.h). The same code fills stage options and the engine's own
 * blocks.
 */
#include "engine/options.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/text.h"
#include "services/log.h"

/* A secret read from a file may be at most this long. */
#define SECRET_FILE_MAX (64 * 1024)
/* A table longer than this is taken to lack its NULL-name end. */
#define TABLE_MAX 1024
/* Longest value quoted back in a message. */
#define QUOTE_MAX 64

struct opt_store {
    void **items;
    size_t n;
    size_t cap;
};

/* A value parsed for one option, before it is range-checked and stored. */
struct parsed {
    const char *str;   /* STRING */
    int64_t num;       /* INT, DECIMAL, DURATION */
    bool flag;         /* BOOL */
    int index;         /* ENUM */
    const char **list; /* LIST: NULL-terminated, owned by the store */
    size_t count;      /* LIST: elements */
};

static struct opt_store *store_new(void)
{
    return calloc(1, sizeof(struct opt_store));
}

/* Hand `p` (new) to the store. On failure `p` is freed and -1 returned. */
static int store_keep(struct opt_store *st, void *p)
{
    if (p == NULL) {
        return -1;
    }
    if (st->n == st->cap) {
        size_t cap = st->cap != 0 ? st->cap * 2 : 8;
        void **items = realloc(st->items, cap * sizeof *items);
        if (items == NULL) {
            free(p);
            return -1;
        }
        st->items = items;
        st->cap = cap;
    }
    st->items[st->n++] = p;
    return 0;
}

void opt_store_free(struct opt_store *store)
{
    if (store == NULL) {
        return;
    }
    for (size_t i = 0; i < store->n; i++) {
        free(store->items[i]);
    }
    free(store->items);
    free(store);
}

static const char *type_name(enum cpb_opt_type type)
{
    switch (type) {
    case CPB_OPT_STRING:
        return "string";
    case CPB_OPT_INT:
        return "integer";
    case CPB_OPT_BOOL:
        return "boolean";
    case CPB_OPT_DECIMAL:
        return "decimal";
    case CPB_OPT_DURATION:
        return "duration";
    case CPB_OPT_ENUM:
        return "enum";
    case CPB_OPT_LIST:
        return "list";
    }
    return "unknown";
}

/* What a libconfig value is, for "must be X, not Y" messages. */
const char *options_setting_kind(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_GROUP:
        return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a floating-point number";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array";
    case CONFIG_TYPE_LIST:
        return "a list";
    default:
        return "a value of unknown type";
    }
}

/* "file:line: " of a setting, or "" without one. */
void options_where(const config_setting_t *s, char *out, size_t n)
{
    const char *file = NULL;
    unsigned line = 0;
    out[0] = '\0';
    if (s == NULL) {
        return;
    }
    file = config_setting_source_file(s);
    line = config_setting_source_line(s);
    if (file != NULL && line > 0) {
        snprintf(out, n, "%s:%u: ", file, line);
    } else if (file != NULL) {
        snprintf(out, n, "%s: ", file);
    } else if (line > 0) {
        snprintf(out, n, "line %u: ", line);
    }
}

/* Quote untrusted text for a message: at most QUOTE_MAX bytes, control
 * bytes escaped, and nothing at all for secrets. */
void options_quote(const char *s, bool secret, char *out, size_t n)
{
    struct buf b = BUF_INIT;
    if (secret) {
        snprintf(out, n, "(a hidden secret value)");
        return;
    }
    buf_adds(&b, "\"");
    size_t len = strlen(s);
    for (size_t i = 0; i < len && i < QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) {
            buf_addf(&b, "\\x%02x", c);
        } else if (c == '"' || c == '\\') {
            buf_addf(&b, "\\%c", c);
        } else {
            buf_add(&b, &c, 1);
        }
    }
    buf_adds(&b, len > QUOTE_MAX ? "...\"" : "\"");
    snprintf(out, n, "%s", b.oom ? "(value)" : buf_str(&b));
    buf_free(&b);
}

/* A decimal in ten-thousandths with the trailing zeros dropped: "0.01". */
static void format_decimal_short(int64_t v, char *out, size_t n)
{
    if (text_format_decimal(v, 4, out, n) < 0) {
        return;
    }
    char *dot = strchr(out, '.');
    if (dot == NULL) {
        return;
    }
    char *end = out + strlen(out);
    while (end > dot + 1 && end[-1] == '0') {
        end--;
    }
    if (end == dot + 1) {
        end = dot;
    }
    *end = '\0';
}

/* A number of the option's unit as text ("1000", "0.5", "30s"). */
static void format_number(const struct cpb_option *o, int64_t v, char *out, size_t n)
{
    if (o->type == CPB_OPT_DECIMAL) {
        format_decimal_short(v, out, n);
    } else if (o->type == CPB_OPT_DURATION) {
        if (text_format_duration(v, out, n) < 0) {
            snprintf(out, n, "%" PRId64 "ms", v);
        }
    } else {
        snprintf(out, n, "%" PRId64, v);
    }
}

static size_t choice_count(const struct cpb_option *o)
{
    size_t n = 0;
    while (o->choices != NULL && o->choices[n] != NULL && n < TABLE_MAX) {
        n++;
    }
    return n;
}

/* Why `text` is no choice of an enum option: the choices and a suggestion. */
static void enum_reason(const struct cpb_option *o, const char *text, char *reason, size_t n)
{
    struct buf b = BUF_INIT;
    char q[QUOTE_MAX * 4 + 16];
    size_t count = choice_count(o);
    buf_adds(&b, "must be one of ");
    for (size_t i = 0; i < count; i++) {
        buf_addf(&b, "%s\"%s\"", i > 0 ? ", " : "", o->choices[i]);
    }
    options_quote(text, (o->flags & CPB_OPT_SECRET) != 0, q, sizeof q);
    buf_addf(&b, ", not %s", q);
    int hint = text_suggest(text, o->choices, count);
    if (hint >= 0 && (o->flags & CPB_OPT_SECRET) == 0) {
        buf_addf(&b, " (did you mean \"%s\"?)", o->choices[hint]);
    }
    snprintf(reason, n, "%s", b.oom ? "must be one of its choices" : buf_str(&b));
    buf_free(&b);
}

/* Split a comma-separated default into a NULL-terminated list in the store
 * (spaces around items dropped). Returns 0, or -1 with a reason. */
static int split_list(const char *text, struct parsed *v, struct opt_store *st, char *reason,
                      size_t n)
{
    size_t count = 0;
    const char *p = text;
    while (*p == ' ') {
        p++;
    }
    if (*p != '\0') {
        count = 1;
        for (const char *c = p; *c != '\0'; c++) {
            count += *c == ',';
        }
    }
    char **list = calloc(count + 1, sizeof *list);
    if (store_keep(st, list) != 0) {
        snprintf(reason, n, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        const char *end = strchr(p, ',');
        if (end == NULL) {
            end = p + strlen(p);
        }
        const char *last = end;
        while (last > p && last[-1] == ' ') {
            last--;
        }
        if (last == p) {
            snprintf(reason, n, "has an empty element in the list \"%s\"", text);
            return -1;
        }
        char *item = strndup(p, (size_t)(last - p));
        if (store_keep(st, item) != 0) {
            snprintf(reason, n, "out of memory");
            return -1;
        }
        list[i] = item;
        p = *end == ',' ? end + 1 : end;
        while (*p == ' ') {
            p++;
        }
    }
    v->list = (const char **)list;
    v->count = count;
    return 0;
}

/*
 * Parse `text` as a value of option `o`: the whole value for defaults, and
 * the string form of DECIMAL, DURATION, ENUM and STRING values from a file.
 * Returns 0, or -1 with a reason ("must be ..., not ...").
 */
static int parse_text(const struct cpb_option *o, const char *text, struct parsed *v,
                      struct opt_store *st, char *reason, size_t n)
{
    char q[QUOTE_MAX * 4 + 16];
    bool secret = (o->flags & CPB_OPT_SECRET) != 0;
    options_quote(text, secret, q, sizeof q);
    switch (o->type) {
    case CPB_OPT_STRING:
        v->str = text;
        return 0;
    case CPB_OPT_INT:
        if (text_parse_int(text, &v->num) != 0) {
            snprintf(reason, n, "must be an integer, not %s", q);
            return -1;
        }
        return 0;
    case CPB_OPT_BOOL:
        if (strcmp(text, "true") == 0) {
            v->flag = true;
        } else if (strcmp(text, "false") == 0) {
            v->flag = false;
        } else {
            snprintf(reason, n, "must be true or false, not %s", q);
            return -1;
        }
        return 0;
    case CPB_OPT_DECIMAL:
        if (text_parse_decimal(text, &v->num) != 0) {
            snprintf(reason, n,
                     "must be a decimal number such as \"0.01\" (digits, one optional '.', "
                     "below 900000000000000), not %s",
                     q);
            return -1;
        }
        return 0;
    case CPB_OPT_DURATION:
        if (text_parse_duration(text, &v->num) != 0) {
            snprintf(reason, n,
                     "must be a duration: a whole number and one unit of ms, s, m, h, d "
                     "(\"30s\", \"5m\"), not %s",
                     q);
            return -1;
        }
        return 0;
    case CPB_OPT_ENUM: {
        size_t count = choice_count(o);
        for (size_t i = 0; i < count; i++) {
            if (strcmp(text, o->choices[i]) == 0) {
                v->index = (int)i;
                return 0;
            }
        }
        enum_reason(o, text, reason, n);
        return -1;
    }
    case CPB_OPT_LIST:
        return split_list(text, v, st, reason, n);
    }
    snprintf(reason, n, "has an unknown type %d", (int)o->type);
    return -1;
}

/* Whether a parsed value fits the declared range. Returns 0, or -1 with a
 * reason. */
static int check_range(const struct cpb_option *o, const struct parsed *v, char *reason, size_t n)
{
    char lo[64];
    char hi[64];
    char got[64];
    if (o->min >= o->max) {
        return 0;
    }
    format_number(o, o->min, lo, sizeof lo);
    format_number(o, o->max, hi, sizeof hi);
    switch (o->type) {
    case CPB_OPT_INT:
    case CPB_OPT_DECIMAL:
    case CPB_OPT_DURATION:
        if (v->num < o->min || v->num > o->max) {
            format_number(o, v->num, got, sizeof got);
            snprintf(reason, n, "must be between %s and %s, not %s", lo, hi,
                     (o->flags & CPB_OPT_SECRET) != 0 ? "(hidden)" : got);
            return -1;
        }
        return 0;
    case CPB_OPT_STRING: {
        size_t len = v->str != NULL ? strlen(v->str) : 0;
        if ((int64_t)len < o->min || (uint64_t)len > (uint64_t)o->max) {
            snprintf(reason, n, "must be between %s and %s bytes long, not %zu", lo, hi, len);
            return -1;
        }
        return 0;
    }
    case CPB_OPT_LIST:
        if ((int64_t)v->count < o->min || (uint64_t)v->count > (uint64_t)o->max) {
            snprintf(reason, n, "must have between %s and %s elements, not %zu", lo, hi, v->count);
            return -1;
        }
        return 0;
    case CPB_OPT_BOOL:
    case CPB_OPT_ENUM:
        return 0;
    }
    return 0;
}

static size_t field_size(enum cpb_opt_type type)
{
    switch (type) {
    case CPB_OPT_STRING:
        return sizeof(const char *);
    case CPB_OPT_INT:
    case CPB_OPT_DECIMAL:
    case CPB_OPT_DURATION:
        return sizeof(int64_t);
    case CPB_OPT_BOOL:
        return sizeof(bool);
    case CPB_OPT_ENUM:
        return sizeof(int);
    case CPB_OPT_LIST:
        return sizeof(const char *const *);
    }
    return 0;
}

static size_t field_align(enum cpb_opt_type type)
{
    switch (type) {
    case CPB_OPT_STRING:
        return alignof(const char *);
    case CPB_OPT_INT:
    case CPB_OPT_DECIMAL:
    case CPB_OPT_DURATION:
        return alignof(int64_t);
    case CPB_OPT_BOOL:
        return alignof(bool);
    case CPB_OPT_ENUM:
        return alignof(int);
    case CPB_OPT_LIST:
        return alignof(const char *const *);
    }
    return 1;
}

/* Write a parsed value into the options struct at the option's offset. */
static void store_value(const struct cpb_option *o, const struct parsed *v, void *out)
{
    char *field = (char *)out + o->offset;
    switch (o->type) {
    case CPB_OPT_STRING:
        memcpy(field, &v->str, sizeof v->str);
        break;
    case CPB_OPT_INT:
    case CPB_OPT_DECIMAL:
    case CPB_OPT_DURATION:
        memcpy(field, &v->num, sizeof v->num);
        break;
    case CPB_OPT_BOOL:
        memcpy(field, &v->flag, sizeof v->flag);
        break;
    case CPB_OPT_ENUM:
        memcpy(field, &v->index, sizeof v->index);
        break;
    case CPB_OPT_LIST: {
        const char *const *list = v->list;
        memcpy(field, &list, sizeof list);
        break;
    }
    }
}

int options_check_table(const struct cpb_option *table, size_t options_size, const char *what,
                        struct err *err)
{
    struct opt_store *scratch = NULL;
    char reason[512];
    int rc = -1;
    if (what == NULL) {
        what = "options";
    }
    if (table == NULL) {
        return 0;
    }
    scratch = store_new();
    if (scratch == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "%s: out of memory", what);
        goto out;
    }
    for (size_t i = 0; table[i].name != NULL; i++) {
        const struct cpb_option *o = &table[i];
        if (i >= TABLE_MAX) {
            err_set(err, CPB_EXIT_CONFIG,
                    "%s: option table has more than %d entries (missing the NULL-name end?)", what,
                    TABLE_MAX);
            goto out;
        }
        if (o->name[0] == '\0') {
            err_set(err, CPB_EXIT_CONFIG, "%s: option table entry %zu has an empty name", what, i);
            goto out;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(table[j].name, o->name) == 0) {
                err_set(err, CPB_EXIT_CONFIG, "%s: option '%s' is declared twice", what, o->name);
                goto out;
            }
        }
        size_t size = field_size(o->type);
        if (size == 0) {
            err_set(err, CPB_EXIT_CONFIG, "%s: option '%s' has an unknown type %d", what, o->name,
                    (int)o->type);
            goto out;
        }
        if ((o->flags & ~(unsigned)(CPB_OPT_REQUIRED | CPB_OPT_SECRET | CPB_OPT_DEPRECATED)) != 0) {
            err_set(err, CPB_EXIT_CONFIG, "%s: option '%s' has unknown flags 0x%x", what, o->name,
                    o->flags);
            goto out;
        }
        if (o->offset > options_size || size > options_size - o->offset) {
            err_set(err, CPB_EXIT_CONFIG,
                    "%s: option '%s' (%s, %zu bytes at offset %zu) lies outside the options "
                    "struct of %zu bytes",
                    what, o->name, type_name(o->type), size, o->offset, options_size);
            goto out;
        }
        if (o->offset % field_align(o->type) != 0) {
            err_set(err, CPB_EXIT_CONFIG, "%s: option '%s' has a misaligned offset %zu", what,
                    o->name, o->offset);
            goto out;
        }
        if (o->min > o->max) {
            err_set(err, CPB_EXIT_CONFIG, "%s: option '%s' has min %" PRId64 " above max %" PRId64,
                    what, o->name, o->min, o->max);
            goto out;
        }
        if (o->type == CPB_OPT_ENUM) {
            size_t count = choice_count(o);
            if (count == 0) {
                err_set(err, CPB_EXIT_CONFIG, "%s: enum option '%s' has no choices", what, o->name);
                goto out;
            }
            for (size_t a = 0; a < count; a++) {
                for (size_t b = 0; b < a; b++) {
                    if (strcmp(o->choices[a], o->choices[b]) == 0) {
                        err_set(err, CPB_EXIT_CONFIG, "%s: enum option '%s' lists \"%s\" twice",
                                what, o->name, o->choices[a]);
                        goto out;
                    }
                }
            }
        }
        if ((o->flags & CPB_OPT_REQUIRED) != 0 && o->default_value != NULL) {
            err_set(err, CPB_EXIT_CONFIG, "%s: option '%s' is required and also has a default",
                    what, o->name);
            goto out;
        }
        if (o->default_value != NULL) {
            struct parsed v;
            memset(&v, 0, sizeof v);
            if (parse_text(o, o->default_value, &v, scratch, reason, sizeof reason) != 0 ||
                check_range(o, &v, reason, sizeof reason) != 0) {
                err_set(err, CPB_EXIT_CONFIG, "%s: the default of option '%s' %s", what, o->name,
                        reason);
                goto out;
            }
        }
    }
    rc = 0;
out:
    opt_store_free(scratch);
    return rc;
}

/* Read a "file:" secret. Returns 0 with *value (new, NUL-terminated), or
 * -1 with a reason. */
static int read_secret_file(const char *path, char **value, char *reason, size_t n)
{
    char q[QUOTE_MAX * 4 + 16];
    char *data = NULL;
    size_t len = 0;
    int fd = -1;
    int rc = -1;
    struct stat st;
    options_quote(path, false, q, sizeof q);
    if (path[0] == '\0') {
        snprintf(reason, n, "names no file after \"file:\"");
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(reason, n, "cannot read the secret file %s: %s", q, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(reason, n, "cannot read the secret file %s: %s", q, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(reason, n, "names %s for a secret file, which is not a regular file", q);
        goto out;
    }
    if (st.st_size > SECRET_FILE_MAX) {
        snprintf(reason, n, "names the secret file %s, which is larger than 64 KiB", q);
        goto out;
    }
    data = malloc(SECRET_FILE_MAX + 2);
    if (data == NULL) {
        snprintf(reason, n, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t got = read(fd, data + len, SECRET_FILE_MAX + 1 - len);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            snprintf(reason, n, "cannot read the secret file %s: %s", q, strerror(errno));
            goto out;
        }
        if (got == 0) {
            break;
        }
        len += (size_t)got;
        if (len > SECRET_FILE_MAX) {
            snprintf(reason, n, "names the secret file %s, which is larger than 64 KiB", q);
            goto out;
        }
    }
    data[len] = '\0';
    if (memchr(data, '\0', len) != NULL) {
        snprintf(reason, n, "names the secret file %s, which contains a NUL byte", q);
        goto out;
    }
    if (len > 0 && data[len - 1] == '\n') {
        len--;
        if (len > 0 && data[len - 1] == '\r') {
            len--;
        }
        data[len] = '\0';
    }
    if (len == 0) {
        snprintf(reason, n, "names the secret file %s, which is empty", q);
        goto out;
    }
    if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
        log_msg(CPB_LOG_WARN, NULL, 0, "secret file %s is readable or writable by every user", q);
    }
    *value = data;
    data = NULL;
    rc = 0;
out:
    free(data);
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

/* A LIST value from a libconfig list or array of strings. */
static int parse_list_setting(const config_setting_t *s, struct parsed *v, struct opt_store *st,
                              char *reason, size_t n)
{
    int count = config_setting_length(s);
    const char **list = calloc((size_t)count + 1, sizeof *list);
    if (store_keep(st, (void *)list) != 0) {
        snprintf(reason, n, "out of memory");
        return -1;
    }
    for (int i = 0; i < count; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (e == NULL || config_setting_type(e) != CONFIG_TYPE_STRING) {
            snprintf(reason, n, "must be a list of strings; element %d is %s", i + 1,
                     e != NULL ? options_setting_kind(e) : "missing");
            return -1;
        }
        list[i] = config_setting_get_string(e);
    }
    v->list = list;
    v->count = (size_t)count;
    return 0;
}

/* A DECIMAL from an integer or floating-point setting. */
static int parse_decimal_number(const config_setting_t *s, struct parsed *v, char *reason, size_t n)
{
    if (config_setting_type(s) == CONFIG_TYPE_FLOAT) {
        double d = config_setting_get_float(s);
        char text[64];
        if (!isfinite(d)) {
            snprintf(reason, n, "must be a finite decimal number");
            return -1;
        }
        snprintf(text, sizeof text, "%.10g", d);
        if (text_parse_decimal(text, &v->num) != 0) {
            snprintf(reason, n,
                     "must be a decimal below 900000000000000, not %s (write it as a string "
                     "such as \"0.01\")",
                     text);
            return -1;
        }
        return 0;
    }
    long long whole = config_setting_get_int64(s);
    if (whole <= -900000000000000LL || whole >= 900000000000000LL) {
        snprintf(reason, n, "must be a decimal below 900000000000000, not %lld", whole);
        return -1;
    }
    v->num = (int64_t)whole * TEXT_SCALE;
    return 0;
}

/*
 * Parse the value of setting `s` for option `o`, by the libconfig type the
 * option accepts. Returns 0, or -1 with a reason.
 */
static int parse_setting(const struct cpb_option *o, const config_setting_t *s, struct parsed *v,
                         struct opt_store *st, char *reason, size_t n)
{
    int type = config_setting_type(s);
    bool secret = (o->flags & CPB_OPT_SECRET) != 0;
    switch (o->type) {
    case CPB_OPT_INT:
        if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
            snprintf(reason, n, "must be an integer, not %s", options_setting_kind(s));
            return -1;
        }
        v->num = (int64_t)config_setting_get_int64(s);
        return 0;
    case CPB_OPT_BOOL:
        if (type != CONFIG_TYPE_BOOL) {
            snprintf(reason, n, "must be a boolean (true or false), not %s",
                     options_setting_kind(s));
            return -1;
        }
        v->flag = config_setting_get_bool(s) != 0;
        return 0;
    case CPB_OPT_DECIMAL:
        if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64 || type == CONFIG_TYPE_FLOAT) {
            return parse_decimal_number(s, v, reason, n);
        }
        if (type != CONFIG_TYPE_STRING) {
            snprintf(reason, n, "must be a decimal (a string such as \"0.01\" or a number), not %s",
                     options_setting_kind(s));
            return -1;
        }
        return parse_text(o, config_setting_get_string(s), v, st, reason, n);
    case CPB_OPT_STRING:
    case CPB_OPT_DURATION:
    case CPB_OPT_ENUM:
        if (type != CONFIG_TYPE_STRING) {
            if (o->type == CPB_OPT_DURATION) {
                snprintf(reason, n, "must be a duration string with a unit such as \"30s\", not %s",
                         options_setting_kind(s));
            } else {
                snprintf(reason, n, "must be a string, not %s", options_setting_kind(s));
            }
            return -1;
        }
        if (o->type == CPB_OPT_STRING && secret &&
            strncmp(config_setting_get_string(s), "file:", 5) == 0) {
            char *value = NULL;
            if (read_secret_file(config_setting_get_string(s) + 5, &value, reason, n) != 0) {
                return -1;
            }
            if (store_keep(st, value) != 0) {
                snprintf(reason, n, "out of memory");
                return -1;
            }
            v->str = value;
            return 0;
        }
        return parse_text(o, config_setting_get_string(s), v, st, reason, n);
    case CPB_OPT_LIST:
        if (type != CONFIG_TYPE_LIST && type != CONFIG_TYPE_ARRAY) {
            snprintf(reason, n, "must be a list of strings such as [\"a\", \"b\"], not %s",
                     options_setting_kind(s));
            return -1;
        }
        return parse_list_setting(s, v, st, reason, n);
    }
    snprintf(reason, n, "has an unknown type %d", (int)o->type);
    return -1;
}

/* Register every secret string of a filled value with the log's masking. */
static int redact_value(const struct cpb_option *o, const struct parsed *v)
{
    if ((o->flags & CPB_OPT_SECRET) == 0) {
        return 0;
    }
    if (o->type == CPB_OPT_STRING && v->str != NULL) {
        return log_redact_add(v->str);
    }
    if (o->type == CPB_OPT_LIST && v->list != NULL) {
        for (size_t i = 0; i < v->count; i++) {
            if (log_redact_add(v->list[i]) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* Refuse the first member of `group` that the table does not declare. */
static int check_unknown(const struct cpb_option *table, const config_setting_t *group,
                         const char *what, struct err *err)
{
    const char **names = NULL;
    size_t count = 0;
    char loc[512];
    int rc = -1;
    while (table != NULL && table[count].name != NULL) {
        count++;
    }
    names = calloc(count + 1, sizeof *names);
    if (names == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "%s: out of memory", what);
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        names[i] = table[i].name;
    }
    int members = config_setting_length(group);
    for (int m = 0; m < members; m++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)m);
        const char *key = config_setting_name(s);
        bool known = false;
        for (size_t i = 0; i < count && key != NULL; i++) {
            if (strcmp(names[i], key) == 0) {
                known = true;
                break;
            }
        }
        if (known) {
            continue;
        }
        options_where(s, loc, sizeof loc);
        int hint = key != NULL ? text_suggest(key, names, count) : -1;
        if (hint >= 0) {
            err_set(err, CPB_EXIT_CONFIG, "%s%s: unknown option '%s' (did you mean '%s'?)", loc,
                    what, key, names[hint]);
        } else if (count == 0) {
            err_set(err, CPB_EXIT_CONFIG, "%s%s: unknown option '%s' (it takes no options)", loc,
                    what, key != NULL ? key : "?");
        } else {
            struct buf b = BUF_INIT;
            for (size_t i = 0; i < count; i++) {
                buf_addf(&b, "%s%s", i > 0 ? ", " : "", names[i]);
            }
            err_set(err, CPB_EXIT_CONFIG, "%s%s: unknown option '%s' (known options: %s)", loc,
                    what, key != NULL ? key : "?", buf_str(&b));
            buf_free(&b);
        }
        goto out;
    }
    rc = 0;
out:
    free(names);
    return rc;
}

int options_fill(const struct cpb_option *table, const config_setting_t *group, void *out,
                 struct opt_store **store, const char *what, struct err *err)
{
    struct opt_store *st = NULL;
    char loc[512];
    char reason[768];
    int rc = -1;
    if (what == NULL) {
        what = "options";
    }
    st = store_new();
    *store = st;
    if (st == NULL) {
        err_set(err, CPB_EXIT_SOFTWARE, "%s: out of memory", what);
        goto out;
    }
    if (group != NULL && config_setting_type(group) != CONFIG_TYPE_GROUP) {
        options_where(group, loc, sizeof loc);
        err_set(err, CPB_EXIT_CONFIG,
                "%s%s: the options must be a group { key = value; ... }, "
                "not %s",
                loc, what, options_setting_kind(group));
        goto out;
    }
    if (group != NULL && check_unknown(table, group, what, err) != 0) {
        goto out;
    }
    for (size_t i = 0; table != NULL && table[i].name != NULL; i++) {
        const struct cpb_option *o = &table[i];
        const config_setting_t *s = NULL;
        struct parsed v;
        memset(&v, 0, sizeof v);
        if (group != NULL) {
            s = config_setting_get_member(group, o->name);
        }
        if (s != NULL) {
            options_where(s, loc, sizeof loc);
            if (parse_setting(o, s, &v, st, reason, sizeof reason) != 0 ||
                check_range(o, &v, reason, sizeof reason) != 0) {
                err_set(err, CPB_EXIT_CONFIG, "%s%s: option '%s' %s", loc, what, o->name, reason);
                goto out;
            }
            if ((o->flags & CPB_OPT_REQUIRED) != 0 && o->type == CPB_OPT_STRING &&
                v.str[0] == '\0') {
                err_set(err, CPB_EXIT_CONFIG, "%s%s: option '%s' is required and must not be empty",
                        loc, what, o->name);
                goto out;
            }
            if ((o->flags & CPB_OPT_DEPRECATED) != 0) {
                log_msg(CPB_LOG_WARN, NULL, 0, "%s%s: option '%s' is deprecated: %s", loc, what,
                        o->name, o->help != NULL ? o->help : "it will be removed");
            }
        } else if ((o->flags & CPB_OPT_REQUIRED) != 0) {
            options_where(group, loc, sizeof loc);
            err_set(err, CPB_EXIT_CONFIG, "%s%s: missing required option '%s' (%s%s%s)", loc, what,
                    o->name, type_name(o->type), o->help != NULL ? ": " : "",
                    o->help != NULL ? o->help : "");
            goto out;
        } else if (o->default_value != NULL) {
            if (parse_text(o, o->default_value, &v, st, reason, sizeof reason) != 0) {
                err_set(err, CPB_EXIT_SOFTWARE, "%s: the default of option '%s' %s", what, o->name,
                        reason);
                goto out;
            }
        } else if (o->type == CPB_OPT_LIST) {
            /* Unset lists are empty rather than NULL, so they can be walked. */
            if (split_list("", &v, st, reason, sizeof reason) != 0) {
                err_set(err, CPB_EXIT_SOFTWARE, "%s: %s", what, reason);
                goto out;
            }
        }
        if (redact_value(o, &v) != 0) {
            err_set(err, CPB_EXIT_SOFTWARE, "%s: out of memory registering a secret", what);
            goto out;
        }
        store_value(o, &v, out);
    }
    rc = 0;
out:
    return rc;
}

/* "1..1000", "0.01..100", "1s..1h", "length 1..64", "1..5 items", or "". */
static void range_text(const struct cpb_option *o, char *out, size_t n)
{
    char lo[64];
    char hi[64];
    out[0] = '\0';
    if (o->min >= o->max || o->type == CPB_OPT_BOOL || o->type == CPB_OPT_ENUM) {
        return;
    }
    format_number(o, o->min, lo, sizeof lo);
    format_number(o, o->max, hi, sizeof hi);
    if (o->type == CPB_OPT_STRING) {
        snprintf(out, n, "%s..%s bytes", lo, hi);
    } else if (o->type == CPB_OPT_LIST) {
        snprintf(out, n, "%s..%s items", lo, hi);
    } else {
        snprintf(out, n, "%s..%s", lo, hi);
    }
}

static void flags_text(const struct cpb_option *o, struct buf *b)
{
    const char *sep = "";
    if ((o->flags & CPB_OPT_REQUIRED) != 0) {
        buf_addf(b, "%srequired", sep);
        sep = ", ";
    }
    if ((o->flags & CPB_OPT_SECRET) != 0) {
        buf_addf(b, "%ssecret", sep);
        sep = ", ";
    }
    if ((o->flags & CPB_OPT_DEPRECATED) != 0) {
        buf_addf(b, "%sdeprecated", sep);
    }
}

static void choices_text(const struct cpb_option *o, struct buf *b)
{
    size_t count = choice_count(o);
    for (size_t i = 0; i < count; i++) {
        buf_addf(b, "%s%s", i > 0 ? ", " : "", o->choices[i]);
    }
}

/* Markdown cell text: pipes escaped, newlines as spaces. */
/* Text for a Markdown table cell: pipes and line breaks neutralised, and
 * outside code spans <, > and & written as entities so that text such as
 * "<url>/wp-json" is not taken for an HTML tag. */
static void md_cell(FILE *f, const char *s, int code)
{
    for (; s != NULL && *s != '\0'; s++) {
        if (*s == '|') {
            fputs("\\|", f);
        } else if (*s == '\n' || *s == '\r') {
            fputc(' ', f);
        } else if (!code && *s == '<') {
            fputs("&lt;", f);
        } else if (!code && *s == '>') {
            fputs("&gt;", f);
        } else if (!code && *s == '&') {
            fputs("&amp;", f);
        } else {
            fputc(*s, f);
        }
    }
}

void options_describe(FILE *f, const struct cpb_option *table, int markdown)
{
    char range[160];
    if (table == NULL || table[0].name == NULL) {
        fputs(markdown ? "No options.\n" : "  (no options)\n", f);
        return;
    }
    if (markdown) {
        fputs("| Option | Type | Default | Range / choices | Flags | Description |\n", f);
        fputs("|---|---|---|---|---|---|\n", f);
    }
    for (size_t i = 0; table[i].name != NULL && i < TABLE_MAX; i++) {
        const struct cpb_option *o = &table[i];
        struct buf flags = BUF_INIT;
        struct buf extent = BUF_INIT;
        const char *def = o->default_value;
        if (def != NULL && (o->flags & CPB_OPT_SECRET) != 0) {
            def = "********";
        }
        flags_text(o, &flags);
        range_text(o, range, sizeof range);
        if (o->type == CPB_OPT_ENUM) {
            choices_text(o, &extent);
        } else {
            buf_adds(&extent, range);
        }
        if (markdown) {
            fprintf(f, "| `%s` | %s | ", o->name, type_name(o->type));
            if (def != NULL && def[0] == '\0') {
                fputs("`\"\"`", f);
            } else if (def != NULL) {
                fputc('`', f);
                md_cell(f, def, 1);
                fputc('`', f);
            }
            fputs(" | ", f);
            md_cell(f, buf_str(&extent), 0);
            fputs(" | ", f);
            md_cell(f, buf_str(&flags), 0);
            fputs(" | ", f);
            md_cell(f, o->help, 0);
            fputs(" |\n", f);
        } else {
            fprintf(f, "  %s (%s", o->name, type_name(o->type));
            if (def != NULL) {
                fprintf(f, "; default: %s", def[0] != '\0' ? def : "\"\"");
            }
            if (buf_str(&extent)[0] != '\0') {
                fprintf(f, "; %s: %s", o->type == CPB_OPT_ENUM ? "one of" : "range",
                        buf_str(&extent));
            }
            if (buf_str(&flags)[0] != '\0') {
                fprintf(f, "; %s", buf_str(&flags));
            }
            fputs(")\n", f);
            if (o->help != NULL) {
                fprintf(f, "      %s\n", o->help);
            }
        }
        buf_free(&flags);
        buf_free(&extent);
    }
}

/* A string for `check` output: quoted, control bytes escaped. */
static void print_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7F) {
            fprintf(f, "\\x%02x", c);
        } else if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

void options_print_values(FILE *f, const struct cpb_option *table, const void *opts)
{
    char text[64];
    for (size_t i = 0; table != NULL && table[i].name != NULL && i < TABLE_MAX; i++) {
        const struct cpb_option *o = &table[i];
        const char *field = (const char *)opts + o->offset;
        fprintf(f, "  %s = ", o->name);
        switch (o->type) {
        case CPB_OPT_STRING: {
            const char *s = NULL;
            memcpy(&s, field, sizeof s);
            if (s == NULL) {
                fputs("(unset)", f);
            } else if ((o->flags & CPB_OPT_SECRET) != 0) {
                fputs("********", f);
            } else {
                print_quoted(f, s);
            }
            break;
        }
        case CPB_OPT_INT:
        case CPB_OPT_DECIMAL:
        case CPB_OPT_DURATION: {
            int64_t v = 0;
            memcpy(&v, field, sizeof v);
            if ((o->flags & CPB_OPT_SECRET) != 0) {
                fputs("********", f);
            } else {
                format_number(o, v, text, sizeof text);
                fputs(text, f);
            }
            break;
        }
        case CPB_OPT_BOOL: {
            bool v = false;
            memcpy(&v, field, sizeof v);
            fputs(v ? "true" : "false", f);
            break;
        }
        case CPB_OPT_ENUM: {
            int v = 0;
            memcpy(&v, field, sizeof v);
            if (v >= 0 && (size_t)v < choice_count(o)) {
                fprintf(f, "\"%s\"", o->choices[v]);
            } else {
                fprintf(f, "(invalid choice %d)", v);
            }
            break;
        }
        case CPB_OPT_LIST: {
            const char *const *list = NULL;
            memcpy(&list, field, sizeof list);
            if (list == NULL) {
                fputs("(unset)", f);
                break;
            }
            fputc('[', f);
            for (size_t k = 0; list[k] != NULL; k++) {
                fputs(k > 0 ? ", " : " ", f);
                if ((o->flags & CPB_OPT_SECRET) != 0) {
                    fputs("********", f);
                } else {
                    print_quoted(f, list[k]);
                }
            }
            fputs(list[0] != NULL ? " ]" : "]", f);
            break;
        }
        }
        fputc('\n', f);
    }
}
