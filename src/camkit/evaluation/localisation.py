"""The localisation metrics that read the object mask pixel by pixel, as plug-ins (the
mathematics: `camkit.metrics.localisation`; the pointing game, energy and MaxBoxAcc are in
`builtin`). Each measures only the images that have a mask, with no pass through the model;
focus needs no mask: it explains mosaics of the batch's images again."""

from __future__ import annotations

from torch import Tensor
from typing_extensions import override

from camkit.evaluation.plugins import Context, Load, PerImage, Setting, Settings, register_metric
from camkit.metrics import localisation
from camkit.metrics.localisation import focus, mosaics


class _Localisation(PerImage):
    category = "localisation"
    needs_masks = True
    scale = 100.0


@register_metric("relevance-mass")
class RelevanceMass(_Localisation):
    """Relevance mass accuracy (Arras et al., 2022): the share of the map's sum inside the
    object's mask. On camkit's non-negative maps it equals attribution localisation
    (Kohlbrenner et al., 2020); the energy column is the same share inside the mask's box."""

    columns = (("Mass acc %", "higher", "{:.1f}"),)

    @override
    def measure(self, context: Context) -> Tensor:
        assert context.masks is not None
        return localisation.relevance_mass(context.explanation.maps[:, 0], context.masks)


@register_metric("relevance-rank")
class RelevanceRank(_Localisation):
    """Relevance rank accuracy (Arras et al., 2022): of the map's K highest pixels, K the
    mask's size, the share inside the mask."""

    columns = (("Rank acc %", "higher", "{:.1f}"),)

    @override
    def measure(self, context: Context) -> Tensor:
        assert context.masks is not None
        return localisation.relevance_rank(context.explanation.maps[:, 0], context.masks)


@register_metric("top-k")
class TopKIntersection(_Localisation):
    """Top-k intersection (Theiner et al., 2022): of the map's `top_k` highest pixels, the
    share inside the mask."""

    columns = (("Top-k %", "higher", "{:.1f}"),)
    settings = (
        Setting(
            "top_k",
            int,
            1000,
            "top-k intersection: the map's highest pixels counted (as "
            "Quantus; all of a smaller map)",
            low=1,
            high=2**31 - 1,
        ),
    )

    @override
    def measure(self, context: Context) -> Tensor:
        assert context.masks is not None
        maps = context.explanation.maps[:, 0]
        return localisation.top_k_intersection(maps, context.masks, context.settings.top_k)


@register_metric("roc-auc")
class RocAuc(_Localisation):
    """AUC (Fawcett, 2006): the area under the ROC curve of the map's values as a score for
    "inside the mask" (Quantus' localisation `AUC`), 0.5 for a map that knows nothing."""

    columns = (("ROC AUC", "higher", "{:.3f}"),)
    scale = 1.0

    @override
    def measure(self, context: Context) -> Tensor:
        assert context.masks is not None
        return localisation.roc_auc(context.explanation.maps[:, 0], context.masks)


@register_metric("focus")
class Focus(PerImage):
    """Focus (Arias-Duart et al., 2022): each image in a 2 x 2 mosaic with another image of its
    class and two of other classes from its batch, explained by the method for its class: the
    share of the map's positive mass on the two quadrants of the class (0.5: no preference).
    Quantus' `Focus` (which takes mosaics made beforehand). The mosaics are twice the input's
    side: one explanation of four times the pixels an image."""

    category = "localisation"
    default = False
    needs = ("re-explanations", "another class")
    columns = (("Focus %", "higher", "{:.1f}"),)
    scale = 100.0

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return 4 * load.explain  # a mosaic holds four inputs' pixels

    @override
    def measure(self, context: Context) -> Tensor:
        tiles, quadrants = mosaics(context.x, context.labels, context.generator())
        maps = context.explain_again()(tiles, context.labels)
        return focus(maps, quadrants)
