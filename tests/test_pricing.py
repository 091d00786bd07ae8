"""The pricing engine through its contract: ``table()``, ``Usage``, ``Quote``.

Expected values are hand-computed from the published USD-per-1M rates:
$X per 1M tokens == X * 1e6 pico-dollars per token.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from axme_meter import _config
from axme_meter._money import to_decimal
from axme_meter._pricing import PriceTable, Quote, Usage, reload_table, table

NOW = dt.datetime(2026, 11, 28, 12, tzinfo=dt.timezone.utc).timestamp()
USD = 10**12  # pico-dollars per dollar


def at(day: str) -> float:
    d = dt.date.fromisoformat(day)
    return dt.datetime(d.year, d.month, d.day, 12, tzinfo=dt.timezone.utc).timestamp()


@pytest.fixture(autouse=True)
def clean_settings() -> Any:
    _config.configure(prices=None, extra_prices=[])
    reload_table()
    yield
    _config.configure(prices=None, extra_prices=[])
    reload_table()


def quote(model: str, **kw: Any) -> Quote:
    opts = {k: kw.pop(k) for k in ("service_tier", "batch") if k in kw}
    when = kw.pop("at", NOW)
    q = table().quote(model, Usage(**kw), at=when, **opts)
    assert sum(q.breakdown.values()) == q.cost_pico
    return q


def write(tmp_path: Path, text: str, name: str = "prices.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- model matching -----------------------------------------------------------------------------


def test_exact_name() -> None:
    q = quote("gpt-4o", input_tokens=1000, output_tokens=500)
    assert q.priced and q.model == "gpt-4o" and q.reason is None
    assert q.cost_pico == 7_500_000_000  # 1000*$2.50/1M + 500*$10/1M = $0.0075
    assert q.breakdown == {"input": 2_500_000_000, "output": 5_000_000_000}
    assert isinstance(table(), PriceTable)


def test_dated_snapshot_resolves_to_base_entry() -> None:
    assert table().resolve("gpt-4o-2024-08-06") == "gpt-4o"
    q = quote("gpt-4o-2024-08-06", input_tokens=1000, output_tokens=500)
    assert q.model == "gpt-4o" and q.cost_pico == 7_500_000_000


def test_snapshot_with_its_own_entry_keeps_its_price() -> None:
    assert table().resolve("gpt-4o-2024-05-13") == "gpt-4o-2024-05-13"
    q = quote("gpt-4o-2024-05-13", input_tokens=1000, output_tokens=500)
    assert q.cost_pico == 12_500_000_000  # $5 and $15 per 1M


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("o1-mini-2024-09-12", "o1-mini"),
        ("o1-2024-12-17", "o1"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("GPT-4o", "gpt-4o"),
        ("gpt-5-nano-2025-08-07", "gpt-5-nano"),
    ],
)
def test_no_prefix_misresolution(name: str, entry: str) -> None:
    assert table().resolve(name) == entry


@pytest.mark.parametrize("name", ["gpt-4o-minix", "o1-mini-foo", "gpt-4o-2024", "foo", "ft:", ""])
def test_unknown_names_do_not_resolve(name: str) -> None:
    assert table().resolve(name) is None


def test_fine_tune_uses_fine_tune_rates() -> None:
    name = "ft:gpt-4o-mini-2024-07-18:my-org::abc123"
    assert table().resolve(name) == "gpt-4o-mini"
    q = quote(name, input_tokens=1000, output_tokens=1000)
    assert q.cost_pico == 1_500_000_000  # $0.30 + $1.20 per 1M, not the base $0.15 + $0.60
    assert quote("gpt-4o-mini", input_tokens=1000, output_tokens=1000).cost_pico == 750_000_000


def test_fine_tune_without_fine_tune_rates_uses_base_rates() -> None:
    q = quote("ft:gpt-5-nano-2025-08-07:org::x", input_tokens=1000, output_tokens=1000)
    assert q.model == "gpt-5-nano" and q.cost_pico == 450_000_000  # $0.05 + $0.40 per 1M


def test_unknown_model_is_unpriced_with_reason() -> None:
    q = table().quote("foo", Usage(input_tokens=10, output_tokens=10))
    assert (q.priced, q.cost_pico, q.model, q.breakdown) == (False, 0, "foo", {})
    assert q.reason == "unknown model 'foo'"
    assert q.version == table().version


def test_free_models() -> None:
    t = table()
    assert t.is_free("omni-moderation-latest") and t.is_free("text-moderation-stable")
    assert not t.is_free("gpt-4o") and not t.is_free("whisper-1") and not t.is_free("nope")
    q = quote("omni-moderation-latest")
    assert q.priced and q.cost_pico == 0


# -- token dimensions ---------------------------------------------------------------------------


def test_cached_input_is_a_subset_not_billed_twice() -> None:
    q = quote("gpt-4o", input_tokens=1000, cached_tokens=400)
    # 600 * $2.50/1M + 400 * $1.25/1M = $0.0015 + $0.0005
    assert q.breakdown == {"input": 1_500_000_000, "cached_input": 500_000_000}
    assert q.cost_pico == 2_000_000_000


def test_cache_writes_default_to_input_rate() -> None:
    q = quote("gpt-4o", input_tokens=1000, cache_write_tokens=300)
    assert q.cost_pico == 2_500_000_000
    assert q.breakdown == {"input": 1_750_000_000, "cache_write": 750_000_000}


def test_cache_write_rates_from_data() -> None:
    _config.configure(extra_prices=[{
        "id": "cw-model",
        "prices": [{"effective": "2026-01-01", "input": "2.50", "cache_write": "3.125", "cache_write_12h": "5.00", "output": "10"}],
    }])
    q = quote("cw-model", input_tokens=1000, cache_write_tokens=300, cache_write_12h_tokens=100)
    # 700*$2.50 + 200*$3.125 + 100*$5.00 per 1M = $0.00175 + $0.000625 + $0.0005
    assert q.breakdown == {"input": 1_750_000_000, "cache_write": 625_000_000, "cache_write_12h": 500_000_000}
    assert q.cost_pico == 2_875_000_000


def test_reasoning_is_part_of_output_at_output_rate() -> None:
    q = quote("o3", output_tokens=1000, reasoning_tokens=600)
    assert q.cost_pico == 8_000_000_000  # 1000 * $8/1M, reasoning not billed again
    assert q.breakdown == {"output": 3_200_000_000, "reasoning": 4_800_000_000}


def test_reasoning_rate_when_set() -> None:
    _config.configure(extra_prices=[{
        "id": "r-model", "prices": [{"effective": "2026-01-01", "input": "1", "output": "4", "reasoning": "2"}],
    }])
    assert quote("r-model", output_tokens=1000, reasoning_tokens=500).cost_pico == 3_000_000_000


def test_audio_tokens() -> None:
    q = quote("gpt-4o-audio-preview", input_tokens=1000, audio_input_tokens=600, output_tokens=500, audio_output_tokens=400)
    # text in 400*$2.50, audio in 600*$40, text out 100*$10, audio out 400*$80 (per 1M)
    assert q.breakdown == {
        "input": 1_000_000_000, "audio_input": 24_000_000_000,
        "output": 1_000_000_000, "audio_output": 32_000_000_000,
    }
    assert q.cost_pico == 58_000_000_000


def test_transcribe_model_audio_input_tokens() -> None:
    q = quote("gpt-4o-transcribe", input_tokens=1000, audio_input_tokens=1000, output_tokens=100)
    assert q.cost_pico == 6_000_000_000 + 1_000_000_000  # 1000*$6 + 100*$10 per 1M


def test_image_tokens() -> None:
    q = quote("gpt-image-1", input_tokens=500, image_input_tokens=300, output_tokens=1000, image_output_tokens=1000)
    # text in 200*$5, image in 300*$10, image out 1000*$40 (per 1M)
    assert q.breakdown == {"input": 1_000_000_000, "image_input": 3_000_000_000, "image_output": 40_000_000_000}
    assert q.cost_pico == 44_000_000_000


# -- per-unit prices ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "n", "size", "quality", "pico"),
    [
        ("dall-e-3", 2, "1792x1024", "hd", 240_000_000_000),  # 2 * $0.12
        ("dall-e-3", 1, "1024x1024", None, 40_000_000_000),  # standard by default
        ("dall-e-3", 1, "1024x1024", "standard", 40_000_000_000),
        ("dall-e-2", 3, "512x512", None, 54_000_000_000),  # 3 * $0.018
        ("gpt-image-1", 1, "1536x1024", "high", 250_000_000_000),
        ("gpt-image-1", 1, "1536x1024", "standard", 63_000_000_000),  # no such quality: the medium estimate
        ("gpt-image-1-mini", 4, "1024x1024", "low", 20_000_000_000),  # 4 * $0.005
    ],
)
def test_per_image(model: str, n: int, size: str, quality: str | None, pico: int) -> None:
    q = quote(model, images=n, image_size=size, image_quality=quality)
    assert q.priced and q.cost_pico == pico and q.breakdown == {"images": pico}


def test_per_image_unknown_size_is_unpriced() -> None:
    q = quote("dall-e-3", images=1, image_size="999x999", image_quality="hd")
    assert not q.priced and q.cost_pico == 0 and "999x999" in (q.reason or "")


def test_whisper_is_billed_by_the_second() -> None:
    assert quote("whisper-1", audio_seconds=60).cost_pico == 6_000_000_000  # $0.006
    assert quote("whisper-1", audio_seconds=61.2).cost_pico == 6_200_000_000  # 62 s * $0.0001


def test_tts_per_character() -> None:
    assert quote("tts-1", characters=1000).cost_pico == 15_000_000_000  # $15 per 1M chars
    assert quote("tts-1-hd", characters=1000).cost_pico == 30_000_000_000


def test_per_unit_without_a_unit_price_is_unpriced() -> None:
    q = quote("gpt-4o", characters=100)
    assert not q.priced and "per-character" in (q.reason or "")


# -- long context, tiers, batch -----------------------------------------------------------------


def test_long_context_whole_request_at_tier_rate() -> None:
    above = quote("gpt-5.4", input_tokens=272_001, output_tokens=1000)
    assert above.cost_pico == 272_001 * 5_000_000 + 1000 * 22_500_000  # $1.382505
    assert to_decimal(above.cost_pico) == Decimal("1.382505")
    below = quote("gpt-5.4", input_tokens=272_000, output_tokens=1000)
    assert to_decimal(below.cost_pico) == Decimal("0.695")  # 272000*$2.50 + 1000*$15 per 1M


def test_flex_priority_and_standard_tiers() -> None:
    usage = {"input_tokens": 1000, "output_tokens": 1000}
    assert quote("gpt-5", **usage).cost_pico == 11_250_000_000
    assert quote("gpt-5", service_tier="flex", **usage).cost_pico == 5_625_000_000
    assert quote("gpt-5", service_tier="priority", **usage).cost_pico == 22_500_000_000
    # "fast" is what priority processing is called since 2026-07-30
    assert quote("gpt-5", service_tier="fast", **usage).cost_pico == 22_500_000_000
    for tier in ("default", "auto", "standard", None):
        q = quote("gpt-5", service_tier=tier, **usage)
        assert q.priced and not q.estimated and q.cost_pico == 11_250_000_000, tier


@pytest.mark.parametrize(("model", "tier"), [("gpt-4o", "flex"), ("gpt-5-nano", "priority"), ("gpt-5", "scale"), ("gpt-5", "turbo")])
def test_tier_without_rates_is_standard_but_estimated(model: str, tier: str) -> None:
    standard = quote(model, input_tokens=1000, output_tokens=1000)
    q = quote(model, service_tier=tier, input_tokens=1000, output_tokens=1000)
    assert q.priced and q.estimated and q.cost_pico == standard.cost_pico
    assert f"no {tier!r} rates" in (q.reason or "") and "standard" in (q.reason or "")
    assert not standard.estimated and standard.reason is None


def test_batch_uses_file_discount() -> None:
    q = quote("gpt-5", batch=True, input_tokens=1000, cached_tokens=200, output_tokens=1000)
    # half of 800*$1.25 + 200*$0.125 + 1000*$10 per 1M
    assert q.cost_pico == (800 * 1_250_000 + 200 * 125_000 + 1000 * 10_000_000) // 2


def test_batch_explicit_rates_win_and_apply_to_tokens_only() -> None:
    _config.configure(extra_prices=[{
        "id": "b-model",
        "prices": [{"effective": "2026-01-01", "input": "4", "output": "8", "batch": {"input": "1", "output": "3"}}],
    }])
    assert quote("b-model", batch=True, input_tokens=1000, output_tokens=1000).cost_pico == 4_000_000_000
    assert quote("whisper-1", batch=True, audio_seconds=60).cost_pico == 6_000_000_000


# -- price history, user files, extra prices ----------------------------------------------------

HISTORY = """
[meta]
provider = "mine"
checked = "2026-01-02"

