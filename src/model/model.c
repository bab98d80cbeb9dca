/*
 * model.c - the Aria transformer's weights: loading, random
 * initialisation, saving and freeing, each a walk over the parameter
 * table's list (params.c). The passes that use them are in forward.c and
 * backward.c, sessions in session.c.
 *
 * Weights come from a safetensors file: float32 tensors are used where
 * they lie in the read-only mapping, bfloat16 matrices stay bfloat16 (the
 * matrix product widens them), quantized matrices (integers NAME plus
 * float16 scales NAME.scale, or q4_k's NAME.kscale, docs/quantization.md) stay quantized, anything
 * else is converted to float32 once (copies the model owns). A random model, and any model a trainer has
 * made trainable, holds every weight in one float32 arena instead.
 *
 * The kernels run on the model's context: its own (all CPUs, fast
 * precision, every backend the CPU has) unless the caller lends one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/util.h"
#include "kernels/kernels.h"
#include "model/model_internal.h"

static void *own(aria_model *m, void *p) {
    if (!p) return NULL;
    if (ARIA_GROW(m->owned, m->cap_owned, m->n_owned + 1)) {
        free(p);
        return NULL;
    }
    m->owned[m->n_owned++] = p;
    return p;
}

void aria_model_free(aria_model *m) {
    if (!m) return;
    /* packed copies the kernels made of the matrices */
    for (size_t i = 0; i < m->n_params; i++)
        if (m->params[i].mat) kern_mat_release(m->params[i].mat);
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->arena);
    free(m->params);
    free(m->layers);
    free(m->rope);
    if (m->has_st) aria_st_close(&m->st);
    aria_ctx_free(m->own_ctx);
    free(m);
}

const aria_model_config *aria_model_get_config(const aria_model *m) { return &m->cfg; }
int aria_model_heads(const aria_model *m) { return m->heads; }

/* A fresh context of the model's own with n threads, keeping the
   precision and backends of the one in use. */
void aria_model_set_threads(aria_model *m, int n) {
    aria_ctx_opts o = {.threads = n, .precision = kern_ctx_precision(m->ctx),
                       .portable = !kern_ctx_has_backend(m->ctx, "avx512") && !kern_ctx_has_backend(m->ctx, "onednn")};
    aria_ctx *c;
    if (aria_ctx_new(&c, &o, NULL)) return; /* keeps the context it has */
    aria_ctx_free(m->own_ctx);
    m->own_ctx = m->ctx = c;
}

void aria_model_set_ctx(aria_model *m, aria_ctx *ctx) { m->ctx = ctx ? ctx : m->own_ctx; }

aria_precision aria_model_precision(const aria_model *m) { return kern_ctx_precision(m->ctx); }

int aria_output_dim(const aria_model *m, aria_output what) {
    switch (what) {
    case ARIA_OUT_LOGITS: return m->heads & ARIA_HEAD_LM ? m->cfg.vocab_size : 0;
    case ARIA_OUT_HIDDEN: return m->cfg.d_model;
    case ARIA_OUT_EMB: return m->heads & ARIA_HEAD_EMB ? m->cfg.emb_size : 0;
    case ARIA_OUT_CLS: return m->heads & ARIA_HEAD_CLS ? m->cfg.class_size : 0;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Loading                                                                */
/* ---------------------------------------------------------------------- */

static void shape_str(const aria_tensor *t, char *buf, size_t cap) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* A quantized matrix's integers t (I8: q8_0; U8: q4_0, or q4_k when
   NAME.kscale is there) and the scales beside them (NAME.scale, F16
   [rows][cols / 32]; q4_k: NAME.kscale, U8 [rows][cols / 256 * 16]):
   checked against p's shape, the float16 scales (q4_k: each super-block's
   d and dmin) finite. *scales receives the scale tensor. */
