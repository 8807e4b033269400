"""GN+, CN and BGN as Triton kernels (``impl="triton"``): BN's passes over the activation, no more.

Every GN+ variant (and CN, BGN) is ``y = A·x + B`` with (N, C)-sized A, B that depend on x only
through its per-(n, c) mean m and biased variance v over (H, W) (moments.py). A layer therefore
needs what BN needs: forward, one read of x for (m, v) and one read and write for y; backward,
one read of x and dy for two per-(n, c) sums and one more read to write dx. The rest is
arithmetic on (N, C) numbers, done here by one small kernel per direction instead of ~50
launches of (N, C)-sized ops.

**Centred form.** With x_c = x − m (per (n, c)) every activation T of the layer — x, GN(x),
BN(x), GN(BN(x)), … — is ``T = p·x_c + q`` for (N, C)-sized p, q; its per-(n, c) moments are
(q, p²·v), so normalizing T over a set (the channels of a group, or the batch) with pooled
moments (μ, σ²) gives again ``s·p·x_c + s·(q − μ)``, s = (σ² + eps)^-½. The forward stores
y = A·x_c + B' (B' = A·m + B is y at the (n, c) mean): at an input offset of 1000 no term of
size 1000 is ever rounded in float32 (the float32 bound is that of storing x itself).

**Backward.** Every gradient of an activation is ``D = α·dy + κ·x_c + β₀``, and from
S1 = Σ_hw dy and S2 = Σ_hw dy·x_c per (n, c) (using Σ_hw x_c = 0, Σ_hw x_c² = M·v, M = H·W):

    Σ_hw D   = α·S1 + β₀·M
    Σ_hw D·T = α·p·S2 + α·q·S1 + κ·p·M·v + β₀·q·M

Normalization's backward, for T_out = s·(T_in − μ) with moments over a set S,

    D_in = s·(D_out − mean_S(D_out) − T_out·mean_S(D_out·T_out))

(means over the set and (H, W)) keeps that form: α ← s·α, κ ← s·κ − s·m₂·p_out,
β₀ ← s·β₀ − s·m₁ − s·m₂·q_out with m₁, m₂ the two means. With fixed statistics (BN in eval)
it is D_in = s·D_out. A variant's backward is its forward graph walked back with these three
rules; dγ, dβ, dλ are sums of Σ_hw dy·T over n. dx = α·dy + κ·x_c + β₀ is one elementwise pass.

**Where the reductions meet.** GN pools over the channels of a group for each sample, BN over
the samples for each channel, BGN over both at once: one program per group holds a group's
(N, C/G) moments and does all three, in blocks of samples (at most
``triton_layers.MAX_COEFFICIENT_TILE`` values): a first walk pools what spans the batch, merging
the blocks pairwise, a second writes the coefficients.

Statistics are accumulated in float32 for float16/bfloat16/float32 input and in float64 for
float64 (``ACC``). Triton passes Python floats as float32, so eps, momentum and the unbiased
factor travel as float32 (hi, lo) pairs: exact to ~1e-14 in a float64 layer.
``1 / tl.sqrt`` stands for rsqrt (defined for float64 on every backend), and one-line helpers
are written inline: the interpreter re-patches triton.language on every nested ``@jit`` call.
"""

from __future__ import annotations

import triton
import triton.language as tl

# -- passes over the activation ------------------------------------------------------------


