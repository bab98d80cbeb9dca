/*
 * test_score.c - the score layer on hand-built files: note pairing, tick
 * to ms (the reference quirk and the exact mode), SMPTE time, instrument
 * removal and score -> MIDI.
 *
 * Files are assembled with the midi builder so each test states its input
 * event by event.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"

typedef struct {
    uint64_t tick;
    uint8_t status, d1, d2;
} ev;

/* A one-track PPQ file of channel events (plus optional tempo metas given
   as status 0xFF with the tempo in d1..: use add_tempo). */
static void build(aria_midi *m, int ppq, const ev *evs, size_t n) {
    aria_error err = {{0}};
    cr_assert_eq(aria_midi_init(m, 0, ppq), ARIA_OK);
    cr_assert_eq(aria_midi_add_track(m), ARIA_OK);
    for (size_t i = 0; i < n; i++) {
        aria_midi_event e = {.tick = evs[i].tick, .kind = ARIA_MIDI_CHANNEL, .status = evs[i].status,
                             .d1 = evs[i].d1, .d2 = evs[i].d2};
        cr_assert_eq(aria_midi_push(m, 0, &e, NULL, &err), ARIA_OK, "%s", err.msg);
    }
}

static void score_of(const ev *evs, size_t n, aria_score *s) {
    aria_midi m = {0};
    build(&m, 480, evs, n);
    aria_error err = {{0}};
    cr_assert_eq(aria_score_from_midi(s, &m, &err), ARIA_OK, "%s", err.msg);
    aria_midi_free(&m);
}

static aria_score tempo_score(const aria_tempo *t, size_t n, int tpb) {
    aria_score s = {0};
    s.tempos = malloc(n * sizeof *t);
    memcpy(s.tempos, t, n * sizeof *t);
    s.n_tempos = n;
    s.ticks_per_beat = tpb;
    s.composer = s.form = s.genre = -1;
    return s;
}

Test(score, pairs_notes_like_the_reference) {
    const ev e[] = {
        {0, 0x90, 60, 100},   /* two overlapping note-ons of one key ... */
        {100, 0x90, 60, 50},
        {200, 0x80, 60, 0},   /* ... are both closed by the first note-off */
        {300, 0x80, 60, 0},   /* nothing open: ignored */
        {400, 0x90, 62, 70},  /* zero length: on and off on one tick: dropped */
        {400, 0x80, 62, 0},
        {500, 0x90, 64, 80},  /* never closed: dropped */
        {600, 0x91, 60, 90},  /* same pitch, other channel: its own key */
        {700, 0x91, 60, 0},   /* note-on velocity 0 is a note-off */
    };
    aria_score s;
    score_of(e, sizeof e / sizeof *e, &s);
    cr_assert_eq(s.n_notes, 3);
    cr_expect(s.notes[0].start == 0 && s.notes[0].end == 200 && s.notes[0].velocity == 100);
    cr_expect(s.notes[1].start == 100 && s.notes[1].end == 200 && s.notes[1].velocity == 50);
    cr_expect(s.notes[2].start == 600 && s.notes[2].end == 700 && s.notes[2].channel == 1);
    /* defaults: tempo 500000 at 0, program 0 on channel 0 */
    cr_expect(s.n_tempos == 1 && s.tempos[0].tempo == 500000 && s.tempos[0].tick == 0);
    cr_expect(s.n_programs == 1 && s.programs[0].program == 0 && s.programs[0].channel == 0);
    aria_score_free(&s);
}

Test(score, restrike_on_the_tick_of_a_note_off_survives) {
    /* note-off and a new note-on of the same key on one tick, the on first:
       the older note closes, the new one stays open */
    const ev e[] = {{0, 0x90, 60, 100}, {100, 0x90, 60, 80}, {100, 0x80, 60, 0}, {250, 0x80, 60, 0}};
    aria_score s;
    score_of(e, 4, &s);
    cr_assert_eq(s.n_notes, 2);
    cr_expect(s.notes[0].start == 0 && s.notes[0].end == 100);
    cr_expect(s.notes[1].start == 100 && s.notes[1].end == 250 && s.notes[1].velocity == 80);
    aria_score_free(&s);
}

