#!/usr/bin/python3
"""Python peer of bench_tokenize.c: the same corpus, pre-loaded, on one core.

    /usr/bin/python3 bench/peer_mido.py [--reps N] [--typical-reps N] [DIR]

Walks DIR (default ../shared/midi/corpus) recursively for *.mid / *.midi
(any case), sorted by path bytes exactly as bench_tokenize does, and reads
every file into memory before timing. Two figures, each the median of
--reps passes over all files (min and max beside it):

  1. mido:           mido.MidiFile(file=BytesIO(data)) per file, MB/s.
  2. ariautils-like: mido parse, then a note list built the way ariautils'
                     MidiDict.from_midi builds one (per-track absolute
                     ticks, note_on/note_off paired per (pitch, channel),
                     tempo / program / CC64 lists, stable sorts, defaults),
                     then every note's start and end converted tick -> ms
                     with get_duration_ms (the reference formula, quirk
                     included). This is OUR RE-STATEMENT of that pipeline
                     from spec/aria.md sections 1.3-1.4, written here; it is
                     not ariautils itself (ariautils is not installable
                     here). It builds dicts as the reference does, so its
                     cost should be of the same order, but it is not the
                     reference's code and is not a measurement of it.

Machine-readable lines: RESULT <metric> <median> <unit> min=.. max=.. n=..
"""
import argparse
import gc
import io
import math
import os
import statistics
import sys
import time

import mido


def find_files(root):
    out = []
    for d, _dirs, names in os.walk(os.fsencode(root)):
        for n in names:
            low = n.lower()
            if low.endswith(b".mid") or low.endswith(b".midi"):
                out.append(os.path.join(d, n))
    out.sort()
    return out


# ---------------------------------------------------------------------------
# "ariautils-like" note list: our own re-statement, not ariautils' code.
# ---------------------------------------------------------------------------

def _track_lists(track):
    """One track's tempo, program, pedal and note lists, ticks absolute."""
    tempos, programs, pedals, notes = [], [], [], []
    pending = {}  # (pitch, channel) -> [(start_tick, velocity), ...]
    now = 0
    for msg in track:
        now += msg.time
        kind = msg.type
        if kind == "note_on" and msg.velocity > 0:
            key = (msg.note, msg.channel)
            lst = pending.get(key)
            if lst is None:
                pending[key] = [(now, msg.velocity)]
            else:
                lst.append((now, msg.velocity))
        elif kind == "note_on" or kind == "note_off":
            key = (msg.note, msg.channel)
            lst = pending.get(key)
            if lst is None:
                continue
            closing = [sv for sv in lst if sv[0] != now]
            staying = [sv for sv in lst if sv[0] == now]
            for start, vel in closing:
                notes.append({"type": "note",
                              "data": {"pitch": msg.note, "start": start, "end": now,
                                       "velocity": vel},
                              "tick": start, "channel": msg.channel})
            if closing and staying:
                pending[key] = staying
            else:
                del pending[key]
        elif kind == "set_tempo":
            tempos.append({"type": "tempo", "data": msg.tempo, "tick": now})
        elif kind == "program_change":
            programs.append({"type": "instrument", "data": msg.program, "tick": now,
                             "channel": msg.channel})
        elif kind == "control_change" and msg.control == 64:
            pedals.append({"type": "pedal", "data": 0 if msg.value < 64 else 1,
                           "value": msg.value, "tick": now, "channel": msg.channel})
    return tempos, programs, pedals, notes


def _tick_key(m):
    return m["tick"]


