"""``python -m trainyard``: the ``trainyard`` command."""

from trainyard.cli import main

if __name__ == "__main__":
    main(prog_name="trainyard")
