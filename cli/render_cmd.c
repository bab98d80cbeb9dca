/*
 * render_cmd.c - `aria render` (MIDI -> WAV through FluidSynth) and `aria
 * roll` (MIDI -> PNG piano roll), and the same two steps for `aria
 * generate --render --roll`. Options, default output names and messages
 * only; the work is in src/tasks/render.c and src/tasks/roll.c.
 *
 * Exit status: 0 written; 1 bad input (an unreadable MIDI file, no or a
 * bad soundfont, a build without FluidSynth or libpng, an output that
 * cannot be written: one line naming the file, nothing left behind);
 * 2 bad usage.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aria.h"
#include "cli.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* IN with its extension replaced by `ext` (".wav"). */
static void default_out(const char *in, const char *ext, char *out, size_t cap) {
    const char *slash = strrchr(in, '/'), *dot = strrchr(in, '.');
    int stem = dot && (!slash || dot > slash + 1) ? (int)(dot - in) : (int)strlen(in);
    snprintf(out, cap, "%.*s%s", stem, in, ext);
}

int render_ready(const char **soundfont) {
    aria_error err = {{0}};
    if (!aria_render_available()) {
        aria_render_midi(NULL, NULL, &(int16_t *){0}, &(size_t){0}, NULL, &err);
        fprintf(stderr, "aria: %s\n", err.msg);
        return -1;
    }
    if (!*soundfont && !(*soundfont = aria_soundfont_default())) {
        fprintf(stderr, "aria: no General MIDI soundfont found (looked in /usr/share/sounds/sf2 and sf3): "
                        "install one with `sudo apt-get install fluid-soundfont-gm`, or give --soundfont FILE.sf2\n");
        return -1;
    }
    if (aria_soundfont_check(*soundfont, &err) != ARIA_OK) {
        fail_file(*soundfont, err.msg);
        return -1;
    }
    return 0;
}

int render_wav(const char *mid, const char *wav, const aria_render_opts *opts) {
    aria_render_opts o = *opts;
    aria_error err = {{0}};
    if (render_ready(&o.soundfont)) return -1;
    aria_midi m = {0};
    if (aria_midi_read_file(&m, mid, &err) != ARIA_OK) {
        fail_file(mid, err.msg);
        return -1;
    }
    int16_t *pcm = NULL;
    size_t frames = 0;
    aria_render_info info;
    double t0 = now_s();
    int rc = aria_render_midi(&m, &o, &pcm, &frames, &info, &err);
    double dt = now_s() - t0;
    aria_midi_free(&m);
    if (rc != ARIA_OK) {
        fail_file(mid, err.msg);
        return -1;
    }
    rc = aria_wav_write(wav, pcm, frames, 2, o.sample_rate, &err);
    free(pcm);
    if (rc != ARIA_OK) {
        fail_file(wav, err.msg);
        return -1;
    }
    fprintf(stderr, "aria: %s: %.1f s (%.1f s of music + %.1f s tail), %d Hz stereo, peak %.1f dBFS, "
                    "%.1f s of audio per second\n",
            wav, info.seconds, info.music_s, info.seconds - info.music_s, o.sample_rate,
            info.peak > 0 ? 20 * log10(info.peak / 32767.0) : -INFINITY, dt > 0 ? info.seconds / dt : 0.0);
    if (info.clipped)
        fprintf(stderr, "aria: warning: %s: %zu samples clipped; a lower --gain (now %g) avoids it\n", wav,
                info.clipped, o.gain);
    return 0;
}

int roll_png(const char *mid, const char *png, const aria_roll_opts *o) {
    aria_error err = {{0}};
    if (!aria_png_available()) {
        aria_png_write(png, NULL, 0, 0, &err);
        fprintf(stderr, "aria: %s\n", err.msg);
        return -1;
    }
    aria_score s;
    if (load_score(mid, 1, 0, &s)) return -1;
    aria_roll r;
    int rc = aria_roll_draw(&s, o, &r, &err);
    aria_score_free(&s);
    if (rc != ARIA_OK) {
        fail_file(mid, err.msg);
        return -1;
    }
    rc = aria_png_write(png, r.rgb, r.width, r.height, &err);
    if (rc != ARIA_OK) fail_file(png, err.msg);
    aria_roll_free(&r);
    return rc == ARIA_OK ? 0 : -1;
}

/* ---------------------------------------------------------------------- */
/* aria render                                                            */
/* ---------------------------------------------------------------------- */

