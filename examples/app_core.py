"""What `camkit app` computes, without a browser: explain, redraw, and score the maps.

Run: python examples/app_core.py
"""

from camkit.app.core import (
    Question,
    explain_pictures,
    faithfulness,
    open_model,
    render,
    sample_pictures,
)

model = open_model("shapes")
print(f"automatic layer: {model.automatic}")
shown = explain_pictures(model, sample_pictures()[:2], Question(methods=("gradcam", "gradcam++")))
tiles = render(shown, alpha=0.6, colormap="hot")  # opacity and colour map: no model call
print(f"tiles: {len(tiles)} ({', '.join(caption for _, caption in tiles[:3])}, ...)")
print(faithfulness(model, shown[0]).table())
