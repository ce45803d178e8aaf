"""What this CPU can do, and which local backend `auto` picks for it.

`auto` (the default of EMBEDSEARCH_BACKEND) chooses at start from the CPU's feature flags:
AMX (amx_bf16) -> openvino-bf16, bf16 matrix multiplies on the matrix units (2.0-2.2x
onnx-int8's texts/s, cosine 1.0000 to fp32, measured in issue 14); AVX-512 VNNI, AVX2 or ARM64
without AMX -> onnx-int8 (ONNX Runtime's int8 kernels); anything else -> onnx (fp32).

EMBEDSEARCH_CPU_FLAGS, when set, replaces the flags read from /proc/cpuinfo (spaces or commas
between them): tests use it to pretend the CPU lacks AMX, so `auto` falls back.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS_ENV = "EMBEDSEARCH_CPU_FLAGS"


def cpu_flags() -> set[str]:
    """The CPU's feature flags: EMBEDSEARCH_CPU_FLAGS if set, else /proc/cpuinfo's first CPU."""
    override = os.environ.get(FLAGS_ENV)
    if override is not None:
        return set(override.replace(",", " ").split())
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags, so the portable choices
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def pick_backend(flags: set[str] | None = None, machine: str | None = None) -> tuple[str, str]:
    """The backend `auto` means on this CPU, and why (for the log)."""
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    if "amx_bf16" in flags:
        return "openvino-bf16", "the CPU has AMX bf16 matrix units (amx_bf16)"
    for flag in ("avx512_vnni", "avx2"):
        if flag in flags:
            return "onnx-int8", f"no AMX; int8 kernels for {flag}"
    if machine in ("arm64", "aarch64"):
        return "onnx-int8", "no AMX; int8 kernels for ARM64"
    return "onnx", "no AMX, AVX-512 VNNI, AVX2 or ARM64: fp32"
