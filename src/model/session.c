/*
 * session.c - inference sessions: a KV cache for `batch` sequences that
 * advance together, and the buffers one block of positions needs.
 *
 * aria_session_forward runs new tokens through the model in blocks of
 * BLOCK positions per row (so activations stay small however long the
 * input), each block through every layer's model_layer_forward with this
 * layer's slice of the cache ([layer][row][head][position][head_dim]),
 * then the final LayerNorm and the requested head for the positions the
 * caller wants. Decoding is the same call with one position per row.
 *
 * A conditioned session (aria_session_condition, spec 4.4) starts with
 * embedding_adapter(embedding) in position 0 of every row, run through all
 * layers like a token; rows marked unconditioned then never attend to it,
 * so their tokens, from position 1 on, see only each other.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/util.h"
#include "model/model_internal.h"

#define BLOCK 256

struct aria_session {
    const aria_model *m;
    int B, cap, len;
    void *k, *v;                      /* [L][B][H][cap][hd], huge pages (each step reads them whole) */
    int kv_half;                      /* k, v hold bfloat16 (fast precision), else float32 */
    size_t kv_bytes;                  /* of each */
    size_t act_bytes;                 /* of the buffer x starts (and a ... u live in) */
    float *x, *a, *qkv, *att, *g, *u; /* activations for B * BLOCK tokens */
    unsigned char *skip_first;        /* [B]: rows that do not see position 0, or NULL */
};

void aria_session_free(aria_session *s) {
    if (!s) return;
    aria_huge_free(s->k, s->kv_bytes);
    aria_huge_free(s->v, s->kv_bytes);
    aria_huge_free(s->x, s->act_bytes); /* one buffer holds all six */
    free(s->skip_first);
    free(s);
}

int aria_session_new(aria_session **out, const aria_model *m, int batch, int max_len, aria_error *err) {
    return aria_session_new_kv(out, m, batch, max_len, ARIA_KV_F32, err);
}

int aria_session_new_kv(aria_session **out, const aria_model *m, int batch, int max_len, aria_kv_type kv_type,
                        aria_error *err) {
    *out = NULL;
    const aria_model_config *c = &m->cfg;
    if (batch < 1 || max_len < 1)
        return aria_fail(err, ARIA_ERR_ARG, "batch and length must be positive");
    if (max_len > c->max_seq_len)
        return aria_fail(err, ARIA_ERR_ARG, "%d tokens exceed the model's context of %d", max_len,
                         c->max_seq_len);
    aria_session *s = calloc(1, sizeof *s);
    if (!s) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    s->m = m;
    s->B = batch;
    s->cap = max_len;
    size_t d = (size_t)c->d_model, ff = (size_t)c->ff_mult * d, rows = (size_t)batch * BLOCK;
    size_t kv = (size_t)c->n_layers * batch * max_len * d;
    s->kv_half = kv_type == ARIA_KV_BF16 && kern_kv_bf16(m->ctx);
    s->kv_bytes = kv * (s->kv_half ? sizeof(uint16_t) : sizeof(float));
    s->k = aria_huge_alloc(s->kv_bytes);
    s->v = aria_huge_alloc(s->kv_bytes);
    /* the activations in one huge-page buffer: x, a, qkv, att (d, d, 3d,
       d floats a row), then g and u (ff each); rows is a multiple of 256,
       so each part starts 1 KiB aligned */
    s->act_bytes = rows * (6 * d + 2 * ff) * sizeof(float);
    s->x = aria_huge_alloc(s->act_bytes);
    if (s->x) {
        s->a = s->x + rows * d;
        s->qkv = s->a + rows * d;
        s->att = s->qkv + rows * 3 * d;
        s->g = s->att + rows * d;
        s->u = s->g + rows * ff;
    }
    if (!s->k || !s->v || !s->x) {
        aria_session_free(s);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory for a KV cache of %d x %d tokens", batch, max_len);
    }
    *out = s;
    return ARIA_OK;
}

void aria_session_reset(aria_session *s) {
    s->len = 0;
    free(s->skip_first);
    s->skip_first = NULL;
}
int aria_session_len(const aria_session *s) { return s->len; }

/* An inference pass, on the model's context. */
static model_pass session_pass(const aria_session *s) { return (model_pass){.ctx = s->m->ctx}; }

/* One block of n positions per row through all layers; s->x holds the
   result (before the final LayerNorm). The residual stream stays in s->x
   and the layer's buffers are shared where their lives do not overlap.
   ids NULL: s->x already holds the block's input vectors. */
