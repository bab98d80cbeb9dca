/*
 * backend_quant.c - matrix products with block-quantized weights (q8_0,
 * q4_0; formats in kernels.h) on VNNI, in fast precision. Two variants of
 * the same kernels, chosen at run time from the CPU's flags:
 *   avx512vnni: AVX-512 F/BW/VL/DQ with VNNI and F16C, 512-bit vectors;
 *   avxvnni:    AVX2 with AVX-VNNI (VEX, 256-bit: Alder Lake and later,
 *               Zen 5) and F16C, for CPUs without the AVX-512 form.
 * Exact precision, other CPUs and PORTABLE builds use the portable
 * backend's float32 product of the dequantized weights instead.
 *
 * How. Activations are quantized too, as llama.cpp does: mm_x_prepare
 * turns each row of x, once per product, into int8 blocks of 32 (xq)
 * with a float32 scale dx (largest magnitude / 127). A block's dot
 * product is then an integer sum: VPDPBUSD adds four u8 x s8 products
 * into each 32-bit lane. It wants one unsigned operand, and the weights
 * take that role, so that everything that corrects for it depends on x
 * only and is computed once per product, not once per row:
 *   q8_0: w XOR 0x80 = w + 128 (0..255); dot(w + 128, xq) = dot(w, xq) +
 *         128 sum(xq);
 *   q4_0: the nibbles are w + 8 (0..15); dot(w + 8, xq) = dot(w, xq) +
 *         8 sum(xq).
 * So a block adds dw dx isum + dw cx, where cx = -128 dx sum(xq) (q8_0) or
 * -8 dx sum(xq) (q4_0) is stored by mm_x_prepare: the correction is a
 * float dot product of the row's block scales with cx, one FMA per 16
 * blocks, into the same accumulator.
 *
 * The row is walked in groups of 16 blocks (512 weights). Per group and
 * row the 16 float16 weight scales become float32 in one VCVTPH2PS; with
 * one token they are multiplied by its 16 activation scales (stored
 * compactly) and each vector of integer sums takes its blocks' factors
 * from that product with VPERMPS by a constant index; with several, both
 * sides are permuted so and multiplied per vector (16 products of 16
 * lanes would not fit the registers). Nothing in the inner loop is
 * scalar.
 * Both types are multiplied G blocks at a time (G = 4 in 512 bits, 2 in
 * 256) as two vectors, one of the G blocks' first halves (weights
 * 0..15) and one of their second halves, block j in 128-bit lane j;
 * mm_x_prepare stores x per G blocks in the same order, so two chained
 * VPDPBUSD leave each block's sum in its lane, and one conversion and one
 * FMA per token scale G blocks:
 *   q4_0: a vector of nibble bytes is the G blocks; AND 0x0f gives the
 *     first halves, (>> 4) & 0x0f the second.
 *   q8_0: two vectors of whole blocks (A B | C D in 512 bits) are regrouped
 *     into halves by one 128-bit lane shuffle each (VSHUFI64X2,
 *     VPERM2I128). That costs two shuffles per row, shared by the tile's
 *     tokens, and halves the conversions and FMAs per token, which bound
 *     the tiles of several tokens (prefill, variations).
 * Tiles of up to 4 tokens x 4 outputs (x 2 outputs for several tokens
 * in 256 bits: 16 registers) reuse each loaded vector; q4_0 with one
 * token in 512 bits takes 8 outputs (measured faster from memory than 4;
 * q8_0 was slower with 8). For decoding (one token) the product streams
 * the weights once, 1.06 bytes (q8_0) or 0.56 bytes (q4_0) per weight
 * instead of bfloat16's 2, with a software prefetch QPF bytes ahead in
 * each row: with several tokens the hardware's prefetch alone left the
 * loads waiting (batch 4 read memory at half batch 1's rate).
 *
 * The result differs from the exact product of the dequantized weights by
 * the activations' rounding (at most half a step of 1/127 of each block's
 * largest value) and float32 sums: tests/test_backend_ops.c bounds it
 * against a double reference, for both variants. It does not depend on T
 * or on which rows share a call.
 */
