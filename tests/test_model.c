/*
 * test_model.c - the transformer: conformance with the reference PyTorch
 * model on the tiny vectors (../shared/vectors/model, skipped when absent),
 * and properties that need no reference (KV cache = full forward, batch
 * rows independent, save/load round trips, clear errors).
 *
 * Tolerances follow the vectors' README section 7: activations and logits
 * within 2e-6 x max|ref| per tensor, greedy ids exactly.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aria.h"
#include "base/json.h"

#define VEC "../shared/vectors/model"

static int have_vectors(void) { return access(VEC "/tiny_lm_f32.safetensors", R_OK) == 0; }

static float *read_f32(const char *path, size_t *n) {
    uint8_t *buf;
    size_t len;
    aria_error err = {{0}};
    cr_assert_eq(aria_read_file(path, &buf, &len, &err), ARIA_OK, "%s: %s", path, err.msg);
    *n = len / 4;
    return (float *)buf;
}

static int32_t *input_ids(const char *key, const char *sub, size_t *n) {
    json_doc *d;
    char e[256];
    cr_assert_eq(json_parse_file(VEC "/inputs.json", &d, e, sizeof e), ARIA_OK, "%s", e);
    const json_value *v = json_get(json_root(d), key);
    if (sub) v = json_get(v, sub);
    cr_assert(v, "inputs.json has no %s", key);
    *n = json_len(v);
    int32_t *ids = malloc(*n * sizeof *ids);
    for (size_t i = 0; i < *n; i++) ids[i] = (int32_t)json_int(json_at(v, i));
    json_doc_free(d);
    return ids;
}

static void expect_close(const char *what, const float *got, const float *want, size_t n, double rel) {
    double maxref = 0, maxd = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(want[i]) > maxref) maxref = fabs(want[i]);
        double d = fabs((double)got[i] - want[i]);
        if (d > maxd || isnan(d)) maxd = d, at = i;
    }
    cr_expect(maxd <= rel * maxref, "%s: max |diff| %.3g at %zu (max |ref| %.3g, allowed %.3g)", what, maxd, at,
              maxref, rel * maxref);
}

static aria_model *load(const char *file) {
    aria_model *m;
    aria_error err = {{0}};
    cr_assert_eq(aria_model_load(&m, file, NULL, &err), ARIA_OK, "%s: %s", file, err.msg);
    return m;
}

static float *run_all(aria_model *m, const int32_t *ids, size_t n, aria_output what) {
    aria_session *s;
    aria_error err = {{0}};
    cr_assert_eq(aria_session_new(&s, m, 1, (int)n, &err), ARIA_OK, "%s", err.msg);
    int dim = aria_output_dim(m, what);
    float *out = malloc(n * (size_t)dim * sizeof *out);
    cr_assert_eq(aria_session_forward(s, ids, (int)n, what, 1, out, &err), ARIA_OK, "%s", err.msg);
    aria_session_free(s);
    return out;
}

/* ---- conformance with the reference (needs ../shared) ----------------- */

Test(model_ref, logits_and_hidden_f32) {
    if (!have_vectors()) cr_skip("needs " VEC);
    aria_model *m = load(VEC "/tiny_lm_f32.safetensors");
    size_t n, nr;
    int32_t *ids = input_ids("nocturne_200", NULL, &n);
    float *got = run_all(m, ids, n, ARIA_OUT_LOGITS), *ref = read_f32(VEC "/fwd/nocturne/logits.bin", &nr);
    cr_assert_eq(nr, n * 17727);
    expect_close("nocturne logits", got, ref, nr, 2e-6);
    free(got);
    free(ref);
    free(ids);
    ids = input_ids("old_bach_200", NULL, &n);
    got = run_all(m, ids, n, ARIA_OUT_HIDDEN);
    ref = read_f32(VEC "/fwd/old_bach/hidden.bin", &nr);
    cr_assert_eq(nr, n * 64);
    expect_close("old_bach hidden", got, ref, nr, 2e-6);
    free(got);
    free(ref);
    free(ids);
    aria_model_free(m);
}

Test(model_ref, logits_bf16_weights) {
    if (!have_vectors()) cr_skip("needs " VEC);
    aria_model *m = load(VEC "/tiny_lm_bf16.safetensors");
    size_t n, nr;
    int32_t *ids = input_ids("nocturne_200", NULL, &n);
    float *got = run_all(m, ids, n, ARIA_OUT_LOGITS), *ref = read_f32(VEC "/fwd/nocturne_bf16w/logits.bin", &nr);
    expect_close("bf16-weight logits", got, ref, nr, 2e-6);
    free(got);
    free(ref);
    free(ids);
    aria_model_free(m);
}

