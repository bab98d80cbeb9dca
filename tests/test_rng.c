/*
 * test_rng.c - checks that src/base/rng.c draws exactly what CPython's `random`
 * module draws for the same seed.
 *
 * Every expected list below was produced on the development machine with
 * Python 3.11.7 by the command quoted above it, and pasted in as literals,
 * so the tests need no Python at run time.
 */
#include <criterion/criterion.h>

#include "aria.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const uint64_t SEED_2_32_PLUS_5 = (1ull << 32) + 5u;

static void check_u32(uint64_t seed, const uint32_t *want, size_t n)
{
    aria_rng r;
    aria_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        uint32_t got = aria_rng_getrandbits(&r, 32);
        cr_expect_eq(got, want[i], "seed %llu draw %zu: got %u want %u",
                     (unsigned long long)seed, i, got, want[i]);
    }
}

/* python3 -c "import random; random.seed(0); print([random.getrandbits(32) for _ in range(5)])" */
Test(rng_seed, zero)
{
    static const uint32_t want[] = {3626764237u, 1654615998u, 3255389356u, 3823568514u, 1806341205u};
    check_u32(0, want, N_OF(want));
}

/* python3 -c "import random; random.seed(1); print([random.getrandbits(32) for _ in range(5)])" */
Test(rng_seed, one)
{
    static const uint32_t want[] = {577090037u, 2444712010u, 3639700191u, 3445702192u, 3280387012u};
    check_u32(1, want, N_OF(want));
}

/* python3 -c "import random; random.seed(1234); print([random.getrandbits(32) for _ in range(5)])" */
Test(rng_seed, s1234)
{
    static const uint32_t want[] = {4150886329u, 3342196574u, 1892932127u, 501869158u, 32175636u};
    check_u32(1234, want, N_OF(want));
}

/* A seed >= 2^32 is two key words.
   python3 -c "import random; random.seed(2**32+5); print([random.getrandbits(32) for _ in range(5)])" */
Test(rng_seed, two_words)
{
    static const uint32_t want[] = {675479763u, 2085189291u, 1213270837u, 3822202474u, 2596110301u};
    check_u32(SEED_2_32_PLUS_5, want, N_OF(want));
}

/* python3 -c "import random; random.seed(2**64-1); print([random.getrandbits(32) for _ in range(5)])" */
Test(rng_seed, max_u64)
{
    static const uint32_t want[] = {93740670u, 1068495656u, 1452108352u, 2657516307u, 910393425u};
    check_u32(UINT64_MAX, want, N_OF(want));
}

/* Crosses the 624-word refill boundary.
   python3 -c "import random; random.seed(0); [random.getrandbits(32) for _ in range(700)]; print([random.getrandbits(32) for _ in range(3)])" */
Test(rng_seed, past_first_twist)
{
    static const uint32_t want[] = {2140787315u, 4287163522u, 2141670794u};
    aria_rng r;
    aria_rng_seed(&r, 0);
    for (int i = 0; i < 700; i++)
        (void)aria_rng_u32(&r);
    for (size_t i = 0; i < N_OF(want); i++)
        cr_expect_eq(aria_rng_u32(&r), want[i]);
}

Test(rng_seed, zeroed_struct_is_seed_zero)
{
    aria_rng z = {0}, s;
    aria_rng_seed(&s, 0);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(aria_rng_u32(&z), aria_rng_u32(&s), "draw %d", i);
}

Test(rng_seed, reseed_restarts)
{
    aria_rng r;
    aria_rng_seed(&r, 1234);
    uint32_t first = aria_rng_u32(&r);
    for (int i = 0; i < 2000; i++)
        (void)aria_rng_u32(&r);
    aria_rng_seed(&r, 1234);
    cr_expect_eq(aria_rng_u32(&r), first);
}

