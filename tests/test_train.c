/*
 * test_train.c - gradients and AdamW against the reference (tiny vectors,
 * ../shared/vectors/model/train; skipped when absent), finite-difference
 * checks of the backward pass on a random model (no reference needed),
 * and the 5-step loss trajectory.
 *
 * Tolerances (vectors README section 7): gradients within 1e-5 x max|ref|
 * per tensor, losses within 1e-5, AdamW from the reference gradients within
 * 1 ulp-ish (we check 1e-6 absolute on |p| <= 5).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aria.h"
#include "cli_helpers.h"
#include "base/json.h"

#define VEC "../shared/vectors/model"

static int have_vectors(void) { return access(VEC "/train/grads_f32.safetensors", R_OK) == 0; }

static int32_t *batch_ids(size_t *T) {
    json_doc *d;
    char e[256];
    cr_assert_eq(json_parse_file(VEC "/inputs.json", &d, e, sizeof e), ARIA_OK, "%s", e);
    const json_value *a = json_get(json_root(d), "nocturne_200"), *b = json_get(json_root(d), "old_bach_200");
    *T = json_len(a);
    int32_t *ids = malloc(2 * *T * sizeof *ids);
    for (size_t i = 0; i < *T; i++) {
        ids[i] = (int32_t)json_int(json_at(a, i));
        ids[*T + i] = (int32_t)json_int(json_at(b, i));
    }
    json_doc_free(d);
    return ids;
}

static aria_trainer *ref_trainer(aria_model **m, size_t *T, int32_t **ids) {
    aria_error err = {{0}};
    cr_assert_eq(aria_model_load(m, VEC "/tiny_lm_f32.safetensors", NULL, &err), ARIA_OK, "%s", err.msg);
    *ids = batch_ids(T);
    aria_trainer *t;
    cr_assert_eq(aria_trainer_new(&t, *m, 2, (int)*T, &err), ARIA_OK, "%s", err.msg);
    aria_trainer_set_exact(t, 1);
    return t;
}

/* The larger of a and b, NaN when either is NaN (fmax would drop it, so
   a NaN gradient would pass a "max |diff| <= tol" check). */
static double max_or_nan(double a, double b) { return isnan(a) || isnan(b) ? NAN : a > b ? a : b; }

static void tensor_f32(const aria_tensor *x, float *out, size_t n) {
    cr_assert_eq(x->dtype, ARIA_DT_F32);
    cr_assert_eq(x->nbytes, n * 4, "%s", x->name);
    memcpy(out, x->data, n * 4);
}

Test(train_ref, gradients_match) {
    if (!have_vectors()) cr_skip("needs " VEC);
    aria_model *m;
    size_t T;
    int32_t *ids;
    aria_trainer *t = ref_trainer(&m, &T, &ids);
    float loss;
    aria_error err = {{0}};
    aria_trainer_zero_grad(t);
    cr_assert_eq(aria_trainer_backward(t, ids, 1.0f, &loss, &err), ARIA_OK, "%s", err.msg);
    cr_expect(fabsf(loss - 10.313637733459473f) <= 1e-5f, "loss %.9g", loss);
    aria_safetensors st;
    cr_assert_eq(aria_st_open(&st, VEC "/train/grads_f32.safetensors", &err), ARIA_OK, "%s", err.msg);
    cr_assert_geq(st.n_tensors, 22);
    for (size_t i = 0; i < st.n_tensors; i++) {
        size_t n;
        const float *g = aria_trainer_grad(t, st.tensors[i].name, &n);
        cr_assert(g, "no gradient for %s", st.tensors[i].name);
        float *ref = malloc(n * sizeof *ref);
        tensor_f32(&st.tensors[i], ref, n);
        double maxref = 0, maxd = 0;
        for (size_t k = 0; k < n; k++) {
            maxref = max_or_nan(maxref, fabs(ref[k]));
            maxd = max_or_nan(maxd, fabs((double)g[k] - ref[k]));
        }
        cr_expect(maxd <= 1e-5 * maxref, "%s: max |diff| %.3g, max |ref| %.3g", st.tensors[i].name, maxd, maxref);
        free(ref);
    }
    aria_st_close(&st);
    aria_trainer_free(t);
    aria_model_free(m);
    free(ids);
}

