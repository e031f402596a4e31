"""A tester base class run on tiny tensors for every registered architecture (as smp's tests do).

Subclass :class:`ModelTester` in ``test_architectures.py`` with the architecture's ``name`` (and a
``fuser`` for the architectures that take one, an ``encoder`` for a backbone: ``test_backbones.py``);
pytest collects the subclass (``Test...``) and runs every check below.
``FINGERPRINT`` is the SHA-256 of the initial ``state_dict`` (names, shapes, values) under
``torch.manual_seed(0)`` at :attr:`ModelTester.tiny`: the guard that module construction order and
parameter names, hence old checkpoints and the demo's results, do not change by accident.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.core.input_spec import InputSpec
from mrseg.models import DEFAULT_FUSER, SegmentationModel, create_model, model_options
from mrseg.models.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from mrseg.models.export import export_model
from mrseg.models.fold import fold_batch_norm

MPPS_BY_J = {1: [0.5], 2: [0.5, 2.0], 3: [0.5, 1.0, 2.0], 4: [0.5, 1.0, 2.0, 4.0]}


def patches(j: int, size: int, n: int = 2, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """Seeded random input ``(n, j, channels, size, size)``."""
    return torch.randn(n, j, channels, size, size, generator=torch.Generator().manual_seed(seed))


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every batch norm non-trivial affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.1
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5


def fingerprint(model: nn.Module) -> str:
    """SHA-256 over the state dict's names, shapes and bytes, in order."""
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(value.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


class ModelTester:
    """Checks every architecture must pass; subclasses set ``name``, ``fuser``, ``j`` and ``FINGERPRINT``."""

    name: ClassVar[str]
    #: The fuser, passed to the architectures whose options include ``fuser``.
    fuser: ClassVar[str] = DEFAULT_FUSER
    #: Branches J used by the checks (1 for the U-Net).
    j: ClassVar[int] = 3
    #: The ``encoder`` option ("unet" or a timm backbone) and the smallest depth it takes.
    encoder: ClassVar[str] = "unet"
    min_depth: ClassVar[int] = 0
    #: Initial state_dict fingerprint of :meth:`tiny` under seed 0 (``None``: not pinned).
    FINGERPRINT: ClassVar[str | None] = None

    def build(self, j: int | None = None, **kwargs: Any) -> SegmentationModel:
        options: dict[str, Any] = {"width": 2, "depth": 2, "encoder": self.encoder, **kwargs}
        if "fuser" in model_options(self.name):
            options["fuser"] = self.fuser
        return create_model(self.name, mpps=MPPS_BY_J[j or self.j], **options)

    def tiny(self) -> SegmentationModel:
        """The fingerprinted configuration: width 4, depth 2, two classes."""
        torch.manual_seed(0)
        return self.build(width=4, depth=2, num_classes=2)

    @pytest.mark.parametrize(("depth", "classes", "size"), [(0, 1, 8), (1, 3, 16), (2, 2, 32)])
    def test_forward_shape(self, depth: int, classes: int, size: int) -> None:
        if depth < self.min_depth:
            pytest.skip(f"{self.encoder} has no stage of stride 2**{depth}")
        model = self.build(depth=depth, num_classes=classes).eval()
        assert size % model.required_multiple == 0
        with torch.no_grad():
            out = model(patches(self.j, size))
        assert out.shape == (2, classes, size, size) and out.dtype == torch.float32

    def test_rectangular_input(self) -> None:
        with torch.no_grad():
            assert self.build().eval()(torch.randn(2, self.j, 3, 16, 48)).shape == (2, 1, 16, 48)

    def test_backward_reaches_every_parameter(self) -> None:
        model = self.build().train()
        model(patches(self.j, 16)).square().mean().backward()
        missing = [name for name, p in model.named_parameters() if p.grad is None]
        assert not missing
        for encoder in model.encoders():
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())

    def test_hparams_round_trip(self) -> None:
        model = self.build(num_classes=2, in_channels=4)
        hp = model.hparams
        assert hp["name"] == self.name and set(hp) == {"name", *model_options(self.name)}
        assert all(type(v) in (str, int, list) for v in hp.values())
        randomize_bn(model)
        rebuilt = create_model(**hp)
        rebuilt.load_state_dict(model.state_dict(), strict=True)
        x = patches(self.j, 16, channels=4)
        with torch.no_grad():
            assert torch.equal(model.eval()(x), rebuilt.eval()(x))

    def test_checkpoint_round_trip(self, tmp_path: Path) -> None:
        model = self.build().eval()
        spec = InputSpec(tuple(MPPS_BY_J[self.j]), 16)
        rebuilt = load_checkpoint(save_checkpoint(tmp_path / "m.pt", make_checkpoint(model, spec))).build_model()
        x = patches(self.j, 16)
        with torch.no_grad():
            assert torch.equal(model(x), rebuilt(x))

    def test_refused_sizes_say_what_works(self) -> None:
        model = self.build()
        multiple = model.required_multiple
        with pytest.raises(ModelConfigError, match=rf"not a multiple of {multiple}.*sizes that work"):
            model(patches(self.j, multiple + multiple // 2, n=1))

    def test_refused_branch_count(self) -> None:
        with pytest.raises(ModelConfigError, match="expects input"):
            self.build()(patches(self.j + 1, 16, n=1))

    def test_refused_option(self) -> None:
        with pytest.raises(ModelConfigError, match=r"takes no option \['colour'\].*accepts \['mpps'"):
            self.build(colour="blue")

    def test_one_branch_is_exactly_the_unet(self) -> None:
        torch.manual_seed(3)
        unet = create_model("unet", mpps=[0.5], width=3, depth=2, encoder=self.encoder)
        randomize_bn(unet)
        one = self.build(j=1, width=3, depth=2)
        assert list(one.state_dict()) == list(unet.state_dict())
        one.load_state_dict(unet.state_dict(), strict=True)
        x = patches(1, 16)
        with torch.no_grad():
            assert torch.equal(unet.eval()(x), one.eval()(x))

    def test_traces_to_torchscript(self, tmp_path: Path) -> None:
        result = export_model(self.build(), tmp_path / "m.ts", format="torchscript", input_shape=(1, self.j, 3, 16, 16))
        assert result.output_shape == (3, 1, 16, 16) and result.max_abs_diff <= 1e-5

    def test_batch_norm_folding_is_exact_to_1e5(self) -> None:
        model = self.build(width=4, depth=2, num_classes=2).eval()
        randomize_bn(model, seed=1)
        x = patches(self.j, 32)
        with torch.no_grad():
            expected = model(x)
            norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
            folded = fold_batch_norm(model)
            got = model(x)
        left = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert folded > 0 and left == norms - folded and fold_batch_norm(model) == 0
        assert (got - expected).abs().max() <= 1e-5 * max(1.0, float(expected.abs().max()))

    def test_initial_weights_fingerprint(self) -> None:
        if self.FINGERPRINT is None:
            pytest.skip("no fingerprint pinned")
        assert fingerprint(self.tiny()) == self.FINGERPRINT
