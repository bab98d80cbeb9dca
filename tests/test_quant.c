/*
 * test_quant.c - quantized weights end to end: aria_quantize_file's output
 * (tensors, metadata, types), loading it (a q8_0 / q4_0 model computes
 * what the float32 model of its dequantized weights computes), the bad
 * files a loader must refuse with the tensor named, aria_eval_loss against
 * the trainer's loss, and the `aria quantize`, `aria info` and `aria
 * eval-loss` commands.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aria.h"
#include "cli_helpers.h"
#include "model_helpers.h"

static char dir[64];
static void setup(void) { cr_assert(test_dir_make(dir, "quant")); }
static void teardown(void) { test_dir_remove(dir); }
static const char *path(const char *name) { return test_path(dir, name); }

/* A random tiny model with an lm_head saved as `name` in dtype dt. */
static void write_tiny(const char *name, aria_dtype dt) {
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, "tiny"), ARIA_OK);
    aria_model *m;
    aria_error err = {{0}};
    cr_assert_eq(aria_model_new_random(&m, &c, ARIA_HEAD_LM, 11, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_model_save(m, path(name), dt, &err), ARIA_OK, "%s", err.msg);
    aria_model_free(m);
}

static aria_model *load_exact(const char *file, aria_ctx **ctx) { return load_model_on(file, ARIA_PREC_EXACT, ctx); }

static float *logits_of(aria_model *m, const int32_t *ids, int T) { return logits_of_ids(m, ids, T); }

static int32_t *some_ids(int n) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 7919 + 13) % 17727);
    return ids;
}

/* ||a - b|| / ||b|| */
static double rel_l2(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), r += (double)b[i] * b[i];
    return sqrt(d / r);
}

TestSuite(quant, .init = setup, .fini = teardown);

/* The file: integer and scale tensors with the documented dtypes and
   shapes, the scheme in the metadata; the model reads it with each
   matrix in its type and the embedding in bfloat16. */
Test(quant, file_layout_and_types) {
    write_tiny("t.safetensors", ARIA_DT_BF16);
    aria_error err = {{0}};
    static const aria_dtype types[] = {ARIA_DT_Q8_0, ARIA_DT_Q4_0};
    for (int k = 0; k < 2; k++) {
        aria_quantize_opts o = {.type = types[k]};
        const char *out = path(k ? "q4.safetensors" : "q8.safetensors");
        cr_assert_eq(aria_quantize_file(path("t.safetensors"), out, NULL, &o, &err), ARIA_OK, "%s", err.msg);
        aria_safetensors st;
        cr_assert_eq(aria_st_open(&st, out, &err), ARIA_OK, "%s", err.msg);
        cr_expect_str_eq(aria_st_meta(&st, "aria_quant"), aria_dtype_name(types[k]));
        const aria_tensor *q = aria_st_find(&st, "model.encode_layers.1.ff_down_proj.weight");
        const aria_tensor *s = aria_st_find(&st, "model.encode_layers.1.ff_down_proj.weight.scale");
        cr_assert(q && s);
        cr_expect_eq(q->dtype, k ? ARIA_DT_U8 : ARIA_DT_I8);
        cr_expect_eq(q->shape[0], 64);
        cr_expect_eq(q->shape[1], k ? 128 : 256, "down: [64, 256] weights");
        cr_expect_eq(s->dtype, ARIA_DT_F16);
        cr_expect(s->shape[0] == 64 && s->shape[1] == 8, "one scale per 32 weights");
        cr_expect_eq(aria_st_find(&st, "model.tok_embeddings.weight")->dtype, ARIA_DT_BF16);
        cr_expect_null(aria_st_find(&st, "model.tok_embeddings.weight.scale"));
        aria_st_close(&st);

        aria_ctx *ctx;
        aria_model *m = load_exact(out, &ctx);
        size_t nq = 0;
        for (size_t i = 0; i < aria_model_n_tensors(m); i++) {
            aria_tensor t;
            cr_assert_eq(aria_model_tensor(m, i, &t), ARIA_OK);
            if (!strcmp(t.name, "model.tok_embeddings.weight")) cr_expect_eq(t.dtype, ARIA_DT_BF16);
            else if (t.ndim == 2) {
                cr_expect_eq(t.dtype, types[k], "%s is %s", t.name, aria_dtype_name(t.dtype));
                nq++;
            }
            else cr_expect_eq(t.dtype, ARIA_DT_F32);
        }
        cr_expect_eq(nq, 2 * 5 + 1, "every layer matrix and the lm_head");
        aria_tensor t;
        cr_expect_eq(aria_model_tensor(m, aria_model_n_tensors(m), &t), ARIA_ERR_ARG);
        aria_model_free(m);
        aria_ctx_free(ctx);
    }
}