#include "kernels/backend.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(ARIA_PORTABLE)
#include <immintrin.h>

#define V512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))
#define V256 __attribute__((target("avx2,avxvnni,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))
#if defined(__clang__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL _Pragma("GCC unroll 16")
#endif

#define QB KERN_QBLOCK
#define GB 16 /* blocks per group */
#define QPF 1024

/* A hint to fetch the line QPF bytes ahead of p in a row of weights. The
   address is formed as an integer: past the matrix's last row it points
   at nothing, and a prefetch there does nothing. */
#define PREFETCH(p) _mm_prefetch((const char *)((uintptr_t)(p) + QPF), _MM_HINT_T0)

/* The prepared row of x, in floats: the int8 values in groups of 16
   blocks (512 bytes; zero past the last block), then the activation
   scales dx of every block, then their corrections cx, each 16 floats a
   group (zero past the last block), so that one vector load fetches a
   group's. */
static int n_groups(int cols) { return (cols / QB + GB - 1) / GB; }
static size_t xq_floats(int cols) { return (size_t)n_groups(cols) * GB * QB / 4; }
static size_t x_stride(int cols) { return xq_floats(cols) + (size_t)n_groups(cols) * GB * 2; }

static int quant_supports(kern_op op, const kern_shape *s, aria_precision prec) {
    return op == KERN_OP_MATMUL && prec == ARIA_PREC_FAST &&
           (s->dtype == ARIA_DT_Q8_0 || s->dtype == ARIA_DT_Q4_0) && s->k % QB == 0;
}

static size_t quant_mm_x_floats(const kern_mat *W, int T, size_t *xs) {
    *xs = x_stride(W->cols);
    return (size_t)T * *xs;
}

/* Where the 16 values of half h (0: weights 0..15, 1: 16..31) of block b
   go in the prepared row: the G first halves of each G blocks, then their
   G second halves (G = g4: 4 in 512 bits, 2 in 256), for both types. */
static inline size_t slot(int b, int h, int g4) {
    return (size_t)(b / g4) * g4 * QB + (size_t)h * g4 * 16 + (size_t)(b % g4) * 16;
}

/* A block's scale dx and the factor id that rounds it; bad: a NaN or
   Inf input, whose scale is NaN so that the token's outputs come out NaN
   as in a float32 product (its integers are 0). */
static inline void block_scale(float amax, int bad, float *dx, float *id) {
    *dx = bad ? NAN : amax / 127.0f;
    *id = !bad && amax > 0.0f ? 127.0f / amax : 0.0f;
}

/* The prepared rows zeroed (the padding stays 0); off: the offset the
   unsigned weights carry, negated (the correction is off dx sum(xq)). */
static void prep_start(int T, const kern_mat *W, float *out, float *off) {
    memset(out, 0, (size_t)T * x_stride(W->cols) * sizeof *out);
    *off = W->dtype == ARIA_DT_Q4_0 ? -8.0f : -128.0f;
}

/* Rows of x as the kernels read them. Rounding: x times 127 / amax in
   float32, to the nearest integer (even on ties), as tests model it. */
V512 static void quant512_mm_x_prepare(const float *x, int T, const kern_mat *W, float *out) {
    int cols = W->cols, nb = cols / QB, g4 = 4;
    size_t xs = x_stride(cols);
    float off;
    prep_start(T, W, out, &off);
    const __m512 z = _mm512_setzero_ps();
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * cols;
        int8_t *q = (int8_t *)(out + (size_t)t * xs);
        float *dx = out + (size_t)t * xs + xq_floats(cols), *cx = dx + (size_t)n_groups(cols) * GB;
        for (int b = 0; b < nb; b++) {
            __m512 v0 = _mm512_loadu_ps(xr + b * QB), v1 = _mm512_loadu_ps(xr + b * QB + 16);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            int bad = (_mm512_cmp_ps_mask(_mm512_sub_ps(v0, v0), z, _CMP_NEQ_UQ) |
                       _mm512_cmp_ps_mask(_mm512_sub_ps(v1, v1), z, _CMP_NEQ_UQ)) != 0;
            float id;
            block_scale(amax, bad, dx + b, &id);
            __m512 s = _mm512_set1_ps(id);
            __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, s)), i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, s));
            cx[b] = off * dx[b] * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
            _mm_storeu_si128((__m128i *)(q + slot(b, 0, g4)), _mm512_cvtsepi32_epi8(i0));
            _mm_storeu_si128((__m128i *)(q + slot(b, 1, g4)), _mm512_cvtsepi32_epi8(i1));
        }
    }
}

