/*
 * config.c - the transformer's shape (aria_model_config): built-in
 * presets, reading a JSON config, sanity checks, writing it back as JSON.
 *
 * Two spellings of a config exist in the wild and both are read:
 *   - the reference repository's config/models/<name>.json: d_model,
 *     n_heads, n_layers, ff_mult, max_seq_len (+ drop_p, grad_checkpoint,
 *     emb_size, class_size, resid_dropout, tag_to_id). These files carry no
 *     vocab_size: the reference sets it from the tokenizer at run time
 *     (ModelConfig.set_vocab_size), so a missing vocab_size here means the
 *     AbsTokenizer's 17727.
 *   - the Hugging Face config.json of the released checkpoints:
 *     hidden_size, num_attention_heads, num_hidden_layers,
 *     intermediate_size (the SwiGLU width, so ff_mult = intermediate_size /
 *     hidden_size), max_seq_len or max_position_embeddings, vocab_size,
 *     embedding_size (null for the base model), num_labels.
 * Every field has a table row listing its accepted spellings; a field given
 * under two spellings must agree. Keys that describe nothing this struct
 * holds are ignored, except a few whose value changes the model's math
 * (head size, FFN width, RoPE base, LayerNorm eps): those are checked
 * against what the C model computes, so a config for a different
 * architecture fails loudly instead of running with wrong numbers.
 *
 * Values must be JSON integer literals ("1536", not "1536.0" or "true");
 * every error message names the offending key.
 */
#include "aria.h"

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/util.h"

/* The AbsTokenizer's vocabulary size: the default when a config has none. */
#define CFG_VOCAB 17727
/* The RoPE base and LayerNorm eps the model code uses (spec 2.2). */
#define CFG_ROPE_BASE 500000.0
#define CFG_LN_EPS 1e-5

/* Upper bounds far above any real Aria model; they keep every parameter
   count and byte size below 2^53, so size arithmetic cannot overflow. */
#define CFG_MAX_D_MODEL 65536
#define CFG_MAX_LAYERS 1024
#define CFG_MAX_FF_MULT 64
#define CFG_MAX_SEQ_LEN (1 << 20)
#define CFG_MAX_VOCAB (1 << 24)
#define CFG_MAX_HEAD_OUT 65536 /* emb_size, class_size */

typedef struct {
    const char *name;
    aria_model_config c;
} cfg_preset;

/* "medium" is config/models/medium.json. "medium-emb" is
   config/models/medium-emb.json, which is medium plus emb_size 512 and
   keeps max_seq_len 8192: the reference loads it both for the embedding
   model and for the embedding-conditioned generator (model-demo, which
   needs the full context). The embedding model's 2048-token limit is the
   separate MAX_EMBEDDING_SEQ_LEN of the embedding code (spec 2.4), and the
   Hugging Face config.json of aria-medium-embedding, which says 2048, is
   read as it is by aria_config_parse. max_seq_len sizes only the RoPE
   table, so the weights are the same either way. "small" is the shape
   the training benchmarks use between the two. "tiny" is the shape of
   the golden vectors (../shared/vectors/model/config.json). Every preset
   is a file configs/<name>.json and every file there is a preset (the
   tests hold the two lists equal), so a name a user sees in configs/
   always works as --config NAME. */
static const cfg_preset cfg_presets[] = {
    {"medium", {1536, 24, 16, 4, 8192, CFG_VOCAB, 0, 0}},
    {"medium-emb", {1536, 24, 16, 4, 8192, CFG_VOCAB, 512, 0}},
    {"small", {512, 8, 8, 4, 8192, CFG_VOCAB, 0, 0}},
    {"tiny", {64, 4, 2, 4, 512, CFG_VOCAB, 32, 5}},
};

const char *aria_config_preset_name(int i)
{
    return i >= 0 && (size_t)i < sizeof cfg_presets / sizeof cfg_presets[0] ? cfg_presets[i].name : NULL;
}

