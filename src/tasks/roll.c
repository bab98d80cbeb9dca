/*
 * roll.c - a MIDI file as a picture (`aria roll`, `aria generate --roll`):
 * a piano roll drawn into an RGB buffer, and a PNG writer (libpng).
 *
 * The picture, top to bottom: the roll (one row per pitch over the played
 * range widened to whole octaves, at least two; rows of black keys
 * shaded, a line under every C, labelled C2, C3 ...), the sustain pedal
 * lane (grey where the pedal is down), and a time axis in seconds with
 * ticks at a round step. Time runs left to right from 0 to the end of the
 * last note or pedal release, over the width asked for. A note is a bar
 * from its onset to its offset in its pitch's row; its velocity sets the
 * shade (pale when soft, full colour when loud), and its first column is
 * drawn at full colour so repeated notes stay apart. With a prompt length
 * the notes that start before it are blue and the rest orange, with a
 * dashed line at the boundary; without one every note is blue.
 *
 * Times come from the score's tick->ms conversion, exact by default for a
 * picture (the caller sets score->exact_timing). The geometry is returned
 * with the pixels so that a caller (and the tests) can find where a note
 * or a time is drawn. Labels use a built-in 5x7 pixel font, so nothing
 * but libpng is needed, and only to write the file: it is opened then
 * (src/base/dynlib.h), not linked, so other commands never load it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aria.h"
#include "base/util.h"

#include "base/dynlib.h"

#ifdef HAVE_PNG
#include <png.h>
#include <pthread.h>

/* The soname the Makefile's probe linked against, else libpng's own
   naming for the headers' version (libpng16.so.16). */
#ifndef ARIA_PNG_SONAME
#define ARIA_PNG_SONAME "libpng" ARIA_DL_STR(PNG_LIBPNG_VER_DLLNUM) ".so." ARIA_DL_STR(PNG_LIBPNG_VER_SONUM)
#endif

/* Every libpng function called below (png_jmpbuf is png_set_longjmp_fn). */
#define PNG_FNS(X) \
    X(png_create_write_struct) X(png_create_info_struct) X(png_destroy_write_struct) \
    X(png_get_io_ptr) X(png_set_longjmp_fn) X(png_longjmp) \
    X(png_set_write_fn) X(png_set_IHDR) X(png_write_info) \
    X(png_write_row) X(png_write_end)

ARIA_DL_TABLE(pg, PNG_FNS, "libpng", ARIA_PNG_SONAME)

/* From here on, the calls go through the table. */
#define png_create_write_struct pg.png_create_write_struct
#define png_create_info_struct pg.png_create_info_struct
#define png_destroy_write_struct pg.png_destroy_write_struct
#define png_get_io_ptr pg.png_get_io_ptr
#define png_set_longjmp_fn pg.png_set_longjmp_fn
#define png_longjmp pg.png_longjmp
#define png_set_write_fn pg.png_set_write_fn
#define png_set_IHDR pg.png_set_IHDR
#define png_write_info pg.png_write_info
#define png_write_row pg.png_write_row
#define png_write_end pg.png_write_end
#endif

aria_roll_opts aria_roll_defaults(void) {
    aria_roll_opts o = {0};
    o.width = 1200;
    o.prompt_s = -1.0;
    return o;
}

void aria_roll_free(aria_roll *r) {
    if (!r) return;
    free(r->rgb);
    r->rgb = NULL;
}

/* ---------------------------------------------------------------------- */
/* Drawing primitives                                                     */
/* ---------------------------------------------------------------------- */

typedef struct {
    uint8_t r, g, b;
} rgb_t;

static const rgb_t WHITE = {255, 255, 255}, BLACK_KEY_ROW = {238, 240, 244}, C_LINE = {196, 200, 208},
                   FRAME = {120, 124, 132}, TEXT = {60, 60, 66}, PEDAL_BG = {236, 236, 236},
                   PEDAL_ON = {110, 110, 110};
static const rgb_t PROMPT_COLOUR = {32, 92, 200}, CONT_COLOUR = {232, 112, 16};

