/*
 * test_media.c - hearing and seeing a MIDI file: `aria render` (WAV
 * through FluidSynth) and `aria roll` (PNG piano roll), the library calls
 * and the commands.
 *
 * The fixture is built here note by note (ppq 480, so a beat of 500000 us
 * is 0.5 s): its times are known by construction, and the checks follow
 * from them and from the WAV and PNG format definitions: the WAV is
 * exactly music + tail long, it is not silent while notes sound, and a
 * slower tempo stretches it; the roll draws each note inside its own
 * pitch row between its onset and offset, in the prompt's colour before
 * --prompt-seconds and the continuation's after, the pedal in its lane;
 * `aria generate --render --roll` writes res_N.wav and res_N.png beside
 * each res_N.mid, the WAV being that MIDI file's rendering.
 * Rendering needs a build with FluidSynth and a General MIDI soundfont;
 * writing PNG needs libpng: without them those tests skip and say why.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aria.h"
#include "cli_helpers.h"

#ifdef HAVE_PNG
#include <png.h>
#endif

/* One track: C4 0-0.5 s (velocity 100), E4 0.5-1 s (velocity 30), G4 1-1.5 s
   (velocity 120), the sustain pedal down 0.25-0.75 s; `tempo` us per beat
   (500000: times as above; 1000000: twice as long). */
static void fixture(aria_midi *m, uint32_t tempo) {
    aria_error e = {{0}};
    cr_assert_eq(aria_midi_init(m, 1, 480), ARIA_OK);
    cr_assert_eq(aria_midi_add_track(m), ARIA_OK);
    uint8_t t[3] = {(uint8_t)(tempo >> 16), (uint8_t)(tempo >> 8), (uint8_t)tempo};
    aria_midi_event tev = {.tick = 0, .kind = ARIA_MIDI_META, .status = 0x51, .len = 3};
    cr_assert_eq(aria_midi_push(m, 0, &tev, t, &e), ARIA_OK, "%s", e.msg);
    const aria_midi_event evs[] = {
        {.tick = 0, .status = 0x90, .d1 = 60, .d2 = 100},   {.tick = 240, .status = 0xB0, .d1 = 64, .d2 = 127},
        {.tick = 480, .status = 0x80, .d1 = 60, .d2 = 0},   {.tick = 480, .status = 0x90, .d1 = 64, .d2 = 30},
        {.tick = 720, .status = 0xB0, .d1 = 64, .d2 = 0},   {.tick = 960, .status = 0x80, .d1 = 64, .d2 = 0},
        {.tick = 960, .status = 0x90, .d1 = 67, .d2 = 120}, {.tick = 1440, .status = 0x80, .d1 = 67, .d2 = 0},
    };
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++)
        cr_assert_eq(aria_midi_push(m, 0, &evs[i], NULL, &e), ARIA_OK, "%s", e.msg);
}

static void write_fixture(const char *path) {
    aria_midi m;
    aria_error e = {{0}};
    fixture(&m, 500000);
    cr_assert_eq(aria_midi_write_file(&m, path, &e), ARIA_OK, "%s", e.msg);
    aria_midi_free(&m);
}

