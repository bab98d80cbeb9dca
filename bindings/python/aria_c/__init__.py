"""aria_c - Python binding of libaria (aria.c): the Aria piano-MIDI system.

    from aria_c.midi import MidiDict           # was: from ariautils.midi import MidiDict
    from aria_c.tokenizer import AbsTokenizer  # was: from ariautils.tokenizer import AbsTokenizer
    model = aria_c.Model("model.safetensors")

The classes mirror ariautils (same names, arguments, defaults, results) and
call the C library through ctypes; see bindings/python/README.md.
"""
from ._lib import AriaError, lib as _libaria
from . import midi, tokenizer
from .midi import MidiDict, normalize_midi_dict
from .tokenizer import AbsTokenizer
from .model import Model

__version__ = "0.1.0"
__all__ = ["AbsTokenizer", "AriaError", "MidiDict", "Model", "midi", "normalize_midi_dict", "tokenizer"]
