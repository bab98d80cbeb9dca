/*
 * probe_cmd.c - `aria probe`: a linear probe of per-file features
 * (an embedding model's, a language model's mean hidden state, or
 * handcrafted statistics) on a labelled CSV, cross-validated over folds
 * that keep each group on one side. Options, progress, the summary and
 * the JSON report; the work is in libaria (labels.c, features.c,
 * probe.c). docs/probe.md describes it.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aria.h"
#include "base/json.h"
#include "cli.h"

#define LOG_SECONDS 30.0

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void help_probe(void) {
    aria_probe_opts d = aria_probe_defaults();
    printf("usage: aria probe --labels LABELS.csv --task NAME [--root DIR]\n"
           "                  (--model EMB.safetensors | --features handcrafted |\n"
           "                   --features lm-mean --model LM.safetensors) [options]\n"
           "\n"
           "Linear probe (spec 3.6): one feature vector per labelled file, a logistic-regression\n"
           "classifier trained with AdamW on the training folds, scored on the held-out fold; folds\n"
           "are split by the CSV's group column, so no piece is on both sides. Prints accuracy and\n"
           "macro-F1 (mean +- std over folds) beside the majority-class baseline. See docs/probe.md.\n"
           "\n"
           "options:\n"
           "  --labels FILE     CSV with the columns path,task,label,group\n"
           "  --task NAME       the task to probe (rows of other tasks are ignored)\n"
           "  --root DIR        folder the CSV's paths are relative to (default: the CSV's folder,\n"
           "                    or its parent when the first file is found there)\n"
           "  --model FILE      weights: an embedding model (emb_head), or with --features lm-mean\n"
           "                    any model (its trunk's final hidden states)\n"
           "  --config CFG      the model's config JSON or preset (%s);\n"
           "                    default: metadata / config.json beside\n"
           "  --features KIND   embedding (default with --model), lm-mean, handcrafted\n"
           "  --folds K         cross-validation folds, 2..100 (default %d); classes with fewer\n"
           "                    groups than K are dropped with a note\n"
           "  --seed S          folds, initial weights, batch order, --per-class picks (default %llu)\n"
           "  --epochs N        training epochs per fold, 1..100000 (default %d)\n"
           "  --batch N         rows per step, 1..65536 (default %d)\n"
           "  --lr X            peak learning rate (default %g; AdamW, weight decay %g, %d warm-up\n"
           "                    steps, linear decay to %g x lr)\n"
           "  --per-class N     at most N training files per class in each fold (default: all)\n"
           "  --max-chunks K    at most K evenly spaced 300-note chunks per file (default: all)\n"
           "  --cache DIR       feature cache (default $XDG_CACHE_HOME/aria/probe, else\n"
           "                    ~/.cache/aria/probe)\n"
           "  --no-cache        compute every file, write nothing to the cache\n"
           "  --json FILE       write the per-fold figures and the confusion matrix (atomic)\n"
           "  --threads N       CPU threads, 1..256 (default: all)\n"
           "  -h, --help        this help\n",
           preset_list(), d.folds, (unsigned long long)d.seed, d.epochs, d.batch, (double)d.lr,
           (double)d.weight_decay, d.warmup, (double)d.final_lr_frac);
}

typedef struct {
    int tty, open;
    double last;
    size_t every;
} feat_view;

static void feat_progress(void *ctx, size_t done, size_t total) {
    feat_view *v = ctx;
    if (v->tty) {
        fprintf(stderr, "\raria probe: features %zu/%zu files ", done, total);
        v->open = done < total;
        if (!v->open) fputc('\n', stderr);
        return;
    }
    if (!v->every) v->every = total / 20 > 1 ? total / 20 : 1;
    double t = now_s();
    if (done == total || done % v->every == 0 || t - v->last >= LOG_SECONDS) {
        fprintf(stderr, "aria probe: features %zu/%zu files\n", done, total);
        v->last = t;
    }
}

/* Keeps the rows whose keep[i] is set (frees the others' strings). */
static void keep_rows(aria_labels *l, const unsigned char *keep, float *X, int dim) {
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (!keep[i]) {
            free(l->rows[i].path);
            free(l->rows[i].label);
            free(l->rows[i].group);
            continue;
        }
        if (w != i) {
            l->rows[w] = l->rows[i];
            l->y[w] = l->y[i];
            memmove(X + w * (size_t)dim, X + i * (size_t)dim, (size_t)dim * sizeof(float));
        }
        w++;
    }
    l->n = w;
}

static void json_str(FILE *f, const char *s) { json_write_string(f, s, strlen(s)); }

