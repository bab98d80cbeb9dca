/*
 * aria.h - public API of libaria, the C implementation of the Aria system
 * for symbolic piano performance (EleutherAI, ISMIR 2025).
 *
 * Layers, lowest first (data flows downward only):
 *   midi       Standard MIDI File bytes <-> per-track event lists
 *   score      the reference "MidiDict": paired notes, pedal, programs,
 *              tempo map, tick -> ms exactly as ariautils computes it
 *   tokenizer  the AbsTokenizer whose ids are those of the released
 *              checkpoints (17727 ids), its augmentations and prompt/chunk
 *              builders
 *
 * Conventions
 *   - Functions that can fail return ARIA_OK (0) or a negative aria_status
 *     and, when `err` is not NULL, write a one-line message into err->msg
 *     that says what is wrong and where (byte offset, track, token index).
 *     The library never exits and never prints.
 *   - Every struct that owns memory has a matching *_free(); freeing a
 *     zeroed struct is a no-op, so `T x = {0}; ...; T_free(&x);` is safe.
 *   - Nothing here keeps global state; all functions are reentrant.
 */
#ifndef ARIA_H
#define ARIA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ARIA_VERSION "0.1.0"

typedef enum {
    ARIA_OK = 0,
    ARIA_ERR_IO = -1,      /* cannot open / read / write a file */
    ARIA_ERR_FORMAT = -2,  /* input bytes are not what they claim to be */
    ARIA_ERR_NOMEM = -3,   /* allocation failed */
    ARIA_ERR_ARG = -4,     /* caller passed an invalid argument */
    ARIA_ERR_EMPTY = -5    /* valid input with nothing to work on (no notes) */
} aria_status;

typedef struct {
    char msg[512];
} aria_error;

/* Human-readable name of a status code ("format error", ...). */
const char *aria_status_name(int status);

/* ====================================================================== */
/* midi: Standard MIDI Files                                              */
/* ====================================================================== */

typedef enum {
    ARIA_MIDI_CHANNEL = 0, /* 0x80..0xEF voice message; status, d1, d2 */
    ARIA_MIDI_META = 1,    /* 0xFF; `status` holds the meta type */
    ARIA_MIDI_SYSEX = 2,   /* 0xF0 packet; payload excludes the F0 byte */
    ARIA_MIDI_ESCAPE = 3,  /* 0xF7 packet (sysex continuation / escape) */
    ARIA_MIDI_SYSCOMMON = 4 /* F1/F2/F3/F6/F8/FA/FB/FC/FE found in a track */
} aria_midi_event_kind;

typedef struct {
    uint64_t tick;   /* absolute tick within its track */
    uint8_t kind;    /* aria_midi_event_kind */
    uint8_t status;  /* channel: full status byte (0x90|ch ...); meta: meta
                        type; sysex/escape: 0xF0/0xF7; syscommon: the byte */
    uint8_t d1, d2;  /* channel (and syscommon) data bytes; unused are 0 */
    uint32_t len;    /* payload length (meta, sysex, escape) */
    uint32_t off;    /* payload offset into aria_midi.data */
} aria_midi_event;

typedef struct {
    aria_midi_event *events;
    size_t n_events;
} aria_midi_track;

#define ARIA_MIDI_MAX_WARNINGS 8

typedef struct {
    int format;        /* 0, 1 or 2 */
    int ppq;           /* ticks per quarter note; 0 for SMPTE division */
    int smpte_fps;     /* 24, 25, 29 (29.97 drop-frame) or 30; 0 for PPQ */
    int smpte_tpf;     /* ticks per frame (SMPTE only) */
    int ntracks_declared; /* track count in the header */
    size_t n_tracks;   /* tracks actually read */
    aria_midi_track *tracks;
    uint8_t *data;     /* payload bytes of meta/sysex events (owned) */
    size_t data_len;
    /* Problems that did not stop reading (missing end-of-track, trailing
       bytes, truncated last track ...): the first few, and how many. */
    int n_warnings;
    char warnings[ARIA_MIDI_MAX_WARNINGS][160];
    /* internal: allocation bookkeeping */
    void *priv_;
} aria_midi;

/* Parses an SMF (formats 0/1/2, PPQ or SMPTE division, optionally wrapped
   in a RIFF RMID container). `bytes` may be freed after the call. */
int aria_midi_read(aria_midi *m, const uint8_t *bytes, size_t len, aria_error *err);
int aria_midi_read_file(aria_midi *m, const char *path, aria_error *err);
void aria_midi_free(aria_midi *m);

/* Serialises format 0 or 1 (format = m->format; 0 requires one track).
   Channel messages use running status; meta and sysex cancel it (the byte
   layout mido writes). Each track gets an End-of-Track if it lacks one.
   *out is malloc'd; the caller frees it. */
int aria_midi_write(const aria_midi *m, uint8_t **out, size_t *out_len, aria_error *err);
/* Writes atomically: a temporary file beside `path`, fsync, rename. */
int aria_midi_write_file(const aria_midi *m, const char *path, aria_error *err);

/* Building a file to write. aria_midi_init gives an empty file; tracks are
   appended; events are appended to a track (their ticks must not
   decrease); payload bytes are copied. */
