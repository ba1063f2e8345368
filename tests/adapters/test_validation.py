"""Every check an adapter meets at the door, each with a crafted bad adapter (no Django here)."""

import json
import pickle
import stat
import zipfile
from pathlib import Path

import pytest
import torch

from inference.errors import AdapterError
from inference.validation import Limits, extract_adapter_zip, validate_adapter_dir
from tests.adapters.conftest import CONFIG, LIMITS, WEIGHTS


def rejection(crafted, base_model, limits=LIMITS) -> str:
    with pytest.raises(AdapterError) as caught:
        validate_adapter_dir(crafted.path, base_model=base_model, limits=limits)
    assert caught.value.code == "invalid_adapter"
    return caught.value.message


@pytest.mark.parametrize("slug, rank", [("demo-poet", 8), ("demo-terse", 4), ("demo-chef", 16)])
def test_it_accepts_the_demo_adapters(craft, base_model, slug, rank):
    report = validate_adapter_dir(craft(slug).path, base_model=base_model, limits=LIMITS)

    assert report.rank == rank
    assert report.warnings == ()
    assert report.size_bytes > 0


# --- the config -------------------------------------------------------------------------------


def test_it_rejects_a_config_that_is_not_json(craft, base_model):
    crafted = craft()
    (crafted.path / CONFIG).write_text("{not json")

    assert CONFIG in rejection(crafted, base_model)


@pytest.mark.parametrize("name", [CONFIG, WEIGHTS])
def test_it_rejects_an_adapter_without_one_of_its_files(craft, base_model, name):
    crafted = craft()
    (crafted.path / name).unlink()

    assert f"The adapter has no {name}" in rejection(crafted, base_model)


def test_it_rejects_an_adapter_that_is_not_lora(craft, base_model):
    assert "not a LoRA adapter" in rejection(craft().set(peft_type="PROMPT_TUNING"), base_model)


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("auto_mapping", {"base_model_class": "Evil", "parent_library": "os"}, "import"),
        ("megatron_config", {"tensor_model_parallel_size": 1}, "Megatron"),
        ("megatron_core", "evil.module", "does not know"),
        ("use_dora", True, "DoRA"),
        ("modules_to_save", ["lm_head"], "replaces whole layers"),
        ("trainable_token_indices", [1, 2], "embeddings"),
        ("layer_replication", [[0, 2], [0, 2]], "duplicates layers"),
        ("init_lora_weights", "pissa", "changes the base weights"),
        ("lora_bias", True, "biases"),
        ("custom_loader", "my_package.Loader", "does not know"),
    ],
)
def test_it_rejects_config_settings_that_import_code_or_change_the_shared_base(
    craft, base_model, key, value, words
):
    message = rejection(craft().set(**{key: value}), base_model)

    assert words in message


def test_it_rejects_an_adapter_that_trains_the_base_biases(craft, base_model):
    assert "bias" in rejection(craft().set(bias="all"), base_model)


def test_it_rejects_an_adapter_for_another_task(craft, base_model):
    assert "SEQ_CLS" in rejection(craft().set(task_type="SEQ_CLS"), base_model)


def test_it_rejects_a_rank_above_the_limit(craft, base_model):
    message = rejection(craft(), base_model, Limits(max_rank=4, max_bytes=LIMITS.max_bytes))

    assert "rank 8" in message and "ADAPTER_MAX_RANK" in message


def test_it_rejects_a_rank_pattern_above_the_limit(craft, base_model):
    crafted = craft().set(rank_pattern={"v_proj": 128})

    assert "rank 128" in rejection(crafted, base_model)


# --- the base model ---------------------------------------------------------------------------


def test_it_rejects_a_target_module_the_base_model_does_not_have(craft, base_model):
    message = rejection(craft().set(target_modules=["q_proj", "query_key_value"]), base_model)

    assert "no layer called query_key_value" in message


def test_it_rejects_a_target_pattern_that_matches_no_layer(craft, base_model):
    crafted = craft().set(target_modules=r".*\.attention\.dense")

    assert "matches no layer" in rejection(crafted, base_model)


