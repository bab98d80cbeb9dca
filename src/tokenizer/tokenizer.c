/*
 * tokenizer.c - the Aria AbsTokenizer: score <-> tokens <-> ids.
 *
 * A piano performance becomes
 *     prefix... <S> (<T>* (note onset dur | drum onset))* [<D> ...] <E>
 * where a note token is (instrument, pitch, velocity), onsets are
 * milliseconds inside the current 5-second segment and every <T> opens the
 * next segment. Everything here follows ariautils' AbsTokenizer
 * operation for operation (spec/aria.md section 1), because the released
 * checkpoints only understand the ids it produced:
 *
 *   - ids are positions in one list: specials, prefixes, notes
 *     (instrument x pitch x velocity), drums, durations, onsets, then the
 *     optional pedal and delimiter tokens; the three configurations differ
 *     only in which of these groups they contain and how long they are;
 *   - quantizers use the reference's binary search, whose tie-breaking
 *     depends on the search path (dur 15 -> 20 but dur 25 -> 20);
 *   - randomness (prefix shuffle, <D> position, augmentations) draws from a
 *     CPython-compatible generator in the reference's order, so a seed
 *     reproduces the reference's output.
 *
 * Tokens are small structs (aria_token) rather than ids because the
 * reference's tuples can hold values outside the vocabulary (drum 30, a
 * pitch pushed past 127); those encode to <U>.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "tokenizer/tokenizer_internal.h"
#include "base/util.h"


static const char *const composer_names[] = {"bach", "beethoven", "mozart", "chopin",
                                             "rachmaninoff", "liszt", "debussy", "schubert",
                                             "brahms", "ravel", "satie", "scarlatti"};
static const char *const form_names[] = {"sonata", "prelude", "nocturne", "\xc3\xa9tude",
                                         "waltz", "mazurka", "impromptu", "fugue"};
static const char *const genre_names[] = {"jazz", "classical"};
static const char *const special_names[ARIA_N_SPECIAL] = {
    "<S>", "<E>", "<P>", "<U>", "<D>", "<T>", "<PED_ON>", "<PED_OFF>", "<X>"};
static const char *const prefix_kind_names[4] = {"instrument", "composer", "form", "genre"};


aria_tokenizer *aria_tokenizer_new(aria_tok_variant variant) {
    aria_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->variant = variant;
    for (int i = 0; i < ARIA_N_INSTR; i++) t->instr_index[i] = -1;
    uint32_t keep;
    if (variant == ARIA_TOKCFG_DEMO_2675) {
        keep = 1u << ARIA_INSTR_PIANO;
        t->include_drums = 0;
        t->include_pedal = 1;
        t->include_delim = 1;
    } else if (variant == ARIA_TOKCFG_DEFAULT || variant == ARIA_TOKCFG_DEMO_17729) {
        keep = 1u << ARIA_INSTR_PIANO | 1u << ARIA_INSTR_ORGAN | 1u << ARIA_INSTR_GUITAR |
               1u << ARIA_INSTR_BASS | 1u << ARIA_INSTR_STRINGS | 1u << ARIA_INSTR_ENSEMBLE |
               1u << ARIA_INSTR_BRASS | 1u << ARIA_INSTR_REED | 1u << ARIA_INSTR_PIPE |
               1u << ARIA_INSTR_SYNTH_LEAD;
        t->include_drums = 1;
        t->include_pedal = variant == ARIA_TOKCFG_DEMO_17729;
        t->n_names[ARIA_PREFIX_COMPOSER] = 12;
        t->n_names[ARIA_PREFIX_FORM] = 8;
        t->n_names[ARIA_PREFIX_GENRE] = 2;
    } else {
        free(t);
        return NULL;
    }
    for (int c = 0; c < 16; c++) {
        if (keep >> c & 1) {
            t->instr_index[c] = t->n_instr;
            t->instr[t->n_instr++] = (uint8_t)c;
        }
    }
    t->ignore_mask = ~keep & 0xFFFFu;

    int id = 6; /* <S> <E> <P> <U> <D> <T> */
    t->id_prefix_instr = id;
    id += t->n_instr + t->include_drums;
    t->id_composer = id;
    id += t->n_names[ARIA_PREFIX_COMPOSER];
    t->id_form = id;
    id += t->n_names[ARIA_PREFIX_FORM];
    t->id_genre = id;
    id += t->n_names[ARIA_PREFIX_GENRE];
    t->id_note = id;
    id += t->n_instr * 128 * N_VEL;
    t->id_drum = id;
    id += t->include_drums ? DRUM_HI - DRUM_LO + 1 : 0;
    t->id_dur = id;
    id += N_DUR;
    t->id_onset = id;
    id += N_ONSET;
    t->id_ped_on = t->include_pedal ? id : -1;
    id += t->include_pedal ? 2 : 0;
    t->id_delim = t->include_delim ? id : -1;
    id += t->include_delim;
    t->vocab_size = id;
    return t;
}

