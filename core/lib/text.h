/*
 * text.h — exact parsing and formatting of the values that cross the engine:
 * integers, decimals (money) as int64 ten-thousandths, durations, UTC times,
 * UTF-8-safe cutting to column lengths, and did-you-mean suggestions.
 * Pure functions: no allocation unless stated, no global state.
 */
#ifndef CPB_TEXT_H
#define CPB_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decimal scale used everywhere: values are int64 ten-thousandths. */
#define TEXT_SCALE 10000

/* Strict base-10 integer: optional sign, digits, nothing else (no spaces).
 * Returns 0, or -1 on junk, empty input or overflow. */
int text_parse_int(const char *s, int64_t *out);

/* Strict decimal to ten-thousandths: optional sign, digits, optional '.'
 * and digits (at least one digit in all). More than 4 decimals are rounded
 * half away from zero ("2.89855" -> 28986). No exponent, no spaces, no
 * thousands separators. Range: |value| < 9e14. Returns 0 or -1. */
int text_parse_decimal(const char *s, int64_t *out);

/* Format ten-thousandths with `decimals` (0..4) places, rounding half away
 * from zero: (1234500, 2) -> "123.45"; (-5, 2) -> "0.00" ... sign kept only
 * when the rounded value is non-zero. Always NUL-terminates; returns the
 * length written or -1 when n is too small. */
int text_format_decimal(int64_t value, int decimals, char *out, size_t n);

/* Duration with one unit suffix: "250ms", "30s", "5m", "1h", "2d" (integer
 * amount, no spaces) to milliseconds. Returns 0, or -1. */
int text_parse_duration(const char *s, int64_t *ms);

/* Format milliseconds as the shortest exact duration text ("1h", "90s",
 * "250ms"). Returns the length or -1 when n is too small. */
int text_format_duration(int64_t ms, char *out, size_t n);

/* Parse an ISO-8601 UTC time "YYYY-MM-DDTHH:MM:SS" (a space for the T is
 * accepted; optional ".fff" fraction; an optional trailing "Z" or "+00:00")
 * to milliseconds since the epoch. Other offsets are refused. Returns 0/-1. */
int text_parse_time(const char *s, int64_t *ms);

/* Format ms since the epoch as "YYYY-MM-DDTHH:MM:SS" (UTC, no zone), the
 * form WooCommerce's *_gmt fields and the database columns use. out >= 20. */
int text_format_time(int64_t ms, char *out, size_t n);

/* The byte length of the longest prefix of s (a valid UTF-8 string) that
 * has at most max_chars code points, never splitting a character. */
size_t text_utf8_prefix(const char *s, size_t max_chars);

/* A new copy (free()) of the longest prefix of s (valid UTF-8; borrowed)
 * with at most max_chars code points: what fits a VARCHAR(max_chars) /
 * NVARCHAR(max_chars) column. NULL for a NULL s or out of memory. */
char *text_utf8_cut(const char *s, size_t max_chars);

/* True when s is valid UTF-8 (no overlongs, no surrogates). */
bool text_utf8_valid(const char *s, size_t len);

/* Index of the candidate closest to `word` by edit distance, when that
 * distance is small enough to be a likely typo (<= 2, or <= 1 for words of
 * up to 4 bytes), comparing case-insensitively; -1 when none is close. */
int text_suggest(const char *word, const char *const *candidates, size_t n);

#endif
