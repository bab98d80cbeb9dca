/*
 * model_helpers.h - a random model of the tiny preset for the tests that
 * need one (include after criterion and aria.h).
 */
#ifndef ARIA_TESTS_MODEL_HELPERS_H
#define ARIA_TESTS_MODEL_HELPERS_H

/* The tiny preset with the heads `heads`, weights drawn from seed. */
static inline aria_model *tiny_model(int heads, uint64_t seed) {
    aria_model_config c;
    cr_assert_eq(aria_config_preset(&c, "tiny"), ARIA_OK);
    aria_model *m;
    aria_error err = {{0}};
    cr_assert_eq(aria_model_new_random(&m, &c, heads, seed, &err), ARIA_OK, "%s", err.msg);
    return m;
}

/* A model file loaded onto a new context of 2 threads in precision prec
   (the caller frees both). */
static inline aria_model *load_model_on(const char *file, aria_precision prec, aria_ctx **ctx) {
    aria_model *m;
    aria_error err = {{0}};
    aria_ctx_opts o = {.threads = 2, .precision = prec};
    cr_assert_eq(aria_ctx_new(ctx, &o, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_model_load(&m, file, NULL, &err), ARIA_OK, "%s: %s", file, err.msg);
    aria_model_set_ctx(m, *ctx);
    return m;
}

/* The logits of every position of one row of T ids (malloc'd, T x vocab). */
static inline float *logits_of_ids(aria_model *m, const int32_t *ids, int T) {
    int V = aria_output_dim(m, ARIA_OUT_LOGITS);
    float *out = malloc((size_t)T * V * sizeof *out);
    cr_assert_not_null(out);
    aria_session *s;
    aria_error err = {{0}};
    cr_assert_eq(aria_session_new(&s, m, 1, T, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_session_forward(s, ids, T, ARIA_OUT_LOGITS, 1, out, &err), ARIA_OK, "%s", err.msg);
    aria_session_free(s);
    return out;
}

#endif
