"""PyTorch SDPA with the cuDNN backend, the dense bar for `superlinear bench attention`.

Causal, bf16, B = 1, 16 query heads, D = 128, GQA 1 and 8 (enable_gqa), forward and backward,
for the same lengths as the superlinear benchmark while memory allows (an out-of-memory error
leaves the times empty and skips the longer lengths of that GQA ratio). Writes the CSV that
`superlinear bench attention --cudnn-csv FILE` reads: a '#' comment naming the card and versions,
then "L,gqa,fwd_ms,bwd_ms". Timing as in bench_attention_torch.py (CUDA events, median), with the
number of repetitions chosen from one timed run (~1.5 s worth, 1 to 10) so 1M stays affordable.
    python3 experiments/bench_attention_cudnn.py --out attention_cudnn.csv [--L 4K,16K,...]
"""
import argparse
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def parse_length(s):
    scale = {"k": 1 << 10, "m": 1 << 20}.get(s[-1:].lower(), 1)
    return int(s[:-1] if scale > 1 else s) * scale


def time_ms(fn, reps=0):
    def once():
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        return a.elapsed_time(b)

    fn()  # warm-up
    torch.cuda.synchronize()
    if reps <= 0:
        first = once()
        reps = max(1, min(10, int(1500.0 / max(first, 1e-3))))
        if reps == 1:
            return first
    times = sorted(once() for _ in range(reps))
    return times[len(times) // 2]


def measure(T, hkv, Hq, D, reps):
    q = torch.randn(1, Hq, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, hkv, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1, hkv, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    do = torch.randn(1, Hq, T, D, device="cuda", dtype=torch.bfloat16)
    gqa = hkv != Hq
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        # With grad enabled, as in training: the forward also saves the softmax statistics.
        fwd = time_ms(lambda: F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=gqa), reps)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        bwd = time_ms(lambda: torch.autograd.grad(out, (q, k, v), do, retain_graph=True), reps)
    return fwd, bwd


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--L", default="4K,16K,64K,128K,256K,1M")
    ap.add_argument("--gqa", default="1,8")
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--hd", type=int, default=128)
    ap.add_argument("--reps", type=int, default=0, help="0: ~1.5 s worth, 1 to 10")
    ap.add_argument("--out", default="attention_cudnn.csv")
    args = ap.parse_args()
    lengths = [parse_length(s) for s in args.L.split(",")]
    ratios = [int(g) for g in args.gqa.split(",")]
    Hq, D = args.heads, args.hd

    rows = []
    for g in ratios:
        oom = False
        for T in lengths:
            fwd = bwd = float("nan")
            if not oom:
                try:
                    fwd, bwd = measure(T, Hq // g, Hq, D, args.reps)
                except torch.cuda.OutOfMemoryError:
                    oom = True
                except RuntimeError as e:
                    print(f"L={T} gqa={g}: {(str(e).splitlines() or ['error'])[0][:120]}", file=sys.stderr)
                torch.cuda.empty_cache()
            flops = 4.0 * Hq * D * T * (T + 1) / 2
            note = "out of memory" if oom else ""
            print(f"L={T} gqa={g}: fwd {fwd:.3f} ms ({flops / fwd / 1e9:.0f} TFLOP/s), "
                  f"bwd {bwd:.3f} ms ({2.5 * flops / bwd / 1e9:.0f} TFLOP/s) {note}", flush=True)
            rows.append((T, g, fwd, bwd))

    def cell(x):
        return "" if x != x else f"{x:.6g}"

    with open(args.out, "w") as f:
        f.write(f"# card: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
                f"cuDNN {torch.backends.cudnn.version()}, SDPA cuDNN backend, causal, bf16, "
                f"B=1 Hq={Hq} D={D}\n")
        f.write("L,gqa,fwd_ms,bwd_ms\n")
        for T, g, fwd, bwd in rows:
            f.write(f"{T},{g},{cell(fwd)},{cell(bwd)}\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