[[models]]
id = "hist-model"
source = "test"
checked = "2026-01-02"
[[models.prices]]
effective = "2025-01-01"
input = "1.00"
output = "2.00"
[[models.prices]]
effective = "2026-01-01"
input = "3.00"
output = "4.00"
"""


@pytest.mark.parametrize(
    ("day", "pico"),
    [("2024-06-01", 3_000_000_000), ("2025-06-01", 3_000_000_000), ("2025-12-31", 3_000_000_000),
     ("2026-01-01", 7_000_000_000), ("2026-11-28", 7_000_000_000)],
)
def test_price_history(tmp_path: Path, day: str, pico: int) -> None:
    _config.configure(prices=write(tmp_path, HISTORY))
    assert quote("hist-model", at=at(day), input_tokens=1000, output_tokens=1000).cost_pico == pico


def test_bundled_price_history_o3_cut() -> None:
    usage = {"input_tokens": 1000, "output_tokens": 1000}
    assert quote("o3", at=at("2025-05-01"), **usage).cost_pico == 50_000_000_000
    assert quote("o3", at=at("2025-06-10"), **usage).cost_pico == 10_000_000_000


def test_override_file_replaces_by_id_and_changes_version(tmp_path: Path) -> None:
    before = table().version
    path = write(tmp_path, '[[models]]\nid = "gpt-4o"\n[[models.prices]]\neffective = "2020-01-01"\ninput = "9.00"\noutput = "10"\n')
    _config.configure(prices=path)
    after = table().version
    assert after != before
    assert quote("gpt-4o-2024-08-06", input_tokens=1000).cost_pico == 9_000_000_000
    assert quote("gpt-4o-mini", input_tokens=1000).cost_pico == 150_000_000  # rest untouched


def test_extra_prices_add_models_with_aliases() -> None:
    before = table()
    _config.configure(extra_prices=[{
        "id": "my-model", "aliases": ["my-alias"],
        "prices": [{"effective": "2026-01-01", "input": "0.5", "output": "1.5"}],
    }])
    t = table()
    assert t is not before  # configure() dropped the cached table
    assert t.resolve("my-alias") == "my-model" and t.resolve("my-model-2026-02-01") == "my-model"
    assert quote("my-alias", input_tokens=2000, output_tokens=1000).cost_pico == 2_500_000_000
    assert t.version != before.version


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ('[[models]]\nid = "m1"\n[[models.prices]]\neffective = "2026-01-01"\ninput = 2.5\n', ["m1", "prices[0].input", "quoted"]),
        ('[[models]]\nid = "m2"\n[[models.prices]]\neffective = "2026-01-01"\ninput = "0.0000001"\n', ["m2", "prices[0].input", "whole"]),
        ('[[models]]\nid = "m3"\n[[models.prices]]\neffective = "2026-01-01"\ninptu = "1"\n', ["m3", "inptu", "unknown field"]),
        ('[[models]]\nid = "m4"\n[[models.prices]]\ninput = "1"\n', ["m4", "effective", "YYYY-MM-DD"]),
        ('[[models]]\nid = "m5"\n', ["m5", "prices", "missing"]),
        ('[[models]]\nid = "m6"\n[[models.prices]]\neffective = "2026-13-01"\ninput = "1"\n', ["m6", "effective"]),
        ("[[models]\nid = ", ["not valid TOML"]),
    ],
)
def test_bad_files_name_file_model_and_field(tmp_path: Path, body: str, needles: list[str]) -> None:
    path = write(tmp_path, body, "bad.toml")
    _config.configure(prices=path)
    with pytest.raises(ValueError) as info:
        table()
    message = str(info.value)
    assert str(path) in message and "Fix:" in message
    for needle in needles:
        assert needle in message


def test_bad_extra_prices_named(tmp_path: Path) -> None:
    _config.configure(extra_prices=[{"id": "x", "prices": [{"effective": "2026-01-01", "output": "abc"}]}])
    with pytest.raises(ValueError, match=r"extra_prices\[0\].*'x'.*prices\[0\]\.output"):
        table()


# -- exactness and version ----------------------------------------------------------------------


def test_exact_summing_a_million_times() -> None:
    q = quote("gpt-4o-mini", input_tokens=1234, cached_tokens=567, output_tokens=89)
    # 667*$0.15 + 567*$0.075 + 89*$0.60 per 1M = $0.000195975
    assert q.cost_pico == 195_975_000
    total = 0
    for _ in range(1_000_000):
        total += q.cost_pico
    assert total == 1_000_000 * q.cost_pico
    one = to_decimal(q.cost_pico)
    dec_total = Decimal(0)
    for _ in range(1_000_000):
        dec_total += one
    assert dec_total == one * 1_000_000 == Decimal("195.975")


def test_version_format_and_reload(tmp_path: Path) -> None:
    version = table().version
    assert re.fullmatch(r"openai-2026-12-02\+sha256:[0-9a-f]{12}", version)
    assert quote("gpt-4o", input_tokens=1).version == version
    reload_table()
    assert table().version == version  # same data, same version
    _config.configure(prices=write(tmp_path, HISTORY))
    assert table().version != version



def test_long_context_applies_to_flex_and_batch() -> None:
    usage = {"input_tokens": 300_000, "output_tokens": 1000}
    # flex $1.25/$7.50 per 1M, doubled input and 1.5x output above 272k: $2.50/$11.25
    flex = quote("gpt-5.4", service_tier="flex", **usage)
    assert flex.breakdown == {"input": 750_000_000_000, "output": 11_250_000_000}
    assert quote("gpt-5.4", batch=True, **usage).cost_pico == flex.cost_pico
    assert quote("gpt-5.4", **usage).cost_pico == 2 * flex.cost_pico


def test_batch_discount_must_give_exact_rates(tmp_path: Path) -> None:
    body = '[meta]\nbatch_discount = "0.5"\n[[models]]\nid = "odd"\n[[models.prices]]\neffective = "2026-01-01"\ninput = "0.000001"\n'
    _config.configure(prices=write(tmp_path, body))
    with pytest.raises(ValueError, match=r"'odd'.*batch_discount.*whole"):
        table()


# -- issue 11: every model the audit found missing ------------------------------------------------
# Expected values are hand-computed: tokens x USD-per-1M / 1M, written out in each comment.


def usd(model: str, **kw: Any) -> Decimal:
    return to_decimal(quote(model, **kw).cost_pico)


ISSUE_11_MODELS = [
    "gpt-5.5", "gpt-5.5-pro", "gpt-5.4-nano", "gpt-5.3-codex", "gpt-5.3-chat-latest", "chat-latest",
    "gpt-5-search-api", "gpt-5-chat", "gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-6-astra", "gpt-6-sol",
    "gpt-6-luna", "gpt-6.1-sol", "gpt-6.1-terra", "gpt-5.5-cyber", "gpt-5.6-cyber", "gpt-6-cyber", "gpt-image-1.5",
    "gpt-image-2", "gpt-realtime-1.5", "gpt-realtime-2", "gpt-realtime-2.1", "gpt-audio-1.5", "gpt-audio-mini",
    "gpt-transcribe", "gpt-realtime-whisper", "gpt-live-1", "computer-use-preview", "gpt-3.5-turbo-16k",
    "chatgpt-4o-latest", "codex-mini-latest", "text-embedding-ada-002-v2",
]


@pytest.mark.parametrize("model", ISSUE_11_MODELS)
def test_issue_11_models_are_priced(model: str) -> None:
    t = table()
    entry = t.entries[t.resolve(model)]  # type: ignore[index]
    assert entry.source.startswith("https://") and entry.checked == "2026-12-02"
    assert entry.periods and not t.is_free(model)


def test_every_entry_has_source_checked_and_dated_periods() -> None:
    for entry in table().entries.values():
        assert entry.source and entry.checked, entry.id
        assert [p.effective_day for p in entry.periods] == sorted({p.effective_day for p in entry.periods}), entry.id


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # 10,000 in (4,000 cached, 2,000 cache writes, 4,000 text) and 1,000 out:
        ("gpt-6-astra", "0.119"),  # 4000x10 + 4000x1 + 2000x12.50 + 1000x50
        ("gpt-6-sol", "0.0238"),  # 4000x2 + 4000x0.20 + 2000x2.50 + 1000x10
        ("gpt-6-luna", "0.00119"),  # 4000x0.10 + 4000x0.01 + 2000x0.125 + 1000x0.50
        ("gpt-6.1-sol", "0.0234"),  # 4000x2 + 4000x0.10 + 2000x2.50 + 1000x10
        ("gpt-6.1-terra", "0.0117"),  # 4000x1 + 4000x0.05 + 2000x1.25 + 1000x5
    ],
)
def test_gpt_6_family_with_cache_writes(model: str, expected: str) -> None:
    q = quote(model, input_tokens=10_000, cached_tokens=4_000, cache_write_tokens=2_000, output_tokens=1_000)
    assert to_decimal(q.cost_pico) == Decimal(expected)
    assert set(q.breakdown) == {"input", "cached_input", "cache_write", "output"}


def test_gpt_6_tiers_and_long_context() -> None:
    small = {"input_tokens": 10_000, "cached_tokens": 4_000, "cache_write_tokens": 2_000, "output_tokens": 1_000}
    assert usd("gpt-6-sol", service_tier="flex", **small) == Decimal("0.0119")  # 4000x1 + 4000x0.10 + 2000x1.25 + 1000x5
    assert usd("gpt-6-sol", service_tier="priority", **small) == Decimal("0.0476")  # 4000x4 + 4000x0.40 + 2000x5 + 1000x20
    big = {"input_tokens": 300_000, "cached_tokens": 100_000, "cache_write_tokens": 50_000, "output_tokens": 10_000}
    # above 272K the whole request: 150000x4 + 100000x0.40 + 50000x5 + 10000x15
    assert usd("gpt-6-sol", **big) == Decimal("1.04")
    assert usd("gpt-6-sol", batch=True, **big) == Decimal("0.52")
    assert usd("gpt-6-sol", service_tier="priority", **big) == Decimal("1.04")  # priority excludes long context


def test_gpt_6_1_terra_cache_write_ttl_split() -> None:
    # 7000x1 + 2000x1.25 (30-minute writes) + 1000x2.50 (12-hour writes)
    q = quote("gpt-6.1-terra", input_tokens=10_000, cache_write_tokens=3_000, cache_write_12h_tokens=1_000)
    assert q.breakdown == {"input": 7_000_000_000, "cache_write": 2_500_000_000, "cache_write_12h": 2_500_000_000}
    # above 272K: 297000x2 + 2000x2.50 + 1000x5
    assert usd("gpt-6.1-terra", input_tokens=300_000, cache_write_tokens=3_000, cache_write_12h_tokens=1_000) == Decimal("0.604")


@pytest.mark.parametrize(
    ("model", "day", "expected"),
    [
        # 10,000 in (2,000 cached, 1,000 cache writes, 7,000 text) and 1,000 out
        ("gpt-5.6-sol", "2026-08-20", "0.07225"),  # 7000x5 + 2000x0.50 + 1000x6.25 + 1000x30
        ("gpt-5.6-sol", "2026-08-21", "0.0538"),  # cut: 7000x4 + 2000x0.40 + 1000x5 + 1000x20
        ("gpt-5.6", "2026-11-28", "0.0538"),  # gpt-5.6 is Sol
        ("gpt-5.6-terra", "2026-07-29", "0.036125"),  # 7000x2.50 + 2000x0.25 + 1000x3.125 + 1000x15
        ("gpt-5.6-terra", "2026-07-30", "0.0289"),  # cut: 7000x2 + 2000x0.20 + 1000x2.50 + 1000x12
        ("gpt-5.6-luna", "2026-06-26", "0.01445"),  # 7000x1 + 2000x0.10 + 1000x1.25 + 1000x6
        ("gpt-5.6-luna", "2026-07-30", "0.00289"),  # cut: 7000x0.20 + 2000x0.02 + 1000x0.25 + 1000x1.20
        ("gpt-5.6-luna-2026-06-26", "2026-06-27", "0.01445"),  # a dated snapshot, priced by the call's date
    ],
)
def test_gpt_5_6_price_cuts_are_history(model: str, day: str, expected: str) -> None:
    usage = {"input_tokens": 10_000, "cached_tokens": 2_000, "cache_write_tokens": 1_000, "output_tokens": 1_000}
    assert usd(model, at=at(day), **usage) == Decimal(expected)


def test_gpt_5_6_tiers_and_long_context() -> None:
    small = {"input_tokens": 10_000, "cached_tokens": 2_000, "cache_write_tokens": 1_000, "output_tokens": 1_000}
    assert usd("gpt-5.6-sol", service_tier="priority", **small) == Decimal("0.1076")  # 7000x8 + 2000x0.80 + 1000x10 + 1000x40
    assert usd("gpt-5.6-sol", service_tier="flex", **small) == Decimal("0.0269")  # 7000x2 + 2000x0.20 + 1000x2.50 + 1000x10
    assert usd("gpt-5.6-sol", input_tokens=300_000, output_tokens=10_000) == Decimal("2.7")  # 300000x8 + 10000x30
    assert usd("gpt-5.6-sol", service_tier="flex", input_tokens=300_000, output_tokens=10_000) == Decimal("1.35")  # x4, x15


def test_gpt_5_5_family() -> None:
    usage = {"input_tokens": 10_000, "cached_tokens": 4_000, "output_tokens": 1_000}
    assert usd("gpt-5.5", **usage) == Decimal("0.062")  # 6000x5 + 4000x0.50 + 1000x30
    for alias in ("gpt-5.5-codex", "gpt-5.5-chat-latest", "gpt-5.5-2026-04-23"):
        assert usd(alias, **usage) == Decimal("0.062"), alias
    assert usd("gpt-5.5", service_tier="flex", **usage) == Decimal("0.031")  # 6000x2.50 + 4000x0.25 + 1000x15
    assert usd("gpt-5.5", batch=True, **usage) == Decimal("0.031")
    assert usd("gpt-5.5", service_tier="priority", **usage) == Decimal("0.155")  # 6000x12.50 + 4000x1.25 + 1000x75
    big = {"input_tokens": 300_000, "cached_tokens": 100_000, "output_tokens": 10_000}
    assert usd("gpt-5.5", **big) == Decimal("2.55")  # 200000x10 + 100000x1 + 10000x45
    assert usd("gpt-5.5", service_tier="flex", **big) == Decimal("1.275")
    assert usd("gpt-5.5-pro", input_tokens=10_000, output_tokens=1_000) == Decimal("0.48")  # 10000x30 + 1000x180
    assert usd("gpt-5.5-pro", service_tier="flex", input_tokens=10_000, output_tokens=1_000) == Decimal("0.24")
    assert usd("gpt-5.5-pro", input_tokens=300_000, output_tokens=10_000) == Decimal("20.7")  # 300000x60 + 10000x270
    assert usd("gpt-5.5-pro", service_tier="flex", input_tokens=300_000, output_tokens=10_000) == Decimal("10.35")  # x30, x135


def test_other_new_gpt_5_models() -> None:
    usage = {"input_tokens": 10_000, "cached_tokens": 4_000, "output_tokens": 1_000}
    assert usd("gpt-5.4-nano", **usage) == Decimal("0.00253")  # 6000x0.20 + 4000x0.02 + 1000x1.25
    assert usd("gpt-5.4-nano", service_tier="flex", **usage) == Decimal("0.001265")  # 6000x0.10 + 4000x0.01 + 1000x0.625
    assert usd("gpt-5.4-nano", batch=True, **usage) == Decimal("0.001265")
    assert usd("gpt-5.3-codex", **usage) == Decimal("0.0252")  # 6000x1.75 + 4000x0.175 + 1000x14
    assert usd("gpt-5.3-codex", service_tier="priority", **usage) == Decimal("0.0504")  # 6000x3.50 + 4000x0.35 + 1000x28
    assert usd("gpt-5.3-chat-latest", **usage) == usd("gpt-5.3-chat", **usage) == Decimal("0.0252")
    assert usd("chat-latest", **usage) == Decimal("0.062")  # 6000x5 + 4000x0.50 + 1000x30
    assert usd("gpt-5-search-api", **usage) == Decimal("0.018")  # 6000x1.25 + 4000x0.125 + 1000x10
    assert usd("gpt-5-chat", **usage) == usd("gpt-5", **usage) == Decimal("0.018")


def test_cyber_models() -> None:
    usage = {"input_tokens": 10_000, "cached_tokens": 4_000, "cache_write_tokens": 1_000, "output_tokens": 1_000}
    # before 2026-10-19 no cached (and no cache-write) rate was published: all 10000 input at 12.50, + 1000x75
    assert usd("gpt-5.5-cyber", at=at("2026-10-16"), **usage) == Decimal("0.2")
    # from 2026-10-19: 5000x12.50 + 4000x1.25 + 1000x12.50 + 1000x75
    assert usd("gpt-5.5-cyber", at=at("2026-10-19"), **usage) == Decimal("0.155")
    assert usd("gpt-5.6-cyber", **usage) == Decimal("0.158125")  # 5000x12.50 + 4000x1.25 + 1000x15.625 + 1000x75
    assert usd("gpt-6-cyber", **usage) == Decimal("0.233")  # 5000x20 + 4000x2 + 1000x25 + 1000x100
    q = quote("gpt-6-cyber", service_tier="flex", **usage)
    assert q.estimated and to_decimal(q.cost_pico) == Decimal("0.233")  # no flex rates are published


def test_gpt_image_1_5_and_2() -> None:
    # 1000 in = 400 text + 600 image; 500 cached = 200 text + 300 image; 2000 out = 100 text + 1900 image
    usage = {"input_tokens": 1_000, "image_input_tokens": 600, "cached_tokens": 500, "cached_image_tokens": 300,
             "output_tokens": 2_000, "image_output_tokens": 1_900}
    # 200x5 + 200x1.25 + 300x8 + 300x2 + 100x10 + 1900x32
    assert usd("gpt-image-1.5", **usage) == Decimal("0.06605")
    # batch, published figures: 200x2.50 + 200x0.63 + 300x4 + 300x1 + 100x5 + 1900x16
    assert usd("gpt-image-1.5", batch=True, **usage) == Decimal("0.033026")
    # gpt-image-2 image output pays the $30 output rate: 200x5 + 200x1.25 + 300x8 + 300x2 + 100x30 + 1900x30
    assert usd("gpt-image-2", **usage) == Decimal("0.06425")
    # batch: 200x2.50 + 200x0.625 + 300x4 + 300x1 + 100x15 + 1900x15
    assert usd("gpt-image-2", batch=True, **usage) == Decimal("0.032125")


def test_realtime_and_audio_models() -> None:
    # 1000 in = 200 text + 800 audio; 400 cached = 100 text + 300 audio; 500 out = 100 text + 400 audio
    usage = {"input_tokens": 1_000, "audio_input_tokens": 800, "cached_tokens": 400, "cached_audio_tokens": 300,
             "output_tokens": 500, "audio_output_tokens": 400}
    # 100x4 + 100x0.40 + 500x32 + 300x0.40 + 100x24 + 400x64
    assert usd("gpt-realtime-2", **usage) == usd("gpt-realtime-2.1", **usage) == Decimal("0.04456")
    # gpt-realtime-1.5 is gpt-realtime: the same, but text output at 16
    assert usd("gpt-realtime-1.5", **usage) == usd("gpt-realtime", **usage) == Decimal("0.04376")
    plain = {"input_tokens": 1_000, "audio_input_tokens": 800, "output_tokens": 500, "audio_output_tokens": 400}
    assert usd("gpt-audio-1.5", **plain) == Decimal("0.0527")  # 200x2.50 + 800x32 + 100x10 + 400x64
    assert usd("gpt-audio-mini", **plain) == Decimal("0.01636")  # 200x0.60 + 800x10 + 100x2.40 + 400x20


def test_new_per_minute_models_billed_by_the_second() -> None:
    assert usd("gpt-transcribe", audio_seconds=61.2) == Decimal("0.00465")  # 62 s x $0.0045/60
    assert usd("gpt-live-1", audio_seconds=90) == Decimal("0.075")  # 90 s x $3/3600
    # $0.017/min is not a whole pico-dollar per second: 61 x 17,000,000,000 / 60 = 17,283,333,333.3 pico
    q = quote("gpt-realtime-whisper", audio_seconds=61)
    assert q.cost_pico == 17_283_333_333
    assert quote("gpt-live-1", audio_seconds=1).cost_pico == 833_333_333  # 50,000,000,000 / 60
    tokens = quote("gpt-transcribe", input_tokens=100, output_tokens=10)
    assert not tokens.priced and "no token rates" in (tokens.reason or "")  # never $0 for tokens by accident


def test_per_second_rounding_is_half_even() -> None:
    _config.configure(extra_prices=[{"id": "tick", "prices": [{"effective": "2026-01-01", "per_minute": "0.000000000001"}]}])
    # one pico-dollar a minute: 30 s = 0.5 -> 0, 90 s = 1.5 -> 2, 150 s = 2.5 -> 2, 151 s -> 3
    assert [quote("tick", audio_seconds=s).cost_pico for s in (30, 90, 150, 151)] == [0, 2, 2, 3]


def test_older_models_and_aliases() -> None:
    assert usd("computer-use-preview", input_tokens=1000, output_tokens=1000) == Decimal("0.015")  # 1000x3 + 1000x12
    assert usd("computer-use-preview-2025-03-11", input_tokens=1000, output_tokens=1000) == Decimal("0.015")
    assert usd("gpt-3.5-turbo-16k", input_tokens=1000, output_tokens=1000) == Decimal("0.007")  # 1000x3 + 1000x4
    assert usd("gpt-3.5-turbo-16k-0613", input_tokens=1000, output_tokens=1000) == Decimal("0.007")
    assert usd("chatgpt-4o-latest", input_tokens=1000, output_tokens=1000) == Decimal("0.02")  # 1000x5 + 1000x15
    # 600x1.50 + 400x0.375 + 1000x6
    assert usd("codex-mini-latest", input_tokens=1000, cached_tokens=400, output_tokens=1000) == Decimal("0.00705")
    assert usd("text-embedding-ada-002-v2", input_tokens=1000) == Decimal("0.0001")  # 1000x0.10


# -- issue 11: the defects ---------------------------------------------------------------------


def test_gpt_5_4_mini_tier_rates() -> None:
    usage = {"input_tokens": 10_000, "cached_tokens": 4_000, "output_tokens": 1_000}
    assert usd("gpt-5.4-mini", **usage) == Decimal("0.0093")  # 6000x0.75 + 4000x0.075 + 1000x4.50
    assert usd("gpt-5.4-mini", service_tier="flex", **usage) == Decimal("0.00465")  # 6000x0.375 + 4000x0.0375 + 1000x2.25
    assert usd("gpt-5.4-mini", service_tier="priority", **usage) == Decimal("0.0186")  # 6000x1.50 + 4000x0.15 + 1000x9


def test_gpt_5_4_pro_flex_including_long_context() -> None:
    assert usd("gpt-5.4-pro", service_tier="flex", input_tokens=10_000, output_tokens=1_000) == Decimal("0.24")  # x15, x90
    # above 272K: 30 / 135
    assert usd("gpt-5.4-pro", service_tier="flex", input_tokens=300_000, output_tokens=10_000) == Decimal("10.35")
    assert usd("gpt-5.4-pro", batch=True, input_tokens=300_000, output_tokens=10_000) == Decimal("10.35")


def test_gpt_4o_2024_05_13_priority() -> None:
    q = quote("gpt-4o-2024-05-13", service_tier="priority", input_tokens=1000, output_tokens=1000)
    assert to_decimal(q.cost_pico) == Decimal("0.035") and not q.estimated  # 1000x8.75 + 1000x26.25


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-4o-mini-tts", "0.012"), ("gpt-image-1", "0.04"), ("gpt-image-1-mini", "0.008")],
)
def test_generic_output_rate_is_not_zero(model: str, expected: str) -> None:
    # 1000 output tokens that the response did not split into audio / image tokens: $12 / $40 / $8 per 1M
    assert usd(model, output_tokens=1000) == Decimal(expected)


def test_realtime_mini_cached_audio_is_billed_once_example_from_issue() -> None:
    # 750 in = 200 text + 550 audio; 500 cached = 200 text + 300 audio; 210 text out.
    # 200x0.06 (cached text) + 300x0.30 (cached audio) + 250x10 (audio) + 210x2.40 = $0.003106.
    # The engine used to subtract cached and audio separately: 500x0.06 + 550x10 + 210x2.40 = $0.006034.
    split = quote("gpt-realtime-mini", input_tokens=750, cached_tokens=500, audio_input_tokens=550,
                  cached_audio_tokens=300, output_tokens=210)
    assert to_decimal(split.cost_pico) == Decimal("0.003106")
    assert split.breakdown == {"cached_input": 12_000_000, "audio_input": 2_500_000_000,
                               "cached_audio_input": 90_000_000, "output": 504_000_000}
    # Without the split (the API reports only the totals), the overlap is inferred: the same price.
    unsplit = quote("gpt-realtime-mini", input_tokens=750, cached_tokens=500, audio_input_tokens=550, output_tokens=210)
    assert unsplit.breakdown == split.breakdown


def test_cached_image_tokens_are_billed_once() -> None:
    # 1000 in = 400 text + 600 image, 900 cached, no split: 900 + 600 > 1000, so 500 cached tokens are images.
    # 400x1.25 (cached text) + 100x10 (image) + 500x2.50 (cached image)
    q = quote("gpt-image-1", input_tokens=1000, image_input_tokens=600, cached_tokens=900)
    assert q.breakdown == {"cached_input": 500_000_000, "image_input": 1_000_000_000, "cached_image_input": 1_250_000_000}
    assert to_decimal(q.cost_pico) == Decimal("0.00275")


def test_cached_audio_without_a_cached_audio_rate_pays_the_audio_rate() -> None:
    # gpt-audio has no cache discount: cached audio is plain audio. 200x2.50 + 800x32
    assert usd("gpt-audio", input_tokens=1000, audio_input_tokens=800, cached_tokens=300, cached_audio_tokens=300) == Decimal("0.0261")


def test_priority_excludes_long_context_prompts() -> None:
    # up to 128K input tokens: priority 5 / 30
    assert usd("gpt-5.4", service_tier="priority", input_tokens=100_000, output_tokens=1000) == Decimal("0.53")
    # above 128K priority is not served: standard 200000x2.50 + 1000x15, not estimated
    q = quote("gpt-5.4", service_tier="priority", input_tokens=200_000, output_tokens=1000)
    assert to_decimal(q.cost_pico) == Decimal("0.515") and not q.estimated
    # above 272K: the standard long-context rates, 300000x5 + 1000x22.50
    assert usd("gpt-5.4", service_tier="fast", input_tokens=300_000, output_tokens=1000) == Decimal("1.5225")
    # o3 is not marked "excludes long context": priority applies to a 150K prompt, 150000x3.50
    assert usd("o3", service_tier="priority", input_tokens=150_000) == Decimal("0.525")


def test_fine_tunes_have_no_priority_rates() -> None:
    q = quote("ft:gpt-4o-mini-2024-07-18:org::x", service_tier="priority", input_tokens=1000, output_tokens=1000)
    assert q.estimated and to_decimal(q.cost_pico) == Decimal("0.0015")  # fine-tune rates 1000x0.30 + 1000x1.20


def test_gpt_3_5_turbo_1106_batch_is_its_standard_price() -> None:
    assert usd("gpt-3.5-turbo-1106", batch=True, input_tokens=1000, output_tokens=1000) == Decimal("0.003")  # 1 / 2
    # its fine-tunes (3 / 6) take the batch discount: 1000x1.50 + 1000x3
    assert usd("ft:gpt-3.5-turbo-1106:org::x", batch=True, input_tokens=1000, output_tokens=1000) == Decimal("0.0045")


@pytest.mark.parametrize(("model", "expected"), [
    ("gpt-3.5-turbo-0613", "0.0035"), ("gpt-3.5-turbo-0301", "0.0035"),  # 1000x1.50 + 1000x2
    ("gpt-3.5-turbo-0125", "0.002"), ("gpt-3.5-turbo", "0.002"),  # 1000x0.50 + 1000x1.50
    ("gpt-3.5-turbo-instruct-0914", "0.0035"),
])
def test_dated_snapshots_keep_their_own_price(model: str, expected: str) -> None:
    assert usd(model, input_tokens=1000, output_tokens=1000) == Decimal(expected)


@pytest.mark.parametrize("name", ["gpt-3.5-turbo-0914", "gpt-4o-0613", "gpt-4-turbo-1231"])
def test_mmdd_snapshots_never_fall_back_to_another_snapshot(name: str) -> None:
    assert table().resolve(name) is None


def test_rounded_published_figures() -> None:
    cached = {"input_tokens": 100_000, "cached_tokens": 100_000}
    assert usd("gpt-5.4", service_tier="flex", **cached) == Decimal("0.013")  # 100000 x 0.13
    assert usd("gpt-5.4", batch=True, **cached) == Decimal("0.013")
    # above 272K the published flex / batch cached figure is 0.25 (not 0.13 x 2): 300000 x 0.25
    assert usd("gpt-5.4", service_tier="flex", input_tokens=300_000, cached_tokens=300_000) == Decimal("0.075")
    assert usd("gpt-5.4", batch=True, input_tokens=300_000, cached_tokens=300_000) == Decimal("0.075")
    assert usd("o4-mini", service_tier="flex", input_tokens=1000, cached_tokens=1000) == Decimal("0.000138")
    assert usd("gpt-image-1", batch=True, input_tokens=1000, cached_tokens=1000) == Decimal("0.00063")
    images = {"input_tokens": 1000, "image_input_tokens": 1000, "cached_tokens": 1000, "cached_image_tokens": 1000}
    assert usd("gpt-image-1-mini", batch=True, **images) == Decimal("0.00013")


def test_pre_gpt_5_batch_keeps_the_standard_cached_rate() -> None:
    usage = {"input_tokens": 1000, "cached_tokens": 400, "output_tokens": 1000}
    assert usd("gpt-4o", batch=True, **usage) == Decimal("0.00625")  # 600x1.25 + 400x1.25 (standard) + 1000x5
    assert usd("gpt-4.1", batch=True, **usage) == Decimal("0.0048")  # 600x1 + 400x0.50 + 1000x4
    assert table().entries["gpt-4o"].note.startswith("Batch cached-input rate: published nowhere")


# -- loading: new fields and checks --------------------------------------------------------------


def test_two_periods_on_one_date_are_refused(tmp_path: Path) -> None:
    body = ('[[models]]\nid = "twice"\n[[models.prices]]\neffective = "2026-01-01"\ninput = "1"\n'
            '[[models.prices]]\neffective = "2026-01-01"\ninput = "2"\n')
    _config.configure(prices=write(tmp_path, body))
    with pytest.raises(ValueError, match=r"'twice'.*two periods start on 2026-01-01"):
        table()


@pytest.mark.parametrize(("body", "needle"), [
    ('priority = { input = "2", max_input_tokens = "lots" }', "max_input_tokens"),
    ('long_context = { threshold = 100, input = "2", flex = { inptu = "1" } }', "long_context.flex.inptu"),
    ('per_minute = "0.0000000000001"', "per_minute"),
])
def test_bad_new_fields_are_named(tmp_path: Path, body: str, needle: str) -> None:
    _config.configure(prices=write(tmp_path, f'[[models]]\nid = "m"\n[[models.prices]]\neffective = "2026-01-01"\ninput = "1"\n{body}\n'))
    with pytest.raises(ValueError, match=re.escape(needle)):
        table()


def test_a_table_from_uploaded_bytes_prices_like_the_bundled_one() -> None:
    from axme_meter._pricing import bundled_files, parse_bytes

    files = bundled_files()
    assert [f.provider for f in files] == ["openai"]  # known-differences.toml is not price data
    upload = b'[meta]\nprovider = "mine"\n[[models]]\nid = "gpt-7"\n[[models.prices]]\neffective = "2027-01-01"\ninput = "3"\n'
    t = PriceTable([*files, parse_bytes(upload, "upload.toml")])
    assert t.quote("gpt-7", Usage(input_tokens=1000)).cost_pico == 3_000_000_000
    assert t.quote("gpt-4o", Usage(input_tokens=1000)).cost_pico == 2_500_000_000
    with pytest.raises(ValueError, match=r"upload\.toml.*'bad'.*prices\[0\]\.input"):
        parse_bytes(b'[[models]]\nid = "bad"\n[[models.prices]]\neffective = "2027-01-01"\ninput = "-1"\n', "upload.toml")


# -- the maintainer's check: its reviewed-differences file -------------------------------------


def _check_prices() -> Any:
    import importlib.util
    import sys

    if "check_prices" in sys.modules:
        return sys.modules["check_prices"]
    path = Path(__file__).resolve().parents[1] / "scripts" / "check_prices.py"
    spec = importlib.util.spec_from_file_location("check_prices", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["check_prices"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_known_differences_file_is_pinned_and_reasoned() -> None:
    check = _check_prices()
    requirement, known = check.load_known(check.KNOWN)
    assert requirement == "genai-prices==0.2.3"
    assert known and all(len(k.reason) > 40 for k in known)


def test_known_difference_needs_a_reason_and_matches_exactly(tmp_path: Path) -> None:
    check = _check_prices()
    bad = write(tmp_path, 'reference = "genai-prices==0.2.3"\n[[difference]]\nmodels = "gpt-4o"\nprobes = "input"\n')
    with pytest.raises(ValueError, match="reason"):
        check.load_known(bad)
    good = write(tmp_path, 'reference = "genai-prices==0.2.3"\n[[difference]]\nmodels = ["gpt-4o*"]\nprobes = ["long:*"]\n'
                 'tiers = ["priority"]\nours = "2.50"\nreason = "a documented reason for this test"\n', "good.toml")
    _, [known] = check.load_known(good)
    row = check.Row("gpt-4o-mini", "priority", "2026-12-02", "long:input", Decimal("2.5"), Decimal("4"))
    assert known.matches(row)
    assert not known.matches(check.Row("gpt-4o-mini", "flex", "2026-12-02", "long:input", Decimal("2.5"), Decimal("4")))
    assert not known.matches(check.Row("gpt-4o-mini", "priority", "2026-12-02", "long:input", Decimal("2.6"), Decimal("4")))


# -- the gateway's table: checks for loaded files, aggregate quotes, installing it in a client ------------------


@pytest.mark.parametrize(("body", "model", "field", "needle"), [
    ('[[models]]\nid = "u"\n[[models.prices]]\neffective = "2026-01-01"\nrate = "2.50"\n', "u", "prices[0].rate", "no unit"),
    ('[[models]]\nid = "e"\n[[models.prices]]\neffective = "2026-01-01"\nnote = "tbd"\n', "e", "prices[0]", "prices nothing"),
    ('[[models]]\nid = "d"\n[[models.prices]]\neffective = "2026-01-01"\ninput = "1"\n'
     '[[models]]\nid = "d"\n[[models.prices]]\neffective = "2026-02-01"\ninput = "2"\n', "d", "id", "overlap"),
    ('[[models]]\nid = "a"\n[[models.prices]]\neffective = "2026-01-01"\ninput = "1"\n'
     '[[models]]\nid = "b"\naliases = ["a"]\n[[models.prices]]\neffective = "2026-01-01"\ninput = "2"\n', "b", "aliases", "overlap"),
    ('[[models]]\nid = "h"\n[[models.prices]]\neffective = "2026-01-01"\ninput = "2000000"\n', "h", "prices[0].input", "1000000"),
])
def test_price_file_errors_name_model_and_field_for_machines_too(body: str, model: str, field: str, needle: str) -> None:
    from axme_meter._pricing import PriceFileError, parse_bytes

    with pytest.raises(PriceFileError) as info:
        parse_bytes(body.encode(), "ours.toml")
    assert (info.value.origin, info.value.model, info.value.field) == ("ours.toml", model, field)
    assert needle in str(info.value) and "Fix:" in str(info.value)


def test_an_alias_may_repeat_its_own_entry() -> None:
    from axme_meter._pricing import parse_bytes

    f = parse_bytes(b'[[models]]\nid = "x"\naliases = ["x", "y", "y"]\n[[models.prices]]\neffective = "2026-01-01"\ninput = "1"\n',
                    "ours.toml")
    assert f.entries[0].aliases == ("x", "y", "y")


def test_an_aggregate_of_requests_meets_thresholds_per_average_request() -> None:
    # gpt-5.4: a request above 272K input tokens pays the long-context rates (the whole request)
    def cost(inp: int, out: int, requests: int = 1) -> int:
        return table().quote("gpt-5.4", Usage(input_tokens=inp, output_tokens=out), at=NOW, requests=requests).cost_pico

    assert cost(600_000, 1000, requests=2) == 2 * cost(300_000, 500)  # two long requests: long rates
    assert cost(600_000, 900, requests=3) == 3 * cost(200_000, 300)  # three short ones: standard rates
    assert cost(600_000, 900) > cost(600_000, 900, requests=3)  # as one request it would be long
    assert cost(300_000, 500) > 300_000 * 2_500_000 + 500 * 15_000_000  # (the long rates are dearer)


def _gateway_files(extra_toml: str) -> tuple[str, list[Any]]:
    from axme_meter._pricing import bundled_files, parse_bytes

    files = [parse_bytes(f.raw, "openai.toml") for f in bundled_files()]
    files.append(parse_bytes(extra_toml.encode(), "ours.toml"))
    return PriceTable(files).version, files


GATEWAY_TOML = '[meta]\nprovider = "ours"\n[[models]]\nid = "gpt-7-test"\n[[models.prices]]\neffective = "2026-01-01"\ninput = "3"\noutput = "12"\n'


def test_the_gateways_table_is_installed_under_the_users_own_prices() -> None:
    from axme_meter._pricing import forget_gateway_table, gateway_version, install_gateway_table

    bundled = table().version
    version, files = _gateway_files(GATEWAY_TOML)
    try:
        install_gateway_table(files, version)
        assert gateway_version() == version and table().version == version  # the bundled file is read once
        assert quote("gpt-7-test", input_tokens=1000, output_tokens=1000).cost_pico == 15 * USD // 1000
        assert quote("gpt-4o", input_tokens=1000).cost_pico == 2_500_000_000  # the rest is unchanged
        _config.configure(extra_prices=[{"id": "gpt-7-test", "prices": [{"effective": "2026-01-01", "input": "1"}]}])
        assert quote("gpt-7-test", input_tokens=1000).cost_pico == 1_000_000_000  # a local override wins
        assert table().version != version
        _config.configure(extra_prices=[])
        reload_table()
        assert quote("gpt-7-test", input_tokens=1000).cost_pico == 3_000_000_000  # still installed after a reload
    finally:
        forget_gateway_table()
    assert gateway_version() is None and table().version == bundled and table().resolve("gpt-7-test") is None


def test_a_gateway_table_from_another_release_adds_to_the_bundled_one() -> None:
    from axme_meter._pricing import forget_gateway_table, install_gateway_table, parse_bytes

    older = parse_bytes(b'[meta]\nprovider = "openai"\nchecked = "2025-01-01"\n[[models]]\nid = "gpt-4o"\n'
                        b'[[models.prices]]\neffective = "2024-01-01"\ninput = "5"\n', "openai.toml")
    try:
        install_gateway_table([older], PriceTable([older]).version)
        assert quote("gpt-4o", input_tokens=1000).cost_pico == 5_000_000_000  # the gateway's entry wins
        assert table().resolve("gpt-5.4") == "gpt-5.4"  # models only this release knows keep its prices
    finally:
        forget_gateway_table()


def test_a_gateway_table_that_does_not_add_up_to_its_version_is_refused() -> None:
    from axme_meter._pricing import PriceFileError
    from axme_meter._pricing._wire import file_to_wire, files_from_wire

    version, files = _gateway_files(GATEWAY_TOML)
    body = {"pricing_version": version, "files": [file_to_wire(f, f.origin, "loaded") for f in files]}
    assert files_from_wire(body)[0] == version
    body["files"][1]["toml"] = body["files"][1]["toml"].replace('input = "3"', 'input = "0"')
    with pytest.raises(PriceFileError, match="add up to"):
        files_from_wire(body)
    for broken in ({}, {"pricing_version": version}, {"pricing_version": version, "files": [{"name": "x"}]}):
        with pytest.raises(PriceFileError):
            files_from_wire(broken)
