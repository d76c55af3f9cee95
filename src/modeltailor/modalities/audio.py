"""Audio: a folder per class of clips (WAV/FLAC/OGG/MP3...), mono 16 kHz windows."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from modeltailor.modalities import register_modality
from modeltailor.modalities.base import ExportSpec, Modality, augment_level


@dataclass(frozen=True)
class AudioPreprocessing:
    """How a clip becomes model input (stored in every run's config, keys the embedding cache).

    Clips are decoded to mono at `sample_rate`. A clip shorter than `window_seconds` is padded
    (the padding is masked out of the pooling); a longer one is cut into windows that overlap
    by `window_overlap` of a window, whose embeddings or logits are averaged. The window is
    chosen from the training clips' lengths when a run is trained.
    """

    sample_rate: int = 16000
    window_seconds: float = 2.0
    window_overlap: float = 0.5
    modality: str = "audio"

    def for_inference(self, test_size: int | None) -> AudioPreprocessing:
        return self

    def summary(self) -> str:
        return f"{self.sample_rate // 1000} kHz"

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioPreprocessing:
        return cls(
            sample_rate=int(d.get("sample_rate", 16000)),
            window_seconds=float(d.get("window_seconds", 2.0)),
            window_overlap=float(d.get("window_overlap", 0.5)),
        )


class AudioModality(Modality):
    name = "audio"
    noun = "clips"
    options = ("augment", "window_seconds")
    priority = 20
    #: speech-embedding on FSDD (bench/bench_doctor.py): a clip re-encoded to FLAC at -6 dB
    #: scores >= 0.991 with its original, x0.7 >= 0.998, x2 (clipped) >= 0.989, x0.25 >= 0.976;
    #: but the same speaker saying the same digit again scores up to 0.984 (0.95 would pair
    #: 415 of 3,000 distinct recordings). 0.985 pairs none of them.
    near_threshold = 0.985
    #: What each `--augment` level does to training clips (training.inputs.AUDIO_AUGMENT).
    augmentation = {
        "none": "a long clip always trains on its first window; samples as recorded",
        "light": "a random window of a long clip, a short clip shifted by up to 20% of the "
        "window, gain +-3 dB",
        "default": "random window, speed +-10% (pitch with it), shift up to 20%, gain +-6 dB, "
        "white noise at 15-40 dB SNR on half the clips, SpecAugment 2 frequency + 2 time masks",
        "strong": "random window, speed +-15%, shift up to 30%, gain +-9 dB, noise at 10-30 dB "
        "SNR on 80% of the clips, SpecAugment 3 + 3 masks",
    }

    def preprocessing_from_dict(self, d):
        return AudioPreprocessing.from_dict(d)

    # -- data in ---------------------------------------------------------------------------
    def recognises(self, path) -> bool:
        from modeltailor.data.audio import looks_like_audio_folder

        return looks_like_audio_folder(path)

    def load(self, path, options, class_names=None):
        from modeltailor.data.audio import load_audio_folder

        return load_audio_folder(path, class_names, options.get("group_by"))

    def find_inputs(self, paths):
        from modeltailor.data.audio import find_audio

        return find_audio(paths)

    def prepare(self, data):
        verify = getattr(data, "verify", None)
        return verify() if verify is not None else data

    # -- backbones -----------------------------------------------------------------------------
    def default_backbone(self, clf, train) -> str:
        from modeltailor.backbones.audio import default_audio_backbone

        return default_audio_backbone(clf.strategy)

    def specialise(self, clf, spec, train):
        from modeltailor.backbones.audio import choose_window

        window = clf.window_seconds
        if window is None:
            durations = getattr(train, "durations", None)
            window = choose_window(durations()) if durations is not None else 2.0
        return replace(spec, preprocessing=replace(spec.preprocessing, window_seconds=window))

    def before_training(self, clf, model) -> None:
        model.net.augment = augment_level(clf.augment)  # SpecAugment's masks

    def fit_details(self, clf, model, train) -> dict[str, Any]:
        pre = model.net.pre
        durations = getattr(train, "durations", None)
        seconds = durations() if durations is not None else []
        longer = sum(s > pre.window_seconds for s in seconds)
        return {
            "clips": {
                "policy": f"windows of {pre.window_seconds:g} s (chosen to hold 95% of the "
                "training clips whole unless set), overlapping by "
                f"{pre.window_overlap:g} of a window; shorter clips padded and the padding "
                "masked out of pooling; embeddings (linear-probe) or logits (trained "
                "strategies) averaged per clip",
                "window_seconds": pre.window_seconds,
                "sample_rate": pre.sample_rate,
                "share_of_training_clips_windowed": round(longer / len(seconds), 4)
                if seconds
                else None,
                "median_seconds": round(float(np.median(seconds)), 3) if seconds else None,
                "augment": augment_level(clf.augment),
            }
        }

    # -- the run folder ------------------------------------------------------------------------
    def save_assets(self, clf, run) -> None:
        from modeltailor.backbones.audio import ASSETS_FOLDER

        clf.model_.net.save_assets(run.path / ASSETS_FOLDER)

    def network_for(self, run, cfg: dict[str, Any]):
        from modeltailor.backbones.audio import ASSETS_FOLDER, load_audio_network

        pre = self.preprocessing_from_dict(cfg["preprocessing"])
        return load_audio_network(run.path / ASSETS_FOLDER, pre, cfg["num_classes"])

    # -- command line --------------------------------------------------------------------------
    def add_cli_options(self, parser: argparse.ArgumentParser, command: str) -> None:
        if command == "predict":
            return
        g = parser.add_argument_group("audio data")
        g.add_argument(
            "--group-by",
            metavar="REGEX",
            help="keep files whose names share this group (first capture group, e.g. the "
            "speaker: '_([a-z]+)_') on one side of the split",
        )
        if command != "train":
            return
        g.add_argument(
            "--window",
            type=float,
            help="audio: window length in seconds (default: from the clips' lengths)",
        )

    def flags_set(self, args: argparse.Namespace) -> list[str]:
        flags = [("--group-by", "group_by"), ("--window", "window")]
        return [flag for flag, dest in flags if getattr(args, dest, None)]

    def estimator_options(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"window_seconds": args.window}

    # -- serving -------------------------------------------------------------------------------
    upload_types = ("audio/", "video/ogg", "application/ogg")

    def read_upload(self, path, name: str) -> list[tuple[str, Any]]:
        """One clip per uploaded file, decoded (any rate, any channels) as training does."""
        from modeltailor.data.audio import AUDIO_EXTENSIONS, AudioReadError, load_waveform
        from modeltailor.modalities.base import InputError

        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            kinds = ", ".join(sorted(AUDIO_EXTENSIONS))
            raise InputError(f"send audio clips ({kinds}, by file name)")
        try:
            load_waveform(path, 16000)
        except AudioReadError as exc:
            raise InputError(str(exc)) from exc
        return [(name, path)]

    def forget_upload(self, path) -> None:
        from modeltailor.data.audio import forget_waveform

        forget_waveform(path)

    # -- model card ----------------------------------------------------------------------------
    pipeline_tag = "audio-classification"
    dataset_type = "audiofolder"
    card_predict_args = ("clip.wav more-clips/",)
    card_python_example = '"clip.wav"'

    def card_input_limits(self, pre: dict[str, Any], fit: dict[str, Any]) -> list[str]:
        if not pre.get("sample_rate"):
            return super().card_input_limits(pre, fit)
        from modeltailor.report.card import _md

        clips = fit.get("clips") or {}
        window = pre.get("window_seconds")
        policy = clips.get("policy") or (
            f"windows of {window} s, overlapping by {pre.get('window_overlap', '?')} of a window"
        )
        return [
            f"- **Input**: clips are decoded to mono at {int(pre['sample_rate']) // 1000} kHz "
            f"and read in {_md(str(policy))}. Sounds much longer or shorter than the training "
            f"clips (median {clips.get('median_seconds', '?')} s) were not seen in training."
        ]

    # -- report --------------------------------------------------------------------------------
    def report_example(self, path: str) -> tuple[str, str | None]:
        from modeltailor.report.html import audio_clip

        return "clip", audio_clip(path)

    # -- export --------------------------------------------------------------------------------
    def export_spec(self) -> ExportSpec:
        from modeltailor.export import audio as export_audio
        from modeltailor.export.web_audio import audio_page_files

        return ExportSpec(
            input_names=["samples", "mask"],
            wrap=export_audio.wrap,
            inputs=export_audio.audio_inputs,
            example=export_audio.example,
            describe=export_audio.describe,
            dynamic_axes={"samples": {0: "batch"}, "mask": {0: "batch"}},
            formats=("onnx", "tflite", "web"),
            noun=self.noun,
            refuse=export_audio.refusal,
            # networks without a graph writer are still served by PyTorch
            refuse_eager=lambda clf: None,
            assets=export_audio.write_assets,
            web_page=audio_page_files,
            verification=export_audio.validation_clips,
            quantization="dynamic",
            exact_weights=export_audio.FRONT_END_WEIGHTS,
            tflite=export_audio.tflite_spec(),
        )


AUDIO = register_modality(AudioModality())
