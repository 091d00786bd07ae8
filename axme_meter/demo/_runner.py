"""``axme-meter demo``: the seed's runaway loop, stopped by a real policy on a real gateway.

Steps: start the embedded gateway (child process, SQLite in a temp dir) and the
OpenAI simulator (or use the real API with ``--real``); put a $/day block policy
on the research agent; run the buggy agent loop through ``axme_meter.OpenAI`` in
a worker thread while the main thread polls the gateway and redraws the view;
when the gateway's answer blocks the agent, the next call raises
``BudgetExceeded`` before any request leaves the process and the loop ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

import axme_meter

from ..cli._policy import GatewayAPI
from . import _probe as probe
from . import _record
from ._gateway import EmbeddedGateway
from ._story import RESEARCH_AGENT, TRIAGE_AGENT, Models, make_tickets, open_tickets, research_ticket, triage
from ._view import GatewayView, render, usd


#: Model time of one simulated call before --speed divides it (short gpt-4o answers take ~0.5-2 s).
CALL_SECONDS = 0.6


@dataclass(slots=True)
class DemoOptions:
    budget: Decimal | None = None  # default: $2 simulated, $0.05 with --real
    speed: float = 10.0  # simulated time runs this many times faster than a real gpt-4o call
    real: bool = False
    keep: bool = False
    max_seconds: float = 240.0
    seed: int = 7
    live: bool = True
    #: keep the gateway up after the summary until the user presses Enter (only when run in a terminal)
    hold: bool = False
    #: ``--loop-policy``: also set ``max_identical_requests_per_hour`` to this (the runaway repeats its prompts)
    loop_limit: int | None = None

    @property
    def limit(self) -> Decimal:
        return self.budget if self.budget is not None else Decimal("0.05" if self.real else "2")

    @property
    def heartbeat_interval(self) -> float:
        return max(0.5, 15.0 / self.speed)


@dataclass
class DemoSummary:
    agent: str
    budget_usd: str
    gateway_spent_usd: str | None
    local_spent_usd: str
    research_calls: int
    triage_calls: int
    upstream_requests: int | None
    blocked: bool
    block_seen_after_s: float | None
    stopped_after_s: float | None
    stop_message: str | None
    overshoot_usd: str | None
    overshoot_calls: int
    triage_after_block_ok: bool | None
    dashboard_url: str
    dashboard_served: bool
    gateway_url: str
    #: what happens to the gateway after the summary: "stopped" (with the demo), "until-enter" (in a terminal,
    #: until the user presses Enter) or "kept" (--keep: left running)
    gateway_after: str
    #: the key to log in to the dashboard with, while it is reachable (None once it stopped with the demo)
    admin_key: str | None
    gateway_pid: int | None
    #: the kept gateway's SQLite file (its directory can be removed once the gateway is stopped)
    gateway_db: str
    duration_s: float
    notes: list[str] = field(default_factory=list)
    #: ``--loop-policy``: the policy's max_identical_requests_per_hour (None without the flag)
    loop_limit: int | None = None
    #: the policy that stopped the loop (``max_cost_per_day_usd``, ``max_identical_requests_per_hour``), if any
    stopped_by: str | None = None
    #: what the research agent had spent (this process's meter) when it was stopped
    spent_when_stopped_usd: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Loop:
    """The agent's side: runs in a worker thread, remembers how it ended."""

    def __init__(self, client: axme_meter.OpenAI, models: Models, recorder: _record.Recorder) -> None:
        self.client, self.models, self.recorder = client, models, recorder
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.budget_error: axme_meter.BudgetExceeded | None = None
        self.stopped_at: float | None = None
        self.spent_when_stopped: Decimal | None = None
        self.tickets = make_tickets()

    def run(self) -> None:
        passes = 0
        try:
            with axme_meter.agent(RESEARCH_AGENT):
                while not self.stop.is_set():
                    passes += 1
                    for ticket in open_tickets(self.tickets):
                        if self.stop.is_set():
                            return
                        triage(self.client, ticket, self.models)
                        research_ticket(self.client, ticket, self.models)
                    why = " (the bug: answers go to ticket.answer, the loop checks ticket.resolution)" if passes == 1 else ""
                    self.recorder.event(f"pass {passes}: {len(open_tickets(self.tickets))} tickets still open{why}", "dim")
        except axme_meter.BudgetExceeded as exc:
            self.budget_error, self.stopped_at = exc, self.recorder.elapsed()
            self.spent_when_stopped = self.recorder.agent_cost(RESEARCH_AGENT)
            self.recorder.event(f"BudgetExceeded: {exc.message}", "bold red")
        except BaseException as exc:  # shown to the user, never swallowed
            self.error, self.stopped_at = exc, self.recorder.elapsed()
            self.recorder.event(f"the agent loop failed: {exc!r}", "red")


