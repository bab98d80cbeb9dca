/*
 * backend_portable.c - the reference backend: every op in plain C, float32
 * arithmetic in a fixed order, on any CPU. The other backends are checked
 * against it (tests/test_backend_ops.c), and its training ops keep the
 * exact order of the reference code: what "exact" precision runs.
 *
 * Quantized weights (q8_0, q4_0, q4_k) are widened block by block, times their
 * scale (q4_k: and less its min), and multiply float32 activations: the exact-precision path of a
 * quantized model, and every CPU's without VNNI.
 *
 * The matrix product keeps 16 independent partial sums per dot product
 * so the compiler can vectorise it without reassociating floats; 4 x 1
 * blocks of (token, output) pairs reuse each loaded weight four times. On
 * x86-64 its loops are compiled for AVX-512, AVX2 and plain x86-64 and the
 * best one is chosen when the program starts (GCC target_clones; not in
 * PORTABLE builds): the path of CPUs without the AVX-512 backend.
 *
 * Attention for decoding is an online softmax over blocks of keys (no
 * T x T matrix); the training attention keeps the reference's order:
 * every score of a query, its maximum, the exponentials and their sum, then
 * the weighted values.
 */
#include <math.h>
#include <string.h>

#include "kernels/backend.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(ARIA_PORTABLE)
#define ARIA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ARIA_CLONES
#endif

/* Every op in either precision, but the bfloat16 products (oneDNN's).
   Matrix products with float32, bfloat16, q8_0, q4_0 and q4_k weights. */
static int portable_supports(kern_op op, const kern_shape *s, aria_precision prec) {
    (void)prec;
    if (op == KERN_OP_MATMUL)
        return s->dtype == ARIA_DT_F32 || s->dtype == ARIA_DT_BF16 ||
               (kern_dtype_quantized(s->dtype) && s->k % kern_quant_block(s->dtype) == 0);
    return op != KERN_OP_GEMM_BF16 && op != KERN_OP_GEMM_BF16_ST;
}

/* ---------------------------------------------------------------------- */
/* Matrix product                                                         */
/* ---------------------------------------------------------------------- */

#define LANES 16

static inline float bf16_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float hsum(const float *a) {
    float s = 0.0f;
    for (int l = 0; l < LANES; l++) s += a[l];
    return s;
}

/* One output column block [o0, o1) for all T tokens. The float32 and
   bfloat16 versions share this body and differ only in how a weight is
   loaded (LOAD widens a bfloat16 as it is read). */
