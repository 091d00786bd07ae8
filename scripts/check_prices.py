#!/usr/bin/env python3
"""Compare the bundled price table with genai-prices, model by model and dimension by dimension.

Why: prices are data typed in by hand. A second, independently kept table catches typos,
missing tier rates and stale prices. genai-prices is a maintainer's reference, never a
runtime dependency: this script installs it into a throwaway virtualenv in a temporary
directory and talks to it through a subprocess, so it never enters this environment.

For every model name of ``pricing/openai.toml`` (ids and aliases, and a fine-tuned name
where the entry has fine-tune rates) it prices the same probe usages with both engines:
each token dimension alone (input, cached input, cache write, output, audio, image and
their cached parts), the long-context rates above 272K input tokens, per-minute and
per-character prices; at standard rates on every date a price changes in either table,
and at flex / priority / batch rates today wherever the reference publishes that tier.
It prints every disagreement as USD per 1M tokens (per minute, per 1M characters).

Exit status: 0 when every disagreement is listed, with a reason, in
``pricing/known-differences.toml`` and every listed difference still occurs; 1 otherwise;
2 when the reference cannot be installed.

Run from the repository, with the project's environment:

    python scripts/check_prices.py                 # installs the version pinned in known-differences.toml
    python scripts/check_prices.py --show-all      # also list the agreeing rows
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import re
import subprocess
import sys
import tempfile
import tomllib
import venv
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KNOWN = ROOT / "pricing" / "known-differences.toml"
sys.path.insert(0, str(ROOT))

from axme_meter._money import to_decimal  # noqa: E402
from axme_meter._pricing import PriceTable, Usage, bundled_files  # noqa: E402

SHORT = 100_000  # tokens per short probe: under the 128K priority limit and the 272K long-context threshold
LONG = 1_000_000  # input tokens of a long-context probe
MILLION = Decimal(1_000_000)
TIERS = {"flex": ("service_tier", "flex"), "priority": ("service_tier", "priority"), "batch": ("processing", "batch")}
#: Our usage fields -> genai-prices usage keys.
USAGE_KEYS = {
    "input_tokens": "input_tokens", "cached_tokens": "cache_read_tokens", "cache_write_tokens": "cache_write_tokens",
    "output_tokens": "output_tokens", "audio_input_tokens": "input_audio_tokens",
    "cached_audio_tokens": "cache_audio_read_tokens", "audio_output_tokens": "output_audio_tokens",
    "image_input_tokens": "input_image_tokens", "cached_image_tokens": "cache_image_read_tokens",
    "image_output_tokens": "output_image_tokens", "audio_seconds": "audio_seconds", "characters": "input_characters",
}

# The reference side: runs inside the throwaway virtualenv, reads JSON on stdin, writes JSON.
HELPER = r'''
import json, sys, datetime as dt
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ConditionalPrice, TieredPrices

def keys(price):
    return sorted(k for k, v in vars(price).items() if v is not None and not k.startswith("_"))

def describe(name):
    try:
        _, model = get_snapshot().find_provider_model(name, None, "openai", None)
    except LookupError:
        return None
    if model is None:
        return None
    prices = model.prices if isinstance(model.prices, list) else [ConditionalPrice(prices=model.prices)]
    dates = sorted(str(p.constraint.start_date) for p in prices if getattr(p.constraint, "start_date", None))
    price_keys = sorted({k for p in prices for k in keys(p.prices)})
    tiered = any(isinstance(v, TieredPrices) for p in prices for v in vars(p.prices).values())
    tiers = sorted({f"{k}={v}" for var in model.price_variants or () for k, v in var.when.items() if keys(var.prices)})
    tiered = tiered or any(isinstance(v, TieredPrices) for var in model.price_variants or () for v in vars(var.prices).values())
    return {"id": model.id, "dates": dates, "keys": price_keys, "tiered": tiered, "tiers": tiers}

def price(probe):
    when = dt.datetime.fromisoformat(probe["date"] + "T12:00:00+00:00")
    try:
        result = calc_price(Usage(**probe["usage"]), probe["model"], provider_id="openai",
                            genai_request_timestamp=when, price_context=probe.get("context") or None)
    except LookupError:
        return {"error": "unknown model"}
    except ValueError as exc:
        return {"error": str(exc)[:200]}
    return {"total": str(result.total_price), "id": result.model.id}

def catalogue():
    provider = next(p for p in get_snapshot().providers if p.id == "openai")
    return [model.id for model in provider.models]

request = json.load(sys.stdin)
if request["op"] == "describe":
    json.dump({n: describe(n) for n in request["names"]}, sys.stdout)
elif request["op"] == "catalogue":
    json.dump(catalogue(), sys.stdout)
else:
    json.dump([price(p) for p in request["probes"]], sys.stdout)
'''


# -- the reference, in its own virtualenv ------------------------------------------------------


class Reference:
    """genai-prices installed in a temporary virtualenv, asked through a subprocess."""

    def __init__(self, requirement: str, workdir: Path) -> None:
        self.requirement = requirement
        self.python = workdir / "venv" / ("Scripts" if sys.platform == "win32" else "bin") / "python"
        self.helper = workdir / "reference_helper.py"
        print(f"installing {requirement} into a throwaway virtualenv in {workdir} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(workdir / "venv")
        pip = subprocess.run([str(self.python), "-m", "pip", "install", "-q", "--disable-pip-version-check", requirement],
                             capture_output=True, text=True)
        if pip.returncode != 0:
            raise RuntimeError(f"pip could not install {requirement}:\n{pip.stderr.strip()}")
        self.helper.write_text(HELPER)

    def ask(self, request: dict[str, Any]) -> Any:
        proc = subprocess.run([str(self.python), str(self.helper)], input=json.dumps(request),
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the reference helper failed:\n{proc.stderr.strip()}")
        return json.loads(proc.stdout)


# -- probes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A usage that isolates one dimension: rate = (price(usage) - price(base)) / per."""

    name: str
    usage: dict[str, Any]
    base: dict[str, Any] | None
    per: Decimal  # divide the price difference by this to get the rate in the displayed unit


