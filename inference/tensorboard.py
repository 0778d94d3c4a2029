"""TensorBoard logging of a run (the optional ``tensorboard`` extra).

``fit(..., log_dir=DIR)`` (``scripts/train.py --tensorboard DIR``, the ``tensorboard`` setting of
:func:`inference.runs.train_run`) writes one TensorBoard run into ``DIR``:

* at every log step, the numbers ``metrics.jsonl`` records, from the same host values (the window
  means that ``fit`` reads once per log window: no extra host synchronisation), tagged by what they
  are (:func:`inference.pictures.term_kind`): ``elbo/<term>`` (``loss``, ``recon``, ``kl``, the
  penalties), ``weights/kl_weight`` (the warm-up weight of the window's last step) and
  ``state/<name>`` for a stateful objective's state (β-VAE-B's C(t) ``capacity``, FactorVAE's
  discriminator ``tc`` estimate and ``discriminator`` loss, the robust model's ``gamma`` and
  ``lambda``);
* with ``image_every`` N (a multiple of ``log_every``), ``pictures/reconstructions`` and
  ``pictures/traversals`` every N steps, drawn on eight fixed items in eval mode under a forked RNG
  (training's random stream is untouched; the images cost one device-to-host copy at those steps);
* when a session ends, the run's config as TensorBoard hparams (a session start info, no experiment
  summary, so that TensorBoard takes every scalar of the run, and of its ``evaluation`` sub-run, as
  the session's metrics, and runs side by side in one folder (a sweep) compare in one table).

Resuming appends to the same run: the writer starts with ``purge_step`` = the checkpoint's step + 1,
so the steps a killed session logged after its last checkpoint are superseded by the resumed ones
(as ``metrics.jsonl`` is cut back), and no step appears twice. A fresh run refuses a folder that
already holds event files. TensorBoard reads a run's hparams from the first session that wrote them.

Evaluation: ``fit`` records the folder in ``config.json`` (``tensorboard``), and
:func:`inference.report.evaluate_run` (``scripts/evaluate.py``, a sweep trial) then writes the
report's metrics as ``eval/<metric>`` scalars at the run's step into the sub-run ``DIR/evaluation``
(:func:`log_evaluation`), purging that sub-run's earlier points at the same step: evaluating again
replaces them, and evaluating a longer run adds a point. TensorBoard's hparams table shows them as
the session's ``evaluation`` metrics beside its config when TensorBoard's ``--logdir`` is a folder
above ``DIR`` (a run given as the logdir itself is TensorBoard's run ``.``, which it does not take
as the parent of ``evaluation``): e.g. ``--tensorboard tb/beta4`` and ``tensorboard --logdir tb``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .errors import ConfigError
from .pictures import reconstructions, term_kind, traversals

INSTALL = "pip install pyro-disentangle[tensorboard]"
#: TensorBoard's tag prefix for each kind of logged number (:func:`inference.pictures.term_kind`)
PREFIX = {"term": "elbo", "weight": "weights", "state": "state"}
EVALUATION_RUN = "evaluation"
#: config keys that are not hyperparameters (paths of this machine)
NOT_HPARAMS = ("tensorboard", "data_root")


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``; ConfigError naming the extra when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(f"TensorBoard logging needs the tensorboard package: {INSTALL}") from None
    return SummaryWriter


def has_events(folder) -> bool:
    folder = Path(folder)
    return folder.is_dir() and any(folder.glob("events.out.tfevents.*"))


def tag(name: str, names) -> str:
    """The TensorBoard tag of the logged number ``name`` in a run that logs ``names``."""
    return f"{PREFIX[term_kind(name, names)]}/{name}"


def hparam_values(config: dict) -> dict:
    """``config`` as TensorBoard hparams: numbers, strings and booleans as they are, lists as text,
    ``None`` and machine paths left out."""
    out = {}
    for key, value in sorted(config.items()):
        if key in NOT_HPARAMS or value is None:
            continue
        out[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


class TrainingBoard:
    """The TensorBoard run of one ``fit`` session (module docstring). Constructing it checks
    everything (the package, the folder, ``image_every``) and writes nothing."""

    def __init__(self, log_dir, *, start: int, resume: bool, log_every: int, image_every: int = 0):
        self._writer_class = summary_writer_class()
        self.dir = Path(log_dir)
        if self.dir.exists() and not self.dir.is_dir():
            raise ConfigError(f"TensorBoard folder {self.dir} is not a directory")
        if not resume and has_events(self.dir):
            raise ConfigError(f"TensorBoard folder {self.dir} already holds another run's events "
                              "(use another folder, or resume the run that wrote them)")
        if not isinstance(image_every, int) or image_every < 0 or image_every % log_every:
            raise ConfigError(f"image_every must be 0 or a multiple of log_every ({log_every}), "
                              f"got {image_every!r}")
        self.image_every = image_every
        self.purge_step = start + 1 if resume else None
        self._writer = None
        self._items = None
        self._can_draw = True

    @property
    def writer(self):
        if self._writer is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._writer = self._writer_class(str(self.dir), purge_step=self.purge_step)
        return self._writer

    def log_window(self, step: int, terms: dict, kl_weight: float) -> None:
        """The numbers of a ``metrics.jsonl`` row (host floats) at ``step``."""
        names = [*terms, "kl_weight"]
        for name, value in (*terms.items(), ("kl_weight", kl_weight)):
            self.writer.add_scalar(tag(name, names), value, step)

    def images_due(self, step: int) -> bool:
        return self.image_every > 0 and self._can_draw and step % self.image_every == 0

    @torch.no_grad()
    def log_images(self, step: int, model, guide, data, device) -> None:
        """Reconstructions of eight fixed items and a traversal grid of the first, at ``step``."""
        from torchvision.utils import make_grid

        forked = [device] if torch.device(device).type == "cuda" else []
        modes = [(m, m.training) for m in (*model.modules(), *guide.modules())]  # frozen parts stay eval
        with torch.random.fork_rng(devices=forked):
            if self._items is None:
                index = torch.randperm(len(data), generator=torch.Generator().manual_seed(1))[:8]
                x, _ = data.batch(index, device=device)
                if x.ndim != 4 or not hasattr(model, "decode") or not hasattr(guide, "posterior"):
                    self._can_draw = False
                    warnings.warn("TensorBoard pictures need image data and a pair with model.decode "
                                  "and guide.posterior; none are logged", UserWarning, stacklevel=3)
                    return
                self._items = x
            x = self._items
            model.eval()
            guide.eval()
            try:
                rec = reconstructions(model, guide, x)
                trav = traversals(model, guide, x[:1], steps=7).reshape(-1, *x.shape[1:])
            finally:
                for module, training in modes:
                    module.training = training
        for name, images, nrow in (("reconstructions", rec, len(x)), ("traversals", trav, 7)):
            grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, pad_value=0.5)
            self.writer.add_image(f"pictures/{name}", grid, step)

    def log_hparams(self, config: dict) -> None:
        """The run's config as hparams: a session start and end, no experiment summary."""
        from torch.utils.tensorboard.summary import hparams

        _, start, end = hparams(hparam_values(config), {})
        writer = self.writer._get_file_writer()
        writer.add_summary(start)
        writer.add_summary(end)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def evaluation_scalars(report: dict) -> dict[str, float]:
    """The report's numbers as ``eval/<metric>[_<field>]`` tags (a metric's ``value`` is the metric;
    sample counts and matrices are left out)."""
    out = {}
    for key, fields in report.get("metrics", {}).items():
        if not isinstance(fields, dict):
            continue
        for field, value in fields.items():
            if field.startswith("num_") or field == "group_size":
                continue
            if isinstance(value, dict):
                items = [(f"{field}_{k}", v) for k, v in value.items()]
            else:
                items = [(field, value)]
            for name, v in items:
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"eval/{key}" if name == "value" else f"eval/{key}_{name}"] = float(v)
    return out


def log_evaluation(log_dir, report: dict, step: int) -> dict[str, float]:
    """Write the report's metrics into the run's ``evaluation`` sub-run at ``step``, replacing an
    earlier evaluation at that step; returns what was written."""
    scalars = evaluation_scalars(report)
    writer = summary_writer_class()(str(Path(log_dir) / EVALUATION_RUN), purge_step=step)
    try:
        for name, value in scalars.items():
            writer.add_scalar(name, value, step)
    finally:
        writer.close()
    return scalars
