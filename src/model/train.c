/*
 * train.c - the trainer: gradients of the next-token loss and the AdamW
 * step, llm.c style.
 *
 * aria_trainer_new makes the model trainable (model_make_trainable: every
 * weight in one float32 arena the model owns) and allocates, laid out as
 * that arena, the gradients and the two AdamW moments, plus one block of
 * activations: per layer what model_layer_forward keeps for
 * model_layer_backward, the final LayerNorm and the logits, the backward
 * scratch. A step is forward (forward.c), the loss, backward
 * (backward.c), then clipping and AdamW here. Freeing the trainer leaves
 * the model whole, with its trained weights.
 *
 * The passes run on the model's context in the trainer's precision (two
 * contexts derived from it, sharing its threads and scratch). When that
 * context multiplies in bfloat16, copies of the weights are made once per
 * forward pass and of each product's input once, and every product that
 * reads them shares them.
 *
 * Conditioned batches (aria_trainer_backward_cond, spec 3.3) shift each
 * conditioned row one position right and put embedding_adapter(emb) at
 * position 0 instead of a token embedding; the layers run as for any
 * batch, the targets are the unshifted ids, and the residual-stream
 * gradient that reaches position 0 goes into the adapter's gradient
 * instead of a token embedding row.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/util.h"
#include "kernels/kernels.h"
#include "model/model_internal.h"

static size_t n_blocks(size_t n, size_t per) { return (n + per - 1) / per; }

static const char *const pr_name[PR_N] = {"products", "attention", "layernorm", "swiglu", "loss", "optimizer",
                                          "other"};

aria_adamw_opts aria_adamw_defaults(void) { return (aria_adamw_opts){3e-4f, 0.9f, 0.95f, 1e-5f, 0.1f}; }

struct aria_trainer {
    aria_model *m;
    int B, T;
    float *grads, *m1, *m2; /* laid out as m->arena */
    size_t n_params;
    int step;
    int exact;           /* aria_trainer_set_exact */
    aria_ctx *ctx;       /* the one of these two the precision picks: */
    aria_ctx *ctx_exact, *ctx_fast; /* the model's context in either precision */
    int32_t *targets;    /* per token: the next id, or -1 (no loss) */
    /* conditioned rows: the shifted ids the layers saw, which rows were
       conditioned and their embeddings (kept for the backward pass) */
    int32_t *sids;
    unsigned char *cond;
    float *cond_emb;
    int any_cond;
    /* residual dropout (aria_trainer_set_dropout) */
    float drop_p;
    uint64_t drop_seed;
    long drop_row0;
    double *row_loss;    /* per token, for the mean */
    int profile;         /* aria_trainer_set_profile */
    double prof[PR_N];
    /* activations */
    layer_acts *acts;
    float *xL, *lnf, *lnf_m, *lnf_r, *logits; /* logits: NULL without an lm_head */
    /* a head at one position per row (aria_trainer_forward_at): the
       gathered rows, their final LayerNorm and its statistics, gradients */
    float *xg, *hg, *gm, *gr, *dhg, *dxg;
    int *at_pos;
    aria_output at_what;
    int at_ready;        /* forward_at ran since the last backward_at */
    layer_grads g;       /* backward scratch */
    float *act_buf;
    /* when the context multiplies in bfloat16: copies made once and used
       by every product that reads them (weights: refreshed each forward) */
    int use_h;
    uint16_t *wh, *lnfh, *dyh, *h_buf;
};

/* How this trainer's passes run. */
static model_pass trainer_pass(aria_trainer *t) {
    return (model_pass){.ctx = t->ctx, .train = 1, .wh = t->use_h ? t->wh : NULL, .grads = t->grads, .dyh = t->dyh,
                        .prof = t->profile ? t->prof : NULL};
}

