"""Strategies decide what trains, when, and at which learning rate."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modeltailor.backbones import get_backbone
from modeltailor.backbones.model import TailoredModel
from modeltailor.errors import ModelTailorError
from modeltailor.strategies import get_strategy
from modeltailor.training.module import ClassifierModule


@pytest.fixture(scope="module")
def model() -> TailoredModel:
    return TailoredModel(get_backbone("efficientnet_lite0").build(3))


def _trainable_groups(m: TailoredModel) -> list[bool]:
    return [all(p.requires_grad for p in m.body_group(i)) for i in range(m.num_body_groups)]


def test_fine_tune_warms_the_head_then_unfreezes_the_top_blocks(model):
    module = ClassifierModule(model, get_strategy("fine-tune"), steps_per_epoch=5, epochs=6)
    assert not any(_trainable_groups(model))
    assert all(p.requires_grad for p in model.head_parameters())
    module._apply_freeze(2)
    flags = _trainable_groups(model)
    k = get_strategy("fine-tune").unfrozen_groups
    assert all(flags[-k:]) and not any(flags[:-k])


def test_frozen_batchnorm_stays_in_eval_mode(model):
    model.set_trainable(2)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    frozen = [m for m in bns if not any(p.requires_grad for p in m.parameters())]
    trained = [m for m in bns if any(p.requires_grad for p in m.parameters())]
    assert frozen and trained
    assert not any(m.training for m in frozen) and all(m.training for m in trained)
    before = frozen[0].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(frozen[0].running_mean, before)


def test_every_optimizer_group_exists_from_the_first_step(model):
    strategy = get_strategy("fine-tune")
    module = ClassifierModule(model, strategy, steps_per_epoch=4, epochs=6)
    conf = module.configure_optimizers()
    groups = conf["optimizer"].param_groups
    assert len(groups) == 1 + strategy.unfrozen_groups
    lrs = [g["initial_lr"] for g in groups]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] > lrs[-1]  # lower further down
    # body groups have lr 0 until the epoch they are unfrozen, the head warms up from step 0
    assert groups[1]["lr"] == 0.0 and groups[0]["lr"] > 0


def test_full_and_scratch_train_everything(model):
    for name in ("full", "scratch"):
        s = get_strategy(name)
        assert s.trainable_groups(model.num_body_groups, 0) == model.num_body_groups
    assert get_strategy("scratch").pretrained is False


def test_unknown_strategy_lists_the_choices():
    with pytest.raises(ModelTailorError, match="fine-tune"):
        get_strategy("fine_tuning")
