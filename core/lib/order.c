/*
 * order.c — the order normalizer (see order.h): reads an untrusted order in
 * the WooCommerce REST v3 shape and builds the engine's exact, bounded view
 * of it. Every field that cannot be read is listed in "problems" with its
 * path; only an order without a usable id is refused.
 *
 * Rules beyond order.h:
 *  - A money or quantity field that cannot be read is 0 in the output (the
 *    order is INVALID through its problem anyway), so consumers always find
 *    integers.
 *  - Required (a problem when missing, null or wrong): status, currency,
 *    billing, line_items, the order's seven money totals, and each line's
 *    quantity, subtotal, total and total_tax, each shipping and fee line's
 *    total and total_tax, each coupon's discount and discount_tax. Other
 *    strings default to "", ids to 0, dates to null, line arrays to [].
 *  - Money is a decimal string (or an exact JSON integer); a JSON real is
 *    refused, as is "" (no money field read here is legitimately "").
 *  - A date "" reads as null.
 *  - "sku" is kept as sent (cut to ORDER_LEN_SKU characters, not trimmed) so
 *    messages show what the store has; "item_no" is the trimmed, upper-cased
 *    candidate, or null.
 *  - Each line array is read up to ORDER_MAX_ITEMS elements; at most
 *    ORDER_MAX_PROBLEMS problems are listed, then one saying how many more.
 */
#include "lib/order.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cpbridge/stage.h"
#include "lib/text.h"

#define ORDER_MAX_ITEMS    1000
#define ORDER_MAX_PROBLEMS 100
/* Largest quantity accepted, in units. */
#define ORDER_MAX_QTY 1000000000
/* Largest |JSON integer| accepted as money, in units (keeps < 9e14 scaled). */
#define ORDER_MAX_INT_MONEY INT64_C(90000000000)
/* Largest integer id: 2^53, the last integer every JSON reader keeps exact. */
#define ORDER_MAX_INT_ID INT64_C(9007199254740992)
/* Characters of untrusted text quoted in a problem message. */
#define ORDER_EXCERPT_CHARS 32

/* The state of one normalization: the problems found so far. */
struct norm {
    json_t *problems; /* array of {field, message} */
    size_t count;     /* problems found, including those not listed */
    bool oom;         /* an allocation failed somewhere */
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "an unknown value";
}

/* Write into out a short printable excerpt of s (valid UTF-8, len bytes):
 * at most ORDER_EXCERPT_CHARS characters, control characters as '?', "..."
 * when cut. */