/* Layer l's activations, without the bfloat16 copies when they are off. */
static layer_acts layer_view(const aria_trainer *t, int l) {
    layer_acts a = t->acts[l];
    if (!t->use_h) a.ln1h = a.atth = a.ln2h = a.acth = NULL;
    /* layer-scaled, as the reference's classifier: p l / (L - 1) */
    int L = t->m->cfg.n_layers;
    a.drop_p = L > 1 ? t->drop_p * (float)l / (float)(L - 1) : t->drop_p;
    a.drop_seed = t->drop_seed;
    a.drop_row0 = t->drop_row0;
    a.drop_tmp = t->g.dln; /* backward scratch, free during the forward pass */
    return a;
}

void aria_trainer_set_dropout(aria_trainer *t, float p, uint64_t seed, long first_row) {
    t->drop_p = p > 0 && p < 1 ? p : 0;
    t->drop_seed = seed;
    t->drop_row0 = first_row;
}

/* ---------------------------------------------------------------------- */
/* Parameters and gradients by name                                       */
/* ---------------------------------------------------------------------- */

const float *aria_trainer_grad(const aria_trainer *t, const char *name, size_t *n) {
    const model_param *p = model_param_find(t->m, name);
    if (!p) return NULL;
    if (n) *n = p->n;
    return t->grads + p->off;
}

const float *aria_trainer_param(const aria_trainer *t, const char *name, size_t *n) {
    const model_param *p = model_param_find(t->m, name);
    if (!p) return NULL;
    if (n) *n = p->n;
    return t->m->arena + p->off;
}

void aria_trainer_moments(aria_trainer *t, const float **m1, const float **m2, size_t *n) {
    *m1 = t->m1;
    *m2 = t->m2;
    *n = t->n_params;
}

void aria_trainer_set_step(aria_trainer *t, int step) { t->step = step; }

/* The whole parameter and gradient arenas, n floats each, in table order:
   data-parallel training (src/tasks/trainloop.c) all-reduces the
   gradients and broadcasts the parameters as one buffer each. */
void aria_trainer_arena(aria_trainer *t, float **params, float **grads, size_t *n) {
    *params = t->m->arena;
    *grads = t->grads;
    *n = t->n_params;
}

/* ---------------------------------------------------------------------- */
/* Profile                                                                */
/* ---------------------------------------------------------------------- */

void aria_trainer_set_profile(aria_trainer *t, int on) { t->profile = on != 0; }

int aria_trainer_profile(const aria_trainer *t, const char **names, double *secs, int cap) {
    for (int k = 0; k < PR_N && k < cap; k++) {
        if (names) names[k] = pr_name[k];
        if (secs) secs[k] = t->prof[k];
    }
    return PR_N;
}

/* ---------------------------------------------------------------------- */
/* Set-up                                                                 */
/* ---------------------------------------------------------------------- */

void aria_trainer_free(aria_trainer *t) {
    if (!t) return;
    free(t->act_buf);
    free(t->h_buf);
    free(t->acts);
    free(t->at_pos);
    free(t->row_loss);
    free(t->targets);
    free(t->sids);
    free(t->cond);
    free(t->cond_emb);
    if (t->ctx_exact) kern_ctx_trim(t->ctx_exact); /* the scratch the passes left */
    aria_ctx_free(t->ctx_exact);
    aria_ctx_free(t->ctx_fast);
    free(t->grads);
    free(t->m1);
    free(t->m2);
    free(t);
}

