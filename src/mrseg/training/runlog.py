"""The run folder's records: ``metrics.csv``, TensorBoard events and the loss-curve figure.

Only rank 0 creates a :class:`RunLog`. ``metrics.csv`` is rewritten atomically after every epoch
so it always matches ``last.pt``; on resume, rows after the checkpoint's epoch are dropped.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from matplotlib.ticker import MaxNLocator
from torch.utils.tensorboard import SummaryWriter

from mrseg.core.atomic import atomic_write_text
from mrseg.core.figures import pyplot, save_figure

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"
PLOT_FILE = "loss_curve.png"
TENSORBOARD_DIR = "tensorboard"


@dataclass(frozen=True)
class EpochMetrics:
    """One row of ``metrics.csv``.

    ``train_loss`` and ``val_loss`` are the data losses (BCE/CE [+ Dice]) averaged over patches;
    ``l2_loss`` is the L2 penalty at the end of the epoch (Keras sum, or half of it with
    ``train.l2_mode=half_sum``; with ``decoupled`` the Keras sum for information only, the decay being
    applied by AdamW); ``samples_per_s`` counts training patches of all ranks; ``time_s`` is the wall
    time of the whole epoch including validation; ``val_auc`` is the pooled pixel AUC of the
    validation patches (NaN in CSVs written before it existed).
    """

    epoch: int
    train_loss: float
    val_loss: float
    l2_loss: float
    lr: float
    samples_per_s: float
    time_s: float
    val_auc: float = float("nan")


FIELDS = [f for f in EpochMetrics.__dataclass_fields__]


class RunLog:
    """Writer of the per-epoch records of one run folder."""

    def __init__(self, run_dir: str | os.PathLike[str], *, tensorboard: bool = True, start_epoch: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.rows: list[EpochMetrics] = [r for r in read_metrics(self.run_dir / METRICS_FILE) if r.epoch <= start_epoch]
        self._tb = None
        if tensorboard:
            self._tb = SummaryWriter(
                log_dir=str(self.run_dir / TENSORBOARD_DIR), purge_step=start_epoch + 1 if start_epoch else None
            )
        self._write_csv()

    def add(self, row: EpochMetrics) -> None:
        """Record one finished epoch (CSV rewritten atomically; TensorBoard scalars)."""
        self.rows.append(row)
        self._write_csv()
        if self._tb is not None:
            self._tb.add_scalar("loss/train", row.train_loss, row.epoch)
            self._tb.add_scalar("loss/val", row.val_loss, row.epoch)
            self._tb.add_scalar("auc/val", row.val_auc, row.epoch)
            self._tb.add_scalar("loss/l2", row.l2_loss, row.epoch)
            self._tb.add_scalar("lr", row.lr, row.epoch)
            self._tb.add_scalar("samples_per_s", row.samples_per_s, row.epoch)
            self._tb.flush()

    def _write_csv(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow(asdict(r))
        atomic_write_text(self.run_dir / METRICS_FILE, buf.getvalue())

    def close(self, *, plot: bool = True, best_epoch: int | None = None) -> Path | None:
        """Close TensorBoard and draw the loss curves (returns the PNG path, or None)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if plot and self.rows:
            return plot_losses(self.rows, self.run_dir / PLOT_FILE, best_epoch=best_epoch)
        return None


def read_metrics(path: str | os.PathLike[str]) -> list[EpochMetrics]:
    """Rows of a ``metrics.csv`` (empty when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        EpochMetrics(int(r["epoch"]), *(float(r.get(k) or "nan") for k in FIELDS[1:]))  # type: ignore[arg-type]
        for r in rows
    ]


def plot_losses(rows: list[EpochMetrics], path: str | os.PathLike[str], *, best_epoch: int | None = None) -> Path:
    """Training and validation loss against epoch (PNG, written atomically)."""
    plt = pyplot()

    epochs = [r.epoch for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(epochs, [r.train_loss for r in rows], marker="o", ms=3, label="training (data loss)")
    ax.plot(epochs, [r.val_loss for r in rows], marker="o", ms=3, label="validation")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best (epoch {best_epoch})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
