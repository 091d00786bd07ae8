"""The overview's live poller in real headless Chromium: it never overlaps its own requests, it backs off
while the tab is hidden, and it refreshes at once when the tab is shown again.

Requests are counted as the page makes them (Playwright's request events); the slow endpoint is the
real ``/dashboard/live/overview`` held back by the browser's request routing until the test releases
it. The poll period is shortened on the page (``data-live-period``) so that a poller which did not wait
for its answers, or ignored visibility, would show many more requests in the same span.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from support.dashboard_helpers import browser_login
from support.gateway_process import GatewayProcess

pytestmark = pytest.mark.browser
LIVE = "/dashboard/live/overview"


class Traffic:
    """Every live-overview request the page starts, and how many were in flight at once at most."""

    def __init__(self, page: Any) -> None:
        self.started: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        page.on("request", self._start)
        page.on("requestfinished", self._end)
        page.on("requestfailed", self._end)

    def _start(self, request: Any) -> None:
        if LIVE in request.url:
            self.started.append(request.url)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _end(self, request: Any) -> None:
        if LIVE in request.url:
            self.in_flight -= 1


def _wait_until(page: Any, condition: Any, seconds: float = 15.0) -> None:
    """Let the page run until ``condition()`` holds (Playwright events are delivered while it waits)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        page.wait_for_timeout(50)


def _set_period(page: Any, ms: int) -> None:
    page.evaluate(f"document.getElementById('overview').setAttribute('data-live-period', '{ms}')")


def _refresh_now(page: Any) -> None:
    """What typing in the filter does: ask the region's poller for a refresh right now."""
    page.evaluate("document.getElementById('overview').axmePoller.now()")


def _set_hidden(page: Any, hidden: bool) -> None:
    state = "hidden" if hidden else "visible"
    page.evaluate(
        f"Object.defineProperty(document, 'hidden', {{configurable: true, get: () => {str(hidden).lower()}}});"
        f"Object.defineProperty(document, 'visibilityState', {{configurable: true, get: () => '{state}'}});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )


def test_a_slow_refresh_is_never_overlapped(page: Any, gateway: GatewayProcess) -> None:
    browser_login(page, gateway, gateway.admin_key)
    traffic = Traffic(page)
    held: list[Any] = []
    holding = [True]
    page.route(f"**{LIVE}*", lambda route: held.append(route) if holding[0] else route.continue_())
    _set_period(page, 100)
    _refresh_now(page)
    _wait_until(page, lambda: len(held) == 1)
    for _ in range(5):  # the filter asks again and again while the answer is slow to come
        page.wait_for_timeout(300)
        _refresh_now(page)
    page.wait_for_timeout(500)
    # 2 s of a 100 ms period with the answer outstanding: one request, not twenty
    assert len(traffic.started) == 1 and traffic.max_in_flight == 1

    held.pop().continue_()  # the answer arrives: the refreshes asked for meanwhile make exactly one more request
    _wait_until(page, lambda: len(held) == 1)
    page.wait_for_timeout(500)
    assert len(traffic.started) == 2 and traffic.max_in_flight == 1

    holding[0] = False
    held.pop().continue_()
    _wait_until(page, lambda: len(traffic.started) >= 8)  # polling goes on at its period, one request at a time
    assert traffic.max_in_flight == 1
    assert page.locator("#overview[data-refreshed] table.agents").count() == 1  # and the answers were swapped in


def test_hidden_tab_backs_off_and_resumes_at_once_when_shown(page: Any, gateway: GatewayProcess) -> None:
    browser_login(page, gateway, gateway.admin_key)
    traffic = Traffic(page)
    _set_period(page, 250)
    _refresh_now(page)
    _wait_until(page, lambda: len(traffic.started) >= 4)  # visible: it polls every 250 ms

    _set_hidden(page, True)
    _wait_until(page, lambda: traffic.in_flight == 0)
    before = len(traffic.started)
    page.wait_for_timeout(2000)  # eight periods: a poller that ignored visibility would have made ~8 requests
    assert len(traffic.started) == before

    _set_period(page, 600_000)  # from here on, no scheduled poll can explain a request: only the page being shown
    page.wait_for_timeout(500)  # (a timer set at the old period has run out by now)
    with page.expect_request(lambda r: LIVE in r.url, timeout=10_000):
        _set_hidden(page, False)
    assert len(traffic.started) == before + 1 and traffic.max_in_flight == 1
