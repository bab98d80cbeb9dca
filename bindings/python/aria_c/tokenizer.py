"""aria_c.tokenizer - AbsTokenizer with the API of ariautils.tokenizer.AbsTokenizer.

Tokens are the reference's Python values: special tokens are strings
("<S>", "<T>"), the others tuples (("piano", 60, 80), ("onset", 120),
("dur", 340), ("drum", 36), ("prefix", "instrument", "piano")). The work is
done by libaria (the same code as `aria tokenize`); this module converts
between those Python values and the library's 8-byte tokens through numpy
arrays, one vocabulary table per configuration.

Randomness: ariautils draws the prefix order, the <D> position and the
augmentation amounts from Python's global `random` generator. The C
generator is CPython's MT19937, so each call copies random.getstate() into
it and writes the advanced state back: `random.seed(0)` before a call gives
the reference's result and leaves `random` where the reference would.
"""
import ctypes as C
import json
import random

import numpy as np

from . import _lib
from ._lib import lib
from .midi import INSTRUMENT_CLASSES, MidiDict

_TOKEN_DT = np.dtype([("kind", "u1"), ("a", "u1"), ("b", "u1"), ("pad", "u1"), ("v", "<i4")])
_SPECIALS = ("<S>", "<E>", "<P>", "<U>", "<D>", "<T>", "<PED_ON>", "<PED_OFF>", "<X>")
_PREFIX_KINDS = ("instrument", "composer", "form", "genre")
_INSTR_NAMES = INSTRUMENT_CLASSES + ("drum",)
K_SPECIAL, K_PREFIX, K_NOTE, K_DRUM, K_ONSET, K_DUR = range(6)
SP_UNK = 3

DEFAULT_CONFIG = {
    "ignore_instruments": {"piano": False, "chromatic": True, "organ": False, "guitar": False, "bass": False,
                           "strings": False, "ensemble": False, "brass": False, "reed": False, "pipe": False,
                           "synth_lead": False, "synth_pad": True, "synth_effect": True, "ethnic": True,
                           "percussive": True, "sfx": True},
    "instrument_programs": {"piano": 0, "chromatic": 13, "organ": 16, "guitar": 24, "bass": 32, "strings": 40,
                            "ensemble": 48, "brass": 56, "reed": 64, "pipe": 73, "synth_lead": 80,
                            "synth_pad": 88, "synth_effect": 96, "ethnic": 104, "percussive": 112, "sfx": 120},
    "drum_velocity": 60, "velocity_quantization_step": 10, "abs_time_step_ms": 5000, "max_dur_ms": 5000,
    "time_step_ms": 10, "include_drums": True, "include_pedal": False, "include_delimiter": False,
    "composer_names": ["bach", "beethoven", "mozart", "chopin", "rachmaninoff", "liszt", "debussy", "schubert",
                       "brahms", "ravel", "satie", "scarlatti"],
    "form_names": ["sonata", "prelude", "nocturne", "\u00e9tude", "waltz", "mazurka", "impromptu", "fugue"],
    "genre_names": ["jazz", "classical"],
}


def _variant_of(cfg):
    """The library's configuration for a tokenizer.abs config dict."""
    if cfg.get("include_pedal") and cfg.get("include_delimiter"):
        return 2
    if cfg.get("include_pedal"):
        return 1
    for k in ("ignore_instruments", "composer_names", "form_names", "genre_names", "time_step_ms",
              "max_dur_ms", "abs_time_step_ms", "velocity_quantization_step"):
        if k in cfg and cfg[k] != DEFAULT_CONFIG[k]:
            raise ValueError(f"aria_c supports the released configuration and the two demo ones; "
                             f"this config differs in '{k}'")
    return 0