Test(model_ref, greedy_decode_is_exact) {
    if (!have_vectors()) cr_skip("needs " VEC);
    aria_model *m = load(VEC "/tiny_lm_f32.safetensors");
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    size_t np;
    int32_t *prompt = input_ids("greedy_prompt_50", NULL, &np);
    json_doc *d;
    char e[256];
    cr_assert_eq(json_parse_file(VEC "/greedy/greedy.json", &d, e, sizeof e), ARIA_OK);
    const json_value *want = json_get(json_root(d), "new_ids");
    aria_generate_opts o = {.variations = 1, .max_new = (int)json_len(want), .sample = aria_sample_defaults()};
    o.sample.temperature = 0;
    o.sample.mask_invalid = 0; /* the reference applies no mask */
    int32_t *seq;
    size_t len;
    aria_error err = {{0}};
    cr_assert_eq(aria_generate(m, t, prompt, np, &o, &seq, &len, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(len, np + json_len(want));
    for (size_t i = 0; i < json_len(want); i++)
        cr_expect_eq(seq[np + i], json_int(json_at(want, i)), "step %zu", i);
    free(seq);
    json_doc_free(d);
    free(prompt);
    aria_tokenizer_free(t);
    aria_model_free(m);
}

static void eos_outputs(const char *file, aria_output what, const char *ref_file, int dim) {
    aria_model *m = load(file);
    size_t nr;
    float *ref = read_f32(ref_file, &nr);
    cr_assert_eq(nr, 2 * (size_t)dim);
    const char *keys[] = {"nocturne", "old_bach"};
    for (int r = 0; r < 2; r++) {
        size_t n;
        int32_t *ids = input_ids("eos_seqs", keys[r], &n);
        cr_assert_eq(ids[n - 1], ARIA_SP_EOS);
        aria_session *s;
        aria_error err = {{0}};
        cr_assert_eq(aria_session_new(&s, m, 1, (int)n, &err), ARIA_OK);
        float *out = malloc((size_t)dim * sizeof *out);
        cr_assert_eq(aria_session_forward(s, ids, (int)n, what, 0, out, &err), ARIA_OK, "%s", err.msg);
        expect_close(keys[r], out, ref + r * dim, (size_t)dim, 2e-6);
        free(out);
        aria_session_free(s);
        free(ids);
    }
    free(ref);
    aria_model_free(m);
}

Test(model_ref, embedding_and_classifier_heads) {
    if (!have_vectors()) cr_skip("needs " VEC);
    eos_outputs(VEC "/tiny_emb_f32.safetensors", ARIA_OUT_EMB, VEC "/emb/emb_eos.bin", 32);
    eos_outputs(VEC "/tiny_cls_f32.safetensors", ARIA_OUT_CLS, VEC "/cls/cls_eos.bin", 5);
}

/* ---- properties on a random tiny model (no reference needed) ---------- */

static aria_model *random_tiny(int heads) {
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, "tiny"), ARIA_OK);
    aria_model *m;
    aria_error err = {{0}};
    cr_assert_eq(aria_model_new_random(&m, &c, heads, 7, &err), ARIA_OK, "%s", err.msg);
    return m;
}

static int32_t *some_ids(size_t n) {
    int32_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)((i * 7919 + 13) % 17727);
    return ids;
}

Test(model, kv_cache_matches_full_forward) {
    aria_model *m = random_tiny(ARIA_HEAD_LM);
    size_t n = 300; /* more than one internal block */
    int32_t *ids = some_ids(n);
    float *full = run_all(m, ids, n, ARIA_OUT_LOGITS);
    aria_session *s;
    aria_error err = {{0}};
    cr_assert_eq(aria_session_new(&s, m, 1, (int)n, &err), ARIA_OK);
    float *step = malloc(17727 * sizeof *step);
    /* a prefix at once, then one token at a time */
    cr_assert_eq(aria_session_forward(s, ids, 37, ARIA_OUT_LOGITS, 0, step, &err), ARIA_OK);
    expect_close("prefix last position", step, full + 36 * 17727, 17727, 1e-5);
    for (size_t t = 37; t < n; t += 41) {
        cr_assert_eq(aria_session_forward(s, ids + t, 1, ARIA_OUT_LOGITS, 0, step, &err), ARIA_OK);
        char what[64];
        snprintf(what, sizeof what, "cached step at %zu", t);
        expect_close(what, step, full + t * 17727, 17727, 1e-5);
        if (t + 41 < n) cr_assert_eq(aria_session_forward(s, ids + t + 1, 40, ARIA_OUT_LOGITS, 0, step, &err), ARIA_OK);
    }
    cr_expect_eq(aria_session_forward(s, ids, (int)n, ARIA_OUT_LOGITS, 0, step, &err), ARIA_ERR_ARG,
                 "overfilling the cache is refused");
    free(step);
    aria_session_free(s);
    free(full);
    free(ids);
    aria_model_free(m);
}

