"""Where one training step's time goes, beside scikit-learn's whole step, for a trainer_vs_sklearn workload.

Times ``fit``'s own mini-batch loop (the network, optimizer and buffers of a
real run) phase by phase: the batch gather, ``Network.backprop`` (forward,
loss, backward) and the optimizer step, then, in the same loop, the parts no
implementation of the same training can skip: the matrix products of
backprop, and for Adam the square root and the division of its update.  The
last lines say what ratio to scikit-learn the step has, and what it would have
if everything but those parts cost nothing (the ceiling numpy allows).

    python benchmarks/trainer_profile.py            # digits
    python benchmarks/trainer_profile.py dense

Not a test; reads the trainer's internals (``trainyard.trainer.fit._Run``).  Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from trainer_vs_sklearn import WORKLOADS, spec_for, time_sklearn

from trainyard.trainer.fit import _Run
from trainyard.trainer.optimizers import Adam


def _epoch_phases(run: _Run, lr: float) -> dict[str, float]:
    """One epoch of ``_Loop.run_epoch``'s work, seconds per phase."""
    loop, net, opt = run.loop, run.net, run.opt
    clock, take, grad = time.perf_counter, np.take, net.grad_flat
    scale = opt.grad_scale(lr)
    spent = dict.fromkeys(("gather", "backprop", "optimizer"), 0.0)
    order = loop.rng.permutation(loop.n)
    for start, stop, ws in loop.batches:
        t0 = clock()
        idx = order[start:stop]
        take(loop.X, idx, axis=0, out=ws.x, mode="clip")
        take(loop.T, idx, axis=0, out=ws.y, mode="clip")
        t1 = clock()
        net.backprop(ws, scale)
        t2 = clock()
        opt.step(grad, lr)
        t3 = clock()
        spent["gather"] += t1 - t0
        spent["backprop"] += t2 - t1
        spent["optimizer"] += t3 - t2
    return spent


def _floor(run: _Run) -> dict[str, float]:
    """Seconds an epoch spends in the matrix products and (Adam) the sqrt and divide, in the loop's context."""
    loop, net, opt = run.loop, run.net, run.opt
    dot, clock = np.dot, time.perf_counter
    spent = {"matrix products": 0.0, "sqrt and divide": 0.0}
    scratch = np.empty_like(net.flat)
    adam = isinstance(opt, Adam)
    for _, _, ws in loop.batches:
        t0 = clock()
        for w_t, a_in, a_out, *_ in ws.forward:
            dot(w_t, a_in, out=a_out)
        for a_in, delta_t, g, bias_grad, delta, back in ws.backward:
            dot(a_in, delta_t, out=g)
            if bias_grad is not None:
                dot(delta, ws.ones, out=bias_grad)
            if back is not None:
                dot(back[0], delta, out=back[1])
        t1 = t2 = clock()
        if adam:
            np.sqrt(opt.v, out=scratch)
            t2 = clock()
            scratch += opt.eps  # untimed: not part of the floor
            t3 = clock()
            np.divide(opt.m, scratch, out=scratch)
            t2 += clock() - t3
        net.backprop(ws, 1.0)  # the rest of a step, untimed: keeps the caches as a real step leaves them
        if adam:
            opt.step(net.grad_flat, 0.0)
        spent["matrix products"] += t1 - t0
        spent["sqrt and divide"] += t2 - t1
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", nargs="?", default="digits", choices=list(WORKLOADS))
    parser.add_argument("--epochs", type=int, default=20, help="epochs timed per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    w = WORKLOADS[args.workload][0]
    data = w.data()
    spec = spec_for(w)
    lr = spec.optimizer.lr

    phases: dict[str, list[float]] = {}
    sklearn_step: list[float] = []
    for _ in range(args.repeats):
        run = _Run(spec, data, None)
        steps = args.epochs * len(run.loop.batches)
        _epoch_phases(run, lr)  # warm up
        total = dict.fromkeys(("gather", "backprop", "optimizer", "matrix products", "sqrt and divide"), 0.0)
        for _ in range(args.epochs):
            for key, seconds in (_epoch_phases(run, lr) | _floor(run)).items():
                total[key] += seconds
        for key, seconds in total.items():
            phases.setdefault(key, []).append(seconds / steps * 1e6)
        sklearn_step.append(time_sklearn(w, data) / (w.epochs * len(run.loop.batches)) * 1e6)

    us = {key: statistics.median(v) for key, v in phases.items()}
    ours = us["gather"] + us["backprop"] + us["optimizer"]
    ref = statistics.median(sklearn_step)
    floor = us["matrix products"] + us["sqrt and divide"]
    print(f"{w.name}: microseconds per step, median of {args.repeats} repeats of {args.epochs} epochs\n")
    print("| phase | us per step | share of our step |")
    print("|---|---:|---:|")
    for key in ("gather", "backprop", "optimizer"):
        print(f"| {key} | {us[key]:.1f} | {us[key] / ours:.0%} |")
    print(f"| **our step** | **{ours:.1f}** | |")
    print(f"| of which matrix products | {us['matrix products']:.1f} | {us['matrix products'] / ours:.0%} |")
    if us["sqrt and divide"]:
        print(f"| of which Adam's sqrt and divide | {us['sqrt and divide']:.1f} | {us['sqrt and divide'] / ours:.0%} |")
    print(f"| scikit-learn's step | {ref:.1f} | |")
    print(f"\nratio to scikit-learn: {ref / ours:.2f}x (target {w.target}x); "
          f"ceiling if only the parts above cost time: {ref / floor:.2f}x")


if __name__ == "__main__":
    main()
