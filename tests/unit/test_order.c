/*
 * test_order.c — the order normalizer (core/lib/order.c): a realistic full
 * order, exact money and quantities, UTF-8-safe cutting, problems with
 * their field paths for missing, null and wrong-typed fields, refused ids,
 * the payload hash, and hostile input (caps, deep nesting, NULs, bad UTF-8).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpbtest.h"
#include "lib/order.h"
#include "lib/text.h"

/* A small valid order (WooCommerce REST shape): one line, no extras. */
static const char BASE_ORDER[] =
    "{\"id\":18,\"number\":\"18\",\"status\":\"processing\",\"currency\":\"USD\","
    "\"date_created_gmt\":\"2026-11-29T04:48:13\",\"date_modified_gmt\":\"2026-11-29T04:48:16\","
    "\"date_paid_gmt\":null,\"customer_id\":0,\"discount_total\":\"0.00\","
    "\"discount_tax\":\"0.00\",\"shipping_total\":\"0.00\",\"shipping_tax\":\"0.00\","
    "\"cart_tax\":\"0.00\",\"total\":\"10.00\",\"total_tax\":\"0.00\","
    "\"billing\":{\"first_name\":\"Ann\",\"last_name\":\"Lee\",\"company\":\"\","
    "\"address_1\":\"1 Main St\",\"address_2\":\"\",\"city\":\"Springfield\",\"state\":\"IL\","
    "\"postcode\":\"62701\",\"country\":\"US\",\"email\":\"ann@example.com\",\"phone\":\"\"},"
    "\"shipping\":{\"first_name\":\"Ann\",\"last_name\":\"Lee\",\"company\":\"\","
    "\"address_1\":\"1 Main St\",\"address_2\":\"\",\"city\":\"Springfield\",\"state\":\"IL\","
    "\"postcode\":\"62701\",\"country\":\"US\",\"phone\":\"\"},"
    "\"payment_method\":\"cod\",\"payment_method_title\":\"Cash on delivery\","
    "\"transaction_id\":\"\",\"customer_note\":\"\","
    "\"line_items\":[{\"id\":5,\"name\":\"Mug\",\"product_id\":11,\"variation_id\":0,"
    "\"quantity\":1,\"subtotal\":\"10.00\",\"subtotal_tax\":\"0.00\",\"total\":\"10.00\","
    "\"total_tax\":\"0.00\",\"sku\":\"MUG-1\",\"price\":10}],"
    "\"shipping_lines\":[],\"fee_lines\":[],\"coupon_lines\":[]}";