static void put(aria_roll *r, int x, int y, rgb_t c) {
    if (x < 0 || y < 0 || x >= r->width || y >= r->height) return;
    uint8_t *p = r->rgb + ((size_t)y * (size_t)r->width + (size_t)x) * 3;
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
}

static void fill(aria_roll *r, int x0, int y0, int x1, int y1, rgb_t c) { /* [x0, x1) x [y0, y1) */
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) put(r, x, y, c);
}

/* 5x7 glyphs, one byte per row, bit 4 the leftmost column. */
typedef struct {
    char ch;
    uint8_t rows[7];
} glyph;

static const glyph FONT[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'s', {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E}}, {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'p', {0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10}}, {'e', {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E}},
    {'d', {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}},
};

/* Draws text with its top-left corner at (x, y); returns its width. */
static int text(aria_roll *r, int x, int y, const char *s, rgb_t c) {
    int x0 = x;
    for (; *s; s++, x += 6) {
        const glyph *g = NULL;
        for (size_t i = 0; i < sizeof FONT / sizeof *FONT; i++)
            if (FONT[i].ch == *s) g = &FONT[i];
        if (!g) continue;
        for (int row = 0; row < 7; row++)
            for (int col = 0; col < 5; col++)
                if (g->rows[row] >> (4 - col) & 1) put(r, x + col, y + row, c);
    }
    return x - x0;
}

static int text_width(const char *s) { return 6 * (int)strlen(s) - 1; }

/* c mixed with white: amount 0 gives white, 1 gives c. */
static rgb_t shade(rgb_t c, double amount) {
    rgb_t o;
    o.r = (uint8_t)lrint(255 - (255 - c.r) * amount);
    o.g = (uint8_t)lrint(255 - (255 - c.g) * amount);
    o.b = (uint8_t)lrint(255 - (255 - c.b) * amount);
    return o;
}

static int is_black_key(int pitch) {
    int pc = pitch % 12;
    return pc == 1 || pc == 3 || pc == 6 || pc == 8 || pc == 10;
}

/* A round tick step (seconds) that keeps labels at least `min_px` apart. */
static double tick_step(double px_per_s, int min_px) {
    static const double steps[] = {0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++)
        if (steps[i] * px_per_s >= min_px) return steps[i];
    return 7200;
}

/* ---------------------------------------------------------------------- */
/* The roll                                                               */
/* ---------------------------------------------------------------------- */

enum { MARGIN = 6, LABEL_W = 24, LANE_GAP = 4, LANE_H = 10, AXIS_H = 16, ROLL_TARGET_H = 440 };

