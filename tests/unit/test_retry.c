/*
 * test_retry.c — the retry policy: ceilings, bounds, exhaustion, and that
 * full jitter really spreads delays over [0, ceiling].
 */
#include "cpbtest.h"
#include "lib/retry.h"

static const struct retry_policy P = {.base_ms = 1000, .cap_ms = 60000, .max_attempts = 3};

static void test_ceiling_doubles_then_caps(void)
{
    CU_ASSERT_EQUAL(retry_ceiling_ms(&P, 1), 1000);
    CU_ASSERT_EQUAL(retry_ceiling_ms(&P, 2), 2000);
    CU_ASSERT_EQUAL(retry_ceiling_ms(&P, 3), 4000);
    CU_ASSERT_EQUAL(retry_ceiling_ms(&P, 6), 32000);
    CU_ASSERT_EQUAL(retry_ceiling_ms(&P, 7), 60000);
    CU_ASSERT_EQUAL(retry_ceiling_ms(&P, 4000000000u), 60000);
}

static void test_ceiling_no_overflow(void)
{
    struct retry_policy big = {.base_ms = INT64_MAX / 3, .cap_ms = INT64_MAX, .max_attempts = 9};
    CU_ASSERT(retry_ceiling_ms(&big, 2) > 0);
    CU_ASSERT(retry_ceiling_ms(&big, 64) > 0);
    CU_ASSERT(retry_ceiling_ms(&big, 64) <= INT64_MAX);
}

static void test_delay_within_bounds(void)
{
    uint64_t rng = 42;
    for (unsigned failures = 1; failures < 12; failures++) {
        int64_t ceiling = retry_ceiling_ms(&P, failures);
        for (int i = 0; i < 2000; i++) {
            int64_t d = retry_delay_ms(&P, failures, &rng);
            CU_ASSERT(d >= 0);
            CU_ASSERT(d <= ceiling);
        }
    }
}

/* Full jitter: a uniform draw. Ten buckets over 100000 draws must each hold
 * close to a tenth (a fixed seed keeps this deterministic). */
static void test_jitter_is_uniform(void)
{
    uint64_t rng = 7;
    unsigned buckets[10] = {0};
    const unsigned n = 100000;
    int64_t min = INT64_MAX;
    int64_t max = 0;
    for (unsigned i = 0; i < n; i++) {
        int64_t d = retry_delay_ms(&P, 3, &rng);
        buckets[d * 10 / 4001]++;
        min = d < min ? d : min;
        max = d > max ? d : max;
    }
    for (int b = 0; b < 10; b++) {
        CU_ASSERT(buckets[b] > n / 10 * 9 / 10);
        CU_ASSERT(buckets[b] < n / 10 * 11 / 10);
    }
    CU_ASSERT(min < 40);
    CU_ASSERT(max > 3960);
}

static void test_same_seed_same_sequence(void)
{
    uint64_t a = 123;
    uint64_t b = 123;
    for (int i = 0; i < 100; i++) {
        CU_ASSERT_EQUAL(retry_delay_ms(&P, 5, &a), retry_delay_ms(&P, 5, &b));
    }
    uint64_t s1 = retry_rng_seed();
    uint64_t s2 = retry_rng_seed();
    CU_ASSERT(s1 != s2);
}

static void test_exhausted(void)
{
    CU_ASSERT_FALSE(retry_exhausted(&P, 0));
    CU_ASSERT_FALSE(retry_exhausted(&P, 2));
    CU_ASSERT_TRUE(retry_exhausted(&P, 3));
    CU_ASSERT_TRUE(retry_exhausted(&P, 4));
    struct retry_policy once = {.base_ms = 1, .cap_ms = 1, .max_attempts = 1};
    CU_ASSERT_TRUE(retry_exhausted(&once, 1));
}

static const struct cpbtest_case cases[] = {
    {"ceiling doubles then caps", test_ceiling_doubles_then_caps},
    {"ceiling never overflows", test_ceiling_no_overflow},
    {"delay within [0, ceiling]", test_delay_within_bounds},
    {"full jitter is uniform", test_jitter_is_uniform},
    {"same seed, same sequence", test_same_seed_same_sequence},
    {"exhausted after max attempts", test_exhausted},
    {NULL, NULL},
};
static const struct cpbtest_suite suite = {"retry", NULL, NULL, cases};
static const struct cpbtest_suite *const suites[] = {&suite, NULL};

int main(int argc, char **argv)
{
    return cpbtest_run(argc, argv, suites);
}