/* python3 -c "import random; random.seed(0); print([random.getrandbits(k) for k in (1,2,3,4,5,6,7,8,16,31)])" */
Test(rng_getrandbits, small_k)
{
    static const int ks[] = {1, 2, 3, 4, 5, 6, 7, 8, 16, 31};
    static const uint32_t want[] = {1, 1, 6, 14, 13, 2, 33, 247, 33506, 1043521778u};
    aria_rng r;
    aria_rng_seed(&r, 0);
    for (size_t i = 0; i < N_OF(ks); i++)
        cr_expect_eq(aria_rng_getrandbits(&r, ks[i]), want[i], "k=%d", ks[i]);
}

/* getrandbits(0) is 0 and draws nothing.
   python3 -c "import random; random.seed(0); print([random.getrandbits(0)]+[random.getrandbits(32)])" */
Test(rng_getrandbits, zero_draws_nothing)
{
    aria_rng r;
    aria_rng_seed(&r, 0);
    cr_expect_eq(aria_rng_getrandbits(&r, 0), 0u);
    cr_expect_eq(aria_rng_getrandbits(&r, 32), 3626764237u);
}

static void check_randint(uint64_t seed, const int64_t *want, size_t n)
{
    aria_rng r;
    aria_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        int64_t got = aria_rng_randint(&r, -10, 10);
        cr_expect_eq(got, want[i], "seed %llu draw %zu: got %lld want %lld",
                     (unsigned long long)seed, i, (long long)got, (long long)want[i]);
    }
}

/* python3 -c "import random; random.seed(0); print([random.randint(-10,10) for _ in range(20)])" */
Test(rng_randint, seed0)
{
    static const int64_t want[] = {2, 3, -9, -2, 6, 5, 2, -1, 5, 1, 8, -4, 6, -6, -1, -6, -7, 9, -2, 7};
    check_randint(0, want, N_OF(want));
}

/* python3 -c "import random; random.seed(1); print([random.randint(-10,10) for _ in range(20)])" */
Test(rng_randint, seed1)
{
    static const int64_t want[] = {-6, 8, -8, -2, -7, 5, 4, 5, 10, 2, -4, -7, 5, -10, 2, 3, 9, -10, 4, -2};
    check_randint(1, want, N_OF(want));
}

/* python3 -c "import random; random.seed(1234); print([random.randint(-10,10) for _ in range(20)])" */
Test(rng_randint, seed1234)
{
    static const int64_t want[] = {4, -7, -10, -8, 8, -9, -8, -7, 1, -3, -10, -10, -10, 1, 10, 9, 5, 9, 4, -6};
    check_randint(1234, want, N_OF(want));
}

/* python3 -c "import random; random.seed(2**32+5); print([random.randint(-10,10) for _ in range(20)])" */
Test(rng_randint, seed_2_32_plus_5)
{
    static const int64_t want[] = {-5, 5, -1, 9, -10, 1, 10, -5, 5, 1, -3, 0, -4, 6, -5, 2, 4, 9, -6, 3};
    check_randint(SEED_2_32_PLUS_5, want, N_OF(want));
}

/* randint(5, 5) is _randbelow(1): getrandbits(1) rejects 1, so it still
   draws a variable number of words.
   python3 -c "import random; random.seed(0); print([random.randint(5, 5) for _ in range(3)], random.getrandbits(32))" */
Test(rng_randint, single_value_still_draws)
{
    aria_rng r;
    aria_rng_seed(&r, 0);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(aria_rng_randint(&r, 5, 5), 5);
    cr_expect_eq(aria_rng_getrandbits(&r, 32), 1112038970u);
}

/* The full int64 range has width 2^64 (k = 65, three words a draw).
   python3 -c "import random; random.seed(0); print([random.randint(-2**63, 2**63-1) for _ in range(4)])" */
Test(rng_randint, full_int64_range)
{
    static const int64_t want[] = {-1465195632138975614LL, 6084712057446794809LL,
                                   -431710025170174585LL, 86457306059627737LL};
    aria_rng r;
    aria_rng_seed(&r, 0);
    for (size_t i = 0; i < N_OF(want); i++)
        cr_expect_eq(aria_rng_randint(&r, INT64_MIN, INT64_MAX), want[i], "draw %zu", i);
}

