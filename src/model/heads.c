/*
 * heads.c - changing which heads a model carries, for finetuning: a
 * language model becomes an embedding model (emb_head, no lm_head) or a
 * classifier (class_head), keeping every trunk weight. Also the small
 * things a finetune needs beside that: re-drawing one row of a tensor
 * (the <E> embedding row of the classifier recipe, spec 3.5), reading a
 * loaded file's metadata, and saving with extra metadata (the class
 * names of a classifier). A generative model also gains an
 * embedding_adapter this way, to be trained on conditioned batches
 * (spec 3.3).
 *
 * The model is made trainable first (every weight in the float32 arena),
 * then the parameter list is rebuilt for the new heads and a new arena
 * filled: tensors that both lists have are copied by name, new heads are
 * drawn N(0, 0.02) (the std aria_model_new_random uses; the reference
 * builds its new heads as torch nn.Linear, uniform +-1/sqrt(in), which we
 * do not copy), dropped heads go.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/util.h"
#include "kernels/kernels.h"
#include "model/model_internal.h"

static void normal_fill(float *p, size_t n, float std, aria_rng *r) {
    for (size_t i = 0; i < n; i += 2) { /* Box-Muller, two values per draw */
        double u1 = 1.0 - aria_rng_random(r), u2 = aria_rng_random(r);
        double rad = sqrt(-2.0 * log(u1));
        p[i] = (float)(rad * cos(2 * M_PI * u2)) * std;
        if (i + 1 < n) p[i + 1] = (float)(rad * sin(2 * M_PI * u2)) * std;
    }
}

int aria_model_set_heads(aria_model *m, int heads, int emb_size, int class_size, uint64_t seed, aria_error *err) {
    if ((heads & ARIA_HEAD_EMB) && !(m->heads & ARIA_HEAD_EMB) && emb_size <= 0 && m->cfg.emb_size <= 0)
        return aria_fail(err, ARIA_ERR_ARG, "a new emb_head needs an embedding size");
    if ((heads & ARIA_HEAD_CLS) && !(m->heads & ARIA_HEAD_CLS) && class_size <= 0 && m->cfg.class_size <= 0)
        return aria_fail(err, ARIA_ERR_ARG, "a new class_head needs a class count");
    int new_adapter = (heads & ARIA_HEAD_ADAPTER) && !(m->heads & ARIA_HEAD_ADAPTER);
    int adapter_in = emb_size > 0 ? emb_size : m->cfg.emb_size;
    if (new_adapter && adapter_in <= 0)
        return aria_fail(err, ARIA_ERR_ARG, "a new embedding_adapter needs an embedding size");
    /* the config has one emb_size, which an emb_head and the adapter share */
    if (new_adapter && (heads & ARIA_HEAD_EMB) && (m->heads & ARIA_HEAD_EMB) && m->cfg.emb_size != adapter_in)
        return aria_fail(err, ARIA_ERR_ARG, "an embedding_adapter of %d inputs beside an emb_head of %d rows",
                         adapter_in, m->cfg.emb_size);
    int rc = model_make_trainable(m, err);
    if (rc) return rc;
    /* keep the old list and arena to copy from */
    model_param *old = m->params;
    size_t n_old = m->n_params;
    float *old_arena = m->arena;
    int old_heads = m->heads, old_adapter_in = m->adapter_in;
    aria_model_config old_cfg = m->cfg;
    for (size_t i = 0; i < n_old; i++)
        if (old[i].mat) kern_mat_release(old[i].mat);
    m->params = NULL;
    m->heads = heads;
    /* a head that is new gets the size asked for; one that stays keeps its own */
    if ((heads & ARIA_HEAD_EMB) && !(old_heads & ARIA_HEAD_EMB) && emb_size > 0) m->cfg.emb_size = emb_size;
    if ((heads & ARIA_HEAD_CLS) && !(old_heads & ARIA_HEAD_CLS) && class_size > 0) m->cfg.class_size = class_size;
    if (new_adapter) m->adapter_in = m->cfg.emb_size = adapter_in;
    /* a size no head uses any more is not kept in the config */
    if (!(heads & (ARIA_HEAD_EMB | ARIA_HEAD_ADAPTER))) m->cfg.emb_size = 0;
    if (!(heads & ARIA_HEAD_CLS)) m->cfg.class_size = 0;
    rc = model_params_build(m, err);
    float *arena = rc ? NULL : malloc((m->arena_n ? m->arena_n : 1) * sizeof *arena);
    if (!rc && !arena) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory for the parameters");
    if (rc) { /* back to the model as it was */
        free(m->params);
        m->params = old;
        m->n_params = n_old;
        m->heads = old_heads;
        m->cfg = old_cfg;
        m->adapter_in = old_adapter_in;
        m->arena_n = 0;
        for (size_t i = 0; i < n_old; i++) m->arena_n += old[i].n;
        return rc;
    }
    aria_rng r;
    aria_rng_seed(&r, seed * 2654435761u + 17);
    for (size_t i = 0; i < m->n_params; i++) {
        model_param *p = &m->params[i];
        float *dst = arena + p->off;
        const model_param *q = NULL;
        for (size_t j = 0; j < n_old && !q; j++)
            if (!strcmp(old[j].name, p->name) && old[j].n == p->n) q = &old[j];
        if (q)
            memcpy(dst, old_arena + q->off, p->n * sizeof *dst);
        else
            normal_fill(dst, p->n, 0.02f, &r);
        if (p->mat)
            *p->mat = (kern_mat){.dtype = ARIA_DT_F32, .data = dst, .rows = (int)p->rows, .cols = (int)p->cols};
        else
            *p->vec = dst;
    }
    /* heads that went: nothing points into the old arena any more */
    if (!(heads & ARIA_HEAD_LM)) memset(&m->lm_head, 0, sizeof m->lm_head);
    if (!(heads & ARIA_HEAD_EMB)) memset(&m->emb_head, 0, sizeof m->emb_head);
    if (!(heads & ARIA_HEAD_CLS)) memset(&m->class_head, 0, sizeof m->class_head);
    if (!(heads & ARIA_HEAD_ADAPTER)) memset(&m->adapter, 0, sizeof m->adapter);
    free(old);
    free(old_arena);
    m->arena = arena;
    return ARIA_OK;
}

