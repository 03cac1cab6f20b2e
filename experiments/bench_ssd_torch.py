"""transformers' PyTorch Mamba-2 SSD path, timed on the shapes of experiments/bench_ssd.cu.

What is timed: the chunked SSD scan of transformers' NemotronH Mamba-2 mixer, i.e. the pure-torch
`mamba2_chunk_scan` of `transformers.models.nemotron_h.modeling_nemotron_h` (its segment_sum /
pad_tensor_by_size / reshape_into_chunks scan), which the mixer runs when mamba_ssm and hub kernels
are absent. The function is imported from that module and unwrapped (inspect.unwrap) past its
kernel-dispatch decorator, so the torch code runs even where mamba_ssm is installed. It is called
exactly as NemotronHMamba2Mixer.forward calls it in its chunk form (raw dt plus the mixer's dt_bias,
dt_softplus=True, A = -exp(A_log) in f32, the mixer's D, chunk_size and dt_limit, no initial state),
with the mixer's own parameters; the mixer is built from a NemotronHConfig in code (nothing is
downloaded) and cast to bf16 as a bf16 model is. The in/out projections, conv1d and gated norm are
not timed. Inputs x [B, T, H, P], dt [B, T, H], B and C [B, T, G, N] are bf16, as the mixer's conv
split hands them over; the scan returns y in f32.

Passes: fwd = the scan with autograd recording (a training forward); bwd = torch.autograd.grad of
y (with an f32 dy) for x, dt, B, C, A_log, D and dt_bias over a retained graph; fwd+bwd = both, a
fresh graph per repetition. A length that does not fit in memory prints OOM.

Counting rules (Note [SSD counting rules] in bench_ssd.cu; keep the two equal). nc = ceil(T / Q):
  forward FLOPs:  nc * (G * 2 Q^2 N + H * (4 Q P N + 2 Q^2 P))
  backward FLOPs: nc * (G * 6 Q^2 N + H * (12 Q P N + 6 Q^2 P))
  forward bytes:  2 * (2 B T H P + B T H + 2 B T G N)   (x, dt, B, C read; y written; bf16)
  backward bytes: 2 * (3 B T H P + 2 B T H + 4 B T G N) (x, dt, B, C, dy read; dx, ddt, dB, dC)
  forward+backward: the sums.
These are the nominal work of the chunked algorithm (masked halves counted in full), not what this
torch code executes, so TFLOP/s and GB/s compare times on one scale with our kernels. Ceilings,
measured here: bf16 8192^3 torch.matmul (2 M N K FLOPs), 1 GiB device copy (read + write), and the
f32 FMA peak SMs x 128 x 2 x max SM clock.

Run on the GPU machine:  python3 experiments/bench_ssd_torch.py
CPU smoke test (small sizes, checks the scan against a sequential recurrence first):
                          python3 experiments/bench_ssd_torch.py --smoke
"""
import argparse
import inspect
import math
import subprocess
import time

import torch
import transformers
from transformers import NemotronHConfig
from transformers.models.nemotron_h import modeling_nemotron_h as nemotron_h


def ssd_flops(T, H, P, N, G, Q):
    nc = math.ceil(T / Q)
    fwd = nc * (G * 2 * Q * Q * N + H * (4 * Q * P * N + 2 * Q * Q * P))
    bwd = nc * (G * 6 * Q * Q * N + H * (12 * Q * P * N + 6 * Q * Q * P))
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}


def ssd_bytes(B, T, H, P, N, G, es=2):
    fwd = es * (2 * B * T * H * P + B * T * H + 2 * B * T * G * N)
    bwd = es * (3 * B * T * H * P + 2 * B * T * H + 4 * B * T * G * N)
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}


