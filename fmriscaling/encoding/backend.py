"""The ridge backend and device memory: where a fit runs, how precisely it scores, what fits.

* `resolve_backend` picks and sets himalaya's backend (``"auto"``: torch_cuda when a GPU is
  visible, else torch on CPU) and logs the choice. himalaya's backend is a process-wide global,
  so a fit sets it through `using_backend`, which restores the caller's backend on exit (on an
  error too): the backend is chosen once, at the edge, and a fit never changes it behind the
  caller's back.
* `resolve_score_dtype` decides the precision of the alpha search, float32 or bfloat16
  (``"auto"``: a deterministic hardware check, AMX-BF16 on CPUs).
* Device memory: `_free_memory_bytes` (the share of free GPU or host memory a voxel batch may
  use; on the host, within the job's memory limit: `_job_memory_limit`), `_PeakMemory` (peak
  GPU allocation or peak resident memory of a fit), `_is_out_of_memory` and
  `_empty_device_cache` (what the batch loop needs to halve a batch that did not fit and
  retry it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["SCORE_DTYPES", "resolve_backend", "resolve_score_dtype", "using_backend"]

# share of free memory a voxel batch may use; the CPU is shared with other jobs
_CPU_MEMORY_FRACTION = 0.25
_GPU_MEMORY_FRACTION = 0.6


# -------------------------------------------------------------------------------- backend


def resolve_backend(name: str = "auto") -> tuple[Any, str]:
    """Set the himalaya backend once and return it.

    Parameters
    ----------
    name : {"auto", "numpy", "torch", "torch_cuda", "cupy"}
        ``"auto"`` picks ``torch_cuda`` when a CUDA device is visible, else ``torch`` on CPU
        (its ``eigh`` is ~2x faster than numpy's on the CPUs we measured; GEMMs are equal).

    Returns
    -------
    backend : module
        The himalaya backend module (``backend.name`` is its name).
    name : str
        Name of the backend actually set (``set_backend`` falls back with a warning on error).

    See Also
    --------
    using_backend : the same for a ``with`` block, restoring the caller's backend afterwards.
    """
    from himalaya.backend import set_backend

    if name == "auto":
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            name = "numpy"
            logger.info("torch not installed, using numpy on CPU")
        else:
            if torch.cuda.is_available():
                name = "torch_cuda"
            else:
                name = "torch"
                logger.info("no GPU visible, using torch on CPU")
    backend = set_backend(name, on_error="warn")
    if backend.name != name:
        logger.warning("ridge backend %s unavailable, fell back to %s", name, backend.name)
    if backend.name == "torch_cuda":
        import torch

        logger.info("ridge backend: torch_cuda (%s)", torch.cuda.get_device_name())
    else:
        logger.info("ridge backend: %s (CPU, %d threads)", backend.name, os.cpu_count() or 1)
    return backend, backend.name


@contextmanager
def using_backend(name: str = "auto") -> Iterator[tuple[Any, str]]:
    """Set the himalaya backend for a ``with`` block, then restore the caller's.

    ``with using_backend("numpy") as (backend, name): ...`` runs the block on ``backend`` (chosen
    and logged by `resolve_backend`) and leaves `himalaya.backend.get_backend` as it was before the
    block, whether the block returns or raises.

    Parameters
    ----------
    name : {"auto", "numpy", "torch", "torch_cuda", "cupy"}
        Backend for the block, see `resolve_backend`.

    Yields
    ------
    backend : module
        The himalaya backend module (``backend.name`` is its name).
    name : str
        Name of the backend actually set.
    """
    from himalaya.backend import get_backend, set_backend

    previous = get_backend()
    try:
        yield resolve_backend(name)
    finally:
        set_backend(previous)


@contextmanager
def serial_reductions(backend: Any) -> Iterator[None]:
    """Run a block of torch CPU products and sums in one thread, then restore the thread count.

    With two or more intra-op threads, torch's CPU sums were not bit-reproducible from one process
    to the next. Measured on the cluster check's fits under load (2 threads, 3 busy processes
    beside them): 2 to 5 processes in 40 returned CV correlations that differed by up to 1.1e-5
    in their first fold, enough to flip the alpha of a voxel whose CV curve is flat, and so its
    test r (also with a float32 alpha search: 2 in 60). With the products and sums of
    `_cv_scores_fold` in one thread, 90 of 90 processes gave the same result, equal to the usual
    one. Serialising the sums alone was not enough (1 process in 50 still differed). The GEMMs
    around the block keep every thread. Other backends are untouched: numpy's sums are
    single-threaded, and GPU kernels are not split across CPU threads.

    Parameters
    ----------
    backend : module
        The himalaya backend in use (``backend.name``).
    """
    if getattr(backend, "name", None) != "torch":
        yield
        return
    import torch

    n_threads = torch.get_num_threads()
    if n_threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n_threads)


# ---------------------------------------------------------------------------- score dtype

SCORE_DTYPES = ("float32", "bfloat16", "auto")


#: CPU instruction sets that run bfloat16 GEMMs natively (Linux /proc/cpuinfo flags): AMX tiles
#: (Intel Sapphire Rapids and later, ~4-5x the float32 rate) and AVX512-BF16 dot products (AMD
#: Zen 4, Intel Cooper Lake; measured on a 2-core Zen 4: 3000 x 4096 x 20000 ridge in 23.6 s
#: with bfloat16 scoring against 45.4 s in float32, the same test r to 1e-5)
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpu_bf16_flags() -> list[str]:
    """The `BF16_CPU_FLAGS` this CPU advertises (Linux ``/proc/cpuinfo``); [] when unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split())
                    return [flag for flag in BF16_CPU_FLAGS if flag in flags]
    except OSError:
        pass
    return []