Test(train_ref, adamw_step_and_loss_trajectory) {
    if (!have_vectors()) cr_skip("needs " VEC);
    aria_model *m;
    size_t T;
    int32_t *ids;
    aria_trainer *t = ref_trainer(&m, &T, &ids);
    aria_adamw_opts o = aria_adamw_defaults();
    const float want[6] = {10.313637733459473f, 10.203963279724121f, 10.095069885253906f,
                           9.987360000610352f,  9.881168365478516f,  9.776747703552246f};
    aria_error err = {{0}};
    for (int step = 0; step <= 5; step++) {
        float loss;
        aria_trainer_zero_grad(t);
        cr_assert_eq(aria_trainer_backward(t, ids, 1.0f, &loss, &err), ARIA_OK, "%s", err.msg);
        cr_expect(fabsf(loss - want[step]) <= 1e-5f, "L%d = %.9g, reference %.9g", step, loss, want[step]);
        if (step == 5) break;
        aria_trainer_adamw(t, &o, o.lr);
        if (step == 0) { /* parameters after one step */
            aria_safetensors st;
            cr_assert_eq(aria_st_open(&st, VEC "/train/tiny_lm_adamw_step1_f32.safetensors", &err), ARIA_OK);
            for (size_t i = 0; i < st.n_tensors; i++) {
                size_t n;
                const float *p = aria_trainer_param(t, st.tensors[i].name, &n);
                cr_assert(p, "%s", st.tensors[i].name);
                float *ref = malloc(n * sizeof *ref);
                tensor_f32(&st.tensors[i], ref, n);
                double maxd = 0;
                for (size_t k = 0; k < n; k++) maxd = max_or_nan(maxd, fabs((double)p[k] - ref[k]));
                cr_expect(maxd <= 1e-6, "%s after one step: max |diff| %.3g", st.tensors[i].name, maxd);
                free(ref);
            }
            aria_st_close(&st);
        }
    }
    aria_trainer_free(t);
    aria_model_free(m);
    free(ids);
}

/* ---- finite differences on a small random model ---------------------- */

Test(train, gradients_match_finite_differences) {
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, "tiny"), ARIA_OK);
    c.vocab_size = 17727;
    aria_model *m;
    aria_error err = {{0}};
    cr_assert_eq(aria_model_new_random(&m, &c, ARIA_HEAD_LM, 3, &err), ARIA_OK, "%s", err.msg);
    int T = 12;
    int32_t ids[2 * 12];
    for (int i = 0; i < 2 * T; i++) ids[i] = (i * 131 + 7) % 17727;
    ids[T - 1] = ARIA_SP_PAD; /* a <P> target is ignored */
    aria_trainer *t;
    cr_assert_eq(aria_trainer_new(&t, m, 2, T, &err), ARIA_OK, "%s", err.msg);
    aria_trainer_set_exact(t, 1); /* float32 losses resolve a 1e-2 step */
    cr_assert(aria_trainer_is_exact(t));
    float loss;
    aria_trainer_zero_grad(t);
    cr_assert_eq(aria_trainer_backward(t, ids, 1.0f, &loss, &err), ARIA_OK);
    /* probe a few entries of every kind of parameter */
    const char *names[] = {"model.tok_embeddings.weight", "model.encode_layers.0.mixed_qkv.weight",
                           "model.encode_layers.1.att_proj_linear.weight", "model.encode_layers.0.ff_gate_proj.weight",
                           "model.encode_layers.1.ff_up_proj.weight", "model.encode_layers.0.ff_down_proj.weight",
                           "model.encode_layers.1.norm1.weight", "model.encode_layers.0.norm2.bias",
                           "model.out_layer_norm.weight", "lm_head.weight"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        size_t n;
        float *p = (float *)aria_trainer_param(t, names[k], &n);
        const float *g = aria_trainer_grad(t, names[k], NULL);
        cr_assert(p && g, "%s", names[k]);
        /* the entry with the largest gradient, so the difference is well above noise */
        size_t at = 0;
        for (size_t i = 0; i < n; i++)
            if (fabsf(g[i]) > fabsf(g[at])) at = i;
        float keep = p[at], h = 1e-2f * fmaxf(1.0f, fabsf(keep));
        float lp, lm;
        p[at] = keep + h;
        cr_assert_eq(aria_trainer_loss(t, ids, &lp, &err), ARIA_OK);
        p[at] = keep - h;
        cr_assert_eq(aria_trainer_loss(t, ids, &lm, &err), ARIA_OK);
        p[at] = keep;
        double fd = ((double)lp - lm) / (2.0 * h);
        cr_expect(fabs(fd - g[at]) <= 0.05 * fabs(g[at]) + 1e-4, "%s[%zu]: backward %.6g, finite difference %.6g",
                  names[k], at, g[at], fd);
    }
    /* clipping scales to the requested norm */
    float norm = aria_trainer_clip(t, 0.0f);
    cr_expect_gt(norm, 0.0f);
    aria_trainer_clip(t, norm / 2);
    cr_expect(fabsf(aria_trainer_clip(t, 0.0f) - norm / 2) <= 1e-3f * norm);
    aria_trainer_free(t);
    aria_model_free(m);
}

