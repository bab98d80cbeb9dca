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
/* Cleaning training data (not part of the reference): removes in place
   every note (note, onset, duration) whose instrument already struck the
   same pitch at most window_ms earlier, as POP909's doubled melody and
   piano tracks do; the note kept sounds as long as the longer of the two
   (at most 5000 ms). Returns the new token count. window_ms < 0: none
   removed. */
size_t aria_tok_drop_restrikes(aria_token *toks, size_t n, int window_ms);

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

/* Built-in shapes, the files of configs/: "medium", "medium-emb", "small"
   (d 512, 8 heads, 8 layers), "tiny" (the shape of ../shared/vectors/model:
   d 64, 4 heads, 2 layers, context 512, emb 32, 5 classes). */
int aria_config_preset(aria_model_config *c, const char *name);
/* The name of preset i (0, 1, ...); NULL past the last. */
const char *aria_config_preset_name(int i);
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

/* Tensor element types. I8 and U8 are safetensors dtypes (the integers of
   a quantized matrix); Q8_0 and Q4_0 name whole block-quantized matrices
   (docs/quantization.md): blocks of 32 weights with one float16 scale,
   8-bit (q8_0) or 4-bit (q4_0) integers; Q4_K: super-blocks of 256
   weights, 4-bit integers with a 6-bit scale and min per 32. They are never
   a tensor's dtype in a file. */
typedef enum {
    ARIA_DT_F32 = 0, ARIA_DT_BF16 = 1, ARIA_DT_F16 = 2, ARIA_DT_I8 = 3, ARIA_DT_U8 = 4,
    ARIA_DT_Q8_0 = 5, ARIA_DT_Q4_0 = 6, ARIA_DT_Q4_K = 7
} aria_dtype;
/* "F32", "BF16", "F16", "I8", "U8", "q8_0", "q4_0", "q4_k"; NULL if unknown. */
const char *aria_dtype_name(aria_dtype dt);

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
   BF16, F16, I8, U8; others are an error naming the tensor), shapes against byte
   ranges, ranges inside the file and not overlapping. */
int aria_st_open(aria_safetensors *st, const char *path, aria_error *err);
/* The same checks on a file image in memory; buf is copied, so it may be
   freed as soon as this returns. */
int aria_st_open_memory(aria_safetensors *st, const uint8_t *buf, size_t len, aria_error *err);
void aria_st_close(aria_safetensors *st);
/* aria_st_open, but the file is read into anonymous memory aligned to
   2 MiB and marked for transparent huge pages (where the kernel allows)
   instead of being mapped: products that stream the weights then take far
   fewer TLB misses than from 4 KiB file pages. aria_model_load uses it. */
int aria_st_open_resident(aria_safetensors *st, const char *path, aria_error *err);
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
/* kernel context: threads, precision, backends, scratch memory           */
/* ====================================================================== */

/* What the numeric kernels run on, made by the caller and passed in:
   the thread pool, the precision, which backends may be used, and the
   scratch memory the kernels reuse. The library reads no environment
   variables; a program that wants ARIA_PRECISION or ARIA_KERNELS maps them
   to these options itself (the CLI does). */
typedef struct aria_ctx aria_ctx;

typedef enum {
    ARIA_PREC_FAST = 0,  /* large products on bfloat16 activations (oneDNN), vector exp and sums */
    ARIA_PREC_EXACT = 1  /* float32 arithmetic in the reference's order */
} aria_precision;

typedef struct {
    int threads;              /* <= 0: one per online CPU */
    aria_precision precision;
    int portable;             /* 1: the plain C kernels only (no AVX-512, no oneDNN) */
} aria_ctx_opts;

/* opts NULL: the defaults (all CPUs, fast, every backend this CPU has). */
int aria_ctx_new(aria_ctx **out, const aria_ctx_opts *opts, aria_error *err);
void aria_ctx_free(aria_ctx *c);
/* What the context runs on, e.g. "avx512 + oneDNN 2.7.3 (avx512_core_bf16),
   precision fast, 2 threads". */
const char *aria_ctx_describe(const aria_ctx *c);
/* The optional libraries (oneDNN, MPI, FluidSynth, libpng) are not linked
   but opened at their first use, so a program that needs none of them
   never loads them. This opens each one now and writes a line per library
   into buf ("oneDNN: libdnnl.so.2, loaded", or why it is not there; never
   an error: the library then does without it). Returns how many loaded. */
int aria_libs_describe(char *buf, size_t cap);

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
   matrices stay bfloat16 and are widened inside the matrix products;
   quantized matrices (aria_quantize_file: I8 / U8 integers and NAME.scale)
   are used in place too, their scales checked at load. */
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
/* The kernel context the model runs on (its sessions and trainers too).
   A model starts with its own (all CPUs, fast precision, every backend);
   aria_model_set_ctx lends it the caller's, which must outlive the model's
   use of it and is not freed with the model (NULL: back to its own).
   Change it only while the model has no trainer and no session is
   running a forward pass. */
void aria_model_set_ctx(aria_model *m, aria_ctx *ctx);
/* Threads used by this model's kernels: a new context of the model's own
   with n_threads (<= 0: all CPUs), keeping the current precision and
   backends. */
void aria_model_set_threads(aria_model *m, int n_threads);
/* The precision of the model's context (a trainer's default). */
aria_precision aria_model_precision(const aria_model *m);
/* The model's tensors in table order (official names): *t receives tensor
   i's name, the type the model uses it in (ARIA_DT_F32, ARIA_DT_BF16,
   ARIA_DT_Q8_0, ARIA_DT_Q4_0, ARIA_DT_Q4_K), shape (ndim 1 or 2), data and bytes
   (quantized: the integers; their scales not counted). ARIA_ERR_ARG past
   the end (aria_model_n_tensors). */
size_t aria_model_n_tensors(const aria_model *m);
int aria_model_tensor(const aria_model *m, size_t i, aria_tensor *t);

/* Quantizing a weights file (aria quantize, docs/quantization.md): every
   matrix of the layers and the heads becomes `type` (ARIA_DT_Q8_0,
   ARIA_DT_Q4_0 or ARIA_DT_Q4_K; a matrix whose column count is not a
   multiple of 32, 256 for q4_k, stays bfloat16), the token embedding bfloat16 (or q8_0 with embedding_q8),
   vectors float32. The output is a safetensors file: per matrix NAME the
   integers (I8 [rows, cols] for q8_0, U8 [rows, cols/2] for q4_0) and
   NAME.scale (F16 [rows, cols/32]); q4_k: U8 [rows, cols/2] and
   NAME.kscale (U8 [rows, cols/256 * 16]), metadata "aria_quant" naming the
   type, and the config ("aria_config"). The shape comes from cfg, else as
   aria_model_load finds it. Refuses an input that is already quantized,
   naming a quantized tensor, and weights that are not finite, naming the
   tensor and row. Atomic: nothing is left at out_path on failure. */
