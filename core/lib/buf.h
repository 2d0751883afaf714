/*
 * buf.h — a growable byte buffer, always NUL-terminated. Used wherever the
 * engine builds text of unknown length (SQL lists, JSON, messages).
 */
#ifndef CPB_BUF_H
#define CPB_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "cpbridge/stage.h"

struct buf {
    char *data;  /* NUL-terminated; NULL until the first add */
    size_t len;  /* bytes, excluding the NUL */
    size_t cap;
    int oom;     /* set once an allocation failed; later adds do nothing */
};

#define BUF_INIT {NULL, 0, 0, 0}

/* Append n bytes. Returns 0, or -1 when out of memory (and sets oom). */
int buf_add(struct buf *b, const void *data, size_t n);
/* Append a C string. */
int buf_adds(struct buf *b, const char *s);
/* Append formatted text. */
int buf_addf(struct buf *b, const char *fmt, ...) CPB_PRINTF(2, 3);
int buf_vaddf(struct buf *b, const char *fmt, va_list ap) CPB_PRINTF(2, 0);
/* Forget the contents, keep the memory. */
void buf_reset(struct buf *b);
/* Hand the contents to the caller (new, free() it; "" when empty, NULL on
 * oom) and leave b empty. */
char *buf_take(struct buf *b);
/* Release the memory. */
void buf_free(struct buf *b);
/* Contents as a C string: "" when empty. Borrowed. */
const char *buf_str(const struct buf *b);

#endif