def _tokens(name: str, n: int, base: dict[str, int] | None = None, **fields: int) -> Probe:
    return Probe(name, dict(fields), base, Decimal(n) / MILLION)


def token_probes(audio: bool, image: bool, long: bool) -> list[Probe]:
    n, big = SHORT, LONG
    probes = [
        _tokens("input", n, input_tokens=n),
        _tokens("cached_input", n, input_tokens=n, cached_tokens=n),
        _tokens("cache_write", n, input_tokens=n, cache_write_tokens=n),
        _tokens("output", n, output_tokens=n),
    ]
    if audio:
        probes += [
            _tokens("audio_input", n, input_tokens=n, audio_input_tokens=n),
            _tokens("cached_audio_input", n, input_tokens=n, cached_tokens=n, audio_input_tokens=n, cached_audio_tokens=n),
            _tokens("audio_output", n, output_tokens=n, audio_output_tokens=n),
        ]
    if image:
        probes += [
            _tokens("image_input", n, input_tokens=n, image_input_tokens=n),
            _tokens("cached_image_input", n, input_tokens=n, cached_tokens=n, image_input_tokens=n, cached_image_tokens=n),
            _tokens("image_output", n, output_tokens=n, image_output_tokens=n),
        ]
    if long:
        probes += [
            _tokens("long:input", big, input_tokens=big),
            _tokens("long:cached_input", big, input_tokens=big, cached_tokens=big),
            _tokens("long:cache_write", big, input_tokens=big, cache_write_tokens=big),
            _tokens("long:output", n, {"input_tokens": big}, input_tokens=big, output_tokens=n),
        ]
    return probes


