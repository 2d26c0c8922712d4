"""``python -m omniget``: the same as the ``omniget`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