static int run_cmd(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static size_t read_all(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
    return n;
}

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static unsigned le16(const uint8_t *p) { return p[0] | p[1] << 8; }

/* ---------------------------------------------------------------------- */
/* render                                                                 */
/* ---------------------------------------------------------------------- */

static void need_renderer(void) {
    if (!aria_render_available()) cr_skip_test("built without FluidSynth (install libfluidsynth-dev)");
    if (!aria_soundfont_default()) cr_skip_test("no General MIDI soundfont (install fluid-soundfont-gm)");
}

/* RMS of the left channel over [from, to) seconds. */
static double rms(const int16_t *pcm, int rate, double from, double to) {
    size_t a = (size_t)(from * rate), b = (size_t)(to * rate);
    double s = 0;
    for (size_t i = a; i < b; i++) s += (double)pcm[2 * i] * pcm[2 * i];
    return sqrt(s / (double)(b - a));
}

Test(render, length_is_music_plus_tail_and_notes_sound) {
    need_renderer();
    aria_midi m;
    fixture(&m, 500000);
    aria_render_opts o = aria_render_defaults();
    o.sample_rate = 22050;
    o.tail_s = 0.5;
    int16_t *pcm;
    size_t frames;
    aria_render_info info;
    aria_error e = {{0}};
    cr_assert_eq(aria_render_midi(&m, &o, &pcm, &frames, &info, &e), ARIA_OK, "%s", e.msg);
    cr_expect_float_eq(info.music_s, 1.5, 1e-9, "the last note-off is at tick 1440 = 1.5 s");
    cr_expect_eq(frames, (size_t)(2.0 * 22050), "1.5 s of music + 0.5 s tail at 22050 Hz");
    cr_expect_eq(info.frames, frames);
    cr_expect_gt(info.peak, 1000, "the notes are heard");
    for (double t = 0.05; t < 1.45; t += 0.25)
        cr_expect_gt(rms(pcm, 22050, t, t + 0.1), 30.0, "sound at %.2f s", t);
    cr_expect_lt(rms(pcm, 22050, 1.9, 2.0), rms(pcm, 22050, 1.0, 1.1), "the tail decays");
    free(pcm);
    aria_midi_free(&m);

    fixture(&m, 1000000); /* half the speed: twice as long */
    cr_assert_eq(aria_render_midi(&m, &o, &pcm, &frames, &info, &e), ARIA_OK, "%s", e.msg);
    cr_expect_float_eq(info.music_s, 3.0, 1e-9);
    cr_expect_eq(frames, (size_t)(3.5 * 22050));
    free(pcm);
    aria_midi_free(&m);
}

Test(render, the_command_writes_a_wav) {
    need_renderer();
    char dir[] = "/tmp/aria_render_XXXXXX", mid[128], wav[128], cmd[1024];
    cr_assert(mkdtemp(dir));
    snprintf(mid, sizeof mid, "%s/in.mid", dir);
    snprintf(wav, sizeof wav, "%s/out.wav", dir);
    write_fixture(mid);
    snprintf(cmd, sizeof cmd, "%s render %s -o %s --rate 16000 --tail 1 2>/dev/null", aria_bin(), mid, wav);
    cr_assert_eq(run_cmd(cmd), 0);
    uint8_t *b;
    size_t len;
    cr_assert_eq(aria_read_file(wav, &b, &len, NULL), ARIA_OK);
    cr_assert_geq(len, 44);
    cr_expect(!memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WAVEfmt ", 8) && !memcmp(b + 36, "data", 4));
    cr_expect_eq(le16(b + 20), 1, "PCM");
    cr_expect_eq(le16(b + 22), 2, "stereo");
    cr_expect_eq(le32(b + 24), 16000);
    cr_expect_eq(le16(b + 34), 16);
    cr_expect_eq(le32(b + 40), (uint32_t)(2.5 * 16000) * 4, "1.5 s + 1 s tail, 4 bytes a frame");
    cr_expect_eq(len, 44 + le32(b + 40));
    cr_expect_eq(le32(b + 4), len - 8);
    free(b);

    /* the default name: IN with .wav */
    snprintf(cmd, sizeof cmd, "%s render %s 2>/dev/null", aria_bin(), mid);
    cr_assert_eq(run_cmd(cmd), 0);
    snprintf(wav, sizeof wav, "%s/in.wav", dir);
    cr_expect_eq(access(wav, F_OK), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    run_cmd(cmd);
}

Test(render, bad_soundfont_and_usage) {
    char dir[] = "/tmp/aria_render_XXXXXX", mid[128], wav[128], sf[128], errf[160], cmd[1024], msg[2048];
    cr_assert(mkdtemp(dir));
    snprintf(mid, sizeof mid, "%s/in.mid", dir);
    snprintf(wav, sizeof wav, "%s/out.wav", dir);
    snprintf(sf, sizeof sf, "%s/fake.sf2", dir);
    snprintf(errf, sizeof errf, "%s/err.txt", dir);
    write_fixture(mid);
    cr_assert_eq(aria_write_file_atomic(sf, "not a soundfont", 15, NULL), ARIA_OK);
    snprintf(cmd, sizeof cmd, "%s render %s -o %s --soundfont %s 2>%s", aria_bin(), mid, wav, sf, errf);
    cr_expect_eq(run_cmd(cmd), 1);
    read_all(errf, msg, sizeof msg);
    if (aria_render_available()) {
        cr_expect(strstr(msg, sf) && strstr(msg, "not a SoundFont"), "%s", msg);
    } else {
        cr_expect(strstr(msg, "without FluidSynth") && strstr(msg, "libfluidsynth-dev"), "%s", msg);
    }
    cr_expect(strchr(msg, '\n') == msg + strlen(msg) - 1, "one line: %s", msg);
    cr_expect_neq(access(wav, F_OK), 0, "no WAV is left behind");
    snprintf(cmd, sizeof cmd, "%s render %s --soundfont %s/none.sf2 -o %s 2>%s", aria_bin(), mid, dir, wav, errf);
    cr_expect_eq(run_cmd(cmd), 1);
    cr_expect_neq(access(wav, F_OK), 0);
    snprintf(cmd, sizeof cmd, "%s render %s --gain 0 2>/dev/null", aria_bin(), mid);
    cr_expect_eq(run_cmd(cmd), 2);
    snprintf(cmd, sizeof cmd, "%s render 2>/dev/null", aria_bin());
    cr_expect_eq(run_cmd(cmd), 2);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    run_cmd(cmd);
}

Test(render, wav_writer_layout) {
    char path[] = "/tmp/aria_wav_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    const int16_t pcm[6] = {1, -1, 32767, -32768, 256, 0};
    aria_error e = {{0}};
    cr_assert_eq(aria_wav_write(path, pcm, 3, 2, 8000, &e), ARIA_OK, "%s", e.msg);
    uint8_t *b;
    size_t len;
    cr_assert_eq(aria_read_file(path, &b, &len, NULL), ARIA_OK);
    cr_assert_eq(len, 44 + 12);
    cr_expect_eq(le32(b + 28), 8000 * 4, "byte rate");
    cr_expect_eq(le16(b + 32), 4, "block align");
    cr_expect_eq(le32(b + 40), 12);
    for (int i = 0; i < 6; i++) cr_expect_eq((int16_t)le16(b + 44 + 2 * i), pcm[i]);
    free(b);
    unlink(path);
}

/* ---------------------------------------------------------------------- */
/* roll                                                                   */
/* ---------------------------------------------------------------------- */

static const uint8_t *px(const aria_roll *r, int x, int y) {
    cr_assert(x >= 0 && y >= 0 && x < r->width && y < r->height, "(%d, %d) outside %dx%d", x, y, r->width, r->height);
    return r->rgb + ((size_t)y * (size_t)r->width + (size_t)x) * 3;
}

static int is_blue(const uint8_t *p) { return p[2] > p[0] + 40; }
static int is_orange(const uint8_t *p) { return p[0] > p[2] + 40; }
static int is_grey(const uint8_t *p) { return abs(p[0] - p[2]) < 12 && abs(p[0] - p[1]) < 12; }

/* Middle of note `pitch` at time t (seconds). */
static const uint8_t *note_px(const aria_roll *r, int pitch, double t) {
    return px(r, aria_roll_x(r, t), aria_roll_y(r, pitch) + r->row_h / 2 - 1);
}

static void draw_fixture(aria_roll *r, int width, double prompt_s) {
    aria_midi m;
    aria_score s;
    aria_error e = {{0}};
    fixture(&m, 500000);
    cr_assert_eq(aria_score_from_midi(&s, &m, &e), ARIA_OK, "%s", e.msg);
    s.exact_timing = 1;
    aria_roll_opts o = aria_roll_defaults();
    o.width = width;
    o.prompt_s = prompt_s;
    cr_assert_eq(aria_roll_draw(&s, &o, r, &e), ARIA_OK, "%s", e.msg);
    aria_score_free(&s);
    aria_midi_free(&m);
}

Test(roll, notes_are_drawn_where_they_sound) {
    aria_roll r;
    draw_fixture(&r, 600, -1);
    cr_expect_eq(r.width, 600);
    cr_expect_gt(r.height, r.pedal_top + r.pedal_h, "the time axis is below the pedal lane");
    cr_expect_float_eq(r.seconds, 1.5, 1e-9);
    cr_expect_eq(r.pitch_lo, 60, "C4..G4 widen to whole octaves, at least two");
    cr_expect_eq(r.pitch_hi, 83);
    cr_expect_eq(aria_roll_x(&r, 0), r.x0);
    cr_expect_leq(aria_roll_x(&r, 1.5), r.width - 1);
    cr_expect(is_blue(note_px(&r, 60, 0.25)), "C4 sounds at 0.25 s");
    cr_expect(is_blue(note_px(&r, 64, 0.75)), "E4 at 0.75 s");
    cr_expect(is_blue(note_px(&r, 67, 1.25)), "G4 at 1.25 s");
    cr_expect(!is_blue(note_px(&r, 60, 0.75)), "C4 has ended at 0.75 s");
    cr_expect(!is_blue(note_px(&r, 67, 0.25)), "G4 has not started at 0.25 s");
    cr_expect(!is_blue(note_px(&r, 62, 0.25)) && !is_orange(note_px(&r, 62, 0.25)), "nothing on D4");
    /* velocity as shade: the soft E4 (30) is paler than the loud G4 (120) */
    const uint8_t *soft = note_px(&r, 64, 0.8), *loud = note_px(&r, 67, 1.3);
    cr_expect_gt(soft[0] + soft[1] + soft[2], loud[0] + loud[1] + loud[2]);
    /* the pedal lane: dark while down (0.25-0.75 s), light after */
    int lane_y = r.pedal_top + r.pedal_h / 2;
    const uint8_t *down = px(&r, aria_roll_x(&r, 0.5), lane_y), *up = px(&r, aria_roll_x(&r, 1.2), lane_y);
    cr_expect(is_grey(down) && is_grey(up) && down[0] + 60 < up[0], "pedal %d vs %d", down[0], up[0]);
    aria_roll_free(&r);
}

Test(roll, prompt_and_continuation_colours) {
    aria_roll r;
    draw_fixture(&r, 600, 0.75);
    cr_expect(is_blue(note_px(&r, 60, 0.25)), "C4 starts before 0.75 s: prompt");
    cr_expect(is_blue(note_px(&r, 64, 0.9)), "E4 starts at 0.5 s: prompt, to its end");
    cr_expect(is_orange(note_px(&r, 67, 1.25)), "G4 starts at 1 s: continuation");
    aria_roll_free(&r);
    aria_error e = {{0}};
    aria_roll_opts o = aria_roll_defaults();
    o.width = 50;
    aria_score s = {0};
    cr_expect_eq(aria_roll_draw(&s, &o, &r, &e), ARIA_ERR_ARG);
    cr_expect(strstr(e.msg, "width") != NULL, "%s", e.msg);
}

#ifdef HAVE_PNG
/* The PNG's pixels, read back with libpng. */
static uint8_t *read_png(const char *path, int *w, int *h) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    cr_assert(png_image_begin_read_from_file(&img, path), "%s", img.message);
    img.format = PNG_FORMAT_RGB;
    uint8_t *buf = malloc(PNG_IMAGE_SIZE(img));
    cr_assert(png_image_finish_read(&img, NULL, buf, 0, NULL), "%s", img.message);
    *w = (int)img.width;
    *h = (int)img.height;
    return buf;
}
#endif

Test(roll, the_command_writes_a_png) {
    if (!aria_png_available()) cr_skip_test("built without libpng (install libpng-dev)");
#ifdef HAVE_PNG
    char dir[] = "/tmp/aria_roll_XXXXXX", mid[128], png[128], cmd[1024];
    cr_assert(mkdtemp(dir));
    snprintf(mid, sizeof mid, "%s/in.mid", dir);
    snprintf(png, sizeof png, "%s/out.png", dir);
    write_fixture(mid);
    snprintf(cmd, sizeof cmd, "%s roll %s -o %s --width 640 --prompt-seconds 0.75", aria_bin(), mid, png);
    cr_assert_eq(run_cmd(cmd), 0);
    int w, h;
    uint8_t *pix = read_png(png, &w, &h);
    aria_roll r;
    draw_fixture(&r, 640, 0.75);
    cr_expect_eq(w, 640);
    cr_expect_eq(h, r.height);
    cr_expect_eq(memcmp(pix, r.rgb, (size_t)w * (size_t)h * 3), 0, "the file holds the picture drawn");
    free(pix);
    aria_roll_free(&r);
    snprintf(cmd, sizeof cmd, "%s roll %s --width 10 2>/dev/null", aria_bin(), mid);
    cr_expect_eq(run_cmd(cmd), 2);
    snprintf(cmd, sizeof cmd, "%s roll %s/missing.mid -o %s/x.png 2>/dev/null", aria_bin(), dir, dir);
    cr_expect_eq(run_cmd(cmd), 1);
    snprintf(png, sizeof png, "%s/x.png", dir);
    cr_expect_neq(access(png, F_OK), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    run_cmd(cmd);
#endif
}

/* ---------------------------------------------------------------------- */
/* aria generate --render --roll                                          */
/* ---------------------------------------------------------------------- */

Test(render, generate_writes_wav_and_png_beside_the_midi) {
    need_renderer();
    if (!aria_png_available()) cr_skip_test("built without libpng (install libpng-dev)");
    char dir[] = "/tmp/aria_gen_media_XXXXXX", cmd[1024], p[160];
    cr_assert(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "%s init --config tiny -o %s/tiny.safetensors 2>/dev/null", aria_bin(), dir);
    cr_assert_eq(run_cmd(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "%s generate --model %s/tiny.safetensors --prompt tests/data/vectors/waltz/waltz.mid --max-new 24 "
             "--seed 3 --variations 2 --render --roll --out-dir %s/out 2>/dev/null",
             aria_bin(), dir, dir);
    cr_assert_eq(run_cmd(cmd), 0);
    for (int v = 1; v <= 2; v++) {
        const char *ext[] = {"mid", "wav", "png"};
        for (int k = 0; k < 3; k++) {
            snprintf(p, sizeof p, "%s/out/res_%d.%s", dir, v, ext[k]);
            cr_expect_eq(access(p, F_OK), 0, "%s", p);
        }
        /* the WAV is the MIDI file's music + the 2 s tail */
        snprintf(p, sizeof p, "%s/out/res_%d.mid", dir, v);
        aria_midi m = {0};
        aria_error e = {{0}};
        cr_assert_eq(aria_midi_read_file(&m, p, &e), ARIA_OK, "%s", e.msg);
        int16_t *pcm;
        size_t frames;
        aria_render_info info;
        cr_assert_eq(aria_render_midi(&m, NULL, &pcm, &frames, &info, &e), ARIA_OK, "%s", e.msg);
        free(pcm);
        aria_midi_free(&m);
        snprintf(p, sizeof p, "%s/out/res_%d.wav", dir, v);
        uint8_t *b;
        size_t len;
        cr_assert_eq(aria_read_file(p, &b, &len, NULL), ARIA_OK);
        cr_expect_eq(le32(b + 40), frames * 4, "res_%d.wav holds the rendering of res_%d.mid", v, v);
        free(b);
    }
    snprintf(cmd, sizeof cmd, "%s generate --model %s/tiny.safetensors --prompt tests/data/vectors/waltz/waltz.mid "
             "--soundfont %s/none.sf2 --render --out-dir %s/out2 2>/dev/null", aria_bin(), dir, dir, dir);
    cr_expect_eq(run_cmd(cmd), 1, "a bad soundfont is found before generating");
    snprintf(p, sizeof p, "%s/out2", dir);
    cr_expect_neq(access(p, F_OK), 0, "nothing was written");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    run_cmd(cmd);
}