typedef struct {
    aria_dtype type;  /* ARIA_DT_Q8_0, ARIA_DT_Q4_0 or ARIA_DT_Q4_K (or BF16 / F32: a conversion) */
    int embedding_q8; /* 1: the token embedding as q8_0 too */
} aria_quantize_opts;
int aria_quantize_file(const char *in_path, const char *out_path, const aria_model_config *cfg,
                       const aria_quantize_opts *opts, aria_error *err);

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

/* How a session stores its KV cache. aria_session_new keeps float32.
   ARIA_KV_BF16 keeps bfloat16 where the model's context has fast
   precision (float32 under exact): a decoding step reads the whole cache,
   so half its bytes is a faster step and half the memory, for outputs
   that move by about 1e-3 relative, as with the reference's bfloat16
   inference. aria_generate uses it. */
typedef enum { ARIA_KV_F32 = 0, ARIA_KV_BF16 = 1 } aria_kv_type;
int aria_session_new_kv(aria_session **out, const aria_model *m, int batch, int max_len, aria_kv_type kv,
                        aria_error *err);
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
/* Input size of the model's embedding_adapter, 0 when it has none. */
int aria_model_adapter_dim(const aria_model *m);
/* Conditions a new session on an embedding (spec 4.4): embedding_adapter(
   emb) (n_emb = aria_model_adapter_dim floats) goes through all layers at
   position 0 of every row, so tokens start at position 1 (the session's
   length counts it). Rows with unconditioned[b] != 0 (may be NULL: none)
   never attend to position 0 afterwards. Must come before any token. */
int aria_session_condition(aria_session *s, const float *emb, int n_emb, const unsigned char *unconditioned,
                           aria_error *err);


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
                          instruments the prefix does not list, a key
                          struck again within 30 ms) */
    int force_end;     /* 1: near the budget, turn the first non-time token
                          into <D> so the piece winds down (reference --end) */
    float max_silence; /* seconds, with mask_invalid: no <T> or onset that
                          would leave every key silent for longer than this or
                          than the prompt's own longest silence, whichever is
                          longer (4; 0 = off) */
} aria_sample_opts;

aria_sample_opts aria_sample_defaults(void);

/* Grammar state of one generated row, for the mask above. */
typedef struct {
    int expect;        /* 0: an event start, 1: onset after note, 2: dur, 3: onset after drum */
    int last_onset;    /* in the current segment, -1 at its start */
    int seen_dim, seen_eos;
    uint32_t instruments; /* instrument prefixes seen (bit per aria_instrument):
                             only those instruments may play */
    int note_instr, note_pitch; /* the note waiting for its onset */
    int32_t strike_ms[ARIA_N_INSTR][128]; /* each key's last strike (absolute ms,
                                             plus 1; 0: never) */
    int sounding;      /* the pending onset belongs to a note or a drum hit */
    int64_t seg_ms;    /* start of the current segment (ms after the first token) */
    int64_t onset_ms;  /* the last onset, absolute */
    int64_t sound_end; /* when the last sound stops (ms); -1 before any */
    int64_t gap_max;   /* the longest silence between sounds so far (ms) */
    int64_t prompt_gap; /* gap_max at the end of the prompt */
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
    /* Classifier-free guidance on an embedding (spec 4.4; the model needs
       embedding_adapter). cond_embedding NULL: plain generation. Else each
       variation runs as a conditioned and an unconditioned row in one
       batch; step s (from 1) samples from g cond + (1 - g) uncond logits,
       g = min(cfg, cfg s / W), with <D> excluded, and both rows take the
       token. */
    const float *cond_embedding; /* cond_dim floats */
    int cond_dim;                /* = aria_model_adapter_dim */
    float cfg;                   /* guidance 0..10; 0 = unconditioned, 1 = conditioned */
    int cfg_warmup;              /* W: 0 = min(250, max_new) as the reference; < 0: none */
} aria_generate_opts;

/* Continues `prompt` (ids) `variations` times. out[i] receives the whole
   sequence of row i (prompt included, cut after <E>), malloc'd, length
   out_len[i]. The context is capped as the reference caps it
   (prompt + new <= 8096 tokens and the model's max_seq_len, one less
   with cond_embedding, which takes position 0). */
int aria_generate(const aria_model *m, const aria_tokenizer *t, const int32_t *prompt, size_t n_prompt,
                  const aria_generate_opts *o, int32_t **out, size_t *out_len, aria_error *err);

/* The global embedding of a score: mean over its 300-note chunks of the
   emb_head output at <E> (spec 4.3). out has emb_size floats. Refuses
   scores that are not piano-only, as the reference does. */
int aria_embed_score(const aria_model *m, const aria_tokenizer *t, const aria_score *s, float *out,
                     size_t *n_chunks, aria_error *err);

/* The mean next-token loss of a model over a dataset split (aria
   eval-loss): every sequence of epoch 0 of `split` ("train" or "val") of
   an `aria dataset` directory, targets ids[t+1] with <P> targets left out
   (the trainer's loss, in float32 logits with double sums), averaged over
   all targets of all sequences. max_sequences 0: all. progress (may be
   NULL) is called after each sequence. */
typedef struct {
    double loss;        /* mean over targets, nats */
    uint64_t tokens;    /* targets counted */
    size_t sequences;
} aria_eval_result;
int aria_eval_loss(const aria_model *m, const char *data_dir, const char *split, size_t max_sequences,
                   void (*progress)(void *ctx, size_t done, size_t total), void *progress_ctx,
                   aria_eval_result *out, aria_error *err);

/* ====================================================================== */
/* tasks: files in and out (what the `aria` commands do with files)      */
/* ====================================================================== */

/* Lists of token ids as text. One rule for every reader of ids (aria
   detokenize, generate --prompt-ids, logits --ids, and each line of an
   `aria dataset --ids` file):
     - an id is a run of decimal digits (no sign, no exponent, no
       fraction) whose value is below `vocab`;
     - ids are separated by any run of spaces, tabs, CR, LF and commas,
       which may also lead and trail;
     - the whole list may be wrapped in one pair of square brackets, so a
       JSON array of integers ("[6, 0, 1016]") is a list too;
     - nothing but separators (or "[]") is a valid empty list: n = 0.
   Errors are ARIA_ERR_FORMAT and say the byte offset (from the start of
   `text`) of what was found, quoting it:
     "byte 4: expected a token id, got 'x7'"
     "byte 4: token id 99999 is outside the vocabulary (0..17726)"
     "byte 0: '[' without a closing ']'", "byte 9: ']' without an opening '['"
   *out is malloc'd (also when n is 0); the caller frees it. */
