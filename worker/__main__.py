"""``python -m worker [--concurrency N] [--loglevel L]``: one worker with the settings of the environment."""

from __future__ import annotations

import argparse

from service.config import Settings
from worker import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker", description="Run a Trainyard Celery worker.")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="training processes (default: TRAINYARD_WORKER_CONCURRENCY, else 1)")
    parser.add_argument("--loglevel", default="info", help="debug, info, warning or error (default: info)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    run(settings, concurrency=args.concurrency or settings.worker_concurrency, loglevel=args.loglevel)


if __name__ == "__main__":
    main()
