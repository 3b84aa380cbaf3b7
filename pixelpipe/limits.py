"""The process's open-file limit: raised from its soft to its hard limit at start, for every role.

Each connection, each ClickHouse part file and each Kafka socket takes a file descriptor; a soft limit of
1024 (the usual default) would run out long before the connection cap (`ingest.connection_bounds`) that
`pixelpipe.settings` derives from this limit.
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

log = logging.getLogger(__name__)

_NR_OPEN = Path("/proc/sys/fs/nr_open")  # Linux: the most a process may set, when the hard limit is infinite


def open_file_limit() -> int:
    """The soft limit on open files now."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


def raise_open_file_limit() -> int:
    """Raise the soft limit to the hard limit (or as far as the system lets it); the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            target = int(_NR_OPEN.read_text())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    return open_file_limit()