/* A quantized model computes what the float32 model of its dequantized
   weights computes (exact precision: the portable product, float32
   sums), and stays near the original bfloat16 model. */
Test(quant, model_matches_its_dequantized_weights) {
    write_tiny("t.safetensors", ARIA_DT_BF16);
    aria_error err = {{0}};
    int T = 40;
    int32_t *ids = some_ids(T);
    aria_ctx *c0;
    aria_model *orig = load_exact(path("t.safetensors"), &c0);
    float *ref = logits_of(orig, ids, T);
    size_t n = (size_t)T * 17727;
    static const aria_dtype types[] = {ARIA_DT_Q8_0, ARIA_DT_Q4_0};
    static const double near[] = {0.05, 0.3}; /* of the original's logits: measured 0.01 and 0.11 */
    for (int k = 0; k < 2; k++) {
        aria_quantize_opts o = {.type = types[k]};
        cr_assert_eq(aria_quantize_file(path("t.safetensors"), path("q.safetensors"), NULL, &o, &err), ARIA_OK, "%s",
                     err.msg);
        aria_ctx *c1, *c2;
        aria_model *q = load_exact(path("q.safetensors"), &c1);
        cr_assert_eq(aria_model_save(q, path("deq.safetensors"), ARIA_DT_F32, &err), ARIA_OK, "%s", err.msg);
        aria_model *deq = load_exact(path("deq.safetensors"), &c2);
        float *lq = logits_of(q, ids, T), *ld = logits_of(deq, ids, T);
        double e = rel_l2(lq, ld, n), e0 = rel_l2(lq, ref, n);
        cr_expect(e < 1e-5, "%s model vs its dequantized float32 weights: %.3g", aria_dtype_name(types[k]), e);
        cr_expect(e0 < near[k], "%s model vs the original: %.3g", aria_dtype_name(types[k]), e0);
        cr_expect(e0 > 1e-4, "quantizing changed nothing: %.3g", e0);
        cr_log_info("%s: logits vs dequantized %.2g, vs bf16 original %.3g", aria_dtype_name(types[k]), e, e0);
        free(lq), free(ld);
        aria_model_free(q), aria_model_free(deq);
        aria_ctx_free(c1), aria_ctx_free(c2);
    }
    free(ref);
    free(ids);
    aria_model_free(orig);
    aria_ctx_free(c0);
}

/* Fast precision (the VNNI product where the CPU has it) stays within the
   activations' rounding of exact. */
Test(quant, fast_precision_is_close_to_exact) {
    write_tiny("t.safetensors", ARIA_DT_F32);
    aria_error err = {{0}};
    aria_quantize_opts o = {.type = ARIA_DT_Q8_0};
    cr_assert_eq(aria_quantize_file(path("t.safetensors"), path("q.safetensors"), NULL, &o, &err), ARIA_OK, "%s",
                 err.msg);
    int T = 33;
    int32_t *ids = some_ids(T);
    aria_ctx *c0, *c1;
    aria_model *a = load_exact(path("q.safetensors"), &c0);
    aria_model *b = load_exact(path("q.safetensors"), &c1);
    aria_ctx *fast;
    aria_ctx_opts fo = {.threads = 2, .precision = ARIA_PREC_FAST};
    cr_assert_eq(aria_ctx_new(&fast, &fo, &err), ARIA_OK);
    aria_model_set_ctx(b, fast);
    float *la = logits_of(a, ids, T), *lb = logits_of(b, ids, T);
    double e = rel_l2(lb, la, (size_t)T * 17727);
    cr_expect(e < 0.02, "q8_0 fast vs exact: %.3g", e);
    cr_log_info("q8_0 logits, fast (%s) vs exact: %.3g", aria_ctx_describe(fast), e);
    free(la), free(lb), free(ids);
    aria_model_free(a), aria_model_free(b);
    aria_ctx_free(c0), aria_ctx_free(c1), aria_ctx_free(fast);
}

/* An embedding model's emb_head output: q8_0 in the direction of bfloat16
   (issue 10's target on trained models is cosine >= 0.995; a random model
   is measured here). */
