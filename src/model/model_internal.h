/*
 * model_internal.h - the model's weights as the forward pass (model.c)
 * and training (train.c) see them. Internal; not part of the public API.
 */
#ifndef ARIA_MODEL_INTERNAL_H
#define ARIA_MODEL_INTERNAL_H

#include "aria.h"
#include "kernels/kernels.h"

typedef struct {
    kern_mat qkv, proj, gate, up, down;
    const float *n1w, *n1b, *n2w, *n2b;
} layer_w;

struct aria_model {
    aria_model_config cfg;
    int heads;
    aria_safetensors st;
    int has_st;
    kern_mat tok_emb, lm_head, emb_head, class_head, adapter;
    const float *out_w, *out_b;
    layer_w *layers;
    void **owned; /* buffers to free */
    size_t n_owned, cap_owned;
    float *rope;  /* [max_seq_len][head_dim/2][2] */
    aria_pool *pool;
};

#endif
