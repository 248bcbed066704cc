"""The fused CPU kernels: built on this machine (a killed build blocks no later one), equal to PyTorch's ops."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rohydr.kernels import cpu as cpu_kernels
from rohydr.kernels.cpu import stock_kernels
from rohydr.kernels.ops import future_mask
from rohydr.models.dit import DiT1d
from rohydr.models.fusion import FusionNetwork

UNSUPPORTED = cpu_kernels.cpu_supported()


def test_a_killed_build_does_not_block_later_ones(tmp_path):
    lock = tmp_path / "lock"
    assert not cpu_kernels.clear_stale_lock(tmp_path)
    lock.touch()  # a build in progress
    assert not cpu_kernels.clear_stale_lock(tmp_path) and lock.exists()
    old = time.time() - cpu_kernels.STALE_LOCK_SECONDS - 1
    os.utime(lock, (old, old))  # a build killed long ago
    with pytest.warns(RuntimeWarning, match="stale build lock"):
        assert cpu_kernels.clear_stale_lock(tmp_path)
    assert not lock.exists()


@pytest.fixture(scope="module")
def ops():
    if UNSUPPORTED is not None:
        pytest.skip(f"fused kernels need AVX2: {UNSUPPORTED}")
    loaded = cpu_kernels.load()
    assert loaded is not None, f"the kernels did not build: {cpu_kernels.unavailable_reason()}"
    return loaded


def reference_attention(q, k, v, heads: int, causal: bool) -> torch.Tensor:
    """PyTorch's attention in float64, rounded to float32."""
    (B, T, C), S = q.shape, k.shape[1]
    q, k, v = (x.double().reshape(B, -1, heads, C // heads).transpose(1, 2) for x in (q, k, v))
    allowed = future_mask(T, S, q.device) if causal else None
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed).transpose(1, 2).reshape(B, T, C).float()


@pytest.mark.parametrize("B,T,S,heads,width", [(3, 48, 48, 16, 4), (2, 13, 13, 4, 8), (5, 50, 50, 2, 3),
                                               (1, 1, 1, 1, 1), (2, 8, 8, 3, 5), (1, 70, 70, 2, 4),
                                               (2, 20, 33, 8, 4), (2, 33, 20, 8, 4), (2, 17, 17, 2, 8),
                                               (2, 9, 9, 1, 9), (2, 40, 40, 2, 24), (1, 30, 200, 2, 12)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_equals_scaled_dot_product_attention(ops, B, T, S, heads, width, causal):
    torch.manual_seed(0)
    C = heads * width
    q = torch.randn(B, T, C) * 3  # large scores: the softmax's shift matters
    k, v = (torch.randn(B, S, 2 * C) * 3).chunk(2, dim=2)  # row-strided views, as a packed projection's
    torch.testing.assert_close(ops.attention(q, k, v, heads, causal), reference_attention(q, k, v, heads, causal),
                               rtol=1e-5, atol=1e-5)


def test_causal_attention_gives_future_keys_no_weight_at_all(ops):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 20, 16)
    v[:, 10:] = 3e38  # the first 10 queries must not see these at all: even a weight of 2^-126 would show
    y = ops.attention(q, k, v, 4, True)
    torch.testing.assert_close(y[:, :10], reference_attention(q[:, :10], k[:, :10], v[:, :10], 4, True),
                               rtol=1e-5, atol=1e-5)


def test_attention_rejects_what_it_cannot_compute(ops):
    x = torch.randn(2, 4, 12)
    with pytest.raises(RuntimeError, match="float32"):
        ops.attention(x.double(), x, x, 2, False)
    with pytest.raises(RuntimeError, match="heads"):
        ops.attention(x, x, x, 5, False)
    with pytest.raises(RuntimeError, match=r"\(B, S, C\)"):
        ops.attention(x, x[:, :3], x, 2, False)


def test_gelu_equals_the_tanh_approximation_in_place(ops):
    x = torch.cat([torch.linspace(-100, 100, 20001), torch.randn(1003) * 3,
                   torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-4])])
    expected = F.gelu(x, approximate="tanh")
    result = ops.gelu_tanh_(x)
    assert result.data_ptr() == x.data_ptr()
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [64, 13, 24])
def test_layernorm_modulate_equals_layer_norm_then_modulate(ops, channels):
    torch.manual_seed(0)
    x = torch.randn(4, 7, channels) * 3 + 1
    shift, scale, _ = torch.randn(4, 1, 3 * channels).chunk(3, dim=2)  # strided views, as the DiT's
    expected = torch.addcmul(shift, F.layer_norm(x, (channels,), eps=1e-6), 1 + scale)
    torch.testing.assert_close(ops.layernorm_modulate(x, shift[:, 0], scale[:, 0], 1e-6), expected,
                               rtol=1e-5, atol=1e-5)


