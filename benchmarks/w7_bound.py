"""What W7 can reach at best, for a given start and ramp: a model, not a measurement.

W7 sends 20,000 requests through 2,000 slots to a server answering each in 0.5-1.5 s
(uniform). The "ideal" of 2,000 rows/s counts every slot busy from the first instant to the
last. Even a client that costs nothing falls short of it: the last requests are sent one by
one as slots free up, and each still takes up to 1.5 s (the tail). A real client also starts
late (imports, the first request's grace) and needs time to send its first 2,000 requests
(the ramp). This script simulates a client that costs nothing once it runs, with the start
and the ramp given, and prints rows/s as a share of the ideal: the ceiling that the measured
W7 figures (``w7_latency.py``) are to be read against.

    python benchmarks/w7_bound.py                      # the table below, 5 seeds each
    python benchmarks/w7_bound.py --start 1.1 --ramp 0.9

No alambic code runs here; the standard library only.
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics


def makespan(
    seed: int,
    *,
    rows: int = 20_000,
    slots: int = 2_000,
    ramp: float = 0.0,
    latency: float = 0.5,
    jitter: float = 1.0,
) -> float:
    """Seconds from the first send to the last answer when each slot sends its next request
    the moment its previous answer arrives; the first ``slots`` requests go out evenly over
    ``ramp`` seconds."""
    rng = random.Random(seed)
    answers: list[float] = []
    for i in range(min(slots, rows)):
        heapq.heappush(answers, ramp * i / slots + latency + jitter * rng.random())
    sent = len(answers)
    last = 0.0
    while answers:
        last = heapq.heappop(answers)
        if sent < rows:
            heapq.heappush(answers, last + latency + jitter * rng.random())
            sent += 1
    return last


def share_of_ideal(start: float, ramp: float, seeds: int = 5, rows: int = 20_000) -> float:
    """The median share of the ideal 2,000 rows/s over ``seeds`` simulations."""
    spans = [makespan(seed, rows=rows, ramp=ramp) for seed in range(seeds)]
    return rows / (start + statistics.median(spans)) / 2_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start", type=float, help="seconds before the first burst")
    parser.add_argument("--ramp", type=float, help="seconds to send the first 2,000")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.start is not None or args.ramp is not None:
        start, ramp = args.start or 0.0, args.ramp or 0.0
        print(
            f"start {start:.2f} s, ramp {ramp:.2f} s: {share_of_ideal(start, ramp, args.seeds):.1%}"
        )
        return 0
    print("share of the ideal 2,000 rows/s for a client that costs nothing once it runs")
    print("start (s) | ramp 0 s | ramp 0.5 s | ramp 0.9 s")
    for start in (0.0, 0.5, 0.8, 1.1):
        cells = [f"{share_of_ideal(start, ramp, args.seeds):.1%}" for ramp in (0.0, 0.5, 0.9)]
        print(f"{start:9.1f} | " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
