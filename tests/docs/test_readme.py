"""The README keeps its promises: the settings table (in docs/settings.md) is the
settings object, the commands and paths it names exist, its benchmark figures are
the last run's, and it stays a short page that says each thing once."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from pydantic.fields import FieldInfo

from service.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SETTINGS_DOC = ROOT / "docs" / "settings.md"
MAKEFILE = ROOT / "Makefile"
LATEST = ROOT / "bench" / "results" / "latest.json"
# The other prose files: nothing the README says may be said again in them.
OTHER_DOCS = (
    ROOT / "bench" / "README.md",
    ROOT / "deploy" / "README.md",
    ROOT / "deploy" / "SECURITY.md",
    *sorted((ROOT / "docs").glob("*.md")),
)
MAX_LINES = 250

# Defaults computed where the service runs, said in words.
FACTORY_DEFAULTS = {"decode_workers": "CPU cores available"}
SYSTEM_TEMP_DIR = "the system's temp dir"
# Paths the README may name that only exist once something has run
# (make setup, make model, make bench, a build).
GENERATED = (".venv/", "models/", "data/", "bench/cache/", "build/")

# Rows of the README's benchmark table and the ratio of bench/results/latest.json each shows.
FIGURES = {
    "service / floor": "service_vs_floor",
    "service / naive": "service_vs_naive",
    "service / idiomatic": "service_vs_idiomatic",
    "W3 latency / 10-s W1 clip latency, end to end": "long_vs_short",
    "concurrency-1 p50, service / LitServe-style": "service_vs_litserve_style_c1_p50",
    "concurrency-1 p50, batcher closing at once / always waiting its delay": (
        "batcher_no_wait_c1_p50"
    ),
    "ingress ceiling (tiny clips, concurrency 16), 2 serving processes / 1": (
        "ingress_processes_vs_1"
    ),
    "`python -m bulk` files/s / floor, local engine": "bulk_local_vs_floor",
}


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The body of ``## heading``, up to the next heading of that level or above."""
    parts = re.split(rf"^## {re.escape(heading)}\n", text, maxsplit=1, flags=re.MULTILINE)
    assert len(parts) == 2, f"README has no '## {heading}' section"
    return re.split(r"^#{1,2} ", parts[1], maxsplit=1, flags=re.MULTILINE)[0]


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def _table_rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]


# -- (a) the settings table ----------------------------------------------------


def render_default(name: str, field: FieldInfo) -> str:
    """A field's default as the README's table shows it."""
    if field.default_factory is not None:
        assert name in FACTORY_DEFAULTS, f"say in FACTORY_DEFAULTS what {name}'s default is"
        return FACTORY_DEFAULTS[name]
    value = field.default
    if value is None:
        return "(unset)"
    if isinstance(value, tuple):
        return ", ".join(f"`{item}`" for item in value) if value else "(none)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path) and value == Path(tempfile.gettempdir()):
        return SYSTEM_TEMP_DIR
    return f"`{value}`"


