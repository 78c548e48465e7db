"""Linear decodability of attributes from w (a lever of the v2 recipe, issue #17).

Why: issue #17 asks that smile, gender, beard, glasses and age be read from w by a logistic regression
(held-out accuracy >= 0.85). Measured on mini and on the v2 run (bench/w_linearity.py): w decides these
attributes (the renders' true attributes reach 0.94-1.00) but not linearly (a small MLP on w barely does
better than the logistic), and path-length regularisation alone did not change it. This lever asks the
generator for it directly.

Method, every ``interval`` G steps (lazy, like path-length regularisation), on ``batch // batch_shrink``
fresh latents z:

1. w = mapping(z) (no style mixing, no truncation: the w the goal reads), x = synthesis(w broadcast to
   every layer, random noise).
2. s = the frozen world predictor's raw scores of x for the attributes (continuous attributes normalised
   to [0, 1] of their range, booleans as logits clipped to +-``logit_clip``, or with ``bool_target``
   "prob" as probabilities) -- the world predictor, never the quality judge, which training must not see.
3. The read-out h(w) = A^T w + b is the ridge regression of s on w over the recent faces: running means
   of w and s and running (co)variances C_ww, C_ws (a plain average over the first 1 / ``decay`` lever
   steps, an exponential one with rate ``decay`` after), solved in closed form each step,
   A = (C_ww + lambda I)^-1 C_ws with lambda = ``ridge`` * trace(C_ww) / w_dim -- the best linear read-out
   of the current generator, with no optimiser to lag behind it (the goal's logistic probe is such a
   read-out too). The batch enters the statistics after its loss is taken (no in-sample fit).
4. The loss is the mean over attributes of (s - h(w))^2 / var(s), var(s) the running variance (floored at
   ``var_floor``: a boolean whose logits all sit at the clip has variance 0): the unexplained fraction of
   each attribute's variance, scale-free across attributes. Times ``weight * interval`` it trains G through
   s (images whose attributes follow a linear function of w) and through w (a mapping that lines w up with
   them); A and b are constants of the step. D's realism keeps G from the trivial answer (constant
   attributes).
5. Warm-up: for the first ``warmup`` lever steps only the statistics are gathered (no loss for G).

``mode``: "both" trains G through s and w (4. above). Measured on the v2 run (bench/results/v2-branches.md):
with "both" G lowers the loss by collapsing attributes -- a boolean drawn on no face is perfectly
predictable, a narrow spread leaves little to explain -- glasses and beards vanished and the judge's
Fréchet distance went from 29 to 146 in 32 kimg. "w" takes the scores as fixed targets (no gradient through
the image or the predictor; the synthesis runs without a graph, so the step is cheap) and moves only w,
i.e. trains the mapping network to place faces where the read-out expects them: it cannot gain by
changing which attributes G draws.

``bool_target``: what a boolean contributes to s. "logit" (the default, 2. above) asks the read-out to fit
the logit's size, which a linear function of w cannot do for a boolean G draws confidently (logits bunched at
+-clip on either side of a boundary leave a large residual even when a plane in w separates them: measured
on the ema20 branch, glasses and beard keep 0.6-0.7 of their variance unexplained while the goal's logistic
probe reads them at 0.63-0.82). "prob" reads the probability sigmoid(logit): least squares on 0 / 1
targets is the Fisher discriminant, the same boundary a logistic probe looks for, its residual is the
faces on the wrong side of it or near it, and the gradient through the image falls on those (a confident
face's sigmoid is flat) -- it asks the boundary between drawn and not drawn to be a plane in w, the goal
itself. Statistics gathered for one target are not read with the other: loading a state of the other
target keeps this lever's fresh statistics (it warms up again). Measured (stop 22,
bench/results/v2-cpu-ema20lin-noaug/README.md): 2000 steps from the same point, "prob" read the goal within
the split noise of "logit" and glasses 0.04 lower, so "logit" stays the default.

``spread``: what the unexplained part is divided by. "running" (the default, 4. above) divides by the
running variance, a constant of the step -- and then narrowing an attribute pays: scaling the batch's scores
about their mean by a changes a^2 Var(s) - 2a Cov(s, h) + E(h - m)^2, whose slope at a = 1 is twice the
unexplained variance, so G gains by drawing every attribute closer to its mean, the more so the less of it
is explained. Measured (stop 22, ``bench/attribute_spread.py``,
bench/results/v2-cpu-ema20lin-noaug/spread-stop22-69000.json): 1000 steps from the same point at weight 1
instead of 0.25, the world predictor's smile spread on G went from -7 % to -13 % of its spread on renders
(the judge's from -13 % to -14 %; gender and age 2-3 points narrower too), while the match lever held the
reals' spread as its target. "batch" keeps the value (the running variance) and puts the batch's own
variance into the gradient, var_running * v_batch / v_batch.detach(): the ratio is scale-free (E(s - h)^2
/ Var(s) with the read-out the least-squares fit has slope 2 (Var(h) - Cov(s, h)) = 0 at a = 1), so the
lever asks for a plane in w, not for a narrower face.

``read``: how the predictor sees G's faces, "plain" or "augment" (through its own training augmentation,
a fresh draw per call; the attribute-matching lever's docstring, 9., says why).

``continuous``: a continuous attribute's score, the head's "raw" output or "clamped" to [0, 1] (the range
of every label). Why: a linear read-out of w spans more than the world's range at the tails of w, and
through the image (mode "both") the lever asks G to draw faces the predictor reads past the range -- at
w1b's step 75250 it read 6.9 % of G's smiles outside [0, 1] (renders 1.2 %), the faces the judge counted
as an ordinary smile (bench/lever_reading.py, bench/results/v2-cpu-ema20lin-noaug/stop24/). Clamped, a face
already at the range's end is not pushed past it.

``logit_clip``: where a boolean's logit is clipped (6 by default). Past it a face's score is constant, so the
lever asks nothing of faces the predictor reads as confidently without (or with) the attribute. Editing's
monotonicity goal reads the logit along a direction through them: on s6's step 82750 the beard logits of
beardless faces swept towards less beard sat at -7 to -13 and ranked at random (stop 25, ``bench/edit.py
--per-face``). A wider clip asks the read-out to follow those too, i.e. the logit to keep falling along w.

``attribute_weights``: {attribute: factor} on an attribute's term in the mean of 4. (1 for the others), to
press on the one attribute that misses the goal without pressing harder on those that meet it. Measured
(stop 25, bench/results/v2-cpu-ema20lin-noaug/README.md): from a point where smile alone missed (0.83 over ten
splits of the goal's faces), ``smile=3`` and then ``smile=6,age=2`` brought smile to 0.88-0.90 and its spread
from -14 % to -1 ... -3 % of the world's within 1,750 steps, the other four at 0.86-0.97, FD 11.8-13.0.

State (checkpointed): the running statistics, the step count and the boolean target. The predictor is not
part of the state (it is the shipped file, loaded at start).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from facegen.world.predictor_images import READS, in_range, lever_input
from facegen.world.running_moments import fold_covariance

__all__ = ["LinearDecodability", "DEFAULT_ATTRIBUTES", "BOOL_TARGETS", "SPREADS"]

#: The attributes issue #17's w-linear goal reads (facegen.world.quality_goals.W_LINEAR_ATTRIBUTES).
DEFAULT_ATTRIBUTES = ("smile", "gender", "beard", "glasses", "age")
#: What a boolean attribute contributes to the scores s (the module docstring, ``bool_target``).
BOOL_TARGETS = ("logit", "prob")
#: What the unexplained part is divided by in the gradient (the module docstring, ``spread``).
SPREADS = ("running", "batch")


class LinearDecodability(nn.Module):
    def __init__(self, w_dim: int, weight: float = 1.0, interval: int = 4, batch_shrink: int = 2,
                 attributes: Sequence[str] = DEFAULT_ATTRIBUTES, predictor=None, decay: float = 0.01,
                 logit_clip: float = 6.0, ridge: float = 1e-3, warmup: int = 100, var_floor: float = 0.01,
                 mode: str = "both", bool_target: str = "logit", spread: str = "running", read: str = "plain",
                 continuous: str = "raw", attribute_weights: Optional[dict] = None, device="cpu"):
        super().__init__()
        if weight <= 0 or interval < 1 or batch_shrink < 1 or not 0 < decay <= 1 or warmup < 0:
            raise ValueError("linear decodability: weight > 0, interval >= 1, batch_shrink >= 1, 0 < decay <= 1, "
                             "warmup >= 0")
        if mode not in ("both", "w"):
            raise ValueError(f"linear decodability: mode {mode!r}, use 'both' or 'w'")
        if bool_target not in BOOL_TARGETS:
            raise ValueError(f"linear decodability: bool_target {bool_target!r}, use one of {BOOL_TARGETS}")
        if spread not in SPREADS:
            raise ValueError(f"linear decodability: spread {spread!r}, use one of {SPREADS}")
        if read not in READS:
            raise ValueError(f"linear decodability: read {read!r}, use one of {READS}")
        if continuous not in ("raw", "clamped"):
            raise ValueError(f"linear decodability: continuous {continuous!r}, use 'raw' or 'clamped'")
        self.mode, self.bool_target, self.spread, self.read = mode, bool_target, spread, read
        self.continuous = continuous
        from facegen.world.predictor import frozen_world_predictor
        # A plain attribute (a list), not a submodule: the predictor is not trained and not checkpointed.
        self._predictor = [frozen_world_predictor(predictor, device)]
        predictor = self._predictor[0]
        self.weight, self.interval, self.batch_shrink, self.decay = weight, interval, batch_shrink, decay
        self.logit_clip, self.ridge, self.warmup, self.var_floor = logit_clip, ridge, warmup, var_floor
        if not attributes:
            raise ValueError("linear decodability: no attributes to read")
        kinds = {name: kind for name, kind, _, _, _ in predictor.layout}
        unknown = [a for a in attributes if kinds.get(a) not in ("continuous", "bool")]
        if unknown:
            raise ValueError(f"linear decodability: {unknown} are not continuous or boolean predictor attributes")
        layout = [(name, kind, i) for name, kind, _, i, _ in predictor.layout if name in attributes]
        self.order = tuple(name for name, _, _ in layout)
        self.columns = [i for _, _, i in layout]
        self.is_logit = torch.tensor([kind == "bool" for _, kind, _ in layout])
        attribute_weights = dict(attribute_weights or {})
        stray = sorted(set(attribute_weights) - set(self.order))
        if stray or any(f < 0 for f in attribute_weights.values()):
            raise ValueError(f"linear decodability: attribute weights for {stray} (not read) or negative")
        self.factors = torch.tensor([float(attribute_weights.get(a, 1.0)) for a in self.order])
        k = len(layout)
        self.register_buffer("target", torch.tensor(BOOL_TARGETS.index(bool_target)))
        self.register_buffer("calls", torch.zeros([], dtype=torch.long))
        self.register_buffer("mean_w", torch.zeros(w_dim, dtype=torch.float64))
        self.register_buffer("mean_s", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("cov_ww", torch.zeros(w_dim, w_dim, dtype=torch.float64))
        self.register_buffer("cov_ws", torch.zeros(w_dim, k, dtype=torch.float64))
        self.register_buffer("var_s", torch.ones(k, dtype=torch.float64))
        self.to(device)

    def batch_size(self, batch: int) -> int:
        return max(1, batch // self.batch_shrink)

    def scores(self, img: torch.Tensor) -> torch.Tensor:
        """Raw predictor scores [N, k] of images [N, 3, H, W] in [-1, 1] (see the module docstring, 2)."""
        P = self._predictor[0]
        out = P(lever_input(P, img, self.read))[1][:, self.columns]     # ``read`` in the module docstring
        boolean = out.sigmoid() if self.bool_target == "prob" else out.clamp(-self.logit_clip, self.logit_clip)
        value = in_range(out, self.continuous)                                    # ``continuous``, docstring
        return torch.where(self.is_logit.to(out.device), boolean, value)

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        """The running statistics of a state gathered with the same boolean target (a state without one is
        from before the option, i.e. "logit"); those of the other target are left out (fresh statistics)."""
        target = state.get("target")
        theirs = BOOL_TARGETS[int(target)] if target is not None else "logit"
        if theirs != self.bool_target:
            return super().load_state_dict(self.state_dict(), strict=strict, assign=assign)
        if target is None:
            state = {**state, "target": self.target.clone()}
        return super().load_state_dict(state, strict=strict, assign=assign)

    def readout(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A [w_dim, k], b [k]) of the ridge regression of s on w from the running statistics (float32)."""
        d = self.cov_ww.shape[0]
        lam = self.ridge * self.cov_ww.diagonal().sum().clamp_min(1e-12) / d
        eye = torch.eye(d, dtype=self.cov_ww.dtype, device=self.cov_ww.device)
        A = torch.linalg.solve(self.cov_ww + lam * eye, self.cov_ws)
        b = self.mean_s - self.mean_w @ A
        return A.float(), b.float()

    @torch.no_grad()
    def update(self, w: torch.Tensor, s: torch.Tensor) -> None:
        """Fold a batch into the running statistics (plain average first, then exponential; docstring, 3)."""
        w, s = w.double(), s.double()
        rate = max(1.0 / (int(self.calls) + 1), self.decay)
        mw, ms = w.mean(0), s.mean(0)
        dw, ds = w - mw, s - ms
        n = len(w)
        cww, cws = dw.T @ dw / n, dw.T @ ds / n
        # Mixture of two populations: the spread of their means adds to the pooled covariance.
        delta_w, delta_s = mw - self.mean_w, ms - self.mean_s
        fold_covariance(self.cov_ww, cww, delta_w, delta_w, rate)
        fold_covariance(self.cov_ws, cws, delta_w, delta_s, rate)
        fold_covariance(self.var_s, ds.square().mean(0), delta_s, delta_s, rate)
        self.mean_w.lerp_(mw, rate)
        self.mean_s.lerp_(ms, rate)
        self.calls += 1

    def loss(self, img: torch.Tensor, w: torch.Tensor) -> tuple[Optional[torch.Tensor], dict]:
        """(loss to backpropagate = weight * interval * mean unexplained fraction, or None while warming up;
        stats). ``w`` [N, w_dim] with its graph, ``img`` = synthesis(w) (with its graph in mode "both").
        Then folds the batch into the running statistics."""
        if self.mode == "w":
            with torch.no_grad():
                s = self.scores(img)
        else:
            s = self.scores(img)
        return self.loss_of_scores(s, w)

    def loss_of_scores(self, s: torch.Tensor, w: torch.Tensor) -> tuple[Optional[torch.Tensor], dict]:
        """:meth:`loss` from the scores ``s`` [N, k] of the batch (4. and ``spread`` in the module docstring)."""
        assert w.ndim == 2 and w.shape[1] == self.cov_ww.shape[0], w.shape
        assert s.shape == (len(w), len(self.order)), s.shape
        warm = int(self.calls) < max(self.warmup, 1)
        loss, stats = None, {"lin_warm": float(warm)}
        if not warm:
            A, b = self.readout()
            var = self.var_s.float().clamp_min(self.var_floor)
            if self.spread == "batch" and s.requires_grad:
                own = s.var(0, unbiased=False).clamp_min(self.var_floor)
                var = var * own / own.detach()         # the running variance in value, the batch's in the gradient
            unexplained = (s - (w @ A + b)).square().mean(0) / var
            loss = (unexplained * self.factors.to(unexplained.device)).mean() * self.weight * self.interval
            stats.update({"lin": unexplained.mean().item(),
                          **{f"lin_{a}": u for a, u in zip(self.order, unexplained.tolist())}})
        self.update(w.detach(), s.detach())
        return loss, stats


def parse_attribute_weights(text: str) -> dict:
    """'smile=3,age=2' -> {'smile': 3.0, 'age': 2.0} (the ``lin_attribute_weights`` option)."""
    out = {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)      # no "=" leaves value empty: refused here too
        except ValueError:
            raise ValueError(f"linear decodability: attribute weight {item!r}, write name=factor") from None
    return out


def build_linearity(cfg, device) -> Optional[LinearDecodability]:
    """The lever from a TrainConfig, or None when ``lin_weight`` is 0."""
    if cfg.lin_weight <= 0:
        return None
    lin = LinearDecodability(cfg.w_dim, weight=cfg.lin_weight, interval=cfg.lin_interval,
                             batch_shrink=cfg.lin_batch_shrink, warmup=cfg.lin_warmup, mode=cfg.lin_mode,
                             bool_target=cfg.lin_bool_target, logit_clip=cfg.lin_logit_clip,
                             spread=cfg.lin_spread, read=cfg.lin_read,
                             continuous=cfg.lin_continuous,
                             attribute_weights=parse_attribute_weights(cfg.lin_attribute_weights),
                             attributes=tuple(a.strip() for a in cfg.lin_attributes.split(",") if a.strip()),
                             device=device)
    return lin
