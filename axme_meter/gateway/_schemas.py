"""The wire schema (pydantic v2): heartbeat entries and batches, intents, cost policies.

Every model forbids unknown fields so a typo is a 422 naming the field, not a
silently ignored limit. Money arrives as a decimal string or a JSON number and is
validated here (finite, >= 0) and turned into int pico-dollars, the only money type
inside the gateway (see ``axme_meter._money``). The sanity limit on spend is per
call (``MAX_CALL_USD`` in ``axme_meter/_protocol.py``), never per entry: an entry
that aggregates a long outage is real money. ``MAX_ENTRY_USD`` only bounds storage.

A batch's envelope (:class:`HeartbeatBatch`) is validated as a whole; its entries
are validated one by one (``_batch.py``), so one bad entry never refuses the rest.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .._attribution import validate_address
from .._money import from_usd
from .._protocol import (
    CLIENT_BLOCK_SOURCES, FINGERPRINT_PATTERN, INTENT_ID_PATTERN, MAX_BATCH, MAX_BLOCKS, MAX_CALL_USD, MAX_COUNT,
    MAX_ENTRY_USD, MAX_REPEATS, intent_id_problem, money, parse_iso,
)
from ._windows import zone

MAX_POLICY_USD = Decimal(10**9)
_MAX_CALL_PICO = from_usd(MAX_CALL_USD)
_ID = r"^[^\x00-\x1f\x7f]+$"
#: Money as a string: plain decimal digits, as the published schema says (no sign, exponent, ``_`` or spaces).
MONEY_PATTERN = r"^\d+(\.\d+)?$"
_MONEY_RE = re.compile(MONEY_PATTERN, re.ASCII)


def _money(limit: Decimal, *, positive: bool = False) -> Any:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
            raise ValueError("must be a decimal string such as \"0.03\" or a JSON number")
        if isinstance(value, str) and len(value) > 64:
            raise ValueError("must be a decimal string of at most 64 characters")
        if isinstance(value, str) and not _MONEY_RE.fullmatch(value):
            if value.strip().lstrip("+-").lower() in ("nan", "snan", "inf", "infinity"):
                raise ValueError("must be finite (NaN and infinity are refused)")
            if value.startswith("-") and _MONEY_RE.fullmatch(value[1:]):
                raise ValueError("must not be negative")
            raise ValueError(f"must be a decimal string of digits with an optional fraction such as \"0.03\" "
                             f"(pattern {MONEY_PATTERN}), got {value!r}")
        try:
            amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"must be a decimal number such as \"0.03\", got {value!r}") from None
        if not amount.is_finite():
            raise ValueError("must be finite (NaN and infinity are refused)")
        if amount < 0:
            raise ValueError("must not be negative")
        if positive and amount == 0:
            raise ValueError("must be greater than zero")
        if amount > limit:
            raise ValueError(f"must be at most {limit} USD")
        return from_usd(amount)

    return BeforeValidator(parse)


_MONEY_SCHEMA = WithJsonSchema({"anyOf": [{"type": "string", "pattern": MONEY_PATTERN}, {"type": "number", "minimum": 0}]})
EntryMoney = Annotated[int, _money(MAX_ENTRY_USD), _MONEY_SCHEMA]
LimitMoney = Annotated[int, _money(MAX_POLICY_USD, positive=True), _MONEY_SCHEMA]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]
Address = Annotated[str, BeforeValidator(lambda v: validate_address(v)), WithJsonSchema({"type": "string", "pattern": r"^agent://[A-Za-z0-9][A-Za-z0-9._~-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._~-]{0,127}){1,2}$"})]
IdString = Annotated[str, Field(min_length=1, max_length=200, pattern=_ID)]


def _intent_id(value: str) -> str:
    problem = intent_id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


IntentId = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_intent_id),
                     WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 200, "pattern": INTENT_ID_PATTERN})]


#: Names the zoneinfo database holds that are not IANA zones (or depend on the host's settings).
_NOT_IANA = frozenset({"localtime", "posixrules", "Factory"})


@lru_cache(maxsize=1)
def iana_zones() -> frozenset[str]:
    """IANA time zone names known here (``UTC`` always): ``"localtime"``, ``""`` and paths are not among them."""
    from zoneinfo import available_timezones

    names = {n for n in available_timezones() if n not in _NOT_IANA and not n.startswith(("posix/", "right/"))}
    return frozenset(names | {"UTC"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: Token details of a model's calls (schema 4), named as in ``axme_meter._pricing.Usage``: with them the
#: gateway can price calls the client could not (``_reprice.py``). Zero when absent (older clients).
TOKEN_DETAILS = (
    "cache_write_tokens", "cache_write_12h_tokens", "audio_input_tokens", "cached_audio_tokens", "audio_output_tokens",
    "image_input_tokens", "cached_image_tokens", "image_output_tokens",
)


class ModelMetrics(_Strict):
    """Spend of one model inside one entry. ``llm_calls`` comes first: the per-call check of ``cost_usd`` needs it.

    ``tokens_in`` / ``tokens_out`` are the totals; the other counts are parts of them (as in
    ``Usage``). ``unpriced_calls`` of them were booked by the client at $0 or at a conservative
    estimate because its price table did not know the model."""

    llm_calls: Count = 0
    cost_usd: EntryMoney = 0
    tokens_in: Count = 0
    tokens_out: Count = 0
    cached_tokens: Count = 0
    reasoning_tokens: Count = 0
    cache_write_tokens: Count = 0
    cache_write_12h_tokens: Count = 0
    audio_input_tokens: Count = 0
    cached_audio_tokens: Count = 0
    audio_output_tokens: Count = 0
    image_input_tokens: Count = 0
    cached_image_tokens: Count = 0
    image_output_tokens: Count = 0
    estimated_calls: Count = 0
    unpriced_calls: Count = 0

    #: Fields added after entries were first digested: left out of the digest while zero, so that an
    #: entry recorded before they existed is still a ``duplicate`` when replayed (see ``digest_form``).
    _LATER_FIELDS: ClassVar[tuple[str, ...]] = (*TOKEN_DETAILS, "estimated_calls", "unpriced_calls")

    @field_validator("cost_usd")
    @classmethod
    def _per_call(cls, cost: int, info: ValidationInfo) -> int:
        """At most ``MAX_CALL_USD`` per call: the cost divided by ``llm_calls`` (no calls: the cost itself)."""
        calls = info.data.get("llm_calls")
        if calls is None:
            return cost  # llm_calls itself is invalid and reported
        if cost > _MAX_CALL_PICO * max(calls, 1):
            per = f"over {calls} call(s) is more than" if calls else "with llm_calls 0 is more than"
            raise ValueError(f"{money(cost)} USD {per} {MAX_CALL_USD} USD per call (the sanity limit on one LLM call)")
        return cost

    def digest_form(self) -> dict[str, Any]:
        """What the entry digest covers: every amount, but later fields only when set (stable across upgrades)."""
        dumped = self.model_dump(mode="json")
        for name in self._LATER_FIELDS:
            if not dumped[name]:
                del dumped[name]
        return dumped


class Metrics(ModelMetrics):
    """Entry totals: ours plus the fields AXME's own SDK sends (``intents_*``, ``avg_latency_ms``)."""

    intents_total: Count = 0
    intents_succeeded: Count = 0
    intents_failed: Count = 0
    avg_latency_ms: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] = 0.0

    #: ``estimated_calls`` and ``unpriced_calls`` were always digested for entry totals.
    _LATER_FIELDS: ClassVar[tuple[str, ...]] = TOKEN_DETAILS


