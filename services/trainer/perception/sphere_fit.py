"""Each frame's sphere fitted to its pixels by render and compare (SphereFit)."""

from __future__ import annotations

import math

import torch
from torch import nn

from trajlab.data.render import AMBIENT, LIGHT_DIRECTION, Z_REF


class SphereFit(nn.Module):
    """Each frame's sphere fitted to its pixels: centre (u, v) and depth z by render and compare.

    The renderer's sphere is a known scene model (:mod:`trajlab.data.render`): at depth ``z``
    a disc of radius ``f R / z`` pixels whose every fully covered pixel has, as its brightest
    colour channel (HSV's V; the colour's V is 1 whatever its hue), ``255 sqrt(Z_REF / z)``
    times the Lambertian shade of the sphere's normal there (light from the upper left,
    behind the camera, ambient 0.35), rounded to a byte. Size, brightness and where the
    highlight sits all follow from (u, v, z), so those three are fitted to the V of the
    pixels inside the disc, starting from the track's own estimate: first the best of 45
    nearby starts (the centre moved by up to a pixel, the depth scaled by 0.8-1.25; a
    truncated mean squared residual), then Gauss-Newton steps (Jacobian by finite
    differences, a 3x3 solve in closed form) with robust weights: Huber at 10 grey levels
    for two steps, then Cauchy at 3, so the pixels of a distractor in front of the sphere
    drop out. Only pixels whose coverage is whole count (their value does not depend on the
    unknown background), weighed by a ramp over the disc's last half pixel so that nothing
    is a hard threshold (PyTorch and ONNX Runtime must agree to 1e-4). Its accuracy is measured
    by bench/bench_sphere_fit.py (bench/RESULTS.md).

    When exported, the steps are a ``torch.while_loop`` (two: the Huber steps, then the Cauchy
    ones), one ONNX ``Loop`` each: unrolled, their ten copies made the dynamo export several
    times slower (bench/bench_sphere_fit.py). In eager mode they are a plain Python loop.

    Each frame's confidence (in [0, 1]) says how much of the disc the fit explains (the
    Cauchy weights' share of the disc: a sphere hidden behind a distractor explains little)
    and whether there were pixels enough; the track takes the fit in that proportion and its
    own estimate in the rest. No parameters; the frames and the starting points are read
    detached.
    ::

        V (N, T, H, W) grey levels, start (u, v, z) (N, T)
          -> a 17 x 17 window around (u, v) (N T, 17, 17)
          -> best of 45 starts -> 10 robust Gauss-Newton steps (float64) -> (u, v, z), confidence (N, T)
    """

    def __init__(
        self,
        *,
        height: int,
        width: int,
        focal_px: float,
        radius: float,
        window: int = 17,
        steps: int = 10,
    ) -> None:
        super().__init__()
        if focal_px <= 0 or radius <= 0:
            raise ValueError(f"sphere fit needs focal_px > 0 and radius > 0, got {focal_px} and {radius}")
        self.height, self.width = int(height), int(width)
        self.focal_px, self.radius = float(focal_px), float(radius)
        self.window, self.steps = int(window), int(steps)
        # Plain floats and small constant tensors (buffers: a tensor made inside the steps' loop body
        # breaks the export): few nodes in the exported graph, whose count sets the export's cost.
        norm = math.sqrt(sum(c * c for c in LIGHT_DIRECTION))
        self.light = tuple(float(c) / norm for c in LIGHT_DIRECTION)
        f64 = torch.float64
        self.register_buffer("span", torch.arange(self.window, dtype=f64), persistent=False)
        steps_px, factors = (-1.0, 0.0, 1.0), (0.8, 0.9, 1.0, 1.1, 1.25)
        starts = [(du, dv, fz) for du in steps_px for dv in steps_px for fz in factors]
        starts_t = torch.tensor(starts, dtype=f64)  # (S, 3): a start = (u + du, v + dv, z fz)
        uv, only_z = torch.tensor([1.0, 1.0, 0.0], dtype=f64), torch.tensor([0.0, 0.0, 1.0], dtype=f64)
        self.register_buffer("start_add", starts_t * uv, persistent=False)
        self.register_buffer("start_mul", starts_t * only_z + uv, persistent=False)
        # Finite differences: the sphere and three copies nudged by h = (0.02, 0.02, 0.002 z) (rows).
        self.register_buffer("nudge", torch.cat([torch.zeros(1, 3), torch.eye(3)]).to(f64), persistent=False)
        self.register_buffer("h_mul", torch.tensor([0.0, 0.0, 0.002], dtype=f64), persistent=False)
        self.register_buffer("h_add", torch.tensor([0.02, 0.02, 0.0], dtype=f64), persistent=False)
        # At most a pixel and a fifth of the depth per step: the limit is p * lim_mul + lim_add.
        self.register_buffer("lim_mul", torch.tensor([0.0, 0.0, 0.2], dtype=f64), persistent=False)
        self.register_buffer("lim_add", torch.tensor([1.0, 1.0, 0.0], dtype=f64), persistent=False)
        self.register_buffer("nxt", torch.tensor([1, 2, 0]), persistent=False)  # i -> i + 1 (mod 3)
        self.register_buffer("aft", torch.tensor([2, 0, 1]), persistent=False)  # i -> i + 2 (mod 3)
        # Levenberg-style damping of the normal equations' diagonal.
        self.register_buffer("damping", torch.ones(3, 3, dtype=f64) + 1e-3 * torch.eye(3, dtype=f64),
                             persistent=False)

    def render(
        self, p: torch.Tensor, px: torch.Tensor, py: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Spheres ``p`` (M, S, 3) = (u, v, z) -> the V of a fully covered pixel centred at
        (px, py) (M, 1, 1, k) and (M, 1, k, 1), and its interior weight (1 inside the disc's
        last pixel, ramping to 0 where the coverage stops being whole): both (M, S, k, k)."""
        u, v, z = p[..., None, None].unbind(2)  # (M, S, 1, 1) each
        lx, ly, lz = self.light
        fr = self.focal_px * self.radius
        r, inv_r = fr / z, z * (1.0 / fr)  # the disc's radius in pixels, and its inverse
        dx, dy = px - u, py - v
        d2 = dx * dx + dy * dy
        # The unit normal: (dx, -dy) / r and nz; the shade is its dot with the light.
        nz = torch.sqrt(torch.clamp(1.0 - d2 * (inv_r * inv_r), min=0.0))
        lam = torch.clamp(dx * (inv_r * lx) + dy * (inv_r * -ly) + nz * lz, min=0.0)
        bright = 255.0 * torch.sqrt(torch.clamp(Z_REF / z, max=1.0))
        value = bright * (AMBIENT + (1.0 - AMBIENT) * lam)
        inside = torch.clamp((2.0 * r - 1.0) - 2.0 * torch.sqrt(d2), min=0.0, max=1.0)
        return value, inside

    def _gauss_newton(
        self,
        p: torch.Tensor,
        obs: torch.Tensor,
        px: torch.Tensor,
        py: torch.Tensor,
        *,
        steps: int,
        huber: bool,
    ) -> torch.Tensor:
        """``steps`` robust Gauss-Newton steps from spheres ``p`` (M, 3) on the window ``obs``
        (M, 1, k, k), as a ``torch.while_loop``: exported as one ONNX Loop, not ``steps`` copies."""
        if steps <= 0:
            return p
        kk = self.window * self.window  # shapes as -1: the loop's body cannot capture the symbolic batch

        def more(i: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            return i < steps

        def step(i: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # The sphere and three nudged copies (finite differences): (M, 4, k, k) in one call.
            hstep = p * self.h_mul + self.h_add  # (M, 3)
            pred4, inside4 = self.render(p[:, None] + hstep[:, None] * self.nudge, px, py)
            pred = pred4[:, :1]
            res = obs - pred  # (M, 1, k, k)
            if huber:
                robust = torch.clamp(10.0 / torch.clamp(res.abs(), min=1e-3), max=1.0)  # Huber at 10
            else:
                robust = 1.0 / (1.0 + (res / 3.0) ** 2)  # Cauchy at 3 grey levels
            jac = ((pred4[:, 1:] - pred) / hstep[:, :, None, None]).reshape(-1, 3, kk)
            jw = jac * (inside4[:, :1] * robust).reshape(-1, 1, kk)
            a = (jw @ jac.transpose(1, 2)) * self.damping  # (M, 3, 3), the diagonal damped
            g = (jw * res.reshape(-1, 1, kk)).sum(dim=2)  # (M, 3)
            limit = p * self.lim_mul + self.lim_add
            return i + 1, p + torch.maximum(torch.minimum(_solve3(a, g, self.nxt, self.aft), limit), -limit)

        i = torch.zeros((), dtype=torch.int64, device=p.device)
        if torch.compiler.is_exporting() or torch.compiler.is_compiling():
            _, p = torch.while_loop(more, step, (i, p))
            return p
        # Eager (training, evaluation, FLOP counting): the same steps as a Python loop, which is
        # what torch.while_loop runs in eager mode anyway; torch's dispatch modes (FlopCounterMode)
        # cannot trace the while_loop operator itself.
        for _ in range(steps):
            i, p = step(i, p)
        return p

    def forward(
        self, value: torch.Tensor, u0: torch.Tensor, v0: torch.Tensor, z0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """V (N, T, H, W) in grey levels, a start (u, v, z) (N, T) -> fitted u, v, z, confidence (N, T)."""
        n, t, h, w = value.shape
        k, m = self.window, n * t
        # In float64: in float32 the fit's sums over the window round differently in PyTorch and ONNX
        # Runtime, by up to 6e-5 at the seed b1 model's outputs (the parity gate is 1e-4); 2e-6 in float64.
        frames = value.detach().double().reshape(m, h * w)
        start = torch.stack([u0.detach(), v0.detach(), torch.clamp(z0.detach(), min=0.5)], dim=-1)
        start = start.double().reshape(m, 1, 3)
        # The window: pixel columns and rows around the start, clamped into the image.
        corner = torch.round(start[:, 0, :2] - 0.5) - k // 2  # (M, 2): first column, first row
        cols = torch.clamp(corner[:, :1] + self.span, min=0.0, max=float(w - 1))
        rows = torch.clamp(corner[:, 1:] + self.span, min=0.0, max=float(h - 1))
        index = (rows[:, :, None] * w + cols[:, None, :]).long().reshape(m, k * k)
        obs = torch.gather(frames, 1, index).reshape(m, 1, k, k)
        px = (cols + 0.5)[:, None, None, :]  # (M, 1, 1, k)
        py = (rows + 0.5)[:, None, :, None]  # (M, 1, k, 1)

        # The best start: the truncated mean squared residual over the disc, all starts at once.
        cands = start * self.start_mul + self.start_add  # (M, S, 3)
        pred, inside = self.render(cands, px, py)
        res2 = torch.clamp((obs - pred) ** 2, max=400.0)
        cost = (inside * res2).sum(dim=(2, 3)) / torch.clamp(inside.sum(dim=(2, 3)), min=1.0)  # (M, S)
        best = torch.argmin(cost, dim=1)
        p = torch.gather(cands, 1, best[:, None, None].expand(-1, 1, 3))[:, 0]  # (M, 3)
        # Two Huber steps, then Cauchy; each a loop (one copy of its body in the exported graph).
        huber_steps = min(2, self.steps)
        p = self._gauss_newton(p, obs, px, py, steps=huber_steps, huber=True)
        p = self._gauss_newton(p, obs, px, py, steps=self.steps - huber_steps, huber=False)
        pred, inside = self.render(p[:, None], px, py)
        explained = inside / (1.0 + ((obs - pred) / 3.0) ** 2)
        mass = explained.sum(dim=(1, 2, 3))
        share = mass / torch.clamp(inside.sum(dim=(1, 2, 3)), min=1e-3)
        confidence = torch.clamp((share - 0.6) / 0.2, min=0.0, max=1.0) * torch.clamp(
            (mass - 4.0) / 3.0, min=0.0, max=1.0
        )
        u, v, z = p.float().reshape(n, t, 3).unbind(-1)
        return u, v, z, confidence.reshape(n, t).float()


def _solve3(a: torch.Tensor, g: torch.Tensor, nxt: torch.Tensor, aft: torch.Tensor) -> torch.Tensor:
    """x with a x = g for (M, 3, 3) ``a`` and (M, 3) ``g``, by cofactors (ONNX has no solve).

    With rows a_i, the inverse's columns are the cross products c_i = a_(i+1) x a_(i+2) over
    det = a_0 . c_0; all three at once, as products of permuted copies. ``nxt`` and ``aft``
    are the index tensors (1, 2, 0) and (2, 0, 1) (tensors, not lists: a list index inside a
    ``torch.while_loop`` body fails the ONNX export's decomposition).
    """
    r1, r2 = a.index_select(1, nxt), a.index_select(1, aft)  # rows i + 1 and i + 2
    c = r1.index_select(2, nxt) * r2.index_select(2, aft) - r1.index_select(2, aft) * r2.index_select(2, nxt)
    det = (a[:, 0] * c[:, 0]).sum(dim=1)  # c's row i is c_i
    det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
    return (c * g[:, :, None]).sum(dim=1) / det[:, None]