#: Priority excludes requests estimated above 128K prompt tokens: probe just above that, below 272K.
OVER_128K = [
    _tokens("over_128k:input", 200_000, input_tokens=200_000),
    _tokens("over_128k:output", SHORT, {"input_tokens": 200_000}, input_tokens=200_000, output_tokens=SHORT),
]

UNIT_PROBES = {
    "per_minute": Probe("per_minute", {"audio_seconds": 3600}, None, Decimal(60)),
    "per_1m_characters": Probe("per_1m_characters", {"characters": 1_000_000}, None, Decimal(1)),
}


# -- what to compare ---------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    tier: str
    date: str
    probe: str
    ours: Decimal | None
    reference: Decimal | None
    note: str = ""
    known: str | None = None  # the reason, when listed in known-differences.toml

    @property
    def agrees(self) -> bool:
        return self.ours == self.reference


@dataclass
class Case:
    """One model name at one tier on one date, with the probes to run."""

    name: str
    tier: str  # "standard", "flex", "priority", "batch"
    date: str
    probes: list[Probe] = field(default_factory=list)


def names_to_check(table: PriceTable) -> list[str]:
    """Every id and alias, plus a fine-tuned name for entries with fine-tune rates."""
    names: list[str] = []
    for entry in table.entries.values():
        names += [entry.id, *entry.aliases]
        if any("fine_tuned" in p.sets for p in entry.periods):
            day = dt.date(1970, 1, 1) + dt.timedelta(days=entry.periods[0].effective_day)
            snapshot = entry.id if re.search(r"-\d{4}$", entry.id) else f"{entry.id}-{day}"
            names.append(f"ft:{snapshot}:axme::check")
    return names


def our_dates(table: PriceTable, name: str) -> set[str]:
    entry = table.entries[table.resolve(name)]  # type: ignore[index]
    return {str(dt.date(1970, 1, 1) + dt.timedelta(days=p.effective_day)) for p in entry.periods}


def probes_for(table: PriceTable, name: str, described: dict[str, Any]) -> list[Probe]:
    entry = table.entries[table.resolve(name)]  # type: ignore[index]
    ours = {k for p in entry.periods for k in p.rates}
    keys = set(described["keys"])
    if any(p.per_minute is not None for p in entry.periods) or keys & {"audio_hours", "input_audio_hours"}:
        return [UNIT_PROBES["per_minute"]]
    if any(p.per_character is not None for p in entry.periods) or "input_mchars" in keys:
        return [UNIT_PROBES["per_1m_characters"]]
    if not ours and not any(k.endswith("_mtok") for k in keys):
        return []  # per-image models: the reference has no per-image prices
    audio = any("audio" in k for k in ours | keys)
    image = any("image" in k for k in ours | keys)
    long = any(p.long_threshold for p in entry.periods) or described["tiered"]
    return token_probes(audio, image, long)


def build_cases(table: PriceTable, described: dict[str, Any], today: str) -> list[Case]:
    cases: list[Case] = []
    for name, ref in described.items():
        if ref is None:
            continue
        probes = probes_for(table, name, ref)
        if not probes:
            continue
        for date in sorted((our_dates(table, name) | set(ref["dates"]) | {today})):
            if date <= today:
                cases.append(Case(name, "standard", date, probes))
        for tier, (key, value) in TIERS.items():
            if f"{key}={value}" in ref["tiers"]:
                extra = OVER_128K if tier == "priority" and probes[0].name == "input" else []
                cases.append(Case(name, tier, today, probes + extra))
    return cases


# -- pricing both sides ------------------------------------------------------------------------


def _at(date: str) -> float:
    day = dt.date.fromisoformat(date)
    return dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.timezone.utc).timestamp()


def ours_total(table: PriceTable, name: str, tier: str, date: str, usage: dict[str, Any]) -> Decimal | None:
    quote = table.quote(name, Usage(**usage), at=_at(date), service_tier=tier if tier in ("flex", "priority") else None,
                        batch=tier == "batch")
    return to_decimal(quote.cost_pico) if quote.priced else None