/* The logits of a session with cache type kv on context c: a prefix of 37
   at once, then single steps; the last position of each call, in a row. */
static float *cached_logits(aria_model *m, aria_ctx *c, aria_kv_type kv, const int32_t *ids, int n, int *rows) {
    aria_model_set_ctx(m, c);
    aria_session *s;
    aria_error err = {{0}};
    cr_assert_eq(aria_session_new_kv(&s, m, 1, n, kv, &err), ARIA_OK, "%s", err.msg);
    float *out = malloc((size_t)(n - 36) * 17727 * sizeof *out);
    cr_assert_eq(aria_session_forward(s, ids, 37, ARIA_OUT_LOGITS, 0, out, &err), ARIA_OK);
    *rows = 1;
    for (int t = 37; t < n; t++, (*rows)++)
        cr_assert_eq(aria_session_forward(s, ids + t, 1, ARIA_OUT_LOGITS, 0, out + (size_t)*rows * 17727, &err),
                     ARIA_OK);
    aria_session_free(s);
    return out;
}

Test(model, bf16_kv_cache) {
    aria_model *m = random_tiny(ARIA_HEAD_LM);
    int n = 80, rows = 0;
    int32_t *ids = some_ids((size_t)n);
    aria_error err = {{0}};
    aria_ctx *fast, *exact;
    aria_ctx_opts of = {.threads = 2, .precision = ARIA_PREC_FAST}, oe = {.threads = 2, .precision = ARIA_PREC_EXACT};
    cr_assert_eq(aria_ctx_new(&fast, &of, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_ctx_new(&exact, &oe, &err), ARIA_OK, "%s", err.msg);
    size_t cnt = (size_t)(n - 36) * 17727;
    /* fast: the bfloat16 cache moves the logits a little, not much */
    float *f32 = cached_logits(m, fast, ARIA_KV_F32, ids, n, &rows);
    float *h = cached_logits(m, fast, ARIA_KV_BF16, ids, n, &rows);
    cr_assert_eq(rows, n - 36);
    expect_close("fast, bfloat16 cache against float32", h, f32, cnt, 2e-2);
    cr_expect(memcmp(h, f32, cnt * sizeof *h) != 0, "the bfloat16 cache changes the logits, so it is in use");
    free(f32), free(h);
    /* exact: a bfloat16 cache is not taken, to the bit */
    f32 = cached_logits(m, exact, ARIA_KV_F32, ids, n, &rows);
    h = cached_logits(m, exact, ARIA_KV_BF16, ids, n, &rows);
    cr_expect(memcmp(h, f32, cnt * sizeof *h) == 0, "exact precision keeps a float32 cache");
    free(f32), free(h);
    aria_model_set_ctx(m, NULL);
    aria_ctx_free(fast);
    aria_ctx_free(exact);
    free(ids);
    aria_model_free(m);
}

Test(model, batch_rows_are_independent) {
    aria_model *m = random_tiny(ARIA_HEAD_LM);
    size_t n = 20;
    int32_t *a = some_ids(n), *both = malloc(2 * n * sizeof *both);
    memcpy(both, a, n * sizeof *a);
    for (size_t i = 0; i < n; i++) both[n + i] = (int32_t)((a[i] + 101) % 17727);
    aria_session *s;
    aria_error err = {{0}};
    cr_assert_eq(aria_session_new(&s, m, 2, (int)n, &err), ARIA_OK);
    float *out = malloc(2 * 17727 * sizeof *out);
    cr_assert_eq(aria_session_forward(s, both, (int)n, ARIA_OUT_LOGITS, 0, out, &err), ARIA_OK);
    float *alone = run_all(m, a, n, ARIA_OUT_LOGITS);
    expect_close("row 0 of a batch", out, alone + (n - 1) * 17727, 17727, 1e-6);
    free(alone);
    free(out);
    aria_session_free(s);
    free(both);
    free(a);
    aria_model_free(m);
}

Test(model, save_and_load_round_trip) {
    aria_model *m = random_tiny(ARIA_HEAD_LM | ARIA_HEAD_EMB);
    char f32[] = "/tmp/aria_model_f32XXXXXX", bf16[] = "/tmp/aria_model_bf16XXXXXX";
    close(mkstemp(f32));
    close(mkstemp(bf16));
    aria_error err = {{0}};
    cr_assert_eq(aria_model_save(m, f32, ARIA_DT_F32, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_model_save(m, bf16, ARIA_DT_BF16, &err), ARIA_OK, "%s", err.msg);
    aria_model *a = load(f32), *b = load(bf16);
    cr_expect_eq(aria_model_heads(a), ARIA_HEAD_LM | ARIA_HEAD_EMB);
    cr_expect_eq(aria_model_get_config(a)->d_model, 64, "config from the file's metadata");
    size_t n = 30;
    int32_t *ids = some_ids(n);
    float *x = run_all(m, ids, n, ARIA_OUT_LOGITS), *y = run_all(a, ids, n, ARIA_OUT_LOGITS),
          *z = run_all(b, ids, n, ARIA_OUT_LOGITS);
    cr_expect(memcmp(x, y, n * 17727 * sizeof *x) == 0, "float32 save/load changes nothing");
    expect_close("bfloat16 copy", z, x, n * 17727, 0.05);
    free(x);
    free(y);
    free(z);
    free(ids);
    aria_model_free(a);
    aria_model_free(b);
    aria_model_free(m);
    unlink(f32);
    unlink(bf16);
}

/* The embedding adapter is a tensor like any other: saved under its
   official name and shape [d_model, emb_size], loaded back as a head. */
Test(model, embedding_adapter_round_trip) {
    aria_model *m = random_tiny(ARIA_HEAD_LM | ARIA_HEAD_ADAPTER);
    char path[] = "/tmp/aria_model_adapterXXXXXX";
    close(mkstemp(path));
    aria_error err = {{0}};
    cr_assert_eq(aria_model_save(m, path, ARIA_DT_F32, &err), ARIA_OK, "%s", err.msg);
    aria_safetensors st;
    cr_assert_eq(aria_st_open(&st, path, &err), ARIA_OK, "%s", err.msg);
    const aria_tensor *t = aria_st_find(&st, "embedding_adapter.weight");
    cr_assert(t, "no embedding_adapter.weight in the file");
    cr_expect(t->ndim == 2 && t->shape[0] == 64 && t->shape[1] == 32, "adapter shape [%lld, %lld]",
              (long long)t->shape[0], (long long)t->shape[1]);
    aria_st_close(&st);
    aria_model *a = load(path);
    cr_expect_eq(aria_model_heads(a), ARIA_HEAD_LM | ARIA_HEAD_ADAPTER);
    size_t n = 12;
    int32_t *ids = some_ids(n);
    float *x = run_all(m, ids, n, ARIA_OUT_LOGITS), *y = run_all(a, ids, n, ARIA_OUT_LOGITS);
    cr_expect(memcmp(x, y, n * 17727 * sizeof *x) == 0, "float32 save/load changes nothing");
    free(x);
    free(y);
    free(ids);
    aria_model_free(a);
    aria_model_free(m);
    unlink(path);
}

/* A model runs on its own context until the caller lends one; a
   trainer's precision defaults to the context's; set_threads keeps it. */
Test(model, context_lent_and_given_back) {
    aria_model *m = random_tiny(ARIA_HEAD_LM);
    cr_expect_eq(aria_model_precision(m), ARIA_PREC_FAST, "its own context is fast");
    aria_ctx *exact;
    aria_error err = {{0}};
    aria_ctx_opts o = {.threads = 1, .precision = ARIA_PREC_EXACT, .portable = 1};
    cr_assert_eq(aria_ctx_new(&exact, &o, &err), ARIA_OK, "%s", err.msg);
    size_t n = 40;
    int32_t *ids = some_ids(n);
    float *own = run_all(m, ids, n, ARIA_OUT_LOGITS);
    aria_model_set_ctx(m, exact);
    cr_expect_eq(aria_model_precision(m), ARIA_PREC_EXACT);
    float *lent = run_all(m, ids, n, ARIA_OUT_LOGITS);
    expect_close("exact portable vs own context", lent, own, n * 17727, 1e-5);
    aria_trainer *t;
    cr_assert_eq(aria_trainer_new(&t, m, 1, 8, &err), ARIA_OK, "%s", err.msg);
    cr_expect(aria_trainer_is_exact(t), "a trainer takes the context's precision");
    aria_trainer_free(t);
    aria_model_set_threads(m, 1);
    cr_expect_eq(aria_model_precision(m), ARIA_PREC_EXACT, "set_threads keeps the precision");
    aria_model_set_ctx(m, NULL);
    cr_expect_eq(aria_model_precision(m), ARIA_PREC_EXACT, "NULL: the model's own (now 1 thread, exact)");
    float *again = run_all(m, ids, n, ARIA_OUT_LOGITS);
    cr_expect(memcmp(again, lent, n * 17727 * sizeof *again) == 0, "exact: the same bits on either context");
    aria_ctx_free(exact);
    free(own);
    free(lent);
    free(again);
    free(ids);
    aria_model_free(m);
}

Test(model, missing_config_and_tensors_are_named) {
    char path[] = "/tmp/aria_model_badXXXXXX";
    close(mkstemp(path));
    aria_error err = {{0}};
    /* a file with one tensor and no config */
    float w[4] = {1, 2, 3, 4};
    aria_tensor t = {.name = "model.tok_embeddings.weight", .dtype = ARIA_DT_F32, .ndim = 2, .shape = {2, 2},
                     .data = w, .nbytes = sizeof w};
    cr_assert_eq(aria_st_write(path, &t, 1, NULL, NULL, 0, &err), ARIA_OK, "%s", err.msg);
    aria_model *m;
    cr_expect_eq(aria_model_load(&m, path, NULL, &err), ARIA_ERR_ARG);
    cr_expect(strstr(err.msg, "--config") != NULL, "%s", err.msg);
    aria_model_config c;
    aria_config_preset(&c, "tiny");
    cr_expect_eq(aria_model_load(&m, path, &c, &err), ARIA_ERR_FORMAT);
    cr_expect(strstr(err.msg, "model.tok_embeddings.weight") && strstr(err.msg, "[17727, 64]"), "%s", err.msg);
    c.vocab_size = 2;
    c.d_model = 2;
    c.n_heads = 1;
    cr_expect_eq(aria_model_load(&m, path, &c, &err), ARIA_ERR_FORMAT);
    cr_expect(strstr(err.msg, "out_layer_norm") != NULL, "%s", err.msg);
    unlink(path);
}

Test(model, sampler_filters) {
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    int V = 17727;
    float *lg = malloc(V * sizeof *lg);
    aria_gen_state st;
    int32_t prompt[] = {6, 0};
    aria_gen_state_init(&st, t, prompt, 2);
    aria_rng r;
    aria_rng_seed(&r, 3);
    aria_sample_opts o = aria_sample_defaults();
    /* greedy picks the largest allowed logit; the mask forbids onsets at an event start */
    for (int i = 0; i < V; i++) lg[i] = 0;
    lg[17300] = 50; /* an onset: not allowed now */
    lg[827] = 10;   /* a note */
    o.temperature = 0;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), 827);
    /* after a note only onsets, never earlier than the last onset */
    aria_gen_state_push(&st, t, 827);
    aria_gen_state_push(&st, t, 17227 + 50); /* onset 500 */
    aria_gen_state_push(&st, t, 16726 + 10); /* dur */
    aria_gen_state_push(&st, t, 827);
    for (int i = 0; i < V; i++) lg[i] = 0;
    lg[17227 + 10] = 30; /* onset 100 < 500: masked */
    lg[17227 + 60] = 5;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), 17227 + 60);
    /* min-p: with one dominant token, it is the only one left */
    o.temperature = 1;
    for (int k = 0; k < 50; k++) {
        for (int i = 0; i < V; i++) lg[i] = 0;
        lg[17227 + 70] = 20;
        cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), 17227 + 70);
    }
    /* top-p 0.5 over two equal tokens among many tiny ones keeps those two */
    o.min_p = 0;
    o.top_p = 0.5f;
    int seen[2] = {0, 0};
    for (int k = 0; k < 200; k++) {
        for (int i = 0; i < V; i++) lg[i] = -20;
        lg[17227 + 80] = 5;
        lg[17227 + 90] = 5;
        int32_t id = aria_sample(t, lg, V, &o, &st, 0, &r);
        cr_assert(id == 17227 + 80 || id == 17227 + 90, "drew %d", id);
        seen[id == 17227 + 90]++;
    }
    cr_expect(seen[0] > 50 && seen[1] > 50, "both kept: %d %d", seen[0], seen[1]);
    free(lg);
    aria_tokenizer_free(t);
}