static int find_quantized(const aria_model *m, const model_param *p, const aria_tensor *t,
                          const aria_tensor **scales, aria_error *err) {
    const char *dt = aria_dtype_name(t->dtype);
    if (!p->cols)
        return aria_fail(err, ARIA_ERR_FORMAT, "tensor %s is %s: integers are only for quantized matrices", p->name,
                         dt);
    char sname[128], kname[128];
    snprintf(sname, sizeof sname, "%s.scale", p->name);
    snprintf(kname, sizeof kname, "%s.kscale", p->name);
    const aria_tensor *s = aria_st_find(&m->st, sname), *k = aria_st_find(&m->st, kname);
    if (s && k)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "tensor %s has both %s (q8_0, q4_0) and %s (q4_k): a matrix has one type", p->name, sname,
                         kname);
    if (k && t->dtype != ARIA_DT_U8)
        return aria_fail(err, ARIA_ERR_FORMAT, "tensor %s is %s but %s says q4_k, whose integers are U8", p->name, dt,
                         kname);
    aria_dtype type = t->dtype == ARIA_DT_I8 ? ARIA_DT_Q8_0 : k ? ARIA_DT_Q4_K : ARIA_DT_Q4_0;
    const char *tn = aria_dtype_name(type);
    int blk = kern_quant_block(type);
    if (p->cols % blk)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "tensor %s is %s (%s), but its %lld columns are not a multiple of the block size %d", p->name,
                         dt, tn, (long long)p->cols, blk);
    int64_t icols = t->dtype == ARIA_DT_U8 ? p->cols / 2 : p->cols;
    if (t->ndim != 2 || t->shape[0] != p->rows || t->shape[1] != icols) {
        char got[64];
        shape_str(t, got, sizeof got);
        return aria_fail(err, ARIA_ERR_FORMAT, "tensor %s (%s, %s) has shape %s, expected [%lld, %lld]", p->name, dt,
                         tn, got, (long long)p->rows, (long long)icols);
    }
    if (k) { /* q4_k: 16 bytes a super-block, d and dmin first */
        int64_t ns = p->cols / KERN_QK_SUPER, nbytes = ns * KERN_QK_HEAD;
        if (k->dtype != ARIA_DT_U8 || k->ndim != 2 || k->shape[0] != p->rows || k->shape[1] != nbytes) {
            char got[64];
            shape_str(k, got, sizeof got);
            return aria_fail(err, ARIA_ERR_FORMAT,
                             "tensor %s is %s %s, expected U8 [%lld, %lld] (%d bytes per super-block of %d)", kname,
                             aria_dtype_name(k->dtype), got, (long long)p->rows, (long long)nbytes, KERN_QK_HEAD,
                             KERN_QK_SUPER);
        }
        const uint8_t *b = k->data;
        for (size_t i = 0; i < (size_t)(p->rows * ns); i++)
            for (int h = 0; h < 2; h++) {
                uint16_t v;
                memcpy(&v, b + i * KERN_QK_HEAD + 2 * h, 2);
                if ((v & 0x7c00) == 0x7c00)
                    return aria_fail(err, ARIA_ERR_FORMAT, "tensor %s: %s of row %lld, super-block %lld is not finite",
                                     kname, h ? "dmin" : "d", (long long)(i / (size_t)ns), (long long)(i % (size_t)ns));
            }
        *scales = k;
        return ARIA_OK;
    }
    int64_t nb = p->cols / KERN_QBLOCK;
    if (!s)
        return aria_fail(err, ARIA_ERR_FORMAT, "tensor %s is %s but %s (its scales, F16 [%lld, %lld]) is missing",
                         p->name, dt, sname, (long long)p->rows, (long long)nb);
    if (s->dtype != ARIA_DT_F16 || s->ndim != 2 || s->shape[0] != p->rows || s->shape[1] != nb) {
        char got[64];
        shape_str(s, got, sizeof got);
        return aria_fail(err, ARIA_ERR_FORMAT, "tensor %s is %s %s, expected F16 [%lld, %lld] (one scale per block of %d)",
                         sname, aria_dtype_name(s->dtype), got, (long long)p->rows, (long long)nb, KERN_QBLOCK);
    }
    const uint8_t *b = s->data;
    for (size_t i = 0; i < (size_t)(p->rows * nb); i++) {
        uint16_t h;
        memcpy(&h, b + 2 * i, 2);
        if ((h & 0x7c00) == 0x7c00)
            return aria_fail(err, ARIA_ERR_FORMAT, "tensor %s: the scale of row %lld, block %lld is not finite", sname,
                             (long long)(i / (size_t)nb), (long long)(i % (size_t)nb));
    }
    *scales = s;
    return ARIA_OK;
}

