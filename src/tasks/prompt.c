/*
 * prompt.c - what a model needs from a MIDI file before it generates:
 * the tokenizer that matches the model's vocabulary, and the prompt ids
 * of the file's first seconds (aria generate --prompt).
 *
 * The prompt window counts from the file's time 0, as the reference's
 * does, so a file whose first note comes after the window gives a prompt
 * without notes ([piano prefix, <S>]). That is not an error, but a user
 * asking for 2 s of a piece that starts at 3.2 s almost certainly wants
 * to hear about it: the condition comes back as a flag (with the first
 * note's time) for the caller to turn into a warning. A damaged file
 * (cut short, say) is read as far as it goes, as the reference's users
 * expect, and flagged the same way with the reader's first warning.
 */
#include <stdio.h>
#include <stdlib.h>

#include "aria.h"
#include "base/util.h"

aria_tok_variant aria_tok_variant_for_vocab(int vocab_size) {
    switch (vocab_size) {
    case 17729: return ARIA_TOKCFG_DEMO_17729;
    case 2675: return ARIA_TOKCFG_DEMO_2675;
    default: return ARIA_TOKCFG_DEFAULT;
    }
}

aria_tokenizer *aria_tokenizer_for_model(const aria_model *m) {
    const aria_model_config *c = m ? aria_model_get_config(m) : NULL;
    return aria_tokenizer_new(aria_tok_variant_for_vocab(c ? c->vocab_size : 0));
}

/* The onset of the score's first note in ms; -1 when it has none. */
static int64_t prompt_first_note_ms(const aria_score *s) {
    return s->n_notes ? aria_score_tick_to_ms(s, s->notes[0].start) : -1;
}

int aria_prompt_from_file(const aria_tokenizer *t, const char *path, int64_t prompt_ms, int32_t **ids, size_t *n,
                          aria_prompt_info *info, aria_error *err) {
    *ids = NULL;
    *n = 0;
    aria_prompt_info local;
    if (!info) info = &local;
    *info = (aria_prompt_info){0};
    aria_midi m = {0};
    aria_score s = {0};
    aria_token *toks = NULL;
    size_t nt = 0;
    int rc = aria_midi_read_file(&m, path, err);
    if (rc == ARIA_OK && m.n_warnings) { /* a damaged file: read as far as it goes, flagged */
        info->n_warnings = m.n_warnings;
        snprintf(info->warning, sizeof info->warning, "%s", m.warnings[0]);
    }
    if (rc == ARIA_OK) rc = aria_score_from_midi(&s, &m, err);
    aria_midi_free(&m);
    if (rc == ARIA_OK) {
        int64_t first = prompt_first_note_ms(&s);
        info->first_note_ms = first < 0 ? 0 : first;
        info->window_before_first_note = first > prompt_ms;
        aria_rng rng;
        aria_rng_seed(&rng, 0); /* the prompt draws its prefix order as `aria generate` always has */
        rc = aria_tok_prompt(t, &s, prompt_ms, &rng, &toks, &nt, err);
    }
    aria_score_free(&s);
    if (rc == ARIA_OK && !(*ids = malloc((nt ? nt : 1) * sizeof **ids))) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    if (rc == ARIA_OK) {
        aria_tok_encode(t, toks, nt, *ids);
        *n = nt;
    }
    free(toks);
    return rc;
}
