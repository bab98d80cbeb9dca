"""ariautils_equiv.py - a pure-Python stand-in for ariautils' path (mido
parse -> MidiDict -> AbsTokenizer.tokenize), written from
../shared/spec/aria.md sections 1.3-1.6, for bench/bench_python.py to time
beside aria_c in the same run. ariautils itself is not installed here; this
does the same work the same way (Python dicts and lists per message), so its
time stands for ariautils' own. The benchmark also checks that it gives the
same tokens as aria_c on every file.
"""
import random

import mido

CLASSES = ("piano", "chromatic", "organ", "guitar", "bass", "strings", "ensemble", "brass", "reed", "pipe",
           "synth_lead", "synth_pad", "synth_effect", "ethnic", "percussive", "sfx")
IGNORED = {"chromatic", "synth_pad", "synth_effect", "ethnic", "percussive", "sfx"}
VEL_Q = list(range(0, 121, 10))
DUR_Q = list(range(0, 5001, 10))
ONSET_Q = list(range(0, 5000, 10))


def closest(n, xs):
    lo, hi, best = 0, len(xs) - 1, xs[0]
    while lo <= hi:
        mid = (lo + hi) // 2
        if abs(xs[mid] - n) < abs(best - n):
            best = xs[mid]
        if xs[mid] < n:
            lo = mid + 1
        else:
            hi = mid - 1
    return best


def read_midi_dict(path):
    """Section 1.3: per-track note pairing, lists stable-sorted by tick."""
    mid = mido.MidiFile(path)
    tempos, pedals, progs, notes = [], [], [], []
    for track in mid.tracks:
        tick, open_notes = 0, {}
        for msg in track:
            tick += msg.time
            t = msg.type
            if t == "set_tempo":
                tempos.append({"type": "tempo", "data": msg.tempo, "tick": tick})
            elif t == "program_change":
                progs.append({"type": "instrument", "data": msg.program, "tick": tick, "channel": msg.channel})
            elif t == "control_change" and msg.control == 64:
                pedals.append({"type": "pedal", "data": int(msg.value >= 64), "value": msg.value, "tick": tick,
                               "channel": msg.channel})
            elif t == "note_on" and msg.velocity > 0:
                open_notes.setdefault((msg.note, msg.channel), []).append((tick, msg.velocity))
            elif t in ("note_on", "note_off"):
                key = (msg.note, msg.channel)
                if key not in open_notes:
                    continue
                close = [sv for sv in open_notes[key] if sv[0] != tick]
                keep = [sv for sv in open_notes[key] if sv[0] == tick]
                for s, v in close:
                    notes.append({"type": "note", "data": {"pitch": msg.note, "start": s, "end": tick,
                                                           "velocity": v}, "tick": s, "channel": msg.channel})
                if close and keep:
                    open_notes[key] = keep
                else:
                    del open_notes[key]
    for lst in (tempos, pedals, progs, notes):
        lst.sort(key=lambda m: m["tick"])
    return {"tempo_msgs": tempos or [{"type": "tempo", "data": 500000, "tick": 0}], "pedal_msgs": pedals,
            "instrument_msgs": progs or [{"type": "instrument", "data": 0, "tick": 0, "channel": 0}],
            "note_msgs": notes, "ticks_per_beat": mid.ticks_per_beat}


def duration_ms(start, end, tempos, tpb):
    """Section 1.4, its quirk included."""
    idx = len(tempos) - 1
    for i, m in enumerate(tempos):
        if start <= m["tick"]:
            idx = i
            break
    if idx > 0:
        idx -= 1
    dur, cur = 0.0, start
    for c, n in zip(tempos[idx:], tempos[idx + 1:]):
        delta = (end - cur) if end < n["tick"] else (n["tick"] - cur)
        dur += delta * ((c["data"] * 1e-6) / tpb)
        if end < n["tick"]:
            break
        cur = n["tick"]
    if end > tempos[-1]["tick"]:
        dur += (end - cur) * ((tempos[-1]["data"] * 1e-6) / tpb)
    return round(dur * 1e3)


def tokenize(md, add_dim_tok=True):
    """Section 1.6 with the released configuration."""
    bad = {m["channel"] for m in md["instrument_msgs"]
           if 1 <= m["data"] <= 127 and CLASSES[m["data"] >> 3] in IGNORED} - {9}
    notes = [m for m in md["note_msgs"] if m["channel"] not in bad]
    pedals = sorted((m for m in md["pedal_msgs"] if m["channel"] not in bad), key=lambda m: m["tick"])
    progs = [m for m in md["instrument_msgs"] if m["channel"] not in bad]
    if not notes:
        raise ValueError("note_msgs is empty after ignoring instruments")
    intervals, down = {}, {}
    for p in pedals:
        ch = p["channel"]
        if p["data"] == 1 and ch not in down:
            down[ch] = p["tick"]
        elif p["data"] == 0 and ch in down:
            intervals.setdefault(ch, []).append((down.pop(ch), p["tick"]))
    for ch, s in down.items():
        intervals.setdefault(ch, []).append((s, notes[-1]["data"]["end"]))
    used = {m["channel"] for m in notes}
    ch_instr = {m["channel"]: CLASSES[m["data"] >> 3] for m in progs if m["channel"] != 9}
    for c in used:
        if c != 9 and c not in ch_instr:
            ch_instr[c] = "piano"
    prefix = [("prefix", "instrument", x) for x in set(ch_instr.values())]
    if 9 in used:
        prefix.append(("prefix", "instrument", "drum"))
    random.shuffle(prefix)
    tempos, tpb = md["tempo_msgs"], md["ticks_per_beat"]
    notes.sort(key=lambda m: m["data"]["start"])
    t0, cur, seq = notes[0]["tick"], 0, []
    for m in notes:
        prev, d = cur, m["data"]
        cur = duration_ms(t0, d["start"], tempos, tpb)
        seq.extend(["<T>"] * (cur // 5000 - prev // 5000))
        onset = closest(cur % 5000, ONSET_Q)
        if m["channel"] == 9:
            seq += [("drum", d["pitch"]), ("onset", onset)]
            continue
        end = d["end"]
        for ps, pe in intervals.get(m["channel"], ()):
            if ps < end < pe:
                end = pe
                break
        v = closest(d["velocity"], VEL_Q)
        v = 10 if v == 0 and d["velocity"] != 0 else v
        q = closest(duration_ms(d["start"], end, tempos, tpb), DUR_Q) or 10
        seq += [(ch_instr[m["channel"]], d["pitch"], v), ("onset", onset), ("dur", q)]
    idx = -100 + random.randint(-10, 10)
    if add_dim_tok and len(seq) > 150:
        kind = seq[idx][0] if isinstance(seq[idx], tuple) else None
        seq.insert(idx - 1 if kind == "onset" else idx - 2 if kind == "dur" else idx, "<D>")
    return prefix + ["<S>"] + seq + ["<E>"]
