"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real stack:
the scripted model, a collector, a proxy holding calls for approval, and the dashboard process.

Each test saves screenshots of what it saw under its pytest tmp folder (``*.png``).
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pyarrow.parquet as pq
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from factories import clients, processes
from support import AUTH, BASTION, TOKENS, copy_policies, free_ports

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A laptop screen: the wide layout must fit it.
VIEWPORT = {"width": 1440, "height": 900}
EXTRA_RULES = "p, role:assistant, model:scripted-review, *, review, model-needs-approval,\n"
APPROVALS = "\napprovals:\n  timeout_seconds: 120\n"
PAGES = {"Overview": "", "Audit trail": "audit", "Trace": "trace", "Approvals": "approvals", "Alerts": "alerts"}
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed (.ci/run installs it)")


@dataclass
class Stack:
    dashboard: str
    collector: str
    proxy: str
    key: str

    def chat(self, model: str, text: str = "hello") -> str:
        client = clients.openai_client(f"{self.proxy}/openai/v1", self.key)
        try:
            reply = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}], timeout=120
            )
        except openai.PermissionDeniedError as e:
            return f"denied: {e.message}"
        return reply.choices[0].message.content or ""

    def approvals(self, status: str | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else {}
        return list(httpx.get(auth=AUTH, url=f"{self.collector}/api/approvals", params=params).json()["items"])

    def pending(
        self, count: int, timeout: float = 30, besides: frozenset[str] | set[str] = frozenset()
    ) -> list[dict[str, Any]]:
        """The ``count`` calls held most recently (not those in ``besides``), once they are held."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [a for a in self.approvals("pending") if a["id"] not in besides]
            if len(found) >= count:
                return found[:count]
            time.sleep(0.1)
        raise TimeoutError(f"fewer than {count} pending approvals")

    def trace_id(self, timeout: float = 30) -> str:
        """The trace of the newest audit record, once the proxy's span reached the collector."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = httpx.get(auth=AUTH, url=f"{self.collector}/api/audit", params={"limit": 1}).json()["items"]
            if items:
                return str(items[0]["trace_id"])
            time.sleep(0.2)
        raise TimeoutError("no audit record")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("browser-stack")
    policies = tmp / "policies"
    copy_policies(policies, "tests")
    with (policies / "policy.csv").open("a") as f:
        f.write(EXTRA_RULES)
    with (policies / "bastion.yaml").open("a") as f:
        f.write(APPROVALS)
    (policies / "keys.yaml").write_text("keys: []\n")
    key = (
        subprocess.run(
            [*BASTION, "keys", "create", "--agent", "agent-1", "--role", "assistant", "--policies", str(policies)],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    model_port, collector_port, dashboard_port, *proxy_ports = free_ports(5)
    env = {
        "BASTION_OPENAI_UPSTREAM": processes.url(model_port) + "/",
        "OPENAI_API_KEY": "provider-key",
        "BASTION_POLICIES": str(policies),
    }
    collector_url = processes.url(collector_port)
    with (
        processes.scripted_model(tmp, model_port) as model,
        processes.collector(tmp, collector_port, env) as collector,
        processes.proxy(tmp, "proxy", proxy_ports, env, extra_args=["--collector-url", collector_url]) as proxy,
        processes.dashboard(tmp, dashboard_port, collector_url) as dashboard,
    ):
        processes.ready(model, collector, proxy, dashboard)
        stack = Stack(dashboard.url, collector.url, proxy.url, key)
        assert not stack.chat("scripted-small").startswith("denied")
        assert stack.chat("scripted-large").startswith("denied")
        yield stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    yield opened
    context.close()


_pool = ThreadPoolExecutor(max_workers=4)


def in_background[T](fn: Callable[[], T]) -> Future[T]:
    return _pool.submit(fn)


def sign_in(page: Page, role: str = "admin") -> None:
    """Sign in from the sidebar's token box, on whatever page is open."""
    sidebar = page.get_by_test_id("stSidebar")
    box = sidebar.get_by_label("Operator token", exact=True)
    expect(box).to_be_visible()
    box.fill(TOKENS[role])
    box.press("Enter")
    expect(sidebar.get_by_text(f"Signed in as test-{role}")).to_be_visible()


def shot(page: Page, folder: Path, name: str) -> None:
    page.wait_for_timeout(300)  # let the last delta paint
    page.screenshot(path=folder / f"{name}.png", full_page=True)


def heading(page: Page, title: str) -> None:
    expect(page.get_by_role("heading", name=title, exact=True).first).to_be_visible()


def test_sign_in_and_open_every_page(stack: Stack, page: Page, tmp_path: Path) -> None:
    page.goto(stack.dashboard)
    expect(page.get_by_text("Sign in with your operator token")).to_be_visible()
    shot(page, tmp_path, "sign-in")
    sign_in(page)
    heading(page, "Overview")
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("connected")).to_be_visible()
    for title, path in PAGES.items():
        sidebar.get_by_role("link", name=title).click()
        expect(page).to_have_url(re.compile(f"/{path}$"))
        heading(page, title)
        if path == "audit":
            expect(page.get_by_text("scripted-small").first).to_be_attached()  # a canvas grid: cells are hidden
        expect(page.get_by_test_id("stException")).to_have_count(0)
        shot(page, tmp_path, path or "overview")


@pytest.mark.parametrize("path", ["audit", "approvals", "alerts", "trace"])
def test_a_deep_link_shows_the_apps_sidebar_and_sign_in(stack: Stack, page: Page, path: str, tmp_path: Path) -> None:
    query = f"?trace_id={stack.trace_id()}" if path == "trace" else ""
    page.goto(f"{stack.dashboard}/{path}{query}")
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_label("Operator token", exact=True)).to_be_visible()
    expect(sidebar.get_by_text("Collector:")).to_be_visible()
    sign_in(page)
    title = next(t for t, p in PAGES.items() if p == path)
    heading(page, title)
    assert page.url.endswith(f"/{path}{query}"), page.url
    if path == "trace":
        expect(page.get_by_text("Spans").first).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
    shot(page, tmp_path, f"deep-{path}")


def test_the_audit_table_fits_a_laptop_screen(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.dashboard}/audit")
    sign_in(page)
    table = page.get_by_test_id("stDataFrame").first
    expect(table).to_be_visible()
    box = table.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"], box
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
    # and every column shows without scrolling the table sideways
    scroller = table.locator(".dvn-scroller").first
    widths = scroller.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert widths[0] <= widths[1], widths


def test_approve_a_held_call_and_see_it_in_the_history(stack: Stack, page: Page, tmp_path: Path) -> None:
    before = {a["id"] for a in stack.approvals()}
    held = in_background(lambda: stack.chat("scripted-review", "pay the invoice"))
    (approval,) = stack.pending(1, besides=before)
    page.goto(f"{stack.dashboard}/approvals")
    sign_in(page)
    heading(page, "Approvals")
    reason = page.locator(f".st-key-reason_{approval['id']} input")  # Streamlit marks elements by key
    reason.fill("invoice checked")
    reason.press("Enter")
    shot(page, tmp_path, "approvals-waiting")
    page.locator(f".st-key-approve_{approval['id']} button").click()
    expect(page.get_by_text(f"{approval['id']}: approved by test-admin")).to_be_visible()
    assert not held.result(timeout=60).startswith("denied")
    page.get_by_role("tab", name="History").click()
    history = page.get_by_test_id("stDataFrame").filter(has_text="approved")
    expect(history).to_be_visible()
    expect(page.get_by_text("No decisions yet.")).to_have_count(0)
    shot(page, tmp_path, "approvals-history")
    (record,) = [a for a in stack.approvals() if a["id"] == approval["id"]]
    assert (record["status"], record["approver"], record["decision_reason"]) == (
        "approved",
        "test-admin",
        "invoice checked",
    )


def test_batch_approve_two_with_one_reason(stack: Stack, page: Page, tmp_path: Path) -> None:
    before = {a["id"] for a in stack.approvals()}
    calls = [in_background(lambda n=n: stack.chat("scripted-review", f"payment {n}")) for n in range(2)]
    waiting = stack.pending(2, besides=before)
    page.goto(f"{stack.dashboard}/approvals")
    sign_in(page)
    chooser = page.get_by_test_id("stMultiSelect")
    for approval in waiting:
        chooser.click()
        page.get_by_role("option", name=re.compile(approval["id"])).click()
    page.keyboard.press("Escape")
    reason = page.get_by_label("Reason for the selected", exact=True)
    reason.fill("both checked")
    reason.press("Enter")
    shot(page, tmp_path, "approvals-batch")
    page.get_by_role("button", name="Approve 2 selected").click()
    for approval in waiting:
        expect(page.get_by_text(f"{approval['id']}: approved by test-admin")).to_be_visible()
    for call in calls:
        assert not call.result(timeout=60).startswith("denied")
    decided = {a["id"]: a for a in stack.approvals()}
    for approval in waiting:
        assert decided[approval["id"]]["status"] == "approved"
        assert decided[approval["id"]]["decision_reason"] == "both checked"


def test_the_overview_charts_the_collectors_aggregates(stack: Stack, page: Page, tmp_path: Path) -> None:
    stack.trace_id()  # the calls made at start-up are stored
    since = "2000-01-01T00:00:00+00:00"
    data = httpx.get(auth=AUTH, url=f"{stack.collector}/api/overview", params={"since": since, "step": 60}).json()
    audit = httpx.get(auth=AUTH, url=f"{stack.collector}/api/audit", params={"since": since, "limit": 500}).json()
    decided: dict[str, int] = {}
    for item in audit["items"]:
        decided[item["decision"]] = decided.get(item["decision"], 0) + 1
    totals: dict[str, int] = {}
    for point in data["decisions_over_time"]:
        totals[point["decision"]] = totals.get(point["decision"], 0) + point["count"]
    assert totals == decided and totals["deny"] >= 1
    assert {"rule": "no-large-models", "decision": "deny", "count": 1} in data["top_rules"]
    (agent,) = [a for a in data["agents"] if a["agent_id"] == "agent-1"]
    assert agent["denials"] == 1 and agent["calls"] == sum(decided.values())
    page.goto(stack.dashboard)
    sign_in(page)
    heading(page, "Overview")
    charts = page.get_by_test_id("stVegaLiteChart")
    expect(charts).to_have_count(3)
    for n in range(3):
        expect(charts.nth(n).locator("canvas, svg").first).to_be_visible()
    shot(page, tmp_path, "overview")


@pytest.mark.parametrize("name", ["CSV", "JSON Lines", "Parquet"])
def test_export_the_filtered_audit_trail(stack: Stack, page: Page, name: str, tmp_path: Path) -> None:
    page.goto(f"{stack.dashboard}/audit")
    sign_in(page)
    choose(page, "Decision", "deny")
    expect(page.get_by_text("Records 1–1,")).to_be_visible()
    choose(page, "Format", name)
    page.get_by_role("button", name="Prepare export").click()
    with page.expect_download() as started:
        page.get_by_role("button", name=re.compile(r"Download \d+ records")).click()
    saved = tmp_path / started.value.suggested_filename
    started.value.save_as(saved)
    rows = export_rows(saved.read_bytes(), name)
    expected = httpx.get(auth=AUTH, url=f"{stack.collector}/api/audit", params={"decision": "deny"}).json()["items"]
    assert rows and [r["trace_id"] for r in rows] == [r["trace_id"] for r in expected]
    assert {r["decision"] for r in rows} == {"deny"}


def choose(page: Page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    # Typed, not clicked in the list: a long list may open partly outside the viewport.
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).first.wait_for()
    page.keyboard.press("Enter")
    expect(box).to_have_value(option)


def export_rows(data: bytes, name: str) -> list[dict[str, Any]]:
    if name == "CSV":
        return list(csv.DictReader(io.StringIO(data.decode())))
    if name == "JSON Lines":
        return [json.loads(line) for line in data.decode().splitlines()]
    return list(pq.read_table(io.BytesIO(data)).to_pylist())


def test_the_overview_drills_into_the_filtered_audit_trail(stack: Stack, page: Page) -> None:
    page.goto(stack.dashboard)
    sign_in(page)
    heading(page, "Overview")
    choose(page, "Agent", "agent-1")
    choose(page, "Decision", "deny")
    page.get_by_role("button", name="Open in the audit trail").click()
    expect(page).to_have_url(re.compile("/audit$"))
    heading(page, "Audit trail")
    expect(page.get_by_role("textbox", name="Agent", exact=True)).to_have_value("agent-1")
    expect(page.get_by_role("combobox", name="Decision", exact=True)).to_have_value("deny")
    expect(page.get_by_text("Records 1–1,")).to_be_visible()
