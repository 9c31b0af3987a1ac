"""The viewers' layers, finding the pages under results/, and serving them on 127.0.0.1 (the
pycortex viewers themselves are built by the demo and opened in Chromium in test_workflow)."""

from __future__ import annotations

import urllib.request

import numpy as np
import pandas as pd
import pytest

from fmriscaling._utils import DataError
from fmriscaling.viewers import find_viewers, main, serve, viewer_layers


def _voxels(n=6, significant=True):
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "subject": "UTS01",
            "voxel": np.arange(n)[::-1],  # out of order: the layers follow the voxel index
            "model": "opt-m",
            "layer": 3,
            "test_r": rng.uniform(0, 1, n),
            "cc_max": rng.uniform(0, 1, n),
            "cc_norm": rng.uniform(0, 1, n),
        }
    )
    if significant:
        table["significant"] = table["test_r"] > 0.5
    return table


def test_viewer_layers_are_the_best_models_maps_and_the_stack_weights():
    voxels = _voxels()
    weights = np.linspace(0, 1, 6)
    layers = viewer_layers(voxels, {"speech-text: speech": weights})
    assert list(layers) == [
        "test r (opt-m layer 3, best by CV)",
        "CC_norm (opt-m layer 3)",
        "CC_max (noise ceiling)",
        "significant (opt-m layer 3, FDR)",
        "stack speech-text: weight on speech",
    ]
    order = voxels.sort_values("voxel")
    np.testing.assert_array_equal(layers["CC_norm (opt-m layer 3)"][0], order["cc_norm"])
    np.testing.assert_array_equal(
        layers["significant (opt-m layer 3, FDR)"][0], order["significant"].astype(float)
    )
    np.testing.assert_array_equal(layers["stack speech-text: weight on speech"][0], weights)
    assert "significant" not in " ".join(viewer_layers(_voxels(significant=False)))
    two = pd.concat([voxels, voxels.assign(subject="UTS02")])
    with pytest.raises(DataError, match="one subject"):
        viewer_layers(two)


def test_the_pages_under_results_are_found_and_served_on_localhost(tmp_path, capsys):
    (tmp_path / "viewers" / "demo" / "UTS01").mkdir(parents=True)
    (tmp_path / "viewers" / "demo" / "UTS01" / "index.html").write_text("<html>UTS01</html>")
    (tmp_path / "viewers" / "demo" / "group").mkdir()
    (tmp_path / "viewers" / "demo" / "group" / "opt.gain.html").write_text("<html>gain</html>")
    (tmp_path / "report.html").write_text("<html>report</html>")
    pages = [p.as_posix() for p in find_viewers(tmp_path)]
    assert pages == [
        "viewers/demo/UTS01/index.html",
        "viewers/demo/group/opt.gain.html",
        "report.html",
    ]
    with serve(tmp_path) as url:
        assert url.startswith("http://127.0.0.1:")
        for page in pages:
            with urllib.request.urlopen(f"{url}/{page}", timeout=10) as response:
                assert response.status == 200
                assert response.read().startswith(b"<html>")
    # without viewers the command says what to do
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 1
    assert "run the workflow first (make demo)" in capsys.readouterr().err


def test_a_pycortex_session_finds_the_viewers_colormaps_where_pip_put_them(tmp_path):
    """pycortex bakes its colormap folder into defaults.cfg when it is built: a wheel built in a
    temporary environment (uv's builds) points at a folder that is gone, and make_static
    refuses to start. A session points pycortex at the installed folder, then restores."""
    from pathlib import Path

    from fmriscaling._pycortex import (
        SAMPLE_SUBJECT,
        import_cortex,
        installed_colormaps,
        pycortex_session,
        sample_filestore,
    )

    options = import_cortex().options.config
    saved = options.get("webgl", "colormaps")
    gone = str(tmp_path / "builds-v0" / "share" / "pycortex" / "colormaps")
    options.set("webgl", "colormaps", gone)
    try:
        with pycortex_session(sample_filestore(), [SAMPLE_SUBJECT]):
            inside = Path(options.get("webgl", "colormaps"))
        assert inside == installed_colormaps()
        assert (inside / "inferno.png").is_file() and (inside / "Greens.png").is_file()
        assert options.get("webgl", "colormaps") == gone  # the user's setting is restored
    finally:
        options.set("webgl", "colormaps", saved)
