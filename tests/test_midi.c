/*
 * test_midi.c - Criterion tests of the MIDI layer (src/midi/midi.c) and the file
 * helpers (src/base/fileio.c).
 *
 * Every row of the decision table in docs/midi.md has a test here: the
 * fixture files under tests/data/midi (see its SOURCE.md) cover most rows,
 * and small files assembled in memory by the smf_* helpers cover the rest.
 * Writer tests compare with bytes that mido 1.2.10 wrote (the decoded.mid
 * tokenizer vectors and *.mido.mid files) so no Python is needed here.
 * Inputs made by fuzz/fuzz_midi.c live in tests/data/midi/crashers and are
 * replayed by midi_walk::fuzz_regressions.
 *
 * Suite names start with midi_ (the whole tests/ folder is one binary);
 * helpers are static.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aria.h"

#define FIX "tests/data/midi/"
#define SHARED_FIXTURES "../shared/midi/fixtures"

/* How many files the folder walks must at least check, so that a moved or
   emptied folder fails instead of passing on nothing: every file the
   repository holds today, and 90% of today's files under ../shared. */
#define LOCAL_FIXTURE_FILES 135   /* tests/data/midi, SOURCE.md included */
#define CRASHER_FILES 5           /* tests/data/midi/crashers */
#define SHARED_FIXTURE_FILES_MIN (257 * 9 / 10)

/* ---------------------------------------------------------------------- */
/* helpers                                                                */
/* ---------------------------------------------------------------------- */

/* An SMF assembled in memory. */
typedef struct {
    uint8_t b[16384];
    size_t n;
} smf_buf;

#define BYTES(...) (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ })

static void smf_put(smf_buf *s, const void *p, size_t n)
{
    cr_assert(s->n + n <= sizeof s->b, "test buffer too small");
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static void smf_be(smf_buf *s, uint32_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        smf_put(s, &c, 1);
    }
}

static void smf_header(smf_buf *s, unsigned fmt, unsigned ntrk, unsigned div)
{
    smf_put(s, "MThd", 4);
    smf_be(s, 6, 4);
    smf_be(s, fmt, 2);
    smf_be(s, ntrk, 2);
    smf_be(s, div, 2);
}

static void smf_chunk(smf_buf *s, const char *id, const uint8_t *body, size_t n)
{
    smf_put(s, id, 4);
    smf_be(s, (uint32_t)n, 4);
    smf_put(s, body, n);
}

/* Format 0, one track holding `body`, 96 PPQ. */
static smf_buf smf_one_track(const uint8_t *body, size_t n)
{
    smf_buf s = { .n = 0 };
    smf_header(&s, 0, 1, 96);
    smf_chunk(&s, "MTrk", body, n);
    return s;
}

static int read_buf(aria_midi *m, const smf_buf *s, aria_error *e)
{
    memset(e, 0, sizeof *e);
    return aria_midi_read(m, s->b, s->n, e);
}

static int read_body(aria_midi *m, aria_error *e, const uint8_t *body, size_t n)
{
    smf_buf s = smf_one_track(body, n);
    return read_buf(m, &s, e);
}

static int read_fixture(aria_midi *m, const char *rel, aria_error *e)
{
    char path[512];
    snprintf(path, sizeof path, FIX "%s", rel);
    memset(e, 0, sizeof *e);
    return aria_midi_read_file(m, path, e);
}

static int has_warning(const aria_midi *m, const char *needle)
{
    int n = m->n_warnings < ARIA_MIDI_MAX_WARNINGS ? m->n_warnings : ARIA_MIDI_MAX_WARNINGS;
    for (int i = 0; i < n; i++)
        if (strstr(m->warnings[i], needle)) return 1;
    return 0;
}

static size_t count_events(const aria_midi *m, int kind)
{
    size_t n = 0;
    for (size_t t = 0; t < m->n_tracks; t++)
        for (size_t k = 0; k < m->tracks[t].n_events; k++)
            if (kind < 0 || m->tracks[t].events[k].kind == kind) n++;
    return n;
}

/* A refused input: FORMAT, a one-line "byte N: ..." message containing
   `needle`, and a zeroed struct. */
static void check_format_error(int rc, const aria_midi *m, const aria_error *e, const char *needle)
{
    cr_assert_eq(rc, ARIA_ERR_FORMAT, "status %d, message '%s'", rc, e->msg);
    cr_assert(strncmp(e->msg, "byte ", 5) == 0, "message '%s' does not start with the offset", e->msg);
    cr_assert(strstr(e->msg, needle), "message '%s' lacks '%s'", e->msg, needle);
    cr_assert_null(strchr(e->msg, '\n'));
    cr_assert_eq(m->n_tracks, 0);
    cr_assert_null(m->tracks);
    cr_assert_null(m->priv_);
}

static void expect_fixture_error(const char *rel, const char *needle)
{
    aria_midi m;
    aria_error e;
    int rc = read_fixture(&m, rel, &e);
    check_format_error(rc, &m, &e, needle);
}

static void expect_body_error(const uint8_t *body, size_t n, const char *needle)
{
    aria_midi m;
    aria_error e;
    int rc = read_body(&m, &e, body, n);
    check_format_error(rc, &m, &e, needle);
}

static void expect_buf_error(const smf_buf *s, const char *needle)
{
    aria_midi m;
    aria_error e;
    int rc = read_buf(&m, s, &e);
    check_format_error(rc, &m, &e, needle);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    uint8_t *buf = NULL;
    aria_error e;
    int rc = aria_read_file(path, &buf, len, &e);
    cr_assert_eq(rc, ARIA_OK, "%s: %s", path, e.msg);
    return buf;
}

static int is_eot(const aria_midi_event *ev)
{
    return ev->kind == ARIA_MIDI_META && ev->status == 0x2F;
}

static const uint8_t *payload(const aria_midi *m, const aria_midi_event *ev)
{
    return m->data + ev->off;
}

/* b is a's write-then-read: same header, the same events apart from
   End-of-Track, and exactly one End-of-Track, last, at the last tick. */
static void assert_same_events(const aria_midi *a, const aria_midi *b)
{
    cr_assert_eq(a->format, b->format);
    cr_assert_eq(a->ppq, b->ppq);
    cr_assert_eq(a->smpte_fps, b->smpte_fps);
    cr_assert_eq(a->smpte_tpf, b->smpte_tpf);
    cr_assert_eq(a->n_tracks, b->n_tracks);
    for (size_t t = 0; t < a->n_tracks; t++) {
        const aria_midi_track *ta = &a->tracks[t], *tb = &b->tracks[t];
        size_t j = 0;
        uint64_t last = 0;
        for (size_t i = 0; i < ta->n_events; i++) {
            const aria_midi_event *x = &ta->events[i];
            last = x->tick;
            if (is_eot(x)) continue;
            cr_assert_lt(j, tb->n_events, "track %zu: events missing", t);
            const aria_midi_event *y = &tb->events[j++];
            cr_assert_eq(x->tick, y->tick, "track %zu event %zu tick", t, i);
            cr_assert_eq(x->kind, y->kind);
            cr_assert_eq(x->status, y->status);
            cr_assert_eq(x->d1, y->d1);
            cr_assert_eq(x->d2, y->d2);
            cr_assert_eq(x->len, y->len);
            if (x->len) cr_assert_eq(memcmp(payload(a, x), payload(b, y), x->len), 0);
        }
        cr_assert_eq(j + 1, tb->n_events, "track %zu: %zu events, then %zu", t, j, tb->n_events);
        cr_assert(is_eot(&tb->events[j]));
        cr_assert_eq(tb->events[j].tick, last);
    }
}

static void roundtrip(const char *rel)
{
    aria_midi a, b;
    aria_error e;
    cr_assert_eq(read_fixture(&a, rel, &e), ARIA_OK, "%s: %s", rel, e.msg);
    uint8_t *out = NULL;
    size_t n = 0;
    cr_assert_eq(aria_midi_write(&a, &out, &n, &e), ARIA_OK, "%s: %s", rel, e.msg);
    cr_assert_eq(aria_midi_read(&b, out, n, &e), ARIA_OK, "%s: %s", rel, e.msg);
    cr_assert_eq(b.n_warnings, 0, "%s: rewritten file warns: %s", rel, b.warnings[0]);
    assert_same_events(&a, &b);
    free(out);
    aria_midi_free(&a);
    aria_midi_free(&b);
}

/* read -> write gives `expected_rel` byte for byte. */
static void rewrite_equals(const char *rel, const char *expected_rel)
{
    char path[512];
    snprintf(path, sizeof path, FIX "%s", expected_rel);
    size_t want_len;
    uint8_t *want = slurp(path, &want_len);
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, rel, &e), ARIA_OK, "%s: %s", rel, e.msg);
    uint8_t *out = NULL;
    size_t n = 0;
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_OK, "%s: %s", rel, e.msg);
    cr_assert_eq(n, want_len, "%s: wrote %zu bytes, mido wrote %zu", rel, n, want_len);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(out[i], want[i], "%s: byte %zu is %02X, mido wrote %02X", rel, i, out[i], want[i]);
    free(out);
    free(want);
    aria_midi_free(&m);
}

