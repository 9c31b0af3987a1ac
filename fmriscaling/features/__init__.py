"""Stimulus features: model activations at word (or audio-frame) times, downsampled to TRs.

``fmriscaling.features.extract``
    `extract_model`, the one per-dataset driver: checks the story lists, loads the model,
    then per story computes features, downsamples them to TR times
    (`fmriscaling.interpolation.downsample_story`), writes every layer and the provenance.
``fmriscaling.features.context``
    the dynamic word context (`context_starts`) and the windows that compute it
    (`window_schedule`).
``fmriscaling.features.lm``
    causal language models: dynamic-context extraction (`extract_lm_features`), its naive
    per-word reference (`naive_lm_features`), both with their cost (`lm_features_and_stats`),
    and `extract_text_model` (the driver with a causal LM).
``fmriscaling.features.audio``
    story audio (`read_wav`) and the causal windows' frame geometry (`window_bounds`,
    `conv_last_frame`, `whisper_last_frame`).
``fmriscaling.features.speech``
    speech models: causal sliding windows over the audio (`extract_speech_features`) and
    `extract_speech_model` (the driver with a speech model).
``fmriscaling.features.io``
    `FeatureWriter` (one HDF5 file per layer, one dataset per story, written atomically),
    `read_layer` and `list_stories`.

Submodules import torch / transformers lazily, so importing this package stays cheap.
"""
