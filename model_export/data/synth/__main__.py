"""``python -m model_export.data.synth``: write the synthetic data set."""

from model_export.data.synth.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
