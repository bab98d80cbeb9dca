/*
 * generate.c - the tasks built on the model: sampling the next token,
 * generating continuations, and the global embedding of a file.
 *
 * Sampling follows the reference (spec 4.2): softmax(logits / T), then
 * min-p (keep p >= min_p * max p) and/or top-p, renormalise, draw. Unlike
 * the reference CLI, top-p is usable (it applies whenever it is set).
 *
 * On by default, a grammar mask removes tokens that cannot come next, so
 * long runs never emit broken triples: after a note only an onset, after
 * that onset only a duration, onsets never earlier than the previous one in
 * the same 5-second segment, no prefix / <S> / <P> / <U> tokens, at most
 * one <D>, and no key struck again within 30 ms: after a note whose
 * instrument struck that pitch less than RESTRIKE_MS + 10 ms before, the
 * onsets up to then are masked (a piano cannot strike one key twice at
 * once, nor again 10-30 ms later; the classical training data never does,
 * POP909's doubled melody tracks do, and a small model falls into loops of
 * such repeats, stacking dozens of copies of a chord's notes on one
 * onset). The mask reads id ranges from the tokenizer's configuration.
 *
 * With max_silence set (4 s by default), the mask also keeps the music
 * from stopping: no <T> and no onset that would leave every note silent
 * for longer than that, or than the prompt's own longest silence when it
 * is longer. A small model samples a stray <T> now and then (one token
 * against thousands of note tokens, so min-p rarely removes it), and each
 * one skips up to five seconds.
 *
 * With an embedding, generation uses classifier-free guidance (spec 4.4):
 * every variation is two rows of one session, conditioned (the adapted
 * embedding at position 0) and unconditioned (position 0 masked), so one
 * pass over the weights serves both; their logits are mixed, <D> is
 * removed, the same sampler draws, and the token goes to both rows.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "tokenizer/tokenizer_internal.h"
#include "base/util.h"

#define REF_MAX_CONTEXT 8096 /* aria generate caps prompt + new here */
#define END_WINDOW 130       /* force_end acts in the last 130 positions */
#define CFG_WARMUP 250       /* guidance rises over min(250, max_new) steps (spec 4.4) */
#define RESTRIKE_MS 30       /* a key is not struck again this soon (ms) */

aria_sample_opts aria_sample_defaults(void) {
    return (aria_sample_opts){0.98f, 0.035f, 0.0f, 1, 0, 4.0f};
}

/* ---------------------------------------------------------------------- */
/* Grammar state                                                          */
/* ---------------------------------------------------------------------- */

enum { EXPECT_EVENT = 0, EXPECT_NOTE_ONSET = 1, EXPECT_DUR = 2, EXPECT_ONSET_END = 3 };

void aria_gen_state_push(aria_gen_state *st, const aria_tokenizer *t, int32_t id) {
    aria_token k = aria_tok_token(t, id);
    switch (k.kind) {
    case ARIA_TK_PREFIX:
        if (k.a == ARIA_PREFIX_INSTRUMENT && k.v >= 0 && k.v < ARIA_N_INSTR) st->instruments |= 1u << k.v;
        break;
    case ARIA_TK_NOTE:
        st->expect = EXPECT_NOTE_ONSET;
        st->note_instr = k.a;
        st->note_pitch = k.v;
        st->sounding = 1;
        break;
    case ARIA_TK_DRUM:
        st->expect = EXPECT_ONSET_END;
        st->sounding = 1;
        break;
    case ARIA_TK_ONSET:
        st->onset_ms = st->seg_ms + k.v;
        if (st->sounding && st->expect != EXPECT_EVENT) {
            if (st->sound_end >= 0 && st->onset_ms - st->sound_end > st->gap_max)
                st->gap_max = st->onset_ms - st->sound_end;
            if (st->onset_ms > st->sound_end) st->sound_end = st->onset_ms;
        }
        st->sounding = 0;
        if (st->expect == EXPECT_NOTE_ONSET && st->note_instr < ARIA_N_INSTR && st->note_pitch >= 0 &&
            st->note_pitch < 128 && st->onset_ms < INT32_MAX)
            st->strike_ms[st->note_instr][st->note_pitch] = (int32_t)st->onset_ms + 1;
        st->expect = st->expect == EXPECT_NOTE_ONSET ? EXPECT_DUR : EXPECT_EVENT;
        st->last_onset = k.v;
        break;
    case ARIA_TK_DUR:
        if (st->expect == EXPECT_DUR && st->onset_ms + k.v > st->sound_end) st->sound_end = st->onset_ms + k.v;
        st->expect = EXPECT_EVENT;
        break;
    case ARIA_TK_SPECIAL:
        if (k.v == ARIA_SP_TIME) {
            st->seg_ms += SEG_MS;
            st->last_onset = -1;
            st->expect = EXPECT_EVENT;
        } else if (k.v == ARIA_SP_DIM) {
            st->seen_dim = 1;
        } else if (k.v == ARIA_SP_EOS) {
            st->seen_eos = 1;
        } else if (k.v == ARIA_SP_PED_ON || k.v == ARIA_SP_PED_OFF) {
            st->expect = EXPECT_ONSET_END;
            st->sounding = 0;
        }
        break;
    default: break;
    }
}

