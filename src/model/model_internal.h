/*
 * model_internal.h - the model as its own files see it: the parameter
 * table (params.c), the weights (model.c), the one forward pass per layer
 * (forward.c), its backward beside it (backward.c), and what the trainer
 * (train.c) and sessions (session.c) hand those passes. Internal; not part
 * of the public API.
 *
 * Who owns what: the model owns every weight (a read-only mapping or
 * converted copies for inference; one float32 arena, in table order, once
 * model_make_trainable has run) and the kernel context it runs on (its
 * own, or one the caller lends). A trainer owns only gradients (an arena
 * laid out as the weights'), AdamW moments and activations; a session owns
 * its KV cache and activations.
 */
#ifndef ARIA_MODEL_INTERNAL_H
#define ARIA_MODEL_INTERNAL_H

#include "aria.h"
#include "kernels/kernels.h"

#define MODEL_ROPE_BASE 500000.0

/* ---- the parameter table (params.c) ------------------------------------ */

/* What a tensor is for: decides its random initial value and how the
   passes read it. */
typedef enum {
    PARAM_EMBEDDING,   /* token embeddings: rows read by id */
    PARAM_NORM_WEIGHT, /* LayerNorm gain (starts at 1) */
    PARAM_NORM_BIAS,   /* LayerNorm bias (starts at 0) */
    PARAM_MATRIX,      /* a linear layer [out][in] inside a block */
    PARAM_HEAD         /* a head's matrix [out][in] after the final LayerNorm */
} param_role;

/* A tensor's sizes in terms of the config. The last three may come from
   the weights file when the config leaves them 0. */
typedef enum {
    DIM_NONE = 0, /* as cols: the tensor is a vector */
    DIM_D,        /* d_model */
    DIM_3D,       /* 3 d_model (q, k, v) */
    DIM_FF,       /* ff_mult d_model */
    DIM_VOCAB,    /* vocab_size */
    DIM_EMB,      /* emb_size */
    DIM_CLASS,    /* class_size */
    DIM_ADAPTER   /* embedding_adapter's input size */
} param_dim;

typedef struct {
    const char *name;  /* official name; "%d" = the layer for per-layer ones */
    param_role role;
    int per_layer;
    int head;          /* the ARIA_HEAD_* bit it belongs to, 0 for the trunk */
    param_dim rows, cols;
    int keeps_bf16;    /* a matrix: bfloat16 in a file stays bfloat16 for
                          inference; else (vectors) always float32 */
    size_t slot;       /* offsetof its kern_mat or const float * in
                          aria_model (global) or layer_w (per layer) */
} param_spec;

/* One tensor of one model, in table order (layers expanded). */
typedef struct {
    const param_spec *spec;
    int layer;          /* -1 for global tensors */
    char name[96];
    int64_t rows, cols; /* cols 0: a vector of `rows` */
    size_t n;           /* elements */
    size_t off;         /* its place in the float32 arena */
    kern_mat *mat;      /* where the model keeps it: a matrix, or */
    const float **vec;  /* a vector */
} model_param;

/* ---- the model (model.c) ----------------------------------------------- */

typedef struct {
    kern_mat qkv, proj, gate, up, down;
    const float *n1w, *n1b, *n2w, *n2b;
} layer_w;

struct aria_model {
    aria_model_config cfg;
    int heads;
    int adapter_in;     /* embedding_adapter's input size */
    aria_safetensors st;
    int has_st;
    kern_mat tok_emb, lm_head, emb_head, class_head, adapter;
    const float *out_w, *out_b;
    layer_w *layers;
    model_param *params; /* every tensor, table order */
    size_t n_params;     /* tensors */
    float *arena;        /* trainable: every weight in float32 (NULL until then) */
    size_t arena_n;      /* floats in the arena (also when there is none yet) */
    void **owned;        /* converted copies to free */
    size_t n_owned, cap_owned;
    float *rope;         /* [max_seq_len][head_dim/2][2] */
    aria_ctx *ctx;       /* what the kernels run on: the caller's or own_ctx */
    aria_ctx *own_ctx;   /* the model's default context (all CPUs, fast) */
};

/* Lists the model's tensors (m->params, m->arena_n) from the table, the
   config, m->heads and m->adapter_in; allocates m->layers. */
int model_params_build(aria_model *m, aria_error *err);
/* A tensor by official name, or NULL. */
const model_param *model_param_find(const aria_model *m, const char *name);
/* The value a table size stands for in this model. */
int64_t model_dim(const aria_model *m, param_dim d);
/* The sizes a weights file may set (emb_size, class_size, the adapter's
   input) when the model has none yet: a pointer to it, else NULL. */
int *model_open_dim(aria_model *m, param_dim d);
/* The table itself, for loading's head detection. */
const param_spec *model_param_table(size_t *n);
/* Moves every weight into one float32 arena (table order) owned by the
   model and points its matrices and vectors there; idempotent. */
int model_make_trainable(aria_model *m, aria_error *err);

/* ---- one pass through the model (forward.c, backward.c) ----------------- */

/* Seconds per kind of work, when a trainer profiles (aria_trainer_profile). */
enum { PR_GEMM, PR_ATT, PR_LN, PR_SWIGLU, PR_LOSS, PR_OPT, PR_OTHER, PR_N };
double model_clock(void);
#define MODEL_PROF(p, kind, stmt)                                   \
    do {                                                            \
        double prof_t0_ = (p)->prof ? model_clock() : 0;            \
        stmt;                                                       \
        if ((p)->prof) (p)->prof[kind] += model_clock() - prof_t0_; \
    } while (0)