def resolve_score_dtype(score_dtype: str, backend_name: str) -> str:
    """Precision of the CV alpha search: ``"float32"`` or ``"bfloat16"``.

    Parameters
    ----------
    score_dtype : {"float32", "bfloat16", "auto"}
        ``"auto"`` is ``"bfloat16"`` where bfloat16 GEMMs are fast: ``torch_cuda`` on a device with
        ``torch.cuda.is_bf16_supported()``, or ``torch`` on a CPU with oneDNN bfloat16 support and
        a native bfloat16 instruction set (`BF16_CPU_FLAGS`: AMX-BF16, ~4-5x the float32 rate,
        or AVX512-BF16, ~2x; without either, bfloat16 is emulated and slower). The decision is a
        deterministic hardware check, not a timing, so the same machine always resolves the same
        way; the log line names the instruction sets behind it, and the fit's summary records
        the dtype used. Everything else resolves to ``"float32"``.
    backend_name : str
        The himalaya backend actually in use (after `resolve_backend`).

    Raises
    ------
    ValueError
        An unknown value, or ``"bfloat16"`` requested with a backend other than torch/torch_cuda.
    """
    if score_dtype not in SCORE_DTYPES:
        raise ValueError(f"score_dtype={score_dtype!r}: expected one of {SCORE_DTYPES}.")
    torch_backend = backend_name in ("torch", "torch_cuda")
    if score_dtype == "bfloat16":
        if not torch_backend:
            raise ValueError(
                f"score_dtype='bfloat16' needs the torch or torch_cuda backend, but the backend is "
                f"{backend_name!r} (no bfloat16 GEMMs there). Use backend 'torch' / 'torch_cuda' "
                "or score_dtype 'float32' / 'auto'."
            )
        return "bfloat16"
    if score_dtype == "float32" or not torch_backend:
        return "float32"
    import torch

    if backend_name == "torch_cuda":
        fast = bool(torch.cuda.is_bf16_supported())
    else:
        try:
            mkldnn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # pragma: no cover - private op moved
            mkldnn_bf16 = False
        flags = _cpu_bf16_flags()
        fast = torch.backends.mkldnn.is_available() and mkldnn_bf16 and bool(flags)
        why = f"CPU bfloat16 instructions: {', '.join(flags) or 'none'}, oneDNN bf16: {mkldnn_bf16}"
    if backend_name == "torch_cuda":
        why = f"torch.cuda.is_bf16_supported(): {fast}"
    resolved = "bfloat16" if fast else "float32"
    logger.info("score_dtype auto -> %s on %s (%s)", resolved, backend_name, why)
    return resolved


# ----------------------------------------------------------------------------- memory probes