@triton.jit
def moments_kernel(
    x_ptr, mean_ptr, var_ptr, C, HW, sxn, sxc, sxhw,
    ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):  # fmt: skip
    """Per-(n, c) mean and biased variance in one read: two-pass moments of each tile, merged
    with Chan et al.'s pairwise update (no E[x²] − E[x]²), of x shifted by its first value per
    (n, c), so that a large offset is not summed (a sum of 256 values near 1000 would round to
    ~1e-3 in float32)."""
    n = tl.program_id(0)
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cs < C
    base = x_ptr + n.to(tl.int64) * sxn + cs[None, :].to(tl.int64) * sxc
    shift = tl.load(base, mask=cmask[None, :], other=0.0).to(ACC)  # x[n, c, 0, 0]
    mean = tl.zeros([BLOCK_C], ACC)
    m2 = tl.zeros([BLOCK_C], ACC)
    for start in range(0, HW, BLOCK_HW):
        hw = start + tl.arange(0, BLOCK_HW)
        mask = (hw < HW)[:, None] & cmask[None, :]
        x = tl.load(base + hw[:, None].to(tl.int64) * sxhw, mask=mask, other=0.0).to(ACC)
        x = tl.where(mask, x - shift, 0.0)
        seen = tl.cast(start, ACC)
        k = tl.cast(tl.minimum(HW - start, BLOCK_HW), ACC)
        tile_mean = tl.sum(x, axis=0) / k
        d = tl.where(mask, x - tile_mean[None, :], 0.0)
        delta = tile_mean - mean
        mean += delta * (k / (seen + k))
        m2 += tl.sum(d * d, axis=0) + delta * delta * (seen * k / (seen + k))
    tl.store(mean_ptr + n * C + cs, mean + tl.sum(shift, axis=0), mask=cmask)
    tl.store(var_ptr + n * C + cs, m2 / tl.cast(HW, ACC), mask=cmask)


@triton.jit
def backward_sums_kernel(
    dy_ptr, x_ptr, mean_ptr, s1_ptr, s2_ptr, C, HW, sdn, sdc, sdhw, sxn, sxc, sxhw,
    ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):  # fmt: skip
    """S1 = Σ_hw dy and S2 = Σ_hw dy·(x − m) per (n, c), reading dy and x once."""
    n = tl.program_id(0)
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cs < C
    m = tl.load(mean_ptr + n * C + cs, mask=cmask, other=0.0)
    dy_base = dy_ptr + n.to(tl.int64) * sdn + cs[None, :].to(tl.int64) * sdc
    x_base = x_ptr + n.to(tl.int64) * sxn + cs[None, :].to(tl.int64) * sxc
    s1 = tl.zeros([BLOCK_C], ACC)
    s2 = tl.zeros([BLOCK_C], ACC)
    for start in range(0, HW, BLOCK_HW):
        hw = (start + tl.arange(0, BLOCK_HW))[:, None].to(tl.int64)
        mask = (hw < HW) & cmask[None, :]
        dy = tl.load(dy_base + hw * sdhw, mask=mask, other=0.0).to(ACC)
        x = tl.load(x_base + hw * sxhw, mask=mask, other=0.0).to(ACC)
        s1 += tl.sum(dy, axis=0)
        s2 += tl.sum(dy * tl.where(mask, x - m[None, :], 0.0), axis=0)
    tl.store(s1_ptr + n * C + cs, s1, mask=cmask)
    tl.store(s2_ptr + n * C + cs, s2, mask=cmask)


@triton.jit
def affine_kernel(
    x_ptr, u_ptr, out_ptr, mean_ptr, kx_ptr, ku_ptr, k0_ptr, C, HW,
    sxn, sxc, sxhw, sun, suc, suhw, son, soc, sohw,
    HAS_U: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):  # fmt: skip
    """out = kx·(x − m) + k0 (+ ku·u) with per-(n, c) coefficients: y in the forward
    (kx = A, k0 = B'), dx in the backward (u = dy, ku = α, kx = κ, k0 = β₀)."""
    hw = (tl.program_id(0) * BLOCK_HW + tl.arange(0, BLOCK_HW))[:, None].to(tl.int64)
    n = tl.program_id(1)
    cs = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cs < C
    mask = (hw < HW) & cmask[None, :]
    at = n * C + cs
    m = tl.load(mean_ptr + at, mask=cmask, other=0.0)[None, :]
    kx = tl.load(kx_ptr + at, mask=cmask, other=0.0)[None, :]
    k0 = tl.load(k0_ptr + at, mask=cmask, other=0.0)[None, :]
    c64 = cs[None, :].to(tl.int64)
    x = tl.load(x_ptr + n.to(tl.int64) * sxn + c64 * sxc + hw * sxhw, mask=mask).to(ACC)
    out = kx * (x - m) + k0
    if HAS_U:
        ku = tl.load(ku_ptr + at, mask=cmask, other=0.0)[None, :]
        u = tl.load(u_ptr + n.to(tl.int64) * sun + c64 * suc + hw * suhw, mask=mask).to(ACC)
        out += ku * u
    out_at = out_ptr + n.to(tl.int64) * son + c64 * soc + hw * sohw
    tl.store(out_at, out.to(out_ptr.dtype.element_ty), mask=mask)