void aria_tokenizer_free(aria_tokenizer *t) { free(t); }

int aria_tok_vocab_size(const aria_tokenizer *t) { return t->vocab_size; }

aria_token aria_tok_special(aria_special sp) {
    return (aria_token){.kind = ARIA_TK_SPECIAL, .v = (int32_t)sp};
}

int aria_tok_is(aria_token tok, aria_special sp) {
    return tok.kind == ARIA_TK_SPECIAL && tok.v == (int32_t)sp;
}

static aria_token tk_prefix(int kind, int v) {
    return (aria_token){.kind = ARIA_TK_PREFIX, .a = (uint8_t)kind, .v = v};
}
static aria_token tk_note(int instr, int pitch, int vel) {
    return (aria_token){.kind = ARIA_TK_NOTE, .a = (uint8_t)instr, .b = (uint8_t)vel, .v = pitch};
}
static aria_token tk_simple(int kind, int v) { return (aria_token){.kind = (uint8_t)kind, .v = v}; }

int aria_tok_n_names(const aria_tokenizer *t, aria_prefix_kind kind) {
    if (kind < ARIA_PREFIX_COMPOSER || kind > ARIA_PREFIX_GENRE) return 0;
    return t->n_names[kind];
}

const char *aria_tok_name(const aria_tokenizer *t, aria_prefix_kind kind, int idx) {
    if (idx < 0 || idx >= aria_tok_n_names(t, kind)) return NULL;
    switch (kind) {
    case ARIA_PREFIX_COMPOSER: return composer_names[idx];
    case ARIA_PREFIX_FORM: return form_names[idx];
    case ARIA_PREFIX_GENRE: return genre_names[idx];
    default: return NULL;
    }
}

/* ---------------------------------------------------------------------- */
/* ids                                                                    */
/* ---------------------------------------------------------------------- */

int aria_tok_id(const aria_tokenizer *t, aria_token tok) {
    const int unk = ARIA_SP_UNK;
    int v = tok.v;
    switch (tok.kind) {
    case ARIA_TK_SPECIAL:
        if (v >= 0 && v <= ARIA_SP_TIME) return v;
        if ((v == ARIA_SP_PED_ON || v == ARIA_SP_PED_OFF) && t->include_pedal)
            return t->id_ped_on + (v - ARIA_SP_PED_ON);
        if (v == ARIA_SP_DELIM && t->include_delim) return t->id_delim;
        return unk;
    case ARIA_TK_PREFIX:
        if (tok.a == ARIA_PREFIX_INSTRUMENT) {
            if (v == ARIA_INSTR_DRUM) return t->include_drums ? t->id_prefix_instr + t->n_instr : unk;
            if (v < 0 || v >= 16 || t->instr_index[v] < 0) return unk;
            return t->id_prefix_instr + t->instr_index[v];
        }
        if (tok.a > ARIA_PREFIX_GENRE || v < 0 || v >= t->n_names[tok.a]) return unk;
        return (tok.a == ARIA_PREFIX_COMPOSER ? t->id_composer
                : tok.a == ARIA_PREFIX_FORM   ? t->id_form
                                              : t->id_genre) + v;
    case ARIA_TK_NOTE:
        if (tok.a >= 16 || t->instr_index[tok.a] < 0 || v < 0 || v > 127 || tok.b % VEL_STEP ||
            tok.b > 120)
            return unk;
        return t->id_note + t->instr_index[tok.a] * 128 * N_VEL + v * N_VEL + tok.b / VEL_STEP;
    case ARIA_TK_DRUM:
        if (!t->include_drums || v < DRUM_LO || v > DRUM_HI) return unk;
        return t->id_drum + v - DRUM_LO;
    case ARIA_TK_DUR:
        if (v < 0 || v > MAX_DUR_MS || v % STEP_MS) return unk;
        return t->id_dur + v / STEP_MS;
    case ARIA_TK_ONSET:
        if (v < 0 || v >= SEG_MS || v % STEP_MS) return unk;
        return t->id_onset + v / STEP_MS;
    default:
        return unk;
    }
}

