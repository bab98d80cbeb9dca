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

#include "aria.h"
#include "kernels.h"
#include "model_internal.h"
#include "util.h"

#define NORM_EPS 1e-5f

aria_adamw_opts aria_adamw_defaults(void) { return (aria_adamw_opts){3e-4f, 0.9f, 0.95f, 1e-5f, 0.1f}; }

typedef struct {
    char name[96];
    size_t off, n;
} param_view;

typedef struct {
    float *x, *ln1, *ln1_m, *ln1_r, *qkv, *att, *lse, *xmid, *ln2, *ln2_m, *ln2_r, *gate, *up, *act;
} layer_act;

struct aria_trainer {
    aria_model *m;
    int B, T;
    float *params, *grads, *m1, *m2;
    size_t n_params;
    param_view *views;
    size_t n_views;
    int step;
    /* activations */
    layer_act *acts;
    float *xL, *lnf, *lnf_m, *lnf_r, *logits;
    /* backward scratch */
    float *dx, *dln, *dqkv, *datt, *dgate, *dup;
    float *act_buf;
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
    free(t->act_buf);
    free(t->acts);
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
    if (!t->act_buf || !t->acts) {
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
    *out = t;
    return ARIA_OK;
}

void aria_trainer_zero_grad(aria_trainer *t) { memset(t->grads, 0, t->n_params * sizeof(float)); }

/* ---------------------------------------------------------------------- */
/* Small ops with their statistics                                        */
/* ---------------------------------------------------------------------- */

/* LayerNorm that keeps mean and 1/std per row (as floats). */
static void ln_fwd(const float *x, const float *w, const float *b, float *y, float *mean, float *rstd, size_t N,
                   int d) {
    for (size_t t = 0; t < N; t++) {
        const float *xr = x + t * d;
        double mu = 0, var = 0;
        for (int i = 0; i < d; i++) mu += xr[i];
        mu /= d;
        for (int i = 0; i < d; i++) var += (xr[i] - mu) * (xr[i] - mu);
        var /= d;
        float m = (float)mu, r = (float)(1.0 / sqrt(var + NORM_EPS));
        mean[t] = m;
        rstd[t] = r;
        for (int i = 0; i < d; i++) y[t * d + i] = (xr[i] - m) * r * w[i] + b[i];
    }
}

/* dx += LN backward; dw, db += */
static void ln_bwd(const float *x, const float *mean, const float *rstd, const float *w, const float *dy, float *dx,
                   float *dw, float *db, size_t N, int d) {
    for (size_t t = 0; t < N; t++) {
        const float *xr = x + t * d, *g = dy + t * d;
        float m = mean[t], r = rstd[t];
        double s1 = 0, s2 = 0;
        for (int i = 0; i < d; i++) {
            float xh = (xr[i] - m) * r, dxh = g[i] * w[i];
            s1 += dxh;
            s2 += dxh * xh;
            dw[i] += g[i] * xh;
            db[i] += g[i];
        }
        float a = (float)(s1 / d), b2 = (float)(s2 / d);
        for (int i = 0; i < d; i++) {
            float xh = (xr[i] - m) * r;
            dx[t * d + i] += r * (g[i] * w[i] - a - xh * b2);
        }
    }
}

static void rope_rows(float *x, int T, int H, int hd, int stride, const float *cs, int inverse) {
    int half = hd / 2;
    for (int t = 0; t < T; t++) {
        const float *c = cs + (size_t)t * half * 2;
        for (int h = 0; h < H; h++) {
            float *v = x + (size_t)t * stride + h * hd;
            for (int i = 0; i < half; i++) {
                float x1 = v[i], x2 = v[i + half], co = c[2 * i], si = inverse ? -c[2 * i + 1] : c[2 * i + 1];
                v[i] = x1 * co - x2 * si;
                v[i + half] = x2 * co + x1 * si;
            }
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Backward products                                                      */
/* ---------------------------------------------------------------------- */

typedef struct {
    const float *dy, *x;
    const float *W;
    float *out;
    int rows_t, out_n, in_n;
} bmm_job;

/* dx[t][:] += sum_o dy[t][o] W[o][:] for a block of 8 tokens */
static void dx_task(void *ctx, size_t i) {
    const bmm_job *j = ctx;
    int t0 = (int)i * 8, t1 = t0 + 8 < j->rows_t ? t0 + 8 : j->rows_t;
    for (int t = t0; t < t1; t++) {
        float *dx = j->out + (size_t)t * j->in_n;
        const float *dy = j->dy + (size_t)t * j->out_n;
        for (int o = 0; o < j->out_n; o++) {
            float g = dy[o];
            if (g == 0.0f) continue;
            const float *w = j->W + (size_t)o * j->in_n;
            for (int k = 0; k < j->in_n; k++) dx[k] += g * w[k];
        }
    }
}

/* dW[o][:] += sum_t dy[t][o] x[t][:] for a block of 16 outputs */
static void dw_task(void *ctx, size_t i) {
    const bmm_job *j = ctx;
    int o0 = (int)i * 16, o1 = o0 + 16 < j->out_n ? o0 + 16 : j->out_n;
    for (int o = o0; o < o1; o++) {
        float *dw = j->out + (size_t)o * j->in_n;
        for (int t = 0; t < j->rows_t; t++) {
            float g = j->dy[(size_t)t * j->out_n + o];
            if (g == 0.0f) continue;
            const float *x = j->x + (size_t)t * j->in_n;
            for (int k = 0; k < j->in_n; k++) dw[k] += g * x[k];
        }
    }
}

/* y = x W^T (dx += dy W, dW += dy^T x) for a Linear layer. */
static void linear_bwd(aria_pool *p, const kern_mat *W, float *dW, const float *x, const float *dy, float *dx, int N) {
    bmm_job j = {dy, x, W->data, dx, N, W->rows, W->cols};
    if (dx) aria_pool_run(p, dx_task, &j, (size_t)(N + 7) / 8);
    j.out = dW;
    aria_pool_run(p, dw_task, &j, (size_t)(W->rows + 15) / 16);
}

/* ---------------------------------------------------------------------- */
/* Attention (full sequence, q/k/v in the qkv rows)                       */
/* ---------------------------------------------------------------------- */

typedef struct {
    const float *qkv, *att, *datt, *lse_in;
    float *out, *lse, *dqkv;
    int B, T, H, hd, d;
} att_job;

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

/* ---------------------------------------------------------------------- */
/* Forward with saved activations, loss, backward                         */
/* ---------------------------------------------------------------------- */

static void forward(aria_trainer *t, const int32_t *ids) {
    aria_model *m = t->m;
    const aria_model_config *c = &m->cfg;
    int d = c->d_model, H = c->n_heads, hd = d / H, ff = c->ff_mult * d, T = t->T, B = t->B;
    int N = B * T;
    for (int r = 0; r < N; r++) kern_row_f32(&m->tok_emb, ids[r], t->acts[0].x + (size_t)r * d);
    for (int l = 0; l < c->n_layers; l++) {
        layer_w *L = &m->layers[l];
        layer_act *a = &t->acts[l];
        float *next = l + 1 < c->n_layers ? t->acts[l + 1].x : t->xL;
        ln_fwd(a->x, L->n1w, L->n1b, a->ln1, a->ln1_m, a->ln1_r, (size_t)N, d);
        kern_matmul_prec(m->pool, a->ln1, N, &L->qkv, a->qkv, 0, KERN_PREC_EXACT);
        for (int b = 0; b < B; b++) {
            float *q = a->qkv + (size_t)b * T * 3 * d;
            kern_rope(q, T, H, hd, 3 * d, m->rope, 0);
            kern_rope(q + d, T, H, hd, 3 * d, m->rope, 0);
        }
        att_job aj = {.qkv = a->qkv, .out = a->att, .lse = a->lse, .B = B, .T = T, .H = H, .hd = hd, .d = d};
        aria_pool_run(m->pool, att_fwd_task, &aj, (size_t)B * H);
        memcpy(a->xmid, a->x, (size_t)N * d * sizeof(float));
        kern_matmul_prec(m->pool, a->att, N, &L->proj, a->xmid, 1, KERN_PREC_EXACT);
        ln_fwd(a->xmid, L->n2w, L->n2b, a->ln2, a->ln2_m, a->ln2_r, (size_t)N, d);
        kern_matmul_prec(m->pool, a->ln2, N, &L->gate, a->gate, 0, KERN_PREC_EXACT);
        kern_matmul_prec(m->pool, a->ln2, N, &L->up, a->up, 0, KERN_PREC_EXACT);
        size_t nf = (size_t)N * ff;
        for (size_t i = 0; i < nf; i++) {
            float g = a->gate[i];
            a->act[i] = g / (1.0f + expf(-g)) * a->up[i];
        }
        memcpy(next, a->xmid, (size_t)N * d * sizeof(float));
        kern_matmul_prec(m->pool, a->act, N, &L->down, next, 1, KERN_PREC_EXACT);
    }
    ln_fwd(t->xL, m->out_w, m->out_b, t->lnf, t->lnf_m, t->lnf_r, (size_t)N, d);
    kern_matmul_prec(m->pool, t->lnf, N, &m->lm_head, t->logits, 0, KERN_PREC_EXACT);
}

static int target_of(const aria_trainer *t, const int32_t *ids, int r) {
    int tt = r % t->T;
    return tt + 1 < t->T ? ids[r + 1] : ARIA_SP_PAD;
}

/* Mean cross-entropy over non-<P> targets; with `grad`, turns the logits
   into dLoss/dlogits (times grad_scale). */
static float loss_and_dlogits(aria_trainer *t, const int32_t *ids, int grad, float grad_scale) {
    int V = t->m->cfg.vocab_size, N = t->B * t->T;
    double sum = 0;
    int count = 0;
    for (int r = 0; r < N; r++) count += target_of(t, ids, r) != ARIA_SP_PAD;
    for (int r = 0; r < N; r++) {
        float *lg = t->logits + (size_t)r * V;
        int tgt = target_of(t, ids, r);
        if (tgt == ARIA_SP_PAD) {
            if (grad) memset(lg, 0, (size_t)V * sizeof *lg);
            continue;
        }
        float mx = lg[0];
        for (int i = 1; i < V; i++) mx = lg[i] > mx ? lg[i] : mx;
        double se = 0;
        for (int i = 0; i < V; i++) se += exp((double)lg[i] - mx);
        double lse = mx + log(se);
        sum += lse - lg[tgt];
        if (grad) {
            float sc = grad_scale / (float)count;
            for (int i = 0; i < V; i++) lg[i] = (float)exp((double)lg[i] - lse) * sc;
            lg[tgt] -= sc;
        }
    }
    return count ? (float)(sum / count) : 0.0f;
}

static void backward(aria_trainer *t, const int32_t *ids) {
    aria_model *m = t->m;
    const aria_model_config *c = &m->cfg;
    int d = c->d_model, H = c->n_heads, hd = d / H, ff = c->ff_mult * d, T = t->T, B = t->B;
    int N = B * T;
    size_t Nd = (size_t)N * d, Nf = (size_t)N * ff;
    memset(t->dln, 0, Nd * sizeof(float));
    linear_bwd(m->pool, &m->lm_head, grad_of(t, m->lm_head.data), t->lnf, t->logits, t->dln, N);
    memset(t->dx, 0, Nd * sizeof(float));
    ln_bwd(t->xL, t->lnf_m, t->lnf_r, m->out_w, t->dln, t->dx, grad_of(t, m->out_w), grad_of(t, m->out_b),
           (size_t)N, d);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        layer_w *L = &m->layers[l];
        layer_act *a = &t->acts[l];
        /* feed-forward: x_next = xmid + down(silu(gate) * up) */
        memset(t->dgate, 0, Nf * sizeof(float));
        linear_bwd(m->pool, &L->down, grad_of(t, L->down.data), a->act, t->dx, t->dgate, N);
        for (size_t i = 0; i < Nf; i++) {
            float g = a->gate[i], sg = 1.0f / (1.0f + expf(-g)), da = t->dgate[i];
            t->dup[i] = da * g * sg;
            t->dgate[i] = da * a->up[i] * sg * (1.0f + g * (1.0f - sg));
        }
        memset(t->dln, 0, Nd * sizeof(float));
        linear_bwd(m->pool, &L->gate, grad_of(t, L->gate.data), a->ln2, t->dgate, t->dln, N);
        linear_bwd(m->pool, &L->up, grad_of(t, L->up.data), a->ln2, t->dup, t->dln, N);
        ln_bwd(a->xmid, a->ln2_m, a->ln2_r, L->n2w, t->dln, t->dx, grad_of(t, L->n2w), grad_of(t, L->n2b),
               (size_t)N, d);
        /* attention: xmid = x + proj(attn(rope(qkv(LN1(x))))) */
        memset(t->datt, 0, Nd * sizeof(float));
        linear_bwd(m->pool, &L->proj, grad_of(t, L->proj.data), a->att, t->dx, t->datt, N);
        memset(t->dqkv, 0, 3 * Nd * sizeof(float));
        att_job aj = {.qkv = a->qkv, .att = a->att, .datt = t->datt, .lse_in = a->lse, .dqkv = t->dqkv,
                      .B = B, .T = T, .H = H, .hd = hd, .d = d};
        aria_pool_run(m->pool, att_bwd_task, &aj, (size_t)B * H);
        for (int b = 0; b < B; b++) {
            float *dq = t->dqkv + (size_t)b * T * 3 * d;
            rope_rows(dq, T, H, hd, 3 * d, m->rope, 1);
            rope_rows(dq + d, T, H, hd, 3 * d, m->rope, 1);
        }
        memset(t->dln, 0, Nd * sizeof(float));
        linear_bwd(m->pool, &L->qkv, grad_of(t, L->qkv.data), a->ln1, t->dqkv, t->dln, N);
        ln_bwd(a->x, a->ln1_m, a->ln1_r, L->n1w, t->dln, t->dx, grad_of(t, L->n1w), grad_of(t, L->n1b),
               (size_t)N, d);
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
    forward(t, ids);
    *loss = loss_and_dlogits(t, ids, 1, grad_scale);
    backward(t, ids);
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* Clipping and AdamW                                                     */
/* ---------------------------------------------------------------------- */

float aria_trainer_clip(aria_trainer *t, float max_norm) {
    double ss = 0;
    for (size_t i = 0; i < t->n_params; i++) ss += (double)t->grads[i] * t->grads[i];
    float norm = (float)sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        float coef = max_norm / (norm + 1e-6f);
        for (size_t i = 0; i < t->n_params; i++) t->grads[i] *= coef;
    }
    return norm;
}

/* torch.optim.AdamW, one element at a time, in its float32 order:
   decay first, then the moments, then the bias-corrected update. */
void aria_trainer_adamw(aria_trainer *t, const aria_adamw_opts *o, float lr) {
    t->step++;
    double b1 = o->beta1, b2 = o->beta2;
    float decay = (float)(1.0 - (double)lr * o->weight_decay);
    float fb1 = (float)b1, fb2 = (float)b2, c1 = (float)(1.0 - b1), c2 = (float)(1.0 - b2);
    double bc1 = 1.0 - pow(b1, t->step), bc2 = 1.0 - pow(b2, t->step);
    float sbc2 = (float)sqrt(bc2), step = (float)(-(double)lr / bc1), eps = o->eps;
    for (size_t i = 0; i < t->n_params; i++) {
        float g = t->grads[i];
        float p = t->params[i] * decay;
        float mm = t->m1[i] * fb1 + c1 * g;
        float vv = t->m2[i] * fb2 + (c2 * g) * g;
        float denom = sqrtf(vv) / sbc2 + eps;
        t->m1[i] = mm;
        t->m2[i] = vv;
        t->params[i] = p + (step * mm) / denom;
    }
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
