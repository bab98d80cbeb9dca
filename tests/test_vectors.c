/*
 * test_vectors.c - conformance with the reference tokenizer (ariautils).
 *
 * For each of the 19 reference files we read the MIDI, build the score,
 * tokenize, detokenize and write MIDI, and compare with what the real
 * Python tokenizer produced (tests/data/vectors, copied from
 * ../shared/vectors/tokenizer; see SOURCE.md there). The instrument prefix
 * before <S> is compared as a multiset, since the reference builds it from
 * a Python set; everything else must match exactly.
 *
 * Some vectors (augmentations, note lists) are in the repository only for
 * the small synthetic files; when ../shared is present the same checks run
 * over all 19 files.
 *
 * Each test counts the reference files it compared and says so in its
 * output ("compared N reference files"); a test that compared none fails,
 * and with ../shared present a test that should have read some of its files
 * from there fails when it read none (the folder moved).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "aria.h"
#include "base/json.h"

int aria_tok_quantize(int what, int64_t x);

static const char *const stems[] = {
    "arabesque", "basic", "classical", "nocturne", "old_bach", "old_beethoven_moonlight",
    "old_expressive", "pokey_jazz", "pop", "smooth_jazz", "synth_instruments",
    "synth_multitrack_tempo", "synth_pedal_edge", "synth_running_status", "synth_tie_order",
    "synth_timing_extremes", "transcription", "waltz", "yesterday"};
#define N_STEMS (sizeof stems / sizeof *stems)

#define REPO_VECTORS "tests/data/vectors"
#define SHARED_VECTORS "../shared/vectors/tokenizer"

/* Reference files the running test compared, by origin (each test runs in
   its own process; setup zeroes them). */
static int compared_repo, compared_shared;

static int shared_present(void) {
    struct stat st;
    return stat("../shared", &st) == 0 && S_ISDIR(st.st_mode);
}

/* The vector file `name` of `stem` (or a top-level file when stem is
   NULL), from the repository copy, else from ../shared. NULL if neither;
   *from says which root it came from (0 repository, 1 shared). */
static const char *vec_find(const char *stem, const char *name, int *from) {
    static char buf[1024];
    const char *roots[] = {REPO_VECTORS, SHARED_VECTORS};
    for (int r = 0; r < 2; r++) {
        if (stem)
            snprintf(buf, sizeof buf, "%s/%s/%s", roots[r], stem, name);
        else
            snprintf(buf, sizeof buf, "%s/%s", roots[r], name);
        FILE *f = fopen(buf, "rb");
        if (f) {
            fclose(f);
            *from = r;
            return buf;
        }
    }
    return NULL;
}

/* A reference file the caller is about to compare against: found like
   vec_find and counted. */
static const char *vec_path(const char *stem, const char *name) {
    int from = 0;
    const char *p = vec_find(stem, name, &from);
    if (p) *(from ? &compared_shared : &compared_repo) += 1;
    return p;
}

/* Ends a test: prints how many reference files it compared and fails when
   there were none. min_shared is how many of them must have come from
   ../shared when it is present (files the repository does not carry). */
static void expect_compared(const char *test, int min_shared) {
    int total = compared_repo + compared_shared;
    /* printed, not logged: the count belongs in every run's output */
    fprintf(stderr, "vectors::%s compared %d reference files (%d from " REPO_VECTORS ", %d from "
            SHARED_VECTORS ")\n", test, total, compared_repo, compared_shared);
    cr_assert_gt(total, 0, "vectors::%s compared no reference file", test);
    if (shared_present())
        cr_assert_geq(compared_shared, min_shared,
                      "vectors::%s: ../shared is present but only %d files came from "
                      SHARED_VECTORS " (expected at least %d): did it move?",
                      test, compared_shared, min_shared);
}

static json_doc *load_json(const char *path) {
    cr_assert(path, "a reference file is in neither " REPO_VECTORS " nor " SHARED_VECTORS);
    json_doc *doc = NULL;
    char err[256];
    cr_assert_eq(json_parse_file(path, &doc, err, sizeof err), ARIA_OK, "%s", err);
    return doc;
}

static aria_tokenizer *tk;