int aria_ids_parse(const char *text, size_t len, int vocab, int32_t **out, size_t *n, aria_error *err);
/* The same for a whole file (errors: the reading's, or those above). */
int aria_ids_read_file(const char *path, int vocab, int32_t **out, size_t *n, aria_error *err);
/* Tokens from text that is either a JSON array of tokens (what `aria
   tokenize` prints; its first element is a string or an array:
   aria_tok_parse_json) or a list of ids (the rule above, the tokenizer's
   vocabulary), as `aria detokenize` reads its input. *out is malloc'd. */
int aria_tok_parse_text(const aria_tokenizer *t, const char *text, size_t len, aria_token **out, size_t *n,
                        aria_error *err);
/* The text of a list in that format: ids separated by one space, then
   "\n" (what `aria tokenize --ids` prints). *out is malloc'd,
   NUL-terminated, *len bytes without the NUL. */
int aria_ids_format(const int32_t *ids, size_t n, char **out, size_t *len, aria_error *err);
/* One line for a token sequence, as `aria tokenize` prints it: the ids
   (as_ids, the format above) or a JSON array of the tokens
   (aria_tok_to_json), then "\n". *out as above. */
int aria_tok_format_line(const aria_tokenizer *t, const aria_token *toks, size_t n, int as_ids, char **out,
                         size_t *len, aria_error *err);

/* Tokenizing many MIDI files on several threads (aria tokenize FILE...,
   and aria dataset's passes). Each file is read, made a score and
   tokenized with an RNG of its own, so results do not depend on threads
   or timing; each has its own status, so a bad file is one failed slot
   and the others go on. */
typedef enum {
    ARIA_BATCH_TOKENIZE = 0, /* aria_tokenize with `tok`: one sequence per file */
    ARIA_BATCH_PROMPT = 1,   /* aria_tok_prompt of the first prompt_ms: one sequence */
    ARIA_BATCH_CHUNKS = 2    /* aria_tok_embedding_chunks (300 notes, at most 2048
                                tokens): one sequence per chunk */
} aria_batch_mode;

typedef struct {
    int status;        /* ARIA_OK, or why this file failed (message in err) */
    aria_error err;    /* the message, without the file's name */
    aria_token *toks;  /* the sequences one after another (malloc'd) */
    size_t n_toks;
    size_t *ends;      /* sequence k is toks[k ? ends[k-1] : 0 .. ends[k]) */
    size_t n_seqs;     /* 1, or the chunks; 0 for a failed file or a NULL path */
    int n_warnings;    /* what the MIDI reader forgave (a damaged file read as far as it goes) */
    char warning[160]; /* the first of them */
} aria_batch_file;

typedef struct {
    aria_batch_mode mode;
    aria_tokenize_opts tok; /* ARIA_BATCH_TOKENIZE (aria_tokenize_defaults()) */
    int64_t prompt_ms;      /* ARIA_BATCH_PROMPT */
    int exact_timing;       /* scores integrate the tempo map exactly */
    uint64_t seed;          /* each file's RNG is seeded with seeds[i] when */
    const uint64_t *seeds;  /* seeds is not NULL, else with seed (0) */
    int jobs;               /* threads, the caller's included; 0: one per CPU */
    /* Both may be NULL. on_file runs in the worker thread that finished
       file i, concurrently with other workers, right after its slot is
       filled: it may use and free the tokens (aria_batch_file_free), e.g.
       to write them out, or change the slot's status. progress runs
       after it, one call at a time, with the number of files done. */
    void (*on_file)(void *ctx, size_t i, aria_batch_file *f);
    void (*progress)(void *ctx, size_t done, size_t total);
    void *ctx;
} aria_batch_opts;

aria_batch_opts aria_batch_defaults(void);
/* Fills out[0..n) (caller's array) for paths[0..n). A NULL path gives an
   empty ARIA_OK slot, so a caller can keep items of its own in the same
   order. Returns ARIA_OK when the batch ran, whatever the files' fates
   (look at each out[i].status), or ARIA_ERR_ARG. */
int aria_batch_tokenize(const aria_tokenizer *t, const char *const *paths, size_t n, const aria_batch_opts *opts,
                        aria_batch_file *out, aria_error *err);
void aria_batch_file_free(aria_batch_file *f);

/* The tokenizer configuration of a model's vocabulary size: 17729 and
   2675 are the demo configurations, anything else the default (17727).
   aria_tokenizer_for_model makes that tokenizer (NULL: out of memory). */
aria_tok_variant aria_tok_variant_for_vocab(int vocab_size);
aria_tokenizer *aria_tokenizer_for_model(const aria_model *m);

/* The generation prompt of a MIDI file (aria generate --prompt): the
   ids of aria_tok_prompt over its first prompt_ms, prefix order drawn
   with seed 0. The window counts from the file's time 0, as the
   reference's does, so a file whose first note starts later gives a
   prompt without notes: not an error, but flagged in *info (may be NULL;
   filled as soon as the file is read, also when tokenizing then fails)
   for the caller to warn about. *ids is malloc'd. */
typedef struct {
    int window_before_first_note; /* the first note starts after prompt_ms */
    int64_t first_note_ms;        /* its onset (0 when the file has no notes) */
    int n_warnings;               /* what the MIDI reader forgave, and the first */
    char warning[160];
} aria_prompt_info;
int aria_prompt_from_file(const aria_tokenizer *t, const char *path, int64_t prompt_ms, int32_t **ids, size_t *n,
                          aria_prompt_info *info, aria_error *err);

/* A token sequence as a MIDI file (aria detokenize, aria generate):
   detokenized (type 0, 500 ticks per beat, 1 tick = 1 ms) and written
   atomically, so on any failure nothing is left at `path`. ARIA_ERR_IO
   means the output file could not be written; any other status is about
   the tokens (ARIA_ERR_EMPTY "no tokens" when n is 0). *n_skipped (may
   be NULL) counts malformed tokens left out. */
int aria_tokens_write_midi(const aria_tokenizer *t, const aria_token *toks, size_t n, const char *path,
                           size_t *n_skipped, aria_error *err);
int aria_ids_write_midi(const aria_tokenizer *t, const int32_t *ids, size_t n, const char *path, size_t *n_skipped,
                        aria_error *err);

/* A float32 matrix [rows][cols] as a NumPy .npy file (format 1.0, '<f4',
   C order), written atomically (aria embed -o). */
