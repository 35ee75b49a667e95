"""GET /, the page, running a video as a job (POST /jobs, then GET /jobs/{id}), in a real
Chromium against a real ``python -m service`` that keeps jobs (VIDLSTM_JOBS_DIR).

A finished job's bars and timeline are the result GET /jobs/{id} answers; a failed job
shows the problem /classify gives for the same bytes. The tiny model runs a clip's job
in well under a second, so the open states (progress, Cancel) are shown with the
service's answers stood in for, as test_page.py does for a 503. The service without
jobs: test_page.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, Response, Route, expect

from tests.support.browser import (
    CHROMIUM,
    PHONE,
    Watched,
    api_answer,
    assert_bars_match,
    assert_local_and_clean,
    desktop_page,
    open_page,
)
from tests.support.media import moving_square_frames, write_video
from tests.support.observe import REPO, ServiceProcess, run_service

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)", allow_module_level=True
    )

SHOTS = REPO / "build"
KEY = "page-jobs-key-5e0b9c7d2a4f1836"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
JOB_URL = re.compile(r"/jobs/([0-9a-f]{32})$")


@pytest.fixture(scope="module")
def service(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    work = tmp_path_factory.mktemp("page-jobs")
    env = {"VIDLSTM_DECODE_WORKERS": "1", "VIDLSTM_JOBS_DIR": str(work / "jobs")}
    with run_service(tiny_model, work, env) as served:
        yield served


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("page-job-clips")
    text = root / "notes.txt"
    text.write_text("not a video\n")
    return {
        # 15 s at 25 fps: under the minute that makes a job the default.
        "clip": write_video(root / "clip.mp4", moving_square_frames(375, 96, 128)),
        # 64 s at 2 fps: over it.
        "film": write_video(root / "film.mp4", moving_square_frames(128, 96, 128), fps=2),
        "text": text,
    }


def open_with_jobs(page: Page, service: ServiceProcess) -> Watched:
    watched = open_page(page, service)
    expect(page.locator("#model")).to_be_visible()
    expect(page.locator("#job-field")).to_be_visible()
    expect(page.locator("#as-job")).to_be_enabled()
    return watched


def submit_as_job(page: Page, clip: Path) -> str:
    """Choose ``clip``, tick "Run as a job", press Classify: the id of the job made."""
    page.set_input_files("#file", str(clip))
    page.check("#as-job")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("#classify")
    return job_made(posted.value)


def job_made(response: Response) -> str:
    """The id in POST /jobs's Location (the body may be gone from the browser's cache)."""
    assert response.status == 202
    found = JOB_URL.search(response.headers["location"])
    assert found is not None
    return found.group(1)


def job_polls(watched: Watched, job_id: str) -> int:
    return sum(1 for method, url in watched.calls if method == "GET" and url.endswith(job_id))


def test_a_job_shows_its_progress_then_the_jobs_result(
    page: Page, service: ServiceProcess, clips: dict[str, Path]
) -> None:
    watched = open_with_jobs(page, service)
    clip = clips["clip"]
    page.set_input_files("#file", str(clip))
    expect(page.locator("#segments")).to_be_checked()  # metadata read: 15 s
    assert not page.locator("#as-job").is_checked()
    page.check("#as-job")
    curl = page.locator("#curl").text_content() or ""
    assert "/jobs?top_k=5&segments=true'" in curl
    assert "Idempotency-Key" in curl

    # A double click submits once.
    with page.expect_request(lambda r: r.method == "POST") as posted:
        page.dblclick("#classify")
    request = posted.value
    assert request.url == f"{service.base_url}/jobs?top_k=5&segments=true"
    key = request.headers["idempotency-key"]
    assert UUID.match(key)
    response = request.response()
    assert response is not None
    job_id = job_made(response)

    progress = page.locator("#job-progress")
    expect(progress).to_be_visible()
    assert page.evaluate("document.getElementById('job-progress').labels.length") == 1
    expect(page.locator("#bars li")).to_have_count(5, timeout=60_000)
    job = httpx.get(f"{service.base_url}/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    result = job["result"]
    assert_bars_match(page, result["top"])
    expect(page.locator("#timeline .seg")).to_have_count(len(result["segments"]))
    n = len(result["segments"])
    expect(page.locator("#job-label")).to_have_text(f"Job 100% · segments {n}/{n} · succeeded")
    assert progress.get_attribute("value") == "1"
    expect(page.locator("#cancel")).to_be_hidden()
    assert f"/jobs/{job_id}" in (page.locator("#curl").text_content() or "")
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "page-job.png"), full_page=True)

    posts = [url for method, url in watched.calls if method == "POST"]
    assert posts == [request.url]
    # The same key and bytes again: the same job, not a second one.
    again = api_answer(
        service, clip, "?top_k=5&segments=true", route="/jobs", **{"Idempotency-Key": key}
    )
    assert again.status_code == 202
    assert again.json()["id"] == job_id
    # Polling stopped with the job.
    polls = job_polls(watched, job_id)
    page.wait_for_timeout(1200)
    assert job_polls(watched, job_id) == polls
    assert_local_and_clean(watched)


def test_a_text_file_as_a_job_shows_the_failed_jobs_problem(
    page: Page, service: ServiceProcess, clips: dict[str, Path]
) -> None:
    watched = open_with_jobs(page, service)
    text = clips["text"]
    job_id = submit_as_job(page, text)

    expect(page.locator("#problem")).to_be_visible(timeout=60_000)
    refusal = api_answer(service, text, "?top_k=5").json()
    assert refusal["status"] == 415
    error = httpx.get(f"{service.base_url}/jobs/{job_id}").json()["error"]
    assert (error["title"], error["detail"]) == (refusal["title"], refusal["detail"])
    assert page.locator("#problem-title").inner_text() == refusal["title"]
    assert page.locator("#problem-detail").inner_text() == refusal["detail"]
    assert "415" in page.locator("#problem-status").inner_text()
    expect(page.locator("#job-label")).to_contain_text("failed")
    assert page.locator("#result").is_hidden()
    assert_local_and_clean(watched)


def test_a_long_preview_runs_as_a_job_by_default(
    page: Page, service: ServiceProcess, clips: dict[str, Path]
) -> None:
    open_with_jobs(page, service)
    page.set_input_files("#file", str(clips["film"]))
    if not page.locator("#preview").is_visible():
        pytest.skip("this Chromium does not play H.264: the page cannot know the length")
    expect(page.locator("#as-job")).to_be_checked()
    assert "/jobs?" in (page.locator("#curl").text_content() or "")
    page.set_input_files("#file", str(clips["clip"]))
    expect(page.locator("#as-job")).not_to_be_checked()
    assert "/classify?" in (page.locator("#curl").text_content() or "")


def stand_in_open_job(page: Page, fractions: list[float]) -> list[str]:
    """GET /jobs/{id} answers a running job (progress ``fractions``, then the last one
    again); DELETE answers it canceled. Returns the methods the stand-in saw."""
    seen: list[str] = []

    def answer(route: Route) -> None:
        request = route.request
        found = JOB_URL.search(request.url)
        if found is None or request.method not in ("GET", "DELETE"):
            route.fallback()
            return
        seen.append(request.method)
        polls = seen.count("GET")
        fraction = fractions[min(polls, len(fractions)) - 1] if polls else fractions[-1]
        body = {
            "id": found.group(1),
            "status": "canceled" if request.method == "DELETE" else "running",
            "progress": {"fraction": fraction, "segments_done": 3, "segments_total": 8},
            "result": None,
            "error": None,
        }
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route("**/jobs/*", answer)
    return seen


def test_an_open_job_shows_progress_that_never_goes_back_and_cancels(
    page: Page, service: ServiceProcess, clips: dict[str, Path]
) -> None:
    seen = stand_in_open_job(page, [0.1, 0.4, 0.3])
    watched = open_with_jobs(page, service)
    job_id = submit_as_job(page, clips["clip"])

    label = page.locator("#job-label")
    expect(label).to_have_text("Job 40% · segments 3/8 · running")
    while seen.count("GET") < 3:  # the answer that said 30%
        page.wait_for_timeout(100)
    page.wait_for_timeout(100)
    expect(label).to_have_text("Job 40% · segments 3/8 · running")
    assert page.locator("#job-progress").get_attribute("value") == "0.4"
    assert page.get_attribute("#result-card", "aria-busy") == "true"
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "page-job-running.png"))
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(SHOTS / "page-job-phone.png"), full_page=True)

    with page.expect_request(lambda r: r.method == "DELETE") as deleted:
        page.click("#cancel")
    assert deleted.value.url == f"{service.base_url}/jobs/{job_id}"
    expect(label).to_contain_text("canceled")
    expect(page.locator("#cancel")).to_be_hidden()
    polls = job_polls(watched, job_id)
    page.wait_for_timeout(1200)
    assert job_polls(watched, job_id) == polls
    assert_local_and_clean(watched)


def test_a_new_file_stops_following_the_job(
    page: Page, service: ServiceProcess, clips: dict[str, Path]
) -> None:
    stand_in_open_job(page, [0.2])
    watched = open_with_jobs(page, service)
    job_id = submit_as_job(page, clips["clip"])
    expect(page.locator("#job-label")).to_have_text("Job 20% · segments 3/8 · running")

    page.set_input_files("#file", str(clips["text"]))
    expect(page.locator("#job")).to_be_hidden()
    expect(page.locator("#result-empty")).to_be_visible()
    polls = job_polls(watched, job_id)
    page.wait_for_timeout(1200)
    assert job_polls(watched, job_id) == polls
    assert_local_and_clean(watched)


def test_a_job_with_an_api_key(
    browser: Browser, tiny_model: Path, tmp_path: Path, clips: dict[str, Path]
) -> None:
    """GET /jobs answers 401 without the key: jobs on. The job's requests carry the key."""
    env = {
        "VIDLSTM_DECODE_WORKERS": "1",
        "VIDLSTM_API_KEYS": KEY,
        "VIDLSTM_JOBS_DIR": str(tmp_path / "jobs"),
    }
    with run_service(tiny_model, tmp_path, env) as keyed, desktop_page(browser) as page:
        watched = open_page(page, keyed)
        expect(page.locator("#key-card")).to_be_visible()
        expect(page.locator("#job-field")).to_be_visible()
        page.fill("#api-key", KEY)
        page.click("#key-form button")
        expect(page.locator("#model")).to_be_visible()
        sent: list[tuple[str, str | None]] = []

        def on_request(request: Request) -> None:
            if request.method == "POST" or "/jobs/" in request.url:
                sent.append((request.method, request.headers.get("x-api-key")))

        page.on("request", on_request)
        submit_as_job(page, clips["clip"])
        expect(page.locator("#bars li")).to_have_count(5, timeout=60_000)
        assert sent[0] == ("POST", KEY)
        assert set(sent[1:]) == {("GET", KEY)}
        assert KEY not in (page.locator("#curl").text_content() or "")
        assert_local_and_clean(watched)