class HeartbeatEntry(_Strict):
    """One heartbeat entry. ``id`` and ``agent`` are optional for AXME SDK compatibility:
    without ``id`` there is no idempotency; without ``agent`` the key's bound agent is used."""

    id: IdString | None = None
    agent: Address | None = None
    intent_id: IntentId | None = None
    status: Annotated[str, Field(max_length=64)] | None = None
    window_start: Annotated[str, Field(max_length=64)] | None = None
    window_end: Annotated[str, Field(max_length=64)] | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    by_model: Annotated[dict[Annotated[str, Field(min_length=1, max_length=200)], ModelMetrics], Field(max_length=100)] = Field(
        default_factory=dict
    )
    pricing_version: Annotated[str, Field(max_length=300)] | None = None
    #: Our extension (schema 7): identical requests this entry's agent × intent made, by keyed fingerprint
    #: (counts only, never content). Sent only for agents with ``max_identical_requests_per_hour``.
    repeats: Annotated[dict[Annotated[str, Field(pattern=FINGERPRINT_PATTERN)], Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)]],
                       Field(max_length=MAX_REPEATS)] = Field(default_factory=dict)


def _instant(value: Any) -> float:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("must be an ISO-8601 instant such as \"2026-11-28T23:00:00Z\"")
    parsed = parse_iso(value)
    if parsed is None:
        raise ValueError(f"must be an ISO-8601 instant such as \"2026-11-28T23:00:00Z\", got {value!r}")
    return parsed