int aria_midi_init(aria_midi *m, int format, int ppq);
int aria_midi_add_track(aria_midi *m);
int aria_midi_push(aria_midi *m, size_t track, const aria_midi_event *ev,
                   const uint8_t *payload, aria_error *err);

/* Writes a whole buffer to `path` atomically (temp file + rename); on any
   failure nothing is left at `path`. Used for every output file. */
int aria_write_file_atomic(const char *path, const void *buf, size_t len, aria_error *err);
/* Reads a whole file into a malloc'd buffer. */
int aria_read_file(const char *path, uint8_t **out, size_t *len, aria_error *err);

/* ====================================================================== */
/* score: the reference MidiDict                                          */
/* ====================================================================== */

typedef struct {
    int64_t start, end; /* ticks; the note's "tick" is its start */
    uint8_t pitch, velocity, channel;
} aria_note;

typedef struct {
    int64_t tick;
    uint32_t tempo; /* microseconds per beat */
} aria_tempo;

typedef struct {
    int64_t tick;
    uint8_t on;      /* 1 when value >= 64 */
    uint8_t value;   /* raw CC64 value */
    uint8_t channel;
} aria_pedal;

typedef struct {
    int64_t tick;
    uint8_t program, channel;
} aria_program;

/* Instrument classes of the General MIDI program map (program / 8). */
typedef enum {
    ARIA_INSTR_PIANO, ARIA_INSTR_CHROMATIC, ARIA_INSTR_ORGAN, ARIA_INSTR_GUITAR,
    ARIA_INSTR_BASS, ARIA_INSTR_STRINGS, ARIA_INSTR_ENSEMBLE, ARIA_INSTR_BRASS,
    ARIA_INSTR_REED, ARIA_INSTR_PIPE, ARIA_INSTR_SYNTH_LEAD, ARIA_INSTR_SYNTH_PAD,
    ARIA_INSTR_SYNTH_EFFECT, ARIA_INSTR_ETHNIC, ARIA_INSTR_PERCUSSIVE, ARIA_INSTR_SFX,
    ARIA_INSTR_DRUM, /* channel 10 (index 9); not a program class */
    ARIA_N_INSTR
} aria_instrument;

const char *aria_instrument_name(int instrument);
int aria_instrument_from_name(const char *name); /* -1 if unknown */
static inline int aria_program_class(int program) { return (program & 127) >> 3; }

typedef struct {
    aria_note *notes;       size_t n_notes;      /* stable-sorted by start */
    aria_tempo *tempos;     size_t n_tempos;     /* >= 1 after from_midi */
    aria_pedal *pedals;     size_t n_pedals;
    aria_program *programs; size_t n_programs;   /* >= 1 after from_midi */
    int ticks_per_beat;
    /* 0 (default): tick -> ms exactly as ariautils get_duration_ms,
       including its quirk after the last tempo change; 1: exact tempo-map
       integration. */
    int exact_timing;
    /* Metadata prefix values (index into the tokenizer's name lists), or -1. */
    int composer, form, genre;
} aria_score;

/* MidiDict.from_midi: notes paired per (pitch, channel) in each track,
   tracks concatenated, lists stable-sorted by tick; defaults added when
   there is no tempo (500000 at 0) or no program change (0 on channel 0).
   SMPTE files get an equivalent fixed tempo map (their set_tempo events
   do not affect time). */
int aria_score_from_midi(aria_score *s, const aria_midi *m, aria_error *err);
int aria_score_copy(aria_score *dst, const aria_score *src);
void aria_score_free(aria_score *s);

/* get_duration_ms(start, end) in milliseconds, honouring exact_timing. */
int64_t aria_score_duration_ms(const aria_score *s, int64_t start, int64_t end);
static inline int64_t aria_score_tick_to_ms(const aria_score *s, int64_t tick) {
    return aria_score_duration_ms(s, 0, tick);
}

/* remove_instruments: every non-drum channel that has a program change to
   a program 1..127 whose class is set in `remove_class_mask` (bit = class)
   loses all its notes, pedals and program changes. */
void aria_score_remove_instruments(aria_score *s, uint32_t remove_class_mask);

/* resolve_overlaps (in place) then dict_to_midi: type 0, one track,
   ticks_per_beat of the score, the event order of the reference. */
int aria_score_to_midi(aria_score *s, aria_midi *out, aria_error *err);

/* ====================================================================== */
/* Python-compatible random numbers                                       */
/* ====================================================================== */
/* MT19937 seeded and drawn exactly as CPython's `random` module, so that a
   seed gives the same prefix order and <D> position as the reference. */
typedef struct {
    uint32_t mt[624];
    int mti;
} aria_rng;

void aria_rng_seed(aria_rng *r, uint64_t seed);    /* random.seed(int) */
uint32_t aria_rng_u32(aria_rng *r);
uint32_t aria_rng_getrandbits(aria_rng *r, int k); /* 1 <= k <= 32 */
uint64_t aria_rng_randbelow(aria_rng *r, uint64_t n); /* n >= 1 */
int64_t aria_rng_randint(aria_rng *r, int64_t a, int64_t b); /* inclusive */
double aria_rng_random(aria_rng *r);               /* [0, 1), 53 bits */
double aria_rng_uniform(aria_rng *r, double a, double b);
/* random.shuffle(x): for i = n-1 down to 1, j = _randbelow(i+1), swap the
   elements i and j (each `size` bytes) of the array at `base`. */
