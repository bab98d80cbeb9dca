/*
 * tokenizer_ops.c - what the tokenizer layer does with token sequences:
 * detokenize, length and truncation, the generation prompt, embedding
 * chunks and the three training augmentations.
 *
 * Each function mirrors one function of ariautils' AbsTokenizer or of the
 * aria inference code (spec/aria.md sections 1.7-1.11), including how they
 * treat malformed runs of tokens, with one difference: where the reference
 * would crash (an assertion, an unbound variable) we skip and count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"
#include "base/util.h"

/* ---------------------------------------------------------------------- */
/* detokenize                                                             */
/* ---------------------------------------------------------------------- */

typedef struct {
    aria_score *s;
    size_t cap_notes, cap_pedals, cap_programs;
    int oom;
} decoder;

static void dec_note(decoder *d, int64_t start, int64_t end, int pitch, int vel, int ch) {
    if (d->oom || ARIA_GROW(d->s->notes, d->cap_notes, d->s->n_notes + 1)) {
        d->oom = 1;
        return;
    }
    d->s->notes[d->s->n_notes++] =
        (aria_note){start, end, (uint8_t)pitch, (uint8_t)vel, (uint8_t)ch};
}

static int token_is(aria_token k, int kind) { return k.kind == kind; }

/* Pass 1 (instrument prefixes -> channels): returns the index of the first
   token that is neither special nor a known prefix, or n. */
static size_t decode_prefix(const aria_tokenizer *t, const aria_token *toks, size_t n,
                            decoder *d, int instr_channel[ARIA_N_INSTR], int64_t *tick) {
    int channel = 0;
    for (size_t i = 0; i < n; i++) {
        if (channel == 9) channel++;
        aria_token k = toks[i];
        if (tok_is_listed_special(t, k)) {
            if (k.v == ARIA_SP_TIME) *tick += SEG_MS;
            continue;
        }
        if (k.kind != ARIA_TK_PREFIX) return i;
        if (k.a == ARIA_PREFIX_INSTRUMENT) {
            if (k.v == ARIA_INSTR_DRUM && !t->include_drums) continue;
            int known = k.v == ARIA_INSTR_DRUM || (k.v >= 0 && k.v < 16 && t->instr_index[k.v] >= 0);
            if (!known) return i;
            if (instr_channel[k.v] >= 0) continue; /* duplicate prefix */
            int ch = k.v == ARIA_INSTR_DRUM ? 9 : channel++;
            int prog = k.v == ARIA_INSTR_DRUM ? 0 : tok_class_program[k.v];
            if (ARIA_GROW(d->s->programs, d->cap_programs, d->s->n_programs + 1)) {
                d->oom = 1;
                return n;
            }
            d->s->programs[d->s->n_programs++] = (aria_program){0, (uint8_t)prog, (uint8_t)ch};
            instr_channel[k.v] = ch;
            continue;
        }
        if (aria_tok_id(t, k) == ARIA_SP_UNK) return i; /* not one of its prefix tokens */
    }
    return n;
}

