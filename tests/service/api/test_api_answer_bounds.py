"""What reading a long run may cost the API: its epochs come a page at a time and its exports stream a page at a
time, so the process's memory grows by a page, not by the run (a million epochs took 1.1 GB and 23 s in one
answer)."""

from __future__ import annotations

import json
import subprocess
import sys

#: Epochs of the run read back: long enough that holding them all would cost well over the bound.
EPOCHS = 100_000

#: Run in a process of its own, so its peak memory is the app's and these requests' alone.
SCRIPT = """
import json, sys
from trainyard.service.app import create_app
from trainyard.service.config import Settings
from trainyard.service.storage import repo

def peak_kib():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])

url, data_dir, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = create_app(Settings(data_dir=data_dir, database_url=url, broker_url="memory://", auth=False))
with app.extensions["trainyard"].Session() as s, s.begin():
    run = repo.create_run(session=s, spec={}, name="long", seed=0, tags=[], notes="", epochs_total=epochs)
    for start in range(1, epochs + 1, 10_000):
        rows = [{"epoch": n, "train_loss": 1 / n, "val_loss": 2 / n, "train_accuracy": 0.5, "val_accuracy": 0.25,
                 "lr": 0.1, "seconds": 0.001, "weight_norms": [1.5, 2.5], "grad_norms": [0.5, 0.25]}
                 for n in range(start, min(start + 10_000, epochs + 1))]
        repo.write_epochs(session=s, run_id=run.id, rows=rows)
client = app.test_client()
client.get("/api/runs")  # the first request's imports and connections are not the reads'
costs = {}
for name, path in (("csv", f"/api/runs/{run.id}/export?format=csv"), ("json", f"/api/runs/{run.id}/export?format=json"),
                   ("epochs", f"/api/runs/{run.id}/epochs?limit=10000")):
    before = peak_kib()
    response = client.get(path, buffered=False)
    size, tail = 0, b""
    for chunk in response.response:  # read as a client would, without keeping the answer
        size += len(chunk)
        tail = (tail + chunk)[-64:]
    response.close()
    costs[name] = {"status": response.status_code, "bytes": size, "tail": tail.decode(),
                   "grew_kib": peak_kib() - before}
print(json.dumps(costs))
"""


def test_reading_a_long_run_costs_a_page_of_memory(url, tmp_path):
    done = subprocess.run([sys.executable, "-P", "-c", SCRIPT, url, str(tmp_path), str(EPOCHS)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    costs = json.loads(done.stdout.splitlines()[-1])
    assert costs["csv"]["status"] == costs["json"]["status"] == costs["epochs"]["status"] == 200, costs
    last = f"{EPOCHS},{1 / EPOCHS!r},{2 / EPOCHS!r},0.5,0.25,0.1,0.001,1.5,2.5,0.5,0.25"
    assert costs["csv"]["tail"].endswith(f"\n{last}\n")
    assert costs["json"]["tail"].endswith('"grad_norms":[0.5,0.25]}]}')
    assert costs["csv"]["bytes"] > 7_000_000 and costs["json"]["bytes"] > 20_000_000  # the whole run was sent
    for name, cost in costs.items():
        assert cost["grew_kib"] < 50 * 1024, (name, cost)  # the process's peak memory grew by under 50 MB
    print({name: f"+{cost['grew_kib'] / 1024:.1f} MB for {cost['bytes'] / 1e6:.1f} MB" for name, cost in costs.items()})
