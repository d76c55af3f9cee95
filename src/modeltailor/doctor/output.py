"""doctor.json (everything found), doctor.html (the same for a person to look at: duplicates
side by side) and exclude.txt (suggested removals, one item per line)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from modeltailor.run import atomic_write_bytes

if TYPE_CHECKING:
    from modeltailor.doctor import DoctorReport


def write_outputs(report: DoctorReport, folder: Path) -> Path:
    """Write doctor.json and exclude.txt into `folder` (created); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = report.to_dict()
    atomic_write_bytes(
        folder / "doctor.json", json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8")
    )
    lines = [
        f"# tailor doctor {report.source}: {len(report.suggested_removals)} suggested "
        f"removal(s), {time.strftime('%Y-%m-%d %H:%M')}",
        "# one item per line; `tailor train DATA --exclude exclude.txt` leaves them out.",
        "# Delete a line to keep that item; reasons are in doctor.json.",
    ]
    lines += [r["path"] for r in report.suggested_removals]
    from modeltailor.doctor.html import render

    atomic_write_bytes(folder / "doctor.html", render(doc).encode("utf-8"))
    atomic_write_bytes(folder / "exclude.txt", ("\n".join(lines) + "\n").encode("utf-8"))
    report.output = str(folder)
    return folder
