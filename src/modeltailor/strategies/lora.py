"""lora: the pretrained body stays frozen; low-rank adapters (LoRA, Hu et al. 2021, via peft)
in its attention layers train with the head. A run saves only adapters + head: megabytes
instead of the whole model, and the body is re-read from its package on load."""

from modeltailor.strategies.base import Strategy, register_strategy

LORA = register_strategy(
    Strategy(
        name="lora",
        requires=frozenset({"trainable", "pretrained", "adapters"}),
        description="frozen body + low-rank adapters in attention (transformers); small runs",
        epochs=6,
        lr=5e-4,
        patience=2,
        unfrozen_groups=0,
        head_init="probe",
        adapters={"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["query", "value"]},
    )
)
