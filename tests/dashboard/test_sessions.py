"""Dashboard sessions are server-side: logout and key revocation end them at once, even for a copied cookie;
the cookie is Secure over https, also behind a proxy when the gateway runs with --proxy-headers."""

from __future__ import annotations

from pathlib import Path

import httpx

from support.dashboard_helpers import csrf_of, http_login
from support.gateway_process import GatewayProcess


def _replay(gw: GatewayProcess, cookie: str) -> int:
    """A different client (an attacker holding a copy of the cookie) asks for the overview."""
    with httpx.Client(base_url=gw.url, follow_redirects=False, cookies={"axme_dashboard": cookie}) as other:
        return other.get("/dashboard").status_code


def test_logout_ends_the_session_for_every_copy_of_the_cookie(gateway: GatewayProcess) -> None:
    with http_login(gateway, gateway.admin_key) as http:
        captured = http.cookies["axme_dashboard"]
        assert _replay(gateway, captured) == 200
        token = csrf_of(http.get("/dashboard").text)
        assert http.post("/dashboard/logout", data={"csrf": token}).status_code == 303
        assert http.get("/dashboard").status_code == 303
    assert _replay(gateway, captured) == 303  # the copied cookie is still validly signed, but its session is gone


def test_revoking_the_key_ends_its_sessions_at_once(gateway: GatewayProcess) -> None:
    key = gateway.create_key("acme", admin=True)
    with http_login(gateway, key) as http, http_login(gateway, key) as second:
        assert http.get("/dashboard").status_code == 200 and second.get("/dashboard").status_code == 200
        with gateway.client() as api:
            assert api.delete(f"/v1/keys/{key[:16]}").status_code == 200
        assert http.get("/dashboard").status_code == 303 and second.get("/dashboard").status_code == 303
        assert http.get("/dashboard/live/overview").status_code == 401
        token = csrf_of(http.get("/dashboard/login").text)
        again = http.post("/dashboard/login", data={"api_key": key, "csrf": token})
        assert again.status_code == 401  # and the key cannot log in again


def _login_cookie(gw: GatewayProcess, headers: dict[str, str]) -> str:
    """Log in and return the session's Set-Cookie header. The cookie is passed by hand: a cookie jar (like a
    browser) rightly withholds a Secure cookie from the plain-http hop between the proxy and the gateway."""
    with httpx.Client(base_url=gw.url, follow_redirects=False, headers=headers) as http:
        page = http.get("/dashboard/login")
        first = page.headers["set-cookie"]
        value = first.split(";", 1)[0]
        http.cookies.clear()
        resp = http.post("/dashboard/login", data={"api_key": gw.admin_key, "csrf": csrf_of(page.text)},
                         headers={"cookie": value})
        assert resp.status_code == 303, resp.text
        assert ("; secure" in first.lower()) == ("; secure" in resp.headers["set-cookie"].lower())
        return resp.headers["set-cookie"].lower()


def test_cookie_is_secure_behind_a_tls_proxy_only_with_proxy_headers(tmp_path: Path, gateway: GatewayProcess) -> None:
    https = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.9"}
    assert "; secure" not in _login_cookie(gateway, https)  # without --proxy-headers the header is not believed
    assert "; secure" not in _login_cookie(gateway, {})
    with GatewayProcess(tmp_path, args=("--proxy-headers",)) as proxied:
        assert "; secure" in _login_cookie(proxied, https)
        assert "; secure" not in _login_cookie(proxied, {})  # plain http through the proxy stays usable
        assert "; secure" not in _login_cookie(proxied, {"x-forwarded-proto": "http"})


async def test_cookie_is_secure_when_served_over_https(tmp_path: Path) -> None:
    from axme_meter.gateway import Settings, create_app
    from axme_meter.gateway.dashboard import dashboard_routes

    app = create_app(Settings(db_url=f"sqlite:///{tmp_path / 'gw.sqlite3'}", admin_key="axme_sa_https_" + "k" * 40),
                     extra_routes=dashboard_routes())
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://gateway.test") as http:  # type: ignore[arg-type]
            page = await http.get("/dashboard/login")
            assert "; secure" in page.headers["set-cookie"].lower()
            resp = await http.post("/dashboard/login", data={"api_key": "axme_sa_https_" + "k" * 40, "csrf": csrf_of(page.text)})
            assert resp.status_code == 303 and "; secure" in resp.headers["set-cookie"].lower()
    finally:
        app.state.gateway.dispatcher.close()
        app.state.gateway.engine.dispose()