void aria_gen_state_init(aria_gen_state *st, const aria_tokenizer *t, const int32_t *ids, size_t n) {
    memset(st, 0, sizeof *st);
    st->last_onset = -1;
    st->sound_end = -1;
    for (size_t i = 0; i < n; i++) aria_gen_state_push(st, t, ids[i]);
    st->prompt_gap = st->gap_max;
}

static void mask_range(float *logits, int lo, int hi) { /* [lo, hi) */
    for (int i = lo; i < hi; i++) logits[i] = -INFINITY;
}

/* Sets to -inf every id that cannot follow in state `st`; `quiet_ms` > 0
   is the longest silence allowed. */
static void apply_mask(const aria_tokenizer *t, float *logits, int vocab, const aria_gen_state *st,
                       int64_t quiet_ms) {
    int onset_end = t->id_onset + N_ONSET;
    /* the latest moment the next sound may start */
    int64_t latest = quiet_ms > 0 && st->sound_end >= 0 ? st->sound_end + quiet_ms : INT64_MAX;
    if (st->expect == EXPECT_NOTE_ONSET || st->expect == EXPECT_ONSET_END) {
        int first = t->id_onset + (st->last_onset > 0 ? st->last_onset / STEP_MS : 0);
        /* the pending note's key went down less than RESTRIKE_MS + 10 ms
           ago: a later onset (at worst the segment's last one, when no
           later one is left before <T>) */
        if (st->expect == EXPECT_NOTE_ONSET && st->note_instr < ARIA_N_INSTR && st->note_pitch >= 0 &&
            st->note_pitch < 128 && st->strike_ms[st->note_instr][st->note_pitch] > 0) {
            int64_t free_at = (int64_t)st->strike_ms[st->note_instr][st->note_pitch] - 1 + RESTRIKE_MS + STEP_MS;
            if (free_at > st->seg_ms) {
                int64_t k = (free_at - st->seg_ms + STEP_MS - 1) / STEP_MS;
                int idx = k < N_ONSET ? t->id_onset + (int)k : onset_end - 1;
                if (idx > first) first = idx;
            }
        }
        int last = onset_end - 1;
        if (st->expect == EXPECT_NOTE_ONSET || st->sounding) {
            if (latest < st->seg_ms) {
                last = first; /* the silence is already too long: end it now */
            } else if (latest - st->seg_ms < (int64_t)N_ONSET * STEP_MS) {
                int cap = t->id_onset + (int)((latest - st->seg_ms) / STEP_MS);
                last = cap > first ? cap : first;
            }
        }
        mask_range(logits, 0, first);
        mask_range(logits, last + 1, vocab);
        return;
    }
    if (st->expect == EXPECT_DUR) {
        mask_range(logits, 0, t->id_dur + 1); /* dur 0 never occurs */
        mask_range(logits, t->id_dur + N_DUR, vocab);
        return;
    }
    /* an event start: notes, drums, <T>, <E>, one <D>, pedal tokens */
    for (int sp = 0; sp <= ARIA_SP_TIME; sp++)
        if (sp != ARIA_SP_TIME && sp != ARIA_SP_EOS && !(sp == ARIA_SP_DIM && !st->seen_dim)) logits[sp] = -INFINITY;
    if (latest < st->seg_ms + SEG_MS) logits[ARIA_SP_TIME] = -INFINITY; /* the next segment starts too late */
    mask_range(logits, t->id_prefix_instr, t->id_note);
    for (int i = t->id_note; i < t->id_drum; i += N_VEL) logits[i] = -INFINITY; /* velocity 0 */
    mask_range(logits, t->id_dur, onset_end);
    if (st->instruments) { /* only instruments the prefix declared can be decoded */
        for (int k = 0; k < t->n_instr; k++)
            if (!(st->instruments >> t->instr[k] & 1))
                mask_range(logits, t->id_note + k * 128 * N_VEL, t->id_note + (k + 1) * 128 * N_VEL);
        if (!(st->instruments >> ARIA_INSTR_DRUM & 1)) mask_range(logits, t->id_drum, t->id_dur);
    }
}