/* ---- the model owns its weights ---------------------------------------- */

/* Logits of every position of ids (one row) through a session. */
static float *session_logits(aria_model *m, const int32_t *ids, int T) {
    aria_session *s;
    aria_error err = {{0}};
    cr_assert_eq(aria_session_new(&s, m, 1, T, &err), ARIA_OK, "%s", err.msg);
    float *out = malloc((size_t)T * 17727 * sizeof *out);
    cr_assert_eq(aria_session_forward(s, ids, T, ARIA_OUT_LOGITS, 1, out, &err), ARIA_OK, "%s", err.msg);
    aria_session_free(s);
    return out;
}

/* A trainer borrows the model's weights and gives them back trained:
   after aria_trainer_free the model still answers (no read of freed
   memory; make test-asan runs this), with exactly the weights a save of
   the trained model holds. */
Test(train, inference_after_the_trainer_is_freed) {
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, "tiny"), ARIA_OK);
    aria_model *m;
    aria_error err = {{0}};
    cr_assert_eq(aria_model_new_random(&m, &c, ARIA_HEAD_LM, 5, &err), ARIA_OK, "%s", err.msg);
    int T = 16;
    int32_t ids[16];
    for (int i = 0; i < T; i++) ids[i] = (i * 977 + 31) % 17727;
    float *before = session_logits(m, ids, T);
    aria_trainer *t;
    cr_assert_eq(aria_trainer_new(&t, m, 1, T, &err), ARIA_OK, "%s", err.msg);
    aria_trainer_set_exact(t, 1);
    aria_adamw_opts o = aria_adamw_defaults();
    float loss;
    aria_trainer_zero_grad(t);
    cr_assert_eq(aria_trainer_backward(t, ids, 1.0f, &loss, &err), ARIA_OK, "%s", err.msg);
    aria_trainer_adamw(t, &o, 1e-2f);
    aria_trainer_free(t);

    char path[] = "/tmp/aria_trained_XXXXXX";
    close(mkstemp(path));
    cr_assert_eq(aria_model_save(m, path, ARIA_DT_F32, &err), ARIA_OK, "%s", err.msg);
    aria_model *back;
    cr_assert_eq(aria_model_load(&back, path, NULL, &err), ARIA_OK, "%s", err.msg);
    float *after = session_logits(m, ids, T), *reloaded = session_logits(back, ids, T);
    size_t n = (size_t)T * 17727;
    cr_expect(memcmp(after, reloaded, n * sizeof *after) == 0, "the freed trainer's model and its saved copy differ");
    double moved = 0;
    for (size_t i = 0; i < n; i++) moved = max_or_nan(moved, fabs((double)after[i] - before[i]));
    cr_expect(moved > 1e-4, "one AdamW step at lr 1e-2 moved the logits by only %.3g", moved);
    free(before);
    free(after);
    free(reloaded);
    aria_model_free(back);
    aria_model_free(m);
    unlink(path);
}