void aria_rng_shuffle(aria_rng *r, void *base, size_t n, size_t size);
/* A zeroed, never-seeded aria_rng behaves as one seeded with 0. */

/* ====================================================================== */
/* tokenizer: AbsTokenizer                                                */
/* ====================================================================== */

typedef enum {
    ARIA_TOKCFG_DEFAULT = 0,    /* the released checkpoints: 17727 ids */
    ARIA_TOKCFG_DEMO_17729 = 1, /* demo config with pedal tokens */
    ARIA_TOKCFG_DEMO_2675 = 2   /* demo: piano only, pedal, delimiter */
} aria_tok_variant;

typedef enum {
    ARIA_TK_SPECIAL = 0, /* v: aria_special */
    ARIA_TK_PREFIX = 1,  /* a: aria_prefix_kind; v: value index */
    ARIA_TK_NOTE = 2,    /* a: instrument class; v: pitch; b: velocity */
    ARIA_TK_DRUM = 3,    /* v: drum note number */
    ARIA_TK_ONSET = 4,   /* v: ms within the 5 s segment */
    ARIA_TK_DUR = 5      /* v: ms */
} aria_token_kind;

typedef enum {
    ARIA_SP_BOS = 0, ARIA_SP_EOS, ARIA_SP_PAD, ARIA_SP_UNK, ARIA_SP_DIM,
    ARIA_SP_TIME, ARIA_SP_PED_ON, ARIA_SP_PED_OFF, ARIA_SP_DELIM,
    ARIA_N_SPECIAL
} aria_special;

typedef enum {
    ARIA_PREFIX_INSTRUMENT = 0, /* v: aria_instrument (ARIA_INSTR_DRUM for drum) */
    ARIA_PREFIX_COMPOSER = 1,   /* v: index in the composer list */
    ARIA_PREFIX_FORM = 2,
    ARIA_PREFIX_GENRE = 3
} aria_prefix_kind;

/* A token as the reference's Python tuples: it may hold values outside the
   vocabulary (drum 30, a pitch pushed past 127); those encode to <U>. */
typedef struct {
    uint8_t kind;
    uint8_t a;
    uint8_t b;
    uint8_t pad_;
    int32_t v;
} aria_token;

typedef struct aria_tokenizer aria_tokenizer;

aria_tokenizer *aria_tokenizer_new(aria_tok_variant variant);
void aria_tokenizer_free(aria_tokenizer *t);
int aria_tok_vocab_size(const aria_tokenizer *t);
int aria_tok_id(const aria_tokenizer *t, aria_token tok);  /* <U> id if unknown */
aria_token aria_tok_token(const aria_tokenizer *t, int id); /* <U> if out of range */
aria_token aria_tok_special(aria_special sp);
int aria_tok_is(aria_token tok, aria_special sp);

/* Composer / form / genre names of the configuration (UTF-8). */
int aria_tok_n_names(const aria_tokenizer *t, aria_prefix_kind kind);
const char *aria_tok_name(const aria_tokenizer *t, aria_prefix_kind kind, int idx);

/* JSON text of a token as the reference vectors write it:
   "<S>", ["piano",60,80], ["onset",120], ["prefix","instrument","piano"].
   Returns the length written (snprintf-style). */
int aria_tok_to_json(const aria_tokenizer *t, aria_token tok, char *buf, size_t cap);
/* Parses a JSON array of tokens (the format above). */
int aria_tok_parse_json(const aria_tokenizer *t, const char *text, size_t len,
                        aria_token **out, size_t *n, aria_error *err);

typedef struct {
    int remove_preceding_silence; /* default 1 */
    int add_dim_tok;              /* default 1 (the reference default) */
    int add_eos_tok;              /* default 1 */
} aria_tokenize_opts;
aria_tokenize_opts aria_tokenize_defaults(void);

/* tokenize(): `s` is not modified (the reference mutates its argument; we
   work on a copy). `rng` drives the prefix shuffle and <D> placement; NULL
   means a fresh generator seeded with 0. Returns ARIA_ERR_EMPTY when no
   notes remain after instrument removal. *out is malloc'd. */
int aria_tokenize(const aria_tokenizer *t, const aria_score *s,
                  const aria_tokenize_opts *opts, aria_rng *rng,
                  aria_token **out, size_t *n, aria_error *err);

/* detokenize(): a score with ticks_per_beat 500, tempo 500000 (1 tick =
   1 ms). Malformed token runs are skipped and counted in *n_skipped
   (may be NULL). */
int aria_detokenize(const aria_tokenizer *t, const aria_token *toks, size_t n,
                    aria_score *out, size_t *n_skipped, aria_error *err);

