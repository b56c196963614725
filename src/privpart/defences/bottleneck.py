"""`bottleneck`: a learned channel reduction at the cut, then Gaussian noise, inside the trusted
head, trained end to end (head and tail) with the noise on.

    code = RmsNorm(encode(f)),   sent = code + sigma * e,   e ~ N(0, I),   tail: decode(sent) ...

f is the cut's feature map (C channels); `encode` / `decode` are 1x1 convolutions to and from
`channels` channels (linear maps for vector features). With `pool` > 0 the code is also average-
pooled to pool x pool positions (and the decoded map upsampled back), so the untrusted side
receives no spatial layout finer than that: `pool=1` sends `channels` numbers per input.
`RmsNorm` scales every sample's code to unit root-mean-square, so the head cannot outgrow the
noise by scaling its output (the reason the plain `noise` defence must freeze its head): `sigma`
is the noise-to-signal ratio of every sample, and the head may learn freely *what* to put in the
few noisy channels. Training with the noise on teaches it to keep what the task needs in
directions the noise does not drown, and nothing else (ResSFL / DeepObfuscator put a bottleneck
at the cut for the same reason).

The noise scale is either given (`sigma`) or chosen to meet a target leakage (`target_mse`): the
Fisher-information floor on an unbiased reconstruction's per-pixel MSE (`privpart.certify`),
measured on the defender's own samples. It scales as sigma^2, so one measurement at sigma = 1
sets sigma; after training the floor is measured again and, if training raised the head's
sensitivity below the target, sigma is raised to meet it and the tail alone is fine-tuned to the
new noise (`recalibrate_steps`).

In the privacy-partitioning setting (`private_attribute`, e.g. the fine `class` of a model
trained on the coarse `group`) an attribute classifier reads the noisy code in the loop and the
model is penalised for what it predicts, capped at H(s | y), the cross-entropy of guessing the
attribute from the task label alone (the adversarial defence's rule: nothing beyond the label).
`alpha` does the same with a denoising decoder against the input. Both adversaries are trained on
the code the untrusted side receives, noise included, and discarded with the training run.

Encode and decode start from the principal components of the clean features (decode(encode(f))
is then f's best rank-`channels` approximation), so fine-tuning starts near the undefended model
instead of from a random code.

What crosses to the untrusted side is the cut `<cut>.noise` (channels x H x W, noisy); `<cut>`
itself is the decoded value, a deterministic function of it. The noise is drawn inside the
trusted head: from torch's RNG in training and audits, from the OS CSPRNG in the runtime."""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from privpart.attacks.generator import FeatureGenerator
from privpart.certify import certify
from privpart.defences.adversarial import (
    attribute_opponent,
    conditional_entropy,
    feature_normaliser,
    streamed_conditional_l1,
)
from privpart.defences.base import Defence, DefenceContext
from privpart.defences.private import private_attribute_of
from privpart.defences.registry import DEFENCES
from privpart.errors import PrivpartError, PrivpartValueError
from privpart.models import build_model
from privpart.models.wrappers import code_shape, make_bottleneck, replace_at
from privpart.params import Param
from privpart.partition import Partition

CALIBRATION_SAMPLES = 1024  # clean features for the principal components
CERTIFY_SAMPLES = 32  # defender samples the Fisher floor is measured on
DISTILL_T = 2.0  # temperature of the undefended model's outputs the defended one learns from


def principal_init(
    encode: nn.Module, decode: nn.Module, features: Tensor, channels: int, pool: int = 0
) -> None:
    """encode = top principal directions of the features' channel vectors (centred), decode =
    their transpose scaled back by the codes' typical RMS (after the code's pooling, if any),
    so decode(RmsNorm(encode(f))) ~ f."""
    c = features.shape[1]
    rows = features.transpose(0, 1).reshape(c, -1).T.double() if features.dim() == 4 else (
        features.double()
    )  # fmt: skip
    mean = rows.mean(0)
    _, _, vh = torch.linalg.svd(rows - mean, full_matrices=False)
    u = vh[:channels].T  # C x k
    proj = (rows - mean) @ u
    per_sample = proj.reshape(features.shape[0], -1, channels) if features.dim() == 4 else (
        proj.reshape(features.shape[0], 1, channels)
    )  # fmt: skip
    if pool and features.dim() == 4:
        maps = per_sample.transpose(1, 2).reshape(features.shape[0], channels, *features.shape[2:])
        per_sample = F.adaptive_avg_pool2d(maps, pool).flatten(2).transpose(1, 2)
    rms = float(per_sample.pow(2).mean((1, 2)).sqrt().mean().clamp_min(1e-6))
    with torch.no_grad():
        enc_w, dec_w = u.T.float(), (u * rms).float()
        encode.weight.copy_(enc_w.reshape(encode.weight.shape))
        encode.bias.copy_((-(u.T @ mean)).float())
        decode.weight.copy_(dec_w.reshape(decode.weight.shape))
        decode.bias.copy_(mean.float())