/* ---------------------------------------------------------------------- */
/* Sampling                                                               */
/* ---------------------------------------------------------------------- */

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* In place: logits -> filtered, unnormalised probabilities. */
static void filter_probs(float *p, int n, const aria_sample_opts *o) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        p[i] /= o->temperature;
        if (p[i] > mx) mx = p[i];
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        p[i] = isinf(p[i]) ? 0.0f : expf(p[i] - mx);
        sum += p[i];
    }
    for (int i = 0; i < n; i++) p[i] = (float)(p[i] / sum);
    if (o->min_p > 0.0f) {
        float pmax = 0.0f;
        for (int i = 0; i < n; i++) pmax = p[i] > pmax ? p[i] : pmax;
        float cut = o->min_p * pmax;
        for (int i = 0; i < n; i++)
            if (p[i] < cut) p[i] = 0.0f;
    }
    if (o->top_p > 0.0f && o->top_p < 1.0f) {
        /* the smallest p still kept: walk the sorted copy until the mass
           before a token exceeds top_p */
        float *sorted = malloc((size_t)n * sizeof *sorted);
        if (!sorted) return; /* no filter rather than no sample */
        double total = 0.0;
        for (int i = 0; i < n; i++) total += p[i];
        memcpy(sorted, p, (size_t)n * sizeof *sorted);
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_desc);
        double before = 0.0;
        float keep_min = 0.0f;
        for (int i = 0; i < n && sorted[i] > 0.0f; i++) {
            if (before / total > o->top_p) break;
            keep_min = sorted[i];
            before += sorted[i];
        }
        free(sorted);
        for (int i = 0; i < n; i++)
            if (p[i] < keep_min) p[i] = 0.0f;
    }
}

int32_t aria_sample(const aria_tokenizer *t, float *logits, int vocab, const aria_sample_opts *o,
                    const aria_gen_state *st, int near_end, aria_rng *rng) {
    if (o->mask_invalid) {
        int64_t quiet = o->max_silence > 0.0f ? (int64_t)(o->max_silence * 1000.0f + 0.5f) : 0;
        if (quiet > 0 && st->prompt_gap > quiet) quiet = st->prompt_gap;
        apply_mask(t, logits, vocab, st, quiet);
    }
    int32_t id;
    if (o->temperature <= 0.0f) {
        id = argmax(logits, vocab);
    } else {
        filter_probs(logits, vocab, o);
        double total = 0.0;
        for (int i = 0; i < vocab; i++) total += logits[i];
        double u = aria_rng_random(rng) * total, acc = 0.0;
        id = -1;
        for (int i = 0; i < vocab; i++) {
            if (logits[i] <= 0.0f) continue;
            acc += logits[i];
            id = i;
            if (u < acc) break;
        }
        if (id < 0) id = ARIA_SP_EOS; /* nothing left: end the piece */
    }
    if (o->force_end && near_end && !st->seen_dim) {
        aria_token k = aria_tok_token(t, id);
        if (k.kind != ARIA_TK_ONSET && k.kind != ARIA_TK_DUR) id = ARIA_SP_DIM;
    }
    return id;
}

/* ---------------------------------------------------------------------- */
/* Generation                                                             */
/* ---------------------------------------------------------------------- */

/* Guidance weight of step `step` (from 1): the reference's linear warm-up
   over W steps, W = min(250, max_new) unless the caller sets it. */
