"""One metered call: attribution captured at the start, usage observed, priced exactly once.

A ``MeteredCall`` is created in ``request()`` before anything is sent, travels
with the HTTP request (in ``request.extensions``) so that responses parsed later
(``with_raw_response``, streams) still find it, and is finished exactly once:
when the body is parsed, when a stream ends however it ends, or when an unparsed
response is garbage-collected.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import Any

from .. import _attribution
from .._config import settings
from .._errors import UnknownModelError
from .._meter import CallRecord, meter
from .._budget._grants import Reservation, UnpricedRule
from .._errors import BudgetExceeded
from .._runtime import Runtime
from .._pricing import Usage, table
from ._usage_readers import RESPONSE_FINAL_EVENTS, RESPONSE_TEXT_EVENTS, usage_from_dict

log = logging.getLogger("axme_meter")

#: Metered POST endpoints (path relative to the client's base URL) and their kind.
ENDPOINTS: dict[str, str] = {
    "/chat/completions": "chat",
    "/responses": "responses",
    "/completions": "completions",
    "/embeddings": "embeddings",
    "/audio/transcriptions": "transcription",
    "/audio/translations": "transcription",
    "/audio/speech": "speech",
    "/images/generations": "images",
    "/images/edits": "images",
    "/images/variations": "images",
    "/moderations": "moderations",
}
#: Streams where ``stream_options.include_usage`` exists and may be injected.
_USAGE_OPTION_KINDS = frozenset({"chat", "completions"})
#: Token-billed kinds whose usage can be estimated from the text when the response reports none.
_TEXT_KINDS = frozenset({"chat", "responses", "completions", "embeddings"})
_PER_MILLION = 1_000_000
_DEFAULT_IMAGE_MODEL = "dall-e-2"
# gpt-4o-mini-tts bills audio output tokens the binary response never reports. OpenAI
# quotes ~$0.015/min at $12/1M audio tokens (1,250 tokens/min) and speech runs ~900
# characters a minute, so ~1.39 audio tokens per character is the estimate we book.
_TTS_AUDIO_TOKENS_PER_1000_CHARS = 1389

EXTENSION_KEY = "axme_meter.call"


class UnpricedCallWarning(UserWarning):
    """A call was recorded without a price (unknown model or no usage); shown once per model."""


class EstimatedPriceWarning(UserWarning):
    """A call was priced with stand-in rates (a ``service_tier`` the table has no rates for).

    The call is booked at standard rates and marked ``estimated``; shown once per model and tier.
    """


_warned_models: set[str] = set()
_warned_tiers: set[tuple[str, str]] = set()


class MeteredCall:
    __slots__ = (
        "kind", "agent", "intent", "body", "request_model", "deployment", "stream", "injected_usage",
        "at", "usage", "model", "service_tier", "text", "images", "attached", "runtime", "reservation", "_once",
    )

    def __init__(self, kind: str, body: dict[str, Any], stream: bool, deployment: str | None, runtime: Runtime) -> None:
        self.kind = kind
        self.runtime = runtime
        #: This call's predicted cost, held in the process's grant until the call is booked.
        self.reservation: Reservation | None = None
        self.agent = _attribution.current_agent()
        self.intent = _attribution.current_intent()
        self.body = body
        model = body.get("model")
        self.request_model: str | None = model if isinstance(model, str) else None
        self.deployment = deployment
        self.stream = stream
        self.injected_usage = False
        self.at = time.time()
        self.usage: Usage | None = None
        self.model: str | None = None
        self.service_tier: str | None = None
        self.text: list[str] = []
        self.images = 0
        self.attached = False  # a stream object owns finishing this call
        self._once = threading.Lock()

    # -- observing the response ------------------------------------------------------------

    def observe(self, data: object) -> None:
        """Called with every parsed JSON body or stream event of this call."""
        if not isinstance(data, dict):
            return
        if self.stream:
            self._observe_event(data)
        else:
            self._observe_body(data)
            self.finish()

    def _observe_body(self, data: dict[str, Any]) -> None:
        self._note_model(data)
        raw = data.get("usage")
        if isinstance(raw, dict):
            self.usage = usage_from_dict(raw, image_endpoint=self.kind == "images")
        elif self.kind in _TEXT_KINDS:
            self.text.extend(_answer_text(data))  # no usage reported: estimate from the text instead
        elif self.kind == "images" and isinstance(data.get("data"), list):
            self.images = len(data["data"])
        elif self.kind == "transcription" and isinstance(data.get("duration"), (int, float)):
            self.usage = Usage(audio_seconds=float(data["duration"]))

    def _observe_event(self, data: dict[str, Any]) -> None:
        event_type = data.get("type")
        if isinstance(event_type, str):  # Responses API (and audio/image) stream events
            if event_type in RESPONSE_TEXT_EVENTS:
                delta = data.get("delta")
                if isinstance(delta, str):
                    self.text.append(delta)
            elif event_type in RESPONSE_FINAL_EVENTS and isinstance(data.get("response"), dict):
                self._observe_body(data["response"])
            elif isinstance(data.get("usage"), dict):
                self._observe_body(data)
            return
        if self.model is None:
            self._note_model(data)
        for choice in data.get("choices") or ():
            if isinstance(choice, dict):
                self._collect_choice_text(choice)
        raw = data.get("usage")
        if isinstance(raw, dict):
            self.usage = usage_from_dict(raw)
            self._note_model(data)

    def _collect_choice_text(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str):
                self.text.append(content)
            for tool_call in delta.get("tool_calls") or ():
                function = tool_call.get("function") if isinstance(tool_call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    self.text.append(function["arguments"])
        elif isinstance(choice.get("text"), str):  # legacy completions
            self.text.append(choice["text"])

    def _note_model(self, data: dict[str, Any]) -> None:
        model = data.get("model")
        if isinstance(model, str) and model:
            self.model = model
        tier = data.get("service_tier")
        if isinstance(tier, str):
            self.service_tier = tier

    # -- finishing ---------------------------------------------------------------------------

    def finish(self) -> None:
        """Price and record this call; every later call is a no-op. Never raises."""
        if not self._once.acquire(blocking=False):
            return
        try:
            self._book()
        except Exception:  # metering must never break the user's call
            meter.errors += 1
            log.exception("axme_meter: failed to meter a %s call; the call itself is unaffected", self.kind)

    # -- admission -------------------------------------------------------------------------

    def admit(self) -> None:
        """Before sending: raise if the agent may not spend, else reserve the call's cost from the grant."""
        self.reservation = self.runtime.admit(self.agent, self.intent)
        self._check_unpriced_rule()
        if self.runtime.budget.loops.active:  # off (one attribute read) unless a loop policy is in force
            self._check_loop()

    async def admit_async(self) -> None:
        self.reservation = await self.runtime.admit_async(self.agent, self.intent)
        self._check_unpriced_rule()
        if self.runtime.budget.loops.active:
            self._check_loop()

    def _check_loop(self) -> None:
        """Count this request's fingerprint; a request that passes ``max_identical_requests_per_hour`` is
        refused before it is sent (or, under ``notify``, let through), and the gateway hears of it soon."""
        try:
            report = self.runtime.budget.loops.admit(self.agent, self.intent, self.kind, self.body)
        except BudgetExceeded:
            self.abandon()
            self.runtime.refused_for_loop()
            raise
        if report:
            self.runtime.wake_sender()

    def _check_unpriced_rule(self) -> None:
        """An agent whose policy refuses unpriced calls may not call a model the price table does not know."""
        rule = self.runtime.budget.unpriced_rule(self.agent)
        if isinstance(rule, UnpricedRule) and rule.action == "refuse" and not self._known_model():
            self.abandon()
            raise BudgetExceeded(
                f"{self.agent}: its cost policy refuses calls it cannot price, and {self._price_name()!r} has no price "
                "here; add one with AXME_METER_PRICES=<file> or configure(extra_prices=...), or set the policy's "
                "on_unpriced_call to 'estimate'", agent=self.agent, intent=self.intent, policy="on_unpriced_call")

    def abandon(self) -> None:
        """The request failed before a response: give the reservation back (a finished call already did)."""
        reservation, self.reservation = self.reservation, None
        self.runtime.release(reservation)

    def _price_name(self) -> str:
        return pricing_model(self.deployment, self.request_model, None) or self._default_model()

    def _known_model(self) -> bool:
        if self.kind == "moderations" and self.request_model is None:
            return True  # the API picks a free moderation model
        return table().resolve(self._price_name()) is not None

    # -- booking -----------------------------------------------------------------------------

    def _book(self) -> None:
        usage, estimated = self.usage, False
        if usage is None:
            usage, estimated = self._usage_without_report()
        recorded_model = self.model or self.request_model or self._default_model()
        price_model = pricing_model(self.deployment, self.request_model, self.model) or recorded_model
        quote = table().quote(price_model, usage, at=self.at, service_tier=self.service_tier)
        priced = quote.priced
        cost = quote.cost_pico
        if not priced and usage.is_empty() and table().is_free(price_model):
            priced = True
        if not priced:
            cost = 0
            rule = self.runtime.budget.unpriced_rule(self.agent)
            if isinstance(rule, UnpricedRule):
                # The agent has a money policy: never spend for free against it; book a conservative estimate.
                if usage.is_empty() and self.kind in _TEXT_KINDS:
                    from ._estimate import estimate_usage

                    usage = estimate_usage(self.body, "".join(self.text), price_model)
                cost = conservative_cost(usage, rule)
                estimated = True
        rec = CallRecord(
            agent=self.agent,
            intent=self.intent,
            model=recorded_model,
            usage=usage,
            cost_pico=cost,
            priced=priced,
            estimated=estimated or quote.estimated,
            pricing_version=quote.version,
            endpoint=self.kind,
            at=self.at,
        )
        reservation, self.reservation = self.reservation, None
        self.runtime.book(rec, reservation)
        # Warn only once the call is booked: a warning turned into an error must not lose it.
        if not priced:
            _warn_unpriced(recorded_model, quote.reason)
        elif quote.estimated:
            _warn_estimated(recorded_model, self.service_tier or "", quote.reason)

    def _default_model(self) -> str:
        return _DEFAULT_IMAGE_MODEL if self.kind == "images" else "unknown"

    def _usage_without_report(self) -> tuple[Usage, bool]:
        """Usage for a call whose response carried none: per-unit, estimated, or empty."""
        if self.kind == "images" and self.images:
            size = self.body.get("size")
            quality = self.body.get("quality")
            return Usage(
                images=self.images,
                image_size=size if isinstance(size, str) else "1024x1024",
                image_quality=quality if isinstance(quality, str) else "standard",
            ), False
        if self.kind == "speech":
            usage = self._speech_usage()
            return usage, not usage.characters
        if self.stream or self.text or self.kind in _TEXT_KINDS:
            from ._estimate import estimate_usage

            model = self.model or self.request_model or "gpt-4o"
            return estimate_usage(self.body, "".join(self.text), model), True
        return Usage(), False

    def _speech_usage(self) -> Usage:
        """TTS: per-character models are priced on the input text; token models are estimated."""
        text = self.body.get("input")
        text = text if isinstance(text, str) else ""
        model = pricing_model(self.deployment, self.request_model, None) or "tts-1"
        by_characters = Usage(characters=len(text))
        quote = table().quote(model, by_characters, at=self.at)
        if quote.priced and (quote.cost_pico > 0 or not text):
            return by_characters
        from ._estimate import count_tokens

        audio_tokens = len(text) * _TTS_AUDIO_TOKENS_PER_1000_CHARS // 1000
        return Usage(
            input_tokens=count_tokens(text, model),
            output_tokens=audio_tokens,
            audio_output_tokens=audio_tokens,
        )


