/*
 * text.c — exact parsing and formatting of integers, decimals (int64
 * ten-thousandths), durations and UTC times; UTF-8 validation and safe
 * cutting; did-you-mean suggestions (see text.h). Integer arithmetic only,
 * with every overflow checked; no allocation, no global state.
 */
#include "lib/text.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* |decimal| must stay below 9e14, i.e. 9e18 ten-thousandths. */
#define DECIMAL_LIMIT_UNITS 9000000000000000000ULL
#define DECIMAL_LIMIT_WHOLE 900000000000000ULL

#define MS_PER_SECOND 1000LL
#define MS_PER_MINUTE (60LL * MS_PER_SECOND)
#define MS_PER_HOUR   (60LL * MS_PER_MINUTE)
#define MS_PER_DAY    (24LL * MS_PER_HOUR)

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int text_parse_int(const char *s, int64_t *out)
{
    const char *p = s;
    char *end = NULL;
    if (s == NULL || out == NULL) {
        return -1;
    }
    if (*p == '+' || *p == '-') {
        p++;
    }
    /* strtoll would skip leading spaces and accept "0x"; refuse both. */
    if (!is_digit(*p)) {
        return -1;
    }
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

int text_parse_decimal(const char *s, int64_t *out)
{
    const char *p = s;
    int negative = 0;
    int digits = 0;
    uint64_t whole = 0;
    uint64_t frac = 0;
    int frac_digits = 0;
    int round_up = 0;
    if (s == NULL || out == NULL) {
        return -1;
    }
    if (*p == '+' || *p == '-') {
        negative = *p == '-';
        p++;
    }
    while (is_digit(*p)) {
        whole = whole * 10 + (uint64_t)(*p - '0');
        if (whole >= DECIMAL_LIMIT_WHOLE) {
            return -1;
        }
        digits++;
        p++;
    }
    if (*p == '.') {
        p++;
        while (is_digit(*p)) {
            if (frac_digits < 4) {
                frac = frac * 10 + (uint64_t)(*p - '0');
            } else if (frac_digits == 4) {
                /* Half away from zero: only the fifth decimal decides. */
                round_up = *p >= '5';
            }
            frac_digits++;
            digits++;
            p++;
        }
    }
    if (*p != '\0' || digits == 0) {
        return -1;
    }
    for (int i = frac_digits; i < 4; i++) {
        frac *= 10;
    }
    uint64_t units = whole * TEXT_SCALE + frac + (uint64_t)round_up;
    if (units >= DECIMAL_LIMIT_UNITS) {
        return -1;
    }
    *out = negative ? -(int64_t)units : (int64_t)units;
    return 0;
}

int text_format_decimal(int64_t value, int decimals, char *out, size_t n)
{
    static const uint64_t pow10[] = {1, 10, 100, 1000, 10000};
    if (out == NULL || n == 0) {
        return -1;
    }
    out[0] = '\0';
    if (decimals < 0 || decimals > 4) {
        return -1;
    }
    /* Magnitude without overflowing on INT64_MIN. */
    uint64_t mag = value < 0 ? (uint64_t)(-(value + 1)) + 1 : (uint64_t)value;
    uint64_t div = pow10[4 - decimals];
    uint64_t q = mag / div + (mag % div >= (div + 1) / 2 && div > 1 ? 1 : 0);
    uint64_t whole = q / pow10[decimals];
    uint64_t frac = q % pow10[decimals];
    const char *sign = (value < 0 && q != 0) ? "-" : "";
    int len;
    if (decimals == 0) {
        len = snprintf(out, n, "%s%" PRIu64, sign, whole);
    } else {
        len = snprintf(out, n, "%s%" PRIu64 ".%0*" PRIu64, sign, whole, decimals, frac);
    }
    if (len < 0 || (size_t)len >= n) {
        out[n - 1] = '\0';
        return -1;
    }
    return len;
}

int text_parse_duration(const char *s, int64_t *ms)
{
    const char *p = s;
    int64_t amount = 0;
    int64_t unit = 0;
    if (s == NULL || ms == NULL || !is_digit(*p)) {
        return -1;
    }
    while (is_digit(*p)) {
        int d = *p - '0';
        if (amount > (INT64_MAX - d) / 10) {
            return -1;
        }
        amount = amount * 10 + d;
        p++;
    }
    if (strcmp(p, "ms") == 0) {
        unit = 1;
    } else if (strcmp(p, "s") == 0) {
        unit = MS_PER_SECOND;
    } else if (strcmp(p, "m") == 0) {
        unit = MS_PER_MINUTE;
    } else if (strcmp(p, "h") == 0) {
        unit = MS_PER_HOUR;
    } else if (strcmp(p, "d") == 0) {
        unit = MS_PER_DAY;
    } else {
        return -1;
    }
    if (amount > INT64_MAX / unit) {
        return -1;
    }
    *ms = amount * unit;
    return 0;
}

int text_format_duration(int64_t ms, char *out, size_t n)
{
    static const struct {
        int64_t size;
        const char *suffix;
    } units[] = {{MS_PER_DAY, "d"}, {MS_PER_HOUR, "h"}, {MS_PER_MINUTE, "m"}, {MS_PER_SECOND, "s"}};
    int64_t amount = ms;
    const char *suffix = "ms";
    if (out == NULL || n == 0) {
        return -1;
    }
    if (ms == 0) {
        suffix = "s";
    } else {
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            if (ms % units[i].size == 0) {
                amount = ms / units[i].size;
                suffix = units[i].suffix;
                break;
            }
        }
    }
    int len = snprintf(out, n, "%" PRId64 "%s", amount, suffix);
    if (len < 0 || (size_t)len >= n) {
        out[n - 1] = '\0';
        return -1;
    }
    return len;
}

