"""Defaults the command line needs before anything heavy is imported (`tailor --help` stays
instant: torch, timm and Lightning load only when a command runs)."""

DEFAULT_IMAGE_BACKBONE = "efficientnet_lite0"
DEFAULT_AUDIO_BACKBONE = "whisper-tiny-en-encoder"
DEFAULT_STRATEGY = "linear-probe"

#: The accuracy rule for faster numerics: int8 export and bf16 embeddings are kept only when
#: they lose at most this much validation accuracy against fp32 (1 point).
MAX_ACCURACY_DROP = 0.01
