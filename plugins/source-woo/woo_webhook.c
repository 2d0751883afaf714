/*
 * woo_webhook.c — the webhook signature and ping (see woo_webhook.h).
 */
#include "woo_webhook.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

bool woo_webhook_signed(const char *secret, const char *body, size_t len, const char *signature)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    unsigned char want[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    if (secret == NULL || body == NULL || signature == NULL) {
        return false;
    }
    while (*signature == ' ' || *signature == '\t') {
        signature++;
    }
    size_t n = strlen(signature);
    while (n > 0 && (signature[n - 1] == ' ' || signature[n - 1] == '\t')) {
        n--;
    }
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, len, mac,
             &mac_len) == NULL) {
        return false;
    }
    int w = EVP_EncodeBlock(want, mac, (int)mac_len);
    /* The length is no secret (44 for SHA-256); the bytes are compared in
     * constant time. */
    return w > 0 && (size_t)w == n && CRYPTO_memcmp(want, signature, n) == 0;
}

bool woo_webhook_is_ping(const char *body, size_t len)
{
    static const char key[] = "webhook_id=";
    size_t k = sizeof key - 1;
    if (body == NULL || len <= k || len > k + 20 || memcmp(body, key, k) != 0) {
        return false;
    }
    for (size_t i = k; i < len; i++) {
        if (body[i] < '0' || body[i] > '9') {
            return false;
        }
    }
    return true;
}
