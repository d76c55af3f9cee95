"""`tailor compare`: strategies side by side on one shared split; failures reported, not fatal."""

from __future__ import annotations

import json
from pathlib import Path

from modeltailor.cli import main


def test_compare_on_the_bundled_examples_gives_one_row_per_strategy(fashion_dir, tmp_path):
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            str(fashion_dir),
            "--strategies",
            "linear-probe,fine-tune,scratch",
            "--backbones",
            "efficientnet_lite0,no-such-backbone",
            "--epochs",
            "1",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    doc = json.loads((out / "compare.json").read_text())
    rows = {(r["strategy"], r["backbone"]): r for r in doc["rows"]}
    assert len(rows) == 6
    for strategy in ("linear-probe", "fine-tune", "scratch"):
        ok = rows[(strategy, "efficientnet_lite0")]
        assert ok["failed"] == 0 and 0.0 <= ok["accuracy"] <= 1.0 and ok["train_seconds"] > 0
        bad = rows[(strategy, "no-such-backbone")]
        assert bad["failed"] == 1 and "no-such-backbone" in bad["error"]
    probe = rows[("linear-probe", "efficientnet_lite0")]
    assert probe["trainable_params"] < rows[("scratch", "efficientnet_lite0")]["trainable_params"]
    assert probe["accuracy"] > rows[("scratch", "efficientnet_lite0")]["accuracy"]

    # Every run was scored on the same test images, which none of them trained or chose on.
    runs = [Path(t["run"]) for t in doc["trials"] if t["run"]]
    assert len(runs) == 3
    for run in runs:
        splits = json.loads((run / "splits.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["test"]["n"] == len(splits["test"]["items"]) == 40
        used = set(splits["train"]["sha1"]) | set(splits["val"]["sha1"])
        assert used and not used & set(splits["test"]["sha1"])
    page = (out / "compare.html").read_text(encoding="utf-8")
    assert 'id="results"' in page and "data:image/png;base64," in page
