"""Run every benchmark of the project, one after another, and print one Markdown table of their figures.

Each script prints its own detailed table (shown here on stderr as it runs);
this report collects the figures they record (``--record``, see
``benchmarks/record.py``) into one table: the figure, ours, the reference it
is measured against, the ratio, the target and whether it is met.  The
machine should be otherwise idle: run nothing else meanwhile.

    python benchmarks/report.py [--quick] [--out REPORT.md] [BENCHMARK ...]

``--quick`` runs fewer repeats and a shorter load (minutes instead of a
quarter of an hour); quote the full run's numbers.  Needs the ``bench``
extra (scikit-learn), PostgreSQL and Redis as the tests find them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent

#: Benchmark name -> (script, its arguments for a full run, for a quick run).
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "trainer": ("trainer_vs_sklearn.py", ["--repeats", "7"], ["--repeats", "3"]),
    "overhead": ("worker_overhead.py", ["--repeat", "15"], ["--repeat", "5"]),
    "queue": ("queue_throughput.py", ["--repeat", "3"], ["--repeat", "1"]),
    "local-queue": ("queue_throughput.py", ["--local", "--runs", "50", "--repeat", "3"],
                    ["--local", "--runs", "20", "--repeat", "1"]),
    "ingest": ("ingest.py", ["--repeat", "5"], ["--repeat", "3"]),
    "tracked": ("tracked_ingest.py", ["--repeat", "5"], ["--repeat", "1"]),
    "weights": ("weights_insert.py", ["--repeat", "9"], ["--repeat", "3"]),
    "compare": ("compare_latency.py", ["--repeat", "20"], ["--repeat", "8"]),
    "api": ("api_latency.py", ["--requests", "2000"], ["--requests", "500"]),
    "load": ("api_load.py", ["--duration", "30"], ["--duration", "10"]),
}


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(figures: list[dict]) -> str:
    """The figures as one Markdown table."""
    lines = [
        "| benchmark | figure | unit | ours | reference | reference's | ours ÷ reference | target | met |",
        "|---|---|---|---:|---|---:|---:|---|:---:|",
    ]
    for f in figures:
        met = {True: "yes", False: "**no**", None: "-"}[f["met"]]
        lines.append(
            f"| {f['benchmark']} | {f['figure']} | {f['unit']} | {_number(f['ours'])} | {f['reference']} | "
            f"{_number(f['reference_value'])} | {f['ratio']:.2f}x | {f['target']} | {met} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmarks", nargs="*", metavar="BENCHMARK", help=f"any of {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, a shorter load")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    chosen = args.benchmarks or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")

    failed = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "figures.jsonl"
        path.touch()
        for name in chosen:
            script, full, quick = BENCHMARKS[name]
            command = [sys.executable, str(HERE / script), *(quick if args.quick else full), "--record", str(path)]
            print(f"\n## {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
            started = time.monotonic()
            done = subprocess.run(command, stdout=sys.stderr, check=False)
            print(f"({time.monotonic() - started:.0f} s, exit status {done.returncode})", file=sys.stderr, flush=True)
            if done.returncode not in (0, 2):  # 2: ran, but a target was missed (the table says which)
                failed.append(name)
        figures = [json.loads(line) for line in path.read_text().splitlines()]

    report = table(figures)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")
    if failed:
        print(f"\nfailed to run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