Test(quant, embeddings_keep_their_direction) {
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, "tiny"), ARIA_OK);
    aria_model *m;
    aria_error err = {{0}};
    cr_assert_eq(aria_model_new_random(&m, &c, ARIA_HEAD_EMB, 5, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_model_save(m, path("e.safetensors"), ARIA_DT_BF16, &err), ARIA_OK, "%s", err.msg);
    aria_model_free(m);
    aria_quantize_opts o = {.type = ARIA_DT_Q8_0};
    cr_assert_eq(aria_quantize_file(path("e.safetensors"), path("eq.safetensors"), NULL, &o, &err), ARIA_OK, "%s",
                 err.msg);
    aria_ctx *c0, *c1;
    aria_model *a = load_exact(path("e.safetensors"), &c0), *b = load_exact(path("eq.safetensors"), &c1);
    aria_tensor t;
    cr_assert_eq(aria_model_tensor(b, aria_model_n_tensors(b) - 1, &t), ARIA_OK);
    cr_expect_str_eq(t.name, "emb_head.weight");
    cr_expect_eq(t.dtype, ARIA_DT_Q8_0);
    int T = 100, E = aria_output_dim(a, ARIA_OUT_EMB);
    int32_t *ids = some_ids(T);
    float ea[64], eb[64];
    aria_session *s;
    cr_assert_eq(aria_session_new(&s, a, 1, T, &err), ARIA_OK);
    cr_assert_eq(aria_session_forward(s, ids, T, ARIA_OUT_EMB, 0, ea, &err), ARIA_OK, "%s", err.msg);
    aria_session_free(s);
    cr_assert_eq(aria_session_new(&s, b, 1, T, &err), ARIA_OK);
    cr_assert_eq(aria_session_forward(s, ids, T, ARIA_OUT_EMB, 0, eb, &err), ARIA_OK, "%s", err.msg);
    aria_session_free(s);
    double dot = 0, na = 0, nb = 0;
    for (int i = 0; i < E; i++) dot += (double)ea[i] * eb[i], na += (double)ea[i] * ea[i], nb += (double)eb[i] * eb[i];
    double cosv = dot / sqrt(na * nb);
    cr_expect(cosv >= 0.995 && cosv < 1.0, "cosine %.6f", cosv);
    cr_log_info("q8_0 vs bf16 embedding (random tiny model): cosine %.6f", cosv);
    free(ids);
    aria_model_free(a), aria_model_free(b);
    aria_ctx_free(c0), aria_ctx_free(c1);
}

/* ---- files that must be refused ----------------------------------------- */

/* The q8_0 file written again with tensor `name` changed by `edit`
   (dtype, shape, bytes) or dropped (edit returns 0). */
static void rewrite(const char *from, const char *to, const char *name, int (*edit)(aria_tensor *t, uint8_t *copy)) {
    aria_safetensors st;
    aria_error err = {{0}};
    cr_assert_eq(aria_st_open(&st, from, &err), ARIA_OK, "%s", err.msg);
    aria_tensor *t = calloc(st.n_tensors, sizeof *t);
    uint8_t *copy = NULL;
    size_t n = 0;
    for (size_t i = 0; i < st.n_tensors; i++) {
        t[n] = st.tensors[i];
        if (!strcmp(t[n].name, name)) {
            copy = malloc(t[n].nbytes);
            memcpy(copy, t[n].data, t[n].nbytes);
            t[n].data = copy;
            if (!edit(&t[n], copy)) continue;
        }
        n++;
    }
    cr_assert_eq(aria_st_write(to, t, n, (const char *const *)st.meta_keys, (const char *const *)st.meta_values,
                               st.n_meta, &err),
                 ARIA_OK, "%s", err.msg);
    free(copy);
    free(t);
    aria_st_close(&st);
}

static int drop(aria_tensor *t, uint8_t *c) { (void)t, (void)c; return 0; }

/* --type bf16: every matrix rounded to nearest even, vectors kept float32,
   the input's own metadata carried over beside the config. */
