"""Timing of op 2 (causal_conv1d_post_conv_prep) on the GPU: prefill of 1
and 8 sequences and decode steps, at the serving shapes, against

  * the unfused chain as transformers runs it: PyTorch's channel-first
    conv1d + SiLU, then op 1 (gdn_ext's CUDA kernel) on the conv output
    (prefill); the cache-line update in PyTorch (cat, roll, weighted sum,
    SiLU), then op 1 (decode);
  * a copy of the same bytes: x read once, q/k/v written once, a/b read and
    g/beta written, and the touched cache lines read and written once (the
    fastest of copy_ and several Triton copy kernels,
    bench_post_conv.gpu_same_bytes_copies, in one buffer of that size).

Device time per call from CUDA-graph replays over enough input sets to
exceed L2 (bench_post_conv.time_cuda_graph), median of the replays; each
cell is the best of --rounds such medians.

    python benchmarks/bench_conv_prep.py --json out.json --plot out.png
"""
import argparse
import datetime
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_post_conv import L2_BYTES, gpu_same_bytes_copies, time_cuda_graph  # noqa: E402

SHAPES = [(16, 32, 128, 128), (16, 48, 128, 128), (16, 64, 128, 128), (8, 24, 128, 128),
          (4, 12, 128, 128), (2, 6, 128, 128)]
PREFILL = [(T, S) for T in (512, 2048, 8192, 32768) for S in (1, 8)]
DECODE = [1, 8, 32, 128, 512]
W = 4
COPY = "copy, same bytes"


