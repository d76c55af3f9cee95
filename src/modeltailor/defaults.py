"""Defaults the command line needs before anything heavy is imported (`tailor --help` stays
instant: torch, timm and Lightning load only when a command runs)."""

DEFAULT_IMAGE_BACKBONE = "efficientnet_lite0"
DEFAULT_AUDIO_BACKBONE = "whisper-tiny-en-encoder"
DEFAULT_STRATEGY = "linear-probe"
