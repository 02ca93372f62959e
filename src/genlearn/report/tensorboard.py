"""TensorBoard logs of a fit: `genlearn fit --tensorboard DIR`; in Python
`genlearn.fit(..., callbacks=[TensorBoardLogger(DIR)])` (then `logger.finish(run.metrics)` for the final metrics).

A trainer callback (called as fn(trainer, record) after every epoch; the trainer stays family-blind) that writes,
through torch.utils.tensorboard, at the epoch as step:

- every monitored number of the record under a tag that says what it is and how it was obtained: `loss` (the
  learning rule's objective, epoch mean), `lr`, `nll/<split>/<method>` (exact, ais_forward, importance_sampling,
  ensemble_member, quadrature...), `neg_elbo/<split>` (a bound), `kl/train_empirical`, `kl/train_upper_elbo`,
  `kl/true`, `ais/ess`, `ais/log_z_forward`, `adversarial/<key>`, and any other number as `other/<key>`;
- `time/epoch_seconds`: the training time of the epoch (not the monitoring);
- `samples`: one image of 64 samples (seed 0, so the same random numbers every time) for image data, in a grid
  with grey borders enlarged towards GRID_SIDE pixels (sample_canvas), at the
  evaluations, at most every `image_seconds` of wall time and always at the last epoch;
- at the end (`finish(metrics)`): the final metrics as `final/<key>` and their methods as text.

The `tensorboard` package is an optional extra (`pip install 'genlearn[tensorboard]'`); without it the logger
cannot be made and says so in one ConfigError."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from genlearn.errors import ConfigError

#: tag of each monitoring key of the trainer's records (keys not listed: other/<key>)
TAGS = {"loss": "loss", "lr": "lr",
        "train_nll": "nll/train/exact", "valid_nll": "nll/valid/exact",
        "train_nll_ais": "nll/train/ais_forward", "valid_nll_ais": "nll/valid/ais_forward",
        "train_nll_member": "nll/train/ensemble_member", "valid_nll_member": "nll/valid/ensemble_member",
        "valid_nll_is": "nll/valid/importance_sampling",
        "train_neg_elbo": "neg_elbo/train", "valid_neg_elbo": "neg_elbo/valid",
        "train_kl": "kl/train_empirical", "train_kl_upper": "kl/train_upper_elbo", "kl_true": "kl/true",
        "log_z_ais": "ais/log_z_forward", "ais_ess": "ais/ess",
        "critic_loss": "adversarial/critic_loss", "generator_loss": "adversarial/generator_loss",
        "divergence_estimate": "adversarial/divergence_estimate", "neg_elbo": "adversarial/warm_start_neg_elbo"}
#: record keys that are not measurements
SKIP = {"epoch", "step", "monitored_member"}
N_SAMPLES = 64


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install 'genlearn[tensorboard]' (or "
                          "pip install tensorboard)") from None
    return SummaryWriter


def _monitor_tag(key: str, method: str | None) -> str:
    """nll/<split>/<method> for a split's NLL whose method the model decides (quadrature for a small GAN)."""
    tag = TAGS.get(key, f"other/{key}")
    if method and key in ("train_nll", "valid_nll") and method not in ("exact", "normalised"):
        tag = f"nll/{key.split('_')[0]}/{method.replace('-', '_')}"
    return tag