static void excerpt(const char *s, size_t len, char *out, size_t outlen)
{
    size_t n = text_utf8_prefix(s, ORDER_EXCERPT_CHARS);
    size_t o = 0;
    if (n > len) {
        n = len;
    }
    for (size_t i = 0; i < n && o + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (n < len && o + 4 < outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    if (outlen > 0) {
        out[o < outlen ? o : outlen - 1] = '\0';
    }
}

/* Record a problem with the field "prefix.key" (either may be NULL or "").
 * Past ORDER_MAX_PROBLEMS only counted, except the final one whose key is
 * "problems". */
static void problem(struct norm *n, const char *prefix, const char *key, const char *fmt, ...)
    CPB_PRINTF(4, 5);

static void problem(struct norm *n, const char *prefix, const char *key, const char *fmt, ...)
{
    char field[128];
    char msg[320];
    json_t *p = NULL;
    bool has_prefix = prefix != NULL && prefix[0] != '\0';
    bool has_key = key != NULL && key[0] != '\0';
    bool last_word = has_key && strcmp(key, "problems") == 0;

    n->count++;
    if (n->count > ORDER_MAX_PROBLEMS && !last_word) {
        return;
    }
    snprintf(field, sizeof field, "%s%s%s", has_prefix ? prefix : "",
             has_prefix && has_key ? "." : "", has_key ? key : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The excerpts keep messages well under sizeof msg, so the text stays
     * valid UTF-8; if it ever did not, say so rather than lose the problem. */
    if (!text_utf8_valid(msg, strlen(msg))) {
        snprintf(msg, sizeof msg, "is not readable");
    }
    p = json_pack("{s:s, s:s}", "field", field, "message", msg);
    if (p == NULL || json_array_append_new(n->problems, p) != 0) {
        n->oom = true;
    }
}

/* out[key] = value, taking ownership of value (NULL marks out of memory). */
static void set(struct norm *n, json_t *out, const char *key, json_t *value)
{
    if (value == NULL || json_object_set_new(out, key, value) != 0) {
        n->oom = true;
    }
}

/*
 * The string at obj[key] (borrowed), with its byte length in *len. NULL,
 * silently, when obj is no object or the key is missing or null; NULL with a
 * problem when the value is of another type, holds a NUL character or is
 * not valid UTF-8.
 */
static const char *get_text(struct norm *n, json_t *obj, const char *prefix, const char *key,
                            size_t *len)
{
    json_t *v = json_object_get(obj, key);
    *len = 0;
    if (v == NULL || json_is_null(v)) {
        return NULL;
    }
    if (!json_is_string(v)) {
        problem(n, prefix, key, "expected a string, got %s", type_name(v));
        return NULL;
    }
    const char *s = json_string_value(v);
    size_t l = json_string_length(v);
    if (memchr(s, '\0', l) != NULL) {
        problem(n, prefix, key, "contains a NUL character");
        return NULL;
    }
    if (!text_utf8_valid(s, l)) {
        problem(n, prefix, key, "is not valid UTF-8");
        return NULL;
    }
    *len = l;
    return s;
}

/* Trim ASCII whitespace around s[0..*len): returns the new start and
 * updates *len. */
static const char *trim(const char *s, size_t *len)
{
    size_t l = *len;
    while (l > 0 && is_space(s[0])) {
        s++;
        l--;
    }
    while (l > 0 && is_space(s[l - 1])) {
        l--;
    }
    *len = l;
    return s;
}

/* Bytes of the longest prefix of s[0..len) (valid UTF-8, NUL-terminated at
 * or after len, no NUL before) with at most max_chars characters. */
static size_t cut_len(const char *s, size_t len, size_t max_chars)
{
    size_t n = text_utf8_prefix(s, max_chars);
    return n < len ? n : len;
}

/* A new JSON string: s[0..len) trimmed, cut to max_chars characters, and
 * trimmed again at the cut. s is valid UTF-8 with no NUL before len, and
 * NUL-terminated at or after len. NULL when out of memory. */
static json_t *cut_text(const char *s, size_t len, size_t max_chars)
{
    s = trim(s, &len);
    len = cut_len(s, len, max_chars);
    s = trim(s, &len);
    return json_stringn(s, len);
}

/* out[okey] = obj[key] as cut text, "" when missing or unusable. */
static void copy_text(struct norm *n, json_t *out, const char *okey, json_t *obj,
                      const char *prefix, const char *key, size_t max_chars)
{
    size_t len = 0;
    const char *s = get_text(n, obj, prefix, key, &len);
    set(n, out, okey, cut_text(s != NULL ? s : "", len, max_chars));
}

/* Like copy_text for a field that must be present: missing or null is a
 * problem too. */
static void copy_required_text(struct norm *n, json_t *out, const char *okey, json_t *obj,
                               const char *prefix, const char *key, size_t max_chars)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        problem(n, prefix, key, "is missing");
    } else if (json_is_null(v)) {
        problem(n, prefix, key, "is null; expected a string");
    }
    copy_text(n, out, okey, obj, prefix, key, max_chars);
}

/*
 * Money at obj[key] in ten-thousandths: a decimal string (text_parse_decimal)
 * or an exact JSON integer. Anything else, including missing, is a problem
 * and reads as 0.
 */
static int64_t get_money(struct norm *n, json_t *obj, const char *prefix, const char *key)
{
    json_t *v = json_object_get(obj, key);
    int64_t value = 0;
    char ex[160];

    if (v == NULL) {
        problem(n, prefix, key, "is missing; expected a decimal string such as \"12.34\"");
        return 0;
    }
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i > ORDER_MAX_INT_MONEY || i < -ORDER_MAX_INT_MONEY) {
            problem(n, prefix, key, "amount %" JSON_INTEGER_FORMAT " is out of range", i);
            return 0;
        }
        return (int64_t)i * TEXT_SCALE;
    }
    if (!json_is_string(v)) {
        problem(n, prefix, key, "expected a decimal string such as \"12.34\", got %s",
                type_name(v));
        return 0;
    }
    size_t len = 0;
    const char *s = get_text(n, obj, prefix, key, &len);
    if (s == NULL) {
        return 0;
    }
    if (len == 0) {
        problem(n, prefix, key, "is empty; expected a decimal string such as \"12.34\"");
        return 0;
    }
    if (text_parse_decimal(s, &value) != 0) {
        excerpt(s, len, ex, sizeof ex);
        problem(n, prefix, key, "\"%s\" is not a decimal amount (or is out of range)", ex);
        return 0;
    }
    return value;
}

