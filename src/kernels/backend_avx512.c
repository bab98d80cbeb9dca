/*
 * backend_avx512.c - the AVX-512 backend: the matrix product with float32
 * or bfloat16 weights (float32 arithmetic), attention for decoding, and in
 * fast precision LayerNorm, SwiGLU, the softmax pieces and the
 * cross-entropy with float32 vector sums and a polynomial exp. Offered
 * only when the CPU reports AVX-512 F, BW, VL, DQ and FMA; every function
 * carries its own target attribute, so the file builds with the project's
 * ordinary flags and the program stays runnable on any x86-64. Not built
 * at all off x86-64 or in PORTABLE builds (kern_backend_avx512 is NULL).
 *
 * Matrix product: tiles of up to 4 tokens x 8 outputs (4 x 4 from three
 * tokens on), each output a dot product over the inputs with one 16-lane
 * accumulator per (token, output) pair; bfloat16 weights become float32
 * in registers (see tile_bf16). For decoding (T = 1..4) a tile reads each
 * weight once for all tokens, so the product runs at the speed memory
 * delivers the weights. The sums depend only on the inputs, not on T or
 * the tile, so a row's result is the same alone or in a batch.
 *
 * Attention: online softmax over blocks of 64 keys. A single query takes
 * its dot products key by key (att_query); a block of queries (prefill)
 * is transposed once so that one key's scores for all of them come from
 * broadcast key elements (att_block_nv). exp is a Cephes-style polynomial
 * (about 1 ulp) scaled by 2^n with VSCALEFPS.
 */
#include "kernels/backend.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(ARIA_PORTABLE)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define INLINE static inline __attribute__((always_inline))
#if defined(__clang__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL _Pragma("GCC unroll 8")
#endif

/* Row stride of x rearranged for bfloat16 weights (a multiple of 32). */
static size_t bf16_stride(int cols) { return ((size_t)cols + 31) / 32 * 32; }

/* Every op's precision: the products and attention are float32 arithmetic
   (T-independent, as the portable kernels), so exact takes them too; the
   rest sum in float32 vectors with a polynomial exp: fast only. */
static int avx512_supports(kern_op op, const kern_shape *s, aria_precision prec) {
    int fast = prec == ARIA_PREC_FAST;
    switch (op) {
    case KERN_OP_MATMUL:
        return s->dtype == ARIA_DT_F32 || s->dtype == ARIA_DT_BF16;
    case KERN_OP_ATTENTION:
        return s->n == 16 || s->n == 32 || s->n == 64 || s->n == 128 || s->n == KERN_MAX_HD;
    case KERN_OP_TO_BF16:
        return 1;
    case KERN_OP_LAYERNORM_FWD:
    case KERN_OP_LAYERNORM_BWD:
        return fast && s->n % 16 == 0;
    case KERN_OP_SWIGLU_FWD:
    case KERN_OP_SWIGLU_BWD:
    case KERN_OP_XENT:
    case KERN_OP_LOGSUMEXP:
    case KERN_OP_EXP_SCALE:
    case KERN_OP_SCALE:
    case KERN_OP_SOFTMAX_BWD:
        return fast;
    default:
        return 0;
    }
}


#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define INLINE static inline __attribute__((always_inline))
#if defined(__clang__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL _Pragma("GCC unroll 8")
#endif

/* ---------------------------------------------------------------------- */
/* Matrix product                                                         */
/* ---------------------------------------------------------------------- */

/* float32 weights: y[t][o + r] (+)= x[t] . W[o + r] for t < NT, r < R.
   NT and R are constants at every call, so the loops unroll and the
   accumulators stay in registers. */
AVX512 INLINE void tile_f32(const float *x, size_t xs, const float *W, size_t cols, int o, float *y, size_t ys,
                            int acc, const int NT, const int R) {
    __m512 a[4][8];
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) a[t][r] = _mm512_setzero_ps();
    for (size_t k = 0; k < cols; k += 16) {
        __mmask16 m = cols - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cols - k)) - 1);
        __m512 xv[4];
        UNROLL for (int t = 0; t < NT; t++) xv[t] = _mm512_maskz_loadu_ps(m, x + t * xs + k);
        UNROLL for (int r = 0; r < R; r++) {
            __m512 w = _mm512_maskz_loadu_ps(m, W + (size_t)(o + r) * cols + k);
            UNROLL for (int t = 0; t < NT; t++) a[t][r] = _mm512_fmadd_ps(xv[t], w, a[t][r]);
        }
    }
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) {
        float s = _mm512_reduce_add_ps(a[t][r]);
        float *yo = y + t * ys + o + r;
        *yo = acc ? *yo + s : s;
    }
}