def expected_settings_table() -> list[str]:
    lines = ["| variable | default | what it does |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        description = field.description or ""
        assert description, f"setting {name} has no description"
        assert "|" not in description, f"the description of {name} would break the table"
        variable = f"VIDLSTM_{name.upper()}"
        lines.append(f"| `{variable}` | {render_default(name, field)} | {description} |")
    return lines


def test_settings_table_is_the_settings_object() -> None:
    section = _section(SETTINGS_DOC.read_text(encoding="utf-8"), "Variables")
    shown = [line for line in section.splitlines() if line.startswith("|")]
    expected = expected_settings_table()
    assert shown == expected, (
        "docs/settings.md's table differs from service.core.settings.Settings; "
        "the table it should hold:\n\n" + "\n".join(expected) + "\n"
    )


def test_render_default() -> None:
    fields = Settings.model_fields
    assert render_default("api_keys", fields["api_keys"]) == "(none)"
    assert render_default("api_keys_file", fields["api_keys_file"]) == "(unset)"
    assert render_default("providers", fields["providers"]) == "`auto`"
    assert render_default("protect_metrics", fields["protect_metrics"]) == "`false`"
    assert render_default("decode_workers", fields["decode_workers"]) == "CPU cores available"
    assert render_default("temp_dir", fields["temp_dir"]) == SYSTEM_TEMP_DIR
    assert render_default("max_batch_size", fields["max_batch_size"]) == "`8`"


# -- (b), (c) commands and paths ------------------------------------------------


def _make_targets() -> set[str]:
    text = MAKEFILE.read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", text, flags=re.MULTILINE))


def test_quick_start_is_make_run_and_make_test() -> None:
    quick_start = _section(_readme(), "Quick start")
    assert "make run" in quick_start
    assert "make test" in quick_start
    assert {"run", "test"} <= _make_targets()


def _make_commands(text: str) -> set[str]:
    inline = re.findall(r"`make ([\w-]+)", _without_code_blocks(text))
    in_code = [
        target
        for block in _code_blocks(text)
        for target in re.findall(r"^\s*make ([\w-]+)", block, flags=re.MULTILINE)
    ]
    return {*inline, *in_code}


def test_every_make_command_is_a_target() -> None:
    commands = _make_commands(_readme())
    assert {"run", "test", "model", "bench"} <= commands, "the parser lost the README's commands"
    assert commands - _make_targets() == set(), "README names make targets the Makefile lacks"


def _looks_like_repo_path(token: str) -> bool:
    """``deploy/k8s``, ``bench/README.md``, ``service/``; not ``video/*`` or a URL path."""
    if "/" not in token or token.startswith("/") or not re.fullmatch(r"[\w./-]+", token):
        return False
    first, _, rest = token.partition("/")
    last = token.rstrip("/").rsplit("/", 1)[-1]
    return token.endswith("/") or "." in last or ((ROOT / first).is_dir() and bool(rest))


def _named_paths(text: str) -> set[str]:
    """Repository paths the text links to or names in backticks or in code blocks."""
    prose = _without_code_blocks(text)
    links = {
        target.split("#", 1)[0]
        for target in re.findall(r"\]\(([^)\s]+)\)", prose)
        if not re.match(r"[a-z]+:|#", target)
    }
    inline = set(re.findall(r"`([^`\n]+)`", prose))
    in_code = {word for block in _code_blocks(text) for word in block.split()}
    return links | {token for token in inline | in_code if _looks_like_repo_path(token)}


def test_every_path_the_readme_names_exists() -> None:
    paths = _named_paths(_readme())
    assert {"bench/README.md", "deploy/SECURITY.md", "docs/tuning-log.md"} <= paths
    missing = sorted(
        path for path in paths if not path.startswith(GENERATED) and not (ROOT / path).exists()
    )
    assert missing == [], f"README names paths that do not exist: {missing}"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_link_anchor_exists() -> None:
    readme = _readme()
    for target in re.findall(r"\]\(([^)\s]+)\)", _without_code_blocks(readme)):
        if "#" not in target or re.match(r"[a-z]+:", target):
            continue
        path, anchor = target.split("#", 1)
        document = (ROOT / path).read_text(encoding="utf-8") if path else readme
        headings = re.findall(r"^#+ (.+)$", _without_code_blocks(document), flags=re.MULTILINE)
        assert anchor in {_anchor(h) for h in headings}, f"no heading for the link {target}"


# -- (d) benchmark figures ------------------------------------------------------


def test_benchmark_figures_are_the_last_run() -> None:
    rows = _table_rows(_section(_readme(), "Benchmarks"))
    ratios = json.loads(LATEST.read_text(encoding="utf-8"))["ratios"]
    shown = {row[0]: row[1].strip("*") for row in rows if row[0] in FIGURES}
    assert shown == {name: f"{ratios[key]:.2f}" for name, key in FIGURES.items()}


# -- a short page that says each thing once --------------------------------------


def test_readme_is_short() -> None:
    lines = len(_readme().splitlines())
    assert lines <= MAX_LINES, f"README.md has {lines} lines; long prose belongs in docs/"


def _passages(text: str) -> list[str]:
    """Paragraphs, list items and table rows of some length, whitespace normalised."""
    pieces: list[str] = []
    for block in re.split(r"\n\s*\n", _without_code_blocks(text)):
        lines = block.strip().splitlines()
        if lines and lines[0].startswith("|"):
            pieces.extend(lines)
            continue
        item: list[str] = []
        for line in lines:
            if re.match(r"\s*(?:[-*]|\d+\.) ", line) and item:
                pieces.append(" ".join(item))
                item = []
            item.append(line.strip())
        pieces.append(" ".join(item))
    return [" ".join(p.split()) for p in pieces if len(p) >= 60 and not p.startswith("| ---")]


def test_nothing_in_the_readme_is_said_again_elsewhere() -> None:
    others = {path: " ".join(path.read_text(encoding="utf-8").split()) for path in OTHER_DOCS}
    repeated = [
        f"{path.relative_to(ROOT)}: {passage[:80]}..."
        for passage in _passages(_readme())
        for path, text in others.items()
        if passage in text
    ]
    assert repeated == [], "said in the README and again in:\n" + "\n".join(repeated)