/* A short group's n weight scales, zero-padded to 16 (AVX2 has no
   masked 16-bit load). */
static void tail_scales(uint16_t *s16, const uint16_t *s, int n) {
    memset(s16, 0, GB * sizeof *s16);
    memcpy(s16, s, (size_t)n * sizeof *s16);
}

/* ---- 512-bit (AVX-512 VNNI) ------------------------------------------- */


V512 INLINE void store512(__m512 a[4][8], float *y, size_t ys, int o, int acc, const int NT, const int R) {
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) {
        float s = _mm512_reduce_add_ps(a[t][r]);
        float *yo = y + t * ys + o + r;
        *yo = acc ? *yo + s : s;
    }
}

/* One group of nbg blocks (16, or fewer in the row's last group: TAIL)
   of the tile's rows, into a. Each of the 4 steps takes 4 blocks of a
   row as two vectors, w0 with their first halves and w1 with their
   second halves (block j in 128-bit lane j); two chained VPDPBUSD leave
   each block's sum in its lane, so that one conversion and one FMA per
   token scale 4 blocks. A short group reads the weights it lacks as 0
   (masked, so nothing past the row is touched); its x and scales there
   are 0. */
V512 INLINE void group512(const float *x, size_t xs, const kern_mat *W, int o, int g, int nbg, __m512 a[4][8],
                          const int NT, const int R, const int Q4, const int TAIL) {
    const int BB = Q4 ? 16 : 32; /* bytes of integers per block */
    int cols = W->cols, nb = cols / QB;
    size_t rb = (size_t)nb * BB;
    const uint8_t *wq = (const uint8_t *)W->data + (size_t)g * GB * BB;
    size_t xo = xq_floats(cols) + (size_t)g * GB;
    /* one token: the products of the scales (dw dx) per row; more: the
       two sides apart (their product per vector, so that 16 products of
       16 lanes do not crowd the registers out) */
    __m512 d[8], sw[8], sx[4];
    UNROLL for (int r = 0; r < R; r++) {
        const uint16_t *sp = W->scales + (size_t)(o + r) * nb + (size_t)g * GB;
        __m256i h = !TAIL ? _mm256_loadu_si256((const __m256i *)sp)
                          : _mm256_maskz_loadu_epi16((__mmask16)((1u << nbg) - 1), sp);
        sw[r] = _mm512_cvtph_ps(h);
        UNROLL for (int t = 0; t < NT; t++) {
            const float *xt = x + t * xs + xo;
            if (NT == 1) d[r] = _mm512_mul_ps(sw[r], _mm512_loadu_ps(xt));
            a[t][r] = _mm512_fmadd_ps(sw[r], _mm512_loadu_ps(xt + (size_t)n_groups(cols) * GB), a[t][r]);
        }
    }
    UNROLL for (int t = 0; t < NT; t++) sx[t] = _mm512_loadu_ps(x + t * xs + xo);
    const __m512i c80 = _mm512_set1_epi8((char)0x80), lo = _mm512_set1_epi8(15), z = _mm512_setzero_si512();
    UNROLL for (int c = 0; c < 4; c++) {
        /* bytes of these 4 blocks in the row */
        int have = (nbg - 4 * c) * BB;
        __mmask64 m0 = have >= 64 ? ~(__mmask64)0 : have <= 0 ? 0 : (((__mmask64)1 << have) - 1);
        __mmask64 m1 = have >= 128 ? ~(__mmask64)0 : have <= 64 ? 0 : (((__mmask64)1 << (have - 64)) - 1);
        const __m512i idx = _mm512_set_epi32(4 * c + 3, 4 * c + 3, 4 * c + 3, 4 * c + 3, 4 * c + 2, 4 * c + 2,
                                             4 * c + 2, 4 * c + 2, 4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c,
                                             4 * c, 4 * c, 4 * c);
        __m512 px[4];
        if (NT > 1) UNROLL for (int t = 0; t < NT; t++) px[t] = _mm512_permutexvar_ps(idx, sx[t]);
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wp = wq + (size_t)(o + r) * rb + (size_t)c * 4 * BB;
            __m512i w0, w1;
            PREFETCH(wp);
            if (!Q4) PREFETCH(wp + 64);
            if (Q4) {
                /* byte j of a block: weight j low, j + 16 high */
                __m512i v = !TAIL ? _mm512_loadu_si512(wp) : _mm512_maskz_loadu_epi8(m0, wp);
                w0 = _mm512_and_si512(v, lo);
                w1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo);
            } else {
                /* blocks A B in v0, C D in v1 (halves A0 A1 B0 B1 ...):
                   w0 = A0 B0 C0 D0, w1 = A1 B1 C1 D1 */
                __m512i v0 = !TAIL ? _mm512_loadu_si512(wp) : _mm512_maskz_loadu_epi8(m0, wp);
                __m512i v1 = !TAIL ? _mm512_loadu_si512(wp + 64) : _mm512_maskz_loadu_epi8(m1, wp + 64);
                v0 = _mm512_xor_si512(v0, c80);
                v1 = _mm512_xor_si512(v1, c80);
                w0 = _mm512_shuffle_i64x2(v0, v1, 0x88);
                w1 = _mm512_shuffle_i64x2(v0, v1, 0xdd);
            }
            __m512 pw = _mm512_permutexvar_ps(idx, NT == 1 ? d[r] : sw[r]);
            UNROLL for (int t = 0; t < NT; t++) {
                const int8_t *xt = (const int8_t *)(x + t * xs) + (size_t)g * GB * QB + (size_t)c * 128;
                __m512i i = _mm512_dpbusd_epi32(z, w0, _mm512_loadu_si512(xt));
                i = _mm512_dpbusd_epi32(i, w1, _mm512_loadu_si512(xt + 64));
                __m512 sc = NT == 1 ? pw : _mm512_mul_ps(pw, px[t]);
                a[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), sc, a[t][r]);
            }
        }
    }
}

