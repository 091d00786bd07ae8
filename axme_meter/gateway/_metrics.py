"""Prometheus metrics, on a registry per app so tests can run several apps in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.entries = Counter("axme_gateway_heartbeat_entries", "Heartbeat entries by result", ["status"], registry=self.registry)
        self.requests = Counter("axme_gateway_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry)
        self.rejects = Counter("axme_gateway_rejects", "Refused requests by error code", ["code"], registry=self.registry)
        self.blocked = Gauge("axme_gateway_blocked_agents", "Agents answered as not active by this replica's last ingest", registry=self.registry)
        self.ingest_seconds = Histogram(
            "axme_gateway_ingest_seconds", "Heartbeat request handling time", registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.policy_seconds = Histogram(
            "axme_gateway_policy_check_seconds", "Intent policy check time", registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
        )
        self.alerts = Counter("axme_gateway_alerts", "Alert deliveries by channel and result", ["channel", "result"], registry=self.registry)
        self._blocked_set: set[str] = set()

    def note_states(self, states: dict[str, str]) -> None:
        for aid, state in states.items():
            if state == "active":
                self._blocked_set.discard(aid)
            else:
                self._blocked_set.add(aid)
        self.blocked.set(len(self._blocked_set))

    def render(self) -> bytes:
        return generate_latest(self.registry)
