"""``python -m model_export.synth``: write the synthetic data set."""

from model_export.synth.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