static json_t *base_order(void)
{
    json_error_t e;
    json_t *o = json_loads(BASE_ORDER, 0, &e);
    if (o == NULL) {
        fprintf(stderr, "BASE_ORDER: %s at %d\n", e.text, e.position);
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    return o;
}

static json_t *line0(json_t *raw)
{
    return json_array_get(json_object_get(raw, "line_items"), 0);
}

/* Normalize raw (borrowed), expecting success; returns the new object. */
static json_t *normalize_ok(json_t *raw)
{
    json_t *out = NULL;
    char msg[256] = "unset";
    int rc = order_normalize(raw, &out, msg, sizeof msg);
    if (rc != 0) {
        fprintf(stderr, "order_normalize failed: %s\n", msg);
    }
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_TRUE_FATAL(json_is_array(json_object_get(out, "problems")));
    return out;
}

static size_t problem_count(json_t *norm)
{
    return json_array_size(json_object_get(norm, "problems"));
}

/* The message of the problem for `field`, or NULL. */
static const char *problem_for(json_t *norm, const char *field)
{
    json_t *problems = json_object_get(norm, "problems");
    for (size_t i = 0; i < json_array_size(problems); i++) {
        json_t *p = json_array_get(problems, i);
        const char *f = json_string_value(json_object_get(p, "field"));
        if (f != NULL && strcmp(f, field) == 0) {
            const char *m = json_string_value(json_object_get(p, "message"));
            return m != NULL ? m : "";
        }
    }
    return NULL;
}

static void dump_problems(json_t *norm)
{
    char *s = json_dumps(json_object_get(norm, "problems"), JSON_INDENT(1));
    fprintf(stderr, "problems: %s\n", s != NULL ? s : "?");
    free(s);
}

static json_int_t int_at(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    CU_ASSERT_TRUE(json_is_integer(v));
    return json_integer_value(v);
}

static const char *str_at(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    CU_ASSERT_TRUE(json_is_string(v));
    return json_is_string(v) ? json_string_value(v) : "(not a string)";
}

static json_t *line_at(json_t *norm, size_t i)
{
    return json_array_get(json_object_get(norm, "lines"), i);
}

/* Code points in a valid UTF-8 string. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        if (((unsigned char)*s & 0xC0) != 0x80) {
            n++;
        }
    }
    return n;
}

/* ---- the full order ---- */

static void test_full_order(void)
{
    char *text = cpbtest_slurp(cpbtest_src("tests/fixtures/order/full.json"), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    json_error_t e;
    json_t *raw = json_loads(text, 0, &e);
    free(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(raw);
    json_t *n = normalize_ok(raw);
    if (problem_count(n) != 0) {
        dump_problems(n);
    }
    CU_ASSERT_EQUAL(problem_count(n), 0);

    CU_ASSERT_STRING_EQUAL(str_at(n, "id"), "1234");
    CU_ASSERT_STRING_EQUAL(str_at(n, "number"), "WEB-1234");
    CU_ASSERT_STRING_EQUAL(str_at(n, "status"), "processing");
    CU_ASSERT_STRING_EQUAL(str_at(n, "currency"), "USD");
    CU_ASSERT_STRING_EQUAL(str_at(n, "created"), "2026-11-28T10:00:00");
    CU_ASSERT_STRING_EQUAL(str_at(n, "modified"), "2026-11-28T10:05:00");
    CU_ASSERT_STRING_EQUAL(str_at(n, "paid"), "2026-11-28T10:01:00");
    CU_ASSERT_EQUAL(int_at(n, "customer_id"), 7);
    CU_ASSERT_TRUE(json_is_false(json_object_get(n, "guest")));
    CU_ASSERT_STRING_EQUAL(str_at(n, "email"), "zoe@example.org");
    CU_ASSERT_STRING_EQUAL(str_at(n, "payment_method"), "stripe");
    CU_ASSERT_STRING_EQUAL(str_at(n, "payment_title"), "Credit card (Stripe)");
    CU_ASSERT_STRING_EQUAL(str_at(n, "transaction_id"), "pi_3MtwBwLkdIwHu7ix28a3tqPa");
    CU_ASSERT_STRING_EQUAL(str_at(n, "customer_note"), "Please leave at the back door.\nThanks!");

    json_t *b = json_object_get(n, "billing");
    CU_ASSERT_STRING_EQUAL(str_at(b, "name"), "Zo\xc3\xab O'Brien-M\xc3\xbcller");
    CU_ASSERT_STRING_EQUAL(str_at(b, "first_name"), "Zo\xc3\xab");
    CU_ASSERT_STRING_EQUAL(str_at(b, "last_name"), "O'Brien-M\xc3\xbcller");
    CU_ASSERT_STRING_EQUAL(str_at(b, "company"), "\xc3\x9cn\xc3\xaf"
                                                 "code GmbH");
    CU_ASSERT_STRING_EQUAL(str_at(b, "address_1"), "K\xc3\xb6nigstra\xc3\x9f"
                                                   "e 1");
    CU_ASSERT_STRING_EQUAL(str_at(b, "city"), "Berlin");
    CU_ASSERT_STRING_EQUAL(str_at(b, "postcode"), "10115");
    CU_ASSERT_STRING_EQUAL(str_at(b, "country"), "DE");
    CU_ASSERT_STRING_EQUAL(str_at(b, "email"), "zoe@example.org");
    CU_ASSERT_STRING_EQUAL(str_at(b, "phone"), "+49 30 1234567");
    CU_ASSERT_PTR_NULL(json_object_get(b, "departamento")); /* extra keys ignored */
    CU_ASSERT_EQUAL(json_object_size(b), 12);
    json_t *s = json_object_get(n, "shipping");
    CU_ASSERT_EQUAL(json_object_size(s), 11);
    CU_ASSERT_PTR_NULL(json_object_get(s, "email"));
    CU_ASSERT_STRING_EQUAL(str_at(s, "address_2"), "Hinterhaus");
    CU_ASSERT_STRING_EQUAL(str_at(s, "state"), "BE");

    json_t *t = json_object_get(n, "totals");
    CU_ASSERT_EQUAL(int_at(t, "total"), 1061600);
    CU_ASSERT_EQUAL(int_at(t, "discount"), 34700);
    CU_ASSERT_EQUAL(int_at(t, "discount_tax"), 0);
    CU_ASSERT_EQUAL(int_at(t, "shipping"), 50000);
    CU_ASSERT_EQUAL(int_at(t, "shipping_tax"), 3600);
    CU_ASSERT_EQUAL(int_at(t, "tax"), 52000);
    CU_ASSERT_EQUAL(int_at(t, "cart_tax"), 48400);
    CU_ASSERT_EQUAL(int_at(t, "fees"), 25000 - 50000);
    CU_ASSERT_EQUAL(int_at(t, "fee_tax"), 0);
    CU_ASSERT_EQUAL(int_at(t, "lines_subtotal"), 297000 + 300000);
    CU_ASSERT_EQUAL(int_at(t, "lines_total"), 267200 + 300000);
    CU_ASSERT_EQUAL(int_at(t, "lines_tax"), 19400 + 28986);

    CU_ASSERT_EQUAL_FATAL(json_array_size(json_object_get(n, "lines")), 2);
    json_t *l = line_at(n, 0);
    CU_ASSERT_EQUAL(int_at(l, "seq"), 1);
    CU_ASSERT_EQUAL(int_at(l, "line_id"), 11);
    CU_ASSERT_EQUAL(int_at(l, "product_id"), 5);
    CU_ASSERT_EQUAL(int_at(l, "variation_id"), 0);
    CU_ASSERT_STRING_EQUAL(str_at(l, "sku"), "mug-350 ");
    CU_ASSERT_STRING_EQUAL(str_at(l, "item_no"), "MUG-350");
    CU_ASSERT_STRING_EQUAL(str_at(l, "name"), "Ceramic Coffee Mug 350 ml");
    CU_ASSERT_EQUAL(int_at(l, "qty"), 30000);
    CU_ASSERT_EQUAL(int_at(l, "subtotal"), 297000);
    CU_ASSERT_EQUAL(int_at(l, "total"), 267200);
    CU_ASSERT_EQUAL(int_at(l, "tax"), 19400);
    CU_ASSERT_EQUAL(int_at(l, "unit_price"), 89067); /* 26.72 / 3 = 8.90666.. */
    l = line_at(n, 1);
    CU_ASSERT_EQUAL(int_at(l, "seq"), 2);
    CU_ASSERT_EQUAL(int_at(l, "variation_id"), 61);
    CU_ASSERT_EQUAL(int_at(l, "qty"), 15000);
    CU_ASSERT_EQUAL(int_at(l, "tax"), 28986); /* "2.89855" rounded half away */
    CU_ASSERT_EQUAL(int_at(l, "unit_price"), 200000);
    CU_ASSERT_STRING_EQUAL(str_at(l, "item_no"), "BEANS-1KG");

    json_t *sl = json_array_get(json_object_get(n, "shipping_lines"), 0);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(n, "shipping_lines")), 1);
    CU_ASSERT_STRING_EQUAL(str_at(sl, "method"), "flat_rate");
    CU_ASSERT_STRING_EQUAL(str_at(sl, "title"), "Flat rate");
    CU_ASSERT_EQUAL(int_at(sl, "total"), 50000);
    CU_ASSERT_EQUAL(int_at(sl, "tax"), 3600);
    json_t *fees = json_object_get(n, "fee_lines");
    CU_ASSERT_EQUAL(json_array_size(fees), 2);
    CU_ASSERT_STRING_EQUAL(str_at(json_array_get(fees, 0), "name"), "Gift wrap");
    CU_ASSERT_EQUAL(int_at(json_array_get(fees, 1), "total"), -50000);
    json_t *c = json_array_get(json_object_get(n, "coupons"), 0);
    CU_ASSERT_STRING_EQUAL(str_at(c, "code"), "save10");
    CU_ASSERT_EQUAL(int_at(c, "discount"), 34700);
    CU_ASSERT_EQUAL(int_at(c, "discount_tax"), 0); /* "0", not "0.00" */

    char h1[65];
    CU_ASSERT_EQUAL(order_hash(n, h1), 0);
    CU_ASSERT_EQUAL(strlen(h1), 64);
    CU_ASSERT_EQUAL(strspn(h1, "0123456789abcdef"), 64);
    json_decref(n);
    json_decref(raw);
}

static void test_base_order_defaults(void)
{
    json_t *raw = base_order();
    json_object_del(raw, "shipping");
    json_object_del(raw, "shipping_lines");
    json_object_del(raw, "fee_lines");
    json_object_del(raw, "coupon_lines");
    json_object_del(raw, "number");
    json_object_del(raw, "customer_note");
    json_object_set_new(raw, "date_modified_gmt", json_string(""));
    json_t *n = normalize_ok(raw);
    if (problem_count(n) != 0) {
        dump_problems(n);
    }
    CU_ASSERT_EQUAL(problem_count(n), 0);
    CU_ASSERT_STRING_EQUAL(str_at(n, "id"), "18");
    CU_ASSERT_STRING_EQUAL(str_at(n, "number"), "18"); /* defaults to the id */
    CU_ASSERT_TRUE(json_is_true(json_object_get(n, "guest")));
    CU_ASSERT_TRUE(json_is_null(json_object_get(n, "paid")));
    CU_ASSERT_TRUE(json_is_null(json_object_get(n, "modified")));
    CU_ASSERT_STRING_EQUAL(str_at(n, "customer_note"), "");
    CU_ASSERT_STRING_EQUAL(str_at(json_object_get(n, "shipping"), "name"), "");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(n, "shipping_lines")), 0);
    CU_ASSERT_TRUE(json_is_array(json_object_get(n, "fee_lines")));
    CU_ASSERT_TRUE(json_is_array(json_object_get(n, "coupons")));
    CU_ASSERT_EQUAL(int_at(json_object_get(n, "totals"), "fees"), 0);
    json_decref(n);
    json_decref(raw);
}

