"""The Lightning loop: fine-tune end to end, resume with freeze state, seeds, DDP on CPU."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import torch

from modeltailor.cli import main

TAILOR = [sys.executable, "-m", "modeltailor.cli"]


def _history(run) -> list[dict]:
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def _train(small_dir, run, *extra: str) -> int:
    return main(
        [
            "train",
            str(small_dir),
            "--strategy",
            "fine-tune",
            "--output",
            str(run),
            "--quiet",
            "--batch-size",
            "8",
            "--val-fraction",
            "0.25",
            "--test-fraction",
            "0.25",
            *extra,
        ]
    )


def test_resume_restores_optimizer_schedule_and_freeze_state(small_dir, tmp_path):
    run = tmp_path / "run"
    # 2 epochs of head warm-up: stopping after epoch 2 leaves the body frozen in the checkpoint
    assert _train(small_dir, run, "--epochs", "2") == 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["modeltailor_trainable_groups"] == 0
    assert main(["train", str(small_dir), "--output", str(run)]) == 2  # refuses to overwrite
    assert _train(small_dir, run, "--epochs", "4", "--resume", "--patience", "10") == 0
    rows = _history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    trainable = [float(r["trainable_params"]) for r in rows]
    assert trainable[0] == trainable[1] < trainable[2] == trainable[3]  # unfrozen at epoch 3
    config = json.loads((run / "config.json").read_text())
    assert config["fit"]["resumed_from"].endswith("last.ckpt")


def test_same_seed_same_metrics(small_dir, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        assert _train(small_dir, run, "--epochs", "3", "--seed", "7") == 0
    a, b = (json.loads((r / "metrics.json").read_text()) for r in runs)
    assert a["test"]["log_loss"] == b["test"]["log_loss"]
    assert [r["val_loss"] for r in _history(runs[0])] == [r["val_loss"] for r in _history(runs[1])]


def test_two_process_ddp_on_cpu_runs_to_completion(small_dir, tmp_path):
    run = tmp_path / "ddp"
    cmd = [
        *TAILOR,
        "train",
        str(small_dir),
        "--strategy",
        "fine-tune",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--devices",
        "2",
        "--distributed",
        "ddp",
        "--quiet",
        "--output",
        str(run),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert res.returncode == 0, res.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["fit"]["world_size"] == 2
    assert (run / "model.safetensors").is_file()


def _group_sizes(small_dir) -> tuple[int, list[int]]:
    """(head parameters, body group sizes top first) of the default image backbone."""
    from modeltailor.backbones import get_backbone
    from modeltailor.backbones.model import TailoredModel

    model = TailoredModel(get_backbone("efficientnet_lite0").build(2, pretrained=False))
    head = sum(p.numel() for p in model.head_parameters())
    groups = [sum(p.numel() for p in model.body_group(i)) for i in range(model.num_body_groups)]
    return head, groups[::-1]


def test_unfreeze_trains_exactly_the_groups_it_names(small_dir, tmp_path):
    head, groups = _group_sizes(small_dir)
    for choice, expected in (("0", head), ("1", head + groups[0]), ("all", head + sum(groups))):
        run = tmp_path / f"unfreeze-{choice}"
        code = _train(small_dir, run, "--epochs", "1", "--unfreeze", choice, "--head-epochs", "0")
        assert code == 0
        assert [float(r["trainable_params"]) for r in _history(run)] == [float(expected)]
        config = json.loads((run / "config.json").read_text())
        assert config["params"]["unfreeze"] == (choice if choice == "all" else int(choice))
        assert config["fit"]["unfrozen_groups"] == config["params"]["unfreeze"]


def test_resume_after_kill_keeps_the_chosen_unfreeze_schedule(small_dir, tmp_path):
    """kill -9 during epoch 3 of 4, then --resume: the same freeze schedule as uninterrupted
    (head only, then the top 2 groups), continued from the last finished epoch."""
    import signal
    import time

    plan = ["--unfreeze", "2", "--head-epochs", "1", "--patience", "10", "--epochs", "4"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _train(small_dir, whole, *plan) == 0
    args = ["train", str(small_dir), "--strategy", "fine-tune", "--output", str(killed),
            "--quiet", "--batch-size", "8", "--val-fraction", "0.25", "--test-fraction", "0.25"]
    proc = subprocess.Popen([*TAILOR, *args, *plan], env=dict(os.environ))  # fmt: skip
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if torch.load(last, weights_only=True)["epoch"] >= 1:  # two epochs finished
                proc.send_signal(signal.SIGKILL)
                break
        except Exception:  # noqa: BLE001 - not there yet, or being written
            pass
        time.sleep(0.1)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert _train(small_dir, killed, *plan, "--resume") == 0
    resumed = [float(r["trainable_params"]) for r in _history(killed)]
    expected = [float(r["trainable_params"]) for r in _history(whole)]
    assert [int(r["epoch"]) for r in _history(killed)][-1] == 4
    assert resumed[-2:] == expected[-2:] and expected[0] < expected[-1]
    # every epoch's shuffle, augmentation and dropout depend on (seed, epoch) only: the
    # resumed epochs are the uninterrupted ones, and so is the model
    for key in ("train_loss", "val_loss", "val_acc"):
        assert [r[key] for r in _history(killed)][-2:] == [r[key] for r in _history(whole)][-2:]
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (whole, killed)]
    for key in ("accuracy", "log_loss"):
        assert metrics[0]["test"][key] == metrics[1]["test"][key]