Test(score, pedal_and_programs) {
    const ev e[] = {{0, 0xC0, 24, 0}, {0, 0xB0, 64, 63}, {10, 0xB0, 64, 64}, {20, 0xB0, 7, 100},
                    {30, 0x90, 60, 1}, {40, 0x80, 60, 0}};
    aria_score s;
    score_of(e, 6, &s);
    cr_assert_eq(s.n_pedals, 2, "CC64 only");
    cr_expect(s.pedals[0].on == 0 && s.pedals[0].value == 63);
    cr_expect(s.pedals[1].on == 1 && s.pedals[1].value == 64);
    cr_assert_eq(s.n_programs, 1);
    cr_expect_eq(s.programs[0].program, 24);
    aria_score_free(&s);
}

Test(score, duration_quirk_after_last_tempo) {
    /* spec 1.4: tempos (0: 500000, 480: 1000000), tpb 480 */
    aria_tempo t[] = {{0, 500000}, {480, 1000000}};
    aria_score s = tempo_score(t, 2, 480);
    cr_expect_eq(aria_score_duration_ms(&s, 960, 1440), 1500, "the reference's value, not 1000");
    cr_expect_eq(aria_score_duration_ms(&s, 0, 960), 1500);
    cr_expect_eq(aria_score_duration_ms(&s, 0, 480), 500);
    s.exact_timing = 1;
    cr_expect_eq(aria_score_duration_ms(&s, 960, 1440), 1000);
    cr_expect_eq(aria_score_duration_ms(&s, 0, 960), 1500);
    aria_score_free(&s);
}

Test(score, duration_before_first_tempo) {
    /* spec 1.4: a single tempo at tick 100, tpb 100 */
    aria_tempo t[] = {{100, 500000}};
    aria_score s = tempo_score(t, 1, 100);
    cr_expect_eq(aria_score_duration_ms(&s, 20, 80), 0);
    cr_expect_eq(aria_score_duration_ms(&s, 20, 150), 650);
    s.exact_timing = 1; /* 500000 is also the default before it */
    cr_expect_eq(aria_score_duration_ms(&s, 20, 80), 300);
    cr_expect_eq(aria_score_duration_ms(&s, 20, 150), 650);
    aria_score_free(&s);
}

Test(score, duration_rounds_half_to_even) {
    /* 1 tick = 0.0025 ms * 1000 ... pick tpb 1000, tempo 1000 us/beat:
       1 tick = 1 us; 500 ticks = 0.5 ms -> 0; 1500 ticks = 1.5 ms -> 2 */
    aria_tempo t[] = {{0, 1000}};
    aria_score s = tempo_score(t, 1, 1000);
    cr_expect_eq(aria_score_duration_ms(&s, 0, 500), 0);
    cr_expect_eq(aria_score_duration_ms(&s, 0, 1500), 2);
    cr_expect_eq(aria_score_duration_ms(&s, 0, 2500), 2);
    aria_score_free(&s);
}

