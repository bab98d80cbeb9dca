/*
 * model.c - the Aria transformer: weights, KV-cache sessions and the
 * forward pass (spec/aria.md section 2).
 *
 *   h = tok_embeddings[ids]
 *   per layer: h += proj(attn(rope(LN1(h) Wqkv)));  h += down(silu(gate(LN2(h))) * up(LN2(h)))
 *   out = LN_out(h) -> lm_head | emb_head | class_head
 *
 * Weights come from a safetensors file: float32 tensors are used where
 * they lie in the read-only mapping, bfloat16 matrices stay bfloat16 (the
 * matrix product widens them), anything else is converted to float32 once.
 * A session owns the KV cache ([layer][row][head][position][head_dim]) and
 * the activation buffers; long inputs go through in blocks of BLOCK
 * positions so activations stay small.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/json.h"
#include "kernels/kernels.h"
#include "model/model_internal.h"
#include "base/util.h"

#define BLOCK 256
#define NORM_EPS 1e-5f
#define ROPE_BASE 500000.0

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
    for (int l = 0; m->layers && l < m->cfg.n_layers; l++) {
        layer_w *L = &m->layers[l];
        kern_mat *mats[] = {&L->qkv, &L->proj, &L->gate, &L->up, &L->down};
        for (size_t i = 0; i < sizeof mats / sizeof *mats; i++) kern_mat_release(mats[i]);
    }
    kern_mat *heads[] = {&m->tok_emb, &m->lm_head, &m->emb_head, &m->class_head, &m->adapter};
    for (size_t i = 0; i < sizeof heads / sizeof *heads; i++) kern_mat_release(heads[i]);
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->rope);
    if (m->has_st) aria_st_close(&m->st);
    aria_pool_free(m->pool);
    free(m);
}

const aria_model_config *aria_model_get_config(const aria_model *m) { return &m->cfg; }
int aria_model_heads(const aria_model *m) { return m->heads; }

void aria_model_set_threads(aria_model *m, int n) {
    aria_pool *p = aria_pool_new(n);
    if (!p) return;
    aria_pool_free(m->pool);
    m->pool = p;
}

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

static int shape_is(const aria_tensor *t, int64_t a, int64_t b) {
    if (b == 0) return t->ndim == 1 && t->shape[0] == a;
    return t->ndim == 2 && t->shape[0] == a && t->shape[1] == b;
}

static void shape_str(const aria_tensor *t, char *buf, size_t cap) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* The tensor `name` with shape [a] (b == 0) or [a, b]. */
static int find_tensor(aria_model *m, const char *name, int64_t a, int64_t b, const aria_tensor **out,
                       aria_error *err) {
    const aria_tensor *t = aria_st_find(&m->st, name);
    char want[64];
    if (b)
        snprintf(want, sizeof want, "[%lld, %lld]", (long long)a, (long long)b);
    else
        snprintf(want, sizeof want, "[%lld]", (long long)a);
    if (!t) return aria_fail(err, ARIA_ERR_FORMAT, "tensor %s is missing (expected shape %s)", name, want);
    if (!shape_is(t, a, b)) {
        char got[64];
        shape_str(t, got, sizeof got);
        return aria_fail(err, ARIA_ERR_FORMAT, "tensor %s has shape %s, expected %s", name, got, want);
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

/* A matrix for the kernels: float32 or bfloat16 in place when aligned,
   otherwise a float32 copy. */
static int tensor_mat(aria_model *m, const aria_tensor *t, kern_mat *km) {
    km->rows = (int)t->shape[0];
    km->cols = (int)t->shape[1];
    if (t->dtype == ARIA_DT_BF16 && ((uintptr_t)t->data & 1) == 0) {
        km->dtype = ARIA_DT_BF16;
        km->data = t->data;
        return 0;
    }
    km->dtype = ARIA_DT_F32;
    km->data = tensor_f32(m, t);
    return km->data ? 0 : -1;
}

static int load_mat(aria_model *m, const char *name, int64_t a, int64_t b, kern_mat *km, aria_error *err) {
    const aria_tensor *t;
    int rc = find_tensor(m, name, a, b, &t, err);
    if (rc) return rc;
    return tensor_mat(m, t, km) ? aria_fail(err, ARIA_ERR_NOMEM, "out of memory") : ARIA_OK;
}

static int load_vec(aria_model *m, const char *name, int64_t a, const float **v, aria_error *err) {
    const aria_tensor *t;
    int rc = find_tensor(m, name, a, 0, &t, err);
    if (rc) return rc;
    *v = tensor_f32(m, t);
    return *v ? ARIA_OK : aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
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

static int load_weights(aria_model *m, aria_error *err) {
    const aria_model_config *c = &m->cfg;
    int64_t d = c->d_model, ff = (int64_t)c->ff_mult * d, V = c->vocab_size;
    int rc = load_mat(m, "model.tok_embeddings.weight", V, d, &m->tok_emb, err);
    if (!rc) rc = load_vec(m, "model.out_layer_norm.weight", d, &m->out_w, err);
    if (!rc) rc = load_vec(m, "model.out_layer_norm.bias", d, &m->out_b, err);
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (int l = 0; l < c->n_layers && !rc; l++) {
        char n[128];
        layer_w *L = &m->layers[l];
#define NAME(s) (snprintf(n, sizeof n, "model.encode_layers.%d." s, l), n)
        rc = load_mat(m, NAME("mixed_qkv.weight"), 3 * d, d, &L->qkv, err);
        if (!rc) rc = load_mat(m, NAME("att_proj_linear.weight"), d, d, &L->proj, err);
        if (!rc) rc = load_mat(m, NAME("ff_gate_proj.weight"), ff, d, &L->gate, err);
        if (!rc) rc = load_mat(m, NAME("ff_up_proj.weight"), ff, d, &L->up, err);
        if (!rc) rc = load_mat(m, NAME("ff_down_proj.weight"), d, ff, &L->down, err);
        if (!rc) rc = load_vec(m, NAME("norm1.weight"), d, &L->n1w, err);
        if (!rc) rc = load_vec(m, NAME("norm1.bias"), d, &L->n1b, err);
        if (!rc) rc = load_vec(m, NAME("norm2.weight"), d, &L->n2w, err);
        if (!rc) rc = load_vec(m, NAME("norm2.bias"), d, &L->n2b, err);
#undef NAME
    }
    if (rc) return rc;

    /* heads: present or not; their sizes may come from the tensors */
    const aria_tensor *t;
    if ((t = aria_st_find(&m->st, "lm_head.weight"))) {
        rc = load_mat(m, "lm_head.weight", V, d, &m->lm_head, err);
        m->heads |= ARIA_HEAD_LM;
    }
    if (!rc && (t = aria_st_find(&m->st, "emb_head.weight"))) {
        if (!m->cfg.emb_size && t->ndim == 2) m->cfg.emb_size = (int)t->shape[0];
        rc = load_mat(m, "emb_head.weight", m->cfg.emb_size, d, &m->emb_head, err);
        m->heads |= ARIA_HEAD_EMB;
    }
    if (!rc && (t = aria_st_find(&m->st, "class_head.weight"))) {
        if (!m->cfg.class_size && t->ndim == 2) m->cfg.class_size = (int)t->shape[0];
        rc = load_mat(m, "class_head.weight", m->cfg.class_size, d, &m->class_head, err);
        m->heads |= ARIA_HEAD_CLS;
    }
    if (!rc && (t = aria_st_find(&m->st, "embedding_adapter.weight"))) {
        int64_t e = t->ndim == 2 ? t->shape[1] : 0;
        rc = load_mat(m, "embedding_adapter.weight", d, e, &m->adapter, err);
        m->heads |= ARIA_HEAD_ADAPTER;
    }
    return rc;
}

static int finish_model(aria_model *m, aria_error *err) {
    int hd = m->cfg.d_model / m->cfg.n_heads;
    m->rope = kern_rope_table(m->cfg.max_seq_len, hd, ROPE_BASE);
    m->pool = aria_pool_new(0);
    if (!m->rope || !m->pool) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    return ARIA_OK;
}

int aria_model_load(aria_model **out, const char *path, const aria_model_config *cfg, aria_error *err) {
    *out = NULL;
    aria_model *m = calloc(1, sizeof *m);
    if (!m) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    int rc = aria_st_open(&m->st, path, err);
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
/* Random model and saving                                                */
/* ---------------------------------------------------------------------- */

static float *random_normal(aria_model *m, size_t n, float std, aria_rng *r) {
    float *p = own(m, malloc(n * sizeof *p));
    if (!p) return NULL;
    for (size_t i = 0; i < n; i += 2) { /* Box-Muller, two values per draw */
        double u1 = 1.0 - aria_rng_random(r), u2 = aria_rng_random(r);
        double rad = sqrt(-2.0 * log(u1));
        p[i] = (float)(rad * cos(2 * M_PI * u2)) * std;
        if (i + 1 < n) p[i + 1] = (float)(rad * sin(2 * M_PI * u2)) * std;
    }
    return p;
}

static float *filled(aria_model *m, size_t n, float v) {
    float *p = own(m, malloc(n * sizeof *p));
    if (p)
        for (size_t i = 0; i < n; i++) p[i] = v;
    return p;
}

static int random_mat(aria_model *m, kern_mat *km, int rows, int cols, aria_rng *r) {
    km->dtype = ARIA_DT_F32;
    km->rows = rows;
    km->cols = cols;
    km->data = random_normal(m, (size_t)rows * cols, 0.02f, r);
    return km->data ? 0 : -1;
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
    aria_model *m = calloc(1, sizeof *m);
    if (!m) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    m->cfg = *cfg;
    m->heads = heads;
    aria_rng r;
    aria_rng_seed(&r, seed);
    int d = cfg->d_model, ff = cfg->ff_mult * d, fail = 0;
    fail |= random_mat(m, &m->tok_emb, cfg->vocab_size, d, &r);
    m->out_w = filled(m, (size_t)d, 1.0f);
    m->out_b = filled(m, (size_t)d, 0.0f);
    fail |= !m->out_w || !m->out_b;
    m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
    fail |= !m->layers;
    for (int l = 0; l < cfg->n_layers && !fail; l++) {
        layer_w *L = &m->layers[l];
        fail |= random_mat(m, &L->qkv, 3 * d, d, &r) | random_mat(m, &L->proj, d, d, &r) |
                random_mat(m, &L->gate, ff, d, &r) | random_mat(m, &L->up, ff, d, &r) |
                random_mat(m, &L->down, d, ff, &r);
        L->n1w = filled(m, (size_t)d, 1.0f);
        L->n1b = filled(m, (size_t)d, 0.0f);
        L->n2w = filled(m, (size_t)d, 1.0f);
        L->n2b = filled(m, (size_t)d, 0.0f);
        fail |= !L->n1w || !L->n1b || !L->n2w || !L->n2b;
    }
    if (!fail && (heads & ARIA_HEAD_LM)) fail |= random_mat(m, &m->lm_head, cfg->vocab_size, d, &r);
    if (!fail && (heads & ARIA_HEAD_EMB)) fail |= random_mat(m, &m->emb_head, cfg->emb_size, d, &r);
    if (!fail && (heads & ARIA_HEAD_CLS)) fail |= random_mat(m, &m->class_head, cfg->class_size, d, &r);
    if (fail) {
        aria_model_free(m);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    rc = finish_model(m, err);
    if (rc) {
        aria_model_free(m);
        return rc;
    }
    *out = m;
    return ARIA_OK;
}

/* One tensor to save: its bytes in the requested dtype (a converted copy
   when needed, recorded in `tmp` for freeing). */
typedef struct {
    aria_tensor *t;
    size_t n, cap;
    void **tmp;
    size_t n_tmp, cap_tmp;
    aria_dtype dtype;
    int oom;
} save_list;

static void save_add(save_list *s, const char *name, aria_dtype src_dtype, const void *data, int64_t a,
                     int64_t b) {
    if (s->oom) return;
    size_t count = (size_t)a * (size_t)(b ? b : 1);
    size_t esz = s->dtype == ARIA_DT_F32 ? 4 : 2;
    void *buf = malloc(count * esz + 1);
    char *nm = strdup(name);
    if (!buf || !nm || ARIA_GROW(s->t, s->cap, s->n + 1) || ARIA_GROW(s->tmp, s->cap_tmp, s->n_tmp + 2)) {
        free(buf);
        free(nm);
        s->oom = 1;
        return;
    }
    for (size_t i = 0; i < count; i++) {
        float f;
        if (src_dtype == ARIA_DT_BF16) {
            uint16_t h;
            memcpy(&h, (const uint8_t *)data + 2 * i, 2);
            f = aria_bf16_to_f32(h);
        } else {
            memcpy(&f, (const uint8_t *)data + 4 * i, 4);
        }
        if (s->dtype == ARIA_DT_F32) {
            memcpy((uint8_t *)buf + 4 * i, &f, 4);
        } else {
            uint16_t h = aria_f32_to_bf16(f);
            memcpy((uint8_t *)buf + 2 * i, &h, 2);
        }
    }
    s->tmp[s->n_tmp++] = buf;
    s->tmp[s->n_tmp++] = nm;
    aria_tensor *t = &s->t[s->n++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->dtype = s->dtype;
    t->ndim = b ? 2 : 1;
    t->shape[0] = a;
    t->shape[1] = b;
    t->data = buf;
    t->nbytes = count * esz;
}

static void save_mat(save_list *s, const char *name, const kern_mat *km) {
    save_add(s, name, km->dtype, km->data, km->rows, km->cols);
}

int aria_model_save(const aria_model *m, const char *path, aria_dtype dtype, aria_error *err) {
    if (dtype != ARIA_DT_F32 && dtype != ARIA_DT_BF16)
        return aria_fail(err, ARIA_ERR_ARG, "models are saved as float32 or bfloat16");
    save_list s = {.dtype = dtype};
    int d = m->cfg.d_model;
    save_mat(&s, "model.tok_embeddings.weight", &m->tok_emb);
    save_add(&s, "model.out_layer_norm.weight", ARIA_DT_F32, m->out_w, d, 0);
    save_add(&s, "model.out_layer_norm.bias", ARIA_DT_F32, m->out_b, d, 0);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const layer_w *L = &m->layers[l];
        char n[128];
#define NAME(x) (snprintf(n, sizeof n, "model.encode_layers.%d." x, l), n)
        save_mat(&s, NAME("mixed_qkv.weight"), &L->qkv);
        save_mat(&s, NAME("att_proj_linear.weight"), &L->proj);
        save_mat(&s, NAME("ff_gate_proj.weight"), &L->gate);
        save_mat(&s, NAME("ff_up_proj.weight"), &L->up);
        save_mat(&s, NAME("ff_down_proj.weight"), &L->down);
        save_add(&s, NAME("norm1.weight"), ARIA_DT_F32, L->n1w, d, 0);
        save_add(&s, NAME("norm1.bias"), ARIA_DT_F32, L->n1b, d, 0);
        save_add(&s, NAME("norm2.weight"), ARIA_DT_F32, L->n2w, d, 0);
        save_add(&s, NAME("norm2.bias"), ARIA_DT_F32, L->n2b, d, 0);
#undef NAME
    }
    if (m->heads & ARIA_HEAD_LM) save_mat(&s, "lm_head.weight", &m->lm_head);
    if (m->heads & ARIA_HEAD_EMB) save_mat(&s, "emb_head.weight", &m->emb_head);
    if (m->heads & ARIA_HEAD_CLS) save_mat(&s, "class_head.weight", &m->class_head);
    if (m->heads & ARIA_HEAD_ADAPTER) save_mat(&s, "embedding_adapter.weight", &m->adapter);
    int rc;
    if (s.oom) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    } else {
        char cfg[512];
        aria_config_to_json(&m->cfg, cfg, sizeof cfg);
        const char *keys[] = {"format", "aria_config"}, *vals[] = {"pt", cfg};
        rc = aria_st_write(path, s.t, s.n, keys, vals, 2, err);
    }
    for (size_t i = 0; i < s.n_tmp; i++) free(s.tmp[i]);
    free(s.tmp);
    free(s.t);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Sessions and the forward pass                                          */
/* ---------------------------------------------------------------------- */

struct aria_session {
    const aria_model *m;
    int B, cap, len;
    float *k, *v;                   /* [L][B][H][cap][hd] */
    float *x, *a, *qkv, *att, *g, *u; /* activations for B * BLOCK tokens */
    float *row;                     /* one d_model row */
};

void aria_session_free(aria_session *s) {
    if (!s) return;
    free(s->k);
    free(s->v);
    free(s->x);
    free(s->a);
    free(s->qkv);
    free(s->att);
    free(s->g);
    free(s->u);
    free(s->row);
    free(s);
}

int aria_session_new(aria_session **out, const aria_model *m, int batch, int max_len, aria_error *err) {
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
    s->k = malloc(kv * sizeof(float));
    s->v = malloc(kv * sizeof(float));
    s->x = malloc(rows * d * sizeof(float));
    s->a = malloc(rows * d * sizeof(float));
    s->qkv = malloc(rows * 3 * d * sizeof(float));
    s->att = malloc(rows * d * sizeof(float));
    s->g = malloc(rows * ff * sizeof(float));
    s->u = malloc(rows * ff * sizeof(float));
    s->row = malloc(d * sizeof(float));
    if (!s->k || !s->v || !s->x || !s->a || !s->qkv || !s->att || !s->g || !s->u || !s->row) {
        aria_session_free(s);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory for a KV cache of %d x %d tokens", batch, max_len);
    }
    *out = s;
    return ARIA_OK;
}

void aria_session_reset(aria_session *s) { s->len = 0; }
int aria_session_len(const aria_session *s) { return s->len; }

/* Copies this block's k and v (after RoPE) into the cache. */
static void cache_store(aria_session *s, int l, int n, int pos0) {
    const aria_model_config *c = &s->m->cfg;
    int d = c->d_model, H = c->n_heads, hd = d / H;
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < n; t++) {
            const float *row = s->qkv + ((size_t)b * n + t) * 3 * d;
            for (int h = 0; h < H; h++) {
                size_t at = ((((size_t)l * s->B + b) * H + h) * s->cap + pos0 + t) * hd;
                memcpy(s->k + at, row + d + h * hd, (size_t)hd * sizeof(float));
                memcpy(s->v + at, row + 2 * d + h * hd, (size_t)hd * sizeof(float));
            }
        }
}

/* One block of n positions per row through all layers; s->x holds the
   result (before the final LayerNorm). */
static void forward_block(aria_session *s, const int32_t *ids, int T, int t0, int n) {
    const aria_model *m = s->m;
    const aria_model_config *c = &m->cfg;
    int d = c->d_model, H = c->n_heads, hd = d / H, ff = c->ff_mult * d, pos0 = s->len;
    int rows = s->B * n;
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < n; t++) {
            int id = ids[(size_t)b * T + t0 + t];
            kern_row_f32(&m->tok_emb, id, s->x + ((size_t)b * n + t) * d);
        }
    for (int l = 0; l < c->n_layers; l++) {
        const layer_w *L = &m->layers[l];
        kern_layernorm_pool(m->pool, s->x, L->n1w, L->n1b, s->a, rows, d, NORM_EPS);
        kern_matmul(m->pool, s->a, rows, &L->qkv, s->qkv, 0);
        for (int b = 0; b < s->B; b++) {
            float *q = s->qkv + (size_t)b * n * 3 * d;
            kern_rope_pool(m->pool, q, n, H, hd, 3 * d, m->rope, pos0);
            kern_rope_pool(m->pool, q + d, n, H, hd, 3 * d, m->rope, pos0);
        }
        cache_store(s, l, n, pos0);
        size_t layer_off = (size_t)l * s->B * H * s->cap * hd;
        kern_attention(m->pool, s->qkv, 3 * d, s->k + layer_off, s->v + layer_off, s->cap, s->B, n, H, hd,
                       pos0, s->att, d);
        kern_matmul(m->pool, s->att, rows, &L->proj, s->x, 1);
        kern_layernorm_pool(m->pool, s->x, L->n2w, L->n2b, s->a, rows, d, NORM_EPS);
        kern_matmul(m->pool, s->a, rows, &L->gate, s->g, 0);
        kern_matmul(m->pool, s->a, rows, &L->up, s->u, 0);
        kern_swiglu_pool(m->pool, s->g, s->u, (size_t)rows * ff);
        kern_matmul(m->pool, s->g, rows, &L->down, s->x, 1);
    }
}

/* Final LayerNorm and head for `rows` rows of x (row stride d). */
static void head_out(aria_session *s, const float *x, int rows, aria_output what, float *out) {
    const aria_model *m = s->m;
    int d = m->cfg.d_model;
    float *h = s->a; /* free after the block */
    kern_layernorm_pool(m->pool, x, m->out_w, m->out_b, h, rows, d, NORM_EPS);
    const kern_mat *W = what == ARIA_OUT_LOGITS ? &m->lm_head
                        : what == ARIA_OUT_EMB  ? &m->emb_head
                        : what == ARIA_OUT_CLS  ? &m->class_head
                                                : NULL;
    if (!W)
        memcpy(out, h, (size_t)rows * d * sizeof *out);
    else
        kern_matmul(m->pool, h, rows, W, out, 0);
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