def time_ms(fn, device, warmup=1, reps=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
    times.sort()
    return times[len(times) // 2]


def torch_scan():
    scan = inspect.unwrap(nemotron_h.mamba2_chunk_scan)
    if scan.__module__ != nemotron_h.__name__:
        raise SystemExit(f"mamba2_chunk_scan unwraps to {scan.__module__}.{scan.__name__}, "
                         "not the torch path of modeling_nemotron_h")
    return scan


def make_mixer(H, P, N, G, Q, device):
    config = NemotronHConfig(hidden_size=256, vocab_size=256, hybrid_override_pattern="M",
                             mamba_num_heads=H, mamba_head_dim=P, ssm_state_size=N, n_groups=G,
                             chunk_size=Q)
    mixer = nemotron_h.NemotronHMamba2Mixer(config, layer_idx=0)
    return mixer.to(device=device, dtype=torch.bfloat16)


def make_inputs(mixer, B, T, H, P, N, G, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)

    def randn(*shape, std=1.0):
        return (std * torch.randn(*shape, generator=g)).to(device, torch.bfloat16).requires_grad_()

    # As in bench_ssd.cu: softplus(dt + dt_bias) in [0.01, 0.1], A in [-4, -1].
    target = 0.01 + 0.09 * torch.rand(B, T, H, generator=g)
    dt = (torch.log(torch.expm1(target)) - mixer.dt_bias.float().cpu()).to(device, torch.bfloat16)
    with torch.no_grad():
        mixer.A_log.copy_(torch.log(1 + 3 * torch.rand(H, generator=g)))
    return {"x": randn(B, T, H, P), "dt": dt.requires_grad_(), "B": randn(B, T, G, N, std=0.3),
            "C": randn(B, T, G, N, std=0.3)}


def run_scan(scan, mixer, inp):
    A = -torch.exp(mixer.A_log.float())
    return scan(inp["x"], inp["dt"], A, inp["B"], inp["C"], chunk_size=mixer.chunk_size, D=mixer.D,
                z=None, return_final_states=False, dt_bias=mixer.dt_bias, dt_softplus=True,
                initial_states=None, dt_limit=mixer.time_step_limit)


def grad_targets(mixer, inp):
    return [inp["x"], inp["dt"], inp["B"], inp["C"], mixer.A_log, mixer.D, mixer.dt_bias]


def sequential_reference(mixer, inp):
    """y_t = S_t C_t + D x_t with S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_t^T, in f64."""
    x, B, C = (inp[k].detach().double() for k in ("x", "B", "C"))
    dt = torch.nn.functional.softplus(inp["dt"].detach().double() + mixer.dt_bias.detach().double())
    dt = dt.clamp(min=mixer.time_step_limit[0], max=mixer.time_step_limit[1])
    A = -torch.exp(mixer.A_log.detach().double())
    D = mixer.D.detach().double()
    b, T, H, P = x.shape
    rep = H // B.shape[2]
    S = torch.zeros(b, H, P, B.shape[3], dtype=torch.float64)
    y = torch.empty(b, T, H, P, dtype=torch.float64)
    for t in range(T):
        Bt, Ct = B[:, t].repeat_interleave(rep, 1), C[:, t].repeat_interleave(rep, 1)
        a = torch.exp(dt[:, t] * A)
        S = a[..., None, None] * S + (dt[:, t, :, None] * x[:, t])[..., None] * Bt[:, :, None, :]
        y[:, t] = (S * Ct[:, :, None, :]).sum(-1) + D[:, None] * x[:, t]
    return y


def measure_ceilings(device):
    if device.type != "cuda":
        return {"gemm": float("nan"), "copy": float("nan"), "fp32": float("nan")}
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    gemm = 2.0 * n ** 3 / (time_ms(lambda: a @ b, device, 5, 20) * 1e-3) / 1e12
    src = torch.ones(1 << 30, device=device, dtype=torch.uint8)
    dst = torch.empty_like(src)
    copy = 2.0 * src.numel() / (time_ms(lambda: dst.copy_(src), device, 5, 20) * 1e-3) / 1e9
    del a, b, src, dst
    props = torch.cuda.get_device_properties(device)
    khz = getattr(props, "clock_rate", 0)
    if not khz:
        try:
            mhz = subprocess.run(["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits",
                                  f"--id={device.index or 0}"], capture_output=True, text=True,
                                 check=True).stdout.split()[0]
            khz = 1000 * float(mhz)
        except (OSError, subprocess.CalledProcessError, IndexError, ValueError):
            khz = float("nan")
    fp32 = props.multi_processor_count * 128 * 2 * khz * 1e3 / 1e12
    return {"gemm": gemm, "copy": copy, "fp32": fp32}


def print_row(p, T, ms, flops, nbytes, ceil):
    if ms is None:
        print(f"| {p} | {T} | OOM | | | | | |", flush=True)
        return
    tf = flops / (ms * 1e-3) / 1e12
    gb = nbytes / (ms * 1e-3) / 1e9
    print(f"| {p} | {T} | {ms:.3f} | {tf:.2f} | {100 * tf / ceil['gemm']:.1f}% | "
          f"{100 * tf / ceil['fp32']:.1f}% | {gb:.1f} | {100 * gb / ceil['copy']:.1f}% |", flush=True)


def bench_length(scan, mixer, shape, T, device, reps):
    """Milliseconds per pass; None for a pass that ran out of memory (and those after it)."""
    Bsz, H, P, N, G, Q = shape
    ms = {"fwd": None, "bwd": None, "fwd+bwd": None}
    try:
        inp = make_inputs(mixer, Bsz, T, H, P, N, G, device)
        dy = torch.randn(Bsz, T, H, P, device=device, dtype=torch.float32)
        targets = grad_targets(mixer, inp)
        ms["fwd"] = time_ms(lambda: run_scan(scan, mixer, inp), device, 1, reps)
        y = run_scan(scan, mixer, inp)
        ms["bwd"] = time_ms(lambda: torch.autograd.grad(y, targets, dy, retain_graph=True),
                            device, 1, reps)
        del y
        ms["fwd+bwd"] = time_ms(lambda: torch.autograd.grad(run_scan(scan, mixer, inp), targets, dy),
                                device, 1, reps)
    except torch.cuda.OutOfMemoryError:
        pass
    return ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, small sizes, T=256, with a check")
    ap.add_argument("--lengths", default="4096,8192,16384,32768,65536")
    args = ap.parse_args()
    scan = torch_scan()
    if args.smoke:
        device, shape, lengths, reps = torch.device("cpu"), (1, 4, 8, 16, 2, 32), [256], 2
    else:
        device, shape, lengths, reps = torch.device("cuda", 0), (1, 64, 64, 128, 8, 128), [
            int(t) for t in args.lengths.split(",")], 5
    Bsz, H, P, N, G, Q = shape
    mixer = make_mixer(H, P, N, G, Q, device)
    if args.smoke:
        inp = make_inputs(mixer, Bsz, 200, H, P, N, G, device, seed=1)
        y = run_scan(scan, mixer, inp).double()
        ref = sequential_reference(mixer, inp)
        err = ((y - ref).abs().max() / ref.abs().max()).item()
        print(f"smoke check: max |scan - sequential| / max |sequential| = {err:.2e} (T=200)")
        if not err < 2e-2:
            raise SystemExit("smoke check failed: the timed call does not compute the SSD recurrence")
    try:
        import mamba_ssm  # noqa: F401
        fast = "installed (not used here)"
    except ImportError:
        fast = "absent"
    ceil = measure_ceilings(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"mamba_ssm {fast}, TF32 matmul {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}")
    print(f"ceilings: bf16 GEMM 8192^3 (torch.matmul) {ceil['gemm']:.1f} TFLOP/s, f32 FMA peak "
          f"{ceil['fp32']:.1f} TFLOP/s, device copy {ceil['copy']:.0f} GB/s\n")
    print(f"SSD (transformers torch path, mamba2_chunk_scan): B={Bsz} H={H} P={P} N={N} G={G} Q={Q} "
          "bf16 inputs; FLOPs and bytes per Note [SSD counting rules]\n")
    print("| pass | T | ms | TFLOP/s | % of GEMM | % of f32 FMA | GB/s | % of copy |")
    print("|---|---|---|---|---|---|---|---|")
    for T in lengths:
        ms = bench_length(scan, mixer, shape, T, device, reps)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        flops, nbytes = ssd_flops(T, H, P, N, G, Q), ssd_bytes(Bsz, T, H, P, N, G)
        for p in ("fwd", "bwd", "fwd+bwd"):
            print_row(p, T, ms[p], flops[p], nbytes[p], ceil)


if __name__ == "__main__":
    main()
