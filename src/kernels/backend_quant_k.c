/*
 * backend_quant_k.c - q4_k matrix products with AVX-512 VNNI (fast
 * precision): the backend "quant_k", asked before the portable one.
 *
 * A q4_k weight is w = d*sc_j*q - dmin*m_j (sub-block j of 32 in a
 * super-block of 256, q in 0..15; kernels.h has the bytes). The
 * activations are quantized once per product (mm_x_prepare), per
 * sub-block of 32: xq = round(x * 127 / max|x|) (int8, nearest even) with
 * the scale dx = max|x| / 127. Then one output is
 *     sum_j d*sc_j*dx_j * dot(q_j, xq_j)  -  sum_j dmin*m_j * (dx_j * sum(xq_j))
 * The first sum: q is unsigned 0..15, xq signed, exactly VPDPBUSD's
 * operands, so no offset needs correcting. The second depends on the
 * weights only through the 8 mins: bx_j = dx_j sum(xq_j) is computed in
 * mm_x_prepare, and each super-block adds the dot product of its 8 mins
 * (times dmin) with them: one 256-bit FMA.
 *
 * The prepared row of x (floats; see kq_stride), per super-block:
 *   256 int8 in the order the weight nibbles come out of a 64-byte load:
 *     the 64 bytes of nibbles of sub-blocks (0, 1, 2, 3) give, AND 0x0f,
 *     sub-blocks 0 and 2 (32 + 32 bytes) and, shifted, 1 and 3; so x is
 *     stored as sub-blocks 0, 2, 1, 3, 4, 6, 5, 7;
 *   64 floats: the dx of those 4 vectors of 2 sub-blocks, each spread over
 *     its 8 lanes, so a vector of integer sums is scaled by one multiply;
 *   8 floats: bx_j in order.
 * Per super-block and row: d and dmin to float32, the 12 bytes of codes
 * unpacked to 8 scales and 8 mins with a few 32-bit operations, turned
 * to float32 vectors; VPERMPS spreads each vector's two scales over its
 * lanes. Tiles of up to 4 tokens reuse every loaded weight vector.
 *
 * The result differs from the exact product of the dequantized weights by
 * the activations' rounding and float32 sums, as the q8_0 / q4_0 VNNI
 * products do (tests/test_quant_k.c checks it against a double reference).
 * A NaN or Inf activation makes its sub-block's dx NaN (its integers mean
 * nothing then), so that token's outputs, and only those, are NaN.
 */
#include "kernels/backend.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(ARIA_PORTABLE)
#include <immintrin.h>

#define VK __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))
#define INLINE static inline __attribute__((always_inline))
#if defined(__clang__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL _Pragma("GCC unroll 16")
#endif

#define SUPER KERN_QK_SUPER
#define XQ_F (SUPER / 4) /* floats of int8 per super-block */
#define DX_F 64          /* spread dx per super-block */
#define BX_F 8           /* bx per super-block */
#define SB_F (XQ_F + DX_F + BX_F)

static size_t kq_stride(int cols) { return (size_t)(cols / SUPER) * SB_F; }

static int kq_supports(kern_op op, const kern_shape *s, aria_precision prec) {
    return op == KERN_OP_MATMUL && prec == ARIA_PREC_FAST && s->dtype == ARIA_DT_Q4_K && s->k % SUPER == 0;
}

static size_t kq_mm_x_floats(const kern_mat *W, int T, size_t *xs) {
    *xs = kq_stride(W->cols);
    return (size_t)T * *xs;
}

/* The sub-block stored in place i (0..7) of a super-block's prepared x. */
static const int kq_order[8] = {0, 2, 1, 3, 4, 6, 5, 7};