/* ---- money and quantities ---- */

/* Normalize base_order with total = v (taken) and return the parsed total,
 * or INT64_MIN when a problem was reported for "total". */
static int64_t total_of(json_t *v)
{
    json_t *raw = base_order();
    json_object_set_new(raw, "total", v);
    json_t *n = normalize_ok(raw);
    int64_t r = int_at(json_object_get(n, "totals"), "total");
    if (problem_for(n, "total") != NULL) {
        CU_ASSERT_EQUAL(r, 0);
        CU_ASSERT_EQUAL(problem_count(n), 1);
        r = INT64_MIN;
    } else {
        CU_ASSERT_EQUAL(problem_count(n), 0);
    }
    json_decref(n);
    json_decref(raw);
    return r;
}

static void test_money(void)
{
    CU_ASSERT_EQUAL(total_of(json_string("106.16")), 1061600);
    CU_ASSERT_EQUAL(total_of(json_string("2.89855")), 28986);
    CU_ASSERT_EQUAL(total_of(json_string("2.89854")), 28985);
    CU_ASSERT_EQUAL(total_of(json_string("-2.89855")), -28986);
    CU_ASSERT_EQUAL(total_of(json_string("-5.00")), -50000);
    CU_ASSERT_EQUAL(total_of(json_string("0")), 0);
    CU_ASSERT_EQUAL(total_of(json_string("1234")), 12340000);
    CU_ASSERT_EQUAL(total_of(json_integer(12)), 120000);
    CU_ASSERT_EQUAL(total_of(json_string("")), INT64_MIN);
    CU_ASSERT_EQUAL(total_of(json_string("1e3")), INT64_MIN);
    CU_ASSERT_EQUAL(total_of(json_string(" 1.00")), INT64_MIN);
    CU_ASSERT_EQUAL(total_of(json_string("1,000.00")), INT64_MIN);
    CU_ASSERT_EQUAL(total_of(json_string("NaN")), INT64_MIN);
    CU_ASSERT_EQUAL(total_of(json_string("99999999999999999999.00")), INT64_MIN);
    CU_ASSERT_EQUAL(total_of(json_integer(INT64_C(9000000000000000000))), INT64_MIN);
    CU_ASSERT_EQUAL(total_of(json_real(1.5)), INT64_MIN); /* a float is never money */
    CU_ASSERT_EQUAL(total_of(json_true()), INT64_MIN);
    CU_ASSERT_EQUAL(total_of(json_null()), INT64_MIN);
    CU_ASSERT_EQUAL(total_of(json_stringn("1\0"
                                          "2",
                                          3)),
                    INT64_MIN);
}

/* Normalize base_order with line 0's quantity = v (taken, NULL: removed) and
 * total = total; returns qty (INT64_MIN on a quantity problem) and the unit
 * price in *price. */
static int64_t qty_of(json_t *v, const char *total, int64_t *price)
{
    json_t *raw = base_order();
    json_t *l = line0(raw);
    if (v != NULL) {
        json_object_set_new(l, "quantity", v);
    } else {
        json_object_del(l, "quantity");
    }
    json_object_set_new(l, "total", json_string(total));
    json_t *n = normalize_ok(raw);
    int64_t q = int_at(line_at(n, 0), "qty");
    *price = int_at(line_at(n, 0), "unit_price");
    if (problem_for(n, "line_items[0].quantity") != NULL) {
        CU_ASSERT_EQUAL(q, 0);
        CU_ASSERT_EQUAL(*price, 0);
        CU_ASSERT_EQUAL(problem_count(n), 1);
        q = INT64_MIN;
    } else {
        CU_ASSERT_EQUAL(problem_count(n), 0);
    }
    json_decref(n);
    json_decref(raw);
    return q;
}

static void test_quantity_and_unit_price(void)
{
    int64_t p = 0;
    CU_ASSERT_EQUAL(qty_of(json_real(1.5), "10.00", &p), 15000);
    CU_ASSERT_EQUAL(p, 66667); /* 10 / 1.5 = 6.6666.. */
    CU_ASSERT_EQUAL(qty_of(json_integer(3), "-10.00", &p), 30000);
    CU_ASSERT_EQUAL(p, -33333);
    CU_ASSERT_EQUAL(qty_of(json_integer(2), "0.0001", &p), 20000);
    CU_ASSERT_EQUAL(p, 1); /* 0.00005 rounds half away from zero */
    CU_ASSERT_EQUAL(qty_of(json_integer(2), "-0.0001", &p), 20000);
    CU_ASSERT_EQUAL(p, -1);
    CU_ASSERT_EQUAL(qty_of(json_real(0.1 + 0.2), "3.00", &p), 3000);
    CU_ASSERT_EQUAL(p, 100000);
    CU_ASSERT_EQUAL(qty_of(json_real(8.906666666666666), "1.00", &p), 89067);
    CU_ASSERT_EQUAL(qty_of(json_real(2.0), "1.00", &p), 20000);
    /* the store meant 2.00005 (binary 2.0000499999..): read the decimal */
    CU_ASSERT_EQUAL(qty_of(json_real(2.00005), "1.00", &p), 20001);
    CU_ASSERT_EQUAL(qty_of(json_real(0.00015), "1.00", &p), 2);
    CU_ASSERT_EQUAL(qty_of(json_real(0.00005), "1.00", &p), 1);
    CU_ASSERT_EQUAL(p, 100000000);
    CU_ASSERT_EQUAL(qty_of(json_integer(1000000000), "899999999.99", &p), INT64_C(10000000000000));
    CU_ASSERT_EQUAL(p, 9000);                                           /* 0.9 rounded */
    CU_ASSERT_EQUAL(qty_of(json_real(0.00004), "1.00", &p), INT64_MIN); /* rounds to 0 */
    CU_ASSERT_EQUAL(qty_of(json_integer(0), "1.00", &p), INT64_MIN);
    CU_ASSERT_EQUAL(qty_of(json_integer(-1), "1.00", &p), INT64_MIN);
    CU_ASSERT_EQUAL(qty_of(json_real(-1.5), "1.00", &p), INT64_MIN);
    CU_ASSERT_EQUAL(qty_of(json_real(0.0), "1.00", &p), INT64_MIN);
    CU_ASSERT_EQUAL(qty_of(json_integer(1000000001), "1.00", &p), INT64_MIN);
    CU_ASSERT_EQUAL(qty_of(json_real(1e12), "1.00", &p), INT64_MIN);
    CU_ASSERT_EQUAL(qty_of(json_real(1e300), "1.00", &p), INT64_MIN);
    CU_ASSERT_EQUAL(qty_of(json_string("2"), "1.00", &p), INT64_MIN);
    CU_ASSERT_EQUAL(qty_of(json_null(), "1.00", &p), INT64_MIN);
    CU_ASSERT_EQUAL(qty_of(json_true(), "1.00", &p), INT64_MIN);
    CU_ASSERT_EQUAL(qty_of(NULL, "1.00", &p), INT64_MIN);
}