/* Carves the activations out of one allocation. */
static int alloc_acts(aria_trainer *t) {
    const aria_model_config *c = &t->m->cfg;
    size_t N = (size_t)t->B * t->T, d = (size_t)c->d_model, ff = (size_t)c->ff_mult * d,
           H = (size_t)c->n_heads, V = (t->m->heads & ARIA_HEAD_LM) ? (size_t)c->vocab_size : 0,
           L = (size_t)c->n_layers, B = (size_t)t->B;
    size_t per_layer = N * (d + d + 2 + 3 * d + d + H + d + d + 2 + 3 * ff);
    size_t final = N * (d + d + 2 + V);
    size_t scratch = N * (d + d + 3 * d + d + 2 * ff);
    size_t at = B * (4 * d + 2);
    t->act_buf = malloc((L * per_layer + final + scratch + at) * sizeof(float));
    t->acts = calloc(L, sizeof *t->acts);
    t->at_pos = calloc(B, sizeof *t->at_pos);
    t->row_loss = malloc(N * sizeof *t->row_loss);
    t->targets = malloc(N * sizeof *t->targets);
    if (!t->act_buf || !t->acts || !t->row_loss || !t->targets || !t->at_pos) return -1;
    float *p = t->act_buf;
#define TAKE(ptr, count) (ptr = p, p += (count))
    for (size_t l = 0; l < L; l++) {
        layer_acts *a = &t->acts[l];
        TAKE(a->x, N * d);
        TAKE(a->ln1, N * d);
        TAKE(a->ln1_mean, N);
        TAKE(a->ln1_rstd, N);
        TAKE(a->qkv, N * 3 * d);
        TAKE(a->att, N * d);
        TAKE(a->lse, N * H);
        TAKE(a->xmid, N * d);
        TAKE(a->ln2, N * d);
        TAKE(a->ln2_mean, N);
        TAKE(a->ln2_rstd, N);
        TAKE(a->gate, N * ff);
        TAKE(a->up, N * ff);
        TAKE(a->act, N * ff);
    }
    TAKE(t->xL, N * d);
    TAKE(t->lnf, N * d);
    TAKE(t->lnf_m, N);
    TAKE(t->lnf_r, N);
    TAKE(t->logits, N * V);
    if (!V) t->logits = NULL;
    TAKE(t->xg, B * d);
    TAKE(t->hg, B * d);
    TAKE(t->gm, B);
    TAKE(t->gr, B);
    TAKE(t->dhg, B * d);
    TAKE(t->dxg, B * d);
    TAKE(t->g.dx, N * d);
    TAKE(t->g.dln, N * d);
    TAKE(t->g.dqkv, N * 3 * d);
    TAKE(t->g.datt, N * d);
    TAKE(t->g.dgate, N * ff);
    TAKE(t->g.dup, N * ff);
#undef TAKE
    /* each layer writes its output into the next one's input */
    for (size_t l = 0; l < L; l++) t->acts[l].out = l + 1 < L ? t->acts[l + 1].x : t->xL;
    return 0;
}

int aria_trainer_new(aria_trainer **out, aria_model *m, int batch, int seq_len, aria_error *err) {
    *out = NULL;
    const aria_model_config *c = &m->cfg;
    if (batch < 1 || seq_len < 2) return aria_fail(err, ARIA_ERR_ARG, "batch >= 1 and sequence length >= 2");
    if (seq_len > c->max_seq_len)
        return aria_fail(err, ARIA_ERR_ARG, "sequence length %d exceeds the model's context %d", seq_len, c->max_seq_len);
    if (!(m->heads & (ARIA_HEAD_LM | ARIA_HEAD_EMB | ARIA_HEAD_CLS)))
        return aria_fail(err, ARIA_ERR_ARG, "the model has no head to train (lm_head, emb_head or class_head)");
    int rc = model_make_trainable(m, err);
    if (rc) return rc;
    aria_trainer *t = calloc(1, sizeof *t);
    if (!t) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    t->m = m;
    t->B = batch;
    t->T = seq_len;
    t->n_params = m->arena_n;
    rc = kern_ctx_derive(&t->ctx_exact, m->ctx, ARIA_PREC_EXACT, err);
    if (!rc) rc = kern_ctx_derive(&t->ctx_fast, m->ctx, ARIA_PREC_FAST, err);
    if (rc) {
        aria_trainer_free(t);
        return rc;
    }
    size_t n = t->n_params ? t->n_params : 1;
    t->grads = calloc(n, sizeof(float));
    t->m1 = calloc(n, sizeof(float));
    t->m2 = calloc(n, sizeof(float));
    if (!t->grads || !t->m1 || !t->m2) {
        aria_trainer_free(t);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory for the gradients and optimizer state");
    }
    if (alloc_acts(t)) {
        aria_trainer_free(t);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory for activations (batch %d x %d tokens)", batch,
                         seq_len);
    }
    aria_trainer_set_exact(t, kern_ctx_precision(m->ctx) == ARIA_PREC_EXACT);
    *out = t;
    return ARIA_OK;
}

