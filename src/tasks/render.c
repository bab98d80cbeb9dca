/*
 * render.c - a MIDI file as audio (`aria render`, `aria generate
 * --render`): offline rendering through libfluidsynth into a WAV file.
 *
 * How it works: every channel message of every track (notes, controllers
 * such as the sustain pedal, program changes, pitch bend, pressure) is
 * collected, stably sorted by tick and timed in seconds by integrating the
 * score's tempo map exactly (what a player hears; the reference's
 * tick->ms quirk is for tokens, not for sound). A FluidSynth synthesizer
 * with no audio driver is then fed those events in order, and between two
 * events it renders exactly the frames that lie between their times
 * (fluid_synth_write_float), so nothing runs in real time and no sound
 * card is touched. After the last event a fixed release tail is rendered
 * so that decays and reverb are not cut: the WAV is as long as the music
 * plus that tail. Samples are converted to 16-bit stereo PCM (clipped,
 * and counted) and written atomically.
 *
 * FluidSynth logs to stderr by default; the library never prints, so its
 * logging is switched off (a process-wide FluidSynth setting) and the
 * errors that matter here (a missing or non-SoundFont file) are checked
 * before FluidSynth sees the file.
 *
 * libfluidsynth is not linked but opened at the first rendering
 * (src/base/dynlib.h): it brings some sixty libraries (audio drivers, glib,
 * SDL) whose loading would cost every other command ~20 ms. Built without
 * FluidSynth (the Makefile's probe did not find it), or when it cannot be
 * loaded at run time, the rendering functions say so and how to get it;
 * the WAV writer works either way.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aria.h"
#include "base/util.h"

#include "base/dynlib.h"

#ifdef HAVE_FLUIDSYNTH
#include <fluidsynth.h>
#include <pthread.h>

/* The soname the Makefile's probe linked against, else Debian 12's. */
#ifndef ARIA_FLUIDSYNTH_SONAME
#define ARIA_FLUIDSYNTH_SONAME "libfluidsynth.so.3"
#endif

/* Every FluidSynth function called below. */
#define FLUID_FNS(X) \
    X(fluid_synth_noteoff) X(fluid_synth_noteon) X(fluid_synth_key_pressure) \
    X(fluid_synth_cc) X(fluid_synth_program_change) X(fluid_synth_channel_pressure) \
    X(fluid_synth_pitch_bend) X(fluid_synth_write_float) X(fluid_set_log_function) \
    X(new_fluid_settings) X(fluid_settings_setnum) X(fluid_settings_setint) \
    X(new_fluid_synth) X(fluid_synth_sfload) X(delete_fluid_synth) \
    X(delete_fluid_settings)

ARIA_DL_TABLE(fs, FLUID_FNS, "FluidSynth", ARIA_FLUIDSYNTH_SONAME)

/* From here on, the calls go through the table. */
#define fluid_synth_noteoff fs.fluid_synth_noteoff
#define fluid_synth_noteon fs.fluid_synth_noteon
#define fluid_synth_key_pressure fs.fluid_synth_key_pressure
#define fluid_synth_cc fs.fluid_synth_cc
#define fluid_synth_program_change fs.fluid_synth_program_change
#define fluid_synth_channel_pressure fs.fluid_synth_channel_pressure
#define fluid_synth_pitch_bend fs.fluid_synth_pitch_bend
#define fluid_synth_write_float fs.fluid_synth_write_float
#define fluid_set_log_function fs.fluid_set_log_function
#define new_fluid_settings fs.new_fluid_settings
#define fluid_settings_setnum fs.fluid_settings_setnum
#define fluid_settings_setint fs.fluid_settings_setint
#define new_fluid_synth fs.new_fluid_synth
#define fluid_synth_sfload fs.fluid_synth_sfload
#define delete_fluid_synth fs.delete_fluid_synth
#define delete_fluid_settings fs.delete_fluid_settings
#endif

/* Debian's General MIDI soundfonts, best first: FluidR3 GM (fluid-soundfont-gm,
   what install-deps installs), the alternatives' default-GM links, then the
   smaller ones. */
static const char *const soundfont_paths[] = {
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
    "/usr/share/sounds/sf3/FluidR3Mono_GM.sf3",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
};