/* How a pass runs. Inference: products by kern_matmul (any weight dtype,
   packed copies, the decoding kernels). Training: products by kern_gemm_h
   on the float32 arena, with bfloat16 copies of the weights (wh, laid out
   as m->arena) and of the products' inputs made once per pass when the
   context multiplies in bfloat16. The context's precision decides the
   rest (kernels.h). */
typedef struct {
    aria_ctx *ctx;
    int train;           /* training pass: arena weights, kern_gemm_h */
    const uint16_t *wh;  /* bfloat16 copy of m->arena, or NULL */
    float *grads;        /* backward: gradient arena, laid out as m->arena */
    uint16_t *dyh;       /* backward: room for a bfloat16 copy of an output gradient */
    double *prof;        /* PR_N seconds, or NULL */
} model_pass;

/* What one layer reads, writes and (training) keeps for the backward pass,
   [rows][...] with rows = B n in row-major [b][t] order. Inference points
   several of these at one buffer (xmid = out = x, ln2 = ln1, act = gate). */
typedef struct {
    float *x;                          /* [rows][d] the layer's input */
    float *ln1, *ln1_mean, *ln1_rstd;  /* LN1 output, row mean and 1/std (or NULL) */
    float *qkv;                        /* [rows][3d], q and k after RoPE */
    float *att, *lse;                  /* [rows][d] attention output; [rows][H]
                                          log-sum-exp (training) */
    float *xmid;                       /* residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *gate, *up, *act;            /* [rows][ff] SwiGLU inputs, output */
    float *out;                        /* [rows][d] the layer's output */
    uint16_t *ln1h, *atth, *ln2h, *acth; /* bfloat16 copies of product inputs, or NULL */
    /* Residual dropout (training; drop_p 0: none): each element of the
       attention and the feed-forward branch output is kept with
       probability 1 - drop_p and then scaled by 1 / (1 - drop_p), before
       it is added to the residual stream. The mask is a hash of
       (drop_seed, layer, branch, drop_row0 x n + element index), so the
       backward pass recomputes it instead of storing it. drop_tmp: [rows][d]
       scratch for the branch output. */
    float drop_p;
    uint64_t drop_seed;
    long drop_row0;
    float *drop_tmp;
} layer_acts;

/* 1 when element i of branch (0 attention, 1 feed-forward) of layer l is
   kept by a->drop_*'s mask. */
int model_drop_keep(const layer_acts *a, int l, int branch, size_t i);

/* A session's cache at one layer: [B][H][cap][hd] each, in float32 or
   bfloat16 (kern_kv_bf16). skip_first (may
   be NULL): rows b with skip_first[b] do not see cached position 0 (the
   unconditioned rows of classifier-free guidance, spec 4.4). */
typedef struct {
    float *k, *v;       /* float32 cache (exact precision), or NULL */
    uint16_t *kh, *vh;  /* bfloat16 cache (fast precision), or NULL */
    int cap;
    const unsigned char *skip_first;
} kv_cache;

/* x[r] = tok_embeddings[ids[r]] for r < rows. */
void model_embed(const aria_model *m, const int32_t *ids, int rows, float *x);
/* Layer l on B rows of n positions starting at pos0. With a cache, k and v
   go into it and attention sees every cached position; without one
   (training) pos0 is 0 and attention keeps its log-sum-exp in a->lse. */
void model_layer_forward(const aria_model *m, const model_pass *p, int l, layer_acts *a, int B, int n, int pos0,
                         const kv_cache *kv);
/* Final LayerNorm of rows x into h (statistics into mean, rstd, unless
   NULL), then the head `what` into out (ARIA_OUT_HIDDEN: h copied). hh: a
   bfloat16 copy of h for the product, or NULL. */
void model_head_forward(const aria_model *m, const model_pass *p, const float *x, int rows, aria_output what,
                        float *h, float *mean, float *rstd, uint16_t *hh, float *out);

/* Backward scratch, [rows][...] (rows = B T). */
typedef struct {
    float *dx;    /* d loss / d residual stream, carried down the layers */
    float *dln;   /* a LayerNorm output's gradient */
    float *dqkv, *datt, *dgate, *dup;
} layer_grads;

/* The lm_head and final LayerNorm backward: dlogits [rows][V] in, g->dx
   (overwritten) out; weight gradients added into p->grads. */
void model_head_backward(const aria_model *m, const model_pass *p, const float *x, const float *h,
                         const uint16_t *hh, const float *mean, const float *rstd, const float *dlogits, int rows,
                         layer_grads *g);
/* Layer l backward: g->dx holds d loss / d a->out and receives d loss /
   d a->x; weight gradients added into p->grads. */
void model_layer_backward(const aria_model *m, const model_pass *p, int l, const layer_acts *a, int B, int T,
                          layer_grads *g);
/* Adds the rows of dx into the embedding gradient at ids. */
void model_embed_backward(const aria_model *m, const model_pass *p, const int32_t *ids, int rows, const float *dx);

/* ---- the linear layers' products (forward.c, backward.c) --------------- */

/* y (+)= x W^T; xh: bfloat16 copy of x, or NULL. */
void model_linear_fwd(const aria_model *m, const model_pass *p, const float *x, const uint16_t *xh, const kern_mat *W,
                      float *y, int N, int acc);
/* dx += dy W (when dx), dW += dy^T x (into p->grads). */
void model_linear_bwd(const aria_model *m, const model_pass *p, const kern_mat *W, const float *x, const uint16_t *xh,
                      const float *dy, float *dx, int N);
/* A bfloat16 copy of a rows x cols activation, when xh is not NULL. */
void model_keep_bf16(const model_pass *p, const float *x, uint16_t *xh, size_t rows, size_t cols);
/* The gradient of a weight that lies in m->arena. */
float *model_grad_of(const aria_model *m, const model_pass *p, const void *weight);

#endif
