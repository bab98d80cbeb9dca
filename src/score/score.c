/*
 * score.c - the "MidiDict" of ariautils: what the tokenizer sees of a MIDI
 * file.
 *
 * From a parsed file (midi layer) we pull notes, sustain pedal (CC64),
 * program changes and tempo changes, exactly as ariautils'
 * `MidiDict.from_midi` does, because the released checkpoints were trained
 * on its output:
 *
 *   - each track is read on its own; open note-ons are kept per
 *     (pitch, channel) as a list, and a note-off closes *every* open note of
 *     that key that did not start on the same tick. Notes are appended when
 *     they close, so within a track the order is close order;
 *   - tracks are concatenated and every list is stable-sorted by tick;
 *   - a missing tempo becomes 500000 us/beat at tick 0 and a missing program
 *     becomes program 0 on channel 0.
 *
 * Time: aria_score_duration_ms ports `get_duration_ms` operation for
 * operation (same double arithmetic, round-half-even), including its quirk
 * after the last tempo change; `exact_timing` switches to a plain
 * integration of the tempo map.
 *
 * aria_score_to_midi ports `resolve_overlaps` + `dict_to_midi`: one type-0
 * track whose event order (ties broken by velocity, note-offs first) is the
 * reference's, so decoded files are byte-identical to what it writes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/util.h"

static const char *const instrument_names[ARIA_N_INSTR] = {
    "piano", "chromatic", "organ", "guitar", "bass", "strings",
    "ensemble", "brass", "reed", "pipe", "synth_lead", "synth_pad",
    "synth_effect", "ethnic", "percussive", "sfx", "drum"};

const char *aria_instrument_name(int instrument) {
    if (instrument < 0 || instrument >= ARIA_N_INSTR) return "?";
    return instrument_names[instrument];
}

int aria_instrument_from_name(const char *name) {
    for (int i = 0; i < ARIA_N_INSTR; i++)
        if (strcmp(name, instrument_names[i]) == 0) return i;
    return -1;
}

void aria_score_free(aria_score *s) {
    if (!s) return;
    free(s->notes);
    free(s->tempos);
    free(s->pedals);
    free(s->programs);
    memset(s, 0, sizeof *s);
    s->composer = s->form = s->genre = -1;
}

static void *dup_array(const void *src, size_t n, size_t size, int *fail) {
    if (n == 0) return NULL;
    void *p = malloc(n * size);
    if (!p) {
        *fail = 1;
        return NULL;
    }
    memcpy(p, src, n * size);
    return p;
}

int aria_score_copy(aria_score *dst, const aria_score *src) {
    int fail = 0;
    aria_score d = *src;
    d.notes = dup_array(src->notes, src->n_notes, sizeof *src->notes, &fail);
    d.tempos = dup_array(src->tempos, src->n_tempos, sizeof *src->tempos, &fail);
    d.pedals = dup_array(src->pedals, src->n_pedals, sizeof *src->pedals, &fail);
    d.programs = dup_array(src->programs, src->n_programs, sizeof *src->programs, &fail);
    if (fail) {
        aria_score_free(&d);
        return ARIA_ERR_NOMEM;
    }
    *dst = d;
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* MIDI -> score                                                          */
/* ---------------------------------------------------------------------- */

/* Open note-ons of one track: for each (pitch, channel) key a list of
   (start tick, velocity). Lists live in one pool as singly linked chains
   so a track costs no allocation per note. */
typedef struct {
    int64_t tick;
    uint8_t vel;
    int32_t next;
} open_note;

typedef struct {
    int32_t head[16 * 128], tail[16 * 128];
    open_note *pool;
    size_t n_pool, cap_pool;
    int32_t free_list;
} open_notes;

typedef struct {
    aria_score *s;
    size_t cap_notes, cap_tempos, cap_pedals, cap_programs;
} score_builder;

