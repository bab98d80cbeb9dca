/*
 * midi.c - Standard MIDI Files: reader, builder and writer.
 *
 * Reading works in two steps over the input bytes.
 *   1. A walk over the chunk headers only (midi_scan_chunks) unwraps a RIFF
 *      "RMID" container, checks MThd, notes every MTrk chunk and skips the
 *      rest. That walk bounds all later memory: an event takes at least two
 *      bytes (a delta and one data byte under running status), so one event
 *      array ("arena") of sum(track bytes / 2) entries holds every track, and
 *      meta/sysex payloads together never exceed the track bytes. Both
 *      buffers are allocated once, so the event loop never allocates and
 *      never checks a capacity; it only checks that each read stays inside
 *      its chunk.
 *   2. One pass per MTrk chunk (midi_read_track) decodes the events. Channel
 *      messages, the bulk of any file, stay in a tight loop; meta, sysex and
 *      the rare system bytes go through midi_read_system.
 * docs/midi.md lists every malformed-input case and what the reader does
 * with it (error or warning), and where that differs from mido 1.2.10.
 *
 * Writing produces the byte layout of mido's MidiFile.save: running status
 * for channel messages, cancelled by meta and sysex events, and exactly one
 * End-of-Track per track, at the tick of the track's last event.
 *
 * Ownership: a file read here keeps all events in the arena (priv_->arena);
 * a file built with aria_midi_init/add_track/push gives every track its own
 * array. aria_midi_push on a file that was read first moves the tracks out
 * of the arena, so both kinds can be extended. A hand-filled aria_midi
 * (priv_ NULL) is treated as the second kind: malloc'd arrays per track.
 */
#include "aria.h"
#include "base/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest value a 4-byte variable-length quantity can hold. */
#define MIDI_VLQ_MAX 0x0FFFFFFFu

/* What sits behind aria_midi.priv_. */
typedef struct {
    aria_midi_event *arena; /* reader: every track's events in one block */
    size_t *ev_cap;         /* builder: capacity of tracks[i].events */
    size_t tracks_cap;      /* capacity of m->tracks and ev_cap */
    size_t data_cap;        /* capacity of m->data */
} midi_priv;

/* An MTrk chunk found by the chunk walk. */
typedef struct {
    size_t off;  /* offset of the first body byte in the input */
    size_t len;  /* body bytes present in the input */
    int cut;     /* the declared length runs past the end of the input */
} midi_chunk;

/* State of the reader over one input buffer. */
typedef struct {
    const uint8_t *buf; /* the whole input: message offsets count from here */
    aria_midi *m;
    aria_error *err;
    uint8_t *data;      /* m->data, sized for the worst case */
    size_t data_len;
} midi_reader;

/* State of the reader inside one track chunk. */
typedef struct {
    size_t index;            /* track number, counted from 0 */
    const midi_chunk *chunk;
    const uint8_t *p;        /* next byte to read */
    const uint8_t *end;      /* end of the chunk's bytes */
    const uint8_t *at;       /* start (delta time) of the current event */
    uint64_t tick;           /* absolute tick of the current event */
    unsigned running;        /* running status byte, 0 when there is none */
    aria_midi_event *ev;     /* next free slot in the arena */
} midi_track_state;

/* Outcomes of reading one event beyond "keep going". */
enum { MIDI_NEXT = 0, MIDI_EOT = 1, MIDI_STOP = 2 };

/* ---------------------------------------------------------------------- */
/* messages                                                               */
/* ---------------------------------------------------------------------- */

static void midi_warn(aria_midi *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Keeps the first ARIA_MIDI_MAX_WARNINGS texts; counts them all. */
static void midi_warn(aria_midi *m, const char *fmt, ...)
{
    if (m->n_warnings < ARIA_MIDI_MAX_WARNINGS) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m->warnings[m->n_warnings], sizeof m->warnings[0], fmt, ap);
        va_end(ap);
    }
    if (m->n_warnings < INT32_MAX) m->n_warnings++;
}

static size_t midi_offset(const midi_reader *r, const uint8_t *p)
{
    return (size_t)(p - r->buf);
}

/* A chunk id as printable text for messages ('?' for other bytes). */
static void midi_chunk_name(const uint8_t *id, char out[5])
{
    for (int i = 0; i < 4; i++) out[i] = (id[i] >= 0x20 && id[i] < 0x7F) ? (char)id[i] : '?';
    out[4] = 0;
}

static int midi_is_chunk_id(const uint8_t *id)
{
    for (int i = 0; i < 4; i++)
        if (id[i] < 0x20 || id[i] >= 0x7F) return 0;
    return 1;
}

static uint32_t midi_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static unsigned midi_be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

static uint32_t midi_le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* ---------------------------------------------------------------------- */
/* ownership                                                              */
/* ---------------------------------------------------------------------- */

