/*
 * objectives.c - the losses of the finetuning objectives that read a
 * head at one position (spec 3.4, 3.5): the symmetric NT-Xent of the
 * contrastive embedding finetune and the softmax cross-entropy of the
 * classifier, each with its gradient with respect to the head's output
 * (what aria_trainer_backward_at takes). Sums are in double.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"

/* Row i of x [n][dim] divided by its L2 norm (torch F.normalize: the
   norm floored at 1e-12); norms into nrm. */
static void normalize_rows(const float *x, int n, int dim, double *out, double *nrm) {
    for (int i = 0; i < n; i++) {
        double ss = 0;
        for (int k = 0; k < dim; k++) ss += (double)x[(size_t)i * dim + k] * x[(size_t)i * dim + k];
        double r = sqrt(ss);
        if (r < 1e-12) r = 1e-12;
        nrm[i] = r;
        for (int k = 0; k < dim; k++) out[(size_t)i * dim + k] = x[(size_t)i * dim + k] / r;
    }
}

/* d loss / d x from d loss / d (x / |x|), row by row. */
static void normalize_bwd(const double *u, const double *du, const double *nrm, int n, int dim, float *dx) {
    for (int i = 0; i < n; i++) {
        const double *ui = u + (size_t)i * dim, *gi = du + (size_t)i * dim;
        double dot = 0;
        for (int k = 0; k < dim; k++) dot += ui[k] * gi[k];
        for (int k = 0; k < dim; k++) dx[(size_t)i * dim + k] = (float)((gi[k] - ui[k] * dot) / nrm[i]);
    }
}

float aria_ntxent(const float *z1, const float *z2, int B, int dim, float tau, float *S_out, float *dz1,
                  float *dz2) {
    if (B < 1 || dim < 1 || !(tau > 0)) return NAN;
    size_t bd = (size_t)B * dim, bb = (size_t)B * B;
    double *u1 = malloc(bd * sizeof *u1), *u2 = malloc(bd * sizeof *u2), *n1 = malloc((size_t)B * sizeof *n1),
           *n2 = malloc((size_t)B * sizeof *n2), *S = malloc(bb * sizeof *S), *G = calloc(bb, sizeof *G),
           *g1 = calloc(bd, sizeof *g1), *g2 = calloc(bd, sizeof *g2);
    float loss = NAN;
    if (!u1 || !u2 || !n1 || !n2 || !S || !G || !g1 || !g2) goto out;
    normalize_rows(z1, B, dim, u1, n1);
    normalize_rows(z2, B, dim, u2, n2);
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            double c = 0;
            for (int k = 0; k < dim; k++) c += u1[(size_t)i * dim + k] * u2[(size_t)j * dim + k];
            S[(size_t)i * B + j] = c / tau;
            if (S_out) S_out[(size_t)i * B + j] = (float)(c / tau);
        }
    /* rows: view 1 against every view 2; columns: view 2 against every view 1 */
    double l_rows = 0, l_cols = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < B; i++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < B; j++) {
                double s = pass ? S[(size_t)j * B + i] : S[(size_t)i * B + j];
                if (s > mx) mx = s;
            }
            for (int j = 0; j < B; j++) sum += exp((pass ? S[(size_t)j * B + i] : S[(size_t)i * B + j]) - mx);
            double lse = mx + log(sum), diag = S[(size_t)i * B + i];
            if (pass)
                l_cols += lse - diag;
            else
                l_rows += lse - diag;
            /* d (mean CE) / d S, halved for the symmetric mean */
            for (int j = 0; j < B; j++) {
                size_t at = pass ? (size_t)j * B + i : (size_t)i * B + j;
                double p = exp(S[at] - lse);
                G[at] += 0.5 * (p - (i == j)) / B;
            }
        }
    loss = (float)(0.5 * (l_rows / B + l_cols / B));
    if (!dz1 && !dz2) goto out;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            double gij = G[(size_t)i * B + j] / tau;
            if (gij == 0) continue;
            for (int k = 0; k < dim; k++) {
                g1[(size_t)i * dim + k] += gij * u2[(size_t)j * dim + k];
                g2[(size_t)j * dim + k] += gij * u1[(size_t)i * dim + k];
            }
        }
    if (dz1) normalize_bwd(u1, g1, n1, B, dim, dz1);
    if (dz2) normalize_bwd(u2, g2, n2, B, dim, dz2);
out:
    free(u1);
    free(u2);
    free(n1);
    free(n2);
    free(S);
    free(G);
    free(g1);
    free(g2);
    return loss;
}

int aria_ntxent_hits(const float *z1, const float *z2, int B, int dim) {
    int hits = 0;
    for (int i = 0; i < B; i++) {
        double best = -INFINITY;
        int arg = -1;
        /* the row's own norm does not change which column is best */
        for (int j = 0; j < B; j++) {
            double c = 0, nj = 0;
            for (int k = 0; k < dim; k++) {
                c += (double)z1[(size_t)i * dim + k] * z2[(size_t)j * dim + k];
                nj += (double)z2[(size_t)j * dim + k] * z2[(size_t)j * dim + k];
            }
            c /= sqrt(nj > 1e-24 ? nj : 1e-24);
            if (c > best) best = c, arg = j;
        }
        hits += arg == i;
    }
    return hits;
}

float aria_softmax_xent(const float *logits, int n, int C, const int *y, float *probs, float *dlogits, float scale) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * C;
        double mx = -INFINITY, sum = 0;
        for (int c = 0; c < C; c++) mx = l[c] > mx ? l[c] : mx;
        for (int c = 0; c < C; c++) sum += exp(l[c] - mx);
        double lse = mx + log(sum);
        if (y) total += lse - l[y[i]];
        for (int c = 0; c < C; c++) {
            double p = exp(l[c] - lse);
            if (probs) probs[(size_t)i * C + c] = (float)p;
            if (dlogits && y) dlogits[(size_t)i * C + c] = (float)(scale * (p - (c == y[i])) / n);
        }
    }
    return y && n ? (float)(total / n) : 0.0f;
}