/* A note whose key went down at most 30 ms ago cannot take those onsets:
   the mask moves it to the first onset 40 ms or more after the last
   strike, across <T> too (the only exception: the segment's last onset,
   when no later one is left before <T>). */
Test(model, sampler_no_key_restruck_within_30ms) {
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    int V = 17727, onset0 = 17227, dur0 = 16726;
    float *lg = malloc(V * sizeof *lg);
    aria_token nt = aria_tok_token(t, 827); /* a piano note */
    cr_assert_eq(nt.kind, ARIA_TK_NOTE);
    aria_token other = nt;
    other.v = nt.v + 7; /* another key, same instrument */
    int note = 827, note2 = aria_tok_id(t, other);
    cr_assert_eq(aria_tok_token(t, note2).v, nt.v + 7);
    int32_t prompt[] = {6, 0};
    aria_gen_state st;
    aria_rng r;
    aria_rng_seed(&r, 5);
    aria_sample_opts o = aria_sample_defaults();
    o.temperature = 0;
#define RESET(...)                                                                \
    do {                                                                          \
        int32_t ids_[] = {__VA_ARGS__};                                           \
        aria_gen_state_init(&st, t, prompt, 2);                                   \
        for (size_t i = 0; i < sizeof ids_ / sizeof ids_[0]; i++) aria_gen_state_push(&st, t, ids_[i]); \
        for (int i = 0; i < V; i++) lg[i] = 0;                                    \
    } while (0)
    /* struck at 500 with another key: 500-530 are out, 540 wins */
    RESET(note, onset0 + 50, dur0 + 10, note2, onset0 + 50, dur0 + 10, note);
    lg[onset0 + 50] = 40;
    lg[onset0 + 53] = 30;
    lg[onset0 + 54] = 20;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), onset0 + 54);
    /* with sampling too: never before 540 */
    o.temperature = 1;
    for (int k = 0; k < 50; k++) {
        for (int i = 0; i < V; i++) lg[i] = 0;
        lg[onset0 + 50] = 40;
        lg[onset0 + 51] = 35;
        lg[onset0 + 53] = 35;
        lg[onset0 + 60] = 30;
        cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), onset0 + 60);
    }
    /* without the mask the repeat is drawn */
    o.mask_invalid = 0;
    for (int i = 0; i < V; i++) lg[i] = 0;
    lg[onset0 + 50] = 40;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), onset0 + 50);
    o.mask_invalid = 1;
    o.temperature = 0;
    /* a key not struck at 500 may join the chord */
    RESET(note, onset0 + 50, dur0 + 10, note2);
    lg[onset0 + 50] = 40;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), onset0 + 50);
    /* 40 ms after its strike the key is free again */
    RESET(note, onset0 + 50, dur0 + 10, note2, onset0 + 54, dur0 + 10, note);
    lg[onset0 + 54] = 40;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), onset0 + 54);
    /* within the segment, a key struck at 0: the first free onset is 40 */
    RESET(note, onset0, dur0 + 10, note);
    lg[onset0] = 40;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), onset0 + 4);
    /* across <T>: struck at 4990, so the next segment's 0-20 ms are out */
    RESET(note, onset0 + 499, dur0 + 10, ARIA_SP_TIME, note);
    lg[onset0] = 40;
    lg[onset0 + 2] = 30;
    lg[onset0 + 3] = 20;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), onset0 + 3);
    /* ... while five seconds later onset 0 is free */
    RESET(note, onset0, dur0 + 10, ARIA_SP_TIME, note);
    lg[onset0] = 40;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), onset0);
    /* at the segment's last onset there is no later one: the repeat stays
       possible rather than leaving nothing to draw */
    RESET(note, onset0 + 499, dur0 + 10, note);
    lg[onset0 + 499] = 40;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), onset0 + 499);
    RESET(note, onset0 + 496, dur0 + 10, note);
    lg[onset0 + 497] = 40;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), onset0 + 499, "4960 + 40 is past the segment: 4990");