/* The bfloat16 copies, made on first use in the fast precision. */
static int alloc_h(aria_trainer *t) {
    const aria_model_config *c = &t->m->cfg;
    size_t N = (size_t)t->B * t->T, d = (size_t)c->d_model, ff = (size_t)c->ff_mult * d,
           V = (t->m->heads & ARIA_HEAD_LM) ? (size_t)c->vocab_size : 0;
    size_t L = (size_t)c->n_layers, dy = V > 3 * d ? V : 3 * d;
    dy = dy > ff ? dy : ff;
    size_t total = t->n_params + L * N * (3 * d + ff) + N * d + N * dy;
    t->h_buf = malloc(total * sizeof *t->h_buf);
    if (!t->h_buf) return -1;
    uint16_t *p = t->h_buf;
    t->wh = p, p += t->n_params;
    t->lnfh = p, p += N * d;
    t->dyh = p, p += N * dy;
    for (size_t l = 0; l < L; l++) {
        layer_acts *a = &t->acts[l];
        a->ln1h = p, p += N * d;
        a->atth = p, p += N * d;
        a->ln2h = p, p += N * d;
        a->acth = p, p += N * ff;
    }
    return 0;
}

void aria_trainer_set_exact(aria_trainer *t, int exact) {
    t->exact = exact != 0;
    t->ctx = t->exact ? t->ctx_exact : t->ctx_fast;
    /* without memory for the copies, the products make their own */
    t->use_h = kern_gemm_uses_bf16(t->ctx) && (t->h_buf || alloc_h(t) == 0);
}

int aria_trainer_is_exact(const aria_trainer *t) { return t->exact; }

void aria_trainer_zero_grad(aria_trainer *t) { memset(t->grads, 0, t->n_params * sizeof(float)); }

/* ---------------------------------------------------------------------- */
/* Forward, loss, backward                                                */
/* ---------------------------------------------------------------------- */

/* The layers: t->xL receives the last one's output. With conditioned
   rows (t->any_cond), `ids` are the shifted ids and position 0 of those
   rows is embedding_adapter(emb), in float32. */
static void forward_trunk(aria_trainer *t, const int32_t *ids) {
    aria_model *m = t->m;
    model_pass p = trainer_pass(t);
    int N = t->B * t->T, d = m->cfg.d_model, E = m->adapter_in;
    model_embed(m, ids, N, t->acts[0].x);
    for (int b = 0; t->any_cond && b < t->B; b++)
        if (t->cond[b])
            kern_matmul(t->ctx, t->cond_emb + (size_t)b * E, 1, &m->adapter, t->acts[0].x + (size_t)b * t->T * d, 0);
    /* the weights may have changed since the last pass */
    if (t->use_h) MODEL_PROF(&p, PR_GEMM, kern_to_bf16(p.ctx, m->arena, t->wh, t->n_params));
    for (int l = 0; l < m->cfg.n_layers; l++) {
        layer_acts a = layer_view(t, l);
        model_layer_forward(m, &p, l, &a, t->B, t->T, 0, NULL);
    }
}

static void forward(aria_trainer *t, const int32_t *ids) {
    aria_model *m = t->m;
    model_pass p = trainer_pass(t);
    int N = t->B * t->T;
    forward_trunk(t, ids);
    model_head_forward(m, &p, t->xL, N, ARIA_OUT_LOGITS, t->lnf, t->lnf_m, t->lnf_r, t->use_h ? t->lnfh : NULL,
                       t->logits);
}