static void test_float_price_ignored(void)
{
    json_t *values[3] = {json_real(999.99), json_string("garbage"), json_object()};
    for (size_t i = 0; i < 3; i++) {
        json_t *raw = base_order();
        json_object_set_new(line0(raw), "price", values[i]);
        json_object_set_new(line0(raw), "quantity", json_integer(3));
        json_object_set_new(line0(raw), "total", json_string("26.72"));
        json_t *n = normalize_ok(raw);
        CU_ASSERT_EQUAL(problem_count(n), 0);
        CU_ASSERT_EQUAL(int_at(line_at(n, 0), "unit_price"), 89067);
        CU_ASSERT_PTR_NULL(json_object_get(line_at(n, 0), "price"));
        json_decref(n);
        json_decref(raw);
    }
}

/* ---- strings ---- */

static void test_utf8_cut_at_limit(void)
{
    json_t *raw = base_order();
    json_t *b = json_object_get(raw, "billing");
    /* city, 20 characters: 18 x 'a', "ß" (2 bytes), "€" (3 bytes) fit; the
     * emoji (4 bytes) is the 21st and goes whole. */
    json_object_set_new(b, "city",
                        json_string("aaaaaaaaaaaaaaaaaa\xc3\x9f\xe2\x82\xac\xf0\x9f\x98\x80"));
    /* first_name, 15: 14 x "É" and one emoji, then one more emoji. */
    json_object_set_new(b, "first_name",
                        json_string("\xc3\x89\xc3\x89\xc3\x89\xc3\x89\xc3\x89\xc3\x89\xc3\x89"
                                    "\xc3\x89\xc3\x89\xc3\x89\xc3\x89\xc3\x89\xc3\x89\xc3\x89"
                                    "\xf0\x9f\x98\x80\xf0\x9f\x98\x81"));
    /* state, 10: exactly 10 three-byte characters stay whole. */
    json_object_set_new(b, "state",
                        json_string("\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
                                    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
                                    "\xe2\x82\xac\xe2\x82\xac"));
    /* address_1, 40: the cut lands after a space, which is trimmed. */
    json_object_set_new(b, "address_1",
                        json_string("  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbb  "));
    json_object_set_new(b, "last_name", json_string(" \t Lee \n"));
    json_t *n = normalize_ok(raw);
    CU_ASSERT_EQUAL(problem_count(n), 0);
    json_t *nb = json_object_get(n, "billing");
    CU_ASSERT_STRING_EQUAL(str_at(nb, "city"), "aaaaaaaaaaaaaaaaaa\xc3\x9f\xe2\x82\xac");
    CU_ASSERT_EQUAL(utf8_chars(str_at(nb, "city")), 20);
    CU_ASSERT_STRING_EQUAL(str_at(nb, "first_name"),
                           "\xc3\x89\xc3\x89\xc3\x89\xc3\x89\xc3\x89\xc3\x89\xc3\x89"
                           "\xc3\x89\xc3\x89\xc3\x89\xc3\x89\xc3\x89\xc3\x89\xc3\x89"
                           "\xf0\x9f\x98\x80");
    CU_ASSERT_EQUAL(strlen(str_at(nb, "state")), 30);
    CU_ASSERT_EQUAL(utf8_chars(str_at(nb, "state")), 10);
    CU_ASSERT_STRING_EQUAL(str_at(nb, "address_1"), "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    CU_ASSERT_STRING_EQUAL(str_at(nb, "last_name"), "Lee");
    /* name: "first last" from the uncut first name, cut to 40 characters. */
    const char *name = str_at(nb, "name");
    CU_ASSERT_EQUAL(utf8_chars(name), 20);
    CU_ASSERT_TRUE(strstr(name, "\xf0\x9f\x98\x81 Lee") != NULL);
    CU_ASSERT_TRUE(text_utf8_valid(name, strlen(name)));
    json_decref(n);
    json_decref(raw);
}

static void test_names_and_skus(void)
{
    json_t *raw = base_order();
    json_t *b = json_object_get(raw, "billing");
    json_object_set_new(b, "first_name", json_string(""));
    json_object_set_new(b, "last_name", json_string("   "));
    json_object_set_new(b, "company", json_string(" ACME Corp "));
    /* shipping: a long name is cut at 40 characters */
    json_t *s = json_object_get(raw, "shipping");
    json_object_set_new(s, "first_name", json_string("Maximilianus"));
    json_object_set_new(s, "last_name", json_string("Fitzgerald-Hohenzollern-Sigmaringen"));
    json_t *items = json_object_get(raw, "line_items");
    const char *skus[] = {" ab-12 ",
                          "",
                          "ABCDEFGHIJKLMNOPQRSTU",
                          "abcdefghijklmnopqrst",
                          "\xc3\xa4"
                          "b-1",
                          "  "};
    const char *want[] = {"AB-12",
                          NULL,
                          NULL,
                          "ABCDEFGHIJKLMNOPQRST",
                          "\xc3\xa4"
                          "B-1",
                          NULL};
    for (size_t i = 1; i < 6; i++) {
        json_array_append_new(items, json_deep_copy(line0(raw)));
    }
    for (size_t i = 0; i < 6; i++) {
        json_object_set_new(json_array_get(items, i), "sku", json_string(skus[i]));
    }
    json_object_del(json_array_get(items, 5), "sku"); /* missing sku */
    json_object_set_new(raw, "number", json_integer(5001));
    json_t *n = normalize_ok(raw);
    CU_ASSERT_EQUAL(problem_count(n), 0);
    CU_ASSERT_STRING_EQUAL(str_at(json_object_get(n, "billing"), "name"), "ACME Corp");
    CU_ASSERT_STRING_EQUAL(str_at(json_object_get(n, "shipping"), "name"),
                           "Maximilianus Fitzgerald-Hohenzollern-Sig");
    CU_ASSERT_STRING_EQUAL(str_at(json_object_get(n, "shipping"), "first_name"), "Maximilianus");
    CU_ASSERT_STRING_EQUAL(str_at(json_object_get(n, "shipping"), "last_name"),
                           "Fitzgerald-Hohenzollern-S");
    CU_ASSERT_STRING_EQUAL(str_at(n, "number"), "5001");
    for (size_t i = 0; i < 6; i++) {
        json_t *l = line_at(n, i);
        json_t *item = json_object_get(l, "item_no");
        if (want[i] == NULL) {
            CU_ASSERT_TRUE(json_is_null(item));
        } else {
            CU_ASSERT_STRING_EQUAL(json_is_string(item) ? json_string_value(item) : "(null)",
                                   want[i]);
        }
    }
    CU_ASSERT_STRING_EQUAL(str_at(line_at(n, 0), "sku"), " ab-12 "); /* kept as sent */
    CU_ASSERT_STRING_EQUAL(str_at(line_at(n, 2), "sku"), "ABCDEFGHIJKLMNOPQRSTU");
    CU_ASSERT_STRING_EQUAL(str_at(line_at(n, 5), "sku"), "");
    json_decref(n);
    json_decref(raw);
}

static void test_dates(void)
{
    const char *in[] = {"2026-11-29 04:48:16", "2026-11-29T04:48:16Z", "2026-11-29T04:48:16.250",
                        "2026-11-29T04:48:16+00:00"};
    for (size_t i = 0; i < 4; i++) {
        json_t *raw = base_order();
        json_object_set_new(raw, "date_paid_gmt", json_string(in[i]));
        json_t *n = normalize_ok(raw);
        CU_ASSERT_EQUAL(problem_count(n), 0);
        CU_ASSERT_STRING_EQUAL(str_at(n, "paid"), "2026-11-29T04:48:16");
        json_decref(n);
        json_decref(raw);
    }
    const char *bad[] = {"yesterday", "2026-13-01T00:00:00", "2026-11-29T04:48:16-08:00",
                         "2026-02-30T00:00:00"};
    for (size_t i = 0; i < 4; i++) {
        json_t *raw = base_order();
        json_object_set_new(raw, "date_paid_gmt", json_string(bad[i]));
        json_t *n = normalize_ok(raw);
        CU_ASSERT_PTR_NOT_NULL(problem_for(n, "date_paid_gmt"));
        CU_ASSERT_EQUAL(problem_count(n), 1);
        CU_ASSERT_TRUE(json_is_null(json_object_get(n, "paid")));
        json_decref(n);
        json_decref(raw);
    }
}

/* ---- tolerated extras, problems ---- */

static void test_extra_keys_and_meta_tolerated(void)
{
    json_t *raw = base_order();
    json_t *b = json_object_get(raw, "billing");
    json_object_set_new(b, "departamento", json_string("Lima"));
    json_object_set_new(b, "vat_number", json_integer(12345));
    json_object_set_new(b, "extra_obj", json_pack("{s:[i,n]}", "x", 1));
    json_t *meta = json_pack("[{s:i,s:s,s:s},{s:i,s:s,s:i},{s:i,s:s,s:f},{s:i,s:s,s:b},"
                             "{s:i,s:s,s:n},{s:i,s:s,s:{s:[i,{s:n}]}},{s:i,s:s,s:[[i],s]}]",
                             "id", 1, "key", "a", "value", "text", "id", 2, "key", "b", "value", 42,
                             "id", 3, "key", "c", "value", 0.5, "id", 4, "key", "d", "value", 1,
                             "id", 5, "key", "e", "value", "id", 6, "key", "f", "value", "o", 1,
                             "p", "id", 7, "key", "g", "value", 3, "z");
    CU_ASSERT_PTR_NOT_NULL_FATAL(meta);
    json_object_set(raw, "meta_data", meta);
    json_object_set_new(line0(raw), "meta_data", meta);
    json_object_set_new(line0(raw), "image", json_pack("{s:s,s:s}", "id", "", "src", ""));
    json_object_set_new(raw, "fee_lines",
                        json_pack("[{s:s,s:s,s:s,s:s}]", "name", "Wrap", "amount", "", "total",
                                  "2.50", "total_tax", "0.00"));
    json_object_set_new(raw, "shipping_lines",
                        json_pack("[{s:s,s:s,s:s,s:s,s:s,s:[{s:i,s:s,s:s}]}]", "method_id",
                                  "flat_rate", "method_title", "Flat", "instance_id", "", "total",
                                  "5.00", "total_tax", "0.36", "taxes", "id", 1, "total", "0.36",
                                  "subtotal", ""));
    json_object_set_new(
        raw, "coupon_lines",
        json_pack("[{s:s,s:s,s:s}]", "code", "SAVE", "discount", "1.00", "discount_tax", "0"));
    json_object_set_new(raw, "some_plugin_key", json_pack("[{s:[]}]", "deep"));
    json_t *n = normalize_ok(raw);
    if (problem_count(n) != 0) {
        dump_problems(n);
    }
    CU_ASSERT_EQUAL(problem_count(n), 0);
    CU_ASSERT_EQUAL(int_at(json_object_get(n, "totals"), "fees"), 25000);
    CU_ASSERT_EQUAL(int_at(json_array_get(json_object_get(n, "shipping_lines"), 0), "tax"), 3600);
    json_decref(n);
    json_decref(raw);
}

static void test_problem_messages(void)
{
    json_t *raw = base_order();
    json_object_set_new(raw, "total", json_string("12\n34\x1b[31m"));
    json_object_set_new(raw, "cart_tax",
                        json_string("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                    "\xc3\xa9\xc3\xa9\xc3\xa9"
                                    "abcdefghijklmnopqrstuvwxyz"));
    json_t *n = normalize_ok(raw);
    const char *m = problem_for(n, "total");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_TRUE(strstr(m, "\"12?34?[31m\"") != NULL); /* control characters masked */
    CU_ASSERT_TRUE(strchr(m, '\n') == NULL && strchr(m, '\x1b') == NULL);
    m = problem_for(n, "cart_tax");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    /* quoted at most 32 characters, never splitting one, then "..." */
    CU_ASSERT_TRUE(strstr(m, "abcdefghijklmnopqrstuv...\"") != NULL);
    CU_ASSERT_TRUE(strstr(m, "vw") == NULL);
    json_decref(n);
    json_decref(raw);
}

static void test_problems_with_paths(void)
{
    json_t *raw = base_order();
    json_object_del(raw, "total");
    json_object_del(raw, "status");
    json_object_set_new(raw, "discount_tax", json_null());
    json_object_set_new(raw, "shipping_total", json_real(12.5));
    json_object_set_new(raw, "cart_tax", json_string("abc"));
    json_object_set_new(raw, "date_created_gmt", json_string("yesterday"));
    json_object_set_new(raw, "customer_id", json_string("7"));
    json_object_set_new(raw, "shipping_lines", json_string("x"));
    json_object_set_new(raw, "fee_lines", json_pack("[{s:s,s:s}]", "name", "Fee", "total", "1.00"));
    json_object_set_new(
        raw, "coupon_lines",
        json_pack("[{s:i,s:s,s:s}]", "code", 5, "discount", "1", "discount_tax", "0"));
    json_t *b = json_object_get(raw, "billing");
    json_object_set_new(b, "phone", json_integer(123));
    json_object_set_new(b, "city", json_array());
    json_t *items = json_object_get(raw, "line_items");
    json_t *second = json_deep_copy(line0(raw));
    json_object_set_new(line0(raw), "quantity", json_string("2"));
    json_object_set_new(second, "total", json_null());
    json_object_set_new(second, "subtotal", json_string(""));
    json_object_set_new(second, "sku", json_string("SECOND"));
    json_array_append_new(items, second);
    json_array_append_new(items, json_string("junk"));

    json_t *n = normalize_ok(raw);
    const char *fields[] = {"total",
                            "status",
                            "discount_tax",
                            "shipping_total",
                            "cart_tax",
                            "date_created_gmt",
                            "customer_id",
                            "shipping_lines",
                            "fee_lines[0].total_tax",
                            "coupon_lines[0].code",
                            "billing.phone",
                            "billing.city",
                            "line_items[0].quantity",
                            "line_items[1].total",
                            "line_items[1].subtotal",
                            "line_items[2]"};
    size_t nf = sizeof fields / sizeof fields[0];
    for (size_t i = 0; i < nf; i++) {
        const char *m = problem_for(n, fields[i]);
        if (m == NULL) {
            fprintf(stderr, "no problem for %s\n", fields[i]);
        }
        CU_ASSERT_PTR_NOT_NULL(m);
        CU_ASSERT_TRUE(m != NULL && m[0] != '\0');
    }
    if (problem_count(n) != nf) {
        dump_problems(n);
    }
    CU_ASSERT_EQUAL(problem_count(n), nf);
    /* the order still normalizes: id, readable fields and both real lines */
    CU_ASSERT_STRING_EQUAL(str_at(n, "id"), "18");
    CU_ASSERT_STRING_EQUAL(str_at(n, "status"), "");
    CU_ASSERT_STRING_EQUAL(str_at(json_object_get(n, "billing"), "name"), "Ann Lee");
    CU_ASSERT_STRING_EQUAL(str_at(json_object_get(n, "billing"), "city"), "");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(n, "lines")), 2);
    CU_ASSERT_EQUAL(int_at(line_at(n, 1), "seq"), 2);
    CU_ASSERT_STRING_EQUAL(str_at(line_at(n, 1), "item_no"), "SECOND");
    CU_ASSERT_EQUAL(int_at(line_at(n, 1), "total"), 0);
    CU_ASSERT_EQUAL(int_at(line_at(n, 1), "qty"), 10000);
    CU_ASSERT_EQUAL(int_at(json_object_get(n, "totals"), "total"), 0);
    CU_ASSERT_TRUE(json_is_null(json_object_get(n, "created")));
    CU_ASSERT_EQUAL(json_array_size(json_object_get(n, "shipping_lines")), 0);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(n, "coupons")), 1);
    char h[65];
    CU_ASSERT_EQUAL(order_hash(n, h), 0);
    json_decref(n);
    json_decref(raw);
}

