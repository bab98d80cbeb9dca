/*
 * quant.c - the block-quantized weight formats (q8_0, q4_0): turning a
 * row of float32 weights into blocks of integers with one float16 scale
 * each, and back (q4_k's super-blocks are quant_k.c's; the entry points
 * here hand them over). The formats are described in kernels.h and
 * docs/quantization.md; the products that read them are the backends'
 * (backend_portable.c for every CPU, backend_quant.c with VNNI).
 *
 * How a block is chosen. q8_0: the scale is the block's largest magnitude
 * over 127, so that weight maps to +-127 and every other weight to the
 * nearest multiple of the scale. q4_0: the scale is the weight of largest
 * magnitude over -8, keeping its sign, so that weight lands exactly on -8
 * (the one extreme a signed nibble can reach on both sides) and the rest
 * round into -8..7. In both the scale is rounded to float16 before the
 * integers are picked, so the integers fit the scale that is stored.
 */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

float kern_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | man << 13; /* inf, NaN */
    } else if (exp) {
        u = sign | (exp + 112) << 23 | man << 13;
    } else if (man) { /* subnormal: normalise */
        int e = 113;
        while (!(man & 0x400)) man <<= 1, e--;
        u = sign | (uint32_t)e << 23 | (man & 0x3ff) << 13;
    } else {
        u = sign;
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t kern_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint16_t sign = (uint16_t)(u >> 16 & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0); /* inf, NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00;                              /* rounds past 65504 */
    if (a < 0x38800000u) { /* below the smallest normal: a multiple of 2^-24 */
        float m = fabsf(f) * 16777216.0f; /* exact: a power-of-two scaling */
        return sign | (uint16_t)lrintf(m); /* rint: to nearest even */
    }
    uint32_t r = a + 0xfff + (a >> 13 & 1); /* round to nearest even at bit 13 */
    return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

size_t kern_quant_row_bytes(aria_dtype type, int cols) {
    return type == ARIA_DT_Q4_0 || type == ARIA_DT_Q4_K ? (size_t)cols / 2 : (size_t)cols;
}

static void quant_block_q8_0(const float *x, int8_t *q, uint16_t *scale) {
    float amax = 0.0f;
    for (int j = 0; j < KERN_QBLOCK; j++) amax = fmaxf(amax, fabsf(x[j]));
    uint16_t h = kern_f32_to_f16(amax / 127.0f);
    float d = kern_f16_to_f32(h), id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < KERN_QBLOCK; j++) {
        float v = roundf(x[j] * id);
        q[j] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : v);
    }
    *scale = h;
}

static void quant_block_q4_0(const float *x, uint8_t *q, uint16_t *scale) {
    float m = 0.0f;
    for (int j = 0; j < KERN_QBLOCK; j++)
        if (fabsf(x[j]) > fabsf(m)) m = x[j];
    uint16_t h = kern_f32_to_f16(m / -8.0f);
    float d = kern_f16_to_f32(h), id = d != 0.0f ? 1.0f / d : 0.0f;
    int n[KERN_QBLOCK];
    for (int j = 0; j < KERN_QBLOCK; j++) {
        float v = roundf(x[j] * id) + 8.0f;
        n[j] = v < 0.0f ? 0 : v > 15.0f ? 15 : (int)v;
    }
    for (int j = 0; j < KERN_QBLOCK / 2; j++) q[j] = (uint8_t)(n[j] | n[j + KERN_QBLOCK / 2] << 4);
    *scale = h;
}

void kern_quant_row(aria_dtype type, const float *x, int cols, void *q, uint16_t *scales) {
    if (type == ARIA_DT_Q4_K) { /* quant_k.c */
        kern_q4k_quant_row(x, cols, q, (uint8_t *)scales);
        return;
    }
    for (int b = 0; b < cols / KERN_QBLOCK; b++) {
        if (type == ARIA_DT_Q4_0)
            quant_block_q4_0(x + b * KERN_QBLOCK, (uint8_t *)q + b * KERN_QBLOCK / 2, scales + b);
        else
            quant_block_q8_0(x + b * KERN_QBLOCK, (int8_t *)q + b * KERN_QBLOCK, scales + b);
    }
}

void kern_dequant_row(aria_dtype type, const void *q, const uint16_t *scales, int cols, float *out) {
    if (type == ARIA_DT_Q4_K) {
        kern_q4k_dequant_row(q, (const uint8_t *)scales, cols, out);
        return;
    }
    for (int b = 0; b < cols / KERN_QBLOCK; b++) {
        float d = kern_f16_to_f32(scales[b]);
        float *o = out + b * KERN_QBLOCK;
        if (type == ARIA_DT_Q4_0) {
            const uint8_t *p = (const uint8_t *)q + b * KERN_QBLOCK / 2;
            for (int j = 0; j < KERN_QBLOCK / 2; j++) {
                o[j] = d * (float)((p[j] & 15) - 8);
                o[j + KERN_QBLOCK / 2] = d * (float)((p[j] >> 4) - 8);
            }
        } else {
            const int8_t *p = (const int8_t *)q + b * KERN_QBLOCK;
            for (int j = 0; j < KERN_QBLOCK; j++) o[j] = d * (float)p[j];
        }
    }
}