int aria_npy_write_f32(const char *path, const float *x, size_t rows, size_t cols, aria_error *err);
/* Reads a float32 .npy file ('<f4', C order, versions 1-3) of shape (n,)
   (read as 1 x n), (rows, cols) or () (1 x 1). *x is malloc'd. Anything
   else is ARIA_ERR_FORMAT saying what the file holds. */
int aria_npy_read_f32(const char *path, float **x, size_t *rows, size_t *cols, aria_error *err);

/* What `aria info` reports about a MIDI file. */
typedef struct {
    int format;             /* 0, 1 or 2 */
    int ppq;                /* ticks per quarter note; 0 for SMPTE division */
    int smpte_fps, smpte_tpf; /* SMPTE division (aria_midi's fields) */
    size_t n_tracks;        /* tracks read */
    int ntracks_declared;   /* tracks the header announces */
    size_t n_events;        /* events in all tracks */
    int64_t duration_ms;    /* end of the last note (the reference's tick -> ms) */
    size_t n_notes, n_drum_notes; /* drum: channel 10 */
    aria_program *programs; /* program changes of the score, in order (malloc'd) */
    size_t n_programs;
    size_t n_tempos;        /* tempo changes (>= 1: a default is added) */
    uint32_t first_tempo;   /* microseconds per beat of the first; 0 when none */
    size_t n_pedals, n_pedals_down; /* sustain pedal messages, and those pressing it */
    int n_warnings;         /* what the reader forgave: how many, and the first few */
    char warnings[ARIA_MIDI_MAX_WARNINGS][160];
} aria_file_stats;
int aria_file_stats_read(aria_file_stats *st, const char *path, aria_error *err);
void aria_file_stats_free(aria_file_stats *st);


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

/* A trainer for `m` on batches of `batch` sequences of `seq_len` tokens.
   The model becomes trainable: its weights move into one float32 arena
   that the model owns (and keeps, with the trained values, after the
   trainer is freed); the trainer owns the gradients, AdamW moments and
   activations. The model must outlive the trainer. */
int aria_trainer_new(aria_trainer **out, aria_model *m, int batch, int seq_len, aria_error *err);
void aria_trainer_free(aria_trainer *t);
/* Precision of the trainer's products (default: the model's context's,
   aria_model_precision). Fast: the matrix products of the
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
/* The same two, conditioned on embeddings (spec 3.3, training the
   embedding_adapter): a row b with use[b] != 0 (use NULL: every row) is
   fed [embedding_adapter(emb[b]), tok(ids[b][0]) .. tok(ids[b][T-2])]:
   the adapter's output takes position 0 and every token moves one
   position right, the last falling off; position j >= 1 is trained
   against ids[b][j] (<P> ignored), position 0 not at all. The adapter's
   gradient is d(position 0) outer emb[b]. Other rows are the plain loss.
   emb [batch][aria_model_adapter_dim]; the model needs an adapter. */
int aria_trainer_backward_cond(aria_trainer *t, const int32_t *ids, const float *emb, const unsigned char *use,
                               float grad_scale, float *loss, aria_error *err);
int aria_trainer_loss_cond(aria_trainer *t, const int32_t *ids, const float *emb, const unsigned char *use,
                           float *loss, aria_error *err);
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
/* Time spent per kind of work (products, attention, layernorm, swiglu,
   loss, optimizer, other), summed while profiling is on (off by default;
   costs nothing then). aria_trainer_profile fills up to `cap` names and
   seconds (either array may be NULL) and returns how many kinds there are. */
/* Residual dropout from now on (0 <= p < 1; 0: none, the default): in
   every forward pass, until changed, each element of layer l's attention
   and feed-forward outputs is dropped with probability p l / (L - 1) (the
   reference's layer-scaled resid_dropout, spec 3.5) and the rest scaled by
   1 / (1 - that), before they join the residual stream; the backward pass
   uses the same masks. The masks are a hash of (seed, layer, branch,
   element), the element counted from row first_row of a larger batch (so
   that processes holding slices of one batch draw what one process
   would). Set it before a forward pass and leave it for its backward. */
void aria_trainer_set_dropout(aria_trainer *t, float p, uint64_t seed, long first_row);
void aria_trainer_set_profile(aria_trainer *t, int on);
int aria_trainer_profile(const aria_trainer *t, const char **names, double *secs, int cap);

/* A head at one position per row (the contrastive and classifier
   finetunes, spec 3.4-3.5). aria_trainer_forward_at runs ids
   [batch][seq_len] through the layers, keeping what the backward pass
   needs, then the final LayerNorm and head `what` (ARIA_OUT_EMB or
   ARIA_OUT_CLS) only at position pos[b] of row b: out [batch][dim]. No
   next-token logits are computed. aria_trainer_backward_at adds the
   gradients of a loss whose gradient with respect to that output is dout
   [batch][dim] (already scaled) for the same ids. A trainer needs an
   lm_head only for the next-token loss. */
int aria_trainer_forward_at(aria_trainer *t, const int32_t *ids, const int *pos, aria_output what, float *out,
                            aria_error *err);
int aria_trainer_backward_at(aria_trainer *t, const int32_t *ids, const float *dout, aria_error *err);

/* Symmetric NT-Xent on cosine similarity (the reference's
   symmetric_nt_xent_loss_cosine): z1, z2 [B][dim] (view 1 and view 2 of
   B files), S[i][j] = cos(z1_i, z2_j) / tau, loss = (CE(S, diag) +
   CE(S^T, diag)) / 2. S (may be NULL) receives S [B][B]; dz1, dz2 (may be
   NULL) the loss's gradients. NaN for bad arguments or no memory. */
float aria_ntxent(const float *z1, const float *z2, int B, int dim, float tau, float *S, float *dz1, float *dz2);
/* Rows i whose most similar z2 row (cosine) is z2_i: the retrieval hits. */
int aria_ntxent_hits(const float *z1, const float *z2, int B, int dim);
/* Mean softmax cross-entropy of logits [n][C] against y (may be NULL:
   probabilities only); probs (may be NULL) [n][C]; dlogits (may be NULL)
   the gradient of the mean times scale. */
float aria_softmax_xent(const float *logits, int n, int C, const int *y, float *probs, float *dlogits, float scale);

/* Finetuning a model into another kind (src/model/heads.c). The model
   becomes trainable (float32 arena) and gets exactly the heads `heads`
   (ARIA_HEAD_* bits): tensors it keeps are kept, a new emb_head
   (emb_size rows) or class_head (class_size rows) is drawn N(0, 0.02)
   from seed, heads not named are dropped (and their sizes leave the
   config). A new embedding_adapter (input size emb_size, else the
   config's emb_size; the config's emb_size becomes its input size) is
   drawn N(0, 0.02) too; it needs no emb_head beside it, but when there is
   one both take the same size. */
