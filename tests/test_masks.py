import pytest
import torch

from jepa_kit.masks import block_causal_allowed, block_causal_mask, block_position_ids


def test_pattern_is_causal_inside_blocks_and_blocked_across():
    # blocks of 3 and 2 tokens, then 2 padding positions
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],  # padding attends to itself only
        [0, 0, 0, 0, 0, 0, 1],
    ], dtype=torch.bool)
    assert torch.equal(block_causal_allowed((3, 2), total_len=7), expected)
    mask = block_causal_mask((3, 2), total_len=7)
    assert mask.dtype == torch.float32
    assert torch.equal(mask == 0, expected)
    assert torch.all(mask[~expected] == torch.finfo(torch.float32).min)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_blocked_value_follows_dtype_and_softmax_has_no_nan(dtype):
    mask = block_causal_mask((7, 6), total_len=16, dtype=dtype)
    assert mask.dtype == dtype
    assert mask.min() == torch.finfo(dtype).min
    scores = torch.randn(4, 16, 16).to(dtype) * 30
    probs = torch.softmax(scores + mask, dim=-1)
    assert not torch.isnan(probs).any()
    # blocked keys get exactly zero weight, every row (padding too) sums to one
    assert torch.all(probs.float()[:, mask == torch.finfo(dtype).min] == 0)
    torch.testing.assert_close(probs.float().sum(-1), torch.ones(4, 16), atol=1e-2, rtol=0)


def test_position_ids_restart_in_every_block():
    assert block_position_ids((7, 6)).tolist() == list(range(7)) + list(range(6))
    assert block_position_ids((5, 5), total_len=13).tolist() == [0, 1, 2, 3, 4] * 2 + [0, 0, 0]


def test_built_once_per_shape():
    assert block_causal_mask((7, 6)) is block_causal_mask([7, 6])
    assert block_position_ids((7, 6)) is block_position_ids((7, 6))
    assert block_causal_mask((7, 6)) is not block_causal_mask((7, 6), dtype=torch.bfloat16)


def test_refuses_boolean_masks_and_bad_lengths():
    with pytest.raises(TypeError, match="additive float"):
        block_causal_mask((3, 2), dtype=torch.bool)
    with pytest.raises(ValueError, match="more than total_len"):
        block_causal_mask((3, 2), total_len=4)
    with pytest.raises(ValueError, match="positive"):
        block_position_ids((3, 0))
