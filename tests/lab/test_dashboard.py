"""The dashboard in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by selenium) on a lab of its own.

Lab ``fldash`` (172.17.66.0/24): 2 hosts, every fleetd with
FLEET_DASHBOARD_ADDRESS=:8080 (fleet_env is the lab's, not a host's); the
browser loads core-01's. The page is loaded once: a unit started with fleetctl
afterwards must appear as running through the page's server-sent events (the
whole view once, then patches), with no reload (a marker set in the page's
window must survive). The page of a unit running on core-02 shows its journal:
core-01's fleetd fetches it from core-02's dashboard. The screenshot is
docs/dashboard.png (README).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from fleetpy.lab import Lab
from tests.lab.conftest import own_lab
from tests.lab.fleet_helpers import ROOT, destroy_all, fleetctl, ok, write_units

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

PORT = 8080
LIVE = 20.0  # s: fleetctl start -> running on the page (systemd start included; noisy machine)
SCREENSHOT = ROOT / "docs" / "dashboard.png"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with own_lab("fldash", "172.17.66.0/24", hosts=2, etcd_members=1,
                 metadata={"core-01": "role=web,disk=hdd"},
                 fleet_env={"FLEET_DASHBOARD_ADDRESS": f":{PORT}"}) as the_lab:
        try:
            yield the_lab
        finally:
            destroy_all(the_lab)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if shutil.which("chromium") is None or not Path(CHROMEDRIVER).exists():
        pytest.fail("chromium and chromium-driver are needed: apt-get install chromium "
                    "chromium-driver (scripts/setup.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,860"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _text(driver: WebDriver, css: str) -> list[str]:
    """The elements' text; read again when the page re-rendered them meanwhile (each
    update replaces the tables' rows)."""
    for _ in range(20):
        try:
            return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{css}: re-rendered 20 times while being read")


def _attrs(driver: WebDriver, css: str, name: str) -> set[str | None]:
    for _ in range(20):
        try:
            return {e.get_attribute(name) for e in driver.find_elements(By.CSS_SELECTOR, css)}
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{css}: re-rendered 20 times while being read")


def _click(driver: WebDriver, css: str) -> bool:
    try:
        driver.find_element(By.CSS_SELECTOR, css).click()
        return True
    except StaleElementReferenceException:  # re-rendered between finding and clicking
        return False


def _wait(driver: WebDriver, what: str, check: Callable[[WebDriver], object],
          timeout: float) -> None:
    WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        check, message=f"page never showed {what} within {timeout:.0f}s")


def test_dashboard_lists_the_cluster_and_shows_a_started_unit_live(
    lab: Lab, browser: WebDriver, tmp_path: Path
) -> None:
    driver = browser
    core1, core2 = lab.hosts[0], lab.hosts[1]
    pinned = f"MachineID={core1.machine_id}"
    paths = write_units(tmp_path, {"hello.service": pinned, "before.service": "",
                                   "ssd.service": "MachineMetadata=disk=ssd",
                                   "beacon.service": "Global=true",
                                   "there.service": f"MachineID={core2.machine_id}"})
    ok(fleetctl(lab, "submit", paths[1]))
    ok(fleetctl(lab, "start", "--no-block", paths[2], paths[3], paths[4]))

    driver.get(f"http://{core1.ip}:{PORT}/")
    ids = {core1.machine_id, core2.machine_id}
    _wait(driver, "both machines",
          lambda d: _attrs(d, "#machines tbody tr", "data-machine") == ids, 15)
    rows = _text(driver, "#machines tbody tr")
    assert any(core1.ip in r and "role=web" in r and "ready" in r for r in rows), rows
    _wait(driver, "before.service and the waiting ssd.service", lambda d: (
        _text(d, "#units tr[data-unit='before.service']")
        and "disk=ssd" in " ".join(_text(d, "#waiting tr[data-unit='ssd.service']"))), 15)
    assert _text(driver, "#live") == ["live"]
    _wait(driver, "the global beacon.service on both machines", lambda d: _attrs(
        d, "#units tr[data-unit='beacon.service']", "data-machine") == ids, 20)

    driver.execute_script("window.notReloaded = 'yes'")
    versions = int(driver.execute_script("return document.body.dataset.version"))
    patches = int(driver.execute_script("return document.body.dataset.patches || 0"))
    start = time.monotonic()
    ok(fleetctl(lab, "start", "--no-block", paths[0]))
    cell = "#units tr[data-unit='hello.service'] td[data-field='{}']"
    _wait(driver, "hello.service active/running", lambda d: (
        _text(d, cell.format("active")) == ["active"]
        and _text(d, cell.format("sub")) == ["running"]), LIVE)
    took = time.monotonic() - start
    assert driver.execute_script("return window.notReloaded") == "yes"
    assert int(driver.execute_script("return document.body.dataset.version")) > versions
    assert int(driver.execute_script("return document.body.dataset.patches || 0")) > patches
    assert driver.execute_script("return document.body.dataset.views") == "1"  # once
    assert _text(driver, cell.format("machine"))[0].endswith(core1.ip)
    row = f"#machines tr[data-machine='{core1.machine_id}'] td[data-field='units']"
    _wait(driver, "hello.service among core-01's units", lambda d: "hello.service" in " ".join(
        _text(d, row)), 5)
    _wait(driver, "hello.service among recent placements", lambda d: any(
        "placed" in r for r in _text(d, "#placements tr[data-unit='hello.service']")), 5)
    print(f"hello.service shown running {took:.1f}s after fleetctl start --no-block")
    there = "#units tr[data-unit='there.service'] td[data-field='{}']"
    _wait(driver, "there.service active on core-02", lambda d: (
        _text(d, there.format("active")) == ["active"]
        and any(t.endswith(core2.ip) for t in _text(d, there.format("machine")))), LIVE)

    SCREENSHOT.parent.mkdir(exist_ok=True)
    driver.save_screenshot(str(SCREENSHOT))

    _wait(driver, "a link to hello.service's page", lambda d: _click(
        d, "#units a[href='#unit/hello.service']"), 5)
    _wait(driver, "hello.service's journal", lambda d: "Started" in " ".join(
        _text(d, "#journal")), 15)
    assert _text(driver, "#unit-name") == ["hello.service"]
    assert driver.execute_script("return window.notReloaded") == "yes"

    # A unit on core-02: core-01's fleetd fetches its journal from core-02's dashboard.
    driver.execute_script("location.hash = '#unit/there.service'")
    _wait(driver, "there.service's journal from core-02", lambda d: "Started" in " ".join(
        _text(d, "#journal")), 15)
    assert _text(driver, "#journal-where") == [f"on {core2.machine_id[:8]}"]
    assert driver.current_url.startswith(f"http://{core1.ip}:{PORT}/")
    assert driver.execute_script("return window.notReloaded") == "yes"
