"""Train from a spec file with no service: ``python -m trainyard.trainer SPEC.json [--out W.npz]``.

Shows a progress bar with the live loss on stderr, prints the final metrics
on stdout and optionally saves the weights (``W1, b1, W2, b2, ...`` plus the
standardiser's ``mean`` and ``scale`` when the spec standardises) as ``.npz``.
Exit status: 0 trained, 1 diverged, 2 invalid spec or data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np
from pydantic import ValidationError

from .datasets import DatasetError, load_csv
from .fit import TrainingDiverged, fit
from .records import EpochRecord, FitResult
from .spec import SpecError, TrainSpec, field_errors


class ProgressBar:
    """A one-line progress bar with the live loss, redrawn at most ten times a second."""

    def __init__(self, total: int, stream: TextIO, width: int = 30):
        self.total, self.stream, self.width = total, stream, width
        self.tty = stream.isatty()
        self.started = self.last = time.perf_counter()
        self.last_tenth = -1

    def __call__(self, record: EpochRecord) -> None:
        now = time.perf_counter()
        done = record.epoch >= self.total
        if self.tty:
            if now - self.last < 0.1 and not done:
                return
        else:  # a log file gets a line per tenth of the run
            tenth = record.epoch * 10 // self.total
            if tenth == self.last_tenth and not done:
                return
            self.last_tenth = tenth
        self.last = now
        filled = self.width * record.epoch // self.total
        rate = record.epoch / max(now - self.started, 1e-9)
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] epoch {record.epoch}/{self.total}"
            f"  loss {record.train_loss:.4g}"
            + (f"  val_loss {record.val_loss:.4g}" if record.val_loss is not None else "")
            + (f"  acc {record.train_accuracy:.3f}" if record.train_accuracy is not None else "")
            + f"  {rate:,.0f} epochs/s"
        )
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        if self.tty and done:
            self.stream.write("\n")
        self.stream.flush()


def save_weights(path: Path, result: FitResult) -> None:
    arrays = {}
    for i in range(result.network.n_layers):
        arrays[f"W{i + 1}"] = result.network.params[2 * i]
        arrays[f"b{i + 1}"] = result.network.params[2 * i + 1]
    if result.standardizer is not None:
        arrays["mean"] = result.standardizer.mean
        arrays["scale"] = result.standardizer.scale
    with open(path, "wb") as f:  # a file object: numpy must not append ".npz" to the name
        np.savez(f, **arrays)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainyard.trainer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path, help="the job spec, JSON")
    parser.add_argument("--data", type=Path, help="a CSV to train on instead of the spec's dataset")
    parser.add_argument("--target", help="the CSV's target column (default: the last)")
    parser.add_argument("--out", type=Path, help="save the trained weights to this .npz file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.out and not args.out.parent.is_dir():
        print(f"error: --out: no directory {args.out.parent}", file=sys.stderr)
        return 2
    try:
        spec = TrainSpec.model_validate_json(args.spec.read_bytes())
        data = load_csv(args.data, target=args.target, name=args.data.name) if args.data else None
        bar = None if args.quiet else ProgressBar(spec.epochs, sys.stderr)
        result = fit(spec, data, on_epoch=bar)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"error: invalid spec {args.spec}:", file=sys.stderr)
        for err in field_errors(exc):
            print(f"  {err['field'] or '(spec)'}: {err['message']}", file=sys.stderr)
        return 2
    except (SpecError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    final = result.final.metrics() if result.final else {}
    final.pop("weight_norms", None)
    final.pop("grad_norms", None)
    summary = {"name": spec.name, "stop_reason": result.stop_reason, "best_epoch": result.best_epoch, **final}
    print(json.dumps(summary, indent=2))
    if args.out:
        try:
            save_weights(args.out, result)
        except OSError as exc:
            print(f"error: --out: {exc}", file=sys.stderr)
            return 2
        print(f"weights saved to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