int aria_detokenize(const aria_tokenizer *t, const aria_token *toks, size_t n, aria_score *out,
                    size_t *n_skipped, aria_error *err) {
    memset(out, 0, sizeof *out);
    out->composer = out->form = out->genre = -1;
    out->ticks_per_beat = 500;
    out->tempos = malloc(sizeof *out->tempos);
    if (!out->tempos) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    out->tempos[0] = (aria_tempo){0, 500000};
    out->n_tempos = 1;

    decoder d = {.s = out};
    int instr_channel[ARIA_N_INSTR];
    for (int i = 0; i < ARIA_N_INSTR; i++) instr_channel[i] = -1;
    int64_t tick = 0;
    size_t skipped = 0;
    size_t start = decode_prefix(t, toks, n, &d, instr_channel, &tick);

    /* Pass 2 over consecutive triples; the last two tokens never start one */
    for (size_t i = start; i + 2 < n && !d.oom; i++) {
        aria_token a = toks[i], b = toks[i + 1], c = toks[i + 2];
        if (aria_tok_is(a, ARIA_SP_TIME)) {
            tick += SEG_MS;
        } else if (tok_is_listed_special(t, a) || token_is(a, ARIA_TK_PREFIX) ||
                   token_is(a, ARIA_TK_ONSET) || token_is(a, ARIA_TK_DUR)) {
            continue;
        } else if (aria_tok_is(a, ARIA_SP_PED_ON) || aria_tok_is(a, ARIA_SP_PED_OFF)) {
            if (!token_is(b, ARIA_TK_ONSET)) {
                skipped++;
                continue;
            }
            if (ARIA_GROW(out->pedals, d.cap_pedals, out->n_pedals + 1)) {
                d.oom = 1;
                break;
            }
            int on = aria_tok_is(a, ARIA_SP_PED_ON);
            out->pedals[out->n_pedals++] = (aria_pedal){tick + b.v, (uint8_t)on, on ? 127 : 0, 0};
        } else if (token_is(a, ARIA_TK_DRUM) && token_is(b, ARIA_TK_ONSET)) {
            if (!t->include_drums || instr_channel[ARIA_INSTR_DRUM] < 0 || a.v < 0 || a.v > 127) {
                skipped++;
                continue;
            }
            dec_note(&d, tick + b.v, tick + b.v + STEP_MS, a.v, DRUM_VELOCITY, 9);
        } else if (tok_is_known_note(t, a) && token_is(b, ARIA_TK_ONSET) && token_is(c, ARIA_TK_DUR)) {
            if (instr_channel[a.a] < 0 || a.v < 0 || a.v > 127 || a.b > 127) {
                skipped++;
                continue;
            }
            dec_note(&d, tick + b.v, tick + b.v + c.v, a.v, a.b, instr_channel[a.a]);
        } else {
            skipped++;
        }
    }
    if (n_skipped) *n_skipped = skipped;
    if (d.oom || aria_sort_by_i64_key(out->notes, out->n_notes, sizeof *out->notes)) {
        aria_score_free(out);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* Length and truncation                                                  */
/* ---------------------------------------------------------------------- */

int64_t aria_tok_length_ms(const aria_token *toks, size_t n, int onset_only) {
    int64_t n_time = 0, best = 0;
    for (size_t i = 0; i < n; i++) n_time += aria_tok_is(toks[i], ARIA_SP_TIME);
    for (size_t j = n; j-- > 0;) {
        if (aria_tok_is(toks[j], ARIA_SP_TIME)) {
            n_time--;
        } else if (toks[j].kind == ARIA_TK_DUR) {
            if (j == 0 || toks[j - 1].kind != ARIA_TK_ONSET) continue; /* malformed */
            int64_t on = n_time * SEG_MS + toks[j - 1].v;
            if (onset_only) return on;
            if (on + toks[j].v > best) best = on + toks[j].v;
            if (on + MAX_DUR_MS < best) break;
        }
    }
    return best;
}

size_t aria_tok_truncate_by_time(const aria_token *toks, size_t n, int64_t t_ms) {
    int64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        if (aria_tok_is(toks[i], ARIA_SP_TIME)) {
            offset += SEG_MS;
        } else if (toks[i].kind == ARIA_TK_ONSET && offset + toks[i].v > t_ms) {
            return i == 0 ? n - 1 : i - 1; /* Python's seq[:i-1] */
        }
    }
    return n;
}

size_t aria_tok_drop_restrikes(aria_token *toks, size_t n, int window_ms) {
    if (window_ms < 0) return n;
    /* per instrument and pitch: the last strike kept (absolute ms) and
       where its duration token is */
    static const int64_t never = INT64_MIN / 2;
    int64_t last[ARIA_N_INSTR][128];
    size_t dur_at[ARIA_N_INSTR][128];
    for (int i = 0; i < ARIA_N_INSTR; i++)
        for (int p = 0; p < 128; p++) last[i][p] = never;
    int64_t offset = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        aria_token k = toks[i];
        if (aria_tok_is(k, ARIA_SP_TIME)) offset += SEG_MS;
        int triple = k.kind == ARIA_TK_NOTE && i + 2 < n && toks[i + 1].kind == ARIA_TK_ONSET &&
                     toks[i + 2].kind == ARIA_TK_DUR && k.a < ARIA_N_INSTR && k.v >= 0 && k.v < 128;
        if (!triple) {
            toks[w++] = k;
            continue;
        }
        int64_t on = offset + toks[i + 1].v, dur = toks[i + 2].v;
        int64_t prev = last[k.a][k.v];
        if (prev != never && on - prev <= window_ms) {
            /* dropped: the kept note lasts until the later end */
            aria_token *d = &toks[dur_at[k.a][k.v]];
            int64_t len = on + dur - prev;
            if (len > MAX_DUR_MS) len = MAX_DUR_MS;
            if (len > d->v) d->v = (int32_t)len;
            i += 2;
            continue;
        }
        last[k.a][k.v] = on;
        dur_at[k.a][k.v] = w + 2;
        toks[w++] = k;
        toks[w++] = toks[i + 1];
        toks[w++] = toks[i + 2];
        i += 2;
    }
    return w;
}