static int push_note(score_builder *b, int64_t start, int64_t end, int pitch, int vel, int ch) {
    aria_score *s = b->s;
    if (ARIA_GROW(s->notes, b->cap_notes, s->n_notes + 1)) return -1;
    aria_note *n = &s->notes[s->n_notes++];
    n->start = start;
    n->end = end;
    n->pitch = (uint8_t)pitch;
    n->velocity = (uint8_t)vel;
    n->channel = (uint8_t)ch;
    return 0;
}

static int32_t open_alloc(open_notes *o) {
    if (o->free_list >= 0) {
        int32_t i = o->free_list;
        o->free_list = o->pool[i].next;
        return i;
    }
    if (o->n_pool >= INT32_MAX || ARIA_GROW(o->pool, o->cap_pool, o->n_pool + 1)) return -1;
    return (int32_t)o->n_pool++;
}

static void open_release_chain(open_notes *o, int32_t i) {
    while (i >= 0) {
        int32_t next = o->pool[i].next;
        o->pool[i].next = o->free_list;
        o->free_list = i;
        i = next;
    }
}

static int note_on(open_notes *o, int key, int64_t tick, int vel) {
    int32_t i = open_alloc(o);
    if (i < 0) return -1;
    o->pool[i].tick = tick;
    o->pool[i].vel = (uint8_t)vel;
    o->pool[i].next = -1;
    if (o->tail[key] >= 0)
        o->pool[o->tail[key]].next = i;
    else
        o->head[key] = i;
    o->tail[key] = i;
    return 0;
}

/* A note-off at `tick`: every open note that started earlier closes here
   (in the order they were opened). Notes that started on this very tick
   survive only if something else was closed; otherwise the whole key is
   forgotten, which drops zero-length notes, as the reference does. */
static int note_off(open_notes *o, score_builder *b, int key, int64_t tick) {
    int32_t i = o->head[key];
    if (i < 0) return 0;
    int closed = 0;
    int32_t keep_head = -1, keep_tail = -1;
    while (i >= 0) {
        int32_t next = o->pool[i].next;
        if (o->pool[i].tick != tick) {
            if (push_note(b, o->pool[i].tick, tick, key & 127, o->pool[i].vel, key >> 7))
                return -1;
            closed = 1;
            o->pool[i].next = o->free_list;
            o->free_list = i;
        } else {
            o->pool[i].next = -1;
            if (keep_tail >= 0)
                o->pool[keep_tail].next = i;
            else
                keep_head = i;
            keep_tail = i;
        }
        i = next;
    }
    if (closed && keep_head >= 0) {
        o->head[key] = keep_head;
        o->tail[key] = keep_tail;
    } else {
        open_release_chain(o, keep_head);
        o->head[key] = o->tail[key] = -1;
    }
    return 0;
}

static int read_track(score_builder *b, open_notes *o, const aria_midi *m,
                      const aria_midi_track *t, int smpte) {
    aria_score *s = b->s;
    for (int k = 0; k < 16 * 128; k++) o->head[k] = o->tail[k] = -1;
    o->n_pool = 0;
    o->free_list = -1;

    for (size_t e = 0; e < t->n_events; e++) {
        const aria_midi_event *ev = &t->events[e];
        int64_t tick = (int64_t)ev->tick;
        if (ev->kind == ARIA_MIDI_META) {
            /* set_tempo; SMPTE time does not depend on tempo */
            if (ev->status == 0x51 && ev->len >= 3 && !smpte) {
                const uint8_t *p = m->data + ev->off;
                if (ARIA_GROW(s->tempos, b->cap_tempos, s->n_tempos + 1)) return -1;
                s->tempos[s->n_tempos].tick = tick;
                s->tempos[s->n_tempos].tempo = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
                s->n_tempos++;
            }
            continue;
        }
        if (ev->kind != ARIA_MIDI_CHANNEL) continue;
        int type = ev->status & 0xF0, ch = ev->status & 0x0F;
        if (type == 0xC0) {
            if (ARIA_GROW(s->programs, b->cap_programs, s->n_programs + 1)) return -1;
            s->programs[s->n_programs++] = (aria_program){tick, ev->d1, (uint8_t)ch};
        } else if (type == 0xB0 && ev->d1 == 64) {
            if (ARIA_GROW(s->pedals, b->cap_pedals, s->n_pedals + 1)) return -1;
            s->pedals[s->n_pedals++] = (aria_pedal){tick, ev->d2 >= 64, ev->d2, (uint8_t)ch};
        } else if (type == 0x90 && ev->d2 > 0) {
            if (note_on(o, ch << 7 | (ev->d1 & 127), tick, ev->d2)) return -1;
        } else if (type == 0x80 || type == 0x90) {
            if (note_off(o, b, ch << 7 | (ev->d1 & 127), tick)) return -1;
        }
    }
    return 0;
}