/* ---------------------------------------------------------------------- */
/* errors (docs/midi.md table, "error" rows)                              */
/* ---------------------------------------------------------------------- */

Test(midi_errors, empty_file)
{
    expect_fixture_error("generated/empty_file.mid", "empty file");
    aria_midi m;
    aria_error e;
    check_format_error(aria_midi_read(&m, NULL, 0, &e), &m, &e, "empty file");
}

Test(midi_errors, bad_magic)
{
    expect_fixture_error("jazz-soft/test-not-a-midi-file.mid", "not a MIDI file");
    smf_buf s = { .n = 0 };
    smf_put(&s, "MTrk\0\0\0\6\0\0\0\1\0\140", 14);
    expect_buf_error(&s, "byte 0: not a MIDI file (no MThd header)");
    s.n = 0;
    smf_put(&s, "XY", 2);
    expect_buf_error(&s, "not a MIDI file");
}

Test(midi_errors, riff_not_rmid)
{
    expect_fixture_error("generated/not_midi.mid", "byte 8: RIFF file of type 'WAVE', not a MIDI file");
    smf_buf s = { .n = 0 };
    smf_put(&s, "RIFF\4\0\0\0RM", 10);
    expect_buf_error(&s, "truncated RIFF header");
}

Test(midi_errors, rmid_without_data_chunk)
{
    smf_buf s = { .n = 0 };
    smf_put(&s, "RIFF\x14\0\0\0RMIDLIST\x03\0\0\0abc\0", 24);
    expect_buf_error(&s, "no data chunk");
}

Test(midi_errors, truncated_header)
{
    expect_fixture_error("generated/truncated_header.mid", "byte 0: truncated header (10 bytes");
    smf_buf s = { .n = 0 };
    smf_put(&s, "MTh", 3);
    expect_buf_error(&s, "truncated header");
}

Test(midi_errors, header_length_below_6)
{
    smf_buf s = { .n = 0 };
    smf_put(&s, "MThd\0\0\0\4\0\0\0\1\0\140", 14);
    expect_buf_error(&s, "byte 4: header length 4 is less than 6");
}

Test(midi_errors, header_length_past_end)
{
    smf_buf s = { .n = 0 };
    smf_put(&s, "MThd\0\0\0\x20\0\0\0\1\0\140", 14);
    expect_buf_error(&s, "byte 4: header length 32 runs past the end of the file (6 bytes left)");
}

Test(midi_errors, unknown_format)
{
    smf_buf s = { .n = 0 };
    smf_header(&s, 3, 1, 96);
    smf_chunk(&s, "MTrk", BYTES(0x00, 0xFF, 0x2F, 0x00));
    expect_buf_error(&s, "byte 8: unknown file format 3");
}

Test(midi_errors, division_zero)
{
    expect_fixture_error("generated/ppq_0_invalid.mid", "byte 12: division is 0");
}

Test(midi_errors, bad_smpte_fps)
{
    smf_buf s = { .n = 0 };
    smf_header(&s, 0, 1, 0xE9 << 8 | 10); /* -23 fps */
    smf_chunk(&s, "MTrk", BYTES(0x00, 0xFF, 0x2F, 0x00));
    expect_buf_error(&s, "byte 12: SMPTE division 0xE90A has 23 frames per second");
    s.n = 0;
    smf_header(&s, 0, 1, 0x80 << 8 | 10); /* -128 */
    smf_chunk(&s, "MTrk", BYTES(0x00, 0xFF, 0x2F, 0x00));
    expect_buf_error(&s, "128 frames per second");
}

Test(midi_errors, smpte_zero_ticks_per_frame)
{
    smf_buf s = { .n = 0 };
    smf_header(&s, 0, 1, 0xE7 << 8);
    smf_chunk(&s, "MTrk", BYTES(0x00, 0xFF, 0x2F, 0x00));
    expect_buf_error(&s, "byte 13: SMPTE division with 0 ticks per frame");
}

Test(midi_errors, data_byte_without_running_status)
{
    expect_fixture_error("generated/data_byte_without_status.mid",
                         "byte 23: data byte 0x3C with no running status in track 0");
}

Test(midi_errors, sysex_cancels_running_status)
{
    expect_fixture_error("jazz-soft/test-running-status-sysex.mid", "no running status");
    expect_body_error(BYTES(0x00, 0x90, 0x3C, 0x40, 0x00, 0xF0, 0x01, 0xF7, 0x00, 0x3C, 0x00),
                      "byte 31: data byte 0x3C with no running status");
    expect_body_error(BYTES(0x00, 0x90, 0x3C, 0x40, 0x00, 0xF7, 0x01, 0xF8, 0x00, 0x3C, 0x00),
                      "no running status");
}

Test(midi_errors, system_common_cancels_running_status)
{
    /* F6 (tune request) ends running status: the next data byte has none */
    aria_midi m;
    aria_error e;
    int rc = read_body(&m, &e, BYTES(0x00, 0x90, 0x3C, 0x40, 0x00, 0xF6, 0x00, 0x3C, 0x00));
    check_format_error(rc, &m, &e, "no running status");
}

Test(midi_errors, undefined_status)
{
    expect_fixture_error("generated/system_common_in_file.mid",
                         "byte 27: undefined status byte 0xF4 in track 0");
    expect_fixture_error("jazz-soft/test-illegal-message-all.mid", "undefined status byte 0xF4");
    const uint8_t bad[] = { 0xF4, 0xF5, 0xF9, 0xFD };
    for (int i = 0; i < 4; i++) {
        uint8_t body[] = { 0x00, bad[i], 0x00, 0xFF, 0x2F, 0x00 };
        char want[64];
        snprintf(want, sizeof want, "byte 23: undefined status byte 0x%02X", bad[i]);
        expect_body_error(body, sizeof body, want);
    }
}

Test(midi_errors, vlq_longer_than_4_bytes)
{
    expect_fixture_error("generated/vlq_5_bytes_invalid.mid",
                         "byte 26: delta time is a variable-length number longer than 4 bytes");
    /* in a meta length too */
    expect_body_error(BYTES(0x00, 0xFF, 0x01, 0x80, 0x80, 0x80, 0x80, 0x01, 0x41),
                      "byte 25: meta event length is a variable-length number longer than 4 bytes");
    /* and in a sysex length */
    expect_body_error(BYTES(0x00, 0xF0, 0x81, 0x81, 0x81, 0x81, 0x01, 0xF7),
                      "sysex event length is a variable-length number longer than 4 bytes");
}

Test(midi_errors, meta_runs_past_track)
{
    expect_fixture_error("generated/meta_length_overflow.mid",
                         "byte 22: meta event length 1000 runs past the end of track 0 (5 bytes left)");
}

Test(midi_errors, sysex_runs_past_track)
{
    expect_body_error(BYTES(0x00, 0xF0, 0x05, 0x7E, 0x7F, 0xF7),
                      "byte 22: sysex event length 5 runs past the end of track 0 (3 bytes left)");
}

Test(midi_errors, channel_message_runs_past_track)
{
    expect_body_error(BYTES(0x00, 0x90, 0x3C),
                      "byte 22: channel message runs past the end of track 0 (1 bytes left)");
}

Test(midi_errors, delta_without_event_or_cut_vlq)
{
    expect_body_error(BYTES(0x00, 0x90, 0x3C, 0x40, 0x10),
                      "byte 26: event runs past the end of track 0");
    expect_body_error(BYTES(0x00, 0x90, 0x3C, 0x40, 0x81),
                      "byte 26: delta time runs past the end of track 0");
    expect_body_error(BYTES(0x00, 0xFF), "meta event runs past the end of track 0");
}

Test(midi_errors, status_byte_where_data_expected)
{
    expect_body_error(BYTES(0x00, 0x90, 0x3C, 0x80, 0x00, 0xFF, 0x2F, 0x00),
                      "byte 25: status byte 0x80 where a data byte of message 0x90 was expected");
    expect_body_error(BYTES(0x00, 0xF2, 0x01, 0x90),
                      "byte 25: status byte 0x90 where a data byte of system message 0xF2");
}

Test(midi_errors, no_track_chunk)
{
    smf_buf s = { .n = 0 };
    smf_header(&s, 1, 2, 96);
    expect_buf_error(&s, "byte 14: no MTrk chunk found (the header declares 2 tracks)");
    smf_chunk(&s, "XFIH", BYTES(1, 2, 3));
    expect_buf_error(&s, "no MTrk chunk found");
}

Test(midi_errors, larger_than_4_gib)
{
    /* refused on the length alone, before any byte is read */
    static const uint8_t few[4] = "MThd";
    aria_midi m;
    aria_error e;
    int rc = aria_midi_read(&m, few, (size_t)5 << 30, &e);
    check_format_error(rc, &m, &e, "too large for a MIDI file");
}

