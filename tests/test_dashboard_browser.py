"""The dashboard in a real browser: headless Chromium (Debian's package; `make test` installs it when it is
missing) driven by Selenium through Debian's chromedriver. moto's server and the dashboard run on 127.0.0.1,
each on a port it bound itself, with a seeded catalog (a month of history, a failed plan, held deletions, a
verification finding, a restore waiting for a thaw); one browser session serves the module.

Every test gets a catalog seeded afresh (some start a backup or a verification from the page): none can see
what another left, whatever order the workers run them in. Pages that reload themselves while something runs
(a backup's, a verification's) are read only once the server says it has ended, and are then loaded afresh:
an element found on a page that is reloading belongs to a document that is going away, and reading it fails
with whatever the browser was doing at that instant.

The full page is saved as a screenshot: build/dashboard.png, or where DASHBOARD_SCREENSHOT says
(`make screenshot` refreshes docs/dashboard.png, the picture on the front page and in the docs), and as a
phone shows it in build/dashboard-phone.png.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.api.backups import list_backups
from chalicelib.aws import Clients
from chalicelib.catalog.records import RecordStore
from chalicelib.config import Settings
from chalicelib.dashboard import pages
from chalicelib.dashboard.server import Dashboard, make, url
from chalicelib.times import utcnow
from chalicelib.jobs.dispatch import WORKER_THREAD
from tests.conftest import REGION, ROOT, STAGE_ENV
from tests.dashboard_helpers import World, seed

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
SCREENSHOT = Path(os.environ.get("DASHBOARD_SCREENSHOT") or ROOT / "build" / "dashboard.png")
# The flags this machine's Chromium needs: no sandbox as root, and no calls home (the network is closed).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars")
ENV = dict(STAGE_ENV, WORKER_MODE="thread", TIME_ZONE="Asia/Manila")
WAIT = 60.0
ENV_PLANS = ("documents", "photos", "database")


def require_browser() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    message = f"{CHROMIUM} or {CHROMEDRIVER} is missing: `make browser` installs Debian's chromium and chromium-driver"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI skips nothing
    pytest.skip(message)


class EmulatorSession(boto3.session.Session):
    """A session whose clients all talk to the emulator, with dummy credentials."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(aws_access_key_id="testing", aws_secret_access_key="testing", aws_session_token="testing",
                         region_name=REGION)
        self.endpoint = endpoint

    def client(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("endpoint_url", self.endpoint)
        return super().client(*args, **kwargs)


@dataclass
class Stack:
    settings: Settings
    clients: Any
    world: World
    app: Dashboard
    url: str

    def newest(self, limit: int = 5) -> list[dict[str, Any]]:
        return list_backups(RecordStore(self.clients.s3, self.settings.plans.catalog_bucket), self.settings.plans,
                            {"limit": str(limit)})["backups"]

    def wait_until_finished(self) -> None:
        deadline = time.monotonic() + WAIT
        while any(b["status"] == "RUNNING" for b in self.newest()):
            assert time.monotonic() < deadline, f"a backup is still running after {WAIT:.0f} s: {self.newest()}"
            time.sleep(0.2)

    def wait_until_verified(self, verification_id: str) -> dict[str, Any]:
        """The verification as its page shows it, once it has ended."""
        deadline = time.monotonic() + WAIT
        while (found := pages.verification(self.settings, self.clients, verification_id))["status"] == "RUNNING":
            assert time.monotonic() < deadline, f"verification {verification_id} still running after {WAIT:.0f} s"
            time.sleep(0.2)
        return found


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    """moto's server, on a port it bound itself."""
    require_browser()
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield "http://127.0.0.1:%d" % server.get_host_and_port()[1]
    finally:
        server.stop()


@pytest.fixture
def stack(emulator: str) -> Iterator[Stack]:
    """A catalog seeded afresh for each test, and the dashboard serving it."""
    urllib.request.urlopen(urllib.request.Request(f"{emulator}/moto-api/reset", method="POST"), timeout=10).close()
    settings = Settings.from_environ(ENV)
    clients = Clients(session=EmulatorSession(emulator))
    world = seed(settings, clients, ENV, utcnow())
    app = Dashboard(settings, clients, stage="local", local=True)
    server = make(app, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    running = Stack(settings, clients, world, app, url(server))
    try:
        yield running
    finally:
        server.shutdown()
        server.server_close()
        # A backup or verification the page started runs in a thread of this process, and goes on writing
        # (sealing, alerting) after its record says it ended: it must be done before the next test resets
        # the emulator, or its late writes would land in that test's catalog.
        deadline = time.monotonic() + WAIT
        for thread in threading.enumerate():
            if thread.name.startswith(WORKER_THREAD):
                thread.join(max(0.0, deadline - time.monotonic()))
                assert not thread.is_alive(), f"{thread.name} still running after {WAIT:.0f} s"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.TemporaryDirectory(prefix="dashboard-chromium-")
    options.add_argument(f"--user-data-dir={profile.name}")
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        profile.cleanup()


def css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def css_all(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def wait_for(driver: Any, condition: Any, what: str) -> Any:
    from selenium.common.exceptions import NoSuchElementException
    from selenium.webdriver.support.ui import WebDriverWait

    # An element not there yet is "not yet". (Pages that reload themselves are never read while they do.)
    ignored = (NoSuchElementException,)
    return WebDriverWait(driver, WAIT, poll_frequency=0.1, ignored_exceptions=ignored).until(condition, what)


def test_the_page_shows_every_plan_a_failure_held_deletions_and_the_charts(browser: Any, stack: Stack) -> None:
    browser.get(stack.url)
    assert "Asia/Manila (PST, UTC+08:00)" in css(browser, "#zone").text
    statuses = {name: css(browser, f'#plans tr[data-plan="{name}"] td.last .badge').text for name in ENV_PLANS}
    assert statuses == {"documents": "PARTIAL", "photos": "FAILED", "database": "SUCCEEDED"}
    reason = css(browser, '#plans tr[data-plan="photos"] .reason').text
    assert "s3 source 'photos'" in reason and "NoSuchBucket" in reason
    held = css(browser, "#held-deletions").text
    assert f"documents: 4 held back in {stack.world.latest}" in held
    assert stack.world.held_prune in css(browser, '#held-prunes li[data-plan="database"]').text
    assert "MISSING" in css(browser, "#verification").text and "WAITING_FOR_THAW" in css(browser, "#restores").text
    # The charts are drawn: the marks and bars have a size on the screen, and the stylesheet was applied
    # (a FAILED badge is not on a transparent background).
    timeline = css(browser, 'svg[data-chart="timeline"]')
    assert timeline.size["width"] > 600 and timeline.size["height"] > 80
    marks = css_all(browser, 'svg[data-chart="timeline"] .mark')
    assert len(marks) >= 4 * (len(stack.world.history) + 2) - 4  # (some history days back up fewer plans' marks)
    assert marks[0].size["width"] > 0
    assert len(css_all(browser, 'svg[data-chart="bytes-copied"] rect.bar')) >= 29
    assert css_all(browser, 'svg[data-chart="stored"] polyline')
    badge = css(browser, '#plans tr[data-plan="photos"] td.last .badge')
    assert badge.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "transparent")

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, height + 40)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # On a phone the page reflows instead of scrolling sideways (wide charts scroll inside their own box).
    browser.set_window_size(390, 900)
    browser.get(stack.url)
    overflow = browser.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    assert css(browser, '#plans tr[data-plan="photos"]').size["width"] <= 390
    browser.set_window_size(390, browser.execute_script("return document.documentElement.scrollHeight") + 40)
    (ROOT / "build").mkdir(exist_ok=True)
    browser.save_screenshot(str(ROOT / "build" / "dashboard-phone.png"))
    browser.set_window_size(1280, 1000)


def test_back_up_now_from_the_page_appears_in_get_backups(browser: Any, stack: Stack, project_dir: Path) -> None:
    browser.get(stack.url)
    before = {b["backup_id"] for b in stack.newest(20)}
    css(browser, "#backup-now button").click()
    wait_for(browser, lambda d: "/backups/" in d.current_url, "the backup's page after Back up now")
    page = browser.current_url
    backup_id = page.rsplit("/", 1)[1]
    assert backup_id not in before

    # GET /backups, through the API's own route, lists it first.
    from chalice.test import Client

    import app as app_module

    app_module._clients = stack.clients
    try:
        with Client(app_module.app, stage_name="local", project_dir=str(project_dir)) as client:
            listed = client.http.get("/backups?limit=5").json_body["backups"]
    finally:
        app_module._clients = None
    assert listed[0]["backup_id"] == backup_id and listed[0]["trigger"] == "api"

    # While it runs its page reloads itself: it is read once the backup has ended, loaded afresh.
    stack.wait_until_finished()
    browser.get(page)
    assert backup_id in css(browser, "h1").text
    assert css(browser, "h1 .badge").text in ("SUCCEEDED", "PARTIAL", "FAILED")
    assert {r.get_attribute("data-plan") for r in css_all(browser, "#results tbody tr")} == set(ENV_PLANS)


def test_a_post_without_the_pages_token_is_refused(stack: Stack) -> None:
    before = stack.newest(1)[0]["backup_id"]

    def post(body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        request = urllib.request.Request(stack.url + "backup", data=body, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded", **headers})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    status, text = post(b"", {})
    assert status == 403 and "no page token" in text
    status, text = post(f"token={stack.app.token}".encode(), {"Origin": "https://elsewhere.example"})
    assert status == 403 and "another origin" in text
    assert stack.newest(1)[0]["backup_id"] == before


def test_a_backups_page_quotes_a_restore_and_verifies(browser: Any, stack: Stack) -> None:
    page = f"{stack.url}backups/{stack.world.latest}?plan=documents"
    browser.get(page)
    keys = [row.text for row in css_all(browser, "#objects tbody td.key")]
    assert keys == [f"reports/report-{i}.txt" for i in range(4, 10)]
    css(browser, "#quote-link").click()
    wait_for(browser, lambda d: "/quote" in d.current_url and css_all(d, "#quote-objects"), "the quote page")
    assert css(browser, "#quote-objects").text.startswith("6 ")
    browser.back()
    wait_for(browser, lambda d: d.current_url == page and css_all(d, "#verify-form button"), "the backup's page again")
    css(browser, "#verify-form button").click()
    # The check is recorded and runs in the worker (a thread here); its page reloads itself until it ends, so
    # it is read once the server says it has ended, loaded afresh.
    wait_for(browser, lambda d: "/verifications/check-" in d.current_url, "the verification's page")
    verification = browser.current_url
    ended = stack.wait_until_verified(verification.rsplit("/", 1)[1])
    assert ended["status"] != "RUNNING"
    browser.get(verification)
    assert css(browser, "#verify").get_attribute("data-status") == ended["status"]
    result = css(browser, "#verify").text
    assert "Problems found" in result and "MISSING" in result and stack.world.missing_key in result
    # The snapshot's 6 documents and the table's export (photos failed and stored nothing).
    assert css(browser, "#verify-checked").text == "7"
