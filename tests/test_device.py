"""The CPU class: AMX counts only where the kernel lets the process use it."""

import os
import platform
import subprocess
import sys

import pytest
import torch

from seq2seq import device
from seq2seq.device import AVX2_EMULATION, cpu_class, cpu_vendor


@pytest.mark.parametrize(("capability", "avx512_bf16", "amx", "permitted", "vendor", "expected"), [
    ("AVX2", True, True, True, "GenuineIntel", "avx2"),          # emulated: torch's kernels decide
    ("AVX512", False, False, False, "GenuineIntel", "avx512"),   # Intel Xeon Skylake to Ice Lake
    ("AVX512", True, False, False, "GenuineIntel", "avx512"),    # Cooper Lake, or AMX hidden: float32 is faster
    ("AVX512", True, True, True, "GenuineIntel", "bf16"),        # Intel Xeon Sapphire Rapids and later
    ("AVX512", True, True, False, "GenuineIntel", "avx512"),     # AMX there, but the kernel refuses it
    ("AVX512", False, True, False, "GenuineIntel", "avx512"),
    ("AVX512", True, False, False, "AuthenticAMD", "bf16"),      # AMD Zen 4 and later
])
def test_the_class_follows_the_features_and_the_amx_permission(
        monkeypatch: pytest.MonkeyPatch, capability: str, avx512_bf16: bool, amx: bool, permitted: bool, vendor: str,
        expected: str) -> None:
    """Probes and the kernel's answer set here; the real ones are asked below."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(device, "amx_permitted", lambda: permitted, raising=False)
    monkeypatch.setattr(device, "cpu_vendor", lambda: vendor)
    assert cpu_class() == expected


def _cpu_flags() -> set[str]:
    flags = device.cpu_info("flags")
    return set(flags.split()) if flags else set()


# Linux asks for AMX permission per process: a fresh interpreter shows whether the class asked.
ASK_AND_REPORT = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)

def xtiledata_permitted():
    mask = ctypes.c_ulong(0)
    assert libc.syscall(158, 0x1022, ctypes.byref(mask)) == 0  # SYS_arch_prctl, ARCH_GET_XCOMP_PERM
    return bool(mask.value & (1 << 18))  # XFEATURE_XTILEDATA

before = xtiledata_permitted()
from seq2seq.device import AVX2_EMULATION, cpu_class, cpu_vendor
print(before, cpu_class(), xtiledata_permitted())
"""


@pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64" and "amx_tile" in _cpu_flags()),
                    reason="an x86 Linux CPU with AMX")
def test_an_amx_cpu_is_bf16_after_the_kernel_grants_amx() -> None:
    """On this machine (an Intel Xeon with AMX) the class is bf16, and by then the process holds the
    permission, as oneDNN's AMX kernels need."""
    before, name, after = subprocess.run([sys.executable, "-c", ASK_AND_REPORT], capture_output=True, text=True,
                                         check=True).stdout.split()
    assert (before, name, after) == ("False", "bf16", "True")


@pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"), reason="x86 Linux only")
def test_cpu_class_follows_the_kernels_torch_uses() -> None:
    """Unemulated, the class is what the kernel's CPU flags make it; under the AVX2 emulation, avx2."""
    flags = _cpu_flags()
    fast_bf16 = "amx_tile" in flags or ("avx512_bf16" in flags and cpu_vendor() == "AuthenticAMD")
    expected = "avx2" if "avx512f" not in flags else "bf16" if fast_bf16 else "avx512"
    code = "from seq2seq.device import cpu_class; print(cpu_class())"
    plain = {name: value for name, value in os.environ.items() if name not in AVX2_EMULATION}
    for environment, cpu_class_there in ((plain, expected), ({**plain, **AVX2_EMULATION}, "avx2")):
        result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                                check=True)
        assert result.stdout.strip() == cpu_class_there


@pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"), reason="x86 Linux only")
def test_cpu_vendor_is_read_from_the_machine() -> None:
    assert cpu_vendor() in ("GenuineIntel", "AuthenticAMD")
