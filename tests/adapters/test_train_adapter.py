"""`python manage.py train_adapter DATA.jsonl --slug SLUG`: fine-tune, validate, register.

Trained here on the tiny demo model, so a run takes seconds; the demo adapters of the default
model are made the same way (inference/demo_adapters/train.py).
"""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from safetensors.torch import load_file

from chatsite.adapters.models import Adapter
from inference.training import encode_chat

pytestmark = pytest.mark.django_db
CHAT = {"messages": [{"role": "user", "content": "the river"}, {"role": "assistant", "content": "bright stone."}]}


def jsonl(path, *records) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return str(path)


def train(data, *extra):
    call_command("train_adapter", data, "--slug", "stone", "--steps", "3", "--batch-size", "2",
                 "--rank", "2", "--targets", "q_proj,v_proj", *extra)


def test_it_trains_validates_and_registers_an_adapter(tmp_path, adapters_dir, capsys):
    train(jsonl(tmp_path / "chats.jsonl", CHAT, CHAT, CHAT), "--name", "Stone")

    adapter = Adapter.objects.get(slug="stone")
    assert (adapter.name, adapter.rank, adapter.enabled) == ("Stone", 2, True)
    assert adapter.validated_at is not None
    weights = load_file(adapters_dir / "stone" / "adapter_model.safetensors")
    assert any("lora_B" in key and value.abs().sum() > 0 for key, value in weights.items())
    output = capsys.readouterr()
    assert "Registered stone (rank 2)" in output.out
    assert "3/3" in output.err  # the progress bar reached the end


def test_it_only_writes_the_output_folder_with_no_register(tmp_path, adapters_dir):
    train(jsonl(tmp_path / "chats.jsonl", CHAT), "--output", str(tmp_path / "kept"), "--no-register")

    assert not Adapter.objects.filter(slug="stone").exists()
    assert {p.name for p in (tmp_path / "kept").iterdir()} >= {
        "adapter_config.json", "adapter_model.safetensors", "training.json", "README.md"
    }
    assert len(json.loads((tmp_path / "kept" / "training.json").read_text())["losses"]) == 3


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "line 2: not valid JSON"),
        ('{"messages": []}', "line 2: expected"),
        ('{"messages": [{"role": "robot", "content": "hi"}]}', "line 2: each message needs a role"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "line 2: the last message must be"),
    ],
)
def test_it_names_the_line_of_bad_training_data(tmp_path, adapters_dir, line, message):
    with pytest.raises(CommandError, match=message):
        train(jsonl(tmp_path / "chats.jsonl", CHAT, line))
    assert not Adapter.objects.exists()


def test_it_refuses_settings_that_cannot_train(tmp_path, adapters_dir):
    data = jsonl(tmp_path / "chats.jsonl", CHAT)
    with pytest.raises(CommandError, match="steps must be at least 1"):
        train(data, "--steps", "0")
    with pytest.raises(CommandError, match="PEFT refused"):
        train(data, "--targets", "no_such_proj")
    with pytest.raises(CommandError, match="--no-register needs --output"):
        train(data, "--no-register")
    with pytest.raises(CommandError, match="--slug 'no good'"):
        call_command("train_adapter", data, "--slug", "no good")


def test_it_learns_only_the_last_answer(demo_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_model.base_dir)
    ids, labels = encode_chat(tokenizer, CHAT["messages"], max_tokens=100)

    learned = [token for token, label in zip(ids, labels) if label != -100]
    assert tokenizer.decode(learned, skip_special_tokens=True) == "bright stone."
    assert tokenizer.convert_ids_to_tokens(learned[-1]) == "<|end|>"  # it learns to stop
