"""_lib.py - loads libaria.so and declares the C functions the binding calls.

How it works: ctypes opens the shared library (the one named by
ARIA_C_LIBRARY when set, else the one beside this file after `make python`
or `pip install`, else the system's libaria.so.0) and every function used is given its argument and
result types here, once. ctypes drops the GIL for the length of each call,
so long calls (generation, embeddings) let other Python threads run.
Library errors come back as a status and a one-line message; check() turns
them into the Python exception a caller expects (FileNotFoundError,
ValueError, MemoryError) carrying that message.
"""
import ctypes as C
import ctypes.util
import os

_here = os.path.dirname(os.path.abspath(__file__))


def _open():
    tried = []
    for cand in (os.environ.get("ARIA_C_LIBRARY"), os.path.join(_here, "libaria.so"), "libaria.so.0"):
        if not cand:
            continue
        try:
            return C.CDLL(cand)
        except OSError as e:
            tried.append(f"{cand}: {e}")
    raise ImportError("aria_c: cannot load libaria.so (run `make python`, or set ARIA_C_LIBRARY): "
                      + "; ".join(tried))


lib = _open()
libc = C.CDLL(ctypes.util.find_library("c"))
libc.free.argtypes = [C.c_void_p]
libc.free.restype = None

OK, ERR_IO, ERR_FORMAT, ERR_NOMEM, ERR_ARG, ERR_EMPTY = 0, -1, -2, -3, -4, -5


class Error(C.Structure):
    _fields_ = [("msg", C.c_char * 512)]


class MidiEvent(C.Structure):
    _fields_ = [("tick", C.c_uint64), ("kind", C.c_uint8), ("status", C.c_uint8), ("d1", C.c_uint8),
                ("d2", C.c_uint8), ("len", C.c_uint32), ("off", C.c_uint32)]


class MidiTrack(C.Structure):
    _fields_ = [("events", C.POINTER(MidiEvent)), ("n_events", C.c_size_t)]


class Midi(C.Structure):
    _fields_ = [("format", C.c_int), ("ppq", C.c_int), ("smpte_fps", C.c_int), ("smpte_tpf", C.c_int),
                ("ntracks_declared", C.c_int), ("n_tracks", C.c_size_t), ("tracks", C.POINTER(MidiTrack)),
                ("data", C.POINTER(C.c_uint8)), ("data_len", C.c_size_t), ("n_warnings", C.c_int),
                ("warnings", (C.c_char * 160) * 8), ("priv_", C.c_void_p)]


class Note(C.Structure):
    _fields_ = [("start", C.c_int64), ("end", C.c_int64), ("pitch", C.c_uint8), ("velocity", C.c_uint8),
                ("channel", C.c_uint8)]


class Tempo(C.Structure):
    _fields_ = [("tick", C.c_int64), ("tempo", C.c_uint32)]


class Pedal(C.Structure):
    _fields_ = [("tick", C.c_int64), ("on", C.c_uint8), ("value", C.c_uint8), ("channel", C.c_uint8)]


class Program(C.Structure):
    _fields_ = [("tick", C.c_int64), ("program", C.c_uint8), ("channel", C.c_uint8)]


class Score(C.Structure):
    _fields_ = [("notes", C.POINTER(Note)), ("n_notes", C.c_size_t),
                ("tempos", C.POINTER(Tempo)), ("n_tempos", C.c_size_t),
                ("pedals", C.POINTER(Pedal)), ("n_pedals", C.c_size_t),
                ("programs", C.POINTER(Program)), ("n_programs", C.c_size_t),
                ("ticks_per_beat", C.c_int), ("exact_timing", C.c_int),
                ("composer", C.c_int), ("form", C.c_int), ("genre", C.c_int)]


class Rng(C.Structure):
    _fields_ = [("mt", C.c_uint32 * 624), ("mti", C.c_int)]


class Token(C.Structure):
    _fields_ = [("kind", C.c_uint8), ("a", C.c_uint8), ("b", C.c_uint8), ("pad_", C.c_uint8), ("v", C.c_int32)]


class TokenizeOpts(C.Structure):
    _fields_ = [("remove_preceding_silence", C.c_int), ("add_dim_tok", C.c_int), ("add_eos_tok", C.c_int)]


class ModelConfig(C.Structure):
    _fields_ = [(k, C.c_int) for k in ("d_model", "n_heads", "n_layers", "ff_mult", "max_seq_len",
                                       "vocab_size", "emb_size", "class_size")]


class SampleOpts(C.Structure):
    _fields_ = [("temperature", C.c_float), ("min_p", C.c_float), ("top_p", C.c_float),
                ("mask_invalid", C.c_int), ("force_end", C.c_int), ("max_silence", C.c_float)]


class GenerateOpts(C.Structure):
    _fields_ = [("variations", C.c_int), ("max_new", C.c_int), ("seed", C.c_uint64), ("sample", SampleOpts),
                ("progress", C.c_void_p), ("progress_ctx", C.c_void_p),
                ("cond_embedding", C.POINTER(C.c_float)), ("cond_dim", C.c_int), ("cfg", C.c_float),
                ("cfg_warmup", C.c_int)]


class CtxOpts(C.Structure):
    _fields_ = [("threads", C.c_int), ("precision", C.c_int), ("portable", C.c_int)]


