"""The fixed shadows fit small images (the derived network: tests/fednas/test_derived.py)."""

import pytest
import torch

from attacks.amia.models import fixed_architecture
from fednas.spaces import InputSpec


@pytest.mark.parametrize("name, spec", [("resnet18", InputSpec(1, 8, 10)), ("resnet18", InputSpec(3, 32, 100)),
                                        ("cnn", InputSpec(3, 28, 10))])
def test_fixed_shadows_take_the_datasets_channels_and_size(name, spec):
    net = fixed_architecture(name, spec, seed=0).eval()
    with torch.no_grad():
        assert net(torch.rand(2, spec.channels, spec.image_size, spec.image_size)).shape == (2, spec.num_classes)
    with pytest.raises(ValueError, match="unknown fixed architecture"):
        fixed_architecture("vgg", spec, 0)