static void setup(void) {
    tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    compared_repo = compared_shared = 0;
}
static void teardown(void) { aria_tokenizer_free(tk); }

static void load_score(const char *stem, aria_score *s) {
    char name[256];
    snprintf(name, sizeof name, "%s.mid", stem);
    int from;
    const char *p = vec_find(stem, name, &from); /* an input, not a reference: not counted */
    cr_assert(p, "%s: missing", name);
    aria_midi m = {0};
    aria_error err = {{0}};
    cr_assert_eq(aria_midi_read_file(&m, p, &err), ARIA_OK, "%s: %s", stem, err.msg);
    cr_assert_eq(aria_score_from_midi(s, &m, &err), ARIA_OK, "%s: %s", stem, err.msg);
    aria_midi_free(&m);
}

/* Tokens of a JSON array (vector file) via the library's own parser. */
static aria_token *load_tokens(const char *path, size_t *n) {
    cr_assert(path, "a token file is in neither " REPO_VECTORS " nor " SHARED_VECTORS);
    uint8_t *buf;
    size_t len;
    aria_error err = {{0}};
    cr_assert_eq(aria_read_file(path, &buf, &len, &err), ARIA_OK, "%s", err.msg);
    aria_token *toks;
    cr_assert_eq(aria_tok_parse_json(tk, (const char *)buf, len, &toks, n, &err), ARIA_OK,
                 "%s: %s", path, err.msg);
    free(buf);
    return toks;
}

static int32_t *load_ids(const json_value *arr, size_t *n) {
    *n = json_len(arr);
    int32_t *ids = malloc((*n + 1) * sizeof *ids);
    for (size_t i = 0; i < *n; i++) ids[i] = (int32_t)json_int(json_at(arr, i));
    return ids;
}

static int tok_eq(aria_token a, aria_token b) {
    return a.kind == b.kind && a.a == b.a && a.b == b.b && a.v == b.v;
}