/* ---------------------------------------------------------------------- */
/* Prompt and embedding chunks                                            */
/* ---------------------------------------------------------------------- */

int aria_tok_prompt(const aria_tokenizer *t, const aria_score *src, int64_t prompt_ms,
                    aria_rng *rng, aria_token **out, size_t *n, aria_error *err) {
    aria_score s;
    if (aria_score_copy(&s, src)) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    size_t w = 0;
    for (size_t i = 0; i < s.n_notes; i++)
        if (aria_score_tick_to_ms(&s, s.notes[i].start) <= prompt_ms) s.notes[w++] = s.notes[i];
    s.n_notes = w;
    w = 0;
    for (size_t i = 0; i < s.n_pedals; i++)
        if (aria_score_tick_to_ms(&s, s.pedals[i].tick) <= prompt_ms) s.pedals[w++] = s.pedals[i];
    s.n_pedals = w;
    if (s.n_pedals && s.pedals[s.n_pedals - 1].on) s.n_pedals--;

    int rc;
    if (s.n_notes == 0) {
        *out = malloc(2 * sizeof **out);
        if (!*out) {
            rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        } else {
            (*out)[0] = (aria_token){.kind = ARIA_TK_PREFIX, .a = ARIA_PREFIX_INSTRUMENT,
                                     .v = ARIA_INSTR_PIANO};
            (*out)[1] = aria_tok_special(ARIA_SP_BOS);
            *n = 2;
            rc = ARIA_OK;
        }
    } else {
        aria_tokenize_opts o = {1, 0, 0};
        rc = aria_tokenize(t, &s, &o, rng, out, n, err);
    }
    aria_score_free(&s);
    return rc;
}

void aria_tok_chunks_free(aria_tok_chunk *c, size_t n) {
    if (!c) return;
    for (size_t i = 0; i < n; i++) free(c[i].toks);
    free(c);
}

