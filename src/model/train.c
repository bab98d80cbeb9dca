/*
 * train.c - gradients of the next-token loss and the AdamW step.
 *
 * The trainer turns the model's weights into one float32 arena (in the
 * reference's state-dict order) with gradients and the two AdamW moments
 * beside it, llm.c style, and repoints the model's matrices at it, so the
 * inference code keeps working on the trained weights.
 *
 * The forward pass here keeps what the backward pass needs, per layer: the
 * residual input, LayerNorm statistics and outputs, q/k/v after RoPE, the
 * attention output and each query's log-sum-exp, the SwiGLU inputs.
 * Attention is not stored as a T x T matrix: its backward recomputes each
 * score from q, k and the log-sum-exp.
 *
 * Products: forward y = x W^T (kern_matmul, exact precision), and for the
 * backward dx = dy W and dW += dy^T x, below, split over the thread pool by
 * rows so no two threads write the same memory.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aria.h"
#include "kernels/kernels.h"
#include "model/model_internal.h"
#include "base/util.h"

#define NORM_EPS 1e-5f


/* ARIA_TRAIN_PROFILE=1: seconds per kind of work, printed to stderr when
   the trainer is freed (for benchmarks; off by default, costs nothing). */
enum { PR_GEMM, PR_ATT, PR_LN, PR_SWIGLU, PR_LOSS, PR_OPT, PR_OTHER, PR_N };
static const char *const pr_name[PR_N] = {"products", "attention", "layernorm", "swiglu", "loss", "optimizer",
                                          "other"};
static double pr_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
#define PROF(t, kind, stmt)                                 \
    do {                                                    \
        double pr_t0_ = (t)->profile ? pr_now() : 0;        \
        stmt;                                               \
        if ((t)->profile) (t)->prof[kind] += pr_now() - pr_t0_; \
    } while (0)

aria_adamw_opts aria_adamw_defaults(void) { return (aria_adamw_opts){3e-4f, 0.9f, 0.95f, 1e-5f, 0.1f}; }

typedef struct {
    char name[96];
    size_t off, n;
} param_view;

typedef struct {
    float *x, *ln1, *ln1_m, *ln1_r, *qkv, *att, *lse, *xmid, *ln2, *ln2_m, *ln2_r, *gate, *up, *act;
    uint16_t *ln1h, *atth, *ln2h, *acth; /* bfloat16 copies of the products' inputs (fast, oneDNN) */
} layer_act;

struct aria_trainer {
    aria_model *m;
    int B, T;
    float *params, *grads, *m1, *m2;
    size_t n_params;
    param_view *views;
    size_t n_views;
    int step;
    int exact;           /* aria_trainer_set_exact */
    kern_prec prec;      /* KERN_PREC_EXACT or KERN_PREC_FAST, from exact */
    double *row_loss;    /* per token, for the mean */
    int profile;
    double prof[PR_N];
    /* activations */
    layer_act *acts;
    float *xL, *lnf, *lnf_m, *lnf_r, *logits;
    /* backward scratch */
    float *dx, *dln, *dqkv, *datt, *dgate, *dup;
    float *act_buf;
    /* fast precision with oneDNN: bfloat16 copies made once and used by
       every product that reads them (weights: refreshed each forward) */
    int use_h;
    int ln_vec;          /* LayerNorm on AVX-512 (fast precision, d % 16 == 0) */
    uint16_t *wh, *lnfh, *dyh, *qkvh, *datth, *h_buf;
};

/* ---------------------------------------------------------------------- */
/* Parameter arena                                                        */
/* ---------------------------------------------------------------------- */

typedef struct {
    const char *name;
    kern_mat *mat;      /* a matrix, or */
    const float **vec;  /* a vector */
    size_t n;
} param_ref;

/* Every parameter in state-dict order. */
static size_t list_params(aria_model *m, param_ref *out, char names[][96]) {
    size_t k = 0;
    int d = m->cfg.d_model;
#define MAT(nm, ptr)                                                                   \
    do {                                                                               \
        snprintf(names[k], 96, "%s", nm);                                              \
        out[k] = (param_ref){names[k], ptr, NULL, (size_t)(ptr)->rows * (ptr)->cols}; \
        k++;                                                                           \
    } while (0)
#define VEC(nm, ptr)                                                 \
    do {                                                             \
        snprintf(names[k], 96, "%s", nm);                            \
        out[k] = (param_ref){names[k], NULL, ptr, (size_t)d};        \
        k++;                                                         \
    } while (0)
    MAT("model.tok_embeddings.weight", &m->tok_emb);
    VEC("model.out_layer_norm.weight", &m->out_w);
    VEC("model.out_layer_norm.bias", &m->out_b);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        layer_w *L = &m->layers[l];
        char b[96];
#define LN(s) (snprintf(b, sizeof b, "model.encode_layers.%d." s, l), b)
        MAT(LN("mixed_qkv.weight"), &L->qkv);
        MAT(LN("att_proj_linear.weight"), &L->proj);
        MAT(LN("ff_gate_proj.weight"), &L->gate);
        MAT(LN("ff_up_proj.weight"), &L->up);
        MAT(LN("ff_down_proj.weight"), &L->down);
        VEC(LN("norm1.weight"), &L->n1w);
        VEC(LN("norm1.bias"), &L->n1b);
        VEC(LN("norm2.weight"), &L->n2w);
        VEC(LN("norm2.bias"), &L->n2b);
#undef LN
    }
    if (m->heads & ARIA_HEAD_LM) MAT("lm_head.weight", &m->lm_head);
    if (m->heads & ARIA_HEAD_EMB) MAT("emb_head.weight", &m->emb_head);
    if (m->heads & ARIA_HEAD_CLS) MAT("class_head.weight", &m->class_head);
#undef MAT
#undef VEC
    return k;
}