static void forward_block(aria_session *s, const int32_t *ids, int T, int t0, int n) {
    const aria_model *m = s->m;
    const aria_model_config *c = &m->cfg;
    int d = c->d_model;
    model_pass p = session_pass(s);
    for (int b = 0; b < s->B && ids; b++) model_embed(m, ids + (size_t)b * T + t0, n, s->x + (size_t)b * n * d);
    layer_acts a = {.x = s->x, .ln1 = s->a, .qkv = s->qkv, .att = s->att, .xmid = s->x, .ln2 = s->a,
                    .gate = s->g, .up = s->u, .act = s->g, .out = s->x}; /* no statistics kept */
    for (int l = 0; l < c->n_layers; l++) {
        size_t layer_off = (size_t)l * s->B * s->cap * d;
        kv_cache kv = {NULL, NULL, NULL, NULL, s->cap, s->skip_first};
        if (s->kv_half)
            kv.kh = (uint16_t *)s->k + layer_off, kv.vh = (uint16_t *)s->v + layer_off;
        else
            kv.k = (float *)s->k + layer_off, kv.v = (float *)s->v + layer_off;
        model_layer_forward(m, &p, l, &a, s->B, n, s->len, &kv);
    }
}

/* Final LayerNorm and head for `rows` rows of x. */
static void head_out(aria_session *s, const float *x, int rows, aria_output what, float *out) {
    model_pass p = session_pass(s);
    model_head_forward(s->m, &p, x, rows, what, s->a, NULL, NULL, NULL, out);
}

int aria_session_forward(aria_session *s, const int32_t *ids, int T, aria_output what, int all_positions,
                         float *out, aria_error *err) {
    const aria_model *m = s->m;
    int dim = aria_output_dim(m, what);
    if (dim <= 0) return aria_fail(err, ARIA_ERR_ARG, "the model has no head for this output");
    if (T < 1) return aria_fail(err, ARIA_ERR_ARG, "no tokens");
    if (s->len + T > s->cap)
        return aria_fail(err, ARIA_ERR_ARG, "%d + %d tokens exceed the session's %d", s->len, T, s->cap);
    for (size_t i = 0; i < (size_t)s->B * T; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return aria_fail(err, ARIA_ERR_ARG, "token id %d at position %zu is outside the vocabulary (%d)",
                             ids[i], i % (size_t)T, m->cfg.vocab_size);
    int d = m->cfg.d_model;
    for (int t0 = 0; t0 < T; t0 += BLOCK) {
        int n = T - t0 < BLOCK ? T - t0 : BLOCK;
        forward_block(s, ids, T, t0, n);
        s->len += n;
        if (all_positions) {
            /* rows of this block are [b][n]; the output is [b][T] */
            for (int b = 0; b < s->B; b++)
                head_out(s, s->x + (size_t)b * n * d, n, what, out + ((size_t)b * T + t0) * dim);
        } else if (t0 + n == T) {
            for (int b = 0; b < s->B; b++)
                head_out(s, s->x + ((size_t)b * n + n - 1) * d, 1, what, out + (size_t)b * dim);
        }
    }
    return ARIA_OK;
}

int aria_model_adapter_dim(const aria_model *m) { return m->heads & ARIA_HEAD_ADAPTER ? m->adapter_in : 0; }

int aria_session_condition(aria_session *s, const float *emb, int n_emb, const unsigned char *unconditioned,
                           aria_error *err) {
    const aria_model *m = s->m;
    int E = aria_model_adapter_dim(m);
    if (E <= 0) return aria_fail(err, ARIA_ERR_ARG, "the model has no embedding_adapter (it cannot be conditioned)");
    if (n_emb != E)
        return aria_fail(err, ARIA_ERR_ARG, "an embedding of %d values given, the model's adapter takes %d", n_emb, E);
    if (s->len != 0) return aria_fail(err, ARIA_ERR_ARG, "the embedding must come before any token");
    for (int i = 0; i < n_emb; i++)
        if (!isfinite(emb[i])) return aria_fail(err, ARIA_ERR_ARG, "embedding value %d is not finite", i);
    unsigned char *skip = NULL;
    if (unconditioned) {
        skip = malloc((size_t)s->B);
        if (!skip) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        for (int b = 0; b < s->B; b++) skip[b] = unconditioned[b] != 0;
    }
    /* every row gets adapter(emb) at position 0, as the reference fills
       the cache (its unconditioned rows then mask it) */
    model_pass p = session_pass(s);
    int d = m->cfg.d_model;
    model_linear_fwd(m, &p, emb, NULL, &m->adapter, s->x, 1, 0);
    for (int b = 1; b < s->B; b++) memcpy(s->x + (size_t)b * d, s->x, (size_t)d * sizeof *s->x);
    free(s->skip_first);
    s->skip_first = NULL;
    forward_block(s, NULL, 1, 0, 1);
    s->len = 1;
    s->skip_first = skip;
    return ARIA_OK;
}