/* Mean cross-entropy of each token's next id (none after a sequence's
   last token; <P> targets ignored); with `grad`, the logits become
   dLoss/dlogits (times grad_scale). */
static float loss_and_dlogits(aria_trainer *t, const int32_t *ids, int grad, float grad_scale) {
    int N = t->B * t->T, count = 0;
    for (int r = 0; r < N; r++) {
        int next = r % t->T + 1 < t->T ? ids[r + 1] : ARIA_SP_PAD;
        /* a conditioned row's position j >= 1 holds ids[j - 1]: its
           target is ids[j]; position 0 (the embedding) has none */
        if (t->any_cond && t->cond[r / t->T]) next = r % t->T ? ids[r] : ARIA_SP_PAD;
        t->targets[r] = next == ARIA_SP_PAD ? -1 : next;
        count += next != ARIA_SP_PAD;
    }
    float dscale = count ? grad_scale / (float)count : 0.0f;
    model_pass p = trainer_pass(t);
    MODEL_PROF(&p, PR_LOSS,
               kern_xent_fwd_bwd(t->ctx, t->logits, t->row_loss, t->targets, N, t->m->cfg.vocab_size, grad, dscale));
    double sum = 0;
    for (int r = 0; r < N; r++) sum += t->row_loss[r];
    return count ? (float)(sum / count) : 0.0f;
}

static void backward(aria_trainer *t, const int32_t *ids) {
    aria_model *m = t->m;
    model_pass p = trainer_pass(t);
    int N = t->B * t->T;
    model_head_backward(m, &p, t->xL, t->lnf, t->use_h ? t->lnfh : NULL, t->lnf_m, t->lnf_r, t->logits, N, &t->g);
    for (int l = m->cfg.n_layers - 1; l >= 0; l--) {
        layer_acts a = layer_view(t, l);
        model_layer_backward(m, &p, l, &a, t->B, t->T, &t->g);
    }
    if (t->any_cond) { /* position 0 of a conditioned row: dW_adapter += dx0 emb^T */
        int d = m->cfg.d_model, E = m->adapter_in;
        float *gA = model_grad_of(m, &p, m->adapter.data);
        for (int b = 0; b < t->B; b++) {
            if (!t->cond[b]) continue;
            float *dx0 = t->g.dx + (size_t)b * t->T * d;
            const float *e = t->cond_emb + (size_t)b * E;
            for (int i = 0; i < d; i++)
                for (int k = 0; k < E; k++) gA[(size_t)i * E + k] += dx0[i] * e[k];
            memset(dx0, 0, (size_t)d * sizeof *dx0); /* no token embedding there */
        }
        ids = t->sids;
    }
    model_embed_backward(m, &p, ids, N, t->g.dx);
}

static int check_ids(const aria_trainer *t, const int32_t *ids, aria_error *err) {
    for (size_t i = 0; i < (size_t)t->B * t->T; i++)
        if (ids[i] < 0 || ids[i] >= t->m->cfg.vocab_size)
            return aria_fail(err, ARIA_ERR_ARG, "token id %d at %zu is outside the vocabulary", ids[i], i);
    return ARIA_OK;
}

static int check_lm(const aria_trainer *t, aria_error *err) {
    if (t->m->heads & ARIA_HEAD_LM) return ARIA_OK;
    return aria_fail(err, ARIA_ERR_ARG, "the next-token loss needs an lm_head, which the model does not have");
}

int aria_trainer_loss(aria_trainer *t, const int32_t *ids, float *loss, aria_error *err) {
    int rc = check_lm(t, err);
    if (!rc) rc = check_ids(t, ids, err);
    if (rc) return rc;
    t->any_cond = 0;
    forward(t, ids);
    *loss = loss_and_dlogits(t, ids, 0, 1.0f);
    return ARIA_OK;
}