/* The file's tensor for p, with p's shape (quantized matrices: their
   integers, *scales their scales; else *scales is NULL). */
static int find_tensor(const aria_model *m, const model_param *p, const aria_tensor **out, const aria_tensor **scales,
                       aria_error *err) {
    const aria_tensor *t = aria_st_find(&m->st, p->name);
    char want[64];
    *scales = NULL;
    if (p->cols)
        snprintf(want, sizeof want, "[%lld, %lld]", (long long)p->rows, (long long)p->cols);
    else
        snprintf(want, sizeof want, "[%lld]", (long long)p->rows);
    if (!t) return aria_fail(err, ARIA_ERR_FORMAT, "tensor %s is missing (expected shape %s)", p->name, want);
    if (t->dtype == ARIA_DT_I8 || t->dtype == ARIA_DT_U8) {
        int rc = find_quantized(m, p, t, scales, err);
        if (!rc) *out = t;
        return rc;
    }
    int ok = p->cols ? t->ndim == 2 && t->shape[0] == p->rows && t->shape[1] == p->cols
                     : t->ndim == 1 && t->shape[0] == p->rows;
    if (!ok) {
        char got[64];
        shape_str(t, got, sizeof got);
        return aria_fail(err, ARIA_ERR_FORMAT, "tensor %s has shape %s, expected %s", p->name, got, want);
    }
    *out = t;
    return ARIA_OK;
}