#undef RESET
    free(lg);
    aria_tokenizer_free(t);
}

/* With max_silence, no <T> and no onset that would leave every note
   silent for longer than the limit, or than the prompt's own longest
   silence when it is longer. */
Test(model, sampler_max_silence) {
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    int V = 17727, onset0 = 17227, note = 827;
    int dur100 = aria_tok_id(t, (aria_token){.kind = ARIA_TK_DUR, .v = 100});
    int dur1000 = aria_tok_id(t, (aria_token){.kind = ARIA_TK_DUR, .v = 1000});
    cr_assert(dur100 > 0 && dur1000 > 0);
    float *lg = malloc(V * sizeof *lg);
    aria_gen_state st;
    aria_rng r;
    aria_rng_seed(&r, 9);
    aria_sample_opts o = aria_sample_defaults();
    cr_expect_float_eq(o.max_silence, 4.0f, 1e-6);
    o.temperature = 0;
#define SET(...)                                                                  \
    do {                                                                          \
        int32_t ids_[] = {6, 0, __VA_ARGS__};                                     \
        aria_gen_state_init(&st, t, ids_, sizeof ids_ / sizeof ids_[0]);          \
        for (int i = 0; i < V; i++) lg[i] = 0;                                    \
    } while (0)
    /* a note at 0 lasting 100 ms: the next segment (5 s) starts 4.9 s after
       it ends, so <T> is out and the note wins */
    SET(note, onset0, dur100);
    lg[ARIA_SP_TIME] = 40;
    lg[note] = 20;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), note);
    /* the same with the rule off (max_silence 0, or no mask): <T> */
    o.max_silence = 0;
    SET(note, onset0, dur100);
    lg[ARIA_SP_TIME] = 40;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), ARIA_SP_TIME);
    o.max_silence = 4;
    o.mask_invalid = 0;
    SET(note, onset0, dur100);
    lg[ARIA_SP_TIME] = 40;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), ARIA_SP_TIME);
    o.mask_invalid = 1;
    /* a note at 500 lasting 1 s ends at 1.5 s: <T> is fine (3.5 s), and
       in the next segment a note may start up to 500 ms, not at 2 s */
    SET(note, onset0 + 50, dur1000);
    lg[ARIA_SP_TIME] = 40;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), ARIA_SP_TIME);
    aria_gen_state_push(&st, t, ARIA_SP_TIME);
    aria_gen_state_push(&st, t, note);
    for (int i = 0; i < V; i++) lg[i] = 0;
    lg[onset0 + 200] = 40;
    lg[onset0 + 51] = 30;
    lg[onset0 + 50] = 20;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), onset0 + 50);
    o.temperature = 1;
    for (int k = 0; k < 50; k++) {
        for (int i = 0; i < V; i++) lg[i] = 0;
        lg[onset0 + 200] = 40;
        lg[onset0 + 51] = 30;
        lg[onset0 + 10] = 30;
        int32_t id = aria_sample(t, lg, V, &o, &st, 0, &r);
        cr_expect(id >= onset0 && id <= onset0 + 50, "onset id %d", id);
    }
    o.temperature = 0;
    /* a prompt that is silent for 7.9 s allows as much: two <T> in a row */
    SET(note, onset0, dur100, ARIA_SP_TIME, note, onset0 + 300, dur100, ARIA_SP_TIME);
    lg[ARIA_SP_TIME] = 40;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), ARIA_SP_TIME);
    /* ... where a prompt without one does not */
    SET(note, onset0 + 300, dur100, ARIA_SP_TIME);
    lg[ARIA_SP_TIME] = 40;
    lg[note] = 20;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), note);
    /* a prompt that ends in a long silence: the next note comes at once */
    SET(note, onset0, dur100, ARIA_SP_TIME, ARIA_SP_TIME, note);
    lg[onset0 + 200] = 40;
    cr_expect_eq(aria_sample(t, lg, V, &o, &st, 0, &r), onset0);
