"""Rule extract_vision_features: every layer of one vision model, pooled, for every image set."""

from typing import TYPE_CHECKING

from fmriscaling._utils import limit_threads, log_to_file
from fmriscaling.vision.dataset import list_images
from fmriscaling.vision.features import extract_vision_model

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    log_to_file(smk.log[0])
    limit_threads(smk.threads)
    p = smk.params
    extract_vision_model(
        smk.input.model,
        {
            name: list_images(folder)
            for name, folder in zip(p.image_sets, smk.input.images, strict=True)
        },
        smk.output[0],
        model_name=p.model_name,
        pooling=p.pooling,
        batch_size=p.batch_size,
        n_workers=p.n_workers,
        device=p.device,
        dtype=p.dtype,
        expected_n_layers=p.expected_n_layers,
        params=dict(p.items()),
    )


if __name__ == "__main__":
    main(snakemake)