int aria_config_preset(aria_model_config *c, const char *name)
{
    if (!c || !name) return ARIA_ERR_ARG;
    for (size_t i = 0; i < sizeof cfg_presets / sizeof cfg_presets[0]; i++) {
        if (strcmp(cfg_presets[i].name, name) == 0) {
            *c = cfg_presets[i].c;
            return ARIA_OK;
        }
    }
    return ARIA_ERR_ARG;
}

/* ---------------------------------------------------------------------- */
/* checks                                                                 */
/* ---------------------------------------------------------------------- */

/* lo <= v <= hi, else an error naming the field and the range. */
static int cfg_range(const char *key, int v, int lo, int hi, aria_error *err)
{
    if (v < lo || v > hi)
        return aria_fail(err, ARIA_ERR_FORMAT, "config: %s is %d; it must be between %d and %d",
                         key, v, lo, hi);
    return ARIA_OK;
}

int aria_config_check(const aria_model_config *c, aria_error *err)
{
    if (!c) return aria_fail(err, ARIA_ERR_ARG, "aria_config_check: NULL config");
    int rc;
    if ((rc = cfg_range("d_model", c->d_model, 1, CFG_MAX_D_MODEL, err)) ||
        (rc = cfg_range("n_heads", c->n_heads, 1, c->d_model, err)) ||
        (rc = cfg_range("n_layers", c->n_layers, 1, CFG_MAX_LAYERS, err)) ||
        (rc = cfg_range("ff_mult", c->ff_mult, 1, CFG_MAX_FF_MULT, err)) ||
        (rc = cfg_range("max_seq_len", c->max_seq_len, 1, CFG_MAX_SEQ_LEN, err)) ||
        (rc = cfg_range("vocab_size", c->vocab_size, 1, CFG_MAX_VOCAB, err)) ||
        (rc = cfg_range("emb_size", c->emb_size, 0, CFG_MAX_HEAD_OUT, err)) ||
        (rc = cfg_range("class_size", c->class_size, 0, CFG_MAX_HEAD_OUT, err)))
        return rc;
    if (c->d_model % c->n_heads != 0)
        return aria_fail(err, ARIA_ERR_FORMAT, "config: n_heads (%d) does not divide d_model (%d)",
                         c->n_heads, c->d_model);
    /* RoPE rotates the two halves of each head against each other */
    if ((c->d_model / c->n_heads) % 2 != 0)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "config: head size d_model / n_heads = %d is odd; RoPE needs an even one",
                         c->d_model / c->n_heads);
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* parsing                                                                */
/* ---------------------------------------------------------------------- */

/* One integer field and the keys that may carry it, reference key first. */
typedef struct {
    size_t offset;        /* into aria_model_config */
    const char *keys[3];  /* NULL-terminated */
    int fallback;         /* value when absent; -1: required */
    int lo, hi;           /* accepted range, checked under the key used */
} cfg_field;

#define CFG_FIELD(f) offsetof(aria_model_config, f)
static const cfg_field cfg_fields[] = {
    {CFG_FIELD(d_model), {"d_model", "hidden_size", NULL}, -1, 1, CFG_MAX_D_MODEL},
    {CFG_FIELD(n_heads), {"n_heads", "num_attention_heads", NULL}, -1, 1, CFG_MAX_D_MODEL},
    {CFG_FIELD(n_layers), {"n_layers", "num_hidden_layers", NULL}, -1, 1, CFG_MAX_LAYERS},
    {CFG_FIELD(max_seq_len), {"max_seq_len", "max_position_embeddings", NULL}, -1, 1,
     CFG_MAX_SEQ_LEN},
    {CFG_FIELD(vocab_size), {"vocab_size", NULL, NULL}, CFG_VOCAB, 1, CFG_MAX_VOCAB},
    {CFG_FIELD(emb_size), {"emb_size", "embedding_size", NULL}, 0, 0, CFG_MAX_HEAD_OUT},
    {CFG_FIELD(class_size), {"class_size", "num_labels", NULL}, 0, 0, CFG_MAX_HEAD_OUT},
};

/* The integer under `key`: 1 when present, 0 when absent or null (HF
   writes "embedding_size": null), negative status on a bad value. */
