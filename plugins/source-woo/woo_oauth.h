/*
 * woo_oauth.h — OAuth 1.0a one-legged request signing exactly as
 * WooCommerce checks it (shared/reference/woocommerce-api.md §8), with the
 * RFC 3986 encoder it needs. HMAC and base64 come from OpenSSL libcrypto.
 * Shared by the source-woo and sync-status stages; exposed so a unit test
 * can check the reference test vector.
 */
#ifndef WOO_OAUTH_H
#define WOO_OAUTH_H

#include <stddef.h>
#include <stdio.h>

/* One query parameter, not encoded. Both strings are borrowed. */
struct woo_param {
    const char *key;
    const char *value;
};

/* The signature methods WooCommerce accepts (values index the option's
 * choices "HMAC-SHA256", "HMAC-SHA1"). */
enum woo_sig { WOO_SIG_HMAC_SHA256 = 0, WOO_SIG_HMAC_SHA1 = 1 };

/* Room for a base64 signature (SHA-256: 44 characters) and its NUL. */
#define WOO_SIG_MAX 64

/* The oauth_signature_method text of `m` (static). */
const char *woo_sig_name(enum woo_sig m);

/*
 * Write the RFC 3986 encoding of `s` (borrowed, NUL-terminated bytes) to
 * `f` (borrowed): only A-Z a-z 0-9 - . _ ~ stay, every other byte becomes
 * %XX with upper-case hex. Returns 0, or -1 when the stream failed.
 */
int woo_rfc3986(FILE *f, const char *s);

/*
 * The signature base string: UPPER(method) & enc(base_url) & enc(params
 * sorted by key then value (strcmp), each enc(key)=enc(value), joined by
 * '&'). `params` (borrowed, n of them) must not hold oauth_signature.
 * Returns a new string (free()), or NULL when out of memory.
 */
char *woo_oauth_base_string(const char *method, const char *base_url,
                            const struct woo_param *params, size_t n);

/*
 * base64(HMAC(consumer_secret + "&", base)) with SHA-256 or SHA-1 into out
 * (n bytes, at least WOO_SIG_MAX). `base` and `secret` are borrowed.
 * Returns 0, or -1 (buffer too small, libcrypto failure).
 */
int woo_oauth_signature(const char *base, const char *secret, enum woo_sig m, char *out, size_t n);

#endif