Test(midi_errors, error_in_second_track_names_it)
{
    smf_buf s = { .n = 0 };
    smf_header(&s, 1, 2, 96);
    smf_chunk(&s, "MTrk", BYTES(0x00, 0xFF, 0x2F, 0x00));
    smf_chunk(&s, "MTrk", BYTES(0x00, 0x3C, 0x40));
    expect_buf_error(&s, "byte 35: data byte 0x3C with no running status in track 1");
}

/* ---------------------------------------------------------------------- */
/* lenient cases (docs/midi.md table, "warning" rows)                     */
/* ---------------------------------------------------------------------- */

Test(midi_lenient, missing_end_of_track)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/missing_eot.mid", &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.n_warnings, 1);
    cr_assert(has_warning(&m, "track 0 ends without an End-of-Track event"), "%s", m.warnings[0]);
    cr_assert_eq(count_events(&m, ARIA_MIDI_CHANNEL), 2);
    aria_midi_free(&m);
}

Test(midi_lenient, trailing_bytes)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/trailing_garbage.mid", &e), ARIA_OK, "%s", e.msg);
    cr_assert(has_warning(&m, "byte 51: 12 trailing bytes after the last chunk ignored"), "%s",
              m.warnings[0]);
    cr_assert_eq(m.n_tracks, 1);
    aria_midi_free(&m);
    cr_assert_eq(read_fixture(&m, "jazz-soft/test-corrupt-file-extra-byte.mid", &e), ARIA_OK);
    cr_assert(has_warning(&m, "1 trailing bytes"));
    aria_midi_free(&m);
}

Test(midi_lenient, track_longer_than_file)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/track_length_huge.mid", &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.n_warnings, 1);
    cr_assert(has_warning(&m, "track 0 length 2147483647 runs past the end of the file "
                              "(13 bytes left); reading what is there"), "%s", m.warnings[0]);
    cr_assert_eq(m.tracks[0].n_events, 3); /* note on, note off, EOT */
    aria_midi_free(&m);
}

Test(midi_lenient, truncated_inside_event)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/truncated_mid_event.mid", &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.n_warnings, 2);
    cr_assert(has_warning(&m, "runs past the end of the file"));
    cr_assert(has_warning(&m, "byte 38: track 0 ends inside an event (file cut short); partial "
                              "event dropped"), "%s", m.warnings[1]);
    cr_assert_eq(m.tracks[0].n_events, 3); /* tempo, on, off; the cut note-on is gone */
    aria_midi_free(&m);
    cr_assert_eq(read_fixture(&m, "jazz-soft/test-corrupt-file-missing-byte.mid", &e), ARIA_OK);
    cr_assert(has_warning(&m, "partial event dropped"));
    aria_midi_free(&m);
}

Test(midi_lenient, cut_inside_meta_payload)
{
    /* the chunk claims 20 bytes, the file ends inside the text payload */
    smf_buf s = { .n = 0 };
    smf_header(&s, 0, 1, 96);
    smf_put(&s, "MTrk\0\0\0\x14", 8);
    smf_put(&s, (const uint8_t[]){ 0x00, 0x90, 0x3C, 0x40, 0x00, 0xFF, 0x01, 0x08, 'a', 'b' }, 10);
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_buf(&m, &s, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.tracks[0].n_events, 1);
    cr_assert(has_warning(&m, "byte 26: track 0 ends inside an event"));
    aria_midi_free(&m);
}

Test(midi_lenient, header_track_count_mismatch)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/ntracks_header_too_large.mid", &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.ntracks_declared, 3);
    cr_assert_eq(m.n_tracks, 2);
    cr_assert(has_warning(&m, "header declares 3 tracks but the file has 2"), "%s", m.warnings[0]);
    aria_midi_free(&m);
    cr_assert_eq(read_fixture(&m, "generated/ntracks_header_too_small.mid", &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.ntracks_declared, 1);
    cr_assert_eq(m.n_tracks, 2);
    cr_assert(has_warning(&m, "header declares 1 track but the file has 2"), "%s", m.warnings[0]);
    aria_midi_free(&m);
}

Test(midi_lenient, events_after_end_of_track)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/events_after_eot.mid", &e), ARIA_OK, "%s", e.msg);
    cr_assert(has_warning(&m, "byte 35: 9 bytes after End-of-Track in track 0 ignored"), "%s",
              m.warnings[0]);
    cr_assert_eq(m.tracks[0].n_events, 3);
    cr_assert(is_eot(&m.tracks[0].events[2]));
    aria_midi_free(&m);
}

Test(midi_lenient, unknown_chunks_skipped)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/unknown_chunk.mid", &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.n_tracks, 2);
    cr_assert(has_warning(&m, "byte 33: unknown chunk 'XFIH' (5 bytes) skipped"), "%s", m.warnings[0]);
    aria_midi_free(&m);
    cr_assert_eq(read_fixture(&m, "jazz-soft/test-non-midi-track.mid", &e), ARIA_OK, "%s", e.msg);
    cr_assert(has_warning(&m, "unknown chunk 'Junk'"));
    aria_midi_free(&m);
}

Test(midi_lenient, unknown_chunk_past_end)
{
    smf_buf s = { .n = 0 };
    smf_header(&s, 0, 1, 96);
    smf_chunk(&s, "MTrk", BYTES(0x00, 0xFF, 0x2F, 0x00));
    smf_put(&s, "JUNK\0\0\1\0abc", 11);
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_buf(&m, &s, &e), ARIA_OK, "%s", e.msg);
    cr_assert(has_warning(&m, "chunk 'JUNK' length 256 runs past the end of the file (3 bytes "
                              "left); ignored"), "%s", m.warnings[0]);
    aria_midi_free(&m);
}

Test(midi_lenient, header_longer_than_6)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/header_length_10.mid", &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.n_warnings, 0);
    cr_assert_eq(m.ppq, 480);
    cr_assert_eq(count_events(&m, ARIA_MIDI_CHANNEL), 2);
    aria_midi_free(&m);
}

Test(midi_lenient, header_only_zero_tracks)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/header_only.mid", &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.n_tracks, 0);
    cr_assert_eq(m.ntracks_declared, 0);
    cr_assert_eq(m.n_warnings, 0);
    aria_midi_free(&m);
}

Test(midi_lenient, system_messages_kept)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_body(&m, &e, BYTES(0x00, 0xF1, 0x7F, 0x00, 0xF2, 0x01, 0x02, 0x00, 0xF3,
                                         0x05, 0x00, 0xF6, 0x00, 0xF8, 0x00, 0xFA, 0x00, 0xFB,
                                         0x00, 0xFC, 0x00, 0xFE, 0x00, 0xFF, 0x2F, 0x00)),
                 ARIA_OK, "%s", e.msg);
    cr_assert_eq(count_events(&m, ARIA_MIDI_SYSCOMMON), 9);
    cr_assert_eq(m.n_warnings, 9);
    cr_assert(has_warning(&m, "byte 23: system message 0xF1 in track 0 kept"), "%s", m.warnings[0]);
    const aria_midi_event *ev = m.tracks[0].events;
    cr_assert_eq(ev[0].status, 0xF1);
    cr_assert_eq(ev[0].d1, 0x7F);
    cr_assert_eq(ev[1].status, 0xF2);
    cr_assert_eq(ev[1].d1, 1);
    cr_assert_eq(ev[1].d2, 2);
    cr_assert_eq(ev[2].d1, 5);
    cr_assert_eq(ev[3].status, 0xF6);
    aria_midi_free(&m);
    cr_assert_eq(read_fixture(&m, "jazz-soft/test-illegal-message-f2-xx-xx.mid", &e), ARIA_OK);
    cr_assert(has_warning(&m, "system message 0xF2"));
    aria_midi_free(&m);
}

Test(midi_lenient, odd_but_harmless_bytes_accepted)
{
    /* sysex payload bytes > 0x7F, a meta type > 0x7F, End-of-Track with a payload */
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_body(&m, &e, BYTES(0x00, 0xF0, 0x03, 0x90, 0xFF, 0xF7, 0x00, 0xFF, 0x85, 0x01,
                                         0xAA, 0x00, 0xFF, 0x2F, 0x02, 0x01, 0x02)),
                 ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.n_warnings, 0);
    const aria_midi_event *ev = m.tracks[0].events;
    cr_assert_eq(m.tracks[0].n_events, 3);
    cr_assert_eq(memcmp(payload(&m, &ev[0]), "\x90\xFF\xF7", 3), 0);
    cr_assert_eq(ev[1].status, 0x85);
    cr_assert_eq(payload(&m, &ev[1])[0], 0xAA);
    cr_assert(is_eot(&ev[2]));
    cr_assert_eq(ev[2].len, 2);
    aria_midi_free(&m);
}

