/*
 * test_tokenizer.c - the tokenizer's behaviour beyond the reference
 * vectors: id formulas of each configuration, errors, <D> placement over
 * many seeds, pedal tokens, length/truncation helpers, malformed streams,
 * and augmentations drawn at random.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"

static aria_token note(int instr, int pitch, int vel) {
    return (aria_token){.kind = ARIA_TK_NOTE, .a = (uint8_t)instr, .b = (uint8_t)vel, .v = pitch};
}
static aria_token tk_(int kind, int v) { return (aria_token){.kind = (uint8_t)kind, .v = v}; }
static aria_token sp(aria_special s) { return aria_tok_special(s); }

Test(tokenizer, id_examples_of_the_released_vocabulary) {
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    cr_assert_eq(aria_tok_vocab_size(t), 17727);
    cr_expect_eq(aria_tok_id(t, note(ARIA_INSTR_PIANO, 60, 80)), 827);
    cr_expect_eq(aria_tok_id(t, tk_(ARIA_TK_ONSET, 0)), 17227);
    cr_expect_eq(aria_tok_id(t, tk_(ARIA_TK_ONSET, 4990)), 17726);
    cr_expect_eq(aria_tok_id(t, tk_(ARIA_TK_DUR, 800)), 16806);
    cr_expect_eq(aria_tok_id(t, tk_(ARIA_TK_DUR, 5000)), 17226);
    cr_expect_eq(aria_tok_id(t, tk_(ARIA_TK_DRUM, 35)), 16679);
    cr_expect_eq(aria_tok_id(t, tk_(ARIA_TK_DRUM, 30)), ARIA_SP_UNK, "drum 30 is not in the vocabulary");
    cr_expect_eq(aria_tok_id(t, note(ARIA_INSTR_PIANO, 60, 85)), ARIA_SP_UNK);
    cr_expect_eq(aria_tok_id(t, note(ARIA_INSTR_CHROMATIC, 60, 80)), ARIA_SP_UNK);
    cr_expect_eq(aria_tok_id(t, sp(ARIA_SP_PED_ON)), ARIA_SP_UNK, "no pedal tokens in this config");
    aria_token drum_prefix = {.kind = ARIA_TK_PREFIX, .a = ARIA_PREFIX_INSTRUMENT, .v = ARIA_INSTR_DRUM};
    cr_expect_eq(aria_tok_id(t, drum_prefix), 16);
    aria_token etude = {.kind = ARIA_TK_PREFIX, .a = ARIA_PREFIX_FORM, .v = 3};
    char buf[64];
    aria_tok_to_json(t, etude, buf, sizeof buf);
    cr_expect_str_eq(buf, "[\"prefix\",\"form\",\"\xc3\xa9tude\"]");
    cr_expect_eq(aria_tok_id(t, etude), 32);
    cr_expect(aria_tok_is(aria_tok_token(t, 17727), ARIA_SP_UNK));
    cr_expect(aria_tok_is(aria_tok_token(t, -1), ARIA_SP_UNK));
    aria_tokenizer_free(t);
}

Test(tokenizer, demo_configurations) {
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEMO_2675);
    cr_assert_eq(aria_tok_vocab_size(t), 2675);
    cr_expect_eq(aria_tok_id(t, note(ARIA_INSTR_PIANO, 60, 80)), 7 + 60 * 13 + 8);
    cr_expect_eq(aria_tok_id(t, tk_(ARIA_TK_DUR, 0)), 1671);
    cr_expect_eq(aria_tok_id(t, tk_(ARIA_TK_ONSET, 0)), 2172);
    cr_expect_eq(aria_tok_id(t, sp(ARIA_SP_PED_ON)), 2672);
    cr_expect_eq(aria_tok_id(t, sp(ARIA_SP_PED_OFF)), 2673);
    cr_expect_eq(aria_tok_id(t, sp(ARIA_SP_DELIM)), 2674);
    cr_expect_eq(aria_tok_id(t, tk_(ARIA_TK_DRUM, 36)), ARIA_SP_UNK);
    cr_expect_eq(aria_tok_id(t, note(ARIA_INSTR_ORGAN, 60, 80)), ARIA_SP_UNK);
    aria_tokenizer_free(t);
    t = aria_tokenizer_new(ARIA_TOKCFG_DEMO_17729);
    cr_assert_eq(aria_tok_vocab_size(t), 17729);
    cr_expect_eq(aria_tok_id(t, note(ARIA_INSTR_PIANO, 60, 80)), 827);
    cr_expect_eq(aria_tok_id(t, sp(ARIA_SP_PED_ON)), 17727);
    cr_expect_eq(aria_tok_id(t, sp(ARIA_SP_PED_OFF)), 17728);
    cr_expect_eq(aria_tok_id(t, sp(ARIA_SP_DELIM)), ARIA_SP_UNK);
    aria_tokenizer_free(t);
}

/* A piano score: `n` notes, one every `gap` ms (tpb 500, tempo 500000 so
   1 tick = 1 ms), with one sustain pedal interval. */
