"""aria_c.model - an Aria checkpoint from Python: logits, generation, embeddings.

Model(path, config=None) loads a safetensors file with libaria (released
checkpoints as they are, or files `aria init` / `aria train` wrote); the
shape comes from `config` (a preset name such as "medium", a JSON file, or
a dict with the reference's keys), else from the file. Each method is one
library call on arrays: ctypes releases the GIL during it, so other Python
threads run while the model works. Library errors raise FileNotFoundError,
ValueError or MemoryError with the library's one-line message.
"""
import ctypes as C
import json
import os

import numpy as np

from . import _lib
from ._lib import lib
from .midi import MidiDict

OUT_LOGITS, OUT_HIDDEN, OUT_EMB, OUT_CLS = 0, 1, 2, 3
HEAD_LM, HEAD_EMB, HEAD_CLS = 1, 2, 4

lib.aria_prompt_from_file.restype = C.c_int
lib.aria_prompt_from_file.argtypes = [C.c_void_p, C.c_char_p, C.c_int64, C.POINTER(C.POINTER(C.c_int32)),
                                      C.POINTER(C.c_size_t), C.c_void_p, C.POINTER(_lib.Error)]
lib.aria_config_parse.restype = C.c_int
lib.aria_config_parse.argtypes = [C.POINTER(_lib.ModelConfig), C.c_char_p, C.c_size_t, C.POINTER(_lib.Error)]


def _ids_array(ids):
    a = np.ascontiguousarray(np.asarray(ids), dtype=np.int32)
    if a.ndim not in (1, 2) or a.shape[-1] == 0:
        raise ValueError("ids: want a non-empty list or 1-D / 2-D array of token ids")
    return a


