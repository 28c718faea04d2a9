"""What a training run tells the user while it runs: the progress bar on stderr and the dvclive log
(validation curves, and a summary in `dvclive/metrics.json`: the machine, the recipe and the values it
changed, throughput, peak memory and, on a GPU, how busy it was). Rank 0 alone reports."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from seq2seq.device import machine_description, memory_mib
from seq2seq.model import Seq2Seq
from seq2seq.training_budget import RunParams, StepBudget
from seq2seq.training_checkpoints import Progress
from seq2seq.training_process import Distributed

GPU_SAMPLE_SECONDS = 5.0  # how often the GPU's utilisation is read while training on one


def nvidia_smi_utilization(gpu: str) -> float | None:
    """How busy GPU `gpu` (an index or PCI bus id, as `nvidia-smi -i` takes it) was over nvidia-smi's
    last sample period, in percent; None where nvidia-smi is missing or does not answer."""
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                 "-i", gpu], capture_output=True, text=True, timeout=10)
        return float(result.stdout.split()[0]) if result.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def gpu_utilization_reader(device: torch.device) -> Callable[[], float | None] | None:
    """A function that reads how busy `device` is now, in percent: torch.cuda.utilization (NVML, through
    pynvml / nvidia-ml-py) where it answers, else nvidia-smi; None on a CPU or where neither answers."""
    if device.type != "cuda":
        return None
    try:
        torch.cuda.utilization(device)
        return lambda: float(torch.cuda.utilization(device))
    except Exception:  # pynvml missing, or NVML out of reach: nvidia-smi may still answer
        pass
    properties = torch.cuda.get_device_properties(device)
    bus = getattr(properties, "pci_bus_id", None)  # nvidia-smi numbers GPUs apart from CUDA_VISIBLE_DEVICES
    gpu = (f"{getattr(properties, 'pci_domain_id', 0):08X}:{bus:02X}:{getattr(properties, 'pci_device_id', 0):02X}.0"
           if bus is not None else str(device.index or 0))
    return (lambda: nvidia_smi_utilization(gpu)) if nvidia_smi_utilization(gpu) is not None else None


class GpuMonitor:
    """Reads how busy the GPU is every `every` seconds in a background thread (so the training loop
    never waits for a reading), from `read` (`gpu_utilization_reader`); `stop` summarises."""

    def __init__(self, read: Callable[[], float | None], every: float = GPU_SAMPLE_SECONDS) -> None:
        self.samples: list[float] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(read, every), daemon=True, name="gpu-monitor")
        self._thread.start()

    def _sample(self, read: Callable[[], float | None], every: float) -> None:
        while not self._stopped.wait(every):
            value = read()
            if value is not None:
                self.samples.append(value)

    def stop(self) -> dict[str, float]:
        """End the sampling; the mean utilisation in percent and the readings' count (none: nothing)."""
        self._stopped.set()
        self._thread.join()
        if not self.samples:
            return {}
        return {"gpu_busy_percent": round(statistics.fmean(self.samples), 1), "gpu_busy_samples": len(self.samples)}


class Reporter:
    """The progress bar (rank 0 only) and the dvclive log and summary (rank 0 only: `live` is None elsewhere)."""

    def __init__(self, live_dir: Path, budget: StepBudget, run_params: RunParams, world: Distributed, resume: bool,
                 model: Seq2Seq, device: torch.device, step: int) -> None:
        self.live, self.gpu_monitor, self.device = None, None, device
        if world.is_main:
            from dvclive import Live

            self.live = Live(str(live_dir), resume=resume, dvcyaml=None, save_dvc_exp=False, report=None)
            self.live.log_param("parameters", model.parameter_count())
            self.live.summary["machine"] = machine_description(device)  # best.pt's bytes differ between CPU models
            self.live.summary["max_steps"] = budget.steps  # with max_steps auto: depends on the machine
            self.live.summary["max_steps_from"] = budget.source
            self.live.summary.update(run_params.summary())
            read = gpu_utilization_reader(device)
            self.gpu_monitor = GpuMonitor(read) if read is not None else None
        self.bar = tqdm(total=budget.steps, initial=step, unit="step", disable=not world.is_main,
                        dynamic_ncols=True, desc="train", mininterval=1 if sys.stderr.isatty() else 30)
        self.interval_tokens, self.interval_start = 0.0, time.perf_counter()
        if world.is_main:
            self.write(run_params.block())
            self.write(budget.line)

    def step(self, progress: Progress, loss_sum: torch.Tensor, tokens: int, all_tokens: float, lr: float) -> None:
        """Advance the bar; every 10 steps show the loss per token, throughput, learning rate and epoch."""
        self.interval_tokens += all_tokens
        self.bar.update(1)
        if progress.step % 10 == 0:
            rate = self.interval_tokens / (time.perf_counter() - self.interval_start)
            self.bar.set_postfix(loss=f"{loss_sum.item() / max(tokens, 1):.3f}", tok_s=f"{rate:.0f}",
                                 lr=f"{lr:.2e}", epoch=progress.epoch)
            self.interval_tokens, self.interval_start = 0, time.perf_counter()

    def validation(self, progress: Progress, scores: dict[str, float], minutes: float) -> None:
        """Log one validation's scores (rank 0)."""
        self.live.step = progress.step
        for name, value in {**scores, "minutes": minutes, "target_tokens": progress.target_tokens}.items():
            self.live.log_metric(f"valid/{name}", value)
        self.live.summary.update({"best_valid_chrf": progress.best_chrf, "best_step": progress.best_step,
                                  "minutes": round(minutes, 2),  # validation included, as below
                                  "target_tokens_per_second": round(progress.target_tokens / max(minutes * 60, 1e-9))})
        self.live.next_step()
        self.write(f"step {progress.step}: valid loss {scores['loss']:.3f} ppl {scores['perplexity']:.1f} "
                   f"chrF {scores['chrf']:.1f} ({minutes:.1f} min)")

    def average(self, snapshots: int, averaged_chrf: float, best_single_chrf: float) -> None:
        """Log the valid chrF of the snapshots' average beside the best single model's (rank 0)."""
        self.live.summary["averaged_valid_chrf"] = averaged_chrf
        self.live.summary["best_valid_chrf"] = max(averaged_chrf, best_single_chrf)  # the better one is best.pt
        self.write(f"average of {snapshots} snapshots: valid chrF {averaged_chrf:.1f} "
                   f"(best single: {best_single_chrf:.1f})")

    def write(self, message: str) -> None:
        self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
        if self.live is not None:
            memory = memory_mib()
            if memory is not None:  # of this process: on resume, of the run since then
                self.live.summary["peak_memory_mib"] = round(memory[1])
            if self.gpu_monitor is not None:
                self.live.summary.update(self.gpu_monitor.stop())
            if self.device.type == "cuda":  # tensors' peak, and the peak the caching allocator held
                peaks = {"allocated": torch.cuda.max_memory_allocated, "reserved": torch.cuda.max_memory_reserved}
                for name, peak in peaks.items():
                    self.live.summary[f"gpu_peak_{name}_mib"] = round(peak(self.device) / 2**20)
            self.live.end()
