"""`camkit app`: explore a model's maps in the browser (Gradio, the optional extra camkit[app]).

`camkit.app.core` computes (plain functions, no Gradio); `camkit.app.ui` builds the page.
"""
