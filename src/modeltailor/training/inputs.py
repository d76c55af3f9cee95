"""The one seam between a modality and the shared loop: how items become model input.

An `InputPipeline` turns dataset items (image paths, `TextItem`s...) into tensors for
inference and training. Everything else (the Lightning loop, the embedding cache, batch
inference, strategies) is shared. Inference yields rows with an *owner* per row: an image is
one row, a long text is several windows; `pooled_outputs` averages the rows of each owner, so
window pooling of embeddings (linear probe) and logits (fine-tune) is the same code.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from modeltailor.backbones.catalogue import AudioPreprocessing, Preprocessing
from modeltailor.backbones.model import TailoredModel
from modeltailor.data.dataset import LabeledDataset
from modeltailor.errors import ModelTailorError
from modeltailor.training.loaders import EpochShuffle, decoded_batches, make_loader, start_epoch

#: Validation reads at most this many windows of one text (the first ones): a 40-page
#: attachment should not dominate the early-stopping loss.
MAX_VAL_WINDOWS = 8
#: Length-sorted training batches are drawn from pools of this many batches, then shuffled.
BUCKET_BATCHES = 50
#: What a backward pass keeps grows with rows x tokens x width x depth. 32 MiniLM windows
#: (256 tokens, 384-d, 6 layers) are the reference; a bigger text model trains fewer rows at
#: once and accumulates gradients up to the same step. Without this, mpnet-base (384 tokens,
#: 768-d, 12 layers) at 32 rows passed 20 GB and was OOM-killed on a 24 GB machine.
REFERENCE_TEXT_LOAD = 32 * 256 * 384 * 6


def rows_at_once(rows_per_step: int, load_per_row: int) -> int:
    """The largest divisor of `rows_per_step` whose load stays within REFERENCE_TEXT_LOAD
    (a divisor, so accumulated micro-batches make exactly the step asked for)."""
    cap = max(1, REFERENCE_TEXT_LOAD // max(1, load_per_row))
    return max(d for d in range(1, rows_per_step + 1) if rows_per_step % d == 0 and d <= cap)


class InputPipeline(Protocol):
    """What the loop, the cache and inference need from a modality."""

    #: Whether batches are 4-D images (channels-last memory format speeds up CNNs on CPU).
    channels_last: bool

    def units(self, items: Sequence[Any]) -> int:
        """Progress-bar total for `inference_batches` over `items`."""

    def inference_batches(
        self, items: Sequence[Any], batch_size: int, num_workers: int, bad: dict
    ) -> Iterator[tuple[torch.Tensor, list[int], int]]:
        """(input batch, owner item index per row, units covered); failures go into `bad`."""

    def training_loaders(
        self,
        train: LabeledDataset,
        val: LabeledDataset,
        batch_size: int,
        num_workers: int,
        seed: int,
        augment: str,
    ) -> tuple[DataLoader, DataLoader]:
        """(shuffled training loader augmented at level `augment` (modalities.AUGMENT_LEVELS;
        "none": nothing random in the inputs), deterministic validation loader)."""

    def rows_at_once(self, batch_size: int) -> int:
        """Training rows one forward/backward pass may hold (a divisor of `batch_size`); the
        loop accumulates gradients over `batch_size // rows_at_once` of them per step."""


def pipeline_for(model: TailoredModel, pre: Any) -> InputPipeline:
    """The pipeline that feeds `model`: its network's own `input_pipeline()` when it has one
    (text encoders carry their tokenizer, audio networks their front end), else the one its
    modality gives for the preprocessing record (images: decoded, resized pixels)."""
    from modeltailor.modalities import get_modality

    own = getattr(model.net, "input_pipeline", None)
    return own() if own is not None else get_modality(pre.modality).input_pipeline(pre)


# -- images ------------------------------------------------------------------------------------


class ImagePipeline:
    """Decoded, resized, normalised pixels; one row per image."""

    channels_last = True

    def __init__(self, pre: Preprocessing) -> None:
        self.pre = pre

    def units(self, items: Sequence[Any]) -> int:
        return len(items)

    def inference_batches(self, items, batch_size, num_workers, bad):
        yield from decoded_batches(list(items), self.pre, batch_size, num_workers, bad)

    def rows_at_once(self, batch_size: int) -> int:
        return batch_size  # BatchNorm statistics need the whole batch in one pass

    def training_loaders(self, train, val, batch_size, num_workers, seed, augment):
        from modeltailor.data.transforms import eval_transform, train_transform
        from modeltailor.training.loaders import ImageTensors

        pre = self.pre
        train_data = ImageTensors(train.items, train.labels, train_transform(pre, augment), pre)
        val_data = ImageTensors(val.items, val.labels, eval_transform(pre), pre)
        drop_last = len(train) > batch_size  # BatchNorm cannot train on a batch of 1
        return (
            make_loader(train_data, batch_size, True, num_workers, seed, drop_last),
            make_loader(val_data, batch_size * 2, num_workers=num_workers),
        )


# -- text --------------------------------------------------------------------------------------


class TextPipeline:
    """Token windows (`TextEncoder.encode`): every window of a long text is a row."""

    channels_last = False

    def __init__(self, encoder) -> None:
        self.encoder = encoder

    def _windows(self, items: Sequence[Any]) -> list[list[list[int]]]:
        return self.encoder.encode([_text_of(item) for item in items])

    def units(self, items: Sequence[Any]) -> int:
        return len(items)

    def inference_batches(self, items, batch_size, num_workers, bad):
        """Windows longest first (little padding per batch); `covered` counts finished texts."""
        encoded = self._windows(items)
        flat = [(owner, w) for owner, wins in enumerate(encoded) for w in wins]
        order = sorted(range(len(flat)), key=lambda i: -len(flat[i][1]))
        remaining = [len(w) for w in encoded]
        for start in range(0, len(order), batch_size):
            rows = [flat[i] for i in order[start : start + batch_size]]
            owners = [owner for owner, _ in rows]
            finished = 0
            for owner in owners:
                remaining[owner] -= 1
                finished += remaining[owner] == 0
            yield self.encoder.collate([w for _, w in rows]), owners, finished

    def rows_at_once(self, batch_size: int) -> int:
        enc = self.encoder
        return rows_at_once(batch_size, enc.pre.max_length * enc.num_features * enc.num_layers)

    def training_loaders(self, train, val, batch_size, num_workers, seed, augment):
        train_data = TextWindows(
            self._windows(train.items),
            train.labels,
            random_window=augment != "none",
            drop=TEXT_TOKEN_DROP.get(augment, 0.0),
            keep_head=1 + len(getattr(self.encoder, "_prefix_ids", ())),
        )
        val_windows = [w[:MAX_VAL_WINDOWS] for w in self._windows(val.items)]
        val_data = TextWindows.flattened(val_windows, val.labels)
        collate = TextCollate(self.encoder.collate)
        sampler = LengthBucketSampler(train_data.lengths, batch_size, seed)
        train_loader = DataLoader(
            train_data, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers
        )
        val_order = LengthBucketSampler(val_data.lengths, batch_size * 2, None)
        val_loader = DataLoader(
            val_data, batch_sampler=val_order, collate_fn=collate, num_workers=num_workers
        )
        return train_loader, val_loader


#: Share of word pieces a training window loses, per level.
TEXT_TOKEN_DROP = {"strong": 0.1}


def _text_of(item: Any) -> str:
    return item if isinstance(item, str) else item.text


class TextWindows(Dataset):
    """(token ids, label) per text; a long text gives a random one of its windows each time it
    is drawn (a different view per epoch, like an image crop), or always its first. With
    `drop`, that share of the window's content tokens is removed at random (the first
    `keep_head` ids, the special token and model prefix, and the last one are always kept)."""

    def __init__(
        self,
        windows: list[list[list[int]]],
        labels: list[int],
        random_window: bool = False,
        drop: float = 0.0,
        keep_head: int = 1,
    ) -> None:
        self.windows = windows
        self.labels = labels
        self.random_window = random_window
        self.drop = drop
        self.keep_head = keep_head
        self.lengths = [max(len(w) for w in wins) for wins in windows]

    @classmethod
    def flattened(cls, windows: list[list[list[int]]], labels: list[int]) -> TextWindows:
        """One row per window, each with its text's label (window-level validation loss)."""
        rows = [[w] for wins in windows for w in wins]
        row_labels = [lab for wins, lab in zip(windows, labels, strict=True) for _ in wins]
        return cls(rows, row_labels)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        wins = self.windows[i]
        pick = int(torch.randint(len(wins), ())) if self.random_window and len(wins) > 1 else 0
        return self._dropped(wins[pick]), self.labels[i]

    def _dropped(self, ids: list[int]) -> list[int]:
        head, body, tail = ids[: self.keep_head], ids[self.keep_head : -1], ids[-1:]
        if not self.drop or len(body) < 2:
            return ids
        keep = (torch.rand(len(body)) >= self.drop).tolist()
        if not any(keep):
            keep[0] = True
        return head + [t for t, k in zip(body, keep, strict=True) if k] + tail


