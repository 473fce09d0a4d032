"""Frozen-encoder registry: weight loading paths, exact preprocessing, freezing, plug-ins, errors."""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys
import urllib.error
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rise_data import __version__
from rise_data.encode import efficientnet_lite as el
from rise_data.encode._torchvision import import_torchvision
from rise_data.encode.encoders import (
    RESNET18_FILE,
    Encoder,
    EncoderRecipe,
    encoder_names,
    library_versions,
    make_encoder,
    sha256_file,
)
from rise_data.encode.spec import EncoderError, Preprocessing

tv = import_torchvision()


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 256, size=(4, 210, 160, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def resnet_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    net = tv.models.resnet18(weights=None)
    # Non-trivial BN statistics, so a loader that skipped buffers would give different outputs.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.state_dict()


@pytest.fixture
def no_download(monkeypatch):
    """Any download attempt fails at once, as it does offline; the test never touches the network."""
    calls = []

    def fail(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    return calls


def _resnet_reference(sd: dict[str, torch.Tensor], frames: torch.Tensor) -> torch.Tensor:
    net = tv.models.resnet18(weights=None)
    net.load_state_dict(sd)
    net.fc = nn.Identity()
    net.eval()
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return net((x - mean) / std)


# --------------------------------------------------------------------------- resnet18


@pytest.mark.parametrize("with_fc", [True, False])
def test_resnet18_from_file_matches_torchvision(tmp_path, frames, resnet_sd, with_fc):
    sd = resnet_sd if with_fc else {k: v for k, v in resnet_sd.items() if not k.startswith("fc.")}
    path = tmp_path / "r18.pth"
    torch.save(sd, path)

    enc = make_encoder("resnet18", weights=path)
    out = enc(frames)
    assert out.shape == (4, 512) and out.dtype == torch.float32
    assert torch.equal(out, enc(frames))  # deterministic
    assert enc.weights_id == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert enc.spec.weights == str(path.resolve())  # an absolute path: a record read elsewhere still finds it
    torch.testing.assert_close(out, _resnet_reference(resnet_sd, frames), rtol=1e-4, atol=1e-5)

    rec = json.loads(json.dumps(enc.spec.to_json()))
    assert rec["name"] == "resnet18" and rec["dim"] == 512 and rec["output_layer"] == "avgpool"
    assert rec["preprocessing"]["resolution"] is None and rec["preprocessing"]["source"] == "frame"
    versions = library_versions()  # the installed packages (read without importing torchvision)
    assert versions["rise"] == __version__ and versions["torch"] == torch.__version__
    assert tv.__version__.split("+")[0] == versions["torchvision"].split("+")[0]


def test_resnet18_missing_weights_offline_is_actionable(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(EncoderError) as err:
        make_encoder("resnet18")
    msg = str(err.value)
    assert RESNET18_FILE in msg and "--weights" in msg and "untrained" in msg
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in msg
    assert "\n" not in msg
    assert no_download  # it did try the download first


def test_resnet18_uses_hub_cache(tmp_path, monkeypatch, frames, resnet_sd, no_download):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / RESNET18_FILE
    cached.parent.mkdir(parents=True)
    torch.save(resnet_sd, cached)

    enc = make_encoder("resnet18")
    assert not no_download
    assert enc.weights_id == "sha256:" + sha256_file(cached)
    assert enc.spec.weights is None  # the default source, found again by the same rule when rebuilt
    torch.testing.assert_close(
        enc(frames[:2]), _resnet_reference(resnet_sd, frames[:2]), rtol=1e-4, atol=1e-5
    )


def test_resnet18_untrained_is_seeded_and_leaves_rng_alone(frames):
    state = torch.random.get_rng_state()
    a, b = make_encoder("resnet18", weights="untrained"), make_encoder("resnet18", weights="untrained")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.weights_id == "untrained" and a.spec.weights == "untrained"
    assert torch.equal(a(frames[:1]), b(frames[:1]))


def test_bad_weights_files(tmp_path, resnet_sd):
    with pytest.raises(EncoderError, match="does not exist"):
        make_encoder("resnet18", weights=tmp_path / "nope.pth")

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(EncoderError, match="cannot read weights file"):
        make_encoder("resnet18", weights=garbage)

    wrong_shape = dict(resnet_sd)
    wrong_shape["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(wrong_shape, tmp_path / "shape.pth")
    with pytest.raises(EncoderError, match=r"does not fit resnet18.*conv1\.weight"):
        make_encoder("resnet18", weights=tmp_path / "shape.pth")

    missing_key = {k: v for k, v in resnet_sd.items() if k != "layer1.0.conv1.weight"}
    torch.save(missing_key, tmp_path / "missing.pth")
    with pytest.raises(EncoderError, match="layer1.0.conv1.weight"):
        make_encoder("resnet18", weights=tmp_path / "missing.pth")

    # efficientnet weights are a valid state dict, just not a resnet18 one
    with pytest.raises(EncoderError, match="does not fit resnet18"):
        make_encoder("resnet18", weights=el.default_weights_path())

    torch.save({"step": 3, "lr": 0.1}, tmp_path / "not_tensors.pth")
    with pytest.raises(EncoderError, match="not a state dict"):
        make_encoder("resnet18", weights=tmp_path / "not_tensors.pth")

    torch.save({"x": Fraction(1, 3)}, tmp_path / "pickle.pth")  # weights_only=True refuses arbitrary classes
    with pytest.raises(EncoderError, match="cannot read weights file"):
        make_encoder("resnet18", weights=tmp_path / "pickle.pth")


# --------------------------------------------------------------------------- efficientnet-lite0


def test_efficientnet_lite0_shipped_weights(frames):
    sd = torch.load(el.default_weights_path(), weights_only=True, map_location="cpu")
    result = el.EfficientNetLite0().load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    enc = make_encoder("efficientnet-lite0")
    assert enc.weights_id.startswith("sha256:57934424")
    assert enc.preprocessing.resolution == (224, 224)
    out = enc(frames[:2])
    assert out.shape == (2, 1280) and torch.isfinite(out).all()
    assert (out >= 0).all() and (out <= 6).all()  # pooled ReLU6 activations
    assert out.std() > 0.05 and not torch.allclose(out[0], out[1])


def test_efficientnet_lite0_96_is_the_same_network_on_a_smaller_input(frames):
    small, full = make_encoder("efficientnet-lite0-96"), make_encoder("efficientnet-lite0")
    assert small.preprocessing.resolution == (96, 96) and small.weights_id == full.weights_id
    assert small.spec.name == "efficientnet-lite0-96" and small.dim == full.dim == 1280
    big = full.model.state_dict()
    assert all(torch.equal(v, big[k]) for k, v in small.model.state_dict().items())
    assert small.preprocess(frames[:2]).shape[-2:] == (96, 96)
    out = small(frames[:2])
    assert out.shape == (2, 1280) and torch.isfinite(out).all() and out.std() > 0.05
    assert not torch.allclose(small(frames[:2]), full(frames[:2]))


def test_efficientnet_lite0_gray_obs_matches_replicated_rgb():
    rng = np.random.default_rng(1)
    obs = torch.from_numpy(rng.integers(0, 256, size=(2, 84, 84), dtype=np.uint8))
    from_obs = make_encoder("efficientnet-lite0", source="obs")
    as_rgb = make_encoder("efficientnet-lite0")
    assert from_obs.preprocessing.source == "obs"
    torch.testing.assert_close(from_obs(obs), as_rgb(obs[..., None].expand(-1, -1, -1, 3)))


@pytest.mark.parametrize("size", [7, 8, 224, 225])
@pytest.mark.parametrize("k", [3, 5])
def test_conv2d_same_padding_is_tensorflow_same(size, k):
    conv = el.Conv2dSame(2, 2, k, stride=2)
    x = torch.randn(1, 2, size, size)
    out = conv(x)
    assert out.shape[-1] == math.ceil(size / 2)
    total = max((math.ceil(size / 2) - 1) * 2 + k - size, 0)
    ref = F.conv2d(
        F.pad(x, (total // 2, total - total // 2) * 2), conv.weight, stride=2
    )  # extra pixel right/bottom
    torch.testing.assert_close(out, ref)


# --------------------------------------------------------------------------- downsample


def _naive_adaptive_avg(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    h, w = img.shape
    res = np.empty((out_h, out_w))
    for i in range(out_h):
        y0, y1 = (i * h) // out_h, -((-(i + 1) * h) // out_h)
        for j in range(out_w):
            x0, x1 = (j * w) // out_w, -((-(j + 1) * w) // out_w)
            res[i, j] = img[y0:y1, x0:x1].mean()
    return res


def test_downsample_exact_values(frames):
    enc = make_encoder("downsample")
    out = enc(frames).numpy()
    assert out.shape == (4, 256) and enc.weights_id == "none" and enc.dim == 256
    for b in range(len(frames)):
        gray = frames[b].numpy().astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        ref = _naive_adaptive_avg(gray, 16, 16).reshape(-1) / 255.0
        np.testing.assert_allclose(out[b], ref, atol=1e-5)

    obs = torch.from_numpy(np.random.default_rng(2).integers(0, 256, size=(3, 84, 84), dtype=np.uint8))
    enc_obs = make_encoder("downsample", source="obs")
    ref = np.stack(
        [_naive_adaptive_avg(o.astype(np.float64), 16, 16).reshape(-1) / 255.0 for o in obs.numpy()]
    )
    np.testing.assert_allclose(enc_obs(obs).numpy(), ref, atol=1e-5)
    assert enc_obs.spec.to_json()["preprocessing"] == {
        "source": "obs",
        "resolution": [16, 16],
        "channels": "gray",
        "mean": [0.0],
        "std": [1.0],
        "resize": "area",
    }
    with pytest.raises(EncoderError, match="no weights"):
        make_encoder("downsample", weights="x.pth")


# --------------------------------------------------------------------------- frozen


@pytest.mark.parametrize("name", ["resnet18", "efficientnet-lite0"])
def test_encoder_is_frozen(name, frames):
    enc = make_encoder(name, weights="untrained" if name == "resnet18" else None)
    params = list(enc.parameters())
    assert params and all(not p.requires_grad for p in params)

    holder = nn.ModuleDict({"enc": enc, "head": nn.Linear(enc.dim, 1)})
    holder.train()  # a downstream model's train() cascades into the encoder ...
    assert not enc.training and not any(m.training for m in enc.modules())  # ... and is ignored
    assert holder["head"].training

    feats = enc(frames[:2])
    assert not feats.requires_grad
    loss = holder["head"](feats).pow(2).mean()
    loss.backward()
    assert holder["head"].weight.grad is not None
    assert all(p.grad is None for p in enc.parameters())
    # BatchNorm statistics are unchanged by the forward passes.
    assert torch.equal(enc(frames[:2]), feats)


# --------------------------------------------------------------------------- preprocessing


def test_preprocess_layout_and_errors(frames):
    enc = make_encoder("downsample")
    with pytest.raises(EncoderError, match="uint8"):
        enc(frames.float())
    with pytest.raises(EncoderError, match=r"expected \(B, H, W, 3\)"):
        enc(frames[..., 0])
    with pytest.raises(EncoderError, match=r"expected \(B, H, W\)"):
        make_encoder("downsample", source="obs")(frames)
    with pytest.raises(EncoderError, match="source"):
        make_encoder("downsample", source="pixels")

    rgb = Encoder(
        "id",
        nn.Flatten(1),
        3 * 4 * 4,
        "x",
        "none",
        Preprocessing("frame", (4, 4), "rgb", (0.5,) * 3, (0.25,) * 3),
    )
    x = rgb.preprocess(frames[:2].numpy())  # numpy rows are accepted too
    assert x.shape == (2, 3, 4, 4) and x.dtype == torch.float32
    raw = frames[:2].permute(0, 3, 1, 2).float()
    ref = F.interpolate(raw, size=(4, 4), mode="bilinear", antialias=True) / 255.0
    torch.testing.assert_close(x, (ref - 0.5) / 0.25)


# --------------------------------------------------------------------------- plug-ins and names

_PLUGIN = """
from torch import nn
from rise_data.encode.encoders import Encoder
from rise_data.encode.spec import Preprocessing


def build(weights=None):
    pre = Preprocessing(source="frame", resolution=(8, 8), channels="gray", mean=(0.5,), std=(0.5,))
    return Encoder("tiny", nn.Sequential(nn.Flatten(1), nn.Linear(64, 5)), 5, "linear", f"tiny:{weights}", pre)


def build_obs(weights=None, source="frame"):
    pre = Preprocessing(source=source, resolution=(8, 8), channels="gray", mean=(0.0,), std=(1.0,))
    return Encoder("tiny-obs", nn.Flatten(1), 64, "pixels", "none", pre)


def bad(weights=None):
    return nn.Identity()
"""


def test_plugin_module_function(tmp_path, monkeypatch, frames):
    (tmp_path / "tinyenc_plugin.py").write_text(_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))

    enc = make_encoder("tinyenc_plugin:build", weights="w.pth")
    assert isinstance(enc, Encoder) and enc.weights_id == "tiny:w.pth"
    out = enc(frames[:3])
    assert out.shape == (3, 5)
    assert all(not p.requires_grad for p in enc.parameters()) and not enc.training
    assert enc.spec.name == "tinyenc_plugin:build" and enc.name == "tiny"  # the spec names what rebuilds it

    obs_enc = make_encoder("tinyenc_plugin:build_obs", source="obs")
    assert obs_enc(frames[:2, :, :, 0]).shape == (2, 64)
    with pytest.raises(EncoderError, match="source"):
        make_encoder("tinyenc_plugin:build", source="obs")  # build() cannot read obs rows

    with pytest.raises(EncoderError, match="must return rise_data.encode.encoders.Encoder, got Identity"):
        make_encoder("tinyenc_plugin:bad")
    with pytest.raises(EncoderError, match="no callable"):
        make_encoder("tinyenc_plugin:missing")
    with pytest.raises(EncoderError, match="cannot import"):
        make_encoder("no_such_module_for_rise:build")


def test_unknown_name_lists_registry():
    assert encoder_names() == ["resnet18", "efficientnet-lite0", "efficientnet-lite0-96", "downsample"]
    with pytest.raises(EncoderError) as err:
        make_encoder("vit-huge")
    msg = str(err.value)
    assert all(n in msg for n in encoder_names()) and "module.path:function" in msg


def test_import_torchvision_is_cached():
    assert import_torchvision() is tv
    assert hasattr(tv.models, "resnet18") and hasattr(tv.models, "ResNet18_Weights")


# --------------------------------------------------------------------------- EncoderRecipe: what rebuilds an encoder


def _json_round_trip(spec: EncoderRecipe) -> EncoderRecipe:
    return EncoderRecipe.from_json(json.loads(json.dumps(spec.to_json())))


@pytest.mark.parametrize(
    ("name", "weights", "source"),
    [
        ("resnet18", "untrained", "frame"),
        ("resnet18", "file", "obs"),
        ("efficientnet-lite0", None, "frame"),
        ("efficientnet-lite0-96", "untrained", "frame"),
        ("downsample", None, "frame"),
        ("downsample", None, "obs"),
    ],
)
def test_spec_round_trips_and_rebuilds_every_builtin(name, weights, source, tmp_path, resnet_sd, frames):
    if weights == "file":
        torch.save(resnet_sd, tmp_path / "r18.pth")
        weights = str(tmp_path / "r18.pth")
    enc = make_encoder(name, weights=weights, source=source)
    spec = enc.spec
    again = _json_round_trip(spec)
    assert again == spec and again.to_json() == spec.to_json()
    assert set(spec.to_json()) == {
        "name",
        "weights",
        "weights_id",
        "source",
        "dim",
        "output_layer",
        "preprocessing",
    }
    rebuilt = again.build()
    assert rebuilt.spec == spec
    rows = frames[:2] if source == "frame" else frames[:2, :, :, 0]
    assert torch.equal(rebuilt(rows), enc(rows))


_SIDE_EFFECT_PLUGIN = """
from pathlib import Path
from torch import nn
from rise_data.encode.encoders import Encoder
from rise_data.encode.spec import Preprocessing

Path({marker!r}).write_text("imported")  # visible proof that the module's code ran


def build(weights=None, source="frame"):
    pre = Preprocessing(source=source, resolution=(8, 8), channels="gray", mean=(0.5,), std=(0.5,))
    net = nn.Sequential(nn.Flatten(1), nn.Linear(64, 5))
    nn.init.constant_(net[1].weight, 0.01)
    return Encoder("tiny", net, 5, "linear", f"tiny:{{weights}}", pre)
"""


@pytest.fixture
def side_effect_plugin(tmp_path, monkeypatch):
    """A plug-in module ``sidefx_plugin`` whose import writes ``marker``; (module:function, marker)."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "sidefx_plugin.py").write_text(_SIDE_EFFECT_PLUGIN.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sidefx_plugin", raising=False)
    return "sidefx_plugin:build", marker


def test_plugin_spec_round_trips_and_is_imported_only_when_allowed(side_effect_plugin, frames):
    name, marker = side_effect_plugin
    record = {
        "name": name,
        "weights": "v1",
        "weights_id": "tiny:v1",
        "source": "frame",
        "dim": 5,
        "output_layer": "linear",
        "preprocessing": Preprocessing("frame", (8, 8), "gray", (0.5,), (0.5,)).to_json(),
    }
    spec = EncoderRecipe.from_json(json.loads(json.dumps(record)))
    with pytest.raises(EncoderError) as err:
        spec.build(where="store x.zarr", allowed_plugins=["other_mod:build"])
    assert str(err.value) == (
        f"store x.zarr needs plug-in encoder '{name}'; rerun with --allow-plugin {name} if you trust that code"
    )
    assert not marker.exists() and "sidefx_plugin" not in sys.modules  # nothing was imported

    enc = spec.build(allowed_plugins=[name])
    assert marker.read_text() == "imported"
    assert enc.spec == spec and enc.spec.to_json() == record and enc.name == "tiny"
    assert _json_round_trip(enc.spec) == spec
    assert enc(frames[:2]).shape == (2, 5)


def test_spec_from_json_is_strict():
    good = make_encoder("downsample").spec.to_json()
    cases = [
        ({k: v for k, v in good.items() if k != "weights_id"}, "lacks key(s) weights_id"),
        ({**good, "plugin": "x:y"}, "unknown key(s) plugin"),
        ({**good, "dim": "256"}, "'dim' must be a positive integer"),
        ({**good, "source": "pixels"}, "'source' must be one of frame, obs"),
        ({**good, "source": "obs"}, "'source' is 'obs' but its preprocessing reads 'frame'"),
        (
            {**good, "preprocessing": {**good["preprocessing"], "gamma": 2}},
            "preprocessing has unknown key(s) gamma",
        ),
        (
            {**good, "preprocessing": {**good["preprocessing"], "resolution": "16"}},
            "'resolution' must be null",
        ),
        ("downsample", "encoder record must be a JSON object"),
    ]
    for record, message in cases:
        with pytest.raises(EncoderError, match=re.escape(message)):
            EncoderRecipe.from_json(record)


def test_build_moved_weights_override_and_sha_mismatch(tmp_path, resnet_sd, frames):
    torch.save(resnet_sd, tmp_path / "r18.pth")
    enc = make_encoder("resnet18", weights=tmp_path / "r18.pth")
    spec = _json_round_trip(enc.spec)

    moved = tmp_path / "elsewhere" / "copy.pth"
    moved.parent.mkdir()
    (tmp_path / "r18.pth").rename(moved)
    with pytest.raises(EncoderError) as err:
        spec.build(where="checkpoint c.pt")
    msg = str(err.value)
    assert "checkpoint c.pt" in msg and str(tmp_path / "r18.pth") in msg and "--encoder-weights FILE" in msg
    rebuilt = spec.build(weights=moved)  # the same bytes elsewhere: accepted
    assert rebuilt.weights_id == spec.weights_id and torch.equal(rebuilt(frames[:1]), enc(frames[:1]))

    other = {k: v + 1 if v.is_floating_point() else v for k, v in resnet_sd.items()}
    torch.save(other, tmp_path / "other.pth")
    with pytest.raises(EncoderError) as err:
        spec.build(weights=tmp_path / "other.pth")
    msg = str(err.value)
    assert spec.weights_id in msg and "--encoder-weights FILE" in msg and "\n" not in msg


def test_build_refuses_a_record_the_code_no_longer_matches():
    spec = make_encoder("downsample").spec
    changed = EncoderRecipe.from_json({**spec.to_json(), "dim": 128, "output_layer": "pool"})
    with pytest.raises(EncoderError) as err:
        changed.build(where="embeddings 'd'")
    msg = str(err.value)
    assert "differs from its record" in msg and "dim: recorded 128, now 256" in msg and "output_layer" in msg
    assert "--encoder-weights" not in msg  # the weights are not what differs
    assert changed.differences(spec) == ["dim", "output_layer"]


def test_encoder_record_and_store_check_import_without_torch():
    """The record (encode.spec), the encode package face and store.check parse records without torch."""
    code = (
        "import sys, rise_data.encode, rise_data.encode.spec, rise_data.store.check; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