int aria_tok_embedding_chunks(const aria_tokenizer *t, const aria_score *src,
                              int notes_per_chunk, size_t max_len, aria_rng *rng,
                              aria_tok_chunk **out, size_t *n_chunks, aria_error *err) {
    *out = NULL;
    *n_chunks = 0;
    if (notes_per_chunk <= 0 || max_len < 1)
        return aria_fail(err, ARIA_ERR_ARG, "chunk size and length must be positive");
    for (size_t i = 0; i < src->n_programs; i++) {
        int p = src->programs[i].program;
        if (aria_program_class(p) != ARIA_INSTR_PIANO)
            return aria_fail(err, ARIA_ERR_ARG,
                             "not a piano-only file: program %d (%s) on channel %d", p,
                             aria_instrument_name(aria_program_class(p)),
                             src->programs[i].channel + 1);
    }
    if (src->n_notes == 0) return aria_fail(err, ARIA_ERR_EMPTY, "no notes");

    size_t per = (size_t)notes_per_chunk, nc = (src->n_notes + per - 1) / per;
    aria_tok_chunk *chunks = calloc(nc, sizeof *chunks);
    if (!chunks) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    aria_score view = *src; /* shares arrays with src; only note range differs */
    view.composer = view.form = view.genre = -1;
    aria_tokenize_opts o = {1, 0, 1};
    for (size_t c = 0; c < nc; c++) {
        view.notes = src->notes + c * per;
        view.n_notes = src->n_notes - c * per < per ? src->n_notes - c * per : per;
        aria_token *toks;
        size_t nt;
        int rc = aria_tokenize(t, &view, &o, rng, &toks, &nt, err);
        if (rc) {
            aria_tok_chunks_free(chunks, c);
            return rc;
        }
        if (nt > max_len) nt = max_len;
        if (!aria_tok_is(toks[nt - 1], ARIA_SP_EOS)) toks[nt - 1] = aria_tok_special(ARIA_SP_EOS);
        size_t eos = 0;
        while (!aria_tok_is(toks[eos], ARIA_SP_EOS)) eos++;
        chunks[c] = (aria_tok_chunk){toks, nt, eos};
    }
    *out = chunks;
    *n_chunks = nc;
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* Augmentations                                                          */
/* ---------------------------------------------------------------------- */

/* export_aug_fn_concat: pieces end after each <E>; the caller augments
   piece by piece. Returns the end of the piece starting at `from`. */
static size_t piece_end(const aria_token *in, size_t n, size_t from) {
    for (size_t i = from; i < n; i++)
        if (aria_tok_is(in[i], ARIA_SP_EOS)) return i + 1;
    return n;
}

void aria_aug_pitch(const aria_token *in, size_t n, aria_token *out, int max_aug,
                    const int *fixed, aria_rng *rng) {
    for (size_t p = 0; p < n;) {
        size_t e = piece_end(in, n, p);
        int k = fixed ? *fixed : (int)aria_rng_randint(rng, -max_aug, max_aug);
        for (size_t i = p; i < e; i++) {
            out[i] = in[i];
            if (in[i].kind != ARIA_TK_NOTE) continue;
            int pitch = in[i].v + k;
            if (pitch >= 0 && pitch <= 127)
                out[i].v = pitch;
            else
                out[i] = aria_tok_special(ARIA_SP_UNK);
        }
        p = e;
    }
}

void aria_aug_velocity(const aria_token *in, size_t n, aria_token *out, int max_steps,
                       const int *fixed, aria_rng *rng) {
    for (size_t p = 0; p < n;) {
        size_t e = piece_end(in, n, p);
        int a = VEL_STEP * (fixed ? *fixed : (int)aria_rng_randint(rng, -max_steps, max_steps));
        for (size_t i = p; i < e; i++) {
            out[i] = in[i];
            if (in[i].kind != ARIA_TK_NOTE) continue;
            int v = in[i].b + a;
            out[i].b = (uint8_t)(v >= 120 ? 120 : v <= VEL_STEP ? VEL_STEP : v);
        }
        p = e;
    }
}

/* One event of the tempo augmentation: 2 or 3 tokens at (segment, onset). */
typedef struct {
    int64_t seg, onset;
    size_t order; /* position in the piece: keeps groups in token order */
    aria_token first;
    int32_t dur;  /* -1 for two-token events */
} tempo_event;

typedef struct {
    aria_token *v;
    size_t n, cap;
    int oom;
} seqbuf;

static void sb_push(seqbuf *b, aria_token k) {
    if (b->oom || ARIA_GROW(b->v, b->cap, b->n + 1)) {
        b->oom = 1;
        return;
    }
    b->v[b->n++] = k;
}

/* Position of the last buffered event, as the reference computes it for a
   <D> or <X>: the largest segment, then the largest onset within it. */
typedef struct {
    int64_t seg, onset;
    int any;
} last_pos;

static int cmp_tempo_event(const void *a, const void *b) {
    const tempo_event *x = a, *y = b;
    if (x->seg != y->seg) return x->seg < y->seg ? -1 : 1;
    if (x->onset != y->onset) return x->onset < y->onset ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Reads one piece's events (after its leading <S>/prefix tokens). */
static int tempo_collect(const aria_tokenizer *t, const aria_token *in, size_t from, size_t to,
                         tempo_event **evs, size_t *ne, int *eos_seen, int64_t dim_at[2],
                         int64_t delim_at[2]) {
    size_t cap = 0;
    int64_t seg = 0;
    last_pos last = {0, 0, 0};
    for (size_t i = from; i < to;) {
        aria_token k = in[i];
        if (aria_tok_is(k, ARIA_SP_TIME)) { seg++; i++; continue; }
        if (aria_tok_is(k, ARIA_SP_EOS)) { *eos_seen = 1; i++; continue; }
        if (aria_tok_is(k, ARIA_SP_UNK) || aria_tok_is(k, ARIA_SP_PAD)) { i++; continue; }
        if (aria_tok_is(k, ARIA_SP_DIM) || aria_tok_is(k, ARIA_SP_DELIM)) {
            int64_t *at = aria_tok_is(k, ARIA_SP_DIM) ? dim_at : delim_at;
            at[0] = last.any ? last.seg : 0;
            at[1] = last.any ? last.onset : 0;
            i++;
            continue;
        }
        size_t len;
        if (tok_is_known_note(t, k))
            len = 3;
        else if (k.kind == ARIA_TK_DRUM || aria_tok_is(k, ARIA_SP_PED_ON) || aria_tok_is(k, ARIA_SP_PED_OFF))
            len = 2;
        else { i++; continue; }
        size_t got = to - i < len ? to - i : len;
        const aria_token *e = in + i;
        i += got;
        if (got < len || e[1].kind != ARIA_TK_ONSET || (len == 3 && e[2].kind != ARIA_TK_DUR))
            continue; /* malformed: the reference skips these tokens */
        if (ARIA_GROW(*evs, cap, *ne + 1)) return -1;
        (*evs)[(*ne)++] = (tempo_event){seg, e[1].v, *ne, e[0], len == 3 ? e[2].v : -1};
        if (!last.any || seg > last.seg) {
            last = (last_pos){seg, e[1].v, 1};
        } else if (seg == last.seg && e[1].v > last.onset) {
            last.onset = e[1].v;
        }
    }
    return 0;
}

static int64_t round_to_step(double x) { return (int64_t)rint(x / STEP_MS) * STEP_MS; }

static int tempo_piece(const aria_tokenizer *t, const aria_token *in, size_t from, size_t to,
                       double factor, int mixup, aria_rng *rng, seqbuf *res) {
    size_t i = from;
    while (i < to && (aria_tok_is(in[i], ARIA_SP_BOS) || in[i].kind == ARIA_TK_PREFIX))
        sb_push(res, in[i++]);

    tempo_event *ev = NULL;
    size_t ne = 0;
    int eos_seen = 0;
    int64_t dim_at[2] = {-1, -1}, delim_at[2] = {-1, -1};
    if (tempo_collect(t, in, i, to, &ev, &ne, &eos_seen, dim_at, delim_at)) {
        free(ev);
        return -1;
    }
    /* group by (segment, onset) in time order, events of a group in order
       (a sequence without notes has no events, and ev may be NULL) */
    if (ne) qsort(ev, ne, sizeof *ev, cmp_tempo_event);

    int64_t prev_seg = 0;
    for (size_t g = 0; g < ne;) {
        size_t h = g;
        while (h < ne && ev[h].seg == ev[g].seg && ev[h].onset == ev[g].onset) h++;
        int64_t src_time = ev[g].seg * SEG_MS + ev[g].onset;
        int64_t tgt = round_to_step((double)src_time * factor);
        int64_t tgt_seg = aria_floordiv(tgt, SEG_MS), tgt_onset = aria_floormod(tgt, SEG_MS);
        for (int64_t k = prev_seg; k < tgt_seg; k++) sb_push(res, aria_tok_special(ARIA_SP_TIME));
        prev_seg = tgt_seg;
        if (mixup) aria_rng_shuffle(rng, ev + g, h - g, sizeof *ev);
        for (size_t k = g; k < h; k++) {
            sb_push(res, ev[k].first);
            sb_push(res, (aria_token){.kind = ARIA_TK_ONSET, .v = (int32_t)tgt_onset});
            if (ev[k].dur >= 0) {
                int64_t d = round_to_step((double)ev[k].dur * factor);
                d = d > MAX_DUR_MS ? MAX_DUR_MS : d < STEP_MS ? STEP_MS : d;
                sb_push(res, (aria_token){.kind = ARIA_TK_DUR, .v = (int32_t)d});
            }
        }
        if (dim_at[0] == ev[g].seg && dim_at[1] == ev[g].onset) {
            sb_push(res, aria_tok_special(ARIA_SP_DIM));
            dim_at[0] = -1;
        }
        if (delim_at[0] == ev[g].seg && delim_at[1] == ev[g].onset) {
            sb_push(res, aria_tok_special(ARIA_SP_DELIM));
            delim_at[0] = -1;
        }
        g = h;
    }
    if (eos_seen) sb_push(res, aria_tok_special(ARIA_SP_EOS));
    free(ev);
    return res->oom ? -1 : 0;
}

int aria_aug_tempo(const aria_tokenizer *t, const aria_token *in, size_t n, aria_token *out,
                   double max_aug, int mixup, const double *fixed, aria_rng *rng) {
    seqbuf res = {0};
    for (size_t p = 0; p < n;) {
        size_t e = piece_end(in, n, p);
        double f = fixed ? *fixed : aria_rng_uniform(rng, 1.0 - max_aug, 1.0 + max_aug);
        if (tempo_piece(t, in, p, e, f, mixup, rng, &res)) {
            free(res.v);
            return ARIA_ERR_NOMEM;
        }
        p = e;
    }
    size_t k = res.n < n ? res.n : n;
    memcpy(out, res.v, k * sizeof *out);
    for (; k < n; k++) out[k] = aria_tok_special(ARIA_SP_PAD);
    free(res.v);
    return ARIA_OK;
}