static aria_score piano_score(size_t n, int gap, int channel, int program) {
    aria_score s = {0};
    s.ticks_per_beat = 500;
    s.composer = s.form = s.genre = -1;
    s.tempos = malloc(sizeof *s.tempos);
    s.tempos[0] = (aria_tempo){0, 500000};
    s.n_tempos = 1;
    s.programs = malloc(sizeof *s.programs);
    s.programs[0] = (aria_program){0, (uint8_t)program, (uint8_t)channel};
    s.n_programs = 1;
    s.notes = malloc(n * sizeof *s.notes);
    for (size_t i = 0; i < n; i++)
        s.notes[i] = (aria_note){1000 + (int64_t)i * gap, 1000 + (int64_t)i * gap + 100,
                                 (uint8_t)(40 + i % 40), (uint8_t)(30 + i % 90), (uint8_t)channel};
    s.n_notes = n;
    s.pedals = malloc(2 * sizeof *s.pedals);
    s.pedals[0] = (aria_pedal){1000, 1, 127, (uint8_t)channel};
    s.pedals[1] = (aria_pedal){1000 + 3 * (int64_t)gap, 0, 0, (uint8_t)channel};
    s.n_pedals = 2;
    return s;
}

Test(tokenizer, empty_scores_are_refused) {
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    aria_score s = piano_score(0, 10, 0, 0);
    aria_token *toks;
    size_t n;
    aria_error err = {{0}};
    cr_expect_eq(aria_tokenize(t, &s, NULL, NULL, &toks, &n, &err), ARIA_ERR_EMPTY);
    cr_expect(strstr(err.msg, "no notes") != NULL, "%s", err.msg);
    aria_score_free(&s);
    s = piano_score(5, 10, 0, 90); /* synth pad: removed */
    cr_expect_eq(aria_tokenize(t, &s, NULL, NULL, &toks, &n, &err), ARIA_ERR_EMPTY);
    cr_expect(strstr(err.msg, "ignored instruments") != NULL, "%s", err.msg);
    aria_score_free(&s);
    aria_tokenizer_free(t);
}

Test(tokenizer, dim_token_lands_before_a_note_for_every_seed) {
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    aria_score s = piano_score(120, 700, 0, 0); /* 700 ms apart: <T> tokens too */
    for (uint64_t seed = 0; seed < 200; seed++) {
        aria_rng rng;
        aria_rng_seed(&rng, seed);
        aria_token *toks;
        size_t n;
        aria_error err = {{0}};
        cr_assert_eq(aria_tokenize(t, &s, NULL, &rng, &toks, &n, &err), ARIA_OK, "%s", err.msg);
        int dims = 0;
        size_t at = 0;
        for (size_t i = 0; i < n; i++)
            if (aria_tok_is(toks[i], ARIA_SP_DIM)) dims++, at = i;
        cr_assert_eq(dims, 1, "seed %llu", (unsigned long long)seed);
        aria_token next = toks[at + 1];
        cr_expect(next.kind == ARIA_TK_NOTE || aria_tok_is(next, ARIA_SP_TIME), "seed %llu: <D> splits a note",
                  (unsigned long long)seed);
        size_t from_end = n - 1 - at; /* tokens after <D>, <E> included */
        cr_expect(from_end >= 88 && from_end <= 113, "seed %llu: <D> %zu from the end",
                  (unsigned long long)seed, from_end);
        free(toks);
    }
    aria_score_free(&s);
    aria_tokenizer_free(t);
}

