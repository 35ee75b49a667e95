"""``python -m model_export.data.heldout``: write the held-out evaluation set."""

from model_export.data.heldout.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
