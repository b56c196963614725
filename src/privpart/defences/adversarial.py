"""`adversarial`: privacy partitioning, a min-max game between the model and adversaries that
read the features at the cut (DeepObfuscator-style, trained where the model is cut).

Notation: x input, y task label, s private attribute (optional), f = head(x) the features at the
cut, g the tail, D a reconstruction decoder (the attacks' `FeatureGenerator`), A an attribute
classifier (the attacks' `attribute_classifier`), N a non-affine batch normalisation in front of
each adversary (so the head cannot hide from it by merely rescaling its features).

Every step on a batch alternates
  (a) the adversaries, `adv_steps` Adam steps each on the detached features (head fixed):
        min_D  L_rec = mean |D(N(f)) - x|          (L1, like the decoder attack)
        min_A  L_att = CE(A(N(f)), s)
  (b) the model (head + tail), one Adam step (adversaries fixed):
        min_{head, tail}  CE(g(f), y) - alpha * min(L_rec, b_rec) - beta * min(L_att, b_att)

b_rec and b_att are the adversaries' no-extra-information levels, measured on the defender's
training data: b_rec = mean |x - mean_y(x)| (a decoder that only knows the task label outputs
the label's mean image), b_att = H(s | y) (the cross-entropy of predicting s from the task label
alone). The server learns y from the tail's output anyway, so "reveals nothing beyond y" is the
best a defence that keeps the task can reach. Capping the adversaries' losses there makes that
the game's optimum: the head gains nothing by pushing an adversary *below* a guess (inverted
reconstructions, confidently wrong attributes), which would itself leak.

The adversaries warm up for `warmup` steps on the undefended head's features first, so the
game starts against a competent opponent. They are discarded with the training run: the audit
judges the defended head with fresh attackers trained from scratch (`Defence` docstring).

Private attributes must not be a function of the task label (a defence cannot hide what the
task reveals): on Fashion-MNIST train the model on the coarse `group` (tops / bottoms /
footwear / bags) and protect the fine `class` within it (docs/defences.md).
"""

from __future__ import annotations

import math
from math import prod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from privpart.attacks.attribute_inference import attribute_classifier
from privpart.attacks.generator import FeatureGenerator
from privpart.data.loading import chunks
from privpart.defences.base import Defence, DefenceContext
from privpart.defences.private import private_attribute_of
from privpart.defences.registry import DEFENCES
from privpart.metrics.baselines import joint_counts, label_means
from privpart.params import Param


def feature_normaliser(shape: tuple[int, ...]) -> nn.Module:
    """Batch standardisation without affine parameters, per channel (maps) or dimension."""
    if len(shape) == 3:
        return nn.BatchNorm2d(shape[0], affine=False)
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(prod(shape), affine=False))


def attribute_opponent(shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """The in-loop attribute classifier: the attribute attack's network behind the normaliser."""
    return nn.Sequential(feature_normaliser(shape), attribute_classifier(shape, n_classes, 128))


def conditional_l1(x: Tensor, y: Tensor, n_classes: int) -> float:
    """mean |x - mean image of x's task class|: what a decoder that knows only y achieves."""
    flat = x.flatten(1)
    return float((flat - label_means(flat, y, n_classes)[y]).abs().mean())


def streamed_conditional_l1(ctx: DefenceContext, batch: int = 256) -> float:
    """`conditional_l1` over the defender's samples, streamed in two passes (class means, then
    deviations), so 224-px training sets never sit in memory at once."""
    n_classes, sums, counts = len(ctx.ds.classes), None, None
    order = chunks(ctx.train_index, batch)
    for x, idx in ctx.ds.loader(order, ctx.input_size):
        flat, y = x.flatten(1).double(), ctx.ds.labels[idx]
        if sums is None:
            sums, counts = torch.zeros(n_classes, flat.shape[1], dtype=flat.dtype), 0
        sums.index_add_(0, y, flat)
        counts = counts + torch.bincount(y, minlength=n_classes)
    assert sums is not None and isinstance(counts, Tensor)
    overall = sums.sum(0, keepdim=True) / counts.sum()
    means = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], overall)
    total, n = 0.0, 0
    for x, idx in ctx.ds.loader(order, ctx.input_size):
        flat = x.flatten(1).double()
        total += float((flat - means[ctx.ds.labels[idx]]).abs().sum())
        n += flat.numel()
    return total / max(n, 1)


def conditional_entropy(s: Tensor, y: Tensor, n_s: int, n_y: int) -> float:
    """H(s | y) in nats from counts: the cross-entropy of the best guess of s from y alone."""
    joint = joint_counts(y, s, n_y, n_s)
    p_y = joint.sum(1, keepdim=True) / joint.sum()
    p_s_y = joint / joint.sum(1, keepdim=True).clamp_min(1)
    h = -(p_s_y * torch.log(p_s_y.clamp_min(1e-12))).sum(1, keepdim=True)
    return float((p_y * h).sum())


