"""timm backbones as MRN encoders: every listed backbone for J = 1..4, pretrained loading, export, prediction.

Skipped where timm cannot be imported (``pip install "mrseg[timm]"``). Pretrained weights are never
downloaded: the tests save the weights of a randomly initialised timm model themselves
(``HF_HUB_OFFLINE=1`` is set in ``conftest.py``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from model_tester import MPPS_BY_J, ModelTester, patches

from mrseg.core.input_spec import InputSpec
from mrseg.inference.runner import run_slide
from mrseg.models import SegmentationModel, create_model
from mrseg.models.backbones import BACKBONES, TimmEncoder, backbone_info, timm_unavailable
from mrseg.models.checkpoint import make_checkpoint, save_checkpoint
from mrseg.models.export import export_model
from mrseg.models.pretrained import PretrainedWeightsError, load_pretrained
from mrseg.models.profile import count_params
from mrseg.wsi.tiff import write_pyramidal_tiff

REASON = timm_unavailable()
pytestmark = [pytest.mark.timm, pytest.mark.skipif(REASON is not None, reason=f"timm not importable: {REASON}")]
#: The depth every backbone takes in these tests (ConvNeXt: strides 4, 8; the others 2, 4, 8).
DEPTH = 3


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: these tensors are tiny, and on a busy machine two threads spin-wait on each other
    (a ResNet-18 MRN's forward and backward at 64 px, J = 4, under load: 22.9 s with 2 threads, 0.30 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def mrn(backbone: str, j: int) -> SegmentationModel:
    """The ``mrn_bilinear`` of ``backbone`` for ``J = j`` (depth :data:`DEPTH`, width 2, seed 0), built once per run."""
    torch.manual_seed(0)
    return create_model("mrn_bilinear", mpps=MPPS_BY_J[j], encoder=backbone, width=2, depth=DEPTH)


def timm_model(name: str, seed: int = 1, **kwargs: Any) -> torch.nn.Module:
    """A randomly initialised plain timm model (the source of the 'pretrained' weights the tests save)."""
    import timm

    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, **kwargs)


class TestMRNBilinearResNet18(ModelTester):
    name = "mrn_bilinear"
    encoder = "resnet18"
    j = 2
    min_depth = 1


class TestUNetEfficientNetB0(ModelTester):
    name = "unet"
    encoder = "efficientnet_b0"
    j = 1
    min_depth = 1


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_builds_for_j_1_to_4(backbone: str) -> None:
    torch.manual_seed(0)
    unet = create_model("unet", mpps=[0.5], encoder=backbone, width=2, depth=DEPTH)
    for j in (1, 2, 3, 4):
        model = mrn(backbone, j)
        size = model.required_multiple  # the smallest input: 8 px (J = 1) to 64 px (J = 4)
        assert size == 2**DEPTH * {1: 1, 2: 4, 3: 4, 4: 8}[j]  # deepest stride x max gamma
        model.zero_grad(set_to_none=True)
        out = model.train()(patches(j, size))
        assert out.shape == (2, 1, size, size)
        out.square().mean().backward()
        assert all(p.grad is not None for p in model.parameters()), f"{backbone} J={j}: unused parameters"
        assert [len(f.upscale) for f in model.fusions] == ([j - 1] * len(model.fusions) if j > 1 else [])
        if j == 1:  # the one-branch MRN is the plain backbone U-Net
            assert list(model.state_dict()) == list(unet.state_dict())
            model.load_state_dict(unet.state_dict())
            x = patches(1, size)
            with torch.no_grad():
                assert torch.equal(model.eval()(x), unet.eval()(x))


def test_stages_follow_the_backbone_strides() -> None:
    info = backbone_info("convnext_tiny")
    assert info.reductions == (4, 8, 16, 32) and info.out_indices(4) == [0, 1, 2]
    # one shared backbone instead of four copies: the strides and gammas are the same
    model = create_model("mrn_bilinear", mpps=MPPS_BY_J[4], encoder="convnext_tiny", width=2, depth=4,
                         branch_weights="shared")  # fmt: skip
    assert model.encoder.reductions == [4, 8, 16] and model.required_multiple == 16 * 8
    assert model.min_depth == 2 and model.depth == 4
    assert [f.upscale[0].gamma for f in model.fusions] == [2, 2, 2]  # gamma is the same at every stage
    with pytest.raises(Exception, match=r"strides \[4, 8, 16, 32\]: depth 1 .*choose depth in \[2, 3, 4, 5\]"):
        create_model("unet", mpps=[0.5], encoder="convnext_tiny", depth=1)
    with pytest.raises(Exception, match="'resnet_nonexistent' is neither 'unet' nor a timm model"):
        create_model("unet", mpps=[0.5], encoder="resnet_nonexistent", depth=3)


def test_shared_weights_have_j_times_fewer_encoder_parameters() -> None:
    separate = mrn("resnet18", 4)
    shared = create_model(
        "mrn_bilinear", mpps=MPPS_BY_J[4], encoder="resnet18", width=2, depth=DEPTH, branch_weights="shared"
    )
    encoder = count_params(shared.encoder)
    assert sum(count_params(e) for e in separate.encoders()) == 4 * encoder
    assert count_params(separate) - count_params(shared) == 3 * encoder


def test_normalisation_is_the_backbones() -> None:
    import timm

    model = create_model("unet", mpps=[0.5], encoder="resnet18", depth=DEPTH)
    cfg = timm.models.get_pretrained_cfg("resnet18")
    assert model.normalization == (tuple(cfg.mean), tuple(cfg.std))
    assert create_model("unet", mpps=[0.5], depth=2).normalization == ((0.5,) * 3, (0.25,) * 3)


def test_freezing_a_backbone_stem() -> None:
    model = create_model("mrn_bilinear", mpps=[0.5, 1.0], encoder="resnet18", depth=DEPTH, freeze=["stage0"])
    frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    assert frozen == sorted(f"{e}.backbone.model.{k}" for e in ("encoder", "context_encoders.0") for k in (
        "conv1.weight", "bn1.weight", "bn1.bias"))  # fmt: skip
    stages = model.encoder.stages()
    assert [len(s) for s in stages] == [3, 12, 15]  # stem; layer1; layer2 (with its downsample)


# ---------------------------------------------------------------------------------------- pretrained


@pytest.mark.parametrize("backbone", BACKBONES)
def test_pretrained_weights_from_a_file(tmp_path: Path, backbone: str) -> None:
    from safetensors.torch import save_file

    source = timm_model(backbone).state_dict()
    save_file(source, str(tmp_path / "w.safetensors"))
    model = create_model("mrn_bilinear", mpps=[0.5, 2.0], encoder=backbone, width=2, depth=DEPTH)
    assert load_pretrained(model, tmp_path / "w.safetensors") == tmp_path / "w.safetensors"
    for encoder in model.encoders():
        assert isinstance(encoder, TimmEncoder)
        for key, value in encoder.model.state_dict().items():
            assert torch.equal(value, source[key]), key


def test_pretrained_torch_file_wrapped_and_adapted_to_other_channels(tmp_path: Path) -> None:
    source = timm_model("resnet18").state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.items()}, "epoch": 3}, tmp_path / "w.pth")
    model = create_model("unet", mpps=[0.5], encoder="resnet18", depth=DEPTH, in_channels=4)
    load_pretrained(model, str(tmp_path / "w.pth"))
    assert model.encoder.model.conv1.weight.shape == (64, 4, 7, 7)
    assert torch.equal(model.encoder.model.layer1[0].conv1.weight, source["layer1.0.conv1.weight"])


def test_pretrained_mismatches_name_the_file_and_the_first_key(tmp_path: Path) -> None:
    model = create_model("unet", mpps=[0.5], encoder="resnet18", depth=DEPTH)
    source = timm_model("resnet18").state_dict()
    lacking = {k: v for k, v in source.items() if k != "layer1.0.bn1.weight"}
    torch.save(lacking, tmp_path / "lacking.pth")
    with pytest.raises(PretrainedWeightsError, match=r"lacking\.pth: no tensor for 'layer1\.0\.bn1\.weight'"):
        load_pretrained(model, tmp_path / "lacking.pth")
    torch.save({**source, "layer2.0.conv1.weight": torch.zeros(128, 64, 1, 1)}, tmp_path / "shape.pth")
    with pytest.raises(PretrainedWeightsError, match=r"shape\.pth: 'layer2\.0\.conv1\.weight' has shape \(128, 64, 1,"):
        load_pretrained(model, tmp_path / "shape.pth")
    torch.save(timm_model("resnet34").state_dict(), tmp_path / "r34.pth")
    with pytest.raises(PretrainedWeightsError, match=r"r34\.pth: unexpected key 'layer1\.2\.conv1\.weight'"):
        load_pretrained(model, tmp_path / "r34.pth")
    with pytest.raises(PretrainedWeightsError, match=r"absent\.safetensors: pretrained weights not found"):
        load_pretrained(model, tmp_path / "absent.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(PretrainedWeightsError, match=r"junk\.pth: not a readable weights file"):
        load_pretrained(model, tmp_path / "junk.pth")
    with pytest.raises(PretrainedWeightsError, match="need a timm encoder"):
        load_pretrained(create_model("unet", mpps=[0.5], depth=2), tmp_path / "r34.pth")


def test_pretrained_from_the_hugging_face_cache(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    snapshot = tmp_path / "models--timm--resnet18.a1_in1k" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (tmp_path / "models--timm--resnet18.a1_in1k" / "refs").mkdir()
    (tmp_path / "models--timm--resnet18.a1_in1k" / "refs" / "main").write_text("0123abc")
    source = timm_model("resnet18").state_dict()
    save_file(source, str(snapshot / "model.safetensors"))
    model = create_model("unet", mpps=[0.5], encoder="resnet18", depth=DEPTH)
    for name in ("resnet18", "resnet18.a1_in1k"):  # the default tag, or named
        assert load_pretrained(model, name, cache_dir=tmp_path) == snapshot / "model.safetensors"
    assert torch.equal(model.encoder.model.conv1.weight, source["conv1.weight"])
    with pytest.raises(PretrainedWeightsError, match=r"'resnet18\.tv_in1k' is not cached .*never downloads"):
        load_pretrained(model, "resnet18.tv_in1k", cache_dir=tmp_path)
    with pytest.raises(PretrainedWeightsError, match="another architecture than the encoder 'resnet18'"):
        load_pretrained(model, "resnet34", cache_dir=tmp_path)


def test_training_loads_model_pretrained(tmp_path: Path) -> None:
    from mrseg.training.config import load_config, update_config
    from mrseg.training.state import build_model

    source = timm_model("resnet18").state_dict()
    torch.save(source, tmp_path / "r18.pth")
    config = update_config(load_config("synthetic_mrn_resnet18"), {"model.pretrained": str(tmp_path / "r18.pth")})
    model = build_model(config)
    assert torch.equal(model.context_encoders[2].model.layer2[1].conv2.weight, source["layer2.1.conv2.weight"])
    assert config.model.input_spec().mean == model.normalization[0]  # the recipe stores what the backbone expects


# -------------------------------------------------------------------------------- export and slides


@pytest.mark.parametrize("backbone", BACKBONES)
def test_torchscript_export_of_every_backbone(tmp_path: Path, backbone: str) -> None:
    model = mrn(backbone, 2).eval()
    shape = (1, 2, 3, 32, 32)  # twice the smallest size: torch.export specialises ConvNeXt's batch on a 1 x 1 crop
    result = export_model(model, tmp_path / "m.ts", format="torchscript", input_shape=shape)
    assert result.output_shape == (3, 1, 32, 32) and result.max_abs_diff <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize(("backbone", "j"), [(b, 2 if b == "resnet18" else 1) for b in BACKBONES])
def test_onnx_export_of_every_backbone(tmp_path: Path, backbone: str, j: int) -> None:
    """J = 1 but for ResNet-18 (the fusions): the exporter's cost is torch.export's tracing, per operation."""
    pytest.importorskip("onnxruntime")
    shape = (1, j, 3, 32, 32)
    result = export_model(mrn(backbone, j).eval(), tmp_path / "m.onnx", format="onnx", input_shape=shape)
    assert result.output_shape == (3, 1, 32, 32) and result.max_abs_diff <= 1e-4


def test_whole_slide_prediction_with_a_backbone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("mrn_bilinear", mpps=[1.0, 2.0], encoder="resnet18", width=2, depth=DEPTH).eval()
    mean, std = model.normalization
    spec = InputSpec((1.0, 2.0), 32, mean=mean, std=std)  # type: ignore[arg-type]
    checkpoint = save_checkpoint(tmp_path / "r18.pt", make_checkpoint(model, spec))
    t = np.random.default_rng(0).integers(0, 60, (120, 160, 1))
    image = np.full((160, 200, 3), 255, np.uint8)
    image[20:140, 20:180] = np.concatenate([210 - t, 110 - t, 190 - t], axis=2).astype(np.uint8)  # pink tissue
    slide = write_pyramidal_tiff(tmp_path / "s.tif", image, 1.0, compression="zlib", min_size=64)
    result = run_slide(checkpoint, slide, tmp_path / "out")
    assert result.status == "done" and result.tiles > 0
    assert (tmp_path / "out" / "s.tif").is_file() and (tmp_path / "out" / "s.json").is_file()


# ------------------------------------------------------------------------------------------ costs


def test_models_command_lists_a_backbone_for_j_1_to_4() -> None:
    import json

    from typer.testing import CliRunner

    from mrseg.cli import app

    args = ["models", "--encoder", "resnet18", "--per-j", "--size", "64", "--width", "4", "--depth", "3", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["name"], r["j"]) for r in rows] == [
        ("unet", 1),
        *((name, j) for j in (2, 3, 4) for name in ("mrn_bilinear", "mrn_transposed")),
    ]
    assert {r["encoder"] for r in rows} == {"resnet18"} and rows[3]["mpps"] == [0.5, 1.0, 2.0]
    bilinear = [r for r in rows if r["name"] in ("unet", "mrn_bilinear")]
    assert all(
        a["saved_bytes"] < b["saved_bytes"] and a["params"] < b["params"] for a, b in itertools.pairwise(bilinear)
    )
    model = create_model("mrn_bilinear", mpps=MPPS_BY_J[3], encoder="resnet18", width=4, depth=3)
    assert rows[3]["params"] == count_params(model)
