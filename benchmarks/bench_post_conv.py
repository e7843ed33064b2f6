"""Parity and timing of every implementation of the GDN post-conv step.

GPU: the gdn_ext CUDA op, the gdn_ext Triton kernel, the unfused PyTorch
chain, torch.compile of that chain and vLLM's fused_post_conv_prep (when
vllm is importable), against a copy of the same bytes (the fastest of
copy_ and several Triton copy kernels at that size, gpu_same_bytes_copies).
Device time per call comes from CUDA-graph replays that rotate through enough
input sets to exceed L2; host time per eager call is measured at L = 1.
CPU (no GPU visible): the gdn_ext CPU op, the eager chain, torch.compile of
the chain and zentorch's op when importable, against a copy of the same bytes
on all threads (the faster of copy_ and glibc's memcpy split over the threads,
set to stream stores past 512 KiB a thread as the op streams outputs past
1 MiB): a row's "% of ceiling" is of that copy.

    python benchmarks/bench_post_conv.py --json out.json --plot out.png
"""
import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time

import torch

# gdn_ext is imported where it is used: compare_libraries.py times other
# builds of the library with this file's helpers, and gdn_ext would load its own.

# Qwen3-Next (16,32) and (16,64), Qwen3.5-27B (16,48), and their shares of a
# tensor-parallel split (TP 2, 4, 8), K = V = 128; then a small-head case.
SHAPES = [(16, 32, 128, 128), (16, 48, 128, 128), (16, 64, 128, 128), (8, 24, 128, 128),
          (8, 16, 128, 128), (4, 12, 128, 128), (4, 8, 128, 128), (2, 6, 128, 128),
          (2, 4, 128, 128), (4, 8, 64, 64)]
LENGTHS = [1, 16, 128, 512, 2048, 8192, 32768]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
L2_BYTES = 50 * 2**20
# A plain copy of as many bytes as the op moves at each shape and L: what the
# copy ceiling allows at that size, launch and ramp-up included.
SAME_BYTES_COPY = "copy, same bytes"


# ---------------------------------------------------------------------------
# Implementations


def find_vllm():
    """vLLM's fused_post_conv_prep, or (None, why not)."""
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return None, f"vllm not importable ({type(exc).__name__})"
    for path in ("vllm.model_executor.layers.fla.ops.fused_post_conv_prep",
                 "vllm.model_executor.layers.fla.ops", "vllm.model_executor.models.qwen3_next"):
        try:
            mod = __import__(path, fromlist=["fused_post_conv_prep"])
            return getattr(mod, "fused_post_conv_prep"), None
        except Exception:  # noqa: BLE001
            continue
    return None, "vllm importable but has no fused_post_conv_prep"


def find_zentorch():
    """zentorch's op (its flags have no defaults: ours are passed), or
    (None, why not)."""
    try:
        import zentorch  # noqa: F401
        op = torch.ops.zentorch.gdn_fused_post_conv_prep.default
    except Exception as exc:  # noqa: BLE001
        return None, f"zentorch not importable ({type(exc).__name__})"
    return (lambda conv, a, b, A_log, dt_bias, H, K, V, apply_l2norm=True, output_g_exp=False:
            op(conv, a, b, A_log, dt_bias, H, K, V, apply_l2norm, output_g_exp)), None


def implementations(device):
    """{name: fn(conv, a, b, A_log, dt_bias, H, K, V)} and notes on absent peers."""
    import gdn_ext
    from gdn_ext import unfused_post_conv_prep

    impls, notes = {}, []
    compiled = torch.compile(unfused_post_conv_prep, fullgraph=True, dynamic=True)
    if device == "cuda":
        try:  # first: the other rows' reference
            impls[SAME_BYTES_COPY] = gpu_same_bytes_copies()
        except Exception as exc:  # noqa: BLE001
            notes.append(f"no same-bytes copy ({type(exc).__name__}: {exc})")
        if gdn_ext.HAS_CUDA_KERNEL:
            impls["gdn_ext cuda"] = torch.ops.gdn.fused_post_conv_prep.default
        from gdn_ext.triton_kernel import post_conv_prep_triton
        impls["gdn_ext triton"] = post_conv_prep_triton
        vllm_fn, why = find_vllm()
        if vllm_fn is not None:
            impls["vllm"] = vllm_fn
        else:
            notes.append(why)
    else:
        copy = _cpu_same_bytes_copy()
        if copy is not None:
            # First: the other rows' ceiling. copy_ beside the threaded
            # memcpy: a thread pool's start-up costs more than a few MiB
            # take to copy in cache.
            impls[SAME_BYTES_COPY] = {"threaded memcpy": copy,
                                      "copy_": lambda src, dst, *_: dst.copy_(src)}
        else:
            notes.append("no same-bytes copy (glibc memcpy not reachable): % of the large copy")
        impls["gdn_ext cpu"] = torch.ops.gdn.fused_post_conv_prep.default
        zen, why = find_zentorch()
        if zen is not None:
            impls["zentorch"] = zen
        else:
            notes.append(why)
    impls["eager chain"] = unfused_post_conv_prep
    impls["compiled chain"] = compiled
    return impls, notes


