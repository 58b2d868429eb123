"""Figures for a person to look at: stacked spectrogram panels."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)
import numpy as np  # noqa: E402


def save_mel_panels(path: str, title: str, panels: dict[str, np.ndarray], vmin: float,
                    vmax: float) -> None:
  """One panel per name, each a [frames, mels] array, sharing the time axis."""
  fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.2 * len(panels) + 0.1), sharex=True)
  axes = np.atleast_1d(axes)
  for ax, (name, mel) in zip(axes, panels.items()):
    ax.imshow(np.asarray(mel).T, origin="lower", aspect="auto", cmap="magma", vmin=vmin,
              vmax=vmax)
    ax.set_ylabel(f"{name}\nmel bin")
  axes[0].set_title(title)
  axes[-1].set_xlabel("frame (10 ms)")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
