"""Model discovery, family detection, hashing, hub-cache lookups and LoRA handling."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.support.tiny_pipelines import (
    SD15_REPO,
    TRIGGER,
    TinyModels,
    make_hf_cache,
    make_tiny_settings,
)
from tools.core.errors import EngineError, InvalidRequest, ModelMissing
from tools.core.events import Downloading
from tools.core.request import LoraRef
from tools.core.settings import Settings
from tools.engines.diffusers import hub
from tools.engines.diffusers.lora import (
    add_trigger_words,
    extract_lora_tags,
    merge_loras,
    resolve_lora,
    resolve_loras,
    trigger_words,
)
from tools.engines.diffusers.models import (
    detect_family,
    list_checkpoints,
    list_loras,
    lora_hash,
    model_hash,
    read_checkpoint_header,
    resolve_model,
    sha256_file,
)

# --- model discovery -------------------------------------------------------------------


def test_list_checkpoints_names_by_relative_path(tiny_models: TinyModels) -> None:
    [ckpt] = list_checkpoints(tiny_models.models_dir)
    assert ckpt.name == "sub/tiny-sd"
    assert ckpt.path == tiny_models.checkpoint
    assert ckpt.size == tiny_models.checkpoint.stat().st_size
    assert [lo.name for lo in list_loras(tiny_models.lora_dir)] == ["tiny-style"]
    assert list_checkpoints(None) == [] and list_loras(Path("/nonexistent")) == []


@pytest.mark.parametrize("spec", ["tiny-sd", "sub/tiny-sd", "sub/tiny-sd.safetensors", "TINY-SD"])
def test_checkpoint_resolves_by_name_inside_models_dir(
    tiny_settings: Settings, tiny_models: TinyModels, spec: str
) -> None:
    src = resolve_model(spec, tiny_settings, trusted=False)
    assert (src.kind, src.path, src.name) == ("single_file", tiny_models.checkpoint, "tiny-sd")


def test_folder_path_and_hub_id_resolve(tiny_settings: Settings, tiny_models: TinyModels) -> None:
    folder = resolve_model(str(tiny_models.sd15_dir), tiny_settings)
    assert (folder.kind, folder.path) == ("folder", tiny_models.sd15_dir)
    hub_src = resolve_model("egaki-test/tiny-sd", tiny_settings)
    assert (hub_src.kind, hub_src.ref, hub_src.path) == ("hub", "egaki-test/tiny-sd", None)


def test_unknown_model_is_missing_with_suggestion(tiny_settings: Settings) -> None:
    with pytest.raises(ModelMissing) as err:
        resolve_model("tiny-sdd", tiny_settings)
    assert "tiny-sdd" in str(err.value) and "sub/tiny-sd" in str(err.value)
    assert "見つかりません" in err.value.localized("ja")


def test_request_cannot_point_outside_models_dir(
    tiny_settings: Settings, tiny_models: TinyModels
) -> None:
    with pytest.raises(InvalidRequest, match="outside the models folder"):
        resolve_model(str(tiny_models.sdxl_dir), tiny_settings, trusted=False)
    with pytest.raises(InvalidRequest, match=r"\.\."):
        resolve_model("../tiny-sd15", tiny_settings, trusted=False)


def test_folder_without_model_index_is_rejected(tmp_path: Path, tiny_settings: Settings) -> None:
    with pytest.raises(InvalidRequest, match=r"model_index\.json"):
        resolve_model(str(tmp_path), tiny_settings)


# --- family ----------------------------------------------------------------------------


def test_family_detection(tiny_settings: Settings, tiny_models: TinyModels, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    assert detect_family(resolve_model(str(tiny_models.sd15_dir), tiny_settings)) == "sd15"
    assert detect_family(resolve_model(str(tiny_models.sdxl_dir), tiny_settings)) == "sdxl"
    assert detect_family(resolve_model("tiny-sd", tiny_settings)) == "sd15"
    xl = tmp_path / "xl.safetensors"
    save_file({"conditioner.embedders.1.model.positional_embedding": torch.zeros(2, 2),
               "model.diffusion_model.out.2.bias": torch.zeros(4)}, xl)
    assert detect_family(resolve_model(str(xl), tiny_settings)) == "sdxl"
    with pytest.raises(InvalidRequest, match="LoRA or a VAE"):
        detect_family(resolve_model(str(tiny_models.lora), tiny_settings))


def test_corrupt_checkpoint_is_an_engine_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(EngineError, match="damaged or only partly downloaded"):
        read_checkpoint_header(bad)


# --- hashing ---------------------------------------------------------------------------


def test_model_hash_is_a1111_short_sha256(tiny_settings: Settings, tiny_models: TinyModels) -> None:
    src = resolve_model("tiny-sd", tiny_settings)
    expected = hashlib.sha256(tiny_models.checkpoint.read_bytes()).hexdigest()[:10]
    assert model_hash(src, tiny_settings.cache_dir) == expected
    folder = resolve_model(str(tiny_models.sd15_dir), tiny_settings)
    unet = tiny_models.sd15_dir / "unet" / "diffusion_pytorch_model.safetensors"
    assert model_hash(folder, None) == hashlib.sha256(unet.read_bytes()).hexdigest()[:10]


def test_hash_cache_is_used_until_the_file_changes(tmp_path: Path) -> None:
    f = tmp_path / "m.safetensors"
    f.write_bytes(b"first")
    cache = tmp_path / "cache"
    assert sha256_file(f, cache) == hashlib.sha256(b"first").hexdigest()
    index = cache / "model_hashes.json"
    data = json.loads(index.read_text())
    data[str(f.resolve())]["sha256"] = "f" * 64  # a cache hit must not re-read the file
    index.write_text(json.dumps(data))
    assert sha256_file(f, cache) == "f" * 64
    f.write_bytes(b"second, longer")
    os.utime(f, ns=(1, 1))
    assert sha256_file(f, cache) == hashlib.sha256(b"second, longer").hexdigest()


def test_lora_hash_is_a1111_addnet_hash(tiny_models: TinyModels, tmp_path: Path) -> None:
    data = tiny_models.lora.read_bytes()
    body = data[8 + int.from_bytes(data[:8], "little"):]  # without the JSON header
    assert lora_hash(tiny_models.lora, tmp_path) == hashlib.sha256(body).hexdigest()[:12]
    assert lora_hash(tiny_models.lora, tmp_path) == lora_hash(tiny_models.lora, tmp_path)
    pt = tmp_path / "old.pt"
    pt.write_bytes(b"pickle bytes")
    assert lora_hash(pt, None) == hashlib.sha256(b"pickle bytes").hexdigest()[:12]


# --- hub cache -------------------------------------------------------------------------


def test_single_file_config_comes_from_local_cache(
    tiny_settings: Settings, tiny_models: TinyModels, no_network: list[object]
) -> None:
    header = read_checkpoint_header(tiny_models.checkpoint)
    folder = hub.single_file_config(header, tiny_settings)
    assert (folder / "model_index.json").is_file() and (folder / "tokenizer").is_dir()
    assert no_network == []


def test_offline_without_cached_configs_says_how_to_get_them(
    tmp_path: Path, tiny_models: TinyModels, no_network: list[object]
) -> None:
    settings = make_tiny_settings(tmp_path, tiny_models, hf_cache_dir=tmp_path / "empty")
    header = read_checkpoint_header(tiny_models.checkpoint)
    with pytest.raises(ModelMissing) as err:
        hub.single_file_config(header, settings)
    assert SD15_REPO in str(err.value) and "hf download" in str(err.value)
    assert "EGAKI_OFFLINE=false" in err.value.localized("ja")
    assert no_network == []


def test_ensure_snapshot_offline_uses_cache_or_raises(
    tmp_path: Path, tiny_models: TinyModels, no_network: list[object]
) -> None:
    settings = make_tiny_settings(tmp_path, tiny_models, hf_cache_dir=tmp_path / "hf")
    with pytest.raises(ModelMissing, match="offline mode is on"):
        hub.ensure_snapshot("egaki-test/tiny-sd", settings)
    snap = make_hf_cache(tmp_path / "hf", "egaki-test/tiny-sd", tiny_models.sd15_dir,
                         configs_only=False)
    assert hub.ensure_snapshot("egaki-test/tiny-sd", settings) == snap


def test_download_progress_is_forwarded() -> None:
    seen: list[Downloading] = []
    bar_cls = hub.progress_tqdm(seen.append)
    bar = bar_cls(total=10, desc="Downloading bytes", disable=True)
    bar.update(4)
    bar.update(6)
    bar.close()
    label = "Downloading bytes"
    assert seen == [Downloading(label, 4, 10), Downloading(label, 10, 10)]


# --- LoRA tags -------------------------------------------------------------------------


def test_lora_tags_are_removed_and_parsed() -> None:
    prompt, refs = extract_lora_tags("a cat, <lora:tiny-style:0.6>, sunny <LORA:other>")
    assert prompt == "a cat, sunny"
    assert refs == [LoraRef(name="tiny-style", weight=0.6), LoraRef(name="other", weight=1.0)]
    assert extract_lora_tags("<lora:x:0.5:0.2> dog") == ("dog", [LoraRef(name="x", weight=0.5)])


def test_bad_lora_weight_is_explained() -> None:
    with pytest.raises(InvalidRequest, match="not a number"):
        extract_lora_tags("<lora:x:strong>")
    with pytest.raises(InvalidRequest, match="less than or equal to 5"):
        extract_lora_tags("<lora:x:9>")


def test_later_lora_refs_override_earlier() -> None:
    merged = merge_loras([LoraRef(name="a", weight=0.2)], [LoraRef(name="a", weight=0.9),
                                                            LoraRef(name="b")])
    assert merged == [LoraRef(name="a", weight=0.9), LoraRef(name="b")]


def test_lora_resolves_only_inside_lora_dir(tiny_models: TinyModels, tmp_path: Path) -> None:
    assert resolve_lora("tiny-style", tiny_models.lora_dir) == tiny_models.lora
    assert resolve_lora("TINY-STYLE", tiny_models.lora_dir) == tiny_models.lora
    for bad in ("../tiny-style", "sub/x", ".hidden"):
        with pytest.raises(InvalidRequest, match="plain name"):
            resolve_lora(bad, tiny_models.lora_dir)
    with pytest.raises(InvalidRequest, match=r"no LoRA called 'tiny-styl'.*tiny-style"):
        resolve_lora("tiny-styl", tiny_models.lora_dir)
    with pytest.raises(InvalidRequest, match="no LoRA folder"):
        resolve_lora("tiny-style", None)


def test_lora_symlink_leaving_the_folder_is_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"x")
    lora_dir = tmp_path / "Lora"
    lora_dir.mkdir()
    (lora_dir / "sneaky.safetensors").symlink_to(outside)
    with pytest.raises(InvalidRequest, match="outside the LoRA folder"):
        resolve_lora("sneaky", lora_dir)


def test_trigger_words_from_sidecars(tiny_models: TinyModels, tmp_path: Path) -> None:
    assert trigger_words(tiny_models.lora) == TRIGGER
    plain = tmp_path / "p.safetensors"
    plain.write_bytes(b"")
    assert trigger_words(plain) == ""
    plain.with_suffix(".txt").write_text("red  hat,\nsmile\n")
    assert trigger_words(plain) == "red hat, smile"
    [lo] = resolve_loras([LoraRef(name="tiny-style")], tiny_models.lora_dir)
    assert add_trigger_words("a cat", [lo]) == f"a cat, {TRIGGER}"
    assert add_trigger_words(f"a {TRIGGER} cat", [lo]) == f"a {TRIGGER} cat"
