"""Stimulus features: model activations at word (or audio-frame) times, downsampled to TRs.

``fmriscaling.features.lm``
    causal language models: dynamic-context extraction (`extract_lm_features`), its naive
    per-word reference (`naive_lm_features`) and the per-dataset driver `extract_text_model`.
``fmriscaling.features.io``
    `FeatureWriter` (one HDF5 file per layer, one dataset per story, written atomically),
    `read_layer` and `list_stories`; the Lanczos step to TR times is
    `fmriscaling.interpolation.downsample_story`.

Submodules import torch / transformers lazily, so importing this package stays cheap.
"""
