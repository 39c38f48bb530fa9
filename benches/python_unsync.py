#!/usr/bin/env python3
"""The reference column: Python's unsync==1.4.0 measured on the same shapes as
`cargo bench --bench overhead`, so the README can show both from one machine.

    python3 benches/python_unsync.py            # creates target/bench/py-venv on first run
    python3 benches/python_unsync.py --quick

Writes target/bench/python_unsync.json and prints a table. Shapes: sequential round-trip
latency (median, p90) and burst throughput (submit, then collect) of a trivial function in
async, thread and process mode; a CPU kernel split over 2 processes against 1; the mixed-mode
scenario of examples/mixed_mode.rs in miniature (3 CPU calls, 4 async waits, 2 blocking waits).
"""
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "bench"
VENV = OUT / "py-venv"


def ensure_venv():
    python = VENV / "bin" / "python"
    if not python.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call([str(python), "-m", "pip", "install", "-q", "unsync==1.4.0"])
    return python


def measure(quick):
    import asyncio
    import statistics
    from unsync import unsync

    @unsync
    async def async_trivial(x):
        return x + 1

    @unsync
    def thread_trivial(x):
        return x + 1

    rounds = 500 if quick else 3000
    burst_n = 2000 if quick else 10000
    proc_burst_n = 500 if quick else 2000

    def latency(call):
        for i in range(50):
            call(i).result()
        samples = []
        for i in range(rounds):
            start = time.perf_counter()
            call(i).result()
            samples.append((time.perf_counter() - start) * 1e6)
        samples.sort()
        return {"median": samples[len(samples) // 2], "p90": samples[len(samples) * 9 // 10]}

    def burst(call, n):
        start = time.perf_counter()
        handles = [call(i) for i in range(n)]
        total = sum(h.result() for h in handles)
        assert total == sum(range(1, n + 1))
        return n / (time.perf_counter() - start)

    results = {
        "async": {"latency_us": latency(async_trivial), "burst_per_s": burst(async_trivial, burst_n)},
        "thread": {"latency_us": latency(thread_trivial), "burst_per_s": burst(thread_trivial, burst_n)},
        "process": {
            "latency_us": latency(process_trivial),
            "burst_per_s": burst(process_trivial, proc_burst_n),
        },
    }

    steps = 3_000_000 if quick else 10_000_000
    start = time.perf_counter()
    kernel_cpu(0, steps).result()
    one = time.perf_counter() - start
    start = time.perf_counter()
    halves = [kernel_cpu(0, steps // 2), kernel_cpu(steps // 2, steps)]
    [h.result() for h in halves]
    two = time.perf_counter() - start
    results["cpu_2_processes_vs_1"] = one / two

    @unsync
    async def wait_some():
        for _ in range(100):
            await asyncio.sleep(0.001)

    @unsync
    def block_some():
        time.sleep(0.2)

    start = time.perf_counter()
    tasks = [kernel_cpu(0, steps // 3) for _ in range(3)] + [wait_some() for _ in range(4)]
    tasks += [block_some() for _ in range(2)]
    [t.result() for t in tasks]
    results["mixed_mode_s"] = time.perf_counter() - start
    return results


# Process-mode functions must be importable by name in the worker processes.
def _process_trivial(x):
    return x + 1


def _kernel(start, end):
    import math
    acc = 0.0
    for i in range(start, end):
        acc += math.sqrt(abs(i - 1_000_000))
    return acc


def main():
    quick = "--quick" in sys.argv
    if os.environ.get("UNSYNC_PY_INNER") != "1":
        python = ensure_venv()
        env = dict(os.environ, UNSYNC_PY_INNER="1")
        sys.exit(subprocess.call([str(python), __file__] + sys.argv[1:], env=env))
    global process_trivial, kernel_cpu
    from unsync import unsync
    process_trivial = unsync(cpu_bound=True)(_process_trivial)
    kernel_cpu = unsync(cpu_bound=True)(_kernel)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    results = measure(quick)
    results["load_before"] = load
    results["python"] = sys.version.split()[0]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "python_unsync.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"Python {results['python']} unsync 1.4.0, load average {load}")
    for mode in ("async", "thread", "process"):
        r = results[mode]
        print(
            f"{mode:<8} latency p50 {r['latency_us']['median']:8.1f} µs  p90 {r['latency_us']['p90']:8.1f} µs"
            f"  burst {r['burst_per_s']:10.0f}/s"
        )
    print(f"CPU kernel on 2 processes vs 1: {results['cpu_2_processes_vs_1']:.2f}x")
    print(f"mixed mode (3 CPU, 4 async waits, 2 blocking waits): {results['mixed_mode_s']:.2f} s")
    print(f"wrote {OUT / 'python_unsync.json'}")


if __name__ == "__main__":
    main()
