"""Augmentations: per-image randomness, shapes on grayscale and small images, never in evaluation."""

import pytest
import torch

from unlearn_bench.data import policies
from unlearn_bench.data.augment import build_augment, random_crop, scaled_padding

ALL = ["none", "default", "randaugment", "autoaugment", "random_erasing", "trivialaug", "augmix"]


def same_image_batch(n=64, channels=3, size=32):
    torch.manual_seed(0)
    return torch.randint(0, 256, (1, channels, size, size), dtype=torch.uint8).repeat(n, 1, 1, 1)


def distinct(batch):
    return len({batch[i].numpy().tobytes() for i in range(len(batch))})


@pytest.mark.parametrize("name", ["trivialaug", "randaugment"])
def test_policy_ops_are_drawn_per_image(make_cfg, name):
    cfg = make_cfg(f"augmentation={name}", tiny=False).augmentation
    policy = {"trivialaug": policies.trivial_augment, "randaugment": policies.rand_augment}[name](cfg, 32, 32)
    out = policy(same_image_batch())  # no crop/flip here: only the policy's own randomness
    # One draw for the whole batch (torchvision v2 on a batch tensor) would give 1 distinct image.
    assert distinct(out) > 16


def test_autoaugment_and_augmix_draw_per_image(make_cfg):
    for name, fn in (("autoaugment", policies.auto_augment), ("augmix", policies.aug_mix)):
        cfg = make_cfg(f"augmentation={name}", tiny=False).augmentation
        assert distinct(fn(cfg, 32, 32)(same_image_batch())) > 8, name


FAMILIES = {"trivialaug": lambda v2: (v2.TrivialAugmentWide(num_magnitude_bins=31), 31),
            "randaugment": lambda v2: (v2.RandAugment(), 31),
            "autoaugment": lambda v2: (v2.AutoAugment(), 10),
            "augmix": lambda v2: (v2.AugMix(all_ops=True), 10)}


@pytest.mark.parametrize("family_name", list(FAMILIES))
@pytest.mark.parametrize("channels, size", [(3, 32), (1, 28)])
def test_per_image_magnitudes_match_torchvision_kernel(family_name, channels, size):
    """One call per op with a magnitude per image = torchvision's kernel applied to each image alone,
    bit for bit, for every op of the space and magnitudes across all bins (rotations by 90° included)."""
    from torchvision.transforms import v2

    family, bins = FAMILIES[family_name](v2)
    space = policies.OpSpace(family, list(family._AUGMENTATION_SPACE), bins, size, size)
    torch.manual_seed(1)
    n = 48
    smooth = torch.randint(0, 256, (n // 2, channels, 8, 8)).float()
    images = torch.cat([torch.randint(0, 256, (n // 2, channels, size, size)),  # noise and smooth images
                        torch.nn.functional.interpolate(smooth, size=(size, size), mode="bilinear").round()])
    images = images.to(torch.uint8)
    for op_id, name in enumerate(space.names):
        op = torch.full((n,), op_id)
        mags = space.magnitudes(op, torch.arange(n) % bins)
        out = space.apply(images, op, mags)
        for i in range(n):
            single = family._apply_image_or_video_transform(images[i:i + 1], name, float(mags[i]),
                                                             interpolation=family.interpolation, fill=family._fill)
            assert torch.equal(out[i:i + 1], single), f"{name} at magnitude {float(mags[i])}"


def test_mixed_ops_in_one_batch_match_torchvision_kernel():
    from torchvision.transforms import v2

    family = v2.TrivialAugmentWide(num_magnitude_bins=31)
    space = policies.OpSpace(family, list(family._AUGMENTATION_SPACE), 31, 32, 32)
    torch.manual_seed(2)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    op = torch.randint(-1, len(space.names), (64,))  # -1: left alone
    mags = space.magnitudes(op, torch.randint(31, (64,)))
    out = space.apply(images, op, mags)
    for i in range(64):
        expected = images[i:i + 1] if op[i] < 0 else family._apply_image_or_video_transform(
            images[i:i + 1], space.names[op[i]], float(mags[i]), interpolation=family.interpolation,
            fill=family._fill)
        assert torch.equal(out[i:i + 1], expected)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("channels, size", [(1, 8), (1, 28), (3, 32)])
def test_every_augmentation_keeps_shape_and_dtype(make_cfg, name, channels, size):
    cfg = make_cfg(f"augmentation={name}", tiny=False).augmentation
    augment = build_augment(cfg, size, channels)
    out = augment(same_image_batch(16, channels, size))
    assert out.shape == (16, channels, size, size) and out.dtype == torch.uint8


def test_random_erasing_erases_about_half_with_zeros(make_cfg):
    cfg = make_cfg("augmentation=random_erasing", tiny=False).augmentation
    torch.manual_seed(0)
    images = torch.full((400, 3, 32, 32), 200, dtype=torch.uint8)
    out = policies.random_erasing(cfg, 32, 32)(images)
    erased = (out == 0).flatten(1).any(1).float().mean().item()
    assert 0.4 < erased < 0.6
    assert set(out.unique().tolist()) <= {0, 200}


def test_crop_padding_scales_with_image_size():
    assert scaled_padding(4, 32) == 4 and scaled_padding(4, 8) == 1 and scaled_padding(4, 28) == 4
    images = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).repeat(200, 1, 1, 1)
    out = random_crop(images, 1)
    assert distinct(out) == 9  # 3 x 3 offsets, each image its own


def test_augmentation_is_part_of_the_model_cache_key(make_cfg, capsys):
    from unlearn_bench.run import run

    run(make_cfg("method=ft", "augmentation=none"))
    capsys.readouterr()
    run(make_cfg("method=ft", "augmentation=trivialaug"))
    assert "original: trained" in capsys.readouterr().out


def test_evaluation_never_calls_the_augmentation(make_cfg):
    from unlearn_bench.metrics import evaluate
    from unlearn_bench.protocol import prepare

    cfg = make_cfg("augmentation=trivialaug")
    cell = prepare(cfg)

    def forbidden(images):
        raise AssertionError("evaluation augmented its inputs")

    cell.ctx.augment = forbidden
    model = cell.new_model("original")
    metrics = evaluate(model, cell.splits, cell.ctx, cfg.metrics)
    assert {"UA", "RA", "TA", "MIA"} <= set(metrics)