static int build_arena(aria_trainer *t) {
    aria_model *m = t->m;
    size_t cap = 4 + 9 * (size_t)m->cfg.n_layers + 3;
    param_ref *refs = calloc(cap, sizeof *refs);
    char(*names)[96] = calloc(cap, sizeof *names);
    t->views = calloc(cap, sizeof *t->views);
    if (!refs || !names || !t->views) {
        free(refs);
        free(names);
        return -1;
    }
    size_t n = list_params(m, refs, names), total = 0;
    for (size_t i = 0; i < n; i++) total += refs[i].n;
    t->params = malloc(total * sizeof(float));
    t->grads = calloc(total, sizeof(float));
    t->m1 = calloc(total, sizeof(float));
    t->m2 = calloc(total, sizeof(float));
    if (!t->params || !t->grads || !t->m1 || !t->m2) {
        free(refs);
        free(names);
        return -1;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        float *dst = t->params + off;
        if (refs[i].mat) {
            kern_mat *km = refs[i].mat;
            for (int r = 0; r < km->rows; r++) kern_row_f32(km, r, dst + (size_t)r * km->cols);
            kern_mat_release(km);
            km->dtype = ARIA_DT_F32;
            km->data = dst;
        } else {
            memcpy(dst, *refs[i].vec, refs[i].n * sizeof(float));
            *refs[i].vec = dst;
        }
        snprintf(t->views[i].name, sizeof t->views[i].name, "%s", refs[i].name);
        t->views[i].off = off;
        t->views[i].n = refs[i].n;
        off += refs[i].n;
    }
    t->n_params = total;
    t->n_views = n;
    free(refs);
    free(names);
    return 0;
}

static const param_view *find_view(const aria_trainer *t, const char *name) {
    for (size_t i = 0; i < t->n_views; i++)
        if (strcmp(t->views[i].name, name) == 0) return &t->views[i];
    return NULL;
}

const float *aria_trainer_grad(const aria_trainer *t, const char *name, size_t *n) {
    const param_view *v = find_view(t, name);
    if (!v) return NULL;
    if (n) *n = v->n;
    return t->grads + v->off;
}

void aria_trainer_moments(aria_trainer *t, const float **m1, const float **m2, size_t *n) {
    *m1 = t->m1;
    *m2 = t->m2;
    *n = t->n_params;
}

void aria_trainer_set_step(aria_trainer *t, int step) { t->step = step; }

const float *aria_trainer_param(const aria_trainer *t, const char *name, size_t *n) {
    const param_view *v = find_view(t, name);
    if (!v) return NULL;
    if (n) *n = v->n;
    return t->params + v->off;
}

/* Gradient pointer of a model matrix or vector (they live in the arena). */
static float *grad_of(aria_trainer *t, const void *param) {
    return t->grads + ((const float *)param - t->params);
}

/* ---------------------------------------------------------------------- */
/* Set-up                                                                 */
/* ---------------------------------------------------------------------- */

void aria_trainer_free(aria_trainer *t) {
    if (!t) return;
    if (t->profile) {
        double tot = 0;
        for (int k = 0; k < PR_N; k++) tot += t->prof[k];
        fprintf(stderr, "trainer profile (%s):", t->exact ? "exact" : "fast");
        for (int k = 0; k < PR_N; k++)
            fprintf(stderr, " %s %.3f s (%.1f%%)", pr_name[k], t->prof[k], tot > 0 ? 100 * t->prof[k] / tot : 0);
        fprintf(stderr, "\n");
    }
    free(t->act_buf);
    free(t->h_buf);
    free(t->acts);
    free(t->row_loss);
    kern_gemm_release();
    free(t->params);
    free(t->grads);
    free(t->m1);
    free(t->m2);
    free(t->views);
    free(t);
}

int aria_trainer_new(aria_trainer **out, aria_model *m, int batch, int seq_len, aria_error *err) {
    *out = NULL;
    const aria_model_config *c = &m->cfg;
    if (batch < 1 || seq_len < 2) return aria_fail(err, ARIA_ERR_ARG, "batch >= 1 and sequence length >= 2");
    if (seq_len > c->max_seq_len)
        return aria_fail(err, ARIA_ERR_ARG, "sequence length %d exceeds the model's context %d", seq_len, c->max_seq_len);
    if (!(m->heads & ARIA_HEAD_LM)) return aria_fail(err, ARIA_ERR_ARG, "training the LM loss needs an lm_head");
    aria_trainer *t = calloc(1, sizeof *t);
    if (!t) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    t->m = m;
    t->B = batch;
    t->T = seq_len;
    const char *pe = getenv("ARIA_TRAIN_PROFILE");
    t->profile = pe && *pe && strcmp(pe, "0") != 0;
    if (build_arena(t)) {
        aria_trainer_free(t);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory for the parameters");
    }
    size_t N = (size_t)batch * seq_len, d = (size_t)c->d_model, ff = (size_t)c->ff_mult * d,
           H = (size_t)c->n_heads, V = (size_t)c->vocab_size, L = (size_t)c->n_layers;
    size_t per_layer = N * (d + d + 2 + 3 * d + d + H + d + d + 2 + 3 * ff);
    size_t final = N * (d + d + 2 + V);
    size_t scratch = N * (d + d + 3 * d + d + 2 * ff);
    t->act_buf = malloc((L * per_layer + final + scratch) * sizeof(float));
    t->acts = calloc(L, sizeof *t->acts);
    t->row_loss = malloc(N * sizeof *t->row_loss);
    if (!t->act_buf || !t->acts || !t->row_loss) {
        aria_trainer_free(t);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory for activations (batch %d x %d tokens)", batch,
                         seq_len);
    }
    float *p = t->act_buf;
#define TAKE(ptr, count) (ptr = p, p += (count))
    for (size_t l = 0; l < L; l++) {
        layer_act *a = &t->acts[l];
        TAKE(a->x, N * d);
        TAKE(a->ln1, N * d);
        TAKE(a->ln1_m, N);
        TAKE(a->ln1_r, N);
        TAKE(a->qkv, N * 3 * d);
        TAKE(a->att, N * d);
        TAKE(a->lse, N * H);
        TAKE(a->xmid, N * d);
        TAKE(a->ln2, N * d);
        TAKE(a->ln2_m, N);
        TAKE(a->ln2_r, N);
        TAKE(a->gate, N * ff);
        TAKE(a->up, N * ff);
        TAKE(a->act, N * ff);
    }
    TAKE(t->xL, N * d);
    TAKE(t->lnf, N * d);
    TAKE(t->lnf_m, N);
    TAKE(t->lnf_r, N);
    TAKE(t->logits, N * V);
    TAKE(t->dx, N * d);
    TAKE(t->dln, N * d);
    TAKE(t->dqkv, N * 3 * d);
    TAKE(t->datt, N * d);
    TAKE(t->dgate, N * ff);
    TAKE(t->dup, N * ff);
#undef TAKE
    aria_trainer_set_exact(t, kern_resolve_prec(KERN_PREC_DEFAULT) == KERN_PREC_EXACT);
    *out = t;
    return ARIA_OK;
}