def case_inputs(H, HV, K, V, T, S, decode, dtype, gen):
    """One input set: S sequences of T // S tokens (decode: T sequences of
    one token continuing from their cache lines)."""
    D = 2 * H * K + HV * V
    B = T if decode else S
    lengths = [1] * T if decode else [T // S] * S
    starts = torch.tensor([0] + lengths, dtype=torch.int64).cumsum(0).to(torch.int32)
    dev = "cuda"
    x = torch.randn(T, D, device=dev, dtype=dtype, generator=gen)
    weight = torch.randn(D, W, device=dev, dtype=dtype, generator=gen) * 0.5
    bias = torch.randn(D, device=dev, dtype=dtype, generator=gen) * 0.1
    states = torch.randn(B + 7, D, W - 1, device=dev, dtype=dtype, generator=gen)
    lines = torch.randperm(B + 7, device=dev, generator=gen)[:B].to(torch.int32)
    initial = torch.full((B,), decode, device=dev, dtype=torch.bool)
    a = torch.randn(T, HV, device=dev, dtype=dtype, generator=gen)
    b = torch.randn(T, HV, device=dev, dtype=dtype, generator=gen)
    A_log = torch.rand(HV, device=dev, generator=gen) * 2
    dt_bias = torch.randn(HV, device=dev, generator=gen)
    return (x, weight, bias, states, starts.to(dev), lines, initial, a, b, A_log, dt_bias)


def same_bytes(H, HV, K, V, T, B, dtype, decode):
    e = torch.tensor([], dtype=dtype).element_size()
    D = 2 * H * K + HV * V
    lines = B * D * (W - 1) * e * (2 if decode else 1)  # prefill without a prior: written only
    return 2 * T * D * e + T * HV * (2 * e + 8) + lines


def implementations(H, K, V, decode):
    from gdn_ext import _library

    def op2(*args):
        return torch.ops.gdn.causal_conv1d_post_conv_prep(*args, H, K, V)

    def op2_triton(*args):
        return _library.causal_conv1d_post_conv_prep_triton(*args, H, K, V)

    def unfused(x, weight, bias, states, starts, lines, initial, a, b, A_log, dt_bias):
        if decode:  # transformers' torch_causal_conv1d_update, then op 1
            window = torch.cat([states[lines.long()], x[:, :, None]], dim=-1)
            states[lines.long()] = window[:, :, 1:]
            y = F.silu((window * weight[None]).sum(-1) + bias)
            return torch.ops.gdn.fused_post_conv_prep(y, a, b, A_log, dt_bias, H, K, V)
        S = starts.numel() - 1
        T, D = x.shape
        xs = x.view(S, T // S, D).transpose(1, 2)  # channel-first, as transformers runs it
        y = F.silu(F.conv1d(xs, weight[:, None], bias, padding=W - 1, groups=D)[..., :T // S])
        states[lines.long()] = xs[..., -(W - 1):]
        a, b = a.view(S, T // S, -1), b.view(S, T // S, -1)
        outs = [torch.ops.gdn.fused_post_conv_prep(y[i].T, a[i], b[i], A_log, dt_bias, H, K, V)
                for i in range(S)]
        return outs

    impls = {"gdn_ext op 2 (cuda)": op2}
    if _library.causal_conv1d_post_conv_prep_triton is not None:
        impls["gdn_ext op 2 (triton)"] = op2_triton
    impls["unfused: conv, then op 1"] = unfused
    return impls


def measure(fn, sets, rounds):
    return min(time_cuda_graph(lambda *a: fn(*a[:-3]), sets, 0, 0, 0) for _ in range(rounds))


def run(args):
    import gdn_ext  # noqa: F401 - registers the ops

    dtype = torch.bfloat16
    shapes = [tuple(map(int, s.split(","))) for s in args.shapes] if args.shapes else SHAPES
    cases = [("prefill", T, S) for T, S in PREFILL] + [("decode", B, B) for B in DECODE]
    if args.cases:
        cases = [c for c in cases if f"{c[0]}:{c[1]}" in args.cases or c[0] in args.cases]
    try:
        copy_fns = gpu_same_bytes_copies()
    except Exception as exc:  # noqa: BLE001
        print(f"# triton copies unavailable: {type(exc).__name__}: {exc}")
        copy_fns = {"copy_": lambda s, d, *_: d.copy_(s)}
    info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "date": datetime.date.today().isoformat(), "dtype": "bf16", "W": W,
            "command": " ".join(sys.argv)}
    print(f"# {info['device']}, torch {info['torch']}, {info['date']}; bf16, W = {W}")
    rows = []
    gen = torch.Generator(device="cuda").manual_seed(0)
    for H, HV, K, V in shapes:
        print(f"\n## ({H},{HV},{K},{V}): us per call | TB/s of the same bytes | % of the "
              f"same-bytes copy")
        for kind, T, S in cases:
            decode = kind == "decode"
            B = T if decode else S
            nbytes = same_bytes(H, HV, K, V, T, B, dtype, decode)
            n_sets = max(1, min(32, math.ceil(3 * L2_BYTES / nbytes)))
            sets = [case_inputs(H, HV, K, V, T, S, decode, dtype, gen) for _ in range(n_sets)]
            words = max(1, nbytes // 8)  # half the bytes read, half written
            copies = [(torch.empty(words, dtype=torch.int32, device="cuda"),
                       torch.empty(words, dtype=torch.int32, device="cuda")) for _ in range(n_sets)]
            copy_us = min(min(time_cuda_graph(fn, copies, 0, 0, 0) for _ in range(args.rounds))
                          for fn in copy_fns.values())
            line = f"{kind:>7} T={T:<6} B={B:<4} copy {copy_us:8.2f}"
            cell = {"H": H, "HV": HV, "K": K, "V": V, "kind": kind, "T": T, "B": B,
                    "bytes": nbytes, "copy_us": copy_us, "impls": {}}
            for name, fn in implementations(H, K, V, decode).items():
                if args.impls and not any(s in name for s in args.impls):
                    continue
                us = measure(fn, sets, args.rounds)
                cell["impls"][name] = {"us": us, "TBps": nbytes / us / 1e6,
                                       "pct_copy": 100 * copy_us / us}
                line += f" | {name} {us:8.2f} {nbytes / us / 1e6:5.2f} {100 * copy_us / us:5.1f}%"
            base = cell["impls"].get("gdn_ext op 2 (cuda)")
            if base:
                line += " | " + ", ".join(f"{n.split(':')[0].split(' (')[-1].rstrip(')')} "
                                          f"{r['us'] / base['us']:.2f}x"
                                          for n, r in cell["impls"].items() if r is not base)
            print(line, flush=True)
            rows.append(cell)
            if args.json:  # after every cell: a run cut short keeps what it measured
                with open(args.json, "w") as f:
                    json.dump({"info": info, "rows": rows}, f, indent=1)
            del sets, copies
            torch.cuda.empty_cache()
    result = {"info": info, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        plot(result, args.plot)
    return result


def plot(result, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # noqa: BLE001
        print(f"# plot skipped: matplotlib unavailable ({type(exc).__name__})")
        return
    rows = result["rows"]
    shapes = list(dict.fromkeys((r["H"], r["HV"], r["K"], r["V"]) for r in rows))
    fig, axes = plt.subplots(2, len(shapes), figsize=(3.6 * len(shapes), 6.4), squeeze=False)
    for col, shape in enumerate(shapes):
        for row, kind in enumerate(("prefill", "decode")):
            ax = axes[row][col]
            cells = [r for r in rows if (r["H"], r["HV"], r["K"], r["V"]) == shape
                     and r["kind"] == kind]
            labels = [f"{r['T']}/{r['B']}" if kind == "prefill" else str(r["B"]) for r in cells]
            for name in dict.fromkeys(n for r in cells for n in r["impls"]):
                ax.plot(range(len(cells)), [r["impls"].get(name, {}).get("us", float("nan"))
                                            for r in cells], marker="o", label=name)
            ax.plot(range(len(cells)), [r["copy_us"] for r in cells], "k--", label=COPY)
            ax.set_yscale("log")
            ax.set_xticks(range(len(cells)), labels, rotation=60, fontsize=7)
            ax.set_title(f"{kind} {shape[:2]}", fontsize=9)
            ax.set_ylabel("us per call")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"op 2: causal conv + post-conv prep, {result['info']['device']}, bf16, "
                 f"W = {W} (prefill: tokens/sequences; decode: batch)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"# wrote {path}")


def markdown(result):
    """RESULTS.md's tables of a run: per shape, µs per call and % of the
    same-bytes copy of each implementation, and op 2's speed-up over the
    unfused chain."""
    names = list(dict.fromkeys(n for r in result["rows"] for n in r["impls"]))
    short = {n: n.replace("gdn_ext ", "").replace("unfused: ", "") for n in names}
    out = []
    for shape in dict.fromkeys((r["H"], r["HV"], r["K"], r["V"]) for r in result["rows"]):
        out += [f"### ({','.join(map(str, shape))}): µs per call (% of the same-bytes copy)", "",
                "| case | same-bytes copy | " + " | ".join(short[n] for n in names)
                + " | CUDA vs conv, then op 1 |",
                "|---|---|" + "---|" * len(names) + "---|"]
        for r in result["rows"]:
            if (r["H"], r["HV"], r["K"], r["V"]) != shape:
                continue
            case = (f"prefill T={r['T']}, {r['B']} seq" if r["kind"] == "prefill"
                    else f"decode B={r['B']}")
            cells = [f"{r['impls'][n]['us']:.2f} ({r['impls'][n]['pct_copy']:.0f}%)"
                     if n in r["impls"] else "-" for n in names]
            cuda, unfused = (r["impls"].get(n, {}).get("us") for n in
                             ("gdn_ext op 2 (cuda)", "unfused: conv, then op 1"))
            ratio = f"{unfused / cuda:.1f}x" if cuda and unfused else "-"
            out.append(f"| {case} | {r['copy_us']:.2f} | " + " | ".join(cells) + f" | {ratio} |")
        out.append("")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables-from", metavar="JSON",
                   help="print RESULTS.md's tables of an earlier run's JSON and exit (no GPU)")
    p.add_argument("--json")
    p.add_argument("--plot")
    p.add_argument("--shapes", nargs="*", help="H,HV,K,V ...")
    p.add_argument("--cases", nargs="*", help="prefill, decode, or kind:T (prefill:2048, decode:512)")
    p.add_argument("--impls", nargs="*", help="only implementations whose name contains one of these")
    p.add_argument("--rounds", type=int, default=3, help="best of this many medians per cell")
    args = p.parse_args()
    if args.tables_from:
        with open(args.tables_from) as f:
            print(markdown(json.load(f)))
        return
    if not torch.cuda.is_available():
        sys.exit("bench_conv_prep.py times the GPU; no CUDA device is visible")
    run(args)


if __name__ == "__main__":
    main()