static int backward_step(aria_trainer *t, const int32_t *ids, float grad_scale, float *loss);

int aria_trainer_backward(aria_trainer *t, const int32_t *ids, float grad_scale, float *loss, aria_error *err) {
    int rc = check_lm(t, err);
    if (!rc) rc = check_ids(t, ids, err);
    if (rc) return rc;
    t->any_cond = 0;
    return backward_step(t, ids, grad_scale, loss);
}

/* Forward, loss and backward of the batch as set up (t->any_cond and,
   with it, t->sids, t->cond, t->cond_emb). */
static int backward_step(aria_trainer *t, const int32_t *ids, float grad_scale, float *loss) {
    double t0 = t->profile ? model_clock() : 0, before = 0;
    for (int k = 0; k < PR_N; k++) before += t->prof[k];
    forward(t, t->any_cond ? t->sids : ids);
    *loss = loss_and_dlogits(t, ids, 1, grad_scale);
    backward(t, ids);
    if (t->profile) {
        double after = 0;
        for (int k = 0; k < PR_N; k++) after += t->prof[k];
        t->prof[PR_OTHER] += model_clock() - t0 - (after - before);
    }
    return ARIA_OK;
}

/* Checks a conditioned batch and sets it up: the shifted ids (position 0
   keeps ids[0], a valid id whose embedding row is then replaced), which
   rows are conditioned, a copy of their embeddings. */
static int setup_cond(aria_trainer *t, const int32_t *ids, const float *emb, const unsigned char *use,
                      aria_error *err) {
    aria_model *m = t->m;
    int rc = check_lm(t, err);
    if (!rc) rc = check_ids(t, ids, err);
    if (rc) return rc;
    int E = aria_model_adapter_dim(m), B = t->B, T = t->T;
    if (E <= 0) return aria_fail(err, ARIA_ERR_ARG, "the model has no embedding_adapter to condition on");
    if (!emb) return aria_fail(err, ARIA_ERR_ARG, "no embeddings given");
    if (!t->sids) t->sids = malloc((size_t)B * T * sizeof *t->sids);
    if (!t->cond) t->cond = malloc((size_t)B);
    if (!t->cond_emb) t->cond_emb = malloc((size_t)B * E * sizeof *t->cond_emb);
    if (!t->sids || !t->cond || !t->cond_emb) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    t->any_cond = 0;
    for (int b = 0; b < B; b++) {
        const int32_t *row = ids + (size_t)b * T;
        int32_t *srow = t->sids + (size_t)b * T;
        t->cond[b] = !use || use[b];
        if (!t->cond[b]) {
            memcpy(srow, row, (size_t)T * sizeof *srow);
            continue;
        }
        for (int i = 0; i < E; i++)
            if (!isfinite(emb[(size_t)b * E + i]))
                return aria_fail(err, ARIA_ERR_ARG, "embedding value %d of row %d is not finite", i, b);
        t->any_cond = 1;
        srow[0] = row[0];
        memcpy(srow + 1, row, (size_t)(T - 1) * sizeof *srow);
        memcpy(t->cond_emb + (size_t)b * E, emb + (size_t)b * E, (size_t)E * sizeof *emb);
    }
    return ARIA_OK;
}

int aria_trainer_backward_cond(aria_trainer *t, const int32_t *ids, const float *emb, const unsigned char *use,
                               float grad_scale, float *loss, aria_error *err) {
    int rc = setup_cond(t, ids, emb, use, err);
    if (rc) {
        t->any_cond = 0;
        return rc;
    }
    rc = backward_step(t, ids, grad_scale, loss);
    t->any_cond = 0;
    return rc;
}