def pricing_model(deployment: str | None, request_model: str | None, response_model: str | None) -> str | None:
    """The name to price: an explicit Azure deployment mapping wins, then the response's model."""
    mapping = settings.azure_deployments
    if mapping:
        for name in (deployment, request_model):
            if name and name in mapping:
                return mapping[name]
    return response_model or request_model


def _warn_unpriced(model: str, reason: str | None) -> None:
    if model in _warned_models:
        return
    _warned_models.add(model)
    _warn(
        f"axme_meter: recorded a call to {model!r} without a price ({reason or 'no usage reported'}); "
        "its tokens are counted and the call is marked unpriced. Add a price with AXME_METER_PRICES=<file> "
        "or axme_meter.configure(extra_prices=[...]).",
        UnpricedCallWarning,
    )


def _warn_estimated(model: str, tier: str, reason: str | None) -> None:
    if (model, tier) in _warned_tiers:
        return
    _warned_tiers.add((model, tier))
    _warn(
        f"axme_meter: a call to {model!r} was served with service_tier {tier!r} ({reason or 'no rates'}); "
        "it is booked at standard rates and marked estimated. Add the tier's rates with "
        "AXME_METER_PRICES=<file> or axme_meter.configure(extra_prices=[...]).",
        EstimatedPriceWarning,
    )


