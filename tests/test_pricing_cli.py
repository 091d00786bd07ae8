"""``axme-meter price`` and ``axme-meter prices`` through the CLI entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from axme_meter import _config
from axme_meter._pricing import reload_table, table
from axme_meter.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_settings() -> Any:
    _config.configure(prices=None, extra_prices=[])
    reload_table()
    yield
    _config.configure(prices=None, extra_prices=[])
    reload_table()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_price_prints_cost_breakdown_entry_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "price", "gpt-4o-2024-08-06", "--input", "1000", "--cached", "400", "--output", "500", "--reasoning", "100")
    assert code == 0
    # 600*$2.50 + 400*$1.25 + 400*$10 + 100*$10 per 1M
    assert "cost:    $0.007\n" in out
    lines = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.startswith("  ")}
    assert lines == {"input": "$0.0015", "cached_input": "$0.0005", "output": "$0.004", "reasoning": "$0.001"}
    assert "-> gpt-4o" in out and table().version in out


@pytest.mark.parametrize(
    ("tier", "cost"),
    [(None, "$0.01125"), ("flex", "$0.005625"), ("priority", "$0.0225"), ("batch", "$0.005625")],
)
def test_price_tiers(capsys: pytest.CaptureFixture[str], tier: str | None, cost: str) -> None:
    argv = ["price", "gpt-5", "--input", "1000", "--output", "1000"] + (["--tier", tier] if tier else [])
    code, out, _ = run(capsys, *argv)
    assert code == 0 and f"cost:    {cost}\n" in out


def test_price_date_picks_the_period(capsys: pytest.CaptureFixture[str]) -> None:
    _, before, _ = run(capsys, "price", "o3", "--input", "1000", "--output", "1000", "--date", "2025-05-01")
    _, after, _ = run(capsys, "price", "o3", "--input", "1000", "--output", "1000", "--date", "2025-06-10")
    assert "cost:    $0.05\n" in before and "cost:    $0.01\n" in after


def test_price_unknown_model_suggests_and_explains(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "price", "gtp-4o-mini", "--input", "10")
    assert code == 2 and out == ""
    assert "unknown model 'gtp-4o-mini'" in err and "gpt-4o-mini" in err and "AXME_METER_PRICES" in err


def test_price_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["price", "gpt-4o", "--input", "-5"])
    assert info.value.code == 2
    code, _, err = run(capsys, "price", "gpt-4o", "--input", "10", "--cached", "20")
    assert code == 2 and "subsets" in err


def test_prices_lists_with_version_and_glob(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prices", "gpt-4o*")
    assert code == 0 and table().version in out.splitlines()[0]
    ids = [line.split()[0] for line in out.splitlines()[2:]]
    assert "gpt-4o" in ids and "gpt-4o-mini" in ids and "gpt-4.1" not in ids
    row = next(line.split() for line in out.splitlines() if line.startswith("gpt-4o "))
    assert row[1:4] == ["2.5", "1.25", "10"] and row[-1] == "2026-12-02"


def test_prices_substring_and_units(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prices", "whisper")
    assert code == 0 and "$0.006/min" in out and "gpt-4o" not in out
    code, out, _ = run(capsys, "prices")
    assert "tts-1-hd" in out and "$30/1M chars" in out and "dall-e-3" in out


def test_prices_no_match(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "prices", "zzz-nothing")
    assert code == 1 and "zzz-nothing" in err


def test_price_uses_user_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[[models]]\nid = "house-model"\n[[models.prices]]\neffective = "2026-01-01"\ninput = "1"\noutput = "3"\n')
    _config.configure(prices=path)
    code, out, _ = run(capsys, "price", "house-model", "--input", "1000", "--output", "1000")
    assert code == 0 and "cost:    $0.004\n" in out


def test_module_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "axme_meter", "price", "text-embedding-3-small", "--input", "1000000"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "cost:    $0.02\n" in proc.stdout


def test_price_cache_writes_and_estimated_tier(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "price", "gpt-6-sol", "--input", "10000", "--cached", "4000", "--cache-write", "2000", "--output", "1000")
    assert code == 0 and "cost:    $0.0238\n" in out  # 4000x2 + 4000x0.20 + 2000x2.50 + 1000x10 per 1M
    assert "  cache_write   $0.005\n" in out and "note:" not in out
    code, out, _ = run(capsys, "price", "gpt-4o", "--input", "1000", "--tier", "flex")
    assert code == 0 and "cost:    $0.0025\n" in out and "note:    estimated: no 'flex' rates" in out
    code, _, err = run(capsys, "price", "gpt-4o", "--input", "10", "--cached", "6", "--cache-write", "6")
    assert code == 2 and "subsets" in err


def test_prices_lists_new_dimensions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prices", "gpt-5.6-sol")
    row = next(line for line in out.splitlines() if line.startswith("gpt-5.6-sol "))
    assert code == 0 and "cache_write 5/1M" in row and "+flex,priority" in row
    _, out, _ = run(capsys, "prices", "gpt-live-1")
    assert "$0.05/min" in out