/* bfloat16 weights: 32 weights load as one vector; the even ones become
   float32 by a shift, the odd ones by masking the low half, with no lane
   crossing (a widening VPMOVZXWD per 16 weights made the loop compute-
   bound on Zen 4). x comes deinterleaved to match: see
   avx512_mm_x_prepare. */
AVX512 INLINE void tile_bf16(const float *x, size_t xs, const uint16_t *W, size_t cols, int o, float *y, size_t ys,
                             int acc, const int NT, const int R) {
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    __m512 a[4][8];
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) a[t][r] = _mm512_setzero_ps();
    for (size_t k = 0; k < cols; k += 32) {
        __mmask32 m = cols - k >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (cols - k)) - 1);
        __m512 xe[4], xo[4];
        UNROLL for (int t = 0; t < NT; t++) {
            xe[t] = _mm512_loadu_ps(x + t * xs + k);
            xo[t] = _mm512_loadu_ps(x + t * xs + k + 16);
        }
        UNROLL for (int r = 0; r < R; r++) {
            __m512i v = _mm512_maskz_loadu_epi16(m, W + (size_t)(o + r) * cols + k);
            __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
            __m512 wo = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
            UNROLL for (int t = 0; t < NT; t++) {
                a[t][r] = _mm512_fmadd_ps(xe[t], we, a[t][r]);
                a[t][r] = _mm512_fmadd_ps(xo[t], wo, a[t][r]);
            }
        }
    }
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) {
        float s = _mm512_reduce_add_ps(a[t][r]);
        float *yo = y + t * ys + o + r;
        *yo = acc ? *yo + s : s;
    }
}

/* One specialisation per (tokens, dtype). R outputs at a time, then
   singles: 8 rows read side by side keep more memory requests in flight
   than 4 (a single core streams ~20% faster), while 3 or 4 tokens need
   their registers for accumulators. */
#define MM_ROWS(NAME, NT, R, TILE, WT)                                                                      \
    AVX512 static void NAME(const float *x, size_t xs, const void *W, size_t cols, int o0, int o1, float *y, \
                            size_t ys, int acc) {                                                           \
        int o = o0;                                                                                         \
        for (; o + R <= o1; o += R) TILE(x, xs, (const WT *)W, cols, o, y, ys, acc, NT, R);                \
        for (; o < o1; o++) TILE(x, xs, (const WT *)W, cols, o, y, ys, acc, NT, 1);                        \
    }
MM_ROWS(mm_f32_1, 1, 8, tile_f32, float)
MM_ROWS(mm_f32_2, 2, 8, tile_f32, float)
MM_ROWS(mm_f32_3, 3, 4, tile_f32, float)
MM_ROWS(mm_f32_4, 4, 4, tile_f32, float)
MM_ROWS(mm_bf16_1, 1, 8, tile_bf16, uint16_t)
MM_ROWS(mm_bf16_2, 2, 8, tile_bf16, uint16_t)
MM_ROWS(mm_bf16_3, 3, 4, tile_bf16, uint16_t)
MM_ROWS(mm_bf16_4, 4, 4, tile_bf16, uint16_t)

typedef void (*mm_rows_fn)(const float *, size_t, const void *, size_t, int, int, float *, size_t, int);

static void avx512_mm_block(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y,
                            int ystride, int acc) {
    static const mm_rows_fn f32[4] = {mm_f32_1, mm_f32_2, mm_f32_3, mm_f32_4};
    static const mm_rows_fn bf16[4] = {mm_bf16_1, mm_bf16_2, mm_bf16_3, mm_bf16_4};
    const mm_rows_fn *fn = W->dtype == ARIA_DT_BF16 ? bf16 : f32;
    for (int t = 0; t < T; t += 4) {
        int nt = T - t < 4 ? T - t : 4;
        fn[nt - 1](x + (size_t)t * xs, xs, W->data, (size_t)W->cols, o0, o1, y + (size_t)t * ystride,
                   (size_t)ystride, acc);
    }
}

/* Rows of x for tile_bf16: in every block of 32 inputs the 16 even ones,
   then the 16 odd ones; rows padded with zeros to a multiple of 32. */
AVX512 static void avx512_mm_x_prepare_rows(const float *x, int T, int cols, float *out) {
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    size_t xs = bf16_stride(cols);
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * cols;
        float *o = out + (size_t)t * xs;
        for (int k = 0; k < cols; k += 32) {
            int left = cols - k;
            __mmask16 m0 = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            __mmask16 m1 = left >= 32 ? (__mmask16)0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
            __m512 a = _mm512_maskz_loadu_ps(m0, xr + k), b = _mm512_maskz_loadu_ps(m1, xr + k + 16);
            _mm512_storeu_ps(o + k, _mm512_permutex2var_ps(a, ev, b));
            _mm512_storeu_ps(o + k + 16, _mm512_permutex2var_ps(a, od, b));
        }
    }
}