#define DEFINE_MM_BLOCK(NAME, WTYPE, LOAD)                                                               \
    ARIA_CLONES                                                                                          \
    static void NAME(const float *x, size_t xs, int T, const WTYPE *W, int cols, int o0, int o1, float *y, \
                     int ystride, int acc) {                                                             \
        int kv = cols / LANES * LANES;                                                                   \
        int t = 0;                                                                                       \
        for (; t + 4 <= T; t += 4) {                                                                     \
            const float *x0 = x + (size_t)t * xs, *x1 = x0 + xs, *x2 = x1 + xs, *x3 = x2 + xs;           \
            for (int o = o0; o < o1; o++) {                                                              \
                const WTYPE *w = W + (size_t)o * cols;                                                   \
                float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};                \
                for (int k = 0; k < kv; k += LANES)                                                      \
                    for (int l = 0; l < LANES; l++) {                                                    \
                        float wk = LOAD(w[k + l]);                                                       \
                        a0[l] += x0[k + l] * wk;                                                         \
                        a1[l] += x1[k + l] * wk;                                                         \
                        a2[l] += x2[k + l] * wk;                                                         \
                        a3[l] += x3[k + l] * wk;                                                         \
                    }                                                                                    \
                float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);                        \
                for (int k = kv; k < cols; k++) {                                                        \
                    float wk = LOAD(w[k]);                                                               \
                    s0 += x0[k] * wk;                                                                    \
                    s1 += x1[k] * wk;                                                                    \
                    s2 += x2[k] * wk;                                                                    \
                    s3 += x3[k] * wk;                                                                    \
                }                                                                                        \
                float *yo = y + (size_t)t * ystride + o;                                                 \
                size_t st = (size_t)ystride;                                                             \
                if (acc) {                                                                               \
                    yo[0] += s0, yo[st] += s1, yo[2 * st] += s2, yo[3 * st] += s3;                       \
                } else {                                                                                 \
                    yo[0] = s0, yo[st] = s1, yo[2 * st] = s2, yo[3 * st] = s3;                           \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        for (; t < T; t++) {                                                                             \
            const float *x0 = x + (size_t)t * xs;                                                        \
            for (int o = o0; o < o1; o++) {                                                              \
                const WTYPE *w = W + (size_t)o * cols;                                                   \
                float a0[LANES] = {0};                                                                   \
                for (int k = 0; k < kv; k += LANES)                                                      \
                    for (int l = 0; l < LANES; l++) a0[l] += x0[k + l] * LOAD(w[k + l]);                 \
                float s0 = hsum(a0);                                                                     \
                for (int k = kv; k < cols; k++) s0 += x0[k] * LOAD(w[k]);                                \
                float *yo = y + (size_t)t * ystride + o;                                                 \
                *yo = acc ? *yo + s0 : s0;                                                               \
            }                                                                                            \
        }                                                                                                \
    }

#define LOAD_F32(v) (v)
DEFINE_MM_BLOCK(mm_f32_block, float, LOAD_F32)
DEFINE_MM_BLOCK(mm_bf16_block, uint16_t, bf16_f32)
#undef LOAD_F32
#undef DEFINE_MM_BLOCK

/* Quantized weights (q8_0, q4_0): each block of 32 is widened to float32
   times its scale, then multiplies float32 activations: the product of
   the dequantized matrix, 32 partial sums per (token, output), for up to 4
   tokens per weight block read. */
#define QB KERN_QBLOCK

static inline void dequant_block(aria_dtype dt, const uint8_t *q, float d, float *w) {
    if (dt == ARIA_DT_Q4_0) {
        for (int j = 0; j < QB / 2; j++) {
            w[j] = d * (float)((q[j] & 15) - 8);
            w[j + QB / 2] = d * (float)((q[j] >> 4) - 8);
        }
    } else {
        for (int j = 0; j < QB; j++) w[j] = d * (float)(int8_t)q[j];
    }
}

/* q4_k: a super-block of 256 is widened at a time (quant_k.c), then its
   8 sub-blocks multiply as above. */
ARIA_CLONES
static void mm_q4k_block(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y, int ys,
                         int acc) {
    int ns = W->cols / KERN_QK_SUPER;
    size_t rb = (size_t)W->cols / 2, kb = (size_t)ns * KERN_QK_HEAD;
    for (int t = 0; t < T; t += 4) {
        int nt = T - t < 4 ? T - t : 4;
        const float *xt = x + (size_t)t * xs;
        for (int o = o0; o < o1; o++) {
            const uint8_t *q = (const uint8_t *)W->data + (size_t)o * rb;
            const uint8_t *k = (const uint8_t *)W->scales + (size_t)o * kb;
            float a[4][QB] = {{0}};
            for (int b = 0; b < ns; b++) {
                float w[KERN_QK_SUPER];
                kern_q4k_dequant_super(q + (size_t)b * KERN_QK_SUPER / 2, k + (size_t)b * KERN_QK_HEAD, w);
                for (int i = 0; i < nt; i++) {
                    const float *xi = xt + (size_t)i * xs + (size_t)b * KERN_QK_SUPER;
                    for (int u = 0; u < KERN_QK_SUPER; u += QB)
                        for (int j = 0; j < QB; j++) a[i][j] += xi[u + j] * w[u + j];
                }
            }
            for (int i = 0; i < nt; i++) {
                float s = 0.0f;
                for (int j = 0; j < QB; j++) s += a[i][j];
                float *yo = y + (size_t)(t + i) * ys + o;
                *yo = acc ? *yo + s : s;
            }
        }
    }
}

ARIA_CLONES
static void mm_quant_block(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y, int ys,
                           int acc) {
    if (W->dtype == ARIA_DT_Q4_K) {
        mm_q4k_block(x, xs, T, W, o0, o1, y, ys, acc);
        return;
    }
    int nb = W->cols / QB;
    size_t rb = kern_quant_row_bytes(W->dtype, W->cols), qb = rb / (size_t)nb;
    for (int t = 0; t < T; t += 4) {
        int nt = T - t < 4 ? T - t : 4;
        const float *xt = x + (size_t)t * xs;
        for (int o = o0; o < o1; o++) {
            const uint8_t *q = (const uint8_t *)W->data + (size_t)o * rb;
            const uint16_t *sc = W->scales + (size_t)o * nb;
            float a[4][QB] = {{0}};
            for (int b = 0; b < nb; b++) {
                float w[QB];
                dequant_block(W->dtype, q + (size_t)b * qb, kern_f16_to_f32(sc[b]), w);
                for (int i = 0; i < nt; i++) {
                    const float *xi = xt + (size_t)i * xs + (size_t)b * QB;
                    for (int j = 0; j < QB; j++) a[i][j] += xi[j] * w[j];
                }
            }
            for (int i = 0; i < nt; i++) {
                float s = 0.0f;
                for (int j = 0; j < QB; j++) s += a[i][j];
                float *yo = y + (size_t)(t + i) * ys + o;
                *yo = acc ? *yo + s : s;
            }
        }
    }
}
#undef QB

static void portable_mm_block(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y,
                              int ys, int acc) {
    if (kern_dtype_quantized(W->dtype))
        mm_quant_block(x, xs, T, W, o0, o1, y, ys, acc);
    else if (W->dtype == ARIA_DT_BF16)
        mm_bf16_block(x, xs, T, W->data, W->cols, o0, o1, y, ys, acc);
    else
        mm_f32_block(x, xs, T, W->data, W->cols, o0, o1, y, ys, acc);
}

/* Rows [m0, m1) of C = alpha op(A) op(B) (+ C). A row of op(A) is read
   from tmp when given (a copy of a column of A when ta), else in place:
   the same arithmetic either way. */
static void portable_gemm_rows(const kern_gemm_args *g, int m0, int m1, float *tmp) {
    for (int m = m0; m < m1; m++) {
        const float *ar = g->A + (size_t)m * g->lda;
        size_t as = 1;
        if (g->ta && tmp) {
            for (int k = 0; k < g->K; k++) tmp[k] = g->A[(size_t)k * g->lda + m];
            ar = tmp;
        } else if (g->ta) {
            ar = g->A + m;
            as = (size_t)g->lda;
        }
        float *c = g->C + (size_t)m * g->ldc;
        if (!g->acc) memset(c, 0, (size_t)g->N * sizeof *c);
        if (!g->tb) {
            for (int k = 0; k < g->K; k++) {
                float a = ar[k * as] * g->alpha;
                if (a == 0.0f) continue;
                const float *b = g->B + (size_t)k * g->ldb;
                for (int n = 0; n < g->N; n++) c[n] += a * b[n];
            }
        } else {
            for (int n = 0; n < g->N; n++) {
                const float *b = g->B + (size_t)n * g->ldb;
                float s = 0.0f;
                for (int k = 0; k < g->K; k++) s += ar[k * as] * b[k];
                c[n] += s * g->alpha;
            }
        }
    }
}

static int portable_sgemm_st(const kern_gemm_args *g, float beta) {
    kern_gemm_args a = *g;
    float tmp[256];
    a.acc = beta != 0.0f;
    portable_gemm_rows(&a, 0, a.M, a.K <= 256 ? tmp : NULL);
    return 0;
}

static void portable_to_bf16(const float *x, uint16_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        out[i] = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)(u >> 16 | 0x0040u)
                                                 : (uint16_t)((u + 0x7fffu + (u >> 16 & 1u)) >> 16);
    }
}