aria_token aria_tok_token(const aria_tokenizer *t, int id) {
    if (id < 0 || id >= t->vocab_size) return aria_tok_special(ARIA_SP_UNK);
    if (id <= ARIA_SP_TIME) return aria_tok_special((aria_special)id);
    if (id < t->id_composer) {
        int k = id - t->id_prefix_instr;
        return tk_prefix(ARIA_PREFIX_INSTRUMENT, k < t->n_instr ? t->instr[k] : ARIA_INSTR_DRUM);
    }
    if (id < t->id_form) return tk_prefix(ARIA_PREFIX_COMPOSER, id - t->id_composer);
    if (id < t->id_genre) return tk_prefix(ARIA_PREFIX_FORM, id - t->id_form);
    if (id < t->id_note) return tk_prefix(ARIA_PREFIX_GENRE, id - t->id_genre);
    if (id < t->id_drum) {
        int k = id - t->id_note;
        return tk_note(t->instr[k / (128 * N_VEL)], k / N_VEL % 128, k % N_VEL * VEL_STEP);
    }
    if (id < t->id_dur) return tk_simple(ARIA_TK_DRUM, DRUM_LO + id - t->id_drum);
    if (id < t->id_onset) return tk_simple(ARIA_TK_DUR, (id - t->id_dur) * STEP_MS);
    if (id < t->id_onset + N_ONSET) return tk_simple(ARIA_TK_ONSET, (id - t->id_onset) * STEP_MS);
    if (t->include_pedal && id < t->id_ped_on + 2)
        return aria_tok_special(id == t->id_ped_on ? ARIA_SP_PED_ON : ARIA_SP_PED_OFF);
    return aria_tok_special(ARIA_SP_DELIM);
}

void aria_tok_encode(const aria_tokenizer *t, const aria_token *toks, size_t n, int32_t *ids) {
    for (size_t i = 0; i < n; i++) ids[i] = aria_tok_id(t, toks[i]);
}

void aria_tok_decode(const aria_tokenizer *t, const int32_t *ids, size_t n, aria_token *toks) {
    for (size_t i = 0; i < n; i++) toks[i] = aria_tok_token(t, ids[i]);
}

/* ---------------------------------------------------------------------- */
/* JSON text of one token                                                 */
/* ---------------------------------------------------------------------- */

int aria_tok_to_json(const aria_tokenizer *t, aria_token tok, char *buf, size_t cap) {
    switch (tok.kind) {
    case ARIA_TK_SPECIAL:
        return snprintf(buf, cap, "\"%s\"",
                        tok.v >= 0 && tok.v < ARIA_N_SPECIAL ? special_names[tok.v] : "<U>");
    case ARIA_TK_PREFIX: {
        const char *name = tok.a == ARIA_PREFIX_INSTRUMENT ? aria_instrument_name(tok.v)
                                                           : aria_tok_name(t, tok.a, tok.v);
        return snprintf(buf, cap, "[\"prefix\",\"%s\",\"%s\"]",
                        tok.a < 4 ? prefix_kind_names[tok.a] : "?", name ? name : "?");
    }
    case ARIA_TK_NOTE:
        return snprintf(buf, cap, "[\"%s\",%d,%d]", aria_instrument_name(tok.a), (int)tok.v, tok.b);
    case ARIA_TK_DRUM: return snprintf(buf, cap, "[\"drum\",%d]", (int)tok.v);
    case ARIA_TK_ONSET: return snprintf(buf, cap, "[\"onset\",%d]", (int)tok.v);
    case ARIA_TK_DUR: return snprintf(buf, cap, "[\"dur\",%d]", (int)tok.v);
    default: return snprintf(buf, cap, "\"<U>\"");
    }
}

/* ---------------------------------------------------------------------- */
/* Quantizers                                                             */
/* ---------------------------------------------------------------------- */

/* _find_closest_int over the list [0, step, 2*step, ..., (len-1)*step]:
   the reference's binary search, kept literally because its tie-breaking
   is part of the token ids. */
