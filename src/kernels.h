/*
 * kernels.h - the numeric kernels the model is built from, and the thread
 * pool that runs them. Kernels know nothing of music or of the model's
 * structure: matrices, vectors and a pool.
 *
 * Matrix products all have one shape, that of a PyTorch Linear layer:
 *     y[t][o] (+)= sum_k x[t][k] * W[o][k]      x: [T][in], W: [out][in]
 * and go through kern_matmul, which picks the code for the weight's dtype
 * (float32 or bfloat16) and splits the output columns over the pool.
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
   caller's; returns when all are done. NULL pool: runs serially. */
void aria_pool_run(aria_pool *p, void (*fn)(void *ctx, size_t i), void *ctx, size_t n_tasks);

/* ---- weights -------------------------------------------------------- */

typedef struct {
    aria_dtype dtype;  /* ARIA_DT_F32 or ARIA_DT_BF16 */
    const void *data;  /* [rows][cols], row-major, aligned for its dtype */
    int rows, cols;    /* out, in */
} kern_mat;

/* y[T][rows] = x[T][cols] . W^T, or += when accumulate. */
void kern_matmul(aria_pool *p, const float *x, int T, const kern_mat *W, float *y, int accumulate);

/* Row `r` of W widened to float32. */
void kern_row_f32(const kern_mat *W, int r, float *out);

/* ---- elementwise and small ops -------------------------------------- */

/* LayerNorm over the last dimension (biased variance), eps 1e-5 */
void kern_layernorm(const float *x, const float *w, const float *b, float *y, int T, int d, float eps);
/* x[i] = silu(g[i]) * u[i] */
void kern_swiglu(float *g, const float *u, size_t n);
/* RoPE, half-split layout, on rows of n_heads * head_dim at positions pos0 + t */
void kern_rope(float *x, int T, int n_heads, int head_dim, int row_stride, const float *cos_sin, int pos0);
/* The rotation table: [max_pos][head_dim/2][2] = cos, sin of t * theta_i,
   computed in float32 as the reference (theta_i = 1 / base^(2i/d)). */
float *kern_rope_table(int max_pos, int head_dim, double base);

/* ---- attention ------------------------------------------------------ */

/* Causal multi-head attention with a KV cache, online softmax (no T x T
   matrix), scale 1/sqrt(head_dim).
   q:   [B][T][n_heads * hd] (row stride q_stride floats per token)
   k,v: cache, [B][n_heads][cap][hd]; positions 0 .. pos0 + T - 1 are filled
   out: [B][T][n_heads * hd] (row stride out_stride)
   Query t of each row sits at position pos0 + t and sees keys 0 .. pos0 + t. */
void kern_attention(aria_pool *p, const float *q, int q_stride, const float *k, const float *v,
                    int cap, int B, int T, int n_heads, int hd, int pos0, float *out, int out_stride);

#endif