/* SMPTE division: a fixed tempo map that gives exactly fps * tpf ticks per
   second (29 means 30000/1001 fps). Ten-second "beats" keep the tempo
   within the 24 bits a MIDI file can hold. */
static void smpte_timebase(const aria_midi *m, int *tpb, uint32_t *tempo) {
    int fps = m->smpte_fps == 29 ? 30 : m->smpte_fps;
    *tpb = 10 * fps * m->smpte_tpf;
    *tempo = m->smpte_fps == 29 ? 10010000u : 10000000u;
}

int aria_score_from_midi(aria_score *s, const aria_midi *m, aria_error *err) {
    memset(s, 0, sizeof *s);
    s->composer = s->form = s->genre = -1;
    int smpte = m->ppq <= 0;
    uint32_t smpte_tempo = 500000;
    if (smpte) {
        if (m->smpte_fps <= 0 || m->smpte_tpf <= 0)
            return aria_fail(err, ARIA_ERR_FORMAT, "invalid time division");
        smpte_timebase(m, &s->ticks_per_beat, &smpte_tempo);
    } else {
        s->ticks_per_beat = m->ppq;
    }

    score_builder b = {.s = s};
    open_notes *o = calloc(1, sizeof *o);
    if (!o) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (size_t t = 0; t < m->n_tracks && rc == 0; t++) rc = read_track(&b, o, m, &m->tracks[t], smpte);
    free(o->pool);
    free(o);
    if (rc) goto nomem;

    if (aria_sort_by_i64_key(s->tempos, s->n_tempos, sizeof *s->tempos) ||
        aria_sort_by_i64_key(s->pedals, s->n_pedals, sizeof *s->pedals) ||
        aria_sort_by_i64_key(s->programs, s->n_programs, sizeof *s->programs) ||
        aria_sort_by_i64_key(s->notes, s->n_notes, sizeof *s->notes))
        goto nomem;

    if (s->n_tempos == 0) {
        if (ARIA_GROW(s->tempos, b.cap_tempos, 1)) goto nomem;
        s->tempos[0] = (aria_tempo){0, smpte ? smpte_tempo : 500000};
        s->n_tempos = 1;
    }
    if (s->n_programs == 0) {
        if (ARIA_GROW(s->programs, b.cap_programs, 1)) goto nomem;
        s->programs[0] = (aria_program){0, 0, 0};
        s->n_programs = 1;
    }
    return ARIA_OK;
nomem:
    aria_score_free(s);
    return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
}

/* ---------------------------------------------------------------------- */
/* Time                                                                   */
/* ---------------------------------------------------------------------- */

/* mido's tick2second, same operation order. */
static double tick2second(int64_t ticks, int tpb, uint32_t tempo) {
    double scale = ((double)tempo * 1e-6) / (double)tpb;
    return (double)ticks * scale;
}

/* First index whose tick is >= t, or n when there is none. */
static size_t tempo_lower_bound(const aria_tempo *tm, size_t n, int64_t t) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tm[mid].tick < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* get_duration_ms of ariautils, quirk included: when `start` lies after the
   last tempo change the walk begins one segment early and subtracts. */
