"""Directory archives: a model saved with save_pretrained goes in as one CID and loads with
from_pretrained from wherever it is fetched to."""

from __future__ import annotations

import os

import pytest

from stxrage.errors import StorageError
from stxrage.models import FileEntry


def _tiny_model(path):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = ["storage nodes hold blocks", "every block has a content id", "repair rebuilds lost fragments"] * 20
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=120, special_tokens=["[UNK]", "[PAD]"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    torch.manual_seed(0)
    model = BertModel(
        BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model, tokenizer


def test_a_saved_model_round_trips_and_loads_with_from_pretrained(storage, tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    model, tokenizer = _tiny_model(tmp_path / "model")
    info = storage.put_dir(tmp_path / "model", private=True).file
    assert info.kind == "dir" and info.name == "model"
    fetched = storage.get_dir(info.cid, tmp_path / "fetched")
    loaded = AutoModel.from_pretrained(fetched).eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(fetched)
    batch = loaded_tokenizer(["every block has a content id"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(loaded(**batch).last_hidden_state, model.eval()(**batch).last_hidden_state)
    originals = sorted(p.relative_to(tmp_path / "model") for p in (tmp_path / "model").rglob("*") if p.is_file())
    assert sorted(p.relative_to(fetched) for p in fetched.rglob("*") if p.is_file()) == originals


def test_archives_keep_nested_paths_and_empty_files(storage, tmp_path):
    src = tmp_path / "tree"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "weights.bin").write_bytes(os.urandom(1_500_000))
    (src / "empty.txt").write_bytes(b"")
    (src / "config.json").write_text('{"x": 1}')
    cid = storage.put_dir(src).file.cid
    out = storage.get_dir(cid, tmp_path / "out")
    for rel in ["a/b/weights.bin", "empty.txt", "config.json"]:
        assert (out / rel).read_bytes() == (src / rel).read_bytes()
    with pytest.raises(StorageError) as exc:
        storage.get_dir(storage.put_bytes(b"plain").file.cid, tmp_path / "nope")
    assert exc.value.field == "cid"


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "a/../../b", "./x", "a\\..\\b"])
def test_archive_paths_cannot_escape_the_target(path):
    with pytest.raises(ValueError):
        FileEntry(path=path, offset=0, size=1)
