"""Command line of the downloader: ``python -m fmriscaling.download``.

Example::

    python -m fmriscaling.download --dest data/ds003020 --subjects UTS01 \\
        --stories all --kinds respdict responses textgrids
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fmriscaling._utils import ConfigError, DataError

from .http import DEFAULT_BASE_URL, download_many
from .manifest import KINDS, read_manifest, select_files

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fmriscaling.download",
        description="Download part of OpenNeuro ds003020, verified against the manifest.",
    )
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="dataset root URL")
    parser.add_argument(
        "--manifest",
        default="config/datasets/ds003020_manifest.tsv",
        help="TSV of path, size, md5 (default: %(default)s)",
    )
    parser.add_argument("--dest", required=True, help="local dataset root")
    parser.add_argument(
        "--subjects", nargs="*", default=["all"], help="subject ids, or 'all' (default)"
    )
    parser.add_argument("--stories", nargs="*", default=["all"], help="story names, or 'all'")
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=KINDS,
        default=["respdict", "responses", "textgrids"],
        help="kinds of file (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=4, help="parallel downloads")
    parser.add_argument("--retries", type=int, default=3, help="retries per file")
    parser.add_argument(
        "--verify-existing", action="store_true", help="check the MD5 of files already present"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--dry-run", action="store_true", help="list the selected files and their total size"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 on a data error)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        manifest = read_manifest(args.manifest)
        subjects = "all" if args.subjects == ["all"] else args.subjects
        stories = "all" if args.stories in (["all"], []) else args.stories
        paths = select_files(manifest, subjects=subjects, stories=stories, kinds=args.kinds)
        if args.dry_run:
            sizes = manifest.set_index("path").loc[paths, "size"]
            for p in paths:
                sys.stdout.write(f"{p}\n")
            logger.info("%d file(s), %.2f GB", len(paths), sizes.sum() / 1e9)
            return 0
        download_many(
            args.base_url,
            paths,
            args.dest,
            manifest,
            workers=args.workers,
            retries=args.retries,
            progress=not args.no_progress,
            verify_existing=args.verify_existing,
        )
    except (DataError, ConfigError) as exc:
        logger.error("%s", exc)
        return 1
    return 0
