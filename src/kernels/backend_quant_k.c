/*
 * backend_quant_k.c - q4_k matrix products with VNNI (fast precision):
 * the backend "quant_k", asked before the portable one. Two variants,
 * chosen at run time as backend_quant.c chooses its own: avx512vnni
 * (512-bit, described below) and avxvnni (AVX2 with AVX-VNNI, 256-bit,
 * for CPUs without the first: one row and one token at a time, the same
 * prepared activations; see kq256_dot).
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
 * (times dmin) with them.
 *
 * The prepared row of x (floats; see kq_stride), per super-block:
 *   256 int8 in the order the weight nibbles come out of a 64-byte load:
 *     the 64 bytes of nibbles of sub-blocks (0, 1, 2, 3) give, AND 0x0f,
 *     sub-blocks 0 and 2 (32 + 32 bytes) and, AND 0xf0, 16 times 1 and 3;
 *     so x is stored as sub-blocks 0, 2, 1, 3, 4, 6, 5, 7;
 *   16 floats: the dx of the sub-blocks in the lane order of kq_reduce's
 *     sums (the odd sub-blocks' divided by 16: their nibbles are not
 *     shifted down);
 *   16 floats: those dx in order, then bx_j in order.
 * Tiles of up to 4 rows x 4 tokens, so each loaded weight vector serves
 * every token and each activation vector every row. Per super-block:
 *   the 16-byte heads of the tile's rows, one per 128-bit lane, are
 *   unpacked to 8 scales and 8 mins each by two byte shuffles and a few
 *   masks for all rows at once (no scalar bit fiddling), and turned into
 *   float vectors [d*sc_j, dmin*m_j];
 *   per row and token: 4 VPDPBUSD (two sub-blocks each, 8 lanes a
 *   sub-block) are added down to one vector of 16 sums, 2 per sub-block
 *   (three rounds of unpack and add: integer work instead of 4
 *   conversions and 4 multiply-adds), then one conversion and one FMA by
 *   the factors d*sc_j*dx_j in that lane order;
 *   the mins' term, [d*sc, dmin*m] times [dx, bx] with its lower half
 *   masked off, is subtracted from the same accumulator.
 * With one token the row's factors are multiplied by dx before they are
 * spread (one multiply per row, not per token); with one or two (decoding,
 * whose weights stream from memory) the tile prefetches its rows' weights
 * KQ_PF bytes ahead, so that the next lines are in flight while it
 * computes (more tokens have work enough to hide the wait).
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
#define V256 __attribute__((target("avx2,avxvnni,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))
#if defined(__clang__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL _Pragma("GCC unroll 16")
#endif

#define SUPER KERN_QK_SUPER
#define XQ_F (SUPER / 4) /* floats of int8 per super-block */
#define DX_F 16          /* dx in the order of the reduced sums (kq_lane) */
#define DB_F 16          /* dx in order, then bx */
#define SB_F (XQ_F + DX_F + DB_F)
#ifndef KQ_PF
#define KQ_PF 1024 /* bytes ahead of each weight row that a tile prefetches */
#endif

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
/* The sub-block whose integer sum lane l of kq_reduce's result holds. */
static const int kq_lane[16] = {0, 1, 4, 5, 0, 1, 4, 5, 2, 3, 6, 7, 2, 3, 6, 7};

VK static void kq_mm_x_prepare(const float *x, int T, const kern_mat *W, float *out) {
    int cols = W->cols, ns = cols / SUPER;
    size_t xs = kq_stride(cols);
    const __m512 z = _mm512_setzero_ps();
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * cols;
        for (int b = 0; b < ns; b++) {
            float *o = out + (size_t)t * xs + (size_t)b * SB_F;
            int8_t *q = (int8_t *)o;
            float *dxr = o + XQ_F, *db = dxr + DX_F;
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
                float dq = j & 1 ? dx * 0.0625f : dx; /* odd j: the high nibbles, read as 16 q */
                for (int l = 0; l < 16; l++)
                    if (kq_lane[l] == j) dxr[l] = dq;
                db[j] = dq;
                db[8 + j] = dx * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
            }
        }
    }
}

/* 128-bit lane r of a vector, and a vector with lane r replaced: the
   lane must be an immediate, which a switch gives at any optimisation
   level (r is a constant wherever these are inlined, so it folds away). */
