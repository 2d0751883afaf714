/*
 * order.h — the order normalizer: turns an order in the WooCommerce REST
 * shape (untrusted bytes from a store or a file) into the engine's
 * normalized view, exact and bounded:
 *  - money strings parsed exactly into int64 ten-thousandths (never double);
 *    quantities (JSON integer or real) likewise;
 *  - strings trimmed and cut to Counterpoint's column lengths by one rule:
 *    at most N characters (code points), never splitting a character;
 *  - SKUs mapped to an item number candidate: trimmed, upper-cased (ASCII),
 *    as SQL Server's case-insensitive collations compare;
 *  - unknown keys ignored; extra billing keys and any-typed meta tolerated.
 * A field that cannot be read (a money string that is not a decimal, a
 * negative quantity, a missing line total) does not stop normalization: it
 * is listed in "problems" and the engine stages the order INVALID with
 * reason payload.malformed, so no order is lost.
 *
 * The normalized object (docs/STAGE_AUTHORING.md documents it for stage
 * authors):
 * {
 *   "id": "1234", "number": "1234", "status": "processing",
 *   "currency": "USD", "created": "2026-11-28T10:00:00" | null,
 *   "modified": "..." | null, "paid": "..." | null,
 *   "customer_id": 0, "guest": true,
 *   "email": "...", "payment_method": "...", "payment_title": "...",
 *   "transaction_id": "...", "customer_note": "...",
 *   "billing":  { "name", "first_name", "last_name", "company", "address_1",
 *                 "address_2", "city", "state", "postcode", "country",
 *                 "email", "phone" },
 *   "shipping": { the same keys but "email" },
 *   "totals": { "total", "discount", "discount_tax", "shipping",
 *               "shipping_tax", "tax", "cart_tax", "fees", "fee_tax",
 *               "lines_subtotal", "lines_total", "lines_tax" },
 *   "lines": [ { "seq": 1, "line_id": 11, "product_id": 5, "variation_id": 0,
 *                "sku": "ab-12 ", "item_no": "AB-12" | null, "name": "...",
 *                "qty": 20000, "subtotal": ..., "total": ..., "tax": ...,
 *                "unit_price": ... } ],
 *   "shipping_lines": [ { "method": "...", "title": "...", "total": ...,
 *                         "tax": ... } ],
 *   "fee_lines": [ { "name": "...", "total": ..., "tax": ... } ],
 *   "coupons": [ { "code": "...", "discount": ..., "discount_tax": ... } ],
 *   "refunds": [ { "id": 29, "reason": "...", "total": -50000 } ],
 *   "problems": [ { "field": "line_items[1].total", "message": "..." } ]
 * }
 * Money and quantities are JSON integers in ten-thousandths; one that
 * cannot be read is 0 and listed in "problems". "method" is the shipping
 * line's method_id, "title" its method_title. "sku" is kept as sent (cut to
 * ORDER_LEN_SKU), "item_no" is derived from it. Field paths in "problems"
 * name the input ("line_items[0].total", 0-based); "seq" numbers the lines
 * that were objects, from 1. core/lib/order.c lists the finer rules.
 */
#ifndef CPB_ORDER_H
#define CPB_ORDER_H

#include <jansson.h>
#include <stddef.h>

/* Column lengths the normalizer cuts to (Counterpoint's, see
 * ../shared/reference/counterpoint-schema.md). */
#define ORDER_LEN_EXT_ID 40
#define ORDER_LEN_NAME 40
#define ORDER_LEN_FST_NAM 15
#define ORDER_LEN_LST_NAM 25
#define ORDER_LEN_ADRS 40
#define ORDER_LEN_CITY 20
#define ORDER_LEN_STATE 10
#define ORDER_LEN_ZIP 15
#define ORDER_LEN_CNTRY 20
#define ORDER_LEN_PHONE 25
#define ORDER_LEN_EMAIL 50
#define ORDER_LEN_ITEM_NO 20
#define ORDER_LEN_SKU 100
#define ORDER_LEN_DESCR 250
#define ORDER_LEN_NOTE 1000
#define ORDER_LEN_CODE 40

/*
 * Normalize `raw` (borrowed). On success returns 0 and *out, a new
 * reference to the normalized object (problems listed inside). Returns -1
 * when the order cannot even be keyed — not an object, or no usable "id"
 * (a positive integer, or a non-empty string of at most 40 bytes) — with a
 * one-line reason in msg.
 */
int order_normalize(json_t *raw, json_t **out, char *msg, size_t msglen);

/*
 * The payload hash of a normalized order (borrowed): SHA-256 (hex, lower case) over
 * its canonical JSON (sorted keys, compact) without "status", "modified",
 * "paid" and "problems", so a status change made by cpbridge's own
 * write-back does not look like an edited order. out (caller's buffer)
 * receives 64 hex digits and a NUL. Returns 0, or -1 (not an object, out
 * of memory).
 */
int order_hash(json_t *normalized, char out[65]);

/*
 * SHA-256 (hex, lower case) of `value`'s canonical JSON (sorted keys,
 * compact; borrowed) into out (the caller's 65 bytes). Returns 0, or -1
 * (NULL value, out of memory).
 */
int json_hash(json_t *value, char out[65]);

#endif
