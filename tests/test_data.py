import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from unlearn_bench.data import load_dataset
from unlearn_bench.data.augment import build_augment
from unlearn_bench.errors import ConfigError, UserError
from unlearn_bench.models import build_model, penultimate_features
from unlearn_bench.protocol import prepare

from .conftest import SHARED_DATA, needs_shared_data


def test_digits_are_uint8_nchw(make_cfg):
    cfg = make_cfg()
    data = load_dataset(cfg.dataset, cfg.paths.data_root)
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (1, 8, 8)
    assert len(data.train) + len(data.test) == 1797 and data.train.images.max() == 255


@needs_shared_data("mnist.npz")
def test_mnist_from_the_data_root_with_a_subset(make_cfg):
    cfg = make_cfg("dataset=mnist", "dataset.train_size=500", "dataset.test_size=200")
    data = load_dataset(cfg.dataset, SHARED_DATA)
    assert data.train.images.shape == (500, 1, 28, 28) and len(data.test) == 200
    again = load_dataset(cfg.dataset, SHARED_DATA)
    assert torch.equal(data.train.labels, again.train.labels)


def test_missing_data_file_names_the_key_and_the_path(make_cfg, tmp_path):
    cfg = make_cfg("dataset=mnist")
    with pytest.raises(UserError, match=r"dataset.file .*mnist.npz not found .*UNLEARN_BENCH_DATA"):
        load_dataset(cfg.dataset, tmp_path)


def test_wrong_checksum_is_refused(make_cfg, tmp_path):
    cfg = make_cfg("dataset=mnist")
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((4, 28, 28), np.uint8), y_train=np.zeros(4, np.uint8),
             x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, np.uint8))
    with pytest.raises(UserError, match="sha256"):
        load_dataset(cfg.dataset, tmp_path)


def test_channel_mismatch_between_config_and_files(make_cfg):
    cfg = make_cfg("dataset.channels=3")
    with pytest.raises(ConfigError, match="dataset.channels"):
        load_dataset(cfg.dataset, cfg.paths.data_root)


@pytest.mark.parametrize("model", ["small_cnn", "resnet18", "timm"])
def test_every_model_gives_logits_and_penultimate_features(make_cfg, model):
    cfg = make_cfg(f"model={model}", tiny=False)
    net = build_model(cfg.model, 1, 10, 8).eval()
    x = torch.randn(3, 1, 8, 8)
    assert net(x).shape == (3, 10)
    assert penultimate_features(net, x).shape == (3, net.get_classifier().in_features)


@pytest.mark.parametrize("zero_init_last", [False, True])
def test_resnet18_initialises_each_blocks_last_bn_as_asked(make_cfg, zero_init_last):
    """The reference ResNet-18 (zero_init_residual=False) keeps BN weights at 1; timm's default zeroes them."""
    cfg = make_cfg("model=resnet18", f"model.zero_init_last={str(zero_init_last).lower()}", tiny=False)
    net = build_model(cfg.model, 3, 10, 32)
    last_bn = [block.bn2.weight for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for block in layer]
    assert all(bool((w == 0).all()) == zero_init_last for w in last_bn)
    assert all(bool((w == 1).all()) != zero_init_last for w in last_bn)


def test_unknown_timm_model_is_a_config_error(make_cfg):
    cfg = make_cfg("model=timm", "model.arch=resnet_does_not_exist", tiny=False)
    with pytest.raises(ConfigError, match="model.arch"):
        build_model(cfg.model, 1, 10, 8)


def test_evaluation_inputs_are_never_augmented(make_cfg):
    cell = prepare(make_cfg("augmentation=default"))
    images = cell.splits.train.images[:64]
    plain = cell.ctx.inputs(images, augment=False)
    expected = (images.float() / 255 - cell.ctx.mean) / cell.ctx.std
    assert torch.allclose(plain, expected)
    assert not torch.equal(cell.ctx.inputs(images, augment=True), plain)


def test_default_augmentation_draws_per_image():
    augment = build_augment(OmegaConf.create({"name": "default", "crop_padding": 4, "hflip_p": 0.5}), 32, 3)
    torch.manual_seed(0)
    image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    out = augment(image.repeat(64, 1, 1, 1))
    distinct = {out[i].numpy().tobytes() for i in range(64)}
    assert len(distinct) > 20  # independent crop offsets and flips, not one draw for the batch
