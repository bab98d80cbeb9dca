/*
 * midifile.c - token sequences written out as MIDI files: what `aria
 * detokenize` does with a file of tokens and `aria generate` with each
 * continuation.
 *
 * Tokens are detokenized into a score (500 ticks per beat, 1 tick = 1 ms),
 * the score is turned into a type-0 file and the file is written
 * atomically, so a failure at any step leaves nothing at the path. The
 * status tells the caller which side was wrong: ARIA_ERR_IO is the
 * output file's fault, every other status the tokens'.
 */
#include <stdlib.h>

#include "aria.h"
#include "base/util.h"

int aria_tokens_write_midi(const aria_tokenizer *t, const aria_token *toks, size_t n, const char *path,
                           size_t *n_skipped, aria_error *err) {
    if (n_skipped) *n_skipped = 0;
    if (n == 0) return aria_fail(err, ARIA_ERR_EMPTY, "no tokens");
    aria_score s = {0};
    aria_midi m = {0};
    int rc = aria_detokenize(t, toks, n, &s, n_skipped, err);
    if (rc == ARIA_OK) rc = aria_score_to_midi(&s, &m, err);
    if (rc == ARIA_OK) rc = aria_midi_write_file(&m, path, err);
    aria_midi_free(&m);
    aria_score_free(&s);
    return rc;
}

int aria_ids_write_midi(const aria_tokenizer *t, const int32_t *ids, size_t n, const char *path, size_t *n_skipped,
                        aria_error *err) {
    if (n_skipped) *n_skipped = 0;
    if (n == 0) return aria_fail(err, ARIA_ERR_EMPTY, "no tokens");
    aria_token *toks = malloc(n * sizeof *toks);
    if (!toks) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    aria_tok_decode(t, ids, n, toks);
    int rc = aria_tokens_write_midi(t, toks, n, path, n_skipped, err);
    free(toks);
    return rc;
}
