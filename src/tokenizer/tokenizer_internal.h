/*
 * tokenizer_internal.h - the tokenizer configuration, shared by the files
 * of the tokenizer layer (tokenizer.c, tokenizer_ops.c). Not public.
 */
#ifndef ARIA_TOKENIZER_INTERNAL_H
#define ARIA_TOKENIZER_INTERNAL_H

#include "aria.h"

#define SEG_MS 5000       /* abs_time_step_ms: one <T> per segment */
#define MAX_DUR_MS 5000
#define STEP_MS 10        /* time_step_ms */
#define VEL_STEP 10
#define DRUM_VELOCITY 60
#define N_VEL 13          /* 0, 10, ..., 120 */
#define N_DUR 501         /* 0, 10, ..., 5000 */
#define N_ONSET 500       /* 0, 10, ..., 4990 */
#define DRUM_LO 35
#define DRUM_HI 81

/* instrument_programs of the configuration: the program a decoded
   instrument class is written with */
static const uint8_t tok_class_program[16] = {0, 13, 16, 24, 32, 40, 48, 56,
                                              64, 73, 80, 88, 96, 104, 112, 120};

struct aria_tokenizer {
    aria_tok_variant variant;
    int n_instr;                 /* instruments_nd, in config order */
    uint8_t instr[16];
    int instr_index[ARIA_N_INSTR]; /* class -> position in instr[], or -1 */
    uint32_t ignore_mask;        /* classes removed before tokenizing */
    int include_drums, include_pedal, include_delim;
    int n_names[4];              /* per prefix kind (instrument unused) */
    /* first id of each group */
    int id_prefix_instr, id_composer, id_form, id_genre;
    int id_note, id_drum, id_dur, id_onset, id_ped_on, id_delim;
    int vocab_size;
};

/* The reference's "special tokens" for detokenize and augmentation:
   <S> <E> <P> <U> <D> <T>, and <X> when the configuration has it (the
   pedal tokens are not in that set). */
static inline int tok_is_listed_special(const aria_tokenizer *t, aria_token k) {
    return k.kind == ARIA_TK_SPECIAL &&
           (k.v <= ARIA_SP_TIME || (k.v == ARIA_SP_DELIM && t->include_delim));
}

/* A note token of one of the configuration's instruments. */
static inline int tok_is_known_note(const aria_tokenizer *t, aria_token k) {
    return k.kind == ARIA_TK_NOTE && k.a < 16 && t->instr_index[k.a] >= 0;
}

#endif
