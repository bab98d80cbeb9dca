/*
 * probe.c - the linear probe of spec 3.6: a multinomial logistic
 * regression (torch's nn.Linear(d, C) with bias under a cross-entropy
 * loss) trained with AdamW, and its cross-validation over folds that keep
 * every group on one side (aria_labels_folds).
 *
 * Training, as the reference's linear-probe script: weights and bias drawn
 * uniform in +-1/sqrt(d) (nn.Linear's default), AdamW (betas 0.9/0.999,
 * eps 1e-8, decoupled weight decay on every parameter), a learning rate
 * that rises linearly over the warm-up steps and then falls linearly to
 * final_lr_frac x lr at the last step, mini-batches of `batch` rows in an
 * order shuffled each epoch. Everything random comes from one aria_rng
 * seeded by the options, so a seed gives the same weights on any machine
 * that rounds float32 and double alike.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/util.h"

aria_probe_opts aria_probe_defaults(void) {
    aria_probe_opts o;
    memset(&o, 0, sizeof o);
    o.folds = 5;
    o.seed = 0;
    o.epochs = 50;
    o.batch = 8;
    o.lr = 3e-4f;
    o.weight_decay = 0.1f;
    o.warmup = 100;
    o.final_lr_frac = 0.1f;
    o.per_class = 0;
    return o;
}

float aria_probe_lr(const aria_probe_opts *o, long step, long total) {
    long warm = o->warmup > 0 ? o->warmup : 0;
    if (warm > total / 2) warm = total / 2; /* a short run still decays */
    if (step < warm) return o->lr * (float)(step + 1) / (float)warm;
    long span = total - warm - 1;
    double frac = span > 0 ? (double)(step - warm) / (double)span : 1.0;
    if (frac > 1) frac = 1;
    return (float)(o->lr * (1.0 - (1.0 - o->final_lr_frac) * frac));
}

/* softmax(W x + b) into p[C] (double) */
static void forward_row(const float *x, int d, int C, const float *W, const float *b, double *p) {
    double mx = -INFINITY;
    for (int c = 0; c < C; c++) {
        const float *w = W + (size_t)c * (size_t)d;
        double z = b[c];
        for (int j = 0; j < d; j++) z += (double)w[j] * x[j];
        p[c] = z;
        if (z > mx) mx = z;
    }
    double s = 0;
    for (int c = 0; c < C; c++) {
        p[c] = exp(p[c] - mx);
        s += p[c];
    }
    for (int c = 0; c < C; c++) p[c] /= s;
}

int aria_linear_fit(const float *X, const int *y, size_t n, int d, int C, const aria_probe_opts *o, float *W,
                    float *b, aria_error *err) {
    if (!X || !y || !W || !b || !o || n == 0 || d <= 0 || C < 2)
        return aria_fail(err, ARIA_ERR_ARG, "linear probe: need rows, features and two classes or more");
    if (o->batch < 1 || o->epochs < 1 || !(o->lr > 0))
        return aria_fail(err, ARIA_ERR_ARG, "linear probe: batch, epochs and lr must be positive");
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= C) return aria_fail(err, ARIA_ERR_ARG, "linear probe: row %zu has class %d", i, y[i]);
    size_t nw = (size_t)C * (size_t)d, np = nw + (size_t)C;
    float *g = calloc(np, sizeof(float));
    float *m1 = calloc(np, sizeof(float));
    float *m2 = calloc(np, sizeof(float));
    double *p = malloc((size_t)C * sizeof(double));
    size_t *perm = malloc(n * sizeof(size_t));
    if (!g || !m1 || !m2 || !p || !perm) {
        free(g);
        free(m1);
        free(m2);
        free(p);
        free(perm);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    aria_rng rng;
    aria_rng_seed(&rng, o->seed);
    double bound = 1.0 / sqrt((double)d);
    for (size_t i = 0; i < nw; i++) W[i] = (float)aria_rng_uniform(&rng, -bound, bound);
    for (int c = 0; c < C; c++) b[c] = (float)aria_rng_uniform(&rng, -bound, bound);
    for (size_t i = 0; i < n; i++) perm[i] = i;

    const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    long per_epoch = (long)((n + (size_t)o->batch - 1) / (size_t)o->batch);
    long total = per_epoch * o->epochs, step = 0;
    for (int ep = 0; ep < o->epochs; ep++) {
        aria_rng_shuffle(&rng, perm, n, sizeof(size_t));
        for (size_t s0 = 0; s0 < n; s0 += (size_t)o->batch, step++) {
            size_t s1 = s0 + (size_t)o->batch < n ? s0 + (size_t)o->batch : n;
            double inv = 1.0 / (double)(s1 - s0);
            memset(g, 0, np * sizeof(float));
            for (size_t k = s0; k < s1; k++) {
                const float *x = X + perm[k] * (size_t)d;
                forward_row(x, d, C, W, b, p);
                p[y[perm[k]]] -= 1.0;
                for (int c = 0; c < C; c++) {
                    float gc = (float)(p[c] * inv);
                    float *gw = g + (size_t)c * (size_t)d;
                    for (int j = 0; j < d; j++) gw[j] += gc * x[j];
                    g[nw + (size_t)c] += gc;
                }
            }
            double lr = aria_probe_lr(o, step, total);
            double bc1 = 1.0 - pow(beta1, (double)(step + 1)), bc2 = 1.0 - pow(beta2, (double)(step + 1));
            for (size_t i = 0; i < np; i++) {
                float *w = i < nw ? &W[i] : &b[i - nw];
                *w = (float)(*w * (1.0 - lr * o->weight_decay));
                m1[i] = (float)(beta1 * m1[i] + (1 - beta1) * g[i]);
                m2[i] = (float)(beta2 * m2[i] + (1 - beta2) * (double)g[i] * g[i]);
                double mh = m1[i] / bc1, vh = m2[i] / bc2;
                *w = (float)(*w - lr * mh / (sqrt(vh) + eps));
            }
        }
    }
    free(g);
    free(m1);
    free(m2);
    free(p);
    free(perm);
    return ARIA_OK;
}

