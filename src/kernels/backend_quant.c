/*
 * backend_quant.c - matrix products with block-quantized weights (q8_0,
 * q4_0; formats in kernels.h) on AVX-512 VNNI, in fast precision. Offered
 * when the CPU reports AVX-512 F/BW/VL/DQ, VNNI and F16C; exact precision,
 * other CPUs and PORTABLE builds use the portable backend's float32
 * product of the dequantized weights instead.
 *
 * How. Activations are quantized too, as llama.cpp does: mm_x_prepare
 * turns each row of x, once per product, into int8 blocks of 32 with a
 * float32 scale (largest magnitude / 127). A block's dot product is then
 * an integer sum, VPDPBUSD adding four u8 x s8 products into each 32-bit
 * lane: 64 bytes (two blocks) per instruction, lanes 0-7 holding the first
 * block's partial sums and lanes 8-15 the second's. VPDPBUSD wants one
 * unsigned operand, so
 *   q8_0: x + 128 is the unsigned side and the weights the signed one;
 *         the 128 sum(w) this adds is taken off by starting the sum from
 *         -VPDPBUSD(128, w), computed once per weight vector;
 *   q4_0: the nibbles (0..15) are the unsigned side and x the signed one;
 *         the 8 sum(x) the offset of 8 adds is taken off the same way,
 *         once per activation vector.
 * The integer sums become float32 and are scaled by (weight scale x
 * activation scale) per block, lane-wise, into float32 accumulators.
 * Tiles of up to 4 tokens x 4 outputs reuse each loaded vector; for
 * decoding (one token) the product streams the weights once, 1.06 bytes
 * (q8_0) or 0.56 bytes (q4_0) per weight instead of bfloat16's 2.
 *
 * The result differs from the exact product of the dequantized weights by
 * the activations' rounding (at most half a step of 1/127 of each block's
 * largest value): tests/test_backend_ops.c bounds it against a double
 * reference. It does not depend on T or on which rows share a call.
 */
#include "kernels/backend.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(ARIA_PORTABLE)
#include <immintrin.h>

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))
#define INLINE static inline __attribute__((always_inline))
#if defined(__clang__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL _Pragma("GCC unroll 8")
#endif

#define QB KERN_QBLOCK

/* The prepared row of x: cols int8 values, then per chunk of 64 inputs
   16 float32 scales (8 copies of each of its two blocks' scales, lane for
   lane as VPDPBUSD lays the sums out; 0 for a missing second block). */
static size_t n_chunks(int cols) { return ((size_t)cols + 63) / 64; }
static size_t x_stride(int cols) { return (size_t)cols / 4 + n_chunks(cols) * 16; }

static int quant_supports(kern_op op, const kern_shape *s, aria_precision prec) {
    return op == KERN_OP_MATMUL && prec == ARIA_PREC_FAST && kern_dtype_quantized(s->dtype) && s->k % QB == 0;
}

static size_t quant_mm_x_floats(const kern_mat *W, int T, size_t *xs) {
    *xs = x_stride(W->cols);
    return (size_t)T * *xs;
}

VNNI static void quant_mm_x_prepare(const float *x, int T, const kern_mat *W, float *out) {
    int cols = W->cols, nb = cols / QB;
    size_t xs = x_stride(cols);
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * cols;
        int8_t *q = (int8_t *)(out + (size_t)t * xs);
        float *sc = out + (size_t)t * xs + cols / 4;
        for (int b = 0; b < nb; b++) {
            __m512 v0 = _mm512_loadu_ps(xr + b * QB), v1 = _mm512_loadu_ps(xr + b * QB + 16);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
            /* a NaN or Inf input: the block's scale is NaN, so the token's
               outputs come out NaN as in a float32 product */
            const __m512 z = _mm512_setzero_ps();
            if (_mm512_cmp_ps_mask(_mm512_sub_ps(v0, v0), z, _CMP_NEQ_UQ) |
                _mm512_cmp_ps_mask(_mm512_sub_ps(v1, v1), z, _CMP_NEQ_UQ))
                d = NAN, id = 0.0f;
            __m512 s = _mm512_set1_ps(id);
            /* round to nearest (even); |x id| <= 127, so no saturation */
            __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, s)), i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, s));
            _mm_storeu_si128((__m128i *)(q + b * QB), _mm512_cvtsepi32_epi8(i0));
            _mm_storeu_si128((__m128i *)(q + b * QB + 16), _mm512_cvtsepi32_epi8(i1));
            _mm256_storeu_ps(sc + (size_t)(b / 2) * 16 + (b % 2) * 8, _mm256_set1_ps(d));
        }
        if (nb % 2) _mm256_storeu_ps(sc + (size_t)(nb / 2) * 16 + 8, _mm256_setzero_ps());
    }
}

