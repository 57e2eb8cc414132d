"""Attacks, usable standalone (``attack(x, y)``) and as registered mutators, declared once.

Standalone::

    >>> from neurofuzz.fuzzer.zoo import builtin_target, load_digits32
    >>> from neurofuzz.mutators.attacks import PGD
    >>> x, y = load_digits32("test")
    >>> x_adv = PGD(builtin_target(), eps=0.3, alpha=0.01, steps=40)(x[:4], y[:4])

As mutators (``kind="attack"``, ``needs_model=True``), with the same parameter names: ``fgsm``,
``rfgsm``, ``bim``, ``pgd``, ``pgd_l2``, ``mifgsm``, ``mdiim``, ``cw_l2``, ``deepfool``, ``jsma``
(white-box) and ``square``, ``nes``, ``genattack``, ``hopskipjump``, ``salt_pepper`` (black-box:
logits or labels only, query counts returned per input), e.g.
``neurofuzz.mutators.create("pgd", eps=(0.1, 0.3))``.
See :mod:`neurofuzz.mutators.attacks.base` for the parameter declarations and the mutator
adapter, :mod:`neurofuzz.mutators.attacks.run` for the loss, the targets and the shared
template, :mod:`neurofuzz.mutators.attacks.iterative` for the iteration of the PGD family and
:mod:`neurofuzz.mutators.attacks.blackbox` for the query oracle of the black-box attacks.
"""

from neurofuzz.mutators.attacks.base import (
    Attack, AttackMutator, AttackResult, AttackRun, Param, as_mutator, attack_batch, run_attack,
)
from neurofuzz.mutators.attacks.iterative import IterativeAttack
from neurofuzz.mutators.attacks.bim import BIM, BIMMutator
from neurofuzz.mutators.attacks.fgsm import FGSM, FGSMMutator
from neurofuzz.mutators.attacks.mdiim import MDIIM, MDIIMMutator
from neurofuzz.mutators.attacks.mifgsm import MIFGSM, MIFGSMMutator
from neurofuzz.mutators.attacks.pgd import PGD, PGDMutator
from neurofuzz.mutators.attacks.pgd_l2 import PGDL2, PGDL2Mutator
from neurofuzz.mutators.attacks.rfgsm import RFGSM, RFGSMMutator
from neurofuzz.mutators.attacks.blackbox import BlackBoxAttack, BlackBoxMutator, QueryOracle
from neurofuzz.mutators.attacks.cw import CarliniWagnerL2, CarliniWagnerL2Mutator
from neurofuzz.mutators.attacks.deepfool import DeepFool, DeepFoolMutator
from neurofuzz.mutators.attacks.jsma import JSMA, JSMAMutator
from neurofuzz.mutators.attacks.square import Square, SquareMutator
from neurofuzz.mutators.attacks.nes import NES, NESMutator
from neurofuzz.mutators.attacks.genattack import GenAttack, GenAttackMutator
from neurofuzz.mutators.attacks.hopskipjump import HopSkipJump, HopSkipJumpMutator
from neurofuzz.mutators.attacks.salt_pepper import SaltAndPepper, SaltAndPepperMutator

__all__ = [
    "Attack", "AttackMutator", "AttackResult", "AttackRun", "IterativeAttack", "Param", "as_mutator", "attack_batch",
    "run_attack",
    "FGSM", "RFGSM", "BIM", "PGD", "PGDL2", "MIFGSM", "MDIIM",
    "FGSMMutator", "RFGSMMutator", "BIMMutator", "PGDMutator", "PGDL2Mutator", "MIFGSMMutator", "MDIIMMutator",
    "CarliniWagnerL2", "DeepFool", "JSMA", "CarliniWagnerL2Mutator", "DeepFoolMutator", "JSMAMutator",
    "BlackBoxAttack", "BlackBoxMutator", "QueryOracle",
    "Square", "NES", "GenAttack", "HopSkipJump", "SaltAndPepper",
    "SquareMutator", "NESMutator", "GenAttackMutator", "HopSkipJumpMutator", "SaltAndPepperMutator",
]