/* A non-negative JSON integer at obj[key] (an id); 0 when missing or null,
 * 0 with a problem when of another type or negative. */
static int64_t get_id(struct norm *n, json_t *obj, const char *prefix, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_integer(v)) {
        problem(n, prefix, key, "expected an integer, got %s", type_name(v));
        return 0;
    }
    json_int_t i = json_integer_value(v);
    if (i < 0) {
        problem(n, prefix, key, "%" JSON_INTEGER_FORMAT " is negative", i);
        return 0;
    }
    return (int64_t)i;
}

/* A UTC time at obj[key] as a new canonical "YYYY-MM-DDTHH:MM:SS" string,
 * or a new JSON null when missing, null, "" or unreadable (a problem). */
static json_t *get_time(struct norm *n, json_t *obj, const char *prefix, const char *key)
{
    size_t len = 0;
    int64_t ms = 0;
    char text[32];
    char ex[160];
    const char *s = get_text(n, obj, prefix, key, &len);

    if (s == NULL || len == 0) {
        return json_null();
    }
    if (text_parse_time(s, &ms) != 0) {
        excerpt(s, len, ex, sizeof ex);
        problem(n, prefix, key, "\"%s\" is not a UTC time such as \"2026-11-28T10:00:00\"", ex);
        return json_null();
    }
    if (text_format_time(ms, text, sizeof text) < 0) {
        excerpt(s, len, ex, sizeof ex);
        problem(n, prefix, key, "\"%s\" is out of range", ex);
        return json_null();
    }
    return json_string(text);
}

/* A quantity from a JSON real: converted through its shortest exact decimal
 * text (at most 15 significant digits, so binary noise such as
 * 0.30000000000000004 disappears) and text_parse_decimal. Returns 0 or -1. */
static int qty_from_real(double d, int64_t *out)
{
    char text[64];
    int w;

    if (!isfinite(d) || d > (double)ORDER_MAX_QTY) {
        return -1;
    }
    w = snprintf(text, sizeof text, "%.15g", d);
    if (w < 0 || (size_t)w >= sizeof text) {
        return -1;
    }
    if (strchr(text, 'e') != NULL) {
        /* Only tiny values get here (the range check rules out big ones). */
        w = snprintf(text, sizeof text, "%.15f", d);
        if (w < 0 || (size_t)w >= sizeof text) {
            return -1;
        }
    }
    /* Under a locale whose decimal point is not '.', the only other
     * character printf wrote is that decimal point. */
    for (char *p = text; *p != '\0'; p++) {
        if ((*p < '0' || *p > '9') && *p != '-') {
            *p = '.';
        }
    }
    return text_parse_decimal(text, out);
}

/* The line quantity at item["quantity"] in ten-thousandths; 0 with a problem
 * when missing, not a number, not positive or too large. */
