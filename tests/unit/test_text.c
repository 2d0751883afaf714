/*
 * test_text.c — exact integer, decimal, duration and time parsing and
 * formatting, UTF-8 validation and cutting, and did-you-mean suggestions
 * (core/lib/text.c), with boundary and hostile inputs.
 */
#include <stdint.h>
#include <string.h>

#include "cpbtest.h"
#include "lib/text.h"

static void test_parse_int(void)
{
    int64_t v = 7;
    CU_ASSERT_EQUAL(text_parse_int("0", &v), 0);
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_EQUAL(text_parse_int("-42", &v), 0);
    CU_ASSERT_EQUAL(v, -42);
    CU_ASSERT_EQUAL(text_parse_int("+42", &v), 0);
    CU_ASSERT_EQUAL(v, 42);
    CU_ASSERT_EQUAL(text_parse_int("9223372036854775807", &v), 0);
    CU_ASSERT_EQUAL(v, INT64_MAX);
    CU_ASSERT_EQUAL(text_parse_int("-9223372036854775808", &v), 0);
    CU_ASSERT_EQUAL(v, INT64_MIN);
    v = 7;
    CU_ASSERT_EQUAL(text_parse_int("9223372036854775808", &v), -1);
    CU_ASSERT_EQUAL(text_parse_int("-9223372036854775809", &v), -1);
    CU_ASSERT_EQUAL(text_parse_int("99999999999999999999999", &v), -1);
    CU_ASSERT_EQUAL(v, 7); /* untouched on failure */
    const char *bad[] = {"",    " 1",    "1 ", "+",   "-",   "1e5", "0x10",
                         "1.0", "1,000", "١",  "--1", "\t5", "5\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_EQUAL_FATAL(text_parse_int(bad[i], &v), -1);
    }
}

static void test_parse_decimal(void)
{
    int64_t v = 0;
    CU_ASSERT_EQUAL(text_parse_decimal("0.01", &v), 0);
    CU_ASSERT_EQUAL(v, 100);
    CU_ASSERT_EQUAL(text_parse_decimal("123.45", &v), 0);
    CU_ASSERT_EQUAL(v, 1234500);
    CU_ASSERT_EQUAL(text_parse_decimal("2.89855", &v), 0);
    CU_ASSERT_EQUAL(v, 28986);
    CU_ASSERT_EQUAL(text_parse_decimal("2.89854999", &v), 0);
    CU_ASSERT_EQUAL(v, 28985);
    CU_ASSERT_EQUAL(text_parse_decimal("-2.89855", &v), 0);
    CU_ASSERT_EQUAL(v, -28986);
    CU_ASSERT_EQUAL(text_parse_decimal("-0.00005", &v), 0);
    CU_ASSERT_EQUAL(v, -1);
    CU_ASSERT_EQUAL(text_parse_decimal("-0.00004", &v), 0);
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_EQUAL(text_parse_decimal("1.", &v), 0);
    CU_ASSERT_EQUAL(v, 10000);
    CU_ASSERT_EQUAL(text_parse_decimal(".5", &v), 0);
    CU_ASSERT_EQUAL(v, 5000);
    CU_ASSERT_EQUAL(text_parse_decimal("+7", &v), 0);
    CU_ASSERT_EQUAL(v, 70000);
    CU_ASSERT_EQUAL(text_parse_decimal("000000000000000000000000012.3400000000000000", &v), 0);
    CU_ASSERT_EQUAL(v, 123400);
    CU_ASSERT_EQUAL(text_parse_decimal("899999999999999.9999", &v), 0);
    CU_ASSERT_EQUAL(v, INT64_C(8999999999999999999));
    CU_ASSERT_EQUAL(text_parse_decimal("-899999999999999.9999", &v), 0);
    CU_ASSERT_EQUAL(v, -INT64_C(8999999999999999999));
    v = 3;
    /* Rounding up past the limit, the limit itself, and far beyond it. */
    CU_ASSERT_EQUAL(text_parse_decimal("899999999999999.99995", &v), -1);
    CU_ASSERT_EQUAL(text_parse_decimal("900000000000000", &v), -1);
    CU_ASSERT_EQUAL(text_parse_decimal("-900000000000000", &v), -1);
    CU_ASSERT_EQUAL(text_parse_decimal("99999999999999999999999999999", &v), -1);
    CU_ASSERT_EQUAL(v, 3);
    const char *bad[] = {"",         ".",     "-",   "+.",  "1e5", "1E5", " 1",   "1 ",
                         "1,000.00", "1.2.3", "--1", "0x1", "nan", "inf", "1.-5", "€1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_EQUAL_FATAL(text_parse_decimal(bad[i], &v), -1);
    }
}