/* ---------------------------------------------------------------------- */
/* exp and SwiGLU                                                         */
/* ---------------------------------------------------------------------- */

/* e^x: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-6 polynomial (the
   Cephes expf coefficients), times 2^n. Overflows to +inf, underflows to
   0 through subnormals (exactly 0 from -127 down, -inf included). NaN stays NaN: VMAXPS/VMINPS return their second
   operand when either is NaN, so x goes second. */
AVX512 INLINE __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(88.8f), _mm512_max_ps(_mm512_set1_ps(-127.0f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
}

AVX512 static void avx512_swiglu_fwd(float *out, const float *g, const float *u, size_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 gv = _mm512_loadu_ps(g + i), uv = _mm512_loadu_ps(u + i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), uv));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), uv));
    }
}

/* Softmax pieces (see kernels.h). */
AVX512 static float avx512_logsumexp(const float *x, size_t n) {
    if (n == 0) return -INFINITY;
    __m512 mv = _mm512_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + i));
    float mx = _mm512_reduce_max_ps(mv);
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx != mx) return mx;
    if (mx == -INFINITY) { /* all -inf, or NaNs the comparisons passed over */
        for (i = 0; i < n; i++)
            if (x[i] != x[i]) return x[i];
        return mx;
    }
    const __m512 m = _mm512_set1_ps(mx);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    for (i = 0; i + 32 <= n; i += 32) {
        s0 = _mm512_add_ps(s0, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), m)));
        s1 = _mm512_add_ps(s1, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), m)));
    }
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp512(_mm512_sub_ps(_mm512_mask_loadu_ps(m, k, x + i), m));
        s0 = _mm512_add_ps(s0, _mm512_maskz_mov_ps(k, e));
    }
    return mx + logf(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)));
}

AVX512 static void avx512_scale(float *x, size_t n, float s) {
    const __m512 sv = _mm512_set1_ps(s);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), sv));
    }
}

AVX512 static void avx512_exp_scale(float *x, size_t n, float shift, float scale) {
    const __m512 sh = _mm512_set1_ps(shift), sc = _mm512_set1_ps(scale);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(exp512(_mm512_sub_ps(v, sh)), sc));
    }
}

/* LayerNorm rows (float32 sums, two passes), keeping the mean and 1/std
   when asked; the backward's dx part, and its dw/db part for columns
   [i0, i1) over all rows. d a multiple of 16 (avx512_supports checks). */
AVX512 static void avx512_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
                                        const float *b, int rows, int d) {
    const float eps = KERN_LN_EPS;
    for (size_t t = 0; t < (size_t)rows; t++) {
        const float *xr = x + t * d;
        __m512 s = _mm512_setzero_ps();
        for (int i = 0; i < d; i += 16) s = _mm512_add_ps(s, _mm512_loadu_ps(xr + i));
        float m = _mm512_reduce_add_ps(s) / (float)d;
        __m512 mv = _mm512_set1_ps(m), q = _mm512_setzero_ps();
        for (int i = 0; i < d; i += 16) {
            __m512 c = _mm512_sub_ps(_mm512_loadu_ps(xr + i), mv);
            q = _mm512_fmadd_ps(c, c, q);
        }
        float r = 1.0f / sqrtf(_mm512_reduce_add_ps(q) / (float)d + eps);
        if (mean) mean[t] = m;
        if (rstd) rstd[t] = r;
        __m512 rv = _mm512_set1_ps(r);
        for (int i = 0; i < d; i += 16) {
            __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + i), mv), rv);
            _mm512_storeu_ps(y + t * d + i, _mm512_fmadd_ps(xh, _mm512_loadu_ps(w + i), _mm512_loadu_ps(b + i)));
        }
    }
}

