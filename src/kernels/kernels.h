/*
 * kernels.h - the numeric kernels the model is built from, and the thread
 * pool that runs them. Kernels know nothing of music or of the model's
 * structure: matrices, vectors and a pool.
 *
 * Matrix products all have one shape, that of a PyTorch Linear layer:
 *     y[t][o] (+)= sum_k x[t][k] * W[o][k]      x: [T][in], W: [out][in]
 * and go through kern_matmul, which picks the code for the weight's dtype
 * (float32 or bfloat16), the CPU and the size, and splits the output
 * columns over the pool:
 *   - portable kernels (float32 arithmetic, bfloat16 weights widened as
 *     they load): AVX-512 intrinsics when the CPU has AVX-512 (chosen
 *     once at run time), plain C otherwise. A product's result does not
 *     depend on T or on which rows share the call. Used for every small
 *     product, for decoding (T = the batch, 1..4 rows per step: the weights
 *     stream from memory once for all rows) and in "exact" precision.
 *   - oneDNN (when built with it, HAVE_DNNL) for large products in "fast"
 *     precision (T >= 16 and both sides of W >= 256: prefill, long
 *     batches): bfloat16 weights multiply activations rounded to bfloat16
 *     (float32 accumulation and output); float32 weights stay float32.
 *     bfloat16 weights are repacked once per matrix into oneDNN's blocked
 *     layout (lazily, at the first such product, shared by all sessions;
 *     kern_mat_release frees it); float32 ones are read in place (see
 *     PACK in kernels_dnnl.c). If oneDNN cannot do a product, the portable
 *     kernels do it.
 *
 * Precision: the environment variable ARIA_PRECISION=exact|fast (read
 * once, default fast) picks the default; kern_matmul_prec overrides it per
 * call. "exact" is float32 arithmetic on the weights' values everywhere
 * (what tests/test_model.c checks against PyTorch at 2e-6); "fast" differs
 * only in large products with bfloat16 weights (activations rounded to
 * bfloat16: on the random medium model, a 128-token prompt's last logits
 * move by 1% of the largest logit, probabilities by ~1e-5) and in
 * summation order for float32 ones.
 * Decoding is the same in both (its products are too small for oneDNN),
 * and so are the tiny test models (their matrices are under 256 wide).
 * ARIA_KERNELS=generic disables the AVX-512 code (for testing the plain C
 * path on an AVX-512 machine).
 *
 * Internal header; not part of the public API.
 */
#ifndef ARIA_KERNELS_H
#define ARIA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "aria.h"

/* ---- thread pool ---------------------------------------------------- */

typedef struct aria_pool aria_pool;

/* n_threads <= 0: one per online CPU. */
aria_pool *aria_pool_new(int n_threads);
void aria_pool_free(aria_pool *p);
int aria_pool_size(const aria_pool *p);
/* Runs fn(ctx, i) for i in [0, n_tasks) on the pool's threads and the
   caller's; returns when all are done. NULL pool: runs serially. Workers
   spin briefly after a job before they sleep, so the many short jobs of a
   decoding step do not each pay a wake-up. */
void aria_pool_run(aria_pool *p, void (*fn)(void *ctx, size_t i), void *ctx, size_t n_tasks);

/* ---- weights -------------------------------------------------------- */

typedef struct kern_packed kern_packed;

typedef struct {
    aria_dtype dtype;  /* ARIA_DT_F32 or ARIA_DT_BF16 */
    const void *data;  /* [rows][cols], row-major, aligned for its dtype */
    int rows, cols;    /* out, in */
    /* oneDNN's packed copy, made by the first large product and then
       shared by every session: a cache that depends only on the weights.
       NULL until then (zero-initialise kern_mat). */
    kern_packed *_Atomic packed;
} kern_mat;

/* Frees the packed copy, if any (with the model). */
void kern_mat_release(kern_mat *W);

typedef enum {
    KERN_PREC_DEFAULT = 0, /* ARIA_PRECISION, else fast */
    KERN_PREC_EXACT,       /* portable kernels only */
    KERN_PREC_FAST         /* oneDNN for large products (see above) */
} kern_prec;

/* y[T][rows] = x[T][cols] . W^T, or += when accumulate. */
void kern_matmul(aria_pool *p, const float *x, int T, const kern_mat *W, float *y, int accumulate);
void kern_matmul_prec(aria_pool *p, const float *x, int T, const kern_mat *W, float *y, int accumulate,
                      kern_prec prec);

/* Row `r` of W widened to float32. */
void kern_row_f32(const kern_mat *W, int r, float *out);

/* What the dispatch chose, e.g. "avx512 + oneDNN 2.6.3 (fast)". */
const char *kern_backend(void);
/* Whether products of this shape and precision would go to oneDNN. */
int kern_uses_dnnl(int T, const kern_mat *W, kern_prec prec);

