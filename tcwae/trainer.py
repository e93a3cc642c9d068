"""The training loop: iterations over an in-memory FactorDataset, alone or under DDP.

One loop serves a laptop run, `torchrun` and Ray Train: it never imports Ray or MLflow and
reports through callbacks. Design points:

- Batches are drawn by random index into the uint8 image tensor, moved to the training device
  once; there is no DataLoader on the hot path.
- Every random number (batch indices, reparameterisation noise, permutations, prior samples)
  comes from one `torch.Generator` seeded with `cfg.seed`, identical on every rank. Draws are
  made for the global batch and each rank takes its disjoint slice, so a W-rank run sees the very
  numbers of a single-process run with the same global batch, and a checkpoint that stores the
  generator state resumes exactly.
- Under DDP with `mws_scope: global`, the codes are all-gathered with gradients and every rank
  evaluates the latent terms on the global batch. DDP averages gradients over ranks while the
  gather's backward sums them, so the averaged gradient equals the single-process gradient on
  the global batch (the reconstruction term is a per-rank mean, which averaging also turns into
  the global mean).
"""

from __future__ import annotations

import contextlib
import io
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tcwae.atomic import write_bytes_atomically
from tcwae.config import ConfigError, TrainConfig
from tcwae.costs import PER_IMAGE_COSTS
from tcwae.errors import CheckpointError
from tcwae.gather import all_gather_with_grad
from tcwae.methods import Method, StepRandomness, build_method, method_card, methods_for

if TYPE_CHECKING:
    from tcwae.data import FactorDataset

STATE_FORMAT = 2
EVAL_BATCH_SIZE = 512
MIG_CURVE_STREAM = 11  # seeds the per-step draws of `mig_now`, apart from training's streams
DIAGNOSTICS_STREAM = 13  # seeds the report steps' logged-only draws, apart from training's


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the message names the step and the term."""


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 matrix products run natively: a CUDA device that supports them, or a CPU
    with AVX512-BF16 or AMX (read from /proc/cpuinfo; elsewhere bf16 would be emulated, slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The state saved at `path`; a file cut short or not written by `Trainer.save` is a
    `CheckpointError` naming it, not torch's zip error, so a caller can fall back to an older
    one."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read ({reason})") from None


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> bf16 autocast where the device supports it natively, else float32."""
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "float32"
    return precision