static int64_t get_qty(struct norm *n, json_t *item, const char *prefix)
{
    json_t *v = json_object_get(item, "quantity");
    int64_t q = 0;

    if (v == NULL) {
        problem(n, prefix, "quantity", "is missing");
        return 0;
    }
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i <= 0) {
            problem(n, prefix, "quantity", "%" JSON_INTEGER_FORMAT " is not greater than zero", i);
            return 0;
        }
        if (i > ORDER_MAX_QTY) {
            problem(n, prefix, "quantity", "%" JSON_INTEGER_FORMAT " is too large (at most %d)", i,
                    ORDER_MAX_QTY);
            return 0;
        }
        return (int64_t)i * TEXT_SCALE;
    }
    if (!json_is_real(v)) {
        problem(n, prefix, "quantity", "expected a number, got %s", type_name(v));
        return 0;
    }
    double d = json_real_value(v);
    if (!(d > 0.0)) {
        problem(n, prefix, "quantity", "%g is not greater than zero", d);
        return 0;
    }
    if (qty_from_real(d, &q) != 0) {
        problem(n, prefix, "quantity", "%g is out of range (at most %d)", d, ORDER_MAX_QTY);
        return 0;
    }
    if (q <= 0) {
        problem(n, prefix, "quantity", "%g rounds to zero at 4 decimals", d);
        return 0;
    }
    return q;
}

/* round_half_away(total * TEXT_SCALE / qty): the unit price in
 * ten-thousandths. Returns 0, or -1 when qty is not positive or the product
 * overflows. */
static int unit_price(int64_t total, int64_t qty, int64_t *out)
{
    int64_t num = 0;
    if (qty <= 0 || __builtin_mul_overflow(total, (int64_t)TEXT_SCALE, &num)) {
        return -1;
    }
    int64_t q = num / qty;
    int64_t r = num % qty;
    int64_t ar = r < 0 ? -r : r;
    if (ar != 0 && ar >= qty - ar) {
        q += num < 0 ? -1 : 1;
    }
    *out = q;
    return 0;
}

/* *sum += v, with a problem on overflow (then *sum is left as it was). */
static void add_to(struct norm *n, int64_t *sum, int64_t v, const char *field)
{
    int64_t r = 0;
    if (__builtin_add_overflow(*sum, v, &r)) {
        problem(n, "totals", field, "the sum overflows");
        return;
    }
    *sum = r;
}

/* The item number candidate for a SKU: trimmed, ASCII upper-cased; a new
 * JSON null when empty or longer than ORDER_LEN_ITEM_NO characters. s is
 * valid UTF-8, NUL-terminated at or after len. */
