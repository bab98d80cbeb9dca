#!/usr/bin/python3
"""Does a generation model play well? (issue 11 item 3)

For held-out prompts (the first PROMPT_S seconds of files never trained on,
by default ../shared/midi/eval), generates several continuations with
`aria generate` and measures each against its prompt:

  in-key     share of the continuation's notes whose pitch class is one of
             the prompt's 7 most used pitch classes (target >= 85 %)
  density    continuation notes per second / prompt notes per second
             (target 0.5-2x)
  silence    the longest stretch of the continuation with no note sounding,
             counted from the prompt's last onset (target <= 4 s, unless
             the prompt itself has a longer one)
  errors     malformed tokens the detokenizer had to skip (target 0)
  restrikes  share of the continuation's notes that strike a key again at
             most 30 ms after its last strike (no target; a pianist cannot,
             and the classical data never does; a doubled track does)

Definitions. Notes come from `aria notes` (onset and offset in ms, sustain
already folded into the durations by the tokenizer). The prompt's notes
are those of the prompt `aria generate` builds (`aria tokenize
--prompt-seconds`), detokenized; a continuation's notes are those of
res_N.mid less the prompt's (as a multiset of onset, pitch). Prompt
density: its notes over [first onset, PROMPT_S]; continuation density: its
notes over [its first onset, its last offset] (at least 1 s). Silence in
the prompt: over [first onset, last offset].

Everything is driven through the `aria` program, so the figures are those
of the command a user runs. Standard library only.

  python3 bench/plays_well.py                       # bundled model, 12 prompts x 3
  python3 bench/plays_well.py --model M.safetensors --prompts 20 --variations 4 --json out.json
"""
import argparse
import collections
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd, stdin=None):
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def notes_of(aria, mid):
    rc, out, err = run([aria, "notes", mid])
    if rc:
        raise RuntimeError(f"aria notes {mid}: {err.strip()}")
    rows = []
    for line in out.splitlines():
        f = line.split("\t")
        rows.append((int(f[0]), int(f[1]), int(f[2])))  # onset, offset, pitch
    return rows


def longest_silence(notes, start, end):
    """Longest time in [start, end] (ms) with no note sounding."""
    iv = sorted((a, b) for a, b, _ in notes if b > start and a < end)
    t, gap = start, 0
    for a, b in iv:
        if a > t:
            gap = max(gap, a - t)
        t = max(t, b)
    return max(gap, end - t) if end > t else gap