Test(midi_lenient, realtime_byte_keeps_running_status)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_body(&m, &e, BYTES(0x00, 0x90, 0x3C, 0x40, 0x00, 0xF8, 0x00, 0x3E, 0x40,
                                         0x00, 0xFF, 0x2F, 0x00)), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.tracks[0].n_events, 4);
    cr_assert_eq(m.tracks[0].events[2].status, 0x90);
    cr_assert_eq(m.tracks[0].events[2].d1, 0x3E);
    aria_midi_free(&m);
}

Test(midi_lenient, running_status_across_meta)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/running_status_after_meta.mid", &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(count_events(&m, ARIA_MIDI_CHANNEL), 4);
    const aria_midi_event *ev = m.tracks[0].events;
    cr_assert_eq(ev[2].status, 0x90); /* the data bytes after the text meta */
    cr_assert_eq(ev[2].d1, 62);
    cr_assert_eq(ev[2].tick, 240);
    cr_assert_eq(ev[4].status, 0x80);
    aria_midi_free(&m);
    cr_assert_eq(read_fixture(&m, "jazz-soft/test-running-status-metaevent.mid", &e), ARIA_OK, "%s", e.msg);
    aria_midi_free(&m);
}

Test(midi_lenient, format0_with_two_tracks)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "jazz-soft/test-2-tracks-type-0.mid", &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.n_tracks, 2);
    cr_assert(has_warning(&m, "format 0 file with 2 tracks"));
    aria_midi_free(&m);
}

Test(midi_lenient, warnings_counted_beyond_the_stored_few)
{
    uint8_t body[64];
    size_t n = 0;
    for (int i = 0; i < 20; i++) {
        body[n++] = 0x00;
        body[n++] = 0xFE;
    }
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_body(&m, &e, body, n), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.n_warnings, 21); /* 20 system messages + no End-of-Track */
    for (int i = 0; i < ARIA_MIDI_MAX_WARNINGS; i++) cr_assert_neq(m.warnings[i][0], 0);
    aria_midi_free(&m);
}

/* ---------------------------------------------------------------------- */
/* what is read                                                           */
/* ---------------------------------------------------------------------- */

Test(midi_read, smpte_divisions)
{
    static const struct { const char *file; int fps, tpf; } cases[] = {
        { "generated/smpte_24fps_4tpf.mid", 24, 4 },
        { "generated/smpte_25fps_40tpf.mid", 25, 40 },
        { "generated/smpte_29fps_80tpf.mid", 29, 80 },
        { "generated/smpte_30fps_100tpf.mid", 30, 100 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        aria_midi m;
        aria_error e;
        cr_assert_eq(read_fixture(&m, cases[i].file, &e), ARIA_OK, "%s", e.msg);
        cr_assert_eq(m.ppq, 0);
        cr_assert_eq(m.smpte_fps, cases[i].fps);
        cr_assert_eq(m.smpte_tpf, cases[i].tpf);
        /* the second note starts after one second of frames */
        const aria_midi_event *ev = m.tracks[0].events;
        cr_assert_eq(ev[2].tick, (uint64_t)(cases[i].fps * cases[i].tpf));
        aria_midi_free(&m);
    }
}

Test(midi_read, ppq_extremes)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/ppq_1.mid", &e), ARIA_OK);
    cr_assert_eq(m.ppq, 1);
    cr_assert_eq(m.smpte_fps, 0);
    aria_midi_free(&m);
    cr_assert_eq(read_fixture(&m, "generated/ppq_32767.mid", &e), ARIA_OK);
    cr_assert_eq(m.ppq, 32767);
    aria_midi_free(&m);
}

Test(midi_read, formats)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/format2_three_sequences.mid", &e), ARIA_OK);
    cr_assert_eq(m.format, 2);
    cr_assert_eq(m.n_tracks, 3);
    aria_midi_free(&m);
    cr_assert_eq(read_fixture(&m, "generated/format1_64_tracks.mid", &e), ARIA_OK);
    cr_assert_eq(m.format, 1);
    cr_assert_eq(m.n_tracks, 64);
    cr_assert_eq(m.n_warnings, 0);
    cr_assert_eq(count_events(&m, ARIA_MIDI_CHANNEL), 126);
    aria_midi_free(&m);
    cr_assert_eq(read_fixture(&m, "generated/empty_track.mid", &e), ARIA_OK);
    cr_assert_eq(m.n_tracks, 3);
    aria_midi_free(&m);
}

Test(midi_read, channel_messages)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/channel_messages_all.mid", &e), ARIA_OK, "%s", e.msg);
    size_t seen[8] = { 0 };
    for (size_t k = 0; k < m.tracks[0].n_events; k++) {
        const aria_midi_event *ev = &m.tracks[0].events[k];
        if (ev->kind != ARIA_MIDI_CHANNEL) continue;
        seen[(ev->status >> 4) & 7]++;
        if ((ev->status & 0xE0) == 0xC0) cr_assert_eq(ev->d2, 0);
        cr_assert_eq(ev->len, 0);
    }
    for (int i = 0; i < 7; i++) cr_assert_geq(seen[i], 16, "status 0x%X0 seen %zu times", i + 8, seen[i]);
    aria_midi_free(&m);
}

Test(midi_read, running_status_and_ticks)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/running_status_noteon_vel0.mid", &e), ARIA_OK);
    const aria_midi_track *t = &m.tracks[0];
    cr_assert_eq(t->n_events, 11);
    cr_assert_eq(t->events[4].tick, 480);
    cr_assert_eq(t->events[4].status, 0x90);
    cr_assert_eq(t->events[4].d1, 60);
    cr_assert_eq(t->events[4].d2, 0);
    cr_assert_eq(t->events[9].status, 0x80);
    cr_assert_eq(t->events[9].tick, 960);
    aria_midi_free(&m);
}

Test(midi_read, sysex_payloads)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/sysex_variants.mid", &e), ARIA_OK, "%s", e.msg);
    const aria_midi_event *ev = m.tracks[0].events;
    /* F0 05 7E 7F 09 01 F7: the payload keeps the closing F7 */
    cr_assert_eq(ev[0].kind, ARIA_MIDI_SYSEX);
    cr_assert_eq(ev[0].status, 0xF0);
    cr_assert_eq(ev[0].len, 5);
    cr_assert_eq(memcmp(payload(&m, &ev[0]), "\x7E\x7F\x09\x01\xF7", 5), 0);
    /* a packet without F7, continued by an F7 packet */
    cr_assert_eq(ev[2].kind, ARIA_MIDI_SYSEX);
    cr_assert_eq(ev[2].len, 3);
    cr_assert_eq(ev[3].kind, ARIA_MIDI_ESCAPE);
    cr_assert_eq(ev[3].status, 0xF7);
    cr_assert_eq(ev[3].len, 4);
    cr_assert_eq(memcmp(payload(&m, &ev[3]), "\x43\x12\x00\xF7", 4), 0);
    /* an escape carrying real-time bytes */
    cr_assert_eq(ev[4].kind, ARIA_MIDI_ESCAPE);
    cr_assert_eq(memcmp(payload(&m, &ev[4]), "\xF8\xFA", 2), 0);
    cr_assert_eq(count_events(&m, ARIA_MIDI_SYSEX) + count_events(&m, ARIA_MIDI_ESCAPE), 4);
    aria_midi_free(&m);
}

Test(midi_read, meta_payloads)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/meta_events_all.mid", &e), ARIA_OK, "%s", e.msg);
    int saw_unknown = 0, saw_empty = 0, saw_smpte_offset = 0;
    for (size_t k = 0; k < m.tracks[0].n_events; k++) {
        const aria_midi_event *ev = &m.tracks[0].events[k];
        if (ev->kind != ARIA_MIDI_META) continue;
        cr_assert_leq((size_t)ev->off + ev->len, m.data_len);
        if (ev->status == 0x7E) saw_unknown = 1;
        if (ev->status == 0x01 && ev->len == 0) saw_empty = 1;
        if (ev->status == 0x54) {
            saw_smpte_offset = 1;
            cr_assert_eq(ev->len, 5);
            cr_assert_eq(payload(&m, ev)[0], 0x60);
        }
    }
    cr_assert(saw_unknown && saw_empty && saw_smpte_offset);
    cr_assert_eq(count_events(&m, ARIA_MIDI_META), 21);
    aria_midi_free(&m);
}

Test(midi_read, max_delta)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/extreme_values_max_vlq.mid", &e), ARIA_OK, "%s", e.msg);
    int found = 0;
    for (size_t k = 0; k < m.tracks[0].n_events; k++)
        if (m.tracks[0].events[k].tick == 1 + 0x0FFFFFFFull) found = 1;
    cr_assert(found);
    aria_midi_free(&m);
}

