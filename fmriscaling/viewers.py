"""Interactive brain viewers: a pycortex WebGL viewer per subject, and serving ``results/``.

`subject_viewer` writes pycortex's static WebGL viewer (``cortex.webgl.make_static``: one
``index.html`` with pycortex's JavaScript embedded, the subject's surfaces as a compressed CTM
pack, and one data file per layer) of a subject's maps, switchable in the viewer: the best
model's test r, CC_norm, CC_max, its significance (when the permutation test ran) and each
stack's weight on speech. The viewer loads its surfaces with XMLHttpRequests, which browsers
refuse on ``file://`` pages: it must be served over HTTP (`serve`, ``make view``).

``python -m fmriscaling.viewers [results]`` serves a results folder on 127.0.0.1 and prints the
URL of every viewer, group page and the report under it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import logging
import os
import shutil
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._pycortex import has_surfaces, pycortex_session
from ._utils import DataError, write_provenance
from .figures.brain import subject_map_values
from .responses import load_mask

logger = logging.getLogger(__name__)

__all__ = ["find_viewers", "main", "serve", "subject_viewer", "viewer_layers"]

#: Colours of the significance layer (1 = significant after FDR, 0 = not).
_SIGNIFICANT = {"label": "significant (FDR)", "cmap": "Greens", "vmin": 0.0, "vmax": 1.0}


def viewer_layers(
    voxels: pd.DataFrame, stacking_weights: Mapping[str, np.ndarray] | None = None
) -> dict[str, tuple[np.ndarray, dict]]:
    """The layers of a subject viewer: name -> (value per voxel, colour style).

    Parameters
    ----------
    voxels : DataFrame
        The voxel table of one subject (its best model).
    stacking_weights : mapping of str to array, optional
        ``"<stack>: speech"`` -> weight per voxel.

    Returns
    -------
    dict of str to (array of shape (n_voxels,), dict)
        In the viewer's order; the first is shown on opening.
    """
    if voxels["subject"].nunique() != 1:
        raise DataError("viewer_layers needs the voxel table of one subject")
    order = voxels.sort_values("voxel")
    model, layer = order["model"].iloc[0], int(order["layer"].iloc[0])
    best = f"{model} layer {layer}"
    names = {
        "test_r": f"test r ({best}, best by CV)",
        "cc_norm": f"CC_norm ({best})",
        "cc_max": "CC_max (noise ceiling)",
    }
    layers = {}
    for name, values, style in subject_map_values(order, stacking_weights):
        layers[names.get(name, style["label"])] = (values, style)
        if name == "cc_max" and "significant" in order:  # after the best model's maps
            layers[f"significant ({best}, FDR)"] = (
                order["significant"].to_numpy(dtype=bool).astype(float),
                _SIGNIFICANT,
            )
    return layers


def subject_viewer(
    voxels: pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    subject: str,
    db_dir: str | os.PathLike,
    xfmname: str,
    mask: str | os.PathLike,
    stacking_weights: Mapping[str, np.ndarray] | None = None,
    params: Mapping | None = None,
) -> Path:
    """pycortex's static WebGL viewer of a subject's maps, in ``out_dir`` (module docstring).

    Written in a temporary folder beside ``out_dir`` and moved into place when complete.

    Parameters
    ----------
    voxels : DataFrame
        The voxel table (`fmriscaling.voxel_tables.voxel_table`); the subject's rows are used.
    out_dir : path-like
        The viewer's folder (``index.html`` in it).
    subject : str
    db_dir : path-like
        pycortex filestore holding the subject's surfaces.
    xfmname : str
    mask : path-like
        The cortical mask of the voxels.
    stacking_weights : mapping, optional
        ``"<stack>: speech"`` -> weight per voxel.
    params : mapping, optional
        Recorded in the provenance (``<out_dir>.provenance.json``).

    Returns
    -------
    pathlib.Path
        ``out_dir/index.html``.
    """
    if not has_surfaces(db_dir, subject):
        raise DataError(
            f"{Path(db_dir) / subject}: no pycortex surfaces, so no WebGL viewer for {subject} "
            "(download kind 'pycortex', or set group_maps.viewers: false)"
        )
    voxels = voxels[voxels["subject"] == subject]
    if voxels.empty:
        raise DataError(f"the voxel table has no rows for subject {subject}")
    mask_zyx, n_voxels = load_mask(mask)
    layers = viewer_layers(voxels, stacking_weights)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a viewer is for sharing
    try:
        with pycortex_session(db_dir, [subject]) as cortex, warnings.catch_warnings():
            # pycortex's surface smoothing hands scipy a matrix it converts (once per solve)
            warnings.filterwarnings("ignore", message="splu converted its input to CSC")
            data = {}
            for name, (values, style) in layers.items():
                if values.shape != (n_voxels,):
                    raise DataError(f"{name}: {values.size} values for {n_voxels} mask voxels")
                volume = np.full(mask_zyx.shape, np.nan, dtype=np.float32)
                volume[mask_zyx] = values
                finite = values[np.isfinite(values)]
                vmax = style["vmax"]
                if vmax is None:
                    vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
                data[name] = cortex.Volume(
                    volume, subject, xfmname, cmap=style["cmap"], vmin=style["vmin"], vmax=vmax
                )
            logger.info("%s: building the WebGL viewer (%d layers)", subject, len(data))
            cortex.webgl.make_static(
                str(staging), data, recache=False, title=f"{subject}: fmriscaling maps"
            )
        # the provenance inside the viewer's folder (index.provenance.json)
        write_provenance(staging / "index", params, subject=subject, layers=list(layers))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    logger.info("%s: viewer in %s (%.1f MB)", subject, out_dir, size / 1e6)
    return out_dir / "index.html"


# ------------------------------------------------------------------------------- serving


def find_viewers(results: str | os.PathLike) -> list[Path]:
    """The pages worth opening under ``results``: ``viewers/**/index.html`` (pycortex), the
    group pages ``viewers/*/group/*.html`` (nilearn) and ``report.html``, relative to it."""
    results = Path(results)
    found = sorted(p for p in results.glob("viewers/*/*/index.html"))
    found += sorted(results.glob("viewers/*/group/*.html"))
    found += [p for p in (results / "report.html",) if p.is_file()]
    return [p.relative_to(results) for p in found]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; answers a browser's favicon request with "no content" (a 404 there
    would be the only error in the console)."""

    def do_GET(self) -> None:
        if self.path == "/favicon.ico" and not Path(self.translate_path(self.path)).is_file():
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


@contextlib.contextmanager
def serve(root: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``root`` over HTTP in a background thread; yields the base URL.

    Parameters
    ----------
    root : path-like
    host : str
        127.0.0.1 by default: the results stay on this machine.
    port : int
        0 picks a free port.
    """
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fmriscaling.viewers [results] [--port N]``: serve and list the viewers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", default="results", help="results folder")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0: any free)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    pages = find_viewers(results)
    if not pages:
        print(
            f"no viewers under {results}/viewers: run the workflow first (make demo)",
            file=sys.stderr,
        )
        return 1
    with serve(results, port=args.port) as url:
        print(f"serving {results.resolve()} on {url} (Ctrl-C to stop)")
        for page in pages:
            print(f"  {url}/{page.as_posix()}")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