/* python3 -c "import random; random.seed(0); print([random.randint(0, 2**63-1) for _ in range(3)])" */
Test(rng_randint, zero_to_int64_max)
{
    static const int64_t want[] = {7106521602475165645LL, 746805015404516437LL, 8963783824838420066LL};
    aria_rng r;
    aria_rng_seed(&r, 0);
    for (size_t i = 0; i < N_OF(want); i++)
        cr_expect_eq(aria_rng_randint(&r, 0, INT64_MAX), want[i], "draw %zu", i);
}

static void check_randbelow(uint64_t n, const uint64_t *want, size_t count)
{
    aria_rng r;
    aria_rng_seed(&r, 0);
    for (size_t i = 0; i < count; i++) {
        uint64_t got = aria_rng_randbelow(&r, n);
        cr_expect_eq(got, want[i], "n=%llu draw %zu: got %llu want %llu",
                     (unsigned long long)n, i, (unsigned long long)got,
                     (unsigned long long)want[i]);
    }
}

/* The randbelow expectations all come from
   python3 -c "import random; random.seed(0); print([random._inst._randbelow(N) for _ in range(8)])"
   with N as in the test name. */
Test(rng_randbelow, n1)
{
    static const uint64_t want[] = {0, 0, 0, 0, 0, 0, 0, 0};
    check_randbelow(1, want, N_OF(want));
}

Test(rng_randbelow, n2)
{
    static const uint64_t want[] = {1, 1, 0, 1, 1, 1, 1, 1};
    check_randbelow(2, want, N_OF(want));
}

Test(rng_randbelow, n3)
{
    static const uint64_t want[] = {1, 1, 0, 1, 2, 1, 1, 1};
    check_randbelow(3, want, N_OF(want));
}

Test(rng_randbelow, n21)
{
    static const uint64_t want[] = {12, 13, 1, 8, 16, 15, 12, 9};
    check_randbelow(21, want, N_OF(want));
}

Test(rng_randbelow, n1000)
{
    static const uint64_t want[] = {864, 394, 776, 911, 430, 41, 265, 988};
    check_randbelow(1000, want, N_OF(want));
}

/* N = 2**40+3 */
Test(rng_randbelow, n_2_40_plus_3)
{
    static const uint64_t want[] = {849735321549ull, 87705687125ull, 1067347797602ull,
                                    788025983492ull, 480641685011ull, 307110291574ull,
                                    306153162355ull, 209404584569ull};
    check_randbelow((1ull << 40) + 3u, want, N_OF(want));
}

/* N = 2**63+1 */
Test(rng_randbelow, n_2_63_plus_1)
{
    static const uint64_t want[] = {7106521602475165645ull, 746805015404516437ull,
                                    8963783824838420066ull, 6604845167042249220ull,
                                    4029557120079369747ull, 2569146471088859254ull,
                                    2577854692418029171ull, 1749318759610081913ull};
    check_randbelow((1ull << 63) + 1u, want, N_OF(want));
}

/* N = 2**64-1 */
Test(rng_randbelow, n_2_64_minus_1)
{
    static const uint64_t want[] = {7106521602475165645ull, 16422101724900707500ull,
                                    746805015404516437ull, 17809683713383489082ull,
                                    8963783824838420066ull, 16938433693753131896ull,
                                    15308084094301570617ull, 17852758786694309641ull};
    check_randbelow(UINT64_MAX, want, N_OF(want));
}

static void check_shuffle(uint64_t seed, const int *want)
{
    int x[10];
    for (int i = 0; i < 10; i++)
        x[i] = i;
    aria_rng r;
    aria_rng_seed(&r, seed);
    aria_rng_shuffle(&r, x, 10, sizeof x[0]);
    for (int i = 0; i < 10; i++)
        cr_expect_eq(x[i], want[i], "seed %llu index %d: got %d want %d",
                     (unsigned long long)seed, i, x[i], want[i]);
}