/* Id conversion of whole sequences. */
void aria_tok_encode(const aria_tokenizer *t, const aria_token *toks, size_t n, int32_t *ids);
void aria_tok_decode(const aria_tokenizer *t, const int32_t *ids, size_t n, aria_token *toks);

/* calc_length_ms(seq, onset): end time of the last note (or its onset). */
int64_t aria_tok_length_ms(const aria_token *toks, size_t n, int onset_only);
/* truncate_by_time: the new length (tokens before the first note whose
   absolute onset exceeds t_ms, minus one as the reference slices). */
size_t aria_tok_truncate_by_time(const aria_token *toks, size_t n, int64_t t_ms);

/* Generation prompt of `aria generate`: notes starting at or before
   `prompt_ms`, pedal messages up to it (a trailing pedal-on dropped),
   tokenized without <D> and <E>; [piano prefix, <S>] when no note is left. */
int aria_tok_prompt(const aria_tokenizer *t, const aria_score *s, int64_t prompt_ms,
                    aria_rng *rng, aria_token **out, size_t *n, aria_error *err);

/* Embedding chunks: the score must be piano-only (every program change in
   the piano class); notes in chunks of `notes_per_chunk` (300), each
   tokenized with <E>, cut to `max_len` (2048) with <E> forced last. */
typedef struct {
    aria_token *toks;
    size_t n;
    size_t eos_pos;
} aria_tok_chunk;
int aria_tok_embedding_chunks(const aria_tokenizer *t, const aria_score *s,
                              int notes_per_chunk, size_t max_len, aria_rng *rng,
                              aria_tok_chunk **out, size_t *n_chunks, aria_error *err);
void aria_tok_chunks_free(aria_tok_chunk *c, size_t n);

/* Augmentations (export_*_aug wrapped by export_aug_fn_concat): the input
   is split after every <E>, each piece augmented, the result cut or
   <P>-padded to the input length n, written to out[0..n). A fixed value is
   used when `fixed` is non-NULL, else one is drawn from rng per piece. */
void aria_aug_pitch(const aria_token *in, size_t n, aria_token *out,
                    int max_aug, const int *fixed, aria_rng *rng);
void aria_aug_velocity(const aria_token *in, size_t n, aria_token *out,
                       int max_steps, const int *fixed, aria_rng *rng);
int aria_aug_tempo(const aria_tokenizer *t, const aria_token *in, size_t n, aria_token *out,
                   double max_aug, int mixup, const double *fixed, aria_rng *rng);


/* ====================================================================== */
/* model: configuration and safetensors                                   */
/* ====================================================================== */

/* The transformer's shape (keys of the reference config/models JSON files). */
typedef struct {
    int d_model;     /* 1536 for medium */
    int n_heads;     /* 24; head size d_model / n_heads */
    int n_layers;    /* 16 */
    int ff_mult;     /* 4: SwiGLU hidden = ff_mult * d_model */
    int max_seq_len; /* 8192 (the embedding model reads at most 2048 tokens) */
    int vocab_size;  /* 17727 */
    int emb_size;    /* 512 for the embedding model, else 0 */
    int class_size;  /* classifier classes, else 0 */
} aria_model_config;

/* Built-in shapes: "medium", "medium-emb", "tiny" (the shape of
   ../shared/vectors/model: d 64, 4 heads, 2 layers, context 512, emb 32,
   5 classes). */
int aria_config_preset(aria_model_config *c, const char *name);
/* Reads a JSON config: the reference's keys (d_model, n_heads, n_layers,
   ff_mult, max_seq_len, vocab_size, emb_size, class_size) or those of the
   released Hugging Face config.json (hidden_size, num_attention_heads,
   num_hidden_layers, intermediate_size, max_position_embeddings,
   vocab_size, ...). Errors name the missing or invalid key. */
int aria_config_parse(aria_model_config *c, const char *json, size_t len, aria_error *err);
int aria_config_read(aria_model_config *c, const char *path, aria_error *err);
/* The config as compact JSON with the reference's keys. */
int aria_config_to_json(const aria_model_config *c, char *buf, size_t cap);
/* Checks the numbers are usable (positive, heads divide d_model, even
   head size for RoPE ...). */
int aria_config_check(const aria_model_config *c, aria_error *err);

typedef enum { ARIA_DT_F32 = 0, ARIA_DT_BF16 = 1, ARIA_DT_F16 = 2 } aria_dtype;

typedef struct {
    const char *name;  /* NUL-terminated, owned by the file handle */
    aria_dtype dtype;
    int ndim;          /* 0..4 */
    int64_t shape[4];
    const void *data;  /* into the mapping; may be unaligned */
    size_t nbytes;
} aria_tensor;

/* A safetensors file, memory-mapped read-only. */
typedef struct {
    aria_tensor *tensors;
    size_t n_tensors;
    /* __metadata__ string pairs */
    const char **meta_keys, **meta_values;
    size_t n_meta;
    void *priv_;
} aria_safetensors;

/* Opens and validates a safetensors file: header JSON, dtypes (F32,
   BF16, F16; others are an error naming the tensor), shapes against byte
   ranges, ranges inside the file and not overlapping. */