int aria_trainer_loss_cond(aria_trainer *t, const int32_t *ids, const float *emb, const unsigned char *use,
                           float *loss, aria_error *err) {
    int rc = setup_cond(t, ids, emb, use, err);
    if (!rc) {
        forward(t, t->any_cond ? t->sids : ids);
        *loss = loss_and_dlogits(t, ids, 0, 1.0f);
    }
    t->any_cond = 0;
    return rc;
}

/* ---------------------------------------------------------------------- */
/* A head at one position per row (embeddings, classifier logits)         */
/* ---------------------------------------------------------------------- */

/* The final LayerNorm and the head run on the B gathered rows only, so
   nothing of size vocabulary x tokens is computed; the backward pass
   starts from B rows of the residual stream and runs the layers as the
   next-token loss does. The head's two small products are float32 (no
   bfloat16 copies for B rows). */

static const kern_mat *head_of(const aria_model *m, aria_output what) {
    switch (what) {
    case ARIA_OUT_EMB: return &m->emb_head;
    case ARIA_OUT_CLS: return &m->class_head;
    default: return NULL;
    }
}

int aria_trainer_forward_at(aria_trainer *t, const int32_t *ids, const int *pos, aria_output what, float *out,
                            aria_error *err) {
    aria_model *m = t->m;
    int dim = aria_output_dim(m, what);
    if ((what != ARIA_OUT_EMB && what != ARIA_OUT_CLS) || dim <= 0)
        return aria_fail(err, ARIA_ERR_ARG, "the model has no %s", what == ARIA_OUT_CLS ? "class_head" : "emb_head");
    for (int b = 0; b < t->B; b++)
        if (pos[b] < 0 || pos[b] >= t->T)
            return aria_fail(err, ARIA_ERR_ARG, "position %d of row %d is outside the sequence of %d", pos[b], b, t->T);
    int rc = check_ids(t, ids, err);
    if (rc) return rc;
    t->any_cond = 0;
    double t0 = t->profile ? model_clock() : 0, before = 0;
    for (int k = 0; k < PR_N; k++) before += t->prof[k];
    forward_trunk(t, ids);
    int d = m->cfg.d_model;
    for (int b = 0; b < t->B; b++) {
        t->at_pos[b] = pos[b];
        memcpy(t->xg + (size_t)b * d, t->xL + ((size_t)b * t->T + pos[b]) * d, (size_t)d * sizeof(float));
    }
    model_pass hp = {.ctx = t->ctx, .train = 1, .grads = t->grads, .prof = t->profile ? t->prof : NULL};
    model_head_forward(m, &hp, t->xg, t->B, what, t->hg, t->gm, t->gr, NULL, out);
    t->at_what = what;
    t->at_ready = 1;
    if (t->profile) {
        double after = 0;
        for (int k = 0; k < PR_N; k++) after += t->prof[k];
        t->prof[PR_OTHER] += model_clock() - t0 - (after - before);
    }
    return ARIA_OK;
}

