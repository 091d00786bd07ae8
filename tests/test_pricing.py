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
