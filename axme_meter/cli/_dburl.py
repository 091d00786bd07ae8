"""Database URLs given to ``--db``: checked before use, described when they fail.

The gateway supports SQLite and PostgreSQL. A URL for anything else, or a SQLite
file in a directory that does not exist, is refused with one line that names the
fix, before any engine is built (which would otherwise end in a 60-line traceback).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

EXAMPLES = "sqlite:////absolute/path/gateway.sqlite3 or postgresql://user@host:5432/dbname"
_POSTGRES = ("postgresql", "postgres", "postgresql+psycopg")


def masked(url: str) -> str:
    """The URL with its password replaced by ``***``, fit to print."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL; ``None`` for an in-memory database."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    path = rest[1:].split("?", 1)[0] if rest.startswith("/") else ""
    return None if path in ("", ":memory:") else Path(path)


def describe(url: str) -> str:
    """How the gateway's start-up line names its database: the SQLite file's path, else the masked URL."""
    if scheme_of(url).startswith("sqlite"):
        path = sqlite_path(url)
        return f"SQLite file {path.resolve()}" if path is not None else "SQLite in memory (lost at exit)"
    return f"PostgreSQL {masked(url)}"


def check(url: str) -> str | None:
    """What is wrong with ``url`` and how to fix it, or ``None`` when it may be used."""
    scheme = scheme_of(url)
    if not scheme:
        return f"--db {url!r} is not a database URL: use {EXAMPLES}"
    if scheme in _POSTGRES:
        return None
    if scheme.startswith("sqlite"):
        return _check_sqlite(url)
    return f"--db {masked(url)}: {scheme.split('+')[0]} is not supported; the gateway runs on SQLite or PostgreSQL: use {EXAMPLES}"


def _check_sqlite(url: str) -> str | None:
    path = sqlite_path(url)
    if path is None:
        return None
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return (f"--db {url}: the directory {folder} does not exist; create it (mkdir -p {folder}) "
                "or pass a file in an existing directory")
    if path.is_dir():
        return f"--db {url}: {path} is a directory; name a file inside it, e.g. sqlite:///{path / 'gateway.sqlite3'}"
    if not os.access(folder, os.W_OK):
        return f"--db {url}: cannot write to {folder}; pick a directory you can write to"
    return None


def describe_db_error(exc: BaseException, url: str | None = None) -> str:
    """One line for an error SQLAlchemy or psycopg raised while opening or migrating the database."""
    orig = getattr(exc, "orig", None) or exc
    text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    where = f" {masked(url)}" if url else ""
    name = type(exc).__name__
    if name in ("NoSuchModuleError", "ArgumentError"):
        return f"cannot use the database URL{where}: {text}; use {EXAMPLES}"
    if "unable to open database file" in text:
        return f"cannot open the SQLite database{where}: check that its directory exists and is writable"
    return f"cannot use the database{where}: {text}; check --db (or AXME_GATEWAY_DB) and that the server is running"