def reference_request(case: Case, usage: dict[str, Any]) -> dict[str, Any]:
    context = dict([TIERS[case.tier]]) if case.tier in TIERS else None
    return {"model": case.name, "date": case.date, "context": context,
            "usage": {USAGE_KEYS[k]: v for k, v in usage.items()}}


def rate(total: Decimal | None, base: Decimal | None, probe: Probe) -> Decimal | None:
    if total is None or (probe.base is not None and base is None):
        return None
    return ((total - (base or 0)) / probe.per).normalize()


def compare(table: PriceTable, reference: Reference, cases: list[Case]) -> list[Row]:
    requests, slots = [], []
    for case in cases:
        for probe in case.probes:
            slots.append((case, probe, len(requests)))
            requests.append(reference_request(case, probe.usage))
            requests.append(reference_request(case, probe.base) if probe.base else None)
    answers = reference.ask({"op": "price", "probes": [r for r in requests if r is not None]})
    it = iter(answers)
    results = [next(it) if r is not None else None for r in requests]
    rows = []
    for case, probe, i in slots:
        ref, ref_base = results[i], results[i + 1]
        note = ref.get("error", "") if ref else ""
        ref_rate = None
        if ref and "total" in ref and (ref_base is None or "total" in ref_base):
            ref_rate = rate(Decimal(ref["total"]), Decimal(ref_base["total"]) if ref_base else None, probe)
        ours = ours_total(table, case.name, case.tier, case.date, probe.usage)
        ours_base = ours_total(table, case.name, case.tier, case.date, probe.base) if probe.base else None
        rows.append(Row(case.name, case.tier, case.date, probe.name, rate(ours, ours_base, probe), ref_rate, note))
    return rows


# -- known differences -------------------------------------------------------------------------


@dataclass
class Known:
    """One reviewed [[difference]]: matches rows by model glob, probe glob, tier and date."""

    models: list[str]
    probes: list[str]
    tiers: list[str] | None
    dates: list[str] | None
    ours: Decimal | None
    reference: Decimal | None
    reason: str
    used: int = 0

    def matches(self, row: Row) -> bool:
        return (
            any(fnmatch.fnmatchcase(row.name, m) for m in self.models)
            and any(fnmatch.fnmatchcase(row.probe, p) for p in self.probes)
            and (self.tiers is None or row.tier in self.tiers)
            and (self.dates is None or row.date in self.dates)
            and (self.ours is None or row.ours == self.ours)
            and (self.reference is None or row.reference == self.reference)
        )


def _figure(raw: dict[str, Any], key: str, where: str) -> Decimal | None:
    if key not in raw:
        return None
    if not isinstance(raw[key], str):
        raise ValueError(f"{where}: {key} must be a decimal string")
    return Decimal(raw[key]).normalize()


def _names(raw: dict[str, Any], key: str, where: str, required: bool = True) -> list[str] | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: {key} must be a string or a non-empty list of strings")
    return value


