"""linear-probe (feature extraction): the backbone stays frozen; its embeddings are computed
once, cached on disk, and a regularised linear head is fitted on them in seconds."""

from modeltailor.strategies.base import Strategy, register_strategy

LINEAR_PROBE = register_strategy(
    Strategy(
        name="linear-probe",
        description="frozen backbone, cached embeddings, logistic-regression head (seconds)",
        uses_feature_cache=True,
        epochs=0,
    )
)