def test_dit_gives_the_same_noise_on_every_kernel_path(ops, monkeypatch):
    torch.manual_seed(0)
    dit = DiT1d(d=6, length=20, hidden=32, depth=2, heads=8).eval()
    for p in dit.parameters():
        torch.nn.init.normal_(p, std=0.1)  # adaLN-Zero starts as the identity: make every block matter
    x, cond, t = torch.randn(4, 20, 6), torch.randn(4, 20, 6), torch.tensor([0, 10, 500, 999])
    calls = []
    for name in ("attention", "gelu_tanh_", "layernorm_modulate"):
        original = getattr(ops, name)
        monkeypatch.setattr(ops, name, lambda *args, _f=original, _n=name: calls.append(_n) or _f(*args))
    with torch.no_grad():
        fused = dit(x, t, cond)
        assert sorted(set(calls)) == ["attention", "gelu_tanh_", "layernorm_modulate"]
        calls.clear()
        with stock_kernels():
            stock = dit(x, t, cond)  # scaled_dot_product_attention, aten LayerNorm and GELU
        monkeypatch.setenv(cpu_kernels.ENV_SWITCH, "0")
        batched = dit(x, t, cond)  # small_head_attention
    with torch.enable_grad():
        autograd = dit(x, t, cond).detach()
    assert calls == []  # neither the switch, nor stock_kernels, nor autograd reaches the kernels
    for other in (stock, batched, autograd):
        torch.testing.assert_close(fused, other, rtol=1e-5, atol=1e-5)
    assert fused.abs().max() > 0.1


@pytest.mark.parametrize("causal", [False, True])
def test_fusion_gives_the_same_vector_with_and_without_the_kernels(ops, causal, monkeypatch):
    torch.manual_seed(0)
    rates = {"l": 0.5, "a": 0.5, "v": 0.5}
    fusion = FusionNetwork(8, 2, 2, 3, rates, 0.5, 0.5, 0.5, causal=causal).eval()
    feats = tuple(torch.randn(5, 11, 8) for _ in range(3))
    calls = []
    original = ops.attention
    monkeypatch.setattr(ops, "attention", lambda *args: calls.append(args[-1]) or original(*args))
    with torch.no_grad():
        fused = fusion(feats)
        assert calls == [causal] * (6 * 2 + 3 * 3)  # six cross-modal encoders of 2 layers, three memories of 3
        with stock_kernels():
            stock = fusion(feats)
    assert len(calls) == 21
    torch.testing.assert_close(fused, stock, rtol=1e-5, atol=1e-5)



def _load_in_subprocess(extensions: Path, cxx: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions), "CXX": cxx}
    code = "from rohydr.kernels import cpu as cpu_kernels; print(cpu_kernels.load() is None)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(UNSUPPORTED is not None, reason=f"fused kernels need AVX2: {UNSUPPORTED}")
def test_without_a_compiler_one_line_says_so_and_no_later_process_retries(tmp_path):
    first = _load_in_subprocess(tmp_path, str(tmp_path / "no-such-c++"))
    assert first.returncode == 0 and first.stdout.strip() == "True", first.stderr
    lines = first.stderr.strip().splitlines()
    assert len(lines) == 1 and "no working C++ compiler" in lines[0], first.stderr
    assert "building" not in first.stderr and "ninja" not in first.stderr
    [marker] = tmp_path.glob(f"*/{cpu_kernels.FAILED_MARKER}")
    # A later process does not try again, even with a compiler now at hand: the failure is remembered.
    second = _load_in_subprocess(tmp_path, shutil.which("c++") or "c++")
    assert second.stdout.strip() == "True"
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "remembered in" in lines[0] and str(marker) in lines[0], second.stderr
    assert not list(tmp_path.glob("*/*.so")) and not list(tmp_path.glob("*/build.log"))
