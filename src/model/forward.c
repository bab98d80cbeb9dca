/*
 * forward.c - the one forward pass of a transformer layer, and the heads
 * after it (spec/aria.md section 2):
 *
 *   h = tok_embeddings[ids]
 *   per layer: h += proj(attn(rope(LN1(h) Wqkv)));  h += down(silu(gate(LN2(h))) * up(LN2(h)))
 *   out = LN_out(h) -> lm_head | emb_head | class_head
 *
 * Inference (session.c) and training (train.c) both run a layer through
 * model_layer_forward; they differ only in what they hand it: a session
 * gives a KV cache and lets several activations share one buffer, a
 * trainer gives a place for everything the backward pass reads (LayerNorm
 * statistics, q/k/v after RoPE, the attention output and log-sum-exp, the
 * SwiGLU inputs) and bfloat16 copies for its products (model_pass). Every
 * step is a kernel call on the pass's context.
 */
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "model/model_internal.h"

void model_embed(const aria_model *m, const int32_t *ids, int rows, float *x) {
    int d = m->cfg.d_model;
    for (int r = 0; r < rows; r++) kern_row_f32(&m->tok_emb, ids[r], x + (size_t)r * d);
}

static const uint16_t *weight_bf16(const aria_model *m, const model_pass *p, const kern_mat *W) {
    return p->wh ? p->wh + ((const float *)W->data - m->arena) : NULL;
}

void model_linear_fwd(const aria_model *m, const model_pass *p, const float *x, const uint16_t *xh, const kern_mat *W,
                      float *y, int N, int acc) {
    if (!p->train) {
        kern_matmul(p->ctx, x, N, W, y, acc);
        return;
    }
    MODEL_PROF(p, PR_GEMM,
               kern_gemm_h(p->ctx, 0, 1, N, W->rows, W->cols, x, p->wh ? xh : NULL, W->cols, W->data,
                           weight_bf16(m, p, W), W->cols, y, W->rows, acc));
}

/* In exact precision the float32 products add, for each row of dx and of
   dW, the terms in order of the output (resp. token) index. */
void model_linear_bwd(const aria_model *m, const model_pass *p, const kern_mat *W, const float *x, const uint16_t *xh,
                      const float *dy, float *dx, int N) {
    double t0 = p->prof ? model_clock() : 0;
    const uint16_t *dyh = NULL;
    if (p->wh) {
        kern_to_bf16(p->ctx, dy, p->dyh, (size_t)N * W->rows);
        dyh = p->dyh;
    } else {
        xh = NULL;
    }
    if (dx)
        kern_gemm_h(p->ctx, 0, 0, N, W->cols, W->rows, dy, dyh, W->rows, W->data, weight_bf16(m, p, W), W->cols, dx,
                    W->cols, 1);
    kern_gemm_h(p->ctx, 1, 0, W->rows, W->cols, N, dy, dyh, W->rows, x, xh, W->cols, model_grad_of(m, p, W->data),
                W->cols, 1);
    if (p->prof) p->prof[PR_GEMM] += model_clock() - t0;
}

void model_keep_bf16(const model_pass *p, const float *x, uint16_t *xh, size_t rows, size_t cols) {
    if (xh) MODEL_PROF(p, PR_GEMM, kern_to_bf16(p->ctx, x, xh, rows * cols));
}

/* Copies the block's k and v (after RoPE) into the cache at pos0
   (rounded to bfloat16 for a bfloat16 cache). */
static void cache_store(const model_pass *p, const kv_cache *kv, const float *qkv, int B, int n, int pos0, int H,
                        int hd) {
    int d = H * hd;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < n; t++) {
            const float *row = qkv + ((size_t)b * n + t) * 3 * d;
            for (int h = 0; h < H; h++) {
                size_t at = (((size_t)b * H + h) * kv->cap + pos0 + t) * hd;
                if (kv->kh) {
                    kern_to_bf16(p->ctx, row + d + h * hd, kv->kh + at, (size_t)hd);
                    kern_to_bf16(p->ctx, row + 2 * d + h * hd, kv->vh + at, (size_t)hd);
                } else {
                    memcpy(kv->k + at, row + d + h * hd, (size_t)hd * sizeof(float));
                    memcpy(kv->v + at, row + 2 * d + h * hd, (size_t)hd * sizeof(float));
                }
            }
        }
}