/* python3 -c "import random; random.seed(0); x=list(range(10)); random.shuffle(x); print(x)" */
Test(rng_shuffle, seed0)
{
    static const int want[10] = {7, 8, 1, 5, 3, 4, 2, 0, 9, 6};
    check_shuffle(0, want);
}

/* python3 -c "import random; random.seed(1); x=list(range(10)); random.shuffle(x); print(x)" */
Test(rng_shuffle, seed1)
{
    static const int want[10] = {6, 8, 9, 7, 5, 3, 0, 4, 1, 2};
    check_shuffle(1, want);
}

/* python3 -c "import random; random.seed(1234); x=list(range(10)); random.shuffle(x); print(x)" */
Test(rng_shuffle, seed1234)
{
    static const int want[10] = {2, 8, 3, 5, 6, 4, 9, 0, 1, 7};
    check_shuffle(1234, want);
}

/* python3 -c "import random; random.seed(2**32+5); x=list(range(10)); random.shuffle(x); print(x)" */
Test(rng_shuffle, seed_2_32_plus_5)
{
    static const int want[10] = {5, 3, 6, 1, 9, 0, 8, 4, 7, 2};
    check_shuffle(SEED_2_32_PLUS_5, want);
}

/* Elements wider than the swap buffer move intact. */
Test(rng_shuffle, wide_elements)
{
    struct wide { int tag; char pad[150]; } x[10];
    static const int want[10] = {7, 8, 1, 5, 3, 4, 2, 0, 9, 6};
    for (int i = 0; i < 10; i++) {
        x[i].tag = i;
        memset(x[i].pad, 'a' + i, sizeof x[i].pad);
    }
    aria_rng r;
    aria_rng_seed(&r, 0);
    aria_rng_shuffle(&r, x, 10, sizeof x[0]);
    for (int i = 0; i < 10; i++) {
        cr_expect_eq(x[i].tag, want[i]);
        cr_expect_eq(x[i].pad[149], 'a' + want[i]);
    }
}

Test(rng_shuffle, empty_and_single_draw_nothing)
{
    int one = 42;
    aria_rng r;
    aria_rng_seed(&r, 0);
    aria_rng_shuffle(&r, NULL, 0, sizeof(int));
    aria_rng_shuffle(&r, &one, 1, sizeof one);
    cr_expect_eq(one, 42);
    cr_expect_eq(aria_rng_u32(&r), 3626764237u);
}

/* python3 -c "import random; random.seed(0); print([random.random() for _ in range(5)])" */
Test(rng_random, seed0)
{
    static const double want[] = {0.8444218515250481, 0.7579544029403025, 0.420571580830845,
                                  0.25891675029296335, 0.5112747213686085};
    aria_rng r;
    aria_rng_seed(&r, 0);
    for (size_t i = 0; i < N_OF(want); i++)
        cr_expect_eq(aria_rng_random(&r), want[i], "draw %zu", i); /* bit-exact */
}

/* python3 -c "import random; random.seed(0); print([random.uniform(0.8,1.2) for _ in range(5)])" */
Test(rng_random, uniform_0_8_1_2)
{
    static const double want[] = {1.1377687406100192, 1.103181761176121, 0.968228632332338,
                                  0.9035667001171853, 1.0045098885474435};
    aria_rng r;
    aria_rng_seed(&r, 0);
    for (size_t i = 0; i < N_OF(want); i++)
        cr_expect_eq(aria_rng_uniform(&r, 0.8, 1.2), want[i], "draw %zu", i);
}

Test(rng_random, range)
{
    aria_rng r;
    aria_rng_seed(&r, 7);
    for (int i = 0; i < 100000; i++) {
        double d = aria_rng_random(&r);
        cr_assert(d >= 0.0 && d < 1.0);
    }
}