AVX512 static void avx512_layernorm_bwd_dx(float *dx, const float *dy, const float *x, const float *w,
                                           const float *mean, const float *rstd, int rows, int d) {
    for (size_t t = 0; t < (size_t)rows; t++) {
        const float *xr = x + t * d, *g = dy + t * d;
        __m512 mv = _mm512_set1_ps(mean[t]), rv = _mm512_set1_ps(rstd[t]);
        __m512 s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps();
        for (int i = 0; i < d; i += 16) {
            __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + i), mv), rv);
            __m512 dxh = _mm512_mul_ps(_mm512_loadu_ps(g + i), _mm512_loadu_ps(w + i));
            s1 = _mm512_add_ps(s1, dxh);
            s2 = _mm512_fmadd_ps(dxh, xh, s2);
        }
        __m512 a = _mm512_set1_ps(_mm512_reduce_add_ps(s1) / (float)d);
        __m512 b2 = _mm512_set1_ps(_mm512_reduce_add_ps(s2) / (float)d);
        for (int i = 0; i < d; i += 16) {
            __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xr + i), mv), rv);
            __m512 dxh = _mm512_mul_ps(_mm512_loadu_ps(g + i), _mm512_loadu_ps(w + i));
            __m512 v = _mm512_sub_ps(_mm512_sub_ps(dxh, a), _mm512_mul_ps(xh, b2));
            _mm512_storeu_ps(dx + t * d + i, _mm512_fmadd_ps(rv, v, _mm512_loadu_ps(dx + t * d + i)));
        }
    }
}

AVX512 static void avx512_layernorm_bwd_dw(float *dw, float *db, const float *dy, const float *x,
                                           const float *mean, const float *rstd, int rows, int d, int i0, int i1) {
    for (int i = i0; i < i1; i += 16) {
        __m512 aw = _mm512_setzero_ps(), ab = _mm512_setzero_ps();
        for (size_t t = 0; t < (size_t)rows; t++) {
            __m512 g = _mm512_loadu_ps(dy + t * d + i);
            __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + t * d + i), _mm512_set1_ps(mean[t])),
                                      _mm512_set1_ps(rstd[t]));
            aw = _mm512_fmadd_ps(g, xh, aw);
            ab = _mm512_add_ps(ab, g);
        }
        _mm512_storeu_ps(dw + i, _mm512_add_ps(_mm512_loadu_ps(dw + i), aw));
        _mm512_storeu_ps(db + i, _mm512_add_ps(_mm512_loadu_ps(db + i), ab));
    }
}

AVX512 static void avx512_softmax_bwd(const float *p, float *g, size_t n, float D, float scale) {
    const __m512 dv = _mm512_set1_ps(D), sc = _mm512_set1_ps(scale);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 pv = _mm512_maskz_loadu_ps(k, p + i), gv = _mm512_maskz_loadu_ps(k, g + i);
        _mm512_mask_storeu_ps(g + i, k, _mm512_mul_ps(_mm512_mul_ps(pv, _mm512_sub_ps(gv, dv)), sc));
    }
}

/* dout may be dg: each vector is read before it is written. */
AVX512 static void avx512_swiglu_bwd(float *dg, float *du, const float *dout, const float *g, const float *u,
                                     size_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 gv = _mm512_maskz_loadu_ps(k, g + i), uv = _mm512_maskz_loadu_ps(k, u + i);
        __m512 da = _mm512_maskz_loadu_ps(k, dout + i);
        __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
        __m512 das = _mm512_mul_ps(da, s);
        _mm512_mask_storeu_ps(du + i, k, _mm512_mul_ps(das, gv));
        __m512 f = _mm512_fmadd_ps(gv, _mm512_sub_ps(one, s), one);
        _mm512_mask_storeu_ps(dg + i, k, _mm512_mul_ps(_mm512_mul_ps(das, uv), f));
    }
}

/* Round to nearest even on the bits (NaN kept quiet), as
   aria_f32_to_bf16; AVX-512F/BW only, so no AVX512_BF16 needed. */
AVX512 static void avx512_to_bf16(const float *x, uint16_t *out, size_t n) {
    const __m512i lsb = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    const __m512i absm = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    size_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512i u = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, x + i));
        __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), lsb)));
        __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, absm), inf);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x00400000)));
        _mm256_mask_storeu_epi16(out + i, m, _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
    }
}

/* ---------------------------------------------------------------------- */
/* Attention                                                              */
/* ---------------------------------------------------------------------- */

#define KB 64 /* keys per block */

/* sum(v[j]) in lane j: pairs within 128-bit lanes, then across them
   (30 shuffles and 15 adds for 16 sums, where 16 separate reductions
   would take ~100 instructions). */
AVX512 INLINE __m512 sum16(const __m512 v[16]) {
    __m512 t[8], u[4], w[2];
    for (int i = 0; i < 8; i++)
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 4; i++)
        u[i] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int i = 0; i < 2; i++)
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0xdd));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], 0x88), _mm512_shuffle_f32x4(w[0], w[1], 0xdd));
}

/* Elements of a KV cache row as float32. The cache is float32 or, with
   H16, bfloat16 (whose bits are the upper half of a float32's: widen to
   32 bits, shift left 16). H16 is a constant at every call, so each
   kernel below compiles to two forms without a branch inside. */
