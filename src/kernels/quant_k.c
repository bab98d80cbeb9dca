/*
 * quant_k.c - the q4_k weight format: super-blocks of 256 weights, each
 * 8 sub-blocks of 32 with their own 6-bit scale and 6-bit min, so a
 * weight is w = d*sc*q - dmin*m with q in 0..15 (the layout of ggml's
 * k-quants; kernels.h and docs/quantization.md describe the bytes). Turning
 * a row of float32 weights into that, and back.
 *
 * Why a min as well as a scale: q4_0's blocks are symmetric around zero,
 * so a block whose weights lean to one side wastes part of its 16 levels;
 * with a min the 16 levels span [lo, hi] of each sub-block.
 *
 * How a super-block is chosen (the algorithm of bench/q4k_quality.py, in
 * double precision as that script computes, so both give the same bytes):
 *  1. each sub-block's (scale s, min m), x ~= s*q - m: start from the
 *     plain fit (the range over 15, m = -min(lo, 0)), then try 17 scales
 *     around it, (15 + t/10) / range for t = -8..8; each picks integers,
 *     then s and m are refitted to those integers by least squares (m >= 0,
 *     s >= 0); the pair of smallest squared error is kept;
 *  2. d = largest s / 63 and dmin = largest m / 63, rounded to float16;
 *     the 6-bit codes are s/d and m/dmin rounded to nearest (even);
 *  3. the integers are chosen again for the values stored (d*sc, dmin*m),
 *     so they fit what a reader computes.
 * Sums over a sub-block add in numpy's order (8 running sums, then
 * pairwise), so near-ties fall the same way as in the script.
 */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

/* ---- the packed scales ------------------------------------------------ */

void kern_q4k_scale_min(const uint8_t *k, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = k[j] & 63;
        *m = k[j + 4] & 63;
    } else { /* low 4 bits in byte j + 4, high 2 in the top of bytes j - 4 and j */
        *sc = (k[j + 4] & 15) | (k[j - 4] >> 6) << 4;
        *m = (k[j + 4] >> 4) | (k[j] >> 6) << 4;
    }
}