def duration_ms(start, end, tempos, tpb):
    """get_duration_ms of spec/aria.md 1.4, written out again (quirk kept)."""
    idx = len(tempos) - 1
    for i, m in enumerate(tempos):
        if start <= m["tick"]:
            idx = i
            break
    if idx > 0:
        idx -= 1
    secs = 0.0
    cur = start
    tempo = tempos[idx]["data"]
    for c, n in zip(tempos[idx:], tempos[idx + 1:]):
        tempo = c["data"]
        if end < n["tick"]:
            secs += mido.tick2second(end - cur, tpb, tempo)
            break
        secs += mido.tick2second(n["tick"] - cur, tpb, tempo)
        cur = n["tick"]
    if end > tempos[-1]["tick"]:
        secs += mido.tick2second(end - cur, tpb, tempos[-1]["data"])
    return round(secs * 1e3)


def ariautils_like(mid):
    tempos, programs, pedals, notes = [], [], [], []
    for track in mid.tracks:
        t, p, d, n = _track_lists(track)
        tempos += t
        programs += p
        pedals += d
        notes += n
    tempos.sort(key=_tick_key)
    programs.sort(key=_tick_key)
    pedals.sort(key=_tick_key)
    notes.sort(key=_tick_key)
    if not tempos:
        tempos = [{"type": "tempo", "data": 500000, "tick": 0}]
    if not programs:
        programs = [{"type": "instrument", "data": 0, "tick": 0, "channel": 0}]
    tpb = mid.ticks_per_beat
    out = []
    for m in notes:
        d = m["data"]
        out.append((duration_ms(0, d["start"], tempos, tpb),
                    duration_ms(0, d["end"], tempos, tpb),
                    d["pitch"], d["velocity"], m["channel"]))
    return out


# ---------------------------------------------------------------------------

def stat(v):
    return statistics.median(v), min(v), max(v), len(v)


def result(name, v, unit):
    med, lo, hi, n = stat(v)
    print(f"RESULT {name} {med:.6g} {unit} min={lo:.6g} max={hi:.6g} n={n}")