#undef SET
    /* a pedal is not a sound (the demo vocabulary has pedal tokens): after
       a note ending at 100 ms, a pedal at 4.9 s leaves the limit where it
       was */
    aria_tokenizer *tp = aria_tokenizer_new(ARIA_TOKCFG_DEMO_17729);
    int Vp = aria_tok_vocab_size(tp);
    float *lp = malloc(Vp * sizeof *lp);
    int pnote = aria_tok_id(tp, aria_tok_token(t, note));
    int pon0 = aria_tok_id(tp, (aria_token){.kind = ARIA_TK_ONSET, .v = 0});
    int pdur = aria_tok_id(tp, (aria_token){.kind = ARIA_TK_DUR, .v = 100});
    int pped = aria_tok_id(tp, (aria_token){.kind = ARIA_TK_SPECIAL, .v = ARIA_SP_PED_ON});
    int ptime = aria_tok_id(tp, (aria_token){.kind = ARIA_TK_SPECIAL, .v = ARIA_SP_TIME});
    int pbos = aria_tok_id(tp, (aria_token){.kind = ARIA_TK_SPECIAL, .v = ARIA_SP_BOS});
    int32_t pids[] = {pbos, pnote, pon0, pdur, pped};
    aria_gen_state_init(&st, tp, pids, 5);
    for (int i = 0; i < Vp; i++) lp[i] = 0;
    lp[pon0 + 490] = 40;
    lp[pon0 + 20] = 20;
    int32_t ped_at = aria_sample(tp, lp, Vp, &o, &st, 0, &r);
    cr_expect_eq(ped_at, pon0 + 490, "pedals may come any time");
    aria_gen_state_push(&st, tp, ped_at);
    for (int i = 0; i < Vp; i++) lp[i] = 0;
    lp[ptime] = 40;
    lp[pnote] = 20;
    cr_expect_eq(aria_sample(tp, lp, Vp, &o, &st, 0, &r), pnote);
    free(lp);
    aria_tokenizer_free(tp);
    free(lg);
    aria_tokenizer_free(t);
}