/* Attention of B rows of n queries over a cache whose rows start at
   element `off` (0, or hd to leave position 0 out). */
static void cache_attend(const model_pass *p, const kv_cache *kv, const float *qkv, int B, int n, int H, int hd,
                         int pos0, size_t off, float *att) {
    int d = H * hd;
    if (kv->kh)
        kern_attention_h(p->ctx, qkv, 3 * d, kv->kh + off, kv->vh + off, kv->cap, B, n, H, hd, pos0, att, d);
    else
        kern_attention(p->ctx, qkv, 3 * d, kv->k + off, kv->v + off, kv->cap, B, n, H, hd, pos0, att, d);
}

/* Causal attention of the block's queries: against the cache (every
   position so far) or, training, within the block with the log-sum-exp
   kept. */
static void attend(const model_pass *p, layer_acts *a, int B, int n, int pos0, const kv_cache *kv, int H, int hd) {
    int d = H * hd;
    if (kv) {
        cache_store(p, kv, a->qkv, B, n, pos0, H, hd);
        int any_skip = 0;
        for (int b = 0; b < B && kv->skip_first; b++) any_skip |= kv->skip_first[b] && pos0 > 0;
        if (!any_skip) {
            cache_attend(p, kv, a->qkv, B, n, H, hd, pos0, 0, a->att);
            return;
        }
        /* a row that skips position 0 attends over the cache seen from
           position 1: its keys 1 .. pos0 + t are keys 0 .. pos0 - 1 + t of
           the cache one position on (RoPE has already turned them by
           their own positions, so only the causal limit moves) */
        for (int b = 0; b < B; b++) {
            int skip = kv->skip_first[b] && pos0 > 0;
            size_t row = (size_t)b * H * kv->cap * hd, off = skip ? (size_t)hd : 0;
            cache_attend(p, kv, a->qkv + (size_t)b * n * 3 * d, 1, n, H, hd, pos0 - skip, row + off,
                         a->att + (size_t)b * n * d);
        }
        return;
    }
    MODEL_PROF(p, PR_ATT, kern_attention_fwd(p->ctx, a->att, a->lse, a->qkv, B, n, H, hd));
}