/* Every tensor of every head is a parameter of the trainer, by its
   official name, the embedding adapter included: the arena holds each
   saved tensor once, in the table's order (token embeddings first, the
   adapter last). */
Test(train, every_head_is_a_parameter) {
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, "tiny"), ARIA_OK);
    int heads = ARIA_HEAD_LM | ARIA_HEAD_EMB | ARIA_HEAD_CLS | ARIA_HEAD_ADAPTER;
    aria_model *m;
    aria_error err = {{0}};
    cr_assert_eq(aria_model_new_random(&m, &c, heads, 8, &err), ARIA_OK, "%s", err.msg);
    char path[] = "/tmp/aria_heads_XXXXXX";
    close(mkstemp(path));
    cr_assert_eq(aria_model_save(m, path, ARIA_DT_F32, &err), ARIA_OK, "%s", err.msg);
    aria_safetensors st;
    cr_assert_eq(aria_st_open(&st, path, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(st.n_tensors, 3 + 9 * 2 + 4);
    aria_trainer *t;
    cr_assert_eq(aria_trainer_new(&t, m, 1, 8, &err), ARIA_OK, "%s", err.msg);
    float *params, *grads;
    size_t total, sum = 0;
    aria_trainer_arena(t, &params, &grads, &total);
    char *used = calloc(total, 1);
    for (size_t i = 0; i < st.n_tensors; i++) {
        size_t n = 0;
        const float *p = aria_trainer_param(t, st.tensors[i].name, &n);
        cr_assert(p && aria_trainer_grad(t, st.tensors[i].name, NULL), "%s is not a parameter", st.tensors[i].name);
        cr_assert(p >= params && p + n <= params + total, "%s lies outside the arena", st.tensors[i].name);
        cr_expect_eq(n * 4, st.tensors[i].nbytes, "%s", st.tensors[i].name);
        cr_expect(memcmp(p, st.tensors[i].data, n * 4) == 0, "%s differs from its saved copy", st.tensors[i].name);
        for (size_t k = 0; k < n; k++) cr_assert(!used[p - params + k]++, "%s overlaps another", st.tensors[i].name);
        sum += n;
    }
    cr_expect_eq(sum, total, "the arena holds exactly the saved tensors");
    free(used);
    size_t ne, na;
    cr_expect_eq(aria_trainer_param(t, "model.tok_embeddings.weight", &ne), params);
    const float *adapter = aria_trainer_param(t, "embedding_adapter.weight", &na);
    cr_expect_eq(na, (size_t)c.d_model * c.emb_size);
    cr_expect_eq(adapter, params + total - na);
    aria_st_close(&st);
    aria_trainer_free(t);
    aria_model_free(m);
    unlink(path);
}

/* Profiling is off unless asked, and then sums time by kind. */
Test(train, profile_by_kind) {
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, "tiny"), ARIA_OK);
    aria_model *m;
    aria_error err = {{0}};
    cr_assert_eq(aria_model_new_random(&m, &c, ARIA_HEAD_LM, 4, &err), ARIA_OK, "%s", err.msg);
    aria_trainer *t;
    cr_assert_eq(aria_trainer_new(&t, m, 2, 32, &err), ARIA_OK, "%s", err.msg);
    int32_t ids[64];
    for (int i = 0; i < 64; i++) ids[i] = (i * 389 + 3) % 17727;
    float loss;
    const char *names[16];
    double secs[16];
    cr_assert_eq(aria_trainer_backward(t, ids, 1.0f, &loss, &err), ARIA_OK, "%s", err.msg);
    int n = aria_trainer_profile(t, names, secs, 16);
    cr_assert_eq(n, 7);
    double total = 0;
    for (int k = 0; k < n; k++) total += secs[k];
    cr_expect_eq(total, 0.0, "nothing is timed while profiling is off");
    aria_trainer_set_profile(t, 1);
    cr_assert_eq(aria_trainer_backward(t, ids, 1.0f, &loss, &err), ARIA_OK, "%s", err.msg);
    aria_trainer_adamw(t, &(aria_adamw_opts){3e-4f, 0.9f, 0.95f, 1e-5f, 0.1f}, 3e-4f);
    cr_expect_eq(aria_trainer_profile(t, names, secs, 2), 7, "the count, whatever the room");
    aria_trainer_profile(t, names, secs, 16);
    cr_expect_str_eq(names[0], "products");
    cr_expect_str_eq(names[5], "optimizer");
    cr_expect_gt(secs[0], 0.0);
    cr_expect_gt(secs[5], 0.0);
    for (int k = 0; k < n; k++) cr_expect_geq(secs[k], 0.0, "%s", names[k]);
    aria_trainer_free(t);
    aria_model_free(m);
}

