"""
Summarise py-spy raw (collapsed) profiles: where the samples went, by function.

    .venv/bin/python bench/profile_summary.py /tmp/prof/worker-0.txt [--top 30] [--inclusive]

Self time counts the samples whose innermost frame is the function; inclusive
time counts every sample with the function anywhere on the stack.
"""

from __future__ import annotations

import argparse
from collections import Counter


def summarise(path: str, *, inclusive: bool) -> tuple[Counter, int]:
    counts: Counter = Counter()
    total = 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            stack, _, number = line.rstrip("\n").rpartition(" ")
            if not number.isdigit():
                continue
            samples = int(number)
            total += samples
            frames = stack.split(";")
            if inclusive:
                for frame in set(frames):
                    counts[frame] += samples
            else:
                counts[frames[-1]] += samples
    return counts, total


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--inclusive", action="store_true")
    args = parser.parse_args()
    counts, total = summarise(args.path, inclusive=args.inclusive)
    print(f"{total} samples")
    for frame, samples in counts.most_common(args.top):
        print(f"{100 * samples / total:6.1f}%  {frame}")


if __name__ == "__main__":
    main()
