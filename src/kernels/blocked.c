/*
 * blocked.c - the training attention of fast precision: blocks of QB
 * queries against the keys they can see, as matrix products on the
 * calling thread; the probabilities of a block live in a QB x T scratch,
 * never the whole T x T matrix. With bfloat16 copies of q, k, v and dout
 * (oneDNN) the products take bfloat16 operands (P and dS converted per
 * block) and accumulate in float32; softmax, the log-sum-exp and dS are
 * float32. Without them, or should a product be refused, they are float32
 * sgemm.
 *
 * Not a backend: it calls only the entry points of kernels.h (which pick a
 * backend for each piece), as any caller would.
 */
#include "kernels/blocked.h"

#include <math.h>
#include <string.h>

#define QB 64

/* C (+)= op(A) op(B): bfloat16 when both copies are given, else float32. */
static void att_mm(aria_ctx *c, int ta, int tb, int M, int N, int K, const uint16_t *Ah, const float *A, int lda,
                   const uint16_t *Bh, const float *B, int ldb, float *C, int ldc, int acc) {
    if (Ah && Bh && kern_gemm_bf16_st(c, ta, tb, M, N, K, Ah, lda, Bh, ldb, C, ldc, acc) == 0) return;
    kern_sgemm_st(c, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, acc ? 1.0f : 0.0f, C, ldc);
}

int kern_blocked_attention_fwd(aria_ctx *c, const kern_attn_args *a, const uint16_t *qkvh, int b, int h) {
    int d = a->d, d3 = 3 * d, hd = a->hd, T = a->T;
    float scale = 1.0f / sqrtf((float)hd);
    size_t base = (size_t)b * T * d3 + (size_t)h * hd;
    const float *q = a->qkv + base, *k = q + d, *v = q + 2 * d;
    const uint16_t *qh = qkvh ? qkvh + base : NULL, *kh = qh ? qh + d : NULL, *vh = qh ? qh + 2 * d : NULL;
    float *o = a->o + (size_t)b * T * d + (size_t)h * hd;
    /* scores (float32), then their bfloat16 copy */
    kern_scratch *ks = c->res.scratch;
    float *s = kern_scratch_get(ks, (size_t)QB * T * (sizeof *s + sizeof(uint16_t)));
    if (!s) return -1;
    uint16_t *ph = (uint16_t *)(s + (size_t)QB * T);
    for (int t0 = 0; t0 < T; t0 += QB) {
        int nq = T - t0 < QB ? T - t0 : QB, nk = t0 + nq;
        size_t qo = (size_t)t0 * d3;
        att_mm(c, 0, 1, nq, nk, hd, qh ? qh + qo : NULL, q + qo, d3, kh, k, d3, s, nk, 0);
        kern_scale(c, s, (size_t)nq * nk, scale);
        for (int r = 0; r < nq; r++) {
            float *sr = s + (size_t)r * nk;
            int n = t0 + r + 1; /* keys 0 .. t */
            float lse = kern_logsumexp(c, sr, (size_t)n);
            kern_exp_scale(c, sr, (size_t)n, lse, 1.0f);
            memset(sr + n, 0, (size_t)(nk - n) * sizeof *sr);
            a->lse[((size_t)b * T + t0 + r) * a->H + h] = lse;
        }
        if (qh) kern_to_bf16(c, s, ph, (size_t)nq * nk);
        att_mm(c, 0, 0, nq, hd, nk, qh ? ph : NULL, s, nk, vh, v, d3, o + (size_t)t0 * d, d, 0);
    }
    kern_scratch_put(ks, s);
    return 0;
}

int kern_blocked_attention_bwd(aria_ctx *c, const kern_attn_args *a, const uint16_t *qkvh, const uint16_t *douth,
                               int b, int h) {
    int d = a->d, d3 = 3 * d, hd = a->hd, T = a->T;
    float scale = 1.0f / sqrtf((float)hd);
    size_t base = (size_t)b * T * d3 + (size_t)h * hd, obase = (size_t)b * T * d + (size_t)h * hd;
    const float *q = a->qkv + base, *k = q + d, *v = q + 2 * d;
    const float *o = a->out + obase, *dO = a->dout + obase;
    const uint16_t *qh = qkvh && douth ? qkvh + base : NULL, *kh = qh ? qh + d : NULL, *vh = qh ? qh + 2 * d : NULL;
    const uint16_t *doh = qh ? douth + obase : NULL;
    float *dq = a->dqkv + base, *dk = dq + d, *dv = dq + 2 * d;
    kern_scratch *ks = c->res.scratch;
    float *pr = kern_scratch_get(ks, (size_t)QB * T * 2 * (sizeof *pr + sizeof(uint16_t)));
    if (!pr) return -1;
    float *dp = pr + (size_t)QB * T;
    uint16_t *prh = (uint16_t *)(dp + (size_t)QB * T), *dsh = prh + (size_t)QB * T;
    for (int t0 = 0; t0 < T; t0 += QB) {
        int nq = T - t0 < QB ? T - t0 : QB, nk = t0 + nq;
        size_t qo = (size_t)t0 * d3, oo = (size_t)t0 * d, nn = (size_t)nq * nk;
        /* P = exp(q k^T scale - lse), masked */
        att_mm(c, 0, 1, nq, nk, hd, qh ? qh + qo : NULL, q + qo, d3, kh, k, d3, pr, nk, 0);
        kern_scale(c, pr, nn, scale);
        /* dP = dO v^T */
        att_mm(c, 0, 1, nq, nk, hd, doh ? doh + oo : NULL, dO + oo, d, vh, v, d3, dp, nk, 0);
        for (int r = 0; r < nq; r++) {
            float *p = pr + (size_t)r * nk, *g = dp + (size_t)r * nk;
            int n = t0 + r + 1;
            size_t row = (size_t)t0 + r;
            kern_exp_scale(c, p, (size_t)n, a->lse_in[((size_t)b * T + row) * a->H + h], 1.0f);
            memset(p + n, 0, (size_t)(nk - n) * sizeof *p);
            const float *orow = o + row * d, *dorow = dO + row * d;
            float D = 0;
            for (int e = 0; e < hd; e++) D += dorow[e] * orow[e];
            /* dS = P (dP - D) scale, in dp */
            kern_softmax_bwd(c, p, g, (size_t)n, D, scale);
            memset(g + n, 0, (size_t)(nk - n) * sizeof *g);
        }
        if (qh) {
            kern_to_bf16(c, pr, prh, nn);
            kern_to_bf16(c, dp, dsh, nn);
        }
        /* dq = dS k; dk += dS^T q; dv += P^T dO */
        att_mm(c, 0, 0, nq, hd, nk, qh ? dsh : NULL, dp, nk, kh, k, d3, dq + qo, d3, 1);
        att_mm(c, 1, 0, nk, hd, nq, qh ? dsh : NULL, dp, nk, qh ? qh + qo : NULL, q + qo, d3, dk, d3, 1);
        att_mm(c, 1, 0, nk, hd, nq, qh ? prh : NULL, pr, nk, doh ? doh + oo : NULL, dO + oo, d, dv, d3, 1);
    }
    kern_scratch_put(ks, pr);
    return 0;
}
