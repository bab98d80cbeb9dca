#!/usr/bin/python3
"""How a sampling setting moves the chance of stacking a note on the previous onset.

After a note token the next token is an onset. For every such position of
real files (teacher forcing: the model reads the file's own tokens), this
takes the model's distribution over onset tokens, applies a temperature and
min-p as `aria generate` does (the grammar mask keeps only onset tokens
there), and averages the probability of the previous note's onset (a chord
grows) and of a later one (time moves on). The data's own share of repeated
onsets is printed beside them.

Why: a small model spreads the "time moves on" mass over many 10 ms onset
tokens, each below min-p's cut, while "same onset" is one large token; so
min-p removes time and keeps chords, and in free sampling the chords grow
(docs/generation.md, "Sampling settings of a model").

  /usr/bin/python3 bench/onset_stack.py --model M.safetensors --files-from DATA/val-files.txt
  /usr/bin/python3 bench/onset_stack.py --model M.safetensors a.mid b.mid --set 1.0:0 --set 0.98:0.035

Needs numpy. The model runs through `aria logits` (one file at a time, its
first --max-tokens ids).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
T_TOK = 5          # <T>: the next 5 s segment; onsets restart at 0
ONSET0 = 17227     # ("onset", 0); onset tokens run to the end of the vocabulary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="MIDI files (or --files-from)")
    ap.add_argument("--files-from", help="a list of MIDI files, one per line ('/versions/' lines skipped)")
    ap.add_argument("--max-files", type=int, default=10)
    ap.add_argument("--aria", default=os.path.join(ROOT, "aria"))
    ap.add_argument("--model", required=True)
    ap.add_argument("--max-tokens", type=int, default=1024, help="ids per file (default 1024, the bundled context)")
    ap.add_argument("--set", action="append", default=None, metavar="TEMP:MIN_P",
                    help="a sampling setting (repeatable; default 1.0:0, 0.98:0.035, 1.2:0.05, 0.85:0.05)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    files = list(a.files)
    if a.files_from:
        with open(a.files_from) as fh:
            files += [l.strip() for l in fh if l.strip() and "/versions/" not in l]
    files = files[:a.max_files]
    if not files:
        sys.exit("onset_stack: no files (give MIDI files or --files-from)")
    sets = [tuple(map(float, s.split(":"))) for s in (a.set or ["1.0:0", "0.98:0.035", "1.2:0.05", "0.85:0.05"])]

    acc = {s: [0.0, 0.0] for s in sets}
    n = repeats = 0
    with tempfile.TemporaryDirectory(prefix="onset_stack_") as tmp:
        idf, lf = os.path.join(tmp, "ids.txt"), os.path.join(tmp, "logits.bin")
        for f in files:
            r = subprocess.run([a.aria, "tokenize", "--ids", f], capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"onset_stack: aria tokenize {f}: {r.stderr.strip()}")
            ids = [int(x) for x in r.stdout.split()][:a.max_tokens]
            with open(idf, "w") as fh:
                fh.write(" ".join(map(str, ids)))
            r = subprocess.run([a.aria, "logits", "--model", a.model, "--ids", idf, "-o", lf, "--threads",
                                str(a.threads)], capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"onset_stack: aria logits: {r.stderr.strip()}")
            L = np.fromfile(lf, dtype=np.float32).reshape(len(ids), -1).astype(np.float64)
            prev = None
            for t in range(len(ids) - 1):
                if ids[t] == T_TOK:
                    prev = None
                nxt = ids[t + 1]
                if nxt < ONSET0:
                    continue
                if prev is not None:
                    z = L[t, ONSET0:]
                    n += 1
                    repeats += nxt == prev
                    for temp, min_p in sets:
                        p = np.exp((z - z.max()) / temp)
                        p /= p.sum()
                        if min_p > 0:
                            p = np.where(p >= min_p * p.max(), p, 0.0)
                            p /= p.sum()
                        acc[(temp, min_p)][0] += p[prev - ONSET0]
                        acc[(temp, min_p)][1] += p[prev - ONSET0 + 1:].sum()
                prev = nxt
    if not n:
        sys.exit("onset_stack: no onset followed another in the same segment")
    print(f"{len(files)} files, {n} onsets after an onset in the same segment; "
          f"the data repeats the previous onset {repeats / n:.3f} of the time")
    for s in sets:
        print(f"temp {s[0]:.2f} min-p {s[1]:.3f}: P(previous onset) {acc[s][0] / n:.3f}, "
              f"P(a later onset) {acc[s][1] / n:.3f}")


if __name__ == "__main__":
    main()