/* y[t][o + r] (+)= x[t] . W[o + r] for t < NT, r < R. */
V512 INLINE void tile512(const float *x, size_t xs, const kern_mat *W, int o, float *y, size_t ys, int acc,
                         const int NT, const int R, const int Q4) {
    int nb = W->cols / QB, full = nb / GB, rest = nb % GB;
    __m512 a[4][8];
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) a[t][r] = _mm512_setzero_ps();
    for (int g = 0; g < full; g++) group512(x, xs, W, o, g, GB, a, NT, R, Q4, 0);
    if (rest) group512(x, xs, W, o, full, rest, a, NT, R, Q4, 1);
    store512(a, y, ys, o, acc, NT, R);
}

/* ---- 256-bit (AVX-VNNI) ----------------------------------------------- */

/* As quant512_mm_x_prepare, 8 lanes at a time, in pairs of blocks. */
V256 static void quant256_mm_x_prepare(const float *x, int T, const kern_mat *W, float *out) {
    int cols = W->cols, nb = cols / QB, g4 = 2;
    size_t xs = x_stride(cols);
    float off;
    prep_start(T, W, out, &off);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * cols;
        int8_t *q = (int8_t *)(out + (size_t)t * xs);
        float *dx = out + (size_t)t * xs + xq_floats(cols), *cx = dx + (size_t)n_groups(cols) * GB;
        for (int b = 0; b < nb; b++) {
            __m256 v[4], m = _mm256_setzero_ps(), e = _mm256_setzero_ps();
            for (int k = 0; k < 4; k++) {
                v[k] = _mm256_loadu_ps(xr + b * QB + 8 * k);
                m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
                e = _mm256_or_ps(e, _mm256_cmp_ps(_mm256_sub_ps(v[k], v[k]), _mm256_setzero_ps(), _CMP_NEQ_UQ));
            }
            __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            h = _mm_max_ps(h, _mm_movehl_ps(h, h));
            h = _mm_max_ss(h, _mm_movehdup_ps(h));
            float id;
            block_scale(_mm_cvtss_f32(h), _mm256_movemask_ps(e) != 0, dx + b, &id);
            __m256 s = _mm256_set1_ps(id);
            __m256i i[4];
            for (int k = 0; k < 4; k++) i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], s));
            __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
            cx[b] = off * dx[b] * (float)_mm_cvtsi128_si32(s4);
            /* |values| <= 127: the saturating packs keep them; their lane
               order is undone by one permutation */
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
            p = _mm256_permutevar8x32_epi32(p, order);
            _mm_storeu_si128((__m128i *)(q + slot(b, 0, g4)), _mm256_castsi256_si128(p));
            _mm_storeu_si128((__m128i *)(q + slot(b, 1, g4)), _mm256_extracti128_si256(p, 1));
        }
    }
}

