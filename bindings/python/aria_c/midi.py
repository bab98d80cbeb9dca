"""aria_c.midi - the MidiDict of ariautils (ariautils.midi), backed by libaria.

A MidiDict holds what the tokenizer sees of a MIDI file: note, pedal,
program ("instrument"), tempo and text/copyright meta messages as lists of
dicts, with the same keys, order and defaults as ariautils, so scripts that
read or edit those lists work unchanged.

How it stays fast: MidiDict.from_midi parses the file in C (libaria's reader
and score builder) and keeps that C score. The Python lists are built only
when a script first touches one of them; from then on the lists are the
truth and the C score is dropped. The tokenizer takes the C score directly
when there is one, and otherwise builds one from the lists (_ScoreView), so
MidiDict.from_midi(path) followed by tokenize() never builds a dict per note.
"""
import copy
import hashlib
import io
import json
import os
from pathlib import Path

import ctypes as C

from . import _lib
from ._lib import lib

INSTRUMENT_CLASSES = ("piano", "chromatic", "organ", "guitar", "bass", "strings", "ensemble", "brass",
                      "reed", "pipe", "synth_lead", "synth_pad", "synth_effect", "ethnic", "percussive", "sfx")
_LISTS = ("meta_msgs", "tempo_msgs", "pedal_msgs", "instrument_msgs", "note_msgs")
_MSG_DICT_KEYS = {"meta_msgs", "tempo_msgs", "pedal_msgs", "instrument_msgs", "note_msgs", "ticks_per_beat",
                  "metadata"}


class _OwnedScore:
    """An aria_score allocated by the library, freed with this object."""

    def __init__(self):
        self.s = _lib.Score()
        self.s.composer = self.s.form = self.s.genre = -1

    def __del__(self):
        lib.aria_score_free(C.byref(self.s))


class _ScoreView:
    """An aria_score whose arrays are ctypes arrays built from the lists (the
    library only reads it; it is never passed to aria_score_free)."""

    def __init__(self, md):
        notes = md.note_msgs
        self.notes = (_lib.Note * max(len(notes), 1))()
        for i, m in enumerate(notes):
            d = m["data"]
            self.notes[i] = _lib.Note(d["start"], d["end"], d["pitch"], d["velocity"], m["channel"])
        tempos = md.tempo_msgs
        self.tempos = (_lib.Tempo * max(len(tempos), 1))(*[(m["tick"], m["data"]) for m in tempos])
        pedals = md.pedal_msgs
        self.pedals = (_lib.Pedal * max(len(pedals), 1))(
            *[(m["tick"], 1 if m["data"] else 0, m.get("value", 127 if m["data"] else 0), m["channel"])
              for m in pedals])
        progs = md.instrument_msgs
        self.programs = (_lib.Program * max(len(progs), 1))(*[(m["tick"], m["data"], m["channel"]) for m in progs])
        s = self.s = _lib.Score()
        s.notes, s.n_notes = self.notes, len(notes)
        s.tempos, s.n_tempos = self.tempos, len(tempos)
        s.pedals, s.n_pedals = self.pedals, len(pedals)
        s.programs, s.n_programs = self.programs, len(progs)
        s.ticks_per_beat = md.ticks_per_beat
        s.composer = s.form = s.genre = -1


def _midi_meta(m):
    """Text (type 1) and copyright (type 2) meta events, track by track, as
    mido decodes them (latin-1)."""
    out = []
    data = C.string_at(m.data, m.data_len) if m.data_len else b""
    for t in range(m.n_tracks):
        tr = m.tracks[t]
        for e in range(tr.n_events):
            ev = tr.events[e]
            if ev.kind == 1 and ev.status in (1, 2):
                out.append({"type": "text" if ev.status == 1 else "copyright",
                            "data": data[ev.off:ev.off + ev.len].decode("latin-1")})
    return out


def _count_meta(m):
    n = 0
    for t in range(m.n_tracks):
        tr = m.tracks[t]
        for e in range(tr.n_events):
            ev = tr.events[e]
            n += ev.kind == 1 and ev.status in (1, 2)
    return n


