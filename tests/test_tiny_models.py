"""Tiny offline causal LMs: build, save, and load back exactly like a hub snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from fmriscaling.demo.tiny_lm import TINY_LM_PRESETS, build_tiny_causal_lm, train_tokenizer

ROOT = Path(__file__).resolve().parent.parent
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


@pytest.mark.parametrize(
    ("arch", "model_type", "bos", "eos"),
    [("qwen2", "qwen2", None, "<|endoftext|>"), ("llama3", "llama", "<|begin_of_text|>", None)],
)
def test_newer_families_round_trip_like_their_hub_snapshots(tmp_path, arch, model_type, bos, eos):
    """Qwen2.5 style: no BOS, <|endoftext|> in the config's bos_token_id, digits one by one,
    leading spaces in the offsets. Llama-3 style: <|begin_of_text|> prepended, up to 3 digits a
    token. Both with grouped-query attention."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    build_tiny_causal_lm(
        tmp_path, arch=arch, hidden_size=16, num_layers=2, num_heads=4, texts=TEXTS
    )
    model = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    config = model.config
    assert config.model_type == model_type and config.num_hidden_layers == 2
    assert (config.num_attention_heads, config.num_key_value_heads) == (4, 2)
    assert tokenizer.bos_token == bos
    if arch == "qwen2":
        assert tokenizer.bos_token_id is None and tokenizer.eos_token == tokenizer.pad_token == eos
        assert config.bos_token_id == config.eos_token_id == tokenizer.eos_token_id
        assert config.tie_word_embeddings
    else:
        assert tokenizer.eos_token == "<|end_of_text|>" and tokenizer.pad_token is None
        assert config.rope_parameters["rope_type"] == "llama3"
    pieces = [p for p, _ in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str("fox 2024")]
    assert pieces == ["fox", "Ġ", *(["2", "0", "2", "4"] if arch == "qwen2" else ["202", "4"])]
    enc = tokenizer("fox 2024", return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert (tokens[0] == bos) == (arch == "llama3")  # the BOS Llama-3's post-processor adds
    # offsets keep the space a token carries: "Ġ2..." starts at the space (trim_offsets false)
    assert enc["offset_mapping"][tokens.index("Ġ")][0] == 3
    text = "naïve fox, unbelievably"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


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
    with pytest.raises(ValueError, match="style must be one of"):
        train_tokenizer(TEXTS, style="sentencepiece")


def _opt_n_params(vocab: int, hidden: int, layers: int, ffn: int, positions: int) -> int:
    """OPT's parameter count from its layer list, independent of transformers' bookkeeping."""
    attention = 4 * (hidden * hidden + hidden)  # q, k, v, out projections with biases
    mlp = (hidden * ffn + ffn) + (ffn * hidden + hidden)
    norms = 2 * 2 * hidden  # two layer norms per block, weight and bias
    # token embeddings (the LM head is tied to them), learned positions (OPT offsets them by
    # 2), the blocks and the final layer norm
    return (
        vocab * hidden + (positions + 2) * hidden + layers * (attention + mlp + norms) + 2 * hidden
    )


def test_presets_build_models_of_increasing_size_that_the_config_declares(tmp_path):
    """Each demo preset, built, saved and reloaded, has the sizes the preset and config state."""
    from transformers import AutoModelForCausalLM

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    declared = {
        spec["source"]["build"]["preset"]: spec["n_layers"]
        for spec in config["models"].values()
        if spec["kind"] == "text" and spec["source"]["build"]["arch"] == "opt"
    }
    assert set(declared) == set(TINY_LM_PRESETS)
    n_params = []
    for name, preset in TINY_LM_PRESETS.items():
        info = build_tiny_causal_lm(tmp_path / name, arch="opt", texts=TEXTS, **preset)
        model = AutoModelForCausalLM.from_pretrained(tmp_path / name, local_files_only=True)
        counted = sum(p.numel() for p in model.parameters())
        hidden, layers = preset["hidden_size"], preset["num_layers"]
        expected = _opt_n_params(len(train_tokenizer(TEXTS)), hidden, layers, 4 * hidden, 2048)
        assert counted == info["n_params"] == expected
        cfg = model.config
        # blocks that exist, the hidden states they give, and what the config declares
        assert len(model.model.decoder.layers) == layers == declared[name]
        with torch.no_grad():
            out = model(torch.tensor([[0, 5, 6]]), output_hidden_states=True)
        assert len(out.hidden_states) == declared[name] + 1
        assert out.hidden_states[-1].shape == (1, 3, hidden)
        assert model.get_input_embeddings().weight.shape[1] == cfg.hidden_size
        assert cfg.num_attention_heads == preset["num_heads"]
        n_params.append(counted)
    assert n_params == sorted(n_params) and len(set(n_params)) == len(n_params)
