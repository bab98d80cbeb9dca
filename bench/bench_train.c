/*
 * bench_train.c - training speed of the transformer (issue 4, item 6):
 * tokens/s and model FLOP utilisation of full optimizer steps on a shape,
 * through the public trainer API only, as `aria train` drives it.
 *
 *   build/bench_train [--shape tiny|small|medium] [--config FILE]
 *                     [--batch B] [--seq T] [--reps N] [--threads N]
 *                     [--precision fast|exact] [--peak-gflops G]
 *                     [--model FILE] [--seed S]
 *
 * Shapes (bench/run_train.sh passes configs/tiny.json and
 * configs/medium.json with --config; without it the built-in presets of
 * the same numbers are used):
 *   tiny    d_model 64, 4 heads, 2 layers, ff_mult 4, vocab 17727
 *   small   d_model 512, 8 heads, 8 layers, ff_mult 4, vocab 17727
 *   medium  d_model 1536, 24 heads, 16 layers, ff_mult 4, vocab 17727
 * max_seq_len is raised to --seq when the shape's is shorter (RoPE has no
 * learned positions, so the weights do not change).
 *
 * The model: aria_model_new_random (normal, std 0.02; LayerNorm 1 / 0)
 * with an lm_head (setup_s: 1.4 s for the small shape's 52 M parameters,
 * about 20 s for medium's 658 M), or --model FILE loaded like any
 * checkpoint (bench_model's /tmp/aria-bench-medium-f32.safetensors
 * serves). The trainer: aria_trainer_new(m, B, T), aria_trainer_set_exact
 * (fast: bfloat16 products through oneDNN; exact: float32 everywhere).
 *
 * A step, timed as a whole and by phase:
 *   aria_trainer_zero_grad
 *   aria_trainer_backward(ids, 1.0)   forward + backward ("fwdbwd")
 *   aria_trainer_clip(1.0)            global norm, clip
 *   aria_trainer_adamw(3e-4)          AdamW (torch defaults of aria train)
 * ids: B x T uniform in [0, vocab) except <P> (whose targets the loss
 * ignores), fresh each step. One warm-up step (it packs the weights),
 * then --reps timed steps; each metric is the median, min and max over
 * them.
 *
 * FLOPs per token, the count of the trainer's own log (src/tasks/trainloop.c,
 * flops_per_token: the mfu of log.jsonl):
 *   6 (L (4 d^2 + 3 d ff) + V d) + 6 L d (T + 1)
 * the matrix weights of the layers and the lm_head, 6 per weight (forward
 * 2, backward 4; the token embedding is a lookup, not counted), plus
 * causal attention: q k^T and p v over (T+1)/2 keys per query on average,
 * 2 x 2 d (T+1)/2 flops forward per layer, times 3 with the backward.
 * This count gives train_gflops and train_mfu.
 * MFU = GFLOP/s over --peak-gflops (bench/run_train.sh passes oneDNN's own
 * bf16 GEMM peak measured by `bench_model --micro` in the same run);
 * without a peak no MFU is printed.
 *
 * Output: a summary, and lines
 *   RESULT <metric> <median> <unit> min=<x> max=<y> n=<reps>
 * for bench/run_train.sh: train_step_s, train_tok_s, train_gflops,
 * train_mfu, fwdbwd_s, clip_s, adamw_s, zero_grad_s, cpu_pct, and single
 * values setup_s, first_step_s, loss_first, loss_last, params,
 * flops_per_token, peak_gflops, peak_rss_mb.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aria.h"
#include "bench_common.h"

/* The precision switch is new in aria.h; while src/model/train.c is being
   rewritten it may not be defined yet. Weak references let this program
   link either way: without the functions, ARIA_PRECISION (read by the
   kernels at their first use) is the only switch, and the run says so. */
#pragma weak aria_trainer_set_exact
#pragma weak aria_trainer_is_exact

/* ---------------------------------------------------------------------- */
/* helpers (the shared ones in bench_common.h)                            */
/* ---------------------------------------------------------------------- */

static void fill_ids(int32_t *ids, size_t n, int vocab, int pad) {
    for (size_t i = 0; i < n; i++) {
        int32_t v = (int32_t)(rnd() % (uint64_t)(vocab - 1));
        ids[i] = v >= pad ? v + 1 : v; /* uniform over [0, vocab) \ {pad} */
    }
}

static void die(const char *what, const aria_error *e) {
    fprintf(stderr, "bench_train: %s: %s\n", what, e->msg);
    exit(2);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_train [--shape tiny|small|medium] [--config FILE] [--batch B] [--seq T] [--reps N]\n"
                    "                   [--threads N] [--precision fast|exact] [--peak-gflops G] [--model FILE]\n"
                    "                   [--seed S]\n");
    exit(2);
}