/* ---------------------------------------------------------------------- */
/* LayerNorm, SwiGLU, RoPE                                                */
/* ---------------------------------------------------------------------- */

/* Sums in double, then the row in float32. */
static void portable_layernorm_fwd(float *out, float *mean, float *rstd, const float *x, const float *w,
                                   const float *b, int rows, int d) {
    for (int t = 0; t < rows; t++) {
        const float *xr = x + (size_t)t * d;
        float *yr = out + (size_t)t * d;
        double mu = 0.0, var = 0.0;
        for (int i = 0; i < d; i++) mu += xr[i];
        mu /= d;
        for (int i = 0; i < d; i++) var += (xr[i] - mu) * (xr[i] - mu);
        var /= d;
        float m = (float)mu, r = (float)(1.0 / sqrt(var + KERN_LN_EPS));
        if (mean) mean[t] = m;
        if (rstd) rstd[t] = r;
        for (int i = 0; i < d; i++) yr[i] = (xr[i] - m) * r * w[i] + b[i];
    }
}

static void portable_layernorm_bwd_dx(float *dx, const float *dout, const float *x, const float *w,
                                      const float *mean, const float *rstd, int rows, int d) {
    for (int t = 0; t < rows; t++) {
        const float *xr = x + (size_t)t * d, *g = dout + (size_t)t * d;
        float m = mean[t], r = rstd[t];
        double s1 = 0, s2 = 0;
        for (int i = 0; i < d; i++) {
            float xh = (xr[i] - m) * r, dxh = g[i] * w[i];
            s1 += dxh;
            s2 += dxh * xh;
        }
        float a = (float)(s1 / d), b2 = (float)(s2 / d);
        float *dr = dx + (size_t)t * d;
        for (int i = 0; i < d; i++) {
            float xh = (xr[i] - m) * r;
            dr[i] += r * (g[i] * w[i] - a - xh * b2);
        }
    }
}