int aria_st_open(aria_safetensors *st, const char *path, aria_error *err);
/* The same checks on a file image in memory; buf is copied, so it may be
   freed as soon as this returns. */
int aria_st_open_memory(aria_safetensors *st, const uint8_t *buf, size_t len, aria_error *err);
void aria_st_close(aria_safetensors *st);
/* Finds a tensor by name, also under the "_orig_mod." prefix that
   torch.compile'd checkpoints carry (on the whole name or after "model."). */
const aria_tensor *aria_st_find(const aria_safetensors *st, const char *name);
const char *aria_st_meta(const aria_safetensors *st, const char *key);
/* Writes tensors (data in their dtype) with __metadata__ pairs, in the
   layout torch's safetensors writes (8-byte header length, JSON header
   padded with spaces to a multiple of 8, data in header order).
   Atomic: temp file + rename. */
int aria_st_write(const char *path, const aria_tensor *tensors, size_t n,
                  const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                  aria_error *err);
/* bfloat16 / float16 <-> float32 (round to nearest even when narrowing). */
float aria_bf16_to_f32(uint16_t h);
uint16_t aria_f32_to_bf16(float f);
float aria_f16_to_f32(uint16_t h);


/* ====================================================================== */
/* model: weights and inference                                           */
/* ====================================================================== */

typedef struct aria_model aria_model;

/* Heads a weights file can carry besides the trunk (bit mask). */
enum {
    ARIA_HEAD_LM = 1,      /* lm_head: next-token logits (base / gen models) */
    ARIA_HEAD_EMB = 2,     /* emb_head: 512-d embedding (embedding model) */
    ARIA_HEAD_CLS = 4,     /* class_head: classifier logits */
    ARIA_HEAD_ADAPTER = 8  /* embedding_adapter (conditioned generation) */
};

/* Loads a safetensors file (float32, bfloat16 or float16 tensors, official
   names, optional "_orig_mod." prefix). The shape comes from `cfg` when not
   NULL, else from the file's own metadata (written by aria.c), else from a
   config.json beside the file (the layout of the released repos). A missing
   or mis-shaped tensor is an error naming it and the shape expected.
   float32 weights are used in place from the read-only mapping; bfloat16
   matrices stay bfloat16 and are widened inside the matrix products. */
int aria_model_load(aria_model **out, const char *path, const aria_model_config *cfg, aria_error *err);
/* A model with random weights (normal, std 0.02; LayerNorm weight 1, bias
   0) and the given heads, for tests and benchmarks. */
int aria_model_new_random(aria_model **out, const aria_model_config *cfg, int heads, uint64_t seed,
                          aria_error *err);
/* Saves with the official tensor names and the config in the metadata
   (key "aria_config"), as float32 or bfloat16. Atomic. */
int aria_model_save(const aria_model *m, const char *path, aria_dtype dtype, aria_error *err);
void aria_model_free(aria_model *m);
const aria_model_config *aria_model_get_config(const aria_model *m);
int aria_model_heads(const aria_model *m);
/* Threads used by this model's kernels (default: all CPUs). */
void aria_model_set_threads(aria_model *m, int n_threads);

typedef enum {
    ARIA_OUT_LOGITS = 0, /* [vocab_size] (needs lm_head) */
    ARIA_OUT_HIDDEN = 1, /* [d_model], after the final LayerNorm */
    ARIA_OUT_EMB = 2,    /* [emb_size] (needs emb_head) */
    ARIA_OUT_CLS = 3     /* [class_size] (needs class_head) */
} aria_output;

/* Size of one output vector, or 0 when the model lacks that head. */
int aria_output_dim(const aria_model *m, aria_output what);

/* An inference session: a KV cache for `batch` sequences of up to
   `max_len` tokens that advance together. */
typedef struct aria_session aria_session;

int aria_session_new(aria_session **out, const aria_model *m, int batch, int max_len, aria_error *err);
void aria_session_free(aria_session *s);
/* Forgets every token (the cache is reused). */
void aria_session_reset(aria_session *s);
/* Tokens in each row so far. */
int aria_session_len(const aria_session *s);
/* Appends T tokens to every row (ids: [batch][T]) and runs them through
   the model. Writes `what` for every new position ([batch][T][dim]) when
   all_positions, else for the last one only ([batch][dim]). Long inputs
   are processed in blocks, so memory does not grow with T^2. */
int aria_session_forward(aria_session *s, const int32_t *ids, int T, aria_output what,
                         int all_positions, float *out, aria_error *err);


/* ====================================================================== */
/* tasks: sampling, generation, embeddings                                */
/* ====================================================================== */

typedef struct {
    float temperature; /* 0.98; 0 = greedy (argmax) */
    float min_p;       /* 0.035; keep tokens with p >= min_p * max p; 0 = off */
    float top_p;       /* 0 = off; keep the smallest set with mass >= top_p */
    int mask_invalid;  /* 1: mask tokens that cannot come next (broken
                          note/onset/dur triples, onsets running backwards
                          in a segment, prefix tokens after <S>, notes of
                          instruments the prefix does not list) */
    int force_end;     /* 1: near the budget, turn the first non-time token
                          into <D> so the piece winds down (reference --end) */
} aria_sample_opts;

