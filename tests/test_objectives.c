/*
 * test_objectives.c - the contrastive and classifier objectives: the
 * NT-Xent loss, its similarity matrix, the embeddings at <E> and the
 * gradients of emb_head and the token embeddings against the reference
 * (../shared/vectors/model/emb, skipped when absent); finite differences
 * of the whole NT-Xent gradient on a tiny random model (no reference
 * needed); head changes; and the `aria train --objective contrastive |
 * classify` and `aria classify` commands on in-repo MIDI files
 * (examples/, tests/data/midi).
 *
 * Tolerances (vectors README section 7): NT-Xent loss 1e-6, S and the
 * embeddings 2e-6 x max|ref|, gradients 1e-5 x max|ref| per tensor.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aria.h"
#include "base/json.h"
#include "cli_helpers.h"

#define VEC "../shared/vectors/model"

static int have_vectors(void) { return access(VEC "/emb/ntxent_z1.bin", R_OK) == 0; }

static float *read_bin(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    float *x = malloc(n * sizeof *x);
    cr_assert_eq(fread(x, sizeof *x, n, f), n, "%s is short", path);
    fclose(f);
    return x;
}

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

/* max |a - b| (NaN when any value is NaN) */
static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (isnan(d)) return NAN;
        m = d > m ? d : m;
    }
    return m;
}

static void assert_close(const char *what, const float *got, const float *ref, size_t n, double rel) {
    double tol = rel * max_abs(ref, n), d = max_diff(got, ref, n);
    cr_assert(d <= tol, "%s: max |diff| %g > %g", what, d, tol);
}

Test(ntxent, loss_and_similarity_match_reference) {
    if (!have_vectors()) cr_skip("needs " VEC "/emb");
    float *z1 = read_bin(VEC "/emb/ntxent_z1.bin", 4 * 32), *z2 = read_bin(VEC "/emb/ntxent_z2.bin", 4 * 32),
          *S_ref = read_bin(VEC "/emb/ntxent_sim.bin", 16);
    float S[16];
    float loss = aria_ntxent(z1, z2, 4, 32, 0.1f, S, NULL, NULL);
    cr_assert(fabs(loss - 1.2934434413909912) <= 1e-6, "loss %.9f", loss);
    assert_close("S", S, S_ref, 16, 2e-6);
    free(z1);
    free(z2);
    free(S_ref);
}

/* The reference's contrastive batch: [8][128], view 1 in even rows. */
static int32_t *contrastive_batch(int *pos) {
    json_doc *d;
    char e[256];
    cr_assert_eq(json_parse_file(VEC "/inputs.json", &d, e, sizeof e), ARIA_OK, "%s", e);
    const json_value *c = json_get(json_root(d), "contrastive");
    const json_value *views = json_get(c, "views"), *eos = json_get(c, "eos_pos");
    int L = (int)json_int(json_get(c, "L"));
    cr_assert_eq(L, 128);
    int32_t *ids = malloc(8 * 128 * sizeof *ids);
    for (int b = 0; b < 4; b++)
        for (int v = 0; v < 2; v++) {
            const json_value *row = json_at(json_at(views, (size_t)b), (size_t)v);
            cr_assert_eq(json_len(row), 128u);
            for (int t = 0; t < 128; t++) ids[(2 * b + v) * 128 + t] = (int32_t)json_int(json_at(row, (size_t)t));
            pos[2 * b + v] = (int)json_int(json_at(json_at(eos, (size_t)b), (size_t)v));
        }
    json_doc_free(d);
    return ids;
}