/* The bfloat16 copies, made on first use in the fast precision. */
static int alloc_h(aria_trainer *t) {
    const aria_model_config *c = &t->m->cfg;
    size_t N = (size_t)t->B * t->T, d = (size_t)c->d_model, ff = (size_t)c->ff_mult * d, V = (size_t)c->vocab_size;
    size_t L = (size_t)c->n_layers, dy = V > 3 * d ? V : 3 * d;
    dy = dy > ff ? dy : ff;
    size_t total = t->n_params + L * N * (3 * d + ff) + N * d + N * dy + N * 3 * d + N * d;
    t->h_buf = malloc(total * sizeof *t->h_buf);
    if (!t->h_buf) return -1;
    uint16_t *p = t->h_buf;
    t->wh = p, p += t->n_params;
    for (size_t l = 0; l < L; l++) {
        layer_act *a = &t->acts[l];
        a->ln1h = p, p += N * d;
        a->atth = p, p += N * d;
        a->ln2h = p, p += N * d;
        a->acth = p, p += N * ff;
    }
    t->lnfh = p, p += N * d;
    t->qkvh = p, p += N * 3 * d;
    t->datth = p, p += N * d;
    t->dyh = p;
    return 0;
}

void aria_trainer_set_exact(aria_trainer *t, int exact) {
    t->exact = exact != 0;
    t->prec = t->exact ? KERN_PREC_EXACT : KERN_PREC_FAST;
    /* without memory for the copies, the products make their own */
    t->use_h = !t->exact && kern_has_dnnl() && (t->h_buf || alloc_h(t) == 0);
    t->ln_vec = !t->exact && kern_has_avx512() && t->m->cfg.d_model % 16 == 0;
}

int aria_trainer_is_exact(const aria_trainer *t) { return t->exact; }

void aria_trainer_zero_grad(aria_trainer *t) { memset(t->grads, 0, t->n_params * sizeof(float)); }

/* ---------------------------------------------------------------------- */
/* Small ops with their statistics, split over the pool by rows           */
/* ---------------------------------------------------------------------- */

/* Every row-wise op below runs its rows in blocks of RB as pool tasks;
   a row's arithmetic does not depend on the split, so the exact
   precision keeps the bits of a serial loop. */
#define RB 16

static size_t n_blocks(size_t n, size_t per) { return (n + per - 1) / per; }

typedef struct {
    const float *x, *w, *b, *dy, *mean, *rstd;
    float *y, *m, *r, *dx, *dw, *db;
    size_t N;
    int d;
    int vec; /* fast precision on AVX-512: float32 vector sums */
} ln_job;

/* LayerNorm that keeps mean and 1/std per row (as floats). */
static void ln_fwd_task(void *ctx, size_t blk) {
    const ln_job *j = ctx;
    int d = j->d;
    size_t t0 = blk * RB, t1 = t0 + RB < j->N ? t0 + RB : j->N;
    if (j->vec) {
        kern_avx512_ln_fwd(j->x + t0 * d, j->w, j->b, j->y + t0 * d, j->m + t0, j->r + t0, t1 - t0, d, NORM_EPS);
        return;
    }
    for (size_t t = t0; t < t1; t++) {
        const float *xr = j->x + t * d;
        double mu = 0, var = 0;
        for (int i = 0; i < d; i++) mu += xr[i];
        mu /= d;
        for (int i = 0; i < d; i++) var += (xr[i] - mu) * (xr[i] - mu);
        var /= d;
        float m = (float)mu, r = (float)(1.0 / sqrt(var + NORM_EPS));
        j->m[t] = m;
        j->r[t] = r;
        for (int i = 0; i < d; i++) j->y[t * d + i] = (xr[i] - m) * r * j->w[i] + j->b[i];
    }
}

static void ln_fwd(aria_pool *p, int vec, const float *x, const float *w, const float *b, float *y, float *mean,
                   float *rstd, size_t N, int d) {
    ln_job j = {.x = x, .w = w, .b = b, .y = y, .m = mean, .r = rstd, .N = N, .d = d, .vec = vec};
    aria_pool_run(p, ln_fwd_task, &j, n_blocks(N, RB));
}

/* dx += d LayerNorm / dx, by rows */
static void ln_bwd_dx_task(void *ctx, size_t blk) {
    const ln_job *j = ctx;
    int d = j->d;
    size_t t0 = blk * RB, t1 = t0 + RB < j->N ? t0 + RB : j->N;
    if (j->vec) {
        kern_avx512_ln_bwd_dx(j->x + t0 * d, j->mean + t0, j->rstd + t0, j->w, j->dy + t0 * d, j->dx + t0 * d,
                              t1 - t0, d);
        return;
    }
    for (size_t t = t0; t < t1; t++) {
        const float *xr = j->x + t * d, *g = j->dy + t * d;
        float m = j->mean[t], r = j->rstd[t];
        double s1 = 0, s2 = 0;
        for (int i = 0; i < d; i++) {
            float xh = (xr[i] - m) * r, dxh = g[i] * j->w[i];
            s1 += dxh;
            s2 += dxh * xh;
        }
        float a = (float)(s1 / d), b2 = (float)(s2 / d);
        for (int i = 0; i < d; i++) {
            float xh = (xr[i] - m) * r;
            j->dx[t * d + i] += r * (g[i] * j->w[i] - a - xh * b2);
        }
    }
}

/* dw, db += by columns (each column sums its rows in order) */
#define LN_COLS 32
static void ln_bwd_dw_task(void *ctx, size_t blk) {
    const ln_job *j = ctx;
    int d = j->d, i0 = (int)blk * LN_COLS, i1 = i0 + LN_COLS < d ? i0 + LN_COLS : d;
    if (j->vec) {
        kern_avx512_ln_bwd_dw(j->x, j->mean, j->rstd, j->dy, j->dw, j->db, j->N, d, i0, i1);
        return;
    }
    for (size_t t = 0; t < j->N; t++) {
        const float *xr = j->x + t * d, *g = j->dy + t * d;
        float m = j->mean[t], r = j->rstd[t];
        for (int i = i0; i < i1; i++) {
            j->dw[i] += g[i] * ((xr[i] - m) * r);
            j->db[i] += g[i];
        }
    }
}