int aria_roll_draw(const aria_score *s, const aria_roll_opts *opts, aria_roll *r, aria_error *err) {
    aria_roll_opts o = opts ? *opts : aria_roll_defaults();
    memset(r, 0, sizeof *r);
    if (o.width < 200 || o.width > 20000) return aria_fail(err, ARIA_ERR_ARG, "width %d px is outside 200..20000", o.width);

    /* extent in time and pitch */
    double end_s = 0;
    int lo = 127, hi = 0;
    for (size_t i = 0; i < s->n_notes; i++) {
        double e = aria_score_tick_to_ms(s, s->notes[i].end) / 1e3;
        if (e > end_s) end_s = e;
        if (s->notes[i].pitch < lo) lo = s->notes[i].pitch;
        if (s->notes[i].pitch > hi) hi = s->notes[i].pitch;
    }
    for (size_t i = 0; i < s->n_pedals; i++) {
        double e = aria_score_tick_to_ms(s, s->pedals[i].tick) / 1e3;
        if (e > end_s) end_s = e;
    }
    if (s->n_notes == 0) lo = 60, hi = 71;
    if (end_s <= 0) end_s = 1;
    if (end_s > 24 * 3600.0) return aria_fail(err, ARIA_ERR_ARG, "the music lasts %.0f s; at most a day is drawn", end_s);
    lo -= lo % 12;
    hi += 11 - hi % 12;
    if (hi - lo + 1 < 24) hi = lo + 23 > 127 ? 127 : lo + 23;
    if (hi - lo + 1 < 24) lo = hi - 23;
    int rows = hi - lo + 1;
    int row_h = ROLL_TARGET_H / rows;
    if (row_h < 2) row_h = 2;
    if (row_h > 10) row_h = 10;

    r->width = o.width;
    r->pitch_lo = lo;
    r->pitch_hi = hi;
    r->row_h = row_h;
    r->top = MARGIN;
    r->x0 = MARGIN + LABEL_W;
    r->seconds = end_s;
    r->px_per_s = (double)(o.width - r->x0 - MARGIN - 1) / end_s;
    int roll_bottom = r->top + rows * row_h;
    r->pedal_top = roll_bottom + LANE_GAP;
    r->pedal_h = LANE_H;
    r->height = r->pedal_top + LANE_H + AXIS_H + MARGIN;
    r->rgb = malloc((size_t)r->width * (size_t)r->height * 3);
    if (!r->rgb) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    int x_end = r->x0 + (int)lrint(end_s * r->px_per_s) + 1;

    fill(r, 0, 0, r->width, r->height, WHITE);
    for (int p = lo; p <= hi; p++) { /* key rows, C lines and labels */
        int y = r->top + (hi - p) * row_h;
        if (is_black_key(p)) fill(r, r->x0, y, x_end, y + row_h, BLACK_KEY_ROW);
        if (p % 12 == 0) {
            fill(r, r->x0, y + row_h - 1, x_end, y + row_h, C_LINE);
            char lab[8];
            snprintf(lab, sizeof lab, "C%d", p / 12 - 1);
            int ty = y + row_h - 7;
            if (ty < r->top) ty = r->top;
            text(r, r->x0 - 3 - text_width(lab), ty, lab, TEXT);
        }
    }

    for (size_t i = 0; i < s->n_notes; i++) { /* notes */
        const aria_note *n = &s->notes[i];
        double on = aria_score_tick_to_ms(s, n->start) / 1e3, off = aria_score_tick_to_ms(s, n->end) / 1e3;
        int xa = r->x0 + (int)lrint(on * r->px_per_s), xb = r->x0 + (int)lrint(off * r->px_per_s);
        if (xb <= xa) xb = xa + 1;
        int y = r->top + (hi - n->pitch) * row_h;
        rgb_t c = o.prompt_s >= 0 && on >= o.prompt_s ? CONT_COLOUR : PROMPT_COLOUR;
        fill(r, xa, y, xb, y + row_h - (row_h > 3), shade(c, 0.25 + 0.75 * n->velocity / 127.0));
        fill(r, xa, y, xa + 1, y + row_h - (row_h > 3), c);
    }

    /* sustain pedal: a bar from each press to the release of its channel
       (or to the end) */
    fill(r, r->x0, r->pedal_top, x_end, r->pedal_top + LANE_H, PEDAL_BG);
    text(r, r->x0 - 3 - text_width("ped"), r->pedal_top + 1, "ped", TEXT);
    double down_since[16];
    for (int c = 0; c < 16; c++) down_since[c] = -1;
    for (size_t i = 0; i <= s->n_pedals; i++) {
        int last = i == s->n_pedals;
        double t = last ? end_s : aria_score_tick_to_ms(s, s->pedals[i].tick) / 1e3;
        for (int c = 0; c < 16; c++) {
            if (last ? down_since[c] < 0 : (c != (s->pedals[i].channel & 15))) continue;
            if (!last && s->pedals[i].on) {
                if (down_since[c] < 0) down_since[c] = t;
                continue;
            }
            if (down_since[c] < 0) continue;
            int xa = aria_roll_x(r, down_since[c]), xb = aria_roll_x(r, t);
            fill(r, xa, r->pedal_top + 2, xb > xa ? xb : xa + 1, r->pedal_top + LANE_H - 2, PEDAL_ON);
            down_since[c] = -1;
        }
    }

    /* frame, prompt boundary, time axis */
    fill(r, r->x0 - 1, r->top, r->x0, r->pedal_top + LANE_H, FRAME);
    fill(r, r->x0 - 1, r->pedal_top + LANE_H, x_end, r->pedal_top + LANE_H + 1, FRAME);
    if (o.prompt_s >= 0 && o.prompt_s <= end_s) {
        int x = r->x0 + (int)lrint(o.prompt_s * r->px_per_s);
        for (int y = r->top; y < r->pedal_top + LANE_H; y++)
            if ((y / 3) % 2 == 0) put(r, x, y, TEXT);
    }
    double step = tick_step(r->px_per_s, 48);
    int axis_y = r->pedal_top + LANE_H + 1;
    for (int k = 0; k * step <= end_s + 1e-9; k++) {
        double t = k * step;
        int x = r->x0 + (int)lrint(t * r->px_per_s);
        fill(r, x, axis_y, x + 1, axis_y + 3, FRAME);
        char lab[32];
        if (step < 1) snprintf(lab, sizeof lab, "%.1fs", t);
        else snprintf(lab, sizeof lab, "%.0fs", t);
        int w = text_width(lab), tx = x - w / 2;
        if (tx < r->x0 - 1) tx = r->x0 - 1;
        if (tx + w >= r->width) tx = r->width - 1 - w;
        text(r, tx, axis_y + 5, lab, TEXT);
    }
    return ARIA_OK;
}

