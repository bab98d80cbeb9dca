/*
 * backward.c - the backward pass of forward.c, step by step in reverse:
 * the lm_head and final LayerNorm, each layer, the token embeddings.
 *
 * It reads what the training forward kept (layer_acts) and adds weight
 * gradients into the gradient arena (model_pass.grads, laid out as the
 * model's float32 arena, so a weight's gradient sits at the weight's
 * offset). The gradient of the residual stream (layer_grads.dx) is carried
 * down the layers in place: a residual connection passes it through, each
 * LayerNorm's backward adds its share.
 */
#include <string.h>

#include "kernels/kernels.h"
#include "model/model_internal.h"

float *model_grad_of(const aria_model *m, const model_pass *p, const void *weight) {
    return p->grads + ((const float *)weight - m->arena);
}

void model_head_backward(const aria_model *m, const model_pass *p, const float *x, const float *h,
                         const uint16_t *hh, const float *mean, const float *rstd, const float *dlogits, int rows,
                         layer_grads *g) {
    int d = m->cfg.d_model;
    size_t nd = (size_t)rows * d;
    memset(g->dln, 0, nd * sizeof(float));
    model_linear_bwd(m, p, &m->lm_head, h, hh, dlogits, g->dln, rows);
    memset(g->dx, 0, nd * sizeof(float));
    MODEL_PROF(p, PR_LN,
               kern_layernorm_bwd(p->ctx, g->dx, model_grad_of(m, p, m->out_w), model_grad_of(m, p, m->out_b), g->dln,
                                  x, m->out_w, mean, rstd, rows, d));
}

/* The gradient a dropped-out branch's output receives: mask * dx / (1 - p),
   into out. */
static const float *drop_grad(const layer_acts *a, int l, int branch, const float *dx, float *out, int N, int T,
                              int d) {
    if (a->drop_p <= 0) return dx;
    float scale = 1.0f / (1.0f - a->drop_p);
    size_t base = (size_t)a->drop_row0 * (size_t)T * (size_t)d, nd = (size_t)N * d;
    for (size_t i = 0; i < nd; i++) out[i] = model_drop_keep(a, l, branch, base + i) ? dx[i] * scale : 0.0f;
    return out;
}

void model_layer_backward(const aria_model *m, const model_pass *p, int l, const layer_acts *a, int B, int T,
                          layer_grads *g) {
    const aria_model_config *c = &m->cfg;
    const layer_w *L = &m->layers[l];
    int d = c->d_model, H = c->n_heads, hd = d / H, N = B * T;
    size_t nd = (size_t)N * d, nf = (size_t)N * c->ff_mult * d;
    /* feed-forward: out = xmid + down(silu(gate) * up) */
    memset(g->dgate, 0, nf * sizeof(float));
    /* with residual dropout the branches see the masked gradient (g->dln
       is free at both points: it is cleared before its next use) */
    model_linear_bwd(m, p, &L->down, a->act, a->acth, drop_grad(a, l, 1, g->dx, g->dln, N, T, d), g->dgate, N);
    MODEL_PROF(p, PR_SWIGLU, kern_swiglu_bwd(p->ctx, g->dgate, g->dup, g->dgate, a->gate, a->up, nf));
    memset(g->dln, 0, nd * sizeof(float));
    model_linear_bwd(m, p, &L->gate, a->ln2, a->ln2h, g->dgate, g->dln, N);
    model_linear_bwd(m, p, &L->up, a->ln2, a->ln2h, g->dup, g->dln, N);
    MODEL_PROF(p, PR_LN,
               kern_layernorm_bwd(p->ctx, g->dx, model_grad_of(m, p, L->n2w), model_grad_of(m, p, L->n2b), g->dln,
                                  a->xmid, L->n2w, a->ln2_mean, a->ln2_rstd, N, d));
    /* attention: xmid = x + proj(attn(rope(qkv(LN1(x))))) */
    memset(g->datt, 0, nd * sizeof(float));
    model_linear_bwd(m, p, &L->proj, a->att, a->atth, drop_grad(a, l, 0, g->dx, g->dln, N, T, d), g->datt, N);
    memset(g->dqkv, 0, 3 * nd * sizeof(float));
    MODEL_PROF(p, PR_ATT, kern_attention_bwd(p->ctx, g->dqkv, g->datt, a->qkv, a->att, a->lse, B, T, H, hd));
    kern_rope(p->ctx, g->dqkv, N, T, 2 * H, hd, 3 * d, m->rope, 0, 1);
    memset(g->dln, 0, nd * sizeof(float));
    model_linear_bwd(m, p, &L->qkv, a->ln1, a->ln1h, g->dqkv, g->dln, N);
    MODEL_PROF(p, PR_LN,
               kern_layernorm_bwd(p->ctx, g->dx, model_grad_of(m, p, L->n1w), model_grad_of(m, p, L->n1b), g->dln,
                                  a->x, L->n1w, a->ln1_mean, a->ln1_rstd, N, d));
}

void model_embed_backward(const aria_model *m, const model_pass *p, const int32_t *ids, int rows, const float *dx) {
    int d = m->cfg.d_model;
    float *gE = model_grad_of(m, p, m->tok_emb.data);
    for (int r = 0; r < rows; r++) {
        float *row = gE + (size_t)ids[r] * d;
        const float *gr = dx + (size_t)r * d;
        for (int i = 0; i < d; i++) row[i] += gr[i];
    }
}