static size_t index_of_bos(const aria_token *t, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (aria_tok_is(t[i], ARIA_SP_BOS)) return i;
    return n;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Same ids before <S> (any order), same ids from <S> on. */
static void expect_same_ids(const char *what, const char *stem, const int32_t *got, size_t ng,
                            const int32_t *want, size_t nw) {
    cr_expect_eq(ng, nw, "%s %s: %zu ids, reference has %zu", stem, what, ng, nw);
    if (ng != nw) return;
    size_t b = 0;
    while (b < nw && want[b] != ARIA_SP_BOS) b++;
    int32_t *x = malloc((b + 1) * sizeof *x), *y = malloc((b + 1) * sizeof *y);
    memcpy(x, got, b * sizeof *x);
    memcpy(y, want, b * sizeof *y);
    qsort(x, b, sizeof *x, cmp_i32);
    qsort(y, b, sizeof *y, cmp_i32);
    cr_expect(memcmp(x, y, b * sizeof *x) == 0, "%s %s: prefix differs", stem, what);
    free(x);
    free(y);
    for (size_t i = b; i < nw; i++) {
        if (got[i] != want[i]) {
            cr_expect_eq(got[i], want[i], "%s %s: id %zu is %d, reference %d", stem, what, i, got[i],
                         want[i]);
            return;
        }
    }
}

/* Same tokens (structs, so out-of-vocabulary values count too), prefix as
   a multiset. */
static void expect_same_tokens(const char *what, const char *stem, const aria_token *got,
                               size_t ng, const aria_token *want, size_t nw) {
    cr_expect_eq(ng, nw, "%s %s: %zu tokens, reference has %zu", stem, what, ng, nw);
    if (ng != nw) return;
    size_t b = index_of_bos(want, nw);
    cr_expect_eq(index_of_bos(got, ng), b, "%s %s: <S> at a different place", stem, what);
    for (size_t i = 0; i < b; i++) {
        int found = 0;
        for (size_t j = 0; j < b; j++) found |= tok_eq(got[i], want[j]);
        cr_expect(found, "%s %s: prefix token %zu not in the reference prefix", stem, what, i);
    }
    for (size_t i = b; i < nw; i++) {
        if (!tok_eq(got[i], want[i])) {
            char g[96], w[96];
            aria_tok_to_json(tk, got[i], g, sizeof g);
            aria_tok_to_json(tk, want[i], w, sizeof w);
            cr_expect(0, "%s %s: token %zu is %s, reference %s", stem, what, i, g, w);
            return;
        }
    }
}

TestSuite(vectors, .init = setup, .fini = teardown);

/* With ../shared present, augmentations and note lists of the 12 stems
   that the repository does not carry come from there: at least 90% of the
   files read there when this was written, so that a moved or emptied
   folder fails instead of quietly comparing less. */
#define MIN_SHARED_AUGMENTATIONS (12 * 9 / 10) /* of 12 aug_tokens.json */
#define MIN_SHARED_NOTES (36 * 9 / 10)         /* of 12 stems x 3 note lists */

Test(vectors, tokens_and_ids) {
    for (size_t k = 0; k < N_STEMS; k++) {
        aria_score s;
        load_score(stems[k], &s);
        aria_rng rng;
        aria_rng_seed(&rng, 0);
        aria_tokenize_opts o = {1, 0, 1};
        aria_token *toks;
        size_t n;
        aria_error err = {{0}};
        cr_assert_eq(aria_tokenize(tk, &s, &o, &rng, &toks, &n, &err), ARIA_OK, "%s: %s", stems[k], err.msg);

        size_t nw;
        aria_token *want = load_tokens(vec_path(stems[k], "tokens.json"), &nw);
        expect_same_tokens("tokens", stems[k], toks, n, want, nw);

        json_doc *d = load_json(vec_path(stems[k], "ids.json"));
        size_t ni;
        int32_t *ids_want = load_ids(json_root(d), &ni);
        int32_t *ids = malloc((n + 1) * sizeof *ids);
        aria_tok_encode(tk, toks, n, ids);
        expect_same_ids("ids", stems[k], ids, n, ids_want, ni);

        /* decode(encode(x)) is x with unknown tokens turned into <U> */
        aria_token *back = malloc((n + 1) * sizeof *back);
        aria_tok_decode(tk, ids, n, back);
        for (size_t i = 0; i < n; i++) {
            aria_token e = aria_tok_id(tk, toks[i]) == ARIA_SP_UNK ? aria_tok_special(ARIA_SP_UNK) : toks[i];
            cr_expect(tok_eq(back[i], e), "%s: decode(encode) differs at %zu", stems[k], i);
        }
        free(back);
        free(ids);
        free(ids_want);
        json_doc_free(d);
        free(want);
        free(toks);
        aria_score_free(&s);
    }
    expect_compared("tokens_and_ids", 0);
}

Test(vectors, tokens_with_dim_seed_1234) {
    for (size_t k = 0; k < N_STEMS; k++) {
        aria_score s;
        load_score(stems[k], &s);
        aria_rng rng;
        aria_rng_seed(&rng, 1234);
        aria_token *toks;
        size_t n;
        aria_error err = {{0}};
        cr_assert_eq(aria_tokenize(tk, &s, NULL, &rng, &toks, &n, &err), ARIA_OK, "%s", err.msg);
        size_t nw;
        aria_token *want = load_tokens(vec_path(stems[k], "tokens_default_seed1234.json"), &nw);
        expect_same_tokens("tokens (with <D>, seed 1234)", stems[k], toks, n, want, nw);
        free(want);
        free(toks);
        aria_score_free(&s);
    }
    expect_compared("tokens_with_dim_seed_1234", 0);
}

Test(vectors, prompt_15s) {
    for (size_t k = 0; k < N_STEMS; k++) {
        aria_score s;
        load_score(stems[k], &s);
        aria_rng rng;
        aria_rng_seed(&rng, 0);
        aria_token *toks;
        size_t n;
        aria_error err = {{0}};
        cr_assert_eq(aria_tok_prompt(tk, &s, 15000, &rng, &toks, &n, &err), ARIA_OK, "%s", err.msg);
        int32_t *ids = malloc((n + 1) * sizeof *ids);
        aria_tok_encode(tk, toks, n, ids);
        json_doc *d = load_json(vec_path(stems[k], "prompt15s_ids.json"));
        size_t nw;
        int32_t *want = load_ids(json_root(d), &nw);
        expect_same_ids("prompt", stems[k], ids, n, want, nw);
        free(want);
        json_doc_free(d);
        free(ids);
        free(toks);
        aria_score_free(&s);
    }
    expect_compared("prompt_15s", 0);
}

Test(vectors, embedding_chunks) {
    int checked = 0;
    for (size_t k = 0; k < N_STEMS; k++) {
        aria_score s;
        load_score(stems[k], &s);
        const char *p = vec_path(stems[k], "embedding_chunks_ids.json");
        aria_tok_chunk *ch = NULL;
        size_t nc = 0;
        aria_error err = {{0}};
        aria_rng rng;
        aria_rng_seed(&rng, 0);
        int rc = aria_tok_embedding_chunks(tk, &s, 300, 2048, &rng, &ch, &nc, &err);
        if (!p) { /* the reference refuses files that are not piano-only */
            cr_expect_eq(rc, ARIA_ERR_ARG, "%s: accepted a file that is not piano-only", stems[k]);
            cr_expect(strstr(err.msg, "piano") != NULL, "%s: message '%s'", stems[k], err.msg);
            aria_score_free(&s);
            continue;
        }
        cr_assert_eq(rc, ARIA_OK, "%s: %s", stems[k], err.msg);
        json_doc *d = load_json(p);
        const json_value *root = json_root(d);
        cr_expect_eq(nc, json_len(root), "%s: %zu chunks, reference %zu", stems[k], nc, json_len(root));
        for (size_t c = 0; c < nc && c < json_len(root); c++) {
            const json_value *want = json_get(json_at(root, c), "ids");
            cr_expect_eq((int64_t)ch[c].eos_pos, json_int(json_get(json_at(root, c), "eos_pos")),
                         "%s chunk %zu: eos position", stems[k], c);
            size_t nw;
            int32_t *wi = load_ids(want, &nw);
            int32_t *ids = malloc((ch[c].n + 1) * sizeof *ids);
            aria_tok_encode(tk, ch[c].toks, ch[c].n, ids);
            expect_same_ids("embedding chunk", stems[k], ids, ch[c].n, wi, nw);
            free(ids);
            free(wi);
        }
        checked++;
        json_doc_free(d);
        aria_tok_chunks_free(ch, nc);
        aria_score_free(&s);
    }
    cr_expect_gt(checked, 5, "only %d files had embedding chunks", checked);
    expect_compared("embedding_chunks", 0);
}

/* The score of a stem's reference tokens (an input here: not counted). */
static void detokenize_file(const char *stem, aria_score *out) {
    size_t n;
    int from;
    aria_token *toks = load_tokens(vec_find(stem, "tokens.json", &from), &n);
    aria_error err = {{0}};
    cr_assert_eq(aria_detokenize(tk, toks, n, out, NULL, &err), ARIA_OK, "%s: %s", stem, err.msg);
    free(toks);
}

Test(vectors, decoded_midi_is_byte_identical) {
    for (size_t k = 0; k < N_STEMS; k++) {
        aria_score s;
        detokenize_file(stems[k], &s);
        aria_midi m = {0};
        aria_error err = {{0}};
        cr_assert_eq(aria_score_to_midi(&s, &m, &err), ARIA_OK, "%s: %s", stems[k], err.msg);
        uint8_t *bytes, *want;
        size_t n, nw;
        cr_assert_eq(aria_midi_write(&m, &bytes, &n, &err), ARIA_OK, "%s: %s", stems[k], err.msg);
        cr_assert_eq(aria_read_file(vec_path(stems[k], "decoded.mid"), &want, &nw, &err), ARIA_OK);
        cr_expect(n == nw && memcmp(bytes, want, n) == 0,
                  "%s: decoded.mid differs from the reference (%zu vs %zu bytes)", stems[k], n, nw);
        free(bytes);
        free(want);
        aria_midi_free(&m);
        aria_score_free(&s);
    }
    expect_compared("decoded_midi_is_byte_identical", 0);
}

/* Note lists in ms, in the order the vector script sorts them:
   (onset, channel, pitch, offset). */
typedef struct {
    int64_t on, off;
    int pitch, vel, ch;
} ms_note;

static int cmp_ms_note(const void *a, const void *b) {
    const ms_note *x = a, *y = b;
    if (x->on != y->on) return x->on < y->on ? -1 : 1;
    if (x->ch != y->ch) return x->ch - y->ch;
    if (x->pitch != y->pitch) return x->pitch - y->pitch;
    return (x->off > y->off) - (x->off < y->off);
}

static void expect_notes(const char *what, const char *stem, const aria_score *s, const char *file) {
    const char *p = vec_path(stem, file);
    if (!p) return;
    json_doc *d = load_json(p);
    const json_value *root = json_root(d);
    size_t n = s->n_notes;
    ms_note *got = malloc((n + 1) * sizeof *got);
    for (size_t i = 0; i < n; i++)
        got[i] = (ms_note){aria_score_tick_to_ms(s, s->notes[i].start), aria_score_tick_to_ms(s, s->notes[i].end),
                           s->notes[i].pitch, s->notes[i].velocity, s->notes[i].channel};
    qsort(got, n, sizeof *got, cmp_ms_note);
    cr_expect_eq(n, json_len(root), "%s %s: %zu notes, reference %zu", stem, what, n, json_len(root));
    for (size_t i = 0; i < n && i < json_len(root); i++) {
        const json_value *w = json_at(root, i);
        ms_note e = {json_int(json_get(w, "onset_ms")), json_int(json_get(w, "offset_ms")),
                     (int)json_int(json_get(w, "pitch")), (int)json_int(json_get(w, "velocity")),
                     (int)json_int(json_get(w, "channel"))};
        if (memcmp(&got[i], &e, sizeof e) != 0 &&
            (got[i].on != e.on || got[i].off != e.off || got[i].pitch != e.pitch ||
             got[i].vel != e.vel || got[i].ch != e.ch)) {
            cr_expect(0, "%s %s: note %zu is (%lld %lld p%d v%d ch%d), reference (%lld %lld p%d v%d ch%d)",
                      stem, what, i, (long long)got[i].on, (long long)got[i].off, got[i].pitch,
                      got[i].vel, got[i].ch, (long long)e.on, (long long)e.off, e.pitch, e.vel, e.ch);
            break;
        }
    }
    free(got);
    json_doc_free(d);
}

Test(vectors, source_and_decoded_notes) {
    for (size_t k = 0; k < N_STEMS; k++) {
        aria_score s;
        load_score(stems[k], &s);
        expect_notes("source notes", stems[k], &s, "source_notes_ms.json");
        aria_score_free(&s);

        aria_score dec;
        detokenize_file(stems[k], &dec);
        expect_notes("decoded notes", stems[k], &dec, "decoded_notes.json");
        aria_score_free(&dec);

        /* decoded.mid read back gives the notes after resolve_overlaps
           (an input here: the comparison is with decoded_midi_notes.json) */
        int from;
        const char *p = vec_find(stems[k], "decoded.mid", &from);
        aria_midi m = {0};
        aria_error err = {{0}};
        cr_assert_eq(aria_midi_read_file(&m, p, &err), ARIA_OK, "%s", err.msg);
        cr_assert_eq(aria_score_from_midi(&s, &m, &err), ARIA_OK, "%s", err.msg);
        expect_notes("decoded MIDI notes", stems[k], &s, "decoded_midi_notes.json");
        aria_score_free(&s);
        aria_midi_free(&m);
    }
    expect_compared("source_and_decoded_notes", MIN_SHARED_NOTES);
}

static void expect_aug(const char *stem, const char *key, const aria_token *got, size_t n,
                       const json_value *aug) {
    const json_value *want = json_get(aug, key);
    cr_assert(want, "%s: no %s in aug_tokens.json", stem, key);
    size_t nw = json_len(want);
    cr_expect_eq(n, nw, "%s %s: length", stem, key);
    for (size_t i = 0; i < n && i < nw; i++) {
        char g[96], w[160];
        aria_tok_to_json(tk, got[i], g, sizeof g);
        /* render the reference token the same way */
        const json_value *x = json_at(want, i);
        if (json_type_of(x) == JSON_STRING) {
            size_t l;
            const char *sv = json_string(x, &l);
            snprintf(w, sizeof w, "\"%.*s\"", (int)l, sv);
        } else {
            size_t l;
            const char *h = json_string(json_at(x, 0), &l);
            if (json_len(x) == 3 && json_type_of(json_at(x, 1)) == JSON_STRING) {
                size_t l1, l2;
                const char *a = json_string(json_at(x, 1), &l1), *b = json_string(json_at(x, 2), &l2);
                snprintf(w, sizeof w, "[\"%.*s\",\"%.*s\",\"%.*s\"]", (int)l, h, (int)l1, a, (int)l2, b);
            } else if (json_len(x) == 3) {
                snprintf(w, sizeof w, "[\"%.*s\",%lld,%lld]", (int)l, h, (long long)json_int(json_at(x, 1)),
                         (long long)json_int(json_at(x, 2)));
            } else {
                snprintf(w, sizeof w, "[\"%.*s\",%lld]", (int)l, h, (long long)json_int(json_at(x, 1)));
            }
        }
        if (strcmp(g, w) != 0) {
            cr_expect(0, "%s %s: token %zu is %s, reference %s", stem, key, i, g, w);
            return;
        }
    }
}

Test(vectors, augmentations) {
    int checked = 0;
    for (size_t k = 0; k < N_STEMS; k++) {
        const char *p = vec_path(stems[k], "aug_tokens.json");
        if (!p) continue;
        json_doc *d = load_json(p);
        const json_value *aug = json_root(d);
        size_t n;
        int from;
        aria_token *in = load_tokens(vec_find(stems[k], "tokens.json", &from), &n); /* input */
        aria_token *out = malloc((n + 1) * sizeof *out);
        int v;
        v = 3;  aria_aug_pitch(in, n, out, 5, &v, NULL);    expect_aug(stems[k], "pitch_+3", out, n, aug);
        v = -5; aria_aug_pitch(in, n, out, 5, &v, NULL);    expect_aug(stems[k], "pitch_-5", out, n, aug);
        v = 1;  aria_aug_velocity(in, n, out, 1, &v, NULL); expect_aug(stems[k], "velocity_step_+1", out, n, aug);
        v = -1; aria_aug_velocity(in, n, out, 1, &v, NULL); expect_aug(stems[k], "velocity_step_-1", out, n, aug);
        double f = 1.1;
        cr_assert_eq(aria_aug_tempo(tk, in, n, out, 0.2, 0, &f, NULL), ARIA_OK);
        expect_aug(stems[k], "tempo_x1.1", out, n, aug);
        f = 0.85;
        cr_assert_eq(aria_aug_tempo(tk, in, n, out, 0.2, 0, &f, NULL), ARIA_OK);
        expect_aug(stems[k], "tempo_x0.85", out, n, aug);
        free(out);
        free(in);
        json_doc_free(d);
        checked++;
    }
    cr_expect_geq(checked, 7, "augmentation vectors found for %d files only", checked);
    expect_compared("augmentations", MIN_SHARED_AUGMENTATIONS);
}

Test(vectors, quantizer_tables) {
    json_doc *d = load_json(vec_path(NULL, "quant_tables.json"));
    const json_value *root = json_root(d);
    const json_value *vel = json_get(root, "velocity_in_0_127");
    cr_assert_eq(json_len(vel), 128);
    for (int v = 0; v < 128; v++)
        cr_expect_eq(aria_tok_quantize(0, v), json_int(json_at(vel, (size_t)v)), "velocity %d", v);
    const json_value *dur = json_get(root, "dur_ms_in_-20_6000");
    cr_assert_eq(json_len(dur), 6021);
    for (int ms = -20; ms <= 6000; ms++) {
        char key[16];
        snprintf(key, sizeof key, "%d", ms);
        cr_expect_eq(aria_tok_quantize(1, ms), json_int(json_get(dur, key)), "dur %d", ms);
    }
    const json_value *on = json_get(root, "onset_ms_in_0_4999");
    cr_assert_eq(json_len(on), 5000);
    for (int ms = 0; ms < 5000; ms++)
        cr_expect_eq(aria_tok_quantize(2, ms), json_int(json_at(on, (size_t)ms)), "onset %d", ms);
    json_doc_free(d);
    expect_compared("quantizer_tables", 0);
}

/* Python's str() of a token, the form of vocab.json and the demo
   vocabularies: "<S>", "('piano', 60, 80)", "('prefix', 'form', 'étude')". */
static void py_str(const aria_tokenizer *t, aria_token tok, char *buf, size_t cap) {
    char js[128];
    aria_tok_to_json(t, tok, js, sizeof js);
    if (js[0] == '"') { /* special: strip the quotes */
        snprintf(buf, cap, "%.*s", (int)strlen(js) - 2, js + 1);
        return;
    }
    size_t o = 0;
    for (const char *p = js; *p && o + 3 < cap; p++) {
        if (*p == '[') buf[o++] = '(';
        else if (*p == ']') buf[o++] = ')';
        else if (*p == '"') buf[o++] = '\'';
        else if (*p == ',') { buf[o++] = ','; buf[o++] = ' '; }
        else buf[o++] = *p;
    }
    buf[o] = 0;
}

/* Every id of a configuration against a reference vocabulary: either a
   JSON list of tokens (tuples as arrays) or {"id": "str(token)"}. */
static void check_vocab(aria_tok_variant variant, const char *file, int size) {
    aria_tokenizer *t = aria_tokenizer_new(variant);
    cr_assert_eq(aria_tok_vocab_size(t), size);
    for (int id = 0; id < size; id++)
        cr_expect_eq(aria_tok_id(t, aria_tok_token(t, id)), id, "id %d does not round-trip", id);
    const char *p = vec_path(NULL, file);
    if (!p) {
        aria_tokenizer_free(t);
        /* only a checkout without ../shared may lack a vocabulary file */
        cr_assert(!shared_present(), "%s is in neither " REPO_VECTORS " nor " SHARED_VECTORS, file);
        cr_skip("%s not available (needs ../shared)", file);
    }
    json_doc *d = load_json(p);
    const json_value *root = json_root(d);
    cr_assert_eq((int)json_len(root), size, "%s has %zu entries", file, json_len(root));
    if (json_type_of(root) == JSON_ARRAY) {
        uint8_t *buf;
        size_t len, n;
        aria_error err = {{0}};
        aria_token *toks;
        cr_assert_eq(aria_read_file(p, &buf, &len, &err), ARIA_OK);
        cr_assert_eq(aria_tok_parse_json(t, (const char *)buf, len, &toks, &n, &err), ARIA_OK, "%s", err.msg);
        for (size_t i = 0; i < n; i++) cr_expect_eq(aria_tok_id(t, toks[i]), (int)i, "%s: entry %zu", file, i);
        free(toks);
        free(buf);
    } else {
        for (int id = 0; id < size; id++) {
            char key[16], mine[160];
            snprintf(key, sizeof key, "%d", id);
            size_t l;
            const char *want = json_string(json_get(root, key), &l);
            py_str(t, aria_tok_token(t, id), mine, sizeof mine);
            cr_expect(want && strlen(mine) == l && memcmp(mine, want, l) == 0, "%s: id %d is %s, reference %.*s",
                      file, id, mine, want ? (int)l : 0, want ? want : "");
        }
    }
    json_doc_free(d);
    aria_tokenizer_free(t);
    expect_compared(file, 0);
}

Test(vectors, vocabulary_default) { check_vocab(ARIA_TOKCFG_DEFAULT, "vocab_tokens.json", 17727); }
Test(vectors, vocabulary_default_strings) { check_vocab(ARIA_TOKCFG_DEFAULT, "vocab.json", 17727); }
Test(vectors, vocabulary_demo_2675) { check_vocab(ARIA_TOKCFG_DEMO_2675, "vocab_demo_2675.json", 2675); }
Test(vectors, vocabulary_demo_17729) { check_vocab(ARIA_TOKCFG_DEMO_17729, "vocab_demo_17729.json", 17729); }
