"""A deployment's schedules: read from a prefect.yaml entry (one of cron, interval or rrule, as Prefect's own
``prefect deploy`` reads them) and described in a line for people."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

_SCHEDULE_FIELDS = {
    "cron",
    "interval",
    "rrule",
    "timezone",
    "anchor_date",
    "active",
    "parameters",
    "slug",
    "day_or",
    "replaces",
}


def schedule_from_file(raw: Any) -> DeploymentScheduleCreate:
    """One of a deployment's ``schedules``: cron, interval or rrule as the file gives it, or the API's own shape."""
    if not isinstance(raw, dict):
        raise ValueError("must be a mapping with one of cron, interval or rrule")
    if "schedule" in raw:  # the API's own shape
        return DeploymentScheduleCreate.model_validate(raw)
    unknown = set(raw) - _SCHEDULE_FIELDS
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
    kinds = [k for k in ("cron", "interval", "rrule") if raw.get(k) is not None]
    if len(kinds) != 1:
        raise ValueError("give exactly one of cron, interval or rrule")
    timezone = raw.get("timezone")
    if kinds == ["cron"]:
        schedule: Any = CronSchedule(
            cron=raw["cron"], day_or=raw.get("day_or", True), **({"timezone": timezone} if timezone else {})
        )
    elif kinds == ["interval"]:
        interval = raw["interval"]
        interval = timedelta(seconds=interval) if isinstance(interval, (int, float)) else interval
        extra = {k: raw[k] for k in ("anchor_date", "timezone") if raw.get(k)}
        schedule = IntervalSchedule(interval=interval, **extra)
        if schedule.interval <= timedelta(0):
            raise ValueError("interval must be positive")
    else:
        schedule = RRuleSchedule(rrule=raw["rrule"], **({"timezone": timezone} if timezone else {}))
    extra = {k: raw[k] for k in ("active", "slug", "replaces") if raw.get(k) is not None}
    return DeploymentScheduleCreate(schedule=schedule, parameters=raw.get("parameters") or {}, **extra)


def describe_schedule(schedule: Any) -> str:
    if isinstance(schedule, CronSchedule):
        return f"cron {schedule.cron}" + (f" ({schedule.timezone})" if schedule.timezone not in (None, "UTC") else "")
    if isinstance(schedule, IntervalSchedule):
        return f"every {schedule.interval}"
    if isinstance(schedule, RRuleSchedule):
        return f"rrule {schedule.rrule}"
    return str(schedule)