static int cfg_int(const json_value *root, const char *key, int *out, aria_error *err)
{
    const json_value *v = json_get(root, key);
    if (!v || json_type_of(v) == JSON_NULL) return 0;
    if (json_type_of(v) != JSON_NUMBER || !json_is_int(v))
        return aria_fail(err, ARIA_ERR_FORMAT, "config: key '%s' must be an integer", key);
    int64_t x = json_int(v);
    if (x < INT_MIN || x > INT_MAX)
        return aria_fail(err, ARIA_ERR_FORMAT, "config: key '%s' (%lld) is out of range", key,
                         (long long)x);
    *out = (int)x;
    return 1;
}

/* Reads one field from whichever of its keys are present; they must agree.
   *from gets the key used (for later messages). */
static int cfg_read_field(const json_value *root, const cfg_field *f, int *out, const char **from,
                          aria_error *err)
{
    *from = NULL;
    for (int k = 0; k < 3 && f->keys[k]; k++) {
        int v = 0;
        int rc = cfg_int(root, f->keys[k], &v, err);
        if (rc < 0) return rc;
        if (!rc) continue;
        if (*from && v != *out)
            return aria_fail(err, ARIA_ERR_FORMAT, "config: keys '%s' (%d) and '%s' (%d) disagree",
                             *from, *out, f->keys[k], v);
        *out = v;
        *from = f->keys[k];
    }
    if (*from) return cfg_range(*from, *out, f->lo, f->hi, err);
    if (f->fallback < 0) {
        if (f->keys[1])
            return aria_fail(err, ARIA_ERR_FORMAT, "config: missing key '%s' (or '%s')", f->keys[0],
                             f->keys[1]);
        return aria_fail(err, ARIA_ERR_FORMAT, "config: missing key '%s'", f->keys[0]);
    }
    *out = f->fallback;
    return ARIA_OK;
}

/* ff_mult directly, or from the FFN width (HF intermediate_size, the
   vectors' ff_hidden), which must be a multiple of d_model. */
static int cfg_read_ff(const json_value *root, aria_model_config *c, aria_error *err)
{
    int mult = 0, have_mult = cfg_int(root, "ff_mult", &mult, err);
    if (have_mult < 0) return have_mult;
    static const char *const width_keys[] = {"intermediate_size", "ff_hidden"};
    for (size_t k = 0; k < 2; k++) {
        int width = 0, rc = cfg_int(root, width_keys[k], &width, err);
        if (rc < 0) return rc;
        if (!rc) continue;
        if (width <= 0 || width % c->d_model != 0)
            return aria_fail(err, ARIA_ERR_FORMAT,
                             "config: key '%s' (%d) is not a positive multiple of d_model (%d)",
                             width_keys[k], width, c->d_model);
        if (have_mult && width / c->d_model != mult)
            return aria_fail(err, ARIA_ERR_FORMAT,
                             "config: key '%s' (%d) disagrees with ff_mult %d x d_model %d",
                             width_keys[k], width, mult, c->d_model);
        mult = width / c->d_model;
        have_mult = 1;
    }
    if (have_mult && (mult < 1 || mult > CFG_MAX_FF_MULT))
        return cfg_range("ff_mult", mult, 1, CFG_MAX_FF_MULT, err);
    if (!have_mult)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "config: missing key 'ff_mult' (or 'intermediate_size')");
    c->ff_mult = mult;
    return ARIA_OK;
}

/* A number under `key`, if present, must be `want` (within rel. 1e-9). */
static int cfg_expect_number(const json_value *root, const char *key, double want, aria_error *err)
{
    const json_value *v = json_get(root, key);
    if (!v || json_type_of(v) == JSON_NULL) return ARIA_OK;
    if (json_type_of(v) != JSON_NUMBER)
        return aria_fail(err, ARIA_ERR_FORMAT, "config: key '%s' must be a number", key);
    double x = json_number(v);
    if (!(fabs(x - want) <= 1e-9 * want))
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "config: key '%s' is %g; this implementation supports only %g", key, x,
                         want);
    return ARIA_OK;
}

/* Keys that restate something derived (head size) or fixed in the C model
   (RoPE base, LayerNorm eps): accepted when they match. */
