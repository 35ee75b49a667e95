"""GET /, the page to try the service, in a real Chromium against a real ``python -m service``.

The page must show what the API answers to the same request (bars, timeline,
problems), honour API keys, load nothing from outside the service, work under
its Content-Security-Policy, and fit a phone. Screenshots go to ``build/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest

from tests.support.browser import (
    CHROMIUM,
    DESKTOP,
    PHONE,
    api_answer,
    assert_bars_match,
    assert_local_and_clean,
    classify_in_page,
    drop_file,
    open_page,
)
from tests.support.media import MPEG4_AVI, moving_square_frames, noise_frames, write_video
from tests.support.observe import REPO, ServiceProcess, run_service

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)", allow_module_level=True
    )

from playwright.sync_api import Browser, Page, expect

SHOTS = REPO / "build"
STATIC = REPO / "service" / "static"
KEY = "page-key-4d1c8e2a7b9f3605"
TOP_K = 3
PAGE_BUDGET = 100 * 1024
UPLOAD_CAP = 128 * 1024  # the "big" clip is over it; the others far under


@pytest.fixture(scope="module")
def model_with_confusion(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with evaluation metrics and a confusion matrix in its metadata."""
    proto = onnx.load(str(tiny_model))
    props = {p.key: p for p in proto.metadata_props}
    labels = json.loads(props["vidlstm.labels"].value)
    n = len(labels)
    confusion = (np.eye(n, dtype=int) * 20 + np.roll(np.eye(n, dtype=int), 1, axis=1) * 3).tolist()
    props["vidlstm.metrics"].value = json.dumps(
        {"test_accuracy": 0.87, "test_macro_f1": 0.86, "confusion_matrix": confusion}
    )
    out = tmp_path_factory.mktemp("page-model") / "tiny-confusion.onnx"
    onnx.save(proto, str(out))
    return out


