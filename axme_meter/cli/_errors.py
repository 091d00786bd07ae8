"""Turn the errors a user can cause (a wrong database URL, a refused connection) into one line.

Only exceptions known to come from the user's input or environment are explained;
anything else is a bug and keeps its traceback. SQLAlchemy and psycopg are
recognised by module name so this file never imports them (the CLI must work
without the gateway extra).
"""

from __future__ import annotations

from ._dburl import describe_db_error


def explain(exc: BaseException, db_url: str | None = None) -> str | None:
    """One line saying what is wrong and how to fix it, or ``None`` when ``exc`` is not a user error."""
    module = type(exc).__module__ or ""
    if module.split(".")[0] in ("sqlalchemy", "psycopg"):
        return describe_db_error(exc, db_url)
    return None