VK static void kq_mm_x_prepare(const float *x, int T, const kern_mat *W, float *out) {
    int cols = W->cols, ns = cols / SUPER;
    size_t xs = kq_stride(cols);
    const __m512 z = _mm512_setzero_ps();
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * cols;
        for (int b = 0; b < ns; b++) {
            float *o = out + (size_t)t * xs + (size_t)b * SB_F;
            int8_t *q = (int8_t *)o;
            float *dxs = o + XQ_F, *bx = dxs + DX_F;
            for (int i = 0; i < 8; i++) {
                int j = kq_order[i];
                const float *v = xr + (size_t)b * SUPER + 32 * j;
                __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16);
                float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
                /* x - x is NaN exactly when x is NaN or infinite */
                int bad = (_mm512_cmp_ps_mask(_mm512_sub_ps(v0, v0), z, _CMP_NEQ_UQ) |
                           _mm512_cmp_ps_mask(_mm512_sub_ps(v1, v1), z, _CMP_NEQ_UQ)) != 0;
                float dx = bad ? NAN : amax / 127.0f, id = !bad && amax > 0.0f ? 127.0f / amax : 0.0f;
                __m512 s = _mm512_set1_ps(id);
                __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, s)), i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, s));
                _mm_storeu_si128((__m128i *)(q + 32 * i), _mm512_cvtsepi32_epi8(i0));
                _mm_storeu_si128((__m128i *)(q + 32 * i + 16), _mm512_cvtsepi32_epi8(i1));
                /* place i is half (i & 1) of vector i / 2 */
                for (int l = 0; l < 8; l++) dxs[16 * (i / 2) + 8 * (i & 1) + l] = dx;
                bx[j] = dx * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
            }
        }
    }
}

/* 8 scales and 8 mins (6-bit, in order) of a super-block's 12 packed
   bytes, as 8 bytes each. */
INLINE void kq_unpack(const uint8_t *k12, uint64_t *sc, uint64_t *mn) {
    uint32_t u0, u1, u2;
    memcpy(&u0, k12, 4);
    memcpy(&u1, k12 + 4, 4);
    memcpy(&u2, k12 + 8, 4);
    uint32_t s03 = u0 & 0x3f3f3f3fu, m03 = u1 & 0x3f3f3f3fu;
    uint32_t s47 = (u2 & 0x0f0f0f0fu) | ((u0 >> 6) & 0x03030303u) << 4;
    uint32_t m47 = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 6) & 0x03030303u) << 4;
    *sc = s03 | (uint64_t)s47 << 32;
    *mn = m03 | (uint64_t)m47 << 32;
}

