#!/usr/bin/python3
"""bench_train.py - the PyTorch peer of bench_train.c: full training steps
of the same shapes, timed the same way, with Debian's python3-torch.

    /usr/bin/python3 bench/bench_train.py [--shape tiny|small|medium]
        [--config FILE] [--batch B] [--seq T] [--reps N] [--threads N]
        [--precision f32|bf16] [--peak-gflops G] [--pad-id ID]

Model: AriaLM from bench/bench_model.py (our PyTorch decoder written from
spec/aria.md 2.2, imported, not copied), float32 parameters, random init
normal std 0.02 on every matrix (LayerNorm weight 1, bias 0), as
aria_model_new_random. Its forward writes k and v into a KV cache; here
every layer gets its own [B, H, T, hd] cache tensor (bfloat16 under
autocast, as k and v come out), fresh each step, so autograd sees one
write per tensor (one extra copy of k and v per layer, small beside the
products). Attention is bench_model.py's: explicit scores, mask, float32
softmax (torch 1.13 has no fused attention on the CPU).

A step, timed as a whole and by phase, as in bench_train.c:
    opt.zero_grad(set_to_none=False)           (zero_grad_s)
    logits = model(ids); loss = CE(logits, next ids, <P> ignored);
    loss.backward()                            (fwdbwd_s)
    clip_grad_norm_(params, 1.0)               (clip_s)
    opt.step()  AdamW lr 3e-4, betas (0.9, 0.95), eps 1e-5, wd 0.1
                                               (adamw_s)
The targets are ids[t+1], the last one <P> and ignored, as the C trainer
computes its loss; ids are uniform over [0, vocab) except <P>, fresh each
step. One warm-up step, then --reps timed steps; medians, min and max.

--precision f32: everything float32 (matmuls through the BLAS torch loads:
bench/run_train.sh puts OpenBLAS on LD_LIBRARY_PATH, as run_model.sh does).
--precision bf16: forward under torch.cpu.amp.autocast(dtype=bfloat16)
(products in bfloat16 through torch's oneDNN, float32 master weights,
gradients and AdamW state), backward outside it, as the PyTorch
documentation prescribes.

FLOPs per token, as bench_train.c and src/tasks/trainloop.c (the mfu of the C
trainer's log.jsonl) count them: 6 (L (4 d^2 + 3 d ff) + V d) + 6 L d (T + 1),
6 per matrix weight of the layers and the lm_head (the embedding is a
lookup, not counted) plus causal attention (train_gflops, train_mfu).

Output: lines "RESULT <metric> <median> <unit> min= max= n=" with the
metric names of bench_train.c.
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_model import AriaLM, results  # noqa: E402

SHAPES = {
    "tiny": dict(d_model=64, n_heads=4, n_layers=2, ff_mult=4, vocab_size=17727, max_seq_len=512),
    "small": dict(d_model=512, n_heads=8, n_layers=8, ff_mult=4, vocab_size=17727, max_seq_len=8192),
    "medium": dict(d_model=1536, n_heads=24, n_layers=16, ff_mult=4, vocab_size=17727, max_seq_len=8192),
}
KEYS = ("d_model", "n_heads", "n_layers", "ff_mult", "vocab_size", "max_seq_len")


def flops_per_token(c, T):
    """bench_train.c's and src/tasks/trainloop.c's count: the layers' and the
    lm_head's matrix weights, 6 flops each, plus causal attention"""
    d, L, V = c["d_model"], c["n_layers"], c["vocab_size"]
    ff = c["ff_mult"] * d
    return 6 * (L * (4 * d * d + 3 * d * ff) + V * d) + 6.0 * L * d * (T + 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="small", choices=sorted(SHAPES))
    ap.add_argument("--config", help="a JSON config (configs/tiny.json ...), overrides --shape")
    ap.add_argument("--batch", type=int, default=0, help="default: 1 for medium, else 8")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--precision", default="bf16", choices=["f32", "bf16"])
    ap.add_argument("--peak-gflops", type=float, default=0.0)
    ap.add_argument("--pad-id", type=int, default=2, help="id of <P> (2 in the released vocabulary)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    c = dict(SHAPES[a.shape])
    if a.config:
        j = json.load(open(a.config))
        c = {k: j[k] for k in KEYS}
    c["max_seq_len"] = max(c["max_seq_len"], a.seq)
    B = a.batch if a.batch > 0 else (1 if a.shape == "medium" and not a.config else 8)
    T, V = a.seq, c["vocab_size"]
    print("bench_train.py: torch %s, shape %s (d %d, %d heads, %d layers, ff_mult %d, vocab %d), batch %d, seq %d, "
          "precision %s, threads %d, reps %d"
          % (torch.__version__, a.config or a.shape, c["d_model"], c["n_heads"], c["n_layers"], c["ff_mult"], V, B, T,
             a.precision, torch.get_num_threads(), a.reps), flush=True)
    show = torch.__config__.show()
    info = [k for k in ("BLAS_INFO", "LAPACK_INFO", "USE_MKLDNN", "USE_OPENMP") if k + "=" in show]
    print("torch build: %s; oneDNN (mkldnn) usable: %s"
          % (", ".join(show.split(k + "=")[1].split(",")[0].join((k + "=", "")) for k in info),
             torch.backends.mkldnn.is_available()))
    libs = sorted({l.split()[-1] for l in open("/proc/self/maps") if "blas" in l.lower() and l.split()[-1].startswith("/")})
    print("BLAS libraries mapped: %s" % (", ".join(libs) or "none yet"), flush=True)

    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    m = AriaLM(**c)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.02)
    m.train()
    params = list(m.parameters())
    n_params = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=3e-4, betas=(0.9, 0.95), eps=1e-5, weight_decay=0.1)
    setup = time.perf_counter() - t0
    H, hd, L = c["n_heads"], c["d_model"] // c["n_heads"], c["n_layers"]
    g = torch.Generator().manual_seed(a.seed + 1)
    cdt = torch.bfloat16 if a.precision == "bf16" else torch.float32  # k, v as autocast makes them
    pad_t = torch.full((B, 1), a.pad_id, dtype=torch.long)

    def batch():
        ids = torch.randint(0, V - 1, (B, T), generator=g)
        return ids + (ids >= a.pad_id).long()  # uniform over [0, V) \ {pad}

    def step(ids):
        t_a = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        t_b = time.perf_counter()
        cache = ([torch.empty(B, H, T, hd, dtype=cdt) for _ in range(L)],
                 [torch.empty(B, H, T, hd, dtype=cdt) for _ in range(L)])
        targets = torch.cat([ids[:, 1:], pad_t], dim=1)
        if a.precision == "bf16":
            with torch.cpu.amp.autocast(dtype=torch.bfloat16):
                logits = m(ids, cache, 0, last_only=False)
        else:
            logits = m(ids, cache, 0, last_only=False)
        loss = F.cross_entropy(logits.float().reshape(-1, V), targets.reshape(-1), ignore_index=a.pad_id)
        loss.backward()
        t_c = time.perf_counter()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        t_d = time.perf_counter()
        opt.step()
        t_e = time.perf_counter()
        return loss.item(), norm.item(), (t_e - t_a, t_b - t_a, t_c - t_b, t_d - t_c, t_e - t_d)

    st, zs, fb, cl, ad, cpu = [], [], [], [], [], []
    loss_first = loss_last = float("nan")
    first = 0.0
    for r in range(-1, a.reps):
        ids = batch()
        c0 = time.process_time()
        loss, norm, (s, z, f, k, o) = step(ids)
        c1 = time.process_time()
        if not (loss == loss and norm == norm):
            raise SystemExit("bench_train.py: step %d: loss %g, grad norm %g" % (r + 1, loss, norm))
        if r < 0:
            first, loss_first = s, loss
            print("warm-up step: %.3f s, loss %.4f, grad norm %.4f" % (s, loss, norm), flush=True)
            continue
        loss_last = loss
        st.append(s), zs.append(z), fb.append(f), cl.append(k), ad.append(o)
        cpu.append(100.0 * (c1 - c0) / (s * a.threads))
        print("step %d: %.3f s (zero %.3f, fwd+bwd %.3f, clip %.3f, adamw %.3f), loss %.4f, grad norm %.4f"
              % (r + 1, s, z, f, k, o, loss, norm), flush=True)

    fl = flops_per_token(c, T)
    tps = [B * T / s for s in st]
    mfu = [100.0 * x * fl / 1e9 / a.peak_gflops for x in tps] if a.peak_gflops > 0 else None
    results([("threads", torch.get_num_threads(), "threads"), ("batch", B, "seqs"), ("seq", T, "tokens"),
             ("params", n_params, "floats"), ("setup_s", setup, "s"), ("first_step_s", first, "s"),
             ("train_step_s", st, "s"), ("train_tok_s", tps, "tok/s"), ("flops_per_token", fl, "FLOP"),
             ("train_gflops", [x * fl / 1e9 for x in tps], "GFLOP/s")]
            + ([("peak_gflops", a.peak_gflops, "GFLOP/s"), ("train_mfu", mfu, "%")] if mfu is not None else [])
            + [("zero_grad_s", zs, "s"), ("fwdbwd_s", fb, "s"), ("clip_s", cl, "s"), ("adamw_s", ad, "s"),
               ("cpu_pct", cpu, "%"), ("loss_first", loss_first, "nats"), ("loss_last", loss_last, "nats"),
               ("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "MB")])


if __name__ == "__main__":
    main()