AVX512 INLINE __m512 kv16(const void *p, size_t i, const int H16) {
    if (H16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i))), 16));
    return _mm512_loadu_ps((const float *)p + i);
}
AVX512 INLINE float kv1(const void *p, size_t i, const int H16) {
    if (H16) {
        uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    return ((const float *)p)[i];
}

/* One query with NV * 16 dimensions against keys [0, n_keys), in blocks
   of KB: 16 keys' dot products at a time (sum16), then the online
   softmax update and p * V into the output, all in registers. */
AVX512 INLINE void att_query_nv(const float *q, const void *K, const void *V, int n_keys, float scale, float *out,
                                const int NV, const int H16) {
    const int hd = 16 * NV;
    const __m512 ninf = _mm512_set1_ps(-INFINITY), sv = _mm512_set1_ps(scale);
    __m512 qv[16], o[16];
    UNROLL for (int v = 0; v < NV; v++) {
        qv[v] = _mm512_loadu_ps(q + 16 * v);
        o[v] = _mm512_setzero_ps();
    }
    float m = -INFINITY, l = 0.0f, p[KB] __attribute__((aligned(64)));
    for (int s0 = 0; s0 < n_keys; s0 += KB) {
        int n = n_keys - s0 < KB ? n_keys - s0 : KB;
        __m512 sc[KB / 16], mx = ninf;
        for (int g = 0; g * 16 < n; g++) {
            __m512 d[16];
            for (int j = 0; j < 16; j++) {
                /* keys past n repeat the last one; masked below */
                int s = g * 16 + j < n ? g * 16 + j : n - 1;
                size_t kr = (size_t)(s0 + s) * hd;
                __m512 a = _mm512_mul_ps(qv[0], kv16(K, kr, H16));
                UNROLL for (int v = 1; v < NV; v++) a = _mm512_fmadd_ps(qv[v], kv16(K, kr + 16 * v, H16), a);
                d[j] = a;
            }
            int left = n - g * 16;
            __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            sc[g] = _mm512_mask_blend_ps(mk, ninf, _mm512_mul_ps(sum16(d), sv));
            mx = _mm512_max_ps(mx, sc[g]);
        }
        float bm = _mm512_reduce_max_ps(mx);
        if (bm > m) {
            if (m != -INFINITY) {
                float r = expf(m - bm);
                l *= r;
                __m512 rv = _mm512_set1_ps(r);
                UNROLL for (int v = 0; v < NV; v++) o[v] = _mm512_mul_ps(o[v], rv);
            }
            m = bm;
        }
        __m512 mv = _mm512_set1_ps(m), ls = _mm512_setzero_ps();
        for (int g = 0; g * 16 < n; g++) {
            __m512 e = exp512(_mm512_sub_ps(sc[g], mv)); /* masked lanes: exp(-inf) = 0 */
            ls = _mm512_add_ps(ls, e);
            _mm512_store_ps(p + 16 * g, e);
        }
        l += _mm512_reduce_add_ps(ls);
        size_t vb = (size_t)s0 * hd;
        for (int s = 0; s < n; s++) {
            __m512 ps = _mm512_set1_ps(p[s]);
            UNROLL for (int v = 0; v < NV; v++)
                o[v] = _mm512_fmadd_ps(ps, kv16(V, vb + (size_t)s * hd + 16 * v, H16), o[v]);
        }
    }
    __m512 inv = _mm512_set1_ps(1.0f / l);
    UNROLL for (int v = 0; v < NV; v++) _mm512_storeu_ps(out + 16 * v, _mm512_mul_ps(o[v], inv));
}

#define ATT_QUERY(NV)                                                                                          \
    AVX512 static void att_query_##NV(const float *q, const float *K, const float *V, int n_keys, float scale,  \
                                      float *out) {                                                            \
        att_query_nv(q, K, V, n_keys, scale, out, NV, 0);                                                      \
    }                                                                                                          \
    AVX512 static void att_query_h_##NV(const float *q, const uint16_t *K, const uint16_t *V, int n_keys,      \
                                        float scale, float *out) {                                             \
        att_query_nv(q, K, V, n_keys, scale, out, NV, 1);                                                      \
    }
ATT_QUERY(1)
ATT_QUERY(2)
ATT_QUERY(4)
ATT_QUERY(8)
ATT_QUERY(16)

/* Queries [t0, t1) (at most QB) of one head with NV * 16 dimensions,
   blocks of KB keys. The queries are transposed once into qt[dim][query],
   so the scores of one key for all queries are one or two vectors
   (broadcast key element times a row of qt), and the online softmax runs
   with one query per lane: p[key][query]. Then each query's output row
   gathers p * V over the block, G queries at a time sharing V's loads, and
   is rescaled in the same pass when the query's maximum rose. */