int aria_model_reinit_row(aria_model *m, const char *tensor, int64_t row, float std, uint64_t seed,
                          aria_error *err) {
    int rc = model_make_trainable(m, err);
    if (rc) return rc;
    const model_param *p = model_param_find(m, tensor);
    if (!p) return aria_fail(err, ARIA_ERR_ARG, "the model has no tensor %s", tensor);
    int64_t cols = p->cols ? p->cols : 1;
    if (row < 0 || row >= p->rows)
        return aria_fail(err, ARIA_ERR_ARG, "%s has no row %lld", tensor, (long long)row);
    aria_rng r;
    aria_rng_seed(&r, seed * 40503u + 99);
    normal_fill(m->arena + p->off + (size_t)(row * cols), (size_t)cols, std, &r);
    if (p->mat) kern_mat_release(p->mat); /* a packed copy of the old values */
    return ARIA_OK;
}

const char *aria_model_meta(const aria_model *m, const char *key) {
    return m->has_st ? aria_st_meta(&m->st, key) : NULL;
}

int aria_model_save_meta(const aria_model *m, const char *path, const char *const *keys, const char *const *vals,
                         size_t n_meta, aria_error *err) {
    if (!m->arena) return aria_model_save(m, path, ARIA_DT_F32, err);
    aria_tensor *t = calloc(m->n_params ? m->n_params : 1, sizeof *t);
    const char **k = malloc((n_meta + 2) * sizeof *k), **v = malloc((n_meta + 2) * sizeof *v);
    char cfg[512];
    int rc = t && k && v ? ARIA_OK : aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_params && !rc; i++) {
        const model_param *p = &m->params[i];
        t[i] = (aria_tensor){.name = p->name, .dtype = ARIA_DT_F32, .ndim = p->cols ? 2 : 1,
                             .shape = {p->rows, p->cols}, .data = m->arena + p->off, .nbytes = p->n * 4};
    }
    if (!rc) {
        aria_config_to_json(&m->cfg, cfg, sizeof cfg);
        k[0] = "format", v[0] = "pt";
        k[1] = "aria_config", v[1] = cfg;
        for (size_t i = 0; i < n_meta; i++) k[i + 2] = keys[i], v[i + 2] = vals[i];
        rc = aria_st_write(path, t, m->n_params, k, v, n_meta + 2, err);
    }
    free(t);
    free(k);
    free(v);
    return rc;
}