def _warn(message: str, category: type[Warning]) -> None:
    """Warn; where warnings are errors (``-W error``, pytest ``filterwarnings = error``), log instead.

    The call is already booked when this runs; raising here would only turn a booked call
    into a "failed to meter" error inside the SDK's response handling.
    """
    try:
        warnings.warn(message, category, stacklevel=3)
    except Warning:
        log.warning("%s", message)


def conservative_cost(usage: Usage, rule: UnpricedRule) -> int:
    """An unpriced call at the policy's conservative rates (pico-dollars per 1M tokens), rounded up."""
    return (-(-usage.input_tokens * rule.input_per_1m // _PER_MILLION)
            - (-usage.output_tokens * rule.output_per_1m // _PER_MILLION))


def _answer_text(data: dict[str, Any]) -> list[str]:
    """The generated text of a non-streamed body (chat, legacy completions, responses)."""
    out: list[str] = []
    for choice in data.get("choices") or ():
        if isinstance(choice, dict):
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                out.append(message["content"])
            elif isinstance(choice.get("text"), str):
                out.append(choice["text"])
    for item in data.get("output") or ():
        for part in (item.get("content") or ()) if isinstance(item, dict) else ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
    return out


def begin(options: Any, stream: bool, deployment: str | None, runtime: Runtime) -> MeteredCall | None:
    """Start metering if this request is a priced endpoint (the caller then admits the call).

    Raises ``UnknownModelError`` (strict pricing) before anything is sent.
    """
    kind = ENDPOINTS.get(options.url)
    if kind is None:
        return None
    body = options.json_data if isinstance(options.json_data, dict) else {}
    call = MeteredCall(kind, body, stream, deployment, runtime)
    if settings.strict_pricing and not call._known_model():
        raise UnknownModelError(call._price_name())
    if stream and kind in _USAGE_OPTION_KINDS:
        stream_options = body.get("stream_options")
        if not isinstance(stream_options, dict) or "include_usage" not in stream_options:
            merged = dict(stream_options) if isinstance(stream_options, dict) else {}
            merged["include_usage"] = True
            options.json_data = {**body, "stream_options": merged}
            call.injected_usage = True
    return call