/* ---- the fast precision against the exact one ------------------------- */

/* Gradients of every tensor, and the loss, of one batch in both
   precisions on the same weights. bfloat16 products keep about 3
   significant digits, so each tensor's fast gradient must lie within 5 %
   (relative L2) of the exact one; the attention and softmax pieces of
   the fast path run in float32 and are checked tighter through a model
   whose products are exact either way (no oneDNN: ARIA_PRECISION is not
   consulted here, the trainer is told). */
static void grads_of(const aria_model_config *c, const int32_t *ids, int B, int T, int exact, float *loss,
                     float **out, size_t *n) {
    aria_model *m; /* a trainer takes the model's weights for good: one model each */
    aria_trainer *t;
    aria_error err = {{0}};
    cr_assert_eq(aria_model_new_random(&m, c, ARIA_HEAD_LM, 11, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_trainer_new(&t, m, B, T, &err), ARIA_OK, "%s", err.msg);
    aria_trainer_set_exact(t, exact);
    aria_trainer_zero_grad(t);
    cr_assert_eq(aria_trainer_backward(t, ids, 1.0f, loss, &err), ARIA_OK, "%s", err.msg);
    float *p, *g;
    aria_trainer_arena(t, &p, &g, n);
    *out = malloc(*n * sizeof **out);
    memcpy(*out, g, *n * sizeof **out);
    aria_trainer_free(t);
    aria_model_free(m);
}

Test(train, fast_precision_follows_exact) {
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, "tiny"), ARIA_OK);
    /* 2 x 150 tokens: more than two attention blocks of queries */
    int B = 2, T = 150;
    int32_t *ids = malloc((size_t)B * T * sizeof *ids);
    uint64_t s = 5;
    for (int i = 0; i < B * T; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        ids[i] = (int32_t)((s >> 33) % (uint64_t)c.vocab_size);
        if (ids[i] == ARIA_SP_PAD) ids[i] = 7;
    }
    ids[T + 100] = ARIA_SP_PAD;
    size_t n, n2;
    float *ge, *gf, le, lf;
    grads_of(&c, ids, B, T, 1, &le, &ge, &n);
    grads_of(&c, ids, B, T, 0, &lf, &gf, &n2);
    cr_assert_eq(n, n2);
    cr_expect(fabsf(le - lf) <= 2e-3f * fabsf(le), "loss exact %.7g, fast %.7g", le, lf);
    /* the whole gradient, and its largest tensors (the arena is in
       state-dict order: tok_embeddings first, lm_head last) */
    double dd = 0, ee = 0;
    for (size_t i = 0; i < n; i++) {
        dd += ((double)gf[i] - ge[i]) * ((double)gf[i] - ge[i]);
        ee += (double)ge[i] * ge[i];
    }
    cr_expect_gt(ee, 0.0);
    cr_expect(sqrt(dd / ee) <= 0.05, "relative L2 difference of the gradients %.4g", sqrt(dd / ee));
    size_t nl = (size_t)c.vocab_size * c.d_model;
    dd = ee = 0;
    for (size_t i = n - nl; i < n; i++) {
        dd += ((double)gf[i] - ge[i]) * ((double)gf[i] - ge[i]);
        ee += (double)ge[i] * ge[i];
    }
    cr_expect(sqrt(dd / ee) <= 0.05, "lm_head: relative L2 difference %.4g", sqrt(dd / ee));
    /* layer 0's mixed_qkv, right after tok_embeddings and the final norm:
       its gradient goes through the attention backward of both layers */
    size_t q0 = nl + 2 * (size_t)c.d_model, nq = 3 * (size_t)c.d_model * c.d_model;
    dd = ee = 0;
    for (size_t i = q0; i < q0 + nq; i++) {
        dd += ((double)gf[i] - ge[i]) * ((double)gf[i] - ge[i]);
        ee += (double)ge[i] * ge[i];
    }
    cr_expect_gt(ee, 0.0);
    cr_expect(sqrt(dd / ee) <= 0.05, "layer 0 mixed_qkv: relative L2 difference %.4g", sqrt(dd / ee));
    cr_log_info("fast vs exact: loss %.7g vs %.7g; qkv0 rel L2 %.3g", lf, le, sqrt(dd / ee));
    free(ge);
    free(gf);
    free(ids);
}