static uint64_t mix64(uint64_t x) { /* splitmix64's finalizer */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int model_drop_keep(const layer_acts *a, int l, int branch, size_t i) {
    uint64_t h = mix64(mix64(a->drop_seed ^ (0x5bd1e995ull * (uint64_t)(2 * l + branch + 1))) + (uint64_t)i);
    return (double)(h >> 11) * (1.0 / 9007199254740992.0) >= (double)a->drop_p;
}

/* dst += mask(branch) * y / (1 - p): a dropped-out branch joining the
   residual stream (the mask's element index counts from a->drop_row0). */
static void drop_add(const layer_acts *a, int l, int branch, float *dst, const float *y, int rows, int d, int n) {
    float scale = 1.0f / (1.0f - a->drop_p);
    size_t base = (size_t)a->drop_row0 * (size_t)n * (size_t)d, nd = (size_t)rows * d;
    for (size_t i = 0; i < nd; i++)
        if (model_drop_keep(a, l, branch, base + i)) dst[i] += y[i] * scale;
}

void model_layer_forward(const aria_model *m, const model_pass *p, int l, layer_acts *a, int B, int n, int pos0,
                         const kv_cache *kv) {
    const aria_model_config *c = &m->cfg;
    const layer_w *L = &m->layers[l];
    int d = c->d_model, H = c->n_heads, hd = d / H, ff = c->ff_mult * d, rows = B * n;
    size_t nd = (size_t)rows * d;
    /* attention: xmid = x + proj(attn(rope(qkv(LN1(x))))) */
    MODEL_PROF(p, PR_LN, kern_layernorm_fwd(p->ctx, a->ln1, a->ln1_mean, a->ln1_rstd, a->x, L->n1w, L->n1b, rows, d));
    model_keep_bf16(p, a->ln1, a->ln1h, (size_t)rows, (size_t)d);
    model_linear_fwd(m, p, a->ln1, a->ln1h, &L->qkv, a->qkv, rows, 0);
    /* q and k (the first 2H heads of each row) turn by their positions */
    kern_rope(p->ctx, a->qkv, rows, n, 2 * H, hd, 3 * d, m->rope, pos0, 0);
    attend(p, a, B, n, pos0, kv, H, hd);
    if (a->xmid != a->x) memcpy(a->xmid, a->x, nd * sizeof(float));
    model_keep_bf16(p, a->att, a->atth, (size_t)rows, (size_t)d);
    if (a->drop_p > 0) {
        model_linear_fwd(m, p, a->att, a->atth, &L->proj, a->drop_tmp, rows, 0);
        drop_add(a, l, 0, a->xmid, a->drop_tmp, rows, d, n);
    } else {
        model_linear_fwd(m, p, a->att, a->atth, &L->proj, a->xmid, rows, 1);
    }
    /* feed-forward: out = xmid + down(silu(gate(LN2(xmid))) * up(LN2(xmid))) */
    MODEL_PROF(p, PR_LN,
               kern_layernorm_fwd(p->ctx, a->ln2, a->ln2_mean, a->ln2_rstd, a->xmid, L->n2w, L->n2b, rows, d));
    model_keep_bf16(p, a->ln2, a->ln2h, (size_t)rows, (size_t)d);
    model_linear_fwd(m, p, a->ln2, a->ln2h, &L->gate, a->gate, rows, 0);
    model_linear_fwd(m, p, a->ln2, a->ln2h, &L->up, a->up, rows, 0);
    MODEL_PROF(p, PR_SWIGLU, kern_swiglu_fwd(p->ctx, a->act, a->gate, a->up, (size_t)rows * ff));
    if (a->out != a->xmid) memcpy(a->out, a->xmid, nd * sizeof(float));
    model_keep_bf16(p, a->act, a->acth, (size_t)rows, (size_t)ff);
    if (a->drop_p > 0) {
        model_linear_fwd(m, p, a->act, a->acth, &L->down, a->drop_tmp, rows, 0);
        drop_add(a, l, 1, a->out, a->drop_tmp, rows, d, n);
    } else {
        model_linear_fwd(m, p, a->act, a->acth, &L->down, a->out, rows, 1);
    }
}

static const kern_mat *head_matrix(const aria_model *m, aria_output what) {
    switch (what) {
    case ARIA_OUT_LOGITS: return &m->lm_head;
    case ARIA_OUT_EMB: return &m->emb_head;
    case ARIA_OUT_CLS: return &m->class_head;
    case ARIA_OUT_HIDDEN: return NULL;
    }
    return NULL;
}

void model_head_forward(const aria_model *m, const model_pass *p, const float *x, int rows, aria_output what,
                        float *h, float *mean, float *rstd, uint16_t *hh, float *out) {
    int d = m->cfg.d_model;
    MODEL_PROF(p, PR_LN, kern_layernorm_fwd(p->ctx, h, mean, rstd, x, m->out_w, m->out_b, rows, d));
    const kern_mat *W = head_matrix(m, what);
    if (!W) {
        memcpy(out, h, (size_t)rows * d * sizeof *out);
        return;
    }
    model_keep_bf16(p, h, hh, (size_t)rows, (size_t)d);
    model_linear_fwd(m, p, h, hh, W, out, rows, 0);
}

double model_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
