"""DPO's loss mask over the tokens where a pair's answers differ (training/pair_focus.py)."""

from __future__ import annotations

import torch

from training.pair_focus import differing_spans, focus_mask

END = [90, 91]  # an end-of-turn token and a newline, as a chat template closes a turn


def spans(chosen, rejected, keep_prefix=False):
    c, r = differing_spans(torch.tensor(chosen + END), torch.tensor(rejected + END),
                           keep_prefix)
    return (chosen + END)[c], (rejected + END)[r]


def test_an_opener_is_the_chosen_span_against_the_first_shared_token():
    assert spans([7, 7, 1, 2, 3], [1, 2, 3]) == ([7, 7, 1], [1])


def test_a_sign_off_keeps_the_turn_end_decision():
    # chosen goes on with a sign-off where rejected ends its turn
    assert spans([1, 2, 3, 50, 51], [1, 2, 3]) == ([50, 51, 90], [90])


def test_keeping_the_prefix_leaves_out_only_the_shared_end():
    assert spans([1, 2, 3, 50, 51], [1, 2, 3], keep_prefix=True) == ([1, 2, 3, 50, 51, 90],
                                                                       [1, 2, 3, 90])
    assert spans([7, 7, 1, 2, 3], [1, 2, 3], keep_prefix=True) == ([7, 7, 1], [1])  # no prefix


def test_a_shorter_answer_is_its_end_against_the_rest():
    assert spans([1, 2], [1, 2, 3, 4]) == ([90], [3, 4, 90])


def test_a_swapped_word_in_the_middle():
    assert spans([1, 60, 3, 60, 5], [1, 2, 3, 2, 5]) == ([60, 3, 60], [2, 3, 2])


def test_answers_with_nothing_in_common_keep_every_token():
    assert spans([1, 2], [3, 4]) == ([1, 2], [3, 4])


def test_the_mask_covers_each_rows_span_and_the_chosen_turn_end_only():
    # rows: [chosen_0, chosen_1, rejected_0, rejected_1]; prompt tokens (mask 0), the answer
    # (ending in 90, 91 as a turn does), padding
    ids = torch.tensor([[5, 5, 7, 1, 2, 3, 90, 91, 0], [5, 1, 2, 3, 4, 50, 90, 91, 0],
                        [5, 5, 1, 2, 3, 90, 91, 0, 0], [5, 1, 2, 3, 4, 90, 91, 0, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1, 1, 0],
                         [0, 0, 1, 1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1, 0, 0]])
    out = focus_mask(ids, mask)
    assert out.tolist() == [[0, 0, 1, 1, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1, 1, 1, 0],
                            [0, 0, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0, 0, 0]]
    assert ((out == 1) <= (mask == 1)).all()  # never a prompt or padding token