def pick_prompts(root, n, prompt_s, aria, tmp, max_tokens):
    """n files spread evenly over the sorted list of root's MIDI files,
    each with at least 10 notes in its prompt window and at most
    max_tokens prompt tokens (room for the continuation in the context)."""
    files = sorted(glob.glob(os.path.join(root, "**", "*.mid"), recursive=True) +
                   glob.glob(os.path.join(root, "**", "*.midi"), recursive=True))
    if not files:
        sys.exit(f"plays_well: no MIDI files under {root}")
    chosen, used = [], set()
    for slot in range(n):
        # evenly spread starting points; the next file when one is unfit
        for off in range(len(files)):
            i = (slot * len(files) // n + off) % len(files)
            if i in used:
                continue
            used.add(i)
            f = files[i]
            pmid = os.path.join(tmp, f"prompt_{len(chosen)}.mid")
            rc, ids, _ = run([aria, "tokenize", "--ids", "--prompt-seconds", str(prompt_s), f])
            if rc or len(ids.split()) > max_tokens:
                continue
            rc, _, _ = run([aria, "detokenize", "-o", pmid, "-"], stdin=ids)
            if rc:
                continue
            pn = notes_of(aria, pmid)
            if len(pn) >= 10:
                chosen.append((f, pmid, pn, len(ids.split())))
                break
    return chosen


def restrikes(prompt_notes, cont, window_ms=30):
    """Continuation notes whose key was struck at most window_ms before."""
    cont_set = collections.Counter((a, p) for a, _, p in cont)
    by_pitch = collections.defaultdict(list)
    for a, _, p in prompt_notes + cont:
        by_pitch[p].append(a)
    n = 0
    for p, onsets in by_pitch.items():
        onsets.sort()
        for x, y in zip(onsets, onsets[1:]):
            if y - x <= window_ms and cont_set[(y, p)] > 0:
                n += 1
    return n


def measure(prompt_notes, res_notes, prompt_s):
    left = collections.Counter((a, p) for a, _, p in prompt_notes)
    cont = []
    for a, b, p in res_notes:
        if left[(a, p)] > 0:
            left[(a, p)] -= 1
        else:
            cont.append((a, b, p))
    pcs = collections.Counter(p % 12 for _, _, p in prompt_notes)
    top7 = {pc for pc, _ in pcs.most_common(7)}
    first = min(a for a, _, _ in prompt_notes)
    p_span = max(prompt_s * 1000 - first, 1000)
    p_density = len(prompt_notes) / (p_span / 1000)
    p_sil = longest_silence(prompt_notes, first, max(b for _, b, _ in prompt_notes))
    if not cont:
        return dict(notes=0, in_key=None, density=0.0, ratio=0.0, silence_s=None, prompt_silence_s=p_sil / 1000)
    c0, c1 = min(a for a, _, _ in cont), max(b for _, b, _ in cont)
    c_density = len(cont) / (max(c1 - c0, 1000) / 1000)
    last_prompt_onset = max(a for a, _, _ in prompt_notes)
    sil = longest_silence(prompt_notes + cont, last_prompt_onset, c1)
    return dict(notes=len(cont), restrikes=restrikes(prompt_notes, cont) / len(cont),
                in_key=sum(p % 12 in top7 for _, _, p in cont) / len(cont),
                density=c_density, prompt_density=p_density, ratio=c_density / p_density,
                silence_s=sil / 1000, prompt_silence_s=p_sil / 1000)


def report(m):
    ik = f"{100 * m['in_key']:5.1f}" if m["in_key"] is not None else "    -"
    sil = f"{m['silence_s']:5.1f}" if m["silence_s"] is not None else "    -"
    print(f"{m['file'][:48]:48s} v{m['variation']}  notes {m['notes']:4d}  in-key {ik} %  "
          f"density {m['density']:5.2f}/s (prompt {m.get('prompt_density', 0):5.2f}) "
          f"ratio {m['ratio']:4.2f}  silence {sil} s (prompt {m['prompt_silence_s']:4.1f})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--aria", default=os.path.join(ROOT, "aria"), help="the aria program (default ./aria)")
    ap.add_argument("--model", default=None, help="weights (default: the bundled model)")
    ap.add_argument("--eval", default=os.path.join(ROOT, "..", "shared", "midi", "eval"),
                    help="folder of held-out MIDI files (default ../shared/midi/eval)")
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--variations", type=int, default=3)
    ap.add_argument("--prompt-seconds", type=float, default=10.0)
    ap.add_argument("--max-new", type=int, default=None, help="default: as many as the context leaves")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-prompt-tokens", type=int, default=400,
                    help="skip prompts longer than this (default 400, which leaves the bundled model's "
                         "context of 1024 at least 624 new tokens)")
    ap.add_argument("--extra", default="", help="more aria generate options, e.g. '--temp 0.9 --no-mask'")
    ap.add_argument("--json", default=None, help="write every figure here")
    ap.add_argument("--ground-truth", action="store_true",
                    help="measure the real music instead of a model: each file's own tokens after the prompt, "
                         "up to --context tokens in all (what a perfect model would be scored)")
    ap.add_argument("--context", type=int, default=1024,
                    help="with --ground-truth: prompt and continuation tokens together (default 1024, "
                         "the bundled model's context)")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="plays_well_")
    prompts = pick_prompts(a.eval, a.prompts, a.prompt_seconds, a.aria, tmp, a.max_prompt_tokens)
    rows, errors = [], 0
    for i, (f, pmid, pn, n_prompt) in enumerate(prompts):
        out = os.path.join(tmp, f"gen_{i}")
        if a.ground_truth:
            rc, ids, err = run([a.aria, "tokenize", "--ids", "--no-eos", f])
            if rc:
                sys.exit(f"plays_well: aria tokenize {f}: {err.strip()}")
            # the prompt as generate builds it (its notes' durations are cut at the
            # prompt's end), then the file's own tokens after it
            prompt_ids = run([a.aria, "tokenize", "--ids", "--prompt-seconds", str(a.prompt_seconds), f])[1].split()
            ids = prompt_ids + ids.split()[n_prompt:a.context]
            os.makedirs(out, exist_ok=True)
            rc, _, err = run([a.aria, "detokenize", "-o", os.path.join(out, "res_1.mid"), "-"], stdin=" ".join(ids) + "\n")
            if rc:
                sys.exit(f"plays_well: detokenize {f}: {err.strip()}")
            m = measure(pn, notes_of(a.aria, os.path.join(out, "res_1.mid")), a.prompt_seconds)
            m.update(file=os.path.relpath(f, a.eval), variation=1, decode_error=False)
            rows.append(m)
            report(m)
            continue
        cmd = [a.aria, "generate", "--prompt", f, "--prompt-seconds", str(a.prompt_seconds), "--variations",
               str(a.variations), "--seed", str(a.seed + i), "--out-dir", out, "--print-ids"]
        if a.model:
            cmd += ["--model", a.model]
        if a.max_new:
            cmd += ["--max-new", str(a.max_new)]
        cmd += a.extra.split()
        rc, ids, err = run(cmd)
        if rc:
            sys.exit(f"plays_well: {' '.join(cmd)}: {err.strip()}")
        for v, line in enumerate(ids.splitlines()):
            # decoding errors: what the detokenizer skips
            chk = os.path.join(out, f"check_{v + 1}.mid")
            rc, _, derr = run([a.aria, "detokenize", "-o", chk, "-"], stdin=line + "\n")
            bad = rc != 0 or "skipped" in derr
            errors += bad
            m = measure(pn, notes_of(a.aria, os.path.join(out, f"res_{v + 1}.mid")), a.prompt_seconds)
            m.update(file=os.path.relpath(f, a.eval), variation=v + 1, decode_error=bool(bad))
            rows.append(m)
            report(m)

    played = [r for r in rows if r["notes"] > 0]
    cont_notes = sum(r["notes"] for r in played)
    in_key = sum(r["in_key"] * r["notes"] for r in played) / cont_notes if cont_notes else 0.0
    ratios = [r["ratio"] for r in rows]
    in_range = sum(0.5 <= x <= 2.0 for x in ratios)
    long_sil = sum(1 for r in played if r["silence_s"] > 4.0 and r["prompt_silence_s"] <= 4.0)
    restruck = sum(r["restrikes"] * r["notes"] for r in played) / cont_notes if cont_notes else 0.0
    # continuations that meet every per-continuation target at once
    all_met = sum(1 for r in played if r["in_key"] >= 0.85 and 0.5 <= r["ratio"] <= 2.0 and r["decode_error"] is False
                  and not (r["silence_s"] > 4.0 and r["prompt_silence_s"] <= 4.0))
    summary = dict(prompts=len(prompts), variations=len(rows), silent_variations=len(rows) - len(played),
                   continuation_notes=cont_notes, in_key=in_key,
                   in_key_per_variation_median=statistics.median([r["in_key"] for r in played]) if played else None,
                   density_ratio_median=statistics.median(ratios) if ratios else None,
                   density_ratio_in_range=in_range,
                   long_silences=long_sil, decoding_errors=errors, all_targets_met=all_met, restrikes=restruck)
    print()
    if a.ground_truth:
        print("the real continuations of the prompts' files (--ground-truth), not a model's:")
    print(f"prompts {len(prompts)} x {a.variations if not a.ground_truth else 1} variations = {len(rows)} continuations "
          f"({summary['silent_variations']} without notes), {cont_notes} notes")
    print(f"in the prompt's 7 main pitch classes: {100 * in_key:.1f} % of all continuation notes "
          f"(median per continuation {100 * (summary['in_key_per_variation_median'] or 0):.1f} %; target >= 85 %)")
    print(f"density ratio: median {summary['density_ratio_median']:.2f}, "
          f"{in_range}/{len(rows)} within 0.5-2x (target: all)")
    print(f"silences over 4 s where the prompt has none: {long_sil}/{len(rows)} (target 0)")
    print(f"decoding errors: {errors} (target 0)")
    print(f"keys struck again within 30 ms: {100 * restruck:.2f} % of continuation notes (no target)")
    print(f"continuations meeting all of these at once (in-key >= 85 %, density 0.5-2x, no long silence, "
          f"no decoding error): {all_met}/{len(rows)}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(dict(summary=summary, rows=rows, args=vars(a)), fh, indent=1)


if __name__ == "__main__":
    main()