void aria_midi_free(aria_midi *m)
{
    if (!m) return;
    midi_priv *pv = m->priv_;
    if (pv && pv->arena) {
        free(pv->arena);
    } else if (m->tracks) {
        for (size_t i = 0; i < m->n_tracks; i++) free(m->tracks[i].events);
    }
    free(m->tracks);
    free(m->data);
    if (pv) {
        free(pv->ev_cap);
        free(pv);
    }
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------------- */
/* reader: container and header                                           */
/* ---------------------------------------------------------------------- */

/* Finds the SMF inside a RIFF "RMID" file: the body of its "data" chunk.
   [*start, *stop) receives its range within buf. */
static int midi_unwrap_riff(const uint8_t *buf, size_t len, size_t *start, size_t *stop,
                            aria_midi *m, aria_error *err)
{
    if (len < 12)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "byte 0: truncated RIFF header (%zu bytes; need 12)", len);
    if (memcmp(buf + 8, "RMID", 4) != 0) {
        char type[5];
        midi_chunk_name(buf + 8, type);
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "byte 8: RIFF file of type '%s', not a MIDI file (RMID)", type);
    }
    size_t pos = 12;
    while (len - pos >= 8) {
        uint32_t size = midi_le32(buf + pos + 4);
        size_t body = pos + 8, left = len - body;
        if (memcmp(buf + pos, "data", 4) == 0) {
            if (size > left) {
                midi_warn(m, "byte %zu: RMID data chunk length %u runs past the end of the "
                          "file (%zu bytes left); reading what is there", pos + 4, size, left);
                size = (uint32_t)left;
            }
            *start = body;
            *stop = body + size;
            return ARIA_OK;
        }
        /* RIFF chunks are padded to an even length */
        if (size > left || (size & 1u && size == left)) break;
        pos = body + size + (size & 1u);
    }
    return aria_fail(err, ARIA_ERR_FORMAT, "byte 12: RIFF RMID file has no data chunk");
}

/* Division field: PPQ when the top bit is clear, else SMPTE frames/second
   (negated in the high byte) and ticks per frame (low byte). */
static int midi_read_division(aria_midi *m, const uint8_t *p, size_t off, aria_error *err)
{
    unsigned div = midi_be16(p);
    if (!(div & 0x8000)) {
        if (div == 0)
            return aria_fail(err, ARIA_ERR_FORMAT,
                             "byte %zu: division is 0 ticks per quarter note", off);
        m->ppq = (int)div;
        return ARIA_OK;
    }
    int fps = -(int)(int8_t)(uint8_t)(div >> 8);
    if (fps != 24 && fps != 25 && fps != 29 && fps != 30)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "byte %zu: SMPTE division 0x%04X has %d frames per second "
                         "(must be 24, 25, 29 or 30)", off, div, fps);
    if ((div & 0xFF) == 0)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "byte %zu: SMPTE division with 0 ticks per frame", off + 1);
    m->smpte_fps = fps;
    m->smpte_tpf = (int)(div & 0xFF);
    return ARIA_OK;
}

/* Parses MThd at buf[s..e); *body receives the offset after the header. */
static int midi_read_header(aria_midi *m, const uint8_t *buf, size_t s, size_t e,
                            size_t *body, aria_error *err)
{
    size_t avail = e - s;
    size_t cmp = avail < 4 ? avail : 4;
    if (avail == 0)
        return aria_fail(err, ARIA_ERR_FORMAT, "byte %zu: no MIDI data (0 bytes)", s);
    if (memcmp(buf + s, "MThd", cmp) != 0)
        return aria_fail(err, ARIA_ERR_FORMAT, "byte %zu: not a MIDI file (no MThd header)", s);
    if (avail < 14)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "byte %zu: truncated header (%zu bytes; a MIDI header needs 14)", s, avail);
    uint32_t hlen = midi_be32(buf + s + 4);
    if (hlen < 6)
        return aria_fail(err, ARIA_ERR_FORMAT, "byte %zu: header length %u is less than 6",
                         s + 4, hlen);
    if (hlen > avail - 8)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "byte %zu: header length %u runs past the end of the file "
                         "(%zu bytes left)", s + 4, hlen, avail - 8);
    unsigned format = midi_be16(buf + s + 8);
    if (format > 2)
        return aria_fail(err, ARIA_ERR_FORMAT,
                         "byte %zu: unknown file format %u (must be 0, 1 or 2)", s + 8, format);
    m->format = (int)format;
    m->ntracks_declared = (int)midi_be16(buf + s + 10);
    int rc = midi_read_division(m, buf + s + 12, s + 12, err);
    if (rc) return rc;
    *body = s + 8 + hlen; /* extra header bytes (hlen > 6) are skipped */
    return ARIA_OK;
}

/* Walks the chunk headers after MThd and lists the MTrk chunks. Unknown
   chunks are skipped; bytes that do not look like a chunk end the walk. */
