"""Tiny offline causal LMs: build, save, and load back exactly like a hub snapshot."""

from __future__ import annotations

import json

import pytest
import torch

from fmriscaling.demo.tiny_lm import TINY_LM_PRESETS, build_tiny_causal_lm, train_tokenizer

TEXTS = ["The story begins in a small town. Unbelievably, nobody noticed the naïve fox."] * 4


@pytest.mark.parametrize("arch", ["opt", "llama", "gpt2"])
def test_round_trip_offline(tmp_path, arch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = build_tiny_causal_lm(
        tmp_path, arch=arch, hidden_size=16, num_layers=2, num_heads=2, texts=TEXTS, seed=3
    )
    model = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert model.config.model_type == arch
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 16
    assert sum(p.numel() for p in model.parameters()) == info["n_params"]
    assert tokenizer.bos_token == "<s>" and tokenizer.pad_token == "<pad>"
    assert model.config.bos_token_id == tokenizer.bos_token_id
    assert model.config.vocab_size == len(tokenizer)
    text = "naïve fox, unbelievably"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert record["arch"] == arch and record["seed"] == 3 and record["n_params"] == info["n_params"]

    # the saved weights are the seeded initialisation: a rebuild gives the same tensors
    build_tiny_causal_lm(
        tmp_path / "again",
        arch=arch,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        texts=TEXTS,
        seed=3,
    )
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "again", local_files_only=True)
    for (name, p), q in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_seed_changes_weights(tmp_path):
    from transformers import AutoModelForCausalLM

    for seed in (0, 1):
        build_tiny_causal_lm(
            tmp_path / str(seed), hidden_size=16, num_layers=2, num_heads=2, texts=TEXTS, seed=seed
        )
    a, b = (AutoModelForCausalLM.from_pretrained(tmp_path / s, local_files_only=True) for s in "01")
    assert not torch.equal(a.get_input_embeddings().weight, b.get_input_embeddings().weight)


def test_tokenizer_specials_and_vocab():
    tok = train_tokenizer(TEXTS, vocab_size=280)
    assert len(tok) <= 280
    assert [tok.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<unk>", "<pad>")] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="at least 260"):
        train_tokenizer(TEXTS, vocab_size=100)


def test_presets_increase_in_size():
    sizes = [
        TINY_LM_PRESETS[k]["hidden_size"] * TINY_LM_PRESETS[k]["num_layers"]
        for k in "xs s m".split()
    ]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    for preset in TINY_LM_PRESETS.values():
        assert preset["hidden_size"] % preset["num_heads"] == 0