static void test_format_decimal(void)
{
    char out[64];
    CU_ASSERT_EQUAL(text_format_decimal(1234500, 2, out, sizeof out), 6);
    CU_ASSERT_STRING_EQUAL(out, "123.45");
    CU_ASSERT_EQUAL(text_format_decimal(-5, 2, out, sizeof out), 4);
    CU_ASSERT_STRING_EQUAL(out, "0.00");
    CU_ASSERT_EQUAL(text_format_decimal(-50, 2, out, sizeof out), 5);
    CU_ASSERT_STRING_EQUAL(out, "-0.01");
    CU_ASSERT_EQUAL(text_format_decimal(49, 2, out, sizeof out), 4);
    CU_ASSERT_STRING_EQUAL(out, "0.00");
    CU_ASSERT_EQUAL(text_format_decimal(28986, 4, out, sizeof out), 6);
    CU_ASSERT_STRING_EQUAL(out, "2.8986");
    CU_ASSERT_EQUAL(text_format_decimal(15000, 0, out, sizeof out), 1);
    CU_ASSERT_STRING_EQUAL(out, "2");
    CU_ASSERT_EQUAL(text_format_decimal(-15000, 0, out, sizeof out), 2);
    CU_ASSERT_STRING_EQUAL(out, "-2");
    CU_ASSERT_EQUAL(text_format_decimal(14999, 0, out, sizeof out), 1);
    CU_ASSERT_STRING_EQUAL(out, "1");
    CU_ASSERT_EQUAL(text_format_decimal(99999, 3, out, sizeof out), 6);
    CU_ASSERT_STRING_EQUAL(out, "10.000");
    CU_ASSERT(text_format_decimal(INT64_MAX, 4, out, sizeof out) > 0);
    CU_ASSERT_STRING_EQUAL(out, "922337203685477.5807");
    CU_ASSERT(text_format_decimal(INT64_MIN, 2, out, sizeof out) > 0);
    CU_ASSERT_STRING_EQUAL(out, "-922337203685477.58");
    /* Too small a buffer: -1, still NUL-terminated. */
    char small[4];
    CU_ASSERT_EQUAL(text_format_decimal(1234500, 2, small, sizeof small), -1);
    CU_ASSERT_EQUAL(small[3], '\0');
    CU_ASSERT_EQUAL(text_format_decimal(1, 5, out, sizeof out), -1);
    CU_ASSERT_EQUAL(text_format_decimal(1, -1, out, sizeof out), -1);
    /* Round trip. */
    int64_t back = 0;
    CU_ASSERT(text_format_decimal(-1234567, 4, out, sizeof out) > 0);
    CU_ASSERT_EQUAL(text_parse_decimal(out, &back), 0);
    CU_ASSERT_EQUAL(back, -1234567);
}