static int midi_scan_chunks(aria_midi *m, const uint8_t *buf, size_t pos, size_t e,
                            midi_chunk **out, size_t *n_out, aria_error *err)
{
    midi_chunk *list = NULL;
    size_t n = 0, cap = 0;
    while (pos < e) {
        size_t left = e - pos;
        if (left < 8 || !midi_is_chunk_id(buf + pos)) {
            midi_warn(m, "byte %zu: %zu trailing bytes after the last chunk ignored", pos, left);
            break;
        }
        uint32_t len = midi_be32(buf + pos + 4);
        size_t body = pos + 8, have = e - body;
        int is_track = memcmp(buf + pos, "MTrk", 4) == 0;
        char name[5];
        midi_chunk_name(buf + pos, name);
        if (!is_track) {
            if (len > have) {
                midi_warn(m, "byte %zu: chunk '%s' length %u runs past the end of the file "
                          "(%zu bytes left); ignored", pos, name, len, have);
                break;
            }
            midi_warn(m, "byte %zu: unknown chunk '%s' (%u bytes) skipped", pos, name, len);
            pos = body + len;
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 8;
            midi_chunk *nl = realloc(list, ncap * sizeof *nl);
            if (!nl) {
                free(list);
                return aria_fail(err, ARIA_ERR_NOMEM, "out of memory listing track chunks");
            }
            list = nl;
            cap = ncap;
        }
        midi_chunk *c = &list[n++];
        c->off = body;
        c->cut = len > have;
        c->len = c->cut ? have : len;
        if (c->cut)
            midi_warn(m, "byte %zu: track %zu length %u runs past the end of the file "
                      "(%zu bytes left); reading what is there", pos + 4, n - 1, len, have);
        pos = body + c->len;
    }
    *out = list;
    *n_out = n;
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* reader: events                                                         */
/* ---------------------------------------------------------------------- */

/* Reads a variable-length quantity. Returns 1 on success, 0 when the
   bytes run out, -1 when it is longer than 4 bytes. */
static int midi_read_vlq(const uint8_t **pp, const uint8_t *end, uint32_t *v)
{
    const uint8_t *p = *pp;
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        if (p == end) return 0;
        uint8_t b = *p++;
        x = (x << 7) | (b & 0x7Fu);
        if (!(b & 0x80)) {
            *pp = p;
            *v = x;
            return 1;
        }
    }
    return -1;
}

/* An event that does not fit in what is left of its chunk. In a chunk cut
   short by the end of the file that is expected: the partial event is
   dropped. Inside a complete chunk it is an error. */
static int midi_overrun(midi_reader *r, const midi_track_state *t, const char *what,
                        const uint8_t *from)
{
    size_t at = midi_offset(r, t->at);
    size_t left = (size_t)(t->end - from);
    if (t->chunk->cut) {
        midi_warn(r->m, "byte %zu: track %zu ends inside an event (file cut short); "
                  "partial event dropped", at, t->index);
        return MIDI_STOP;
    }
    return aria_fail(r->err, ARIA_ERR_FORMAT,
                     "byte %zu: %s runs past the end of track %zu (%zu bytes left)",
                     at, what, t->index, left);
}

static int midi_vlq_error(midi_reader *r, const midi_track_state *t, int v,
                          const char *what, const uint8_t *from)
{
    if (v == 0) return midi_overrun(r, t, what, from);
    return aria_fail(r->err, ARIA_ERR_FORMAT,
                     "byte %zu: %s is a variable-length number longer than 4 bytes in track %zu",
                     midi_offset(r, from), what, t->index);
}

/* Meta (FF type len payload), sysex (F0 len payload) and escape
   (F7 len payload) events: the payload is copied to m->data. */
static int midi_read_packet(midi_reader *r, midi_track_state *t, unsigned st)
{
    const uint8_t *p = t->p;
    unsigned type = st;
    uint8_t kind = st == 0xFF ? ARIA_MIDI_META : st == 0xF0 ? ARIA_MIDI_SYSEX : ARIA_MIDI_ESCAPE;
    const char *what = kind == ARIA_MIDI_META ? "meta event" : "sysex event";
    if (kind == ARIA_MIDI_META) {
        if (p == t->end) return midi_overrun(r, t, what, p);
        type = *p++;
    }
    uint32_t len;
    const uint8_t *lenp = p;
    int v = midi_read_vlq(&p, t->end, &len);
    if (v != 1) return midi_vlq_error(r, t, v, kind == ARIA_MIDI_META ? "meta event length"
                                                  : "sysex event length", lenp);
    if (len > (size_t)(t->end - p)) {
        char desc[64];
        snprintf(desc, sizeof desc, "%s length %u", what, len);
        return midi_overrun(r, t, desc, p);
    }
    memcpy(r->data + r->data_len, p, len);
    aria_midi_event *e = t->ev++;
    *e = (aria_midi_event){ .tick = t->tick, .kind = kind, .status = (uint8_t)type,
                            .len = len, .off = (uint32_t)r->data_len };
    r->data_len += len;
    t->p = p + len;
    if (kind != ARIA_MIDI_META) t->running = 0; /* sysex cancels running status */
    return kind == ARIA_MIDI_META && type == 0x2F ? MIDI_EOT : MIDI_NEXT;
}

/* Data bytes that follow a system-common status: F1 and F3 take one, F2
   two; the real-time bytes and F6 none. -1 for undefined statuses. */
static int midi_syscommon_size(unsigned st)
{
    switch (st) {
    case 0xF1: case 0xF3: return 1;
    case 0xF2: return 2;
    case 0xF6: case 0xF8: case 0xFA: case 0xFB: case 0xFC: case 0xFE: return 0;
    default: return -1;
    }
}

/* System-common and real-time bytes have no place in a MIDI file, but
   files carry them; they are kept (with a warning) so nothing is lost. */