/* ---- aria train: kill -9 and resume ------------------------------------ */

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>



/* "step loss lr grad_norm" of each step line, without the timing fields */
static void step_fields(const char *log, char *out, size_t cap) {
    FILE *f = fopen(log, "r");
    cr_assert(f, "%s", log);
    char line[512];
    size_t o = 0;
    out[0] = 0;
    while (fgets(line, sizeof line, f)) {
        char *tp = strstr(line, ", \"tokens_per_s\"");
        if (tp) *tp = 0;
        o += (size_t)snprintf(out + o, cap - o, "%s\n", line);
        if (o >= cap) break;
    }
    fclose(f);
}

/* DIR/data: a dataset of 64-id sequences from four reference files (the
   third one given) with extra options. */
static void make_data(const char *dir, const char *third, const char *extra) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s dataset --out %s/data --seq-len 64 --filters none %s tests/data/vectors/basic "
             "tests/data/vectors/waltz %s tests/data/vectors/yesterday 2>/dev/null",
             aria_bin(), dir, extra, third);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

Test(train_cli, killed_run_resumes_to_the_same_losses) {
    char dir[] = "/tmp/aria_train_XXXXXX";
    cr_assert(mkdtemp(dir));
    char cmd[4096];
    make_data(dir, "tests/data/vectors/synth_tie_order", "");
    const char *args = "--config tiny --batch 2 --steps 10 --save-every 2 --warmup 3 --seed 9";
    snprintf(cmd, sizeof cmd, "%s train --data %s/data --out %s/a %s 2>/dev/null", aria_bin(), dir, dir, args);
    cr_assert_eq(system(cmd), 0, "%s", cmd);

    /* the same run, killed once a few steps are logged */
    char log_b[600];
    snprintf(log_b, sizeof log_b, "%s/b/log.jsonl", dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        char data[600], out[600];
        snprintf(data, sizeof data, "%s/data", dir);
        snprintf(out, sizeof out, "%s/b", dir);
        freopen("/dev/null", "w", stderr);
        execl(aria_bin(), "aria", "train", "--data", data, "--out", out, "--config", "tiny", "--batch", "2",
              "--steps", "10", "--save-every", "2", "--warmup", "3", "--seed", "9", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 6000 && count_step_lines(log_b) < 5; i++) usleep(5000);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    int done_before = count_step_lines(log_b);
    cr_expect(WIFSIGNALED(st) && done_before < 10, "the run was not interrupted (%d steps)", done_before);

    snprintf(cmd, sizeof cmd, "%s train --resume %s/b 2>/dev/null", aria_bin(), dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    static char a[8192], b[8192];
    char log_a[600];
    snprintf(log_a, sizeof log_a, "%s/a/log.jsonl", dir);
    step_fields(log_a, a, sizeof a);
    step_fields(log_b, b, sizeof b);
    cr_expect_eq(count_step_lines(log_a), 10);
    cr_expect_str_eq(b, a, "resumed log differs:\n%s\nuninterrupted:\n%s", b, a);

    /* the weights it leaves load for inference */
    snprintf(cmd, sizeof cmd, "%s/b/model.safetensors", dir);
    aria_model *m;
    aria_error err = {{0}};
    cr_expect_eq(aria_model_load(&m, cmd, NULL, &err), ARIA_OK, "%s", err.msg);
    if (!err.msg[0]) aria_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

Test(train_cli, bad_usage_and_input) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s train --data /nonexistent --out /tmp/aria_train_bad --config tiny 2>/dev/null",
             aria_bin());
    int st = system(cmd);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    snprintf(cmd, sizeof cmd, "%s train --data x 2>/dev/null", aria_bin());
    st = system(cmd);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    snprintf(cmd, sizeof cmd, "rm -rf /tmp/aria_train_bad");
    cr_expect_eq(system(cmd), 0);
}

/* --val-batches K validates on the first K batches only: with one batch of
   a multi-batch val split the loss differs from the full one, and the
   option is kept in run.json for --resume. */
static double last_val_loss(const char *log) {
    FILE *f = fopen(log, "r");
    cr_assert(f, "%s", log);
    char line[512];
    double v = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"val_loss\": ");
        if (p) v = atof(p + 12);
    }
    fclose(f);
    return v;
}