class TextCollate:
    """Dynamic padding: pad each batch to its own longest window (picklable for workers)."""

    def __init__(self, collate: Callable[[Sequence[Sequence[int]]], torch.Tensor]) -> None:
        self.collate = collate

    def __call__(self, batch: list[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.collate([ids for ids, _ in batch]), torch.tensor([y for _, y in batch])


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar length: shuffle, sort pools of `BUCKET_BATCHES` batches by length,
    cut them into batches, shuffle the batches, all from (seed, epoch) (`start_epoch`; Lightning
    calls `set_epoch`, else each pass is the next epoch). Without a seed: longest first, fixed."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int | None) -> None:
        self.lengths = lengths
        self.batch_size = max(1, batch_size)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        n, size = len(self.lengths), self.batch_size
        if self.seed is None:
            order = sorted(range(n), key=lambda i: -self.lengths[i])
            yield from (order[s : s + size] for s in range(0, n, size))
            return
        epoch, self.epoch = self.epoch, self.epoch + 1
        generator = start_epoch(self.seed, epoch)
        perm = torch.randperm(n, generator=generator).tolist()
        pool = size * BUCKET_BATCHES
        batches = []
        for s in range(0, n, pool):
            chunk = sorted(perm[s : s + pool], key=lambda i: -self.lengths[i])
            batches += [chunk[b : b + size] for b in range(0, len(chunk), size)]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[b]


# -- audio -------------------------------------------------------------------------------------


class AudioPipeline:
    """Windows of 16-kHz samples packed with their mask (B, 2, S): a long clip is several
    rows (overlapping windows), a short one is padded and the padding masked out."""

    channels_last = False

    def __init__(self, pre: AudioPreprocessing) -> None:
        self.pre = pre

    def units(self, items: Sequence[Any]) -> int:
        return len(items)

    def rows_at_once(self, batch_size: int) -> int:
        return batch_size  # audio encoders here are small (whisper-tiny/base)

    def _wave(self, item: Any, bad: dict) -> np.ndarray | None:
        from modeltailor.data.audio import AudioReadError, load_waveform

        try:
            return load_waveform(item, self.pre.sample_rate)
        except AudioReadError as exc:
            bad[item] = str(exc)
            return None

    def inference_batches(self, items, batch_size, num_workers, bad):
        rows: list[np.ndarray] = []
        owners: list[int] = []
        covered = 0
        for index, item in enumerate(items):
            wave = self._wave(item, bad)
            covered += 1
            if wave is not None:
                for window in clip_windows(wave, self.pre):
                    rows.append(window)
                    owners.append(index)
            if len(rows) >= batch_size:
                yield torch.from_numpy(np.stack(rows)), owners, covered
                rows, owners, covered = [], [], 0
        if rows or covered:
            yield (torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0)), owners, covered

    def training_loaders(self, train, val, batch_size, num_workers, seed, augment):
        bad: dict = {}
        train_waves = [self._wave(item, bad) for item in train.items]
        val_windows = [
            clip_windows(w, self.pre)[:MAX_VAL_WINDOWS] if w is not None else []
            for w in (self._wave(item, bad) for item in val.items)
        ]
        if bad:
            first = next(iter(bad.items()))
            raise ModelTailorError(f"{len(bad)} clips could not be decoded, first: {first}")
        train_data = AudioClips(train_waves, train.labels, self.pre, AUDIO_AUGMENT[augment])
        val_rows = [w for wins in val_windows for w in wins]
        val_labels = [lab for wins, lab in zip(val_windows, val.labels, strict=True) for _ in wins]
        val_data = list(zip((torch.from_numpy(r) for r in val_rows), val_labels, strict=True))
        drop_last = len(train) > batch_size
        train_loader = DataLoader(
            train_data,
            batch_size=batch_size,
            sampler=EpochShuffle(len(train_data), seed),
            generator=torch.Generator().manual_seed(seed),
            num_workers=num_workers,
            drop_last=drop_last,
        )
        val_loader = DataLoader(val_data, batch_size=batch_size * 2, num_workers=num_workers)
        return train_loader, val_loader


def clip_windows(wave: np.ndarray, pre: AudioPreprocessing) -> list[np.ndarray]:
    """(2, S) float32 rows: [samples; mask] per window. Windows overlap by
    `pre.window_overlap`; the last one ends at the clip's end; a short clip is zero-padded."""
    size = pre.window_samples
    if len(wave) <= size:
        return [_packed(wave, size)]
    step = max(1, size - int(size * pre.window_overlap))
    starts = list(range(0, len(wave) - size + 1, step))
    if starts[-1] + size < len(wave):
        starts.append(len(wave) - size)
    return [_packed(wave[s : s + size], size) for s in starts]


def _packed(samples: np.ndarray, size: int, offset: int = 0) -> np.ndarray:
    row = np.zeros((2, size), np.float32)
    n = min(len(samples), size - offset)
    row[0, offset : offset + n] = samples[:n]
    row[1, offset : offset + n] = 1.0
    return row


def speed_changed_length(samples: int, change: float) -> int:
    """How many samples a clip of `samples` has when played (1 + change) times as fast."""
    return samples if change == 0 or samples < 2 else math.ceil((samples - 1) / (1 + change))


def speed_changed(
    wave: np.ndarray, change: float, start: int = 0, count: int | None = None
) -> np.ndarray:
    """`wave` played (1 + change) times as fast: read at that step by linear interpolation,
    so the clip gets shorter (faster) or longer (slower) and its pitch moves with it.

    Only samples `start` to `start + count` of the result are computed: a training window of
    a long clip costs its own length, not the clip's.
    """
    length = speed_changed_length(len(wave), change)
    count = length - start if count is None else count
    if change == 0 or len(wave) < 2:
        return wave if (start, count) == (0, len(wave)) else wave[start : start + count]
    at = (start + np.arange(count)) * (1 + change)  # < len(wave) - 1: a right neighbour exists
    low = at.astype(np.int64)
    left = wave[low].astype(np.float64)
    return (left + (wave[low + 1] - left) * (at - low)).astype(np.float32)


@dataclass(frozen=True)
class AudioAugment:
    """What varies in a training clip at one `--augment` level (all drawn from torch's seeded
    generator, so the same seed gives the same epochs)."""

    #: A long clip trains on a random window (else always its first).
    random_window: bool = True
    #: Speed perturbation (Ko et al. 2015, Kaldi's 0.9/1.0/1.1): tempo and pitch change
    #: together, so the model hears each word said faster and slower than in the data.
    max_speed_change: float = 0.0
    #: A short clip may start anywhere in this first share of its window.
    max_shift: float = 0.0
    gain_db: float = 0.0
    #: Share of clips that get white noise, at an SNR drawn from `snr_db`.
    noise_share: float = 0.0
    snr_db: tuple[float, float] = (15.0, 40.0)
    #: SpecAugment masks (frequency, time) on networks with a mel front end.
    spec_masks: tuple[int, int] = (0, 0)


AUDIO_AUGMENT = {
    "none": AudioAugment(random_window=False),
    "light": AudioAugment(max_shift=0.2, gain_db=3),
    "default": AudioAugment(
        max_speed_change=0.1, max_shift=0.2, gain_db=6, noise_share=0.5, spec_masks=(2, 2)
    ),
    "strong": AudioAugment(
        max_speed_change=0.15,
        max_shift=0.3,
        gain_db=9,
        noise_share=0.8,
        snr_db=(10.0, 30.0),
        spec_masks=(3, 3),
    ),
}

class AudioClips(Dataset):
    """Training clips: a window of each clip, varied as `augment` says."""

    def __init__(self, waves, labels, pre: AudioPreprocessing, augment: AudioAugment) -> None:
        self.waves = waves
        self.labels = labels
        self.pre = pre
        self.augment = augment

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        wave, size, aug = self.waves[i], self.pre.window_samples, self.augment
        change = 0.0
        if aug.max_speed_change:
            change = float(torch.empty(()).uniform_(-1, 1)) * aug.max_speed_change
        length = speed_changed_length(len(wave), change)
        start = 0
        if aug.random_window and length > size:
            start = int(torch.randint(length - size + 1, ()))
        wave = speed_changed(wave, change, start, min(size, length))
        offset = 0
        if aug.max_shift and len(wave) < size:
            room = min(size - len(wave), int(size * aug.max_shift))
            offset = int(torch.randint(room + 1, ()))
        row = _packed(wave, size, offset)
        if aug.gain_db:
            row[0] *= 10 ** (float(torch.empty(()).uniform_(-aug.gain_db, aug.gain_db)) / 20)
        if aug.noise_share and float(torch.rand(())) < aug.noise_share:
            real = row[1] > 0
            power = float(np.mean(row[0, real] ** 2)) if real.any() else 0.0
            snr = float(torch.empty(()).uniform_(*aug.snr_db))
            sigma = np.sqrt(power / 10 ** (snr / 10))
            noise = torch.randn(size).numpy() * sigma
            row[0, real] += noise[real].astype(np.float32)
        return torch.from_numpy(row), self.labels[i]


# -- pooled inference ----------------------------------------------------------------------------


@torch.inference_mode()
def pooled_outputs(
    fn: Callable[[torch.Tensor], torch.Tensor],
    pipeline: InputPipeline,
    items: Sequence[Any],
    batch_size: int,
    num_workers: int,
    bad: dict,
    advance: Callable[[int], None] = lambda n: None,
) -> tuple[np.ndarray, list[int]]:
    """`fn` over every row, averaged per item: (one row per usable item, their indices).

    Items that fail to load are added to `bad` and left out. Without worker processes, and
    when a core is left over by torch's threads, the next batches are read (decoded, resized,
    tokenised) in a thread while `fn` runs on this one.
    """
    sums: np.ndarray | None = None
    counts = np.zeros(len(items), np.int64)
    batches = pipeline.inference_batches(items, batch_size, num_workers, bad)
    if num_workers == 0 and PREFETCH_BATCHES > 0 and spare_core():
        batches = prefetched(batches)
    for x, owners, covered in batches:
        if owners:
            out = fn(x).float().numpy()
            if sums is None:
                sums = np.zeros((len(items), out.shape[1]), np.float64)
            np.add.at(sums, owners, out)
            np.add.at(counts, owners, 1)
        advance(covered)
    kept = [i for i in range(len(items)) if counts[i] > 0 and items[i] not in bad]
    if sums is None:
        return np.empty((0, 0), np.float32), kept
    return (sums[kept] / counts[kept, None]).astype(np.float32), kept


#: Batches a reading thread may have ready ahead of the model (0: no thread, read in turn;
#: benchmarks flip it to compare, see NOTES-extract.md).
PREFETCH_BATCHES = 2


def spare_core() -> bool:
    """Whether this process may run on more cores than torch's intra-op threads use.

    Why it matters: on 2 unloaded cores with torch on both, a reading thread slowed the probe
    (hymenoptera, bf16: 7.06 s with it vs 6.20 s without; forward 71 vs 97 rows/s) and gained
    nothing for audio (0.99x): torch's threads spin while they wait and lose the core to it.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return cores > torch.get_num_threads()


def prefetched(batches: Iterator[Any], depth: int = PREFETCH_BATCHES) -> Iterator[Any]:
    """`batches`, produced in a background thread up to `depth` ahead.

    Why a thread: decoding JPEGs and resizing (PIL, torch) release the GIL, so reading overlaps
    the forward pass when a core is free for it (`spare_core`), without copying every batch
    between processes as DataLoader workers do. Errors in the thread are raised here; stopping
    early stops the thread.
    """
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                out.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(("batch", batch)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            put(("error", exc))

    thread = threading.Thread(target=produce, name="read-batches", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = out.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()