static int64_t reference_duration_ms(const aria_score *s, int64_t start, int64_t end) {
    const aria_tempo *tm = s->tempos;
    size_t n = s->n_tempos;
    size_t idx = tempo_lower_bound(tm, n, start);
    if (idx == n) idx = n - 1;
    if (idx > 0) idx--;

    double dur = 0.0;
    int64_t cur = start;
    for (size_t i = idx; i + 1 < n; i++) {
        int64_t next_tick = tm[i + 1].tick;
        int64_t delta = end < next_tick ? end - cur : next_tick - cur;
        dur += tick2second(delta, s->ticks_per_beat, tm[i].tempo);
        if (end < next_tick) break;
        cur = next_tick;
    }
    if (end > tm[n - 1].tick) dur += tick2second(end - cur, s->ticks_per_beat, tm[n - 1].tempo);
    return (int64_t)rint(dur * 1e3);
}

/* Seconds from tick 0 to `t` with the MIDI default tempo before the first
   tempo change. */
static double exact_seconds(const aria_score *s, int64_t t) {
    double sec = 0.0;
    int64_t prev = 0;
    uint32_t tempo = 500000;
    for (size_t i = 0; i < s->n_tempos && s->tempos[i].tick < t; i++) {
        if (s->tempos[i].tick > prev) {
            sec += tick2second(s->tempos[i].tick - prev, s->ticks_per_beat, tempo);
            prev = s->tempos[i].tick;
        }
        tempo = s->tempos[i].tempo;
    }
    return sec + tick2second(t - prev, s->ticks_per_beat, tempo);
}

int64_t aria_score_duration_ms(const aria_score *s, int64_t start, int64_t end) {
    if (s->ticks_per_beat <= 0 || s->n_tempos == 0) return 0;
    if (s->exact_timing) return (int64_t)rint((exact_seconds(s, end) - exact_seconds(s, start)) * 1e3);
    return reference_duration_ms(s, start, end);
}

/* ---------------------------------------------------------------------- */
/* Instrument removal                                                     */
/* ---------------------------------------------------------------------- */

void aria_score_remove_instruments(aria_score *s, uint32_t remove_class_mask) {
    uint16_t drop = 0; /* bit per channel */
    for (size_t i = 0; i < s->n_programs; i++) {
        int p = s->programs[i].program, ch = s->programs[i].channel & 15;
        if (p >= 1 && p <= 127 && (remove_class_mask >> aria_program_class(p) & 1) && ch != 9)
            drop |= (uint16_t)(1u << ch);
    }
    if (!drop) return;
#define KEEP_CHANNELS(arr, n)                                        \
    do {                                                             \
        size_t w_ = 0;                                               \
        for (size_t r_ = 0; r_ < (n); r_++)                          \
            if (!(drop >> ((arr)[r_].channel & 15) & 1)) (arr)[w_++] = (arr)[r_]; \
        (n) = w_;                                                    \
    } while (0)
    KEEP_CHANNELS(s->notes, s->n_notes);
    KEEP_CHANNELS(s->pedals, s->n_pedals);
    KEEP_CHANNELS(s->programs, s->n_programs);
#undef KEEP_CHANNELS
}

/* ---------------------------------------------------------------------- */
/* score -> MIDI                                                          */
/* ---------------------------------------------------------------------- */

/* Notes grouped by (channel, pitch), each group ordered by (start, end),
   ties in note order: one sort over indices. */
typedef struct {
    int64_t start, end;
    uint32_t key; /* channel << 7 | pitch */
    uint32_t idx;
} note_ref;