#define QB 32
AVX512 INLINE void att_block_nv(const float *q, int q_stride, const void *K, const void *V, int t0, int t1,
                                int pos0, float scale, float *out, int out_stride, const int NV, const int H16) {
    const int hd = 16 * NV, nq = t1 - t0, G = NV <= 2 ? 4 : NV == 4 ? 2 : 1;
    float qt[KERN_MAX_HD * QB] __attribute__((aligned(64)));
    float p[KB * QB] __attribute__((aligned(64)));
    float rr[QB] __attribute__((aligned(64))), ll[QB] __attribute__((aligned(64)));
    for (int d = 0; d < hd; d++)
        for (int i = 0; i < QB; i++) qt[d * QB + i] = i < nq ? q[(size_t)(t0 + i) * q_stride + d] : 0.0f;
    for (int i = 0; i < nq; i++) memset(out + (size_t)(t0 + i) * out_stride, 0, (size_t)hd * sizeof(float));
    const __m512 ninf = _mm512_set1_ps(-INFINITY), sv = _mm512_set1_ps(scale);
    const __m512i iota0 = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i iota1 = _mm512_add_epi32(iota0, _mm512_set1_epi32(16));
    /* lanes of real queries */
    const __mmask16 live0 = nq >= 16 ? 0xffff : (__mmask16)((1u << nq) - 1);
    const __mmask16 live1 = nq >= 32 ? 0xffff : nq <= 16 ? 0 : (__mmask16)((1u << (nq - 16)) - 1);
    __m512 m0 = ninf, m1 = ninf, l0 = _mm512_setzero_ps(), l1 = _mm512_setzero_ps();
    int n_keys = pos0 + t1;
    for (int s0 = 0; s0 < n_keys; s0 += KB) {
        int nk = n_keys - s0 < KB ? n_keys - s0 : KB;
        __m512 bm0 = ninf, bm1 = ninf;
        for (int s = 0; s < nk; s += 4) {
            size_t kr[4];
            UNROLL for (int j = 0; j < 4; j++) kr[j] = (size_t)(s0 + (s + j < nk ? s + j : nk - 1)) * hd;
            __m512 a[4][2];
            UNROLL for (int j = 0; j < 4; j++) a[j][0] = a[j][1] = _mm512_setzero_ps();
            for (int d = 0; d < hd; d++) {
                __m512 q0 = _mm512_load_ps(qt + d * QB), q1 = _mm512_load_ps(qt + d * QB + 16);
                UNROLL for (int j = 0; j < 4; j++) {
                    __m512 kb = _mm512_set1_ps(kv1(K, kr[j] + (size_t)d, H16));
                    a[j][0] = _mm512_fmadd_ps(q0, kb, a[j][0]);
                    a[j][1] = _mm512_fmadd_ps(q1, kb, a[j][1]);
                }
            }
            for (int j = 0; j < 4 && s + j < nk; j++) {
                /* key s0+s+j is seen by queries t with pos0 + t0 + lane >= key */
                __m512i first = _mm512_set1_epi32(s0 + s + j - pos0 - t0);
                __mmask16 v0 = live0 & _mm512_cmpge_epi32_mask(iota0, first);
                __mmask16 v1 = live1 & _mm512_cmpge_epi32_mask(iota1, first);
                __m512 c0 = _mm512_mask_blend_ps(v0, ninf, _mm512_mul_ps(a[j][0], sv));
                __m512 c1 = _mm512_mask_blend_ps(v1, ninf, _mm512_mul_ps(a[j][1], sv));
                _mm512_store_ps(p + (s + j) * QB, c0);
                _mm512_store_ps(p + (s + j) * QB + 16, c1);
                bm0 = _mm512_max_ps(bm0, c0);
                bm1 = _mm512_max_ps(bm1, c1);
            }
        }
        /* new maxima; r = exp(old - new) rescales what was summed so far
           (1 where a lane has seen nothing yet) */
        __m512 n0 = _mm512_max_ps(m0, bm0), n1 = _mm512_max_ps(m1, bm1);
        __mmask16 e0 = _mm512_cmp_ps_mask(n0, ninf, _CMP_EQ_OQ), e1 = _mm512_cmp_ps_mask(n1, ninf, _CMP_EQ_OQ);
        __m512 r0 = _mm512_mask_blend_ps(e0, exp512(_mm512_sub_ps(m0, n0)), _mm512_set1_ps(1.0f));
        __m512 r1 = _mm512_mask_blend_ps(e1, exp512(_mm512_sub_ps(m1, n1)), _mm512_set1_ps(1.0f));
        m0 = n0, m1 = n1;
        l0 = _mm512_mul_ps(l0, r0);
        l1 = _mm512_mul_ps(l1, r1);
        _mm512_store_ps(rr, r0);
        _mm512_store_ps(rr + 16, r1);
        /* lanes at -inf (no key yet, or no query) give p = 0 */
        __m512 mm0 = _mm512_mask_blend_ps(e0, m0, _mm512_setzero_ps());
        __m512 mm1 = _mm512_mask_blend_ps(e1, m1, _mm512_setzero_ps());
        for (int s = 0; s < nk; s++) {
            __m512 p0 = exp512(_mm512_sub_ps(_mm512_load_ps(p + s * QB), mm0));
            __m512 p1 = exp512(_mm512_sub_ps(_mm512_load_ps(p + s * QB + 16), mm1));
            _mm512_store_ps(p + s * QB, p0);
            _mm512_store_ps(p + s * QB + 16, p1);
            l0 = _mm512_add_ps(l0, p0);
            l1 = _mm512_add_ps(l1, p1);
        }
        /* out rows: o = o * r + sum_s p[s] V[s], G queries at a time */
        size_t vb = (size_t)s0 * hd;
        for (int i = 0; i < nq; i += G) {
            __m512 o[4][16];
            int g = nq - i < G ? nq - i : G;
            UNROLL for (int u = 0; u < G; u++) {
                if (u >= g) continue;
                const float *orow = out + (size_t)(t0 + i + u) * out_stride;
                __m512 ru = _mm512_set1_ps(rr[i + u]);
                UNROLL for (int v = 0; v < NV; v++) o[u][v] = _mm512_mul_ps(_mm512_loadu_ps(orow + 16 * v), ru);
            }
            if (g == G) {
                for (int s = 0; s < nk; s++) {
                    size_t vr = vb + (size_t)s * hd;
                    UNROLL for (int v = 0; v < NV; v++) {
                        __m512 vv = kv16(V, vr + 16 * v, H16);
                        UNROLL for (int u = 0; u < G; u++)
                            o[u][v] = _mm512_fmadd_ps(_mm512_set1_ps(p[s * QB + i + u]), vv, o[u][v]);
                    }
                }
            } else {
                for (int s = 0; s < nk; s++) {
                    size_t vr = vb + (size_t)s * hd;
                    for (int u = 0; u < g; u++) {
                        __m512 pu = _mm512_set1_ps(p[s * QB + i + u]);
                        UNROLL for (int v = 0; v < NV; v++)
                            o[u][v] = _mm512_fmadd_ps(pu, kv16(V, vr + 16 * v, H16), o[u][v]);
                    }
                }
            }
            for (int u = 0; u < g; u++) {
                float *orow = out + (size_t)(t0 + i + u) * out_stride;
                UNROLL for (int v = 0; v < NV; v++) _mm512_storeu_ps(orow + 16 * v, o[u][v]);
            }
        }
    }
    _mm512_store_ps(ll, l0);
    _mm512_store_ps(ll + 16, l1);
    for (int i = 0; i < nq; i++) {
        float *orow = out + (size_t)(t0 + i) * out_stride;
        __m512 inv = _mm512_set1_ps(1.0f / ll[i]);
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(orow + 16 * v, _mm512_mul_ps(_mm512_loadu_ps(orow + 16 * v), inv));
    }
}

