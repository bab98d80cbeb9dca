/*
 * quantize.c - writing a quantized copy of a weights file (aria quantize),
 * and the model's tensor listing (what `aria info` prints of a model).
 *
 * The input is loaded as any model is (so its config and every shape are
 * checked by the one parameter table), then walked in table order: each
 * matrix of the layers and the heads is quantized row by row
 * (kern_quant_row) into two tensors, NAME with the integers and
 * NAME.scale with the float16 scales (q4_k: NAME.kscale, U8, each
 * super-block's d, dmin and packed 6-bit codes); the token embedding stays bfloat16
 * (rows are read one at a time, so its size costs no speed) unless asked;
 * vectors stay float32. The file's metadata names the scheme, so a reader
 * knows what the integers mean without guessing from dtypes
 * (docs/quantization.md). aria_st_write writes it atomically.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/util.h"
#include "kernels/kernels.h"
#include "model/model_internal.h"

size_t aria_model_n_tensors(const aria_model *m) { return m->n_params; }

int aria_model_tensor(const aria_model *m, size_t i, aria_tensor *t) {
    if (i >= m->n_params) return ARIA_ERR_ARG;
    const model_param *p = &m->params[i];
    memset(t, 0, sizeof *t);
    t->name = p->name;
    t->ndim = p->cols ? 2 : 1;
    t->shape[0] = p->rows;
    t->shape[1] = p->cols;
    if (p->mat) {
        t->dtype = p->mat->dtype;
        t->data = p->mat->data;
        t->nbytes = kern_dtype_quantized(t->dtype) ? kern_quant_row_bytes(t->dtype, p->mat->cols) * p->mat->rows
                                                   : p->n * (t->dtype == ARIA_DT_BF16 ? 2 : 4);
    } else {
        t->dtype = ARIA_DT_F32;
        t->data = *p->vec;
        t->nbytes = p->n * 4;
    }
    return ARIA_OK;
}

/* What a tensor of the input becomes. */
static aria_dtype target_type(const model_param *p, const aria_quantize_opts *o) {
    if (!p->mat) return ARIA_DT_F32;
    if (!kern_dtype_quantized(o->type)) return o->type; /* a plain conversion: every matrix */
    if (p->spec->role == PARAM_EMBEDDING)
        return o->embedding_q8 && p->mat->cols % KERN_QBLOCK == 0 ? ARIA_DT_Q8_0 : ARIA_DT_BF16;
    if (p->mat->cols % kern_quant_block(o->type)) return ARIA_DT_BF16; /* no whole blocks */
    return o->type;
}

/* Tensor p's bytes as `type` into t (and the scales into s when
   quantized); the error names the tensor and row of a non-finite weight. */
