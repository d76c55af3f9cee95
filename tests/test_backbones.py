"""The catalogue loads real ImageNet weights offline, and says clearly what it cannot do."""

from __future__ import annotations

import pytest
import timm
import torch
from PIL import Image

from modeltailor.backbones import get_backbone, list_backbones
from modeltailor.backbones.model import TailoredModel
from modeltailor.cli import main
from modeltailor.data.transforms import eval_transform
from modeltailor.errors import BackboneError


def _imagenet_top5(name: str, image) -> list[int]:
    spec = get_backbone(name)
    model = spec.build(num_classes=1000)
    state = spec.load_pretrained_state()
    # build() replaced the head; put the package's own ImageNet head back to check the weights
    head = [k for k in state][-2:]
    model.get_classifier().weight.data.copy_(state[head[0]])
    model.get_classifier().bias.data.copy_(state[head[1]])
    x = eval_transform(spec.preprocessing)(Image.fromarray(image)).unsqueeze(0)
    with torch.inference_mode():
        return model.eval()(x).topk(5).indices[0].tolist()


def test_default_backbone_really_is_pretrained_on_imagenet():
    from skimage import data

    assert _imagenet_top5("efficientnet_lite0", data.chelsea())[0] in range(281, 286)  # cats
    assert _imagenet_top5("efficientnet_lite0", data.coffee())[0] == 967  # espresso


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2", "mobilenetv2"])
def test_other_catalogue_entries_load(name):
    from skimage import data

    spec = get_backbone(name)
    if not spec.is_installed():
        pytest.skip(f"{name} not installed: {spec.install_hint}")
    assert _imagenet_top5(name, data.coffee())[0] == 967


def test_catalogue_lists_image_backbones_with_install_state(capsys):
    names = [s.name for s in list_backbones("image")]
    assert names[0] == "efficientnet_lite0" and "mobilenetv2" in names
    assert main(["backbones", "--wide"]) == 0  # the compact default leaves the licence out
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "Apache-2.0" in out


def test_unknown_backbone_names_the_catalogue():
    with pytest.raises(BackboneError, match="efficientnet_lite0"):
        get_backbone("no_such_net")


def test_timm_architecture_needs_weights_offline():
    with pytest.raises(BackboneError, match="--weights"):
        get_backbone("resnet18")


def test_any_timm_architecture_with_a_local_weights_file(tmp_path):
    from safetensors.torch import save_file

    reference = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.safetensors"
    save_file(reference.state_dict(), str(path))
    spec = get_backbone("resnet18", weights=path)
    model = TailoredModel(spec.build(num_classes=3))
    assert model.classifier().out_features == 3
    torch.testing.assert_close(
        model.net.conv1.weight, reference.conv1.weight
    )  # the file's weights, not a random init


def test_weights_that_do_not_fit_are_refused(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    with pytest.raises(BackboneError, match="do not fit"):
        get_backbone("resnet34", weights=path).build(2)


def test_strategies_follow_from_what_a_backbone_can_do():
    """A backbone declares capabilities; each strategy says which it needs."""
    from modeltailor.backbones import get_backbone
    from modeltailor.backbones.catalogue import Capabilities

    assert get_backbone("efficientnet_lite0").strategies == (
        "linear-probe", "fine-tune", "full", "scratch"
    )
    assert get_backbone("minilm-l6").supports("few-shot") and get_backbone("minilm-l6").supports(
        "lora"
    )
    assert get_backbone("use-multilingual").strategies == ("linear-probe",)
    assert get_backbone("tfidf").strategies == ("baseline",)
    assert get_backbone("mel-cnn").strategies == ("scratch",)
    frozen = Capabilities(trainable=False)
    assert "trainable" not in frozen.names() and "pretrained" in frozen.names()


def test_backbones_list_keeps_every_name_whole_at_80_columns(monkeypatch, capsys):
    from modeltailor.backbones import list_backbones
    from modeltailor.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and max(len(line) for line in table) <= 80  # hints below stay whole to copy
    for spec in list_backbones():
        assert spec.name in out
        if not spec.is_installed():
            assert spec.install_hint.split()[0] in out
    assert main(["backbones", "--modality", "audio"]) == 0
    audio = capsys.readouterr().out
    assert "whisper-tiny-en-encoder" in audio and "minilm-l6" not in audio


def test_backbones_name_lists_its_layer_groups(capsys):
    import json

    from modeltailor.cli import main

    assert main(["backbones", "efficientnet_lite0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    groups = doc["layer_groups"]
    assert [g["from_top"] for g in groups] == list(range(1, len(groups) + 1))
    assert sum(g["parameters"] for g in groups) > 3_000_000
    assert doc["fine_tune_default"] == {"head_epochs": 2, "unfreeze": 4}
    assert doc["license"] == "Apache-2.0"