static json_t *item_no(const char *s, size_t len)
{
    char up[ORDER_LEN_ITEM_NO * 4 + 1];
    s = trim(s, &len);
    if (len == 0 || cut_len(s, len, ORDER_LEN_ITEM_NO) < len || len >= sizeof up) {
        return json_null();
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        up[i] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    return json_stringn(up, len);
}

/* The array at raw[key] (borrowed) and its element count to read, capped at
 * ORDER_MAX_ITEMS. NULL (silently when optional) when missing or null; NULL
 * with a problem when of another type. */
static json_t *get_array(struct norm *n, json_t *raw, const char *key, bool required, size_t *count)
{
    json_t *v = json_object_get(raw, key);
    *count = 0;
    if (v == NULL || json_is_null(v)) {
        if (required) {
            problem(n, NULL, key, v == NULL ? "is missing" : "is null; expected an array");
        }
        return NULL;
    }
    if (!json_is_array(v)) {
        problem(n, NULL, key, "expected an array, got %s", type_name(v));
        return NULL;
    }
    size_t size = json_array_size(v);
    if (size > ORDER_MAX_ITEMS) {
        problem(n, NULL, key, "has %zu elements; only the first %d are read", size,
                ORDER_MAX_ITEMS);
        size = ORDER_MAX_ITEMS;
    }
    *count = size;
    return v;
}

/* The element i of array arr when it is an object (borrowed); NULL with a
 * problem otherwise. path receives "key[i]". */
static json_t *get_element(struct norm *n, json_t *arr, const char *key, size_t i, char *path,
                           size_t pathlen)
{
    json_t *e = json_array_get(arr, i);
    snprintf(path, pathlen, "%s[%zu]", key, i);
    if (!json_is_object(e)) {
        problem(n, path, NULL, "expected an object, got %s", type_name(e));
        return NULL;
    }
    return e;
}

/* Sums over the lines, for "totals". */
struct line_sums {
    int64_t subtotal, total, tax;
};

/* Normalize line_items[i] (an object, borrowed) into a new object appended
 * to lines. */
static void read_line(struct norm *n, json_t *item, const char *path, size_t seq, json_t *lines,
                      struct line_sums *sums)
{
    json_t *line = json_object();
    size_t len = 0;
    int64_t price = 0;

    if (line == NULL || json_array_append_new(lines, line) != 0) {
        n->oom = true;
        return;
    }
    set(n, line, "seq", json_integer((json_int_t)seq));
    set(n, line, "line_id", json_integer(get_id(n, item, path, "id")));
    set(n, line, "product_id", json_integer(get_id(n, item, path, "product_id")));
    set(n, line, "variation_id", json_integer(get_id(n, item, path, "variation_id")));

    const char *sku = get_text(n, item, path, "sku", &len);
    if (sku == NULL) {
        sku = "";
        len = 0;
    }
    set(n, line, "sku", json_stringn(sku, cut_len(sku, len, ORDER_LEN_SKU)));
    set(n, line, "item_no", item_no(sku, len));
    copy_text(n, line, "name", item, path, "name", ORDER_LEN_DESCR);

    int64_t qty = get_qty(n, item, path);
    int64_t subtotal = get_money(n, item, path, "subtotal");
    int64_t total = get_money(n, item, path, "total");
    int64_t tax = get_money(n, item, path, "total_tax");
    if (qty > 0 && unit_price(total, qty, &price) != 0) {
        problem(n, path, "total", "the unit price overflows");
        price = 0;
    }
    set(n, line, "qty", json_integer(qty));
    set(n, line, "subtotal", json_integer(subtotal));
    set(n, line, "total", json_integer(total));
    set(n, line, "tax", json_integer(tax));
    set(n, line, "unit_price", json_integer(price));
    add_to(n, &sums->subtotal, subtotal, "lines_subtotal");
    add_to(n, &sums->total, total, "lines_total");
    add_to(n, &sums->tax, tax, "lines_tax");
}

/* Normalize the line_items array into out["lines"]. */
static void read_lines(struct norm *n, json_t *raw, json_t *out, struct line_sums *sums)
{
    size_t count = 0;
    char path[64];
    json_t *arr = get_array(n, raw, "line_items", true, &count);
    json_t *lines = json_array();
    size_t seq = 0;

    set(n, out, "lines", lines);
    if (lines == NULL) {
        return;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *item = get_element(n, arr, "line_items", i, path, sizeof path);
        if (item != NULL) {
            seq++;
            read_line(n, item, path, seq, lines, sums);
        }
    }
}

/* Fills normalized object `o` from raw element `e` (at `path`). */
typedef void (*fill_fn)(struct norm *n, json_t *o, json_t *e, const char *path, void *arg);

/* Normalize the array raw[in_key] into a new array out[out_key]: one object
 * per element, filled by `fill`. */
static void read_list(struct norm *n, json_t *raw, json_t *out, const char *in_key,
                      const char *out_key, fill_fn fill, void *arg)
{
    size_t count = 0;
    char path[64];
    json_t *arr = get_array(n, raw, in_key, false, &count);
    json_t *list = json_array();

    set(n, out, out_key, list);
    if (list == NULL) {
        return;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *e = get_element(n, arr, in_key, i, path, sizeof path);
        json_t *o = NULL;
        if (e == NULL) {
            continue;
        }
        o = json_object();
        if (o == NULL || json_array_append_new(list, o) != 0) {
            n->oom = true;
            return;
        }
        fill(n, o, e, path, arg);
    }
}

/* A shipping_lines element, for out["shipping_lines"]. */
static void fill_shipping(struct norm *n, json_t *o, json_t *e, const char *path, void *arg)
{
    (void)arg;
    copy_text(n, o, "method", e, path, "method_id", ORDER_LEN_CODE);
    copy_text(n, o, "title", e, path, "method_title", ORDER_LEN_NAME);
    set(n, o, "total", json_integer(get_money(n, e, path, "total")));
    set(n, o, "tax", json_integer(get_money(n, e, path, "total_tax")));
}

/* The fees' sums, for fill_fee. */
struct fee_sums {
    int64_t fees, fee_tax;
};

/* A fee_lines element, for out["fee_lines"], summed into arg (struct fee_sums). */
static void fill_fee(struct norm *n, json_t *o, json_t *e, const char *path, void *arg)
{
    struct fee_sums *sums = arg;
    copy_text(n, o, "name", e, path, "name", ORDER_LEN_NAME);
    int64_t total = get_money(n, e, path, "total");
    int64_t tax = get_money(n, e, path, "total_tax");
    set(n, o, "total", json_integer(total));
    set(n, o, "tax", json_integer(tax));
    add_to(n, &sums->fees, total, "fees");
    add_to(n, &sums->fee_tax, tax, "fee_tax");
}

/* A refunds element, for out["refunds"]: the store's partial refunds, each
 * with its (negative) total; the engine compares them after an order is
 * applied (a refund never changes a Counterpoint document by itself). */
static void fill_refund(struct norm *n, json_t *o, json_t *e, const char *path, void *arg)
{
    (void)arg;
    set(n, o, "id", json_integer(get_id(n, e, path, "id")));
    copy_text(n, o, "reason", e, path, "reason", ORDER_LEN_NAME);
    set(n, o, "total", json_integer(get_money(n, e, path, "total")));
}

/* A coupon_lines element, for out["coupons"]. */
static void fill_coupon(struct norm *n, json_t *o, json_t *e, const char *path, void *arg)
{
    (void)arg;
    copy_text(n, o, "code", e, path, "code", ORDER_LEN_CODE);
    set(n, o, "discount", json_integer(get_money(n, e, path, "discount")));
    set(n, o, "discount_tax", json_integer(get_money(n, e, path, "discount_tax")));
}

/* Normalize the address raw[key] ("billing" or "shipping") into a new object
 * set as out[key]. */
static void read_address(struct norm *n, json_t *raw, json_t *out, const char *key, bool billing)
{
    json_t *v = json_object_get(raw, key);
    json_t *src = NULL;
    json_t *addr = json_object();
    size_t flen = 0;
    size_t llen = 0;
    size_t clen = 0;
    char name[4 * ORDER_LEN_NAME * 2 + 2];

    set(n, out, key, addr);
    if (addr == NULL) {
        return;
    }
    if (v == NULL || json_is_null(v)) {
        if (billing) {
            problem(n, NULL, key, v == NULL ? "is missing" : "is null; expected an object");
        }
    } else if (!json_is_object(v)) {
        problem(n, NULL, key, "expected an object, got %s", type_name(v));
    } else {
        src = v;
    }

    /* name: "first last", or the company when both are empty. */
    const char *first = get_text(n, src, key, "first_name", &flen);
    const char *last = get_text(n, src, key, "last_name", &llen);
    const char *company = get_text(n, src, key, "company", &clen);
    first = trim(first != NULL ? first : "", &flen);
    last = trim(last != NULL ? last : "", &llen);
    company = company != NULL ? company : "";
    snprintf(name, sizeof name, "%.*s %.*s", (int)cut_len(first, flen, ORDER_LEN_NAME), first,
             (int)cut_len(last, llen, ORDER_LEN_NAME), last);
    json_t *joined = cut_text(name, strlen(name), ORDER_LEN_NAME);
    if (joined != NULL && json_string_length(joined) == 0) {
        json_decref(joined);
        joined = cut_text(company, clen, ORDER_LEN_NAME);
    }
    set(n, addr, "name", joined);
    set(n, addr, "first_name", cut_text(first, flen, ORDER_LEN_FST_NAM));
    set(n, addr, "last_name", cut_text(last, llen, ORDER_LEN_LST_NAM));
    set(n, addr, "company", cut_text(company, clen, ORDER_LEN_NAME));
    copy_text(n, addr, "address_1", src, key, "address_1", ORDER_LEN_ADRS);
    copy_text(n, addr, "address_2", src, key, "address_2", ORDER_LEN_ADRS);
    copy_text(n, addr, "city", src, key, "city", ORDER_LEN_CITY);
    copy_text(n, addr, "state", src, key, "state", ORDER_LEN_STATE);
    copy_text(n, addr, "postcode", src, key, "postcode", ORDER_LEN_ZIP);
    copy_text(n, addr, "country", src, key, "country", ORDER_LEN_CNTRY);
    if (billing) {
        copy_text(n, addr, "email", src, key, "email", ORDER_LEN_EMAIL);
    }
    copy_text(n, addr, "phone", src, key, "phone", ORDER_LEN_PHONE);
}

static bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* The order's id as text into out (>= ORDER_LEN_EXT_ID + 1 bytes). Returns
 * 0, or -1 with a reason in msg. */
static int read_id(json_t *raw, char *out, size_t outlen, char *msg, size_t msglen)
{
    json_t *v = json_object_get(raw, "id");
    if (v == NULL || json_is_null(v)) {
        snprintf(msg, msglen, "the order has no \"id\"");
        return -1;
    }
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i <= 0 || i > ORDER_MAX_INT_ID) {
            snprintf(msg, msglen,
                     "the order's \"id\" %" JSON_INTEGER_FORMAT
                     " is not a positive integer up to 2^53",
                     i);
            return -1;
        }
        snprintf(out, outlen, "%" JSON_INTEGER_FORMAT, i);
        return 0;
    }
    if (!json_is_string(v)) {
        snprintf(msg, msglen, "the order's \"id\" is %s; expected a positive integer or a string",
                 type_name(v));
        return -1;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0 || len > ORDER_LEN_EXT_ID || len >= outlen) {
        snprintf(msg, msglen, "the order's \"id\" is a string of %zu bytes; expected 1 to %d", len,
                 ORDER_LEN_EXT_ID);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (!id_char(s[i])) {
            snprintf(msg, msglen,
                     "the order's \"id\" has a character other than A-Z, a-z, 0-9, '_', '.', "
                     "'-' at byte %zu",
                     i);
            return -1;
        }
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

/* out["number"]: raw "number" (string or integer), else the id. */
static void read_number(struct norm *n, json_t *raw, json_t *out, const char *id)
{
    json_t *v = json_object_get(raw, "number");
    char text[32];

    if (json_is_integer(v)) {
        snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        set(n, out, "number", json_string(text));
        return;
    }
    size_t len = 0;
    const char *s = get_text(n, raw, NULL, "number", &len);
    if (s != NULL) {
        s = trim(s, &len);
    }
    if (s == NULL || len == 0) {
        set(n, out, "number", json_string(id));
        return;
    }
    set(n, out, "number", cut_text(s, len, ORDER_LEN_EXT_ID));
}

/* Fill out (a new object) from raw (an object with a usable id). */
static void read_order(struct norm *n, json_t *raw, json_t *out, const char *id)
{
    struct line_sums sums = {0, 0, 0};
    struct fee_sums fees = {0, 0};
    json_t *totals = NULL;

    set(n, out, "id", json_string(id));
    read_number(n, raw, out, id);
    copy_required_text(n, out, "status", raw, NULL, "status", ORDER_LEN_CODE);
    copy_required_text(n, out, "currency", raw, NULL, "currency", ORDER_LEN_CODE);
    set(n, out, "created", get_time(n, raw, NULL, "date_created_gmt"));
    set(n, out, "modified", get_time(n, raw, NULL, "date_modified_gmt"));
    set(n, out, "paid", get_time(n, raw, NULL, "date_paid_gmt"));
    int64_t customer = get_id(n, raw, NULL, "customer_id");
    set(n, out, "customer_id", json_integer(customer));
    set(n, out, "guest", json_boolean(customer == 0));
    copy_text(n, out, "payment_method", raw, NULL, "payment_method", ORDER_LEN_CODE);
    copy_text(n, out, "payment_title", raw, NULL, "payment_method_title", ORDER_LEN_NAME);
    copy_text(n, out, "transaction_id", raw, NULL, "transaction_id", ORDER_LEN_CODE);
    copy_text(n, out, "customer_note", raw, NULL, "customer_note", ORDER_LEN_NOTE);

    read_address(n, raw, out, "billing", true);
    read_address(n, raw, out, "shipping", false);
    json_t *email = json_object_get(json_object_get(out, "billing"), "email");
    set(n, out, "email", email != NULL ? json_incref(email) : json_string(""));

    totals = json_object();
    set(n, out, "totals", totals);
    if (totals == NULL) {
        return;
    }
    set(n, totals, "total", json_integer(get_money(n, raw, NULL, "total")));
    set(n, totals, "discount", json_integer(get_money(n, raw, NULL, "discount_total")));
    set(n, totals, "discount_tax", json_integer(get_money(n, raw, NULL, "discount_tax")));
    set(n, totals, "shipping", json_integer(get_money(n, raw, NULL, "shipping_total")));
    set(n, totals, "shipping_tax", json_integer(get_money(n, raw, NULL, "shipping_tax")));
    set(n, totals, "tax", json_integer(get_money(n, raw, NULL, "total_tax")));
    set(n, totals, "cart_tax", json_integer(get_money(n, raw, NULL, "cart_tax")));

    read_lines(n, raw, out, &sums);
    read_list(n, raw, out, "shipping_lines", "shipping_lines", fill_shipping, NULL);
    read_list(n, raw, out, "fee_lines", "fee_lines", fill_fee, &fees);
    read_list(n, raw, out, "coupon_lines", "coupons", fill_coupon, NULL);
    read_list(n, raw, out, "refunds", "refunds", fill_refund, NULL);

    set(n, totals, "fees", json_integer(fees.fees));
    set(n, totals, "fee_tax", json_integer(fees.fee_tax));
    set(n, totals, "lines_subtotal", json_integer(sums.subtotal));
    set(n, totals, "lines_total", json_integer(sums.total));
    set(n, totals, "lines_tax", json_integer(sums.tax));
}

int order_normalize(json_t *raw, json_t **out, char *msg, size_t msglen)
{
    struct norm n = {NULL, 0, false};
    char id[ORDER_LEN_EXT_ID + 1];
    char scratch[8];
    json_t *result = NULL;
    int rc = -1;

    if (msg == NULL || msglen == 0) {
        msg = scratch;
        msglen = sizeof scratch;
    }
    msg[0] = '\0';
    if (out == NULL) {
        snprintf(msg, msglen, "order_normalize: no output pointer");
        return -1;
    }
    *out = NULL;
    if (!json_is_object(raw)) {
        snprintf(msg, msglen, "the order is %s; expected a JSON object",
                 raw == NULL ? "missing" : type_name(raw));
        goto out;
    }
    if (read_id(raw, id, sizeof id, msg, msglen) != 0) {
        goto out;
    }
    result = json_object();
    n.problems = json_array();
    if (result == NULL || n.problems == NULL) {
        snprintf(msg, msglen, "out of memory");
        goto out;
    }
    read_order(&n, raw, result, id);
    if (n.count > ORDER_MAX_PROBLEMS) {
        /* the key "problems" passes the cap: the list's last word */
        problem(&n, NULL, "problems", "%zu more problems are not listed",
                n.count - ORDER_MAX_PROBLEMS);
    }
    set(&n, result, "problems", json_incref(n.problems));
    if (n.oom) {
        snprintf(msg, msglen, "out of memory while normalizing order %s", id);
        goto out;
    }
    *out = result;
    result = NULL;
    rc = 0;
out:
    json_decref(n.problems);
    json_decref(result);
    return rc;
}

int json_hash(json_t *value, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    char *text = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = -1;

    if (out == NULL) {
        return -1;
    }
    out[0] = '\0';
    text =
        value != NULL ? json_dumps(value, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (text == NULL) {
        goto out;
    }
    if (EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        goto out;
    }
    for (unsigned int i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[64] = '\0';
    rc = 0;
out:
    free(text);
    return rc;
}

int order_hash(json_t *normalized, char out[65])
{
    static const char *const volatile_keys[] = {"status", "modified", "paid", "problems"};
    json_t *copy = NULL;
    int rc = -1;

    if (out == NULL) {
        return -1;
    }
    out[0] = '\0';
    if (!json_is_object(normalized)) {
        goto out;
    }
    copy = json_copy(normalized); /* shallow: only top-level keys are removed */
    if (copy == NULL) {
        goto out;
    }
    for (size_t i = 0; i < sizeof volatile_keys / sizeof volatile_keys[0]; i++) {
        json_object_del(copy, volatile_keys[i]); /* absent keys are fine */
    }
    rc = json_hash(copy, out);
out:
    json_decref(copy);
    return rc;
}