static void ln_bwd(aria_pool *p, int vec, const float *x, const float *mean, const float *rstd, const float *w,
                   const float *dy, float *dx, float *dw, float *db, size_t N, int d) {
    ln_job j = {.x = x, .w = w, .dy = dy, .mean = mean, .rstd = rstd, .dx = dx, .dw = dw, .db = db, .N = N, .d = d,
                .vec = vec};
    aria_pool_run(p, ln_bwd_dx_task, &j, n_blocks(N, RB));
    aria_pool_run(p, ln_bwd_dw_task, &j, n_blocks((size_t)d, LN_COLS));
}

/* SwiGLU forward (act = silu(gate) up) and backward, by blocks of
   elements; exact: expf as the reference's float32 */
#define EB 16384
typedef struct {
    const float *g, *u;
    float *act, *dg, *du;
    size_t n;
    int exact;
} sw_job;

static void swiglu_fwd_task(void *ctx, size_t blk) {
    const sw_job *j = ctx;
    size_t a = blk * EB, b = a + EB < j->n ? a + EB : j->n;
    if (!j->exact) {
        memcpy(j->act + a, j->g + a, (b - a) * sizeof *j->act);
        kern_swiglu(j->act + a, j->u + a, b - a);
        return;
    }
    for (size_t i = a; i < b; i++) {
        float g = j->g[i];
        j->act[i] = g / (1.0f + expf(-g)) * j->u[i];
    }
}

static void swiglu_bwd_task(void *ctx, size_t blk) {
    const sw_job *j = ctx;
    size_t a = blk * EB, b = a + EB < j->n ? a + EB : j->n;
    if (!j->exact) {
        kern_swiglu_bwd(j->g + a, j->u + a, j->dg + a, j->du + a, b - a);
        return;
    }
    for (size_t i = a; i < b; i++) {
        float g = j->g[i], sg = 1.0f / (1.0f + expf(-g)), da = j->dg[i];
        j->du[i] = da * g * sg;
        j->dg[i] = da * j->u[i] * sg * (1.0f + g * (1.0f - sg));
    }
}

/* RoPE on q and k of every row (inverse: the transpose, for gradients) */
typedef struct {
    float *qkv;
    const float *cs;
    size_t N;
    int T, H, hd, d, inverse;
} rope_job;

static void rope_task(void *ctx, size_t blk) {
    const rope_job *j = ctx;
    int half = j->hd / 2, d3 = 3 * j->d;
    size_t r0 = blk * RB, r1 = r0 + RB < j->N ? r0 + RB : j->N;
    for (size_t r = r0; r < r1; r++) {
        const float *c = j->cs + (size_t)(r % j->T) * half * 2;
        for (int h = 0; h < 2 * j->H; h++) { /* q heads, then k heads */
            float *v = j->qkv + r * d3 + (size_t)h * j->hd;
            for (int i = 0; i < half; i++) {
                float x1 = v[i], x2 = v[i + half], co = c[2 * i], si = j->inverse ? -c[2 * i + 1] : c[2 * i + 1];
                v[i] = x1 * co - x2 * si;
                v[i + half] = x2 * co + x1 * si;
            }
        }
    }
}

static void rope_all(aria_pool *p, float *qkv, const float *cs, int B, int T, int H, int hd, int d, int inverse) {
    rope_job j = {qkv, cs, (size_t)B * T, T, H, hd, d, inverse};
    aria_pool_run(p, rope_task, &j, n_blocks(j.N, RB));
}

/* ---------------------------------------------------------------------- */
/* Linear layers                                                          */
/* ---------------------------------------------------------------------- */

static const uint16_t *wh_of(const aria_trainer *t, const kern_mat *W) {
    return t->use_h ? t->wh + ((const float *)W->data - t->params) : NULL;
}

/* y (+)= x W^T; xh: x in bfloat16, or NULL */
static void linear_fwd(aria_trainer *t, const float *x, const uint16_t *xh, const kern_mat *W, float *y, int N,
                       int acc) {
    PROF(t, PR_GEMM,
         kern_gemm_h(t->m->pool, 0, 1, N, W->rows, W->cols, x, t->use_h ? xh : NULL, W->cols, W->data,
                     wh_of(t, W), W->cols, y, W->rows, acc, t->prec));
}

/* dx += dy W (when dx), dW += dy^T x. In exact precision the float32
   loops add, for each row of dx and of dW, the terms in order of the
   output (resp. token) index. */
static void linear_bwd(aria_trainer *t, const kern_mat *W, float *dW, const float *x, const uint16_t *xh,
                       const float *dy, float *dx, int N) {
    aria_pool *p = t->m->pool;
    double t0 = t->profile ? pr_now() : 0;
    const uint16_t *dyh = NULL;
    if (t->use_h) {
        kern_to_bf16_pool(p, dy, t->dyh, (size_t)N, (size_t)W->rows);
        dyh = t->dyh;
    } else {
        xh = NULL;
    }
    if (dx)
        kern_gemm_h(p, 0, 0, N, W->cols, W->rows, dy, dyh, W->rows, W->data, wh_of(t, W), W->cols, dx, W->cols, 1,
                    t->prec);
    kern_gemm_h(p, 1, 0, W->rows, W->cols, N, dy, dyh, W->rows, x, xh, W->cols, dW, W->cols, 1, t->prec);
    if (t->profile) t->prof[PR_GEMM] += pr_now() - t0;
}

/* bfloat16 copy of a product's input, when the copies are kept */
static void keep_h(aria_trainer *t, const float *x, uint16_t *xh, size_t rows, size_t cols) {
    if (t->use_h) PROF(t, PR_GEMM, kern_to_bf16_pool(t->m->pool, x, xh, rows, cols));
}

/* ---------------------------------------------------------------------- */
/* Attention (full sequence, q/k/v in the qkv rows)                       */
/* ---------------------------------------------------------------------- */

typedef struct {
    const float *qkv, *att, *datt, *lse_in;
    const uint16_t *qkvh, *datth; /* bfloat16 copies (fast, oneDNN), or NULL */
    float *out, *lse, *dqkv;
    int B, T, H, hd, d;
} att_job;

