/*
 * kernels_avx512.c - AVX-512 intrinsics for the portable kernels: the
 * matrix product with float32 or bfloat16 weights (float32 arithmetic),
 * causal attention and SwiGLU. kernels.c calls these only when the CPU
 * reports AVX-512F and AVX-512BW; every function carries its own target
 * attribute, so the file builds with the project's ordinary flags and the
 * rest of the program stays runnable on any x86-64.
 *
 * Matrix product: tiles of up to 4 tokens x 4 outputs, each output a dot
 * product over the inputs with one 16-lane accumulator per (token, output)
 * pair; bfloat16 weights become float32 in registers (see tile_bf16). For
 * decoding (T = 1..4) a tile reads each weight once for all tokens, so
 * the product runs at the speed memory delivers the weights.
 *
 * Attention: online softmax over blocks of 64 keys. A single query takes
 * its dot products key by key; a block of queries (prefill) first
 * transposes the 64 keys into [dim][key] so each query gets 16 scores per
 * fused multiply-add from broadcast query elements. exp is a Cephes-style
 * polynomial (about 1 ulp) scaled by 2^n with VSCALEFPS.
 */
#include "kernels.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define INLINE static inline __attribute__((always_inline))
#if defined(__clang__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL _Pragma("GCC unroll 4")
#endif

/* ---------------------------------------------------------------------- */
/* Matrix product                                                         */
/* ---------------------------------------------------------------------- */

/* float32 weights: y[t][o + r] (+)= x[t] . W[o + r] for t < NT, r < R.
   NT and R are constants at every call, so the loops unroll and the
   accumulators stay in registers. */
AVX512 INLINE void tile_f32(const float *x, size_t xs, const float *W, size_t cols, int o, float *y, size_t ys,
                            int acc, const int NT, const int R) {
    __m512 a[4][4];
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) a[t][r] = _mm512_setzero_ps();
    for (size_t k = 0; k < cols; k += 16) {
        __mmask16 m = cols - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cols - k)) - 1);
        __m512 w[4];
        UNROLL for (int r = 0; r < R; r++) w[r] = _mm512_maskz_loadu_ps(m, W + (size_t)(o + r) * cols + k);
        UNROLL for (int t = 0; t < NT; t++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + t * xs + k);
            UNROLL for (int r = 0; r < R; r++) a[t][r] = _mm512_fmadd_ps(xv, w[r], a[t][r]);
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
   kern_avx512_deinterleave. */
AVX512 INLINE void tile_bf16(const float *x, size_t xs, const uint16_t *W, size_t cols, int o, float *y, size_t ys,
                             int acc, const int NT, const int R) {
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    __m512 a[4][4];
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) a[t][r] = _mm512_setzero_ps();
    for (size_t k = 0; k < cols; k += 32) {
        __mmask32 m = cols - k >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (cols - k)) - 1);
        __m512 we[4], wo[4];
        UNROLL for (int r = 0; r < R; r++) {
            __m512i v = _mm512_maskz_loadu_epi16(m, W + (size_t)(o + r) * cols + k);
            we[r] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
            wo[r] = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
        }
        UNROLL for (int t = 0; t < NT; t++) {
            __m512 xe = _mm512_loadu_ps(x + t * xs + k), xo = _mm512_loadu_ps(x + t * xs + k + 16);
            UNROLL for (int r = 0; r < R; r++) {
                a[t][r] = _mm512_fmadd_ps(xe, we[r], a[t][r]);
                a[t][r] = _mm512_fmadd_ps(xo, wo[r], a[t][r]);
            }
        }
    }
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int r = 0; r < R; r++) {
        float s = _mm512_reduce_add_ps(a[t][r]);
        float *yo = y + t * ys + o + r;
        *yo = acc ? *yo + s : s;
    }
}

/* One specialisation per (tokens, dtype); R = 4 outputs, then singles. */
#define MM_ROWS(NAME, NT, TILE, WT)                                                                         \
    AVX512 static void NAME(const float *x, size_t xs, const void *W, size_t cols, int o0, int o1, float *y, \
                            size_t ys, int acc) {                                                           \
        int o = o0;                                                                                         \
        for (; o + 4 <= o1; o += 4) TILE(x, xs, (const WT *)W, cols, o, y, ys, acc, NT, 4);                \
        for (; o < o1; o++) TILE(x, xs, (const WT *)W, cols, o, y, ys, acc, NT, 1);                        \
    }
MM_ROWS(mm_f32_1, 1, tile_f32, float)
MM_ROWS(mm_f32_2, 2, tile_f32, float)
MM_ROWS(mm_f32_3, 3, tile_f32, float)
MM_ROWS(mm_f32_4, 4, tile_f32, float)
MM_ROWS(mm_bf16_1, 1, tile_bf16, uint16_t)
MM_ROWS(mm_bf16_2, 2, tile_bf16, uint16_t)
MM_ROWS(mm_bf16_3, 3, tile_bf16, uint16_t)
MM_ROWS(mm_bf16_4, 4, tile_bf16, uint16_t)

