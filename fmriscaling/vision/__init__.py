"""The vision track: Algonauts 2023 / NSD encoding models and their scaling laws.

Matsuyama, Sasaki & Nishimoto 2023 (METHODS.md, section 2): per vertex, the layer and spatial
pooling of a vision model whose features predict it best by cross-validation, refit on all
training images, scored on held-out images; then how the scores grow with the number of
training images and with the model's size.

``fmriscaling.vision.dataset``
    the Algonauts 2023 challenge layout: file names, the check of a local copy (what is
    missing, how to get it, where to put it), fMRI, image lists, ROI masks and their label
    mappings (a restricted unpickler: never `allow_pickle=True`), ncsnr and repeat counts.
``fmriscaling.vision.models``
    vision models loaded as layer-wise spatial feature maps (transformers snapshots; timm
    towers when timm is importable).
``fmriscaling.vision.features``
    adaptive max pooling to k x k, batched extraction of every layer written per layer with
    provenance, and reading it back.
``fmriscaling.vision.splits``
    the image split (train / held-out test), the sweep's seeded training subsets, K-fold folds
    over images, z-scoring with the training images' statistics.
``fmriscaling.vision.selection``
    the per-vertex choice of (layer, k) by cross-validated ridge
    (`fmriscaling.encoding.ridge.fit_ridge_cv`), its refit and test, and the fit jobs.
``fmriscaling.vision.scores``
    the challenge's noise ceiling from ncsnr and repeat counts, the noise-normalised score,
    ROI summaries.
``fmriscaling.vision.tables``, ``fmriscaling.vision.plots``
    tidy tables (one row per fit, per ROI, per selected candidate), log-linear scaling fits in
    the language track's shape, and the figures drawn from them.

Submodules import torch / transformers lazily; `fmriscaling.vision.dataset` needs numpy only,
so a workflow parse can check a local data directory cheaply.
"""