@DEFENCES.register("adversarial")
class AdversarialDefence(Defence):
    """Fine-tune head + tail against a reconstruction decoder (and an attribute classifier)."""

    name: ClassVar[str] = "adversarial"
    summary: ClassVar[str] = "min-max against in-loop reconstruction / attribute adversaries"
    params: ClassVar[dict[str, Param]] = {
        "alpha": Param(1.0, "weight of the reconstruction adversary's loss", float, 0.0),
        "beta": Param(1.0, "weight of the attribute adversary's loss", float, 0.0),
        "private_attribute": Param(
            None, "attribute to hide, e.g. class for a group-task model", str, optional=True
        ),
        "adv_steps": Param(1, "adversary steps per model step", int, 1),
        "adv_lr": Param(1e-3, "adversaries' learning rate", float, 0.0, exclusive=True),
        "warmup": Param(200, "adversary steps on the undefended head before the game", int, 0),
        "adv_width": Param(32, "decoder width at full resolution (the decoder attack's)", int, 1),
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.adversaries: list[nn.Module] = []  # the in-loop opponents (tests check identity)

    def check(self, ctx: DefenceContext) -> None:
        name = self.values["private_attribute"]
        if name is not None:
            ctx.private = private_attribute_of(ctx.ds, ctx.meta, name)

    @property
    def uses_decoder(self) -> bool:
        return self.values["alpha"] > 0

    def uses_classifier(self, ctx: DefenceContext) -> bool:
        return ctx.private is not None and self.values["beta"] > 0

    def setup(self, ctx: DefenceContext) -> None:
        shape, lr = ctx.feature_shape, self.values["adv_lr"]
        y_all = ctx.ds.labels[ctx.train_index]
        self.decoder: nn.Module | None = None
        self.classifier: nn.Module | None = None
        self.opts: list[tuple[nn.Module, torch.optim.Optimizer]] = []
        baselines: dict[str, float] = {}
        if self.uses_decoder:
            width = int(self.values["adv_width"])
            input_shape = (ctx.ds.channels, *ctx.input_size)
            gen = FeatureGenerator(shape, input_shape, width, 4 * width)
            self.decoder = nn.Sequential(feature_normaliser(shape), gen).to(ctx.device)
            baselines["rec_l1"] = streamed_conditional_l1(ctx)
        if self.uses_classifier(ctx):
            assert ctx.private is not None
            n_s = len(ctx.private.classes)
            self.classifier = attribute_opponent(shape, n_s).to(ctx.device)
            s_all = ctx.private.values[ctx.train_index]
            baselines["attribute_ce"] = conditional_entropy(s_all, y_all, n_s, len(ctx.ds.classes))
            baselines["attribute_prior_ce"] = conditional_entropy(
                s_all, torch.zeros_like(s_all), n_s, 1
            )
        for net in (self.decoder, self.classifier):
            if net is not None:
                opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999))
                self.opts.append((net, opt))
                self.adversaries.append(net)
        self.baselines = baselines
        self.last: dict[str, float] = {}
        ctx.state.update(
            private_attribute=self.values["private_attribute"] if ctx.private else None,
            adversaries=[type(a[-1]).__name__ for a in self.adversaries],
            no_information_levels=baselines,
        )
        self._warm_up(ctx)

    def _warm_up(self, ctx: DefenceContext) -> None:
        steps, epoch = int(self.values["warmup"]), -1
        done = 0
        while done < steps and self.adversaries:
            for idx in ctx.batches(epoch):
                if done >= steps:
                    break
                x = ctx.inputs(idx)
                with torch.no_grad():
                    ctx.model.train()
                    f = ctx.split.head(x)
                self._adversary_step(ctx, f, x, idx)
                done += 1
            epoch -= 1
        ctx.state["warmup_steps"] = done

    def _adversary_step(self, ctx: DefenceContext, f: Tensor, x: Tensor, idx: Tensor) -> None:
        for net, opt in self.opts:
            net.train()
            if net is self.decoder:
                loss = F.l1_loss(net(f), x)
                self.last["adv_rec_l1"] = loss.item()
            else:
                assert ctx.private is not None
                s = ctx.private.values[idx].to(ctx.device)
                logits = net(f)
                loss = F.cross_entropy(logits, s)
                self.last["adv_att_ce"] = loss.item()
                self.last["adv_att_acc"] = float((logits.argmax(1) == s).float().mean())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def loss(self, ctx: DefenceContext, x: Tensor, y: Tensor, idx: Tensor) -> tuple[Tensor, dict]:
        f = ctx.split.head(x)
        for _ in range(int(self.values["adv_steps"])):
            self._adversary_step(ctx, f.detach(), x, idx)
        for net in self.adversaries:
            net.requires_grad_(False)
        try:
            task = F.cross_entropy(ctx.split.tail(f.clone()), y)  # clone: the tail may be in-place
            total, logs = task, {"task": task.item()}
            if self.decoder is not None:
                rec = F.l1_loss(self.decoder(f), x)
                total = total - self.values["alpha"] * rec.clamp(max=self.baselines["rec_l1"])
                logs["rec"] = rec.item()
            if self.classifier is not None:
                assert ctx.private is not None
                att = F.cross_entropy(self.classifier(f), ctx.private.values[idx].to(ctx.device))
                cap = self.baselines["attribute_ce"]
                total = total - self.values["beta"] * att.clamp(max=cap)
                logs["att"] = att.item()
        finally:
            for net in self.adversaries:
                net.requires_grad_(True)
        return total, logs

    def fit(self, ctx: DefenceContext) -> dict:
        info = super().fit(ctx)
        info["in_loop_adversary_last"] = {k: v for k, v in self.last.items() if math.isfinite(v)}
        return info
