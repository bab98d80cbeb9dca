/*
 * kernels.h - the numeric kernels the model is built from. Kernels know
 * nothing of music or of the model's structure: matrices, rows of
 * activations, a context.
 *
 * Every entry point takes the caller's context (aria_ctx, include/aria.h):
 * its thread pool, its precision and the backends it may use. The entry
 * points live in dispatch.c, which picks a backend per call (the first of
 * oneDNN, AVX-512, portable C that supports the op, shape and precision,
 * see backend.h) and falls back to the next when one refuses or fails.
 *
 * Matrix products have the shape of a PyTorch Linear layer:
 *     y[t][o] (+)= sum_k x[t][k] * W[o][k]      x: [T][in], W: [out][in]
 *   - portable kernels (float32 arithmetic, bfloat16 weights widened as
 *     they load; AVX-512 intrinsics when the CPU has them, plain C
 *     otherwise). A product's result does not depend on T or on which rows
 *     share the call. Used for every small product, for decoding and in
 *     exact precision.
 *   - quantized weights (q8_0, q4_0, q4_k; see kern_mat): in fast precision
 *     on AVX-512 VNNI with int8 activations (backend_quant.c,
 *     backend_quant_k.c), else the portable float32 product of the
 *     dequantized weights.
 *   - oneDNN (builds with HAVE_DNNL) for large products in fast precision
 *     (T >= 16 and both sides of W >= 256): bfloat16 weights multiply
 *     activations rounded to bfloat16 (float32 accumulation and output);
 *     float32 weights stay float32. bfloat16 weights are repacked once per
 *     matrix into oneDNN's layout (lazily, shared by every context;
 *     kern_mat_release frees it).
 *
 * Precision (the context's): exact is float32 arithmetic in the
 * reference's order everywhere (the training ops keep the bits of the
 * reference code); fast differs in large products (above), in the
 * training attention (blocked products, bfloat16 operands with oneDNN), and
 * in float32 vector sums and a polynomial exp for LayerNorm, SwiGLU and the
 * softmax pieces where AVX-512 is.
 *
 * Shapes are llm.c's: N rows of d floats for LayerNorm; q, k, v side by
 * side in rows of 3d for attention (d = n_heads * hd), heads
 * [h * hd, (h + 1) * hd) of each.
 *
 * Internal header; not part of the public API.
 */
#ifndef ARIA_KERNELS_H
#define ARIA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "aria.h"
#include "kernels/pool.h"

/* LayerNorm's epsilon (the reference's). */
#define KERN_LN_EPS 1e-5f

/* ---- weights -------------------------------------------------------- */

/* A backend's prepared copy of a matrix (oneDNN's packed layout today; a
   quantized or device copy later), made at the first product that wants
   it and shared by every context: a cache that depends only on the
   weights. */
typedef struct kern_packed kern_packed;

typedef struct {
    aria_dtype dtype;  /* ARIA_DT_F32, ARIA_DT_BF16, ARIA_DT_Q8_0, ARIA_DT_Q4_0 or ARIA_DT_Q4_K */
    const void *data;  /* [rows][cols], row-major, aligned for its dtype; quantized:
                          the integers, kern_quant_row_bytes per row (see below) */
    int rows, cols;    /* out, in */
    kern_packed *_Atomic packed; /* NULL until then (zero-initialise kern_mat) */
    const uint16_t *scales; /* quantized: [rows][cols / KERN_QBLOCK] float16 (q4_k: the
                               same size, the packed bytes described below) */
} kern_mat;

/* Block-quantized matrices (docs/quantization.md). Each row is cut into
   blocks of KERN_QBLOCK weights; a block keeps one float16 scale d and
   integers q with weight = d q:
     q8_0: 32 int8 (-127..127), one byte each, in order;
     q4_0: 16 bytes, byte j holding weight j in its low nibble and weight
           j + 16 in its high nibble, each stored as q + 8 (q in -8..7).
   Integers and scales lie in two arrays (the file's two tensors), so a
   mapped file is used as it is. cols must be a multiple of KERN_QBLOCK. */
#define KERN_QBLOCK 32
/* q4_k (ggml's k-quant layout): super-blocks of KERN_QK_SUPER = 256
   weights, 8 sub-blocks of 32, weight = d*sc_j*q - dmin*m_j, q in 0..15.
     integers: 128 bytes a super-block; bytes [32p, 32p + 32) (p = 0..3)
           hold sub-block 2p in their low nibbles and sub-block 2p + 1 in
           their high nibbles (byte 32p + l: weights 64p + l, 64p + 32 + l);
     scales (kern_mat.scales, read as bytes): KERN_QK_HEAD = 16 bytes a
           super-block: d and dmin (float16, little-endian), then 12 bytes
           of 6-bit sc_j and m_j: for j < 4, sc_j and m_j are the low 6 bits
           of bytes j and j + 4; for j >= 4, byte j + 4 holds the low 4 bits
           of sc_j (low nibble) and m_j (high nibble), and the top 2 bits of
           bytes j - 4 and j hold their high 2 bits.
   A row has cols / 256 * 16 bytes of scales = cols / 32 uint16, the same
   stride as q8_0's and q4_0's scales. cols must be a multiple of 256. */