int aria_model_set_heads(aria_model *m, int heads, int emb_size, int class_size, uint64_t seed, aria_error *err);
/* Draws row `row` of tensor `tensor` (official name) N(0, std) from seed
   (the classifier recipe re-draws the <E> embedding row). */
int aria_model_reinit_row(aria_model *m, const char *tensor, int64_t row, float std, uint64_t seed,
                          aria_error *err);
/* A metadata value of the file the model was loaded from, or NULL. */
const char *aria_model_meta(const aria_model *m, const char *key);
/* aria_model_save (float32) with extra metadata pairs, e.g. a
   classifier's "aria_classes" (a JSON array of the label names). */
int aria_model_save_meta(const aria_model *m, const char *path, const char *const *keys, const char *const *vals,
                         size_t n_meta, aria_error *err);

/* A classifier's class names, from its file's "aria_classes" metadata (a
   JSON array of strings, as aria train --objective classify writes it):
   *names malloc'd array of malloc'd strings, *n their count (the model's
   class_size); when the file has none, "0", "1", ... Free with
   aria_class_names_free. */
int aria_model_class_names(const aria_model *m, char ***names, int *n, aria_error *err);
void aria_class_names_free(char **names, int n);

/* A file's class probabilities (aria classify, and the classifier
   finetune's validation, spec 3.5): the score (piano only) cut into chunks
   of notes_per_chunk notes (aria_tok_embedding_chunks, at most max_len
   tokens each, <E> last), each chunk's class_head softmax at <E> weighted
   by its token count (non-pad), summed and normalized: probs
   [class_size]. *n_chunks (may be NULL) receives the chunk count. */
int aria_classify_score(const aria_model *m, const aria_tokenizer *t, const aria_score *s, int notes_per_chunk,
                        int max_len, float *probs, size_t *n_chunks, aria_error *err);

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
    int launched_size;      /* processes an MPI launcher started (aria_launch.size; 0 or 1: none):
                               a run that is one of several without an MPI world refuses to
                               start rather than train alone over the others' files */
    void (*progress)(void *ctx, long step, long total, float loss, double tokens_per_s);
    void *progress_ctx;
    aria_ctx *ctx;          /* kernel context of the run's model (not owned): its precision,
                               backends and threads; NULL: the model's own with `threads`.
                               Under MPI with threads 0, each process takes its share of the CPUs */
    int profile;            /* time the trainer's work (aria_trainer_set_profile) */
    /* called with progress_ctx just before the trainer is freed (may be
       NULL): the place to read aria_trainer_profile */
    void (*trainer_done)(void *ctx, const aria_trainer *t);
    /* A new run refuses a directory that holds one (run.json, log.jsonl or
       checkpoint.json) unless `overwrite`; then the old run's files go.
       Every input (data, weights, the run to resume, the sequence length
       against the model's context) is checked before anything is created. */
    int overwrite;
    /* called with progress_ctx after each validation (may be NULL) */
    void (*validated)(void *ctx, long step, float val_loss);
    /* The objective (docs/training.md). ARIA_OBJ_LM: the next-token loss
       on data_dir. ARIA_OBJ_CONTRASTIVE (spec 3.4): MIDI files, two random
       views of 100-650 notes per file per step, symmetric NT-Xent at <E>;
       the model gets an emb_head (emb_size) and loses its lm_head.
       ARIA_OBJ_CLASSIFY (spec 3.5): the files of `labels` for `task`,
       class_head at <E>, the <E> embedding row re-drawn N(0, 0.02). */
    int objective;
    const char *const *inputs; /* contrastive: MIDI files and folders (walked for *.mid, *.midi) */
    size_t n_inputs;
    const char *val_list;   /* contrastive: validation files, one path per line (else val_fraction) */
    double val_fraction;    /* held-out share of the files (contrastive) or groups (classify);
                               < 0: the objective's default (0.05, 0.2); 0: none */
    int seq_len;            /* contrastive and classify: tokens per sequence (0: 2048 / 1024) */
    float tau;              /* NT-Xent temperature (0.1) */
    int emb_size;           /* a new emb_head's size (0: the config's, else 512) */
    const char *labels;     /* classify: the labels CSV (path,task,label,group) */
    const char *task;       /* classify: which task of the CSV */
    const char *root;       /* classify: the folder the CSV's paths are relative to (NULL: the CSV's) */
    int per_class;          /* classify: at most this many training files per class (0: all) */
    int folds, fold;        /* classify: folds > 1 splits by group into folds, fold `fold` held out */
    int notes_per_chunk;    /* classify: notes per chunk (300) */
    int max_chunks;         /* classify: at most this many chunks of a file, evenly spaced (chunk j of K
                               at floor((j + 0.5) n / K), as aria probe --max-chunks); 0: all */
    /* Training the embedding_adapter (ARIA_OBJ_LM, spec 3.3): the
       embedding model file data_dir's embeddings came from (aria dataset
       --embedding-model; its content hash must match the manifest's).
       A model without an adapter gets one, N(0, 0.02). Each micro-batch
       is conditioned with probability condition_p (0.5), drawn from the
       run's generator: aria_trainer_backward_cond on its rows that have
       an embedding. NULL: the plain next-token run. */
    const char *condition_on;
    float condition_p;
    /* classify: residual dropout p (aria_trainer_set_dropout; the reference
       uses 0.2), a new mask per micro-batch from (seed, step); 0: none */
    float dropout;
} aria_train_opts;

enum { ARIA_OBJ_LM = 0, ARIA_OBJ_CONTRASTIVE = 1, ARIA_OBJ_CLASSIFY = 2 };

aria_train_opts aria_train_defaults(void);
/* The learning rate of optimizer step `step` (0-based) of `total`. */
float aria_lr_at(const aria_train_opts *o, long step, long total);
int aria_train_run(const aria_train_opts *o, aria_error *err);

/* Data-parallel set-up (MPI, src/dist). A program started by an MPI
   launcher (mpirun, mpiexec, srun) starts MPI before its threads, runs
   aria_train_run on every process, and stops MPI at the end. Whether a
   launcher started the process is in its environment, which the library
   never reads: aria_dist_launch_info asks the caller's `lookup` (pass
   getenv) for the variables Open MPI, PMIx and MPICH/PMI launchers set. */