Test(midi_read, ticks_do_not_wrap)
{
    /* 1000 events, each 0x0FFFFFFF ticks after the previous one */
    uint8_t body[1000 * 7 + 4];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) {
        memcpy(body + n, "\xFF\xFF\xFF\x7F\xB0\x07\x64", 7);
        n += 7;
    }
    memcpy(body + n, "\x00\xFF\x2F\x00", 4);
    n += 4;
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_body(&m, &e, body, n), ARIA_OK, "%s", e.msg);
    const aria_midi_track *t = &m.tracks[0];
    cr_assert_eq(t->n_events, 1001);
    cr_assert_eq(t->events[999].tick, 1000ull * 0x0FFFFFFFull);
    cr_assert_gt(t->events[999].tick, (uint64_t)UINT32_MAX);
    /* and they survive a write */
    uint8_t *out;
    size_t len;
    cr_assert_eq(aria_midi_write(&m, &out, &len, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(len, 14 + 8 + 7 + 999 * 6 + 4); /* B0 is sent once (running status) */
    aria_midi back;
    cr_assert_eq(aria_midi_read(&back, out, len, &e), ARIA_OK, "%s", e.msg);
    assert_same_events(&m, &back);
    free(out);
    aria_midi_free(&back);
    aria_midi_free(&m);
}

/* An RMID file around an SMF, built here: RIFF <len> RMID, a LIST chunk
   first (odd length, so it is padded), then "data". */
static smf_buf make_rmid(const smf_buf *smf, int data_len_delta)
{
    smf_buf s = { .n = 0 };
    uint32_t riff_len = (uint32_t)(4 + 8 + 4 + 8 + smf->n);
    uint8_t le[4];
    smf_put(&s, "RIFF", 4);
    for (int i = 0; i < 4; i++) le[i] = (uint8_t)(riff_len >> (8 * i));
    smf_put(&s, le, 4);
    smf_put(&s, "RMIDLIST\x03\0\0\0abc\0", 16);
    smf_put(&s, "data", 4);
    uint32_t dl = (uint32_t)((int)smf->n + data_len_delta);
    for (int i = 0; i < 4; i++) le[i] = (uint8_t)(dl >> (8 * i));
    smf_put(&s, le, 4);
    smf_put(&s, smf->b, smf->n);
    return s;
}

Test(midi_read, rmid_wrapper)
{
    smf_buf smf = smf_one_track(BYTES(0x00, 0x90, 0x3C, 0x40, 0x60, 0x3C, 0x00, 0x00, 0xFF, 0x2F, 0x00));
    smf_buf s = make_rmid(&smf, 0);
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_buf(&m, &s, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.n_warnings, 0);
    cr_assert_eq(m.ppq, 96);
    cr_assert_eq(m.tracks[0].n_events, 3);
    cr_assert_eq(m.tracks[0].events[1].tick, 0x60);
    aria_midi_free(&m);
    /* offsets in messages count from the start of the RIFF file */
    smf_buf bad = smf_one_track(BYTES(0x00, 0x3C));
    s = make_rmid(&bad, 0);
    cr_assert_neq(read_buf(&m, &s, &e), ARIA_OK);
    cr_assert(strstr(e.msg, "byte 55: data byte 0x3C"), "%s", e.msg);
}

Test(midi_errors, rmid_empty_data_chunk)
{
    smf_buf empty = { .n = 0 };
    smf_buf s = make_rmid(&empty, 0);
    expect_buf_error(&s, "byte 32: no MIDI data (0 bytes)");
}

Test(midi_read, rmid_data_chunk_past_end)
{
    smf_buf smf = smf_one_track(BYTES(0x00, 0x90, 0x3C, 0x40, 0x00, 0xFF, 0x2F, 0x00));
    smf_buf s = make_rmid(&smf, 100);
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_buf(&m, &s, &e), ARIA_OK, "%s", e.msg);
    cr_assert(has_warning(&m, "RMID data chunk length"), "%s", m.warnings[0]);
    cr_assert_eq(m.tracks[0].n_events, 2);
    aria_midi_free(&m);
}

Test(midi_read, input_buffer_may_be_freed)
{
    smf_buf *s = malloc(sizeof *s);
    *s = smf_one_track(BYTES(0x00, 0xFF, 0x03, 0x02, 'h', 'i', 0x00, 0xFF, 0x2F, 0x00));
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_buf(&m, s, &e), ARIA_OK);
    memset(s, 0xAA, sizeof *s);
    free(s);
    cr_assert_eq(memcmp(payload(&m, &m.tracks[0].events[0]), "hi", 2), 0);
    aria_midi_free(&m);
}

Test(midi_read, unreadable_paths)
{
    aria_midi m;
    aria_error e = { { 0 } };
    const char *path = "tests/data/midi/no/such/file.mid";
    int rc = aria_midi_read_file(&m, path, &e);
    cr_assert_eq(rc, ARIA_ERR_IO);
    cr_assert(strstr(e.msg, "No such file"), "%s", e.msg);
    cr_assert_null(strstr(e.msg, "file.mid"), "message names the path: %s", e.msg);
    cr_assert_null(m.tracks);
    rc = aria_midi_read_file(&m, "tests/data/midi", &e);
    cr_assert_eq(rc, ARIA_ERR_IO);
    cr_assert(strstr(e.msg, "directory"), "%s", e.msg);
    cr_assert_null(strstr(e.msg, "tests/data"), "%s", e.msg);
    rc = aria_midi_read_file(&m, "/dev/null", &e);
    cr_assert_eq(rc, ARIA_ERR_FORMAT);
    cr_assert(strstr(e.msg, "empty file"), "%s", e.msg);
}

/* ---------------------------------------------------------------------- */
/* writer                                                                 */
/* ---------------------------------------------------------------------- */

Test(midi_write, byte_identical_to_mido_vectors)
{
    static const char *files[] = {
        "mido/basic_decoded.mid", "mido/pop_decoded.mid", "mido/nocturne_decoded.mid",
        "mido/synth_running_status_decoded.mid", "mido/synth_tie_order_decoded.mid",
        "mido/synth_pedal_edge_decoded.mid",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) rewrite_equals(files[i], files[i]);
}

Test(midi_write, same_bytes_as_mido_save)
{
    /* inputs that mido itself changes when it saves them: running status
       across meta, 4-byte deltas, sysex packets, a missing End-of-Track */
    rewrite_equals("jazz-soft/test-running-status-metaevent.mid", "mido/test-running-status-metaevent.mido.mid");
    rewrite_equals("jazz-soft/test-vlq-4-byte.mid", "mido/test-vlq-4-byte.mido.mid");
    rewrite_equals("midly/SysExTest.mid", "mido/SysExTest.mido.mid");
    rewrite_equals("music21/test05.mid", "mido/test05.mido.mid");
    /* and ones it keeps as they are */
    rewrite_equals("midly/Clementi.mid", "midly/Clementi.mid");
    rewrite_equals("jazz-soft/test-sysex-7e-09-01-gm1-enable.mid", "jazz-soft/test-sysex-7e-09-01-gm1-enable.mid");
    rewrite_equals("jazz-soft/test-karaoke-kar.mid", "jazz-soft/test-karaoke-kar.mid");
}

Test(midi_write, roundtrip_read_write_read)
{
    static const char *files[] = {
        "generated/channel_messages_all.mid", "generated/sysex_variants.mid",
        "generated/meta_events_all.mid", "generated/format1_64_tracks.mid",
        "generated/format2_three_sequences.mid", "generated/smpte_29fps_80tpf.mid",
        "generated/running_status_after_meta.mid", "generated/missing_eot.mid",
        "generated/extreme_values_max_vlq.mid", "generated/ppq_32767.mid",
        "jazz-soft/test-smpte-offset.mid", "jazz-soft/test-2-tracks-type-2.mid",
        "midly/Clementi.mid", "mido/pop_decoded.mid",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) roundtrip(files[i]);
}

Test(midi_write, layout_of_mido)
{
    /* the same events given to mido 1.2.10 MidiFile(type=0, ticks_per_beat=96).save() */
    static const uint8_t want[] = {
        0x4d, 0x54, 0x68, 0x64, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x01, 0x00, 0x60,
        0x4d, 0x54, 0x72, 0x6b, 0x00, 0x00, 0x00, 0x28, 0x00, 0x90, 0x3c, 0x40, 0x00, 0xff,
        0x01, 0x02, 0x68, 0x69, 0x0a, 0x90, 0x3e, 0x40, 0x0a, 0x3c, 0x00, 0x00, 0xc0, 0x05,
        0x0a, 0xf0, 0x05, 0x7e, 0x7f, 0x09, 0x01, 0xf7, 0x00, 0xb0, 0x40, 0x7f, 0x05, 0xe0,
        0x00, 0x40, 0x00, 0xff, 0x2f, 0x00,
    };
    aria_midi m;
    aria_error e;
    cr_assert_eq(aria_midi_init(&m, 0, 96), ARIA_OK);
    cr_assert_eq(aria_midi_add_track(&m), ARIA_OK);
    const struct { aria_midi_event ev; const char *pl; } evs[] = {
        { { .tick = 0, .kind = ARIA_MIDI_CHANNEL, .status = 0x90, .d1 = 60, .d2 = 64 }, NULL },
        { { .tick = 0, .kind = ARIA_MIDI_META, .status = 0x01, .len = 2 }, "hi" },
        { { .tick = 10, .kind = ARIA_MIDI_CHANNEL, .status = 0x90, .d1 = 62, .d2 = 64 }, NULL },
        { { .tick = 20, .kind = ARIA_MIDI_CHANNEL, .status = 0x90, .d1 = 60, .d2 = 0 }, NULL },
        { { .tick = 20, .kind = ARIA_MIDI_CHANNEL, .status = 0xC0, .d1 = 5 }, NULL },
        { { .tick = 30, .kind = ARIA_MIDI_SYSEX, .len = 5 }, "\x7e\x7f\x09\x01\xf7" },
        { { .tick = 30, .kind = ARIA_MIDI_CHANNEL, .status = 0xB0, .d1 = 64, .d2 = 127 }, NULL },
        { { .tick = 35, .kind = ARIA_MIDI_META, .status = 0x2F }, NULL }, /* dropped */
        { { .tick = 35, .kind = ARIA_MIDI_CHANNEL, .status = 0xE0, .d1 = 0, .d2 = 64 }, NULL },
    };
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        cr_assert_eq(aria_midi_push(&m, 0, &evs[i].ev, (const uint8_t *)evs[i].pl, &e), ARIA_OK,
                     "%s", e.msg);
    uint8_t *out;
    size_t n;
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(n, sizeof want);
    cr_assert_eq(memcmp(out, want, n), 0);
    free(out);
    aria_midi_free(&m);
}