/* Read exactly `count` digits at *p into *value; advances *p. */
static int fixed_digits(const char **p, int count, int *value)
{
    int v = 0;
    for (int i = 0; i < count; i++) {
        if (!is_digit((*p)[i])) {
            return -1;
        }
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += count;
    *value = v;
    return 0;
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int text_parse_time(const char *s, int64_t *ms)
{
    const char *p = s;
    int year = 0;
    int mon = 0;
    int day = 0;
    int hour = 0;
    int min = 0;
    int sec = 0;
    int64_t millis = 0;
    if (s == NULL || ms == NULL) {
        return -1;
    }
    if (fixed_digits(&p, 4, &year) != 0 || *p++ != '-' || fixed_digits(&p, 2, &mon) != 0 ||
        *p++ != '-' || fixed_digits(&p, 2, &day) != 0) {
        return -1;
    }
    if (*p != 'T' && *p != ' ') {
        return -1;
    }
    p++;
    if (fixed_digits(&p, 2, &hour) != 0 || *p++ != ':' || fixed_digits(&p, 2, &min) != 0 ||
        *p++ != ':' || fixed_digits(&p, 2, &sec) != 0) {
        return -1;
    }
    if (*p == '.') {
        int n = 0;
        p++;
        while (is_digit(*p)) {
            if (n < 3) {
                millis = millis * 10 + (*p - '0');
            }
            n++;
            p++;
        }
        if (n == 0 || n > 9) {
            return -1;
        }
        for (int i = n; i < 3; i++) {
            millis *= 10;
        }
    }
    if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0 && *p != '\0') {
        return -1;
    }
    if (year < 1 || mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour > 23 ||
        min > 59 || sec > 59) {
        return -1;
    }
    int64_t days = days_from_civil(year, mon, day);
    *ms = ((days * 24 + hour) * 60 + min) * 60 * MS_PER_SECOND + sec * MS_PER_SECOND + millis;
    return 0;
}

int text_format_time(int64_t ms, char *out, size_t n)
{
    struct tm tm;
    if (out == NULL || n == 0) {
        return -1;
    }
    out[0] = '\0';
    /* Floor division, so times before 1970 keep their second. */
    int64_t secs = ms / MS_PER_SECOND - (ms % MS_PER_SECOND < 0 ? 1 : 0);
    time_t t = (time_t)secs;
    if ((int64_t)t != secs || gmtime_r(&t, &tm) == NULL) {
        return -1;
    }
    if (tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
        return -1;
    }
    int len = snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                       tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (len < 0 || (size_t)len >= n) {
        out[n - 1] = '\0';
        return -1;
    }
    return len;
}

/* Length of the sequence a lead byte announces (1 for stray bytes). */
static size_t utf8_seq_len(unsigned char c)
{
    if (c >= 0xF0 && c <= 0xF4) {
        return 4;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        return 3;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        return 2;
    }
    return 1;
}

size_t text_utf8_prefix(const char *s, size_t max_chars)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    size_t chars = 0;
    if (s == NULL) {
        return 0;
    }
    while (u[i] != '\0' && chars < max_chars) {
        size_t len = utf8_seq_len(u[i]);
        /* A sequence cut short by the end of the string is not taken. */
        for (size_t k = 1; k < len; k++) {
            if (u[i + k] == '\0') {
                return i;
            }
        }
        i += len;
        chars++;
    }
    return i;
}