void aria_linear_predict(const float *X, size_t n, int d, int C, const float *W, const float *b, int *pred) {
    for (size_t i = 0; i < n; i++) {
        const float *x = X + i * (size_t)d;
        int best = 0;
        double bz = -INFINITY;
        for (int c = 0; c < C; c++) {
            const float *w = W + (size_t)c * (size_t)d;
            double z = b[c];
            for (int j = 0; j < d; j++) z += (double)w[j] * x[j];
            if (z > bz) {
                bz = z;
                best = c;
            }
        }
        pred[i] = best;
    }
}

void aria_probe_result_free(aria_probe_result *r) {
    if (!r) return;
    free(r->acc);
    free(r->f1);
    free(r->base_acc);
    free(r->base_f1);
    free(r->n_train);
    free(r->n_test);
    free(r->base_class);
    free(r->confusion);
    memset(r, 0, sizeof *r);
}

/* accuracy and macro-F1 (classes in the true or predicted labels) */
static void score(const int *yt, const int *yp, size_t n, int C, double *acc, double *f1) {
    size_t ok = 0;
    double sum = 0;
    int used = 0;
    for (size_t i = 0; i < n; i++) ok += yt[i] == yp[i];
    for (int c = 0; c < C; c++) {
        size_t tp = 0, fp = 0, fn = 0;
        for (size_t i = 0; i < n; i++) {
            tp += yt[i] == c && yp[i] == c;
            fp += yt[i] != c && yp[i] == c;
            fn += yt[i] == c && yp[i] != c;
        }
        if (tp + fp + fn == 0) continue;
        used++;
        sum += 2.0 * (double)tp / (double)(2 * tp + fp + fn);
    }
    *acc = n ? (double)ok / (double)n : 0;
    *f1 = used ? sum / used : 0;
}

static void mean_std(const double *v, int k, double *m, double *s) {
    double a = 0, q = 0;
    for (int i = 0; i < k; i++) a += v[i];
    a /= k;
    for (int i = 0; i < k; i++) q += (v[i] - a) * (v[i] - a);
    *m = a;
    *s = sqrt(q / k);
}

