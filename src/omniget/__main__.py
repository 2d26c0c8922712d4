"""``python -m omniget``: the same as the ``omniget`` command."""

from .cli import run

if __name__ == "__main__":
    run()