VK INLINE __m128i kq_extract(__m512i u, int r) {
    switch (r) {
    case 0: return _mm512_castsi512_si128(u);
    case 1: return _mm512_extracti32x4_epi32(u, 1);
    case 2: return _mm512_extracti32x4_epi32(u, 2);
    default: return _mm512_extracti32x4_epi32(u, 3);
    }
}
VK INLINE __m512i kq_insert(__m512i u, __m128i v, int r) {
    switch (r) {
    case 0: return _mm512_inserti32x4(u, v, 0);
    case 1: return _mm512_inserti32x4(u, v, 1);
    case 2: return _mm512_inserti32x4(u, v, 2);
    default: return _mm512_inserti32x4(u, v, 3);
    }
}

/* The heads (16 bytes: d, dmin, 12 bytes of codes) of super-block b of
   R rows (1..4) from row o, one row per 128-bit lane (lanes past R zero),
   as R vectors of floats [d*sc_0..7, dmin*m_0..7]. The codes of all rows
   are unpacked at once with two byte shuffles per lane (which bytes hold
   which bits: kernels.h), not bit by bit. */
VK INLINE void kq_heads(const uint8_t *k, size_t kb, int b, __m512 sd[4], const int R) {
    __m512i h = _mm512_setzero_si512();
    UNROLL for (int r = 0; r < R; r++)
        h = kq_insert(h, _mm_loadu_si128((const __m128i *)(k + (size_t)r * kb + (size_t)b * KERN_QK_HEAD)), r);
    /* low bits: sc_0..3 = k0..3 & 63, sc_4..7 = k8..11 & 15, m_0..3 =
       k4..7 & 63, m_4..7 = k8..11 >> 4 (byte j of the codes is byte j + 4
       of the head) */
    const __m512i sp = _mm512_broadcast_i32x4(_mm_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i m1 = _mm512_broadcast_i32x4(_mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0));
    const __m512i m2 = _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0, 0, 0x0f0f0f0f));
    __m512i p = _mm512_shuffle_epi8(h, sp);
    __m512i lo = _mm512_or_si512(_mm512_and_si512(p, m1), _mm512_and_si512(_mm512_srli_epi16(p, 4), m2));
    /* high 2 bits of sc_4..7 and m_4..7: the tops of k0..3 and k4..7,
       moved from bits 6-7 to 4-5 */
    const __m512i hp = _mm512_broadcast_i32x4(
        _mm_setr_epi8(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11));
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(_mm512_shuffle_epi8(h, hp), 2), _mm512_set1_epi8(0x30));
    __m512i u = _mm512_or_si512(lo, hi);
    /* d, dmin of each row: dwords 0, 4, 8, 12 */
    __m256 dd = _mm256_cvtph_ps(
        _mm512_castsi512_si128(_mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), h)));
    __m512 dd5 = _mm512_castps256_ps512(dd);
    UNROLL for (int r = 0; r < R; r++) {
        __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(kq_extract(u, r)));
        const __m512i di = _mm512_setr_epi32(2 * r, 2 * r, 2 * r, 2 * r, 2 * r, 2 * r, 2 * r, 2 * r, 2 * r + 1,
                                             2 * r + 1, 2 * r + 1, 2 * r + 1, 2 * r + 1, 2 * r + 1, 2 * r + 1, 2 * r + 1);
        sd[r] = _mm512_mul_ps(f, _mm512_permutexvar_ps(di, dd5));
    }
}

/* The 4 vectors of integer sums of a super-block (sub-blocks (0,2),
   (1,3), (4,6), (5,7), 8 lanes each) added down to one vector, each
   lane the sum of 4 lanes of one sub-block (kq_lane says which): then
   one conversion and one FMA per super-block, not four. */
VK INLINE __m512i kq_reduce(__m512i s0, __m512i s1, __m512i s2, __m512i s3) {
    __m512i u01 = _mm512_add_epi32(_mm512_unpacklo_epi32(s0, s1), _mm512_unpackhi_epi32(s0, s1));
    __m512i u23 = _mm512_add_epi32(_mm512_unpacklo_epi32(s2, s3), _mm512_unpackhi_epi32(s2, s3));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(u01, u23), _mm512_unpackhi_epi64(u01, u23));
}