typedef struct {
    int under_launcher; /* 1: a launcher started this process */
    int size;           /* processes it started; 1 when it does not say */
} aria_launch;
aria_launch aria_dist_launch_info(char *(*lookup)(const char *name));
/* 1 when this library is built with MPI. */
int aria_dist_built_with_mpi(void);
/* Starts MPI when launch->under_launcher and the library has MPI; else
   does nothing and the program is one process. Call once, from the main
   thread, before any other thread exists. */
void aria_dist_start(const aria_launch *launch);
/* Stops MPI if aria_dist_start started it. */
void aria_dist_stop(void);
/* This process (0 ..) and the number of processes: 0 and 1 without MPI. */
int aria_dist_rank(void);
int aria_dist_size(void);


/* ====================================================================== */
/* tasks: hearing and seeing a MIDI file (aria render, aria roll)         */
/* ====================================================================== */

/* Audio through libfluidsynth (src/tasks/render.c): offline, no sound
   card. Built without FluidSynth, aria_render_midi fails with a message
   saying how to get it. */
typedef struct {
    const char *soundfont; /* .sf2/.sf3 file; NULL: aria_soundfont_default() */
    int sample_rate;       /* 44100 */
    float gain;            /* FluidSynth's master gain, 0.6 */
    double tail_s;         /* 2.0 s rendered after the last event (release, reverb) */
} aria_render_opts;
aria_render_opts aria_render_defaults(void);
/* 1 when this library was built with FluidSynth and its library loads here
   (it is opened at the first call, see aria_libs_describe). */
int aria_render_available(void);
/* The first General MIDI soundfont found at Debian's paths
   (/usr/share/sounds/sf2/FluidR3_GM.sf2 first), or NULL. */
const char *aria_soundfont_default(void);
/* ARIA_OK when `path` can be opened and is a SoundFont (RIFF sfbk). */
int aria_soundfont_check(const char *path, aria_error *err);

typedef struct {
    double music_s;        /* time of the last channel event */
    double seconds;        /* music_s + tail_s: the length rendered */
    size_t frames;
    int peak;              /* largest |sample| (0..32767) */
    size_t clipped;        /* samples that exceeded 16 bits (lower the gain) */
    const char *soundfont; /* the one used */
} aria_render_info;
/* Every channel message of `m` (notes, pedal and other controllers,
   programs, pitch bend), timed by the exact tempo map, rendered to 16-bit
   interleaved stereo: *pcm (malloc'd) of *frames frames. info may be NULL. */
int aria_render_midi(const aria_midi *m, const aria_render_opts *o, int16_t **pcm, size_t *frames,
                     aria_render_info *info, aria_error *err);
/* A 16-bit PCM WAV file, written atomically. */
int aria_wav_write(const char *path, const int16_t *pcm, size_t frames, int channels, int sample_rate,
                   aria_error *err);

/* A piano roll (src/tasks/roll.c): pitch against seconds, velocity as
   shade, a sustain pedal lane, a time axis; notes starting before
   prompt_s (when >= 0) in the prompt's colour (blue), the rest orange. */
typedef struct {
    int width;        /* pixels, 200..20000 (1200) */
    double prompt_s;  /* < 0: no prompt (-1) */
} aria_roll_opts;
aria_roll_opts aria_roll_defaults(void);

typedef struct {
    int width, height;
    uint8_t *rgb;             /* height rows of width RGB pixels (malloc'd) */
    /* where things are drawn (aria_roll_x / aria_roll_y) */
    int x0;                   /* x of 0 s */
    double px_per_s;
    int top, row_h;           /* pitch p's row: y from aria_roll_y(p), row_h high */
    int pitch_lo, pitch_hi;   /* the rows drawn (whole octaves) */
    int pedal_top, pedal_h;   /* the sustain pedal lane */
    double seconds;           /* the time drawn: 0 .. end of the last note or pedal */
} aria_roll;
/* Draws the score with its own tick->ms (set s->exact_timing for exact
   times). aria_roll_free releases the pixels. */
int aria_roll_draw(const aria_score *s, const aria_roll_opts *o, aria_roll *out, aria_error *err);
void aria_roll_free(aria_roll *r);
int aria_roll_x(const aria_roll *r, double seconds);
int aria_roll_y(const aria_roll *r, int pitch);
/* 1 when built with libpng and it loads here (opened at the first call);
   else aria_png_write says how to get it. */
int aria_png_available(void);
/* An 8-bit RGB PNG, written atomically. */
int aria_png_write(const char *path, const uint8_t *rgb, int width, int height, aria_error *err);


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

/* Files that belong together (src/tasks/groups.c): a split keeps each
   group on one side, so that versions or parts of one piece are never in
   both training and validation.
     AUTO   the folder ("versions" counted as its parent) + the file name
            without version / part marks (-v2, _mov_1, _no_12, _part1,
            _cut ...): POP909's NNN/NNN.mid and NNN/versions/NNN-vK.mid, a
            GiantMIDI recording's movements; and names ending in ", ID"
            (an 11-character YouTube id, GiantMIDI's naming) join every
            file whose name contains that ID.
     DIR    the folder ("versions" counted as its parent).
     REGEX  the first parenthesised part (else the whole) of the match of a
            POSIX extended regular expression on the path; no match: alone.
     NONE   each file alone. */
typedef enum { ARIA_GROUP_AUTO = 0, ARIA_GROUP_DIR, ARIA_GROUP_REGEX, ARIA_GROUP_NONE } aria_group_mode;
/* "auto", "dir", "none" or "regex:PATTERN" (*pattern points into text);
   0, or -1 for anything else. */
int aria_group_mode_parse(const char *text, aria_group_mode *mode, const char **pattern);
/* group[i] (caller's array of n) receives the group of paths[i]; groups are
   numbered 0.. in order of their first path; *n_groups their count.
   ARIA_ERR_ARG for a pattern that does not compile (the message says why). */
int aria_group_paths(const char *const *paths, size_t n, aria_group_mode mode, const char *pattern,
                     size_t *group, size_t *n_groups, aria_error *err);

