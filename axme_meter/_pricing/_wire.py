"""The price table on the wire: ``GET /v1/prices`` carries the gateway's price files themselves.

Why files and not a rendered table: the engine, its checks and its ``version`` already work on
files. A client that parses the same bytes builds the same entries and computes the same
``pricing_version`` as the gateway (``PriceTable([*files]).version``), so both sides can tell
whether they price with the same table, and a corrupted copy is detected, not used.

Body::

    {"pricing_version": "openai-2026-12-02+sha256:…",
     "files": [{"name": "openai.toml", "source": "bundled", "sha256": "…", "toml": "…"},
               {"name": "ours.toml", "source": "loaded", "sha256": "…", "loaded_at": "…",
                "loaded_by": "axme_sa_AbCdEf01", "models": ["gpt-7"], "toml": "…"}]}
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from ._load import PriceFile, PriceFileError, parse_bytes


def file_to_wire(price_file: PriceFile, name: str, source: str, **extra: Any) -> dict[str, Any]:
    """One file of the table as ``GET /v1/prices`` lists it (``extra``: when and by whom it was loaded)."""
    return {"name": name, "source": source, "sha256": hashlib.sha256(price_file.raw).hexdigest(),
            "models": [e.id for e in price_file.entries], **extra, "toml": price_file.raw.decode("utf-8")}


def files_from_wire(body: Any) -> tuple[str, list[PriceFile]]:
    """``(pricing_version, files)`` from a ``GET /v1/prices`` body.

    Raises ``PriceFileError`` when the body is malformed, a file does not parse, or the files do
    not add up to the version the body claims (a truncated or altered copy)."""
    from ._table import PriceTable

    if not isinstance(body, Mapping) or not isinstance(body.get("pricing_version"), str):
        raise PriceFileError("the price table answer has no pricing_version", field="pricing_version")
    raw_files = body.get("files")
    if not isinstance(raw_files, Sequence) or isinstance(raw_files, (str, bytes)) or not raw_files:
        raise PriceFileError("the price table answer has no files", field="files")
    files: list[PriceFile] = []
    for i, item in enumerate(raw_files):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not isinstance(item.get("toml"), str):
            raise PriceFileError(f"files[{i}] needs a name and its toml text", field=f"files[{i}]")
        files.append(parse_bytes(item["toml"].encode("utf-8"), item["name"]))
    version = body["pricing_version"]
    computed = PriceTable(files).version
    if computed != version:
        raise PriceFileError(f"the files add up to pricing_version {computed!r}, not {version!r}", field="pricing_version")
    return version, files


__all__ = ["file_to_wire", "files_from_wire"]