# ---------------------------------------------------------------------------
# Inputs and bytes


def make_inputs(L, H, HV, K, V, dtype, device, layout="row_major", gen=None):
    D = 2 * H * K + HV * V
    if layout == "channel_first":
        conv = torch.randn(D, L, device=device, dtype=dtype, generator=gen).T
    else:
        conv = torch.randn(L, D, device=device, dtype=dtype, generator=gen)
    a = torch.randn(L, HV, device=device, dtype=dtype, generator=gen) * 4
    b = torch.randn(L, HV, device=device, dtype=dtype, generator=gen) * 4
    A_log = torch.empty(HV, device=device).uniform_(0, 16, generator=gen).clamp_min(1).log()
    dt_bias = torch.randn(HV, device=device, generator=gen)
    return conv, a, b, A_log, dt_bias


def bytes_moved(L, H, HV, K, V, dtype):
    """The fewest bytes the op must move: each input read once, each output
    written once (A_log and dt_bias are negligible)."""
    e = torch.tensor([], dtype=dtype).element_size()
    D = 2 * H * K + HV * V
    return L * (D * e + 2 * HV * e) + L * (D * e + 2 * HV * 4)


# ---------------------------------------------------------------------------
# Timing


def n_input_sets(nbytes):
    return max(1, min(64, math.ceil(3 * L2_BYTES / max(nbytes, 1))))


