"""Rule brain_map: the best model's normalised correlation per voxel, over the reference volume."""

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fmriscaling._utils import log_to_file
from fmriscaling.encoding.noise_ceiling import load_noise_ceiling, normalized_correlation
from fmriscaling.plotting import plot_brain_map, save_figure

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    subject = smk.params.subject
    best = pd.read_csv(smk.input.best_layers)
    best = best[best["subject"] == subject].sort_values("mean_cv_score").iloc[-1]
    scores = {
        (fit["model"], int(fit["layer"])): path
        for fit, path in zip(smk.params.fits, smk.input.scores, strict=True)
    }
    with np.load(scores[best["model"], int(best["layer"])], allow_pickle=False) as f:
        test_r = f["test_r"]
    ceiling = load_noise_ceiling(smk.input.ceiling)
    cc_norm = normalized_correlation(test_r, ceiling.cc_max, floor=smk.params.floor)
    maps = {"test r": test_r, "CC_max": ceiling.cc_max, "CC_norm": cc_norm}
    fig = plt.figure(figsize=(12, 3.2 * len(maps)))
    for i, (name, values) in enumerate(maps.items()):
        ax = fig.add_axes((0, 1 - (i + 1) / len(maps), 1, 1 / len(maps)))
        plot_brain_map(
            np.nan_to_num(values, nan=0.0),  # voxels without a ceiling are drawn blank
            smk.input.mask,
            smk.input.reference,
            # response columns follow pycortex's (z, y, x) mask order, as in ds003020
            order="F",
            axes=ax,
            figure=fig,
            title=f"{subject} {best['model']} layer {best['layer']} (best by CV): {name}",
        )
    save_figure(fig, Path(smk.output[0]).with_suffix(""), formats=("png",))


if __name__ == "__main__":
    main(snakemake)