class AbsTokenizer:
    """MidiDict tokenizer with absolute onsets in 5000 ms segments (<T>)."""

    def __init__(self, config_path=None):
        cfg = dict(DEFAULT_CONFIG)
        if config_path is not None:
            with open(config_path, encoding="utf-8") as f:
                cfg.update(json.load(f)["tokenizer"]["abs"])
        self.config = cfg
        self.name = "abs"
        self._variant = _variant_of(cfg)
        self._t = lib.aria_tokenizer_new(self._variant)
        if not self._t:
            raise MemoryError("out of memory")

        self.bos_tok, self.eos_tok, self.pad_tok, self.unk_tok, self.dim_tok = "<S>", "<E>", "<P>", "<U>", "<D>"
        self.time_tok, self.ped_on_tok, self.ped_off_tok, self.delimiter_tok = "<T>", "<PED_ON>", "<PED_OFF>", "<X>"
        self.abs_time_step_ms = cfg["abs_time_step_ms"]
        self.max_dur_ms = cfg["max_dur_ms"]
        self.time_step_ms = cfg["time_step_ms"]
        self.dur_time_quantizations = [self.time_step_ms * i for i in range(self.max_dur_ms // self.time_step_ms + 1)]
        self.onset_time_quantizations = [self.time_step_ms * i for i in range(self.max_dur_ms // self.time_step_ms)]
        self.velocity_step = cfg["velocity_quantization_step"]
        self.velocity_quantizations = [i * self.velocity_step for i in range(int(127 / self.velocity_step) + 1)]
        self.max_velocity = self.velocity_quantizations[-1]
        self.instruments_nd = [k for k, v in cfg["ignore_instruments"].items() if v is False]
        self.include_drums = cfg.get("include_drums", True)
        self.include_pedal = cfg.get("include_pedal", False)
        self.include_delimiter = cfg.get("include_delimiter", False)
        self.instruments_wd = self.instruments_nd + (["drum"] if self.include_drums else [])
        self.composer_names = cfg["composer_names"]
        self.form_names = cfg["form_names"]
        self.genre_names = cfg["genre_names"]
        self.special_tokens = ["<S>", "<E>", "<P>", "<U>", "<D>", "<T>"] + (["<X>"] if self.include_delimiter else [])

        n = lib.aria_tok_vocab_size(self._t)
        raw = np.zeros(n, dtype=_TOKEN_DT)
        buf = (_lib.Token * n).from_buffer(raw)
        for i in range(n):
            buf[i] = lib.aria_tok_token(self._t, i)
        self._vocab_raw = raw
        self.vocab = tuple(self._from_fields(int(r["kind"]), int(r["a"]), int(r["b"]), int(r["v"])) for r in raw)
        self.tok_to_id = {tok: i for i, tok in enumerate(self.vocab)}
        self.id_to_tok = dict(enumerate(self.vocab))
        self.vocab_size = n
        self.pad_id = self.tok_to_id[self.pad_tok]
        self._unk_id = self.tok_to_id[self.unk_tok]
        self.prefix_tokens = [t for t in self.vocab if isinstance(t, tuple) and t[0] == "prefix"]

    def __del__(self):
        if getattr(self, "_t", None):
            lib.aria_tokenizer_free(self._t)
            self._t = None

    # --- token values <-> library tokens ------------------------------------
    def _from_fields(self, kind, a, b, v):
        if kind == K_SPECIAL:
            return _SPECIALS[v]
        if kind == K_PREFIX:
            if a == 0:
                return ("prefix", "instrument", _INSTR_NAMES[v])
            return ("prefix", _PREFIX_KINDS[a], lib.aria_tok_name(self._t, a, v).decode("utf-8"))
        if kind == K_NOTE:
            return (_INSTR_NAMES[a], v, b)
        return (("", "", "", "drum", "onset", "dur")[kind], v)

    def _to_fields(self, tok):
        """Library fields of a token that has no id (e.g. ("drum", 30))."""
        if isinstance(tok, str):
            return (K_SPECIAL, 0, 0, _SPECIALS.index(tok) if tok in _SPECIALS else SP_UNK)
        head = tok[0]
        if head == "prefix":
            kind = _PREFIX_KINDS.index(tok[1])
            names = [None, self.composer_names, self.form_names, self.genre_names][kind]
            return (K_PREFIX, kind, 0, _INSTR_NAMES.index(tok[2]) if kind == 0 else names.index(tok[2]))
        if head in ("drum", "onset", "dur"):
            return ({"drum": K_DRUM, "onset": K_ONSET, "dur": K_DUR}[head], 0, 0, int(tok[1]))
        return (K_NOTE, _INSTR_NAMES.index(head), int(tok[2]) & 255, int(tok[1]))

    def _c_tokens(self, seq):
        """A numpy array of library tokens for a sequence of token values."""
        get = self.tok_to_id.get
        ids = np.fromiter((get(t, -1) for t in seq), dtype=np.int64, count=len(seq))
        out = self._vocab_raw[np.where(ids < 0, self._unk_id, ids)]
        for i in np.nonzero(ids < 0)[0].tolist():
            try:
                kind, a, b, v = self._to_fields(seq[i])
            except (ValueError, IndexError, TypeError, KeyError):
                kind, a, b, v = K_SPECIAL, 0, 0, SP_UNK
            out[i] = (kind, a, b, 0, v)
        return out

    def _py_tokens(self, raw):
        """Token values of a numpy array of library tokens."""
        n = len(raw)
        if n == 0:
            return []
        ids = np.empty(n, dtype=np.int32)
        lib.aria_tok_encode(self._t, raw.ctypes.data_as(C.POINTER(_lib.Token)), n,
                            ids.ctypes.data_as(C.POINTER(C.c_int32)))
        vocab = self.vocab
        out = [vocab[i] for i in ids.tolist()]
        unk = np.nonzero((ids == self._unk_id) & ~((raw["kind"] == K_SPECIAL) & (raw["v"] == SP_UNK)))[0]
        for i in unk.tolist():
            r = raw[i]
            out[i] = self._from_fields(int(r["kind"]), int(r["a"]), int(r["b"]), int(r["v"]))
        return out

    @staticmethod
    def _take(ptr, n):
        """Copies a malloc'd aria_token array into numpy and frees it."""
        try:
            if n == 0:
                return np.zeros(0, dtype=_TOKEN_DT)
            return np.frombuffer(C.string_at(ptr, n * 8), dtype=_TOKEN_DT).copy()
        finally:
            _lib.libc.free(ptr)

    # --- ariautils API ------------------------------------------------------
    @classmethod
    def _find_closest_int(cls, n, sorted_list):
        left, right = 0, len(sorted_list) - 1
        closest = sorted_list[0]
        while left <= right:
            mid = (left + right) // 2
            if abs(sorted_list[mid] - n) < abs(closest - n):
                closest = sorted_list[mid]
            if sorted_list[mid] < n:
                left = mid + 1
            else:
                right = mid - 1
        return closest

    def _quantize_dur(self, time):
        dur = self._find_closest_int(time, self.dur_time_quantizations)
        return dur if dur != 0 else self.time_step_ms

    def _quantize_onset(self, time):
        return self._find_closest_int(time, self.onset_time_quantizations)

    def _quantize_velocity(self, velocity):
        q = self._find_closest_int(velocity, self.velocity_quantizations)
        return self.velocity_step if q == 0 and velocity != 0 else q

    def _metadata_indices(self, md):
        def idx(key, names):
            v = md.metadata.get(key)
            return names.index(v) if v and v in names else -1
        return idx("composer", self.composer_names), idx("form", self.form_names), idx("genre", self.genre_names)

    def tokenize(self, midi_dict, remove_preceding_silence=True, add_dim_tok=True, add_eos_tok=True, **kwargs):
        """Tokens of a MidiDict (its instruments removed on a copy: unlike
        ariautils, the MidiDict is left as it was)."""
        keep, s = midi_dict._score()
        saved = (s.composer, s.form, s.genre)
        s.composer, s.form, s.genre = self._metadata_indices(midi_dict)
        opts = _lib.TokenizeOpts(int(bool(remove_preceding_silence)), int(bool(add_dim_tok)), int(bool(add_eos_tok)))
        rng = _lib.rng_from_python(random)
        out = C.POINTER(_lib.Token)()
        n = C.c_size_t()
        err = _lib.Error()
        try:
            st = lib.aria_tokenize(self._t, C.byref(s), C.byref(opts), C.byref(rng), C.byref(out), C.byref(n),
                                   C.byref(err))
        finally:
            s.composer, s.form, s.genre = saved
        if st == _lib.ERR_EMPTY:
            raise ValueError("note_msgs is empty after ignoring instruments")
        _lib.check(st, err)
        _lib.rng_to_python(random, rng)
        return self._py_tokens(self._take(out, n.value))

    def detokenize(self, tokenized_seq, **kwargs):
        """A MidiDict (500 ticks per beat, 500000 us: 1 tick = 1 ms)."""
        from .midi import _OwnedScore
        raw = self._c_tokens(list(tokenized_seq))
        owned = _OwnedScore()
        err = _lib.Error()
        skipped = C.c_size_t()
        st = lib.aria_detokenize(self._t, raw.ctypes.data_as(C.POINTER(_lib.Token)), len(raw), C.byref(owned.s),
                                 C.byref(skipped), C.byref(err))
        _lib.check(st, err)
        owned.meta = []
        md = MidiDict.__new__(MidiDict)
        md.__dict__.update(_c=owned, _lists=None, ticks_per_beat=owned.s.ticks_per_beat, metadata={},
                           pedal_resolved=False)
        md.program_to_instrument = MidiDict.get_program_to_instrument()
        return md

    def encode(self, unencoded_seq):
        get, unk = self.tok_to_id.get, self._unk_id
        return [get(tok, unk) for tok in unencoded_seq]

    def decode(self, encoded_seq):
        get = self.id_to_tok.get
        return [get(int(i), self.unk_tok) for i in encoded_seq]

    def calc_length_ms(self, seq, onset=False):
        raw = self._c_tokens(list(seq))
        return lib_length_ms(raw, onset)

    def truncate_by_time(self, tokenized_seq, trunc_time_ms):
        t = 0
        for idx, tok in enumerate(tokenized_seq):
            if tok == self.time_tok:
                t += self.abs_time_step_ms
            elif type(tok) is tuple and tok[0] == "onset" and t + tok[1] > trunc_time_ms:
                return tokenized_seq[:idx - 1]
        return tokenized_seq

    # --- augmentations --------------------------------------------------------
    def _augment(self, src, call):
        src = list(src)
        raw = self._c_tokens(src)
        out = np.zeros(len(raw), dtype=_TOKEN_DT)
        rng = _lib.rng_from_python(random)
        st = call(raw.ctypes.data_as(C.POINTER(_lib.Token)), len(raw), out.ctypes.data_as(C.POINTER(_lib.Token)),
                  C.byref(rng))
        if st:
            raise MemoryError("out of memory")
        _lib.rng_to_python(random, rng)
        return self._py_tokens(out)

    def export_pitch_aug(self, max_pitch_aug):
        """fn(src, pitch_aug=None): notes moved by pitch_aug semitones (drawn
        in -max..max per <E>-separated piece when None)."""
        def pitch_aug_fn(src, pitch_aug=None):
            fixed = C.byref(C.c_int(int(pitch_aug))) if pitch_aug is not None else None
            return self._augment(src, lambda i, n, o, r: lib.aria_aug_pitch(i, n, o, int(max_pitch_aug), fixed, r))
        return pitch_aug_fn

    def export_velocity_aug(self, max_num_aug_steps):
        """fn(src, aug_step=None): velocities moved by aug_step quantization
        steps, kept within 10..120."""
        def velocity_aug_fn(src, aug_step=None):
            fixed = C.byref(C.c_int(int(aug_step))) if aug_step is not None else None
            return self._augment(src, lambda i, n, o, r: lib.aria_aug_velocity(i, n, o, int(max_num_aug_steps),
                                                                                fixed, r))
        return velocity_aug_fn

    def export_tempo_aug(self, max_tempo_aug, mixup):
        """fn(src, tempo_aug=None): times scaled by tempo_aug (drawn from
        1 +- max_tempo_aug when None), notes of one onset shuffled if mixup."""
        def tempo_aug_fn(src, tempo_aug=None):
            fixed = C.byref(C.c_double(float(tempo_aug))) if tempo_aug is not None else None
            return self._augment(src, lambda i, n, o, r: lib.aria_aug_tempo(self._t, i, n, o, float(max_tempo_aug),
                                                                             int(bool(mixup)), fixed, r))
        return tempo_aug_fn

    def export_data_aug(self):
        return [self.export_tempo_aug(max_tempo_aug=0.2, mixup=True), self.export_pitch_aug(5),
                self.export_velocity_aug(1)]


def lib_length_ms(raw, onset):
    f = lib.aria_tok_length_ms
    f.restype = C.c_int64
    f.argtypes = [C.POINTER(_lib.Token), C.c_size_t, C.c_int]
    return f(raw.ctypes.data_as(C.POINTER(_lib.Token)), len(raw), int(bool(onset)))