V256 INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

V256 INLINE void store256(__m256 a[4][4], float *y, size_t ys, int o, int acc, const int NT, const int R) {
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) {
        float s = hsum256(a[t][r]);
        float *yo = y + t * ys + o + r;
        *yo = acc ? *yo + s : s;
    }
}

/* As group512 with 32-byte vectors: each of the 8 steps takes 2 blocks
   of a row (block j in 128-bit lane j); a short group's missing blocks
   are zeros, not loads. */
V256 INLINE void group256(const float *x, size_t xs, const kern_mat *W, int o, int g, int nbg, __m256 a[4][4],
                          const int NT, const int R, const int Q4, const int TAIL) {
    const int BB = Q4 ? 16 : 32; /* bytes of integers per block */
    int cols = W->cols, nb = cols / QB;
    size_t rb = (size_t)nb * BB;
    const uint8_t *wq = (const uint8_t *)W->data + (size_t)g * GB * BB;
    size_t xo = xq_floats(cols) + (size_t)g * GB, ng = (size_t)n_groups(cols);
    __m256 d[4][2], sw[4][2];
    UNROLL for (int r = 0; r < R; r++) {
        const uint16_t *sp = W->scales + (size_t)(o + r) * nb + (size_t)g * GB;
        uint16_t s16[GB];
        if (TAIL) tail_scales(s16, sp, nbg), sp = s16;
        sw[r][0] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sp));
        sw[r][1] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sp + 8)));
        UNROLL for (int t = 0; t < NT; t++) {
            const float *xt = x + t * xs + xo;
            if (NT == 1) {
                d[r][0] = _mm256_mul_ps(sw[r][0], _mm256_loadu_ps(xt));
                d[r][1] = _mm256_mul_ps(sw[r][1], _mm256_loadu_ps(xt + 8));
            }
            a[t][r] = _mm256_fmadd_ps(sw[r][0], _mm256_loadu_ps(xt + ng * GB), a[t][r]);
            a[t][r] = _mm256_fmadd_ps(sw[r][1], _mm256_loadu_ps(xt + ng * GB + 8), a[t][r]);
        }
    }
    const __m256i c80 = _mm256_set1_epi8((char)0x80), lo = _mm256_set1_epi8(15), z = _mm256_setzero_si256();
    UNROLL for (int c = 0; c < 8; c++) {
        /* blocks of these 2 in the row */
        int have = TAIL ? nbg - 2 * c : 2;
        const int h = c / 4, k = 2 * (c % 4);
        const __m256i idx = _mm256_set_epi32(k + 1, k + 1, k + 1, k + 1, k, k, k, k);
        __m256 px[4];
        if (NT > 1)
            UNROLL for (int t = 0; t < NT; t++) px[t] = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + t * xs + xo + 8 * h), idx);
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *wp = wq + (size_t)(o + r) * rb + (size_t)c * 2 * BB;
            __m256i w0, w1;
            if (!Q4 || c % 2 == 0) PREFETCH(wp);
            if (Q4) {
                __m256i v = have >= 2   ? _mm256_loadu_si256((const __m256i *)wp)
                            : have == 1 ? _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)wp))
                                        : z;
                w0 = _mm256_and_si256(v, lo);
                w1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo);
            } else {
                /* block A in v0, B in v1: w0 = A0 B0, w1 = A1 B1 */
                __m256i v0 = have >= 1 ? _mm256_loadu_si256((const __m256i *)wp) : z;
                __m256i v1 = have >= 2 ? _mm256_loadu_si256((const __m256i *)(wp + 32)) : z;
                v0 = _mm256_xor_si256(v0, c80);
                v1 = _mm256_xor_si256(v1, c80);
                w0 = _mm256_permute2x128_si256(v0, v1, 0x20);
                w1 = _mm256_permute2x128_si256(v0, v1, 0x31);
            }
            __m256 pw = _mm256_permutevar8x32_ps(NT == 1 ? d[r][h] : sw[r][h], idx);
            UNROLL for (int t = 0; t < NT; t++) {
                const int8_t *xt = (const int8_t *)(x + t * xs) + (size_t)g * GB * QB + (size_t)c * 64;
                __m256i i = _mm256_dpbusd_avx_epi32(z, w0, _mm256_loadu_si256((const __m256i *)xt));
                i = _mm256_dpbusd_avx_epi32(i, w1, _mm256_loadu_si256((const __m256i *)(xt + 32)));
                __m256 sc = NT == 1 ? pw : _mm256_mul_ps(pw, px[t]);
                a[t][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), sc, a[t][r]);
            }
        }
    }
}