static int64_t closest_multiple(int64_t x, int64_t step, int64_t len) {
    int64_t left = 0, right = len - 1, closest = 0;
    while (left <= right) {
        int64_t mid = (left + right) / 2, val = mid * step;
        int64_t d = val > x ? val - x : x - val, dc = closest > x ? closest - x : x - closest;
        if (d < dc) closest = val;
        if (val < x)
            left = mid + 1;
        else
            right = mid - 1;
    }
    return closest;
}

static int quantize_velocity(int v) {
    int q = (int)closest_multiple(v, VEL_STEP, N_VEL);
    return q == 0 && v != 0 ? VEL_STEP : q;
}
static int quantize_dur(int64_t ms) {
    int q = (int)closest_multiple(ms, STEP_MS, N_DUR);
    return q == 0 ? STEP_MS : q;
}
static int quantize_onset(int64_t ms) { return (int)closest_multiple(ms, STEP_MS, N_ONSET); }

/* Exposed for the tests that check the quantizer tables. */
int aria_tok_quantize(int what, int64_t x);
int aria_tok_quantize(int what, int64_t x) {
    return what == 0 ? quantize_velocity((int)x) : what == 1 ? quantize_dur(x) : quantize_onset(x);
}

/* ---------------------------------------------------------------------- */
/* Token buffer                                                           */
/* ---------------------------------------------------------------------- */

typedef struct {
    aria_token *v;
    size_t n, cap;
    int oom;
} tokbuf;

static void tb_push(tokbuf *b, aria_token tok) {
    if (b->oom) return;
    if (ARIA_GROW(b->v, b->cap, b->n + 1)) {
        b->oom = 1;
        return;
    }
    b->v[b->n++] = tok;
}

static void tb_insert(tokbuf *b, size_t pos, aria_token tok) {
    tb_push(b, tok);
    if (b->oom) return;
    memmove(b->v + pos + 1, b->v + pos, (b->n - 1 - pos) * sizeof *b->v);
    b->v[pos] = tok;
}

/* ---------------------------------------------------------------------- */
/* tokenize                                                               */
/* ---------------------------------------------------------------------- */

aria_tokenize_opts aria_tokenize_defaults(void) {
    return (aria_tokenize_opts){1, 1, 1};
}

typedef struct {
    int64_t start, end;
} interval;

/* _build_pedal_intervals: per channel, ON opens an interval when none is
   open, OFF closes it; what is still open ends at the end of the note with
   the latest start. */
typedef struct {
    interval *iv[16];
    size_t n[16], cap[16];
} pedal_intervals;

static void pedal_intervals_free(pedal_intervals *p) {
    for (int c = 0; c < 16; c++) free(p->iv[c]);
}

static int add_interval(pedal_intervals *p, int ch, int64_t a, int64_t b) {
    if (ARIA_GROW(p->iv[ch], p->cap[ch], p->n[ch] + 1)) return -1;
    p->iv[ch][p->n[ch]++] = (interval){a, b};
    return 0;
}

static int build_pedal_intervals(const aria_score *s, pedal_intervals *p) {
    memset(p, 0, sizeof *p);
    int64_t open[16];
    int is_open[16] = {0};
    for (size_t i = 0; i < s->n_pedals; i++) {
        int ch = s->pedals[i].channel & 15;
        if (s->pedals[i].on && !is_open[ch]) {
            is_open[ch] = 1;
            open[ch] = s->pedals[i].tick;
        } else if (!s->pedals[i].on && is_open[ch]) {
            if (add_interval(p, ch, open[ch], s->pedals[i].tick)) return -1;
            is_open[ch] = 0;
        }
    }
    /* the reference iterates its dict of open pedals in insertion order;
       intervals of different channels never meet, so channel order is fine */
    int64_t final_tick = s->notes[s->n_notes - 1].end;
    for (int ch = 0; ch < 16; ch++)
        if (is_open[ch] && add_interval(p, ch, open[ch], final_tick)) return -1;
    return 0;
}

/* The end of a note that finishes at `end`, held by the channel's pedal:
   the first interval with start < end < its end extends it to that end.
   A channel's intervals never overlap (an ON opens one only when none is
   open) and come in order of their starts, so the only candidate is the
   last interval starting before `end`: a binary search, not a scan per
   note (files with thousands of pedal changes). */
static int64_t pedal_extend(const interval *iv, size_t n, int64_t end) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (iv[mid].start < end)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0 && end < iv[lo - 1].end) return iv[lo - 1].end;
    return end;
}

/* An event of the body: a note (or, with pedal tokens, a pedal message). */
typedef struct {
    int64_t tick; /* sort key: note start or pedal tick */
    int32_t idx;  /* note index, or -1 - pedal index */
} body_event;