static int midi_read_syscommon(midi_reader *r, midi_track_state *t, unsigned st)
{
    const uint8_t *sp = t->p - 1;
    int n = midi_syscommon_size(st);
    if (n < 0)
        return aria_fail(r->err, ARIA_ERR_FORMAT, "byte %zu: undefined status byte 0x%02X "
                         "in track %zu", midi_offset(r, sp), st, t->index);
    if (t->end - t->p < n) return midi_overrun(r, t, "system message", t->p);
    uint8_t d[2] = { 0, 0 };
    for (int i = 0; i < n; i++) {
        d[i] = t->p[i];
        if (d[i] & 0x80)
            return aria_fail(r->err, ARIA_ERR_FORMAT, "byte %zu: status byte 0x%02X where a "
                             "data byte of system message 0x%02X was expected in track %zu",
                             midi_offset(r, t->p + i), d[i], st, t->index);
    }
    t->p += n;
    midi_warn(r->m, "byte %zu: system message 0x%02X in track %zu kept (not allowed in a "
              "MIDI file)", midi_offset(r, sp), st, t->index);
    aria_midi_event *e = t->ev++;
    *e = (aria_midi_event){ .tick = t->tick, .kind = ARIA_MIDI_SYSCOMMON, .status = (uint8_t)st,
                            .d1 = d[0], .d2 = d[1] };
    /* System common (F1..F6) ends running status; real-time bytes may sit
       inside a running-status stream without disturbing it. */
    if (st < 0xF8) t->running = 0;
    return MIDI_NEXT;
}

/* Every event whose status byte is F0..FF; the status is already read. */
static int midi_read_system(midi_reader *r, midi_track_state *t, unsigned st)
{
    if (st == 0xFF || st == 0xF0 || st == 0xF7) return midi_read_packet(r, t, st);
    return midi_read_syscommon(r, t, st);
}

static int midi_bad_data_byte(midi_reader *r, const midi_track_state *t,
                              const uint8_t *p, unsigned st)
{
    return aria_fail(r->err, ARIA_ERR_FORMAT, "byte %zu: status byte 0x%02X where a data byte "
                     "of message 0x%02X was expected in track %zu",
                     midi_offset(r, p), *p, st, t->index);
}

/* Decodes the events of one chunk into the arena at t->ev. The channel
   message path is kept inline with the loop state in locals; the rest is
   handed to midi_read_system with that state written back first. Returns
   MIDI_EOT, MIDI_STOP (partial event dropped), MIDI_NEXT (the bytes ran
   out between events) or an error. */
static int midi_decode_events(midi_reader *r, midi_track_state *t)
{
    const uint8_t *p = t->p, *end = t->end;
    aria_midi_event *ev = t->ev;
    uint64_t tick = 0;
    unsigned running = 0;
    int rc = MIDI_NEXT;
    while (p < end) {
        const uint8_t *at = p;
        uint32_t delta = *p++;
        if (delta & 0x80) {
            p = at;
            int v = midi_read_vlq(&p, end, &delta);
            if (v != 1) {
                t->at = at;
                rc = midi_vlq_error(r, t, v, "delta time", at);
                break;
            }
        }
        tick += delta;
        if (p == end) {
            t->at = at;
            rc = midi_overrun(r, t, "event", p);
            break;
        }
        unsigned st = *p;
        if (st >= 0x80) {
            p++;
            if (st >= 0xF0) {
                t->p = p;
                t->at = at;
                t->tick = tick;
                t->running = running;
                t->ev = ev;
                rc = midi_read_system(r, t, st);
                p = t->p;
                ev = t->ev;
                running = t->running;
                if (rc != MIDI_NEXT) break;
                continue;
            }
            running = st;
        } else if (running) {
            st = running;
        } else {
            rc = aria_fail(r->err, ARIA_ERR_FORMAT, "byte %zu: data byte 0x%02X with no "
                           "running status in track %zu", midi_offset(r, p), st, t->index);
            break;
        }
        /* C0..DF (program change, channel pressure) carry one data byte */
        size_t need = (st & 0xE0) == 0xC0 ? 1 : 2;
        if ((size_t)(end - p) < need) {
            t->at = at;
            rc = midi_overrun(r, t, "channel message", p);
            break;
        }
        unsigned d1 = p[0], d2 = need == 2 ? p[1] : 0;
        if ((d1 | d2) & 0x80) {
            rc = midi_bad_data_byte(r, t, d1 & 0x80 ? p : p + 1, st);
            break;
        }
        p += need;
        *ev++ = (aria_midi_event){ .tick = tick, .kind = ARIA_MIDI_CHANNEL,
                                   .status = (uint8_t)st, .d1 = (uint8_t)d1, .d2 = (uint8_t)d2 };
    }
    t->p = p;
    t->ev = ev;
    return rc;
}

/* Reads one MTrk chunk into the arena at *ev and records the track. */
static int midi_read_track(midi_reader *r, size_t ti, const midi_chunk *c,
                           aria_midi_event **ev)
{
    midi_track_state t = { .index = ti, .chunk = c, .p = r->buf + c->off,
                           .end = r->buf + c->off + c->len, .ev = *ev };
    t.at = t.p;
    int rc = midi_decode_events(r, &t);
    if (rc < 0) return rc;
    if (rc == MIDI_EOT && t.p < t.end)
        midi_warn(r->m, "byte %zu: %zu bytes after End-of-Track in track %zu ignored",
                  midi_offset(r, t.p), (size_t)(t.end - t.p), ti);
    else if (rc == MIDI_NEXT && !c->cut)
        midi_warn(r->m, "byte %zu: track %zu ends without an End-of-Track event",
                  midi_offset(r, t.end), ti);
    r->m->tracks[ti].events = *ev;
    r->m->tracks[ti].n_events = (size_t)(t.ev - *ev);
    *ev = t.ev;
    return ARIA_OK;
}

/* Sizes the arena and payload buffer from the chunk list (see the file
   comment for why these bounds hold) and reads every track. */