typedef void (*mm_rows_fn)(const float *, size_t, const void *, size_t, int, int, float *, size_t, int);

void kern_avx512_matmul_block(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y,
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
AVX512 void kern_avx512_deinterleave(const float *x, int T, int cols, float *out) {
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    size_t xs = kern_bf16_stride(cols);
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
   0 through subnormals. NaN stays NaN: VMAXPS/VMINPS return their second
   operand when either is NaN, so x goes second. */
AVX512 INLINE __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(88.8f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
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

AVX512 void kern_avx512_swiglu(float *g, const float *u, size_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 gv = _mm512_loadu_ps(g + i), uv = _mm512_loadu_ps(u + i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), uv));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        _mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), uv));
    }
}

/* Round to nearest even on the bits (NaN kept quiet), as
   aria_f32_to_bf16; AVX-512F/BW only, so no AVX512_BF16 needed. */
AVX512 void kern_avx512_to_bf16(const float *x, uint16_t *out, size_t n) {
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

/* Running state of one query: max m, sum l, output o (nv vectors). */
typedef struct {
    float m, l;
} att_state;

/* Folds one block of 64 scores (lanes >= n masked) into a query's state:
   rescales o when the maximum rises, then adds p[s] * V[s]. */
AVX512 INLINE void att_fold(att_state *st, __m512 o[], int nv, __m512 sc[4], int n, const float *V, int hd) {
    __mmask16 mk[4];
    for (int j = 0; j < 4; j++) {
        int left = n - 16 * j;
        mk[j] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
    }
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 mx = ninf;
    for (int j = 0; j < 4; j++) mx = _mm512_max_ps(mx, _mm512_mask_blend_ps(mk[j], ninf, sc[j]));
    float bm = _mm512_reduce_max_ps(mx);
    if (bm > st->m) {
        if (st->m != -INFINITY) {
            float r = expf(st->m - bm);
            st->l *= r;
            __m512 rv = _mm512_set1_ps(r);
            for (int v = 0; v < nv; v++) o[v] = _mm512_mul_ps(o[v], rv);
        }
        st->m = bm;
    }
    float p[KB];
    __m512 mv = _mm512_set1_ps(st->m), lsum = _mm512_setzero_ps();
    for (int j = 0; j < 4; j++) {
        __m512 e = _mm512_maskz_mov_ps(mk[j], exp512(_mm512_sub_ps(sc[j], mv)));
        lsum = _mm512_add_ps(lsum, e);
        _mm512_storeu_ps(p + 16 * j, e);
    }
    st->l += _mm512_reduce_add_ps(lsum);
    for (int s = 0; s < n; s++) {
        __m512 ps = _mm512_set1_ps(p[s]);
        const float *vr = V + (size_t)s * hd;
        for (int v = 0; v < nv; v++) o[v] = _mm512_fmadd_ps(ps, _mm512_loadu_ps(vr + 16 * v), o[v]);
    }
}

AVX512 INLINE void att_finish(const att_state *st, __m512 o[], int nv, float *out) {
    __m512 inv = _mm512_set1_ps(1.0f / st->l);
    for (int v = 0; v < nv; v++) _mm512_storeu_ps(out + 16 * v, _mm512_mul_ps(o[v], inv));
}

/* One query, keys [0, n_keys), dot products key by key. */
AVX512 static void att_query(const float *q, const float *K, const float *V, int n_keys, int hd, float scale,
                             float *out) {
    int nv = hd / 16;
    __m512 qv[KERN_MAX_HD / 16], o[KERN_MAX_HD / 16];
    for (int v = 0; v < nv; v++) {
        qv[v] = _mm512_loadu_ps(q + 16 * v);
        o[v] = _mm512_setzero_ps();
    }
    att_state st = {-INFINITY, 0.0f};
    __m512 sv = _mm512_set1_ps(scale);
    for (int s0 = 0; s0 < n_keys; s0 += KB) {
        int n = n_keys - s0 < KB ? n_keys - s0 : KB;
        float sc[KB] = {0};
        for (int s = 0; s < n; s++) {
            const float *kr = K + (size_t)(s0 + s) * hd;
            __m512 d = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kr));
            for (int v = 1; v < nv; v++) d = _mm512_fmadd_ps(qv[v], _mm512_loadu_ps(kr + 16 * v), d);
            sc[s] = _mm512_reduce_add_ps(d);
        }
        __m512 scv[4];
        for (int j = 0; j < 4; j++) scv[j] = _mm512_mul_ps(_mm512_loadu_ps(sc + 16 * j), sv);
        att_fold(&st, o, nv, scv, n, V + (size_t)s0 * hd, hd);
    }
    att_finish(&st, o, nv, out);
}

