"""What a monitoring report leaves behind for its readers, under ``monitoring/<model>/`` in the
lake's file store: the latest drift scores (``latest.json``, read by the serving app's
/metrics), the report itself (``report.json``) and every window the reports judged
(``windows.json``, the newest :data:`KEPT_WINDOWS`: the evidence of an alert raised on a window
that later reports, which judge the recent windows only, no longer cover). The dashboard reads
the last two."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from loopml.monitoring._report import LatestDrift, MonitoringReport, TimelineItem
from loopml.storage import FileStore

KEPT_WINDOWS = 2000


def latest_path(model: str) -> str:
    return f"monitoring/{model}/latest.json"


def report_path(model: str) -> str:
    """Where the latest report is kept (its JSON)."""
    return f"monitoring/{model}/report.json"


def windows_path(model: str) -> str:
    """Where the windows judged by the reports are kept (the alerts' evidence)."""
    return f"monitoring/{model}/windows.json"


class KeptReports:
    """One model's kept reports in ``files``."""

    def __init__(self, files: FileStore, model: str) -> None:
        self.files = files
        self.model = model

    def publish(self, report: MonitoringReport) -> None:
        """Keep what a report that judged predictions found (one that judged none keeps
        nothing: the last one stands)."""
        latest = LatestDrift.of(report)
        if latest is None:
            return
        self.files.write_bytes(latest_path(self.model), latest.to_json())
        self.files.write_bytes(report_path(self.model), orjson.dumps(report.to_dict()))
        self._keep_windows(report)

    def last(self) -> MonitoringReport | None:
        """The latest report kept; None before any."""
        rel = report_path(self.model)
        if not self.files.exists(rel):
            return None
        return MonitoringReport.model_validate_json(self.files.read_bytes(rel))

    def _kept_windows(self) -> dict[str, Any]:
        rel = windows_path(self.model)
        return dict(orjson.loads(self.files.read_bytes(rel))) if self.files.exists(rel) else {}

    def _keep_windows(self, report: MonitoringReport) -> None:
        """Each window's latest judgement, by version, start and end; the newest kept."""
        kept = self._kept_windows()
        for item in report.timeline or []:
            key = f"{report.version}|{item.start}|{item.end}"
            kept.pop(key, None)
            kept[key] = {"version": report.version, **item.model_dump(mode="json")}
        if len(kept) > KEPT_WINDOWS:
            newest = sorted(kept, key=lambda k: kept[k]["end"])[-KEPT_WINDOWS:]
            kept = {k: kept[k] for k in newest}
        self.files.write_bytes(windows_path(self.model), orjson.dumps(kept))

    def windows(
        self, since: datetime, until: datetime, *, version: int | None = None
    ) -> list[tuple[int | None, TimelineItem]]:
        """The kept windows inside ``[since, until]`` (of ``version`` when given), with their
        version, in time order; empty when no kept report judged one."""
        found: list[tuple[int | None, TimelineItem]] = []
        for value in self._kept_windows().values():
            if version is not None and value.get("version") != version:
                continue
            if since <= _parse(value["start"]) and _parse(value["end"]) <= until:
                v = value.pop("version", None)
                found.append((v, TimelineItem.model_validate(value)))
        found.sort(key=lambda f: (f[1].start, f[1].end))
        return found


def _parse(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


__all__ = ["KEPT_WINDOWS", "KeptReports", "latest_path", "report_path", "windows_path"]