aria_sample_opts aria_sample_defaults(void);

/* Grammar state of one generated row, for the mask above. */
typedef struct {
    int expect;        /* 0: an event start, 1: onset after note, 2: dur, 3: onset after drum */
    int last_onset;    /* in the current segment, -1 at its start */
    int seen_dim, seen_eos;
    uint32_t instruments; /* instrument prefixes seen (bit per aria_instrument):
                             only those instruments may play */
} aria_gen_state;

/* Replays a prompt through the grammar state. */
void aria_gen_state_init(aria_gen_state *st, const aria_tokenizer *t, const int32_t *ids, size_t n);
void aria_gen_state_push(aria_gen_state *st, const aria_tokenizer *t, int32_t id);
/* Samples the next id from logits[vocab] (modified in place). `near_end`
   tells force_end that the budget is almost spent. */
int32_t aria_sample(const aria_tokenizer *t, float *logits, int vocab, const aria_sample_opts *o,
                    const aria_gen_state *st, int near_end, aria_rng *rng);

typedef struct {
    int variations;    /* rows generated together (batch) */
    int max_new;       /* 2048 */
    uint64_t seed;
    aria_sample_opts sample;
    /* called after every step (may be NULL) */
    void (*progress)(void *ctx, int step, int max_new, int rows_done);
    void *progress_ctx;
} aria_generate_opts;

/* Continues `prompt` (ids) `variations` times. out[i] receives the whole
   sequence of row i (prompt included, cut after <E>), malloc'd, length
   out_len[i]. The context is capped as the reference caps it
   (prompt + new <= 8096 tokens and the model's max_seq_len). */
int aria_generate(const aria_model *m, const aria_tokenizer *t, const int32_t *prompt, size_t n_prompt,
                  const aria_generate_opts *o, int32_t **out, size_t *out_len, aria_error *err);

/* The global embedding of a score: mean over its 300-note chunks of the
   emb_head output at <E> (spec 4.3). out has emb_size floats. Refuses
   scores that are not piano-only, as the reference does. */
int aria_embed_score(const aria_model *m, const aria_tokenizer *t, const aria_score *s, float *out,
                     size_t *n_chunks, aria_error *err);


/* ====================================================================== */
/* training: gradients and AdamW                                          */
/* ====================================================================== */

typedef struct aria_trainer aria_trainer;

typedef struct {
    float lr;           /* 3e-4 */
    float beta1, beta2; /* 0.9, 0.95 */
    float eps;          /* 1e-5 */
    float weight_decay; /* 0.1, applied to every parameter as the reference does */
} aria_adamw_opts;

aria_adamw_opts aria_adamw_defaults(void);

/* Makes `m` trainable (its weights become one float32 arena owned by the
   trainer; gradients and AdamW moments beside it) for batches of `batch`
   sequences of `seq_len` tokens. The model must outlive the trainer. */
int aria_trainer_new(aria_trainer **out, aria_model *m, int batch, int seq_len, aria_error *err);
void aria_trainer_free(aria_trainer *t);
/* Precision of the trainer's products. Fast (the default, unless the
   environment says ARIA_PRECISION=exact): the matrix products of the
   linear layers and the lm_head, forward and backward, take bfloat16
   operands and accumulate in float32 where oneDNN is built in (float32
   master weights, gradients and optimizer state always); attention runs
   blocked float32 products; softmax and SiLU use vector exponentials.
   Exact: float32 everywhere in the reference's order of operations, as the
   conformance tests check it. Without oneDNN, fast means float32 too. */
void aria_trainer_set_exact(aria_trainer *t, int exact);
int aria_trainer_is_exact(const aria_trainer *t);
void aria_trainer_zero_grad(aria_trainer *t);
/* Forward and backward of the next-token loss on ids [batch][seq_len]
   (targets ids[t+1], the last one <P>; <P> targets ignored; mean over the
   rest). Gradients are added, multiplied by grad_scale (1/accumulation
   steps). *loss receives the unscaled mean loss. */
int aria_trainer_backward(aria_trainer *t, const int32_t *ids, float grad_scale, float *loss, aria_error *err);
/* Forward only: the same loss, no gradients. */
int aria_trainer_loss(aria_trainer *t, const int32_t *ids, float *loss, aria_error *err);
/* Global L2 norm of the gradients; when max_norm > 0 and the norm exceeds
   it, scales them down to max_norm (torch clip_grad_norm_). */
float aria_trainer_clip(aria_trainer *t, float max_norm);
/* One AdamW step with learning rate `lr` (the schedule is the caller's). */
void aria_trainer_adamw(aria_trainer *t, const aria_adamw_opts *o, float lr);
/* A gradient / parameter tensor by its official name (NULL if none);
   *n receives its element count. */
const float *aria_trainer_grad(const aria_trainer *t, const char *name, size_t *n);
const float *aria_trainer_param(const aria_trainer *t, const char *name, size_t *n);
/* The AdamW moments (for checkpoints) and the optimizer step count. */
void aria_trainer_moments(aria_trainer *t, const float **m1, const float **m2, size_t *n);
void aria_trainer_set_step(aria_trainer *t, int step);
/* The parameter and gradient arenas as single buffers of *n floats (for
   all-reducing gradients across processes). Changing parameters this way
   is only safe before the first forward pass or right after an AdamW step
   (products may keep packed copies of the weights in between). */
