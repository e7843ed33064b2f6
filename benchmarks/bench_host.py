"""Eager host time per call of gdn::fused_post_conv_prep at L = 1, in one
process: with fresh outputs, into given outputs (the .out variant, and the
wrapper's out=), and the floor, an op with the .out schema that does nothing
(benchmarks/empty_op.cpp, registered through the stable ABI as gdn_ext's ops
are, built here by torch's cpp_extension). Five torch.empty calls of the
outputs' sizes show what fresh outputs cost in allocation alone.

Serving engines run GDN prefill eagerly and reuse buffers: this is the cost
per layer and call that no kernel speed hides.

    python benchmarks/bench_host.py [--json host.json] [--shape 16,32,128,128]
"""
import argparse
import json
import os
import sys

import torch

import gdn_ext

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_post_conv import make_inputs, time_host  # noqa: E402


def load_empty_op():
    from torch.utils.cpp_extension import load

    load(name="gdn_bench_empty_op", is_python_module=False, verbose=False,
         sources=[os.path.join(os.path.dirname(os.path.abspath(__file__)), "empty_op.cpp")],
         extra_cflags=["-O2", "-DTORCH_TARGET_VERSION=0x020a000000000000"])
    return torch.ops.gdn_bench.empty_post_conv_prep_out.default


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="write the numbers here")
    p.add_argument("--shape", default="16,32,128,128", help="H,HV,K,V")
    p.add_argument("--calls", type=int, default=20000)
    args = p.parse_args()
    H, HV, K, V = map(int, args.shape.split(","))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else None
    inputs = make_inputs(1, H, HV, K, V, torch.bfloat16, device)
    op = torch.ops.gdn.fused_post_conv_prep
    outs = op.default(*inputs, H, K, V)
    named = dict(zip(("q", "k", "v", "g", "beta"), outs))
    shapes = [(t.shape, t.dtype) for t in outs]

    cases = {
        "op, fresh outputs": lambda *a: op.default(*a),
        "op.out": lambda *a: op.out(*a, **named),
        "wrapper, fresh outputs": lambda *a: gdn_ext.fused_post_conv_prep(*a),
        "wrapper, out=": lambda *a: gdn_ext.fused_post_conv_prep(*a, out=outs),
        "5x torch.empty (outputs' sizes)": lambda *a: [torch.empty(s, dtype=d, device=device)
                                                       for s, d in shapes],
    }
    try:
        empty = load_empty_op()
        cases["empty op, .out schema (floor)"] = lambda *a: empty(*a, **named)
    except Exception as exc:  # noqa: BLE001 - no compiler: the table without its floor
        print(f"# empty op unavailable: {type(exc).__name__}: {str(exc)[:200]}")
    device_name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"# {device_name} | torch {torch.__version__} | gdn_ext from "
          f"{os.path.dirname(gdn_ext.__file__)} | L = 1, (H, HV, K, V) = {(H, HV, K, V)}, bf16")
    # Two rounds, interleaved: the machine's state drifts between cases.
    rounds = [{name: time_host(fn, inputs, H, K, V, calls=args.calls, sync=sync)
               for name, fn in cases.items()} for _ in range(2)]
    host = {name: min(r[name] for r in rounds) for name in cases}
    floor = host.get("empty op, .out schema (floor)")
    print(f"{'case':34} {'us/call':>8}" + (f" {'over floor':>11}" if floor else ""))
    for name, us in host.items():
        print(f"{name:34} {us:8.2f}" + (f" {us - floor:11.2f}" if floor else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name, "torch": torch.__version__,
                       "shape": [H, HV, K, V], "host_us": host, "rounds": rounds}, f, indent=1)


if __name__ == "__main__":
    main()
