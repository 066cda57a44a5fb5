"""Make the README's screenshots from the toy models (``python app.py --demo``'s), so they show right answers and
say they are toy models: ``python -m docs.screenshots`` (Debian chromium, a local Label Studio; about a minute).

docs/playground.png: the playground on the first example scene. docs/labelstudio.png: the Label Studio tab on a
project of example scenes with ball / box / pyramid labels, the first task open. docs/canvas-desktop.png and
docs/canvas-phone.png: the review canvas of that task at 1280x800 and 390x844 (#1 chosen, the pointer over the last
row, masks shown).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from app import create_app
from pipeline.testing import shapes as S
from pipeline.testing.demo import demo_examples
from sync import BackendSettings
from sync.testing import running_label_studio, serve
from ui.testing import choose_project

HERE = Path(__file__).parent
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <TextArea name="prompt" toName="image" editable="true" rows="2" maxSubmissions="1" showSubmitButton="true"/>
  <RectangleLabels name="label" toName="image">
    <Label value="box" background="#e11d48" predicted_values="red square"/>
    <Label value="ball" background="#2563eb" predicted_values="blue circle"/>
    <Label value="pyramid" background="#16a34a" predicted_values="green triangle"/>
  </RectangleLabels>
  <BrushLabels name="mask" toName="image">
    <Label value="box" background="#e11d48"/><Label value="ball" background="#2563eb"/>
    <Label value="pyramid" background="#16a34a"/>
  </BrushLabels>
</View>"""


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="groundlabel-shots-"))
    examples = demo_examples(work / "scenes")
    scenes = [Path(path) for path, _ in examples]
    with (
        running_label_studio(os.environ, work / "label-studio") as label_studio,
        serve(create_app(BackendSettings(state_dir=work / "state"), demo=True)) as url,
        sync_playwright() as playwright,
    ):
        project = label_studio.create_project(CONFIG, title="Shapes (toy models)")
        label_studio.upload_images(project, {path.name: path.read_bytes() for path in scenes})
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url)
        page.get_by_text(examples[0][1], exact=True).first.click()  # the first example: its scene and prompt
        expect(page.locator("#pg-message")).to_contain_text("detections for", timeout=60_000)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(1000)
        page.screenshot(path=str(HERE / "playground.png"))

        choose_project(page, label_studio.url, label_studio.token, project)
        page.locator("#ls-tasks [role=gridcell][data-col='0']").first.click()
        expect(page.locator("#ls-kept")).to_contain_text("kept", timeout=60_000)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(1000)
        page.screenshot(path=str(HERE / "labelstudio.png"))
        canvas(page, HERE / "canvas-desktop.png")
        phone = browser.new_page(
            viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
        )
        phone.goto(url)
        choose_project(phone, label_studio.url, label_studio.token, project)
        phone.locator("#ls-tasks [role=gridcell][data-col='0']").first.click()
        expect(phone.locator("#ls-kept")).to_contain_text("kept", timeout=60_000)
        canvas(phone, HERE / "canvas-phone.png")
        browser.close()
    print(
        f"wrote {HERE / 'playground.png'}, {HERE / 'labelstudio.png'}, {HERE / 'canvas-desktop.png'} and "
        f"{HERE / 'canvas-phone.png'} (toy models: {S.shapes_detector_dir()})"
    )


def canvas(page, path: Path) -> None:
    """The open task's review canvas: #1 chosen, the pointer over the last row."""
    page.locator("#ls-click-kind").get_by_label("selects a box").check()
    page.get_by_role("combobox", name="A click repairs", exact=True).click()
    page.get_by_role("option", name=re.compile(r"^#1 ")).click()
    page.locator("#ls-preview").scroll_into_view_if_needed()
    page.locator("#ls-review .gl-review-row").last.hover()
    page.wait_for_timeout(1000)
    page.locator("#ls-preview").evaluate("(e) => window.scrollBy(0, e.getBoundingClientRect().top - 8)")
    page.wait_for_timeout(500)
    page.screenshot(path=str(path))


if __name__ == "__main__":
    main()