#define ATT_BLOCK(NV)                                                                                          \
    AVX512 static void att_block_##NV(const float *q, int q_stride, const float *K, const float *V, int t0,    \
                                      int t1, int pos0, float scale, float *out, int out_stride) {           \
        att_block_nv(q, q_stride, K, V, t0, t1, pos0, scale, out, out_stride, NV, 0);                        \
    }                                                                                                          \
    AVX512 static void att_block_h_##NV(const float *q, int q_stride, const uint16_t *K, const uint16_t *V,    \
                                        int t0, int t1, int pos0, float scale, float *out, int out_stride) { \
        att_block_nv(q, q_stride, K, V, t0, t1, pos0, scale, out, out_stride, NV, 1);                        \
    }
ATT_BLOCK(1)
ATT_BLOCK(2)
ATT_BLOCK(4)
ATT_BLOCK(8)
ATT_BLOCK(16)

/* The head size's kernel: 16, 32, 64, 128 or 256 dimensions (supports). */
static int att_kind(int hd) { return hd == 16 ? 0 : hd == 32 ? 1 : hd == 64 ? 2 : hd == 128 ? 3 : 4; }

static void avx512_attention(const float *q, int q_stride, const float *K, const float *V, int t0, int t1, int hd,
                             int pos0, float scale, float *out, int out_stride) {
    typedef void (*blk)(const float *, int, const float *, const float *, int, int, int, float, float *, int);
    typedef void (*one)(const float *, const float *, const float *, int, float, float *);
    static const blk blocks[5] = {att_block_1, att_block_2, att_block_4, att_block_8, att_block_16};
    static const one singles[5] = {att_query_1, att_query_2, att_query_4, att_query_8, att_query_16};
    int i = att_kind(hd);
    if (t1 - t0 >= 4 && t1 - t0 <= QB) {
        blocks[i](q, q_stride, K, V, t0, t1, pos0, scale, out, out_stride);
        return;
    }
    for (int t = t0; t < t1; t++)
        singles[i](q + (size_t)t * q_stride, K, V, pos0 + t + 1, scale, out + (size_t)t * out_stride);
}