/* Forward at <E>, NT-Xent, backward; z [8][32] and the loss out. */
static float ntxent_step(aria_trainer *t, const int32_t *ids, const int *pos, int B, int E, float *z, int grads) {
    aria_error err = {{0}};
    cr_assert_eq(aria_trainer_forward_at(t, ids, pos, ARIA_OUT_EMB, z, &err), ARIA_OK, "%s", err.msg);
    float *z1 = malloc((size_t)B * E * sizeof *z1), *z2 = malloc((size_t)B * E * sizeof *z2),
          *d1 = malloc((size_t)B * E * sizeof *d1), *d2 = malloc((size_t)B * E * sizeof *d2),
          *dz = malloc((size_t)2 * B * E * sizeof *dz);
    for (int b = 0; b < B; b++) {
        memcpy(z1 + b * E, z + (2 * b) * E, (size_t)E * sizeof *z);
        memcpy(z2 + b * E, z + (2 * b + 1) * E, (size_t)E * sizeof *z);
    }
    float loss = aria_ntxent(z1, z2, B, E, 0.1f, NULL, d1, d2);
    if (grads) {
        for (int b = 0; b < B; b++) {
            memcpy(dz + (2 * b) * E, d1 + b * E, (size_t)E * sizeof *dz);
            memcpy(dz + (2 * b + 1) * E, d2 + b * E, (size_t)E * sizeof *dz);
        }
        aria_trainer_zero_grad(t);
        cr_assert_eq(aria_trainer_backward_at(t, ids, dz, &err), ARIA_OK, "%s", err.msg);
    }
    free(z1);
    free(z2);
    free(d1);
    free(d2);
    free(dz);
    return loss;
}

Test(ntxent, embeddings_and_gradients_match_reference) {
    if (!have_vectors()) cr_skip("needs " VEC "/emb");
    aria_error err = {{0}};
    aria_model *m;
    cr_assert_eq(aria_model_load(&m, VEC "/tiny_emb_f32.safetensors", NULL, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_model_heads(m), ARIA_HEAD_EMB);
    int pos[8];
    int32_t *ids = contrastive_batch(pos);
    aria_trainer *t;
    cr_assert_eq(aria_trainer_new(&t, m, 8, 128, &err), ARIA_OK, "%s", err.msg);
    aria_trainer_set_exact(t, 1);
    float z[8 * 32];
    float loss = ntxent_step(t, ids, pos, 4, 32, z, 1);
    cr_assert(fabs(loss - 1.2934434413909912) <= 1e-6, "loss %.9f", loss);
    float *z1 = read_bin(VEC "/emb/ntxent_z1.bin", 4 * 32), *z2 = read_bin(VEC "/emb/ntxent_z2.bin", 4 * 32);
    float zz1[4 * 32], zz2[4 * 32];
    for (int b = 0; b < 4; b++) {
        memcpy(zz1 + b * 32, z + (2 * b) * 32, 32 * sizeof *z);
        memcpy(zz2 + b * 32, z + (2 * b + 1) * 32, 32 * sizeof *z);
    }
    assert_close("z1", zz1, z1, 128, 2e-6);
    assert_close("z2", zz2, z2, 128, 2e-6);
    size_t n;
    const float *g = aria_trainer_grad(t, "emb_head.weight", &n);
    cr_assert_eq(n, 32u * 64u);
    float *ref = read_bin(VEC "/emb/grad_emb_head.weight.bin", n);
    assert_close("grad emb_head", g, ref, n, 1e-5);
    free(ref);
    g = aria_trainer_grad(t, "model.tok_embeddings.weight", &n);
    cr_assert_eq(n, 17727u * 64u);
    ref = read_bin(VEC "/emb/grad_model.tok_embeddings.weight.bin", n);
    assert_close("grad tok_embeddings", g, ref, n, 1e-5);
    free(ref);
    free(z1);
    free(z2);
    free(ids);
    aria_trainer_free(t);
    aria_model_free(m);
}

/* The loss as a function of one weight, the gradient by finite differences. */
Test(ntxent, gradient_matches_finite_differences) {
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, "tiny"), ARIA_OK);
    c.vocab_size = 64;
    c.max_seq_len = 32;
    c.n_layers = 2;
    c.emb_size = 8;
    aria_error err = {{0}};
    aria_model *m;
    cr_assert_eq(aria_model_new_random(&m, &c, ARIA_HEAD_EMB, 11, &err), ARIA_OK, "%s", err.msg);
    enum { B = 3, T = 12, E = 8 };
    int32_t ids[2 * B * T];
    int pos[2 * B];
    aria_rng r;
    aria_rng_seed(&r, 5);
    for (int i = 0; i < 2 * B * T; i++) ids[i] = 3 + (int32_t)aria_rng_randbelow(&r, 60);
    for (int i = 0; i < 2 * B; i++) pos[i] = 4 + (int)aria_rng_randbelow(&r, T - 4);
    aria_trainer *t;
    cr_assert_eq(aria_trainer_new(&t, m, 2 * B, T, &err), ARIA_OK, "%s", err.msg);
    aria_trainer_set_exact(t, 1);
    float z[2 * B * E];
    ntxent_step(t, ids, pos, B, E, z, 1);
    const char *names[] = {"emb_head.weight", "model.out_layer_norm.weight", "model.encode_layers.0.mixed_qkv.weight",
                           "model.encode_layers.1.ff_down_proj.weight", "model.tok_embeddings.weight"};
    float *params, *grads;
    size_t np;
    aria_trainer_arena(t, &params, &grads, &np);
    float *g0 = malloc(np * sizeof *g0);
    memcpy(g0, grads, np * sizeof *g0);
    int checked = 0;
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        size_t n;
        const float *p = aria_trainer_param(t, names[k], &n);
        cr_assert(p, "%s", names[k]);
        size_t off = (size_t)(p - params);
        for (int s = 0; s < 4; s++) {
            /* a weight the loss depends on: for the embedding, a row of an id in the batch */
            size_t i = k == 4 ? (size_t)ids[s * 5] * 64 + (size_t)s * 7 : (size_t)aria_rng_randbelow(&r, n);
            float keep = params[off + i];
            double h = 1e-2;
            params[off + i] = keep + (float)h;
            double lp = ntxent_step(t, ids, pos, B, E, z, 0);
            params[off + i] = keep - (float)h;
            double lm = ntxent_step(t, ids, pos, B, E, z, 0);
            params[off + i] = keep;
            double fd = (lp - lm) / (2 * h), an = g0[off + i];
            cr_assert(fabs(fd - an) <= 2e-3 + 2e-2 * fabs(an), "%s[%zu]: finite difference %g, gradient %g",
                      names[k], i, fd, an);
            checked += an != 0;
        }
    }
    cr_assert(checked > 8, "most checked gradients should be non-zero (%d)", checked);
    free(g0);
    aria_trainer_free(t);
    aria_model_free(m);
}