static void help_render(void) {
    puts("usage: aria render IN.mid [-o OUT.wav] [options]\n"
         "\n"
         "Renders a MIDI file to a 16-bit stereo WAV through FluidSynth, offline (no sound\n"
         "card): every note, pedal and controller of every track, timed by the tempo map.\n"
         "The WAV lasts as long as the music plus a release tail.\n"
         "\n"
         "options:\n"
         "  -o, --output FILE   the WAV to write (default: IN with .wav)\n"
         "  --soundfont FILE    a .sf2/.sf3 soundfont (default: the first General MIDI one\n"
         "                      found: /usr/share/sounds/sf2/FluidR3_GM.sf2 from Debian's\n"
         "                      fluid-soundfont-gm, then default-GM.sf2/.sf3 and others)\n"
         "  --rate HZ           sample rate (default 44100)\n"
         "  --gain G            FluidSynth's master gain, (0, 10] (default 0.6)\n"
         "  --tail S            seconds rendered after the last event (default 2)\n"
         "  -h, --help          this help");
}

int cmd_render(int argc, char **argv) {
    aria_render_opts o = aria_render_defaults();
    const char *out = NULL;
    static const struct option lo[] = {{"output", required_argument, 0, 'o'}, {"soundfont", required_argument, 0, 's'},
                                       {"rate", required_argument, 0, 'r'},   {"gain", required_argument, 0, 'g'},
                                       {"tail", required_argument, 0, 't'},   {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    long long v;
    double d;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 's': o.soundfont = optarg; break;
        case 'r':
            if (parse_long(optarg, 8000, 192000, &v)) return usage_error("render", "--rate wants 8000..192000 Hz, got '%s'", optarg);
            o.sample_rate = (int)v;
            break;
        case 'g':
            if (parse_double(optarg, &d) || !(d > 0 && d <= 10)) return usage_error("render", "--gain wants a number in (0, 10], got '%s'", optarg);
            o.gain = (float)d;
            break;
        case 't':
            if (parse_double(optarg, &d) || !(d >= 0 && d <= 60)) return usage_error("render", "--tail wants 0..60 seconds, got '%s'", optarg);
            o.tail_s = d;
            break;
        case 'h': help_render(); return 0;
        default: return option_error("render", argv, "o:h");
        }
    }
    if (optind != argc - 1) return usage_error("render", "expected one IN.mid");
    const char *in = argv[optind];
    char def[4096];
    if (!out) {
        default_out(in, ".wav", def, sizeof def);
        out = def;
    }
    return render_wav(in, out, &o) ? EXIT_INPUT : 0;
}

/* ---------------------------------------------------------------------- */
/* aria roll                                                              */
/* ---------------------------------------------------------------------- */

static void help_roll(void) {
    puts("usage: aria roll IN.mid [-o OUT.png] [options]\n"
         "\n"
         "Draws a piano roll of a MIDI file as a PNG: pitch (rows, C octaves labelled)\n"
         "against seconds (a time axis below), velocity as shade (pale = soft), the\n"
         "sustain pedal as a lane under the roll. Times follow the tempo map exactly.\n"
         "\n"
         "options:\n"
         "  -o, --output FILE      the PNG to write (default: IN with .png)\n"
         "  --width PX             picture width, 200..20000 (default 1200)\n"
         "  --prompt-seconds S     notes starting before S seconds are the prompt (blue),\n"
         "                         the rest the continuation (orange), a dashed line\n"
         "                         between (default: every note blue)\n"
         "  -h, --help             this help");
}

int cmd_roll(int argc, char **argv) {
    aria_roll_opts o = aria_roll_defaults();
    const char *out = NULL;
    static const struct option lo[] = {{"output", required_argument, 0, 'o'}, {"width", required_argument, 0, 'w'},
                                       {"prompt-seconds", required_argument, 0, 'p'}, {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    long long v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'w':
            if (parse_long(optarg, 200, 20000, &v)) return usage_error("roll", "--width wants 200..20000 pixels, got '%s'", optarg);
            o.width = (int)v;
            break;
        case 'p':
            if (parse_double(optarg, &o.prompt_s) || !(o.prompt_s >= 0))
                return usage_error("roll", "--prompt-seconds wants a number >= 0, got '%s'", optarg);
            break;
        case 'h': help_roll(); return 0;
        default: return option_error("roll", argv, "o:h");
        }
    }
    if (optind != argc - 1) return usage_error("roll", "expected one IN.mid");
    const char *in = argv[optind];
    char def[4096];
    if (!out) {
        default_out(in, ".png", def, sizeof def);
        out = def;
    }
    return roll_png(in, out, &o) ? EXIT_INPUT : 0;
}
