/*
 * blocked.h - the training attention of fast precision, built from other
 * kernels (blocked.c); dispatch.c runs it per (row, head).
 *
 * Internal header of src/kernels.
 */
#ifndef ARIA_KERNELS_BLOCKED_H
#define ARIA_KERNELS_BLOCKED_H

#include "kernels/backend.h"

/* One (row b, head h) of kern_attention_fwd / _bwd. qkvh, douth:
   bfloat16 copies of qkv and dout (dense, the same layout) for bfloat16
   products, or NULL for float32 ones. -1 when the context's scratch had no
   memory for the block's scores (nothing written). */
int kern_blocked_attention_fwd(aria_ctx *c, const kern_attn_args *a, const uint16_t *qkvh, int b, int h);
int kern_blocked_attention_bwd(aria_ctx *c, const kern_attn_args *a, const uint16_t *qkvh, const uint16_t *douth,
                               int b, int h);

#endif
