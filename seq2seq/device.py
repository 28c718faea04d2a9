"""Where tensors live and in which precision: shared by train, evaluate and translate."""

from __future__ import annotations

import functools
import platform
from contextlib import AbstractContextManager, nullcontext

import torch

from seq2seq.allocator import loaded_allocator
from seq2seq.errors import UserError


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA where present, else CPU; asking for CUDA without it is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for, but torch sees no CUDA GPU (use auto or cpu)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


CPU_CLASS_DESCRIPTIONS = {  # the names are config.CPU_CLASSES
    "avx2": "float32; no AVX-512 and no native bf16: AVX2, older or not x86",
    "avx512": "float32; AVX-512 without fast bf16 (an Intel CPU without AMX)",
    "bf16": "fast native bf16: AMX, or AVX512-BF16 on AMD; bf16 autocast where train.bf16 is true",
}

# Emulates the avx2 class on a newer x86 CPU: torch's own kernels (ATen), oneDNN's and MKL's
# matrix products all limited to AVX2. Read when each library first runs: set before torch starts.
AVX2_EMULATION = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def cpu_class() -> str:
    """Which of `CPU_CLASS_DESCRIPTIONS` this CPU is, as torch's kernels see it (so an emulation counts).

    Training speed differs most between these classes (a 2-core AMD EPYC with AVX2 alone trained the
    old default at 3,300 target tokens/s, one with AVX512-BF16 at 13,400), so the train stage picks
    its steps by class: `train.max_steps_by_cpu_class` (docs/training.md). AVX512-BF16
    is not enough on an Intel CPU without AMX: on an Intel Xeon whose AMX the hypervisor hides, bf16
    autocast trained at 0.66x the float32 speed. So AMX counts only where the kernel lets this
    process use it (`amx_permitted`); refused, the class follows the other features.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX512", "AMX"):
        return "avx2"
    amx = torch.cpu._is_amx_tile_supported() and amx_permitted()
    fast_bf16 = amx or (torch.cpu._is_avx512_bf16_supported() and cpu_vendor() == "AuthenticAMD")
    return "bf16" if fast_bf16 else "avx512"


@functools.cache  # a permission, once given, lasts for the process
def amx_permitted() -> bool:
    """Ask the kernel to let this process use the AMX tiles: Linux (5.16 and later) gives their large
    register state only to a process that asks (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`,
    which torch's `init_amx` makes). True where it is granted (or where no permission is needed);
    False where it is refused (an older kernel, a sandbox) or the CPU has no AMX, and then oneDNN runs
    bf16 without AMX, slower than float32. False also with a torch too old to ask."""
    init_amx = getattr(torch.cpu, "_init_amx", None)
    return bool(init_amx()) if init_amx is not None else False


def cpu_info(field: str) -> str | None:
    """The first value of `field` (e.g. "model name") in /proc/cpuinfo; None where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            fields = (line.partition(":") for line in cpuinfo)
            return next((value.strip() for name, _, value in fields if name.strip() == field), None)
    except OSError:
        return None


@functools.cache  # cpu_class() asks on every training step (autocast); the answer never changes
def cpu_vendor() -> str:
    """"GenuineIntel", "AuthenticAMD", ...: from /proc/cpuinfo, else from the platform (Windows names
    it last in `platform.processor()`); "" where neither says."""
    vendor = cpu_info("vendor_id")
    if vendor:
        return vendor
    return next((name for name in ("AuthenticAMD", "GenuineIntel") if name in platform.processor()), "")


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    """bf16 mixed precision where the hardware runs it natively, else a no-op context."""
    if not enabled:
        return nullcontext()
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and cpu_class() == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def machine_description(device: torch.device) -> dict[str, str]:
    """What a trained model's exact bytes depend on besides the data and params: the CPU (or GPU)
    model, the kernels torch picks for it, the torch version and the thread count; and the memory
    allocator (`seq2seq.allocator`), which decides the memory and speed, not the bytes."""
    cpu = cpu_info("model name") or platform.processor() or platform.machine()
    description = {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_class": cpu_class(),
                   "torch": torch.__version__, "threads": str(torch.get_num_threads()), "allocator": loaded_allocator()}
    if device.type == "cuda":
        description["gpu"] = torch.cuda.get_device_name(device)
    return description


def memory_mib(pid: int | str = "self") -> tuple[float, float] | None:
    """The resident memory of this process (or of process `pid`) now and at its peak, in MiB; None
    where the system does not say (the reading comes from /proc, so Linux only)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            fields = dict(line.split(":", 1) for line in status if line.startswith(("VmRSS", "VmHWM")))
    except OSError:
        return None
    now, peak = (int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM"))
    return now, peak