typedef struct {
    int seq_len;          /* ids per sequence (8192, the model's context) */
    int epochs;           /* training epochs, each tokenized afresh (1) */
    double val_fraction;  /* of the files, for validation (0.05) */
    int sep_sequences;    /* 1: each file starts a new sequence (0) */
    int filters;          /* 1: the quality filters above (1) */
    int jobs;             /* threads (0: all CPUs) */
    uint64_t seed;        /* split, shuffles, tokenizer randomness (0) */
    int overwrite;        /* replace a finished dataset in the directory (0) */
    aria_group_mode group_by; /* what the split keeps together (ARIA_GROUP_AUTO) */
    const char *group_pattern; /* the regular expression of ARIA_GROUP_REGEX */
    /* Called with progress_ctx from the building thread for every MIDI file
       left out, in path order, once the scan and dedup are done (may be
       NULL): its reason
       (aria_drop_reason) and a detail: the reader's error, the filter's
       measured value, the file it duplicates. DATA/dropped.tsv lists the
       same (path, reason, detail). */
    void (*on_drop)(void *ctx, const char *path, int reason, const char *detail);
    /* Called from the building thread, may be NULL: `stage` is "scan",
       "train e<N>" or "val e0"; done of total files. */
    void (*progress)(void *ctx, const char *stage, size_t done, size_t total);
    void *progress_ctx;
    /* Called like on_drop for every MIDI file the reader could read only
       in part (damaged: a chunk cut short, a bad event...), kept or not:
       how many problems and the first (may be NULL). */
    void (*on_damaged)(void *ctx, const char *path, int n_warnings, const char *first);
    int strict;           /* 1: drop damaged files as read errors (0) */
    /* Per-file embeddings for training an embedding adapter (aria train
       --condition-on, spec 3.3; needs sep_sequences): every kept MIDI file
       embedded as aria_embed_score does, into DATA/embeddings.npy, each
       sequence's row in DATA/<split>-e<epoch>.rows; a file that cannot be
       embedded (not piano-only) keeps a zero row that no sequence uses
       (DATA/embeddings.txt says why). embed_model_path: the model's file,
       whose name, size and content hash (aria_file_hash) the manifest
       records. Progress stage "embed". NULL: none. */
    const aria_model *embed_model;
    const char *embed_model_path;
    /* 1: drop from every tokenized file each note whose key its instrument
       struck at most restrike_ms earlier (aria_tok_drop_restrikes; not in
       the reference recipe: POP909 doubles its melody across tracks) (0) */
    int drop_restrikes;
    int restrike_ms;
} aria_dataset_opts;

aria_dataset_opts aria_dataset_defaults(void);

typedef struct {
    size_t files_seen;          /* MIDI files found */
    size_t kept;                /* MIDI files kept */
    size_t dropped[ARIA_N_DROP];/* per reason; each file counted once */
    size_t filter_failures[ARIA_N_FILTERS]; /* every failing filter counted */
    size_t ids_sequences;       /* lines read from ids files */
    size_t train_files, val_files; /* kept files (an ids line counts as one) */
    size_t groups, val_groups;     /* groups of kept files (an ids line is one) */
    uint64_t train_sequences;   /* over all epochs */
    uint64_t val_sequences;
    uint64_t tokens;            /* ids written, padding excluded, all shards */
    size_t embedded;            /* with embed_model: kept files embedded */
} aria_dataset_summary;

/* Builds a dataset in `out_dir` (created when missing): MIDI files found
   under `inputs` (directories walked recursively for *.mid / *.midi in any
   case, or files), plus pre-tokenized `ids_files` (one sequence of ids per
   line), read, filtered, deduplicated, split into train and validation
   keeping each group (opts->group_by) on one side, tokenized for every
   epoch (validation: once) and cut into seq_len sequences, <P>-padded. The same inputs and options give
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
/* A dataset built with an embedding model: 1, and its emb_size, the
   model's file name and content hash as the manifest records them (owned
   by d); 0 without embeddings. */
int aria_dataset_emb_info(const aria_dataset *d, int *dim, const char **model, const char **model_hash);
/* The embedding of the file sequence `index` of `epoch` came from
   (emb_size floats, owned by d), or NULL: no embeddings, or that file
   could not be embedded. */
const float *aria_dataset_embedding(const aria_dataset *d, int epoch, size_t index);
/* A file's content hash, "fnv1a64:<16 hex digits>" (FNV-1a over its
   bytes) into out[cap], its size into *bytes (may be NULL). */
int aria_file_hash(const char *path, char *out, size_t cap, uint64_t *bytes, aria_error *err);


/* ====================================================================== */
/* labels: labelled MIDI files for probes and classifiers (docs/probe.md) */
/* ====================================================================== */

/* A labels file is CSV (RFC 4180 quoting, comma-separated, first line the
   header) with at least the columns path, task, label, group in any order.
   One row labels one file for one task; rows of other tasks are ignored.
     path   relative to `root` (or absolute);
     label  the class; an empty label is skipped and counted;
     group  files that must stay on one side of a split (one piece played
            several times); empty: the file is a group of its own.
   root NULL: the CSV's folder, or its parent when the first row's file is
   found there and not in the CSV's folder (../shared/midi/eval/labels.csv
   lists "eval/asap/..." relative to its parent).
   A file that does not exist is skipped and listed in `missing`. Classes
   are sorted by name (strcmp); y[i] is rows[i]'s class index.
   Errors (ARIA_ERR_FORMAT / ARIA_ERR_ARG / ARIA_ERR_IO), one line naming
   the line ("line 7: ..."; as elsewhere the caller puts the CSV's name in
   front, `aria: labels.csv: line 7: ...`): a missing column, an unterminated quote, a row
   with too few fields, an unknown task (the message lists the tasks the
   file has), a task with one class only (after skips), no file found. */
typedef struct { char *path; char *label; char *group; } aria_label_row;  /* path resolved */
typedef struct {
    aria_label_row *rows;
    size_t n;
    char **classes;
    int n_classes;
    int *y;
    /* what was left out */
    size_t n_empty_label;   /* rows of the task with an empty label */
    char **missing;         /* resolved paths of files not found (malloc'd) */
    size_t n_missing;
    char **dropped_classes; /* classes removed by aria_labels_drop_small */
    int n_dropped_classes;
    size_t n_dropped_rows;  /* their rows */
    char *root;             /* the root the paths were resolved against */
    char *csv;              /* the CSV's path, for messages */
    char *task;
} aria_labels;
int aria_labels_read(const char *csv, const char *task, const char *root, aria_labels *out, aria_error *err);
void aria_labels_free(aria_labels *l);
/* Number of distinct groups among rows of class c. */
size_t aria_labels_class_groups(const aria_labels *l, int c);
/* Removes every class that has fewer than `min_groups` groups (it cannot be
   in every fold of a min_groups-fold split), with its rows, counted in
   n_dropped_rows and named in dropped_classes; classes are renumbered.
   ARIA_ERR_ARG when fewer than two classes remain (the message names the
   classes kept and dropped). */
int aria_labels_drop_small(aria_labels *l, int min_groups, aria_error *err);
/* k folds by group: fold[i] in 0..k-1 for row i; no group on two folds */
/* Groups are shuffled by `seed` (the same seed, the same folds) and each
   goes to the fold with the fewest rows of the group's main class (then
   the fewest rows, then the lowest index), so classes spread evenly.
   ARIA_ERR_ARG when k < 2, when there are fewer groups than k, or when a
   class has fewer groups than k (aria_labels_drop_small removes those). */
