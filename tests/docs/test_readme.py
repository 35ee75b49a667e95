"""The README stays true: every setting is documented, the quick start is the real one."""

from __future__ import annotations

import json
import re
from pathlib import Path

from service.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    text = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(VIDLSTM_[A-Z0-9_]+)` \|", text, flags=re.MULTILINE))
    expected = {f"VIDLSTM_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from the README table"
    assert documented - expected == set(), "README documents settings that do not exist"


def test_quick_start_is_make_run_and_make_test() -> None:
    text = README.read_text(encoding="utf-8")
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make run" in quick_start
    assert "make test" in quick_start
    makefile = (README.parent / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:", makefile, flags=re.MULTILINE)
    assert re.search(r"^test:", makefile, flags=re.MULTILINE)


BENCH_README = README.parent / "bench" / "README.md"
LATEST = README.parent / "bench" / "results" / "latest.json"
# Rows of the README's figures table and the ratio of bench/results/latest.json each shows.
FIGURES = {
    "service / floor": "service_vs_floor",
    "service / naive": "service_vs_naive",
    "service / idiomatic": "service_vs_idiomatic",
    "W3 latency / 10-s W1 clip latency, end to end": "long_vs_short",
}


def _results_rows(path: Path) -> list[list[str]]:
    """The table rows under ``### Results``, up to the next heading, as stripped cells."""
    section = path.read_text(encoding="utf-8").split("### Results", 1)[1]
    section = re.split(r"^#", section, maxsplit=1, flags=re.MULTILINE)[0]
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|")
    ]


def test_benchmark_tables_agree_with_the_last_results() -> None:
    rows = _results_rows(README)
    assert rows == _results_rows(BENCH_README), "README and bench/README results differ"
    ratios = json.loads(LATEST.read_text(encoding="utf-8"))["ratios"]
    shown = {row[0]: row[1].strip("*") for row in rows if row[0] in FIGURES}
    assert shown == {name: f"{ratios[key]:.2f}" for name, key in FIGURES.items()}
