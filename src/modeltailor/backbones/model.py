"""The trained artefact: a backbone body split into layer groups plus a classification head.

Strategies only talk to this contract: `body_groups` (bottom to top), `head_parameters()`,
`set_trainable(top_k)` and `embed()`. Frozen BatchNorm layers stay in eval mode whatever
`train()` is called with, so their running statistics are never disturbed.
"""

from __future__ import annotations

import torch
from timm.models import group_parameters
from torch import nn

#: peft's LoRA parameters are named `...lora_A.default.weight` / `lora_B`.
ADAPTER_MARK = "lora_"


class TailoredModel(nn.Module):
    """Wraps a timm classifier; `forward` returns logits, `embed` the pooled features."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.refresh_groups()

    def refresh_groups(self) -> None:
        """(Re)read the body groups and head; after a head is created late (the TF-IDF
        baseline only knows its width once its vocabulary is fitted)."""
        net = self.net
        head_names = {n for n, _ in _classifier_parameters(net)}
        # Adapters (LoRA) train with the head, whatever the freeze schedule of the body.
        head_names |= {n for n, _ in net.named_parameters() if ADAPTER_MARK in n}
        # Parameters the backbone pins frozen (e5's 96M-parameter word embeddings) belong to no
        # group, so no strategy ever unfreezes them.
        pinned = set(getattr(net, "always_frozen", ()))
        groups = group_parameters(net, net.group_matcher(coarse=True))
        named = dict(net.named_parameters())
        body: list[list[str]] = []
        for _, names in sorted(groups.items()):
            names = [n for n in names if n not in head_names and n not in pinned]
            if names:
                body.append(names)
        self._body_names = body
        self._head_names = sorted(head_names)
        self._named = named

    @property
    def num_features(self) -> int:
        return int(self.net.num_features)

    @property
    def num_body_groups(self) -> int:
        return len(self._body_names)

    def body_group(self, index: int) -> list[nn.Parameter]:
        return [self._named[n] for n in self._body_names[index]]

    def body_group_names(self, index: int) -> list[str]:
        """Parameter names of body group `index` (0 = the bottom group)."""
        return list(self._body_names[index])

    def head_parameters(self) -> list[nn.Parameter]:
        """The classifier head and any adapters: always trained."""
        return [self._named[n] for n in self._head_names]

    # -- adapters ------------------------------------------------------------------------------
    def add_adapters(self, config: dict) -> None:
        """Inject LoRA adapters (peft) into the layers `config["target_modules"]` names.

        The body stays frozen; only adapters + head train, and only they are saved.
        """
        from peft import LoraConfig, inject_adapter_in_model

        lora = LoraConfig(
            r=config["r"],
            lora_alpha=config["alpha"],
            lora_dropout=config.get("dropout", 0.0),
            target_modules=list(config["target_modules"]),
        )
        inject_adapter_in_model(lora, self.net)
        self.refresh_groups()

    def has_adapters(self) -> bool:
        return any(ADAPTER_MARK in n for n in self._head_names)

    def trained_state(self) -> dict[str, torch.Tensor]:
        """What a run must save: everything, or with adapters only adapters + head (the body
        is the unchanged pretrained one, re-read from its package on load)."""
        state = self.state_dict()
        if not self.has_adapters():
            return state
        keep = {f"net.{n}" for n in self._head_names}
        return {k: v for k, v in state.items() if k in keep}

    def set_trainable(self, top_k: int) -> int:
        """Train the head and the top `top_k` body groups; freeze the rest. Returns #params."""
        n_groups = self.num_body_groups
        for i in range(n_groups):
            train = i >= n_groups - top_k
            for p in self.body_group(i):
                p.requires_grad_(train)
        for p in self.head_parameters():
            p.requires_grad_(True)
        self.train(self.training)  # re-apply the BatchNorm rule
        return self.trainable_parameters()

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def train(self, mode: bool = True) -> TailoredModel:
        super().train(mode)
        if mode:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
                    p.requires_grad for p in m.parameters()
                ):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logit features (what the linear probe trains on)."""
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def classifier(self) -> nn.Linear:
        head = self.net.get_classifier()
        if not isinstance(head, nn.Linear):
            raise TypeError(f"expected a Linear classifier, found {type(head).__name__}")
        return head


def _classifier_parameters(net: nn.Module) -> list[tuple[str, nn.Parameter]]:
    head = net.get_classifier()
    ids = {id(p) for p in head.parameters()}
    return [(n, p) for n, p in net.named_parameters() if id(p) in ids]