@pytest.fixture(scope="module")
def service(
    model_with_confusion: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = {"VIDLSTM_DECODE_WORKERS": "1", "VIDLSTM_MAX_UPLOAD_BYTES": str(UPLOAD_CAP)}
    with run_service(model_with_confusion, tmp_path_factory.mktemp("page"), env) as served:
        yield served


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("page-clips")
    text = root / "notes.txt"
    text.write_text("not a video\n")
    return {
        "short": write_video(root / "short.mp4", moving_square_frames(25, 96, 128)),
        "long": write_video(root / "long.mp4", moving_square_frames(250, 96, 128)),
        "big": write_video(root / "big.mp4", noise_frames(50, 96, 128)),
        "avi": write_video(root / "clip.avi", moving_square_frames(75, 96, 128), fmt=MPEG4_AVI),
        "text": text,
    }


def test_served_with_a_strict_policy_and_small(service: ServiceProcess) -> None:
    home = httpx.get(service.base_url + "/")
    assert home.status_code == 200
    policy = home.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'"):
        assert directive in policy
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', home.text)
    assert sorted(assets) == ["/static/page.css", "/static/page.js"]
    assert '<script type="module" src="/static/page.js">' in home.text
    static = f"{service.base_url}/static/"
    served = {name: httpx.get(static + name) for name in module_graph(service)}
    # Every module the package ships is one the page imports, and /static serves it.
    assert sorted(served) == sorted(p.name for p in STATIC.glob("*.js"))
    for answer in served.values():
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
        assert answer.headers["x-content-type-options"] == "nosniff"
    css = httpx.get(service.base_url + "/static/page.css")
    total = len(home.content) + len(css.content) + sum(len(a.content) for a in served.values())
    assert total < PAGE_BUDGET
    for name in ("index.html", "nope.js", "..%2Fpage.py"):
        missing = httpx.get(static + name)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
    assert "/" not in httpx.get(service.base_url + "/openapi.json").json()["paths"]


def module_graph(service: ServiceProcess) -> set[str]:
    """The names of page.js and every module it imports, at any depth."""
    seen: set[str] = set()
    todo = ["page.js"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        text = httpx.get(f"{service.base_url}/static/{name}").text
        todo += re.findall(r'^import [^;]+ from "\./([a-z]+\.js)";$', text, re.MULTILINE)
    return seen


def test_top_labels_and_timings_match_the_api(
    page: Page, service: ServiceProcess, clips: dict[str, Path]
) -> None:
    watched = open_page(page, service)
    model = httpx.get(service.base_url + "/model").json()
    expect(page.locator("#model")).to_be_visible()
    page.fill("#top-k", str(TOP_K))
    drop_file(page, clips["short"], "video/mp4")
    expect(page.locator("#file-name")).to_contain_text(clips["short"].name)
    page.click("#classify")

    expect(page.locator("#bars li")).to_have_count(TOP_K)
    answer = api_answer(service, clips["short"], f"?top_k={TOP_K}").json()
    assert_bars_match(page, answer["top"])
    assert {t["label"] for t in answer["top"]} <= set(model["labels"])
    facts = page.locator("#facts").inner_text()
    for name in ("Decode", "Inference", "Total"):
        assert name in facts
    assert page.locator("#problem").is_hidden()
    assert_local_and_clean(watched)


def test_long_clip_draws_its_segments_and_seeks(
    page: Page, service: ServiceProcess, clips: dict[str, Path]
) -> None:
    watched = open_page(page, service)
    long_clip = clips["long"]
    page.set_input_files("#file", str(long_clip))
    # 10 s against a 2 s window: segments on by default.
    expect(page.locator("#segments")).to_be_checked()
    page.click("#classify")
    expect(page.locator("#timeline-box")).to_be_visible(timeout=60_000)

    answer = api_answer(service, long_clip, "?top_k=5&segments=true").json()
    segments = page.locator("#timeline .seg")
    expect(segments).to_have_count(len(answer["segments"]))
    for i, expected in enumerate(answer["segments"]):
        assert expected["top"][0]["label"] in (segments.nth(i).get_attribute("aria-label") or "")
    legend = page.locator("#legend li").all_inner_texts()
    assert sorted(legend) == sorted({s["top"][0]["label"] for s in answer["segments"]})

    if page.locator("#preview").is_visible():  # this Chromium plays H.264
        current = "document.getElementById('preview').currentTime"
        segments.nth(2).click()
        assert page.evaluate(current) == pytest.approx(answer["segments"][2]["start_s"], abs=0.05)
        segments.nth(1).focus()
        page.keyboard.press("Enter")
        assert page.evaluate(current) == pytest.approx(answer["segments"][1]["start_s"], abs=0.05)

    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "page-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(SHOTS / "page-phone.png"), full_page=True)
    assert_local_and_clean(watched)


def test_a_format_the_browser_cannot_play_gets_a_note(
    page: Page, service: ServiceProcess, clips: dict[str, Path]
) -> None:
    """No preview for MPEG-4 part 2 in AVI, but the service classifies it; its length
    unknown to the page, segments go on."""
    open_page(page, service)
    page.set_input_files("#file", str(clips["avi"]))
    expect(page.locator("#preview-note")).to_contain_text("cannot preview")
    assert page.locator("#preview").is_hidden()
    expect(page.locator("#segments")).to_be_checked()
    page.click("#classify")
    expect(page.locator("#timeline-box")).to_be_visible(timeout=60_000)
    expect(page.locator("#bars li")).to_have_count(5)


def test_a_text_file_shows_the_problem(
    page: Page, service: ServiceProcess, clips: dict[str, Path]
) -> None:
    watched = open_page(page, service)
    text = clips["text"]
    classify_in_page(page, text)

    answer = api_answer(service, text, "?top_k=5")
    assert answer.status_code == 415
    problem = answer.json()
    expect(page.locator("#problem")).to_be_visible()
    assert page.locator("#problem-title").inner_text() == problem["title"]
    assert page.locator("#problem-detail").inner_text() == problem["detail"]
    assert "415" in page.locator("#problem-status").inner_text()
    assert page.locator("#result").is_hidden()
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "page-problem.png"))
    assert_local_and_clean(watched)


def test_an_oversized_upload_shows_the_413(
    page: Page, service: ServiceProcess, clips: dict[str, Path]
) -> None:
    big = clips["big"]
    assert big.stat().st_size > UPLOAD_CAP
    open_page(page, service)
    classify_in_page(page, big)

    problem = api_answer(service, big, "?top_k=5").json()
    assert problem["status"] == 413
    expect(page.locator("#problem")).to_be_visible()
    assert page.locator("#problem-title").inner_text() == problem["title"]
    assert page.locator("#problem-detail").inner_text() == problem["detail"]


def test_a_503_shows_its_retry_after(
    page: Page, service: ServiceProcess, clips: dict[str, Path]
) -> None:
    """Overload cannot be made on cue here, so the service's answer is stood in for."""
    problem: dict[str, Any] = {
        "type": "https://vidlstm.dev/problems/overloaded",
        "title": "Server overloaded",
        "status": 503,
        "detail": "every decode worker is busy; retry shortly",
    }
    page.route(
        "**/classify*",
        lambda route: route.fulfill(
            status=503,
            content_type="application/problem+json",
            headers={"Retry-After": "7"},
            body=json.dumps(problem),
        ),
    )
    open_page(page, service)
    classify_in_page(page, clips["short"])
    expect(page.locator("#problem-detail")).to_have_text(problem["detail"])
    assert page.locator("#problem-title").inner_text() == problem["title"]
    assert "7 s" in page.locator("#problem-retry").inner_text()