def test_it_accepts_a_target_pattern_that_matches_the_adapters_layers(craft, base_model):
    crafted = craft().set(target_modules=r".*\.(q_proj|v_proj)")

    assert validate_adapter_dir(crafted.path, base_model=base_model, limits=LIMITS).rank == 8


def test_it_rejects_an_adapter_whose_base_model_has_another_shape(craft, base_model, tmp_path):
    other = tmp_path / "other-base"
    other.mkdir()
    config = json.loads((Path(base_model) / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "hidden_size": 4096}))

    message = rejection(craft().set(base_model_name_or_path=str(other)), base_model)

    assert "another base model" in message and "hidden_size 4096 instead of 64" in message


def test_it_only_warns_when_the_base_model_name_alone_differs(craft, base_model):
    crafted = craft().set(base_model_name_or_path="someone/llama-tiny")

    report = validate_adapter_dir(crafted.path, base_model=base_model, limits=LIMITS)

    assert len(report.warnings) == 1
    assert "someone/llama-tiny" in report.warnings[0]


# --- the weights ------------------------------------------------------------------------------


def test_it_rejects_pickle_weights_without_unpickling_them(craft, base_model, monkeypatch):
    crafted = craft()
    torch.save(crafted.weights, crafted.path / "adapter_model.bin")
    (crafted.path / WEIGHTS).unlink()
    loads = []
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: loads.append(args))
    monkeypatch.setattr(pickle, "load", lambda *args, **kwargs: loads.append(args))

    message = rejection(crafted, base_model)

    assert "adapter_model.bin is a pickle file" in message
    assert loads == []


def test_it_rejects_a_pickle_named_safetensors(craft, base_model, monkeypatch):
    crafted = craft()
    torch.save(crafted.weights, crafted.path / WEIGHTS)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("torch.load called"))

    assert "pickle file with a safetensors name" in rejection(crafted, base_model)


def test_it_rejects_a_plain_pickle_named_safetensors(craft, base_model):
    crafted = craft()
    (crafted.path / WEIGHTS).write_bytes(pickle.dumps({"a": 1}, protocol=2))

    assert "pickle" in rejection(crafted, base_model)