Test(score, smpte_time_ignores_tempo) {
    /* 25 fps x 40 ticks per frame = 1000 ticks per second */
    aria_midi m = {0};
    aria_error err = {{0}};
    cr_assert_eq(aria_midi_init(&m, 0, 480), ARIA_OK);
    m.ppq = 0;
    m.smpte_fps = 25;
    m.smpte_tpf = 40;
    cr_assert_eq(aria_midi_add_track(&m), ARIA_OK);
    uint8_t tempo[3] = {0x0F, 0x42, 0x40}; /* 1 s per beat: must not matter */
    aria_midi_event t = {.tick = 0, .kind = ARIA_MIDI_META, .status = 0x51, .len = 3};
    cr_assert_eq(aria_midi_push(&m, 0, &t, tempo, &err), ARIA_OK);
    aria_midi_event on = {.tick = 500, .kind = ARIA_MIDI_CHANNEL, .status = 0x90, .d1 = 60, .d2 = 90};
    aria_midi_event off = {.tick = 1750, .kind = ARIA_MIDI_CHANNEL, .status = 0x80, .d1 = 60};
    cr_assert_eq(aria_midi_push(&m, 0, &on, NULL, &err), ARIA_OK);
    cr_assert_eq(aria_midi_push(&m, 0, &off, NULL, &err), ARIA_OK);
    aria_score s;
    cr_assert_eq(aria_score_from_midi(&s, &m, &err), ARIA_OK, "%s", err.msg);
    cr_assert_eq(s.n_notes, 1);
    cr_expect_eq(aria_score_tick_to_ms(&s, s.notes[0].start), 500);
    cr_expect_eq(aria_score_tick_to_ms(&s, s.notes[0].end), 1750);
    aria_score_free(&s);

    m.smpte_fps = 29; /* 30000/1001 fps x 40: 1198.8 ticks per second */
    cr_assert_eq(aria_score_from_midi(&s, &m, &err), ARIA_OK);
    cr_expect_eq(aria_score_tick_to_ms(&s, 1199), 1000);
    cr_expect_eq(aria_score_tick_to_ms(&s, 11988), 10000);
    aria_score_free(&s);
    aria_midi_free(&m);
}

Test(score, remove_instruments_drops_whole_channels) {
    const ev e[] = {
        {0, 0xC1, 90, 0},  /* synth pad on channel 2: removed */
        {0, 0xC2, 0, 0},   /* program 0 is never removed */
        {0, 0xC9, 120, 0}, /* drums are never removed */
        {10, 0x91, 60, 90}, {10, 0xB1, 64, 127}, {10, 0x92, 61, 90}, {10, 0x99, 36, 90},
        {20, 0x81, 60, 0},  {20, 0x82, 61, 0},   {20, 0x89, 36, 0},
    };
    aria_score s;
    score_of(e, sizeof e / sizeof *e, &s);
    cr_assert_eq(s.n_notes, 3);
    uint32_t mask = 1u << ARIA_INSTR_SYNTH_PAD;
    aria_score_remove_instruments(&s, mask);
    cr_expect_eq(s.n_notes, 2);
    cr_expect_eq(s.n_pedals, 0);
    cr_expect_eq(s.n_programs, 2);
    for (size_t i = 0; i < s.n_notes; i++) cr_expect_neq(s.notes[i].channel, 1);
    aria_score_free(&s);
}

Test(score, to_midi_resolves_overlaps_and_round_trips) {
    aria_score s = {0};
    s.ticks_per_beat = 500;
    s.composer = s.form = s.genre = -1;
    aria_tempo t = {0, 500000};
    s.tempos = &t;
    s.n_tempos = 1;
    aria_note notes[] = {{0, 300, 60, 80, 0}, {100, 200, 60, 70, 0}, {150, 400, 64, 90, 0}};
    s.notes = notes;
    s.n_notes = 3;
    aria_midi m = {0};
    aria_error err = {{0}};
    cr_assert_eq(aria_score_to_midi(&s, &m, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(notes[0].end, 100, "cut where the next note of the key starts");
    cr_expect_eq(m.format, 0);
    cr_expect_eq(m.ppq, 500);
    aria_score back;
    cr_assert_eq(aria_score_from_midi(&back, &m, &err), ARIA_OK);
    cr_assert_eq(back.n_notes, 3);
    cr_expect(back.notes[0].start == 0 && back.notes[0].end == 100);
    cr_expect(back.notes[1].start == 100 && back.notes[1].end == 200);
    cr_expect(back.notes[2].start == 150 && back.notes[2].end == 400);
    aria_score_free(&back);
    aria_midi_free(&m);
}

Test(score, copy_is_deep) {
    const ev e[] = {{0, 0x90, 60, 100}, {10, 0x80, 60, 0}};
    aria_score a, b;
    score_of(e, 2, &a);
    cr_assert_eq(aria_score_copy(&b, &a), ARIA_OK);
    b.notes[0].pitch = 1;
    cr_expect_eq(a.notes[0].pitch, 60);
    aria_score_free(&a);
    aria_score_free(&b);
    aria_score_free(&b); /* freeing twice is harmless after free zeroes */
}