static void test_duration(void)
{
    int64_t ms = 0;
    char out[32];
    CU_ASSERT_EQUAL(text_parse_duration("250ms", &ms), 0);
    CU_ASSERT_EQUAL(ms, 250);
    CU_ASSERT_EQUAL(text_parse_duration("30s", &ms), 0);
    CU_ASSERT_EQUAL(ms, 30000);
    CU_ASSERT_EQUAL(text_parse_duration("5m", &ms), 0);
    CU_ASSERT_EQUAL(ms, 300000);
    CU_ASSERT_EQUAL(text_parse_duration("1h", &ms), 0);
    CU_ASSERT_EQUAL(ms, 3600000);
    CU_ASSERT_EQUAL(text_parse_duration("2d", &ms), 0);
    CU_ASSERT_EQUAL(ms, 172800000);
    CU_ASSERT_EQUAL(text_parse_duration("0s", &ms), 0);
    CU_ASSERT_EQUAL(ms, 0);
    CU_ASSERT_EQUAL(text_parse_duration("106751991167d", &ms), 0);
    CU_ASSERT_EQUAL(text_parse_duration("106751991168d", &ms), -1);
    CU_ASSERT_EQUAL(text_parse_duration("9223372036854775807ms", &ms), 0);
    CU_ASSERT_EQUAL(ms, INT64_MAX);
    CU_ASSERT_EQUAL(text_parse_duration("9223372036854775808ms", &ms), -1);
    CU_ASSERT_EQUAL(text_parse_duration("99999999999999999999999s", &ms), -1);
    const char *bad[] = {"",     "30", "s",    "-5s",  "+5s",   "5 s",  " 5s",  "5s ",
                         "1.5h", "5S", "5sec", "5min", "1h30m", "5ms5", "0x5s", "5w"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_EQUAL_FATAL(text_parse_duration(bad[i], &ms), -1);
    }
    CU_ASSERT_EQUAL(text_format_duration(3600000, out, sizeof out), 2);
    CU_ASSERT_STRING_EQUAL(out, "1h");
    CU_ASSERT_EQUAL(text_format_duration(90000, out, sizeof out), 3);
    CU_ASSERT_STRING_EQUAL(out, "90s");
    CU_ASSERT_EQUAL(text_format_duration(250, out, sizeof out), 5);
    CU_ASSERT_STRING_EQUAL(out, "250ms");
    CU_ASSERT_EQUAL(text_format_duration(172800000, out, sizeof out), 2);
    CU_ASSERT_STRING_EQUAL(out, "2d");
    CU_ASSERT_EQUAL(text_format_duration(120000, out, sizeof out), 2);
    CU_ASSERT_STRING_EQUAL(out, "2m");
    CU_ASSERT_EQUAL(text_format_duration(0, out, sizeof out), 2);
    CU_ASSERT_STRING_EQUAL(out, "0s");
    CU_ASSERT_EQUAL(text_format_duration(1001, out, sizeof out), 6);
    CU_ASSERT_STRING_EQUAL(out, "1001ms");
    char small[3];
    CU_ASSERT_EQUAL(text_format_duration(250, small, sizeof small), -1);
    CU_ASSERT_EQUAL(small[2], '\0');
    /* Every formatted duration parses back to itself. */
    const int64_t samples[] = {1, 999, 1000, 59000, 61000, 3599000, 86400000, INT64_MAX};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        int64_t back = -1;
        CU_ASSERT_FATAL(text_format_duration(samples[i], out, sizeof out) > 0);
        CU_ASSERT_EQUAL(text_parse_duration(out, &back), 0);
        CU_ASSERT_EQUAL(back, samples[i]);
    }
}

static void test_parse_time(void)
{
    int64_t ms = 0;
    CU_ASSERT_EQUAL(text_parse_time("1970-01-01T00:00:00", &ms), 0);
    CU_ASSERT_EQUAL(ms, 0);
    CU_ASSERT_EQUAL(text_parse_time("2024-02-29T12:34:56", &ms), 0);
    CU_ASSERT_EQUAL(ms, INT64_C(1709210096000));
    CU_ASSERT_EQUAL(text_parse_time("2024-02-29 12:34:56", &ms), 0);
    CU_ASSERT_EQUAL(ms, INT64_C(1709210096000));
    CU_ASSERT_EQUAL(text_parse_time("2024-02-29T12:34:56Z", &ms), 0);
    CU_ASSERT_EQUAL(ms, INT64_C(1709210096000));
    CU_ASSERT_EQUAL(text_parse_time("2024-02-29T12:34:56+00:00", &ms), 0);
    CU_ASSERT_EQUAL(ms, INT64_C(1709210096000));
    CU_ASSERT_EQUAL(text_parse_time("2024-02-29T12:34:56.5Z", &ms), 0);
    CU_ASSERT_EQUAL(ms, INT64_C(1709210096500));
    CU_ASSERT_EQUAL(text_parse_time("2024-02-29T12:34:56.123456", &ms), 0);
    CU_ASSERT_EQUAL(ms, INT64_C(1709210096123));
    CU_ASSERT_EQUAL(text_parse_time("1969-12-31T23:59:59", &ms), 0);
    CU_ASSERT_EQUAL(ms, -1000);
    CU_ASSERT_EQUAL(text_parse_time("2000-02-29T00:00:00", &ms), 0);
    CU_ASSERT_EQUAL(text_parse_time("9999-12-31T23:59:59", &ms), 0);
    CU_ASSERT_EQUAL(ms, INT64_C(253402300799000));
    const char *bad[] = {
        "",
        "2023-02-29T00:00:00", /* not a leap year */
        "1900-02-29T00:00:00", /* not a leap year either */
        "2024-13-01T00:00:00",
        "2024-00-10T00:00:00",
        "2024-04-31T00:00:00",
        "2024-01-00T00:00:00",
        "2024-01-01T24:00:00",
        "2024-01-01T23:60:00",
        "2024-01-01T23:59:60",
        "0000-01-01T00:00:00",
        "2024-1-01T00:00:00",
        "2024-01-01",
        "2024-01-01T00:00",
        "2024-01-01X00:00:00",
        "2024-01-01T00:00:00+01:00",
        "2024-01-01T00:00:00-00:00",
        "2024-01-01T00:00:00z",
        "2024-01-01T00:00:00.",
        "2024-01-01T00:00:00.1234567890",
        "2024-01-01T00:00:00Zjunk",
        " 2024-01-01T00:00:00",
        "2024-01-01T00:00:00 ",
        "+024-01-01T00:00:00",
        "2024-01-01T0a:00:00",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms = 42;
        CU_ASSERT_EQUAL_FATAL(text_parse_time(bad[i], &ms), -1);
        CU_ASSERT_EQUAL(ms, 42);
    }
}