V256 INLINE void tile256(const float *x, size_t xs, const kern_mat *W, int o, float *y, size_t ys, int acc,
                         const int NT, const int R, const int Q4) {
    int nb = W->cols / QB, full = nb / GB, rest = nb % GB;
    __m256 a[4][4];
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) a[t][r] = _mm256_setzero_ps();
    for (int g = 0; g < full; g++) group256(x, xs, W, o, g, GB, a, NT, R, Q4, 0);
    if (rest) group256(x, xs, W, o, full, rest, a, NT, R, Q4, 1);
    store256(a, y, ys, o, acc, NT, R);
}

/* ---- the row loops, one specialisation per (variant, type, tokens) ---- */

/* RT outputs at a time, then singles. The 256-bit form has 16 registers,
   not 32: its tiles of several tokens take 2 outputs, so that the
   accumulators and the vectors they share fit; 512-bit q4_0 decoding
   takes 8 (see the top). */
#define MM_ROWS(ATTR, NAME, TILE, NT, RT, Q4)                                                                \
    ATTR static void NAME(const float *x, size_t xs, const kern_mat *W, int o0, int o1, float *y, size_t ys, \
                          int acc) {                                                                         \
        int o = o0;                                                                                          \
        for (; o + RT <= o1; o += RT) TILE(x, xs, W, o, y, ys, acc, NT, RT, Q4);                            \
        for (; o < o1; o++) TILE(x, xs, W, o, y, ys, acc, NT, 1, Q4);                                       \
    }