@DEFENCES.register("bottleneck")
class BottleneckDefence(Defence):
    """Few channels + calibrated noise at the cut, head and tail trained with the noise on."""

    name: ClassVar[str] = "bottleneck"
    summary: ClassVar[str] = "learned channel reduction + Gaussian noise in the head, end to end"
    wrapper: ClassVar[str | None] = "cut-bottleneck"
    params: ClassVar[dict[str, Param]] = {
        "channels": Param(4, "channels of the code sent to the untrusted side", int, 1),
        "pool": Param(
            0, "average-pool the code to pool x pool positions (0: keep the cut's H x W; "
            "1: send `channels` numbers per input)", int, 0,
        ),
        "sigma": Param(
            1.0, "noise std relative to the code's RMS (ignored when a target MSE is given)",
            float, 0.0, exclusive=True,
        ),
        "target_mse": Param(
            None,
            "choose sigma so that every unbiased reconstruction has at least this per-pixel MSE "
            "(Fisher-information floor, measured on the defender's samples)",
            float, 0.0, exclusive=True, optional=True,
        ),
        "recalibrate_steps": Param(
            200, "tail-only steps after raising sigma to meet target_mse", int, 0
        ),
        "distill": Param(
            1.0, "weight of matching the undefended model's softened outputs (0: labels only)",
            float, 0.0,
        ),
        "ramp": Param(
            0.3, "share of the steps over which the noise grows from 0 to sigma", float, 0.0,
            maximum=1.0,
        ),
        "new_lr_factor": Param(
            10.0, "learning-rate multiple for the new encode/decode layers", float, 0.0,
            exclusive=True,
        ),
        "alpha": Param(
            0.0, "weight of an in-loop denoising decoder's reconstruction loss, traded against "
            "the task (0: no adversary)", float, 0.0,
        ),
        "adv_lr": Param(1e-3, "the in-loop decoder's learning rate", float, 0.0, exclusive=True),
        "adv_width": Param(32, "the in-loop decoder's width (the decoder attack's)", int, 1),
        "private_attribute": Param(
            None, "attribute to hide from an in-loop classifier on the code, e.g. class for a "
            "group-task model", str, optional=True,
        ),
        "beta": Param(
            1.0, "weight of the in-loop attribute classifier's loss (with `private_attribute`)",
            float, 0.0,
        ),
    }  # fmt: skip

    def check(self, ctx: DefenceContext) -> None:
        """The bottleneck replaces the module at the cut: it must exist and end the cut."""
        name = ctx.cut.name
        private = self.values["private_attribute"]
        if private is not None:
            ctx.private = private_attribute_of(ctx.ds, ctx.meta, private)
        ctx.require_module("bottleneck defence replaces a module")
        shape = ctx.feature_shape
        if len(shape) not in (1, 3):
            raise PrivpartError(
                f"cut {name!r} carries a {len(shape)}-d tensor {shape}; the bottleneck takes "
                "channel maps (C x H x W) or vectors",
                "choose a convolutional block boundary or a vector cut",
            )
        k = int(self.values["channels"])
        if k >= shape[0]:
            raise PrivpartError(
                f"channels={k} is not a reduction of cut {name!r}'s {shape[0]} channels",
                f"give channels < {shape[0]} (e.g. {max(1, shape[0] // 64)})",
            )
        pool = int(self.values["pool"])
        if pool and (len(shape) != 3 or pool >= min(shape[1:])):
            raise PrivpartValueError(
                f"`pool` {pool} does not shrink cut {name!r}'s {'x'.join(map(str, shape))} "
                "features spatially",
                f"give pool < {min(shape[1:])} for this cut" if len(shape) == 3
                else "give pool=0 for a vector cut",
                param="pool",
            )
        probe = self._wrapped(build_model(ctx.spec), ctx, torch.ones(1))
        cuts = {c.name for c in Partition(probe, ctx.partition.input_shape).cuts}
        if f"{name}.noise" not in cuts:
            raise PrivpartError(
                f"cut {name!r} does not end where module {name!r} returns",
                "choose another cut for the bottleneck defence (e.g. a block boundary)",
            )

    def _wrapped(self, model: nn.Module, ctx: DefenceContext, sigma: Tensor) -> nn.Module:
        k, pool = int(self.values["channels"]), int(self.values["pool"])

        def wrap(inner: nn.Module) -> nn.Module:
            b = make_bottleneck(inner, ctx.feature_shape, k, pool, float(sigma))
            self.encode, self.decode, self.noise = b.encode, b.decode, b.noise
            return b

        return replace_at(model, ctx.cut.name, wrap)

    def _floor(self, ctx: DefenceContext) -> float:
        """Mean Fisher floor on the MSE of unbiased reconstructions, on defender samples."""
        head = Partition(ctx.model, ctx.partition.input_shape).split(f"{ctx.cut.name}.noise").head
        x = ctx.inputs(ctx.train_index[:CERTIFY_SAMPLES]).cpu()
        was = next(ctx.model.parameters()).device
        bound = certify(head.cpu().eval(), x)
        ctx.model.to(was)
        assert bound is not None  # the head ends in this defence's noise
        return bound.mse_floor

    def setup(self, ctx: DefenceContext) -> None:
        if getattr(self, "phase", None) == "tail":  # recalibration: wrapped and trained already
            return
        self.teacher = None
        if self.values["distill"] > 0:  # the undefended model, frozen: a richer target than y
            self.teacher = copy.deepcopy(ctx.model).eval().requires_grad_(False)
        ctx.split.head.eval()
        with torch.no_grad():
            feats = ctx.split.head(ctx.inputs(ctx.train_index[:CALIBRATION_SAMPLES])).cpu()
        self._wrapped(ctx.model, ctx, torch.tensor(float(self.values["sigma"])))
        principal_init(
            self.encode, self.decode, feats, int(self.values["channels"]), int(self.values["pool"])
        )
        ctx.model.to(ctx.device)
        target = self.values["target_mse"]
        if target is not None:
            self.noise.sigma.fill_(1.0)
            self.noise.sigma.fill_(math.sqrt(target / self._floor(ctx)))
        self.phase, self.step, self.sigma = "joint", 0, float(self.noise.sigma)
        self.adversary = self.classifier = None
        self.sent: Tensor | None = None  # the code the last forward sent (for the opponents)
        self.hook = None
        if self.values["alpha"] > 0:
            self._setup_adversary(ctx)
        if ctx.private is not None and self.values["beta"] > 0:
            self._setup_classifier(ctx)
        if self.adversary is not None or self.classifier is not None:
            self.hook = self.noise.register_forward_hook(
                lambda _m, _i, out: setattr(self, "sent", out)
            )
        ctx.state["calibration"] = {
            "samples": int(feats.shape[0]),
            "initial_sigma": float(self.noise.sigma),
        }

    def _setup_adversary(self, ctx: DefenceContext) -> None:
        """A denoising decoder on the noisy code (the attacks' generator behind a non-affine
        normaliser), trained alongside; the model is penalised for what it recovers, capped at
        the task-label level b_rec (the adversarial defence's rule: nothing beyond the label)."""
        code = code_shape(ctx.feature_shape, int(self.values["channels"]), int(self.values["pool"]))
        width = int(self.values["adv_width"])
        gen = FeatureGenerator(code, (ctx.ds.channels, *ctx.input_size), width, 4 * width)
        self.adversary = nn.Sequential(feature_normaliser(code), gen).to(ctx.device)
        self.adv_opt = torch.optim.Adam(
            self.adversary.parameters(), lr=self.values["adv_lr"], betas=(0.5, 0.999)
        )
        self.b_rec = streamed_conditional_l1(ctx)
        ctx.state.setdefault("no_information_levels", {})["rec_l1"] = self.b_rec

    def _setup_classifier(self, ctx: DefenceContext) -> None:
        """An attribute classifier on the noisy code (the attribute attack's, behind the same
        normaliser); the model is penalised for its cross-entropy up to H(s | y)."""
        assert ctx.private is not None
        code = code_shape(ctx.feature_shape, int(self.values["channels"]), int(self.values["pool"]))
        n_s, n_y = len(ctx.private.classes), len(ctx.ds.classes)
        self.classifier = attribute_opponent(code, n_s).to(ctx.device)
        self.cls_opt = torch.optim.Adam(
            self.classifier.parameters(), lr=self.values["adv_lr"], betas=(0.5, 0.999)
        )
        index = ctx.train_index
        self.b_att = conditional_entropy(
            ctx.private.values[index], ctx.ds.labels[index], n_s, n_y
        )
        ctx.state["private_attribute"] = self.values["private_attribute"]
        ctx.state.setdefault("no_information_levels", {})["attribute_ce"] = self.b_att

    def trainable(self, ctx: DefenceContext) -> list:
        if self.phase == "joint":
            new = [*self.encode.parameters(), *self.decode.parameters()]
            ids = {id(p) for p in new}
            rest = [p for p in ctx.model.parameters() if p.requires_grad and id(p) not in ids]
            lr = self.values["lr"] or self.default_lr(ctx)
            return [{"params": rest},
                    {"params": new, "lr": lr * self.values["new_lr_factor"]}]  # fmt: skip
        head = {id(p) for p in self._head_params(ctx)}
        return [p for p in ctx.model.parameters() if id(p) not in head]

    def _head_params(self, ctx: DefenceContext) -> list[nn.Parameter]:
        return list(
            Partition(ctx.model, ctx.partition.input_shape)
            .split(f"{ctx.cut.name}.noise")
            .head.parameters()
        )

    def loss(self, ctx: DefenceContext, x: Tensor, y: Tensor, idx: Tensor) -> tuple[Tensor, dict]:
        if self.phase == "joint":  # noise from 0 to sigma over the first `ramp` of the steps
            ramp = self.values["ramp"] * self.total_steps(ctx)
            self.noise.sigma.fill_(self.sigma * min(1.0, (self.step + 1) / max(ramp, 1.0)))
            self.step += 1
        self.sent = None
        logits = ctx.model(x)
        task = F.cross_entropy(logits, y)
        logs = {"task": task.item()}
        code = self.sent
        if self.phase == "joint" and code is not None:
            if self.adversary is not None:
                rec = self._opponent_loss(self.adversary, self.adv_opt, code,
                                          lambda out: F.l1_loss(out, x))  # fmt: skip
                task = task - self.values["alpha"] * rec.clamp(max=self.b_rec)
                logs["rec"] = rec.item()
            if self.classifier is not None:
                assert ctx.private is not None
                s = ctx.private.values[idx].to(ctx.device)
                att = self._opponent_loss(self.classifier, self.cls_opt, code,
                                          lambda out: F.cross_entropy(out, s))  # fmt: skip
                task = task - self.values["beta"] * att.clamp(max=self.b_att)
                logs["att"] = att.item()
        if self.teacher is not None and self.phase == "joint":
            with torch.no_grad():
                soft = F.softmax(self.teacher(x) / DISTILL_T, 1)
            kd = F.kl_div(F.log_softmax(logits / DISTILL_T, 1), soft, reduction="batchmean")
            task = task + self.values["distill"] * DISTILL_T**2 * kd
            logs["kd"] = kd.item()
        return task, logs

    @staticmethod
    def _opponent_loss(
        net: nn.Module, opt: torch.optim.Optimizer, code: Tensor, objective
    ) -> Tensor:
        """One step of an in-loop opponent on the detached code, then its loss on the live code
        with the opponent frozen (what the model is penalised for)."""
        net.train()
        loss = objective(net(code.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        net.requires_grad_(False)
        try:
            return objective(net(code))
        finally:
            net.requires_grad_(True)

    def fit(self, ctx: DefenceContext) -> dict:
        info = super().fit(ctx)
        if self.hook is not None:
            self.hook.remove()
            self.hook = None
        self.sent = None
        self.noise.sigma.fill_(self.sigma)
        # discarded: the audit judges with fresh attackers
        self.teacher = self.adversary = self.classifier = None
        target = self.values["target_mse"]
        floor = self._floor(ctx)
        info["mse_floor_after_training"] = floor
        if target is not None and floor < target and int(self.values["recalibrate_steps"]):
            self.noise.sigma.mul_(math.sqrt(target / floor))
            self.phase = "tail"
            saved = dict(self.values)
            self.values["steps"] = int(self.values["recalibrate_steps"])
            self.values["epochs"] = max(
                1, math.ceil(self.values["steps"] / max(1, self.total_steps(ctx)))
            )
            try:
                for p in self._head_params(ctx):
                    p.requires_grad_(False)
                info["recalibration"] = {**super().fit(ctx), "sigma": float(self.noise.sigma)}
            finally:
                self.values, self.phase = saved, "done"
                for p in ctx.model.parameters():
                    p.requires_grad_(True)
            info["mse_floor_after_recalibration"] = self._floor(ctx)
        return info

    def deploy(self, ctx: DefenceContext) -> nn.Module:
        ctx.state.update(
            sigma=float(self.noise.sigma),
            channels=int(self.values["channels"]),
            pool=int(self.values["pool"]),
            serve_cut=f"{ctx.cut.name}.noise",
            certified_on_defender_samples={"mse_floor": self._floor(ctx),
                                           "samples": CERTIFY_SAMPLES},
        )  # fmt: skip
        return ctx.model