/* Each column sums its rows in order. */
static void portable_layernorm_bwd_dw(float *dw, float *db, const float *dout, const float *x, const float *mean,
                                      const float *rstd, int rows, int d, int i0, int i1) {
    for (int t = 0; t < rows; t++) {
        const float *xr = x + (size_t)t * d, *g = dout + (size_t)t * d;
        float m = mean[t], r = rstd[t];
        for (int i = i0; i < i1; i++) {
            dw[i] += g[i] * ((xr[i] - m) * r);
            db[i] += g[i];
        }
    }
}

static void portable_swiglu_fwd(float *out, const float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void portable_swiglu_bwd(float *dg, float *du, const float *dout, const float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i], s = 1.0f / (1.0f + expf(-gi)), da = dout[i];
        du[i] = da * gi * s;
        dg[i] = da * u[i] * s * (1.0f + gi * (1.0f - s));
    }
}

static void portable_rope(float *x, int r0, int r1, int T, int n_heads, int hd, int row_stride, const float *cs,
                          int pos0, int inverse) {
    int half = hd / 2;
    for (int r = r0; r < r1; r++) {
        const float *c = cs + (size_t)(pos0 + r % T) * half * 2;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)r * row_stride + (size_t)h * hd;
            for (int i = 0; i < half; i++) {
                float x1 = v[i], x2 = v[i + half], co = c[2 * i], si = inverse ? -c[2 * i + 1] : c[2 * i + 1];
                v[i] = x1 * co - x2 * si;
                v[i + half] = x2 * co + x1 * si;
            }
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Softmax and cross-entropy                                              */
/* ---------------------------------------------------------------------- */

/* The row's maximum; a NaN first element stays (x > NaN is false). */
static float row_max(const float *x, size_t n) {
    float mx = x[0];
    for (size_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

/* Sums of exponentials in double: the loss to ~1e-7 of PyTorch's. */
static void portable_xent(float *logits, double *loss, const int32_t *targets, int r0, int r1, int V, int grad,
                          float dscale) {
    for (int r = r0; r < r1; r++) {
        float *lg = logits + (size_t)r * V;
        int tgt = targets[r];
        loss[r] = 0.0;
        if (tgt < 0) {
            if (grad) memset(lg, 0, (size_t)V * sizeof *lg);
            continue;
        }
        float mx = row_max(lg, (size_t)V);
        double se = 0;
        for (int i = 0; i < V; i++) se += exp((double)lg[i] - mx);
        double lse = mx + log(se);
        loss[r] = lse - lg[tgt];
        if (grad) {
            for (int i = 0; i < V; i++) lg[i] = (float)exp((double)lg[i] - lse) * dscale;
            lg[tgt] -= dscale;
        }
    }
}

static float portable_logsumexp(const float *x, size_t n) {
    if (n == 0) return -INFINITY;
    float mx = row_max(x, n);
    if (mx != mx) return mx;
    if (mx == -INFINITY) { /* all -inf, or NaNs the comparisons passed over */
        for (size_t i = 0; i < n; i++)
            if (x[i] != x[i]) return x[i];
        return mx;
    }
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += expf(x[i] - mx);
    return mx + logf(s);
}

static void portable_exp_scale(float *x, size_t n, float shift, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = expf(x[i] - shift) * scale;
}

static void portable_scale(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

static void portable_softmax_bwd(const float *p, float *g, size_t n, float D, float scale) {
    for (size_t i = 0; i < n; i++) g[i] = p[i] * (g[i] - D) * scale;
}

/* ---------------------------------------------------------------------- */
/* Attention                                                              */
/* ---------------------------------------------------------------------- */

/* Keys per block of the online softmax: the block's scores live on the
   stack. */
#define ATT_KB 64

/* One query against keys [0, n_keys): the output row is the running
   weighted sum, rescaled whenever a block raises the running maximum.
   The cache is float32 (K, V) or bfloat16 (Kh, Vh; the other pair NULL):
   one body, the element read chosen per row (KV_AT). */
#define KV_AT(F, H, i) ((F) ? (F)[i] : bf16_f32((H)[i]))
static inline __attribute__((always_inline)) void attn_one_kv(const float *q, const float *K, const float *V,
                                                              const uint16_t *Kh, const uint16_t *Vh, int n_keys,
                                                              int hd, float scale, float *o) {
    float m = -INFINITY, l = 0.0f, sc[ATT_KB];
    for (int i = 0; i < hd; i++) o[i] = 0.0f;
    for (int s0 = 0; s0 < n_keys; s0 += ATT_KB) {
        int n = n_keys - s0 < ATT_KB ? n_keys - s0 : ATT_KB;
        float bm = -INFINITY;
        for (int s = 0; s < n; s++) {
            size_t kr = (size_t)(s0 + s) * hd;
            float dot = 0.0f;
            for (int i = 0; i < hd; i++) dot += q[i] * KV_AT(K, Kh, kr + i);
            sc[s] = dot * scale;
            if (sc[s] > bm) bm = sc[s];
        }
        if (bm > m) {
            if (m != -INFINITY) {
                float r = expf(m - bm);
                l *= r;
                for (int i = 0; i < hd; i++) o[i] *= r;
            }
            m = bm;
        }
        for (int s = 0; s < n; s++) {
            size_t vr = (size_t)(s0 + s) * hd;
            float p = expf(sc[s] - m);
            l += p;
            for (int i = 0; i < hd; i++) o[i] += p * KV_AT(V, Vh, vr + i);
        }
    }
    float inv = 1.0f / l;
    for (int i = 0; i < hd; i++) o[i] *= inv;
}

ARIA_CLONES
static void attn_one(const float *q, const float *K, const float *V, int n_keys, int hd, float scale, float *o) {
    attn_one_kv(q, K, V, NULL, NULL, n_keys, hd, scale, o);
}

ARIA_CLONES
static void attn_one_h(const float *q, const uint16_t *K, const uint16_t *V, int n_keys, int hd, float scale,
                       float *o) {
    attn_one_kv(q, NULL, NULL, K, V, n_keys, hd, scale, o);
}

static void portable_attention(const float *q, int q_stride, const float *K, const float *V, int t0, int t1, int hd,
                               int pos0, float scale, float *out, int out_stride) {
    for (int t = t0; t < t1; t++)
        attn_one(q + (size_t)t * q_stride, K, V, pos0 + t + 1, hd, scale, out + (size_t)t * out_stride);
}

static void portable_attention_h(const float *q, int q_stride, const uint16_t *K, const uint16_t *V, int t0, int t1,
                                 int hd, int pos0, float scale, float *out, int out_stride) {
    for (int t = t0; t < t1; t++)
        attn_one_h(q + (size_t)t * q_stride, K, V, pos0 + t + 1, hd, scale, out + (size_t)t * out_stride);
}

/* q . k of query t and key u of row b, head h, times the scale. */
static float att_score(const kern_attn_args *a, int b, int h, int t, int u, float scale) {
    size_t d3 = 3 * (size_t)a->d;
    const float *q = a->qkv + ((size_t)b * a->T + t) * d3 + (size_t)h * a->hd;
    const float *k = a->qkv + ((size_t)b * a->T + u) * d3 + a->d + (size_t)h * a->hd;
    float dot = 0;
    for (int e = 0; e < a->hd; e++) dot += q[e] * k[e];
    return dot * scale;
}

/* One query at a time, the reference's order. Without tmp the scores are
   computed again for each pass, to the same bits. */
static void portable_attention_fwd(const kern_attn_args *a, int b, int h, float *s) {
    float scale = 1.0f / sqrtf((float)a->hd);
    size_t d3 = 3 * (size_t)a->d;
    for (int t = 0; t < a->T; t++) {
        float mx = -INFINITY;
        for (int u = 0; u <= t; u++) {
            float sc = att_score(a, b, h, t, u, scale);
            if (s) s[u] = sc;
            if (sc > mx) mx = sc;
        }
        float sum = 0;
        for (int u = 0; u <= t; u++) {
            float e = expf((s ? s[u] : att_score(a, b, h, t, u, scale)) - mx);
            if (s) s[u] = e;
            sum += e;
        }
        float *o = a->o + ((size_t)b * a->T + t) * a->d + (size_t)h * a->hd;
        for (int e = 0; e < a->hd; e++) o[e] = 0;
        for (int u = 0; u <= t; u++) {
            const float *v = a->qkv + ((size_t)b * a->T + u) * d3 + 2 * (size_t)a->d + (size_t)h * a->hd;
            float pw = (s ? s[u] : expf(att_score(a, b, h, t, u, scale) - mx)) / sum;
            for (int e = 0; e < a->hd; e++) o[e] += pw * v[e];
        }
        a->lse[((size_t)b * a->T + t) * a->H + h] = mx + logf(sum);
    }
}

/* dq, dk, dv of one (row, head); scores recomputed from q, k and lse. */
static void portable_attention_bwd(const kern_attn_args *a, int b, int h) {
    int hd = a->hd;
    size_t d3 = 3 * (size_t)a->d;
    float scale = 1.0f / sqrtf((float)hd);
    for (int t = 0; t < a->T; t++) {
        size_t row = (size_t)b * a->T + t;
        const float *q = a->qkv + row * d3 + (size_t)h * hd;
        const float *o = a->out + row * a->d + (size_t)h * hd, *dO = a->dout + row * a->d + (size_t)h * hd;
        float *dq = a->dqkv + row * d3 + (size_t)h * hd;
        float D = 0;
        for (int e = 0; e < hd; e++) D += dO[e] * o[e];
        float lse = a->lse_in[row * a->H + h];
        for (int u = 0; u <= t; u++) {
            size_t ru = (size_t)b * a->T + u;
            const float *k = a->qkv + ru * d3 + a->d + (size_t)h * hd, *v = k + a->d;
            float *dk = a->dqkv + ru * d3 + a->d + (size_t)h * hd, *dv = dk + a->d;
            float dot = 0, dp = 0;
            for (int e = 0; e < hd; e++) {
                dot += q[e] * k[e];
                dp += dO[e] * v[e];
            }
            float pw = expf(dot * scale - lse);
            float ds = pw * (dp - D) * scale;
            for (int e = 0; e < hd; e++) {
                dq[e] += ds * k[e];
                dk[e] += ds * q[e];
                dv[e] += pw * dO[e];
            }
        }
    }
}

/* ---------------------------------------------------------------------- */

static const kern_backend_i portable = {
    .name = "portable",
    .supports = portable_supports,
    .mm_block = portable_mm_block,
    .gemm_rows = portable_gemm_rows,
    .sgemm_st = portable_sgemm_st,
    .to_bf16 = portable_to_bf16,
    .layernorm_fwd = portable_layernorm_fwd,
    .layernorm_bwd_dx = portable_layernorm_bwd_dx,
    .layernorm_bwd_dw = portable_layernorm_bwd_dw,
    .swiglu_fwd = portable_swiglu_fwd,
    .swiglu_bwd = portable_swiglu_bwd,
    .rope = portable_rope,
    .xent = portable_xent,
    .logsumexp = portable_logsumexp,
    .exp_scale = portable_exp_scale,
    .scale = portable_scale,
    .softmax_bwd = portable_softmax_bwd,
    .attention = portable_attention,
    .attention_h = portable_attention_h,
    .attention_fwd = portable_attention_fwd,
    .attention_bwd = portable_attention_bwd,
};

const kern_backend_i *kern_backend_portable(void) { return &portable; }