static void avx512_attention_h(const float *q, int q_stride, const uint16_t *K, const uint16_t *V, int t0, int t1,
                               int hd, int pos0, float scale, float *out, int out_stride) {
    typedef void (*blk)(const float *, int, const uint16_t *, const uint16_t *, int, int, int, float, float *, int);
    typedef void (*one)(const float *, const uint16_t *, const uint16_t *, int, float, float *);
    static const blk blocks[5] = {att_block_h_1, att_block_h_2, att_block_h_4, att_block_h_8, att_block_h_16};
    static const one singles[5] = {att_query_h_1, att_query_h_2, att_query_h_4, att_query_h_8, att_query_h_16};
    int i = att_kind(hd);
    if (t1 - t0 >= 4 && t1 - t0 <= QB) {
        blocks[i](q, q_stride, K, V, t0, t1, pos0, scale, out, out_stride);
        return;
    }
    for (int t = t0; t < t1; t++)
        singles[i](q + (size_t)t * q_stride, K, V, pos0 + t + 1, scale, out + (size_t)t * out_stride);
}

static size_t avx512_mm_x_floats(const kern_mat *W, int T, size_t *xs) {
    if (W->dtype != ARIA_DT_BF16) return 0;
    *xs = bf16_stride(W->cols);
    return (size_t)T * *xs;
}

static void avx512_mm_x_prepare(const float *x, int T, const kern_mat *W, float *out) {
    avx512_mm_x_prepare_rows(x, T, W->cols, out);
}

/* The loss in float32 from the vector log-sum-exp; the gradient by the
   vector exp. */
static void avx512_xent(float *logits, double *loss, const int32_t *targets, int r0, int r1, int V, int grad,
                        float dscale) {
    for (int r = r0; r < r1; r++) {
        float *lg = logits + (size_t)r * V;
        int tgt = targets[r];
        loss[r] = 0.0;
        if (tgt < 0) {
            if (grad) memset(lg, 0, (size_t)V * sizeof *lg);
            continue;
        }
        float lse = avx512_logsumexp(lg, (size_t)V);
        loss[r] = (double)lse - lg[tgt];
        if (grad) {
            avx512_exp_scale(lg, (size_t)V, lse, dscale);
            lg[tgt] -= dscale;
        }
    }
}

static const kern_backend_i avx512 = {
    .name = "avx512",
    .supports = avx512_supports,
    .mm_x_floats = avx512_mm_x_floats,
    .mm_x_prepare = avx512_mm_x_prepare,
    .mm_block = avx512_mm_block,
    .to_bf16 = avx512_to_bf16,
    .layernorm_fwd = avx512_layernorm_fwd,
    .layernorm_bwd_dx = avx512_layernorm_bwd_dx,
    .layernorm_bwd_dw = avx512_layernorm_bwd_dw,
    .swiglu_fwd = avx512_swiglu_fwd,
    .swiglu_bwd = avx512_swiglu_bwd,
    .xent = avx512_xent,
    .logsumexp = avx512_logsumexp,
    .exp_scale = avx512_exp_scale,
    .scale = avx512_scale,
    .softmax_bwd = avx512_softmax_bwd,
    .attention = avx512_attention,
    .attention_h = avx512_attention_h,
};

const kern_backend_i *kern_backend_avx512(const char **desc) {
    int ok = kern_cpu_avx512(); /* every feature this file is compiled for */
    if (desc) *desc = ok ? "avx512" : "";
    return ok ? &avx512 : NULL;
}

#else /* not x86-64, or a PORTABLE build: no such backend */

const kern_backend_i *kern_backend_avx512(const char **desc) {
    if (desc) *desc = "";
    return NULL;
}

#endif
