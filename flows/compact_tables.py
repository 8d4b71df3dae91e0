"""Flow ``compact-tables``: a month of batch inference's small files -> a few large ones.

finish what crashed -> plan each run_date of the month -> compact each partition that has
small files, one task (and one commit lease) per partition. The protocol, its crash recovery
and what readers see meanwhile are in ``tasks.tables.compaction``; this flow only orders it.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from tasks.failures import InvalidSetting
from tasks.io_task import io_task
from tasks.tables import compaction

MEGABYTE = 1024 * 1024


@io_task(name="finish-crashed-commits")
def finish_leftovers(output: str) -> int:
    """A first-layout output migrated, intents a crashed run left applied; returns how many."""
    return compaction.finish_leftovers(output)


@io_task(name="plan-compaction")
def plan_month(output: str, month: str, target_bytes: int) -> list[str]:
    """The run_dates of ``month`` with small files to merge (read without the lease)."""
    return [
        day
        for day in compaction.month_days(month)
        if compaction.plan_partition(output, day, target_bytes).groups
    ]


@io_task(name="compact-partition")
def compact_partition(
    output: str, run_date: str, target_bytes: int, settle_seconds: float
) -> compaction.PartitionResult | None:
    """One partition under the lease; planned again there, so a retry is safe."""
    return compaction.compact_partition(output, run_date, target_bytes, settle_seconds)


@flow(name="compact-tables")
def compact_tables(
    output: str,
    month: str,
    target_mb: float = 64.0,
    settle_seconds: float = compaction.SETTLE_SECONDS,
) -> compaction.CompactionResult:
    """Compact the partitions of ``month`` under ``output``.

    Args:
        output: the batch-inference output folder (local or s3://).
        month: ``YYYY-MM``.
        target_mb: the smallest size, in MiB, a compacted file aims at.
        settle_seconds: pause between adding compacted files and removing small ones.

    Returns:
        The partitions compacted, the crashed intents finished, the files before and after.
    """
    compaction.month_days(month)  # a bad month fails before any work
    if target_mb <= 0:
        raise InvalidSetting(f"target_mb must be positive, got {target_mb}")
    target = int(target_mb * MEGABYTE)
    finished = finish_leftovers(output)
    partitions = tuple(
        result
        for day in plan_month(output, month, target)
        if (result := compact_partition(output, day, target, settle_seconds))
    )
    summary = compaction.CompactionResult(month, partitions, finished)
    get_run_logger().info(
        "%s: %d partitions compacted, %d files -> %d",
        month,
        len(partitions),
        summary.files_before,
        summary.files_after,
    )
    return summary
