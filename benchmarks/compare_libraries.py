"""Times the CPU op of two or more compiled gdn_ext libraries side by side.
They register the same op, so each runs in a process of its own; the
processes alternate for several rounds, so that the machine's drift hits
every library alike. For a kernel change: build the old library (from a
worktree of the previous commit, say) and compare it with the new one, on one
machine in one run.

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


def child(path):
    """Loads the library alone (not the gdn_ext package) and times every case."""
    import torch

    sys.path.insert(0, HERE)
    from bench_post_conv import keep_freed_memory, make_inputs, n_input_sets, time_cpu

    torch.ops.load_library(path)
    keep_freed_memory()
    op = torch.ops.gdn.fused_post_conv_prep.default
    times = {}
    for shape, L, dtype, layout in CASES:
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
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child)
    libraries = dict(item.split("=", 1) for item in args.libraries)
    rounds = {name: [] for name in libraries}
    for r in range(args.rounds):
        for name, path in libraries.items():
            out = subprocess.run([sys.executable, __file__, "--child", path], check=True,
                                 capture_output=True, text=True).stdout
            rounds[name].append(json.loads(out.strip().splitlines()[-1]))
            print(f"# round {r + 1}: {name} done", flush=True)
    names = list(libraries)
    median = {name: {case: statistics.median(rd[case] for rd in rounds[name])
                     for case in rounds[name][0]} for name in names}
    print(f"{'case (median us of ' + str(args.rounds) + ' rounds)':52}"
          + "".join(f" {n:>10}" for n in names)
          + "".join(f" {n + '/' + names[0]:>14}" for n in names[1:]))
    for case in median[names[0]]:
        print(f"{case:52}" + "".join(f" {median[n][case]:10.1f}" for n in names)
              + "".join(f" {median[n][case] / median[names[0]][case]:14.3f}" for n in names[1:]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"libraries": libraries, "rounds": rounds, "median_us": median}, f, indent=1)


if __name__ == "__main__":
    main()