static int midi_read_tracks(midi_reader *r, const midi_chunk *chunks, size_t n)
{
    aria_midi *m = r->m;
    size_t n_ev = 1, n_data = 1;
    for (size_t i = 0; i < n; i++) {
        n_ev += chunks[i].len / 2;
        n_data += chunks[i].len;
    }
    midi_priv *pv = calloc(1, sizeof *pv);
    if (!pv) return aria_fail(r->err, ARIA_ERR_NOMEM, "out of memory");
    m->priv_ = pv;
    if (n_ev > SIZE_MAX / sizeof(aria_midi_event))
        return aria_fail(r->err, ARIA_ERR_NOMEM, "out of memory for %zu events", n_ev);
    pv->arena = malloc(n_ev * sizeof(aria_midi_event));
    m->data = r->data = malloc(n_data);
    m->tracks = calloc(n ? n : 1, sizeof *m->tracks);
    if (!pv->arena || !r->data || !m->tracks)
        return aria_fail(r->err, ARIA_ERR_NOMEM, "out of memory for %zu events", n_ev);
    pv->tracks_cap = n;
    aria_midi_event *ev = pv->arena;
    for (size_t i = 0; i < n; i++) {
        m->n_tracks = i + 1;
        int rc = midi_read_track(r, i, &chunks[i], &ev);
        if (rc) return rc;
    }
    return ARIA_OK;
}

/* Gives back the unused tail of the arena and payload buffer. Tracks lie
   one after another in the arena, so their pointers are recomputed. */
static void midi_shrink(midi_reader *r)
{
    aria_midi *m = r->m;
    midi_priv *pv = m->priv_;
    size_t used = 0;
    for (size_t i = 0; i < m->n_tracks; i++) used += m->tracks[i].n_events;
    if (used) {
        aria_midi_event *a = realloc(pv->arena, used * sizeof *a);
        if (a) pv->arena = a;
    }
    size_t at = 0;
    for (size_t i = 0; i < m->n_tracks; i++) {
        m->tracks[i].events = pv->arena + at;
        at += m->tracks[i].n_events;
    }
    m->data_len = r->data_len;
    if (r->data_len) {
        uint8_t *d = realloc(m->data, r->data_len);
        if (d) m->data = d;
    } else {
        free(m->data);
        m->data = NULL;
    }
    pv->data_cap = m->data_len;
}

static int midi_read_body(aria_midi *m, const uint8_t *bytes, size_t len, aria_error *err)
{
    if (len == 0) return aria_fail(err, ARIA_ERR_FORMAT, "byte 0: empty file (0 bytes)");
    if (len > UINT32_MAX)
        return aria_fail(err, ARIA_ERR_FORMAT, "byte 0: file of %zu bytes is too large "
                         "for a MIDI file (4 GiB at most)", len);
    size_t s = 0, e = len, body = 0;
    int rc;
    if (len >= 4 && memcmp(bytes, "RIFF", 4) == 0) {
        rc = midi_unwrap_riff(bytes, len, &s, &e, m, err);
        if (rc) return rc;
    }
    rc = midi_read_header(m, bytes, s, e, &body, err);
    if (rc) return rc;
    midi_chunk *chunks = NULL;
    size_t n = 0;
    rc = midi_scan_chunks(m, bytes, body, e, &chunks, &n, err);
    if (rc) return rc;
    if (n == 0 && m->ntracks_declared > 0) {
        free(chunks);
        return aria_fail(err, ARIA_ERR_FORMAT, "byte %zu: no MTrk chunk found (the header "
                         "declares %d track%s)", body, m->ntracks_declared,
                         m->ntracks_declared == 1 ? "" : "s");
    }
    if (n != (size_t)m->ntracks_declared)
        midi_warn(m, "byte %zu: header declares %d track%s but the file has %zu",
                  s + 10, m->ntracks_declared, m->ntracks_declared == 1 ? "" : "s", n);
    else if (m->format == 0 && n > 1)
        midi_warn(m, "byte %zu: format 0 file with %zu tracks", s + 8, n);
    midi_reader r = { .buf = bytes, .m = m, .err = err };
    rc = midi_read_tracks(&r, chunks, n);
    free(chunks);
    if (rc) return rc;
    midi_shrink(&r);
    return ARIA_OK;
}

int aria_midi_read(aria_midi *m, const uint8_t *bytes, size_t len, aria_error *err)
{
    if (!m) return aria_fail(err, ARIA_ERR_ARG, "aria_midi_read: no output struct");
    memset(m, 0, sizeof *m);
    if (!bytes && len) return aria_fail(err, ARIA_ERR_ARG, "aria_midi_read: NULL input");
    int rc = midi_read_body(m, bytes, len, err);
    if (rc) aria_midi_free(m); /* the arena owns every event read so far */
    return rc;
}