bool text_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    if (s == NULL) {
        return len == 0;
    }
    while (i < len) {
        unsigned char c = u[i];
        unsigned char lo = 0x80;
        unsigned char hi = 0xBF;
        size_t need;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) {
                lo = 0xA0; /* no overlongs */
            } else if (c == 0xED) {
                hi = 0x9F; /* no surrogates */
            }
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) {
                lo = 0x90; /* no overlongs */
            } else if (c == 0xF4) {
                hi = 0x8F; /* nothing above U+10FFFF */
            }
        } else {
            return false;
        }
        if (len - i - 1 < need) {
            return false;
        }
        if (u[i + 1] < lo || u[i + 1] > hi) {
            return false;
        }
        for (size_t k = 2; k <= need; k++) {
            if (u[i + k] < 0x80 || u[i + k] > 0xBF) {
                return false;
            }
        }
        i += need + 1;
    }
    return true;
}

/* Longest word compared; longer ones are never typos of a known key. */
#define SUGGEST_MAX 128

/* Case-insensitive Levenshtein distance of a (la bytes) and b (lb bytes),
 * both at most SUGGEST_MAX. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t prev[SUGGEST_MAX + 1];
    size_t cur[SUGGEST_MAX + 1];
    for (size_t j = 0; j <= lb; j++) {
        prev[j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        int ca = tolower((unsigned char)a[i - 1]);
        for (size_t j = 1; j <= lb; j++) {
            int cb = tolower((unsigned char)b[j - 1]);
            size_t best = prev[j - 1] + (ca == cb ? 0 : 1);
            if (prev[j] + 1 < best) {
                best = prev[j] + 1;
            }
            if (cur[j - 1] + 1 < best) {
                best = cur[j - 1] + 1;
            }
            cur[j] = best;
        }
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

int text_suggest(const char *word, const char *const *candidates, size_t n)
{
    int best = -1;
    size_t best_distance = 0;
    if (word == NULL || candidates == NULL) {
        return -1;
    }
    size_t lw = strlen(word);
    if (lw > SUGGEST_MAX) {
        return -1;
    }
    size_t limit = lw <= 4 ? 1 : 2;
    for (size_t i = 0; i < n; i++) {
        if (candidates[i] == NULL) {
            continue;
        }
        size_t lc = strlen(candidates[i]);
        if (lc > SUGGEST_MAX) {
            continue;
        }
        size_t diff = lc > lw ? lc - lw : lw - lc;
        if (diff > limit) {
            continue;
        }
        size_t d = edit_distance(word, lw, candidates[i], lc);
        if (d <= limit && (best < 0 || d < best_distance)) {
            best = (int)i;
            best_distance = d;
        }
    }
    return best;
}

char *text_utf8_cut(const char *s, size_t max_chars)
{
    if (s == NULL) {
        return NULL;
    }
    size_t n = text_utf8_prefix(s, max_chars);
    char *out = malloc(n + 1);
    if (out != NULL) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}