def _free_memory_bytes(backend_name: str) -> int:
    """Bytes a voxel batch may use: a share of the free GPU memory (torch_cuda) or host memory.

    Parameters
    ----------
    backend_name : str
        The himalaya backend in use.

    Returns
    -------
    n_bytes : int
        ``_GPU_MEMORY_FRACTION`` of the free device memory plus torch's cache, or
        ``_CPU_MEMORY_FRACTION`` of the available host memory, and of no more than the job
        has left under its memory limit (`_job_memory_limit`) less this process's RSS.
    """
    if backend_name == "torch_cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        # memory torch holds in its cache is free for us too
        cached = torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
        return int((free + cached) * _GPU_MEMORY_FRACTION)
    try:
        import psutil

        available = psutil.virtual_memory().available
        rss = psutil.Process().memory_info().rss
    except ImportError:  # pragma: no cover
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        rss = 0
    limit = _job_memory_limit()
    if limit is not None:
        # the host's free memory is not the job's: a cluster job is killed above its limit
        available = min(available, max(0, limit - rss))
    return int(available * _CPU_MEMORY_FRACTION)


def _job_memory_limit(
    proc_cgroup: str | os.PathLike = "/proc/self/cgroup",
    cgroup_root: str | os.PathLike = "/sys/fs/cgroup",
) -> int | None:
    """The memory this process's job may use, in bytes; None when nothing limits it.

    The smaller of SLURM's ``SLURM_MEM_PER_NODE`` (MB: a job's ``--mem``, which Snakemake sets
    from ``mem_mb``) and the memory limit of the process's cgroup and of each cgroup above it
    (v2 ``memory.max``, v1 ``memory/memory.limit_in_bytes``; how SLURM, containers and systemd
    enforce a limit). ``psutil`` reports the whole host's memory, not the job's.
    """
    limits = []
    slurm_mb = os.environ.get("SLURM_MEM_PER_NODE", "")
    if slurm_mb.isdigit() and int(slurm_mb) > 0:
        limits.append(int(slurm_mb) * 2**20)
    try:
        entries = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        entries = []
    for entry in entries:
        _, controllers, group = entry.split(":", 2)
        if controllers == "":  # cgroup v2
            root, name = Path(cgroup_root), "memory.max"
        elif "memory" in controllers.split(","):  # cgroup v1
            root, name = Path(cgroup_root) / "memory", "memory.limit_in_bytes"
        else:
            continue
        folder = root / group.strip("/")
        for level in (folder, *folder.parents):
            if not level.is_relative_to(root):
                break
            try:
                value = (level / name).read_text().strip()
            except OSError:  # not mounted here, or another hierarchy
                continue
            if value.isdigit():  # "max" (v2) is no limit; v1's is a huge number
                limits.append(int(value))
    return min(limits) if limits else None


class _PeakMemory:
    """Peak GPU allocation (torch_cuda) or peak RSS of this process (CPU).

    Created at the start of what it measures (it resets the peak there); `peak` reads it.

    Parameters
    ----------
    backend_name : str
        The himalaya backend in use; anything but ``"torch_cuda"`` measures the host process.
    """

    def __init__(self, backend_name: str):
        self.cuda = backend_name == "torch_cuda"
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            try:  # "5" resets VmHWM to the current RSS (Linux)
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass

    def peak(self) -> int:
        """Peak bytes since this object was created (``ru_maxrss`` where VmHWM is unreadable)."""
        if self.cuda:
            import torch

            return int(torch.cuda.max_memory_allocated())
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says an allocation failed (numpy, torch CPU or CUDA allocator)."""
    if isinstance(error, MemoryError):
        return True
    try:
        import torch

        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover
        pass
    # torch's CPU allocator raises a plain RuntimeError ("DefaultCPUAllocator: can't allocate
    # memory ..."), its CUDA allocator (before OutOfMemoryError existed) "CUDA out of memory"
    message = str(error)
    return isinstance(error, RuntimeError) and (
        "out of memory" in message or "can't allocate memory" in message
    )


def _empty_device_cache(backend_name: str) -> None:
    """Hand the memory torch caches on the GPU back to the device (after an out-of-memory error)."""
    if backend_name == "torch_cuda":
        import torch

        torch.cuda.empty_cache()