static void write_one_track(const aria_midi_event *evs, size_t n, uint8_t **out, size_t *len)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(aria_midi_init(&m, 1, 480), ARIA_OK);
    cr_assert_eq(aria_midi_add_track(&m), ARIA_OK);
    for (size_t i = 0; i < n; i++) cr_assert_eq(aria_midi_push(&m, 0, &evs[i], NULL, &e), ARIA_OK);
    cr_assert_eq(aria_midi_write(&m, out, len, &e), ARIA_OK, "%s", e.msg);
    aria_midi_free(&m);
}

Test(midi_write, end_of_track_placement)
{
    uint8_t *out;
    size_t n;
    /* no EOT: one appended with delta 0 */
    aria_midi_event a[] = { { .tick = 7, .kind = ARIA_MIDI_CHANNEL, .status = 0x90, .d1 = 1, .d2 = 2 } };
    write_one_track(a, 1, &out, &n);
    cr_assert_eq(n, 14 + 8 + 4 + 4);
    cr_assert_eq(memcmp(out + 22, "\x07\x90\x01\x02\x00\xFF\x2F\x00", 8), 0);
    free(out);
    /* an EOT later than the last event keeps its tick; two become one */
    aria_midi_event b[] = {
        { .tick = 0, .kind = ARIA_MIDI_META, .status = 0x2F },
        { .tick = 7, .kind = ARIA_MIDI_CHANNEL, .status = 0x90, .d1 = 1, .d2 = 2 },
        { .tick = 200, .kind = ARIA_MIDI_META, .status = 0x2F },
    };
    write_one_track(b, 3, &out, &n);
    cr_assert_eq(n, 14 + 8 + 4 + 5);
    cr_assert_eq(memcmp(out + 22, "\x07\x90\x01\x02\x81\x41\xFF\x2F\x00", 9), 0);
    free(out);
    /* an empty track is just an EOT */
    write_one_track(NULL, 0, &out, &n);
    cr_assert_eq(n, 14 + 8 + 4);
    cr_assert_eq(memcmp(out + 14, "MTrk\0\0\0\4\x00\xFF\x2F\x00", 12), 0);
    free(out);
}

Test(midi_write, smpte_header_and_format2)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(aria_midi_init(&m, 2, 0), ARIA_OK);
    m.smpte_fps = 25;
    m.smpte_tpf = 40;
    cr_assert_eq(aria_midi_add_track(&m), ARIA_OK);
    cr_assert_eq(aria_midi_add_track(&m), ARIA_OK);
    uint8_t *out;
    size_t n;
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(memcmp(out, "MThd\0\0\0\6\0\2\0\2\xE7\x28", 14), 0);
    aria_midi back;
    cr_assert_eq(aria_midi_read(&back, out, n, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(back.smpte_fps, 25);
    cr_assert_eq(back.smpte_tpf, 40);
    cr_assert_eq(back.format, 2);
    free(out);
    aria_midi_free(&back);
    m.smpte_fps = 29;
    m.smpte_tpf = 80;
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(out[12], 0xE3);
    cr_assert_eq(out[13], 80);
    free(out);
    aria_midi_free(&m);
}

Test(midi_write, refuses_what_a_file_cannot_hold)
{
    aria_midi m;
    aria_error e = { { 0 } };
    uint8_t *out = (uint8_t *)&e; /* must come back NULL */
    size_t n = 1;
    /* format 0 with two tracks */
    cr_assert_eq(aria_midi_init(&m, 0, 96), ARIA_OK);
    aria_midi_add_track(&m);
    aria_midi_add_track(&m);
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_ERR_ARG);
    cr_assert(strstr(e.msg, "format 0 needs exactly one track"), "%s", e.msg);
    cr_assert_null(out);
    cr_assert_eq(n, 0);
    /* a division that is neither PPQ nor SMPTE */
    m.format = 1;
    m.ppq = 0;
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_ERR_ARG);
    cr_assert(strstr(e.msg, "division"), "%s", e.msg);
    m.ppq = 40000;
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_ERR_ARG);
    m.ppq = 96;
    /* a delta that does not fit 4 VLQ bytes */
    aria_midi_event far = { .tick = 0x10000000ull, .kind = ARIA_MIDI_CHANNEL, .status = 0x90, .d1 = 1 };
    cr_assert_eq(aria_midi_push(&m, 0, &far, NULL, &e), ARIA_OK);
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_ERR_ARG);
    cr_assert(strstr(e.msg, "track 0 event 0: delta of 268435456 ticks"), "%s", e.msg);
    /* hand-made damage that push would have refused */
    m.tracks[0].events[0].tick = 5;
    m.tracks[0].events[0].status = 0x70;
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_ERR_ARG);
    cr_assert(strstr(e.msg, "channel status 0x70"), "%s", e.msg);
    m.tracks[0].events[0] = (aria_midi_event){ .kind = ARIA_MIDI_META, .status = 1, .off = 3, .len = 9 };
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_ERR_ARG);
    cr_assert(strstr(e.msg, "outside the"), "%s", e.msg);
    m.tracks[0].events[0] = (aria_midi_event){ .tick = 9, .kind = ARIA_MIDI_CHANNEL, .status = 0x90 };
    aria_midi_event second = { .tick = 9, .kind = ARIA_MIDI_CHANNEL, .status = 0x90 };
    cr_assert_eq(aria_midi_push(&m, 0, &second, NULL, &e), ARIA_OK);
    m.tracks[0].events[1].tick = 3;
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_ERR_ARG);
    cr_assert(strstr(e.msg, "track 0 event 1: tick 3 is before the previous event's tick 9"), "%s", e.msg);
    m.format = 7;
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_ERR_ARG);
    cr_assert(strstr(e.msg, "cannot write format 7"), "%s", e.msg);
    aria_midi_free(&m);
    /* a zeroed struct has format 0 and no track */
    aria_midi z = { 0 };
    cr_assert_eq(aria_midi_write(&z, &out, &n, &e), ARIA_ERR_ARG);
    cr_assert_eq(aria_midi_write(NULL, &out, &n, &e), ARIA_ERR_ARG);
}

Test(midi_write, hand_filled_struct)
{
    /* a caller may fill the struct by hand with malloc'd arrays */
    aria_midi m = { 0 };
    m.format = 1;
    m.ppq = 480;
    m.n_tracks = 1;
    m.tracks = calloc(1, sizeof *m.tracks);
    m.tracks[0].events = calloc(2, sizeof(aria_midi_event));
    m.tracks[0].n_events = 2;
    m.tracks[0].events[0] = (aria_midi_event){ .tick = 0, .kind = ARIA_MIDI_CHANNEL, .status = 0x91, .d1 = 60, .d2 = 100 };
    m.tracks[0].events[1] = (aria_midi_event){ .tick = 480, .kind = ARIA_MIDI_CHANNEL, .status = 0x91, .d1 = 60, .d2 = 0 };
    uint8_t *out;
    size_t n;
    aria_error e;
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(memcmp(out + 22, "\x00\x91\x3C\x64\x83\x60\x3C\x00\x00\xFF\x2F\x00", 12), 0);
    free(out);
    /* pushing onto it works too */
    aria_midi_event ev = { .tick = 500, .kind = ARIA_MIDI_META, .status = 0x06, .len = 1 };
    cr_assert_eq(aria_midi_push(&m, 0, &ev, (const uint8_t *)"M", &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(m.tracks[0].n_events, 3);
    aria_midi_free(&m);
}

Test(midi_write, write_file_atomically)
{
    char dir[] = "/tmp/aria_midi_testXXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/out.mid", dir);
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "mido/basic_decoded.mid", &e), ARIA_OK);
    cr_assert_eq(aria_midi_write_file(&m, path, &e), ARIA_OK, "%s", e.msg);
    size_t n, want_n;
    uint8_t *got = slurp(path, &n);
    uint8_t *want = slurp(FIX "mido/basic_decoded.mid", &want_n);
    cr_assert_eq(n, want_n);
    cr_assert_eq(memcmp(got, want, n), 0);
    free(got);
    free(want);
    /* refused writes leave nothing behind */
    aria_midi bad;
    aria_midi_init(&bad, 0, 96);
    char path2[256];
    snprintf(path2, sizeof path2, "%s/bad.mid", dir);
    cr_assert_eq(aria_midi_write_file(&bad, path2, &e), ARIA_ERR_ARG);
    cr_assert_neq(access(path2, F_OK), 0);
    aria_midi_free(&m);
    unlink(path);
    DIR *d = opendir(dir);
    struct dirent *de;
    int left = 0;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) left++;
    closedir(d);
    cr_assert_eq(left, 0, "temporary files left in %s", dir);
    rmdir(dir);
}