int aria_midi_read_file(aria_midi *m, const char *path, aria_error *err)
{
    if (!m) return aria_fail(err, ARIA_ERR_ARG, "aria_midi_read_file: no output struct");
    memset(m, 0, sizeof *m);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = aria_read_file(path, &buf, &len, err);
    if (rc) return rc;
    rc = aria_midi_read(m, buf, len, err);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* builder                                                                */
/* ---------------------------------------------------------------------- */

int aria_midi_init(aria_midi *m, int format, int ppq)
{
    if (!m) return ARIA_ERR_ARG;
    memset(m, 0, sizeof *m);
    if (format < 0 || format > 2 || ppq < 0 || ppq > 32767) return ARIA_ERR_ARG;
    m->format = format;
    m->ppq = ppq; /* 0: the caller fills smpte_fps / smpte_tpf */
    return ARIA_OK;
}

/* Makes every track own a growable array (moving events out of a reader
   arena, or adopting a hand-filled struct) so events can be appended. */
static int midi_make_growable(aria_midi *m)
{
    midi_priv *pv = m->priv_;
    if (pv && !pv->arena) return ARIA_OK;
    size_t n = m->n_tracks;
    size_t *caps = calloc(n ? n : 1, sizeof *caps);
    if (!caps) return ARIA_ERR_NOMEM;
    if (pv && pv->arena) {
        aria_midi_event **copies = calloc(n ? n : 1, sizeof *copies);
        if (!copies) { free(caps); return ARIA_ERR_NOMEM; }
        for (size_t i = 0; i < n; i++) {
            size_t k = m->tracks[i].n_events;
            copies[i] = malloc((k ? k : 1) * sizeof(aria_midi_event));
            if (!copies[i]) {
                while (i--) free(copies[i]);
                free(copies);
                free(caps);
                return ARIA_ERR_NOMEM;
            }
            if (k) memcpy(copies[i], m->tracks[i].events, k * sizeof(aria_midi_event));
            caps[i] = k ? k : 1;
        }
        for (size_t i = 0; i < n; i++) m->tracks[i].events = copies[i];
        free(copies);
        free(pv->arena);
        pv->arena = NULL;
        free(pv->ev_cap);
    } else {
        pv = calloc(1, sizeof *pv);
        if (!pv) { free(caps); return ARIA_ERR_NOMEM; }
        for (size_t i = 0; i < n; i++) caps[i] = m->tracks[i].n_events;
        pv->tracks_cap = n;
        pv->data_cap = m->data_len;
        m->priv_ = pv;
    }
    pv->ev_cap = caps;
    pv->tracks_cap = n;
    return ARIA_OK;
}

int aria_midi_add_track(aria_midi *m)
{
    if (!m) return ARIA_ERR_ARG;
    int rc = midi_make_growable(m);
    if (rc) return rc;
    midi_priv *pv = m->priv_;
    if (m->n_tracks >= 65535) return ARIA_ERR_ARG; /* the header holds 16 bits */
    if (m->n_tracks == pv->tracks_cap) {
        size_t ncap = pv->tracks_cap ? 2 * pv->tracks_cap : 4;
        aria_midi_track *t = realloc(m->tracks, ncap * sizeof *t);
        if (!t) return ARIA_ERR_NOMEM;
        m->tracks = t;
        size_t *c = realloc(pv->ev_cap, ncap * sizeof *c);
        if (!c) return ARIA_ERR_NOMEM;
        pv->ev_cap = c;
        pv->tracks_cap = ncap;
    }
    m->tracks[m->n_tracks] = (aria_midi_track){ NULL, 0 };
    pv->ev_cap[m->n_tracks] = 0;
    m->n_tracks++;
    m->ntracks_declared = (int)m->n_tracks;
    return ARIA_OK;
}

/* Checks one event for what the file format can carry. */
static int midi_check_event(const aria_midi_event *ev, char *why, size_t cap)
{
    switch (ev->kind) {
    case ARIA_MIDI_CHANNEL:
        if (ev->status < 0x80 || ev->status >= 0xF0) {
            snprintf(why, cap, "channel status 0x%02X is not in 0x80..0xEF", ev->status);
            return 0;
        }
        if ((ev->d1 | ev->d2) & 0x80) {
            snprintf(why, cap, "data bytes 0x%02X 0x%02X of message 0x%02X exceed 127",
                     ev->d1, ev->d2, ev->status);
            return 0;
        }
        return 1;
    case ARIA_MIDI_META:
    case ARIA_MIDI_SYSEX:
    case ARIA_MIDI_ESCAPE:
        if (ev->len > MIDI_VLQ_MAX) {
            snprintf(why, cap, "payload of %u bytes is longer than a MIDI length can say",
                     ev->len);
            return 0;
        }
        return 1;
    case ARIA_MIDI_SYSCOMMON:
        if (midi_syscommon_size(ev->status) < 0 || ((ev->d1 | ev->d2) & 0x80)) {
            snprintf(why, cap, "0x%02X %02X %02X is not a system message", ev->status,
                     ev->d1, ev->d2);
            return 0;
        }
        return 1;
    default:
        snprintf(why, cap, "unknown event kind %u", ev->kind);
        return 0;
    }
}

static int midi_append_payload(aria_midi *m, const uint8_t *payload, uint32_t len,
                               uint32_t *off)
{
    midi_priv *pv = m->priv_;
    if (len > UINT32_MAX - m->data_len) return ARIA_ERR_NOMEM;
    size_t need = m->data_len + len;
    if (need > pv->data_cap) {
        size_t ncap = pv->data_cap ? pv->data_cap : 256;
        while (ncap < need) ncap *= 2;
        uint8_t *d = realloc(m->data, ncap);
        if (!d) return ARIA_ERR_NOMEM;
        m->data = d;
        pv->data_cap = ncap;
    }
    if (len) memcpy(m->data + m->data_len, payload, len);
    *off = (uint32_t)m->data_len;
    m->data_len = need;
    return ARIA_OK;
}

int aria_midi_push(aria_midi *m, size_t track, const aria_midi_event *ev,
                   const uint8_t *payload, aria_error *err)
{
    if (!m || !ev) return aria_fail(err, ARIA_ERR_ARG, "aria_midi_push: NULL argument");
    if (track >= m->n_tracks)
        return aria_fail(err, ARIA_ERR_ARG, "aria_midi_push: track %zu does not exist "
                         "(%zu tracks)", track, m->n_tracks);
    char why[96];
    if (!midi_check_event(ev, why, sizeof why))
        return aria_fail(err, ARIA_ERR_ARG, "aria_midi_push: track %zu: %s", track, why);
    aria_midi_track *t = &m->tracks[track];
    if (t->n_events && ev->tick < t->events[t->n_events - 1].tick)
        return aria_fail(err, ARIA_ERR_ARG, "aria_midi_push: track %zu: tick %llu is before "
                         "the previous event's tick %llu", track,
                         (unsigned long long)ev->tick,
                         (unsigned long long)t->events[t->n_events - 1].tick);
    int has_payload = ev->kind == ARIA_MIDI_META || ev->kind == ARIA_MIDI_SYSEX ||
                      ev->kind == ARIA_MIDI_ESCAPE;
    if (has_payload && ev->len && !payload)
        return aria_fail(err, ARIA_ERR_ARG, "aria_midi_push: %u payload bytes but no payload",
                         ev->len);
    if (midi_make_growable(m)) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
    midi_priv *pv = m->priv_;
    if (t->n_events == pv->ev_cap[track]) {
        size_t ncap = pv->ev_cap[track] ? 2 * pv->ev_cap[track] : 64;
        aria_midi_event *e = realloc(t->events, ncap * sizeof *e);
        if (!e) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        t->events = e;
        pv->ev_cap[track] = ncap;
    }
    aria_midi_event copy = *ev;
    if (has_payload) {
        if (midi_append_payload(m, payload, ev->len, &copy.off))
            return aria_fail(err, ARIA_ERR_NOMEM, "out of memory");
        if (ev->kind == ARIA_MIDI_SYSEX) copy.status = 0xF0;
        if (ev->kind == ARIA_MIDI_ESCAPE) copy.status = 0xF7;
    } else {
        copy.len = copy.off = 0;
    }
    t->events[t->n_events++] = copy;
    return ARIA_OK;
}

/* ---------------------------------------------------------------------- */
/* writer                                                                 */
/* ---------------------------------------------------------------------- */

static size_t midi_put_vlq(uint8_t *p, uint32_t v)
{
    uint8_t tmp[4];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)(v & 0x7F);
        v >>= 7;
    } while (v && n < 4);
    for (size_t i = 0; i < n; i++) p[i] = tmp[n - 1 - i] | (i + 1 < n ? 0x80 : 0);
    return n;
}