static int cfg_check_extras(const json_value *root, const aria_model_config *c, aria_error *err)
{
    static const char *const head_keys[] = {"d_head", "head_dim"};
    for (size_t k = 0; k < 2; k++) {
        int h = 0, rc = cfg_int(root, head_keys[k], &h, err);
        if (rc < 0) return rc;
        if (rc && (int64_t)h * c->n_heads != c->d_model)
            return aria_fail(err, ARIA_ERR_FORMAT,
                             "config: key '%s' (%d) is not d_model / n_heads (%d / %d)",
                             head_keys[k], h, c->d_model, c->n_heads);
    }
    int rc;
    if ((rc = cfg_expect_number(root, "rope_base", CFG_ROPE_BASE, err)) ||
        (rc = cfg_expect_number(root, "rope_theta", CFG_ROPE_BASE, err)) ||
        (rc = cfg_expect_number(root, "layernorm_eps", CFG_LN_EPS, err)) ||
        (rc = cfg_expect_number(root, "layer_norm_eps", CFG_LN_EPS, err)))
        return rc;
    return ARIA_OK;
}

static int cfg_from_json(aria_model_config *c, const json_value *root, aria_error *err)
{
    if (json_type_of(root) != JSON_OBJECT)
        return aria_fail(err, ARIA_ERR_FORMAT, "config: not a JSON object");
    for (size_t i = 0; i < sizeof cfg_fields / sizeof cfg_fields[0]; i++) {
        const char *from;
        int *dst = (int *)((char *)c + cfg_fields[i].offset);
        int rc = cfg_read_field(root, &cfg_fields[i], dst, &from, err);
        if (rc) return rc;
    }
    /* d_model is now known positive, so it can divide the FFN width */
    int rc = cfg_read_ff(root, c, err);
    if (rc) return rc;
    if ((rc = cfg_check_extras(root, c, err))) return rc;
    return aria_config_check(c, err);
}

int aria_config_parse(aria_model_config *c, const char *json, size_t len, aria_error *err)
{
    if (!c || (!json && len))
        return aria_fail(err, ARIA_ERR_ARG, "aria_config_parse: NULL argument");
    memset(c, 0, sizeof *c);
    json_doc *doc = NULL;
    char msg[400];
    int rc = json_parse(json ? json : "", len, &doc, msg, sizeof msg);
    if (rc) return aria_fail(err, rc, "config: not valid JSON: %s", msg);
    aria_model_config tmp = {0};
    rc = cfg_from_json(&tmp, json_root(doc), err);
    json_doc_free(doc);
    if (rc == ARIA_OK) *c = tmp;
    return rc;
}

int aria_config_read(aria_model_config *c, const char *path, aria_error *err)
{
    if (!c || !path) return aria_fail(err, ARIA_ERR_ARG, "aria_config_read: NULL argument");
    memset(c, 0, sizeof *c);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = aria_read_file(path, &buf, &len, err);
    if (rc) return rc;
    rc = aria_config_parse(c, (const char *)buf, len, err);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* writing                                                                */
/* ---------------------------------------------------------------------- */

/* drop_p and grad_checkpoint are written because the reference's
   ModelConfig requires them (they have no defaults), so the output loads
   there too; emb_size / class_size only when the model has that head, as
   in the reference files. */
int aria_config_to_json(const aria_model_config *c, char *buf, size_t cap)
{
    if (!c || (!buf && cap)) return -1;
    char heads[64] = "";
    int h = 0;
    if (c->emb_size)
        h += snprintf(heads + h, sizeof heads - (size_t)h, ",\"emb_size\":%d", c->emb_size);
    if (c->class_size)
        snprintf(heads + h, sizeof heads - (size_t)h, ",\"class_size\":%d", c->class_size);
    return snprintf(buf, cap,
                    "{\"d_model\":%d,\"n_heads\":%d,\"n_layers\":%d,\"ff_mult\":%d,"
                    "\"drop_p\":0.0,\"max_seq_len\":%d,\"grad_checkpoint\":false,"
                    "\"vocab_size\":%d%s}",
                    c->d_model, c->n_heads, c->n_layers, c->ff_mult, c->max_seq_len, c->vocab_size,
                    heads);
}