/* ---------------------------------------------------------------------- */
/* builder                                                                */
/* ---------------------------------------------------------------------- */

Test(midi_build, push_checks)
{
    aria_midi m;
    aria_error e = { { 0 } };
    cr_assert_eq(aria_midi_init(&m, 1, 480), ARIA_OK);
    aria_midi_event ev = { .tick = 10, .kind = ARIA_MIDI_CHANNEL, .status = 0x90, .d1 = 60, .d2 = 1 };
    cr_assert_eq(aria_midi_push(&m, 0, &ev, NULL, &e), ARIA_ERR_ARG, "no track yet");
    cr_assert_eq(aria_midi_add_track(&m), ARIA_OK);
    cr_assert_eq(aria_midi_push(&m, 0, &ev, NULL, &e), ARIA_OK);
    ev.tick = 9;
    cr_assert_eq(aria_midi_push(&m, 0, &ev, NULL, &e), ARIA_ERR_ARG);
    cr_assert(strstr(e.msg, "tick 9 is before the previous event's tick 10"), "%s", e.msg);
    ev.tick = 10;
    ev.d1 = 200;
    cr_assert_eq(aria_midi_push(&m, 0, &ev, NULL, &e), ARIA_ERR_ARG);
    ev = (aria_midi_event){ .tick = 10, .kind = ARIA_MIDI_SYSCOMMON, .status = 0xF4 };
    cr_assert_eq(aria_midi_push(&m, 0, &ev, NULL, &e), ARIA_ERR_ARG);
    ev = (aria_midi_event){ .tick = 10, .kind = 9 };
    cr_assert_eq(aria_midi_push(&m, 0, &ev, NULL, &e), ARIA_ERR_ARG);
    ev = (aria_midi_event){ .tick = 10, .kind = ARIA_MIDI_META, .status = 3, .len = 4 };
    cr_assert_eq(aria_midi_push(&m, 0, &ev, NULL, &e), ARIA_ERR_ARG, "payload missing");
    ev.len = 0x10000000u;
    cr_assert_eq(aria_midi_push(&m, 0, &ev, NULL, &e), ARIA_ERR_ARG);
    cr_assert(strstr(e.msg, "longer than a MIDI length"), "%s", e.msg);
    cr_assert_eq(aria_midi_push(&m, 5, &ev, NULL, &e), ARIA_ERR_ARG);
    cr_assert(strstr(e.msg, "track 5 does not exist"), "%s", e.msg);
    aria_midi_free(&m);
    aria_midi other;
    cr_assert_eq(aria_midi_init(&other, 3, 480), ARIA_ERR_ARG);
    cr_assert_eq(aria_midi_init(&other, 1, -1), ARIA_ERR_ARG);
    cr_assert_eq(aria_midi_init(&other, 1, 32768), ARIA_ERR_ARG);
    aria_midi_free(&other);
}

Test(midi_build, many_events_and_payloads)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(aria_midi_init(&m, 1, 480), ARIA_OK);
    for (int t = 0; t < 5; t++) cr_assert_eq(aria_midi_add_track(&m), ARIA_OK);
    for (int i = 0; i < 3000; i++) {
        size_t t = (size_t)(i % 5);
        aria_midi_event ev = { .tick = (uint64_t)i, .kind = ARIA_MIDI_CHANNEL, .status = 0x90,
                               .d1 = (uint8_t)(i & 127), .d2 = 64 };
        cr_assert_eq(aria_midi_push(&m, t, &ev, NULL, &e), ARIA_OK);
        char text[32];
        int len = snprintf(text, sizeof text, "event %d", i);
        aria_midi_event meta = { .tick = (uint64_t)i, .kind = ARIA_MIDI_META, .status = 1,
                                 .len = (uint32_t)len };
        cr_assert_eq(aria_midi_push(&m, t, &meta, (const uint8_t *)text, &e), ARIA_OK);
    }
    cr_assert_eq(m.tracks[4].n_events, 1200);
    const aria_midi_event *last = &m.tracks[4].events[1199];
    cr_assert_eq(memcmp(m.data + last->off, "event 2999", 10), 0);
    uint8_t *out;
    size_t n;
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_OK);
    aria_midi back;
    cr_assert_eq(aria_midi_read(&back, out, n, &e), ARIA_OK, "%s", e.msg);
    assert_same_events(&m, &back);
    free(out);
    aria_midi_free(&back);
    aria_midi_free(&m);
}