/* Queries [t0, t1) (at most 32) of one head: each block of 64 keys is
   transposed once for all of them. */
AVX512 static void att_block(const float *q, int q_stride, const float *K, const float *V, int t0, int t1, int hd,
                             int pos0, float scale, float *out, int out_stride) {
    enum { MAXQ = 32 };
    int nv = hd / 16, nq = t1 - t0;
    att_state st[MAXQ];
    float kt[KERN_MAX_HD * KB] __attribute__((aligned(64)));
    for (int i = 0; i < nq; i++) {
        st[i].m = -INFINITY;
        st[i].l = 0.0f;
        memset(out + (size_t)(t0 + i) * out_stride, 0, (size_t)hd * sizeof(float));
    }
    __m512 sv = _mm512_set1_ps(scale);
    int n_keys = pos0 + t1;
    for (int s0 = 0; s0 < n_keys; s0 += KB) {
        int nk = n_keys - s0 < KB ? n_keys - s0 : KB;
        for (int s = 0; s < nk; s++) {
            const float *kr = K + (size_t)(s0 + s) * hd;
            for (int d = 0; d < hd; d++) kt[d * KB + s] = kr[d];
        }
        for (int s = nk; s < KB; s++)
            for (int d = 0; d < hd; d++) kt[d * KB + s] = 0.0f;
        for (int i = 0; i < nq; i++) {
            int t = t0 + i, n = pos0 + t + 1 - s0;
            if (n <= 0) continue;
            if (n > nk) n = nk;
            const float *qr = q + (size_t)t * q_stride;
            __m512 sc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int d = 0; d < hd; d++) {
                __m512 qd = _mm512_set1_ps(qr[d]);
                const float *kd = kt + d * KB;
                sc[0] = _mm512_fmadd_ps(qd, _mm512_load_ps(kd), sc[0]);
                sc[1] = _mm512_fmadd_ps(qd, _mm512_load_ps(kd + 16), sc[1]);
                sc[2] = _mm512_fmadd_ps(qd, _mm512_load_ps(kd + 32), sc[2]);
                sc[3] = _mm512_fmadd_ps(qd, _mm512_load_ps(kd + 48), sc[3]);
            }
            for (int j = 0; j < 4; j++) sc[j] = _mm512_mul_ps(sc[j], sv);
            float *orow = out + (size_t)t * out_stride;
            __m512 o[KERN_MAX_HD / 16];
            for (int v = 0; v < nv; v++) o[v] = _mm512_loadu_ps(orow + 16 * v);
            att_fold(&st[i], o, nv, sc, n, V + (size_t)s0 * hd, hd);
            for (int v = 0; v < nv; v++) _mm512_storeu_ps(orow + 16 * v, o[v]);
        }
    }
    for (int i = 0; i < nq; i++) {
        float *orow = out + (size_t)(t0 + i) * out_stride;
        __m512 o[KERN_MAX_HD / 16];
        for (int v = 0; v < nv; v++) o[v] = _mm512_loadu_ps(orow + 16 * v);
        att_finish(&st[i], o, nv, orow);
    }
}

void kern_avx512_attention(const float *q, int q_stride, const float *K, const float *V, int t0, int t1, int hd,
                           int pos0, float scale, float *out, int out_stride) {
    if (t1 - t0 >= 4 && t1 - t0 <= 32) {
        att_block(q, q_stride, K, V, t0, t1, hd, pos0, scale, out, out_stride);
        return;
    }
    for (int t = t0; t < t1; t++)
        att_query(q + (size_t)t * q_stride, K, V, pos0 + t + 1, hd, scale, out + (size_t)t * out_stride);
}

#else /* not x86-64: never called (the dispatch sees no AVX-512) */

void kern_avx512_matmul_block(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y,
                              int ystride, int acc) {
    (void)x, (void)xs, (void)T, (void)W, (void)o0, (void)o1, (void)y, (void)ystride, (void)acc;
}
void kern_avx512_attention(const float *q, int q_stride, const float *K, const float *V, int t0, int t1, int hd,
                           int pos0, float scale, float *out, int out_stride) {
    (void)q, (void)q_stride, (void)K, (void)V, (void)t0, (void)t1, (void)hd, (void)pos0, (void)scale, (void)out,
        (void)out_stride;
}
void kern_avx512_swiglu(float *g, const float *u, size_t n) { (void)g, (void)u, (void)n; }
void kern_avx512_deinterleave(const float *x, int T, int cols, float *out) { (void)x, (void)T, (void)cols, (void)out; }
void kern_avx512_to_bf16(const float *x, uint16_t *out, size_t n) { (void)x, (void)out, (void)n; }

#endif
