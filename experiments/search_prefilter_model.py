#!/usr/bin/env python3
"""Would an 8-bit first pass make the search cheaper? A CPU model of an exact prefilter.

The search (Note [search bytes]) is bound by moving one 256-byte K row per candidate. A first
pass over an int8 copy of K (and of Qs), each row with its own scale, reads half the bytes; its
scores are off by at most eps = (sq sk / 2) (|q8|_1 + |k8|_1 + D / 2) (the rounding of both
operands; the f32 accumulation of the exact pass adds far less). Every candidate whose upper
bound reaches the k-th largest lower bound survives and is scored again exactly from the bf16
row; no other can be in the top-k, so the anchors stay exact. This counts the survivors per
(query, head) on Gaussian Qs and K, which trained weights need not resemble, so it estimates.

    python3 experiments/search_prefilter_model.py --L 65536 --queries 300
"""
import argparse

import numpy as np


def quantise(x):
    scale = np.abs(x).max(axis=-1, keepdims=True) / 127.0
    return np.clip(np.rint(x / scale), -127, 127), scale


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--L", type=int, default=65536)
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    K = rng.standard_normal((a.L, a.D)).astype(np.float32)
    K8, sk = quantise(K)
    k1 = np.abs(K8).sum(-1)
    survivors, candidates = [], []
    for t in rng.integers(a.L // 16, a.L, size=a.queries):
        q = (rng.standard_normal(a.D) / np.sqrt(a.D)).astype(np.float32)
        q8, sq = quantise(q[None])
        q8, sq = q8[0], float(sq[0, 0])
        n = int(np.sqrt(t + 1))
        anchors = t + 1 - np.arange(1, n + 1) ** 2
        exact = K[anchors] @ q
        approx = (K8[anchors] @ q8) * sk[anchors, 0] * sq
        eps = sq * sk[anchors, 0] / 2 * (np.abs(q8).sum() + k1[anchors] + a.D / 2)
        lam = np.sort(approx - eps)[-a.k]
        keep = approx + eps >= lam
        assert keep[np.argsort(-exact)[: a.k]].all(), "the bound dropped a top-k anchor"
        survivors.append(int(keep.sum()))
        candidates.append(n)
    s = np.array(survivors)
    print(f"L={a.L} D={a.D} k={a.k}, {a.queries} queries with {np.mean(candidates):.0f} "
          f"candidates on average")
    print(f"survivors per (query, head): mean {s.mean():.1f}, median {np.median(s):.0f}, "
          f"p99 {np.percentile(s, 99):.0f}, max {s.max()}")
    c = np.mean(candidates)
    print(f"rows read against the bf16 search, GQA 1: {(128 + 8) / 256 + s.mean() / c:.0%} "
          f"(int8 rows with an 8-byte scale and norm, then the survivors)")
    print(f"GQA 8, if the 8 heads' survivors were distinct: "
          f"{(128 + 8) / 256 + min(1.0, 8 * s.mean() / c):.0%}")


if __name__ == "__main__":
    main()
