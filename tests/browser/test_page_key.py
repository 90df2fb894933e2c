"""The page with API keys (CONTRACT §5), in headless Chromium: against the real HTTP server and API with an
in-memory coordinator, behind a test-only gate that wants `Authorization: Bearer` on everything but the page and
/health. The page itself loads without a key; it asks for one when the API answers 401 (and says so on 403), keeps
it in sessionStorage and sends it as a Bearer token."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from node.config import HttpConfig
from node.errors import MurmurError
from node.http.api import make_handler
from node.http.page import STATIC_FILES
from node.http.server import Request, Response, error_response
from node.metrics import HttpMetrics
from tests.browser.chrome import available, chrome, wait_for
from tests.http.httpkit import FakeCoordinator
from tests.support.stub import serving

pytestmark = pytest.mark.slow
GOOD, LOW = "sekrit-admin", "sekrit-too-low"


class Unauthorized(MurmurError):
    status = 401
    code = "unauthorized"


class Forbidden(MurmurError):
    status = 403
    code = "forbidden"


class Gate:
    """Answers 401 without the good key, 403 with the low one; records the Authorization headers it saw."""

    def __init__(self) -> None:
        coord = FakeCoordinator()
        self.inner = make_handler(coord, HttpMetrics(), HttpConfig(), "n1", now_ms=coord_now)
        self.seen: list[str] = []

    async def __call__(self, req: Request) -> Response:
        if req.path in STATIC_FILES or req.path == "/health":
            return await self.inner(req)
        auth = (req.header(b"authorization") or b"").decode()
        self.seen.append(auth)
        if auth == f"Bearer {GOOD}":
            return await self.inner(req)
        if auth == f"Bearer {LOW}":
            return error_response(Forbidden("the key's role is too low for this"))
        return error_response(Unauthorized("an API key is needed"))


def coord_now() -> int:
    return 1_700_000_000_000


@pytest.fixture
def gated() -> Iterator[tuple[str, Gate]]:
    why = available()
    if why is not None:
        pytest.fail(why)
    gate = Gate()
    with serving(gate) as url:
        yield url, gate


def dialog_open(d: WebDriver) -> bool:
    return bool(d.execute_script("return document.getElementById('key-dialog').open"))


def enter_key(d: WebDriver, key: str) -> None:
    box = d.find_element(By.ID, "api-key")
    box.clear()
    box.send_keys(key)
    d.find_element(By.ID, "key-save").click()
    wait_for(lambda: not dialog_open(d), why="the dialog to close")


def test_the_page_asks_for_a_key_and_sends_it(gated: tuple[str, Gate]) -> None:
    url, gate = gated
    for i in range(3):
        r = httpx.post(url + "/tweets", json={"text": f"keyed tweet {i}", "user": "k", "id": 10 + i},
                       headers={"authorization": f"Bearer {GOOD}"})
        assert r.status_code == 201, r.text
    with chrome() as d:
        d.get(url + "/")
        assert d.find_element(By.ID, "q").is_displayed(), "the page itself needs no key"
        wait_for(lambda: dialog_open(d), why="the key dialog")
        assert "401" in d.find_element(By.ID, "key-why").text
        enter_key(d, LOW)
        # a user action that fails with 403 asks again, and says why
        box = d.find_element(By.ID, "q")
        box.send_keys("keyed" + Keys.ENTER)
        wait_for(lambda: dialog_open(d), why="the key dialog after a 403")
        assert "403" in d.find_element(By.ID, "key-why").text
        enter_key(d, GOOD)
        wait_for(lambda: d.find_element(By.ID, "results").get_attribute("data-shown") == "3", why="results")
        ids = [e.get_attribute("data-id") for e in d.find_elements(By.CSS_SELECTOR, "#results li.tweet")]
        assert ids == ["12", "11", "10"]
        wait_for(lambda: d.find_elements(By.CSS_SELECTOR, '#members tbody tr[data-node="n1"]'), why="cluster")
        assert d.execute_script("return sessionStorage.getItem('murmur.apiKey')") == GOOD
        assert f"Bearer {GOOD}" in gate.seen and f"Bearer {LOW}" in gate.seen
        # forgetting the key: the next calls go without one
        d.find_element(By.ID, "key-button").click()
        wait_for(lambda: dialog_open(d), why="the key dialog from the key button")
        d.find_element(By.ID, "key-forget").click()
        # The dialog's close event is queued as a task after the click: wait for it, do not race it. Then the
        # page asks again at once: the search it re-runs without a key is answered 401.
        wait_for(lambda: d.execute_script("return sessionStorage.getItem('murmur.apiKey')") is None,
                 why="the key to be forgotten")
        wait_for(lambda: dialog_open(d) and "401" in d.find_element(By.ID, "key-why").text,
                 why="the key dialog after the search without a key")
        assert d.find_element(By.ID, "key-button").text == "key"