/* The score with ignored instruments removed, pedals sorted (the reference
   sorts in place), nothing else changed. */
static int prepare_score(const aria_tokenizer *t, const aria_score *src, aria_score *s,
                         aria_error *err) {
    if (aria_score_copy(s, src)) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    aria_score_remove_instruments(s, t->ignore_mask);
    if (aria_sort_by_i64_key(s->pedals, s->n_pedals, sizeof *s->pedals)) {
        aria_score_free(s);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    if (s->n_notes == 0) {
        aria_score_free(s);
        return aria_fail(err, ARIA_ERR_EMPTY, "no notes to tokenize%s",
                         src->n_notes ? " (all notes are on ignored instruments)" : "");
    }
    return ARIA_OK;
}

/* Prefix tokens: instruments of the channels (last program change wins,
   channel 10 excluded, unlabelled channels with notes are piano), drum if
   channel 10 has notes, then metadata in front; shuffled. */
static int build_prefix(const aria_tokenizer *t, const aria_score *s, aria_rng *rng,
                        tokbuf *out, aria_error *err) {
    int ch_instr[16];
    int used[16] = {0};
    for (int c = 0; c < 16; c++) ch_instr[c] = -1;
    for (size_t i = 0; i < s->n_programs; i++)
        if ((s->programs[i].channel & 15) != 9)
            ch_instr[s->programs[i].channel & 15] = aria_program_class(s->programs[i].program);
    for (size_t i = 0; i < s->n_notes; i++) used[s->notes[i].channel & 15] = 1;
    uint32_t classes = 0;
    for (int c = 0; c < 16; c++) {
        if (c == 9) continue;
        if (ch_instr[c] < 0 && used[c]) ch_instr[c] = ARIA_INSTR_PIANO;
        if (ch_instr[c] >= 0) classes |= 1u << ch_instr[c];
    }
    if (t->include_pedal && classes != 1u << ARIA_INSTR_PIANO)
        return aria_fail(err, ARIA_ERR_ARG, "the pedal tokenizer supports piano only");

    aria_token pre[24];
    size_t np = 0;
    if (s->genre >= 0 && s->genre < t->n_names[ARIA_PREFIX_GENRE])
        pre[np++] = tk_prefix(ARIA_PREFIX_GENRE, s->genre);
    if (s->form >= 0 && s->form < t->n_names[ARIA_PREFIX_FORM])
        pre[np++] = tk_prefix(ARIA_PREFIX_FORM, s->form);
    if (s->composer >= 0 && s->composer < t->n_names[ARIA_PREFIX_COMPOSER])
        pre[np++] = tk_prefix(ARIA_PREFIX_COMPOSER, s->composer);
    for (int c = 0; c < 16; c++)
        if (classes >> c & 1) pre[np++] = tk_prefix(ARIA_PREFIX_INSTRUMENT, c);
    if (used[9] && t->include_drums) pre[np++] = tk_prefix(ARIA_PREFIX_INSTRUMENT, ARIA_INSTR_DRUM);
    aria_rng_shuffle(rng, pre, np, sizeof *pre);
    for (size_t i = 0; i < np; i++) tb_push(out, pre[i]);
    return ARIA_OK;
}

static int cmp_body_event(const void *a, const void *b) {
    const body_event *x = a, *y = b;
    if (x->tick != y->tick) return x->tick < y->tick ? -1 : 1;
    /* notes (idx >= 0, in note order) before pedals (in pedal order) */
    if ((x->idx >= 0) != (y->idx >= 0)) return x->idx >= 0 ? -1 : 1;
    return x->idx >= 0 ? (x->idx > y->idx) - (x->idx < y->idx) : (x->idx < y->idx) - (x->idx > y->idx);
}

static int build_body(const aria_tokenizer *t, const aria_score *s, const aria_tokenize_opts *o,
                      const pedal_intervals *piv, tokbuf *body) {
    int ch_instr[16];
    for (int c = 0; c < 16; c++) ch_instr[c] = ARIA_INSTR_PIANO;
    for (size_t i = 0; i < s->n_programs; i++)
        ch_instr[s->programs[i].channel & 15] = aria_program_class(s->programs[i].program);

    size_t ne = s->n_notes + (t->include_pedal ? s->n_pedals : 0);
    body_event *ev = malloc(ne * sizeof *ev);
    if (!ev) return -1;
    for (size_t i = 0; i < s->n_notes; i++) ev[i] = (body_event){s->notes[i].start, (int32_t)i};
    if (t->include_pedal) {
        for (size_t i = 0; i < s->n_pedals; i++)
            ev[s->n_notes + i] = (body_event){s->pedals[i].tick, -1 - (int32_t)i};
        qsort(ev, ne, sizeof *ev, cmp_body_event);
    } else if (aria_sort_by_i64_key(ev, ne, sizeof *ev)) {
        free(ev);
        return -1;
    }

    int64_t t0 = o->remove_preceding_silence ? ev[0].tick : 0;
    int64_t cur = 0;
    for (size_t e = 0; e < ne; e++) {
        int64_t prev = cur;
        cur = aria_score_duration_ms(s, t0, ev[e].tick);
        for (int64_t k = aria_floordiv(cur, SEG_MS) - aria_floordiv(prev, SEG_MS); k > 0; k--)
            tb_push(body, aria_tok_special(ARIA_SP_TIME));
        aria_token onset = tk_simple(ARIA_TK_ONSET, quantize_onset(aria_floormod(cur, SEG_MS)));

        if (ev[e].idx < 0) { /* pedal (pedal configurations only) */
            const aria_pedal *p = &s->pedals[-1 - ev[e].idx];
            tb_push(body, aria_tok_special(p->on ? ARIA_SP_PED_ON : ARIA_SP_PED_OFF));
            tb_push(body, onset);
            continue;
        }
        const aria_note *n = &s->notes[ev[e].idx];
        int ch = n->channel & 15;
        if (ch == 9) {
            if (!t->include_drums) continue;
            tb_push(body, tk_simple(ARIA_TK_DRUM, n->pitch));
            tb_push(body, onset);
            continue;
        }
        int64_t end = pedal_extend(piv->iv[ch], piv->n[ch], n->end);
        int64_t dur = aria_score_duration_ms(s, n->start, end);
        tb_push(body, tk_note(ch_instr[ch], n->pitch, quantize_velocity(n->velocity)));
        tb_push(body, onset);
        tb_push(body, tk_simple(ARIA_TK_DUR, quantize_dur(dur)));
    }
    free(ev);
    return body->oom ? -1 : 0;
}

/* _format: <D> about 100 tokens before the end of a long body, never
   splitting a note triple; the draw happens whether or not it is used. */
static void place_dim(tokbuf *body, int add_dim, aria_rng *rng) {
    int64_t idx = -100 + aria_rng_randint(rng, -10, 10);
    if (body->n <= 150 || !add_dim) return;
    size_t pos = (size_t)((int64_t)body->n + idx); /* idx is negative */
    int kind = body->v[pos].kind;
    if (kind == ARIA_TK_ONSET)
        pos -= 1;
    else if (kind == ARIA_TK_DUR)
        pos -= 2;
    tb_insert(body, pos, aria_tok_special(ARIA_SP_DIM));
}

int aria_tokenize(const aria_tokenizer *t, const aria_score *src, const aria_tokenize_opts *opts,
                  aria_rng *rng, aria_token **out, size_t *n, aria_error *err) {
    aria_tokenize_opts o = opts ? *opts : aria_tokenize_defaults();
    aria_rng local;
    if (!rng) {
        aria_rng_seed(&local, 0);
        rng = &local;
    }
    *out = NULL;
    *n = 0;
    aria_score s;
    int rc = prepare_score(t, src, &s, err);
    if (rc) return rc;

    pedal_intervals piv;
    tokbuf res = {0}, body = {0};
    if (build_pedal_intervals(&s, &piv)) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        goto done;
    }
    rc = build_prefix(t, &s, rng, &res, err);
    if (rc) goto done;
    if (build_body(t, &s, &o, &piv, &body)) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        goto done;
    }
    place_dim(&body, o.add_dim_tok, rng);
    tb_push(&res, aria_tok_special(ARIA_SP_BOS));
    for (size_t i = 0; i < body.n; i++) tb_push(&res, body.v[i]);
    if (o.add_eos_tok) tb_push(&res, aria_tok_special(ARIA_SP_EOS));
    if (res.oom || body.oom) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        goto done;
    }
    *out = res.v;
    *n = res.n;
    res.v = NULL;
done:
    pedal_intervals_free(&piv);
    free(res.v);
    free(body.v);
    aria_score_free(&s);
    return rc;
}