static void pack_scale_min(const int sc[8], const int m[8], uint8_t k[12]) {
    for (int j = 0; j < 4; j++) {
        k[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        k[j + 4] = (uint8_t)(m[j] | (m[j + 4] >> 4) << 6);
        k[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
    }
}

/* ---- the quantizer ---------------------------------------------------- */

/* float16 of a double, rounded once (to nearest, ties to even): what
   numpy's astype(float16) gives. Going through float32 would round twice,
   which differs where the float32 lands on a float16 midpoint. */
static uint16_t f64_to_f16(double v) {
    double a = fabs(v);
    uint16_t sign = v < 0 ? 0x8000 : 0, h = kern_f32_to_f16((float)a);
    if (!isfinite(a) || (h & 0x7c00) == 0x7c00) return sign | h;
    double hv = kern_f16_to_f32(h);
    if (hv == a) return sign | h;
    uint16_t o = hv < a ? (uint16_t)(h + 1) : (uint16_t)(h - 1); /* the neighbour on a's other side */
    double ov = kern_f16_to_f32(o), dh = fabs(a - hv), dov = fabs(a - ov);
    if (dov < dh || (dov == dh && !(o & 1))) h = o;
    return sign | h;
}

/* numpy's sum of 32 doubles: 8 running sums, combined pairwise. */
static double sum32(const double *a) {
    double r[8];
    for (int j = 0; j < 8; j++) r[j] = a[j];
    for (int i = 8; i < 32; i += 8)
        for (int j = 0; j < 8; j++) r[j] += a[i + j];
    return ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
}

static double clampd(double v, double hi) { return v < 0 ? 0 : v > hi ? hi : v; }

#define SUB 32

/* Step 1 for one sub-block: *s, *m with x ~= s*q - m. */
static void fit_sub(const double *x, double *s_out, double *m_out) {
    double lo = x[0], hi = x[0];
    for (int j = 1; j < SUB; j++) lo = fmin(lo, x[j]), hi = fmax(hi, x[j]);
    lo = fmin(lo, 0.0);
    double rng = fmax(hi - lo, 1e-30);
    double best_s = rng / 15, best_m = -lo, t[SUB];
    for (int j = 0; j < SUB; j++) {
        double q = clampd(rint((x[j] - lo) / best_s), 15);
        double e = best_s * q - best_m - x[j];
        t[j] = e * e;
    }
    double best_e = sum32(t);
    for (int st = -8; st <= 8; st++) {
        double iscale = (15 + (double)st * 0.1) / rng;
        double q[SUB], q2[SUB], qx[SUB];
        for (int j = 0; j < SUB; j++) {
            q[j] = clampd(rint((x[j] - lo) * iscale), 15);
            q2[j] = q[j] * q[j];
            qx[j] = q[j] * x[j];
        }
        /* least squares for x ~= s q + b */
        double sq = sum32(q), sq2 = sum32(q2), sx = sum32(x), sqx = sum32(qx);
        double det = SUB * sq2 - sq * sq, s, b;
        if (det > 0) {
            s = (SUB * sqx - sq * sx) / det;
            b = (sq2 * sx - sq * sqx) / det;
        } else {
            s = best_s;
            b = lo;
        }
        if (b > 0) { /* the format's min is >= 0 (b <= 0): s alone with b = 0 */
            s = sqx / fmax(sq2, 1e-30);
            b = 0.0;
        }
        s = fmax(s, 0.0);
        for (int j = 0; j < SUB; j++) {
            double e = s * q[j] + b - x[j];
            t[j] = e * e;
        }
        double e = sum32(t);
        if (e < best_e) best_e = e, best_s = s, best_m = -b;
    }
    *s_out = best_s;
    *m_out = best_m;
}

/* One super-block of 256 weights: 128 bytes of nibbles into q, d, dmin and
   the 12 bytes of codes into k (16 bytes). */
static void quant_super(const float *xf, uint8_t *qout, uint8_t *k) {
    double x[KERN_QK_SUPER], s[8], m[8], smax = 0, mmax = 0;
    for (int i = 0; i < KERN_QK_SUPER; i++) x[i] = xf[i];
    for (int j = 0; j < 8; j++) {
        fit_sub(x + j * SUB, &s[j], &m[j]);
        smax = j ? fmax(smax, s[j]) : s[j];
        mmax = j ? fmax(mmax, m[j]) : m[j];
    }
    uint16_t hd = f64_to_f16(smax / 63.0), hm = f64_to_f16(mmax / 63.0);
    double d = kern_f16_to_f32(hd), dmin = kern_f16_to_f32(hm);
    int sc[8], mc[8];
    uint8_t n[KERN_QK_SUPER];
    for (int j = 0; j < 8; j++) {
        sc[j] = (int)clampd(rint(s[j] / (d > 0 ? d : 1)), 63);
        mc[j] = (int)clampd(rint(m[j] / (dmin > 0 ? dmin : 1)), 63);
        double es = d * sc[j], em = dmin * mc[j];
        for (int i = 0; i < SUB; i++)
            n[j * SUB + i] = es > 0 ? (uint8_t)clampd(rint((x[j * SUB + i] + em) / es), 15) : 0;
    }
    memcpy(k, &hd, 2); /* little-endian hosts (as the whole file format) */
    memcpy(k + 2, &hm, 2);
    pack_scale_min(sc, mc, k + 4);
    /* 32 bytes per pair of sub-blocks: the first in the low nibbles */
    for (int p = 0; p < 4; p++)
        for (int l = 0; l < SUB; l++) qout[p * SUB + l] = (uint8_t)(n[64 * p + l] | n[64 * p + SUB + l] << 4);
}

void kern_q4k_quant_row(const float *x, int cols, uint8_t *q, uint8_t *k) {
    for (int b = 0; b < cols / KERN_QK_SUPER; b++)
        quant_super(x + (size_t)b * KERN_QK_SUPER, q + (size_t)b * KERN_QK_SUPER / 2, k + (size_t)b * KERN_QK_HEAD);
}

/* ---- back to float32 -------------------------------------------------- */

void kern_q4k_dequant_super(const uint8_t *q, const uint8_t *k, float *out) {
    uint16_t hd, hm;
    memcpy(&hd, k, 2);
    memcpy(&hm, k + 2, 2);
    float d = kern_f16_to_f32(hd), dmin = kern_f16_to_f32(hm);
    for (int p = 0; p < 4; p++) {
        int sc0, m0, sc1, m1;
        kern_q4k_scale_min(k + 4, 2 * p, &sc0, &m0);
        kern_q4k_scale_min(k + 4, 2 * p + 1, &sc1, &m1);
        /* the scale and min as float32 products first, then w = es q - em:
           two roundings, the same as the script's float32 reader */
        float es0 = d * (float)sc0, em0 = dmin * (float)m0, es1 = d * (float)sc1, em1 = dmin * (float)m1;
        const uint8_t *b = q + p * SUB;
        float *o = out + 64 * p;
        for (int l = 0; l < SUB; l++) {
            o[l] = es0 * (float)(b[l] & 15) - em0;
            o[SUB + l] = es1 * (float)(b[l] >> 4) - em1;
        }
    }
}

void kern_q4k_dequant_row(const uint8_t *q, const uint8_t *k, int cols, float *out) {
    for (int b = 0; b < cols / KERN_QK_SUPER; b++)
        kern_q4k_dequant_super(q + (size_t)b * KERN_QK_SUPER / 2, k + (size_t)b * KERN_QK_HEAD,
                               out + (size_t)b * KERN_QK_SUPER);
}