def test_it_rejects_a_truncated_safetensors_file(craft, base_model):
    crafted = craft()
    data = (crafted.path / WEIGHTS).read_bytes()
    (crafted.path / WEIGHTS).write_bytes(data[: len(data) // 2])

    assert "damaged" in rejection(crafted, base_model)


def test_it_rejects_weights_wider_than_the_base_models_layers(craft, base_model):
    crafted = craft()
    crafted.weights = {
        key: torch.zeros(value.shape[0], 96) if ".lora_A." in key else value
        for key, value in crafted.weights.items()
    }

    message = rejection(crafted, base_model)

    assert "shape [8, 96]" in message and "[8, 64]" in message


def test_it_rejects_weights_whose_rank_differs_from_the_config(craft, base_model):
    assert "rank 4" in rejection(craft().set(r=4), base_model)


def test_it_rejects_a_target_without_weights(craft, base_model):
    crafted = craft().set(target_modules=["q_proj", "v_proj", "k_proj"])

    message = rejection(crafted, base_model)

    assert "targets k_proj" in message and "silently" in message


def test_it_rejects_weights_for_a_layer_the_config_does_not_target(craft, base_model):
    assert "silently ignore" in rejection(craft().set(target_modules=["q_proj"]), base_model)


def test_it_rejects_a_layer_with_only_one_lora_factor(craft, base_model):
    crafted = craft()
    crafted.weights = {key: value for key, value in crafted.weights.items() if not (
        key.startswith("base_model.model.model.layers.0.self_attn.q_proj.lora_B")
    )}

    assert "only one of the two LoRA factors" in rejection(crafted, base_model)


def test_it_rejects_tensors_that_are_not_lora_weights(craft, base_model):
    crafted = craft()
    crafted.weights = {**crafted.weights, "base_model.model.lm_head.weight": torch.zeros(492, 64)}

    assert "not a LoRA weight" in rejection(crafted, base_model)


def test_it_rejects_quantised_weights(craft, base_model):
    crafted = craft()
    crafted.weights = {key: value.to(torch.int8) for key, value in crafted.weights.items()}

    assert "stored as I8" in rejection(crafted, base_model)


def test_it_rejects_an_adapter_larger_than_the_limit(craft, base_model):
    message = rejection(craft(), base_model, Limits(max_rank=64, max_bytes=1000))

    assert "ADAPTER_MAX_BYTES" in message


# --- zip archives -----------------------------------------------------------------------------


def zipped(tmp_path, entries: dict[str, bytes], links: dict[str, str] = {}):
    archive = tmp_path / "adapter.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for name, data in entries.items():
            out.writestr(name, data)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            out.writestr(info, target)
    return archive


def unzip_rejection(archive, dest) -> str:
    dest.mkdir(exist_ok=True)
    with pytest.raises(AdapterError) as caught:
        extract_adapter_zip(archive, dest, max_bytes=LIMITS.max_bytes)
    assert list(dest.iterdir()) == []  # nothing was unpacked
    return caught.value.message


def adapter_files(crafted) -> dict[str, bytes]:
    return {name: (crafted.path / name).read_bytes() for name in (CONFIG, WEIGHTS)}


def test_it_unpacks_the_adapter_files_of_a_zip_even_inside_a_folder(craft, tmp_path):
    files = adapter_files(craft())
    archive = zipped(tmp_path, {f"my-adapter/{n}": d for n, d in files.items()} | {"my-adapter/tokenizer.json": b"{}"})
    (tmp_path / "out").mkdir()

    extract_adapter_zip(archive, tmp_path / "out", max_bytes=LIMITS.max_bytes)

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [CONFIG, WEIGHTS]


@pytest.mark.parametrize(
    "name, words",
    [
        ("/etc/adapter_config.json", "absolute path"),
        ("C:/adapter_config.json", "absolute path"),
        ("../adapter_config.json", "outside the archive"),
        ("a/../../adapter_model.safetensors", "outside the archive"),
    ],
)
def test_it_rejects_zip_entries_that_escape(craft, tmp_path, name, words):
    files = adapter_files(craft())
    archive = zipped(tmp_path, {**files, name: b"x"})

    assert words in unzip_rejection(archive, tmp_path / "out")


def test_it_rejects_zip_entries_that_are_links(craft, tmp_path):
    archive = zipped(tmp_path, adapter_files(craft()), links={"README.md": "/etc/passwd"})

    assert "is a link" in unzip_rejection(archive, tmp_path / "out")


def test_it_rejects_pickle_weights_in_a_zip(craft, tmp_path):
    crafted = craft()
    archive = zipped(tmp_path, {CONFIG: (crafted.path / CONFIG).read_bytes(), "adapter_model.bin": b"\x80\x02"})

    assert "pickle" in unzip_rejection(archive, tmp_path / "out")


def test_it_rejects_a_zip_larger_than_the_limit(craft, tmp_path):
    archive = zipped(tmp_path, adapter_files(craft()))
    (tmp_path / "out").mkdir()

    with pytest.raises(AdapterError, match="ADAPTER_MAX_BYTES"):
        extract_adapter_zip(archive, tmp_path / "out", max_bytes=1000)


def test_it_rejects_a_file_that_is_not_a_zip(tmp_path):
    archive = tmp_path / "adapter.zip"
    archive.write_bytes(b"not a zip at all")

    assert "not a valid zip" in unzip_rejection(archive, tmp_path / "out")


def test_it_names_the_files_as_the_engine_does():
    from inference import adapters, validation

    assert (validation.CONFIG_NAME, validation.WEIGHTS_NAME) == (adapters.CONFIG_NAME, adapters.WEIGHTS_NAME)
