"""Segmentation masks go back from the model's square frame to each image's own frame."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from orchestrator.deploy._masks import to_original_frame
from trainables.data.cache import resize_image


def _blobs(width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[height // 5 : height // 2, width // 6 : width // 2] = 1
    mask[height // 2 : height - 4, width // 2 : width - 3] = 2
    return mask


@pytest.mark.parametrize("width, height", [(120, 80), (80, 120), (96, 96)])
@pytest.mark.parametrize("policy", ["stretch", "letterbox"])
def test_a_mask_through_the_resize_policy_and_back_is_the_mask(policy, width, height):
    original = _blobs(width, height)
    frame = resize_image(Image.fromarray(original, "L"), 48, policy, is_mask=True)  # what the model sees
    back = to_original_frame(frame, (width, height), policy)
    assert back.shape == (height, width)
    assert (back == original).mean() > 0.97  # only block edges move (48 px frame)


@pytest.mark.parametrize("width, height", [(120, 80), (80, 120)])
def test_center_crop_maps_the_crop_back_and_leaves_the_unseen_sides_background(width, height):
    original = _blobs(width, height)
    frame = resize_image(Image.fromarray(original, "L"), 48, "center_crop", is_mask=True)
    back = to_original_frame(frame, (width, height), "center_crop")
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    seen = np.zeros_like(original, bool)
    seen[top : top + side, left : left + side] = True
    assert (back[seen] == original[seen]).mean() > 0.97
    assert not back[~seen].any()
