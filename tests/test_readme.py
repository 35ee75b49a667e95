"""The README stays true: every setting is documented, the quick start is the real one."""

from __future__ import annotations

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