MM_ROWS(V512, mm512_q8_1, tile512, 1, 4, 0)
MM_ROWS(V512, mm512_q8_2, tile512, 2, 4, 0)
MM_ROWS(V512, mm512_q8_3, tile512, 3, 4, 0)
MM_ROWS(V512, mm512_q8_4, tile512, 4, 4, 0)
MM_ROWS(V512, mm512_q4_1, tile512, 1, 8, 1)
MM_ROWS(V512, mm512_q4_2, tile512, 2, 4, 1)
MM_ROWS(V512, mm512_q4_3, tile512, 3, 4, 1)
MM_ROWS(V512, mm512_q4_4, tile512, 4, 4, 1)
MM_ROWS(V256, mm256_q8_1, tile256, 1, 4, 0)
MM_ROWS(V256, mm256_q8_2, tile256, 2, 2, 0)
MM_ROWS(V256, mm256_q8_3, tile256, 3, 2, 0)
MM_ROWS(V256, mm256_q8_4, tile256, 4, 2, 0)
MM_ROWS(V256, mm256_q4_1, tile256, 1, 4, 1)
MM_ROWS(V256, mm256_q4_2, tile256, 2, 2, 1)
MM_ROWS(V256, mm256_q4_3, tile256, 3, 2, 1)
MM_ROWS(V256, mm256_q4_4, tile256, 4, 2, 1)

typedef void (*mm_rows_fn)(const float *, size_t, const kern_mat *, int, int, float *, size_t, int);

/* Tokens in tiles of 4 (the last one smaller). */
static void mm_tokens(const mm_rows_fn fn[4], const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1,
                      float *y, int ys, int acc) {
    for (int t = 0; t < T; t += 4) {
        int nt = T - t < 4 ? T - t : 4;
        fn[nt - 1](x + (size_t)t * xs, xs, W, o0, o1, y + (size_t)t * ys, (size_t)ys, acc);
    }
}

static void quant512_mm_block(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y, int ys,
                              int acc) {
    static const mm_rows_fn q8[4] = {mm512_q8_1, mm512_q8_2, mm512_q8_3, mm512_q8_4};
    static const mm_rows_fn q4[4] = {mm512_q4_1, mm512_q4_2, mm512_q4_3, mm512_q4_4};
    mm_tokens(W->dtype == ARIA_DT_Q4_0 ? q4 : q8, x, xs, T, W, o0, o1, y, ys, acc);
}

static void quant256_mm_block(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y, int ys,
                              int acc) {
    static const mm_rows_fn q8[4] = {mm256_q8_1, mm256_q8_2, mm256_q8_3, mm256_q8_4};
    static const mm_rows_fn q4[4] = {mm256_q4_1, mm256_q4_2, mm256_q4_3, mm256_q4_4};
    mm_tokens(W->dtype == ARIA_DT_Q4_0 ? q4 : q8, x, xs, T, W, o0, o1, y, ys, acc);
}

/* Both are "quant" to dispatch: one backend, two instruction sets. */
static const kern_backend_i quant512 = {
    .name = "quant",
    .supports = quant_supports,
    .mm_x_floats = quant_mm_x_floats,
    .mm_x_prepare = quant512_mm_x_prepare,
    .mm_block = quant512_mm_block,
};

static const kern_backend_i quant256 = {
    .name = "quant",
    .supports = quant_supports,
    .mm_x_floats = quant_mm_x_floats,
    .mm_x_prepare = quant256_mm_x_prepare,
    .mm_block = quant256_mm_block,
};

const kern_backend_i *kern_backend_quant_variant(const char *name) {
    return name ? kern_vnni_form(name, &quant512, &quant256) : NULL;
}

const kern_backend_i *kern_backend_quant(const char **desc) {
    const kern_backend_i *b = kern_vnni_form(NULL, &quant512, &quant256);
    if (desc) *desc = b == &quant512 ? "vnni" : b ? "avx-vnni" : "";
    return b;
}

#else /* not x86-64, or a PORTABLE build: the portable backend's product */

const kern_backend_i *kern_backend_quant_variant(const char *name) {
    (void)name;
    return NULL;
}

const kern_backend_i *kern_backend_quant(const char **desc) {
    if (desc) *desc = "";
    return NULL;
}

#endif