Test(quant, bf16_conversion_rounds_and_keeps_metadata) {
    write_tiny("f32.safetensors", ARIA_DT_F32);
    aria_safetensors st;
    aria_error err = {{0}};
    cr_assert_eq(aria_st_open(&st, path("f32.safetensors"), &err), ARIA_OK, "%s", err.msg);
    const char **k = calloc(st.n_meta + 1, sizeof *k), **v = calloc(st.n_meta + 1, sizeof *v);
    for (size_t i = 0; i < st.n_meta; i++) k[i] = st.meta_keys[i], v[i] = st.meta_values[i];
    k[st.n_meta] = "aria_classes", v[st.n_meta] = "[\"a\",\"b\"]";
    cr_assert_eq(aria_st_write(path("meta.safetensors"), st.tensors, st.n_tensors, k, v, st.n_meta + 1, &err),
                 ARIA_OK, "%s", err.msg);
    free(k);
    free(v);
    aria_quantize_opts qo = {.type = ARIA_DT_BF16};
    cr_assert_eq(aria_quantize_file(path("meta.safetensors"), path("bf16.safetensors"), NULL, &qo, &err), ARIA_OK,
                 "%s", err.msg);
    aria_safetensors out;
    cr_assert_eq(aria_st_open(&out, path("bf16.safetensors"), &err), ARIA_OK, "%s", err.msg);
    cr_assert_str_eq(aria_st_meta(&out, "aria_classes"), "[\"a\",\"b\"]");
    cr_assert(aria_st_meta(&out, "aria_config"));
    cr_assert_null(aria_st_meta(&out, "aria_quant"), "a plain conversion is not a quantized file");
    size_t mats = 0, vecs = 0;
    for (size_t i = 0; i < st.n_tensors; i++) {
        const aria_tensor *a = &st.tensors[i], *b = aria_st_find(&out, a->name);
        cr_assert(b, "%s missing after conversion", a->name);
        cr_assert_eq(a->dtype, ARIA_DT_F32);
        size_t n = a->nbytes / 4;
        const float *x = a->data;
        if (a->ndim == 2) {
            cr_assert_eq(b->dtype, ARIA_DT_BF16, "%s", a->name);
            const uint16_t *h = b->data;
            for (size_t j = 0; j < n; j++) cr_assert_eq(h[j], aria_f32_to_bf16(x[j]), "%s[%zu]", a->name, j);
            mats++;
        } else {
            cr_assert_eq(b->dtype, ARIA_DT_F32, "%s", a->name);
            cr_assert_eq(memcmp(a->data, b->data, a->nbytes), 0, "%s", a->name);
            vecs++;
        }
    }
    cr_assert_gt(mats, 0);
    cr_assert_gt(vecs, 0);
    aria_st_close(&out);
    aria_st_close(&st);
}
static int short_scales(aria_tensor *t, uint8_t *c) {
    (void)c;
    t->shape[1] -= 1; /* 7 scales a row for 8 blocks */
    t->nbytes = (size_t)(t->shape[0] * t->shape[1] * 2);
    return 1;
}
static int inf_scale(aria_tensor *t, uint8_t *c) {
    (void)t;
    c[2 * 9] = 0x00, c[2 * 9 + 1] = 0x7c; /* row 1, block 1 */
    return 1;
}
static int wrong_cols(aria_tensor *t, uint8_t *c) {
    (void)c;
    t->dtype = ARIA_DT_U8; /* I8 [64, 256] read as q4_0: wants [64, 128] */
    return 1;
}

static void expect_load_error(const char *file, const char *want) {
    aria_model *m = NULL;
    aria_error err = {{0}};
    cr_expect_eq(aria_model_load(&m, file, NULL, &err), ARIA_ERR_FORMAT, "%s loaded", file);
    cr_expect(strstr(err.msg, want) != NULL, "'%s' does not say '%s'", err.msg, want);
    cr_expect_null(strchr(err.msg, '\n'), "one line");
    aria_model_free(m);
}

