"""``python -m omniget`` and the ``omniget`` command: :func:`run`."""

import gc


def run() -> None:
    """The command. The collector is off while the CLI's modules load (what they make
    lives to the end: its collections there cost ~8 M instructions at every start), then
    :func:`omniget.cli.run` turns it on, set for a long run."""
    gc.disable()
    from .cli import run as run_cli

    run_cli()


if __name__ == "__main__":
    run()
