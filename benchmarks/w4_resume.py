"""W4: crash and resume. 2,000 rows, 50 ms latency, SIGKILL at N/2 requests, rerun; 3 trials.

    PYTHONPATH=src python benchmarks/w4_resume.py                # W4 trials + W1 store on/off
    PYTHONPATH=src python benchmarks/w4_resume.py --skip-w1      # W4 trials only
    PYTHONPATH=src python benchmarks/w4_resume.py --skip-w4 --w1-repeat 5

Each trial starts the pipeline::

    LoadDataFromDicts >> TextGeneration(OpenAILLM) >> KeepColumns(["instruction", "generation"])

in a fresh Python process against the test server (a separate process too), polls the
server's ``/_stats`` and sends SIGKILL once it has received N/2 requests, then runs the same
script again to completion with the same cache directory. Printed per trial: total requests
the server received over both runs (vs N), rows of the result, duplicate rows, repeated
requests (identical bodies seen more than once), requests in flight at the kill, and whether
the trial is ok: exactly N rows, in order, each with its own generation, no duplicates, and
repeats <= in flight at the kill, in the client's sense: requests it had sent whose answers it
had not received and stored. That is measured exactly as *unstored* (unique requests the
server saw minus answers in the request cache after the kill) and can never exceed the client's
``max_concurrency``; both bounds are checked. The server's own count of open requests is
printed too, as a lower bound: answers the server had already written but the client had not
yet read (in socket buffers, or queued behind other replies in the client's event loop) are
still in flight for the client.

"In flight at the kill" is what the server saw: requests open just before the signal plus
those that reached it after (they were already in the dead client's socket buffers). An
answer that reached the client in the request cache's last group-commit window (a few ms)
but was not yet in the file is also re-sent; the table shows it as ``unstored`` (unique
requests seen minus answers in the request cache file after the kill), which bounds the
repeats exactly.

The W1 comparison runs W1 (10,000 rows, 0 ms latency, 64 concurrent requests) with the run
store off (``pipeline.run(storage=False)``), on (units committed and every answer stored in
the request cache, the default; a fresh cache directory each time, so nothing is replayed),
and on with ``ALAMBIC_REQUEST_CACHE=0`` (units only), in rounds, each in a fresh process, and
prints per variant the medians of ``pipeline.run`` wall time and of the process's CPU time
(user + system, all threads) during it. CPU time is the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
SRC = HERE.parents[1] / "src"


def child(args: argparse.Namespace) -> None:
    """One run of the pipeline in this process; writes its rows and timing to ``--out``."""
    from alambic.llms.openai import OpenAILLM
    from alambic.pipeline import Pipeline
    from alambic.steps import KeepColumns, LoadDataFromDicts
    from alambic.steps.tasks.text_generation import TextGeneration

    data = [{"instruction": f"question {i}"} for i in range(args.rows)]
    with Pipeline(name="bench-w4") as pipeline:
        load = LoadDataFromDicts(data=data)
        task = TextGeneration(
            llm=OpenAILLM(
                model="bench",
                base_url=args.base_url,
                api_key="not-needed",
                max_concurrency=args.concurrency,
            )
        )
        keep = KeepColumns(columns=["instruction", "generation"])
        load >> task >> keep
    import resource

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    start, cpu0 = time.perf_counter(), cpu()
    distiset = pipeline.run(show_progress=False, storage=not args.no_store)
    run_s, cpu_s = time.perf_counter() - start, cpu() - cpu0
    dataset = distiset["default"]["train"]
    rows = [[r["instruction"], r["generation"]] for r in dataset] if args.keep_rows else []
    Path(args.out).write_text(
        json.dumps({"rows": rows, "n": len(dataset), "run_s": run_s, "cpu_s": cpu_s})
    )


def child_cmd(base_url: str, rows: int, concurrency: int, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(HERE),
        "--child",
        "--base-url",
        base_url,
        "--rows",
        str(rows),
        "--concurrency",
        str(concurrency),
        "--out",
        str(out),
        *extra,
    ]


def child_env(cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ALAMBIC_CACHE_DIR"] = str(cache_dir)
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env


def cached_answers(cache_dir: Path) -> int:
    path = cache_dir / "requests.sqlite"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])
    finally:
        conn.close()


def trial(index: int, base_url: str, rows: int, concurrency: int, timeout: float) -> dict[str, Any]:
    from alambic.testing.openai_server import remote_reset, remote_stats

    remote_reset(base_url)
    work = Path(tempfile.mkdtemp(prefix="alambic-w4-"))
    cache, out = work / "cache", work / "out.json"
    cmd = child_cmd(base_url, rows, concurrency, out, "--keep-rows")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=child_env(cache), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            before = remote_stats(base_url, arrivals=False)
            if before["total_requests"] >= rows // 2:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"trial {index}: the run ended before N/2 requests")
            if time.monotonic() > deadline:
                raise TimeoutError(f"trial {index}: no N/2 requests within {timeout} s")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = time.perf_counter() - started
        settle = time.monotonic() + 30
        while remote_stats(base_url, arrivals=False)["in_flight"] and time.monotonic() < settle:
            time.sleep(0.01)
        time.sleep(0.1)
        after = remote_stats(base_url, arrivals=False)
        in_flight = before["in_flight"] + after["total_requests"] - before["total_requests"]
        unstored = after["unique_requests"] - cached_answers(cache)
        rerun = subprocess.run(
            cmd, env=child_env(cache), stderr=subprocess.PIPE, text=True, timeout=timeout
        )
        if rerun.returncode != 0:
            raise RuntimeError(f"trial {index}: rerun failed:\n{rerun.stderr[-3000:]}")
        result = json.loads(out.read_text())
        final = remote_stats(base_url, arrivals=False)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    got = result["rows"]
    expected = [[f"question {i}", f"reply to: question {i}"] for i in range(rows)]
    duplicates = len(got) - len({tuple(r) for r in got})
    repeats = final["repeated_requests"]
    ok = got == expected and duplicates == 0 and repeats <= min(unstored, concurrency)
    return {
        "trial": index,
        "requests": final["total_requests"],
        "n": rows,
        "rows": len(got),
        "duplicates": duplicates,
        "repeats": repeats,
        "in_flight_at_kill": in_flight,
        "unstored": unstored,
        "killed_at_s": round(killed_at, 2),
        "rerun_s": round(result["run_s"], 2),
        "ok": ok,
    }


W1_VARIANTS = {
    "off": ("storage=False", ("--no-store",), {}),
    "on": ("store + request cache (default)", (), {}),
    "units": ("store, ALAMBIC_REQUEST_CACHE=0", (), {"ALAMBIC_REQUEST_CACHE": "0"}),
}


def w1_run(base_url: str, variant: str) -> tuple[float, float]:
    """One W1 run in a fresh process and cache directory: (run seconds, CPU seconds)."""
    _, extra, env_extra = W1_VARIANTS[variant]
    work = Path(tempfile.mkdtemp(prefix="alambic-w1-"))
    try:
        out = work / "out.json"
        cmd = child_cmd(base_url, 10_000, 64, out, *extra)
        env = {**child_env(work / "cache"), **env_extra}
        subprocess.run(cmd, env=env, check=True, timeout=1200)
        result = json.loads(out.read_text())
        if result["n"] != 10_000:
            raise RuntimeError(f"W1 produced {result['n']} rows")
        return float(result["run_s"]), float(result["cpu_s"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--w1-repeat", type=int, default=3)
    parser.add_argument("--skip-w1", action="store_true")
    parser.add_argument("--skip-w4", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--no-store", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep-rows", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0

    sys.path.insert(0, str(SRC))
    from alambic.testing.openai_server import (
        ServerConfig,
        remote_update,
        run_server_process,
        stop_server_process,
    )

    failed = False
    proc, base_url = run_server_process(ServerConfig(latency_s=args.latency_ms / 1000))
    try:
        if not args.skip_w4:
            print(
                f"W4: {args.rows} rows, {args.latency_ms:g} ms latency, "
                f"max_concurrency={args.concurrency}, SIGKILL at N/2 requests, rerun"
            )
            header = (
                "trial  requests     N   rows  dups  repeats  in-flight@kill  unstored"
                "  kill@s  rerun_s  ok"
            )
            print(header)
            results = []
            for i in range(1, args.trials + 1):
                r = trial(i, base_url, args.rows, args.concurrency, args.timeout)
                results.append(r)
                print(
                    f"{r['trial']:>5}  {r['requests']:>8}  {r['n']:>4}  {r['rows']:>5}  "
                    f"{r['duplicates']:>4}  {r['repeats']:>7}  {r['in_flight_at_kill']:>14}  "
                    f"{r['unstored']:>8}  {r['killed_at_s']:>6}  {r['rerun_s']:>7}  "
                    f"{'yes' if r['ok'] else 'NO'}",
                    flush=True,
                )
            passed = sum(r["ok"] for r in results)
            print(
                f"W4: {passed} of {len(results)} trials complete with repeats <= in flight (unstored, <= max_concurrency)"
            )
            failed = failed or passed != len(results)
        if not args.skip_w1:
            remote_update(base_url, latency_s=0.0)
            wall: dict[str, list[float]] = {v: [] for v in W1_VARIANTS}
            cpu: dict[str, list[float]] = {v: [] for v in W1_VARIANTS}
            print(
                f"\nW1 (10,000 rows, 0 ms, 64 concurrent): {args.w1_repeat} rounds of "
                f"{', '.join(W1_VARIANTS)} (wall s / CPU s of pipeline.run)"
            )
            for i in range(args.w1_repeat):
                figures = []
                for variant in W1_VARIANTS:
                    w, c = w1_run(base_url, variant)
                    wall[variant].append(w)
                    cpu[variant].append(c)
                    figures.append(f"{variant} {w:.2f}/{c:.2f}")
                print(f"  round {i + 1}: " + ", ".join(figures), flush=True)
            for variant, (label, _, _) in W1_VARIANTS.items():
                w, c = median(wall[variant]), median(cpu[variant])
                print(
                    f"  median {variant:<5} ({label}): wall {w:.2f} s "
                    f"({w / median(wall['off']):.3f}x off), CPU {c:.2f} s "
                    f"({c / median(cpu['off']):.3f}x off)"
                )
            ratio = median(wall["on"]) / median(wall["off"])
            print(f"W1 store on / off (wall medians): {ratio:.3f} (target <= 1.10)")
    finally:
        stop_server_process(proc)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
