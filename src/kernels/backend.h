/*
 * backend.h - the table every kernel backend fills (after ggml's
 * ggml_backend_i), and the context that holds the backends.
 *
 * A backend is a set of functions for the ops it has, NULL for the rest,
 * and `supports`, which says whether it takes an op for a given shape and
 * precision. dispatch.c is the only caller of these tables and the only
 * place that falls back: it asks the context's backends in order (oneDNN,
 * quantized VNNI, AVX-512, portable) and gives the call to the first that supports it;
 * when that one fails, the next. A backend never calls another backend.
 *
 * Most ops are written for one thread over a range (rows, columns,
 * elements, one attention head): dispatch.c splits the work over the pool
 * and calls them from the tasks, so the split lives in one place. A few
 * schedule their own work (oneDNN's products pack weights and convert
 * activations first): they get the pool and the scratch (kern_res).
 *
 * To add a backend (quantized weights, a GPU): fill a kern_backend_i,
 * answer `supports` for what it does (a q8_0 kern_mat dtype, say), add
 * its getter to the list in dispatch.c. The portable backend supports
 * every op but the bfloat16 products, so a call always finds someone.
 *
 * Internal header of src/kernels; not part of the library's API.
 */
#ifndef ARIA_KERNELS_BACKEND_H
#define ARIA_KERNELS_BACKEND_H

#include "kernels/kernels.h"
#include "kernels/pool.h"

typedef enum {
    KERN_OP_MATMUL,        /* y (+)= x W^T; shape: m = T, n = W rows, k = W cols, dtype */
    KERN_OP_GEMM,          /* float32 C (+)= op(A) op(B); m, n, k = M, N, K */
    KERN_OP_GEMM_BF16,     /* the same on bfloat16 operands, on the pool */
    KERN_OP_SGEMM_ST,      /* float32, alpha/beta, on the calling thread */
    KERN_OP_GEMM_BF16_ST,  /* bfloat16 operands, on the calling thread */
    KERN_OP_TO_BF16,
    KERN_OP_LAYERNORM_FWD, /* m = rows, n = d */
    KERN_OP_LAYERNORM_BWD, /* m = rows, n = d */
    KERN_OP_SWIGLU_FWD,
    KERN_OP_SWIGLU_BWD,
    KERN_OP_ROPE,
    KERN_OP_XENT,          /* m = rows, n = V */
    KERN_OP_LOGSUMEXP,
    KERN_OP_EXP_SCALE,
    KERN_OP_SCALE,
    KERN_OP_SOFTMAX_BWD,
    KERN_OP_ATTENTION,     /* decoding with a KV cache; n = hd, dtype = the cache's (f32, bf16) */
    KERN_OP_ATTENTION_FWD, /* training, whole sequences; m = T, n = hd */
    KERN_OP_ATTENTION_BWD,
    KERN_OP_COUNT
} kern_op;

/* The sizes `supports` may look at; fields an op does not use are 0. */
typedef struct {
    int m, n, k;
    aria_dtype dtype;
} kern_shape;

/* What a backend that schedules its own work may use. */
typedef struct {
    aria_pool *pool;
    kern_scratch *scratch;
} kern_res;

/* Work a backend hands back (a block of columns or rows it could not do,
   nothing of it written): dispatch.c does it with the next backend, on the
   calling thread. */
typedef struct {
    void (*fn)(void *arg, int i0, int i1);
    void *arg;
} kern_redo;

/* The common head of every backend's prepared copy of a matrix. */
struct kern_packed {
    void (*free)(kern_packed *pk);
};

/* A general product, for the ops that take one. */
typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc, acc;
    const float *A, *B;
    float *C;
    float alpha;
} kern_gemm_args;

/* A training attention, q, k, v in rows of 3d. */
typedef struct {
    const float *qkv, *out, *dout, *lse_in;
    float *o, *lse, *dqkv;
    int B, T, H, hd, d;
} kern_attn_args;