/* Two blocks' float16 weight scales as 16 lanes: 8 of the first, 8 of
   the second (0 when there is no second). */
VNNI INLINE __m512 pair_scales(const uint16_t *s, int two) {
    uint32_t u = s[0];
    if (two) u |= (uint32_t)s[1] << 16;
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)u));
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

VNNI INLINE void store_tile(__m512 a[4][4], float *y, size_t ys, int o, int acc, const int NT, const int R) {
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) {
        float s = _mm512_reduce_add_ps(a[t][r]);
        float *yo = y + t * ys + o + r;
        *yo = acc ? *yo + s : s;
    }
}

/* q8_0: y[t][o + r] (+)= x[t] . W[o + r] for t < NT, r < R. */
VNNI INLINE void tile_q8(const float *x, size_t xs, const kern_mat *W, int o, float *y, size_t ys, int acc,
                         const int NT, const int R) {
    int cols = W->cols, nb = cols / QB;
    const int8_t *wq = (const int8_t *)W->data;
    const __m512i c128 = _mm512_set1_epi8((char)0x80);
    __m512 a[4][4];
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) a[t][r] = _mm512_setzero_ps();
    for (int k = 0, c = 0; k < cols; k += 64, c++) {
        int two = cols - k >= 64;
        __mmask64 m = two ? ~(__mmask64)0 : (__mmask64)0xffffffffu;
        __m512i xu[4];
        __m512 xd[4];
        UNROLL for (int t = 0; t < NT; t++) {
            const float *xr = x + t * xs;
            xu[t] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, (const int8_t *)xr + k), c128);
            xd[t] = _mm512_loadu_ps(xr + cols / 4 + (size_t)c * 16);
        }
        UNROLL for (int r = 0; r < R; r++) {
            __m512i w = _mm512_maskz_loadu_epi8(m, wq + (size_t)(o + r) * cols + k);
            __m512i ncorr = _mm512_sub_epi32(_mm512_setzero_si512(),
                                             _mm512_dpbusd_epi32(_mm512_setzero_si512(), c128, w));
            __m512 dw = pair_scales(W->scales + (size_t)(o + r) * nb + 2 * c, two);
            UNROLL for (int t = 0; t < NT; t++) {
                __m512i i = _mm512_dpbusd_epi32(ncorr, xu[t], w);
                a[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dw, xd[t]), a[t][r]);
            }
        }
    }
    store_tile(a, y, ys, o, acc, NT, R);
}