class Model:
    """An Aria model loaded from a safetensors file."""

    def __init__(self, path, config=None, threads=0):
        path = os.fspath(path)
        self.path = path
        err = _lib.Error()
        cfg = None
        if config is not None:
            cfg = _lib.ModelConfig()
            if isinstance(config, dict):
                text = json.dumps(config).encode()
                _lib.check(lib.aria_config_parse(C.byref(cfg), text, len(text), C.byref(err)), err, "config")
            elif lib.aria_config_preset(C.byref(cfg), os.fspath(config).encode()) != 0:
                _lib.check(lib.aria_config_read(C.byref(cfg), os.fspath(config).encode(), C.byref(err)), err,
                           os.fspath(config))
        self._m = C.c_void_p()
        self._ctx = C.c_void_p()
        opts = _lib.CtxOpts(int(threads), 0, 0)
        _lib.check(lib.aria_ctx_new(C.byref(self._ctx), C.byref(opts), C.byref(err)), err)
        st = lib.aria_model_load(C.byref(self._m), path.encode(), C.byref(cfg) if cfg else None, C.byref(err))
        _lib.check(st, err, path)
        lib.aria_model_set_ctx(self._m, self._ctx)
        self._tok = lib.aria_tokenizer_for_model(self._m)
        if not self._tok:
            raise MemoryError("out of memory")
        c = lib.aria_model_get_config(self._m).contents
        self.config = {k: getattr(c, k) for k, _ in _lib.ModelConfig._fields_}
        self.path = path

    def __del__(self):
        if getattr(self, "_tok", None):
            lib.aria_tokenizer_free(self._tok)
            self._tok = None
        if getattr(self, "_m", None):
            lib.aria_model_free(self._m)
            self._m = None
        if getattr(self, "_ctx", None):
            lib.aria_ctx_free(self._ctx)
            self._ctx = None

    @property
    def heads(self):
        """The heads the file carries: a subset of {"lm", "emb", "cls"}."""
        h = lib.aria_model_heads(self._m)
        return {name for bit, name in ((HEAD_LM, "lm"), (HEAD_EMB, "emb"), (HEAD_CLS, "cls")) if h & bit}

    def _forward(self, ids, what, all_positions):
        a = _ids_array(ids)
        rows = a[None, :] if a.ndim == 1 else a
        B, T = rows.shape
        dim = lib.aria_output_dim(self._m, what)
        if dim <= 0:
            raise ValueError(f"{self.path}: the model has no {('lm', 'hidden', 'emb', 'cls')[what]} head")
        if ((rows < 0) | (rows >= self.config["vocab_size"])).any():
            raise ValueError(f"ids: token ids must be in 0..{self.config['vocab_size'] - 1}")
        out = np.empty((B, T, dim) if all_positions else (B, dim), dtype=np.float32)
        err = _lib.Error()
        s = C.c_void_p()
        _lib.check(lib.aria_session_new(C.byref(s), self._m, B, T, C.byref(err)), err)
        try:
            st = lib.aria_session_forward(s, rows.ctypes.data_as(C.POINTER(C.c_int32)), T, what, int(all_positions),
                                          out.ctypes.data_as(C.POINTER(C.c_float)), C.byref(err))
            _lib.check(st, err)
        finally:
            lib.aria_session_free(s)
        return out[0] if a.ndim == 1 else out

    def logits(self, ids, all_positions=True):
        """Next-token logits: [T, vocab] for a 1-D list of ids ([vocab] with
        all_positions=False), [B, T, vocab] for a 2-D array."""
        return self._forward(ids, OUT_LOGITS, all_positions)

    def hidden(self, ids, all_positions=True):
        """The final LayerNorm's output, [T, d_model]."""
        return self._forward(ids, OUT_HIDDEN, all_positions)

    def classify(self, ids):
        """Classifier logits at the last position (needs a class_head)."""
        return self._forward(ids, OUT_CLS, False)

    def prompt_ids(self, prompt, prompt_seconds=15.0):
        """The ids `aria generate` starts from: a MidiDict or a MIDI path is
        cut to its first prompt_seconds; a list/array of ids is used as is."""
        ms = int(prompt_seconds * 1000.0 + 0.5)
        err = _lib.Error()
        out = C.POINTER(C.c_int32)()
        n = C.c_size_t()
        if isinstance(prompt, MidiDict):
            keep, s = prompt._score()
            rng = _lib.Rng()
            toks = C.POINTER(_lib.Token)()
            _lib.check(lib.aria_tok_prompt(self._tok, C.byref(s), ms, C.byref(rng), C.byref(toks), C.byref(n),
                                           C.byref(err)), err)
            ids = np.empty(n.value, dtype=np.int32)
            lib.aria_tok_encode(self._tok, toks, n.value, ids.ctypes.data_as(C.POINTER(C.c_int32)))
            _lib.libc.free(toks)
            return ids
        if isinstance(prompt, (str, bytes, os.PathLike)):
            path = os.fspath(prompt)
            st = lib.aria_prompt_from_file(self._tok, os.fsencode(path), ms, C.byref(out), C.byref(n), None,
                                           C.byref(err))
            _lib.check(st, err, path)
            try:
                return np.ctypeslib.as_array(out, (n.value,)).copy() if n.value else np.zeros(0, np.int32)
            finally:
                _lib.libc.free(out)
        a = _ids_array(prompt)
        if a.ndim != 1:
            raise ValueError("prompt: want one sequence of ids")
        return a

    def sampling_defaults(self):
        """temp, min_p and top_p when generate() is not given them: the
        reference's 0.98 / 0.035 / off, replaced by what a
        generation_config.json beside the weights says (keys temperature,
        min_p, top_p), as `aria generate` does."""
        d = {"temp": 0.98, "min_p": 0.035, "top_p": 0.0}
        f = os.path.join(os.path.dirname(os.path.abspath(self.path)), "generation_config.json")
        if os.path.exists(f):
            with open(f) as fh:
                g = json.load(fh)
            for key, name, lo, hi in (("temperature", "temp", 0, 2), ("min_p", "min_p", 0, 1), ("top_p", "top_p", 0.5, 1)):
                v = g.get(key)
                if v is None:
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                    raise ValueError(f"{f}: \"{key}\" wants a number in {lo}..{hi}")
                d[name] = float(v)
            if "top_p" in g and "min_p" not in g:
                d["min_p"] = 0.0
        return d

    def generate(self, prompt, max_new=2048, temp=None, min_p=None, top_p=None, variations=1, seed=0, end=False,
                 mask=True, prompt_seconds=15.0, return_ids=False, embedding=None, cfg=1.0, cfg_warmup=0,
                 max_silence=4.0):
        """Continues `prompt` (a MidiDict, a MIDI path or ids) with the
        options of `aria generate`. Returns `variations` MidiDicts (the whole
        sequence detokenized, as res_N.mid holds it), or numpy id arrays
        with return_ids=True. top_p alone replaces min_p, as in the CLI;
        what is not given comes from sampling_defaults(). With mask on, no
        silence longer than max_silence seconds (or the prompt's longest,
        if longer) is sampled; 0 turns that off.
        embedding (a float32 vector of the model's adapter size) steers the
        continuation with classifier-free guidance `cfg` (a model with an
        embedding_adapter only); cfg_warmup: 0 = min(250, max_new) steps,
        < 0 none."""
        pids = self.prompt_ids(prompt, prompt_seconds)
        dflt = self.sampling_defaults()
        if temp is None:
            temp = dflt["temp"]
        if min_p is None:
            min_p = 0.0 if top_p is not None else dflt["min_p"]
        if top_p is None:
            top_p = dflt["top_p"]
        if not 1 <= int(variations) <= 64:
            raise ValueError("variations: want 1..64")
        if not 0 <= float(max_silence) <= 3600:
            raise ValueError("max_silence: want 0..3600 seconds")
        opts = _lib.GenerateOpts(int(variations), int(max_new), int(seed),
                                 _lib.SampleOpts(float(temp), float(min_p), float(top_p), int(bool(mask)),
                                                 int(bool(end)), float(max_silence)), None, None)
        if embedding is not None:
            emb = np.ascontiguousarray(np.asarray(embedding, dtype=np.float32).reshape(-1))
            opts.cond_embedding = emb.ctypes.data_as(C.POINTER(C.c_float))
            opts.cond_dim = emb.size
            opts.cfg = float(cfg)
            opts.cfg_warmup = int(cfg_warmup)
        V = int(variations)
        seqs = (C.POINTER(C.c_int32) * V)()
        lens = (C.c_size_t * V)()
        err = _lib.Error()
        st = lib.aria_generate(self._m, self._tok, pids.ctypes.data_as(C.POINTER(C.c_int32)), len(pids),
                               C.byref(opts), seqs, lens, C.byref(err))
        _lib.check(st, err, self.path)
        out = []
        for v in range(V):
            out.append(np.ctypeslib.as_array(seqs[v], (lens[v],)).copy() if lens[v] else np.zeros(0, np.int32))
            _lib.libc.free(seqs[v])
        if return_ids:
            return out
        tk = _tokenizer_for(self.config["vocab_size"])
        return [tk.detokenize(tk.decode(ids.tolist())) for ids in out]

    def embed(self, items):
        """Global embeddings ([n, emb_size] float32) of MIDI paths or
        MidiDicts: the mean over 300-note chunks at <E> (needs emb_head;
        piano-only pieces, as the reference requires)."""
        if isinstance(items, (str, os.PathLike, MidiDict)):
            items = [items]
        dim = lib.aria_output_dim(self._m, OUT_EMB)
        if dim <= 0:
            raise ValueError(f"{self.path}: the model has no emb head")
        out = np.empty((len(items), dim), dtype=np.float32)
        err = _lib.Error()
        nch = C.c_size_t()
        for i, item in enumerate(items):
            md = item if isinstance(item, MidiDict) else MidiDict.from_midi(item)
            keep, s = md._score()
            st = lib.aria_embed_score(self._m, self._tok, C.byref(s), out[i].ctypes.data_as(C.POINTER(C.c_float)),
                                      C.byref(nch), C.byref(err))
            _lib.check(st, err, None if isinstance(item, MidiDict) else os.fspath(item))
        return out


_tokenizers = {}


def _tokenizer_for(vocab_size):
    from .tokenizer import AbsTokenizer
    if vocab_size not in _tokenizers:
        tk = AbsTokenizer()
        if vocab_size in (17729, 2675):
            tk = AbsTokenizer.__new__(AbsTokenizer)
            cfg = {"include_pedal": True, "include_delimiter": vocab_size == 2675}
            _init_variant(tk, cfg)
        _tokenizers[vocab_size] = tk
    return _tokenizers[vocab_size]


def _init_variant(tk, cfg):
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"tokenizer": {"abs": cfg}}, f)
    try:
        tk.__init__(f.name)
    finally:
        os.unlink(f.name)
