"""``python -m trainyard.worker [--concurrency N] [--loglevel L]``: ``trainyard worker``, the same command."""

from trainyard.worker.startup import command

if __name__ == "__main__":
    command(prog_name="python -m trainyard.worker")