Test(midi_build, push_onto_a_file_that_was_read)
{
    aria_midi m;
    aria_error e;
    cr_assert_eq(read_fixture(&m, "generated/tempo_map_type1.mid", &e), ARIA_OK);
    size_t n0 = m.tracks[0].n_events, n1 = m.tracks[1].n_events;
    uint64_t last = m.tracks[1].events[n1 - 1].tick;
    aria_midi_event ev = { .tick = last + 10, .kind = ARIA_MIDI_CHANNEL, .status = 0x90, .d1 = 70, .d2 = 70 };
    cr_assert_eq(aria_midi_push(&m, 1, &ev, NULL, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(aria_midi_add_track(&m), ARIA_OK);
    aria_midi_event name = { .tick = 0, .kind = ARIA_MIDI_META, .status = 3, .len = 3 };
    cr_assert_eq(aria_midi_push(&m, 2, &name, (const uint8_t *)"new", &e), ARIA_OK);
    cr_assert_eq(m.n_tracks, 3);
    cr_assert_eq(m.tracks[0].n_events, n0);
    cr_assert_eq(m.tracks[1].n_events, n1 + 1);
    uint8_t *out;
    size_t n;
    cr_assert_eq(aria_midi_write(&m, &out, &n, &e), ARIA_OK, "%s", e.msg);
    aria_midi back;
    cr_assert_eq(aria_midi_read(&back, out, n, &e), ARIA_OK);
    cr_assert_eq(back.n_tracks, 3);
    cr_assert_eq(back.tracks[2].n_events, 2);
    cr_assert_eq(memcmp(back.data + back.tracks[2].events[0].off, "new", 3), 0);
    free(out);
    aria_midi_free(&back);
    aria_midi_free(&m);
}

Test(midi_build, free_is_safe)
{
    aria_midi z = { 0 };
    aria_midi_free(&z);
    aria_midi_free(&z);
    aria_midi_free(NULL);
}

/* ---------------------------------------------------------------------- */
/* file helpers                                                           */
/* ---------------------------------------------------------------------- */

Test(midi_fileio, read_file_cases)
{
    uint8_t *buf = (uint8_t *)1;
    size_t n = 7;
    aria_error e = { { 0 } };
    cr_assert_eq(aria_read_file("/nonexistent/zz.bin", &buf, &n, &e), ARIA_ERR_IO);
    cr_assert_null(buf);
    cr_assert_eq(n, 0);
    cr_assert_eq(strcmp(e.msg, "cannot open: No such file or directory"), 0, "%s", e.msg);
    cr_assert_eq(aria_read_file("/tmp", &buf, &n, &e), ARIA_ERR_IO);
    cr_assert(strstr(e.msg, "is a directory"), "%s", e.msg);
    /* empty regular file and an empty character device */
    cr_assert_eq(aria_read_file(FIX "generated/empty_file.mid", &buf, &n, &e), ARIA_OK);
    cr_assert_eq(n, 0);
    cr_assert_not_null(buf);
    free(buf);
    cr_assert_eq(aria_read_file("/dev/null", &buf, &n, &e), ARIA_OK);
    cr_assert_eq(n, 0);
    free(buf);
    cr_assert_eq(aria_read_file(FIX "generated/ppq_1.mid", &buf, &n, &e), ARIA_OK);
    cr_assert_eq(n, 34);
    cr_assert_eq(memcmp(buf, "MThd", 4), 0);
    free(buf);
}

Test(midi_fileio, read_from_a_pipe)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    static uint8_t big[200000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        size_t off = 0;
        while (off < sizeof big) {
            ssize_t w = write(fds[1], big + off, sizeof big - off);
            if (w <= 0) _exit(1);
            off += (size_t)w;
        }
        _exit(0);
    }
    close(fds[1]);
    char path[64];
    snprintf(path, sizeof path, "/dev/fd/%d", fds[0]);
    uint8_t *buf;
    size_t n;
    aria_error e;
    cr_assert_eq(aria_read_file(path, &buf, &n, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(n, sizeof big);
    cr_assert_eq(memcmp(buf, big, n), 0);
    free(buf);
    close(fds[0]);
}

Test(midi_fileio, atomic_write)
{
    char dir[] = "/tmp/aria_fileio_testXXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/a.bin", dir);
    aria_error e = { { 0 } };
    cr_assert_eq(aria_write_file_atomic(path, "hello", 5, &e), ARIA_OK, "%s", e.msg);
    cr_assert_eq(aria_write_file_atomic(path, "bye", 3, &e), ARIA_OK, "%s", e.msg);
    uint8_t *buf;
    size_t n;
    cr_assert_eq(aria_read_file(path, &buf, &n, &e), ARIA_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(memcmp(buf, "bye", 3), 0);
    free(buf);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_neq(st.st_mode & 0444, 0, "new file is unreadable: mode %o", st.st_mode);
    cr_assert_eq(aria_write_file_atomic(path, NULL, 0, &e), ARIA_OK, "empty buffer");
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, 0);
    /* a missing directory: an error without the path, nothing created */
    char missing[256];
    snprintf(missing, sizeof missing, "%s/nodir/x.bin", dir);
    cr_assert_eq(aria_write_file_atomic(missing, "x", 1, &e), ARIA_ERR_IO);
    cr_assert(strstr(e.msg, "No such file"), "%s", e.msg);
    cr_assert_null(strstr(e.msg, "nodir"), "%s", e.msg);
    /* the target is a directory: rename fails, the temporary is removed */
    char sub[256];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    cr_assert_eq(mkdir(sub, 0755), 0);
    cr_assert_eq(aria_write_file_atomic(sub, "x", 1, &e), ARIA_ERR_IO);
    cr_assert(strstr(e.msg, "rename"), "%s", e.msg);
    char trailing[300];
    snprintf(trailing, sizeof trailing, "%s/", sub);
    cr_assert_eq(aria_write_file_atomic(trailing, "x", 1, &e), ARIA_ERR_ARG);
    rmdir(sub);
    unlink(path);
    DIR *d = opendir(dir);
    struct dirent *de;
    int left = 0;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) left++;
    closedir(d);
    cr_assert_eq(left, 0, "files left behind in %s", dir);
    rmdir(dir);
}

Test(midi_fileio, status_names)
{
    cr_assert_str_eq(aria_status_name(ARIA_OK), "ok");
    cr_assert_str_eq(aria_status_name(ARIA_ERR_IO), "i/o error");
    cr_assert_str_eq(aria_status_name(ARIA_ERR_FORMAT), "format error");
    cr_assert_str_eq(aria_status_name(ARIA_ERR_NOMEM), "out of memory");
    cr_assert_str_eq(aria_status_name(ARIA_ERR_ARG), "invalid argument");
    cr_assert_str_eq(aria_status_name(ARIA_ERR_EMPTY), "nothing to do");
    cr_assert_str_eq(aria_status_name(-99), "unknown status");
}

/* ---------------------------------------------------------------------- */
/* whole folders                                                          */
/* ---------------------------------------------------------------------- */

typedef struct {
    size_t files, ok, refused;
    char first_problem[700];
} walk_stats;

/* A file that reads goes on through the rest of the pipeline: score,
   tokens (or a clean "no notes"), detokenized score, MIDI bytes. */
static void check_pipeline(const char *path, const aria_midi *m, walk_stats *w)
{
    aria_score s;
    aria_error e = { { 0 } };
    if (aria_score_from_midi(&s, m, &e) != ARIA_OK) {
        if (!w->first_problem[0])
            snprintf(w->first_problem, sizeof w->first_problem, "%.300s: score: %.300s", path, e.msg);
        return;
    }
    aria_tokenizer *tk = aria_tokenizer_new(ARIA_TOKCFG_DEFAULT);
    aria_token *toks = NULL;
    size_t n = 0;
    int rc = aria_tokenize(tk, &s, NULL, NULL, &toks, &n, &e);
    if (rc == ARIA_OK) {
        aria_score d = { 0 };
        aria_midi out = { 0 };
        uint8_t *bytes = NULL;
        size_t len = 0;
        int ok = aria_detokenize(tk, toks, n, &d, NULL, &e) == ARIA_OK;
        ok = ok && aria_score_to_midi(&d, &out, &e) == ARIA_OK;
        ok = ok && aria_midi_write(&out, &bytes, &len, &e) == ARIA_OK;
        if (!ok && !w->first_problem[0])
            snprintf(w->first_problem, sizeof w->first_problem, "%.300s: decode: %.300s", path, e.msg);
        aria_score_free(&d);
        free(bytes);
        aria_midi_free(&out);
    } else if (rc != ARIA_ERR_EMPTY || !e.msg[0]) {
        if (!w->first_problem[0])
            snprintf(w->first_problem, sizeof w->first_problem, "%.300s: tokenize: %d %.300s", path, rc, e.msg);
    }
    free(toks);
    aria_tokenizer_free(tk);
    aria_score_free(&s);
}

/* Reads one file: OK (and then write + re-read keeps the channel events)
   or FORMAT with a message. Anything else is a problem. */
static void check_one_file(const char *path, walk_stats *w)
{
    aria_midi m;
    aria_error e = { { 0 } };
    int rc = aria_midi_read_file(&m, path, &e);
    w->files++;
    if (rc == ARIA_ERR_FORMAT && e.msg[0]) {
        w->refused++;
        return;
    }
    if (rc != ARIA_OK) {
        if (!w->first_problem[0])
            snprintf(w->first_problem, sizeof w->first_problem, "%.300s: status %d '%.300s'", path, rc, e.msg);
        return;
    }
    w->ok++;
    check_pipeline(path, &m, w);
    uint8_t *out;
    size_t n;
    if (aria_midi_write(&m, &out, &n, &e) == ARIA_OK) {
        aria_midi back;
        if (aria_midi_read(&back, out, n, &e) != ARIA_OK ||
            count_events(&back, ARIA_MIDI_CHANNEL) != count_events(&m, ARIA_MIDI_CHANNEL)) {
            if (!w->first_problem[0])
                snprintf(w->first_problem, sizeof w->first_problem, "%.300s: rewrite differs", path);
        }
        aria_midi_free(&back);
        free(out);
    }
    aria_midi_free(&m);
}

static void walk_dir(const char *dir, walk_stats *w)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) walk_dir(path, w);
        else if (S_ISREG(st.st_mode)) check_one_file(path, w);
    }
    closedir(d);
}

/* The shared fixtures are optional: a checkout without ../shared skips,
   but with ../shared present the folder must be there and full. */
Test(midi_walk, shared_fixtures_read_or_refused)
{
    struct stat st;
    if (stat("../shared", &st) != 0 || !S_ISDIR(st.st_mode))
        cr_skip("../shared is absent; %s not walked", SHARED_FIXTURES);
    walk_stats w = { 0 };
    walk_dir(SHARED_FIXTURES, &w);
    cr_log_info("%s: %zu files: %zu read, %zu refused", SHARED_FIXTURES, w.files, w.ok, w.refused);
    cr_assert_geq(w.files, SHARED_FIXTURE_FILES_MIN, "%s: %zu files checked, expected at least %d",
                  SHARED_FIXTURES, w.files, SHARED_FIXTURE_FILES_MIN);
    cr_assert_eq(w.first_problem[0], 0, "%s", w.first_problem);
}

Test(midi_walk, local_fixtures_read_or_refused)
{
    walk_stats w = { 0 };
    walk_dir(FIX, &w);
    cr_log_info("%s: %zu files: %zu read, %zu refused", FIX, w.files, w.ok, w.refused);
    cr_assert_gt(w.files, 60);
    cr_assert_geq(w.files, LOCAL_FIXTURE_FILES, "%s: %zu files checked, expected at least %d", FIX,
                  w.files, LOCAL_FIXTURE_FILES);
    cr_assert_eq(w.first_problem[0], 0, "%s", w.first_problem);
}

/* Inputs that once crashed or misbehaved under fuzz/fuzz_midi.c: each must
   be read or refused cleanly, and a file that is read must survive a
   write and re-read with the same channel events. */
Test(midi_walk, fuzz_regressions)
{
    walk_stats w = { 0 };
    walk_dir(FIX "crashers", &w);
    cr_log_info("%scrashers: %zu files: %zu read, %zu refused", FIX, w.files, w.ok, w.refused);
    cr_assert_geq(w.files, CRASHER_FILES, "%scrashers: %zu files checked, expected at least %d", FIX,
                  w.files, CRASHER_FILES);
    cr_assert_eq(w.first_problem[0], 0, "%s", w.first_problem);
}