static void midi_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Output size bound: header, and per track its chunk header, a final
   End-of-Track and at most 4 (delta) + 6 (status, type, length) bytes per
   event plus its payload. Returns 0 on overflow. */
static size_t midi_write_bound(const aria_midi *m)
{
    size_t total = 14;
    for (size_t i = 0; i < m->n_tracks; i++) {
        const aria_midi_track *t = &m->tracks[i];
        if (t->n_events > (SIZE_MAX - total) / 16) return 0;
        total += 8 + 8 + t->n_events * 10;
        for (size_t k = 0; k < t->n_events; k++) {
            if (t->events[k].kind == ARIA_MIDI_CHANNEL || t->events[k].kind == ARIA_MIDI_SYSCOMMON)
                continue;
            if (t->events[k].len > SIZE_MAX - total) return 0;
            total += t->events[k].len;
        }
    }
    return total;
}

static int midi_write_division(const aria_midi *m, uint8_t *p, aria_error *err)
{
    if (m->ppq > 0 && m->ppq <= 32767) {
        p[0] = (uint8_t)(m->ppq >> 8);
        p[1] = (uint8_t)m->ppq;
        return ARIA_OK;
    }
    int fps = m->smpte_fps;
    if (m->ppq == 0 && (fps == 24 || fps == 25 || fps == 29 || fps == 30) &&
        m->smpte_tpf > 0 && m->smpte_tpf < 256) {
        p[0] = (uint8_t)(-fps);
        p[1] = (uint8_t)m->smpte_tpf;
        return ARIA_OK;
    }
    return aria_fail(err, ARIA_ERR_ARG, "cannot write division: ppq %d, SMPTE %d fps x %d "
                     "(need ppq 1..32767, or ppq 0 with 24/25/29/30 fps and 1..255 ticks "
                     "per frame)", m->ppq, m->smpte_fps, m->smpte_tpf);
}

/* Writes the bytes of one event after its delta; updates running status
   as mido does (channel messages set it, everything else clears it). */
static size_t midi_put_event(const aria_midi *m, const aria_midi_event *e, uint8_t *p,
                             unsigned *running)
{
    size_t n = 0;
    switch (e->kind) {
    case ARIA_MIDI_CHANNEL:
        if (e->status != *running) p[n++] = e->status;
        p[n++] = e->d1;
        if ((e->status & 0xE0) != 0xC0) p[n++] = e->d2;
        *running = e->status;
        return n;
    case ARIA_MIDI_SYSCOMMON: {
        int k = midi_syscommon_size(e->status);
        p[n++] = e->status;
        if (k > 0) p[n++] = e->d1;
        if (k > 1) p[n++] = e->d2;
        *running = 0;
        return n;
    }
    default:
        if (e->kind == ARIA_MIDI_META) {
            p[n++] = 0xFF;
            p[n++] = e->status;
        } else {
            p[n++] = e->kind == ARIA_MIDI_SYSEX ? 0xF0 : 0xF7;
        }
        n += midi_put_vlq(p + n, e->len);
        if (e->len) memcpy(p + n, m->data + e->off, e->len);
        *running = 0;
        return n + e->len;
    }
}