static int convert(const model_param *p, aria_dtype type, aria_tensor *t, aria_tensor *s, char *scale_name,
                   aria_error *err) {
    int rows = (int)p->rows, cols = p->cols ? (int)p->cols : (int)p->rows;
    if (!p->mat) rows = 1;
    float *row = malloc((size_t)cols * sizeof *row);
    size_t nb = (size_t)cols / KERN_QBLOCK, rb = kern_quant_row_bytes(type, cols);
    int q = kern_dtype_quantized(type);
    size_t esz = type == ARIA_DT_F32 ? 4 : 2;
    uint8_t *data = malloc(q ? rb * rows + 1 : (size_t)rows * cols * esz + 1);
    uint16_t *sc = q ? malloc(nb * rows * sizeof *sc + 1) : NULL;
    int rc = ARIA_OK;
    if (!row || !data || (q && !sc)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory for tensor %s", p->name);
    for (int r = 0; r < rows && !rc; r++) {
        if (p->mat)
            kern_row_f32(p->mat, r, row);
        else
            memcpy(row, *p->vec, (size_t)cols * sizeof *row);
        for (int k = 0; k < cols; k++)
            if (!isfinite(row[k])) {
                rc = aria_fail(err, ARIA_ERR_FORMAT, "tensor %s: row %d, column %d is not finite (%g)", p->name, r, k,
                               (double)row[k]);
                break;
            }
        if (rc) break;
        if (q) {
            kern_quant_row(type, row, cols, data + (size_t)r * rb, sc + (size_t)r * nb);
        } else if (type == ARIA_DT_BF16) {
            for (int k = 0; k < cols; k++) {
                uint16_t h = aria_f32_to_bf16(row[k]);
                memcpy(data + ((size_t)r * cols + k) * 2, &h, 2);
            }
        } else {
            memcpy(data + (size_t)r * cols * 4, row, (size_t)cols * 4);
        }
    }
    free(row);
    if (rc) {
        free(data);
        free(sc);
        return rc;
    }
    *t = (aria_tensor){.name = p->name, .ndim = p->cols ? 2 : 1, .shape = {p->rows, p->cols}, .data = data};
    if (q) {
        t->dtype = type == ARIA_DT_I8 || type == ARIA_DT_Q8_0 ? ARIA_DT_I8 : ARIA_DT_U8;
        t->shape[1] = (int64_t)rb;
        t->nbytes = rb * rows;
        snprintf(scale_name, 128, "%s.scale", p->name);
        *s = (aria_tensor){.name = scale_name, .dtype = ARIA_DT_F16, .ndim = 2, .shape = {p->rows, (int64_t)nb},
                           .data = sc, .nbytes = nb * rows * 2};
        if (type == ARIA_DT_Q4_K) { /* 16 bytes a super-block: the same bytes as nb float16 */
            snprintf(scale_name, 128, "%s.kscale", p->name);
            s->dtype = ARIA_DT_U8;
            s->shape[1] = (int64_t)(nb * 2);
        }
    } else {
        t->dtype = type;
        t->nbytes = (size_t)rows * cols * esz;
    }
    return ARIA_OK;
}

int aria_quantize_file(const char *in_path, const char *out_path, const aria_model_config *cfg,
                       const aria_quantize_opts *opts, aria_error *err) {
    if (!opts || (opts->type != ARIA_DT_Q8_0 && opts->type != ARIA_DT_Q4_0 && opts->type != ARIA_DT_Q4_K &&
                  opts->type != ARIA_DT_BF16 && opts->type != ARIA_DT_F32))
        return aria_fail(err, ARIA_ERR_ARG, "unknown weight type (q8_0, q4_0, q4_k, bf16 and f32 are known)");
    aria_model *m;
    int rc = aria_model_load(&m, in_path, cfg, err);
    if (rc) return rc;
    for (size_t i = 0; i < m->n_params; i++) {
        const model_param *p = &m->params[i];
        if (p->mat && kern_dtype_quantized(p->mat->dtype)) {
            rc = aria_fail(err, ARIA_ERR_FORMAT,
                           "tensor %s is already %s: this file is quantized; quantize the original weights",
                           p->name, aria_dtype_name(p->mat->dtype));
            aria_model_free(m);
            return rc;
        }
    }
    size_t cap = 2 * m->n_params;
    aria_tensor *t = calloc(cap ? cap : 1, sizeof *t);
    char(*names)[128] = calloc(m->n_params ? m->n_params : 1, sizeof *names);
    size_t n = 0;
    if (!t || !names) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_params && !rc; i++) {
        aria_dtype type = target_type(&m->params[i], opts);
        rc = convert(&m->params[i], type, &t[n], &t[n + 1], names[i], err);
        if (!rc) n += kern_dtype_quantized(type) ? 2 : 1;
    }
    if (!rc) {
        /* ours first, then every other pair of the input's metadata (class
           names, training provenance) as it was */
        char cfg_js[512];
        aria_config_to_json(&m->cfg, cfg_js, sizeof cfg_js);
        const char *ours[] = {"format", "aria_config", "aria_quant", "aria_quant_block"};
        int quant = kern_dtype_quantized(opts->type);
        size_t n_ours = quant ? 4 : 2;
        aria_safetensors in;
        int have_in = aria_st_open(&in, in_path, err) == ARIA_OK;
        size_t n_in = have_in ? in.n_meta : 0, nk = n_ours;
        const char **keys = malloc((n_ours + n_in) * sizeof *keys), **vals = malloc((n_ours + n_in) * sizeof *vals);
        if (!keys || !vals) {
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        } else {
            const char *v_ours[] = {"pt", cfg_js, aria_dtype_name(opts->type),
                                    opts->type == ARIA_DT_Q4_K ? "256" : "32"};
            for (size_t k = 0; k < n_ours; k++) keys[k] = ours[k], vals[k] = v_ours[k];
            for (size_t k = 0; k < n_in; k++) {
                int skip = 0;
                for (size_t j = 0; j < 4; j++) skip |= !strcmp(in.meta_keys[k], ours[j]);
                if (!skip) keys[nk] = in.meta_keys[k], vals[nk++] = in.meta_values[k];
            }
            rc = aria_st_write(out_path, t, n, keys, vals, nk, err);
        }
        free(keys);
        free(vals);
        if (have_in) aria_st_close(&in);
    }
    for (size_t i = 0; t && i < n; i++) free((void *)t[i].data);
    free(t);
    free(names);
    aria_model_free(m);
    return rc;
}
