"""A Prefect API that is ready before a command's first flow starts.

With ``PREFECT_API_URL`` set (environment or Prefect profile), that server is used and asked
for its health first. Without it, Prefect starts a temporary local server for the process,
whose state is a SQLite database in Prefect's home: ``PREFECT_HOME``, by default
``~/.prefect`` (``prefect.db``). On its first use that server creates and migrates the
database, which takes longer on a busy 2-core machine than Prefect's default startup wait of
20 s. So before the first flow of a command:

1. the home (and the database's folder) must take files, or the server could never start;
2. when the database does not exist yet, one line says so and ``prefect server database
   upgrade`` creates it, without a time limit, in a child process whose last error line
   becomes the message when it fails;
3. the temporary server is started and awaited for up to ``STARTUP_SECONDS`` (or the user's
   ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``); the flows of the command then use
   that same server (Prefect keeps one per process).

Any failure is one :class:`PrefectApiUnavailable` line naming the cause and the fix.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.failures import UserError

# Prefect warns with two lines of its own source when it cannot create its home on import;
# ensure_api names that folder in its one-line error instead.
warnings.filterwarnings("ignore", message="Failed to create the Prefect home directory")

FIRST_RUN_NOTE = "preparing the local Prefect database (first run)…"
STARTUP_SECONDS = 120  # the temporary server's startup wait unless the user sets one
MIGRATION_SECONDS = 900  # a ceiling for a hung migration, far above a slow machine's minute
_OR_A_SERVER = "or start a server (prefect server start) and set PREFECT_API_URL to its /api"


class PrefectApiUnavailable(UserError, OSError):
    """No Prefect API can be reached or started.

    Attributes:
        cause: what went wrong, naming the URL, folder or setting.
        fix: what the user can do about it.
    """

    def __init__(self, cause: str, fix: str) -> None:
        super().__init__(f"{cause}; {fix}")
        self.cause, self.fix = cause, fix


@dataclasses.dataclass(frozen=True)
class PrefectApi:
    """The API a command's flows talk to.

    Attributes:
        url: its address, e.g. ``http://127.0.0.1:8312/api``.
        temporary: True for the server this process started (no ``PREFECT_API_URL``).
        database: the temporary server's SQLite file, else None.
        first_run: True when this call created that database.
    """

    url: str
    temporary: bool
    database: Path | None = None
    first_run: bool = False


def ensure_api(announce: Callable[[str], None] | None = None) -> PrefectApi:
    """Make sure the Prefect API answers; start the temporary server when none is configured.

    Args:
        announce: prints the first-run line (default: to stderr, so ``--json`` output on
            stdout stays clean).

    Returns:
        The API, ready.

    Raises:
        PrefectApiUnavailable: the configured server does not answer, or the temporary one
            cannot start; one line with the cause and the fix.
    """
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        check_reachable(settings.api.url)
        return PrefectApi(url=settings.api.url, temporary=False)
    if not settings.server.ephemeral.enabled:
        raise PrefectApiUnavailable(
            "PREFECT_API_URL is not set and Prefect's temporary server is disabled "
            "(PREFECT_SERVER_EPHEMERAL_ENABLED)",
            "set PREFECT_API_URL to a running server (prefect server start), or enable the "
            "temporary server",
        )
    home, database = Path(settings.home), sqlite_file(settings)
    check_writable(home)
    if database is not None and database.parent != home:
        check_writable(database.parent)
    first_run = database is not None and not _has_content(database)
    if first_run:
        (announce or _to_stderr)(FIRST_RUN_NOTE)
        create_database(database, settings)
    url = start_temporary_server(startup_seconds(settings), database)
    return PrefectApi(url=url, temporary=True, database=database, first_run=first_run)


def ensure_api_or_exit(program: str) -> PrefectApi:
    """:func:`ensure_api` for a script's ``main``: on failure one line on stderr, exit 1."""
    try:
        return ensure_api()
    except PrefectApiUnavailable as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def check_reachable(url: str) -> None:
    """Ask the configured server for its health.

    Raises:
        PrefectApiUnavailable: it did not answer, or answered with an error.
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        failure = client.api_healthcheck()
    if failure is not None:
        raise PrefectApiUnavailable(
            f"the Prefect API at {url} (PREFECT_API_URL) did not answer: {failure}",
            "start that server (prefect server start), or unset PREFECT_API_URL to use a "
            "temporary local server",
        )


def sqlite_file(settings: Any) -> Path | None:
    """The SQLite file of the temporary server's database, or None (in memory, PostgreSQL)."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.server.database.connection_url.get_secret_value())
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser()


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed, then write and delete a file in it.

    Raises:
        PrefectApiUnavailable: it cannot take files (read-only, refused, not a folder, full).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as error:
        raise PrefectApiUnavailable(
            f"Prefect's folder {str(folder)!r} is not writable: {error.strerror or error}",
            f"set PREFECT_HOME to a writable folder, {_OR_A_SERVER}",
        ) from None