typedef struct kern_backend_i {
    const char *name;
    int (*supports)(kern_op op, const kern_shape *s, aria_precision prec);

    /* Matrix product, column block form: tokens [0, T) x outputs
       [o0, o1), on the calling thread, y's rows ys apart. If x_floats is
       not NULL and returns nonzero, x is first rearranged by x_prepare into
       that many floats (rows *xs apart) and the block reads the copy. */
    size_t (*mm_x_floats)(const kern_mat *W, int T, size_t *xs);
    void (*mm_x_prepare)(const float *x, int T, const kern_mat *W, float *out);
    void (*mm_block)(const float *x, size_t xs, int T, const kern_mat *W, int o0, int o1, float *y, int ys, int acc);
    /* Matrix product, whole form (on the pool): 0 when done (column blocks
       it could not do handed to redo), nonzero when nothing was written. */
    int (*matmul)(const kern_res *r, const float *x, int T, const kern_mat *W, float *y, int acc,
                  const kern_redo *redo);

    /* General products. gemm_rows: rows [m0, m1) of C on this thread; tmp
       holds K floats (a row of op(A) when ta) or is NULL. gemm_bf16: the
       whole product on the pool from bfloat16 copies (rows it could not do
       handed to redo), nonzero when nothing was written. */
    void (*gemm_rows)(const kern_gemm_args *g, int m0, int m1, float *tmp);
    int (*gemm_bf16)(const kern_res *r, const kern_gemm_args *g, const uint16_t *Ah, int ldah, const uint16_t *Bh,
                     int ldbh, const kern_redo *redo);
    int (*sgemm_st)(const kern_gemm_args *g, float beta);
    int (*gemm_bf16_st)(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda, const uint16_t *B,
                        int ldb, float *C, int ldc, int acc);
    void (*to_bf16)(const float *x, uint16_t *out, size_t n);

    /* Rows (see kernels.h for what each computes). */
    void (*layernorm_fwd)(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b,
                          int rows, int d);
    void (*layernorm_bwd_dx)(float *dx, const float *dout, const float *x, const float *w, const float *mean,
                             const float *rstd, int rows, int d);
    /* dw, db += for columns [i0, i1) over all rows */
    void (*layernorm_bwd_dw)(float *dw, float *db, const float *dout, const float *x, const float *mean,
                             const float *rstd, int rows, int d, int i0, int i1);
    void (*swiglu_fwd)(float *out, const float *g, const float *u, size_t n);
    void (*swiglu_bwd)(float *dg, float *du, const float *dout, const float *g, const float *u, size_t n);
    /* rows [r0, r1) of kern_rope's x */
    void (*rope)(float *x, int r0, int r1, int T, int n_heads, int hd, int row_stride, const float *cs, int pos0,
                 int inverse);
    /* rows [r0, r1) */
    void (*xent)(float *logits, double *loss, const int32_t *targets, int r0, int r1, int V, int grad, float dscale);
    float (*logsumexp)(const float *x, size_t n);
    void (*exp_scale)(float *x, size_t n, float shift, float scale);
    void (*scale)(float *x, size_t n, float s);
    void (*softmax_bwd)(const float *p, float *g, size_t n, float D, float scale);

    /* Decoding attention: queries [t0, t1) (at most 32) of one (row, head);
       see kern_attention. */
    void (*attention)(const float *q, int q_stride, const float *K, const float *V, int t0, int t1, int hd, int pos0,
                      float scale, float *out, int out_stride);
    /* The same over a bfloat16 cache (kern_attention_h). */
    void (*attention_h)(const float *q, int q_stride, const uint16_t *K, const uint16_t *V, int t0, int t1, int hd,
                        int pos0, float scale, float *out, int out_stride);
    /* Training attention of one (row b, head h), exact order; tmp holds T
       floats or is NULL (then scores are computed again instead of kept). */
    void (*attention_fwd)(const kern_attn_args *a, int b, int h, float *tmp);
    void (*attention_bwd)(const kern_attn_args *a, int b, int h);
} kern_backend_i;

/* The context (aria_ctx in include/aria.h): its backends in the order
   dispatch.c asks them, the precision, the pool and scratch. A derived
   context shares its base's pool and scratch (owns = 0). */
#define KERN_MAX_BACKENDS 6
struct aria_ctx {
    aria_precision prec;
    int portable;
    int n_be;
    const kern_backend_i *be[KERN_MAX_BACKENDS];
    kern_res res;
    int owns;
    char desc[224];
};

/* The backends: NULL when this build or CPU lacks one. desc: a line on
   what it found (version, ISA), for aria_ctx_describe. */
const kern_backend_i *kern_backend_portable(void);
const kern_backend_i *kern_backend_avx512(const char **desc);
const kern_backend_i *kern_backend_onednn(const char **desc);
const kern_backend_i *kern_backend_quant(const char **desc);
/* q4_k products with AVX-512 VNNI, else AVX-VNNI (backend_quant_k.c), NULL
   when this build or CPU has neither; _variant: one of them by name,
   "avx512vnni" or "avxvnni", as kern_backend_quant_variant. */
const kern_backend_i *kern_backend_quant_k(void);
const kern_backend_i *kern_backend_quant_k_variant(const char *name);
/* One variant of the quantized backend by name, "avx512vnni" or
   "avxvnni", NULL when this build or CPU lacks it; kern_backend_quant
   picks the first the CPU has. For tests and benchmarks, which run each. */
const kern_backend_i *kern_backend_quant_variant(const char *name);
/* Puts be in the place of c's backend of the same name (1), or does
   nothing (0): how a test or benchmark runs one variant through dispatch. */
int kern_ctx_use_backend(aria_ctx *c, const kern_backend_i *be);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(ARIA_PORTABLE)
/* The AVX-512 subset (F, BW, VL, DQ, with FMA) that the x86 backends are
   compiled for; each adds what else it needs. */
static inline int kern_cpu_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
}

#include <cpuid.h>
/* F16C is CPUID leaf 1, ECX bit 29; AVX-VNNI leaf 7, sub-leaf 1, EAX bit 4
   (read directly: not every compiler's __builtin_cpu_supports knows them). */
static inline int kern_cpu_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
}
/* What the quantized backends' two forms need: the AVX-512 subset with
   VNNI (512-bit), or AVX2 with AVX-VNNI (256-bit; avx2 also says the OS
   keeps the 256-bit registers); F16C and FMA for both. */
static inline int kern_cpu_avx512vnni(void) {
    return kern_cpu_avx512() && __builtin_cpu_supports("avx512vnni") && kern_cpu_f16c();
}
static inline int kern_cpu_avxvnni(void) {
    unsigned a, b, c, d;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !kern_cpu_f16c()) return 0;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 4 & 1);
}
/* A quantized backend's form by name ("avx512vnni", "avxvnni"), or with
   name NULL the first this CPU has; NULL when the CPU lacks it. */
static inline const kern_backend_i *kern_vnni_form(const char *name, const kern_backend_i *v512,
                                                   const kern_backend_i *v256) {
    int want512 = !name || !__builtin_strcmp(name, "avx512vnni"), want256 = !name || !__builtin_strcmp(name, "avxvnni");
    if (want512 && kern_cpu_avx512vnni()) return v512;
    return want256 && kern_cpu_avxvnni() ? v256 : NULL;
}
#endif

#endif