/* Longest stretch (ms) in which no note sounds, read from the ids alone. */
static long longest_gap(const aria_tokenizer *t, const int32_t *ids, size_t n) {
    long seg = 0, end = -1, gap = 0, on = 0;
    for (size_t i = 0; i < n; i++) {
        aria_token k = aria_tok_token(t, ids[i]);
        if (k.kind == ARIA_TK_SPECIAL && k.v == ARIA_SP_TIME) seg += 5000;
        if (k.kind == ARIA_TK_NOTE && i + 2 < n) {
            aria_token a = aria_tok_token(t, ids[i + 1]), d = aria_tok_token(t, ids[i + 2]);
            if (a.kind != ARIA_TK_ONSET || d.kind != ARIA_TK_DUR) continue;
            on = seg + a.v;
            if (end >= 0 && on - end > gap) gap = on - end;
            if (on + d.v > end) end = on + d.v;
        }
    }
    return gap;
}

/* A long run of the sampler on logits that favour <T> (one event in
   eight): without the rule it leaves silences of 5 s and more, with it
   (the default) never one over 4 s, and every note still decodes. */
Test(model, sampler_loop_keeps_silences_short) {
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    int V = 17727, onset0 = 17227, dur0 = 16726;
    float *lg = malloc(V * sizeof *lg);
    long worst[2] = {0, 0};
    int notes[2] = {0, 0};
    for (int rule = 0; rule < 2; rule++) {
        aria_sample_opts o = aria_sample_defaults();
        o.max_silence = rule ? 4.0f : 0.0f;
        aria_rng r;
        aria_rng_seed(&r, 21);
        size_t n = 3000;
        int32_t *ids = malloc(n * sizeof *ids);
        ids[0] = 6;
        ids[1] = 0;
        aria_gen_state st;
        aria_gen_state_init(&st, t, ids, 2);
        for (size_t i = 2; i < n; i++) {
            for (int k = 0; k < V; k++) lg[k] = -30;
            lg[ARIA_SP_TIME] = 0;
            for (int k = 0; k < 7; k++) lg[827 + k * 11 * 8] = 0; /* seven notes */
            for (int k = 0; k < 500; k++) lg[onset0 + k] = 0;
            for (int k = 10; k < 60; k++) lg[dur0 + k] = 0;
            ids[i] = aria_sample(t, lg, V, &o, &st, 0, &r);
            aria_gen_state_push(&st, t, ids[i]);
            notes[rule] += aria_tok_token(t, ids[i]).kind == ARIA_TK_NOTE;
        }
        worst[rule] = longest_gap(t, ids, n);
        free(ids);
    }
    cr_expect_gt(worst[0], 5000, "without the rule: %ld ms", worst[0]);
    cr_expect_leq(worst[1], 4000, "with the rule: %ld ms", worst[1]);
    cr_expect_gt(notes[1], 500, "%d notes", notes[1]);
    free(lg);
    aria_tokenizer_free(t);
}