Test(quant, bad_quantized_files_are_refused) {
    write_tiny("t.safetensors", ARIA_DT_BF16);
    aria_error err = {{0}};
    aria_quantize_opts o = {.type = ARIA_DT_Q8_0};
    char q8[128];
    snprintf(q8, sizeof q8, "%s", path("q8.safetensors"));
    cr_assert_eq(aria_quantize_file(path("t.safetensors"), q8, NULL, &o, &err), ARIA_OK, "%s", err.msg);
    const char *W = "model.encode_layers.1.ff_down_proj.weight", *S = "model.encode_layers.1.ff_down_proj.weight.scale";
    rewrite(q8, path("bad.safetensors"), S, drop);
    expect_load_error(path("bad.safetensors"), "model.encode_layers.1.ff_down_proj.weight.scale (its scales");
    rewrite(q8, path("bad.safetensors"), S, short_scales);
    expect_load_error(path("bad.safetensors"), "ff_down_proj.weight.scale is F16 [64, 7], expected F16 [64, 8]");
    rewrite(q8, path("bad.safetensors"), S, inf_scale);
    expect_load_error(path("bad.safetensors"), "weight.scale: the scale of row 1, block 1 is not finite");
    rewrite(q8, path("bad.safetensors"), W, wrong_cols);
    expect_load_error(path("bad.safetensors"), "ff_down_proj.weight (U8, q4_0) has shape [64, 256], expected [64, 128]");
    /* quantized twice; an unknown type: nothing written */
    cr_expect_eq(aria_quantize_file(q8, path("twice.safetensors"), NULL, &o, &err), ARIA_ERR_FORMAT);
    cr_expect(strstr(err.msg, "mixed_qkv.weight is already q8_0"), "%s", err.msg);
    aria_quantize_opts bad = {.type = ARIA_DT_U8};
    cr_expect_eq(aria_quantize_file(path("t.safetensors"), path("twice.safetensors"), NULL, &bad, &err), ARIA_ERR_ARG);
    cr_expect_neq(access(path("twice.safetensors"), F_OK), 0, "a refused quantization left a file");
}

/* ---- eval-loss ------------------------------------------------------------ */

/* A dataset of 64-token sequences from an ids file of 8 lines, half of
   them validation. */
static void make_dataset(const char *out) {
    FILE *f = fopen(path("ids.txt"), "w");
    cr_assert(f);
    for (int l = 0; l < 8; l++) {
        int len = 30 + 9 * l; /* some fill a sequence, some are padded */
        for (int i = 0; i < len; i++) fprintf(f, "%d ", 3 + (l * 131 + i * 7919) % 17000);
        fprintf(f, "\n");
    }
    fclose(f);
    aria_dataset_opts o = aria_dataset_defaults();
    o.seq_len = 64;
    o.val_fraction = 0.5;
    o.sep_sequences = 1;
    o.jobs = 1;
    const char *ids[] = {path("ids.txt")};
    aria_dataset_summary sum;
    aria_error err = {{0}};
    cr_assert_eq(aria_dataset_build(out, NULL, 0, ids, 1, &o, &sum, &err), ARIA_OK, "%s", err.msg);
}