void aria_trainer_arena(aria_trainer *t, float **params, float **grads, size_t *n);

/* A training run (aria train): see src/tasks/trainloop.c for the run directory.
   When the caller has started MPI (as `aria train` does under mpirun),
   aria_train_run is collective: every process of MPI_COMM_WORLD calls it
   with the same options and they train one model data parallel, `batch`
   being the global batch (docs/training.md). */
typedef struct {
    const char *data_dir;   /* aria dataset output */
    const char *out_dir;    /* the run directory */
    const char *init_path;  /* weights to start from (finetuning), or NULL */
    aria_model_config config;
    int has_config;         /* config given (a new model, or to override) */
    int batch, grad_accum;  /* sequences per micro-batch, micro-batches per step */
    float lr;               /* peak learning rate, 3e-4 */
    int warmup;             /* 200 steps from 1e-6 x lr */
    int constant_lr;        /* 1: no schedule */
    float clip;             /* global grad-norm clip, 1.0; 0 = off */
    long steps;             /* optimizer steps; 0 = from epochs */
    int epochs;
    int augment;            /* pitch +-5, velocity +-10, tempo +-20 % with mixup */
    int val_every, save_every;
    int val_batches;        /* validation on the first K batches of the val split; 0 = all */
    uint64_t seed;
    int threads;
    int resume;             /* continue the run in out_dir (options from its run.json) */
    double peak_flops;      /* for the mfu figure; 0 = 1e12 */
    int exact;              /* 1: exact float32 products, 0: fast (aria_trainer_set_exact); -1: the
                               trainer's default (ARIA_PRECISION) */
    void (*progress)(void *ctx, long step, long total, float loss, double tokens_per_s);
    void *progress_ctx;
} aria_train_opts;

aria_train_opts aria_train_defaults(void);
/* The learning rate of optimizer step `step` (0-based) of `total`. */
float aria_lr_at(const aria_train_opts *o, long step, long total);
int aria_train_run(const aria_train_opts *o, aria_error *err);


/* ====================================================================== */
/* dataset: quality filters, token shards for training                    */
/* ====================================================================== */

/* The reference's data-quality tests (ariautils midi.py test_*), with the
   thresholds of aria's config.json data.tests (spec 3.1). They look at the
   score as read, before instrument removal, as the reference does. The
   enum order is the order `aria dataset` runs them in and attributes a
   dropped file to (its first failing filter): whole-file statistics first,
   sliding-window tests last. */
typedef enum {
    ARIA_FILTER_LENGTH,                    /* 30 s <= end of the last note <= 7200 s */
    ARIA_FILTER_TOTAL_NOTE_FREQUENCY,      /* 1.5 <= notes/s <= 30 */
    ARIA_FILTER_NOTE_FREQUENCY_PER_INSTRUMENT, /* 1 <= notes/s/instrument <= 25 */
    ARIA_FILTER_MAX_PROGRAMS,              /* <= 12 distinct programs */
    ARIA_FILTER_MAX_INSTRUMENTS,           /* <= 7 distinct program classes */
    ARIA_FILTER_MEAN_NOTE_VELOCITY,        /* 20 <= mean velocity <= 105 */
    ARIA_FILTER_UNIQUE_PITCH_COUNT,        /* >= 12 distinct pitches */
    ARIA_FILTER_SILENT_INTERVAL,           /* every silence < 20 s */
    ARIA_FILTER_NOTE_PITCH_ENTROPY,        /* pitch entropy >= 3.0 bits */
    ARIA_FILTER_NOTE_TIMING_ENTROPY,       /* duration entropy >= 2.5 bits */
    ARIA_FILTER_NOTE_DENSITY_IN_INTERVAL,  /* notes/s and notes/s of one pitch in windows */
    ARIA_FILTER_UNIQUE_PITCH_COUNT_IN_INTERVAL, /* distinct pitches in windows */
    ARIA_FILTER_REPETITIVE_CONTENT,        /* pieces >= 20 min whose 5 parts are alike */
    ARIA_N_FILTERS
} aria_filter;

/* The reference's test name ("note_pitch_entropy" ...), and the rule with
   its thresholds in words; NULL for an unknown filter. */
const char *aria_filter_name(int filter);
const char *aria_filter_rule(int filter);
/* Runs one filter: 1 pass, 0 fail, ARIA_ERR_NOMEM or ARIA_ERR_ARG.
   *value (may be NULL) receives what was measured (seconds, notes/s,
   bits, a count: the quantity the rule above names; for the window tests
   the worst window). */
int aria_filter_run(const aria_score *s, int filter, double *value);
/* Runs every filter. *first_failed: the first failing filter in enum
   order, or -1 when the score passes; *fail_mask (may be NULL): bit f set
   when filter f fails. ARIA_OK or ARIA_ERR_NOMEM. */
int aria_filter_all(const aria_score *s, int *first_failed, uint32_t *fail_mask);

