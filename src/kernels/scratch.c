/*
 * scratch.c - large temporary buffers kept between uses (see pool.h).
 *
 * Products and attention need temporaries of up to ~150 MB (the bfloat16
 * copy of the lm_head's gradient); fresh memory for each one cost ~10 % of
 * a training step in page faults. A context keeps up to SCRATCH_SLOTS
 * buffers: a request takes the smallest free one that fits, else the
 * largest free one grows. When every slot is held, the request gets memory
 * of its own, freed when it is given back.
 */
#include "kernels/pool.h"

#include <pthread.h>
#include <stdlib.h>

#define SCRATCH_SLOTS 8
#define SCRATCH_ALIGN 64

struct kern_scratch {
    pthread_mutex_t lock;
    struct {
        void *p;
        size_t cap;
        int busy;
    } slot[SCRATCH_SLOTS];
};

kern_scratch *kern_scratch_new(void) {
    kern_scratch *s = calloc(1, sizeof *s);
    if (s && pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

void kern_scratch_free(kern_scratch *s) {
    if (!s) return;
    for (int i = 0; i < SCRATCH_SLOTS; i++) free(s->slot[i].p);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void *alloc_aligned(size_t bytes) {
    size_t n = (bytes + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN;
    return aligned_alloc(SCRATCH_ALIGN, n ? n : SCRATCH_ALIGN);
}

/* The slot a request of `bytes` should use, or -1 when all are held. */
static int pick_slot(const kern_scratch *s, size_t bytes) {
    int best = -1;
    for (int i = 0; i < SCRATCH_SLOTS; i++) {
        if (s->slot[i].busy) continue;
        int fits = s->slot[i].cap >= bytes, best_fits = best >= 0 && s->slot[best].cap >= bytes;
        if (best < 0 || (fits && (!best_fits || s->slot[i].cap < s->slot[best].cap)) ||
            (!fits && !best_fits && s->slot[i].cap > s->slot[best].cap))
            best = i;
    }
    return best;
}

void *kern_scratch_get(kern_scratch *s, size_t bytes) {
    if (!s) return alloc_aligned(bytes);
    void *p = NULL;
    pthread_mutex_lock(&s->lock);
    int i = pick_slot(s, bytes);
    if (i >= 0) {
        if (s->slot[i].cap < bytes) {
            free(s->slot[i].p);
            s->slot[i].p = alloc_aligned(bytes);
            s->slot[i].cap = s->slot[i].p ? bytes : 0;
        }
        if (s->slot[i].p) {
            s->slot[i].busy = 1;
            p = s->slot[i].p;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return p ? p : alloc_aligned(bytes);
}

void kern_scratch_put(kern_scratch *s, void *p) {
    if (!p) return;
    if (s) {
        pthread_mutex_lock(&s->lock);
        for (int i = 0; i < SCRATCH_SLOTS; i++)
            if (s->slot[i].p == p) {
                s->slot[i].busy = 0;
                p = NULL;
            }
        pthread_mutex_unlock(&s->lock);
    }
    free(p);
}

void kern_scratch_trim(kern_scratch *s) {
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < SCRATCH_SLOTS; i++)
        if (!s->slot[i].busy) {
            free(s->slot[i].p);
            s->slot[i].p = NULL;
            s->slot[i].cap = 0;
        }
    pthread_mutex_unlock(&s->lock);
}
