"""What one request may cost the API: creating a sweep of 200 runs on a million-row dataset checks each run against
the dataset's shape, never by building the dataset (which took 6 GB and 131 s of CPU)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

from factories import xor

#: The sweep: 200 seeds of spirals with a million rows (34 MB of data for each seed, were it built).
SWEEP = {
    "name": "big",
    "spec": xor(dataset={"name": "spirals", "n_samples": 1_000_000}, model={"type": "mlp", "hidden": [{"units": 8}]}),
    "method": "grid",
    "space": {"seed": list(range(200))},
}

#: Run in a process of its own, so its peak memory is the app's and this request's alone.
SCRIPT = """
import json, sys, time
from trainyard.service.app import create_app
from trainyard.service.config import Settings
from trainyard.service.queue import CeleryQueue

def peak_kib():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])

url, redis_url, queue_name, data_dir, body = sys.argv[1:]
queue = CeleryQueue(redis_url, queue_name=queue_name)
app = create_app(Settings(data_dir=data_dir, database_url=url, broker_url=redis_url, auth=False), queue=queue)
client = app.test_client()
client.get("/api/runs")  # the first request's imports and connections are not the sweep's
before, started = peak_kib(), time.process_time()
response = client.post("/api/sweeps", data=body, content_type="application/json")
print(json.dumps({"status": response.status_code, "runs": len(response.get_json().get("runs", [])),
                  "grew_kib": peak_kib() - before, "cpu_seconds": time.process_time() - started}))
"""


def test_a_sweep_of_200_runs_on_a_million_rows_costs_megabytes_not_gigabytes(url, redis_url, redis_client, tmp_path):
    queue = f"trainyard-test-{secrets.token_hex(6)}"
    try:
        done = subprocess.run([sys.executable, "-P", "-c", SCRIPT, url, redis_url, queue, str(tmp_path),
                               json.dumps(SWEEP)], capture_output=True, text=True, timeout=300)
    finally:
        redis_client.delete(queue, f"_kombu.binding.{queue}")
    assert done.returncode == 0, done.stderr
    cost = json.loads(done.stdout.splitlines()[-1])
    assert (cost["status"], cost["runs"]) == (201, 200), cost
    assert cost["grew_kib"] < 50 * 1024, cost  # the process's peak memory grew by under 50 MB
    print(f"a sweep of 200 runs on a million rows: +{cost['grew_kib'] / 1024:.1f} MB, {cost['cpu_seconds']:.2f} s CPU")