static int cmp_note_ref(const void *a, const void *b) {
    const note_ref *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* resolve_overlaps: within a group, a note still sounding when the next
   one starts is cut at that start. */
static void resolve_overlaps(aria_score *s, note_ref *refs) {
    size_t n = s->n_notes;
    for (size_t g = 0; g < n;) {
        size_t h = g;
        int64_t prev_off = -1;
        for (; h < n && refs[h].key == refs[g].key; h++) {
            aria_note *cur = &s->notes[refs[h].idx];
            int64_t on = cur->start, off = cur->end;
            if (h > g && prev_off > on) s->notes[refs[h - 1].idx].end = on;
            prev_off = off;
        }
        g = h;
    }
}

/* One output message before sorting: absolute tick, the reference's sort
   key (velocity for note messages, 1000 otherwise) and creation order. */
typedef struct {
    int64_t tick;
    int32_t key;
    uint32_t seq;
    uint8_t kind; /* 0 tempo, 1 channel message */
    uint8_t status, d1, d2;
    uint32_t tempo;
} out_msg;

static int cmp_out_msg(const void *a, const void *b) {
    const out_msg *x = a, *y = b;
    if (x->tick != y->tick) return x->tick < y->tick ? -1 : 1;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Within one (channel, pitch) group sorted by start: does some note start
   strictly inside (start, end) and end after `end`? Such a note-off is
   left out, as dict_to_midi does. A sparse table of maximum ends answers
   each question in O(1) after O(g log g) set-up. */
typedef struct {
    int64_t *tab; /* levels x g */
    size_t g, levels;
} max_table;

static int max_table_build(max_table *mt, const note_ref *grp, size_t g) {
    size_t levels = 1;
    while (((size_t)1 << levels) <= g) levels++;
    mt->tab = malloc(levels * g * sizeof *mt->tab);
    if (!mt->tab) return -1;
    mt->g = g;
    mt->levels = levels;
    for (size_t i = 0; i < g; i++) mt->tab[i] = grp[i].end;
    for (size_t l = 1; l < levels; l++) {
        size_t w = (size_t)1 << (l - 1);
        for (size_t i = 0; i + 2 * w <= g; i++) {
            int64_t a = mt->tab[(l - 1) * g + i], b = mt->tab[(l - 1) * g + i + w];
            mt->tab[l * g + i] = a > b ? a : b;
        }
    }
    return 0;
}

static int64_t max_table_query(const max_table *mt, size_t lo, size_t hi) { /* [lo, hi) */
    size_t l = 0;
    while (((size_t)2 << l) <= hi - lo) l++;
    int64_t a = mt->tab[l * mt->g + lo], b = mt->tab[l * mt->g + hi - ((size_t)1 << l)];
    return a > b ? a : b;
}

static size_t first_start_after(const note_ref *grp, size_t g, int64_t t) {
    size_t lo = 0, hi = g;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (grp[mid].start <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int note_off_suppressed(const max_table *mt, const note_ref *grp, size_t g,
                               int64_t start, int64_t end) {
    size_t lo = first_start_after(grp, g, start);
    size_t hi = first_start_after(grp, g, end - 1); /* starts < end */
    if (lo >= hi) return 0;
    return max_table_query(mt, lo, hi) > end;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Note-offs come out group by group, groups in the order their first note
   appears, notes of a group in note order: sorted on
   (index of the group's first note) << 32 | note index. */
static int build_note_offs(const aria_score *s, note_ref *refs, out_msg *msgs, size_t *nm) {
    size_t n = s->n_notes;
    for (size_t i = 0; i < n; i++) refs[i].end = s->notes[refs[i].idx].end;
    qsort(refs, n, sizeof *refs, cmp_note_ref);
    uint64_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return -1;
    size_t no = 0;
    for (size_t g = 0; g < n;) {
        size_t h = g;
        uint32_t first = UINT32_MAX;
        for (; h < n && refs[h].key == refs[g].key; h++)
            if (refs[h].idx < first) first = refs[h].idx;
        max_table mt;
        if (max_table_build(&mt, refs + g, h - g)) {
            free(order);
            return -1;
        }
        for (size_t i = g; i < h; i++)
            if (!note_off_suppressed(&mt, refs + g, h - g, refs[i].start, refs[i].end))
                order[no++] = (uint64_t)first << 32 | refs[i].idx;
        free(mt.tab);
        g = h;
    }
    qsort(order, no, sizeof *order, cmp_u64);
    for (size_t i = 0; i < no; i++) {
        const aria_note *nt = &s->notes[(uint32_t)order[i]];
        msgs[*nm] = (out_msg){nt->end, 0, (uint32_t)*nm, 1, (uint8_t)(0x90 | (nt->channel & 15)),
                              nt->pitch, 0, 0};
        (*nm)++;
    }
    free(order);
    return 0;
}

int aria_score_to_midi(aria_score *s, aria_midi *out, aria_error *err) {
    size_t n = s->n_notes;
    size_t total = s->n_tempos + s->n_pedals + s->n_programs + 2 * n;
    note_ref *refs = malloc((n ? n : 1) * sizeof *refs);
    out_msg *msgs = malloc((total ? total : 1) * sizeof *msgs);
    if (!refs || !msgs) goto nomem;

    for (size_t i = 0; i < n; i++)
        refs[i] = (note_ref){s->notes[i].start, s->notes[i].end,
                             (uint32_t)(s->notes[i].channel & 15) << 7 | (s->notes[i].pitch & 127),
                             (uint32_t)i};
    qsort(refs, n, sizeof *refs, cmp_note_ref);
    resolve_overlaps(s, refs);

    size_t nm = 0;
    for (size_t i = 0; i < s->n_tempos; i++, nm++)
        msgs[nm] = (out_msg){s->tempos[i].tick, 1000, (uint32_t)nm, 0, 0, 0, 0, s->tempos[i].tempo};
    for (size_t i = 0; i < s->n_pedals; i++, nm++)
        msgs[nm] = (out_msg){s->pedals[i].tick, 1000, (uint32_t)nm, 1,
                             (uint8_t)(0xB0 | (s->pedals[i].channel & 15)), 64,
                             s->pedals[i].on ? 127 : 0, 0};
    for (size_t i = 0; i < s->n_programs; i++, nm++)
        msgs[nm] = (out_msg){s->programs[i].tick, 1000, (uint32_t)nm, 1,
                             (uint8_t)(0xC0 | (s->programs[i].channel & 15)),
                             (uint8_t)(s->programs[i].program & 127), 0, 0};
    for (size_t i = 0; i < n; i++, nm++) {
        const aria_note *nt = &s->notes[i];
        msgs[nm] = (out_msg){nt->start, nt->velocity, (uint32_t)nm, 1,
                             (uint8_t)(0x90 | (nt->channel & 15)), (uint8_t)(nt->pitch & 127),
                             (uint8_t)(nt->velocity & 127), 0};
    }
    if (build_note_offs(s, refs, msgs, &nm)) goto nomem;
    qsort(msgs, nm, sizeof *msgs, cmp_out_msg);

    if (s->ticks_per_beat < 1 || s->ticks_per_beat > 32767) {
        free(refs);
        free(msgs);
        return aria_fail(err, ARIA_ERR_ARG, "ticks per beat %d cannot be written (1..32767)",
                         s->ticks_per_beat);
    }
    int rc = aria_midi_init(out, 0, s->ticks_per_beat);
    if (rc == ARIA_OK) rc = aria_midi_add_track(out);
    for (size_t i = 0; i < nm && rc == ARIA_OK; i++) {
        const out_msg *mm = &msgs[i];
        if (mm->tick < 0) {
            rc = aria_fail(err, ARIA_ERR_ARG, "negative event time %lld", (long long)mm->tick);
            break;
        }
        aria_midi_event ev = {.tick = (uint64_t)mm->tick};
        if (mm->kind == 0) {
            uint8_t p[3] = {(uint8_t)(mm->tempo >> 16), (uint8_t)(mm->tempo >> 8), (uint8_t)mm->tempo};
            ev.kind = ARIA_MIDI_META;
            ev.status = 0x51;
            ev.len = 3;
            rc = aria_midi_push(out, 0, &ev, p, err);
        } else {
            ev.kind = ARIA_MIDI_CHANNEL;
            ev.status = mm->status;
            ev.d1 = mm->d1;
            ev.d2 = mm->d2;
            rc = aria_midi_push(out, 0, &ev, NULL, err);
        }
    }
    free(refs);
    free(msgs);
    if (rc != ARIA_OK) aria_midi_free(out);
    return rc;
nomem:
    free(refs);
    free(msgs);
    return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
}