#define KERN_QK_SUPER 256
#define KERN_QK_HEAD 16
/* Whether dtype is one of the quantized types. */
static inline int kern_dtype_quantized(aria_dtype dt) {
    return dt == ARIA_DT_Q8_0 || dt == ARIA_DT_Q4_0 || dt == ARIA_DT_Q4_K;
}
/* The weights a type's blocks hold: cols must be a multiple of it. */
static inline int kern_quant_block(aria_dtype dt) { return dt == ARIA_DT_Q4_K ? KERN_QK_SUPER : KERN_QBLOCK; }
/* q4_k pieces (quant_k.c): a row quantized (cols / 256 super-blocks: 128
   bytes of nibbles each into q, 16 bytes of scales each into k), a
   super-block or a row back to float32, and sub-block j's 6-bit scale and
   min from the 12 packed bytes. */
void kern_q4k_quant_row(const float *x, int cols, uint8_t *q, uint8_t *k);
void kern_q4k_dequant_super(const uint8_t *q, const uint8_t *k, float *out);
void kern_q4k_dequant_row(const uint8_t *q, const uint8_t *k, int cols, float *out);
void kern_q4k_scale_min(const uint8_t *k12, int j, int *sc, int *m);
/* Bytes of integers in one row of cols weights. */
size_t kern_quant_row_bytes(aria_dtype type, int cols);
/* Quantizes one row of cols floats: the integers into q, cols/32 float16
   scales into scales (q4_k: its packed scales, the same bytes). Scales are
   rounded to float16 first and the integers chosen for the rounded scale. Non-finite inputs are the
   caller's to refuse (kern_quant_row gives them no meaning). */
void kern_quant_row(aria_dtype type, const float *x, int cols, void *q, uint16_t *scales);
/* The weights of one quantized row as float32. */
void kern_dequant_row(aria_dtype type, const void *q, const uint16_t *scales, int cols, float *out);
/* float16 <-> float32 (round to nearest even; what the scales are). */
float kern_f16_to_f32(uint16_t h);
uint16_t kern_f32_to_f16(float f);

/* Frees the packed copy, if any (with the model, or when the weights
   change). */
void kern_mat_release(kern_mat *W);
/* Row `r` of W as float32 (widened, or dequantized). */
void kern_row_f32(const kern_mat *W, int r, float *out);

/* ---- the context, as kernels' callers see it ------------------------- */

aria_pool *kern_ctx_pool(aria_ctx *c);
aria_precision kern_ctx_precision(const aria_ctx *c);
int kern_ctx_threads(const aria_ctx *c);
/* A context sharing base's pool, backends and scratch with another
   precision (free it before base). */
int kern_ctx_derive(aria_ctx **out, aria_ctx *base, aria_precision precision, aria_error *err);
/* Whether the context may use the backend "portable", "avx512" or
   "onednn". */
int kern_ctx_has_backend(const aria_ctx *c, const char *name);
/* Frees the scratch buffers not in use (after a training run). */
void kern_ctx_trim(aria_ctx *c);

/* ---- matrix products ------------------------------------------------ */

/* y[T][rows] = x[T][cols] . W^T, or += when acc. */
void kern_matmul(aria_ctx *c, const float *x, int T, const kern_mat *W, float *y, int acc);
/* The name of the backend that would do such a product first. */
const char *kern_matmul_backend(const aria_ctx *c, int T, const kern_mat *W);

/* C[M][N] = op(A) . op(B) (+ C when acc), row-major float32: op(A) is
   M x K, stored M x K with row stride lda, or K x M when ta; op(B) is
   K x N, stored K x N (ldb), or N x K when tb. Split over the pool by rows
   of C. Fast with oneDNN: A and B rounded to bfloat16, float32 sums.
   Otherwise float32 in a fixed order: for each row of C the terms
   k = 0 .. K-1 one after another. */
void kern_gemm(aria_ctx *c, int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
               float *C, int ldc, int acc);
/* The same with bfloat16 copies of A and B made beforehand (either may be
   NULL: made here), dense in the operand's stored order (row stride: its
   stored column count), as kern_to_bf16 makes them. Used only where the
   product runs on bfloat16 (kern_gemm_uses_bf16); A and B are still
   needed for the float32 path. */
void kern_gemm_h(aria_ctx *c, int ta, int tb, int M, int N, int K, const float *A, const uint16_t *Ah, int lda,
                 const float *B, const uint16_t *Bh, int ldb, float *C, int ldc, int acc);
/* Whether kern_gemm rounds its operands to bfloat16 in this context (a
   caller may then keep bfloat16 copies for kern_gemm_h). */
int kern_gemm_uses_bf16(const aria_ctx *c);
/* C = alpha op(A) op(B) + beta C (beta 0 or 1) on the calling thread. */
void kern_sgemm_st(aria_ctx *c, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc);
/* C (+)= op(A) op(B) on bfloat16 operands, on the calling thread: 0 when
   done, else nonzero and nothing written (no backend for it). */