# -- the (N, C)-sized coefficient math: one program per group ---------------------------------
# A program walks its group's (N, C/G) moments in blocks of BLOCK_N samples: once to pool the
# statistics that span the batch (BN's, BGN's; in the backward, their two means), once more to
# write the per-(n, c) coefficients. Statistics within a sample (GN's) stay inside a block.


@triton.jit
def _group_params(weight_ptr, theta_ptr, theta_stride, K, HAS_LAMBDA: tl.constexpr,
                  ACC: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    """The group's channels, their mask, γ and λ (0 without λ) as [1, BLOCK_K]."""
    ks = tl.arange(0, BLOCK_K)
    cs = tl.program_id(0) * K + ks
    kmask = ks < K
    gamma = tl.load(weight_ptr + cs, mask=kmask, other=0.0).to(ACC)
    if HAS_LAMBDA:
        theta = tl.load(theta_ptr + cs * theta_stride, mask=kmask, other=0.0).to(ACC)
        lam = 1.0 / (1.0 + tl.exp(-theta))
    else:
        lam = tl.zeros([BLOCK_K], ACC)
    return ks, cs, kmask, gamma[None, :], lam[None, :]


@triton.jit
def _block(mean_ptr, var_ptr, start, N, C, cs, kmask, BLOCK_N: tl.constexpr):
    """Mask, (N, C) offsets and per-(n, c) moments of the samples start … start + BLOCK_N."""
    ns = start + tl.arange(0, BLOCK_N)
    mask = (ns < N)[:, None] & kmask[None, :]
    at = ns[:, None] * C + cs[None, :]
    m = tl.load(mean_ptr + at, mask=mask, other=0.0)
    return mask, at, m, tl.load(var_ptr + at, mask=mask, other=0.0)


@triton.jit
def _group_normalizer(q, pv, mask, K, eps):
    """GN's (μ, s = 1/√(σ² + eps)) of T = p·x_c + q with per-(n, c) variance pv: moments pooled
    over the channels of the group (axis 1), as [BLOCK_N, 1]."""
    mu = tl.sum(tl.where(mask, q, 0.0), axis=1) / K
    d = q - mu[:, None]
    var = tl.sum(tl.where(mask, pv + d * d, 0.0), axis=1) / K
    return mu[:, None], 1.0 / tl.sqrt(var[:, None] + eps)


@triton.jit
def _tracked(m, v, mask, eps, K, VARIANT: tl.constexpr):
    """Per-(n, c) moments of the tensor the batch statistics are taken of: GN(x) for gn_first,
    x otherwise."""
    if VARIANT == 1:
        mu_g, s_g = _group_normalizer(m, v, mask, K, eps)
        return s_g * (m - mu_g), s_g * s_g * v
    return m, v


@triton.jit
def _grad_sums(a, k, b, p, q, s1, s2, v, M, mask):
    """Σ_hw D and Σ_hw D·T per (n, c) for D = a·dy + k·x_c + b and T = p·x_c + q."""
    sum1 = tl.where(mask, a * s1 + b * M, 0.0)
    sum_t = tl.where(mask, a * p * s2 + a * q * s1 + (k * p * v + b * q) * M, 0.0)
    return sum1, sum_t


@triton.jit
def _normalization_backward(a, k, b, s, p, q, m1, m2):
    """D_in from D_out = a·dy + k·x_c + b through T_out = s·(T_in − μ) = p·x_c + q, given the
    means over the normalized set of D_out (m1) and D_out·T_out (m2); 0 and 0 for fixed μ, s."""
    return s * a, s * k - s * m2 * p, s * b - s * m1 - s * m2 * q


@triton.jit
def _group_backward(a, k, b, s, p, q, s1, s2, v, M, mask, K):
    """Normalization backward over the channels of each sample's group (within the block)."""
    sum1, sum_t = _grad_sums(a, k, b, p, q, s1, s2, v, M, mask)
    m1 = tl.expand_dims(tl.sum(sum1, axis=1), 1) / (K * M)
    m2 = tl.expand_dims(tl.sum(sum_t, axis=1), 1) / (K * M)
    return _normalization_backward(a, k, b, s, p, q, m1, m2)


@triton.jit
def coefficients_kernel(
    mean_ptr, var_ptr, weight_ptr, bias_ptr, theta_ptr, theta_stride, rmean_ptr, rvar_ptr,
    a_ptr, b_ptr, bmean_ptr, bscale_ptr, N, C, K,
    eps_hi, eps_lo, momentum_hi, momentum_lo, unbiased_hi, unbiased_lo,
    VARIANT: tl.constexpr, TRAINING: tl.constexpr, HAS_LAMBDA: tl.constexpr,
    ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """A and B' of y = A·x_c + B'; the batch branch's (μ, s) for the backward; the running
    statistics of the tracked tensor (x, or GN(x) for gn_first) updated as BatchNorm2d does.
    ``VARIANT``: 0 parallel, 1 gn_first (CN is gn_first with λ = 0), 2 bn_first, 3 BGN (one
    statistic per group over the batch and the group's channels: its running statistics are
    indexed by group, not channel)."""
    ks, cs, kmask, gamma, lam = _group_params(
        weight_ptr, theta_ptr, theta_stride, K, HAS_LAMBDA, ACC, BLOCK_K
    )
    beta = tl.load(bias_ptr + cs, mask=kmask, other=0.0).to(ACC)[None, :]
    eps = tl.cast(eps_hi, ACC) + tl.cast(eps_lo, ACC)
    if VARIANT == 3:  # every lane reads the group's statistic; one lane writes it
        stat_at, stat_mask = tl.program_id(0) + 0 * ks, ks == 0
    else:
        stat_at, stat_mask = cs, kmask
    if TRAINING:  # pass 1: the batch statistics, blocks merged pairwise (Chan et al.)
        mu_b = tl.zeros([BLOCK_K], ACC)
        ss = tl.zeros([BLOCK_K], ACC)  # Σ over samples of (variance + squared deviation)
        for start in range(0, N, BLOCK_N):
            mask, at, m, v = _block(mean_ptr, var_ptr, start, N, C, cs, kmask, BLOCK_N)
            q, pv = _tracked(m, v, mask, eps, K, VARIANT)
            rows = tl.cast(tl.minimum(N - start, BLOCK_N), ACC)
            seen = tl.cast(start, ACC)
            if VARIANT == 3:
                rows, seen = rows * K, seen * K
                block_mu = tl.sum(tl.sum(tl.where(mask, q, 0.0), axis=1), axis=0) / rows
                d = q - block_mu
                block_ss = tl.sum(tl.sum(tl.where(mask, pv + d * d, 0.0), axis=1), axis=0)
            else:
                block_mu = tl.sum(tl.where(mask, q, 0.0), axis=0) / rows
                d = q - block_mu[None, :]
                block_ss = tl.sum(tl.where(mask, pv + d * d, 0.0), axis=0)
            delta = block_mu - mu_b
            mu_b += delta * (rows / (seen + rows))
            ss += block_ss + delta * delta * (seen * rows / (seen + rows))
        var_b = ss / (N * K) if VARIANT == 3 else ss / N
    else:
        mu_b = tl.load(rmean_ptr + stat_at, mask=kmask, other=0.0).to(ACC)
        var_b = tl.load(rvar_ptr + stat_at, mask=kmask, other=1.0).to(ACC)
    s_b = (1.0 / tl.sqrt(var_b + eps))[None, :]
    mu = mu_b[None, :]
    for start in range(0, N, BLOCK_N):  # pass 2: the coefficients
        mask, at, m, v = _block(mean_ptr, var_ptr, start, N, C, cs, kmask, BLOCK_N)
        if VARIANT == 0:  # parallel: λ·GN(x) + (1 − λ)·BN(x)
            mu_g, s_g = _group_normalizer(m, v, mask, K, eps)
            a = gamma * (lam * s_g + (1 - lam) * s_b)
            b = gamma * (lam * s_g * (m - mu_g) + (1 - lam) * s_b * (m - mu))
        elif VARIANT == 1:  # gn_first: z = GN(x); λ·z + (1 − λ)·BN(z)
            mu_g, s_g = _group_normalizer(m, v, mask, K, eps)
            q_z = s_g * (m - mu_g)
            a = gamma * (lam * s_g + (1 - lam) * s_b * s_g)
            b = gamma * (lam * q_z + (1 - lam) * s_b * (q_z - mu))
        elif VARIANT == 2:  # bn_first: z = BN(x); λ·GN(z) + (1 − λ)·z
            q_z = s_b * (m - mu)
            mu_gz, s_gz = _group_normalizer(q_z, s_b * s_b * v, mask, K, eps)
            a = gamma * (lam * s_gz * s_b + (1 - lam) * s_b)
            b = gamma * (lam * s_gz * (q_z - mu_gz) + (1 - lam) * q_z)
        else:  # BGN: y = γ·(x − μ)/σ
            a = gamma * s_b + tl.zeros([BLOCK_N, BLOCK_K], ACC)
            b = gamma * s_b * (m - mu)
        tl.store(a_ptr + at, a, mask=mask)
        tl.store(b_ptr + at, b + beta, mask=mask)
    tl.store(bmean_ptr + cs, mu_b, mask=kmask)
    tl.store(bscale_ptr + cs, tl.sum(s_b, axis=0), mask=kmask)
    if TRAINING:
        momentum = tl.cast(momentum_hi, ACC) + tl.cast(momentum_lo, ACC)
        unbiased = var_b * (tl.cast(unbiased_hi, ACC) + tl.cast(unbiased_lo, ACC))
        rm = tl.load(rmean_ptr + stat_at, mask=stat_mask, other=0.0)
        rv = tl.load(rvar_ptr + stat_at, mask=stat_mask, other=0.0)
        rm_new = rm.to(ACC) + momentum * (mu_b - rm.to(ACC))
        rv_new = rv.to(ACC) + momentum * (unbiased - rv.to(ACC))
        tl.store(rmean_ptr + stat_at, rm_new.to(rm.dtype), mask=stat_mask)
        tl.store(rvar_ptr + stat_at, rv_new.to(rv.dtype), mask=stat_mask)


@triton.jit
def _through_batch(m, v, s1, s2, mask, gamma, lam, mu, s_b, eps, M, K,
                   VARIANT: tl.constexpr, ACC: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_K: tl.constexpr):  # fmt: skip
    """For a block of samples: the gradient reaching the batch normalization (a, k, b), its
    output T = p·x_c + q, and what the rest of the layer needs afterwards."""
    zero = tl.zeros([BLOCK_N, BLOCK_K], ACC)
    if VARIANT == 0:  # the BN view b̂ directly: D = γ(1 − λ)·dy
        return gamma * (1 - lam) + zero, zero, zero, s_b + zero, s_b * (m - mu)
    elif VARIANT == 1:  # BN(z) of z = GN(x): D = γ(1 − λ)·dy
        mu_g, s_g = _group_normalizer(m, v, mask, K, eps)
        q_z = s_g * (m - mu_g)
        return gamma * (1 - lam) + zero, zero, zero, s_b * s_g + zero, s_b * (q_z - mu)
    elif VARIANT == 2:  # z = BN(x): D_z = γ(1 − λ)·dy + GN's backward of γλ·dy
        q_z = s_b * (m - mu)
        mu_gz, s_gz = _group_normalizer(q_z, s_b * s_b * v, mask, K, eps)
        a, k, b = _group_backward(
            gamma * lam + zero, zero, zero, s_gz, s_gz * s_b + zero, s_gz * (q_z - mu_gz),
            s1, s2, v, M, mask, K,
        )  # fmt: skip
        return a + gamma * (1 - lam), k, b, s_b + zero, q_z
    else:  # BGN: D = γ·dy
        return gamma + zero, zero, zero, s_b + zero, s_b * (m - mu)


@triton.jit
def backward_coefficients_kernel(
    mean_ptr, var_ptr, s1_ptr, s2_ptr, weight_ptr, theta_ptr, theta_stride, bmean_ptr,
    bscale_ptr, alpha_ptr, kappa_ptr, beta0_ptr, dweight_ptr, dbias_ptr, dtheta_ptr,
    N, C, K, HW, eps_hi, eps_lo,
    VARIANT: tl.constexpr, TRAINING: tl.constexpr, HAS_LAMBDA: tl.constexpr,
    ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """dx = α·dy + κ·x_c + β₀ per (n, c), and dγ, dβ, dθ per channel (module docstring)."""
    _ks, cs, kmask, gamma, lam = _group_params(
        weight_ptr, theta_ptr, theta_stride, K, HAS_LAMBDA, ACC, BLOCK_K
    )
    mu = tl.load(bmean_ptr + cs, mask=kmask, other=0.0)[None, :]
    s_b = tl.load(bscale_ptr + cs, mask=kmask, other=0.0)[None, :]
    eps = tl.cast(eps_hi, ACC) + tl.cast(eps_lo, ACC)
    M = tl.cast(HW, ACC)
    m1 = tl.zeros([1, BLOCK_K], ACC)  # the batch normalization's two means (0: fixed μ, s)
    m2 = tl.zeros([1, BLOCK_K], ACC)
    if TRAINING:  # pass 1: pool them over the batch
        for start in range(0, N, BLOCK_N):
            mask, at, m, v = _block(mean_ptr, var_ptr, start, N, C, cs, kmask, BLOCK_N)
            s1 = tl.load(s1_ptr + at, mask=mask, other=0.0)
            s2 = tl.load(s2_ptr + at, mask=mask, other=0.0)
            a, k, b, p, q = _through_batch(
                m, v, s1, s2, mask, gamma, lam, mu, s_b, eps, M, K,
                VARIANT, ACC, BLOCK_N, BLOCK_K,
            )  # fmt: skip
            sum1, sum_t = _grad_sums(a, k, b, p, q, s1, s2, v, M, mask)
            if VARIANT == 3:
                m1 += tl.sum(tl.sum(sum1, axis=1), axis=0)
                m2 += tl.sum(tl.sum(sum_t, axis=1), axis=0)
            else:
                m1 += tl.sum(sum1, axis=0)[None, :]
                m2 += tl.sum(sum_t, axis=0)[None, :]
        if VARIANT == 3:
            m1, m2 = m1 / (N * K * M), m2 / (N * K * M)
        else:
            m1, m2 = m1 / (N * M), m2 / (N * M)
    zero = tl.zeros([BLOCK_N, BLOCK_K], ACC)
    dgamma = tl.zeros([BLOCK_K], ACC)
    dbias = tl.zeros([BLOCK_K], ACC)
    dlam = tl.zeros([BLOCK_K], ACC)
    for start in range(0, N, BLOCK_N):  # pass 2: the coefficients of dx, and dγ, dβ, dλ
        mask, at, m, v = _block(mean_ptr, var_ptr, start, N, C, cs, kmask, BLOCK_N)
        s1 = tl.load(s1_ptr + at, mask=mask, other=0.0)
        s2 = tl.load(s2_ptr + at, mask=mask, other=0.0)
        a, k, b, p, q = _through_batch(
            m, v, s1, s2, mask, gamma, lam, mu, s_b, eps, M, K, VARIANT, ACC, BLOCK_N, BLOCK_K
        )
        alpha, kappa, beta0 = _normalization_backward(a, k, b, s_b, p, q, m1, m2)
        # Σ dy·T = p·S2 + q·S1 for T = p·x_c + q; first/second: the views λ and 1 − λ weigh
        if VARIANT == 0:  # y = γλ·ĝ + γ(1 − λ)·b̂ + β
            mu_g, s_g = _group_normalizer(m, v, mask, K, eps)
            q_g = s_g * (m - mu_g)
            g_a, g_k, g_b = _group_backward(
                gamma * lam + zero, zero, zero, s_g, s_g + zero, q_g, s1, s2, v, M, mask, K
            )
            alpha, kappa, beta0 = alpha + g_a, kappa + g_k, beta0 + g_b
            first = s_g * s2 + q_g * s1  # Σ dy·ĝ
            diff = (s_g - p) * s2 + (q_g - q) * s1  # Σ dy·(ĝ − b̂)
        elif VARIANT == 1:  # z = GN(x);  y = γλ·z + γ(1 − λ)·BN(z) + β
            mu_g, s_g = _group_normalizer(m, v, mask, K, eps)
            q_z = s_g * (m - mu_g)
            alpha, kappa, beta0 = _group_backward(
                alpha + gamma * lam, kappa, beta0, s_g, s_g + zero, q_z, s1, s2, v, M, mask, K
            )
            first = s_g * s2 + q_z * s1  # Σ dy·z
            diff = s_g * (1 - s_b) * s2 + ((1 - s_b) * q_z + s_b * mu) * s1  # Σ dy·(z − BN(z))
        elif VARIANT == 2:  # z = BN(x);  y = γλ·GN(z) + γ(1 − λ)·z + β
            mu_gz, s_gz = _group_normalizer(q, s_b * s_b * v, mask, K, eps)
            first = s_gz * s_b * s2 + s_gz * (q - mu_gz) * s1  # Σ dy·GN(z)
            diff = s_b * (s_gz - 1) * s2 + ((s_gz - 1) * q - s_gz * mu_gz) * s1  # Σ dy·(GN(z) − z)
        else:  # BGN: y = γ·ẑ + β (λ = 0)
            first = p * s2 + q * s1  # Σ dy·ẑ
            diff = zero
        tl.store(alpha_ptr + at, alpha, mask=mask)
        tl.store(kappa_ptr + at, kappa, mask=mask)
        tl.store(beta0_ptr + at, beta0, mask=mask)
        # dγ = Σ dy·(λ·first view + (1 − λ)·second view); dλ = γ·Σ dy·(first − second), formed
        # without subtracting the two sums (they nearly cancel where the views nearly agree)
        dgamma += tl.sum(tl.where(mask, first - (1 - lam) * diff, 0.0), axis=0)
        dbias += tl.sum(tl.where(mask, s1, 0.0), axis=0)
        dlam += tl.sum(tl.where(mask, gamma * diff, 0.0), axis=0)
    tl.store(dweight_ptr + cs, dgamma, mask=kmask)
    tl.store(dbias_ptr + cs, dbias, mask=kmask)
    if HAS_LAMBDA:
        lam1 = tl.sum(lam, axis=0)
        tl.store(dtheta_ptr + cs, dlam * lam1 * (1 - lam1), mask=kmask)