static void test_required_containers(void)
{
    json_t *raw = base_order();
    json_object_del(raw, "billing");
    json_object_set_new(raw, "line_items", json_null());
    json_t *n = normalize_ok(raw);
    CU_ASSERT_PTR_NOT_NULL(problem_for(n, "billing"));
    CU_ASSERT_PTR_NOT_NULL(problem_for(n, "line_items"));
    CU_ASSERT_EQUAL(problem_count(n), 2);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(n, "lines")), 0);
    CU_ASSERT_STRING_EQUAL(str_at(n, "email"), "");
    json_decref(n);
    json_decref(raw);
}

static void test_nul_and_bad_utf8(void)
{
    json_t *raw = base_order();
    json_t *b = json_object_get(raw, "billing");
    json_object_set_new(b, "first_name", json_stringn("An\0n", 4));
    json_object_set_new(b, "last_name", json_stringn_nocheck("\xff\xfe", 2));
    json_object_set_new(line0(raw), "name", json_stringn_nocheck("M\xc3", 2));
    json_object_set_new(raw, "transaction_id", json_stringn_nocheck("\xed\xa0\x80", 3));
    json_object_set_new(raw, "total", json_stringn_nocheck("1\xff", 2));
    json_t *n = normalize_ok(raw);
    CU_ASSERT_PTR_NOT_NULL(problem_for(n, "billing.first_name"));
    CU_ASSERT_PTR_NOT_NULL(problem_for(n, "billing.last_name"));
    CU_ASSERT_PTR_NOT_NULL(problem_for(n, "line_items[0].name"));
    CU_ASSERT_PTR_NOT_NULL(problem_for(n, "transaction_id"));
    CU_ASSERT_PTR_NOT_NULL(problem_for(n, "total"));
    CU_ASSERT_EQUAL(problem_count(n), 5);
    CU_ASSERT_STRING_EQUAL(str_at(json_object_get(n, "billing"), "first_name"), "");
    /* every string in the output is valid UTF-8: it dumps and reloads */
    char *text = json_dumps(n, 0);
    CU_ASSERT_PTR_NOT_NULL(text);
    json_t *again = text != NULL ? json_loads(text, 0, NULL) : NULL;
    CU_ASSERT_PTR_NOT_NULL(again);
    json_decref(again);
    free(text);
    json_decref(n);
    json_decref(raw);
}