def run_demo(options: DemoOptions, console: Console | None = None,
             hand_off: Callable[[DemoSummary], None] | None = None) -> DemoSummary:
    """Run the demo; ``hand_off(summary)`` runs while the gateway still serves (to show the summary, and with
    ``options.hold`` to wait for Enter), so any dashboard URL it prints is live when printed."""
    console = console or Console()
    if options.real and not os.environ.get("OPENAI_API_KEY"):
        raise SystemExit("axme-meter demo --real needs OPENAI_API_KEY (it spends real money, up to about --budget)")
    started = time.monotonic()
    work_dir = Path(tempfile.mkdtemp(prefix="axme-demo-"))
    try:
        with EmbeddedGateway(work_dir / "gateway") as gateway:
            summary = _run_with_gateway(options, console, gateway, work_dir, started)
            if hand_off is not None:
                hand_off(summary)
            return summary
    finally:
        if not options.keep:
            shutil.rmtree(work_dir, ignore_errors=True)


def _run_with_gateway(
    options: DemoOptions, console: Console, gateway: EmbeddedGateway, work_dir: Path, started: float
) -> DemoSummary:
    limit = options.limit
    notes: list[str] = []
    with GatewayAPI(gateway.url, gateway.admin_key) as api:
        policy: dict[str, Any] = {"max_cost_per_day_usd": str(limit), "action_on_breach": "block"}
        if options.loop_limit is not None:
            policy["max_identical_requests_per_hour"] = options.loop_limit
        api.put_policy(RESEARCH_AGENT, policy)
        console.print(f"[bold]gateway[/] {gateway.url}  (SQLite in {gateway.data_dir})")
        loop_text = f", max {options.loop_limit} identical requests/hour" if options.loop_limit is not None else ""
        console.print(f"[bold]policy[/]  {RESEARCH_AGENT}: max ${limit}/day{loop_text}, action block")
        saved = probe.point_at(gateway.url, gateway.admin_key, options.heartbeat_interval, work_dir / "spool")
        simulator = None
        if options.real:
            client = axme_meter.OpenAI()
            models = Models(max_tokens=64)
            console.print("[bold yellow]--real[/]: calling api.openai.com with your OPENAI_API_KEY")
        else:
            from ._simulator import Simulator, SimulatorConfig

            simulator = Simulator(SimulatorConfig(seed=options.seed, latency=CALL_SECONDS / options.speed,
                                                  completion_tokens=(120, 360), tokens_per_chunk=6)).start()
            client = axme_meter.OpenAI(base_url=simulator.base_url, api_key="sk-simulator", max_retries=0)
            models = Models()
            console.print(f"[bold]openai[/]  simulator at {simulator.base_url} (gpt-4o usage, {options.speed:g}x speed)")
        recorder = _record.Recorder(RESEARCH_AGENT)
        _record.activate(recorder)
        loop = _Loop(client, models, recorder)
        worker = threading.Thread(target=loop.run, name="research-agent", daemon=True)
        block_seen: float | None = None
        warned_silent = False
        logged_decile = 0
        gw = GatewayView()
        recorder.event(f"research agent starts re-processing {len(loop.tickets)} tickets in a loop")
        try:
            worker.start()
            with Live(render(recorder, limit, RESEARCH_AGENT, gw, "axme-meter demo"), console=console,
                      refresh_per_second=8, transient=False, auto_refresh=options.live) as live:
                last_poll = 0.0
                while worker.is_alive():
                    if recorder.elapsed() > options.max_seconds:
                        loop.stop.set()
                        notes.append(f"stopped by the demo's {options.max_seconds:.0f}s safety timeout: no block arrived")
                        recorder.event(notes[-1], "red")
                        break
                    if time.monotonic() - last_poll > 0.5:
                        last_poll = time.monotonic()
                        previous = gw.state
                        gw = probe.gateway_view(api, RESEARCH_AGENT)
                        decile = int(gw.spent * 10 / limit) if gw.spent is not None and limit > 0 else 0
                        if decile > logged_decile:
                            logged_decile = decile
                            recorder.event(f"gateway recorded {usd(gw.spent)} ({gw.spent / limit:.0%} of the budget)", "cyan")
                        if gw.state != previous and gw.state not in ("unknown",):
                            recorder.event(f"gateway: {RESEARCH_AGENT.removeprefix('agent://')} is {gw.state}"
                                           f" (recorded {usd(gw.spent)})", "cyan")
                    if not warned_silent and gw.spent is None and recorder.elapsed() > 4 * options.heartbeat_interval + 3 \
                            and recorder.agent_cost(RESEARCH_AGENT) > 0:
                        warned_silent = True
                        recorder.event(f"the gateway has recorded nothing yet: {probe.transport_state()}", "bold red")
                    if block_seen is None and probe.blocked_locally(RESEARCH_AGENT):
                        block_seen = recorder.elapsed()
                        recorder.event("block arrived with the heartbeat answer: next call will not be sent", "bold yellow")
                    live.update(render(recorder, limit, RESEARCH_AGENT, gw, "axme-meter demo"))
                    worker.join(timeout=0.1)
                worker.join(timeout=30)
                triage_ok = _triage_after_block(loop, recorder) if loop.budget_error else None
                probe.flush()
                gw = probe.gateway_view(api, RESEARCH_AGENT)
                live.update(render(recorder, limit, RESEARCH_AGENT, gw, "axme-meter demo"))
        finally:
            _record.activate(None)
            upstream = simulator.stats.requests if simulator else None
            if simulator:
                simulator.stop()
            gateway_spent = probe.gateway_spent(api, RESEARCH_AGENT)
            dashboard_served = probe.serves(f"{gateway.url}/dashboard")
            axme_meter.configure(**saved)  # everything was flushed: detach before the gateway stops
        if loop.error is not None:
            raise loop.error
    rows, _, costs = recorder.snapshot()
    local = recorder.agent_cost(RESEARCH_AGENT)
    if block_seen is None and loop.budget_error is not None:
        block_seen = loop.stopped_at
    summary = DemoSummary(
        agent=RESEARCH_AGENT,
        budget_usd=str(limit),
        gateway_spent_usd=str(gateway_spent) if gateway_spent is not None else None,
        local_spent_usd=str(local),
        research_calls=sum(r.calls for (a, _), r in rows.items() if a == RESEARCH_AGENT),
        triage_calls=sum(r.calls for (a, _), r in rows.items() if a == TRIAGE_AGENT),
        upstream_requests=upstream,
        blocked=loop.budget_error is not None,
        block_seen_after_s=round(block_seen, 2) if block_seen is not None else None,
        stopped_after_s=round(loop.stopped_at, 2) if loop.stopped_at is not None else None,
        stop_message=loop.budget_error.message if loop.budget_error else None,
        overshoot_usd=str((gateway_spent if gateway_spent is not None else local) - limit),
        overshoot_calls=_record.calls_beyond(costs, limit),
        triage_after_block_ok=triage_ok,
        dashboard_url=f"{gateway.url}/dashboard",
        dashboard_served=dashboard_served,
        gateway_url=gateway.url,
        gateway_after="kept" if options.keep else "until-enter" if options.hold else "stopped",
        admin_key=gateway.admin_key if options.keep or options.hold else None,
        gateway_pid=gateway.keep() if options.keep else None,
        gateway_db=str(gateway.db_path),
        duration_s=round(time.monotonic() - started, 2),
        notes=notes,
        loop_limit=options.loop_limit,
        stopped_by=loop.budget_error.policy if loop.budget_error else None,
        spent_when_stopped_usd=str(loop.spent_when_stopped) if loop.spent_when_stopped is not None else None,
    )
    return summary


def _triage_after_block(loop: _Loop, recorder: _record.Recorder) -> bool:
    """A block is per agent: the triage agent (no policy) can still work."""
    try:
        triage(loop.client, loop.tickets[0], loop.models)
    except axme_meter.BudgetExceeded as exc:
        recorder.event(f"triage-agent blocked too: {exc.message}", "red")
        return False
    recorder.event("triage-agent (no policy) still works: one more call went through", "green")
    return True