const char *aria_soundfont_default(void) {
    for (size_t i = 0; i < sizeof soundfont_paths / sizeof *soundfont_paths; i++)
        if (access(soundfont_paths[i], R_OK) == 0) return soundfont_paths[i];
    return NULL;
}

aria_render_opts aria_render_defaults(void) {
    aria_render_opts o = {0};
    o.sample_rate = 44100;
    o.gain = 0.6f;
    o.tail_s = 2.0;
    return o;
}

int aria_dl_state_fluidsynth(const char **file, const char **why) {
#ifdef HAVE_FLUIDSYNTH
    *file = ARIA_FLUIDSYNTH_SONAME;
    *why = fs_why;
    return fs_ready();
#else
    *file = *why = "";
    return -1;
#endif
}

int aria_render_available(void) {
#ifdef HAVE_FLUIDSYNTH
    return fs_ready();
#else
    return 0;
#endif
}

/* A SoundFont 2/3 file starts "RIFF" <size> "sfbk". Checked here so that
   the usual mistakes get a clear message (FluidSynth's own goes to its
   silenced log). */
int aria_soundfont_check(const char *path, aria_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return aria_fail(err, ARIA_ERR_IO, "cannot open the soundfont: %s", strerror(errno));
    uint8_t h[12];
    size_t got = fread(h, 1, sizeof h, f);
    fclose(f);
    if (got != sizeof h || memcmp(h, "RIFF", 4) != 0 || memcmp(h + 8, "sfbk", 4) != 0)
        return aria_fail(err, ARIA_ERR_FORMAT, "not a SoundFont (.sf2/.sf3) file");
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* WAV                                                                    */
/* ---------------------------------------------------------------------- */

static void put16(uint8_t *p, unsigned v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

int aria_wav_write(const char *path, const int16_t *pcm, size_t frames, int channels, int sample_rate,
                   aria_error *err) {
    if (channels < 1 || channels > 8 || sample_rate < 1)
        return aria_fail(err, ARIA_ERR_ARG, "bad WAV format: %d channels at %d Hz", channels, sample_rate);
    uint64_t data = (uint64_t)frames * (uint64_t)channels * 2;
    if (data > 0xFFFFFFFFull - 36) return aria_fail(err, ARIA_ERR_ARG, "too long for a WAV file (4 GB)");
    size_t len = 44 + (size_t)data;
    uint8_t *b = malloc(len);
    if (!b) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    memcpy(b, "RIFF", 4);
    put32(b + 4, (uint32_t)(36 + data));
    memcpy(b + 8, "WAVEfmt ", 8);
    put32(b + 16, 16);
    put16(b + 20, 1); /* PCM */
    put16(b + 22, (unsigned)channels);
    put32(b + 24, (uint32_t)sample_rate);
    put32(b + 28, (uint32_t)sample_rate * (uint32_t)channels * 2);
    put16(b + 32, (unsigned)channels * 2);
    put16(b + 34, 16);
    memcpy(b + 36, "data", 4);
    put32(b + 40, (uint32_t)data);
    for (size_t i = 0; i < frames * (size_t)channels; i++) put16(b + 44 + 2 * i, (uint16_t)pcm[i]);
    int rc = aria_write_file_atomic(path, b, len, err);
    free(b);
    return rc;
}

#ifdef HAVE_FLUIDSYNTH

/* ---------------------------------------------------------------------- */
/* Events in time order                                                   */
/* ---------------------------------------------------------------------- */

typedef struct {
    int64_t tick; /* first: the sort key */
    uint8_t status, d1, d2;
} ev;

/* Every channel message of every track, stably sorted by tick (ties keep
   track order, then file order). */
static int collect_events(const aria_midi *m, ev **out, size_t *n, aria_error *err) {
    size_t total = 0;
    for (size_t t = 0; t < m->n_tracks; t++)
        for (size_t i = 0; i < m->tracks[t].n_events; i++) total += m->tracks[t].events[i].kind == ARIA_MIDI_CHANNEL;
    ev *e = malloc((total ? total : 1) * sizeof *e);
    if (!e) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (size_t t = 0; t < m->n_tracks; t++)
        for (size_t i = 0; i < m->tracks[t].n_events; i++) {
            const aria_midi_event *x = &m->tracks[t].events[i];
            if (x->kind != ARIA_MIDI_CHANNEL) continue;
            e[k++] = (ev){(int64_t)(x->tick > INT64_MAX ? INT64_MAX : x->tick), x->status, x->d1, x->d2};
        }
    if (aria_sort_by_i64_key(e, total, sizeof *e)) {
        free(e);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    }
    *out = e;
    *n = total;
    return ARIA_OK;
}

/* Seconds from tick 0 to `t` through the tempo map (500000 us per beat
   before the first change), as the score's exact timing computes them. */
static double tick_seconds(const aria_score *s, int64_t t) {
    double sec = 0.0;
    int64_t prev = 0;
    uint32_t tempo = 500000;
    double tpb = s->ticks_per_beat > 0 ? s->ticks_per_beat : 480;
    for (size_t i = 0; i < s->n_tempos && s->tempos[i].tick < t; i++) {
        if (s->tempos[i].tick > prev) {
            sec += (double)(s->tempos[i].tick - prev) * tempo * 1e-6 / tpb;
            prev = s->tempos[i].tick;
        }
        tempo = s->tempos[i].tempo;
    }
    return sec + (double)(t - prev) * tempo * 1e-6 / tpb;
}

static void send(fluid_synth_t *syn, const ev *e) {
    int ch = e->status & 15;
    switch (e->status & 0xF0) {
    case 0x80: fluid_synth_noteoff(syn, ch, e->d1); break;
    case 0x90:
        if (e->d2) fluid_synth_noteon(syn, ch, e->d1, e->d2);
        else fluid_synth_noteoff(syn, ch, e->d1);
        break;
    case 0xA0: fluid_synth_key_pressure(syn, ch, e->d1, e->d2); break;
    case 0xB0: fluid_synth_cc(syn, ch, e->d1, e->d2); break;
    case 0xC0: fluid_synth_program_change(syn, ch, e->d1); break;
    case 0xD0: fluid_synth_channel_pressure(syn, ch, e->d1); break;
    case 0xE0: fluid_synth_pitch_bend(syn, ch, e->d1 | e->d2 << 7); break;
    default: break;
    }
}

/* Renders frames [*done, upto) into pcm (interleaved stereo). */
static void render_to(fluid_synth_t *syn, int16_t *pcm, size_t *done, size_t upto, float *l, float *r,
                      aria_render_info *info) {
    enum { BLOCK = 4096 };
    while (*done < upto) {
        int k = upto - *done < BLOCK ? (int)(upto - *done) : BLOCK;
        fluid_synth_write_float(syn, k, l, 0, 1, r, 0, 1);
        for (int i = 0; i < k; i++) {
            float v[2] = {l[i], r[i]};
            for (int c = 0; c < 2; c++) {
                float x = v[c] * 32768.0f;
                if (x > 32767.0f || x < -32768.0f) {
                    info->clipped++;
                    x = x > 0 ? 32767.0f : -32768.0f;
                }
                int16_t s = (int16_t)lrintf(x);
                int a = s < 0 ? -s : s;
                if (a > info->peak) info->peak = a;
                pcm[2 * (*done + (size_t)i) + (size_t)c] = s;
            }
        }
        *done += (size_t)k;
    }
}

int aria_render_midi(const aria_midi *m, const aria_render_opts *opts, int16_t **pcm_out, size_t *frames_out,
                     aria_render_info *info_out, aria_error *err) {
    aria_render_opts o = opts ? *opts : aria_render_defaults();
    aria_render_info info = {0};
    *pcm_out = NULL;
    *frames_out = 0;
    if (!fs_ready())
        return aria_fail(err, ARIA_ERR_ARG, "%s: install it (Debian: sudo apt-get install libfluidsynth3)", fs_why);
    if (o.sample_rate < 8000 || o.sample_rate > 192000)
        return aria_fail(err, ARIA_ERR_ARG, "sample rate %d Hz is outside 8000..192000", o.sample_rate);
    if (!(o.gain > 0 && o.gain <= 10)) return aria_fail(err, ARIA_ERR_ARG, "gain %g is outside (0, 10]", o.gain);
    if (!(o.tail_s >= 0 && o.tail_s <= 60)) return aria_fail(err, ARIA_ERR_ARG, "tail %g s is outside 0..60", o.tail_s);
    const char *sf = o.soundfont ? o.soundfont : aria_soundfont_default();
    if (!sf)
        return aria_fail(err, ARIA_ERR_IO, "no General MIDI soundfont found: install one (Debian: sudo apt-get "
                         "install fluid-soundfont-gm) or give a .sf2 file with --soundfont");
    aria_error e2 = {{0}};
    int rc = aria_soundfont_check(sf, &e2);
    if (rc) return aria_fail(err, rc, "%s: %s", sf, e2.msg);

    aria_score s = {0};
    ev *events = NULL;
    size_t n_ev = 0;
    rc = aria_score_from_midi(&s, m, err);
    if (rc == ARIA_OK) rc = collect_events(m, &events, &n_ev, err);
    if (rc) {
        aria_score_free(&s);
        return rc;
    }
    double music_s = n_ev ? tick_seconds(&s, events[n_ev - 1].tick) : 0.0;
    if (music_s > 4 * 3600.0) {
        free(events);
        aria_score_free(&s);
        return aria_fail(err, ARIA_ERR_ARG, "the music lasts %.0f s; at most 4 hours are rendered", music_s);
    }
    size_t frames = (size_t)llround((music_s + o.tail_s) * o.sample_rate);
    int16_t *pcm = calloc(frames ? frames * 2 : 2, sizeof *pcm);
    float *l = malloc(4096 * sizeof *l), *r = malloc(4096 * sizeof *r);
    if (!pcm || !l || !r) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        goto done;
    }

    for (int lvl = FLUID_PANIC; lvl <= FLUID_DBG; lvl++) fluid_set_log_function(lvl, NULL, NULL);
    fluid_settings_t *set = new_fluid_settings();
    fluid_synth_t *syn = NULL;
    if (set) {
        fluid_settings_setnum(set, "synth.sample-rate", (double)o.sample_rate);
        fluid_settings_setnum(set, "synth.gain", (double)o.gain);
        fluid_settings_setint(set, "synth.polyphony", 512);
        fluid_settings_setint(set, "synth.cpu-cores", 1);
        /* only the presets the music uses get their samples loaded */
        fluid_settings_setint(set, "synth.dynamic-sample-loading", 1);
        syn = new_fluid_synth(set);
    }
    if (!syn) {
        rc = aria_fail(err, ARIA_ERR_NOMEM, "FluidSynth could not start");
    } else if (fluid_synth_sfload(syn, sf, 1) == FLUID_FAILED) {
        rc = aria_fail(err, ARIA_ERR_FORMAT, "FluidSynth could not load the soundfont %s", sf);
    } else {
        size_t done = 0;
        for (size_t i = 0; i < n_ev; i++) {
            size_t at = (size_t)llround(tick_seconds(&s, events[i].tick) * o.sample_rate);
            if (at > frames) at = frames;
            render_to(syn, pcm, &done, at, l, r, &info);
            send(syn, &events[i]);
        }
        render_to(syn, pcm, &done, frames, l, r, &info);
    }
    if (syn) delete_fluid_synth(syn);
    if (set) delete_fluid_settings(set);
done:
    free(l);
    free(r);
    free(events);
    aria_score_free(&s);
    if (rc) {
        free(pcm);
        return rc;
    }
    info.music_s = music_s;
    info.seconds = (double)frames / o.sample_rate;
    info.frames = frames;
    info.soundfont = sf;
    if (info_out) *info_out = info;
    *pcm_out = pcm;
    *frames_out = frames;
    return ARIA_OK;
}

#else /* no FluidSynth */

int aria_render_midi(const aria_midi *m, const aria_render_opts *opts, int16_t **pcm_out, size_t *frames_out,
                     aria_render_info *info_out, aria_error *err) {
    (void)m, (void)opts, (void)info_out;
    *pcm_out = NULL;
    *frames_out = 0;
    return aria_fail(err, ARIA_ERR_ARG, "this aria was built without FluidSynth: install it (Debian: sudo apt-get "
                     "install libfluidsynth-dev) and build again (make)");
}

#endif