/* What the dispatch found (ARIA_KERNELS=generic hides AVX-512), and the
   precision KERN_PREC_DEFAULT stands for (ARIA_PRECISION). */
int kern_has_avx512(void);
int kern_has_dnnl(void);
kern_prec kern_resolve_prec(kern_prec prec);

/* ---- general products (training, src/kernels_train.c) ---------------- */

/* C[M][N] = op(A) . op(B) (+ C when acc), row-major float32 in memory:
   op(A) is M x K, stored M x K with row stride lda, or K x M when ta;
   op(B) is K x N, stored K x N (ldb), or N x K when tb. Split over the
   pool by rows of C.
   KERN_PREC_FAST with oneDNN: A and B are rounded to bfloat16 (nearest
   even) and the products accumulate in float32 (oneDNN's brgemm).
   Otherwise float32, in a fixed order: for each row of C, the terms
   k = 0 .. K-1 added one after another (a row of op(A) times the rows of
   B when B is K x N, dot products when it is N x K). */
void kern_gemm(aria_pool *p, int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
               float *C, int ldc, int acc, kern_prec prec);
/* The same with bfloat16 copies of A and B made beforehand (either may be
   NULL: made here): dense, in the operand's stored order (row stride: its
   stored column count), as kern_to_bf16_pool makes them. They are used
   only on the fast path; A and B are still needed (the float32 path). */
void kern_gemm_h(aria_pool *p, int ta, int tb, int M, int N, int K, const float *A, const uint16_t *Ah, int lda,
                 const float *B, const uint16_t *Bh, int ldb, float *C, int ldc, int acc, kern_prec prec);
/* out = bfloat16(x) for a dense rows x cols matrix, on the pool. */
void kern_to_bf16_pool(aria_pool *p, const float *x, uint16_t *out, size_t rows, size_t cols);
/* Large temporary buffers kept between uses (fresh memory each time
   costs page faults): take one of at least `bytes`, give it back after;
   malloc when all are taken. kern_gemm_release frees those not taken. */
void *kern_scratch_take(size_t bytes);
void kern_scratch_give(void *p);
void kern_gemm_release(void);
/* The same in float32 on the calling thread only, C = alpha op(A) op(B)
   + beta C (beta 0 or 1): oneDNN's sgemm when built in, else the loops. */
void kern_sgemm_st(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                   int ldb, float beta, float *C, int ldc);
/* log(sum_i exp(x[i])), via the max; vector exp where AVX-512 is. */
float kern_logsumexp(const float *x, size_t n);
/* x[i] = exp(x[i] - shift) * scale */
void kern_exp_scale(float *x, size_t n, float shift, float scale);
/* x[i] *= s */
void kern_scale(float *x, size_t n, float s);
/* kern_dnnl_gemm_bf16_st where oneDNN is built in: 0 when it did the
   product, else nonzero and nothing written (the caller falls back). */
int kern_gemm_bf16_st(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda, const uint16_t *B, int ldb,
                      float *C, int ldc, int acc);
/* Softmax backward of one row: g[i] = p[i] (g[i] - D) scale. */
void kern_softmax_bwd(const float *p, float *g, size_t n, float D, float scale);
/* SwiGLU backward: given g, u and da = dLoss/d(silu(g) u) in dg,
   dg <- da u s (1 + g (1 - s)), du = da g s, s = sigmoid(g). */
void kern_swiglu_bwd(const float *g, const float *u, float *dg, float *du, size_t n);

/* ---- elementwise and small ops -------------------------------------- */

/* LayerNorm over the last dimension (biased variance), eps 1e-5 */
void kern_layernorm(const float *x, const float *w, const float *b, float *y, int T, int d, float eps);
/* x[i] = silu(g[i]) * u[i] */
void kern_swiglu(float *g, const float *u, size_t n);
/* RoPE, half-split layout, on rows of n_heads * head_dim at positions pos0 + t */
void kern_rope(float *x, int T, int n_heads, int head_dim, int row_stride, const float *cos_sin, int pos0);
/* The same three on the pool's threads, for many rows (prefill); few rows
   run on the caller's thread. Results are identical to the serial ones. */
void kern_layernorm_pool(aria_pool *p, const float *x, const float *w, const float *b, float *y, int T, int d,
                         float eps);
void kern_swiglu_pool(aria_pool *p, float *g, const float *u, size_t n);
void kern_rope_pool(aria_pool *p, float *x, int T, int n_heads, int head_dim, int row_stride, const float *cos_sin,
                    int pos0);
/* The rotation table: [max_pos][head_dim/2][2] = cos, sin of t * theta_i,
   computed in float32 as the reference (theta_i = 1 / base^(2i/d)). */