def _check_writable_folder(folder: Path) -> None:
    """Make the folder now, when the logger is made and before the fit creates its run folder (the writer opens
    its files at the first record): a path that cannot be a folder is one ConfigError up front."""
    existing = next((a for a in (folder, *folder.absolute().parents) if a.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"--tensorboard {folder}: {existing} is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--tensorboard {folder}: cannot make that folder ({exc.strerror}); give a folder you may "
                          "write in") from None


#: the side (pixels) that the sample grid is enlarged towards, by a whole factor (nearest neighbour)
GRID_SIDE = 512


def sample_canvas(images: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Images (N, h*w) in [0, 1] as one near-square grid (H, W) with grey 1-pixel borders (plots._image_canvas),
    each pixel repeated max(1, GRID_SIDE // side) times across and down."""
    from genlearn.plots import _image_canvas

    canvas = _image_canvas(images, shape, math.ceil(math.sqrt(images.shape[0])))
    scale = max(1, GRID_SIDE // max(canvas.shape))
    return canvas.repeat_interleave(scale, 0).repeat_interleave(scale, 1)


class TensorBoardLogger:
    """A Trainer callback writing TensorBoard event files to `log_dir` (see the module docstring).
    image_seconds: the least wall time between two sample grids (0: at every evaluation)."""

    def __init__(self, log_dir, image_seconds: float = 60.0, samples: bool = True):
        writer_cls = _summary_writer()
        self.log_dir = Path(log_dir)
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise ConfigError(f"--tensorboard {self.log_dir} is a file; give a folder")
        _check_writable_folder(self.log_dir)
        self._writer_cls, self._writer = writer_cls, None
        self.image_seconds = float(image_seconds)
        self.samples = samples
        self._last_image: float | None = None
        self._last_train_seconds: float | None = None
        self._method: str | None = None
        self._epoch = 0

    @property
    def writer(self):
        """The SummaryWriter, made at the first record (so that only the writing rank of a data-parallel fit makes
        event files)."""
        if self._writer is None:
            self._writer = self._writer_cls(log_dir=str(self.log_dir))
        return self._writer

    def __call__(self, trainer, record: dict) -> None:
        parallel = getattr(trainer, "parallel", None)
        if parallel is not None and not parallel.is_writer:  # data-parallel: rank 0 logs
            return
        epoch = int(record.get("epoch", trainer.state.epoch))
        self._epoch = epoch
        if self._method is None:
            from genlearn.likelihood import choose_method

            try:
                self._method = str(choose_method(trainer.model, "monitor"))
            except Exception:  # noqa: BLE001 - a model without a policy entry: its monitored keys name themselves
                self._method = ""
        history = trainer.state.history
        if self._last_train_seconds is None and epoch == 1 and history and history[0].get("epoch") == 0:
            self._scalars(history[0], 0)  # the untrained model, recorded before the first epoch of a fresh fit
        self._scalars(record, epoch)
        seconds = trainer.state.train_seconds
        if self._last_train_seconds is not None:
            self.writer.add_scalar("time/epoch_seconds", seconds - self._last_train_seconds, epoch)
        elif epoch == 1:
            self.writer.add_scalar("time/epoch_seconds", seconds, epoch)
        self._last_train_seconds = seconds
        evaluated = len(record) > 3  # an evaluation record, not the epoch/step/loss of an epoch between them
        last = trainer.state.epoch >= trainer.cfg.epochs or trainer.state.stopped_early
        if self.samples and evaluated and trainer.dataset.image_shape is not None:
            now = time.monotonic()
            if last or self._last_image is None or now - self._last_image >= self.image_seconds:
                self._images(trainer.model, tuple(trainer.dataset.image_shape), epoch,
                             getattr(trainer, "device", None))
                self._last_image = now
        self.writer.flush()

    def _scalars(self, record: dict, epoch: int) -> None:
        for key, value in record.items():
            if key in SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(_monitor_tag(key, self._method), float(value), epoch)

    @torch.no_grad()
    def _images(self, model, shape: tuple[int, int], epoch: int, device=None) -> None:
        """64 samples (seed 0) as a grid; the global RNG is left as it was, so logging does not change the fit."""
        with torch.random.fork_rng(devices=[]):
            was_training = model.training
            model.eval()
            try:
                generator = torch.Generator(device=device or "cpu").manual_seed(0)
                x = model.sample(N_SAMPLES, generator=generator)
            finally:
                model.train(was_training)
        grid = sample_canvas(x.detach().float().cpu().clamp(0, 1).reshape(x.shape[0], -1), shape)
        self.writer.add_image("samples", grid[None], epoch, dataformats="CHW")

    def finish(self, metrics: dict) -> None:
        """The final metrics (numbers as final/<key> at the last epoch, their methods as text), then close. Nothing
        on a data-parallel rank other than 0 (its metrics say which rank it is)."""
        if metrics.get("rank", 0) != 0:
            return
        methods = []
        for key, value in metrics.items():
            if key == "history":
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(f"final/{key}", float(value), self._epoch)
            elif isinstance(value, str) and key.endswith("_method"):
                methods.append(f"{key}: {value}")
        if methods:
            self.writer.add_text("final/methods", "  \n".join(methods), self._epoch)
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()


__all__ = ["TAGS", "TensorBoardLogger", "sample_canvas"]