/* A 128-bit hash of a score's musical content (notes, pedal, programs,
   tempo map, in order, ticks as stored; not ticks_per_beat or metadata,
   as the reference's MidiDict.calculate_hash leaves them out). Equal
   scores hash equal; it is not a cryptographic hash. */
void aria_score_hash(const aria_score *s, uint64_t out[2]);

/* Why `aria dataset` left a file out. */
typedef enum {
    ARIA_DROP_READ_ERROR = 0,  /* not a readable MIDI file */
    ARIA_DROP_NO_NOTES,        /* readable, but no notes */
    ARIA_DROP_FILTER,          /* + aria_filter: failed that quality filter */
    ARIA_DROP_IGNORED_INSTRUMENTS = ARIA_DROP_FILTER + ARIA_N_FILTERS,
                               /* every note is on an ignored instrument */
    ARIA_DROP_DUPLICATE,       /* same content hash as an earlier file */
    ARIA_N_DROP
} aria_drop_reason;
/* "read_error", "no_notes", the filter's name, "ignored_instruments",
   "duplicate"; NULL when out of range. */
const char *aria_drop_name(int reason);

/* Token shards. Each file <split>-e<epoch>-<k>.bin (split "train" or
   "val", k 00000, 00001, ...) is a 32-byte header (magic "ARIASHRD",
   u32 version 1, u32 seq_len, u64 n_sequences, u32 vocab_size, u32 0,
   little-endian) and n_sequences * seq_len uint16 LE ids. manifest.json
   lists them per epoch; it is written last, so a directory without it is
   an unfinished build. */
#define ARIA_SHARD_MAGIC "ARIASHRD"
#define ARIA_SHARD_VERSION 1
#define ARIA_SHARD_HEADER_BYTES 32
#define ARIA_SHARD_SEQUENCES 4096 /* sequences per shard (the last one fewer) */

typedef struct {
    int seq_len;          /* ids per sequence (8192, the model's context) */
    int epochs;           /* training epochs, each tokenized afresh (1) */
    double val_fraction;  /* of the files, for validation (0.05) */
    int sep_sequences;    /* 1: each file starts a new sequence (0) */
    int filters;          /* 1: the quality filters above (1) */
    int jobs;             /* threads (0: all CPUs) */
    uint64_t seed;        /* split, shuffles, tokenizer randomness (0) */
    int overwrite;        /* replace a finished dataset in the directory (0) */
    /* Called from the building thread, may be NULL: `stage` is "scan",
       "train e<N>" or "val e0"; done of total files. */
    void (*progress)(void *ctx, const char *stage, size_t done, size_t total);
    void *progress_ctx;
} aria_dataset_opts;

aria_dataset_opts aria_dataset_defaults(void);

typedef struct {
    size_t files_seen;          /* MIDI files found */
    size_t kept;                /* MIDI files kept */
    size_t dropped[ARIA_N_DROP];/* per reason; each file counted once */
    size_t filter_failures[ARIA_N_FILTERS]; /* every failing filter counted */
    size_t ids_sequences;       /* lines read from ids files */
    size_t train_files, val_files; /* kept files (an ids line counts as one) */
    uint64_t train_sequences;   /* over all epochs */
    uint64_t val_sequences;
    uint64_t tokens;            /* ids written, padding excluded, all shards */
} aria_dataset_summary;

/* Builds a dataset in `out_dir` (created when missing): MIDI files found
   under `inputs` (directories walked recursively for *.mid / *.midi in any
   case, or files), plus pre-tokenized `ids_files` (one sequence of ids per
   line), read, filtered, deduplicated, split by file into train and
   validation, tokenized for every epoch (validation: once) and cut into
   seq_len sequences, <P>-padded. The same inputs and options give
   byte-identical files. Errors name the file (and line) in err. Refuses a
   directory that holds manifest.json unless opts->overwrite. */
int aria_dataset_build(const char *out_dir, const char *const *inputs, size_t n_inputs,
                       const char *const *ids_files, size_t n_ids_files,
                       const aria_dataset_opts *opts, aria_dataset_summary *summary,
                       aria_error *err);

/* Reading a built dataset (what the trainer uses). */
typedef struct aria_dataset aria_dataset;
/* Reads manifest.json, checks every shard header of `split` ("train" or
   "val": magic, version, seq_len, size), maps the shards read-only. Errors
   name the file and say how to fix it (rebuild with `aria dataset`). */
int aria_dataset_open(aria_dataset **out, const char *dir, const char *split, aria_error *err);
int aria_dataset_seq_len(const aria_dataset *d);
int aria_dataset_epochs(const aria_dataset *d);
/* Sequences in that epoch (0 for an epoch out of range). */
size_t aria_dataset_size(const aria_dataset *d, int epoch);
/* Copies sequence `index` of `epoch` into out[0..seq_len). An id outside
   the vocabulary is an error naming the shard. */
int aria_dataset_get(const aria_dataset *d, int epoch, size_t index, int32_t *out, aria_error *err);
void aria_dataset_close(aria_dataset *d);

#ifdef __cplusplus
}
#endif
#endif /* ARIA_H */