static void json_stat(FILE *f, const char *key, double mean, double sd, const double *v, int k) {
    fprintf(f, "\"%s\": {\"mean\": %.6f, \"std\": %.6f, \"folds\": [", key, mean, sd);
    for (int i = 0; i < k; i++) fprintf(f, "%s%.6f", i ? ", " : "", v[i]);
    fprintf(f, "]}");
}

typedef struct {
    const char *labels, *task, *root, *model, *features, *cache, *json;
    aria_probe_opts po;
    int max_chunks, folds_dim;
    size_t hits, misses, failed;
    double feat_s, cv_s;
} run_info;

static int write_json(const char *path, const run_info *ri, const aria_labels *l, const aria_feature_file *ff,
                      char *const *fpaths, size_t nf, int dim, const aria_probe_result *r) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        fail_file(path, "out of memory");
        return -1;
    }
    int k = r->folds, C = r->n_classes;
    fprintf(f, "{\n  \"labels\": ");
    json_str(f, ri->labels);
    fprintf(f, ",\n  \"task\": ");
    json_str(f, ri->task);
    fprintf(f, ",\n  \"root\": ");
    json_str(f, l->root);
    fprintf(f, ",\n  \"features\": ");
    json_str(f, ri->features);
    fprintf(f, ",\n  \"model\": ");
    if (ri->model) json_str(f, ri->model);
    else fprintf(f, "null");
    fprintf(f,
            ",\n  \"dim\": %d,\n  \"folds\": %d,\n  \"seed\": %llu,\n  \"epochs\": %d,\n  \"batch\": %d,\n"
            "  \"lr\": %g,\n  \"weight_decay\": %g,\n  \"warmup\": %d,\n  \"per_class\": %d,\n  \"max_chunks\": %d,\n",
            dim, k, (unsigned long long)ri->po.seed, ri->po.epochs, ri->po.batch, (double)ri->po.lr,
            (double)ri->po.weight_decay, ri->po.warmup, ri->po.per_class, ri->max_chunks);
    fprintf(f, "  \"n_files\": %zu,\n  \"n_classes\": %d,\n  \"classes\": [", l->n, C);
    for (int c = 0; c < C; c++) {
        fprintf(f, "%s", c ? ", " : "");
        json_str(f, l->classes[c]);
    }
    fprintf(f, "],\n  \"skipped\": {\"empty_label\": %zu, \"missing\": [", l->n_empty_label);
    for (size_t i = 0; i < l->n_missing; i++) {
        fprintf(f, "%s", i ? ", " : "");
        json_str(f, l->missing[i]);
    }
    fprintf(f, "], \"failed\": [");
    int first = 1;
    for (size_t i = 0; i < nf; i++)
        if (ff[i].status != ARIA_OK) {
            fprintf(f, "%s{\"path\": ", first ? "" : ", ");
            json_str(f, fpaths[i]);
            fprintf(f, ", \"reason\": ");
            json_str(f, ff[i].err.msg);
            fprintf(f, "}");
            first = 0;
        }
    fprintf(f, "], \"dropped_classes\": [");
    for (int c = 0; c < l->n_dropped_classes; c++) {
        fprintf(f, "%s", c ? ", " : "");
        json_str(f, l->dropped_classes[c]);
    }
    fprintf(f, "], \"dropped_files\": %zu},\n", l->n_dropped_rows);
    fprintf(f, "  \"cache\": {\"dir\": ");
    if (ri->cache) json_str(f, ri->cache);
    else fprintf(f, "null");
    fprintf(f, ", \"hits\": %zu, \"misses\": %zu},\n", ri->hits, ri->misses);
    fprintf(f, "  \"seconds\": {\"features\": %.3f, \"cross_validation\": %.3f},\n  ", ri->feat_s, ri->cv_s);
    json_stat(f, "accuracy", r->acc_mean, r->acc_std, r->acc, k);
    fprintf(f, ",\n  ");
    json_stat(f, "macro_f1", r->f1_mean, r->f1_std, r->f1, k);
    fprintf(f, ",\n  \"baseline\": {");
    json_stat(f, "accuracy", r->base_acc_mean, r->base_acc_std, r->base_acc, k);
    fprintf(f, ", ");
    json_stat(f, "macro_f1", r->base_f1_mean, r->base_f1_std, r->base_f1, k);
    fprintf(f, "},\n  \"per_fold\": [");
    for (int i = 0; i < k; i++) {
        fprintf(f,
                "%s\n    {\"fold\": %d, \"n_train\": %zu, \"n_test\": %zu, \"accuracy\": %.6f, \"macro_f1\": %.6f, "
                "\"baseline_accuracy\": %.6f, \"baseline_macro_f1\": %.6f, \"baseline_class\": ",
                i ? "," : "", i, r->n_train[i], r->n_test[i], r->acc[i], r->f1[i], r->base_acc[i], r->base_f1[i]);
        json_str(f, l->classes[r->base_class[i]]);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"confusion\": {\"rows\": \"true class\", \"columns\": \"predicted class\", \"matrix\": [");
    for (int a = 0; a < C; a++) {
        fprintf(f, "%s\n    [", a ? "," : "");
        for (int b = 0; b < C; b++) fprintf(f, "%s%lld", b ? ", " : "", (long long)r->confusion[(size_t)a * C + b]);
        fprintf(f, "]");
    }
    fprintf(f, "\n  ]}\n}\n");
    if (fclose(f) != 0 || !buf) {
        free(buf);
        fail_file(path, "out of memory");
        return -1;
    }
    aria_error err = {{0}};
    int rc = aria_write_file_atomic(path, buf, len, &err);
    free(buf);
    if (rc != ARIA_OK) {
        fail_file(path, err.msg);
        return -1;
    }
    return 0;
}