/* ---- ids ---- */

static void expect_refused(json_t *raw, const char *what)
{
    json_t *out = json_object(); /* must be replaced by NULL */
    json_t *keep = out;
    char msg[256] = "";
    int rc = order_normalize(raw, &out, msg, sizeof msg);
    if (rc != -1) {
        fprintf(stderr, "not refused: %s\n", what);
    }
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_TRUE(msg[0] != '\0');
    json_decref(keep);
    json_decref(out);
}

static void expect_id(json_t *id, const char *want)
{
    json_t *raw = base_order();
    json_object_set_new(raw, "id", id);
    json_t *n = normalize_ok(raw);
    CU_ASSERT_STRING_EQUAL(str_at(n, "id"), want);
    json_decref(n);
    json_decref(raw);
}

static void test_ids(void)
{
    json_t *raw = base_order();
    json_object_del(raw, "id");
    expect_refused(raw, "no id");
    json_t *bad[] = {json_string("abc!"),
                     json_integer(-1),
                     json_integer(0),
                     json_integer(INT64_C(9007199254740993)),
                     json_string(""),
                     json_string("12345678901234567890123456789012345678901"),
                     json_string(" 12"),
                     json_string("\xc3\xa9"),
                     json_stringn("12\0"
                                  "3",
                                  4),
                     json_real(18.0),
                     json_true(),
                     json_null(),
                     json_pack("[i]", 18),
                     json_pack("{s:i}", "id", 18)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_object_set_new(raw, "id", bad[i]);
        expect_refused(raw, "bad id");
    }
    json_decref(raw);

    json_t *arr = json_pack("[{s:i}]", "id", 18);
    expect_refused(arr, "an array");
    json_decref(arr);
    json_t *str = json_string("order");
    expect_refused(str, "a string");
    json_decref(str);
    expect_refused(NULL, "NULL");

    char msg[64];
    json_t *tiny = base_order();
    json_object_set_new(tiny, "id", json_string("abc!"));
    CU_ASSERT_EQUAL(order_normalize(tiny, NULL, msg, sizeof msg), -1);
    json_t *out = NULL;
    CU_ASSERT_EQUAL(order_normalize(tiny, &out, NULL, 0), -1); /* no message buffer */
    CU_ASSERT_EQUAL(order_normalize(tiny, &out, msg, 1), -1);
    CU_ASSERT_STRING_EQUAL(msg, "");
    json_decref(tiny);

    expect_id(json_integer(INT64_C(9007199254740992)), "9007199254740992");
    expect_id(json_string("ord-12_A.b"), "ord-12_A.b");
    expect_id(json_string("1234567890123456789012345678901234567890"),
              "1234567890123456789012345678901234567890");
}