Test(tokenizer, pedal_extends_notes_and_pedal_tokens) {
    aria_score s = piano_score(6, 200, 0, 0); /* pedal 1000..1600 */
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEMO_17729);
    aria_token *toks;
    size_t n;
    aria_error err = {{0}};
    aria_tokenize_opts o = {1, 0, 1};
    cr_assert_eq(aria_tokenize(t, &s, &o, NULL, &toks, &n, &err), ARIA_OK, "%s", err.msg);
    /* prefix <S> PED_ON onset(0) note onset(0) dur ... */
    cr_assert_geq(n, 6);
    cr_expect(toks[0].kind == ARIA_TK_PREFIX && aria_tok_is(toks[1], ARIA_SP_BOS));
    cr_expect(toks[2].kind == ARIA_TK_NOTE, "notes come before a pedal on the same tick");
    cr_expect(toks[4].kind == ARIA_TK_DUR && toks[4].v == 600, "held by the pedal to 1600: %d", toks[4].v);
    cr_expect(aria_tok_is(toks[5], ARIA_SP_PED_ON));
    int offs = 0;
    for (size_t i = 0; i < n; i++) offs += aria_tok_is(toks[i], ARIA_SP_PED_OFF);
    cr_expect_eq(offs, 1);
    free(toks);
    aria_tokenizer_free(t);
    /* the default tokenizer has no pedal tokens but extends the same way */
    t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    cr_assert_eq(aria_tokenize(t, &s, &o, NULL, &toks, &n, &err), ARIA_OK);
    cr_expect(toks[4].kind == ARIA_TK_DUR && toks[4].v == 600);
    free(toks);
    aria_tokenizer_free(t);
    /* pedal tokenizers are piano-only: guitar is refused by the 17729
       variant, and removed (nothing left) by the piano-only 2675 one */
    aria_score g = piano_score(6, 200, 0, 24);
    t = aria_tokenizer_new(ARIA_TOKCFG_DEMO_17729);
    cr_expect_eq(aria_tokenize(t, &g, &o, NULL, &toks, &n, &err), ARIA_ERR_ARG);
    aria_tokenizer_free(t);
    t = aria_tokenizer_new(ARIA_TOKCFG_DEMO_2675);
    cr_expect_eq(aria_tokenize(t, &g, &o, NULL, &toks, &n, &err), ARIA_ERR_EMPTY);
    aria_tokenizer_free(t);
    aria_score_free(&g);
    aria_score_free(&s);
}

Test(tokenizer, round_trip_keeps_quantized_notes) {
    aria_score s = piano_score(50, 1230, 0, 0);
    s.n_pedals = 0;
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    aria_token *toks;
    size_t n;
    aria_error err = {{0}};
    aria_tokenize_opts o = {0, 0, 1}; /* keep the leading second of silence */
    cr_assert_eq(aria_tokenize(t, &s, &o, NULL, &toks, &n, &err), ARIA_OK);
    aria_score d;
    size_t skipped = 99;
    cr_assert_eq(aria_detokenize(t, toks, n, &d, &skipped, &err), ARIA_OK);
    cr_expect_eq(skipped, 0);
    cr_assert_eq(d.n_notes, s.n_notes);
    for (size_t i = 0; i < s.n_notes; i++) {
        cr_expect_eq(d.notes[i].start, s.notes[i].start, "note %zu", i);
        cr_expect_eq(d.notes[i].end - d.notes[i].start, 100);
        cr_expect_eq(d.notes[i].pitch, s.notes[i].pitch);
        int v = s.notes[i].velocity, q = d.notes[i].velocity;
        cr_expect(q % 10 == 0 && abs(q - v) <= 5, "velocity %d -> %d", v, q);
    }
    cr_expect_eq(aria_tok_length_ms(toks, n, 0), 1000 + 49 * 1230 + 100);
    cr_expect_eq(aria_tok_length_ms(toks, n, 1), 1000 + 49 * 1230);
    aria_score_free(&d);
    free(toks);
    aria_score_free(&s);
    aria_tokenizer_free(t);
}

Test(tokenizer, length_and_truncation) {
    /* <S> n onset(100) dur(50) <T> n onset(200) dur(6000?) -> use 4000 */
    aria_token seq[] = {sp(ARIA_SP_BOS), note(0, 60, 80), tk_(ARIA_TK_ONSET, 100), tk_(ARIA_TK_DUR, 50),
                        sp(ARIA_SP_TIME), note(0, 62, 80), tk_(ARIA_TK_ONSET, 200), tk_(ARIA_TK_DUR, 4000),
                        sp(ARIA_SP_EOS)};
    size_t n = sizeof seq / sizeof *seq;
    cr_expect_eq(aria_tok_length_ms(seq, n, 0), 5000 + 200 + 4000);
    cr_expect_eq(aria_tok_length_ms(seq, n, 1), 5200);
    cr_expect_eq(aria_tok_truncate_by_time(seq, n, 10000), n, "nothing after 10 s");
    cr_expect_eq(aria_tok_truncate_by_time(seq, n, 5199), 5, "cut before the second note");
    cr_expect_eq(aria_tok_truncate_by_time(seq, n, 50), 1, "cut before the first note");
}

