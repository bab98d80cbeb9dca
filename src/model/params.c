/*
 * params.c - the one table of the model's tensors.
 *
 * Each row names a tensor as the reference's state dict does, gives its
 * shape in terms of the config, its role and where the model keeps it.
 * Loading, saving, random initialisation and training all walk the list
 * this table expands to (model_params_build), so a tensor is added or
 * renamed here and nowhere else. The order is the checkpoints' own: the
 * token embeddings, the final LayerNorm, the blocks, then the heads; the
 * float32 arena of a trainable model (and the trainer's gradients and
 * moments beside it) follow it too.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "model/model_internal.h"

#define GLOBAL(field) offsetof(struct aria_model, field)
#define LAYER(field) offsetof(layer_w, field)

static const param_spec TABLE[] = {
    {"model.tok_embeddings.weight", PARAM_EMBEDDING, 0, 0, DIM_VOCAB, DIM_D, 1, GLOBAL(tok_emb)},
    {"model.out_layer_norm.weight", PARAM_NORM_WEIGHT, 0, 0, DIM_D, DIM_NONE, 0, GLOBAL(out_w)},
    {"model.out_layer_norm.bias", PARAM_NORM_BIAS, 0, 0, DIM_D, DIM_NONE, 0, GLOBAL(out_b)},
    {"model.encode_layers.%d.mixed_qkv.weight", PARAM_MATRIX, 1, 0, DIM_3D, DIM_D, 1, LAYER(qkv)},
    {"model.encode_layers.%d.att_proj_linear.weight", PARAM_MATRIX, 1, 0, DIM_D, DIM_D, 1, LAYER(proj)},
    {"model.encode_layers.%d.ff_gate_proj.weight", PARAM_MATRIX, 1, 0, DIM_FF, DIM_D, 1, LAYER(gate)},
    {"model.encode_layers.%d.ff_up_proj.weight", PARAM_MATRIX, 1, 0, DIM_FF, DIM_D, 1, LAYER(up)},
    {"model.encode_layers.%d.ff_down_proj.weight", PARAM_MATRIX, 1, 0, DIM_D, DIM_FF, 1, LAYER(down)},
    {"model.encode_layers.%d.norm1.weight", PARAM_NORM_WEIGHT, 1, 0, DIM_D, DIM_NONE, 0, LAYER(n1w)},
    {"model.encode_layers.%d.norm1.bias", PARAM_NORM_BIAS, 1, 0, DIM_D, DIM_NONE, 0, LAYER(n1b)},
    {"model.encode_layers.%d.norm2.weight", PARAM_NORM_WEIGHT, 1, 0, DIM_D, DIM_NONE, 0, LAYER(n2w)},
    {"model.encode_layers.%d.norm2.bias", PARAM_NORM_BIAS, 1, 0, DIM_D, DIM_NONE, 0, LAYER(n2b)},
    {"lm_head.weight", PARAM_HEAD, 0, ARIA_HEAD_LM, DIM_VOCAB, DIM_D, 1, GLOBAL(lm_head)},
    {"emb_head.weight", PARAM_HEAD, 0, ARIA_HEAD_EMB, DIM_EMB, DIM_D, 1, GLOBAL(emb_head)},
    {"class_head.weight", PARAM_HEAD, 0, ARIA_HEAD_CLS, DIM_CLASS, DIM_D, 1, GLOBAL(class_head)},
    {"embedding_adapter.weight", PARAM_HEAD, 0, ARIA_HEAD_ADAPTER, DIM_D, DIM_ADAPTER, 1, GLOBAL(adapter)},
};
#define N_TABLE (sizeof TABLE / sizeof *TABLE)

const param_spec *model_param_table(size_t *n) {
    *n = N_TABLE;
    return TABLE;
}

int64_t model_dim(const aria_model *m, param_dim d) {
    const aria_model_config *c = &m->cfg;
    switch (d) {
    case DIM_NONE: return 0;
    case DIM_D: return c->d_model;
    case DIM_3D: return 3 * (int64_t)c->d_model;
    case DIM_FF: return (int64_t)c->ff_mult * c->d_model;
    case DIM_VOCAB: return c->vocab_size;
    case DIM_EMB: return c->emb_size;
    case DIM_CLASS: return c->class_size;
    case DIM_ADAPTER: return m->adapter_in;
    }
    return 0;
}

int *model_open_dim(aria_model *m, param_dim d) {
    switch (d) {
    case DIM_EMB: return &m->cfg.emb_size;
    case DIM_CLASS: return &m->cfg.class_size;
    case DIM_ADAPTER: return &m->adapter_in;
    default: return NULL;
    }
}

/* One row of the table for one layer (-1: a global tensor). */
static void param_fill(aria_model *m, const param_spec *s, int layer, model_param *p) {
    memset(p, 0, sizeof *p);
    p->spec = s;
    p->layer = layer;
    snprintf(p->name, sizeof p->name, s->name, layer);
    p->rows = model_dim(m, s->rows);
    p->cols = model_dim(m, s->cols);
    p->n = (size_t)p->rows * (size_t)(p->cols ? p->cols : 1);
    char *base = layer < 0 ? (char *)m : (char *)&m->layers[layer];
    if (s->cols != DIM_NONE)
        p->mat = (kern_mat *)(base + s->slot);
    else
        p->vec = (const float **)(base + s->slot);
}