Instant = Annotated[float, BeforeValidator(_instant), WithJsonSchema({"type": "string", "format": "date-time"})]
ReportMoney = Annotated[int, _money(MAX_POLICY_USD), _MONEY_SCHEMA]


class ClientBlock(_Strict):
    """A client process stopped ``agent`` on its own (its lease ran out, a local limit, fail-closed)."""

    agent: Address
    source: Literal[CLIENT_BLOCK_SOURCES]  # type: ignore[valid-type]
    policy: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    limit: ReportMoney | None = None
    spent: ReportMoney | None = None
    resets_at: Instant | None = None
    at: Instant | None = None
    #: The reporting process (the ``<instance>`` of its ``hb_<instance>_…`` entry ids).
    instance: Annotated[str, Field(max_length=64, pattern=_ID)] | None = None


#: Entries are checked one by one (``_batch.py``); the envelope only bounds the list.
_ENTRY_LIST_SCHEMA = WithJsonSchema({"type": "array", "items": {"$ref": "#/components/schemas/HeartbeatEntry"},
                                     "maxItems": MAX_BATCH})


GrantId = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^gr_[0-9a-f]{1,37}$")]
Instance = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
UsedMoney = Annotated[int, _money(MAX_POLICY_USD), _MONEY_SCHEMA]


class GrantUse(_Strict):
    """What a client process has spent from one grant so far (cumulative); ``final`` returns the rest."""

    id: GrantId
    used_usd: UsedMoney
    final: bool = False


class HeartbeatBatch(_Strict):
    #: Our extension: settles grants (``used_usd`` is cumulative, so a replay changes nothing). A batch
    #: with grant reports only (a process returning its grants at exit) may carry no entries.
    grants: Annotated[list[GrantUse], Field(max_length=MAX_BATCH)] = Field(default_factory=list)
    heartbeats: Annotated[list[Any], Field(max_length=MAX_BATCH), _ENTRY_LIST_SCHEMA]
    blocks: Annotated[list[ClientBlock], Field(max_length=MAX_BLOCKS)] = Field(default_factory=list)

    @field_validator("heartbeats")
    @classmethod
    def _not_empty(cls, value: list[Any], info: ValidationInfo) -> list[Any]:
        if not value and not info.data.get("grants"):
            raise ValueError("at least one entry is required (or a grants report)")
        return value