/* Rows [o0, o1) of NT tokens (1..4) of prepared x. */
VK INLINE void kq_rows(const float *x, size_t xs, const kern_mat *W, int o0, int o1, float *y, size_t ys, int acc,
                       const int NT) {
    int cols = W->cols, ns = cols / SUPER;
    size_t rb = (size_t)cols / 2, kb = (size_t)ns * KERN_QK_HEAD;
    const __m512i lo4 = _mm512_set1_epi8(0x0f);
    /* vector v holds sub-blocks (0,2), (1,3), (4,6), (5,7): its lanes 0-7
       take the first's scale, 8-15 the second's */
    const __m512i idx[4] = {_mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0),
                            _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
                            _mm512_set_epi32(6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4),
                            _mm512_set_epi32(7, 7, 7, 7, 7, 7, 7, 7, 5, 5, 5, 5, 5, 5, 5, 5)};
    for (int o = o0; o < o1; o++) {
        const uint8_t *q = (const uint8_t *)W->data + (size_t)o * rb;
        const uint8_t *k = (const uint8_t *)W->scales + (size_t)o * kb;
        /* one accumulator per token and vector position: 4 independent
           chains of multiply-adds, not one 4 deep per super-block */
        __m512 a[4][4];
        __m256 am[4];
        UNROLL for (int t = 0; t < NT; t++) {
            UNROLL for (int v = 0; v < 4; v++) a[t][v] = _mm512_setzero_ps();
            am[t] = _mm256_setzero_ps();
        }
        for (int b = 0; b < ns; b++) {
            const uint8_t *kk = k + (size_t)b * KERN_QK_HEAD;
            uint16_t hd, hm;
            memcpy(&hd, kk, 2);
            memcpy(&hm, kk + 2, 2);
            __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)hd | (uint32_t)hm << 16)));
            uint64_t sc, mn;
            kq_unpack(kk + 4, &sc, &mn);
            __m512 scf = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc))),
                                       _mm512_broadcastss_ps(dd));
            __m256 mf = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mn))),
                                      _mm256_permutevar8x32_ps(_mm256_castps128_ps256(dd), _mm256_set1_epi32(1)));
            __m512i w0 = _mm512_loadu_si512(q + (size_t)b * 128), w1 = _mm512_loadu_si512(q + (size_t)b * 128 + 64);
            __m512i n[4] = {_mm512_and_si512(w0, lo4), _mm512_and_si512(_mm512_srli_epi16(w0, 4), lo4),
                            _mm512_and_si512(w1, lo4), _mm512_and_si512(_mm512_srli_epi16(w1, 4), lo4)};
            __m512 f[4];
            UNROLL for (int v = 0; v < 4; v++) f[v] = _mm512_permutexvar_ps(idx[v], scf);
            UNROLL for (int t = 0; t < NT; t++) {
                const float *xb = x + (size_t)t * xs + (size_t)b * SB_F;
                const int8_t *xq = (const int8_t *)xb;
                UNROLL for (int v = 0; v < 4; v++) {
                    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), n[v], _mm512_loadu_si512(xq + 64 * v));
                    __m512 fx = _mm512_mul_ps(f[v], _mm512_loadu_ps(xb + XQ_F + 16 * v));
                    a[t][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), fx, a[t][v]);
                }
                am[t] = _mm256_fmadd_ps(mf, _mm256_loadu_ps(xb + XQ_F + DX_F), am[t]);
            }
        }
        UNROLL for (int t = 0; t < NT; t++) {
            __m512 a4 = _mm512_add_ps(_mm512_add_ps(a[t][0], a[t][1]), _mm512_add_ps(a[t][2], a[t][3]));
            __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a4), _mm512_extractf32x8_ps(a4, 1));
            h = _mm256_sub_ps(h, am[t]);
            __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
            float s = _mm_cvtss_f32(s4);
            float *yo = y + (size_t)t * ys + o;
            *yo = acc ? *yo + s : s;
        }
    }
}

VK static void kq_rows1(const float *x, size_t xs, const kern_mat *W, int o0, int o1, float *y, size_t ys, int acc) {
    kq_rows(x, xs, W, o0, o1, y, ys, acc, 1);
}
VK static void kq_rows2(const float *x, size_t xs, const kern_mat *W, int o0, int o1, float *y, size_t ys, int acc) {
    kq_rows(x, xs, W, o0, o1, y, ys, acc, 2);
}
VK static void kq_rows3(const float *x, size_t xs, const kern_mat *W, int o0, int o1, float *y, size_t ys, int acc) {
    kq_rows(x, xs, W, o0, o1, y, ys, acc, 3);
}
VK static void kq_rows4(const float *x, size_t xs, const kern_mat *W, int o0, int o1, float *y, size_t ys, int acc) {
    kq_rows(x, xs, W, o0, o1, y, ys, acc, 4);
}

static void kq_mm_block(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y, int ys,
                        int acc) {
    typedef void (*rows_fn)(const float *, size_t, const kern_mat *, int, int, float *, size_t, int);
    static const rows_fn fn[4] = {kq_rows1, kq_rows2, kq_rows3, kq_rows4};
    for (int t = 0; t < T; t += 4) {
        int nt = T - t < 4 ? T - t : 4;
        fn[nt - 1](x + (size_t)t * xs, xs, W, o0, o1, y + (size_t)t * ys, (size_t)ys, acc);
    }
}

static const kern_backend_i quant_k = {
    .name = "quant_k",
    .supports = kq_supports,
    .mm_x_floats = kq_mm_x_floats,
    .mm_x_prepare = kq_mm_x_prepare,
    .mm_block = kq_mm_block,
};

const kern_backend_i *kern_backend_quant_k(void) {
    __builtin_cpu_init();
    return kern_cpu_avx512() && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("f16c") ? &quant_k
                                                                                                       : NULL;
}

#else /* not x86-64, or a PORTABLE build: the portable backend's product */

const kern_backend_i *kern_backend_quant_k(void) { return NULL; }

#endif
