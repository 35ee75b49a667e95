"""``python -m model_export``: see :mod:`model_export.cli`."""

import sys

from model_export.cli import main

if __name__ == "__main__":  # also guards the spawned decode and render workers
    sys.exit(main())