static void test_format_time(void)
{
    char out[32];
    CU_ASSERT_EQUAL(text_format_time(INT64_C(1709210096999), out, sizeof out), 19);
    CU_ASSERT_STRING_EQUAL(out, "2024-02-29T12:34:56");
    CU_ASSERT_EQUAL(text_format_time(0, out, sizeof out), 19);
    CU_ASSERT_STRING_EQUAL(out, "1970-01-01T00:00:00");
    CU_ASSERT_EQUAL(text_format_time(-1, out, sizeof out), 19);
    CU_ASSERT_STRING_EQUAL(out, "1969-12-31T23:59:59");
    CU_ASSERT_EQUAL(text_format_time(INT64_MAX, out, sizeof out), -1);
    char small[19];
    CU_ASSERT_EQUAL(text_format_time(0, small, sizeof small), -1);
    CU_ASSERT_EQUAL(small[18], '\0');
    int64_t back = 0;
    CU_ASSERT_EQUAL(text_format_time(INT64_C(253402300799000), out, sizeof out), 19);
    CU_ASSERT_EQUAL(text_parse_time(out, &back), 0);
    CU_ASSERT_EQUAL(back, INT64_C(253402300799000));
}

static void test_utf8_valid(void)
{
    CU_ASSERT_TRUE(text_utf8_valid("", 0));
    CU_ASSERT_TRUE(text_utf8_valid("plain ascii", 11));
    CU_ASSERT_TRUE(text_utf8_valid("caf\xc3\xa9", 5));
    CU_ASSERT_TRUE(text_utf8_valid("\xe2\x82\xac", 3));      /* euro */
    CU_ASSERT_TRUE(text_utf8_valid("\xf0\x9f\x98\x80", 4));  /* emoji */
    CU_ASSERT_TRUE(text_utf8_valid("\xf4\x8f\xbf\xbf", 4));  /* U+10FFFF */
    CU_ASSERT_TRUE(text_utf8_valid("\xed\x9f\xbf", 3));      /* U+D7FF */
    CU_ASSERT_FALSE(text_utf8_valid("\xc3", 1));             /* truncated */
    CU_ASSERT_FALSE(text_utf8_valid("\xf0\x9f\x98", 3));     /* truncated */
    CU_ASSERT_FALSE(text_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    CU_ASSERT_FALSE(text_utf8_valid("\xc1\xbf", 2));         /* overlong */
    CU_ASSERT_FALSE(text_utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
    CU_ASSERT_FALSE(text_utf8_valid("\xf0\x80\x80\xaf", 4)); /* overlong */
    CU_ASSERT_FALSE(text_utf8_valid("\xed\xa0\x80", 3));     /* surrogate D800 */
    CU_ASSERT_FALSE(text_utf8_valid("\xed\xbf\xbf", 3));     /* surrogate DFFF */
    CU_ASSERT_FALSE(text_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    CU_ASSERT_FALSE(text_utf8_valid("\xf5\x80\x80\x80", 4));
    CU_ASSERT_FALSE(text_utf8_valid("\xff", 1));
    CU_ASSERT_FALSE(text_utf8_valid("\x80", 1));   /* stray continuation */
    CU_ASSERT_FALSE(text_utf8_valid("a\xc3(", 3)); /* bad continuation */
    CU_ASSERT_FALSE(text_utf8_valid("\xe2\x82", 2));
    /* The length counts: the bytes after len are not read. */
    CU_ASSERT_TRUE(text_utf8_valid("ab\xff", 2));
    CU_ASSERT_FALSE(text_utf8_valid("caf\xc3\xa9", 4));
}

static void test_utf8_prefix(void)
{
    const char *s = "ab\xc3\xa9\xf0\x9f\x98\x80z"; /* a b é 😀 z */
    CU_ASSERT_EQUAL(text_utf8_prefix(s, 0), 0);
    CU_ASSERT_EQUAL(text_utf8_prefix(s, 2), 2);
    CU_ASSERT_EQUAL(text_utf8_prefix(s, 3), 4);
    CU_ASSERT_EQUAL(text_utf8_prefix(s, 4), 8); /* the 4-byte char is whole */
    CU_ASSERT_EQUAL(text_utf8_prefix(s, 5), 9);
    CU_ASSERT_EQUAL(text_utf8_prefix(s, 100), 9);
    CU_ASSERT_EQUAL(text_utf8_prefix("", 5), 0);
    /* A 4-byte character exactly at the cut is kept out, never split. */
    const char *emoji4 = "\xf0\x9f\x98\x80\xf0\x9f\x98\x81";
    CU_ASSERT_EQUAL(text_utf8_prefix(emoji4, 1), 4);
    CU_ASSERT_EQUAL(text_utf8_prefix(emoji4, 2), 8);
    /* Hostile input: a sequence cut short by the end is not taken. */
    CU_ASSERT_EQUAL(text_utf8_prefix("ab\xf0\x9f", 10), 2);
    CU_ASSERT_EQUAL(text_utf8_prefix("\xe2\x82", 10), 0);
    size_t n = text_utf8_prefix(s, 4);
    CU_ASSERT_TRUE(text_utf8_valid(s, n));
}

static void test_suggest(void)
{
    const char *const keys[] = {"price_check", "max_qty", "stages", "name", "id", "on"};
    size_t n = sizeof keys / sizeof keys[0];
    CU_ASSERT_EQUAL(text_suggest("price_chek", keys, n), 0);
    CU_ASSERT_EQUAL(text_suggest("PRICE_CHECK", keys, n), 0);
    CU_ASSERT_EQUAL(text_suggest("max_qyt", keys, n), 1); /* transposition: 2 edits */
    CU_ASSERT_EQUAL(text_suggest("stage", keys, n), 2);
    CU_ASSERT_EQUAL(text_suggest("nmae", keys, n), -1); /* 2 edits on a 4-byte word */
    CU_ASSERT_EQUAL(text_suggest("nam", keys, n), 3);
    CU_ASSERT_EQUAL(text_suggest("completely_else", keys, n), -1);
    CU_ASSERT_EQUAL(text_suggest("", keys, n), -1);
    CU_ASSERT_EQUAL(text_suggest("price_chek", keys, 0), -1);
    /* The closest wins over an earlier, farther one. */
    const char *const close[] = {"abcdef", "abcdez"};
    CU_ASSERT_EQUAL(text_suggest("abcdez", close, 2), 1);
    /* Hostile: very long words are refused, not copied to the stack. */
    char big[4096];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *const bigs[] = {big};
    CU_ASSERT_EQUAL(text_suggest(big, bigs, 1), -1);
    CU_ASSERT_EQUAL(text_suggest("a", bigs, 1), -1);
}

static const struct cpbtest_case text_cases[] = {{"parse_int", test_parse_int},
                                                 {"parse_decimal", test_parse_decimal},
                                                 {"format_decimal", test_format_decimal},
                                                 {"duration", test_duration},
                                                 {"parse_time", test_parse_time},
                                                 {"format_time", test_format_time},
                                                 {"utf8_valid", test_utf8_valid},
                                                 {"utf8_prefix", test_utf8_prefix},
                                                 {"suggest", test_suggest},
                                                 {NULL, NULL}};

static const struct cpbtest_suite text_suite = {"text", NULL, NULL, text_cases};

int main(int argc, char **argv)
{
    const struct cpbtest_suite *suites[] = {&text_suite, NULL};
    return cpbtest_run(argc, argv, suites);
}