/* Rows [o, o + R) (R 1..4) of NT tokens (1..4) of prepared x, one
   accumulator per (token, row): every loaded weight vector serves NT
   tokens, every activation vector R rows. Per super-block and row: the
   4 vectors of integer sums reduced (kq_reduce), converted, times the
   factors d*sc_j*dx_j in that lane order (one token: [d*sc, dmin*m]
   times [dx, bx] first, then spread by one VPERMPS; several: spread,
   then times each token's dx). The high nibbles are not shifted down:
   AND 0xf0 gives 16 q, and mm_x_prepare stored those sub-blocks' dx / 16.
   The mins' term (the upper half of [d*sc, dmin*m] times [dx, bx]) is
   subtracted from the same accumulator, its lower half masked off. */
VK INLINE void kq_tile(const float *x, size_t xs, const kern_mat *W, int o, float *y, size_t ys, int acc,
                       const int NT, const int R) {
    int cols = W->cols, ns = cols / SUPER;
    size_t rb = (size_t)cols / 2, kb = (size_t)ns * KERN_QK_HEAD;
    const __m512i lo4 = _mm512_set1_epi8(0x0f), hi4 = _mm512_set1_epi8((char)0xf0), z = _mm512_setzero_si512();
    const __m512i lane = _mm512_loadu_si512(kq_lane);
    const uint8_t *q = (const uint8_t *)W->data + (size_t)o * rb;
    const uint8_t *k = (const uint8_t *)W->scales + (size_t)o * kb;
    __m512 a[4][4];
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) a[t][r] = _mm512_setzero_ps();
    for (int b = 0; b < ns; b++) {
        __m512 sd[4];
        kq_heads(k, kb, b, sd, R);
        __m512i xv[4];
        if (NT == 1) {
            __m512 db = _mm512_loadu_ps(x + (size_t)b * SB_F + XQ_F + DX_F);
            UNROLL for (int v = 0; v < 4; v++) xv[v] = _mm512_loadu_si512((const int8_t *)(x + (size_t)b * SB_F) + 64 * v);
            UNROLL for (int r = 0; r < R; r++) {
                __m512 g = _mm512_mul_ps(sd[r], db);
                a[0][r] = _mm512_mask_sub_ps(a[0][r], 0xff00, a[0][r], g);
                sd[r] = _mm512_permutexvar_ps(lane, g);
            }
        } else {
            UNROLL for (int t = 0; t < NT; t++) {
                __m512 db = _mm512_loadu_ps(x + (size_t)t * xs + (size_t)b * SB_F + XQ_F + DX_F);
                UNROLL for (int r = 0; r < R; r++) a[t][r] = _mm512_mask3_fnmadd_ps(sd[r], db, a[t][r], 0xff00);
            }
            UNROLL for (int r = 0; r < R; r++) sd[r] = _mm512_permutexvar_ps(lane, sd[r]);
        }
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *qr = q + (size_t)r * rb + (size_t)b * 128;
            if (KQ_PF && NT <= 2) {
                _mm_prefetch((const char *)qr + KQ_PF, _MM_HINT_T0);
                _mm_prefetch((const char *)qr + KQ_PF + 64, _MM_HINT_T0);
            }
            __m512i w0 = _mm512_loadu_si512(qr), w1 = _mm512_loadu_si512(qr + 64);
            __m512i n0 = _mm512_and_si512(w0, lo4), n1 = _mm512_and_si512(w0, hi4);
            __m512i n2 = _mm512_and_si512(w1, lo4), n3 = _mm512_and_si512(w1, hi4);
            UNROLL for (int t = 0; t < NT; t++) {
                const float *xb = x + (size_t)t * xs + (size_t)b * SB_F;
                if (NT > 1)
                    UNROLL for (int v = 0; v < 4; v++) xv[v] = _mm512_loadu_si512((const int8_t *)xb + 64 * v);
                __m512i s = kq_reduce(_mm512_dpbusd_epi32(z, n0, xv[0]), _mm512_dpbusd_epi32(z, n1, xv[1]),
                                      _mm512_dpbusd_epi32(z, n2, xv[2]), _mm512_dpbusd_epi32(z, n3, xv[3]));
                __m512 f = NT == 1 ? sd[r] : _mm512_mul_ps(sd[r], _mm512_loadu_ps(xb + XQ_F));
                a[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), f, a[t][r]);
            }
        }
    }
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) {
        float s = _mm512_reduce_add_ps(a[t][r]);
        float *yo = y + (size_t)t * ys + o + r;
        *yo = acc ? *yo + s : s;
    }
}

