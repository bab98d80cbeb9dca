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
#include "json.h"

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
    return t;
}

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
            maxref = fmax(maxref, fabs(ref[k]));
            maxd = fmax(maxd, fabs((double)g[k] - ref[k]));
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
                for (size_t k = 0; k < n; k++) maxd = fmax(maxd, fabs((double)p[k] - ref[k]));
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