static float cfg_gamma(const aria_generate_opts *o, int step, int max_new) {
    int w = o->cfg_warmup > 0 ? o->cfg_warmup : (max_new < CFG_WARMUP ? max_new : CFG_WARMUP);
    if (o->cfg_warmup < 0 || step >= w) return o->cfg;
    float g = o->cfg * (float)step / (float)w;
    return g < o->cfg ? g : o->cfg;
}

static int check_cfg(const aria_model *m, const aria_generate_opts *o, aria_error *err) {
    int E = aria_model_adapter_dim(m);
    if (E <= 0)
        return aria_fail(err, ARIA_ERR_ARG,
                         "the model has no embedding_adapter, so it cannot be conditioned on an embedding");
    if (o->cond_dim != E)
        return aria_fail(err, ARIA_ERR_ARG, "the embedding has %d values but the model's adapter takes %d",
                         o->cond_dim, E);
    if (!(o->cfg >= 0.0f && o->cfg <= 10.0f)) return aria_fail(err, ARIA_ERR_ARG, "cfg must be within 0..10");
    return ARIA_OK;
}

int aria_generate(const aria_model *m, const aria_tokenizer *t, const int32_t *prompt, size_t n_prompt,
                  const aria_generate_opts *o, int32_t **out, size_t *out_len, aria_error *err) {
    const aria_model_config *c = aria_model_get_config(m);
    int B = o->variations, V = c->vocab_size;
    int cond = o->cond_embedding != NULL;
    int R = cond ? 2 * B : B; /* session rows: with guidance, (conditioned, unconditioned) per variation */
    if (B < 1) return aria_fail(err, ARIA_ERR_ARG, "variations must be at least 1");
    if (n_prompt < 1) return aria_fail(err, ARIA_ERR_ARG, "empty prompt");
    if (!(aria_model_heads(m) & ARIA_HEAD_LM)) return aria_fail(err, ARIA_ERR_ARG, "the model has no lm_head");
    if (aria_tok_vocab_size(t) != V)
        return aria_fail(err, ARIA_ERR_ARG, "the tokenizer has %d ids but the model %d", aria_tok_vocab_size(t), V);
    if (cond) {
        int rc = check_cfg(m, o, err);
        if (rc) return rc;
    }
    long total = (long)n_prompt + o->max_new;
    if (total > REF_MAX_CONTEXT) total = REF_MAX_CONTEXT;
    if (total > c->max_seq_len - cond) total = c->max_seq_len - cond;
    int max_new = (int)(total - (long)n_prompt);
    if (max_new < 1)
        return aria_fail(err, ARIA_ERR_ARG, "a prompt of %zu tokens leaves no room in a context of %ld", n_prompt,
                         total);

    aria_session *s;
    int rc = aria_session_new_kv(&s, m, R, (int)total + cond, ARIA_KV_BF16, err);
    if (rc) return rc;
    int32_t *ids = malloc((size_t)R * n_prompt * sizeof *ids);
    float *logits = malloc((size_t)R * V * sizeof *logits);
    float *mixed = malloc((size_t)V * sizeof *mixed);
    int32_t *next = malloc((size_t)R * sizeof *next);
    unsigned char *uncond = calloc((size_t)R, 1);
    aria_gen_state *st = malloc((size_t)B * sizeof *st);
    int32_t **seq = calloc((size_t)B, sizeof *seq);
    size_t *len = calloc((size_t)B, sizeof *len);
    int fail = !ids || !logits || !mixed || !next || !uncond || !st || !seq || !len;
    for (int b = 0; b < B && !fail; b++) {
        seq[b] = malloc((size_t)total * sizeof **seq);
        fail |= !seq[b];
        if (fail) break;
        memcpy(seq[b], prompt, n_prompt * sizeof *prompt);
        len[b] = n_prompt;
        aria_gen_state_init(&st[b], t, prompt, n_prompt);
    }
    for (int r = 0; r < R && !fail; r++) {
        memcpy(ids + (size_t)r * n_prompt, prompt, n_prompt * sizeof *prompt);
        uncond[r] = cond && (r & 1);
    }
    if (fail) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        goto done;
    }
    aria_rng rng;
    aria_rng_seed(&rng, o->seed);
    if (cond) rc = aria_session_condition(s, o->cond_embedding, o->cond_dim, uncond, err);
    if (rc == ARIA_OK) rc = aria_session_forward(s, ids, (int)n_prompt, ARIA_OUT_LOGITS, 0, logits, err);
    for (int step = 0; step < max_new && rc == ARIA_OK; step++) {
        int near_end = (long)n_prompt + step >= total - END_WINDOW;
        float g = cond ? cfg_gamma(o, step + 1, max_new) : 0.0f;
        int done = 0;
        for (int b = 0; b < B; b++) {
            int32_t id;
            if (st[b].seen_eos) {
                id = ARIA_SP_PAD;
                done++;
            } else {
                float *lg = logits + (size_t)b * (cond + 1) * V;
                if (cond) {
                    /* g cond + (1 - g) uncond, <D> excluded (the reference) */
                    const float *lu = lg + V;
                    for (int i = 0; i < V; i++) mixed[i] = g * lg[i] + (1.0f - g) * lu[i];
                    mixed[ARIA_SP_DIM] = -INFINITY;
                    lg = mixed;
                }
                id = aria_sample(t, lg, V, &o->sample, &st[b], near_end, &rng);
                seq[b][len[b]++] = id;
                aria_gen_state_push(&st[b], t, id);
                done += st[b].seen_eos;
            }
            next[b * (cond + 1)] = id;
            if (cond) next[2 * b + 1] = id; /* both rows of a variation take it */
        }
        if (o->progress) o->progress(o->progress_ctx, step + 1, max_new, done);
        if (done == B || step + 1 == max_new) break;
        rc = aria_session_forward(s, next, 1, ARIA_OUT_LOGITS, 0, logits, err);
    }
    if (rc == ARIA_OK) {
        for (int b = 0; b < B; b++) {
            out[b] = seq[b];
            out_len[b] = len[b];
            seq[b] = NULL;
        }
    }