/* $XDG_CACHE_HOME/aria/probe, else $HOME/.cache/aria/probe (malloc'd), or NULL. */
static char *default_cache(void) {
    const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    char *p = NULL;
    if (x && *x == '/') {
        p = malloc(strlen(x) + 16);
        if (p) sprintf(p, "%s/aria/probe", x);
    } else if (h && *h) {
        p = malloc(strlen(h) + 24);
        if (p) sprintf(p, "%s/.cache/aria/probe", h);
    }
    return p;
}

int cmd_probe(int argc, char **argv) {
    enum { O_LABELS = 256, O_TASK, O_ROOT, O_MODEL, O_CONFIG, O_FEAT, O_FOLDS, O_SEED, O_EPOCHS, O_BATCH, O_LR,
           O_PER, O_CHUNKS, O_CACHE, O_NOCACHE, O_JSON, O_THREADS };
    static const struct option lo[] = {
        {"labels", required_argument, 0, O_LABELS}, {"task", required_argument, 0, O_TASK},
        {"root", required_argument, 0, O_ROOT},     {"model", required_argument, 0, O_MODEL},
        {"config", required_argument, 0, O_CONFIG}, {"features", required_argument, 0, O_FEAT},
        {"folds", required_argument, 0, O_FOLDS},   {"seed", required_argument, 0, O_SEED},
        {"epochs", required_argument, 0, O_EPOCHS}, {"batch", required_argument, 0, O_BATCH},
        {"lr", required_argument, 0, O_LR},         {"per-class", required_argument, 0, O_PER},
        {"max-chunks", required_argument, 0, O_CHUNKS}, {"cache", required_argument, 0, O_CACHE},
        {"no-cache", no_argument, 0, O_NOCACHE},    {"json", required_argument, 0, O_JSON},
        {"threads", required_argument, 0, O_THREADS}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    run_info ri;
    memset(&ri, 0, sizeof ri);
    ri.po = aria_probe_defaults();
    const char *config = NULL, *cache_arg = NULL;
    int no_cache = 0;
    long long threads = 0, v;
    double dv;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_LABELS: ri.labels = optarg; break;
        case O_TASK: ri.task = optarg; break;
        case O_ROOT: ri.root = optarg; break;
        case O_MODEL: ri.model = optarg; break;
        case O_CONFIG: config = optarg; break;
        case O_FEAT: ri.features = optarg; break;
        case O_FOLDS:
            if (parse_long(optarg, 2, 100, &v)) return usage_error("probe", "--folds wants 2..100");
            ri.po.folds = (int)v;
            break;
        case O_SEED:
            if (parse_long(optarg, 0, (long long)(~0ULL >> 1), &v)) return usage_error("probe", "--seed wants an integer >= 0");
            ri.po.seed = (uint64_t)v;
            break;
        case O_EPOCHS:
            if (parse_long(optarg, 1, 100000, &v)) return usage_error("probe", "--epochs wants 1..100000");
            ri.po.epochs = (int)v;
            break;
        case O_BATCH:
            if (parse_long(optarg, 1, 65536, &v)) return usage_error("probe", "--batch wants 1..65536");
            ri.po.batch = (int)v;
            break;
        case O_LR:
            if (parse_double(optarg, &dv) || !(dv > 0 && dv < 10)) return usage_error("probe", "--lr wants a number in (0, 10)");
            ri.po.lr = (float)dv;
            break;
        case O_PER:
            if (parse_long(optarg, 1, 1000000000, &v)) return usage_error("probe", "--per-class wants an integer >= 1");
            ri.po.per_class = (int)v;
            break;
        case O_CHUNKS:
            if (parse_long(optarg, 1, 1000000000, &v)) return usage_error("probe", "--max-chunks wants an integer >= 1");
            ri.max_chunks = (int)v;
            break;
        case O_CACHE: cache_arg = optarg; break;
        case O_NOCACHE: no_cache = 1; break;
        case O_JSON: ri.json = optarg; break;
        case O_THREADS:
            if (parse_long(optarg, 1, 256, &threads)) return usage_error("probe", "--threads wants 1..256");
            break;
        case 'h': help_probe(); return 0;
        default: return option_error("probe", argv, "h");
        }
    }
    if (optind < argc) return usage_error("probe", "unexpected argument '%s'", argv[optind]);
    if (!ri.labels) return usage_error("probe", "--labels is required");
    if (!ri.task) return usage_error("probe", "--task is required");
    aria_feature_kind kind;
    if (!ri.features) ri.features = ri.model ? "embedding" : NULL;
    if (!ri.features) return usage_error("probe", "give --model EMB.safetensors or --features handcrafted|lm-mean");
    if (!strcmp(ri.features, "embedding")) kind = ARIA_FEAT_EMBEDDING;
    else if (!strcmp(ri.features, "lm-mean")) kind = ARIA_FEAT_LM_MEAN;
    else if (!strcmp(ri.features, "handcrafted")) kind = ARIA_FEAT_HANDCRAFTED;
    else return usage_error("probe", "--features wants embedding, lm-mean or handcrafted, not '%s'", ri.features);
    if (kind != ARIA_FEAT_HANDCRAFTED && !ri.model) return usage_error("probe", "--features %s needs --model", ri.features);
    if (kind == ARIA_FEAT_HANDCRAFTED && (ri.model || config))
        return usage_error("probe", "--features handcrafted uses no model: leave out --model/--config");
    if (kind == ARIA_FEAT_HANDCRAFTED && ri.max_chunks)
        return usage_error("probe", "--max-chunks is for model features");
    if (cache_arg && no_cache) return usage_error("probe", "--cache and --no-cache exclude each other");

    int status = EXIT_INPUT;
    aria_labels l;
    memset(&l, 0, sizeof l);
    aria_error err = {{0}};
    aria_model *m = NULL;
    aria_ctx *ctx = NULL;
    float *X = NULL;
    aria_feature_file *ff = NULL;
    char **fpaths = NULL;
    unsigned char *keep = NULL;
    int *fold = NULL;
    char *cache_dir = NULL;
    aria_probe_result res;
    memset(&res, 0, sizeof res);
    size_t nf = 0;

    if (aria_labels_read(ri.labels, ri.task, ri.root, &l, &err) != ARIA_OK) {
        fail_file(ri.labels, err.msg);
        goto out;
    }
    for (size_t i = 0; i < l.n_missing; i++) fprintf(stderr, "aria: note: %s: no such file (skipped)\n", l.missing[i]);

    if (ri.model) {
        aria_model_config cfg;
        if (config && load_config_arg(config, &cfg)) goto out;
        aria_ctx_opts co = cli_ctx_opts((int)threads);
        if (aria_ctx_new(&ctx, &co, &err) != ARIA_OK) {
            fprintf(stderr, "aria: %s\n", err.msg);
            goto out;
        }
        if (aria_model_load(&m, ri.model, config ? &cfg : NULL, &err) != ARIA_OK) {
            fail_file(ri.model, err.msg);
            goto out;
        }
        aria_model_set_ctx(m, ctx);
        if (aria_feature_dim(m, kind) <= 0) {
            fail_file(ri.model, "not an embedding model (no emb_head.weight); for a language model use "
                                "--features lm-mean");
            goto out;
        }
    }
    int dim = aria_feature_dim(m, kind);
    if (!no_cache) {
        cache_dir = cache_arg ? strdup(cache_arg) : default_cache();
        ri.cache = cache_dir;
    }

    nf = l.n;
    X = calloc(nf * (size_t)dim, sizeof(float));
    ff = calloc(nf, sizeof *ff);
    fpaths = calloc(nf, sizeof(char *));
    keep = calloc(nf, 1);
    if (!X || !ff || !fpaths || !keep) {
        fprintf(stderr, "aria: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < nf; i++) {
        fpaths[i] = strdup(l.rows[i].path);
        if (!fpaths[i]) {
            fprintf(stderr, "aria: out of memory\n");
            goto out;
        }
    }
    aria_feature_opts fo = aria_feature_defaults();
    fo.kind = kind;
    fo.model = m;
    fo.model_path = ri.model;
    fo.max_chunks = ri.max_chunks;
    fo.cache_dir = cache_dir;
    fo.jobs = (int)threads;
    feat_view view = {.tty = isatty(2), .last = now_s()};
    fo.progress = feat_progress;
    fo.progress_ctx = &view;
    double t0 = now_s();
    if (aria_features_files((const char *const *)fpaths, nf, &fo, X, ff, &ri.hits, &ri.misses, &err) != ARIA_OK) {
        if (view.open) fputc('\n', stderr);
        if (!strncmp(err.msg, "cannot create the cache folder", 30)) fprintf(stderr, "aria: %s\n", err.msg);
        else fail_file(ri.model ? ri.model : ri.labels, err.msg);
        goto out;
    }
    ri.feat_s = now_s() - t0;
    for (size_t i = 0; i < nf; i++) {
        if (ff[i].n_warnings) warn_damaged(fpaths[i], ff[i].n_warnings, ff[i].warning, 0);
        keep[i] = ff[i].status == ARIA_OK;
        if (!keep[i]) {
            fprintf(stderr, "aria: note: %s: %s (skipped)\n", fpaths[i], ff[i].err.msg);
            ri.failed++;
        }
    }
    keep_rows(&l, keep, X, dim);
    if (l.n == 0) {
        fail_file(ri.labels, "no file of the task could be read (each is listed above)");
        goto out;
    }
    if (aria_labels_drop_small(&l, ri.po.folds, &err) != ARIA_OK) {
        fail_file(ri.labels, err.msg);
        goto out;
    }
    fold = malloc(l.n * sizeof(int));
    if (!fold) {
        fprintf(stderr, "aria: out of memory\n");
        goto out;
    }
    if (aria_labels_folds(&l, ri.po.folds, ri.po.seed, fold, &err) != ARIA_OK) {
        fail_file(ri.labels, err.msg);
        goto out;
    }
    t0 = now_s();
    if (aria_probe_cv(X, l.y, l.n, dim, l.n_classes, fold, &ri.po, &res, &err) != ARIA_OK) {
        fail_file(ri.labels, err.msg);
        goto out;
    }
    ri.cv_s = now_s() - t0;

    /* the summary */
    printf("task %s: %zu files, %d classes, %d folds by group (seed %llu)\n", ri.task, l.n, l.n_classes,
           ri.po.folds, (unsigned long long)ri.po.seed);
    printf("features %s (%d-d)%s%s: %.1f s; cache %s: %zu hits, %zu misses\n", ri.features, dim,
           ri.model ? " of " : "", ri.model ? ri.model : "", ri.feat_s, cache_dir ? cache_dir : "off", ri.hits,
           ri.misses);
    printf("skipped: %zu empty label, %zu missing, %zu unreadable or not piano-only, %zu in %d class%s with fewer "
           "than %d groups%s",
           l.n_empty_label, l.n_missing, ri.failed, l.n_dropped_rows, l.n_dropped_classes,
           l.n_dropped_classes == 1 ? "" : "es", ri.po.folds, l.n_dropped_classes ? " (" : "");
    for (int k = 0; k < l.n_dropped_classes; k++) printf("%s%s", k ? ", " : "", l.dropped_classes[k]);
    printf("%s\n", l.n_dropped_classes ? ")" : "");
    char per[32] = "all";
    if (ri.po.per_class) snprintf(per, sizeof per, "at most %d", ri.po.per_class);
    printf("classifier: linear, %d epochs, batch %d, lr %g, %s training files per class: %.1f s\n", ri.po.epochs,
           ri.po.batch, (double)ri.po.lr, per, ri.cv_s);
    printf("                 accuracy         macro-F1\n");
    printf("probe            %.3f +- %.3f    %.3f +- %.3f\n", res.acc_mean, res.acc_std, res.f1_mean, res.f1_std);
    printf("majority class   %.3f +- %.3f    %.3f +- %.3f\n", res.base_acc_mean, res.base_acc_std, res.base_f1_mean,
           res.base_f1_std);
    if (fflush(stdout) != 0) goto out;
    if (ri.json && write_json(ri.json, &ri, &l, ff, fpaths, nf, dim, &res) != 0) goto out;
    status = 0;
out:
    aria_probe_result_free(&res);
    for (size_t i = 0; fpaths && i < nf; i++) free(fpaths[i]);
    free(fpaths);
    free(fold);
    free(keep);
    free(ff);
    free(X);
    free(cache_dir);
    aria_labels_free(&l);
    aria_model_free(m);
    aria_ctx_free(ctx);
    return status;
}