float *kern_rope_table(int max_pos, int head_dim, double base);

/* ---- attention ------------------------------------------------------ */

/* Causal multi-head attention with a KV cache, online softmax over blocks
   of keys (no T x T matrix, no allocation), scale 1/sqrt(head_dim).
   q:   [B][T][n_heads * hd] (row stride q_stride floats per token)
   k,v: cache, [B][n_heads][cap][hd]; positions 0 .. pos0 + T - 1 are filled
   out: [B][T][n_heads * hd] (row stride out_stride)
   Query t of each row sits at position pos0 + t and sees keys 0 .. pos0 + t. */
void kern_attention(aria_pool *p, const float *q, int q_stride, const float *k, const float *v,
                    int cap, int B, int T, int n_heads, int hd, int pos0, float *out, int out_stride);

/* ---- between kernels.c and its parts (kernels_avx512.c, kernels_dnnl.c) */

/* The portable product of output columns [o0, o1) only, on this thread
   (y has W->rows columns). */
void kern_portable_cols(const float *x, int T, const kern_mat *W, int o0, int o1, float *y, int acc);
/* float32 -> bfloat16, round to nearest even (NaN stays NaN). */
void kern_to_bf16(const float *x, uint16_t *out, size_t n);

/* AVX-512 versions; only called when the CPU has AVX-512 F/BW/VL/DQ.
   The product of tokens [0, T) and output columns [o0, o1): x rows have
   stride xs; for bfloat16 weights x must be deinterleaved first
   (kern_avx512_deinterleave, row stride kern_bf16_stride(cols)). */
void kern_avx512_matmul_block(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y,
                              int ystride, int acc);
void kern_avx512_deinterleave(const float *x, int T, int cols, float *out);
static inline size_t kern_bf16_stride(int cols) { return ((size_t)cols + 31) / 32 * 32; }
/* Attention for one (row, head) and queries [t0, t1) (at most 32): see
   kern_attention. hd must be 16, 32, 64, 128 or KERN_MAX_HD. */
#define KERN_MAX_HD 256
void kern_avx512_attention(const float *q, int q_stride, const float *K, const float *V, int t0, int t1,
                           int hd, int pos0, float scale, float *out, int out_stride);
void kern_avx512_swiglu(float *g, const float *u, size_t n);
void kern_avx512_to_bf16(const float *x, uint16_t *out, size_t n);

float kern_avx512_logsumexp(const float *x, size_t n);
void kern_avx512_exp_scale(float *x, size_t n, float shift, float scale);
void kern_avx512_scale(float *x, size_t n, float s);
void kern_avx512_swiglu_bwd(const float *g, const float *u, float *dg, float *du, size_t n);
void kern_avx512_softmax_bwd(const float *p, float *g, size_t n, float D, float scale);
void kern_avx512_ln_fwd(const float *x, const float *w, const float *b, float *y, float *mean, float *rstd,
                        size_t rows, int d, float eps);
void kern_avx512_ln_bwd_dx(const float *x, const float *mean, const float *rstd, const float *w, const float *dy,
                           float *dx, size_t rows, int d);
void kern_avx512_ln_bwd_dw(const float *x, const float *mean, const float *rstd, const float *dy, float *dw,
                           float *db, size_t rows, int d, int i0, int i1);

/* oneDNN: 0 when it did the product, else nonzero (the caller falls back).
   kern_dnnl_gemm_bf16: C (+)= op(A) op(B) on bfloat16 operands stored as
   kern_gemm's, one task of the pool per block of rows of C.
   kern_dnnl_sgemm_st: float32 sgemm on this thread. */
int kern_dnnl_gemm_bf16(aria_pool *p, int ta, int tb, int M, int N, int K, const uint16_t *A, int lda,
                        const uint16_t *B, int ldb, float *C, int ldc, int acc, const float *A32, int lda32,
                        const float *B32, int ldb32);
/* Rows [m0, m1) of kern_gemm's float32 product, on this thread. */
void kern_gemm_f32_block(int ta, int tb, int m0, int m1, int N, int K, const float *A, int lda, const float *B,
                         int ldb, float *C, int ldc, int acc);
int kern_dnnl_sgemm_st(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                       int ldb, float beta, float *C, int ldc);
/* bfloat16 C (+)= op(A) op(B) on this thread, primitives cached per thread. */
int kern_dnnl_gemm_bf16_st(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda, const uint16_t *B,
                           int ldb, float *C, int ldc, int acc);
/* kern_dnnl_init: 0 when oneDNN is usable; its version in buf. */
int kern_dnnl_init(char *buf, size_t cap);
int kern_dnnl_matmul(aria_pool *p, const float *x, int T, const kern_mat *W, float *y, int acc);
void kern_dnnl_release(kern_packed *pk);

#endif