def create_database(database: Path, settings: Any) -> None:
    """Create and migrate the temporary server's database (``prefect server database upgrade``).

    A child process, so that Prefect's server modules stay out of this one and a failure
    ends in an exit code with the cause as its last line.

    Raises:
        PrefectApiUnavailable: the migration failed or ran past ``MIGRATION_SECONDS``.
    """
    command = [sys.executable, "-m", "prefect", "server", "database", "upgrade", "--yes"]
    try:
        done = subprocess.run(
            command,
            env=_child_environment(settings),
            capture_output=True,
            text=True,
            timeout=MIGRATION_SECONDS,
        )
    except subprocess.TimeoutExpired:
        cause = f"it did not finish within {MIGRATION_SECONDS} s"
    else:
        if done.returncode == 0:
            return
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        cause = lines[-1] if lines else f"exit code {done.returncode}"
    raise PrefectApiUnavailable(
        f"could not create the local Prefect database {str(database)!r}: {cause}",
        f"check that its folder is writable and has free space, {_OR_A_SERVER}",
    )


def startup_seconds(settings: Any) -> int:
    """How long to wait for the temporary server: the user's setting, else ``STARTUP_SECONDS``."""
    ephemeral = settings.server.ephemeral
    if "startup_timeout_seconds" in ephemeral.model_fields_set:
        return int(ephemeral.startup_timeout_seconds)
    return STARTUP_SECONDS


def start_temporary_server(timeout: int, database: Path | None = None) -> str:
    """Start Prefect's temporary server (the one its flows use) and wait until it answers.

    Returns:
        Its API URL.

    Raises:
        PrefectApiUnavailable: it did not answer within ``timeout`` seconds.
    """
    from prefect.server.api.server import SubprocessASGIServer, subprocess_server_logger

    server = SubprocessASGIServer()  # one per process: the flows' client finds it running
    held = _HeldRecords()
    subprocess_server_logger.addFilter(held)
    try:
        server.start(timeout=timeout)
    except RuntimeError:
        server.stop()  # Prefect leaves a late server running until exit
        where = f" (database {str(database)!r})" if database else ""
        raise PrefectApiUnavailable(
            f"Prefect's temporary server did not start within {timeout} s{where}",
            f"allow it longer with PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, "
            f"{_OR_A_SERVER}",
        ) from None
    finally:
        subprocess_server_logger.removeFilter(held)
    for record in held.records:  # "Starting temporary server on ...", as Prefect says it
        subprocess_server_logger.handle(record)
    return server.api_url


class _HeldRecords(logging.Filter):
    """Holds back a logger's records: shown after a successful start, dropped on failure, so
    that a failure is the one line of its error."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


def _has_content(database: Path) -> bool:
    return database.is_file() and database.stat().st_size > 0


def _child_environment(settings: Any) -> dict[str, str]:
    # The child sees the settings this process runs with, also those set in code.
    return {**os.environ, **settings.to_environment_variables(exclude_unset=True)}


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