int kern_gemm_bf16_st(aria_ctx *c, int ta, int tb, int M, int N, int K, const uint16_t *A, int lda,
                      const uint16_t *B, int ldb, float *C, int ldc, int acc);
/* out = bfloat16(x), round to nearest even, NaN stays NaN; n elements,
   split over the pool when large. */
void kern_to_bf16(aria_ctx *c, const float *x, uint16_t *out, size_t n);

/* ---- rows ----------------------------------------------------------- */

/* LayerNorm of N rows of d (biased variance, KERN_LN_EPS); keeps each
   row's mean and 1/std when mean and rstd are not NULL. */
void kern_layernorm_fwd(aria_ctx *c, float *out, float *mean, float *rstd, const float *x, const float *w,
                        const float *b, int N, int d);
/* Its backward: dx += dL/dx, dw += dL/dw, db += dL/db. */
void kern_layernorm_bwd(aria_ctx *c, float *dx, float *dw, float *db, const float *dout, const float *x,
                        const float *w, const float *mean, const float *rstd, int N, int d);
/* out[i] = silu(g[i]) * u[i] (out may be g). */
void kern_swiglu_fwd(aria_ctx *c, float *out, const float *g, const float *u, size_t n);
/* dg = dout u s (1 + g (1 - s)), du = dout g s, s = sigmoid(g) (dout may
   be dg). */
void kern_swiglu_bwd(aria_ctx *c, float *dg, float *du, const float *dout, const float *g, const float *u,
                     size_t n);
/* RoPE, half-split, in place on n_heads heads of hd at the start of each
   of N rows (row_stride floats apart); row r sits at position
   pos0 + r % T. inverse: the transposed rotation (for gradients). */
void kern_rope(aria_ctx *c, float *x, int N, int T, int n_heads, int hd, int row_stride, const float *cos_sin,
               int pos0, int inverse);
/* The rotation table: [max_pos][head_dim/2][2] = cos, sin of t * theta_i,
   computed in float32 as the reference (theta_i = 1 / base^(2i/d)). NULL
   when out of memory. */
float *kern_rope_table(int max_pos, int head_dim, double base);
/* Softmax cross-entropy of N rows of V logits: loss[r] = lse - logit of
   targets[r], 0 where targets[r] < 0. With grad, the logits become
   dscale (softmax - onehot) (0 for rows without a target). */
void kern_xent_fwd_bwd(aria_ctx *c, float *logits, double *loss, const int32_t *targets, int N, int V, int grad,
                       float dscale);

/* Softmax pieces on the calling thread (the blocked attention's). */
float kern_logsumexp(aria_ctx *c, const float *x, size_t n);                    /* log sum exp x[i] */
void kern_exp_scale(aria_ctx *c, float *x, size_t n, float shift, float scale); /* exp(x - shift) scale */
void kern_scale(aria_ctx *c, float *x, size_t n, float s);                      /* x *= s */
void kern_softmax_bwd(aria_ctx *c, const float *p, float *g, size_t n, float D, float scale); /* p (g - D) scale */

/* ---- attention ------------------------------------------------------ */

/* Causal multi-head attention with a KV cache (decoding, prefill), online
   softmax over blocks of keys, scale 1/sqrt(hd).
   q:   [B][T][n_heads * hd] (row stride q_stride floats per token)
   k,v: cache, [B][n_heads][cap][hd]; positions 0 .. pos0 + T - 1 filled
   out: [B][T][n_heads * hd] (row stride out_stride)
   Query t of each row sits at position pos0 + t and sees keys 0 .. pos0 + t. */
#define KERN_MAX_HD 256
void kern_attention(aria_ctx *c, const float *q, int q_stride, const float *k, const float *v, int cap, int B,
                    int T, int n_heads, int hd, int pos0, float *out, int out_stride);
/* The same over a cache held in bfloat16 (the fast precision's: a decoding
   step reads the whole cache, and half the bytes is half that time); the
   arithmetic stays float32. */
void kern_attention_h(aria_ctx *c, const float *q, int q_stride, const uint16_t *k, const uint16_t *v, int cap,
                      int B, int T, int n_heads, int hd, int pos0, float *out, int out_stride);
/* Whether a session that asks for a bfloat16 KV cache gets one on this
   context: fast precision only. */
int kern_kv_bf16(const aria_ctx *c);
/* Causal attention over whole sequences for training: qkv [B*T][3d]
   (after RoPE), out [B*T][d], lse [B*T][H] (each query's log-sum-exp of
   its scaled scores, for the backward). */
void kern_attention_fwd(aria_ctx *c, float *out, float *lse, const float *qkv, int B, int T, int H, int hd);
/* Its backward: dqkv += dL/dqkv from dout = dL/dout; scores are
   recomputed from q, k and lse. */
void kern_attention_bwd(aria_ctx *c, float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *lse, int B, int T, int H, int hd);

#endif