class MidiDict:
    """Container for MIDI data in dictionary form (ariautils.midi.MidiDict)."""

    def __init__(self, meta_msgs, tempo_msgs, pedal_msgs, instrument_msgs, note_msgs, ticks_per_beat, metadata):
        self.__dict__["_c"] = None
        self.__dict__["_lists"] = {
            "meta_msgs": meta_msgs,
            "tempo_msgs": tempo_msgs or [{"type": "tempo", "data": 500000, "tick": 0}],
            "pedal_msgs": pedal_msgs,
            "instrument_msgs": instrument_msgs or [{"type": "instrument", "data": 0, "tick": 0, "channel": 0}],
            "note_msgs": sorted(note_msgs, key=lambda msg: msg["tick"]),
        }
        self.ticks_per_beat = ticks_per_beat
        self.metadata = metadata
        self.pedal_resolved = False
        self.program_to_instrument = self.get_program_to_instrument()

    # --- the lists: built from the C score on first use --------------------
    def __getattr__(self, name):
        if name in _LISTS:
            return self._materialize()[name]
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name in _LISTS:
            self._materialize()[name] = value
        else:
            self.__dict__[name] = value

    def _materialize(self):
        lists = self.__dict__["_lists"]
        if lists is None:
            c = self.__dict__["_c"]
            s = c.s
            lists = {
                "meta_msgs": c.meta,
                "tempo_msgs": [{"type": "tempo", "data": t.tempo, "tick": t.tick}
                               for t in s.tempos[:s.n_tempos]],
                "pedal_msgs": [{"type": "pedal", "data": p.on, "value": p.value, "tick": p.tick,
                                "channel": p.channel} for p in s.pedals[:s.n_pedals]],
                "instrument_msgs": [{"type": "instrument", "data": p.program, "tick": p.tick,
                                     "channel": p.channel} for p in s.programs[:s.n_programs]],
                "note_msgs": [{"type": "note", "data": {"pitch": n.pitch, "start": n.start, "end": n.end,
                                                        "velocity": n.velocity},
                               "tick": n.start, "channel": n.channel} for n in s.notes[:s.n_notes]],
            }
            self.__dict__["_lists"] = lists
            self.__dict__["_c"] = None
        return lists

    def _score(self):
        """(object keeping it alive, aria_score) for the library to read."""
        c = self.__dict__["_c"]
        if c is not None:
            c.s.ticks_per_beat = self.ticks_per_beat
            return c, c.s
        v = _ScoreView(self)
        return v, v.s

    def __deepcopy__(self, memo):
        md = MidiDict(**copy.deepcopy(self.get_msg_dict(), memo))
        md.pedal_resolved = self.pedal_resolved
        return md

    def __getstate__(self):  # pickling (multiprocessing): the lists, never the C score
        self._materialize()
        return {k: v for k, v in self.__dict__.items() if k != "_c"}

    def __setstate__(self, state):
        self.__dict__.update(state, _c=None)

    # --- ariautils API -------------------------------------------------------
    @classmethod
    def get_program_to_instrument(cls):
        return {p: INSTRUMENT_CLASSES[p >> 3] for p in range(128)}

    def get_msg_dict(self):
        d = dict(self._materialize())
        d["ticks_per_beat"] = self.ticks_per_beat
        d["metadata"] = self.metadata
        return d

    @classmethod
    def from_msg_dict(cls, msg_dict):
        assert msg_dict.keys() == _MSG_DICT_KEYS
        return cls(**msg_dict)

    @classmethod
    def from_midi(cls, mid_path):
        """Reads a MIDI file with libaria (what mido + midi_to_dict do in
        ariautils). Errors: FileNotFoundError, ValueError (not MIDI)."""
        path = os.fspath(mid_path)
        m = _lib.Midi()
        err = _lib.Error()
        st = lib.aria_midi_read_file(C.byref(m), path.encode(), C.byref(err))
        owned = None
        try:
            _lib.check(st, err, path)
            owned = _OwnedScore()
            st = lib.aria_score_from_midi(C.byref(owned.s), C.byref(m), C.byref(err))
            _lib.check(st, err, path)
            owned.meta = _midi_meta(m) if _count_meta(m) else []
        finally:
            lib.aria_midi_free(C.byref(m))
        md = cls.__new__(cls)
        md.__dict__.update(_c=owned, _lists=None, ticks_per_beat=owned.s.ticks_per_beat,
                           metadata={"abs_load_path": str(Path(path).absolute())}, pedal_resolved=False)
        md.program_to_instrument = cls.get_program_to_instrument()
        return md

    def calculate_hash(self):
        d = self.get_msg_dict()
        for k in ("meta_msgs", "ticks_per_beat", "metadata"):
            d.pop(k)
        return hashlib.md5(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def tick_to_ms(self, tick):
        keep, s = self._score()
        return lib.aria_score_duration_ms(C.byref(s), 0, int(tick))

    def _build_pedal_intervals(self):
        self.pedal_msgs.sort(key=lambda msg: msg["tick"])
        intervals, down = {}, {}
        for m in self.pedal_msgs:
            ch = m["channel"]
            if m["data"] == 1 and ch not in down:
                down[ch] = m["tick"]
            elif m["data"] == 0 and ch in down:
                intervals.setdefault(ch, []).append([down.pop(ch), m["tick"]])
        last_end = self.note_msgs[-1]["data"]["end"]
        for ch, start in down.items():
            intervals.setdefault(ch, []).append([start, last_end])
        return intervals

    def resolve_overlaps(self):
        """Per (channel, pitch), in (start, end) order: a note still sounding
        when the next starts ends there (in place; returns self)."""
        groups = {}
        for m in self.note_msgs:
            groups.setdefault((m["channel"], m["data"]["pitch"]), []).append(m)
        for msgs in groups.values():
            msgs.sort(key=lambda m: (m["data"]["start"], m["data"]["end"]))
            prev_end = -1
            for i, m in enumerate(msgs):
                if prev_end > m["data"]["start"]:
                    msgs[i - 1]["data"]["end"] = m["data"]["start"]
                prev_end = m["data"]["end"]
        return self

    def resolve_pedal(self):
        """Notes ending strictly inside a pedal interval of their channel end
        when the pedal lifts; then overlaps are resolved."""
        intervals = self._build_pedal_intervals()
        for m in self.note_msgs:
            end = m["data"]["end"]
            for p_start, p_end in intervals.get(m["channel"], ()):
                if p_start < end < p_end:
                    m["data"]["end"] = p_end
                    break
        self.resolve_overlaps()
        self.pedal_resolved = True
        return self

    def remove_redundant_pedals(self):
        """Keeps, per channel, only pedal presses that hold some note (a note
        of the channel ends while the pedal is down), as on/off pairs; lone,
        repeated and never-released messages go."""
        kept = set()
        msgs = self.pedal_msgs
        channels = {m["channel"] for m in msgs}
        for ch in channels:
            ends = [n["data"]["end"] for n in self.note_msgs if n["channel"] == ch]
            down_idx = None
            for i, m in enumerate(msgs):
                if m["channel"] != ch:
                    continue
                if down_idx is None:
                    if m["data"] == 1:
                        down_idx = i
                    continue
                if m["data"] == 1:
                    continue
                t0, t1 = msgs[down_idx]["tick"], m["tick"]
                if any(t0 <= e <= t1 for e in ends):
                    kept.update((down_idx, i))
                down_idx = None
        self.pedal_msgs = [m for i, m in enumerate(msgs) if i in kept]
        return self

    def apply_pedal_threshold(self, threshold=64, buffer=0, transitions_only=False):
        """Re-derives each pedal message's on/off from its raw value: on at
        value >= threshold + buffer, off at value <= threshold - buffer, the
        previous state (per channel, starting off) in between. With
        transitions_only, only messages that change the state are kept."""
        state, out = {}, []
        for m in sorted(self.pedal_msgs, key=lambda msg: msg["tick"]):
            ch = m["channel"]
            value = m.get("value", 127 if m["data"] else 0)
            prev = state.get(ch, 0)
            if value >= threshold + buffer:
                cur = 1
            elif value <= threshold - buffer:
                cur = 0
            else:
                cur = prev
            state[ch] = cur
            if transitions_only and cur == prev:
                continue
            m["data"] = cur
            out.append(m)
        self.pedal_msgs = out
        return self

    def remove_instruments(self, remove_instruments):
        """Channels (other than 9) with a program change to a program 1..127
        whose class is set in `remove_instruments` lose all their messages."""
        programs = {p for p in range(1, 128) if remove_instruments.get(INSTRUMENT_CLASSES[p >> 3], False)}
        channels = {m["channel"] for m in self.instrument_msgs if m["data"] in programs} - {9}
        if channels:
            self.note_msgs = [m for m in self.note_msgs if m["channel"] not in channels]
            self.pedal_msgs = [m for m in self.pedal_msgs if m["channel"] not in channels]
            self.instrument_msgs = [m for m in self.instrument_msgs if m["channel"] not in channels]
        return self

    def to_midi_bytes(self):
        """The type-0 file of to_midi() as bytes (no mido needed)."""
        self.resolve_overlaps()
        keep, view = self._score()
        owned = _OwnedScore()
        if lib.aria_score_copy(C.byref(owned.s), C.byref(view)) != 0:
            raise MemoryError("out of memory")
        m = _lib.Midi()
        err = _lib.Error()
        buf = C.POINTER(C.c_uint8)()
        n = C.c_size_t()
        try:
            _lib.check(lib.aria_score_to_midi(C.byref(owned.s), C.byref(m), C.byref(err)), err)
            _lib.check(lib.aria_midi_write(C.byref(m), C.byref(buf), C.byref(n), C.byref(err)), err)
            return C.string_at(buf, n.value)
        finally:
            lib.aria_midi_free(C.byref(m))
            _lib.libc.free(buf)

    def to_midi(self):
        """A mido.MidiFile (type 0) as ariautils' dict_to_midi writes it."""
        import mido
        return mido.MidiFile(file=io.BytesIO(self.to_midi_bytes()))


def normalize_midi_dict(midi_dict, ignore_instruments, instrument_programs, time_step_ms, max_duration_ms,
                        drum_velocity, quantize_velocity_fn):
    """A MidiDict in a canonical form for comparisons: kept instruments on
    fixed channels, pedal folded into durations, times in ms on a
    time_step_ms grid (500 ticks per beat at 500000 us), quantized
    velocities, drum notes of one step at drum_velocity."""
    md = copy.deepcopy(midi_dict)
    md.remove_instruments(remove_instruments=ignore_instruments)
    md.resolve_pedal()
    md.pedal_msgs = []
    instruments = [k for k, v in ignore_instruments.items() if not v] + ["drum"]
    new_channel = {name: 9 if name == "drum" else i + (i >= 9) for i, name in enumerate(instruments)}
    old_instrument = {m["channel"]: md.program_to_instrument[m["data"]] for m in md.instrument_msgs}
    old_instrument[9] = "drum"
    instrument_msgs = [{"type": "instrument", "data": 0 if k == "drum" else instrument_programs[k], "tick": 0,
                        "channel": ch} for k, ch in new_channel.items()]

    def grid(ms):
        return round(ms / time_step_ms) * time_step_ms

    notes = []
    for m in md.note_msgs:
        ch = new_channel[old_instrument[m["channel"]]]
        start = grid(md.tick_to_ms(m["data"]["start"]))
        end = grid(md.tick_to_ms(m["data"]["end"]))
        n = copy.deepcopy(m)
        n["channel"], n["tick"] = ch, start
        n["data"]["start"] = start
        if ch != 9:
            n["data"]["end"] = min(start + max_duration_ms, end)
            n["data"]["velocity"] = quantize_velocity_fn(m["data"]["velocity"])
        else:
            n["data"]["end"] = start + time_step_ms
            n["data"]["velocity"] = drum_velocity
        notes.append(n)
    return MidiDict(meta_msgs=[], tempo_msgs=[{"type": "tempo", "data": 500000, "tick": 0}], pedal_msgs=[],
                    instrument_msgs=instrument_msgs, note_msgs=notes, ticks_per_beat=500, metadata={})