def test_model_metrics_and_confusion_heat_map(page: Page, service: ServiceProcess) -> None:
    open_page(page, service)
    model = httpx.get(service.base_url + "/model").json()
    n = len(model["labels"])
    expect(page.locator("#confusion-box")).to_be_visible()
    cells = page.locator("#confusion tbody td")
    expect(cells).to_have_count(n * n)
    shown = [int(t) for t in cells.all_inner_texts()]
    assert shown == [x for row in model["metrics"]["confusion_matrix"] for x in row]
    assert "0.8700" in page.locator("#metrics").inner_text()
    assert page.locator("#labels li").all_inner_texts() == model["labels"]


def test_controls_are_labelled_and_the_curl_command_follows(
    page: Page, service: ServiceProcess
) -> None:
    open_page(page, service)
    expect(page.locator("#model")).to_be_visible()
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select')]
             .filter((c) => !c.labels || c.labels.length === 0).map((c) => c.id)"""
    )
    assert unlabelled == []
    assert page.locator("a[href='/docs']").count() >= 1
    page.fill("#top-k", "2")
    page.check("#segments")
    page.fill("#window", "1.5")
    curl = page.locator("#curl").text_content() or ""
    assert "/classify?top_k=2&segments=true&window_s=1.5" in curl
    assert "--data-binary @" in curl
    # No /models today: no chooser, and no model or version in the request.
    assert page.locator("#model-field").is_hidden()
    assert "model=" not in curl


def test_model_chooser_from_models(page: Page, service: ServiceProcess) -> None:
    """With GET /models answering two ready versions, the page offers them and sends
    model and version only once one is picked."""
    model = httpx.get(service.base_url + "/model").json()
    entry: dict[str, Any] = {"labels": model["labels"], "input": model["input"], "reason": None}
    listing = {
        "default": model["name"],
        "models": [
            {**entry, "name": model["name"], "version": "1", "state": "ready", "sha256": "a"},
            {**entry, "name": model["name"], "version": "2", "state": "ready", "sha256": "b"},
            {**entry, "name": "other", "version": "1", "state": "failed", "sha256": "c"},
        ],
    }
    page.route(
        "**/models",
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(listing)
        ),
    )
    open_page(page, service)
    expect(page.locator("#model-field")).to_be_visible()
    options = page.locator("#model-select option").all_inner_texts()
    assert len(options) == 3  # the default, then the two ready versions
    assert "model=" not in (page.locator("#curl").text_content() or "")
    with page.expect_request(lambda r: "/model?model=" in r.url) as shown:
        page.select_option("#model-select", label=f"{model['name']} 2")
    assert shown.value.url.endswith(f"/model?model={model['name']}&version=2")
    assert f"model={model['name']}&version=2" in (page.locator("#curl").text_content() or "")


def test_api_key_is_asked_for_and_sent(
    browser: Browser,
    model_with_confusion: Path,
    tmp_path: Path,
    clips: dict[str, Path],
) -> None:
    env = {"VIDLSTM_DECODE_WORKERS": "1", "VIDLSTM_API_KEYS": KEY}
    with run_service(model_with_confusion, tmp_path, env) as keyed:
        context = browser.new_context(viewport=DESKTOP)
        try:
            page = context.new_page()
            watched = open_page(page, keyed)
            expect(page.locator("#key-card")).to_be_visible()

            classify_in_page(page, clips["short"])
            refusal = api_answer(keyed, clips["short"], "?top_k=5").json()
            assert refusal["status"] == 401
            assert page.locator("#problem-title").inner_text() == refusal["title"]
            assert "401" in page.locator("#problem-status").inner_text()
            SHOTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SHOTS / "page-key.png"))

            page.fill("#api-key", KEY)
            page.click("#key-form button")
            expect(page.locator("#model")).to_be_visible()
            page.click("#classify")
            expect(page.locator("#bars li")).to_have_count(5, timeout=60_000)
            assert page.locator("#problem").is_hidden()

            stored = page.evaluate(
                "JSON.stringify([localStorage, sessionStorage, document.cookie])"
            )
            assert KEY not in stored
            assert KEY not in (page.locator("#curl").text_content() or "")
            assert "X-API-Key" in (page.locator("#curl").text_content() or "")
            assert_local_and_clean(watched)
        finally:
            context.close()


def test_no_job_option_where_the_service_keeps_no_jobs(page: Page, service: ServiceProcess) -> None:
    """This service has no VIDLSTM_JOBS_DIR: GET /jobs answers jobs-disabled, and the page
    offers no job (tests/service/api/test_page_jobs.py: the service that keeps them)."""
    with page.expect_response(lambda r: "/jobs?limit=1" in r.url) as probe:
        watched = open_page(page, service)
    assert probe.value.status == 404
    assert probe.value.json()["type"] == "https://vidlstm.dev/problems/jobs-disabled"
    expect(page.locator("#model")).to_be_visible()
    assert page.locator("#as-job").is_disabled()
    assert page.locator("#job-field").is_hidden()
    assert "/jobs" not in (page.locator("#curl").text_content() or "")
    assert_local_and_clean(watched)
