"""The seed notebook's OR perceptron, written by hand and logged to Trainyard from its own loop.

Run it beside `trainyard up` (it finds the service and the token in ./trainyard-data, or takes TRAINYARD_URL and
TRAINYARD_TOKEN): the run appears on the dashboard as a tracked run, with its loss, its accuracy, a custom metric
(the number of weight updates) and its weights, beside the perceptron Trainyard trains itself
(examples/or-perceptron.json).

    python examples/perceptron_by_hand.py

The notebook's rule, ``w += lr * y * x``, never lowers a weight when labels are 0 and 1; this is the real rule,
``w += lr * (y - y_hat) * x``.
"""

from __future__ import annotations

import numpy as np

import trainyard

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = np.array([0, 1, 1, 1])  # OR
LR, EPOCHS = 0.1, 10


def main() -> None:
    w, b = np.zeros(2), 0.0
    with trainyard.track("OR perceptron by hand", project="notebook", params={"lr": LR, "epochs": EPOCHS,
                         "rule": "w += lr * (y - y_hat) * x"}, tags=["seed"]) as run:
        for epoch in range(1, EPOCHS + 1):
            updates = 0
            for x, y in zip(X, Y):  # one sample at a time, in order, as the notebook does
                y_hat = int(x @ w + b > 0)
                if y_hat != y:
                    w, b = w + LR * (y - y_hat) * x, b + LR * (y - y_hat)
                    updates += 1
            predictions = (X @ w + b > 0).astype(int)
            run.log(epoch, train_loss=float(np.mean(predictions != Y)), train_accuracy=float(np.mean(predictions == Y)),
                    updates=updates)
        run.log_weights(EPOCHS, [w.reshape(2, 1), np.array([b])])
    print(f"run {run.id}: w = {w.tolist()}, b = {b}: predicts {(X @ w + b > 0).astype(int).tolist()}")


if __name__ == "__main__":
    main()