/* Outputs [o0, o1): 4 rows at a time, then the rest together. */
#define KQ_ROWS(NT)                                                                                              \
    VK static void kq_rows##NT(const float *x, size_t xs, const kern_mat *W, int o0, int o1, float *y, size_t ys, \
                               int acc) {                                                                        \
        int o = o0;                                                                                              \
        for (; o + 4 <= o1; o += 4) kq_tile(x, xs, W, o, y, ys, acc, NT, 4);                                    \
        switch (o1 - o) {                                                                                        \
        case 3: kq_tile(x, xs, W, o, y, ys, acc, NT, 3); break;                                                 \
        case 2: kq_tile(x, xs, W, o, y, ys, acc, NT, 2); break;                                                 \
        case 1: kq_tile(x, xs, W, o, y, ys, acc, NT, 1); break;                                                 \
        }                                                                                                        \
    }
KQ_ROWS(1)
KQ_ROWS(2)
KQ_ROWS(3)
KQ_ROWS(4)

static void kq_mm_block(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y, int ys,
                        int acc) {
    typedef void (*rows_fn)(const float *, size_t, const kern_mat *, int, int, float *, size_t, int);
    static const rows_fn fn[4] = {kq_rows1, kq_rows2, kq_rows3, kq_rows4};
    for (int t = 0; t < T; t += 4) {
        int nt = T - t < 4 ? T - t : 4;
        fn[nt - 1](x + (size_t)t * xs, xs, W, o0, o1, y + (size_t)t * ys, (size_t)ys, acc);
    }
}

/* ---- 256-bit (AVX-VNNI) ------------------------------------------------ */

/* As kq_mm_x_prepare (the same layout), 8 lanes at a time. */
V256 static void kq256_mm_x_prepare(const float *x, int T, const kern_mat *W, float *out) {
    int cols = W->cols, ns = cols / SUPER;
    size_t xs = kq_stride(cols);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * cols;
        for (int b = 0; b < ns; b++) {
            float *o = out + (size_t)t * xs + (size_t)b * SB_F;
            int8_t *q = (int8_t *)o;
            float *dxr = o + XQ_F, *db = dxr + DX_F;
            for (int i = 0; i < 8; i++) {
                int j = kq_order[i];
                const float *v = xr + (size_t)b * SUPER + 32 * j;
                __m256 f[4], m = _mm256_setzero_ps(), e = _mm256_setzero_ps();
                for (int c = 0; c < 4; c++) {
                    f[c] = _mm256_loadu_ps(v + 8 * c);
                    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, f[c]));
                    e = _mm256_or_ps(e, _mm256_cmp_ps(_mm256_sub_ps(f[c], f[c]), _mm256_setzero_ps(), _CMP_NEQ_UQ));
                }
                __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
                h = _mm_max_ps(h, _mm_movehl_ps(h, h));
                h = _mm_max_ss(h, _mm_movehdup_ps(h));
                float amax = _mm_cvtss_f32(h);
                int bad = _mm256_movemask_ps(e) != 0;
                float dx = bad ? NAN : amax / 127.0f, id = !bad && amax > 0.0f ? 127.0f / amax : 0.0f;
                __m256 s = _mm256_set1_ps(id);
                __m256i iv[4];
                for (int c = 0; c < 4; c++) iv[c] = _mm256_cvtps_epi32(_mm256_mul_ps(f[c], s));
                __m256i sum = _mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3]));
                __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
                /* |values| <= 127: the saturating packs keep them; their
                   lane order is undone by one permutation */
                __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(iv[0], iv[1]), _mm256_packs_epi32(iv[2], iv[3]));
                _mm256_storeu_si256((__m256i *)(q + 32 * i), _mm256_permutevar8x32_epi32(p, order));
                float dq = j & 1 ? dx * 0.0625f : dx;
                for (int l = 0; l < 16; l++)
                    if (kq_lane[l] == j) dxr[l] = dq;
                db[j] = dq;
                db[8 + j] = dx * (float)_mm_cvtsi128_si32(s4);
            }
        }
    }
}

/* One row o, one token: per super-block the head unpacked as in
   kq_heads (one row in 128 bits), 8 VPDPBUSD of one sub-block each
   (AND 0x0f / 0xf0 of each 32 bytes), added down to the 8 sub-block sums
   in order by three rounds of VPHADDD and one cross-lane add, then one
   conversion and one FMA by d*sc_j*dx_j, and one for the mins. Several
   tokens run it once each (16 registers leave no room for a tile; the
   weights are in cache for the second). */
