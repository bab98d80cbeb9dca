/*
 * fuzz_midi.c - libFuzzer target for the MIDI reader and writer.
 *
 * For every input: aria_midi_read must either refuse it (with a message)
 * or return a file whose events are consistent (payloads inside m->data,
 * ticks non-decreasing). A file that was read is then written, read back
 * and written again: the re-read must succeed with the same number of
 * channel events, and the two writes must be byte-identical (writing is a
 * fixed point after one round). Any breach calls abort() so the fuzzer
 * keeps the input; ASan/UBSan catch the rest.
 *
 * Build: make fuzz  (clang -fsanitize=fuzzer,address,undefined)
 * Run:   build-fuzz/fuzz_midi fuzz/corpus-midi  (the corpus is not in git)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t fuzz_channel_events(const aria_midi *m)
{
    size_t n = 0;
    for (size_t t = 0; t < m->n_tracks; t++)
        for (size_t k = 0; k < m->tracks[t].n_events; k++)
            n += m->tracks[t].events[k].kind == ARIA_MIDI_CHANNEL;
    return n;
}

/* Payloads inside the data buffer, ticks in order, warnings counted. */
static void fuzz_check_consistent(const aria_midi *m)
{
    if (m->n_warnings < 0) abort();
    if ((m->ppq == 0) == (m->smpte_fps == 0)) abort();
    for (size_t t = 0; t < m->n_tracks; t++) {
        const aria_midi_track *tr = &m->tracks[t];
        for (size_t k = 0; k < tr->n_events; k++) {
            const aria_midi_event *e = &tr->events[k];
            if (k && e->tick < tr->events[k - 1].tick) abort();
            if (e->kind == ARIA_MIDI_CHANNEL && (e->status < 0x80 || e->status > 0xEF)) abort();
            if (e->len && ((size_t)e->off + e->len > m->data_len)) abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aria_midi m;
    aria_error err;
    err.msg[0] = 0;
    int rc = aria_midi_read(&m, data, size, &err);
    if (rc != ARIA_OK) {
        if (rc != ARIA_ERR_FORMAT || !err.msg[0]) abort();
        return 0;
    }
    fuzz_check_consistent(&m);
    if (m.format == 0 && m.n_tracks != 1) m.format = 1; /* format 0 needs one track */

    uint8_t *out1 = NULL, *out2 = NULL;
    size_t n1 = 0, n2 = 0;
    if (aria_midi_write(&m, &out1, &n1, &err) != ARIA_OK) abort();
    aria_midi back;
    if (aria_midi_read(&back, out1, n1, &err) != ARIA_OK) abort();
    if (back.n_tracks != m.n_tracks) abort();
    if (fuzz_channel_events(&back) != fuzz_channel_events(&m)) abort();
    if (aria_midi_write(&back, &out2, &n2, &err) != ARIA_OK) abort();
    if (n1 != n2 || memcmp(out1, out2, n1) != 0) abort();

    free(out1);
    free(out2);
    aria_midi_free(&back);
    aria_midi_free(&m);
    return 0;
}
