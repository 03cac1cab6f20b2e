#!/usr/bin/env python3
"""Can the stream search (Note [stream search]) read fewer bytes per candidate? A CPU model.

At 1M and one query head per KV head, the stream kernel is bound by L2 (Nsight Compute on an
H200: L2 83% busy, 169 ms; results/2026-11-29-h200-forward-stages.md, session 18): each (query,
candidate) moves one 144-byte record (D = 128 int8 values and 16 bytes of per-row meta: scale
s_u, residual norm r_u, |s_u k8| = n_u), shared by about 1.15 queries. Fewer bytes per
candidate is the only lever, and each way of getting them loosens the bound that decides which
candidates survive to the exact rescoring. This models, on Gaussian Qs and K (trained weights
need not resemble them, so it estimates), the candidates of one query in stream order (nearest
stripe first), the running k-th lower bound as the threshold, and counts:
- survivors: candidates whose upper bound reaches the final threshold (the rescoring's work);
- overflow: queries with more survivors than the list's 12 slots (then settled by the bf16
  scores, or sent back to the exact search);
- for a first int4 pass, the share of candidates whose int4 upper bound reaches the running
  threshold and so need their int8 record as well.

Bounds, per candidate: |<q, k> - s~| <= |q| r + e_q n (Note [int8 search]); the schemes:
- row:   per-row scale and per-row r_u, n_u (the kernel's: 144 bytes);
- ratio: per-row scale, r_u and n_u bounded by s_u times the head's largest r_u / s_u and
         n_u / s_u (132 bytes: the int8 row and its scale);
- head:  one scale per head, r and n the head's largest (128 bytes);
- int4:  a first pass over int4 rows (64 + 16 bytes) whose survivors are scored again from the
         int8 record (144 more bytes each).

Measured with the defaults (2026-11-29, seed 1, 300 queries), 256 / 1024 candidates (64K / 1M):
  row    survivors 6.5 / 6.8   overflow 3% / 4%                     144 B
  ratio  survivors 7.5 / 9.2   overflow 9% / 17%                    132 B
  head   survivors 10.8 / 13.7 overflow 32% / 52%                   128 B
  int4   share needing the int8 record 38% / 20%                 80 + 144 x that
The kernel itself (H200, 1M GQA 1) reports 6.64 survivors and 3.4% overflowing rows, which the
row scheme matches. So ratio saves 8% of the bytes for a third more rescoring and four times
the overflows; head saves 11% and overflows half the rows; int4 reads 80 + 0.2 x 144 = 109
bytes at 1M (-24%), but a fifth of the candidates then need a gather of their own record inside
the stripe loop, which one barrier per stripe cannot hide.

    python3 experiments/stream_bounds_model.py --queries 300
"""
import argparse

import numpy as np


def quantise(x, levels, scale=None):
    if scale is None:
        scale = np.abs(x).max(axis=-1, keepdims=True) / levels
    return np.clip(np.rint(x / scale), -levels, levels), scale


def head_ratios(rng, D, rows=100000):
    """The head's largest r_u / s_u and n_u / s_u, and its largest |k| (per-head scale)."""
    K = rng.standard_normal((rows, D))
    k8, s = quantise(K, 127)
    r = np.linalg.norm(K - s * k8, axis=1) / s[:, 0]
    n = np.linalg.norm(k8, axis=1)
    return r.max(), n.max(), np.abs(K).max()


def one_query(rng, n, D, k, scheme, ratios):
    q = rng.standard_normal(D)
    K = rng.standard_normal((n, D))
    q8, sq = quantise(q, 127)
    eq = np.linalg.norm(q - sq * q8)
    nq = np.linalg.norm(q) * (1 + 1e-5)
    R, N, kmax = ratios
    if scheme == "head":
        # One scale for the head (its largest |k| over many more rows than n), r and n the
        # head's largest: approximated by this sample's largest, raised by the margin that a
        # head of ~1M rows adds (about 1.2x, from head_ratios over 100K rows).
        k8, s = quantise(K, 127, np.full((n, 1), kmax * 1.05 / 127))
        r = np.full(n, np.linalg.norm(K - s * k8, axis=1).max() * 1.1)
        nu = np.full(n, np.linalg.norm(s * k8, axis=1).max() * 1.15)
    else:
        k8, s = quantise(K, 127)
        r = np.linalg.norm(K - s * k8, axis=1)
        nu = np.linalg.norm(s * k8, axis=1)
        if scheme == "ratio":
            r, nu = s[:, 0] * R, s[:, 0] * N
    sc = (k8 @ q8) * sq * s[:, 0]
    e = nq * r + eq * nu
    if scheme == "int4":
        k4, s4 = quantise(K, 7)
        sc4 = (k4 @ q8) * sq * s4[:, 0]
        e4 = nq * np.linalg.norm(K - s4 * k4, axis=1) + eq * np.linalg.norm(s4 * k4, axis=1)
    low = [-np.inf] * k
    ups = []
    refined = 0
    for j in range(n):
        thr = low[-1]
        if scheme == "int4":
            if sc4[j] + e4[j] < thr:
                continue
            refined += 1
        lo, hi = sc[j] - e[j], sc[j] + e[j]
        if hi >= thr:
            if lo > low[-1]:
                low = sorted(low + [lo], reverse=True)[:k]
            ups.append(hi)
    thr = low[-1]
    return sum(h >= thr for h in ups), refined / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--keep", type=int, default=12)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    ratios = head_ratios(rng, a.D)
    for scheme in ("row", "ratio", "head", "int4"):
        for n in (256, 1024):
            res = [one_query(rng, n, a.D, a.k, scheme, ratios) for _ in range(a.queries)]
            surv = np.array([x[0] for x in res])
            line = f"{scheme:6s} candidates {n:5d}  survivors {surv.mean():5.2f}  " \
                   f"overflow {np.mean(surv > a.keep):5.3f}"
            if scheme == "int4":
                line += f"  int4 survivors {np.mean([x[1] for x in res]):5.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