P = C.POINTER
vp, sz, i32, i64, u64, cs = C.c_void_p, C.c_size_t, C.c_int32, C.c_int64, C.c_uint64, C.c_char_p
_sigs = {
    "aria_status_name": (cs, [C.c_int]),
    "aria_midi_read_file": (C.c_int, [P(Midi), cs, P(Error)]),
    "aria_midi_read": (C.c_int, [P(Midi), C.c_char_p, sz, P(Error)]),
    "aria_midi_write": (C.c_int, [P(Midi), P(P(C.c_uint8)), P(sz), P(Error)]),
    "aria_midi_free": (None, [P(Midi)]),
    "aria_score_from_midi": (C.c_int, [P(Score), P(Midi), P(Error)]),
    "aria_score_copy": (C.c_int, [P(Score), P(Score)]),
    "aria_score_free": (None, [P(Score)]),
    "aria_score_duration_ms": (i64, [P(Score), i64, i64]),
    "aria_score_to_midi": (C.c_int, [P(Score), P(Midi), P(Error)]),
    "aria_tokenizer_new": (vp, [C.c_int]),
    "aria_tokenizer_free": (None, [vp]),
    "aria_tok_vocab_size": (C.c_int, [vp]),
    "aria_tok_token": (Token, [vp, C.c_int]),
    "aria_tok_encode": (None, [vp, P(Token), sz, P(i32)]),
    "aria_tok_n_names": (C.c_int, [vp, C.c_int]),
    "aria_tok_name": (cs, [vp, C.c_int, C.c_int]),
    "aria_tokenize": (C.c_int, [vp, P(Score), P(TokenizeOpts), P(Rng), P(P(Token)), P(sz), P(Error)]),
    "aria_detokenize": (C.c_int, [vp, P(Token), sz, P(Score), P(sz), P(Error)]),
    "aria_tok_prompt": (C.c_int, [vp, P(Score), i64, P(Rng), P(P(Token)), P(sz), P(Error)]),
    "aria_aug_pitch": (None, [P(Token), sz, P(Token), C.c_int, P(C.c_int), P(Rng)]),
    "aria_aug_velocity": (None, [P(Token), sz, P(Token), C.c_int, P(C.c_int), P(Rng)]),
    "aria_aug_tempo": (C.c_int, [vp, P(Token), sz, P(Token), C.c_double, C.c_int, P(C.c_double), P(Rng)]),
    "aria_config_preset": (C.c_int, [P(ModelConfig), cs]),
    "aria_config_read": (C.c_int, [P(ModelConfig), cs, P(Error)]),
    "aria_ctx_new": (C.c_int, [P(vp), P(CtxOpts), P(Error)]),
    "aria_ctx_free": (None, [vp]),
    "aria_ctx_describe": (cs, [vp]),
    "aria_libs_describe": (C.c_int, [C.c_char_p, sz]),
    "aria_model_load": (C.c_int, [P(vp), cs, P(ModelConfig), P(Error)]),
    "aria_model_free": (None, [vp]),
    "aria_model_get_config": (P(ModelConfig), [vp]),
    "aria_model_heads": (C.c_int, [vp]),
    "aria_model_set_ctx": (None, [vp, vp]),
    "aria_output_dim": (C.c_int, [vp, C.c_int]),
    "aria_tokenizer_for_model": (vp, [vp]),
    "aria_session_new": (C.c_int, [P(vp), vp, C.c_int, C.c_int, P(Error)]),
    "aria_session_free": (None, [vp]),
    "aria_session_forward": (C.c_int, [vp, P(i32), C.c_int, C.c_int, C.c_int, P(C.c_float), P(Error)]),
    "aria_sample_defaults": (SampleOpts, []),
    "aria_generate": (C.c_int, [vp, vp, P(i32), sz, P(GenerateOpts), P(P(i32)), P(sz), P(Error)]),
    "aria_embed_score": (C.c_int, [vp, vp, P(Score), P(C.c_float), P(sz), P(Error)]),
}
for _name, (_res, _args) in _sigs.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args


class AriaError(Exception):
    """Base of the errors whose kind has no better Python exception."""


def check(status, err, path=None):
    """Raises the Python exception of a library status, with its message."""
    if status == OK:
        return
    msg = err.msg.decode("utf-8", "replace")
    if path is not None:
        msg = f"{os.fspath(path)}: {msg}"
    if status == ERR_IO:
        if path is not None and not os.path.exists(path):
            raise FileNotFoundError(msg)
        raise OSError(msg)
    if status == ERR_NOMEM:
        raise MemoryError(msg)
    if status in (ERR_FORMAT, ERR_ARG, ERR_EMPTY):
        raise ValueError(msg)
    raise AriaError(msg)


# random.getstate() <-> aria_rng: both are CPython's MT19937 state (624 words
# and the position of the next one), so C code can draw from Python's global
# generator and hand the advanced state back.
def rng_from_python(rnd):
    version, state, gauss = rnd.getstate()
    r = Rng()
    r.mt[:] = state[:624]
    r.mti = state[624]
    return r


def rng_to_python(rnd, r):
    version, _, gauss = rnd.getstate()
    rnd.setstate((version, tuple(r.mt) + (r.mti,), gauss))
