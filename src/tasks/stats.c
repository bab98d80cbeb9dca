/*
 * stats.c - what `aria info` says about a MIDI file, as numbers: the
 * file's layout (format, division, tracks, events, reader warnings) from
 * the parsed file, and its music (duration, notes, programs, tempo,
 * pedal) from the score built on it, with the reference's tick -> ms.
 * The caller formats them; nothing here prints.
 */
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/util.h"

#define DRUM_CHANNEL 9 /* MIDI channel 10 */

static void stats_from_midi(aria_file_stats *st, const aria_midi *m) {
    st->format = m->format;
    st->ppq = m->ppq;
    st->smpte_fps = m->smpte_fps;
    st->smpte_tpf = m->smpte_tpf;
    st->n_tracks = m->n_tracks;
    st->ntracks_declared = m->ntracks_declared;
    for (size_t t = 0; t < m->n_tracks; t++) st->n_events += m->tracks[t].n_events;
    st->n_warnings = m->n_warnings;
    memcpy(st->warnings, m->warnings, sizeof st->warnings);
}

static int stats_from_score(aria_file_stats *st, const aria_score *s, aria_error *err) {
    int64_t last = 0; /* the latest note end, in ticks */
    for (size_t i = 0; i < s->n_notes; i++) {
        if (s->notes[i].end > last) last = s->notes[i].end;
        st->n_drum_notes += s->notes[i].channel == DRUM_CHANNEL;
    }
    st->duration_ms = aria_score_tick_to_ms(s, last);
    st->n_notes = s->n_notes;
    st->n_tempos = s->n_tempos;
    st->first_tempo = s->n_tempos ? s->tempos[0].tempo : 0;
    st->n_pedals = s->n_pedals;
    for (size_t i = 0; i < s->n_pedals; i++) st->n_pedals_down += s->pedals[i].on;
    if (s->n_programs) {
        st->programs = malloc(s->n_programs * sizeof *st->programs);
        if (!st->programs) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        memcpy(st->programs, s->programs, s->n_programs * sizeof *st->programs);
    }
    st->n_programs = s->n_programs;
    return ARIA_OK;
}

int aria_file_stats_read(aria_file_stats *st, const char *path, aria_error *err) {
    memset(st, 0, sizeof *st);
    aria_midi m = {0};
    aria_score s = {0};
    int rc = aria_midi_read_file(&m, path, err);
    if (rc == ARIA_OK) rc = aria_score_from_midi(&s, &m, err);
    if (rc == ARIA_OK) {
        stats_from_midi(st, &m);
        rc = stats_from_score(st, &s, err);
    }
    aria_score_free(&s);
    aria_midi_free(&m);
    if (rc) aria_file_stats_free(st);
    return rc;
}

void aria_file_stats_free(aria_file_stats *st) {
    if (!st) return;
    free(st->programs);
    st->programs = NULL;
    st->n_programs = 0;
}
