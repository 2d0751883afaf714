/*
 * fuzz_order.c — libFuzzer entry point for the order normalizer: any bytes
 * that parse as JSON go through order_normalize and order_hash. Neither may
 * crash, leak or read out of bounds, and what they return must keep the
 * contract of order.h (checked here; a broken promise aborts).
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/order.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort unless every money and quantity field of the objects in `list` is
 * an integer. */
static void check_integers(json_t *list, const char *const *keys)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        for (size_t k = 0; keys[k] != NULL; k++) {
            if (!json_is_integer(json_object_get(item, keys[k]))) {
                abort();
            }
        }
    }
}

/* Abort when the normalized order breaks the shape order.h promises. */
static void check_shape(json_t *out)
{
    static const char *const line_keys[] = {"seq", "qty",     "subtotal",   "total",
                                            "tax", "line_id", "unit_price", NULL};
    static const char *const money_keys[] = {"total", "tax", NULL};
    json_t *lines = json_object_get(out, "lines");
    json_t *problems = json_object_get(out, "problems");
    const char *id = json_string_value(json_object_get(out, "id"));

    if (!json_is_array(lines) || json_array_size(lines) > 1000 || !json_is_array(problems) ||
        json_array_size(problems) > 101 || id == NULL || id[0] == '\0' ||
        strlen(id) > ORDER_LEN_EXT_ID || !json_is_object(json_object_get(out, "totals")) ||
        !json_is_object(json_object_get(out, "billing"))) {
        abort();
    }
    check_integers(lines, line_keys);
    check_integers(json_object_get(out, "shipping_lines"), money_keys);
    check_integers(json_object_get(out, "fee_lines"), money_keys);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t error;
    json_t *out = NULL;
    char msg[256];
    char hash[65];
    char *text = NULL;
    /* Any JSON value, and strings with NUL characters, to reach every check. */
    json_t *raw = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);

    if (raw == NULL) {
        return 0;
    }
    if (order_normalize(raw, &out, msg, sizeof msg) == 0) {
        check_shape(out);
        if (order_hash(out, hash) != 0 || strlen(hash) != 64) {
            abort();
        }
        /* Every output string is valid UTF-8, so the dump cannot fail. */
        text = json_dumps(out, JSON_COMPACT);
        if (text == NULL) {
            abort();
        }
    } else if (out != NULL || msg[0] == '\0') {
        abort();
    }
    free(text);
    json_decref(out);
    json_decref(raw);
    return 0;
}