int aria_probe_cv(const float *X, const int *y, size_t n, int d, int C, const int *fold, const aria_probe_opts *o,
                  aria_probe_result *out, aria_error *err) {
    memset(out, 0, sizeof *out);
    if (!X || !y || !fold || !o || n == 0 || d <= 0 || C < 2)
        return aria_fail(err, ARIA_ERR_ARG, "probe: need rows, features and two classes or more");
    int k = o->folds;
    if (k < 2) return aria_fail(err, ARIA_ERR_ARG, "probe: %d folds, need 2 or more", k);
    for (size_t i = 0; i < n; i++)
        if (fold[i] < 0 || fold[i] >= k) return aria_fail(err, ARIA_ERR_ARG, "probe: row %zu is in fold %d", i, fold[i]);
    out->folds = k;
    out->n_classes = C;
    out->acc = calloc((size_t)k, sizeof(double));
    out->f1 = calloc((size_t)k, sizeof(double));
    out->base_acc = calloc((size_t)k, sizeof(double));
    out->base_f1 = calloc((size_t)k, sizeof(double));
    out->n_train = calloc((size_t)k, sizeof(size_t));
    out->n_test = calloc((size_t)k, sizeof(size_t));
    out->base_class = calloc((size_t)k, sizeof(int));
    out->confusion = calloc((size_t)C * (size_t)C, sizeof(int64_t));
    size_t *tr = malloc(n * sizeof(size_t)), *te = malloc(n * sizeof(size_t));
    float *Xtr = malloc(n * (size_t)d * sizeof(float)), *Xte = malloc(n * (size_t)d * sizeof(float));
    int *ytr = malloc(n * sizeof(int)), *yte = malloc(n * sizeof(int)), *pred = malloc(n * sizeof(int));
    int *base = malloc(n * sizeof(int));
    double *mu = malloc((size_t)d * sizeof(double)), *sd = malloc((size_t)d * sizeof(double));
    float *W = malloc((size_t)C * (size_t)d * sizeof(float)), *b = malloc((size_t)C * sizeof(float));
    size_t *per = malloc((size_t)C * sizeof(size_t));
    int rc = ARIA_OK;
    if (!out->acc || !out->f1 || !out->base_acc || !out->base_f1 || !out->n_train || !out->n_test ||
        !out->base_class || !out->confusion || !tr || !te || !Xtr || !Xte || !ytr || !yte || !pred || !base || !mu ||
        !sd || !W || !b || !per) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int f = 0; f < k && rc == ARIA_OK; f++) {
        size_t ntr = 0, nte = 0;
        for (size_t i = 0; i < n; i++) {
            if (fold[i] == f) te[nte++] = i;
            else tr[ntr++] = i;
        }
        if (nte == 0 || ntr == 0) {
            rc = aria_fail(err, ARIA_ERR_ARG, "probe: fold %d has %s", f, nte ? "every row" : "no rows");
            break;
        }
        aria_rng rng;
        aria_rng_seed(&rng, o->seed * 1000003ULL + (uint64_t)f);
        if (o->per_class > 0) { /* a seeded pick of at most per_class rows per class */
            aria_rng_shuffle(&rng, tr, ntr, sizeof(size_t));
            memset(per, 0, (size_t)C * sizeof(size_t));
            size_t w = 0;
            for (size_t j = 0; j < ntr; j++)
                if (per[y[tr[j]]] < (size_t)o->per_class) {
                    per[y[tr[j]]]++;
                    tr[w++] = tr[j];
                }
            ntr = w;
            /* back in row order: the fit's own shuffle decides the batches */
            for (size_t a = 1; a < ntr; a++) {
                size_t v = tr[a], j = a;
                while (j > 0 && tr[j - 1] > v) {
                    tr[j] = tr[j - 1];
                    j--;
                }
                tr[j] = v;
            }
        }
        /* z-scores from the training rows */
        for (int j = 0; j < d; j++) {
            double s = 0, q = 0;
            for (size_t a = 0; a < ntr; a++) s += X[tr[a] * (size_t)d + (size_t)j];
            double m = s / (double)ntr;
            for (size_t a = 0; a < ntr; a++) {
                double v = X[tr[a] * (size_t)d + (size_t)j] - m;
                q += v * v;
            }
            double v = sqrt(q / (double)ntr);
            mu[j] = m;
            sd[j] = v > 1e-12 ? v : 1.0;
        }
        for (size_t a = 0; a < ntr; a++) {
            for (int j = 0; j < d; j++)
                Xtr[a * (size_t)d + (size_t)j] = (float)((X[tr[a] * (size_t)d + (size_t)j] - mu[j]) / sd[j]);
            ytr[a] = y[tr[a]];
        }
        for (size_t a = 0; a < nte; a++) {
            for (int j = 0; j < d; j++)
                Xte[a * (size_t)d + (size_t)j] = (float)((X[te[a] * (size_t)d + (size_t)j] - mu[j]) / sd[j]);
            yte[a] = y[te[a]];
        }
        aria_probe_opts fo = *o;
        fo.seed = o->seed * 1000003ULL + (uint64_t)f + 7919;
        rc = aria_linear_fit(Xtr, ytr, ntr, d, C, &fo, W, b, err);
        if (rc != ARIA_OK) break;
        aria_linear_predict(Xte, nte, d, C, W, b, pred);
        /* the baseline: the training rows' most frequent class */
        memset(per, 0, (size_t)C * sizeof(size_t));
        for (size_t a = 0; a < ntr; a++) per[ytr[a]]++;
        int maj = 0;
        for (int c = 1; c < C; c++)
            if (per[c] > per[maj]) maj = c;
        for (size_t a = 0; a < nte; a++) base[a] = maj;
        score(yte, pred, nte, C, &out->acc[f], &out->f1[f]);
        score(yte, base, nte, C, &out->base_acc[f], &out->base_f1[f]);
        out->n_train[f] = ntr;
        out->n_test[f] = nte;
        out->base_class[f] = maj;
        for (size_t a = 0; a < nte; a++) out->confusion[(size_t)yte[a] * (size_t)C + (size_t)pred[a]]++;
    }
    if (rc == ARIA_OK) {
        mean_std(out->acc, k, &out->acc_mean, &out->acc_std);
        mean_std(out->f1, k, &out->f1_mean, &out->f1_std);
        mean_std(out->base_acc, k, &out->base_acc_mean, &out->base_acc_std);
        mean_std(out->base_f1, k, &out->base_f1_mean, &out->base_f1_std);
    }
done:
    free(tr);
    free(te);
    free(Xtr);
    free(Xte);
    free(ytr);
    free(yte);
    free(pred);
    free(base);
    free(mu);
    free(sd);
    free(W);
    free(b);
    free(per);
    if (rc != ARIA_OK) aria_probe_result_free(out);
    return rc;
}