Test(model, generation_respects_grammar) {
    aria_model *m = random_tiny(ARIA_HEAD_LM);
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    int32_t prompt[] = {6, 0, 827, 17227, 16736};
    aria_generate_opts o = {.variations = 3, .max_new = 300, .seed = 11, .sample = aria_sample_defaults()};
    o.sample.force_end = 1;
    int32_t *seq[3];
    size_t len[3];
    aria_error err = {{0}};
    cr_assert_eq(aria_generate(m, t, prompt, 5, &o, seq, len, &err), ARIA_OK, "%s", err.msg);
    for (int v = 0; v < 3; v++) {
        aria_token *toks = malloc(len[v] * sizeof *toks);
        aria_tok_decode(t, seq[v], len[v], toks);
        aria_score s;
        size_t skipped = 99;
        cr_assert_eq(aria_detokenize(t, toks, len[v], &s, &skipped, &err), ARIA_OK);
        cr_expect_eq(skipped, 0, "variation %d: %zu malformed tokens", v, skipped);
        int dims = 0;
        for (size_t i = 0; i < len[v]; i++) dims += seq[v][i] == ARIA_SP_DIM;
        cr_expect_leq(dims, 1);
        aria_score_free(&s);
        free(toks);
        free(seq[v]);
    }
    aria_tokenizer_free(t);
    aria_model_free(m);
}

Test(model_ref, file_embedding_matches_reference) {
    if (!have_vectors()) cr_skip("needs " VEC);
    /* eos_seqs.nocturne is the first 60 notes of nocturne.mid tokenized:
       a score cut to those notes is one embedding chunk with the same ids */
    aria_midi mid = {0};
    aria_score s;
    aria_error err = {{0}};
    cr_assert_eq(aria_midi_read_file(&mid, "tests/data/vectors/nocturne/nocturne.mid", &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_score_from_midi(&s, &mid, &err), ARIA_OK);
    s.n_notes = 60;
    aria_model *m = load(VEC "/tiny_emb_f32.safetensors");
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    float emb[32];
    size_t nc = 0;
    cr_assert_eq(aria_embed_score(m, t, &s, emb, &nc, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(nc, 1);
    size_t nr;
    float *ref = read_f32(VEC "/emb/emb_eos.bin", &nr);
    expect_close("file embedding", emb, ref, 32, 2e-6);
    free(ref);
    aria_tokenizer_free(t);
    aria_model_free(m);
    aria_score_free(&s);
    aria_midi_free(&mid);
}
