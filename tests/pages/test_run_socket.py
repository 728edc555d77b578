"""The page's run websocket stops reconnecting on exactly the close codes orpo_dash.protocol names
final; the page gets them from the server, so the JS holds no copy that could drift."""

from __future__ import annotations

import pytest

from orpo_dash.protocol import (
    BROWSER_FINAL_CLOSE_CODES,
    CLOSE_BAD_PROTOCOL,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHORIZED,
)

pytestmark = pytest.mark.browser


def test_the_page_stops_reconnecting_on_the_protocols_final_close_codes(live_server, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(live_server.url + "/")
    assert page.evaluate("Dash.FINAL_CLOSE_CODES") == list(BROWSER_FINAL_CLOSE_CODES) == [CLOSE_BAD_PROTOCOL, CLOSE_UNAUTHORIZED, CLOSE_NOT_FOUND]
    # A run that does not exist: the server closes with CLOSE_NOT_FOUND and the page gives up.
    page.evaluate("""() => {
        window.socketStates = [];
        new Dash.RunSocket(987654, { afterStep: () => -1, onMessage: () => {},
                                     onState: (state) => window.socketStates.push(state) });
    }""")
    page.wait_for_function("() => window.socketStates.includes('closed')")  # a function: the CSP forbids eval of a bare expression
    page.wait_for_timeout(1500)  # a reconnect would come after 500 ms
    assert page.evaluate("window.socketStates") == ["connecting", "live", "closed"]