V256 static float kq256_dot(const float *xb, const kern_mat *W, int o) {
    int cols = W->cols, ns = cols / SUPER;
    size_t rb = (size_t)cols / 2, kb = (size_t)ns * KERN_QK_HEAD;
    const uint8_t *q = (const uint8_t *)W->data + (size_t)o * rb;
    const uint8_t *k = (const uint8_t *)W->scales + (size_t)o * kb;
    const __m256i lo4 = _mm256_set1_epi8(0x0f), hi4 = _mm256_set1_epi8((char)0xf0), z = _mm256_setzero_si256();
    const __m128i sp = _mm_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m128i hp = _mm_setr_epi8(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11);
    const __m128i m1 = _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0);
    const __m128i m2 = _mm_setr_epi32(0, 0, 0, 0x0f0f0f0f);
    __m256 a = _mm256_setzero_ps();
    for (int b = 0; b < ns; b++) {
        const float *x = xb + (size_t)b * SB_F;
        const int8_t *xq = (const int8_t *)x;
        __m128i h = _mm_loadu_si128((const __m128i *)(k + (size_t)b * KERN_QK_HEAD));
        __m128i p = _mm_shuffle_epi8(h, sp);
        __m128i u = _mm_or_si128(_mm_and_si128(p, m1), _mm_and_si128(_mm_srli_epi16(p, 4), m2));
        u = _mm_or_si128(u, _mm_and_si128(_mm_srli_epi16(_mm_shuffle_epi8(h, hp), 2), _mm_set1_epi8(0x30)));
        __m128 dd = _mm_cvtph_ps(h); /* d, dmin in lanes 0, 1 */
        __m256 sc = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(u)), _mm256_broadcastss_ps(dd));
        __m256 mn = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(u, 8))),
                                  _mm256_broadcastss_ps(_mm_movehdup_ps(dd)));
        const uint8_t *qb = q + (size_t)b * 128;
        __m256i s[8];
        UNROLL for (int c = 0; c < 4; c++) {
            __m256i w = _mm256_loadu_si256((const __m256i *)(qb + 32 * c));
            /* sub-block 2c (low nibbles) is stored in place kq_order^-1 */
            s[2 * c] = _mm256_dpbusd_avx_epi32(z, _mm256_and_si256(w, lo4),
                                               _mm256_loadu_si256((const __m256i *)(xq + 32 * kq_order[2 * c])));
            s[2 * c + 1] = _mm256_dpbusd_avx_epi32(z, _mm256_and_si256(w, hi4),
                                                   _mm256_loadu_si256((const __m256i *)(xq + 32 * kq_order[2 * c + 1])));
        }
        __m256i k0 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
        __m256i k1 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
        __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(k0, k1, 0x20), _mm256_permute2x128_si256(k0, k1, 0x31));
        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(sc, _mm256_loadu_ps(x + XQ_F + DX_F)), a);
        a = _mm256_fnmadd_ps(mn, _mm256_loadu_ps(x + XQ_F + DX_F + 8), a);
    }
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

static void kq256_mm_block(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y, int ys,
                           int acc) {
    for (int o = o0; o < o1; o++)
        for (int t = 0; t < T; t++) {
            float s = kq256_dot(x + (size_t)t * xs, W, o);
            float *yo = y + (size_t)t * ys + o;
            *yo = acc ? *yo + s : s;
        }
}

/* Both are "quant_k" to dispatch: one backend, two instruction sets. */
static const kern_backend_i quant_k = {
    .name = "quant_k",
    .supports = kq_supports,
    .mm_x_floats = kq_mm_x_floats,
    .mm_x_prepare = kq_mm_x_prepare,
    .mm_block = kq_mm_block,
};

static const kern_backend_i quant_k256 = {
    .name = "quant_k",
    .supports = kq_supports,
    .mm_x_floats = kq_mm_x_floats,
    .mm_x_prepare = kq256_mm_x_prepare,
    .mm_block = kq256_mm_block,
};

const kern_backend_i *kern_backend_quant_k_variant(const char *name) {
    return name ? kern_vnni_form(name, &quant_k, &quant_k256) : NULL;
}

const kern_backend_i *kern_backend_quant_k(void) { return kern_vnni_form(NULL, &quant_k, &quant_k256); }

#else /* not x86-64, or a PORTABLE build: the portable backend's product */

const kern_backend_i *kern_backend_quant_k_variant(const char *name) {
    (void)name;
    return NULL;
}

const kern_backend_i *kern_backend_quant_k(void) { return NULL; }

#endif
