"""Browser-test fixtures: the real app on a free 127.0.0.1 port, Debian's chromium driven by Python playwright.

Test modules load this as a plugin (``pytest_plugins = ["tests.browser"]``). A failing test leaves a screenshot
of its page in test-artifacts/. Never run ``playwright install``: the browser is /usr/bin/chromium.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember whether setup or the test itself failed, for the page fixture's screenshot."""
    report = yield
    if report.failed and report.when in ("setup", "call"):
        item.stash[_FAILED] = True
    return report


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (never `playwright install`).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, request):
    """Opens 1280x800 pages on a URL, ready for input (``ready``: a selector, the app's prompt box by default);
    screenshots them into test-artifacts/ if the test fails."""
    contexts = []

    def opener(url: str, ready: str = "#pg-prompt textarea"):
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector(ready)
        return page

    expect.set_options(timeout=30_000)
    yield opener
    failed = request.node.stash.get(_FAILED, False)
    for number, context in enumerate(contexts):
        if failed:
            ARTIFACTS.mkdir(exist_ok=True)
            for page in context.pages:
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{number}.png"), full_page=True)
        context.close()


@pytest.fixture
def page(open_page, app_url):
    """A fresh page on the test app (see ``open_page``)."""
    return open_page(app_url)


def grid_rows(page, selector: str) -> int:
    """Data rows of a Gradio dataframe (it renders only the visible rows; aria-rowcount counts all, header included)."""
    return int(page.locator(f"{selector} [role=grid]").get_attribute("aria-rowcount")) - 1


def grid_row(page, selector: str, number: int) -> list[str]:
    """The cell texts of data row ``number`` (from 1) of a Gradio dataframe."""
    cells = page.locator(f"{selector} [role=row][aria-rowindex='{number + 1}'] [role=gridcell]")
    return [text.strip() for text in cells.all_inner_texts()]


def set_slider(page, selector: str, value: float) -> None:
    """Type a value into a Gradio slider's number box and leave it, as a user does."""
    box = page.locator(f"{selector} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def picture_box(page, selector: str) -> dict:
    """Where the picture is drawn on the screen inside an image element (object-fit: contain, centred)."""
    return page.locator(selector).evaluate("""(img) => {
        const r = img.getBoundingClientRect();
        const k = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
        return { x: r.left + (r.width - img.naturalWidth * k) / 2, y: r.top + (r.height - img.naturalHeight * k) / 2,
                 width: img.naturalWidth * k, height: img.naturalHeight * k, natural: img.naturalWidth };
    }""")


def smooth_png(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    """A smooth PNG (JPEG-friendly, unlike noise) that differs per seed, so caches start cold for it."""
    coarse = np.random.default_rng(seed).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR).save(buffer, format="PNG")
    return buffer.getvalue()
