"""PyTorch SDPA baselines for experiments/bench_attention.cu, same shapes and FLOP rule.

Causal, bf16, B = 1, 16 query heads, D = 128, T = 1K .. 32K; backends cuDNN and flash
(torch.nn.attention.sdpa_kernel). GQA 8 runs through enable_gqa=True. FLOPs: forward
4 * D * T (T + 1) / 2 per head, backward 2.5x. Prints a Markdown table; run on the GPU machine:
    python3 experiments/bench_attention_torch.py
"""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def time_ms(fn, warmup=2, reps=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    print(f"card: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"cuDNN {torch.backends.cudnn.version()}\n")
    print("| backend | case | T | fwd ms | fwd TFLOP/s | bwd ms | bwd TFLOP/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    B, Hq, D = 1, 16, 128
    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
        for hkv in (16, 2):
            for T in (1024, 2048, 4096, 8192, 16384, 32768):
                q = torch.randn(B, Hq, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                k = torch.randn(B, hkv, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                v = torch.randn(B, hkv, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                do = torch.randn(B, Hq, T, D, device="cuda", dtype=torch.bfloat16)
                gqa = hkv != Hq
                try:
                    with sdpa_kernel([backend]):
                        fwd = time_ms(lambda: F.scaled_dot_product_attention(
                            q, k, v, is_causal=True, enable_gqa=gqa))
                        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
                        bwd = time_ms(lambda: torch.autograd.grad(out, (q, k, v), do, retain_graph=True))
                except RuntimeError as e:
                    print(f"| {name} | causal GQA {Hq // hkv} | {T} | n/a ({str(e).splitlines()[0][:60]}) | | | |")
                    continue
                flops = 4.0 * B * Hq * D * T * (T + 1) / 2
                print(f"| {name} | causal GQA {Hq // hkv} | {T} | {fwd:.3f} | {flops / fwd / 1e9:.1f} | "
                      f"{bwd:.3f} | {2.5 * flops / bwd / 1e9:.1f} |", flush=True)


if __name__ == "__main__":
    main()