/* Exact precision: one query at a time, the reference's order. */
static void att_fwd_task(void *ctx, size_t i) {
    const att_job *j = ctx;
    int b = (int)i / j->H, h = (int)i % j->H, d3 = 3 * j->d;
    float scale = 1.0f / sqrtf((float)j->hd);
    float *s = malloc((size_t)j->T * sizeof *s);
    if (!s) abort();
    for (int t = 0; t < j->T; t++) {
        const float *q = j->qkv + ((size_t)b * j->T + t) * d3 + h * j->hd;
        float mx = -INFINITY;
        for (int u = 0; u <= t; u++) {
            const float *k = j->qkv + ((size_t)b * j->T + u) * d3 + j->d + h * j->hd;
            float dot = 0;
            for (int e = 0; e < j->hd; e++) dot += q[e] * k[e];
            s[u] = dot * scale;
            if (s[u] > mx) mx = s[u];
        }
        float sum = 0;
        for (int u = 0; u <= t; u++) sum += (s[u] = expf(s[u] - mx));
        float *o = j->out + ((size_t)b * j->T + t) * j->d + h * j->hd;
        for (int e = 0; e < j->hd; e++) o[e] = 0;
        for (int u = 0; u <= t; u++) {
            const float *v = j->qkv + ((size_t)b * j->T + u) * d3 + 2 * j->d + h * j->hd;
            float pw = s[u] / sum;
            for (int e = 0; e < j->hd; e++) o[e] += pw * v[e];
        }
        j->lse[((size_t)b * j->T + t) * j->H + h] = mx + logf(sum);
    }
    free(s);
}

