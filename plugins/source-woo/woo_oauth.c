/*
 * woo_oauth.c — OAuth 1.0a one-legged signing for WooCommerce (see
 * woo_oauth.h): RFC 3986 encoding, the sorted parameter string, the base
 * string, and base64(HMAC) through OpenSSL libcrypto.
 */
#include "woo_oauth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

const char *woo_sig_name(enum woo_sig m)
{
    return m == WOO_SIG_HMAC_SHA1 ? "HMAC-SHA1" : "HMAC-SHA256";
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int woo_rfc3986(FILE *f, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (unreserved(*p)) {
            if (fputc(*p, f) == EOF) {
                return -1;
            }
            continue;
        }
        char esc[4] = {'%', hex[*p >> 4], hex[*p & 0x0f], '\0'};
        if (fputs(esc, f) == EOF) {
            return -1;
        }
    }
    return 0;
}

static int by_key(const void *a, const void *b)
{
    const struct woo_param *x = a;
    const struct woo_param *y = b;
    int c = strcmp(x->key, y->key);
    return c != 0 ? c : strcmp(x->value, y->value);
}

/* Close a memory stream and hand over its text (new), or NULL on failure.
 * open_memstream publishes *text only when the stream is closed. */
static char *stream_finish(FILE *f, char **text, int failed)
{
    if (ferror(f)) {
        failed = 1;
    }
    if (fclose(f) != 0) {
        failed = 1;
    }
    char *out = *text;
    *text = NULL;
    if (failed) {
        free(out);
        return NULL;
    }
    return out;
}

char *woo_oauth_base_string(const char *method, const char *base_url,
                            const struct woo_param *params, size_t n)
{
    char *pstr = NULL;
    size_t plen = 0;
    char *out = NULL;
    size_t olen = 0;
    struct woo_param *sorted = NULL;
    FILE *f = NULL;
    int failed = 0;

    if (n > 0) {
        sorted = malloc(n * sizeof *sorted);
        if (sorted == NULL) {
            goto out;
        }
        memcpy(sorted, params, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, by_key);
    }
    /* The parameter string: enc(key)=enc(value) joined by '&'. */
    f = open_memstream(&pstr, &plen);
    if (f == NULL) {
        goto out;
    }
    for (size_t i = 0; i < n && !failed; i++) {
        if ((i > 0 && fputc('&', f) == EOF) || woo_rfc3986(f, sorted[i].key) != 0 ||
            fputc('=', f) == EOF || woo_rfc3986(f, sorted[i].value) != 0) {
            failed = 1;
        }
    }
    pstr = stream_finish(f, &pstr, failed);
    f = NULL;
    if (pstr == NULL) {
        goto out;
    }
    /* METHOD & enc(base_url) & enc(parameter string) */
    f = open_memstream(&out, &olen);
    if (f == NULL) {
        goto out;
    }
    failed = 0;
    for (const char *m = method; *m != '\0' && !failed; m++) {
        char c = *m >= 'a' && *m <= 'z' ? (char)(*m - 'a' + 'A') : *m;
        failed = fputc(c, f) == EOF;
    }
    if (failed || fputc('&', f) == EOF || woo_rfc3986(f, base_url) != 0 || fputc('&', f) == EOF ||
        woo_rfc3986(f, pstr) != 0) {
        failed = 1;
    }
    out = stream_finish(f, &out, failed);
out:
    free(sorted);
    free(pstr);
    return out;
}

int woo_oauth_signature(const char *base, const char *secret, enum woo_sig m, char *out, size_t n)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    char *key = NULL;
    size_t slen = strlen(secret);
    int rc = -1;

    key = malloc(slen + 2);
    if (key == NULL) {
        goto out;
    }
    memcpy(key, secret, slen);
    key[slen] = '&';
    key[slen + 1] = '\0';
    const EVP_MD *md = m == WOO_SIG_HMAC_SHA1 ? EVP_sha1() : EVP_sha256();
    if (slen + 1 > (size_t)2147483647 || strlen(base) > (size_t)2147483647) {
        goto out;
    }
    if (HMAC(md, key, (int)(slen + 1), (const unsigned char *)base, strlen(base), mac, &mac_len) ==
        NULL) {
        goto out;
    }
    /* base64 grows 3 bytes into 4, plus the NUL EVP_EncodeBlock writes. */
    if (n < WOO_SIG_MAX || ((size_t)mac_len + 2) / 3 * 4 + 1 > n) {
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)out, mac, (int)mac_len);
    rc = 0;
out:
    if (key != NULL) {
        OPENSSL_cleanse(key, slen + 1);
    }
    free(key);
    OPENSSL_cleanse(mac, sizeof mac);
    return rc;
}