def load_known(path: Path) -> tuple[str, list[Known]]:
    """The reviewed file: the pinned reference and its [[difference]] entries, each with a reason."""
    data = tomllib.loads(path.read_text())
    requirement = data.get("reference")
    if not isinstance(requirement, str) or "==" not in requirement:
        raise ValueError(f"{path}: reference must pin the version, e.g. reference = \"genai-prices==0.2.3\"")
    known = []
    for i, raw in enumerate(data.get("difference", [])):
        where = f"{path}: difference[{i}]"
        reason = raw.get("reason")
        if not isinstance(reason, str) or len(reason.strip()) < 10:
            raise ValueError(f"{where}: every difference needs a reason (a sentence saying why)")
        unknown = set(raw) - {"models", "probes", "tiers", "dates", "ours", "reference", "reason"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        known.append(Known(
            _names(raw, "models", where), _names(raw, "probes", where),  # type: ignore[arg-type]
            _names(raw, "tiers", where, False), _names(raw, "dates", where, False),
            _figure(raw, "ours", where), _figure(raw, "reference", where), reason.strip(),
        ))
    return requirement, known


# -- report ------------------------------------------------------------------------------------


def _fmt(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:f}"


def print_rows(title: str, rows: list[Row], reason: bool) -> None:
    if not rows:
        return
    print(f"\n{title} ({len(rows)}):")
    header = ("model", "tier", "date", "dimension", "ours", "genai-prices")
    cells = [header] + [(r.name, r.tier, r.date, r.probe, _fmt(r.ours), _fmt(r.reference)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    for row, cell in zip([None, *rows], cells):
        line = "  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip()
        if row is not None and reason and row.known:
            line += f"  # {row.known}"
        elif row is not None and row.note:
            line += f"  ({row.note})"
        print("  " + line)


def catalogue_gaps(reference: Reference, described: dict[str, Any]) -> list[str]:
    """Reference models that none of our names matched (information only)."""
    matched = {d["id"] for d in described.values() if d}
    return [model for model in reference.ask({"op": "catalogue"}) if model not in matched]


def run(args: argparse.Namespace) -> int:
    requirement, known = load_known(args.known)
    requirement = args.reference or requirement
    table = PriceTable(bundled_files())  # the bundled data only: no AXME_METER_PRICES, no extra_prices
    today = args.date or dt.datetime.now(dt.timezone.utc).date().isoformat()
    with tempfile.TemporaryDirectory(prefix="axme-price-check-") as tmp:
        try:
            reference = Reference(requirement, Path(tmp))
        except (RuntimeError, OSError) as exc:
            print(f"check_prices: cannot set up the reference: {exc}", file=sys.stderr)
            return 2
        names = names_to_check(table)
        described = reference.ask({"op": "describe", "names": names})
        cases = build_cases(table, described, today)
        rows = compare(table, reference, cases)
        gaps = catalogue_gaps(reference, described)
    for row in rows:
        if not row.agrees:
            hit = next((k for k in known if k.matches(row)), None)
            if hit is not None:
                hit.used += 1
                row.known = hit.reason
    missing = sorted(n for n, d in described.items() if d is None)
    new = [r for r in rows if not r.agrees and r.known is None]
    listed = [r for r in rows if not r.agrees and r.known is not None]
    stale = [k for k in known if not k.used]
    print(f"\n{table.version} against {requirement}, prices in force on {today} (USD per 1M tokens; per minute; per 1M characters)")
    print(f"{len(names)} model names, {len(cases)} model x tier x date cases, {len(rows)} dimensions compared: "
          f"{len(rows) - len(new) - len(listed)} agree, {len(listed)} known differences, {len(new)} new")
    if args.show_all:
        print_rows("agreeing", [r for r in rows if r.agrees], reason=False)
    print_rows("known differences (pricing/known-differences.toml)", listed, reason=True)
    print_rows("NEW DISAGREEMENTS: fix pricing/openai.toml, or list them with a reason in pricing/known-differences.toml", new, reason=False)
    for k in stale:
        print(f"\nSTALE known difference (no longer occurs; remove or update it): models={k.models} probes={k.probes}: {k.reason}")
    if missing:
        print(f"\nnot in the reference (not compared): {', '.join(missing)}")
    if gaps:
        print(f"reference models our table does not price: {', '.join(sorted(gaps))}")
    failed = bool(new or stale)
    print(f"\nprice check {'FAILED' if failed else 'passed'}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", help="pip requirement to compare with (default: the one pinned in known-differences.toml)")
    parser.add_argument("--known", type=Path, default=KNOWN, help="reviewed differences file (default: pricing/known-differences.toml)")
    parser.add_argument("--date", help="compare the prices in force on this date (YYYY-MM-DD; default today, UTC)")
    parser.add_argument("--show-all", action="store_true", help="also print the rows that agree")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as exc:  # a malformed known-differences file, mostly
        print(f"check_prices: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