int aria_labels_folds(const aria_labels *l, int k, uint64_t seed, int *fold, aria_error *err);


/* ====================================================================== */
/* probe: per-file features and linear probes (aria probe, docs/probe.md) */
/* ====================================================================== */

/* Handcrafted features of a score (src/tasks/features.c; each is described
   in docs/probe.md): pitch-class, melodic-interval and duration
   histograms, note density, polyphony, velocity, tempo and pitch
   statistics. Times come from the exact tempo map. ARIA_ERR_EMPTY for a
   score without notes. */
#define ARIA_HANDCRAFTED_DIM 58
int aria_handcrafted_features(const aria_score *s, float *out, aria_error *err);
/* The name of feature i ("pc_0", "interval_-12", ...); NULL out of range. */
const char *aria_handcrafted_name(int i);

typedef enum {
    ARIA_FEAT_EMBEDDING = 0,  /* emb_head at <E>, mean over chunks (needs emb_head) */
    ARIA_FEAT_LM_MEAN = 1,    /* final hidden states, mean over each chunk's tokens, then over chunks */
    ARIA_FEAT_HANDCRAFTED = 2 /* aria_handcrafted_features, no model */
} aria_feature_kind;
/* "embedding", "lm-mean", "handcrafted"; NULL out of range. */
const char *aria_feature_kind_name(int kind);
/* Length of one file's vector: emb_size, d_model or ARIA_HANDCRAFTED_DIM;
   0 when the model cannot give that kind (no emb_head, or no model). */
int aria_feature_dim(const aria_model *m, aria_feature_kind kind);

/* The model features of one score: its 300-note embedding chunks (as
   aria_embed_score: piano-only, metadata cleared, at most min(2048,
   max_seq_len) tokens, <E> last), at most max_chunks of them evenly spaced
   (0: all), each run through the model; the per-chunk vectors are
   averaged. kind EMBEDDING gives what aria_embed_score gives when
   max_chunks is 0. */
int aria_model_features(const aria_model *m, const aria_tokenizer *t, const aria_score *s, aria_feature_kind kind,
                        int max_chunks, float *out, size_t *n_chunks, aria_error *err);

/* Features of many MIDI files, with an on-disk cache. */
typedef struct {
    aria_feature_kind kind;
    const aria_model *model;  /* EMBEDDING, LM_MEAN */
    const char *model_path;   /* its file: part of the cache key (path, size, mtime) */
    int max_chunks;           /* 0: all chunks */
    const char *cache_dir;    /* NULL: no cache. Else DIR/<key of model, kind,
                                 max_chunks>/<key of MIDI path, size, mtime>.feat,
                                 each written atomically */
    int jobs;                 /* threads over files for handcrafted features (0: all CPUs);
                                 model features run one file at a time, the model's
                                 kernels using its threads */
    /* Called after each file, one call at a time (may be NULL). */
    void (*progress)(void *ctx, size_t done, size_t total);
    void *progress_ctx;
} aria_feature_opts;
aria_feature_opts aria_feature_defaults(void);

typedef struct {
    int status;       /* ARIA_OK, or why the file has no features */
    aria_error err;   /* the message, without the file's name */
    size_t n_chunks;  /* chunks used (model features) */
    int cached;       /* 1: read from the cache */
    int n_warnings;   /* what the MIDI reader forgave, and the first */
    char warning[160];
} aria_feature_file;

/* X[i * dim ..] for paths[i] (dim = aria_feature_dim); files[i] says each
   file's fate (a bad file is one failed slot, the others go on). *hits and
   *misses (may be NULL) count cache reads and computations. ARIA_OK when
   the batch ran; ARIA_ERR_ARG when the model cannot give `kind`. */
int aria_features_files(const char *const *paths, size_t n, const aria_feature_opts *o, float *X,
                        aria_feature_file *files, size_t *hits, size_t *misses, aria_error *err);

/* The linear probe (spec 3.6): multinomial logistic regression, W [C][d]
   and b [C], trained with AdamW on the mean cross-entropy. */
typedef struct {
    int folds;            /* 5 */
    uint64_t seed;        /* 0: folds, initial weights, batch order, --per-class picks */
    int epochs;           /* 50 */
    int batch;            /* 8 */
    float lr;             /* 3e-4 (peak) */
    float weight_decay;   /* 0.1 (AdamW, on every parameter) */
    int warmup;           /* 100 steps, linear from 0 */
    float final_lr_frac;  /* 0.1: linear decay to 0.1 x lr at the last step */
    int per_class;        /* 0: every training file; N: at most N per class in each training fold */
} aria_probe_opts;
aria_probe_opts aria_probe_defaults(void);
/* The learning rate of step `step` (0-based) of `total`. */
float aria_probe_lr(const aria_probe_opts *o, long step, long total);

/* Trains on X [n][d] (already standardized, if wanted), y in 0..C-1. The
   same inputs and options give the same weights. W: C*d floats, b: C. */
int aria_linear_fit(const float *X, const int *y, size_t n, int d, int C, const aria_probe_opts *o, float *W,
                    float *b, aria_error *err);
/* argmax of W x + b for each row (ties: the lowest class). */
void aria_linear_predict(const float *X, size_t n, int d, int C, const float *W, const float *b, int *pred);

typedef struct {
    int folds, n_classes;
    /* per fold [folds] */
    double *acc, *f1, *base_acc, *base_f1;
    size_t *n_train, *n_test;
    int *base_class;      /* the training fold's majority class */
    /* mean and standard deviation over folds (population std, numpy's default) */
    double acc_mean, acc_std, f1_mean, f1_std;
    double base_acc_mean, base_acc_std, base_f1_mean, base_f1_std;
    int64_t *confusion;   /* [C][C]: row the true class, column the predicted, summed over folds */
} aria_probe_result;
void aria_probe_result_free(aria_probe_result *r);

/* k-fold cross-validation (k = o->folds, fold[i] in 0..k-1, e.g. from
   aria_labels_folds): for each fold, z-scores fitted on the training rows
   (a constant feature is centred only), at most o->per_class training rows
   per class (seeded pick), a linear probe trained on them and scored on
   the fold; the baseline predicts the training rows' majority class.
   Macro-F1 averages the F1 of the classes that occur in the fold's true
   or predicted labels (scikit-learn's rule). */
int aria_probe_cv(const float *X, const int *y, size_t n, int d, int C, const int *fold, const aria_probe_opts *o,
                  aria_probe_result *out, aria_error *err);

#ifdef __cplusplus
}
#endif
#endif /* ARIA_H */