int aria_roll_x(const aria_roll *r, double seconds) { return r->x0 + (int)lrint(seconds * r->px_per_s); }

int aria_roll_y(const aria_roll *r, int pitch) { return r->top + (r->pitch_hi - pitch) * r->row_h; }

/* ---------------------------------------------------------------------- */
/* PNG                                                                    */
/* ---------------------------------------------------------------------- */

int aria_dl_state_png(const char **file, const char **why) {
#ifdef HAVE_PNG
    *file = ARIA_PNG_SONAME;
    *why = pg_why;
    return pg_ready();
#else
    *file = *why = "";
    return -1;
#endif
}

int aria_png_available(void) {
#ifdef HAVE_PNG
    return pg_ready();
#else
    return 0;
#endif
}

#ifdef HAVE_PNG

/* libpng reports errors through a callback that must not return; the
   write goes to memory, so the only failure is running out of it. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} membuf;

static void png_to_mem(png_structp png, png_bytep data, png_size_t len) {
    membuf *b = png_get_io_ptr(png);
    if (b->oom) return;
    if (ARIA_GROW(b->p, b->cap, b->n + len)) {
        b->oom = 1;
        return;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
}

static void png_flush_nothing(png_structp png) { (void)png; }

static void png_quiet(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void png_fail(png_structp png, png_const_charp msg) {
    (void)msg;
    png_longjmp(png, 1);
}

/* Separate from aria_png_write so that no local that setjmp may clobber
   is read after a longjmp. */
static int encode(const uint8_t *rgb, int w, int h, membuf *out) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_fail, png_quiet);
    if (!png) return -1;
    png_infop info = png_create_info_struct(png);
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_set_write_fn(png, out, png_to_mem, png_flush_nothing);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * (size_t)w * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int aria_png_write(const char *path, const uint8_t *rgb, int width, int height, aria_error *err) {
    if (width < 1 || height < 1) return aria_fail(err, ARIA_ERR_ARG, "empty image");
    if (!pg_ready())
        return aria_fail(err, ARIA_ERR_ARG, "%s: install it (Debian: sudo apt-get install libpng16-16)", pg_why);
    membuf b = {0};
    if (encode(rgb, width, height, &b) != 0 || b.oom) {
        free(b.p);
        return aria_fail(err, ARIA_ERR_NOMEM, "out of memory while encoding the PNG");
    }
    int rc = aria_write_file_atomic(path, b.p, b.n, err);
    free(b.p);
    return rc;
}

#else

int aria_png_write(const char *path, const uint8_t *rgb, int width, int height, aria_error *err) {
    (void)path, (void)rgb, (void)width, (void)height;
    return aria_fail(err, ARIA_ERR_ARG, "this aria was built without libpng: install it (Debian: sudo apt-get "
                     "install libpng-dev) and build again (make)");
}

#endif
