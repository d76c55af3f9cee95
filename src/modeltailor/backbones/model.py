"""The trained artefact: a backbone body split into layer groups plus a classification head.

Strategies only talk to this contract: `body_groups` (bottom to top), `head_parameters()`,
`set_trainable(top_k)` and `embed()`. Frozen BatchNorm layers stay in eval mode whatever
`train()` is called with, so their running statistics are never disturbed.
"""

from __future__ import annotations

import torch
from timm.models import group_parameters
from torch import nn


class TailoredModel(nn.Module):
    """Wraps a timm classifier; `forward` returns logits, `embed` the pooled features."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        head_names = {n for n, _ in _classifier_parameters(net)}
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

    def head_parameters(self) -> list[nn.Parameter]:
        return [self._named[n] for n in self._head_names]

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
