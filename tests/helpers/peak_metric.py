"""A metric plug-in written the way a user would, in one file: one setting, one curve.

Importing this module registers it as "peak": the share of each map's pixels at or above
`peak_level`, and the curve of that share over ten levels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from camkit.evaluation import Context, Metric, Plot, Setting, Statistic, register_metric
from camkit.evaluation.plugins import cat, mean_of

LEVELS = torch.linspace(0.0, 0.9, 10)


@register_metric("peak")
class PeakShare(Metric):
    """Share of each map's pixels at or above a level (the smaller, the more focused)."""

    columns = (("Peak share %", "lower", "{:.2f}"),)
    settings = (
        Setting("peak_level", float, 0.9, "map value counted as the peak", low=0.0, high=1.0),
    )
    plots = (Plot("peak", "peak_share", "Share of pixels above each level", "level", "share"),)

    def measure(self, context: Context) -> Tensor:
        maps = context.explanation.maps[:, 0].flatten(1)  # (B, pixels)
        levels = torch.cat([LEVELS.to(maps), torch.tensor([context.settings.peak_level]).to(maps)])
        return (maps[:, None, :] >= levels[None, :, None]).float().mean(dim=2)  # (B, 11)

    def summary(self) -> dict[str, float]:
        if not self.done():
            return {}
        return {"Peak share %": 100 * float(cat(self.done())[:, -1].mean())}

    def curves(self) -> dict[str, list[float]]:
        return {"peak_share": cat(self.done())[:, :-1].mean(dim=0).tolist()} if self.done() else {}

    def statistics(self) -> dict[str, Statistic]:
        return {"Peak share %": mean_of(cat(self.done())[:, -1], 100)} if self.done() else {}
