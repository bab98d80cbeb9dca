/*
 * rng.c - random numbers that match CPython 3.11's `random` module bit for
 * bit, so that a seed chooses the same instrument-prefix order and <D>
 * position in C as the reference tokenizer does in Python.
 *
 * How it works: the generator is MT19937 (Matsumoto & Nishimura, 1998)
 * written from the published algorithm. Everything above genrand_uint32
 * follows the CPython code paths exactly, because the point is to consume
 * the same 32-bit words in the same order:
 *   seed(n)        init_by_array over the 32-bit little-endian words of
 *                  |n| ([0] for n = 0), as Modules/_randommodule.c does;
 *   getrandbits(k) one word shifted right by 32 - k (k <= 32); wider
 *                  requests take words least significant first and shift
 *                  only the last, partial word;
 *   _randbelow(n)  rejection sampling on getrandbits(n.bit_length());
 *   randint(a, b)  a + _randbelow(b - a + 1);
 *   random()       two words -> 53-bit double;
 *   shuffle(x)     Fisher-Yates from the top, j = _randbelow(i + 1).
 * A zeroed aria_rng (never seeded) behaves as if seeded with 0, so that a
 * `aria_rng r = {0};` is deterministic instead of producing zeros forever.
 */
#include "aria.h"

#include <string.h>

enum { MT_N = 624, MT_M = 397 };

#define MT_MATRIX_A 0x9908b0dfu
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7fffffffu

/* init_genrand: the linear-congruential fill used before init_by_array. */
static void mt_init(aria_rng *r, uint32_t s)
{
    r->mt[0] = s;
    for (int i = 1; i < MT_N; i++) {
        uint32_t prev = r->mt[i - 1];
        r->mt[i] = 1812433253u * (prev ^ (prev >> 30)) + (uint32_t)i;
    }
    r->mti = MT_N;
}

/* init_by_array: mixes a key of any length into the state. */
static void mt_init_by_array(aria_rng *r, const uint32_t *key, int keylen)
{
    mt_init(r, 19650218u);
    int i = 1, j = 0;
    for (int k = MT_N > keylen ? MT_N : keylen; k > 0; k--) {
        uint32_t prev = r->mt[i - 1];
        r->mt[i] = (r->mt[i] ^ ((prev ^ (prev >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        i++;
        j++;
        if (i >= MT_N) {
            r->mt[0] = r->mt[MT_N - 1];
            i = 1;
        }
        if (j >= keylen)
            j = 0;
    }
    for (int k = MT_N - 1; k > 0; k--) {
        uint32_t prev = r->mt[i - 1];
        r->mt[i] = (r->mt[i] ^ ((prev ^ (prev >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= MT_N) {
            r->mt[0] = r->mt[MT_N - 1];
            i = 1;
        }
    }
    r->mt[0] = 0x80000000u; /* guarantees a non-zero initial state */
    r->mti = MT_N;
}

/* Refills all 624 words at once (the "twist"). */
static void mt_twist(aria_rng *r)
{
    for (int k = 0; k < MT_N; k++) {
        uint32_t y = (r->mt[k] & MT_UPPER) | (r->mt[(k + 1) % MT_N] & MT_LOWER);
        r->mt[k] = r->mt[(k + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
    }
    r->mti = 0;
}

void aria_rng_seed(aria_rng *r, uint64_t seed)
{
    /* CPython splits |n| into as many 32-bit words as its bit length needs;
       zero still gives one word. */
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    mt_init_by_array(r, key, key[1] != 0 ? 2 : 1);
}

uint32_t aria_rng_u32(aria_rng *r)
{
    /* mti is N right after seeding and >= 1 after any draw, so 0 (or any
       out-of-range value) can only mean a zeroed, never-seeded struct. */
    if (r->mti <= 0 || r->mti > MT_N)
        aria_rng_seed(r, 0);
    if (r->mti >= MT_N)
        mt_twist(r);
    uint32_t y = r->mt[r->mti++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint32_t aria_rng_getrandbits(aria_rng *r, int k)
{
    /* Python returns 0 for k = 0 without drawing; k > 32 is clamped (the
       wide case is internal, see getrandbits64). */
    if (k <= 0)
        return 0;
    if (k > 32)
        k = 32;
    return aria_rng_u32(r) >> (32 - k);
}

/* getrandbits(k) for 1 <= k <= 64: whole words least significant first,
   the last word shifted right when k is not a multiple of 32. */
static uint64_t getrandbits64(aria_rng *r, int k)
{
    if (k <= 32)
        return aria_rng_getrandbits(r, k);
    uint64_t lo = aria_rng_u32(r);
    uint64_t hi = aria_rng_u32(r) >> (64 - k);
    return lo | (hi << 32);
}

static int bit_length(uint64_t n)
{
    int k = 0;
    while (n) {
        k++;
        n >>= 1;
    }
    return k;
}

uint64_t aria_rng_randbelow(aria_rng *r, uint64_t n)
{
    /* Python raises for n = 0; we answer 0 without drawing. */
    if (n == 0)
        return 0;
    int k = bit_length(n);
    uint64_t x;
    do
        x = getrandbits64(r, k);
    while (x >= n);
    return x;
}

/* _randbelow(2**64): k = 65, i.e. three words, the third shifted right by
   31; only a zero top bit is accepted. Needed by randint over the full
   int64 range, whose width does not fit in 64 bits. */
static uint64_t randbelow_2_64(aria_rng *r)
{
    for (;;) {
        uint64_t lo = aria_rng_u32(r);
        uint64_t mid = aria_rng_u32(r);
        uint32_t top = aria_rng_u32(r) >> 31;
        if (top == 0)
            return lo | (mid << 32);
    }
}

int64_t aria_rng_randint(aria_rng *r, int64_t a, int64_t b)
{
    /* Python raises for an empty range; we return a without drawing. */
    if (b < a)
        return a;
    /* Unsigned arithmetic: the width of [INT64_MIN, INT64_MAX] is 2^64,
       which wraps to 0 here. */
    uint64_t width = (uint64_t)b - (uint64_t)a + 1u;
    uint64_t off = width != 0 ? aria_rng_randbelow(r, width) : randbelow_2_64(r);
    return (int64_t)((uint64_t)a + off);
}

double aria_rng_random(aria_rng *r)
{
    uint32_t a = aria_rng_u32(r) >> 5, b = aria_rng_u32(r) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

double aria_rng_uniform(aria_rng *r, double a, double b)
{
    return a + (b - a) * aria_rng_random(r);
}

/* Swaps two elements of `size` bytes in chunks, without a size limit. */
static void swap_bytes(unsigned char *x, unsigned char *y, size_t size)
{
    unsigned char tmp[64];
    while (size > 0) {
        size_t c = size < sizeof tmp ? size : sizeof tmp;
        memcpy(tmp, x, c);
        memcpy(x, y, c);
        memcpy(y, tmp, c);
        x += c;
        y += c;
        size -= c;
    }
}

void aria_rng_shuffle(aria_rng *r, void *base, size_t n, size_t size)
{
    unsigned char *p = base;
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)aria_rng_randbelow(r, (uint64_t)i + 1u);
        /* Python swaps even when i == j; with bytes that is a no-op. */
        if (j != i)
            swap_bytes(p + i * size, p + j * size, size);
    }
}