class GrantRequest(_Strict):
    """``POST /v1/mesh/grants``: a client process asks for its slices of an agent's money policies."""

    agent: Address | None = None
    instance: Instance
    #: The client's prediction of its next call's cost: slices never shrink below it.
    call_cost_usd: Annotated[int, _money(MAX_CALL_USD), _MONEY_SCHEMA] | None = None
    #: Upper bound on each slice the client wants (the gateway may grant less).
    want_usd: Annotated[int, _money(MAX_POLICY_USD, positive=True), _MONEY_SCHEMA] | None = None
    #: The client's heartbeat interval: a grant expires after a few of them without news.
    heartbeat_interval: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] | None = None
    #: Grants this process holds (usage so far, and ``final`` ones it returns).
    held: Annotated[list[GrantUse], Field(max_length=10)] = Field(default_factory=list)


class IntentCreate(_Strict):
    agent: Address | None = None
    intent_id: IntentId | None = None
    labels: Annotated[dict[Annotated[str, Field(max_length=100)], Annotated[str, Field(max_length=500)]], Field(max_length=50)] = Field(
        default_factory=dict
    )


class Notify(_Strict):
    email: Annotated[list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]], Field(max_length=20)] = Field(
        default_factory=list
    )
    slack_webhook: Annotated[str, Field(pattern=r"^https?://", max_length=2000)] | None = None
    webhook: Annotated[str, Field(pattern=r"^https?://", max_length=2000)] | None = None


#: ``alert_on_spend_rate_multiple`` bounds: above 1 (1× is the normal rate) and at most this.
MAX_SPEND_RATE_MULTIPLE = Decimal(1000)


def _spend_rate_multiple(value: Any) -> Decimal:
    """A decimal > 1 such as ``"3"`` or ``2.5``: alert when the hour's projected spend exceeds it × the baseline."""
    example = ('such as "3" (alert when the current hour\'s projected spend exceeds 3 times the agent\'s '
               'usual hourly spend)')
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError(f"must be a decimal number greater than 1, {example}")
    if isinstance(value, str) and not re.fullmatch(MONEY_PATTERN, value):
        raise ValueError(f"must be a decimal number greater than 1 written as digits with an optional fraction, "
                         f"{example}; got {value!r}")
    try:
        multiple = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"must be a decimal number greater than 1, {example}; got {value!r}") from None
    if not multiple.is_finite() or multiple <= 1 or multiple > MAX_SPEND_RATE_MULTIPLE:
        raise ValueError(f"must be greater than 1 and at most {MAX_SPEND_RATE_MULTIPLE}, {example}; got {value!r}")
    return multiple.normalize() if multiple == multiple.to_integral() else multiple


SpendRateMultiple = Annotated[Decimal, BeforeValidator(_spend_rate_multiple),
                              WithJsonSchema({"anyOf": [{"type": "string", "pattern": MONEY_PATTERN},
                                                        {"type": "number", "exclusiveMinimum": 1}]})]