done:
    if (seq)
        for (int b = 0; b < B; b++) free(seq[b]);
    free(seq);
    free(len);
    free(st);
    free(uncond);
    free(next);
    free(mixed);
    free(logits);
    free(ids);
    aria_session_free(s);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Embeddings                                                             */
/* ---------------------------------------------------------------------- */

#define EMB_NOTES 300
#define EMB_MAX_LEN 2048

int aria_embed_score(const aria_model *m, const aria_tokenizer *t, const aria_score *sc, float *out,
                     size_t *n_chunks, aria_error *err) {
    int E = aria_output_dim(m, ARIA_OUT_EMB);
    if (E <= 0) return aria_fail(err, ARIA_ERR_ARG, "the model has no emb_head (not an embedding model)");
    int max_len = aria_model_get_config(m)->max_seq_len < EMB_MAX_LEN ? aria_model_get_config(m)->max_seq_len
                                                                       : EMB_MAX_LEN;
    aria_rng rng;
    aria_rng_seed(&rng, 0);
    aria_tok_chunk *ch;
    size_t nc;
    int rc = aria_tok_embedding_chunks(t, sc, EMB_NOTES, (size_t)max_len, &rng, &ch, &nc, err);
    if (rc) return rc;
    aria_session *s;
    rc = aria_session_new(&s, m, 1, max_len, err);
    float *one = malloc((size_t)E * sizeof *one);
    int32_t *ids = malloc((size_t)max_len * sizeof *ids);
    if (!rc && (!one || !ids)) rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    for (int i = 0; i < E; i++) out[i] = 0.0f;
    for (size_t c = 0; c < nc && rc == ARIA_OK; c++) {
        aria_tok_encode(t, ch[c].toks, ch[c].eos_pos + 1, ids);
        aria_session_reset(s);
        rc = aria_session_forward(s, ids, (int)ch[c].eos_pos + 1, ARIA_OUT_EMB, 0, one, err);
        for (int i = 0; i < E && rc == ARIA_OK; i++) out[i] += one[i];
    }
    for (int i = 0; i < E && nc; i++) out[i] /= (float)nc;
    if (n_chunks) *n_chunks = nc;
    free(ids);
    free(one);
    aria_session_free(s);
    aria_tok_chunks_free(ch, nc);
    return rc;
}