int model_params_build(aria_model *m, aria_error *err) {
    int L = m->cfg.n_layers;
    if (!m->layers) m->layers = calloc((size_t)L, sizeof *m->layers);
    size_t n_per_layer = 0, n_global = 0;
    for (size_t i = 0; i < N_TABLE; i++) {
        if (TABLE[i].per_layer) n_per_layer++;
        else if (!TABLE[i].head || (m->heads & TABLE[i].head)) n_global++;
    }
    free(m->params);
    m->params = calloc(n_global + n_per_layer * (size_t)L, sizeof *m->params);
    if (!m->layers || !m->params) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    size_t k = 0, off = 0;
    for (size_t i = 0; i < N_TABLE; i++) {
        const param_spec *s = &TABLE[i];
        if (s->head && !(m->heads & s->head)) continue;
        if (!s->per_layer) {
            param_fill(m, s, -1, &m->params[k++]);
            continue;
        }
        /* a run of per-layer rows: every layer's run in turn */
        size_t j = i;
        while (j < N_TABLE && TABLE[j].per_layer) j++;
        for (int l = 0; l < L; l++)
            for (size_t r = i; r < j; r++) param_fill(m, &TABLE[r], l, &m->params[k++]);
        i = j - 1;
    }
    for (size_t i = 0; i < k; i++) {
        m->params[i].off = off;
        off += m->params[i].n;
    }
    m->n_params = k;
    m->arena_n = off;
    return ARIA_OK;
}

const model_param *model_param_find(const aria_model *m, const char *name) {
    for (size_t i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

int model_make_trainable(aria_model *m, aria_error *err) {
    if (m->arena) return ARIA_OK;
    float *arena = malloc((m->arena_n ? m->arena_n : 1) * sizeof *arena);
    if (!arena) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory for the parameters");
    for (size_t i = 0; i < m->n_params; i++) {
        model_param *p = &m->params[i];
        float *dst = arena + p->off;
        if (p->mat) {
            for (int r = 0; r < p->mat->rows; r++) kern_row_f32(p->mat, r, dst + (size_t)r * p->mat->cols);
            kern_mat_release(p->mat); /* a packed copy of the old weights */
            p->mat->dtype = ARIA_DT_F32;
            p->mat->data = dst;
        } else {
            memcpy(dst, *p->vec, p->n * sizeof *dst);
            *p->vec = dst;
        }
    }
    /* the converted copies the weights lived in are no longer read */
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    m->n_owned = 0;
    m->arena = arena;
    return ARIA_OK;
}