/* Training-data cleaning: a key struck again by the same instrument
   within the window is dropped, the kept note lasting as long as the
   longer; other keys, other instruments and later strikes stay. */
Test(tokenizer, drop_restrikes) {
    aria_token seq[] = {sp(ARIA_SP_BOS),
                        note(0, 60, 80), tk_(ARIA_TK_ONSET, 0), tk_(ARIA_TK_DUR, 100),   /* kept */
                        note(0, 60, 70), tk_(ARIA_TK_ONSET, 0), tk_(ARIA_TK_DUR, 300),   /* double: out, 300 */
                        note(0, 62, 80), tk_(ARIA_TK_ONSET, 0), tk_(ARIA_TK_DUR, 100),   /* other key */
                        note(ARIA_INSTR_ORGAN, 60, 80), tk_(ARIA_TK_ONSET, 0), tk_(ARIA_TK_DUR, 100), /* other instrument */
                        note(0, 60, 80), tk_(ARIA_TK_ONSET, 30), tk_(ARIA_TK_DUR, 400),  /* 30 ms: out, 430 */
                        note(0, 60, 80), tk_(ARIA_TK_ONSET, 40), tk_(ARIA_TK_DUR, 100),  /* 40 ms: kept */
                        sp(ARIA_SP_TIME),
                        note(0, 62, 80), tk_(ARIA_TK_ONSET, 0), tk_(ARIA_TK_DUR, 100),   /* 5 s later: kept */
                        sp(ARIA_SP_EOS)};
    size_t n = sizeof seq / sizeof *seq;
    aria_token a[sizeof seq / sizeof *seq];
    memcpy(a, seq, sizeof seq);
    cr_expect_eq(aria_tok_drop_restrikes(a, n, -1), n, "window < 0: nothing dropped");
    cr_expect(memcmp(a, seq, sizeof seq) == 0);
    size_t m = aria_tok_drop_restrikes(a, n, 30);
    cr_assert_eq(m, n - 6);
    cr_expect_eq(a[1].v, 60);
    cr_expect_eq(a[3].v, 430, "the kept note lasts until the dropped one's end");
    cr_expect_eq(a[4].v, 62);
    cr_expect_eq(a[7].a, ARIA_INSTR_ORGAN);
    cr_expect_eq(a[10].v, 60);
    cr_expect_eq(a[11].v, 40);
    cr_expect(aria_tok_is(a[13], ARIA_SP_TIME));
    cr_expect_eq(a[14].v, 62);
    cr_expect(aria_tok_is(a[m - 1], ARIA_SP_EOS));
    /* window 0: exact doubles only */
    memcpy(a, seq, sizeof seq);
    cr_expect_eq(aria_tok_drop_restrikes(a, n, 0), n - 3);
    cr_expect_eq(a[3].v, 300);
    /* capped at the longest duration */
    aria_token longer[] = {note(0, 60, 80), tk_(ARIA_TK_ONSET, 0),  tk_(ARIA_TK_DUR, 100),
                           note(0, 60, 80), tk_(ARIA_TK_ONSET, 20), tk_(ARIA_TK_DUR, 5000)};
    cr_expect_eq(aria_tok_drop_restrikes(longer, 6, 30), 3);
    cr_expect_eq(longer[2].v, 5000);
}