/* ---------------------------------------------------------------------- */
/* shapes and FLOPs                                                       */
/* ---------------------------------------------------------------------- */

static int shape_config(aria_model_config *c, const char *shape) {
    if (!strcmp(shape, "tiny") || !strcmp(shape, "medium")) return aria_config_preset(c, shape);
    if (!strcmp(shape, "small")) {
        memset(c, 0, sizeof *c);
        c->d_model = 512;
        c->n_heads = 8;
        c->n_layers = 8;
        c->ff_mult = 4;
        c->max_seq_len = 8192;
        c->vocab_size = 17727;
        return ARIA_OK;
    }
    return ARIA_ERR_ARG;
}

/* FLOPs per token, as src/tasks/trainloop.c counts them for log.jsonl's mfu:
   6 per matrix weight of the layers and of the lm_head (no embedding, a
   lookup), plus causal attention, 6 L d (T + 1) */
static double flops_per_token(const aria_model_config *c, int T) {
    double d = c->d_model, ff = (double)c->ff_mult * d;
    return 6 * (c->n_layers * (4 * d * d + 3 * d * ff) + (double)c->vocab_size * d) + 6.0 * c->n_layers * d * (T + 1);
}

/* ---------------------------------------------------------------------- */

int main(int argc, char **argv) {
    const char *shape = "small", *config = NULL, *precision = "fast", *model_path = NULL;
    int batch = 0, seq = 512, reps = 5, threads = 0;
    double peak = 0;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--shape") && v) shape = v, i++;
        else if (!strcmp(a, "--config") && v) config = v, i++;
        else if (!strcmp(a, "--batch") && v) batch = atoi(v), i++;
        else if (!strcmp(a, "--seq") && v) seq = atoi(v), i++;
        else if (!strcmp(a, "--reps") && v) reps = atoi(v), i++;
        else if (!strcmp(a, "--threads") && v) threads = atoi(v), i++;
        else if (!strcmp(a, "--precision") && v) precision = v, i++;
        else if (!strcmp(a, "--peak-gflops") && v) peak = atof(v), i++;
        else if (!strcmp(a, "--model") && v) model_path = v, i++;
        else if (!strcmp(a, "--seed") && v) seed = strtoull(v, NULL, 10), i++;
        else usage();
    }
    int exact = !strcmp(precision, "exact");
    if (!exact && strcmp(precision, "fast")) usage();
    if (reps < 1 || reps > BENCH_MAX_REPS || seq < 2) {
        fprintf(stderr, "bench_train: --reps 1..1024, --seq >= 2\n");
        return 2;
    }
    if (batch <= 0) batch = !strcmp(shape, "medium") ? 1 : 8;
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    /* Without aria_trainer_set_exact, the kernels' own switch (read once,
       at their first use) is the only one; set it before anything runs. */
    if (!aria_trainer_set_exact) setenv("ARIA_PRECISION", precision, 1);

    aria_error err = {{0}};
    aria_model_config cfg;
    if (config) {
        if (aria_config_read(&cfg, config, &err) != ARIA_OK) die(config, &err);
    } else if (shape_config(&cfg, shape) != ARIA_OK) {
        fprintf(stderr, "bench_train: unknown shape '%s' (tiny, small, medium)\n", shape);
        return 2;
    }
    cfg.emb_size = 0; /* an LM: no embedding or classifier head */
    cfg.class_size = 0;
    if (cfg.max_seq_len < seq) cfg.max_seq_len = seq;
    if (aria_config_check(&cfg, &err) != ARIA_OK) die("config", &err);

    aria_tokenizer *tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    int pad = tk ? aria_tok_id(tk, aria_tok_special(ARIA_SP_PAD)) : 2;
    aria_tokenizer_free(tk);
    if (pad < 0 || pad >= cfg.vocab_size) pad = cfg.vocab_size; /* nothing to avoid */

    printf("bench_train: shape %s (d %d, %d heads, %d layers, ff_mult %d, vocab %d), batch %d, seq %d, "
           "precision %s, threads %d, reps %d\n",
           config ? config : shape, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.ff_mult, cfg.vocab_size, batch, seq,
           precision, threads, reps);

    double t0 = now_s();
    aria_model *m;
    if (model_path) {
        if (aria_model_load(&m, model_path, &cfg, &err) != ARIA_OK) die(model_path, &err);
    } else if (aria_model_new_random(&m, &cfg, ARIA_HEAD_LM, seed, &err) != ARIA_OK) {
        die("aria_model_new_random", &err);
    }
    double t_model = now_s() - t0;
    aria_model_set_threads(m, threads);
    t0 = now_s();
    aria_trainer *t;
    if (aria_trainer_new(&t, m, batch, seq, &err) != ARIA_OK) die("aria_trainer_new", &err);
    if (aria_trainer_set_exact) aria_trainer_set_exact(t, exact);
    double t_trainer = now_s() - t0;
    const char *mode = aria_trainer_is_exact ? (aria_trainer_is_exact(t) ? "exact" : "fast")
                                             : "unknown (aria_trainer_set_exact not in the library; ARIA_PRECISION set)";
    printf("model: %s in %.2f s; trainer in %.2f s; precision in effect: %s; <P> id %d avoided\n",
           model_path ? model_path : "random", t_model, t_trainer, mode, pad);

    float *params, *grads;
    size_t n_params;
    aria_trainer_arena(t, &params, &grads, &n_params);

    size_t n_ids = (size_t)batch * seq;
    int32_t *ids = malloc(n_ids * sizeof *ids);
    double *v = malloc((size_t)7 * reps * sizeof *v);
    if (!ids || !v) {
        fprintf(stderr, "bench_train: out of memory\n");
        return 2;
    }
    double *step_s = v, *fb_s = v + reps, *clip_s = v + 2 * reps, *adam_s = v + 3 * reps, *zero_s = v + 4 * reps,
           *cpu_pct = v + 5 * reps;
    aria_adamw_opts ad = aria_adamw_defaults(); /* lr 3e-4, betas 0.9/0.95, eps 1e-5, wd 0.1 */
    const float lr = 3e-4f;
    float loss_first = NAN, loss_last = NAN;
    double first_step = 0;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        fill_ids(ids, n_ids, cfg.vocab_size, pad);
        float loss;
        double c0 = cpu_s(), a = now_s();
        aria_trainer_zero_grad(t);
        double b = now_s();
        if (aria_trainer_backward(t, ids, 1.0f, &loss, &err) != ARIA_OK) die("aria_trainer_backward", &err);
        double c = now_s();
        float norm = aria_trainer_clip(t, 1.0f);
        double d = now_s();
        aria_trainer_adamw(t, &ad, lr);
        double e = now_s();
        if (!isfinite(loss) || !isfinite(norm)) {
            fprintf(stderr, "bench_train: step %d: loss %g, grad norm %g\n", r + 1, loss, norm);
            return 1;
        }
        if (r < 0) {
            first_step = e - a;
            loss_first = loss;
            printf("warm-up step: %.3f s, loss %.4f, grad norm %.4f\n", first_step, loss, norm);
            continue;
        }
        loss_last = loss;
        step_s[r] = e - a;
        zero_s[r] = b - a;
        fb_s[r] = c - b;
        clip_s[r] = d - c;
        adam_s[r] = e - d;
        cpu_pct[r] = 100.0 * (cpu_s() - c0) / ((e - a) * threads);
        printf("step %d: %.3f s (zero %.3f, fwd+bwd %.3f, clip %.3f, adamw %.3f), loss %.4f, grad norm %.4f\n", r + 1,
               step_s[r], zero_s[r], fb_s[r], clip_s[r], adam_s[r], loss, norm);
        fflush(stdout);
    }

    double fl = flops_per_token(&cfg, seq), tok = (double)n_ids;
    double *tps = malloc((size_t)3 * reps * sizeof *tps);
    if (!tps) return 2;
    double *gf = tps + reps, *mfu = tps + 2 * reps;
    for (int r = 0; r < reps; r++) {
        tps[r] = tok / step_s[r];
        gf[r] = tps[r] * fl / 1e9;
        mfu[r] = peak > 0 ? 100.0 * gf[r] / peak : NAN;
    }
    result1("threads", threads, "threads");
    result1("batch", batch, "seqs");
    result1("seq", seq, "tokens");
    result1("params", (double)n_params, "floats");
    result1("setup_s", t_model + t_trainer, "s");
    result1("first_step_s", first_step, "s");
    result("train_step_s", stats_of(step_s, reps), "s");
    result("train_tok_s", stats_of(tps, reps), "tok/s");
    result1("flops_per_token", fl, "FLOP");
    result("train_gflops", stats_of(gf, reps), "GFLOP/s");
    if (peak > 0) {
        result1("peak_gflops", peak, "GFLOP/s");
        result("train_mfu", stats_of(mfu, reps), "%");
    }
    result("zero_grad_s", stats_of(zero_s, reps), "s");
    result("fwdbwd_s", stats_of(fb_s, reps), "s");
    result("clip_s", stats_of(clip_s, reps), "s");
    result("adamw_s", stats_of(adam_s, reps), "s");
    /* CPU time / (wall time x threads): below 100 the OS gave our threads
       less than their cores, or they waited */
    result("cpu_pct", stats_of(cpu_pct, reps), "%");
    result1("loss_first", loss_first, "nats");
    result1("loss_last", loss_last, "nats");
    result1("peak_rss_mb", vm_hwm_kb() / 1024.0, "MB");

    free(tps);
    free(v);
    free(ids);
    aria_trainer_free(t);
    aria_model_free(m);
    return 0;
}