/* ---- the hash ---- */

static char *hash_of_text(const char *text)
{
    static char h[4][65];
    static unsigned next;
    char *out = h[next++ % 4];
    json_t *raw = json_loads(text, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(raw);
    json_t *n = normalize_ok(raw);
    CU_ASSERT_EQUAL(order_hash(n, out), 0);
    json_decref(n);
    json_decref(raw);
    return out;
}

/* A copy of v with every object's keys inserted in reverse order. */
static json_t *reversed(json_t *v)
{
    if (json_is_object(v)) {
        size_t size = json_object_size(v);
        const char **keys = calloc(size + 1, sizeof *keys);
        json_t *r = json_object();
        const char *k;
        json_t *x;
        size_t i = 0;
        json_object_foreach(v, k, x)
        {
            keys[i++] = k;
        }
        while (i > 0) {
            i--;
            json_object_set_new(r, keys[i], reversed(json_object_get(v, keys[i])));
        }
        free(keys);
        return r;
    }
    if (json_is_array(v)) {
        json_t *r = json_array();
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_array_append_new(r, reversed(json_array_get(v, i)));
        }
        return r;
    }
    return json_incref(v);
}

static void test_hash(void)
{
    char *text = cpbtest_slurp(cpbtest_src("tests/fixtures/order/full.json"), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    json_t *raw = json_loads(text, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(raw);
    char base[65];
    snprintf(base, sizeof base, "%s", hash_of_text(text));

    /* key order and whitespace of the input do not matter */
    json_t *rev = reversed(raw);
    char *t2 = json_dumps(rev, JSON_INDENT(7) | JSON_PRESERVE_ORDER);
    char *t3 = json_dumps(raw, JSON_COMPACT);
    CU_ASSERT_TRUE(strcmp(t2, t3) != 0);
    CU_ASSERT_STRING_EQUAL(hash_of_text(t2), base);
    CU_ASSERT_STRING_EQUAL(hash_of_text(t3), base);
    free(t2);
    free(t3);
    json_decref(rev);

    /* status, modification and payment times are excluded */
    json_t *c = json_deep_copy(raw);
    json_object_set_new(c, "status", json_string("completed"));
    json_object_set_new(c, "date_modified_gmt", json_string("2026-12-01T00:00:00"));
    json_object_set_new(c, "date_paid_gmt", json_null());
    json_object_set_new(c, "date_modified", json_string("2026-12-01T00:00:00"));
    char *t4 = json_dumps(c, 0);
    CU_ASSERT_STRING_EQUAL(hash_of_text(t4), base);
    free(t4);
    json_decref(c);

    /* a line quantity change is an edit */
    c = json_deep_copy(raw);
    json_object_set_new(line0(c), "quantity", json_integer(4));
    char *t5 = json_dumps(c, 0);
    CU_ASSERT_TRUE(strcmp(hash_of_text(t5), base) != 0);
    free(t5);
    json_decref(c);

    /* so is a billing change */
    c = json_deep_copy(raw);
    json_object_set_new(json_object_get(c, "billing"), "city", json_string("Hamburg"));
    char *t6 = json_dumps(c, 0);
    CU_ASSERT_TRUE(strcmp(hash_of_text(t6), base) != 0);
    free(t6);
    json_decref(c);

    /* the hash is SHA-256 of the canonical dump without the volatile keys */
    json_t *n = normalize_ok(raw);
    json_t *copy = json_copy(n);
    json_object_del(copy, "status");
    json_object_del(copy, "modified");
    json_object_del(copy, "paid");
    json_object_del(copy, "problems");
    char *canon = json_dumps(copy, JSON_SORT_KEYS | JSON_COMPACT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(canon);
    const char *path = cpbtest_path("canon.json");
    char out[512];
    snprintf(out, sizeof out, "%s", cpbtest_path("canon.sha"));
    CU_ASSERT_EQUAL(cpbtest_write(path, canon), 0);
    CU_ASSERT_EQUAL(cpbtest_sh("sha256sum < '%s' | cut -c1-64 | tr -d '\\n' > '%s'", path, out), 0);
    char *want = cpbtest_slurp(out, NULL);
    CU_ASSERT_PTR_NOT_NULL(want);
    if (want != NULL) {
        CU_ASSERT_STRING_EQUAL(want, base);
    }
    free(want);
    free(canon);
    json_decref(copy);
    json_decref(n);

    char h[65] = "x";
    json_t *arr = json_array();
    CU_ASSERT_EQUAL(order_hash(arr, h), -1);
    CU_ASSERT_EQUAL(order_hash(NULL, h), -1);
    json_decref(arr);
    json_decref(raw);
    free(text);
}

/* ---- hostile input ---- */

static void test_line_cap(void)
{
    json_t *raw = base_order();
    json_t *items = json_array();
    for (size_t i = 0; i < 1001; i++) {
        json_t *l = json_deep_copy(line0(raw));
        json_object_set_new(l, "id", json_integer((json_int_t)i + 1));
        json_array_append_new(items, l);
    }
    json_object_set_new(raw, "line_items", items);
    json_t *n = normalize_ok(raw);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(n, "lines")), 1000);
    CU_ASSERT_PTR_NOT_NULL(problem_for(n, "line_items"));
    CU_ASSERT_EQUAL(problem_count(n), 1);
    CU_ASSERT_EQUAL(int_at(line_at(n, 999), "line_id"), 1000);
    CU_ASSERT_EQUAL(int_at(json_object_get(n, "totals"), "lines_total"), 1000 * 100000);
    json_decref(n);

    /* 1000 bad lines: the problem list is capped too, with a last word */
    for (size_t i = 0; i < 1001; i++) {
        json_object_set_new(json_array_get(items, i), "total", json_string("x"));
    }
    n = normalize_ok(raw);
    json_t *problems = json_object_get(n, "problems");
    CU_ASSERT_EQUAL(json_array_size(problems), 101);
    json_t *last = json_array_get(problems, 100);
    CU_ASSERT_STRING_EQUAL(str_at(last, "field"), "problems");
    CU_ASSERT_TRUE(strstr(str_at(last, "message"), "901 more") != NULL);
    json_decref(n);

    /* the same when the problems are whole elements ("line_items[7]") */
    for (size_t i = 0; i < 1001; i++) {
        json_array_set_new(items, i, json_integer((json_int_t)i));
    }
    n = normalize_ok(raw);
    problems = json_object_get(n, "problems");
    CU_ASSERT_EQUAL(json_array_size(problems), 101);
    CU_ASSERT_STRING_EQUAL(str_at(json_array_get(problems, 1), "field"), "line_items[0]");
    CU_ASSERT_STRING_EQUAL(str_at(json_array_get(problems, 100), "field"), "problems");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(n, "lines")), 0);
    json_decref(n);
    json_decref(raw);
}

