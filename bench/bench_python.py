"""bench_python.py - tokenizing a MIDI folder from Python with aria_c.

For each file: aria_c.midi.MidiDict.from_midi + AbsTokenizer().tokenize
(what an ariautils script does), timed over the whole folder; beside it, in
the same run, bench/ariautils_equiv.py (mido parse + the reference's
MidiDict and tokenizer steps in plain Python, a stand-in for ariautils) and
mido parsing alone. Prints files/s and the ratio (medians of --runs runs),
and how many files the two tokenizers disagree on (prefix order aside).

  PYTHONPATH=bindings/python /usr/bin/python3 bench/bench_python.py ../shared/midi/corpus
"""
import argparse
import pathlib
import random
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import ariautils_equiv  # noqa: E402
from aria_c.midi import MidiDict
from aria_c.tokenizer import AbsTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-mido", action="store_true", help="skip the mido-only pass")
    args = ap.parse_args()
    files = sorted(p for p in pathlib.Path(args.folder).rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    tk = AbsTokenizer()

    def aria_c_pass():
        for f in files:
            random.seed(0)
            try:
                tk.tokenize(MidiDict.from_midi(f))
            except ValueError:
                pass

    def equiv_pass():
        for f in files:
            random.seed(0)
            try:
                ariautils_equiv.tokenize(ariautils_equiv.read_midi_dict(f))
            except Exception:
                pass

    def mido_pass():
        import mido
        for f in files:
            try:
                mido.MidiFile(f)
            except Exception:
                pass

    # agreement first (one pass), then the timings
    differ = failed = 0
    for f in files:
        try:
            random.seed(0)
            b = ariautils_equiv.tokenize(ariautils_equiv.read_midi_dict(f))
        except Exception:
            failed += 1
            continue
        random.seed(0)
        try:
            a = tk.tokenize(MidiDict.from_midi(f))
        except ValueError:
            differ += 1
            continue
        k = a.index("<S>")
        differ += sorted(map(str, a[:k])) != sorted(map(str, b[:k])) or a[k:] != b[k:]
    print(f"agreement: {len(files) - differ - failed} files equal, {differ} differ, {failed} the Python path refused")
    medians = {}
    for name, fn in (("aria_c from_midi+tokenize", aria_c_pass), ("python (mido + ariautils steps)", equiv_pass),
                     ("mido.MidiFile parse only", mido_pass))[:2 if args.no_mido else 3]:
        ts = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        med = medians[name] = statistics.median(ts)
        print(f"{name}: {len(files)} files, median {med:.3f} s, {len(files) / med:.1f} files/s, "
              f"{1000 * med / len(files):.2f} ms/file")
        sys.stdout.flush()
    print(f"ratio python / aria_c: {medians['python (mido + ariautils steps)'] / medians['aria_c from_midi+tokenize']:.1f}x")


main()