class CostPolicy(_Strict):
    """The seed's fields plus our extensions. At least one limit must be set."""

    max_cost_per_hour_usd: LimitMoney | None = None
    max_cost_per_day_usd: LimitMoney | None = None
    max_cost_per_month_usd: LimitMoney | None = None
    max_cost_per_intent_usd: LimitMoney | None = None
    max_intents_per_day: Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)] | None = None
    max_intents_per_hour: Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)] | None = None
    #: Loop detection: at most this many identical requests (same model and content, by keyed fingerprint)
    #: per agent per hour; the next one is a breach handled by ``action_on_breach``. Off when unset.
    max_identical_requests_per_hour: Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)] | None = None
    #: ``alert`` is AXME's spelling of ``notify`` (stored as ``notify``); ``require_approval`` pauses the agent
    #: until an admin resumes it.
    action_on_breach: Annotated[Literal["block", "notify", "pause", "kill", "require_approval"],
                                BeforeValidator(lambda v: "notify" if v == "alert" else v)] = "block"
    #: A call the client cannot price (a model newer than its price table, or no usage reported):
    #: ``estimate`` books it at the conservative rates below, ``refuse`` stops it before it is sent.
    on_unpriced_call: Literal["estimate", "refuse"] = "estimate"
    #: Conservative rates for unpriced calls, USD per 1M tokens; unset means the gateway's default
    #: (``AXME_GATEWAY_UNPRICED_RATES``, else the highest rates in its price table).
    unpriced_input_usd_per_1m: LimitMoney | None = None
    unpriced_output_usd_per_1m: LimitMoney | None = None
    timezone: Annotated[str, Field(max_length=64)] = "UTC"
    alert_thresholds: Annotated[list[Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]], Field(max_length=10)] = Field(
        default_factory=lambda: [0.5, 0.8, 1.0]
    )
    notify: Notify = Field(default_factory=Notify)
    #: ``require_approval`` only: how much an approval adds to the breached limit for the rest of its
    #: window (default: the limit itself, so an approval doubles today's budget once).
    approval_raise_usd: LimitMoney | None = None
    #: Spend-rate anomaly alerts (``_spend_rate.py``): alert once an hour when the hour's projected spend
    #: exceeds this multiple of the agent's baseline. Off when unset.
    alert_on_spend_rate_multiple: SpendRateMultiple | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in iana_zones():
            raise ValueError(f"unknown IANA timezone {value!r} (for example 'Europe/Berlin' or 'UTC')")
        zone(value)
        return value

    @field_validator("alert_thresholds")
    @classmethod
    def _sorted_thresholds(cls, value: list[float]) -> list[float]:
        return sorted(set(value))

    @model_validator(mode="after")
    def _some_limit(self) -> CostPolicy:
        if all(getattr(self, name) is None for name in LIMIT_FIELDS):
            raise ValueError(f"set at least one limit: {', '.join(LIMIT_FIELDS)}")
        return self

    def to_wire(self) -> dict[str, Any]:
        """JSON form with money as decimal strings (what GET returns)."""
        from .._protocol import money

        out = self.model_dump(mode="python")
        for name in MONEY_FIELDS + RATE_FIELDS + ("approval_raise_usd",):
            if out.get(name) is not None:
                out[name] = money(out[name])
        if out.get("alert_on_spend_rate_multiple") is not None:
            out["alert_on_spend_rate_multiple"] = str(out["alert_on_spend_rate_multiple"])
        return out

    def to_storage(self) -> dict[str, Any]:
        """JSON-safe form kept in the database; money as pico-dollar ints."""
        return self.model_dump(mode="json")


MONEY_FIELDS = ("max_cost_per_hour_usd", "max_cost_per_day_usd", "max_cost_per_month_usd", "max_cost_per_intent_usd")
COUNT_FIELDS = ("max_intents_per_hour", "max_intents_per_day", "max_identical_requests_per_hour")
RATE_FIELDS = ("unpriced_input_usd_per_1m", "unpriced_output_usd_per_1m")
LIMIT_FIELDS = MONEY_FIELDS + COUNT_FIELDS


def policy_from_storage(data: dict[str, Any]) -> CostPolicy:
    """Rebuild a stored policy without re-running the money parser (values are already pico)."""
    return CostPolicy.model_construct(**{**data, "notify": Notify.model_construct(**data.get("notify", {}))})


class KeyCreate(_Strict):
    """``POST /v1/keys``: a key for ``org``, optionally admin, optionally bound to one agent of that org."""

    org: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$")]
    admin: bool = False
    agent: Annotated[str, Field(max_length=400)] | None = None


#: A loaded price file's name: what ``prices unload`` and the events call it.
PRICE_FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class PriceFileUpload(_Strict):
    """``POST /v1/prices``: a price file (TOML text, format: ``pricing/README.md``) to load under ``name``.

    A file already loaded under that name is replaced. The TOML itself is checked by the pricing
    engine's loader (``_commands.load_prices``), whose errors name the model and the field."""

    name: Annotated[str, Field(pattern=PRICE_FILE_NAME)]
    toml: Annotated[str, Field(min_length=1, max_length=1_000_000)]
