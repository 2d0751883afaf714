/*
 * woo_webhook.h — WooCommerce webhook deliveries (woocommerce-api.md §10):
 * the signature, X-WC-Webhook-Signature = base64(HMAC-SHA256(raw body,
 * secret)), checked in constant time, and the unsigned activation ping
 * (a form body "webhook_id=N").
 */
#ifndef WOO_WEBHOOK_H
#define WOO_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

/* True when `signature` (the header's value, borrowed; surrounding blanks
 * are ignored) is the signature of body[0..len) under `secret`. Compares
 * in constant time; false for NULL or malformed input. */
bool woo_webhook_signed(const char *secret, const char *body, size_t len, const char *signature);

/* True when body[0..len) is the store's activation ping, "webhook_id=N". */
bool woo_webhook_is_ping(const char *body, size_t len);

#endif