/* A float32 copy (or view) of any tensor. */
static const float *tensor_f32(aria_model *m, const aria_tensor *t) {
    size_t n = t->nbytes / (t->dtype == ARIA_DT_F32 ? 4 : 2);
    if (t->dtype == ARIA_DT_F32 && ((uintptr_t)t->data & 3) == 0) return t->data;
    float *f = own(m, malloc((n ? n : 1) * sizeof *f));
    if (!f) return NULL;
    const uint8_t *p = t->data;
    for (size_t i = 0; i < n; i++) {
        if (t->dtype == ARIA_DT_F32) {
            memcpy(&f[i], p + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            f[i] = t->dtype == ARIA_DT_BF16 ? aria_bf16_to_f32(h) : aria_f16_to_f32(h);
        }
    }
    return f;
}

/* Points p at its tensor: a matrix in place when float32 or (kept)
   bfloat16 and aligned, otherwise a float32 copy. */
static int bind_tensor(aria_model *m, const model_param *p, const aria_tensor *t, const aria_tensor *scales) {
    if (!p->mat) {
        *p->vec = tensor_f32(m, t);
        return *p->vec ? 0 : -1;
    }
    kern_mat *km = p->mat;
    km->rows = (int)p->rows;
    km->cols = (int)p->cols;
    if (scales) { /* quantized: integers in place, scales too when aligned */
        km->dtype = scales->dtype == ARIA_DT_U8 ? ARIA_DT_Q4_K : t->dtype == ARIA_DT_U8 ? ARIA_DT_Q4_0 : ARIA_DT_Q8_0;
        km->data = t->data;
        km->scales = scales->data;
        if ((uintptr_t)scales->data & 1) {
            uint16_t *c = own(m, malloc(scales->nbytes + 2));
            if (!c) return -1;
            memcpy(c, scales->data, scales->nbytes);
            km->scales = c;
        }
        return 0;
    }
    if (p->spec->keeps_bf16 && t->dtype == ARIA_DT_BF16 && ((uintptr_t)t->data & 1) == 0) {
        km->dtype = ARIA_DT_BF16;
        km->data = t->data;
        return 0;
    }
    km->dtype = ARIA_DT_F32;
    km->data = tensor_f32(m, t);
    return km->data ? 0 : -1;
}

/* Which heads the file carries, and the sizes the config leaves open
   that their tensors give (emb_size, class_size, the adapter's input). */
static void find_heads(aria_model *m) {
    size_t n;
    const param_spec *tab = model_param_table(&n);
    for (size_t i = 0; i < n; i++) {
        const aria_tensor *t = tab[i].head ? aria_st_find(&m->st, tab[i].name) : NULL;
        if (!t) continue;
        m->heads |= tab[i].head;
        param_dim dims[2] = {tab[i].rows, tab[i].cols};
        for (int k = 0; k < 2; k++) {
            int *open = model_open_dim(m, dims[k]);
            if (open && *open == 0 && t->ndim == 2) *open = (int)t->shape[k];
        }
    }
}

static int load_weights(aria_model *m, aria_error *err) {
    find_heads(m);
    int rc = model_params_build(m, err);
    for (size_t i = 0; i < m->n_params && !rc; i++) {
        const aria_tensor *t = NULL, *scales = NULL;
        rc = find_tensor(m, &m->params[i], &t, &scales, err);
        if (!rc && bind_tensor(m, &m->params[i], t, scales)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    return rc;
}

/* Config from the file's metadata, else from config.json beside it. */
static int resolve_config(aria_model *m, const char *path, aria_error *err) {
    const char *keys[] = {"aria_config", "aria_tiny_config", "config"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *js = aria_st_meta(&m->st, keys[i]);
        if (js) {
            aria_error inner = {{0}};
            int rc = aria_config_parse(&m->cfg, js, strlen(js), &inner);
            if (rc) return aria_fail(err, rc, "metadata %s: %s", keys[i], inner.msg);
            return ARIA_OK;
        }
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(dir, sizeof dir, "%.*s/config.json", (int)(slash - path), path);
    else
        snprintf(dir, sizeof dir, "config.json");
    FILE *f = fopen(dir, "rb");
    if (!f)
        return aria_fail(err, ARIA_ERR_ARG,
                         "no model config: the file has none in its metadata and there is no %s; "
                         "pass --config (e.g. configs/medium.json)", dir);
    fclose(f);
    aria_error inner = {{0}};
    int rc = aria_config_read(&m->cfg, dir, &inner);
    if (rc) return aria_fail(err, rc, "%s: %s", dir, inner.msg);
    return ARIA_OK;
}

static int finish_model(aria_model *m, aria_error *err) {
    int hd = m->cfg.d_model / m->cfg.n_heads;
    m->rope = kern_rope_table(m->cfg.max_seq_len, hd, MODEL_ROPE_BASE);
    if (!m->rope) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    int rc = aria_ctx_new(&m->own_ctx, NULL, err);
    m->ctx = m->own_ctx;
    return rc;
}

int aria_model_load(aria_model **out, const char *path, const aria_model_config *cfg, aria_error *err) {
    *out = NULL;
    aria_model *m = calloc(1, sizeof *m);
    if (!m) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    /* read into huge pages rather than mapped (decoding streams it all) */
    int rc = aria_st_open_resident(&m->st, path, err);
    if (rc) {
        free(m);
        return rc;
    }
    m->has_st = 1;
    if (cfg)
        m->cfg = *cfg;
    else
        rc = resolve_config(m, path, err);
    if (!rc) rc = aria_config_check(&m->cfg, err);
    if (!rc) rc = load_weights(m, err);
    if (!rc) rc = finish_model(m, err);
    if (rc) {
        aria_model_free(m);
        return rc;
    }
    *out = m;
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* Random model                                                           */
/* ---------------------------------------------------------------------- */

static void random_normal(float *p, size_t n, float std, aria_rng *r) {
    for (size_t i = 0; i < n; i += 2) { /* Box-Muller, two values per draw */
        double u1 = 1.0 - aria_rng_random(r), u2 = aria_rng_random(r);
        double rad = sqrt(-2.0 * log(u1));
        p[i] = (float)(rad * cos(2 * M_PI * u2)) * std;
        if (i + 1 < n) p[i + 1] = (float)(rad * sin(2 * M_PI * u2)) * std;
    }
}

/* Every weight straight into the float32 arena, by role, drawing in
   table order (a seed gives the same model as it always has). */
static int random_weights(aria_model *m, uint64_t seed, aria_error *err) {
    int rc = model_params_build(m, err);
    if (rc) return rc;
    m->arena = malloc((m->arena_n ? m->arena_n : 1) * sizeof *m->arena);
    if (!m->arena) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    aria_rng r;
    aria_rng_seed(&r, seed);
    for (size_t i = 0; i < m->n_params; i++) {
        model_param *p = &m->params[i];
        float *dst = m->arena + p->off;
        switch (p->spec->role) {
        case PARAM_NORM_WEIGHT:
        case PARAM_NORM_BIAS: {
            float v = p->spec->role == PARAM_NORM_WEIGHT ? 1.0f : 0.0f;
            for (size_t k = 0; k < p->n; k++) dst[k] = v;
            break;
        }
        case PARAM_EMBEDDING:
        case PARAM_MATRIX:
        case PARAM_HEAD: random_normal(dst, p->n, 0.02f, &r); break;
        }
        if (p->mat)
            *p->mat = (kern_mat){.dtype = ARIA_DT_F32, .data = dst, .rows = (int)p->rows, .cols = (int)p->cols};
        else
            *p->vec = dst;
    }
    return ARIA_OK;
}

int aria_model_new_random(aria_model **out, const aria_model_config *cfg, int heads, uint64_t seed,
                          aria_error *err) {
    *out = NULL;
    int rc = aria_config_check(cfg, err);
    if (rc) return rc;
    if ((heads & ARIA_HEAD_EMB) && cfg->emb_size <= 0)
        return aria_fail(err, ARIA_ERR_ARG, "an embedding head needs emb_size in the config");
    if ((heads & ARIA_HEAD_CLS) && cfg->class_size <= 0)
        return aria_fail(err, ARIA_ERR_ARG, "a classifier head needs class_size in the config");
    if ((heads & ARIA_HEAD_ADAPTER) && cfg->emb_size <= 0)
        return aria_fail(err, ARIA_ERR_ARG, "an embedding adapter needs emb_size in the config");
    aria_model *m = calloc(1, sizeof *m);
    if (!m) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    m->cfg = *cfg;
    m->heads = heads;
    m->adapter_in = cfg->emb_size; /* it maps an embedding into the model */
    rc = random_weights(m, seed, err);
    if (!rc) rc = finish_model(m, err);
    if (rc) {
        aria_model_free(m);
        return rc;
    }
    *out = m;
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* Saving                                                                 */
/* ---------------------------------------------------------------------- */

/* One tensor's bytes in the file's dtype (float32 or bfloat16), from any
   source (quantized matrices dequantized). */
static void *save_bytes(const model_param *p, aria_dtype dtype) {
    void *buf = malloc(p->n * (dtype == ARIA_DT_F32 ? 4 : 2) + 1);
    float *row = p->mat ? malloc(((size_t)p->mat->cols + 1) * sizeof *row) : NULL;
    if (!buf || (p->mat && !row)) {
        free(buf);
        free(row);
        return NULL;
    }
    for (size_t i = 0; i < p->n; i++) {
        float f;
        if (p->mat) {
            size_t c = i % (size_t)p->mat->cols;
            if (c == 0) kern_row_f32(p->mat, (int)(i / (size_t)p->mat->cols), row);
            f = row[c];
        } else {
            f = (*p->vec)[i];
        }
        if (dtype == ARIA_DT_F32) {
            memcpy((uint8_t *)buf + 4 * i, &f, 4);
        } else {
            uint16_t h = aria_f32_to_bf16(f);
            memcpy((uint8_t *)buf + 2 * i, &h, 2);
        }
    }
    free(row);
    return buf;
}

int aria_model_save(const aria_model *m, const char *path, aria_dtype dtype, aria_error *err) {
    if (dtype != ARIA_DT_F32 && dtype != ARIA_DT_BF16)
        return aria_fail(err, ARIA_ERR_ARG, "models are saved as float32 or bfloat16");
    aria_tensor *t = calloc(m->n_params ? m->n_params : 1, sizeof *t);
    int rc = t ? ARIA_OK : aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_params && !rc; i++) {
        const model_param *p = &m->params[i];
        t[i] = (aria_tensor){.name = p->name, .dtype = dtype, .ndim = p->cols ? 2 : 1,
                             .shape = {p->rows, p->cols}, .nbytes = p->n * (dtype == ARIA_DT_F32 ? 4 : 2)};
        t[i].data = save_bytes(p, dtype);
        if (!t[i].data) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    if (!rc) {
        char cfg[512];
        aria_config_to_json(&m->cfg, cfg, sizeof cfg);
        const char *keys[] = {"format", "aria_config"}, *vals[] = {"pt", cfg};
        rc = aria_st_write(path, t, m->n_params, keys, vals, 2, err);
    }
    for (size_t i = 0; t && i < m->n_params; i++) free((void *)t[i].data);
    free(t);
    return rc;
}