int aria_trainer_backward_at(aria_trainer *t, const int32_t *ids, const float *dout, aria_error *err) {
    if (!t->at_ready) return aria_fail(err, ARIA_ERR_ARG, "aria_trainer_backward_at without aria_trainer_forward_at");
    t->at_ready = 0;
    aria_model *m = t->m;
    double t0 = t->profile ? model_clock() : 0, before = 0;
    for (int k = 0; k < PR_N; k++) before += t->prof[k];
    int d = m->cfg.d_model, B = t->B, N = t->B * t->T;
    model_pass hp = {.ctx = t->ctx, .train = 1, .grads = t->grads, .prof = t->profile ? t->prof : NULL};
    memset(t->dhg, 0, (size_t)B * d * sizeof(float));
    model_linear_bwd(m, &hp, head_of(m, t->at_what), t->hg, NULL, dout, t->dhg, B);
    memset(t->dxg, 0, (size_t)B * d * sizeof(float));
    MODEL_PROF(&hp, PR_LN,
               kern_layernorm_bwd(t->ctx, t->dxg, model_grad_of(m, &hp, m->out_w), model_grad_of(m, &hp, m->out_b),
                                  t->dhg, t->xg, m->out_w, t->gm, t->gr, B, d));
    memset(t->g.dx, 0, (size_t)N * d * sizeof(float));
    for (int b = 0; b < B; b++) {
        float *row = t->g.dx + ((size_t)b * t->T + t->at_pos[b]) * d;
        const float *src = t->dxg + (size_t)b * d;
        for (int i = 0; i < d; i++) row[i] += src[i];
    }
    model_pass p = trainer_pass(t);
    for (int l = m->cfg.n_layers - 1; l >= 0; l--) {
        layer_acts a = layer_view(t, l);
        model_layer_backward(m, &p, l, &a, t->B, t->T, &t->g);
    }
    model_embed_backward(m, &p, ids, N, t->g.dx);
    if (t->profile) {
        double after = 0;
        for (int k = 0; k < PR_N; k++) after += t->prof[k];
        t->prof[PR_OTHER] += model_clock() - t0 - (after - before);
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
    double t0 = t->profile ? model_clock() : 0;
    size_t nb = n_blocks(t->n_params, AB);
    double *part = malloc((nb ? nb : 1) * sizeof *part), ss = 0;
    clip_job j = {t, part, 1.0f};
    if (part) {
        aria_pool_run(kern_ctx_pool(t->ctx), sumsq_task, &j, nb);
        for (size_t k = 0; k < nb; k++) ss += part[k];
        free(part);
    } else {
        for (size_t i = 0; i < t->n_params; i++) ss += (double)t->grads[i] * t->grads[i];
    }
    float norm = (float)sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        j.coef = max_norm / (norm + 1e-6f);
        aria_pool_run(kern_ctx_pool(t->ctx), scale_task, &j, nb);
    }
    if (t->profile) t->prof[PR_OPT] += model_clock() - t0;
    return norm;
}

/* torch.optim.AdamW, one element at a time, in its float32 order:
   decay first, then the moments, then the bias-corrected update; blocks
   of elements on the pool's threads. */
typedef struct {
    aria_trainer *t;
    float *params; /* the model's arena */
    float decay, fb1, fb2, c1, c2, sbc2, step, eps;
} adamw_job;

static void adamw_task(void *ctx, size_t blk) {
    const adamw_job *j = ctx;
    aria_trainer *t = j->t;
    size_t a = blk * AB, b = a + AB < t->n_params ? a + AB : t->n_params;
    for (size_t i = a; i < b; i++) {
        float g = t->grads[i];
        float p = j->params[i] * j->decay;
        float mm = t->m1[i] * j->fb1 + j->c1 * g;
        float vv = t->m2[i] * j->fb2 + (j->c2 * g) * g;
        float denom = sqrtf(vv) / j->sbc2 + j->eps;
        t->m1[i] = mm;
        t->m2[i] = vv;
        j->params[i] = p + (j->step * mm) / denom;
    }
}

void aria_trainer_adamw(aria_trainer *t, const aria_adamw_opts *o, float lr) {
    t->step++;
    double b1 = o->beta1, b2 = o->beta2;
    double bc1 = 1.0 - pow(b1, t->step), bc2 = 1.0 - pow(b2, t->step);
    adamw_job j = {t, t->m->arena, (float)(1.0 - (double)lr * o->weight_decay), (float)b1, (float)b2, (float)(1.0 - b1),
                   (float)(1.0 - b2), (float)sqrt(bc2), (float)(-(double)lr / bc1), o->eps};
    model_pass p = trainer_pass(t);
    MODEL_PROF(&p, PR_OPT, aria_pool_run(kern_ctx_pool(t->ctx), adamw_task, &j, n_blocks(t->n_params, AB)));
    /* packed copies of the weights are stale now */
    aria_model *m = t->m;
    for (size_t i = 0; i < m->n_params; i++)
        if (m->params[i].mat) kern_mat_release(m->params[i].mat);
}