/* q4_0: the same with two blocks' 32 bytes of nibbles per step. */
VNNI INLINE void tile_q4(const float *x, size_t xs, const kern_mat *W, int o, float *y, size_t ys, int acc,
                         const int NT, const int R) {
    int cols = W->cols, nb = cols / QB;
    size_t rb = (size_t)cols / 2;
    const uint8_t *wq = (const uint8_t *)W->data;
    const __m512i c8 = _mm512_set1_epi8(8), lo = _mm512_set1_epi8(15);
    __m512 a[4][4];
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) a[t][r] = _mm512_setzero_ps();
    for (int k = 0, c = 0; k < cols; k += 64, c++) {
        int two = cols - k >= 64;
        __mmask64 m = two ? ~(__mmask64)0 : (__mmask64)0xffffffffu;
        __mmask32 m32 = two ? ~(__mmask32)0 : (__mmask32)0xffffu;
        __m512i xv[4], ncx[4];
        __m512 xd[4];
        UNROLL for (int t = 0; t < NT; t++) {
            const float *xr = x + t * xs;
            xv[t] = _mm512_maskz_loadu_epi8(m, (const int8_t *)xr + k);
            ncx[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), c8, xv[t]));
            xd[t] = _mm512_loadu_ps(xr + cols / 4 + (size_t)c * 16);
        }
        UNROLL for (int r = 0; r < R; r++) {
            __m256i v = _mm256_maskz_loadu_epi8(m32, wq + (size_t)(o + r) * rb + (size_t)k / 2);
            /* [block 0, block 0, block 1, block 1] in 128-bit lanes, the
               second copy of each shifted to its high nibbles */
            __m512i z = _mm512_castsi256_si512(v);
            z = _mm512_shuffle_i64x2(z, z, 0x50);
            z = _mm512_mask_srli_epi16(z, (__mmask32)0xff00ff00u, z, 4);
            __m512i w = _mm512_and_si512(z, lo);
            __m512 dw = pair_scales(W->scales + (size_t)(o + r) * nb + 2 * c, two);
            UNROLL for (int t = 0; t < NT; t++) {
                __m512i i = _mm512_dpbusd_epi32(ncx[t], w, xv[t]);
                a[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dw, xd[t]), a[t][r]);
            }
        }
    }
    store_tile(a, y, ys, o, acc, NT, R);
}

/* One specialisation per (tokens, type): 4 outputs at a time, then
   singles. */
#define MM_ROWS(NAME, NT, TILE)                                                                             \
    VNNI static void NAME(const float *x, size_t xs, const kern_mat *W, int o0, int o1, float *y, size_t ys, \
                          int acc) {                                                                        \
        int o = o0;                                                                                         \
        for (; o + 4 <= o1; o += 4) TILE(x, xs, W, o, y, ys, acc, NT, 4);                                  \
        for (; o < o1; o++) TILE(x, xs, W, o, y, ys, acc, NT, 1);                                          \
    }
MM_ROWS(mm_q8_1, 1, tile_q8)
MM_ROWS(mm_q8_2, 2, tile_q8)
MM_ROWS(mm_q8_3, 3, tile_q8)
MM_ROWS(mm_q8_4, 4, tile_q8)
MM_ROWS(mm_q4_1, 1, tile_q4)
MM_ROWS(mm_q4_2, 2, tile_q4)
MM_ROWS(mm_q4_3, 3, tile_q4)
MM_ROWS(mm_q4_4, 4, tile_q4)

typedef void (*mm_rows_fn)(const float *, size_t, const kern_mat *, int, int, float *, size_t, int);

static void quant_mm_block(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y, int ys,
                           int acc) {
    static const mm_rows_fn q8[4] = {mm_q8_1, mm_q8_2, mm_q8_3, mm_q8_4};
    static const mm_rows_fn q4[4] = {mm_q4_1, mm_q4_2, mm_q4_3, mm_q4_4};
    const mm_rows_fn *fn = W->dtype == ARIA_DT_Q4_0 ? q4 : q8;
    for (int t = 0; t < T; t += 4) {
        int nt = T - t < 4 ? T - t : 4;
        fn[nt - 1](x + (size_t)t * xs, xs, W, o0, o1, y + (size_t)t * ys, (size_t)ys, acc);
    }
}

static const kern_backend_i quant = {
    .name = "quant",
    .supports = quant_supports,
    .mm_x_floats = quant_mm_x_floats,
    .mm_x_prepare = quant_mm_x_prepare,
    .mm_block = quant_mm_block,
};

const kern_backend_i *kern_backend_quant(const char **desc) {
    int ok = kern_cpu_avx512() && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("f16c");
    if (desc) *desc = ok ? "vnni" : "";
    return ok ? &quant : NULL;
}

#else /* not x86-64, or a PORTABLE build: the portable backend's product */

const kern_backend_i *kern_backend_quant(const char **desc) {
    if (desc) *desc = "";
    return NULL;
}

#endif
