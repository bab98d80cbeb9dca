/*
 * test_adapter.c - training the embedding adapter (spec 3.3,
 * `aria train --condition-on`).
 *
 * A conditioned row is fed [adapter(emb), tok(ids[0]) .. tok(ids[T-2])]
 * and position j >= 1 is trained against ids[j]. The library tests check,
 * on the random tiny model: the adapter's (and the trunk's) gradients
 * against finite differences of the loss; that the trainer's conditioned
 * loss is the loss of the logits the generation path (a conditioned
 * session) gives for the same tokens, so training and inference agree on
 * what position 0 means; that aria_model_set_heads adds an adapter
 * without touching the rest; that a few conditioned steps lower the
 * conditioned loss. The CLI tests build a dataset with per-file
 * embeddings from a few test MIDI files (an embedding model made here)
 * and check the refusals, that --condition-p 0 is the plain run, that
 * --resume repeats an uninterrupted conditioned run, and that aria
 * generate --cfg runs on the result.
 *
 * The dropout suite covers the classifier recipe's residual dropout
 * (aria_trainer_set_dropout, aria train --dropout): p = 0 is bit for bit
 * no dropout, gradients with a fixed mask against finite differences, a
 * slice of rows draws what the whole batch draws, and a classify run's
 * losses with and without it.
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

#define V 17727
#define E 32 /* emb_size of the tiny preset */

static aria_model *tiny(int heads, uint64_t seed) { return tiny_model(heads, seed); }

static void some_embedding(float *e, int seed) {
    for (int i = 0; i < E; i++) e[i] = (float)sin(0.7 * i + seed) * 1.5f;
}

static void some_ids(int32_t *ids, int n, int salt) {
    for (int i = 0; i < n; i++) ids[i] = (i * 131 + 7 + salt * 17) % V;
}

Test(adapter, gradients_match_finite_differences) {
    aria_model *m = tiny(ARIA_HEAD_LM | ARIA_HEAD_ADAPTER, 3);
    int T = 12;
    int32_t ids[2 * 12];
    some_ids(ids, 2 * T, 0);
    ids[T + 5] = ARIA_SP_PAD; /* a <P> target is ignored */
    float emb[2 * E];
    some_embedding(emb, 1);
    some_embedding(emb + E, 2);
    unsigned char use[2] = {1, 0}; /* one conditioned row, one plain */
    aria_trainer *t;
    aria_error err = {{0}};
    cr_assert_eq(aria_trainer_new(&t, m, 2, T, &err), ARIA_OK, "%s", err.msg);
    aria_trainer_set_exact(t, 1);
    float loss;
    aria_trainer_zero_grad(t);
    cr_assert_eq(aria_trainer_backward_cond(t, ids, emb, use, 1.0f, &loss, &err), ARIA_OK, "%s", err.msg);
    const char *names[] = {"embedding_adapter.weight", "model.tok_embeddings.weight",
                           "model.encode_layers.0.mixed_qkv.weight", "model.encode_layers.1.ff_down_proj.weight",
                           "lm_head.weight"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        size_t n;
        float *p = (float *)aria_trainer_param(t, names[k], &n);
        const float *g = aria_trainer_grad(t, names[k], NULL);
        cr_assert(p && g, "%s", names[k]);
        size_t at = 0;
        for (size_t i = 0; i < n; i++)
            if (fabsf(g[i]) > fabsf(g[at])) at = i;
        cr_assert_gt(fabsf(g[at]), 1e-6f, "%s has no gradient", names[k]);
        float keep = p[at], h = 1e-2f * fmaxf(1.0f, fabsf(keep));
        float lp, lm;
        p[at] = keep + h;
        cr_assert_eq(aria_trainer_loss_cond(t, ids, emb, use, &lp, &err), ARIA_OK);
        p[at] = keep - h;
        cr_assert_eq(aria_trainer_loss_cond(t, ids, emb, use, &lm, &err), ARIA_OK);
        p[at] = keep;
        double fd = ((double)lp - lm) / (2.0 * h);
        cr_expect(fabs(fd - g[at]) <= 0.05 * fabs(g[at]) + 1e-4, "%s[%zu]: backward %.6g, finite difference %.6g",
                  names[k], at, g[at], fd);
    }
    /* the adapter's gradient is (d position 0) x emb of the conditioned
       row: every row of it is a multiple of emb[0..E) */
    const float *gA = aria_trainer_grad(t, "embedding_adapter.weight", NULL);
    for (int i = 0; i < 4; i++) {
        double ratio = gA[(size_t)i * E] / emb[0];
        for (int k = 1; k < E; k++)
            cr_expect(fabs(gA[(size_t)i * E + k] - ratio * emb[k]) <= 1e-5 * (fabs(ratio) + 1e-3), "row %d col %d",
                      i, k);
    }
    /* the token at position 0 of a conditioned row is replaced: its
       embedding row gets nothing from that position (ids[0] of row 0
       appears nowhere else, and the row's last id never goes in) */
    const float *gE = aria_trainer_grad(t, "model.tok_embeddings.weight", NULL);
    int d = aria_model_get_config(m)->d_model;
    aria_trainer_zero_grad(t);
    cr_assert_eq(aria_trainer_backward_cond(t, ids, emb, use, 1.0f, &loss, &err), ARIA_OK);
    double s_first = 0, s_last = 0;
    for (int i = 0; i < d; i++) s_last += fabs(gE[(size_t)ids[T - 1] * d + i]);
    for (int i = 0; i < d; i++) s_first += fabs(gE[(size_t)ids[0] * d + i]);
    cr_expect_gt(s_first, 0.0, "ids[0] goes in at position 1");
    cr_expect_eq(s_last, 0.0, "the last id falls off a conditioned row");
    /* a plain step leaves the adapter without gradient */
    aria_trainer_zero_grad(t);
    cr_assert_eq(aria_trainer_backward(t, ids, 1.0f, &loss, &err), ARIA_OK);
    double sa = 0;
    for (int i = 0; i < d * E; i++) sa += fabs(gA[i]);
    cr_expect_eq(sa, 0.0);
    aria_trainer_free(t);
    aria_model_free(m);
}