def time_cuda_graph(fn, input_sets, H, K, V, replays=20):
    """Median device time per call, from replays of a graph that calls fn
    once per input set (distinct buffers, so L2 does not hold the inputs)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for args in input_sets[:2]:
            fn(*args, H, K, V)  # compile / autotune outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        keep = [fn(*args, H, K, V) for args in input_sets]
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / len(input_sets))
    del keep, graph
    return statistics.median(times)


def time_host(fn, args, H, K, V, calls=2000, sync=None):
    """Median wall time per eager call over batches of calls, with Python's
    garbage collector paused as timeit pauses it: after torch.compile has
    filled the heap, a full collection triggered by whichever call happens
    to allocate next would otherwise land on that implementation's time."""
    for _ in range(50):
        fn(*args, H, K, V)
    if sync:
        sync()
    per_call = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(calls // 5):
                fn(*args, H, K, V)
            if sync:
                sync()
            per_call.append((time.perf_counter() - t0) * 1e6 / (calls // 5))
    finally:
        gc.enable()
    return statistics.median(per_call)


def cpu_name():
    """'AMD EPYC (2 cores, ATen CPU capability AVX512)'."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{name} ({os.cpu_count()} cores, ATen CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()})")


def _libc_function(name):
    """The C library's function `name` through ctypes, or None where the
    library or the function cannot be found (not glibc, not Linux)."""
    import ctypes
    import ctypes.util
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory():
    """Tell glibc malloc to keep freed memory instead of returning it to the
    OS. PyTorch's CPU allocator does not cache, so by default every call that
    allocates outputs of a few MiB faults their pages in afresh (about 20 ms
    for 32 MiB on the build machine: more than the work itself), and whether
    it does depends on the allocation history. jemalloc and tcmalloc, which
    vLLM's CPU backend preloads, keep the memory; this does the same for
    every implementation alike. Returns a note, or None without glibc."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return None
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    ok = mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    return "glibc malloc keeps freed memory (mallopt: no mmap, no trim) for every implementation" \
        if ok else None


def time_cpu(fn, input_sets, H, K, V, min_time=0.2):
    fn(*input_sets[0], H, K, V)
    times, i, t_end = [], 0, time.perf_counter() + min_time
    while time.perf_counter() < t_end or len(times) < 5:
        args = input_sets[i % len(input_sets)]
        t0 = time.perf_counter()
        fn(*args, H, K, V)
        times.append((time.perf_counter() - t0) * 1e6)
        i += 1
    return statistics.median(times)


def _triton_copy(block=8192, warps=8, programs_per_sm=0):
    """A streaming copy kernel of `block` elements a program; with
    programs_per_sm, a grid of that many programs an SM, each striding over
    the buffer. On an H100 the large copy moves more bytes per second than
    torch's copy_ (cudaMemcpyAsync), so the ceiling takes the better."""
    import triton
    import triton.language as tl

    @triton.jit
    def copy_kernel(src, dst, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(dst + offs, tl.load(src + offs, mask=mask), mask=mask)

    @triton.jit
    def strided_copy_kernel(src, dst, n, BLOCK: tl.constexpr):
        step = tl.num_programs(0).to(tl.int64) * BLOCK
        for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < n
            tl.store(dst + offs, tl.load(src + offs, mask=mask), mask=mask)

    if programs_per_sm:
        sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count

        def copy(src, dst, *_):
            grid = min(programs_per_sm * sms, triton.cdiv(src.numel(), block))
            strided_copy_kernel[(grid,)](src, dst, src.numel(), BLOCK=block, num_warps=warps)
        return copy

    def copy(src, dst, *_):
        copy_kernel[(triton.cdiv(src.numel(), block),)](src, dst, src.numel(), BLOCK=block,
                                                        num_warps=warps)
    return copy


def gpu_same_bytes_copies():
    """{name: copy(src, dst)}: the copies the GPU's same-bytes reference is
    the fastest of, at each size. One configuration is no ceiling at every
    size: at 8-12 MB a Triton kernel of vLLM's beat the 8192-element copy
    (issue 14), so the block size, warps and grid vary (16-byte accesses in
    each: int32 words, four or more a thread)."""
    copies = {"copy_": lambda src, dst, *_: dst.copy_(src)}
    for block, warps, per_sm in ((1024, 4, 0), (2048, 4, 0), (4096, 4, 0), (4096, 8, 0),
                                 (8192, 8, 0), (16384, 16, 0), (4096, 8, 4), (8192, 8, 2)):
        name = f"triton {block}/{warps}" + (f" x{per_sm}/SM" if per_sm else "")
        copies[name] = _triton_copy(block, warps, per_sm)
    return copies


def _libc_memcpy():
    """memcpy(dst, src, n) of the C library on addresses, or None."""
    import ctypes
    memcpy = _libc_function("memcpy")
    if memcpy is not None:
        memcpy.argtypes, memcpy.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t], None
    return memcpy


# glibc's memcpy writes with plain stores below this tunable (a few hundred
# MiB by default) and with streaming stores above; the benchmark re-runs
# itself with it lowered on the CPU, so the same-bytes copy stores as the op does.
STREAMING_MEMCPY_TUNABLE = "glibc.cpu.x86_non_temporal_threshold=0x80000"


def _cpu_same_bytes_copy():
    """copy(src, dst): src's bytes to dst, split over torch's thread count
    (one call in this thread below 1 MiB, where a thread pool's start-up
    would dominate). None where ctypes cannot reach libc."""
    from concurrent.futures import ThreadPoolExecutor
    memcpy = _libc_memcpy()
    if memcpy is None:
        return None
    threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(threads)  # ctypes releases the GIL

    def copy(src, dst, *_):
        n = src.numel() * src.element_size()
        if n < 2**20 or threads == 1:
            memcpy(dst.data_ptr(), src.data_ptr(), n)
            return
        chunk = -(-n // threads // 64) * 64
        list(pool.map(lambda i: memcpy(dst.data_ptr() + i * chunk, src.data_ptr() + i * chunk,
                                       max(0, min(chunk, n - i * chunk))), range(threads)))
    return copy


def _glibc_memcpy_ceiling():
    """{"glibc memcpy": TB/s} of one large memcpy per thread. copy_ writes with
    plain stores, which first read each destination line for ownership; glibc
    switches to streaming stores for copies past its non-temporal threshold
    (240 MB on the build machine), as the gdn_ext CPU op does for large
    outputs, and moves more bytes per second. {} where ctypes cannot reach
    libc."""
    from concurrent.futures import ThreadPoolExecutor
    memcpy = _libc_memcpy()
    if memcpy is None:
        return {}
    threads, per_thread = torch.get_num_threads(), 2**28  # 256 MiB each
    src = torch.ones(threads * per_thread, dtype=torch.uint8)
    dst = torch.zeros_like(src)
    with ThreadPoolExecutor(threads) as pool:  # ctypes releases the GIL
        def copy(*_):
            list(pool.map(lambda i: memcpy(dst.data_ptr() + i * per_thread,
                                           src.data_ptr() + i * per_thread, per_thread),
                          range(threads)))
        us = time_cpu(copy, [()], 0, 0, 0, min_time=1.0)
    return {"glibc memcpy": 2 * src.numel() / (us * 1e-6) / 1e12}


def copy_ceiling(device):
    """{method: TB/s} of a large copy (bytes read + written); the ceiling is
    the best of them."""
    n = 2**28 if device == "cuda" else 2**25  # 1 GiB / 128 MiB of float32
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    nbytes = 2 * src.numel() * src.element_size()
    if device != "cuda":
        us = time_cpu(lambda s, d, *_: d.copy_(s), [(src, dst)], 0, 0, 0, min_time=1.0)
        copies = {"copy_": nbytes / (us * 1e-6) / 1e12}
        copies.update(_glibc_memcpy_ceiling())
        return copies
    methods = {"copy_": lambda s, d, *_: d.copy_(s)}
    try:
        methods["triton copy"] = _triton_copy()
    except Exception as exc:  # noqa: BLE001
        print(f"# triton copy unavailable for the ceiling: {type(exc).__name__}: {exc}")
    # Best of three medians: one median of a 1 GiB copy moved by up to 7%
    # between runs on the H100.
    return {name: nbytes / (min(time_cuda_graph(fn, [(src, dst)], 0, 0, 0, replays=30)
                                for _ in range(3)) * 1e-6) / 1e12
            for name, fn in methods.items()}


# ---------------------------------------------------------------------------
# Parity


def parity(fn, inputs, H, K, V):
    """Max errors of one call against the float64 reference: q in units of
    the output's precision (relative), g and beta relative."""
    from gdn_ext import reference_post_conv_prep

    out = fn(*inputs, H, K, V)
    ref = reference_post_conv_prep(*(t for t in inputs), H, K, V)
    q_err = ((out[0].double() - ref[0]).abs() / ref[0].abs().clamp_min(1e-3)).max().item()
    g_err = ((out[3].double() - ref[3]).abs() / ref[3].abs().clamp_min(1e-30)).max().item()
    beta_err = ((out[4].double() - ref[4]).abs() / ref[4].abs().clamp_min(1e-30)).max().item()
    v_exact = torch.equal(out[2], inputs[0][:, 2 * H * K:].reshape(out[2].shape))
    return {"q_rel": q_err, "g_rel": g_err, "beta_rel": beta_err, "v_bit_exact": v_exact}


def gate_sweep_inputs(H, HV, K, V, dtype, device):
    """Inputs whose x = a + dt_bias covers [-80, 80] (where the naive softplus fails)."""
    inputs = list(make_inputs(512, H, HV, K, V, dtype, device))
    inputs[1] = torch.linspace(-80, 80, 512 * HV, device=device).reshape(512, HV).to(dtype)
    inputs[4] = torch.zeros(HV, device=device)
    return inputs


# ---------------------------------------------------------------------------


def run(args):
    import gdn_ext

    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    torch.manual_seed(0)
    impls, notes = implementations(device)
    if device == "cpu" and not args.cpu_malloc_default:
        note = keep_freed_memory()
        notes.append(note or "could not configure malloc: CPU timings include page faults")
    if args.impls:
        impls = {n: f for n, f in impls.items() if any(w in n for w in args.impls)}
    copies = copy_ceiling(device)
    ceiling = max(copies.values())
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if device == "cuda" else cpu_name(),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(), "copy_ceiling_TBps": ceiling, "copy_TBps": copies,
        "notes": notes,
    }
    try:
        import triton
        info["triton"] = triton.__version__
    except Exception:  # noqa: BLE001
        info["triton"] = None
    names = args.dtypes or (["bf16"] if device == "cuda" else ["bf16", "fp16"])
    dtypes = [DTYPES[n] for n in names]
    dtype = dtypes[0]
    # TB/s suits a GPU; a CPU moves tens of GB/s.
    unit_name, unit = ("TB/s", 1e12) if device == "cuda" else ("GB/s", 1e9)
    print(f"# {info['device']} | torch {info['torch']} | triton {info['triton']} | "
          f"CUDA {info['cuda']} | {info['date']}")
    print(f"# copy ceiling (read + write): {ceiling * 1e12 / unit:.3f} {unit_name}, the best of "
          + ", ".join(f"{name} {tbps * 1e12 / unit:.3f}" for name, tbps in copies.items()))
    for note in notes:
        print(f"# note: {note}")
    if device == "cpu":
        print(f"# no GPU visible: CPU backend on {torch.get_num_threads()} threads")

    shapes = [tuple(map(int, s.split(","))) for s in args.shapes] if args.shapes else SHAPES
    lengths = args.lengths or LENGTHS
    rows = []
    same_bytes_us = {}  # (shape, L, dtype) -> us of the same-bytes copy (the CPU's ceiling)

    def measure(name, fn, shape, L, dt, layout="row_major"):
        H, HV, K, V = shape
        nbytes = bytes_moved(L, H, HV, K, V, dt)
        if name == SAME_BYTES_COPY:  # half the bytes read, half written
            words = max(1, nbytes // 8)
            sets = [(torch.empty(words, dtype=torch.int32, device=device),
                     torch.empty(words, dtype=torch.int32, device=device))
                    for _ in range(n_input_sets(nbytes))]
        else:
            sets = [make_inputs(L, H, HV, K, V, dt, device, layout)
                    for _ in range(n_input_sets(nbytes))]
        timer = time_cuda_graph if device == "cuda" else time_cpu
        copy_variant = None
        try:
            if name == SAME_BYTES_COPY:  # the fastest of its copies at this size
                times = {}
                for variant, f in fn.items():
                    try:
                        times[variant] = timer(f, sets, H, K, V)
                    except Exception as exc:  # noqa: BLE001
                        print(f"# copy {variant} failed at {shape} L={L}: "
                              f"{type(exc).__name__}: {exc}")
                copy_variant = min(times, key=times.get)
                us = times[copy_variant]
            else:
                us = timer(fn, sets, H, K, V)
        except Exception as exc:  # noqa: BLE001 - a peer failing must not stop the table
            print(f"# {name} failed at {shape} L={L}: {type(exc).__name__}: {exc}")
            return None
        tbps = nbytes / (us * 1e-6) / 1e12
        if name == SAME_BYTES_COPY:
            same_bytes_us[(shape, L, dt)] = us
        copy_us = same_bytes_us.get((shape, L, dt))
        # A CPU's caches make a large copy no ceiling for small calls.
        floor_us = (copy_us if device == "cpu" else None) or nbytes / (ceiling * 1e12) * 1e6
        row = {"impl": name, "H": H, "HV": HV, "K": K, "V": V, "L": L,
               "dtype": str(dt)[6:], "layout": layout, "us": us, "TBps": tbps,
               "pct_ceiling": 100 * floor_us / us, "floor_us": floor_us,
               "pct_same_bytes_copy": 100 * copy_us / us if copy_us else None}
        if copy_variant:
            row["copy_variant"] = copy_variant
        rows.append(row)
        return row

    for dt, dt_name in zip(dtypes, names):
        for shape in shapes:
            for L in lengths:
                for name, fn in impls.items():
                    measure(name, fn, shape, L, dt)
            print_table([r for r in rows if (r["H"], r["HV"], r["K"], r["V"]) == shape
                         and r["layout"] == "row_major" and r["dtype"] == str(dt)[6:]],
                        list(impls), shape, dt_name, unit_name, unit)

    main = "gdn_ext cuda" if "gdn_ext cuda" in impls else ("gdn_ext cpu" if device == "cpu" else None)
    variants = []
    if main and not args.skip_variants:
        shape = shapes[0]
        for L in [x for x in lengths if x >= 2048] or lengths[-1:]:
            for dt, layout in ((torch.float16, "row_major"), (torch.float32, "row_major"),
                               (dtype, "channel_first")):
                for name in [n for n in (SAME_BYTES_COPY, main, "gdn_ext triton") if n in impls]:
                    r = measure(name, impls[name], shape, L, dt, layout)
                    if r:
                        variants.append(r)
                if layout == "channel_first":
                    # What a caller without a strided kernel would do.
                    r = measure(f"{main} after .contiguous()",
                                lambda conv, *rest: impls[main](conv.contiguous(), *rest),
                                shape, L, dt, layout)
                    if r:
                        variants.append(r)
        print(f"\n## variants of {shape}: dtypes and channel-first input")
        print(f"{'impl':34} {'L':>6} {'dtype':>9} {'layout':>14} {'us':>9} {unit_name:>7} "
              f"{'%ceil':>6}")
        for r in variants:
            print(f"{r['impl']:34} {r['L']:>6} {r['dtype']:>9} {r['layout']:>14} {r['us']:9.2f} "
                  f"{r['TBps'] * 1e12 / unit:7.3f} {r['pct_ceiling']:6.1f}")

    host = {}
    shape = shapes[0]
    inputs = make_inputs(1, *shape, dtype, device)
    sync = torch.cuda.synchronize if device == "cuda" else None
    ops = {name: fn for name, fn in impls.items() if name != SAME_BYTES_COPY}
    for name, fn in ops.items():
        try:
            host[name] = time_host(fn, inputs, *shape[:1], shape[2], shape[3], sync=sync)
        except Exception as exc:  # noqa: BLE001
            print(f"# host timing of {name} failed: {exc}")
    host["gdn_ext python wrapper"] = time_host(
        lambda *a: gdn_ext.fused_post_conv_prep(*a), inputs, shape[0], shape[2], shape[3], sync=sync)
    print(f"\n## eager host time per call at L = 1, {shape} (us)")
    for name, us in host.items():
        print(f"{name:24} {us:8.2f}")

    par = {}
    H, HV, K, V = shape
    for name, fn in ops.items():
        try:
            par[name] = parity(fn, gate_sweep_inputs(H, HV, K, V, dtype, device), H, K, V)
        except Exception as exc:  # noqa: BLE001
            par[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(f"\n## parity against the float64 reference, {shape}, x = a + dt_bias over [-80, 80]")
    print(f"{'impl':16} {'q max rel':>10} {'g max rel':>10} {'beta max rel':>12} {'v exact':>8}")
    for name, p in par.items():
        if "error" in p:
            print(f"{name:16} {p['error']}")
        else:
            print(f"{name:16} {p['q_rel']:10.2e} {p['g_rel']:10.2e} {p['beta_rel']:12.2e} "
                  f"{str(p['v_bit_exact']):>8}")

    result = {"info": info, "rows": rows, "host_us_L1": host, "parity": par}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"\n# wrote {args.json}")
    if args.plot:
        plot(result, args.plot, dtype, unit_name, unit)
    return result


def print_table(rows, names, shape, dtype_name, unit_name, unit):
    print(f"\n## {shape} (H, HV, K, V), {dtype_name}: us per call | {unit_name} | "
          "% of copy ceiling")
    header = f"{'L':>6} {'floor us':>9}" + "".join(f" | {n:>24}" for n in names)
    base = next((n for n in names if n.startswith("gdn_ext")), names[0])
    print(header + f" | ratio of each to {base}")
    for L in sorted({r["L"] for r in rows}):
        by = {r["impl"]: r for r in rows if r["L"] == L}
        if not by:
            continue
        floor = next(iter(by.values()))["floor_us"]
        line = f"{L:>6} {floor:9.2f}"
        for n in names:
            r = by.get(n)
            line += (f" | {r['us']:9.2f} {r['TBps'] * 1e12 / unit:5.2f} {r['pct_ceiling']:6.1f}%" if r
                     else f" | {'-':>24}")
        if base in by:
            line += " | " + ", ".join(f"{n} {by[n]['us'] / by[base]['us']:.2f}x"
                                      for n in names if n in by and n != base)
        if SAME_BYTES_COPY in by and SAME_BYTES_COPY != base:
            line += f" | % of {SAME_BYTES_COPY}: " + ", ".join(
                f"{n} {by[n]['pct_same_bytes_copy']:.1f}" for n in names
                if n in by and n != SAME_BYTES_COPY)
        if by.get(SAME_BYTES_COPY, {}).get("copy_variant"):
            line += f" | copy: {by[SAME_BYTES_COPY]['copy_variant']}"
        print(line)


def plot(result, path, dtype, unit_name, unit):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # noqa: BLE001
        print(f"# plot skipped: matplotlib unavailable ({type(exc).__name__})")
        return
    rows = [r for r in result["rows"] if r["layout"] == "row_major" and r["dtype"] == str(dtype)[6:]]
    shapes = sorted({(r["H"], r["HV"], r["K"], r["V"]) for r in rows})
    cols = min(5, len(shapes))
    nrows = -(-len(shapes) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(shapes):]:
        ax.set_visible(False)
    for ax, shape in zip(axes.flat, shapes):
        for impl in dict.fromkeys(r["impl"] for r in rows):
            pts = sorted((r["L"], r["TBps"] * 1e12 / unit) for r in rows
                         if r["impl"] == impl and (r["H"], r["HV"], r["K"], r["V"]) == shape)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=impl)
        ax.axhline(result["info"]["copy_ceiling_TBps"] * 1e12 / unit, color="k", ls="--", lw=1, label="copy ceiling")
        ax.set_xscale("log", base=2)
        ax.set_title(f"H,HV,K,V = {shape}", fontsize=9)
        ax.set_xlabel("L (tokens)")
        ax.set_ylabel(f"{unit_name} (read + write)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"gdn post-conv prep, {result['info']['device']}, {str(dtype)[6:]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"# wrote {path}")


def markdown(result, dtype="bfloat16"):
    """RESULTS.md's serving-shape tables of a GPU run: for each
    implementation, a table of shapes by L, each cell µs per call and the
    % of the same-bytes copy; then the copy's µs and which copy won."""
    rows = [r for r in result["rows"] if r["layout"] == "row_major" and r["dtype"] == dtype]
    shapes = list(dict.fromkeys((r["H"], r["HV"], r["K"], r["V"]) for r in rows))
    lengths = sorted({r["L"] for r in rows})
    by = {(r["impl"], (r["H"], r["HV"], r["K"], r["V"]), r["L"]): r for r in rows}
    head = ["| (H, HV, K, V) | " + " | ".join(f"L = {L}" for L in lengths) + " |",
            "|---|" + "---|" * len(lengths)]
    out = []
    for impl in dict.fromkeys(r["impl"] for r in rows):
        copy = impl == SAME_BYTES_COPY
        out += [f"#### {impl}: µs per call" + (" (the copy that won)" if copy else
                                                " (% of the same-bytes copy)"), ""] + head
        for shape in shapes:
            cells = []
            for L in lengths:
                r = by.get((impl, shape, L))
                if r is None:
                    cells.append("-")
                elif copy:
                    cells.append(f"{r['us']:.2f} ({r.get('copy_variant', '')})")
                else:
                    pct = r.get("pct_same_bytes_copy")
                    cells.append(f"{r['us']:.2f} ({pct:.0f}%)" if pct else f"{r['us']:.2f}")
            out.append(f"| {shape} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def rerun_with_streaming_memcpy():
    """On the CPU, re-executes this script with glibc's memcpy set to stream
    (STREAMING_MEMCPY_TUNABLE); ld.so reads tunables only at start-up."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if STREAMING_MEMCPY_TUNABLE in tunables or platform.machine() not in ("x86_64", "AMD64"):
        return
    os.environ["GLIBC_TUNABLES"] = ":".join(t for t in (tunables, STREAMING_MEMCPY_TUNABLE) if t)
    os.execv(sys.executable, [sys.executable] + sys.argv)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables-from", metavar="JSON",
                   help="print RESULTS.md's serving-shape tables of an earlier GPU run's JSON "
                   "and exit")
    p.add_argument("--json", help="write all numbers here")
    p.add_argument("--plot", help="write a PNG of TB/s against L here")
    p.add_argument("--dtypes", nargs="*", choices=list(DTYPES),
                   help="activation dtypes of the main tables (default: bf16 on a GPU, "
                   "bf16 and fp16 on a CPU)")
    p.add_argument("--shapes", nargs="*", help="H,HV,K,V ... (default: SHAPES, the serving shapes)")
    p.add_argument("--lengths", nargs="*", type=int, help="L values")
    p.add_argument("--impls", nargs="*", help="only implementations whose name contains one of these")
    p.add_argument("--cpu", action="store_true", help="measure the CPU even if a GPU is visible")
    p.add_argument("--skip-variants", action="store_true", help="skip the dtype/layout variants")
    p.add_argument("--cpu-malloc-default", action="store_true",
                   help="CPU: leave glibc malloc as it is (timings then include page faults)")
    args = p.parse_args()
    if args.tables_from:
        with open(args.tables_from) as f:
            print(markdown(json.load(f)))
        return
    if args.cpu or not torch.cuda.is_available():
        rerun_with_streaming_memcpy()
    run(args)


if __name__ == "__main__":
    main()