Test(tokenizer, detokenize_skips_malformed_runs) {
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    aria_token prefix = {.kind = ARIA_TK_PREFIX, .a = ARIA_PREFIX_INSTRUMENT, .v = ARIA_INSTR_PIANO};
    aria_token seq[] = {prefix, sp(ARIA_SP_BOS),
                        note(0, 60, 80), tk_(ARIA_TK_ONSET, 0), tk_(ARIA_TK_DUR, 100), /* ok */
                        note(0, 61, 80), tk_(ARIA_TK_DUR, 100),                        /* no onset */
                        note(ARIA_INSTR_ORGAN, 62, 80), tk_(ARIA_TK_ONSET, 10), tk_(ARIA_TK_DUR, 10), /* no prefix */
                        tk_(ARIA_TK_DRUM, 36), tk_(ARIA_TK_ONSET, 20),                 /* no drum prefix */
                        note(0, 64, 80), tk_(ARIA_TK_ONSET, 30), tk_(ARIA_TK_DUR, 30), sp(ARIA_SP_EOS)};
    size_t n = sizeof seq / sizeof *seq, skipped = 0;
    aria_score s;
    aria_error err = {{0}};
    cr_assert_eq(aria_detokenize(t, seq, n, &s, &skipped, &err), ARIA_OK);
    cr_expect_eq(s.n_notes, 2);
    cr_expect_eq(skipped, 3);
    cr_expect_eq(s.ticks_per_beat, 500);
    aria_score_free(&s);
    /* no note at all: an empty score, not a crash */
    aria_token only[] = {prefix, sp(ARIA_SP_BOS), sp(ARIA_SP_EOS)};
    cr_assert_eq(aria_detokenize(t, only, 3, &s, &skipped, &err), ARIA_OK);
    cr_expect_eq(s.n_notes, 0);
    aria_score_free(&s);
    aria_tokenizer_free(t);
}

Test(tokenizer, json_parse_errors_name_the_token) {
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    aria_token *toks;
    size_t n;
    aria_error err = {{0}};
    const char *bad[] = {"[\"<S>\", [\"piano\", 200, 80]]", "[\"<S>\", \"<Q>\"]", "[[\"onset\", -5]]",
                         "{\"a\": 1}", "[\"<S>\", [\"kazoo\", 60, 80]]", "[1,2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect_eq(aria_tok_parse_json(t, bad[i], strlen(bad[i]), &toks, &n, &err), ARIA_ERR_FORMAT,
                     "accepted %s", bad[i]);
        cr_expect(err.msg[0] != 0);
    }
    cr_expect(strstr(err.msg, "JSON") != NULL, "%s", err.msg);
    const char *ok = "[[\"prefix\",\"instrument\",\"piano\"],\"<S>\",[\"drum\",30],\"<E>\"]";
    cr_assert_eq(aria_tok_parse_json(t, ok, strlen(ok), &toks, &n, &err), ARIA_OK, "%s", err.msg);
    cr_expect_eq(n, 4);
    cr_expect_eq(aria_tok_id(t, toks[2]), ARIA_SP_UNK);
    free(toks);
    aria_tokenizer_free(t);
}

Test(tokenizer, random_augmentations_stay_in_range) {
    aria_tokenizer *t = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    aria_score s = piano_score(200, 97, 0, 0);
    aria_token *toks;
    size_t n;
    aria_error err = {{0}};
    cr_assert_eq(aria_tokenize(t, &s, NULL, NULL, &toks, &n, &err), ARIA_OK);
    aria_token *out = malloc(n * sizeof *out);
    aria_rng rng;
    aria_rng_seed(&rng, 7);
    for (int rep = 0; rep < 50; rep++) {
        aria_aug_pitch(toks, n, out, 5, NULL, &rng);
        int shift = 999;
        for (size_t i = 0; i < n; i++) {
            if (toks[i].kind != ARIA_TK_NOTE) continue;
            int d = out[i].v - toks[i].v;
            if (shift == 999) shift = d;
            cr_assert_eq(d, shift, "one shift per sequence");
        }
        cr_expect(shift >= -5 && shift <= 5);
        aria_aug_velocity(toks, n, out, 1, NULL, &rng);
        for (size_t i = 0; i < n; i++)
            if (out[i].kind == ARIA_TK_NOTE) cr_assert(out[i].b >= 10 && out[i].b <= 120 && out[i].b % 10 == 0);
        cr_assert_eq(aria_aug_tempo(t, toks, n, out, 0.2, 1, NULL, &rng), ARIA_OK);
        size_t notes_in = 0, notes_out = 0;
        for (size_t i = 0; i < n; i++) {
            notes_in += toks[i].kind == ARIA_TK_NOTE;
            notes_out += out[i].kind == ARIA_TK_NOTE;
            if (out[i].kind == ARIA_TK_ONSET) cr_assert(out[i].v >= 0 && out[i].v < 5000 && out[i].v % 10 == 0);
            if (out[i].kind == ARIA_TK_DUR) cr_assert(out[i].v >= 10 && out[i].v <= 5000 && out[i].v % 10 == 0);
        }
        /* the output is cut or padded to the input length */
        cr_expect(notes_out <= notes_in && notes_out + 40 >= notes_in, "%zu vs %zu", notes_out, notes_in);
    }
    free(out);
    free(toks);
    aria_score_free(&s);
    aria_tokenizer_free(t);
}
