"""Times the op of two or more compiled gdn_ext libraries side by side: the
CPU op's time per call, or (--host) the eager host time per call at L = 1 on
the GPU where one is visible. The libraries register the same op, so each
runs in a process of its own; the processes alternate for several rounds, so
that the machine's drift hits every library alike. For a change: build the
old library (from a worktree of the previous commit, say) and compare it with
the new one, on one machine in one run.

    python benchmarks/compare_libraries.py before=/tmp/old/_C.abi3.so after=gdn_ext/_C.abi3.so
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [((16, 32, 128, 128), L, dtype, layout)
         for L in (128, 2048, 8192)
         for dtype in ("bfloat16", "float16", "float32")
         for layout in ("row_major", "channel_first")]


def child(path, host, only):
    """Loads the library alone (not the gdn_ext package) and times every case."""
    import torch

    sys.path.insert(0, HERE)
    from bench_post_conv import keep_freed_memory, make_inputs, n_input_sets, time_cpu, time_host

    torch.ops.load_library(path)
    op = torch.ops.gdn.fused_post_conv_prep.default
    if host:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        sync = torch.cuda.synchronize if device == "cuda" else None
        H, HV, K, V = CASES[0][0]
        inputs = make_inputs(1, H, HV, K, V, torch.bfloat16, device)
        us = min(time_host(op, inputs, H, K, V, calls=20000, sync=sync) for _ in range(2))
        print(json.dumps({f"host, {device}, {(H, HV, K, V)} L=1 bfloat16": us}))
        return
    keep_freed_memory()
    times = {}
    for shape, L, dtype, layout in CASES:
        if only and only not in f"{shape} L={L} {dtype} {layout}":
            continue
        H, HV, K, V = shape
        sets = [make_inputs(L, H, HV, K, V, getattr(torch, dtype), "cpu", layout)
                for _ in range(min(4, n_input_sets(L * (2 * H * K + HV * V) * 4)))]
        times[f"{shape} L={L} {dtype} {layout}"] = time_cpu(op, sets, H, K, V, min_time=0.3)
    print(json.dumps(times))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("libraries", nargs="*", help="name=path of a compiled gdn_ext library")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", help="write every round's numbers here")
    p.add_argument("--cases", help="only the CPU cases whose name contains this")
    p.add_argument("--host", action="store_true",
                   help="eager host time per call at L = 1 instead (on the GPU if visible)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.host, args.cases)
    libraries = dict(item.split("=", 1) for item in args.libraries)
    rounds = {name: [] for name in libraries}
    for r in range(args.rounds):
        for name, path in libraries.items():
            out = subprocess.run([sys.executable, __file__, "--child", path]
                                 + (["--host"] if args.host else [])
                                 + (["--cases", args.cases] if args.cases else []), check=True,
                                 capture_output=True, text=True).stdout
            rounds[name].append(json.loads(out.strip().splitlines()[-1]))
            print(f"# round {r + 1}: {name} done", flush=True)
    names = list(libraries)
    # Best and median of the rounds: on a shared machine one round can be
    # half as fast as the next, and the best is the least disturbed.
    stats = {how: {name: {case: fn(rd[case] for rd in rounds[name]) for case in rounds[name][0]}
                   for name in names}
             for how, fn in (("best", min), ("median", statistics.median))}
    print(f"{'case (us; best of ' + str(args.rounds) + ' rounds, median)':52}"
          + "".join(f" {n:>18}" for n in names)
          + "".join(f" {n + '/' + names[0] + ' best, median':>24}" for n in names[1:]))
    for case in stats["best"][names[0]]:
        line = f"{case:52}" + "".join(f" {stats['best'][n][case]:9.1f} {stats['median'][n][case]:8.1f}"
                                      for n in names)
        for n in names[1:]:
            ratios = [stats[how][n][case] / stats[how][names[0]][case] for how in ("best", "median")]
            line += f" {ratios[0]:15.3f} {ratios[1]:8.3f}"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"libraries": libraries, "rounds": rounds, **stats}, f, indent=1)


if __name__ == "__main__":
    main()