def default_device() -> torch.device:
    """The current CUDA device when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def check_data_kind(method: str, dataset: FactorDataset) -> None:
    """ConfigError unless `method` trains on what `dataset` holds (sequences or images)."""
    sequences = getattr(dataset, "num_frames", None) is not None
    if method_card(method).sequences != sequences:
        kind = "sequences" if sequences else "images"
        raise ConfigError(
            f"{dataset.name} holds {kind} but method {method} does not train on them; "
            f"choose one of {', '.join(methods_for(sequences))}"
        )


class Trainer:
    """Trains `build_method(cfg, ...)` on `dataset` for `cfg.steps` iterations."""

    def __init__(
        self, cfg: TrainConfig, dataset: FactorDataset, device: torch.device | str | None = None
    ) -> None:
        self.cfg = cfg
        self.dataset = dataset
        self.device = torch.device(device) if device is not None else default_device()
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        if cfg.batch_size % self.world_size:
            raise ConfigError(
                f"batch_size={cfg.batch_size} is the global batch and must be divisible by the "
                f"number of workers ({self.world_size}); choose a multiple of {self.world_size}"
            )
        self.local_batch_size = cfg.batch_size // self.world_size
        if cfg.mws_scope == "local" and self.local_batch_size < 2:
            raise ConfigError(
                f"mws_scope=local estimates on each worker's {self.local_batch_size} image(s); "
                f"it needs at least 2: raise batch_size to {2 * self.world_size} or more, "
                "or use mws_scope=global"
            )

        check_data_kind(cfg.method, dataset)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.images = dataset.images.to(self.device)
        self.objective: Method = build_method(cfg, dataset.num_channels, len(dataset))
        self.objective.to(self.device)
        self.autoencoder: nn.Module = self.objective.autoencoder
        if cfg.channels_last:
            self.autoencoder.to(memory_format=torch.channels_last)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.objective.randomness = StepRandomness(self.generator, self.rank, self.world_size)

        model_adam, disc_adam = self.adam_settings = cfg.adam()
        self.optimizer = torch.optim.Adam(
            self.autoencoder.parameters(),
            lr=model_adam.lr,
            betas=model_adam.betas,
            eps=model_adam.eps,
            fused=True,
        )
        self.disc_optimizer = (
            torch.optim.Adam(
                self.objective.discriminators.parameters(),
                lr=disc_adam.lr,
                betas=disc_adam.betas,
                eps=disc_adam.eps,
                fused=True,
            )
            if self.objective.adversarial
            else None
        )
        self._autoencoder_runner = self._prepare(self.autoencoder)
        self._discriminator_runners = [self._prepare(d) for d in self.objective.discriminators]
        use_global = self.distributed and cfg.mws_scope == "global"
        self._gather = all_gather_with_grad if use_global else None

        self.step = 0
        self._window_sums: dict[str, torch.Tensor] = {}
        self._window_counts: dict[str, int] = {}
        self._window_start = 0
        self._last_losses: dict[str, float] = {}

    def resolved_settings(self) -> dict[str, str]:
        """The settings that the config leaves to presets and detection, as they ran: the
        precision and each optimiser's Adam values (recorded with the run)."""
        settings = {"precision": self.precision, "optimizer": self.cfg.optimizer}
        names = ("adam", "disc_adam") if self.disc_optimizer is not None else ("adam",)
        for name, adam in zip(names, self.adam_settings, strict=False):
            settings.update(
                {
                    f"{name}.lr": f"{adam.lr:g}",
                    f"{name}.betas": f"{adam.betas[0]:g},{adam.betas[1]:g}",
                    f"{name}.eps": f"{adam.eps:g}",
                }
            )
        return settings

    def _prepare(self, module: nn.Module) -> nn.Module:
        """DDP-wrap (when distributed) and compile (when asked) a module for the hot path."""
        runner = module
        if self.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            runner = DistributedDataParallel(module, device_ids=device_ids)
        if self.cfg.compile:
            runner = torch.compile(runner, mode=self.cfg.compile_mode)
        return runner

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )

    def _batch(self) -> torch.Tensor:
        indices = self.objective.randomness.indices(
            self.local_batch_size, len(self.dataset), self.device
        )
        x = self.images.index_select(0, indices).float().div_(255.0)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _is_report_step(self, step: int) -> bool:
        return step % self.cfg.report_every == 0 or step == self.cfg.steps

    def _diagnostics(self, step: int) -> StepRandomness:
        """The draws of a report step's logged-only terms: (seed, step), apart from training's."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.cfg.seed * 1_000_003 + DIAGNOSTICS_STREAM * 7_919 + step)
        return StepRandomness(generator, self.rank, self.world_size)

    def train_step(self) -> dict[str, torch.Tensor]:
        """One iteration: model update, then discriminator update on detached codes.

        Returns this rank's loss terms as detached 0-d tensors; nothing here waits for the
        device (no host transfer), so a GPU's queue never drains between steps. The logged-only
        terms (e.g. the MMD of methods that do not train on it) are added on report steps only.
        """
        step = self.step + 1
        diagnostics = self._diagnostics(step) if self._is_report_step(step) else None
        x = self._batch()
        with self._autocast():
            output = self.objective(
                x,
                gather=self._gather,
                autoencoder=self._autoencoder_runner,
                diagnostics=diagnostics,
                step=self.step,
            )
            terms = output.terms
            disc_loss = (
                self.objective.discriminator_loss(
                    output.codes, gather=self._gather, discriminators=self._discriminator_runners
                )
                if self.objective.adversarial
                else None
            )
        if disc_loss is not None:
            terms["disc_loss"] = disc_loss

        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optimizer.step()
        if disc_loss is not None:
            self.disc_optimizer.zero_grad(set_to_none=True)
            disc_loss.backward()
            self.disc_optimizer.step()
        self.step = step
        return {name: term.detach().float() for name, term in terms.items()}

    def _accumulate(self, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            total = self._window_sums.get(name)
            self._window_sums[name] = value if total is None else total + value
            self._window_counts[name] = self._window_counts.get(name, 0) + 1

    def _window_totals(self, across_ranks: bool) -> dict[str, float]:
        """The window's sums on the host (one transfer); summed over ranks when asked."""
        if not self._window_sums:
            return {}
        sums = torch.stack(list(self._window_sums.values()))
        if across_ranks and self.distributed:
            dist.all_reduce(sums)
            sums /= self.world_size
        return dict(zip(self._window_sums, sums.tolist(), strict=True))

    def _check_finite(self, totals: dict[str, float]) -> None:
        """A NaN or infinity anywhere in the window makes its sum non-finite."""
        bad = [f"{name!r} ({value})" for name, value in totals.items() if not math.isfinite(value)]
        if bad:
            raise NonFiniteLossError(
                f"steps {self._window_start + 1}-{self.step}: loss terms {', '.join(bad)} became "
                f"non-finite (method {self.cfg.method}); checkpoints are written only after this "
                "check, so the last one precedes it: resume from it, e.g. with a smaller "
                "learning rate or smaller loss weights"
            )

    def _close_window(self) -> dict[str, float]:
        totals = self._window_totals(across_ranks=True)
        self._check_finite(totals)
        means = {name: total / self._window_counts[name] for name, total in totals.items()}
        self._window_sums, self._window_counts = {}, {}
        self._window_start = self.step
        return means

    def train(
        self,
        on_report: Callable[[int, dict[str, float]], None] | None = None,
        on_checkpoint: Callable[[int], None] | None = None,
    ) -> dict[str, float]:
        """Run from `self.step` to `cfg.steps`; returns the last report's losses.

        Reports average each term over the steps since the previous report (and over ranks).
        """
        self.autoencoder.train()
        self.objective.discriminators.train()
        while self.step < self.cfg.steps:
            self._accumulate(self.train_step())
            last = self.step == self.cfg.steps
            if self._is_report_step(self.step):
                self._last_losses = self._close_window()
                if on_report is not None:
                    on_report(self.step, dict(self._last_losses))
            if on_checkpoint is not None and (self.step % self.cfg.checkpoint_every == 0 or last):
                self._check_finite(self._window_totals(across_ranks=False))
                on_checkpoint(self.step)
        return dict(self._last_losses)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; tensors and primitives only."""
        return {
            "format": STATE_FORMAT,
            "step": self.step,
            "config": self.cfg.to_dict(),
            "autoencoder": self.autoencoder.state_dict(),
            "discriminators": self.objective.discriminators.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "disc_optimizer": (
                self.disc_optimizer.state_dict() if self.disc_optimizer is not None else None
            ),
            "generator": self.generator.get_state(),
            "window_sums": self._window_totals(across_ranks=False),
            "window_counts": dict(self._window_counts),
            "window_start": self._window_start,
            "last_losses": dict(self._last_losses),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["config"]
        for key in ("method", "dz"):
            if saved[key] != getattr(self.cfg, key):
                raise ValueError(
                    f"checkpoint has {key}={saved[key]!r} but this run has "
                    f"{key}={getattr(self.cfg, key)!r}"
                )
        self.autoencoder.load_state_dict(state["autoencoder"])
        self.objective.discriminators.load_state_dict(state["discriminators"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.disc_optimizer is not None:
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        self.generator.set_state(state["generator"].cpu())
        self.step = int(state["step"])
        self._window_sums = {
            name: torch.tensor(value, device=self.device)
            for name, value in state["window_sums"].items()
        }
        self._window_counts = {name: int(n) for name, n in state["window_counts"].items()}
        self._window_start = int(state["window_start"])
        self._last_losses = dict(state["last_losses"])

    def save(self, path: str | Path) -> None:
        """Write the state atomically: a temporary file in the same folder, then a rename;
        serialised in memory first, so that a full disk is an OSError that says so."""
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        write_bytes_atomically(path, buffer.getvalue())

    def load(self, path: str | Path) -> None:
        self.load_state_dict(read_checkpoint(path))

    def _eval_batches(self, images: torch.Tensor):
        for start in range(0, images.shape[0], EVAL_BATCH_SIZE):
            x = images[start : start + EVAL_BATCH_SIZE].to(self.device)
            if self.cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x

    @torch.no_grad()
    def represent(self, observations: np.ndarray) -> np.ndarray:
        """The scored codes [n, dz] (float32) of observations [n, C, 64, 64] in [0, 1]: encoder
        means, or the nearest codes of a quantised method."""
        images = torch.from_numpy(np.ascontiguousarray(observations, dtype=np.float32))
        was_training = self.autoencoder.training
        self.autoencoder.eval()
        try:
            batches = self._eval_batches(images)
            codes = [self.autoencoder.represent(x).float().cpu() for x in batches]
        finally:
            self.autoencoder.train(was_training)
        if not codes:
            return np.empty((0, self.cfg.dz), dtype=np.float32)
        return torch.cat(codes).numpy()

    @torch.no_grad()
    def reconstruction_error(self, n: int, rng: np.random.Generator) -> float:
        """Mean per-image cfg.cost (summed over pixels) of n random images decoded from means."""
        if n < 1:
            raise ValueError(f"reconstruction_error needs n >= 1 images, got {n}")
        size = len(self.dataset)
        indices = torch.from_numpy(rng.choice(size, size=n, replace=n > size))
        cost = PER_IMAGE_COSTS[self.cfg.cost]
        was_training = self.autoencoder.training
        self.autoencoder.eval()
        total = 0.0
        try:
            for x in self._eval_batches(self.images[indices.to(self.images.device)]):
                x = x.float().div_(255.0)
                logits = self.autoencoder.decode(self.autoencoder.represent(x))
                total += cost(logits.float(), x).sum().item()
        finally:
            self.autoencoder.train(was_training)
        return total / n

    def codebook(self) -> np.ndarray | None:
        """The code values of a method with discrete latents, in its index order (scoring reads
        code indices from it); None for continuous latents."""
        if not self.objective.card.discrete_latents:
            return None
        return self.autoencoder.codebook.detach().float().cpu().numpy()

    @property
    def has_factors(self) -> bool:
        return bool(self.dataset.factor_sizes)

    def mig_now(self, num_points: int) -> float:
        """MIG of the current encoder on `num_points` grid points, for a curve of MIG against steps
        (the budget choice of paper Table 1a). Draws come from (seed, step), never from the
        training streams, so tracking the curve leaves the run itself unchanged."""
        from tcwae.metrics import cached_encoder, mig

        rng = np.random.default_rng([self.cfg.seed, MIG_CURVE_STREAM, self.step])
        factors = self.dataset.sample_factors(num_points, rng)
        return mig(cached_encoder(self.dataset, self.represent)(factors), factors)