Test(train_cli, val_batches_limits_validation) {
    char dir[] = "/tmp/aria_train_XXXXXX";
    cr_assert(mkdtemp(dir));
    char cmd[4096], log[600];
    make_data(dir, "tests/data/vectors/nocturne", "--val-fraction 0.5");
    const char *args = "--config tiny --batch 1 --steps 1 --val-every 1 --seed 3";
    snprintf(cmd, sizeof cmd, "%s train --data %s/data --out %s/all %s 2>/dev/null", aria_bin(), dir, dir, args);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s train --data %s/data --out %s/one %s --val-batches 1 2>/dev/null", aria_bin(), dir,
             dir, args);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(log, sizeof log, "%s/all/log.jsonl", dir);
    double all = last_val_loss(log);
    snprintf(log, sizeof log, "%s/one/log.jsonl", dir);
    double one = last_val_loss(log);
    cr_expect(all > 0 && one > 0, "val_loss logged: all %.6f, one batch %.6f", all, one);
    cr_expect_neq(all, one, "one batch of several gave the full split's loss %.6f", all);
    snprintf(log, sizeof log, "%s/one/run.json", dir);
    FILE *f = fopen(log, "r");
    cr_assert(f);
    char buf[4096] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    cr_expect(strstr(buf, "\"val_batches\": 1,") != NULL, "run.json: %s", buf);
    cr_expect(strstr(buf, "\"precision\": \"fast\"") || strstr(buf, "\"precision\": \"exact\""), "run.json: %s", buf);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

/* Resuming says what it did: a finished run has no steps left (exit 0,
   nothing rewritten), a run without a checkpoint names its directory, a
   resumed run ends with its last losses and where the weights are. */
Test(train_cli, resume_says_what_it_did) {
    char dir[] = "/tmp/aria_train_XXXXXX";
    cr_assert(mkdtemp(dir));
    char cmd[4096], errf[700], err[4096];
    make_data(dir, "tests/data/vectors/synth_tie_order", "");
    snprintf(errf, sizeof errf, "%s/err.txt", dir);
    snprintf(cmd, sizeof cmd, "%s train --data %s/data --out %s/a --config tiny --batch 2 --steps 2 --threads 1 2>%s",
             aria_bin(), dir, dir, errf);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s train --resume %s/a 2>%s", aria_bin(), dir, errf);
    cr_expect_eq(system(cmd), 0, "%s", cmd);
    FILE *f = fopen(errf, "r");
    size_t n = f ? fread(err, 1, sizeof err - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    cr_expect(strstr(err, "no steps left to run") != NULL, "%s", err);
    snprintf(cmd, sizeof cmd, "%s/a/log.jsonl", dir);
    cr_expect_eq(count_step_lines(cmd), 2);
    /* the checkpoint pointer gone: the run directory is named */
    snprintf(cmd, sizeof cmd, "rm %s/a/checkpoint.json && %s train --resume %s/a 2>%s", dir, aria_bin(), dir, errf);
    int st = system(cmd);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "%s", cmd);
    f = fopen(errf, "r");
    n = f ? fread(err, 1, sizeof err - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    char want[700];
    snprintf(want, sizeof want, "aria: %s/a: no checkpoint to resume from", dir);
    cr_expect(strstr(err, want) == err, "%s", err);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}