Test(quant, eval_loss_is_the_trainers_loss) {
    write_tiny("t.safetensors", ARIA_DT_F32);
    char ds[128];
    snprintf(ds, sizeof ds, "%s", path("ds"));
    make_dataset(ds);
    aria_error err = {{0}};
    aria_ctx *c0, *c1;
    aria_model *m = load_exact(path("t.safetensors"), &c0), *tm = load_exact(path("t.safetensors"), &c1);
    aria_eval_result r;
    cr_assert_eq(aria_eval_loss(m, ds, "val", 0, NULL, NULL, &r, &err), ARIA_OK, "%s", err.msg);
    /* the trainer's mean per sequence, weighted by its targets */
    aria_dataset *d;
    cr_assert_eq(aria_dataset_open(&d, ds, "val", &err), ARIA_OK, "%s", err.msg);
    aria_trainer *t;
    cr_assert_eq(aria_trainer_new(&t, tm, 1, 64, &err), ARIA_OK, "%s", err.msg);
    aria_trainer_set_exact(t, 1);
    double sum = 0;
    uint64_t count = 0;
    int32_t ids[64];
    size_t n = aria_dataset_size(d, 0);
    for (size_t q = 0; q < n; q++) {
        cr_assert_eq(aria_dataset_get(d, 0, q, ids, &err), ARIA_OK);
        float loss;
        cr_assert_eq(aria_trainer_loss(t, ids, &loss, &err), ARIA_OK, "%s", err.msg);
        int k = 0;
        for (int i = 1; i < 64; i++) k += ids[i] != 2;
        sum += (double)loss * k;
        count += (uint64_t)k;
    }
    cr_expect_eq(r.sequences, n);
    cr_expect_eq(r.tokens, count);
    cr_expect(fabs(r.loss - sum / count) < 1e-4 * fabs(r.loss), "eval %.6f vs trainer %.6f", r.loss, sum / count);
    cr_expect(fabs(r.loss - log(17727.0)) < 0.1, "a random model's loss is about ln V: %.4f", r.loss);
    /* --max-seqs 1 */
    aria_eval_result r1;
    cr_assert_eq(aria_eval_loss(m, ds, "val", 1, NULL, NULL, &r1, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(r1.sequences, 1);
    cr_expect_lt(r1.tokens, r.tokens);
    aria_trainer_free(t);
    aria_dataset_close(d);
    aria_model_free(m), aria_model_free(tm);
    aria_ctx_free(c0), aria_ctx_free(c1);
}

/* ---- the commands ----------------------------------------------------------- */

/* `aria ARGS`, its output in files of dir (cli_helpers.h). */
static int run_aria(const char *args) { return run_aria_in(dir, args); }

static char *slurp(const char *name) { return slurp_text(path(name)); }

Test(quant, commands) {
    write_tiny("t.safetensors", ARIA_DT_BF16);
    char a[1024];
    snprintf(a, sizeof a, "quantize --type q8_0 %s -o %s", path("t.safetensors"), path("q8.safetensors"));
    cr_assert_eq(run_aria(a), 0, "%s", slurp("err.txt"));
    cr_expect(strstr(slurp("err.txt"), "wrote"), "%s", slurp("err.txt"));
    /* info lists every tensor's type */
    snprintf(a, sizeof a, "info %s", path("q8.safetensors"));
    cr_assert_eq(run_aria(a), 0, "%s", slurp("err.txt"));
    char *out = slurp("out.txt");
    cr_expect(strstr(out, "model.encode_layers.0.mixed_qkv.weight") && strstr(out, "q8_0  [192, 64]"), "%s", out);
    cr_expect(strstr(out, "lm_head.weight") != NULL);
    cr_expect(strstr(out, "BF16  [17727, 64]") != NULL, "the embedding stays bf16: %s", out);
    /* twice: one line naming the tensor, exit 1, nothing written */
    snprintf(a, sizeof a, "quantize --type q4_0 %s -o %s", path("q8.safetensors"), path("x.safetensors"));
    cr_expect_eq(run_aria(a), 1);
    char *e = slurp("err.txt");
    cr_expect(strstr(e, "q8.safetensors: tensor model.encode_layers.0.mixed_qkv.weight is already q8_0"), "%s", e);
    cr_expect_eq(strchr(e, '\n'), e + strlen(e) - 1, "one line: %s", e);
    cr_expect_neq(access(path("x.safetensors"), F_OK), 0);
    /* usage errors: exit 2 */
    snprintf(a, sizeof a, "quantize --type q3_k %s -o %s", path("t.safetensors"), path("x.safetensors"));
    cr_expect_eq(run_aria(a), 2);
    cr_expect(strstr(slurp("err.txt"), "unknown --type 'q3_k'"), "%s", slurp("err.txt"));
    snprintf(a, sizeof a, "quantize %s -o %s", path("t.safetensors"), path("x.safetensors"));
    cr_expect_eq(run_aria(a), 2);
    cr_expect_neq(access(path("x.safetensors"), F_OK), 0);
    /* every model command reads it */
    FILE *f = fopen(path("ids.txt"), "w");
    fprintf(f, "0 6 100 200 300 400\n");
    fclose(f);
    snprintf(a, sizeof a, "logits --model %s --ids %s -o %s", path("q8.safetensors"), path("ids.txt"),
             path("l.bin"));
    cr_expect_eq(run_aria(a), 0, "%s", slurp("err.txt"));
    struct stat st;
    cr_expect(stat(path("l.bin"), &st) == 0 && st.st_size == 6 * 17727 * 4);
    snprintf(a, sizeof a, "generate --model %s --prompt-ids %s --max-new 8 --seed 1 --out-dir %s --print-ids",
             path("q8.safetensors"), path("ids.txt"), dir);
    cr_expect_eq(run_aria(a), 0, "%s", slurp("err.txt"));
    /* eval-loss */
    make_dataset(path("ds"));
    snprintf(a, sizeof a, "eval-loss --model %s --data %s --split val", path("q8.safetensors"), path("ds"));
    cr_expect_eq(run_aria(a), 0, "%s", slurp("err.txt"));
    out = slurp("out.txt");
    double loss = 0;
    cr_expect(sscanf(out, "val loss %lf", &loss) == 1 && fabs(loss - log(17727.0)) < 0.1, "%s", out);
    snprintf(a, sizeof a, "eval-loss --model %s --data %s/nothing", path("q8.safetensors"), dir);
    cr_expect_eq(run_aria(a), 1);
    snprintf(a, sizeof a, "eval-loss --model %s", path("q8.safetensors"));
    cr_expect_eq(run_aria(a), 2);
}
