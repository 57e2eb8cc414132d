"""Adversarial training: fit a model on batches in which a share of the inputs is replaced by
adversarial examples crafted against the model being trained (or against static source models).

* :class:`AdversarialTrainer` -- the loop, for any ``nn.Module`` (or :class:`~neurofuzz.fuzzer.Target`)
  and any attack: ``attack_factory(model, epoch)`` returns a callable ``(x, y) -> x_adv`` (every
  attack of :mod:`neurofuzz.mutators.attacks` is one), built afresh at the start of every epoch so
  that its strength can follow a schedule.
* :class:`NAD` -- natural adversarial defense (Goodfellow, Shlens and Szegedy, "Explaining and
  Harnessing Adversarial Examples", ICLR 2015; MindArmour's ``NaturalAdversarialDefense``):
  FGSM examples replace ``ratio`` of every batch.
* :class:`PAD` -- projected adversarial defense (Madry, Makelov, Schmidt, Tsipras and Vladu,
  "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018): PGD examples,
  by default the whole batch.
* :class:`EnsembleAdversarialTraining` -- Tramer, Kurakin, Papernot, Goodfellow, Boneh and
  McDaniel, "Ensemble Adversarial Training: Attacks and Defenses", ICLR 2018: the adversarial
  share of each batch comes, in turn, from the model being trained and from static pre-trained
  source models, with one or several attacks.
* :data:`NAD_DIGITS` -- the measured NAD setting for a LeNet-5 on 32x32 digits (the built-in
  model's wiring, with its measured accuracies, is :func:`neurofuzz.fuzzer.tutorial_job.nad_digits`).

This module takes the model and the data as arguments and never imports the demo model zoo.

The batch mix follows MindArmour: for each batch of ``B`` inputs, ``round(ratio * B)`` positions
drawn from the trainer's generator are replaced by their adversarial versions; the loss is the
cross-entropy on the mixed batch. Attacks run with the model in eval mode (the attack template
restores training mode afterwards). Randomness (shuffling, the replaced positions, random starts
of the attacks) comes from one ``torch.Generator`` seeded by ``seed``; the global RNG is never
used. ``threads`` (default 1) pins torch's intra-op threads during :meth:`~AdversarialTrainer.fit`
so that the float reductions, and hence the weights, are reproducible bit for bit.

Example::

    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.rand(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    >>> model = NAD(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), eps=0.1, epochs=1, seed=0).fit(x, y)
    >>> model.training
    False
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neurofuzz.ground.errors import UserError
from neurofuzz.ground.target import Target, extract_logits
from neurofuzz.mutators.attacks import FGSM, PGD, Attack, run_attack

AttackFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
AttackFactory = Callable[[nn.Module, int], AttackFn]


@dataclass(frozen=True)
class EpochStats:
    """What the progress callback receives after every epoch (means over the epoch's batches;
    ``adv_acc`` is the training accuracy on the adversarial share, before the update)."""

    epoch: int
    epochs: int
    loss: float
    clean_acc: float
    adv_acc: float
    seconds: float


def _call_attack(attack: AttackFn, x: torch.Tensor, y: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    if isinstance(attack, Attack):  # neurofuzz attacks take their random starts from our generator
        return attack(x, y, rng=rng)
    return attack(x, y)


class AdversarialTrainer:
    """Adversarial training of ``model`` with examples from ``attack_factory``.

    Args:
        model: an ``nn.Module`` returning logits for raw inputs, or a Target (its module is
            trained, the attacks see the Target with its normalisation).
        attack_factory: ``(model, epoch) -> attack``; ``attack(x, y)`` returns adversarial
            examples of the batch ``x`` (e.g. ``lambda m, epoch: FGSM(m, eps=0.3)``).
        ratio: share of every batch replaced by adversarial examples, in [0, 1].
        optimizer: an optimizer over the model's parameters, or a factory ``params -> optimizer``;
            default Adam with learning rate ``lr``.
        lr: learning rate of the default optimizer.
        epochs: passes over the data.
        batch_size: batch size when ``fit`` gets tensors.
        seed: seeds ``generator`` when none is given.
        generator: the ``torch.Generator`` of every random choice.
        callback: called with an :class:`EpochStats` after every epoch.
        threads: torch intra-op threads during ``fit`` (restored afterwards); ``None``: unchanged.
    """

    def __init__(
        self,
        model: nn.Module,
        attack_factory: AttackFactory,
        *,
        ratio: float = 0.5,
        optimizer: torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
        lr: float = 1e-3,
        epochs: int = 10,
        batch_size: int = 64,
        seed: int = 0,
        generator: torch.Generator | None = None,
        callback: Callable[[EpochStats], None] | None = None,
        threads: int | None = 1,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise UserError(f"adversarial training needs an nn.Module, got {type(model).__name__}")
        if not 0.0 <= float(ratio) <= 1.0:
            raise UserError(f"ratio must lie in [0, 1] (the adversarial share of a batch), got {ratio!r}")
        if int(epochs) < 0 or int(batch_size) < 1:
            raise UserError(f"epochs must be >= 0 and batch_size >= 1, got {epochs!r} and {batch_size!r}")
        self.model = model
        self.net = model.module if isinstance(model, Target) else model  # what gets trained
        self.attack_factory = attack_factory
        self.ratio = float(ratio)
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(int(seed))
        self.callback = callback
        self.threads = threads
        if optimizer is None:
            optimizer = torch.optim.Adam(self.net.parameters(), lr=float(lr))
        elif not isinstance(optimizer, torch.optim.Optimizer):
            optimizer = optimizer(self.net.parameters())
        self.optimizer = optimizer
        self._step = 0  # batches seen over all calls of fit

    # ------------------------------------------------------------------ hooks for subclasses
    def start_epoch(self, epoch: int) -> None:
        """Build the epoch's attack against the model being trained."""
        self._attack = self.attack_factory(self.model, epoch)

    def adversarial(self, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        """Adversarial versions of ``x`` for the ``step``-th batch of the run."""
        return _call_attack(self._attack, x, y, self.generator)

    # ------------------------------------------------------------------ the loop
    def _batches(self, data: Any, y: torch.Tensor | None) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(data, torch.Tensor):
            if data.dim() != 4 or not data.dtype.is_floating_point:
                raise UserError(f"fit(x, y): x must be a float batch [N, C, H, W], got {tuple(data.shape)}")
            if not isinstance(y, torch.Tensor) or y.shape != (data.shape[0],):
                raise UserError("fit(x, y): y must be an integer tensor with one label per input")
            perm = torch.randperm(len(y), generator=self.generator)
            for i in range(0, len(y), self.batch_size):
                idx = perm[i : i + self.batch_size]
                yield data[idx], y[idx]
        else:
            if y is not None:
                raise UserError("fit(loader) takes no labels: the loader yields (x, y) batches")
            for xb, yb, *_ in data:
                yield xb, yb

    def fit(self, data: torch.Tensor | Iterable[Sequence[torch.Tensor]], y: torch.Tensor | None = None) -> nn.Module:
        """Train on tensors ``(x [N,C,H,W], y [N])`` or on a DataLoader of ``(x, y)`` batches;
        return the model in eval mode (the Target itself if a Target was given).

        Layers that draw from torch's default CPU generator (dropout, a DataLoader's shuffling)
        run under a forked RNG state seeded from the trainer's generator; the global state is
        restored afterwards."""
        old_threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(int(self.threads))
        try:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self.generator)))
                for epoch in range(self.epochs):
                    self._epoch(epoch, data, y)
        finally:
            self.net.eval()
            torch.set_num_threads(old_threads)
        return self.model.eval()

    def _epoch(self, epoch: int, data: Any, y: torch.Tensor | None) -> None:
        t0, tot, n, n_adv, ok_clean, ok_adv = time.perf_counter(), 0.0, 0, 0, 0, 0
        p = next(self.net.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        self.start_epoch(epoch)
        for xb, yb in self._batches(data, y):
            xb, yb = xb.to(device).clone(), yb.to(device)
            b, k = xb.shape[0], int(round(self.ratio * xb.shape[0]))
            adv = torch.zeros(b, dtype=torch.bool)
            if k:
                pos = torch.randperm(b, generator=self.generator)[:k]
                xb[pos.to(device)] = self.adversarial(xb[pos.to(device)], yb[pos.to(device)], self._step).to(xb.dtype)
                adv[pos] = True
            self.net.train()
            self.optimizer.zero_grad(set_to_none=True)
            logits = extract_logits(self.model(xb))
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            self.optimizer.step()
            hit = (logits.detach().argmax(1) == yb).cpu()
            tot, n, n_adv, self._step = tot + float(loss.detach()) * b, n + b, n_adv + k, self._step + 1
            ok_adv, ok_clean = ok_adv + int(hit[adv].sum()), ok_clean + int(hit[~adv].sum())
        if self.callback is not None:
            self.callback(EpochStats(epoch + 1, self.epochs, tot / max(n, 1), ok_clean / max(n - n_adv, 1),
                                     ok_adv / max(n_adv, 1), time.perf_counter() - t0))


def linear_ramp(start: float, end: float, epochs: int) -> Callable[[int], float]:
    """``epoch -> value`` growing linearly from ``start`` (epoch 0) to ``end`` (epoch
    ``epochs - 1`` and after): a warm-up schedule for ``eps``."""
    if epochs <= 1:
        return lambda epoch: float(end)
    return lambda epoch: float(start + (end - start) * min(epoch, epochs - 1) / (epochs - 1))


def _schedule(eps: float | Callable[[int], float]) -> Callable[[int], float]:
    return eps if callable(eps) else (lambda epoch: float(eps))


class _RandomEpsFGSM:
    """FGSM with a per-input step drawn uniformly from ``[lo, hi]`` (Kurakin et al., ICLR 2017,
    draw a random eps per example so that the model does not only learn one step size)."""

    def __init__(self, model: nn.Module, lo: float, hi: float, rng: torch.Generator) -> None:
        self.model, self.lo, self.hi, self.rng = model, lo, hi, rng
        self.bounds = getattr(model, "bounds", (0.0, 1.0))

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        eps = self.lo + (self.hi - self.lo) * torch.rand(x.shape[0], generator=self.rng, dtype=torch.float64)
        return run_attack(FGSM.perturb, self.model, x, y, {"eps": eps}, name="fgsm", bounds=self.bounds)


class NAD(AdversarialTrainer):
    """Natural adversarial defense (Goodfellow et al., ICLR 2015): FGSM examples crafted against
    the current model replace ``ratio`` of every batch (MindArmour's ``NaturalAdversarialDefense``).

    Args:
        model: the model to train (an ``nn.Module`` or a Target).
        eps: FGSM step (raw input units); a pair ``(lo, hi)`` draws one step per input uniformly
            from it (Kurakin et al., ICLR 2017); or a schedule ``epoch -> eps`` such as
            :func:`linear_ramp`. Default 0.3 (digits in [0, 1]).
        ratio, **kwargs: see :class:`AdversarialTrainer`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | tuple[float, float] | Callable[[int], float] = 0.3,
        ratio: float = 0.5,
        **kwargs: Any,
    ) -> None:
        if isinstance(eps, (tuple, list)):
            lo, hi = (float(e) for e in eps)
            if not 0.0 <= lo <= hi:
                raise UserError(f"NAD: eps range must satisfy 0 <= lo <= hi, got {eps!r}")
            factory: AttackFactory = lambda m, epoch: _RandomEpsFGSM(m, lo, hi, self.generator)
        else:
            sched = _schedule(eps)
            factory = lambda m, epoch: FGSM(m, eps=sched(epoch))
        super().__init__(model, factory, ratio=ratio, **kwargs)


class PAD(AdversarialTrainer):
    """Projected adversarial defense (Madry et al., ICLR 2018): PGD examples (random start)
    crafted against the current model; by default the whole batch is adversarial.

    Args:
        model: the model to train.
        eps: L-infinity radius, or a schedule ``epoch -> eps``; default 0.3.
        steps: PGD iterations; default 10.
        alpha: step size; default ``2.5 * eps / steps`` (Madry et al.'s rule).
        ratio, **kwargs: see :class:`AdversarialTrainer`.

    Capacity matters (Madry et al.): on the small digits LeNet-5, eps 0.3 from scratch underfits
    (measured: clean 0.56 after 30 epochs with a linear eps warm-up), while eps 0.1 fine-tuning of
    the shipped model works (see :func:`neurofuzz.fuzzer.tutorial_job.nad_digits`).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | Callable[[int], float] = 0.3,
        steps: int = 10,
        alpha: float | None = None,
        ratio: float = 1.0,
        **kwargs: Any,
    ) -> None:
        sched = _schedule(eps)

        def factory(m: nn.Module, epoch: int) -> AttackFn:
            e = sched(epoch)
            a = alpha if alpha is not None else max(2.5 * e / max(steps, 1), 1e-6)
            return PGD(m, eps=e, alpha=a, steps=steps, random_start=True)

        super().__init__(model, factory, ratio=ratio, **kwargs)


class EnsembleAdversarialTraining(AdversarialTrainer):
    """Ensemble adversarial training (Tramer et al., ICLR 2018): the adversarial share of each
    batch is crafted, in turn (round robin over the batches), against the model being trained
    and against static pre-trained ``sources``, with each of ``attacks``. Examples transferred
    from static models decouple the training examples from the trained model's own (possibly
    masked) gradients.

    Args:
        model: the model to train.
        sources: static source models (``nn.Module`` or Target, never updated); may be empty.
        attacks: attack factories ``(model, epoch) -> attack``; default one FGSM of ``eps``.
        eps: the default FGSM's step; default 0.3.
        include_self: also craft examples against the model being trained; default True.
        ratio, **kwargs: see :class:`AdversarialTrainer`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.rand(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
        >>> net = lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
        >>> ens = EnsembleAdversarialTraining(net(), sources=[net()], epochs=1)
        >>> ens.fit(x, y).training
        False
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        sources: Sequence[nn.Module] = (),
        attacks: Sequence[AttackFactory] | None = None,
        eps: float = 0.3,
        include_self: bool = True,
        ratio: float = 0.5,
        **kwargs: Any,
    ) -> None:
        attacks = list(attacks) if attacks is not None else [lambda m, epoch: FGSM(m, eps=eps)]
        self.sources = [s.eval() for s in sources]
        for s in self.sources:
            if not isinstance(s, nn.Module):
                raise UserError(f"ensemble sources must be nn.Modules, got {type(s).__name__}")
        self.include_self = bool(include_self)
        if not attacks or not (self.sources or self.include_self):
            raise UserError("ensemble adversarial training needs at least one attack and one source model (or include_self=True)")
        super().__init__(model, attacks[0], ratio=ratio, **kwargs)
        self.attacks = attacks

    def start_epoch(self, epoch: int) -> None:
        models = ([self.model] if self.include_self else []) + self.sources
        self._pairs = [make(m, epoch) for m in models for make in self.attacks]

    def adversarial(self, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        return _call_attack(self._pairs[step % len(self._pairs)], x, y, self.generator)


#: The measured NAD setting for a LeNet-5 on the 32x32 digits (FGSM eps 0.3 examples replace 70%
#: of every batch; Adam lr 2e-3; 40 epochs of batch 64). Its measured accuracies are documented
#: with :func:`neurofuzz.fuzzer.tutorial_job.nad_digits`, which applies it to the built-in model.
NAD_DIGITS = {"eps": 0.3, "ratio": 0.7, "epochs": 40, "lr": 2e-3, "batch_size": 64}
