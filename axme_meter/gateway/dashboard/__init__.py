"""The web dashboard served by the gateway at ``/dashboard``.

``dashboard_routes()`` is passed to ``create_app(settings, extra_routes=[...])``;
pages are server-rendered Jinja2 with inline SVG charts and one small script,
all served from this package (no CDN, no build step), so it works offline.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from . import _login, _views

_AGENT = "/agents/{address_id}"


def dashboard_routes() -> list[BaseRoute]:
    """``/dashboard`` itself plus everything under it (the session cookie is scoped to ``/dashboard``)."""
    return [Route("/dashboard", _views.overview, methods=["GET"]), dashboard_mount()]


def dashboard_mount() -> Mount:
    return Mount("/dashboard", routes=[
        Route("/", _views.overview, methods=["GET"]),
        Route("/login", _login.login_page, methods=["GET"]),
        Route("/login", _login.login, methods=["POST"]),
        Route("/logout", _login.logout, methods=["POST"]),
        Route("/live/overview", _views.overview_fragment, methods=["GET"]),
        Route("/live" + _AGENT, _views.agent_fragment, methods=["GET"]),
        Route(_AGENT, _views.agent, methods=["GET"]),
        Route(_AGENT + "/policy", _views.save_policy, methods=["POST"]),
        Route(_AGENT + "/state", _views.change_state, methods=["POST"]),
        Route(_AGENT + "/approvals/{approval_id}", _views.decide_approval, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=Path(__file__).with_name("static")), name="dashboard-static"),
    ])


__all__ = ["dashboard_mount", "dashboard_routes"]