/* One MTrk chunk; End-of-Track events in the list are dropped and a single
   one is written at the tick of the last event (mido's fix_end_of_track). */
static int midi_write_track(const aria_midi *m, size_t ti, uint8_t *out, size_t *pos,
                            aria_error *err)
{
    const aria_midi_track *t = &m->tracks[ti];
    size_t start = *pos, p = start + 8;
    uint64_t prev = 0, last = 0;
    unsigned running = 0;
    char why[96];
    for (size_t k = 0; k < t->n_events; k++) {
        const aria_midi_event *e = &t->events[k];
        if (!midi_check_event(e, why, sizeof why))
            return aria_fail(err, ARIA_ERR_ARG, "track %zu event %zu: %s", ti, k, why);
        if (k && e->tick < last)
            return aria_fail(err, ARIA_ERR_ARG, "track %zu event %zu: tick %llu is before the "
                             "previous event's tick %llu", ti, k,
                             (unsigned long long)e->tick, (unsigned long long)last);
        last = e->tick;
        if (e->kind != ARIA_MIDI_CHANNEL && e->kind != ARIA_MIDI_SYSCOMMON &&
            (e->off > m->data_len || e->len > m->data_len - e->off))
            return aria_fail(err, ARIA_ERR_ARG, "track %zu event %zu: payload %u+%u lies "
                             "outside the %zu data bytes", ti, k, e->off, e->len, m->data_len);
        if (e->kind == ARIA_MIDI_META && e->status == 0x2F) continue;
        if (e->tick - prev > MIDI_VLQ_MAX)
            return aria_fail(err, ARIA_ERR_ARG, "track %zu event %zu: delta of %llu ticks "
                             "exceeds the MIDI maximum 0x0FFFFFFF", ti, k,
                             (unsigned long long)(e->tick - prev));
        p += midi_put_vlq(out + p, (uint32_t)(e->tick - prev));
        p += midi_put_event(m, e, out + p, &running);
        prev = e->tick;
    }
    if (last - prev > MIDI_VLQ_MAX)
        return aria_fail(err, ARIA_ERR_ARG, "track %zu: End-of-Track delta of %llu ticks "
                         "exceeds the MIDI maximum", ti, (unsigned long long)(last - prev));
    p += midi_put_vlq(out + p, (uint32_t)(last - prev));
    out[p++] = 0xFF;
    out[p++] = 0x2F;
    out[p++] = 0x00;
    size_t body = p - start - 8;
    if (body > UINT32_MAX)
        return aria_fail(err, ARIA_ERR_ARG, "track %zu: %zu bytes do not fit a track chunk",
                         ti, body);
    memcpy(out + start, "MTrk", 4);
    midi_put_be32(out + start + 4, (uint32_t)body);
    *pos = p;
    return ARIA_OK;
}

int aria_midi_write(const aria_midi *m, uint8_t **out, size_t *out_len, aria_error *err)
{
    if (!m || !out || !out_len) return aria_fail(err, ARIA_ERR_ARG, "aria_midi_write: NULL argument");
    *out = NULL;
    *out_len = 0;
    if (m->format < 0 || m->format > 2)
        return aria_fail(err, ARIA_ERR_ARG, "cannot write format %d (must be 0, 1 or 2)",
                         m->format);
    if (m->format == 0 && m->n_tracks != 1)
        return aria_fail(err, ARIA_ERR_ARG, "format 0 needs exactly one track, not %zu",
                         m->n_tracks);
    if (m->n_tracks > 65535)
        return aria_fail(err, ARIA_ERR_ARG, "%zu tracks do not fit a MIDI header (65535 at most)",
                         m->n_tracks);
    if (m->n_tracks && !m->tracks)
        return aria_fail(err, ARIA_ERR_ARG, "aria_midi_write: tracks missing");
    uint8_t div[2] = { 0, 0 };
    int rc = midi_write_division(m, div, err);
    if (rc) return rc;
    size_t cap = midi_write_bound(m);
    uint8_t *buf = cap ? malloc(cap) : NULL;
    if (!buf) return aria_fail(err, ARIA_ERR_NOMEM, "out of memory for the output file");
    memcpy(buf, "MThd", 4);
    midi_put_be32(buf + 4, 6);
    buf[8] = 0;
    buf[9] = (uint8_t)m->format;
    buf[10] = (uint8_t)(m->n_tracks >> 8);
    buf[11] = (uint8_t)m->n_tracks;
    buf[12] = div[0];
    buf[13] = div[1];
    size_t pos = 14;
    for (size_t i = 0; i < m->n_tracks; i++) {
        rc = midi_write_track(m, i, buf, &pos, err);
        if (rc) {
            free(buf);
            return rc;
        }
    }
    uint8_t *shrunk = realloc(buf, pos);
    *out = shrunk ? shrunk : buf;
    *out_len = pos;
    return ARIA_OK;
}

int aria_midi_write_file(const aria_midi *m, const char *path, aria_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = aria_midi_write(m, &buf, &len, err);
    if (rc) return rc;
    rc = aria_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}