/* The conditioned loss of the trainer is the cross-entropy of the logits
   a conditioned session (generation's path) gives for the same tokens. */
Test(adapter, training_and_generation_agree) {
    aria_model *m = tiny(ARIA_HEAD_LM | ARIA_HEAD_ADAPTER, 7);
    /* a larger adapter, so that the embedding moves the logits clearly */
    size_t n_a;
    aria_trainer *t;
    aria_error err = {{0}};
    int T = 24;
    cr_assert_eq(aria_trainer_new(&t, m, 1, T, &err), ARIA_OK, "%s", err.msg);
    aria_trainer_set_exact(t, 1);
    float *A = (float *)aria_trainer_param(t, "embedding_adapter.weight", &n_a);
    for (size_t i = 0; i < n_a; i++) A[i] *= 20.0f;
    int32_t ids[24];
    some_ids(ids, T, 3);
    float emb[E];
    some_embedding(emb, 4);
    float lc, lp;
    cr_assert_eq(aria_trainer_loss_cond(t, ids, emb, NULL, &lc, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_trainer_loss(t, ids, &lp, &err), ARIA_OK);
    aria_trainer_free(t); /* the model keeps the trained (here: scaled) weights */

    aria_session *s;
    cr_assert_eq(aria_session_new(&s, m, 1, T, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(aria_session_condition(s, emb, E, NULL, &err), ARIA_OK, "%s", err.msg);
    float *lg = malloc((size_t)(T - 1) * V * sizeof *lg);
    cr_assert_eq(aria_session_forward(s, ids, T - 1, ARIA_OUT_LOGITS, 1, lg, &err), ARIA_OK, "%s", err.msg);
    double sum = 0;
    for (int j = 0; j < T - 1; j++) { /* token j sits at position j + 1 and predicts ids[j + 1] */
        const float *r = lg + (size_t)j * V;
        double mx = r[0], z = 0;
        for (int v = 1; v < V; v++) mx = fmax(mx, r[v]);
        for (int v = 0; v < V; v++) z += exp(r[v] - mx);
        sum += mx + log(z) - r[ids[j + 1]];
    }
    double want = sum / (T - 1);
    cr_expect(fabs(lc - want) <= 1e-5 * want, "trainer %.8g, session %.8g", lc, want);
    cr_expect_gt(fabs(lc - lp), 1e-3, "the embedding changes the loss (%.6g vs %.6g)", lc, lp);
    free(lg);
    aria_session_free(s);
    aria_model_free(m);
}

Test(adapter, set_heads_adds_an_adapter) {
    aria_model *m = tiny(ARIA_HEAD_LM, 5), *ref = tiny(ARIA_HEAD_LM, 5);
    aria_error err = {{0}};
    cr_assert_eq(aria_model_adapter_dim(m), 0);
    cr_assert_eq(aria_model_set_heads(m, ARIA_HEAD_LM | ARIA_HEAD_ADAPTER, 24, 0, 11, &err), ARIA_OK, "%s",
                 err.msg);
    cr_expect_eq(aria_model_adapter_dim(m), 24);
    cr_expect_eq(aria_model_get_config(m)->emb_size, 24);
    cr_expect_eq(aria_model_heads(m), ARIA_HEAD_LM | ARIA_HEAD_ADAPTER);
    size_t n = aria_model_n_tensors(m), nr = aria_model_n_tensors(ref);
    cr_expect_eq(n, nr + 1);
    for (size_t i = 0; i < n; i++) {
        aria_tensor a;
        cr_assert_eq(aria_model_tensor(m, i, &a), ARIA_OK);
        if (!strcmp(a.name, "embedding_adapter.weight")) {
            const float *w = a.data;
            size_t k = a.nbytes / 4;
            cr_expect_eq(k, (size_t)aria_model_get_config(m)->d_model * 24);
            double s2 = 0;
            for (size_t j = 0; j < k; j++) s2 += (double)w[j] * w[j];
            double sd = sqrt(s2 / k);
            cr_expect(sd > 0.015 && sd < 0.025, "adapter std %.4g, N(0, 0.02) expected", sd);
            continue;
        }
        aria_tensor b;
        cr_assert_eq(aria_model_tensor(ref, i, &b), ARIA_OK);
        cr_expect_str_eq(a.name, b.name);
        cr_expect(a.nbytes == b.nbytes && !memcmp(a.data, b.data, a.nbytes), "%s changed", a.name);
    }
    /* an adapter beside an emb_head of another size is refused */
    aria_model *e = tiny(ARIA_HEAD_EMB, 5);
    cr_expect_neq(aria_model_set_heads(e, ARIA_HEAD_EMB | ARIA_HEAD_ADAPTER, 16, 0, 1, &err), ARIA_OK);
    cr_expect_eq(aria_model_set_heads(e, ARIA_HEAD_EMB | ARIA_HEAD_ADAPTER, 0, 0, 1, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(aria_model_adapter_dim(e), E);
    aria_model_free(e);
    aria_model_free(m);
    aria_model_free(ref);
}

Test(adapter, conditioned_steps_lower_the_loss) {
    aria_model *m = tiny(ARIA_HEAD_LM | ARIA_HEAD_ADAPTER, 9);
    aria_trainer *t;
    aria_error err = {{0}};
    int B = 2, T = 16;
    cr_assert_eq(aria_trainer_new(&t, m, B, T, &err), ARIA_OK, "%s", err.msg);
    int32_t ids[2 * 16];
    some_ids(ids, B * T, 5);
    float emb[2 * E];
    some_embedding(emb, 1);
    some_embedding(emb + E, 6);
    aria_adamw_opts o = aria_adamw_defaults();
    float first = 0, loss = 0;
    for (int s = 0; s < 6; s++) {
        aria_trainer_zero_grad(t);
        cr_assert_eq(aria_trainer_backward_cond(t, ids, emb, NULL, 1.0f, &loss, &err), ARIA_OK, "%s", err.msg);
        if (!s) first = loss;
        aria_trainer_clip(t, 1.0f);
        aria_trainer_adamw(t, &o, 3e-3f);
    }
    float after;
    cr_assert_eq(aria_trainer_loss_cond(t, ids, emb, NULL, &after, &err), ARIA_OK);
    cr_expect_lt(after, first - 0.1f, "loss %.4f -> %.4f", first, after);
    /* refusals: no finite embedding, a model without an adapter */
    float bad[2 * E];
    memcpy(bad, emb, sizeof bad);
    bad[3] = NAN;
    cr_expect_eq(aria_trainer_loss_cond(t, ids, bad, NULL, &after, &err), ARIA_ERR_ARG);
    aria_trainer_free(t);
    aria_model_free(m);
    aria_model *plain = tiny(ARIA_HEAD_LM, 9);
    cr_assert_eq(aria_trainer_new(&t, plain, B, T, &err), ARIA_OK);
    cr_expect_eq(aria_trainer_backward_cond(t, ids, emb, NULL, 1.0f, &loss, &err), ARIA_ERR_ARG);
    cr_expect(strstr(err.msg, "embedding_adapter") != NULL, "%s", err.msg);
    aria_trainer_free(t);
    aria_model_free(plain);
}

/* ---- aria dataset --embedding-model, aria train --condition-on ---------- */

#include <signal.h>

/* Runs `aria ARGS`, stderr into err (cap bytes); the exit status. */
static int aria_run(const char *args, char *err, size_t cap) {
    static char cmd[16384];
    char ef[] = "/tmp/aria_adapter_errXXXXXX";
    int fd = mkstemp(ef);
    cr_assert(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>%s", aria_bin(), args, ef);
    int st = system(cmd);
    FILE *f = fopen(ef, "r");
    size_t n = f ? fread(err, 1, cap - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    unlink(ef);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* "step loss" of each step line, and how many were conditioned */
static void losses(const char *log, char *out, size_t cap, int *n_cond, int *n_plain) {
    FILE *f = fopen(log, "r");
    cr_assert(f, "%s", log);
    char line[512];
    size_t o = 0;
    out[0] = 0;
    *n_cond = *n_plain = 0;
    while (fgets(line, sizeof line, f)) {
        char *lp = strstr(line, "\"loss\": ");
        if (!lp) continue;
        o += (size_t)snprintf(out + o, cap - o, "%ld %.*s\n", atol(line + 9), 9, lp + 8);
        char *c = strstr(line, "\"cond\": ");
        if (c) *(atoi(c + 8) ? n_cond : n_plain) += 1;
        if (o >= cap) break;
    }
    fclose(f);
}

static int has(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

#define MIDIS "tests/data/vectors/waltz tests/data/vectors/nocturne tests/data/vectors/yesterday " \
              "tests/data/vectors/basic"

Test(adapter_cli, dataset_train_resume_generate) {
    char dir[] = "/tmp/aria_adapter_XXXXXX";
    cr_assert(mkdtemp(dir));
    static char a[8192], e[8192], p[1024];
    aria_error err = {{0}};
    aria_model *emb = tiny(ARIA_HEAD_EMB, 4), *other = tiny(ARIA_HEAD_EMB, 5), *gen = tiny(ARIA_HEAD_LM, 6);
    snprintf(p, sizeof p, "%s/emb.safetensors", dir);
    cr_assert_eq(aria_model_save(emb, p, ARIA_DT_F32, &err), ARIA_OK, "%s", err.msg);
    snprintf(p, sizeof p, "%s/other.safetensors", dir);
    cr_assert_eq(aria_model_save(other, p, ARIA_DT_F32, &err), ARIA_OK, "%s", err.msg);
    snprintf(p, sizeof p, "%s/gen.safetensors", dir);
    cr_assert_eq(aria_model_save(gen, p, ARIA_DT_F32, &err), ARIA_OK, "%s", err.msg);
    aria_model_free(emb), aria_model_free(other), aria_model_free(gen);

    /* the dataset: --embedding-model wants --sep-sequences */
    snprintf(a, sizeof a, "dataset --out %s/bad --seq-len 64 --embedding-model %s/emb.safetensors " MIDIS, dir, dir);
    cr_expect_eq(aria_run(a, e, sizeof e), 2, "%s", e);
    cr_expect(strstr(e, "--sep-sequences"), "%s", e);
    snprintf(a, sizeof a, "dataset --out %s/bad --seq-len 64 --sep-sequences --embedding-model %s/gen.safetensors " MIDIS,
             dir, dir);
    cr_expect_eq(aria_run(a, e, sizeof e), 1, "%s", e);
    cr_expect(strstr(e, "gen.safetensors") && strstr(e, "not an embedding model"), "%s", e);
    snprintf(p, sizeof p, "%s/bad", dir);
    cr_expect(!has(p), "a refused build leaves nothing");
    snprintf(a, sizeof a,
             "dataset --out %s/data --seq-len 64 --sep-sequences --filters none --val-fraction 0.3 --jobs 1 "
             "--embedding-model %s/emb.safetensors " MIDIS, dir, dir);
    cr_assert_eq(aria_run(a, e, sizeof e), 0, "%s", e);
    cr_expect(strstr(e, "embedded "), "%s", e);
    /* a plain one, for the refusal */
    snprintf(a, sizeof a, "dataset --out %s/plain --seq-len 64 --sep-sequences --filters none " MIDIS, dir);
    cr_assert_eq(aria_run(a, e, sizeof e), 0, "%s", e);

    /* the embeddings are aria embed's, one row per kept file */
    snprintf(p, sizeof p, "%s/data/embeddings.npy", dir);
    float *rows;
    size_t nr, nc;
    cr_assert_eq(aria_npy_read_f32(p, &rows, &nr, &nc, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(nc, (size_t)E);
    cr_expect_eq(nr, 8); /* four folders of a file and its decoded copy */
    snprintf(a, sizeof a, "embed --model %s/emb.safetensors -o %s/w.npy tests/data/vectors/waltz/waltz.mid", dir, dir);
    cr_assert_eq(aria_run(a, e, sizeof e), 0, "%s", e);
    snprintf(p, sizeof p, "%s/w.npy", dir);
    float *w;
    size_t wr, wc;
    cr_assert_eq(aria_npy_read_f32(p, &w, &wr, &wc, &err), ARIA_OK);
    int found = 0;
    for (size_t r = 0; r < nr; r++) found += !memcmp(rows + r * nc, w, (size_t)E * sizeof *w);
    cr_expect_eq(found, 1, "waltz.mid's row is aria embed's");
    free(w);
    free(rows);
    aria_dataset *ds;
    snprintf(p, sizeof p, "%s/data", dir);
    cr_assert_eq(aria_dataset_open(&ds, p, "train", &err), ARIA_OK, "%s", err.msg);
    int dim = 0, with = 0, without = 0;
    cr_expect_eq(aria_dataset_emb_info(ds, &dim, NULL, NULL), 1);
    cr_expect_eq(dim, E);
    for (size_t i = 0; i < aria_dataset_size(ds, 0); i++) {
        if (aria_dataset_embedding(ds, 0, i)) with++;
        else without++;
    }
    cr_expect_gt(with, 0);
    aria_dataset_close(ds);
    /* basic.mid is not piano-only: its sequences have no embedding */
    snprintf(p, sizeof p, "%s/data/embeddings.txt", dir);
    FILE *f = fopen(p, "r");
    cr_assert(f);
    size_t got = fread(e, 1, sizeof e - 1, f);
    e[got] = 0;
    fclose(f);
    cr_expect(strstr(e, "basic.mid\tnot a piano-only file"), "%s", e);

    /* refusals of aria train, each naming the file, nothing created */
    const char *common = "--batch 2 --steps 12 --save-every 3 --warmup 2 --seed 5 --threads 1";
    snprintf(a, sizeof a, "train --data %s/plain --init %s/gen.safetensors --condition-on %s/emb.safetensors --out %s/r0 %s",
             dir, dir, dir, dir, common);
    cr_expect_eq(aria_run(a, e, sizeof e), 1, "%s", e);
    cr_expect(strstr(e, "/plain: built without per-file embeddings"), "%s", e);
    snprintf(a, sizeof a, "train --data %s/data --init %s/gen.safetensors --condition-on %s/other.safetensors --out %s/r0 %s",
             dir, dir, dir, dir, common);
    cr_expect_eq(aria_run(a, e, sizeof e), 1, "%s", e);
    cr_expect(strstr(e, "other.safetensors: not the embedding model"), "%s", e);
    snprintf(p, sizeof p, "%s/r0", dir);
    cr_expect(!has(p));
    snprintf(a, sizeof a, "train --data %s/data --init %s/gen.safetensors --condition-p 0.3 --out %s/r0 %s", dir, dir,
             dir, common);
    cr_expect_eq(aria_run(a, e, sizeof e), 2, "%s", e);

    /* --condition-p 0 is the plain run, loss for loss */
    static char la[4096], lb[4096];
    int nc_a, np_a, nc_b, np_b;
    snprintf(a, sizeof a, "train --data %s/data --init %s/gen.safetensors --out %s/plain_run %s", dir, dir, dir, common);
    cr_assert_eq(aria_run(a, e, sizeof e), 0, "%s", e);
    snprintf(a, sizeof a,
             "train --data %s/data --init %s/gen.safetensors --condition-on %s/emb.safetensors --condition-p 0 "
             "--out %s/p0 %s", dir, dir, dir, dir, common);
    cr_assert_eq(aria_run(a, e, sizeof e), 0, "%s", e);
    snprintf(p, sizeof p, "%s/plain_run/log.jsonl", dir);
    losses(p, la, sizeof la, &nc_a, &np_a);
    snprintf(p, sizeof p, "%s/p0/log.jsonl", dir);
    losses(p, lb, sizeof lb, &nc_b, &np_b);
    cr_expect_str_eq(lb, la, "p = 0:\n%s\nplain:\n%s", lb, la);
    cr_expect(nc_b == 0 && np_b == 12);

    /* p = 0.5: a mix, and a killed run resumes to the same losses */
    snprintf(a, sizeof a,
             "train --data %s/data --init %s/gen.safetensors --condition-on %s/emb.safetensors --out %s/c1 %s "
             "--val-every 6", dir, dir, dir, dir, common);
    cr_assert_eq(aria_run(a, e, sizeof e), 0, "%s", e);
    snprintf(p, sizeof p, "%s/c1/log.jsonl", dir);
    losses(p, la, sizeof la, &nc_a, &np_a);
    cr_expect(nc_a > 0 && np_a > 0, "%d conditioned, %d plain", nc_a, np_a);
    cr_expect_str_neq(la, lb, "conditioning changes the losses");
    f = fopen(p, "r");
    cr_assert(f);
    got = fread(e, 1, sizeof e - 1, f);
    e[got] = 0;
    fclose(f);
    cr_expect(strstr(e, "\"val_loss_cond\": "), "%s", e);

    char out2[600], log2[700], data[600], init[600], cond[600];
    snprintf(out2, sizeof out2, "%s/c2", dir);
    snprintf(log2, sizeof log2, "%s/c2/log.jsonl", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(init, sizeof init, "%s/gen.safetensors", dir);
    snprintf(cond, sizeof cond, "%s/emb.safetensors", dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        execl(aria_bin(), "aria", "train", "--data", data, "--init", init, "--condition-on", cond, "--out", out2,
              "--batch", "2", "--steps", "12", "--save-every", "3", "--warmup", "2", "--seed", "5", "--threads", "1",
              "--val-every", "6", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 6000 && count_step_lines(log2) < 5; i++) usleep(2000);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    int before = count_step_lines(log2);
    cr_expect(WIFSIGNALED(st) && before < 12, "the run was not interrupted (%d steps)", before);
    snprintf(a, sizeof a, "train --resume %s", out2);
    cr_assert_eq(aria_run(a, e, sizeof e), 0, "%s", e);
    losses(log2, lb, sizeof lb, &nc_b, &np_b);
    cr_expect_str_eq(lb, la, "resumed:\n%s\nuninterrupted:\n%s", lb, la);
    cr_expect(nc_b == nc_a && np_b == np_a);

    /* the result carries the adapter and generates with guidance */
    snprintf(p, sizeof p, "%s/c1/model.safetensors", dir);
    aria_model *m;
    cr_assert_eq(aria_model_load(&m, p, NULL, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(aria_model_adapter_dim(m), E);
    aria_model_free(m);
    snprintf(a, sizeof a,
             "generate --model %s/c1/model.safetensors --embedding-model %s/emb.safetensors --embedding-midi "
             "tests/data/vectors/waltz/waltz.mid --prompt tests/data/vectors/nocturne/nocturne.mid --prompt-seconds 3 "
             "--cfg 1.5 --max-new 16 --seed 1 --threads 1 --out-dir %s/gen", dir, dir, dir);
    cr_expect_eq(aria_run(a, e, sizeof e), 0, "%s", e);
    snprintf(p, sizeof p, "%s/gen/res_1.mid", dir);
    cr_expect(has(p));
    snprintf(a, sizeof a, "rm -rf %s", dir);
    cr_expect_eq(system(a), 0);
}

/* ---- residual dropout (the classifier recipe, spec 3.5) ----------------- */

/* out = class_head at position pos of each row; loss = sum(out * r). */
static float head_loss(aria_trainer *t, const int32_t *ids, const int *pos, const float *r, int n, float *out) {
    aria_error err = {{0}};
    cr_assert_eq(aria_trainer_forward_at(t, ids, pos, ARIA_OUT_CLS, out, &err), ARIA_OK, "%s", err.msg);
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)out[i] * r[i];
    return (float)s;
}

Test(dropout, zero_is_no_dropout_and_gradients_match_finite_differences) {
    aria_model *m = tiny(ARIA_HEAD_LM | ARIA_HEAD_CLS, 12);
    int B = 2, T = 10, C = aria_output_dim(m, ARIA_OUT_CLS);
    int32_t ids[20];
    some_ids(ids, B * T, 9);
    int pos[2] = {T - 1, T - 3};
    float r[2 * 8], out0[2 * 8], out1[2 * 8], out2[2 * 8];
    cr_assert_leq(C, 8);
    for (int i = 0; i < B * C; i++) r[i] = (float)cos(1.3 * i);
    aria_trainer *t;
    aria_error err = {{0}};
    cr_assert_eq(aria_trainer_new(&t, m, B, T, &err), ARIA_OK, "%s", err.msg);
    aria_trainer_set_exact(t, 1);
    size_t n;
    /* the tiny model has 2 layers: layer 1 drops p, layer 0 nothing (p l / (L - 1)) */
    const float *g = aria_trainer_grad(t, "model.encode_layers.1.ff_down_proj.weight", &n);
    cr_assert(g);
    /* p = 0: the same bits as a trainer that never heard of dropout */
    aria_trainer_zero_grad(t);
    head_loss(t, ids, pos, r, B * C, out0);
    cr_assert_eq(aria_trainer_backward_at(t, ids, r, &err), ARIA_OK);
    float *g0 = malloc(n * sizeof *g0);
    memcpy(g0, g, n * sizeof *g0);
    aria_trainer_set_dropout(t, 0.3f, 77, 0);
    head_loss(t, ids, pos, r, B * C, out1);
    aria_trainer_set_dropout(t, 0.0f, 77, 0);
    aria_trainer_zero_grad(t);
    head_loss(t, ids, pos, r, B * C, out2);
    cr_assert_eq(aria_trainer_backward_at(t, ids, r, &err), ARIA_OK);
    cr_expect(!memcmp(out0, out2, sizeof(float) * B * C), "p = 0 changes the output");
    cr_expect(!memcmp(g0, g, n * sizeof *g0), "p = 0 changes the gradients");
    double diff = 0;
    for (int i = 0; i < B * C; i++) diff = fmax(diff, fabs(out1[i] - out0[i]));
    cr_expect_gt(diff, 1e-4, "dropout 0.3 leaves the output as it was");
    /* another seed, other masks */
    aria_trainer_set_dropout(t, 0.3f, 78, 0);
    head_loss(t, ids, pos, r, B * C, out2);
    cr_expect(memcmp(out1, out2, sizeof(float) * B * C) != 0, "the seed does not change the masks");

    /* with a fixed mask, the gradients are those of the masked function */
    aria_trainer_set_dropout(t, 0.3f, 77, 0);
    aria_trainer_zero_grad(t);
    head_loss(t, ids, pos, r, B * C, out1);
    cr_assert_eq(aria_trainer_backward_at(t, ids, r, &err), ARIA_OK);
    const char *names[] = {"model.encode_layers.1.ff_down_proj.weight", "model.encode_layers.1.att_proj_linear.weight",
                           "model.encode_layers.0.ff_up_proj.weight", "model.tok_embeddings.weight",
                           "class_head.weight"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        size_t np;
        float *p = (float *)aria_trainer_param(t, names[k], &np);
        const float *gk = aria_trainer_grad(t, names[k], NULL);
        cr_assert(p && gk, "%s", names[k]);
        size_t at = 0;
        for (size_t i = 0; i < np; i++)
            if (fabsf(gk[i]) > fabsf(gk[at])) at = i;
        float keep = p[at], h = 1e-2f * fmaxf(1.0f, fabsf(keep));
        p[at] = keep + h;
        float lp = head_loss(t, ids, pos, r, B * C, out2);
        p[at] = keep - h;
        float lm = head_loss(t, ids, pos, r, B * C, out2);
        p[at] = keep;
        double fd = ((double)lp - lm) / (2.0 * h);
        cr_expect(fabs(fd - gk[at]) <= 0.05 * fabs(gk[at]) + 1e-4, "%s[%zu]: backward %.6g, finite difference %.6g",
                  names[k], at, gk[at], fd);
    }
    /* rows of a slice draw what the whole batch draws: row 1 alone with
       first_row 1 equals row 1 of the batch */
    aria_trainer *t1;
    cr_assert_eq(aria_trainer_new(&t1, m, 1, T, &err), ARIA_OK);
    aria_trainer_set_exact(t1, 1);
    aria_trainer_set_dropout(t1, 0.3f, 77, 1);
    aria_trainer_set_dropout(t, 0.3f, 77, 0);
    head_loss(t, ids, pos, r, B * C, out1);
    cr_assert_eq(aria_trainer_forward_at(t1, ids + T, pos + 1, ARIA_OUT_CLS, out2, &err), ARIA_OK);
    for (int i = 0; i < C; i++) cr_expect(fabsf(out2[i] - out1[C + i]) <= 1e-5f * (1 + fabsf(out1[C + i])), "class %d", i);
    aria_trainer_free(t1);
    free(g0);
    aria_trainer_free(t);
    aria_model_free(m);
}

Test(dropout, cli_option) {
    static char a[2048], e[4096];
    snprintf(a, sizeof a, "train --data x --out /tmp/aria_drop_never --config tiny --dropout 0.2");
    cr_expect_eq(aria_run(a, e, sizeof e), 2, "%s", e);
    cr_expect(strstr(e, "--objective classify"), "%s", e);
    snprintf(a, sizeof a, "train --objective classify --labels x.csv --task t --out /tmp/aria_drop_never --config tiny "
                          "--dropout 1");
    cr_expect_eq(aria_run(a, e, sizeof e), 2, "%s", e);
}

Test(dropout, classify_runs_with_it) {
    char dir[] = "/tmp/aria_drop_XXXXXX";
    cr_assert(mkdtemp(dir));
    static char a[4096], e[8192], p[512], la[4096], lb[4096], lc[4096], ld[4096];
    snprintf(p, sizeof p, "%s/labels.csv", dir);
    FILE *f = fopen(p, "w");
    cr_assert(f);
    fputs("path,task,label,group\nbach-1.mid,composer,bach,b1\nbach-2.mid,composer,bach,b2\n"
          "beethoven-1.mid,composer,beethoven,e1\nbeethoven-2.mid,composer,beethoven,e2\n", f);
    fclose(f);
    const char *runs[] = {"none", "zero", "a", "b"};
    const char *extra[] = {"", "--dropout 0", "--dropout 0.2", "--dropout 0.2"};
    char *logs[] = {la, lb, lc, ld};
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a,
                 "train --objective classify --labels %s --task composer --root examples/pretrain-small --config tiny "
                 "--out %s/%s --seq-len 256 --batch 2 --steps 4 --lr 3e-3 --val-fraction 0 --notes-per-chunk 60 "
                 "--threads 1 --seed 3 %s", p, dir, runs[i], extra[i]);
        cr_assert_eq(aria_run(a, e, sizeof e), 0, "%s", e);
        char log[600];
        snprintf(log, sizeof log, "%s/%s/log.jsonl", dir, runs[i]);
        int c1, c2;
        losses(log, logs[i], sizeof la, &c1, &c2);
    }
    cr_expect_str_eq(lb, la, "--dropout 0 is the run without dropout");
    cr_expect_str_eq(ld, lc, "the masks come from the seed");
    cr_expect_str_neq(lc, la, "dropout changes the losses");
    snprintf(a, sizeof a, "%s/a/run.json", dir);
    f = fopen(a, "r");
    cr_assert(f);
    size_t got = fread(e, 1, sizeof e - 1, f);
    e[got] = 0;
    fclose(f);
    cr_expect(strstr(e, "\"dropout\": 0.2"), "%s", e);
    snprintf(a, sizeof a, "rm -rf %s", dir);
    cr_expect_eq(system(a), 0);
}