static void test_nasty(void)
{
    json_t *raw = base_order();
    /* billing: arrays nested 1500 deep */
    json_t *deep = json_array();
    for (int i = 0; i < 1500; i++) {
        json_t *outer = json_array();
        json_array_append_new(outer, deep);
        deep = outer;
    }
    json_object_set_new(raw, "billing", deep);
    json_object_set_new(raw, "shipping", json_integer(5));
    json_object_set_new(raw, "fee_lines", json_pack("[[[]], {s:{}}]", "total"));
    json_object_set_new(raw, "coupon_lines", json_object());
    json_object_set_new(raw, "number", json_pack("{s:s}", "a", "b"));
    json_object_set_new(raw, "customer_id", json_integer(-3));
    json_object_set_new(line0(raw), "id", json_real(1.5));
    json_object_set_new(line0(raw), "sku", json_pack("[s]", "MUG"));
    json_t *n = normalize_ok(raw);
    const char *fields[] = {
        "billing",      "shipping", "fee_lines[0]", "fee_lines[1].total", "fee_lines[1].total_tax",
        "coupon_lines", "number",   "customer_id",  "line_items[0].id",   "line_items[0].sku"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (problem_for(n, fields[i]) == NULL) {
            fprintf(stderr, "no problem for %s\n", fields[i]);
        }
        CU_ASSERT_PTR_NOT_NULL(problem_for(n, fields[i]));
    }
    CU_ASSERT_EQUAL(problem_count(n), sizeof fields / sizeof fields[0]);
    CU_ASSERT_STRING_EQUAL(str_at(n, "number"), "18");
    CU_ASSERT_TRUE(json_is_null(json_object_get(line_at(n, 0), "item_no")));
    CU_ASSERT_EQUAL(json_array_size(json_object_get(n, "fee_lines")), 1);
    char h[65];
    CU_ASSERT_EQUAL(order_hash(n, h), 0);
    json_decref(n);
    json_decref(raw);

    /* a nasty text: deep nesting is refused by the parser or survives it */
    size_t depth = 100000;
    char *text = malloc(depth * 2 + 64);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    size_t o = (size_t)snprintf(text, 64, "{\"id\":1,\"billing\":");
    memset(text + o, '[', depth);
    memset(text + o + depth, ']', depth);
    text[o + 2 * depth] = '}';
    text[o + 2 * depth + 1] = '\0';
    json_t *parsed = json_loads(text, 0, NULL);
    CU_ASSERT_PTR_NULL(parsed); /* jansson's depth limit */
    json_decref(parsed);
    free(text);
}

static void test_strings_are_cut_everywhere(void)
{
    /* every output string respects its length, whatever the input size */
    size_t big = 100000;
    char *s = malloc(big + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    for (size_t i = 0; i < big; i += 2) {
        s[i] = '\xc3';
        s[i + 1] = '\xa9';
    }
    s[big] = '\0';
    json_t *raw = base_order();
    const char *top[] = {
        "status",         "currency",      "payment_method", "payment_method_title",
        "transaction_id", "customer_note", "number"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++) {
        json_object_set_new(raw, top[i], json_string(s));
    }
    const char *addr[] = {"first_name", "last_name", "company", "address_1", "address_2", "city",
                          "state",      "postcode",  "country", "email",     "phone"};
    for (size_t i = 0; i < sizeof addr / sizeof addr[0]; i++) {
        json_object_set_new(json_object_get(raw, "billing"), addr[i], json_string(s));
    }
    json_object_set_new(line0(raw), "name", json_string(s));
    json_object_set_new(line0(raw), "sku", json_string(s));
    json_t *n = normalize_ok(raw);
    CU_ASSERT_EQUAL(problem_count(n), 0);
    CU_ASSERT_EQUAL(utf8_chars(str_at(n, "status")), ORDER_LEN_CODE);
    CU_ASSERT_EQUAL(utf8_chars(str_at(n, "customer_note")), ORDER_LEN_NOTE);
    CU_ASSERT_EQUAL(utf8_chars(str_at(n, "number")), ORDER_LEN_EXT_ID);
    CU_ASSERT_EQUAL(utf8_chars(str_at(n, "payment_title")), ORDER_LEN_NAME);
    json_t *b = json_object_get(n, "billing");
    CU_ASSERT_EQUAL(utf8_chars(str_at(b, "name")), ORDER_LEN_NAME);
    CU_ASSERT_EQUAL(utf8_chars(str_at(b, "first_name")), ORDER_LEN_FST_NAM);
    CU_ASSERT_EQUAL(utf8_chars(str_at(b, "last_name")), ORDER_LEN_LST_NAM);
    CU_ASSERT_EQUAL(utf8_chars(str_at(b, "city")), ORDER_LEN_CITY);
    CU_ASSERT_EQUAL(utf8_chars(str_at(b, "state")), ORDER_LEN_STATE);
    CU_ASSERT_EQUAL(utf8_chars(str_at(b, "postcode")), ORDER_LEN_ZIP);
    CU_ASSERT_EQUAL(utf8_chars(str_at(b, "country")), ORDER_LEN_CNTRY);
    CU_ASSERT_EQUAL(utf8_chars(str_at(b, "email")), ORDER_LEN_EMAIL);
    CU_ASSERT_EQUAL(utf8_chars(str_at(b, "phone")), ORDER_LEN_PHONE);
    CU_ASSERT_EQUAL(utf8_chars(str_at(b, "address_2")), ORDER_LEN_ADRS);
    CU_ASSERT_EQUAL(utf8_chars(str_at(n, "email")), ORDER_LEN_EMAIL);
    CU_ASSERT_EQUAL(utf8_chars(str_at(line_at(n, 0), "name")), ORDER_LEN_DESCR);
    CU_ASSERT_EQUAL(utf8_chars(str_at(line_at(n, 0), "sku")), ORDER_LEN_SKU);
    CU_ASSERT_TRUE(json_is_null(json_object_get(line_at(n, 0), "item_no")));
    json_decref(n);
    json_decref(raw);
    free(s);
}

static const struct cpbtest_case order_cases[] = {
    {"full order", test_full_order},
    {"base order defaults", test_base_order_defaults},
    {"money", test_money},
    {"quantity and unit price", test_quantity_and_unit_price},
    {"float price ignored", test_float_price_ignored},
    {"UTF-8 cut at the limit", test_utf8_cut_at_limit},
    {"names and SKUs", test_names_and_skus},
    {"dates", test_dates},
    {"extra keys and meta tolerated", test_extra_keys_and_meta_tolerated},
    {"problem messages", test_problem_messages},
    {"problems with field paths", test_problems_with_paths},
    {"required containers", test_required_containers},
    {"NUL and bad UTF-8", test_nul_and_bad_utf8},
    {"ids", test_ids},
    {"hash", test_hash},
    {"line cap and problem cap", test_line_cap},
    {"nasty shapes", test_nasty},
    {"strings cut everywhere", test_strings_are_cut_everywhere},
    {NULL, NULL}};

static const struct cpbtest_suite order_suite = {"order", NULL, NULL, order_cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *suites[] = {&order_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