/* dq, dk, dv of one (row, head); scores recomputed from q, k and lse */
static void att_bwd_task(void *ctx, size_t i) {
    const att_job *j = ctx;
    int b = (int)i / j->H, h = (int)i % j->H, d3 = 3 * j->d, hd = j->hd;
    float scale = 1.0f / sqrtf((float)hd);
    for (int t = 0; t < j->T; t++) {
        size_t row = (size_t)b * j->T + t;
        const float *q = j->qkv + row * d3 + h * hd;
        const float *o = j->att + row * j->d + h * hd, *dO = j->datt + row * j->d + h * hd;
        float *dq = j->dqkv + row * d3 + h * hd;
        float D = 0;
        for (int e = 0; e < hd; e++) D += dO[e] * o[e];
        float lse = j->lse_in[row * j->H + h];
        for (int u = 0; u <= t; u++) {
            size_t ru = (size_t)b * j->T + u;
            const float *k = j->qkv + ru * d3 + j->d + h * hd, *v = j->qkv + ru * d3 + 2 * j->d + h * hd;
            float *dk = j->dqkv + ru * d3 + j->d + h * hd, *dv = j->dqkv + ru * d3 + 2 * j->d + h * hd;
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

/* Fast precision: blocks of QB queries against the keys they can see, as
   matrix products on this task's thread; the probabilities of a block
   live in a QB x T scratch, never the whole T x T matrix. With oneDNN the
   products take bfloat16 operands (q, k, v and dO converted once per
   layer, P and dS per block) and accumulate in float32; softmax, the
   log-sum-exp and dS are float32. Without it (or should a product fail)
   they are float32 sgemm. */
#define QB 64

/* C (+)= op(A) op(B): bfloat16 when both copies are given, else float32 */
static void att_mm(int ta, int tb, int M, int N, int K, const uint16_t *Ah, const float *A, int lda,
                   const uint16_t *Bh, const float *B, int ldb, float *C, int ldc, int acc) {
    if (Ah && Bh && kern_gemm_bf16_st(ta, tb, M, N, K, Ah, lda, Bh, ldb, C, ldc, acc) == 0) return;
    kern_sgemm_st(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, acc ? 1.0f : 0.0f, C, ldc);
}

static void att_fwd_fast_task(void *ctx, size_t i) {
    const att_job *j = ctx;
    int b = (int)i / j->H, h = (int)i % j->H, d3 = 3 * j->d, hd = j->hd, T = j->T;
    float scale = 1.0f / sqrtf((float)hd);
    size_t base = (size_t)b * T * d3 + h * hd;
    const float *q = j->qkv + base, *k = q + j->d, *v = q + 2 * j->d;
    const uint16_t *qh = j->qkvh ? j->qkvh + base : NULL, *kh = qh ? qh + j->d : NULL, *vh = qh ? qh + 2 * j->d : NULL;
    float *o = j->out + (size_t)b * T * j->d + h * hd;
    /* scores (float32), then their bfloat16 copy */
    float *s = kern_scratch_take((size_t)QB * T * (sizeof *s + sizeof(uint16_t)));
    if (!s) abort(); /* 64 rows of scores; nothing sensible to fall back to */
    uint16_t *ph = (uint16_t *)(s + (size_t)QB * T);
    for (int t0 = 0; t0 < T; t0 += QB) {
        int nq = T - t0 < QB ? T - t0 : QB, nk = t0 + nq;
        size_t qo = (size_t)t0 * d3;
        att_mm(0, 1, nq, nk, hd, qh ? qh + qo : NULL, q + qo, d3, kh, k, d3, s, nk, 0);
        kern_scale(s, (size_t)nq * nk, scale);
        for (int r = 0; r < nq; r++) {
            float *sr = s + (size_t)r * nk;
            int n = t0 + r + 1; /* keys 0 .. t */
            float lse = kern_logsumexp(sr, (size_t)n);
            kern_exp_scale(sr, (size_t)n, lse, 1.0f);
            memset(sr + n, 0, (size_t)(nk - n) * sizeof *sr);
            j->lse[((size_t)b * T + t0 + r) * j->H + h] = lse;
        }
        if (qh) kern_to_bf16(s, ph, (size_t)nq * nk);
        att_mm(0, 0, nq, hd, nk, qh ? ph : NULL, s, nk, vh, v, d3, o + (size_t)t0 * j->d, j->d, 0);
    }
    kern_scratch_give(s);
}

static void att_bwd_fast_task(void *ctx, size_t i) {
    const att_job *j = ctx;
    int b = (int)i / j->H, h = (int)i % j->H, d3 = 3 * j->d, hd = j->hd, T = j->T;
    float scale = 1.0f / sqrtf((float)hd);
    size_t base = (size_t)b * T * d3 + h * hd, obase = (size_t)b * T * j->d + h * hd;
    const float *q = j->qkv + base, *k = q + j->d, *v = q + 2 * j->d;
    const float *o = j->att + obase, *dO = j->datt + obase;
    const uint16_t *qh = j->qkvh ? j->qkvh + base : NULL, *kh = qh ? qh + j->d : NULL, *vh = qh ? qh + 2 * j->d : NULL;
    const uint16_t *doh = qh ? j->datth + obase : NULL;
    float *dq = j->dqkv + base, *dk = dq + j->d, *dv = dq + 2 * j->d;
    float *pr = kern_scratch_take((size_t)QB * T * 2 * (sizeof *pr + sizeof(uint16_t)));
    if (!pr) abort();
    float *dp = pr + (size_t)QB * T;
    uint16_t *prh = (uint16_t *)(dp + (size_t)QB * T), *dsh = prh + (size_t)QB * T;
    for (int t0 = 0; t0 < T; t0 += QB) {
        int nq = T - t0 < QB ? T - t0 : QB, nk = t0 + nq;
        size_t qo = (size_t)t0 * d3, oo = (size_t)t0 * j->d, nn = (size_t)nq * nk;
        /* P = exp(q k^T scale - lse), masked */
        att_mm(0, 1, nq, nk, hd, qh ? qh + qo : NULL, q + qo, d3, kh, k, d3, pr, nk, 0);
        kern_scale(pr, nn, scale);
        /* dP = dO v^T */
        att_mm(0, 1, nq, nk, hd, doh ? doh + oo : NULL, dO + oo, j->d, vh, v, d3, dp, nk, 0);
        for (int r = 0; r < nq; r++) {
            float *p = pr + (size_t)r * nk, *g = dp + (size_t)r * nk;
            int n = t0 + r + 1;
            size_t row = (size_t)t0 + r;
            kern_exp_scale(p, (size_t)n, j->lse_in[((size_t)b * T + row) * j->H + h], 1.0f);
            memset(p + n, 0, (size_t)(nk - n) * sizeof *p);
            const float *orow = o + row * j->d, *dorow = dO + row * j->d;
            float D = 0;
            for (int e = 0; e < hd; e++) D += dorow[e] * orow[e];
            /* dS = P (dP - D) scale, in dp */
            kern_softmax_bwd(p, g, (size_t)n, D, scale);
            memset(g + n, 0, (size_t)(nk - n) * sizeof *g);
        }
        if (qh) {
            kern_to_bf16(pr, prh, nn);
            kern_to_bf16(dp, dsh, nn);
        }
        /* dq = dS k; dk += dS^T q; dv += P^T dO */
        att_mm(0, 0, nq, hd, nk, qh ? dsh : NULL, dp, nk, kh, k, d3, dq + qo, d3, 1);
        att_mm(1, 0, nk, hd, nq, qh ? dsh : NULL, dp, nk, qh ? qh + qo : NULL, q + qo, d3, dk, d3, 1);
        att_mm(1, 0, nk, hd, nq, qh ? prh : NULL, pr, nk, doh ? doh + oo : NULL, dO + oo, j->d, dv, d3, 1);
    }
    kern_scratch_give(pr);
}

/* ---------------------------------------------------------------------- */
/* Forward with saved activations, loss, backward                         */
/* ---------------------------------------------------------------------- */

static void forward(aria_trainer *t, const int32_t *ids) {
    aria_model *m = t->m;
    aria_pool *p = m->pool;
    const aria_model_config *c = &m->cfg;
    int d = c->d_model, H = c->n_heads, hd = d / H, ff = c->ff_mult * d, T = t->T, B = t->B;
    int N = B * T;
    for (int r = 0; r < N; r++) kern_row_f32(&m->tok_emb, ids[r], t->acts[0].x + (size_t)r * d);
    if (t->use_h) { /* the weights may have changed since the last pass */
        size_t n = t->n_params, rows = n / 4096;
        PROF(t, PR_GEMM, kern_to_bf16_pool(p, t->params, t->wh, rows, 4096));
        kern_to_bf16(t->params + rows * 4096, t->wh + rows * 4096, n - rows * 4096);
    }
    for (int l = 0; l < c->n_layers; l++) {
        layer_w *L = &m->layers[l];
        layer_act *a = &t->acts[l];
        float *next = l + 1 < c->n_layers ? t->acts[l + 1].x : t->xL;
        PROF(t, PR_LN, ln_fwd(p, t->ln_vec, a->x, L->n1w, L->n1b, a->ln1, a->ln1_m, a->ln1_r, (size_t)N, d));
        keep_h(t, a->ln1, a->ln1h, (size_t)N, (size_t)d);
        linear_fwd(t, a->ln1, a->ln1h, &L->qkv, a->qkv, N, 0);
        for (int b = 0; b < B; b++) {
            float *q = a->qkv + (size_t)b * T * 3 * d;
            kern_rope_pool(p, q, T, H, hd, 3 * d, m->rope, 0);
            kern_rope_pool(p, q + d, T, H, hd, 3 * d, m->rope, 0);
        }
        keep_h(t, a->qkv, t->qkvh, (size_t)N, (size_t)3 * d);
        att_job aj = {.qkv = a->qkv, .qkvh = t->use_h ? t->qkvh : NULL, .out = a->att, .lse = a->lse, .B = B,
                      .T = T, .H = H, .hd = hd, .d = d};
        PROF(t, PR_ATT, aria_pool_run(p, t->exact ? att_fwd_task : att_fwd_fast_task, &aj, (size_t)B * H));
        memcpy(a->xmid, a->x, (size_t)N * d * sizeof(float));
        keep_h(t, a->att, a->atth, (size_t)N, (size_t)d);
        linear_fwd(t, a->att, a->atth, &L->proj, a->xmid, N, 1);
        PROF(t, PR_LN, ln_fwd(p, t->ln_vec, a->xmid, L->n2w, L->n2b, a->ln2, a->ln2_m, a->ln2_r, (size_t)N, d));
        keep_h(t, a->ln2, a->ln2h, (size_t)N, (size_t)d);
        linear_fwd(t, a->ln2, a->ln2h, &L->gate, a->gate, N, 0);
        linear_fwd(t, a->ln2, a->ln2h, &L->up, a->up, N, 0);
        size_t nf = (size_t)N * ff;
        sw_job sj = {.g = a->gate, .u = a->up, .act = a->act, .n = nf, .exact = t->exact};
        PROF(t, PR_SWIGLU, aria_pool_run(p, swiglu_fwd_task, &sj, n_blocks(nf, EB)));
        memcpy(next, a->xmid, (size_t)N * d * sizeof(float));
        keep_h(t, a->act, a->acth, (size_t)N, (size_t)ff);
        linear_fwd(t, a->act, a->acth, &L->down, next, N, 1);
    }
    PROF(t, PR_LN, ln_fwd(p, t->ln_vec, t->xL, m->out_w, m->out_b, t->lnf, t->lnf_m, t->lnf_r, (size_t)N, d));
    keep_h(t, t->lnf, t->lnfh, (size_t)N, (size_t)d);
    linear_fwd(t, t->lnf, t->lnfh, &m->lm_head, t->logits, N, 0);
}

static int target_of(const aria_trainer *t, const int32_t *ids, int r) {
    int tt = r % t->T;
    return tt + 1 < t->T ? ids[r + 1] : ARIA_SP_PAD;
}

typedef struct {
    aria_trainer *t;
    const int32_t *ids;
    int grad, count;
    float grad_scale;
} loss_job;

/* Rows of the cross-entropy: the row's loss in row_loss; with grad, the
   logits become dLoss/dlogits. Exact: double sums as before; fast: the
   vector exponential in float32. */
static void loss_task(void *ctx, size_t blk) {
    const loss_job *j = ctx;
    aria_trainer *t = j->t;
    int V = t->m->cfg.vocab_size, N = t->B * t->T;
    int r0 = (int)blk * RB, r1 = r0 + RB < N ? r0 + RB : N;
    float sc = j->count ? j->grad_scale / (float)j->count : 0.0f;
    for (int r = r0; r < r1; r++) {
        float *lg = t->logits + (size_t)r * V;
        int tgt = target_of(t, j->ids, r);
        t->row_loss[r] = 0.0;
        if (tgt == ARIA_SP_PAD) {
            if (j->grad) memset(lg, 0, (size_t)V * sizeof *lg);
            continue;
        }
        if (!t->exact) {
            float lse = kern_logsumexp(lg, (size_t)V);
            t->row_loss[r] = (double)lse - lg[tgt];
            if (j->grad) {
                kern_exp_scale(lg, (size_t)V, lse, sc);
                lg[tgt] -= sc;
            }
            continue;
        }
        float mx = lg[0];
        for (int i = 1; i < V; i++) mx = lg[i] > mx ? lg[i] : mx;
        double se = 0;
        for (int i = 0; i < V; i++) se += exp((double)lg[i] - mx);
        double lse = mx + log(se);
        t->row_loss[r] = lse - lg[tgt];
        if (j->grad) {
            for (int i = 0; i < V; i++) lg[i] = (float)exp((double)lg[i] - lse) * sc;
            lg[tgt] -= sc;
        }
    }
}

/* Mean cross-entropy over non-<P> targets; with `grad`, turns the logits
   into dLoss/dlogits (times grad_scale). */
static float loss_and_dlogits(aria_trainer *t, const int32_t *ids, int grad, float grad_scale) {
    int N = t->B * t->T, count = 0;
    for (int r = 0; r < N; r++) count += target_of(t, ids, r) != ARIA_SP_PAD;
    loss_job j = {t, ids, grad, count, grad_scale};
    PROF(t, PR_LOSS, aria_pool_run(t->m->pool, loss_task, &j, n_blocks((size_t)N, RB)));
    double sum = 0;
    for (int r = 0; r < N; r++) sum += t->row_loss[r];
    return count ? (float)(sum / count) : 0.0f;
}

static void backward(aria_trainer *t, const int32_t *ids) {
    aria_model *m = t->m;
    aria_pool *p = m->pool;
    const aria_model_config *c = &m->cfg;
    int d = c->d_model, H = c->n_heads, hd = d / H, ff = c->ff_mult * d, T = t->T, B = t->B;
    int N = B * T;
    size_t Nd = (size_t)N * d, Nf = (size_t)N * ff;
    memset(t->dln, 0, Nd * sizeof(float));
    linear_bwd(t, &m->lm_head, grad_of(t, m->lm_head.data), t->lnf, t->lnfh, t->logits, t->dln, N);
    memset(t->dx, 0, Nd * sizeof(float));
    PROF(t, PR_LN, ln_bwd(p, t->ln_vec, t->xL, t->lnf_m, t->lnf_r, m->out_w, t->dln, t->dx, grad_of(t, m->out_w), grad_of(t, m->out_b),
           (size_t)N, d));
    for (int l = c->n_layers - 1; l >= 0; l--) {
        layer_w *L = &m->layers[l];
        layer_act *a = &t->acts[l];
        /* feed-forward: x_next = xmid + down(silu(gate) * up) */
        memset(t->dgate, 0, Nf * sizeof(float));
        linear_bwd(t, &L->down, grad_of(t, L->down.data), a->act, a->acth, t->dx, t->dgate, N);
        sw_job sj = {.g = a->gate, .u = a->up, .dg = t->dgate, .du = t->dup, .n = Nf, .exact = t->exact};
        PROF(t, PR_SWIGLU, aria_pool_run(p, swiglu_bwd_task, &sj, n_blocks(Nf, EB)));
        memset(t->dln, 0, Nd * sizeof(float));
        linear_bwd(t, &L->gate, grad_of(t, L->gate.data), a->ln2, a->ln2h, t->dgate, t->dln, N);
        linear_bwd(t, &L->up, grad_of(t, L->up.data), a->ln2, a->ln2h, t->dup, t->dln, N);
        PROF(t, PR_LN, ln_bwd(p, t->ln_vec, a->xmid, a->ln2_m, a->ln2_r, L->n2w, t->dln, t->dx, grad_of(t, L->n2w), grad_of(t, L->n2b),
               (size_t)N, d));
        /* attention: xmid = x + proj(attn(rope(qkv(LN1(x))))) */
        memset(t->datt, 0, Nd * sizeof(float));
        linear_bwd(t, &L->proj, grad_of(t, L->proj.data), a->att, a->atth, t->dx, t->datt, N);
        memset(t->dqkv, 0, 3 * Nd * sizeof(float));
        keep_h(t, a->qkv, t->qkvh, (size_t)N, (size_t)3 * d);
        keep_h(t, t->datt, t->datth, (size_t)N, (size_t)d);
        att_job aj = {.qkv = a->qkv, .att = a->att, .datt = t->datt, .lse_in = a->lse, .dqkv = t->dqkv,
                      .qkvh = t->use_h ? t->qkvh : NULL, .datth = t->use_h ? t->datth : NULL, .B = B, .T = T,
                      .H = H, .hd = hd, .d = d};
        PROF(t, PR_ATT, aria_pool_run(p, t->exact ? att_bwd_task : att_bwd_fast_task, &aj, (size_t)B * H));
        rope_all(p, t->dqkv, m->rope, B, T, H, hd, d, 1);
        memset(t->dln, 0, Nd * sizeof(float));
        linear_bwd(t, &L->qkv, grad_of(t, L->qkv.data), a->ln1, a->ln1h, t->dqkv, t->dln, N);
        PROF(t, PR_LN, ln_bwd(p, t->ln_vec, a->x, a->ln1_m, a->ln1_r, L->n1w, t->dln, t->dx, grad_of(t, L->n1w), grad_of(t, L->n1b),
               (size_t)N, d));
    }
    float *gE = grad_of(t, m->tok_emb.data);
    for (int r = 0; r < N; r++) {
        float *row = gE + (size_t)ids[r] * d;
        const float *g = t->dx + (size_t)r * d;
        for (int i = 0; i < d; i++) row[i] += g[i];
    }
}

static int check_ids(const aria_trainer *t, const int32_t *ids, aria_error *err) {
    for (size_t i = 0; i < (size_t)t->B * t->T; i++)
        if (ids[i] < 0 || ids[i] >= t->m->cfg.vocab_size)
            return aria_fail(err, ARIA_ERR_ARG, "token id %d at %zu is outside the vocabulary", ids[i], i);
    return ARIA_OK;
}

int aria_trainer_loss(aria_trainer *t, const int32_t *ids, float *loss, aria_error *err) {
    int rc = check_ids(t, ids, err);
    if (rc) return rc;
    forward(t, ids);
    *loss = loss_and_dlogits(t, ids, 0, 1.0f);
    return ARIA_OK;
}

int aria_trainer_backward(aria_trainer *t, const int32_t *ids, float grad_scale, float *loss, aria_error *err) {
    int rc = check_ids(t, ids, err);
    if (rc) return rc;
    double t0 = t->profile ? pr_now() : 0, before = 0;
    for (int k = 0; k < PR_N; k++) before += t->prof[k];
    forward(t, ids);
    *loss = loss_and_dlogits(t, ids, 1, grad_scale);
    backward(t, ids);
    if (t->profile) {
        double after = 0;
        for (int k = 0; k < PR_N; k++) after += t->prof[k];
        t->prof[PR_OTHER] += pr_now() - t0 - (after - before);
    }
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* Clipping and AdamW                                                     */
/* ---------------------------------------------------------------------- */

/* Sums of squares by blocks of AB elements on the pool (each block in
   order, then the blocks in order: the same bits on any thread count). */
#define AB 65536
typedef struct {
    aria_trainer *t;
    double *part;
    float coef;
} clip_job;

static void sumsq_task(void *ctx, size_t blk) {
    const clip_job *j = ctx;
    size_t a = blk * AB, b = a + AB < j->t->n_params ? a + AB : j->t->n_params;
    double ss = 0;
    for (size_t i = a; i < b; i++) ss += (double)j->t->grads[i] * j->t->grads[i];
    j->part[blk] = ss;
}

static void scale_task(void *ctx, size_t blk) {
    const clip_job *j = ctx;
    size_t a = blk * AB, b = a + AB < j->t->n_params ? a + AB : j->t->n_params;
    for (size_t i = a; i < b; i++) j->t->grads[i] *= j->coef;
}

float aria_trainer_clip(aria_trainer *t, float max_norm) {
    double t0 = t->profile ? pr_now() : 0;
    size_t nb = n_blocks(t->n_params, AB);
    double *part = malloc((nb ? nb : 1) * sizeof *part), ss = 0;
    clip_job j = {t, part, 1.0f};
    if (part) {
        aria_pool_run(t->m->pool, sumsq_task, &j, nb);
        for (size_t k = 0; k < nb; k++) ss += part[k];
        free(part);
    } else {
        for (size_t i = 0; i < t->n_params; i++) ss += (double)t->grads[i] * t->grads[i];
    }
    float norm = (float)sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        j.coef = max_norm / (norm + 1e-6f);
        aria_pool_run(t->m->pool, scale_task, &j, nb);
    }
    if (t->profile) t->prof[PR_OPT] += pr_now() - t0;
    return norm;
}

/* torch.optim.AdamW, one element at a time, in its float32 order:
   decay first, then the moments, then the bias-corrected update; blocks
   of elements on the pool's threads. */
typedef struct {
    aria_trainer *t;
    float decay, fb1, fb2, c1, c2, sbc2, step, eps;
} adamw_job;

static void adamw_task(void *ctx, size_t blk) {
    const adamw_job *j = ctx;
    aria_trainer *t = j->t;
    size_t a = blk * AB, b = a + AB < t->n_params ? a + AB : t->n_params;
    for (size_t i = a; i < b; i++) {
        float g = t->grads[i];
        float p = t->params[i] * j->decay;
        float mm = t->m1[i] * j->fb1 + j->c1 * g;
        float vv = t->m2[i] * j->fb2 + (j->c2 * g) * g;
        float denom = sqrtf(vv) / j->sbc2 + j->eps;
        t->m1[i] = mm;
        t->m2[i] = vv;
        t->params[i] = p + (j->step * mm) / denom;
    }
}

void aria_trainer_adamw(aria_trainer *t, const aria_adamw_opts *o, float lr) {
    t->step++;
    double b1 = o->beta1, b2 = o->beta2;
    double bc1 = 1.0 - pow(b1, t->step), bc2 = 1.0 - pow(b2, t->step);
    adamw_job j = {t, (float)(1.0 - (double)lr * o->weight_decay), (float)b1, (float)b2, (float)(1.0 - b1),
                   (float)(1.0 - b2), (float)sqrt(bc2), (float)(-(double)lr / bc1), o->eps};
    PROF(t, PR_OPT, aria_pool_run(t->m->pool, adamw_task, &j, n_blocks(t->n_params, AB)));
    /* packed copies of the weights are stale now */
    aria_model *m = t->m;
    kern_mat_release(&m->tok_emb);
    kern_mat_release(&m->lm_head);
    kern_mat_release(&m->emb_head);
    kern_mat_release(&m->class_head);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        layer_w *L = &m->layers[l];
        kern_mat_release(&L->qkv);
        kern_mat_release(&L->proj);
        kern_mat_release(&L->gate);
        kern_mat_release(&L->up);
        kern_mat_release(&L->down);
    }
}

/* The whole parameter and gradient arenas, n floats each, in state-dict
   order: data-parallel training (src/trainloop.c) all-reduces the
   gradients and broadcasts the parameters as one buffer each. */
void aria_trainer_arena(aria_trainer *t, float **params, float **grads, size_t *n) {
    *params = t->params;
    *grads = t->grads;
    *n = t->n_params;
}
