"""OpenTelemetry bridge (optional extra ``otel``): every metered call becomes GenAI metrics.

Emits, per the OpenTelemetry GenAI semantic conventions:

* ``gen_ai.client.token.usage`` - histogram, unit ``{token}``, one measurement per
  call and token type (``gen_ai.token.type`` = ``input`` / ``output``), with the
  semconv's advised bucket boundaries;
* ``axme.gen_ai.client.cost`` - counter, unit ``USD``, the priced cost of the call.
  The conventions define no cost metric and reserve the ``gen_ai.*`` namespace for
  names they define, so this one carries our prefix and the same attributes.

Attributes: ``gen_ai.operation.name`` (``chat``, ``text_completion``, ``embeddings``,
or the endpoint kind), ``gen_ai.provider.name`` = ``openai`` (plus the older
``gen_ai.system`` that many backends still key on), ``gen_ai.response.model``, and
``axme.agent``. Intent ids are unbounded, so ``axme.intent`` is added only with
``include_intent=True``. OTel counters are floats: the exact ``Decimal`` totals stay
in :func:`axme_meter.spend`; the metric is for dashboards, not for billing.

Usage::

    import axme_meter._otel as axme_otel
    axme_otel.instrument()            # global MeterProvider, or instrument(meter_provider=...)
"""

from __future__ import annotations

import threading
from typing import Any

from ._meter import CallRecord, meter
from ._money import to_decimal

TOKEN_USAGE = "gen_ai.client.token.usage"
COST = "axme.gen_ai.client.cost"
#: Bucket boundaries the GenAI conventions advise for token counts.
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
_OPERATIONS = {"chat": "chat", "responses": "chat", "completions": "text_completion", "embeddings": "embeddings"}


class OTelBridge:
    """Holds the instruments; :meth:`on_record` runs on the caller's thread after each metered call."""

    def __init__(self, meter_provider: Any = None, *, include_intent: bool = False) -> None:
        from opentelemetry import metrics

        provider = meter_provider or metrics.get_meter_provider()
        otel_meter = provider.get_meter("axme_meter", _version())
        self.include_intent = include_intent
        self.tokens = otel_meter.create_histogram(
            TOKEN_USAGE, unit="{token}", description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.cost = otel_meter.create_counter(COST, unit="USD", description="Priced cost of GenAI client calls")

    def attributes(self, rec: CallRecord) -> dict[str, str]:
        attrs = {
            "gen_ai.operation.name": _OPERATIONS.get(rec.endpoint, rec.endpoint or "chat"),
            "gen_ai.provider.name": "openai",
            "gen_ai.system": "openai",
            "gen_ai.response.model": rec.model,
            "axme.agent": rec.agent,
        }
        if self.include_intent and rec.intent:
            attrs["axme.intent"] = rec.intent
        return attrs

    def on_record(self, rec: CallRecord) -> None:
        attrs = self.attributes(rec)
        usage = rec.usage
        if usage.input_tokens:
            self.tokens.record(usage.input_tokens, {**attrs, "gen_ai.token.type": "input"})
        if usage.output_tokens:
            self.tokens.record(usage.output_tokens, {**attrs, "gen_ai.token.type": "output"})
        if rec.priced:
            self.cost.add(float(to_decimal(rec.cost_pico)), {**attrs, "axme.estimated": rec.estimated})


_bridge: OTelBridge | None = None
_lock = threading.Lock()
_listening = False


def _forward(rec: CallRecord) -> None:
    bridge = _bridge
    if bridge is not None:
        try:
            bridge.on_record(rec)
        except Exception:  # telemetry must never break the user's call
            meter.errors += 1


def instrument(meter_provider: Any = None, *, include_intent: bool = False) -> OTelBridge:
    """Start emitting metrics for every metered call (replaces any earlier bridge)."""
    global _bridge, _listening
    bridge = OTelBridge(meter_provider, include_intent=include_intent)
    with _lock:
        if not _listening:  # the meter has no remove_listener: one forwarder, swapped bridges
            meter.add_listener(_forward)
            _listening = True
        _bridge = bridge
    return bridge


def uninstrument() -> None:
    """Stop emitting (the instruments stay registered with their provider)."""
    global _bridge
    _bridge = None


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("axme_meter")
    except Exception:
        return "0"