Test(ntxent, perfect_views_and_gradient_of_identical_pairs) {
    /* z2 = 3 z1 with orthogonal rows: the loss is the minimum for this tau */
    float z1[3 * 3] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, z2[9];
    for (int i = 0; i < 9; i++) z2[i] = 3 * z1[i];
    float loss = aria_ntxent(z1, z2, 3, 3, 0.5f, NULL, NULL, NULL);
    double want = -log(exp(2.0) / (exp(2.0) + 2 * exp(0.0)));
    cr_assert(fabs(loss - want) < 1e-6, "loss %g, want %g", loss, want);
    cr_assert_eq(aria_ntxent_hits(z1, z2, 3, 3), 3);
    float z3[9] = {0, 1, 0, 1, 0, 0, 0, 0, 1};
    cr_assert_eq(aria_ntxent_hits(z1, z3, 3, 3), 1);
    cr_assert(isnan(aria_ntxent(z1, z2, 3, 3, 0.0f, NULL, NULL, NULL)));
}

Test(heads, lm_becomes_embedding_model_and_classifier) {
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, "tiny"), ARIA_OK);
    c.emb_size = 0;
    c.class_size = 0;
    aria_error err = {{0}};
    aria_model *m;
    cr_assert_eq(aria_model_new_random(&m, &c, ARIA_HEAD_LM, 3, &err), ARIA_OK, "%s", err.msg);
    size_t n;
    float *qkv = malloc(64 * 192 * sizeof *qkv);
    aria_tensor tt;
    for (size_t i = 0; i < aria_model_n_tensors(m); i++) {
        cr_assert_eq(aria_model_tensor(m, i, &tt), ARIA_OK);
        if (!strcmp(tt.name, "model.encode_layers.1.mixed_qkv.weight")) memcpy(qkv, tt.data, tt.nbytes);
    }
    cr_assert_eq(aria_model_set_heads(m, ARIA_HEAD_EMB, 24, 0, 1, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_model_heads(m), ARIA_HEAD_EMB);
    cr_assert_eq(aria_model_get_config(m)->emb_size, 24);
    cr_assert_eq(aria_output_dim(m, ARIA_OUT_LOGITS), 0);
    int found = 0;
    for (size_t i = 0; i < aria_model_n_tensors(m); i++) {
        cr_assert_eq(aria_model_tensor(m, i, &tt), ARIA_OK);
        cr_assert_neq(strcmp(tt.name, "lm_head.weight"), 0);
        if (!strcmp(tt.name, "model.encode_layers.1.mixed_qkv.weight")) {
            found = 1;
            cr_assert_eq(memcmp(qkv, tt.data, tt.nbytes), 0, "trunk weights are kept");
        }
        if (!strcmp(tt.name, "emb_head.weight")) {
            n = tt.nbytes / 4;
            double ss = 0;
            for (size_t k = 0; k < n; k++) ss += (double)((const float *)tt.data)[k] * ((const float *)tt.data)[k];
            double sd = sqrt(ss / n);
            cr_assert(sd > 0.015 && sd < 0.025, "emb_head std %g", sd);
        }
    }
    cr_assert(found);
    /* a session runs the new head */
    aria_session *s;
    cr_assert_eq(aria_session_new(&s, m, 1, 8, &err), ARIA_OK, "%s", err.msg);
    int32_t ids[3] = {0, 5, 1};
    float e[24];
    cr_assert_eq(aria_session_forward(s, ids, 3, ARIA_OUT_EMB, 0, e, &err), ARIA_OK, "%s", err.msg);
    aria_session_free(s);
    /* the next-token loss is refused without an lm_head */
    aria_trainer *t;
    cr_assert_eq(aria_trainer_new(&t, m, 1, 4, &err), ARIA_OK, "%s", err.msg);
    int32_t four[4] = {0, 5, 6, 1};
    float loss;
    cr_assert_eq(aria_trainer_loss(t, four, &loss, &err), ARIA_ERR_ARG);
    cr_assert(strstr(err.msg, "lm_head"), "%s", err.msg);
    aria_trainer_free(t);
    /* and into a classifier with names that survive a save */
    cr_assert_eq(aria_model_set_heads(m, ARIA_HEAD_CLS, 0, 3, 1, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_model_get_config(m)->emb_size, 0);
    cr_assert_eq(aria_model_get_config(m)->class_size, 3);
    cr_assert_eq(aria_model_reinit_row(m, "model.tok_embeddings.weight", 1, 0.02f, 9, &err), ARIA_OK);
    cr_assert_eq(aria_model_reinit_row(m, "model.tok_embeddings.weight", 17727, 0.02f, 9, &err), ARIA_ERR_ARG);
    char path[] = "/tmp/aria_heads_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    const char *k[] = {"aria_classes"}, *v[] = {"[\"jazz\", \"cl\\\"assical\", \"pop\"]"};
    cr_assert_eq(aria_model_save_meta(m, path, k, v, 1, &err), ARIA_OK, "%s", err.msg);
    aria_model_free(m);
    cr_assert_eq(aria_model_load(&m, path, NULL, &err), ARIA_OK, "%s", err.msg);
    unlink(path);
    char **names;
    int nn;
    cr_assert_eq(aria_model_class_names(m, &names, &nn, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(nn, 3);
    cr_assert_str_eq(names[0], "jazz");
    cr_assert_str_eq(names[1], "cl\"assical");
    cr_assert_str_eq(names[2], "pop");
    aria_class_names_free(names, nn);
    free(qkv);
    aria_model_free(m);
}

Test(softmax_xent, gradient_and_probabilities) {
    float lg[2 * 3] = {1, 2, 3, 0, 0, 0}, p[6], d[6];
    int y[2] = {2, 0};
    float loss = aria_softmax_xent(lg, 2, 3, y, p, d, 1.0f);
    double z = exp(1) + exp(2) + exp(3);
    double want = (-(3 - log(z)) + log(3.0)) / 2;
    cr_assert(fabs(loss - want) < 1e-6, "loss %g want %g", loss, want);
    cr_assert(fabs(p[2] - exp(3) / z) < 1e-6);
    cr_assert(fabs(d[2] - (p[2] - 1) / 2) < 1e-6);
    cr_assert(fabs(d[4] - p[4] / 2) < 1e-6);
}

/* ---------------------------------------------------------------------- */
/* The commands (in-repo MIDI files: examples/, tests/data/midi)          */
/* ---------------------------------------------------------------------- */

/* Runs a shell command; its stdout+stderr into out (cap bytes); the exit status. */
static int run_cmd(const char *cmd, char *out, size_t cap) {
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *f = popen(full, "r");
    cr_assert(f, "popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Values of `key` on the step lines of a log.jsonl (at most cap). */
static int log_values(const char *log, const char *key, double *v, int cap) {
    FILE *f = fopen(log, "r");
    cr_assert(f, "no %s", log);
    char line[1024], pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        const char *k = strstr(line, pat);
        if (k) v[n++] = strtod(k + strlen(pat), NULL);
    }
    fclose(f);
    return n;
}

static char tmpdir_buf[64];
static const char *make_tmpdir(void) {
    snprintf(tmpdir_buf, sizeof tmpdir_buf, "/tmp/aria_obj_XXXXXX");
    cr_assert(mkdtemp(tmpdir_buf));
    return tmpdir_buf;
}

static void rm_rf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

#define CONTRASTIVE_FILES                                                                                     \
    "examples/pretrain-small examples/waltz.mid tests/data/midi/midly/Clementi.mid "                         \
    "tests/data/midi/mido/nocturne_decoded.mid tests/data/midi/mido/pop_decoded.mid"

Test(train_contrastive, loss_falls_embeds_and_resumes_exactly, .timeout = 300) {
    const char *dir = make_tmpdir();
    char cmd[4096], out[16384];
    const char *common = "--objective contrastive --config tiny --seq-len 256 --batch 4 --lr 1e-3 --warmup 0 "
                         "--lr-schedule constant --threads 1 --val-fraction 0 --save-every 10";
    snprintf(cmd, sizeof cmd, "%s train %s --steps 30 --out %s/a " CONTRASTIVE_FILES, aria_bin(), common, dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    char log[512];
    snprintf(log, sizeof log, "%s/a/log.jsonl", dir);
    double l[64];
    int n = log_values(log, "loss", l, 64);
    cr_assert_eq(n, 30);
    double first = (l[0] + l[1] + l[2] + l[3] + l[4]) / 5, last = (l[25] + l[26] + l[27] + l[28] + l[29]) / 5;
    cr_assert(last < 0.5 * first, "loss does not fall: first steps %g, last steps %g", first, last);
    double acc[64];
    cr_assert_eq(log_values(log, "retrieval_acc", acc, 64), 30);
    /* an embedding model: emb_head, no lm_head; aria embed reads it */
    char model[512];
    snprintf(model, sizeof model, "%s/a/model.safetensors", dir);
    aria_model *m;
    aria_error err = {{0}};
    cr_assert_eq(aria_model_load(&m, model, NULL, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_model_heads(m), ARIA_HEAD_EMB);
    cr_assert_eq(aria_model_get_config(m)->emb_size, 32);
    aria_model_free(m);
    snprintf(cmd, sizeof cmd, "%s embed --model %s -o %s/e.npy examples/waltz.mid", aria_bin(), model, dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    /* 12 steps, or 6 then a resume to 12: the same losses */
    snprintf(cmd, sizeof cmd, "%s train %s --augment --steps 6 --out %s/b " CONTRASTIVE_FILES, aria_bin(), common, dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "sed -i 's/\"steps\": 6/\"steps\": 12/' %s/b/run.json && %s train --resume %s/b", dir,
             aria_bin(), dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s train %s --augment --steps 12 --out %s/c " CONTRASTIVE_FILES, aria_bin(), common, dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    double lb[64], lc[64];
    snprintf(log, sizeof log, "%s/b/log.jsonl", dir);
    cr_assert_eq(log_values(log, "loss", lb, 64), 12);
    snprintf(log, sizeof log, "%s/c/log.jsonl", dir);
    cr_assert_eq(log_values(log, "loss", lc, 64), 12);
    for (int i = 0; i < 12; i++) cr_assert_eq(lb[i], lc[i], "step %d: %g resumed, %g straight", i + 1, lb[i], lc[i]);
    rm_rf(dir);
}

Test(train_contrastive, validation_and_bad_input, .timeout = 120) {
    const char *dir = make_tmpdir();
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd,
             "%s train --objective contrastive --config tiny --seq-len 128 --batch 2 --steps 2 --threads 1 "
             "--val-fraction 0.4 --out %s/v " CONTRASTIVE_FILES " tests/data/midi/generated/not_midi.mid",
             aria_bin(), dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "not_midi.mid"), "the skipped file is named: %s", out);
    char log[512];
    snprintf(log, sizeof log, "%s/v/log.jsonl", dir);
    double v[8];
    cr_assert_eq(log_values(log, "val_retrieval_acc", v, 8), 1);
    cr_assert(v[0] >= 0 && v[0] <= 1);
    cr_assert_eq(log_values(log, "skipped", v, 8), 1);
    cr_assert_eq(v[0], 1);
    /* no files: usage; one usable file: refused, nothing made */
    snprintf(cmd, sizeof cmd, "%s train --objective contrastive --config tiny --out %s/x", aria_bin(), dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 2, "%s", out);
    snprintf(cmd, sizeof cmd, "%s train --objective contrastive --config tiny --seq-len 128 --out %s/y examples/waltz.mid",
             aria_bin(), dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "at least 2"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s/y", dir);
    cr_assert_neq(access(cmd, F_OK), 0, "a refused run leaves nothing");
    rm_rf(dir);
}

Test(train_classify, learns_a_planted_task_and_classifies, .timeout = 300) {
    const char *dir = make_tmpdir();
    char cmd[4096], out[16384], path[512];
    snprintf(path, sizeof path, "%s/labels.csv", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs("path,task,label,group\n"
          "bach-1.mid,composer,bach,b1\nbach-2.mid,composer,bach,b2\n"
          "beethoven-1.mid,composer,beethoven,e1\nbeethoven-2.mid,composer,beethoven,e2\n"
          "pop225-1.mid,composer,pop,p1\npop225-2.mid,composer,pop,p2\n"
          "bach-1.mid,era,old,b1\npop225-1.mid,era,new,p1\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s init --config tiny -o %s/lm.safetensors", aria_bin(), dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd,
             "%s train --objective classify --labels %s --task composer --root examples/pretrain-small --init "
             "%s/lm.safetensors --out %s/run --seq-len 512 --batch 4 --steps 40 --lr 3e-3 --val-fraction 0 "
             "--notes-per-chunk 60 --threads 1",
             aria_bin(), path, dir, dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    char log[512];
    snprintf(log, sizeof log, "%s/run/log.jsonl", dir);
    double l[64];
    cr_assert_eq(log_values(log, "loss", l, 64), 40);
    cr_assert(l[36] + l[37] + l[38] + l[39] < 0.5 * (l[0] + l[1] + l[2] + l[3]), "loss does not fall");
    /* every training file gets its own label back, by name */
    snprintf(cmd, sizeof cmd, "%s classify --model %s/run/model.safetensors --notes-per-chunk 60 --max-len 512 "
             "examples/pretrain-small/*.mid", aria_bin(), dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    const char *want[] = {"bach-1.mid\tbach\t", "bach-2.mid\tbach\t", "beethoven-1.mid\tbeethoven\t",
                          "beethoven-2.mid\tbeethoven\t", "pop225-1.mid\tpop\t", "pop225-2.mid\tpop\t"};
    for (int i = 0; i < 6; i++) cr_assert(strstr(out, want[i]), "missing '%s' in:\n%s", want[i], out);
    /* JSON, and a bad file skipped by name */
    snprintf(cmd, sizeof cmd, "%s classify --json --model %s/run/model.safetensors examples/pretrain-small/bach-1.mid "
             "tests/data/midi/generated/not_midi.mid", aria_bin(), dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "\"label\": \"bach\""), "%s", out);
    cr_assert(strstr(out, "1 of 2 files skipped: tests/data/midi/generated/not_midi.mid"), "%s", out);
    /* models without a class_head are refused, naming the file */
    snprintf(cmd, sizeof cmd, "%s classify --model %s/lm.safetensors examples/waltz.mid", aria_bin(), dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "lm.safetensors: not a classifier"), "%s", out);
    /* held-out validation logs accuracy and macro-F1; a class with fewer
       groups than folds (pop: both files one group) is left out, its files
       named in skipped.txt */
    char path2[512];
    snprintf(path2, sizeof path2, "%s/labels2.csv", dir);
    f = fopen(path2, "w");
    cr_assert(f);
    fputs("path,task,label,group\n"
          "bach-1.mid,composer,bach,b1\nbach-2.mid,composer,bach,b2\n"
          "beethoven-1.mid,composer,beethoven,e1\nbeethoven-2.mid,composer,beethoven,e2\n"
          "pop225-1.mid,composer,pop,p1\npop225-2.mid,composer,pop,p1\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "%s train --objective classify --labels %s --task composer --root examples/pretrain-small --config tiny "
             "--out %s/val --seq-len 256 --batch 2 --steps 2 --folds 2 --fold 1 --threads 1",
             aria_bin(), path2, dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    char skipped[512], text[4096] = {0};
    snprintf(skipped, sizeof skipped, "%s/val/skipped.txt", dir);
    f = fopen(skipped, "r");
    cr_assert(f, "no %s", skipped);
    size_t got = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[got] = 0;
    cr_expect(strstr(text, "pop225-1.mid\tclass pop has 1 group, fewer than the 2 folds"), "%s", text);
    cr_expect(strstr(text, "pop225-2.mid\tclass pop"), "%s", text);
    cr_expect(!strstr(text, "bach"), "%s", text);
    snprintf(log, sizeof log, "%s/val/log.jsonl", dir);
    double a[4], f1[4];
    cr_assert_eq(log_values(log, "val_acc", a, 4), 1);
    cr_assert_eq(log_values(log, "val_macro_f1", f1, 4), 1);
    cr_assert(a[0] >= 0 && a[0] <= 1 && f1[0] >= 0 && f1[0] <= 1);
    /* an unknown task: one line naming the CSV, nothing made */
    snprintf(cmd, sizeof cmd,
             "%s train --objective classify --labels %s --task nope --root examples/pretrain-small --config tiny "
             "--out %s/bad --seq-len 256",
             aria_bin(), path, dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "labels.csv"), "%s", out);
    snprintf(path, sizeof path, "%s/bad", dir);
    cr_assert_neq(access(path, F_OK), 0, "a refused run leaves nothing");
    rm_rf(dir);
}