def pct(sorted_v, p):  # nearest rank, as bench_tokenize.c
    k = max(1, min(len(sorted_v), math.ceil(p / 100.0 * len(sorted_v))))
    return sorted_v[k - 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", nargs="?", default="../shared/midi/corpus")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--typical-reps", type=int, default=21)
    a = ap.parse_args()

    paths = find_files(a.dir)
    if not paths:
        sys.exit(f"peer_mido: no .mid/.midi files under {a.dir}")
    datas = []
    for p in paths:
        with open(p, "rb") as f:
            datas.append(f.read())
    total = sum(len(d) for d in datas)

    # classify once, untimed
    parse_ok, notes_ok, parse_fail, empty, total_notes, like_fail = [], [], 0, 0, 0, 0
    for i, d in enumerate(datas):
        try:
            mid = mido.MidiFile(file=io.BytesIO(d))
        except Exception as e:  # mido raises many kinds
            parse_fail += 1
            print(f"note: mido fails (counted): {os.fsdecode(paths[i])}: {type(e).__name__}: {e}",
                  file=sys.stderr, flush=True)
            continue
        parse_ok.append(i)
        try:
            nl = ariautils_like(mid)
        except Exception as e:  # e.g. ticks_per_beat 0 (SMPTE) in tick2second
            like_fail += 1
            print(f"note: ariautils-like fails (counted): {os.fsdecode(paths[i])}: "
                  f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
            continue
        if nl:
            notes_ok.append(i)
            total_notes += len(nl)
        else:
            empty += 1
    parse_bytes = sum(len(datas[i]) for i in parse_ok)
    notes_bytes = sum(len(datas[i]) for i in notes_ok)

    print(f"peer: python {sys.version.split()[0]}, mido {mido.__version__}")
    print(f"corpus        {a.dir}")
    print(f"files found   {len(paths)} ({total / 1e6:.2f} MB)")
    print(f"mido set      {len(parse_ok)} files, {parse_bytes / 1e6:.2f} MB; mido failures {parse_fail}")
    print(f"notes set     {len(notes_ok)} files, {notes_bytes / 1e6:.2f} MB, {total_notes} notes; "
          f"no notes {empty}; ariautils-like failures {like_fail}")
    print(f"reps {a.reps}, one thread")
    print(f"RESULT peer_files_found {len(paths)} files")
    print(f"RESULT peer_corpus_bytes {total} bytes")
    print(f"RESULT peer_mido_failures {parse_fail} files")
    print(f"RESULT peer_no_notes {empty} files")
    print(f"RESULT peer_like_failures {like_fail} files")
    print(f"RESULT peer_total_notes {total_notes} notes")
    sys.stdout.flush()

    mido_mbps, like_mbps, like_fps = [], [], []
    per = {i: [] for i in notes_ok}
    for _ in range(a.reps):
        gc.collect()
        t0 = time.perf_counter()
        for i in parse_ok:
            mido.MidiFile(file=io.BytesIO(datas[i]))
        dt = time.perf_counter() - t0
        mido_mbps.append(parse_bytes / 1e6 / dt)

        gc.collect()
        tsum = 0.0
        for i in notes_ok:
            t0 = time.perf_counter()
            ariautils_like(mido.MidiFile(file=io.BytesIO(datas[i])))
            dt = time.perf_counter() - t0
            per[i].append(dt)
            tsum += dt
        like_mbps.append(notes_bytes / 1e6 / tsum)
        like_fps.append(len(notes_ok) / tsum)
        print(f"  rep: mido {mido_mbps[-1]:.3f} MB/s, ariautils-like {like_mbps[-1]:.3f} MB/s",
              file=sys.stderr, flush=True)

    file_ms = sorted(statistics.median(v) * 1e3 for v in per.values())

    # typical file: median size of the notes set, ties by path order (lower middle)
    by_size = sorted(notes_ok, key=lambda i: (len(datas[i]), i))
    typ = by_size[(len(by_size) - 1) // 2]
    t_parse, t_like = [], []
    for _ in range(a.typical_reps):
        t0 = time.perf_counter()
        mid = mido.MidiFile(file=io.BytesIO(datas[typ]))
        t1 = time.perf_counter()
        nl = ariautils_like(mid)
        t2 = time.perf_counter()
        t_parse.append((t1 - t0) * 1e3)
        t_like.append((t2 - t1) * 1e3)

    print()
    print(f"{'metric (median of reps)':<52} {'median':>10} {'min':>10} {'max':>10}")
    for name, v in (("mido.MidiFile parse        [MB/s]", mido_mbps),
                    ("ariautils-like parse+notes+ms [MB/s]", like_mbps),
                    ("ariautils-like parse+notes+ms [files/s]", like_fps)):
        med, lo, hi, _ = stat(v)
        print(f"{name:<52} {med:10.3f} {lo:10.3f} {hi:10.3f}")
    print(f"{'ariautils-like per file, median over files [ms]':<52} {statistics.median(file_ms):10.3f}")
    print(f"{'ariautils-like per file, p90 over files    [ms]':<52} {pct(file_ms, 90):10.3f}")
    print(f"typical file: {os.fsdecode(paths[typ])} ({len(datas[typ])} bytes, {len(nl)} notes)")
    print(f"  mido parse      {statistics.median(t_parse):10.3f} ms")
    print(f"  notes + ms      {statistics.median(t_like):10.3f} ms")
    print()
    result("peer_mido_mbps_1t", mido_mbps, "MB/s")
    result("peer_like_mbps_1t", like_mbps, "MB/s")
    result("peer_like_files_per_s_1t", like_fps, "files/s")
    print(f"RESULT peer_like_per_file_ms_median {statistics.median(file_ms):.6g} ms")
    print(f"RESULT peer_like_per_file_ms_p90 {pct(file_ms, 90):.6g} ms")
    print(f"RESULT peer_typical_file_bytes {len(datas[typ])} bytes")
    result("peer_typical_mido_parse_ms", t_parse, "ms")
    result("peer_typical_like_notes_ms", t_like, "ms")


if __name__ == "__main__":
    main()
