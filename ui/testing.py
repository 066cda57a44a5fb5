"""Driving the app's page in a browser (playwright's sync API), shared by the tests, the benchmarks and the README's
screenshots: connect the Label Studio tab, pick a project, open a task. Nothing in the app imports it."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def connect(page: Page, url: str, token: str) -> None:
    """Open the Label Studio tab and connect with ``url`` and ``token`` (the answer is the test's to check)."""
    page.get_by_role("tab", name="Label Studio").click()
    page.locator("#ls-url textarea").fill(url)
    page.locator("#ls-token input").fill(token)
    page.locator("#ls-connect").click()


def choose_project(page: Page, url: str, token: str, project: int) -> None:
    """Connect, then pick project ``project`` from the list."""
    connect(page, url, token)
    expect(page.locator("#ls-connection")).to_contain_text("Connected")
    page.locator("#ls-project input").click()
    page.get_by_role("option", name=re.compile(rf"\(#{project}\)")).click()


def open_task(page: Page, task: int, timeout: float = 30_000) -> None:
    """Click task ``task`` in the list and wait for its review (its detections, kept or not)."""
    page.locator("#ls-tasks [role=gridcell][data-col='0']").filter(has_text=re.compile(rf"^\s*{task}\s*$")).click()
    expect(page.locator("#ls-task")).to_contain_text(f"Task #{task}")
    expect(page.locator("#ls-kept")).to_contain_text("kept", timeout=timeout)
