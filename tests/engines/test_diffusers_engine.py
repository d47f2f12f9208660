"""DiffusersEngine on tiny random-weight SD1.5/SDXL pipelines (CPU, 64x64, 2-4 steps)."""

from __future__ import annotations

import gc
import shutil
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.support.tiny_pipelines import TRIGGER, TinyModels, make_tiny_settings
from tools.core.engine import ImageEngine
from tools.core.errors import (
    ConfigError,
    EngineError,
    GenerationCancelled,
    InvalidRequest,
    ModelMissing,
)
from tools.core.events import EngineEvent, ModelLoaded, ModelLoading
from tools.core.request import ImageRequest
from tools.core.samplers import SAMPLERS
from tools.engines.diffusers import pipeline_cache
from tools.engines.diffusers.engine import DiffusersEngine
from tools.engines.diffusers.models import lora_hash

pytestmark = pytest.mark.slow


def req(**kw: Any) -> ImageRequest:
    base: dict[str, Any] = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2,
                            "seed": 42}
    return ImageRequest(**{**base, **kw})


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def engine(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> DiffusersEngine:
    """One engine on the tiny SD1.5 folder, shared by tests that don't need a fresh cache."""
    data = tmp_path_factory.mktemp("engine-data")
    return DiffusersEngine(make_tiny_settings(data, tiny_models), preview_every=0)


def new_engine(tmp_path: Path, models: TinyModels, **settings: Any) -> DiffusersEngine:
    return DiffusersEngine(make_tiny_settings(tmp_path / "data", models, **settings),
                           preview_every=0)


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, Path]:
    """An init image (deliberately not the target size) and a mask: right half white."""
    rng = np.random.default_rng(0)
    init = tmp_path / "init.png"
    Image.fromarray(rng.integers(0, 255, (50, 100, 3), dtype=np.uint8)).save(init)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[:, 32:] = 255
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    return init, mask_path


# --- modes, sizes, seeds ---------------------------------------------------------------


def test_engine_satisfies_protocol(engine: DiffusersEngine) -> None:
    assert isinstance(engine, ImageEngine)


def test_txt2img_returns_requested_size_count_and_batch_seeds(engine: DiffusersEngine) -> None:
    out = engine.generate(req(width=64, height=80, batch_size=2, seed=7))
    assert [g.image.size for g in out] == [(64, 80), (64, 80)]
    assert [g.seed for g in out] == [7, 8]
    assert [(g.request.seed, g.request.batch_size) for g in out] == [(7, 1), (8, 1)]
    assert out[0].model_name == "tiny-sd15" and len(out[0].model_hash) == 10
    assert out[0].request.mode == "txt2img" and out[0].extra == {}


def test_random_seed_is_made_concrete(engine: DiffusersEngine) -> None:
    [g] = engine.generate(req(seed=None))
    assert g.seed == g.request.seed and g.seed is not None


def test_same_seed_same_pixels_other_seed_differs(engine: DiffusersEngine) -> None:
    a, b, c = (engine.generate(req(seed=s))[0].image for s in (1, 1, 2))
    assert np.array_equal(px(a), px(b))
    assert not np.array_equal(px(a), px(c))


@pytest.mark.parametrize("sampler", ["DPM++ 2M Karras", "Euler a", "DPM++ SDE"])
def test_batch_image_reproduces_alone_with_its_seed(
    engine: DiffusersEngine, sampler: str
) -> None:
    batch = engine.generate(req(seed=10, batch_size=2, sampler=sampler))
    [alone] = engine.generate(batch[1].request)
    assert np.abs(px(batch[1].image) - px(alone.image)).max() <= 1  # batched math may round


def test_img2img_resizes_init_and_follows_strength(
    engine: DiffusersEngine, images: tuple[Path, Path]
) -> None:
    init, _ = images
    weak = engine.generate(req(init_image=init, strength=0.5, steps=4, batch_size=2))
    strong = engine.generate(req(init_image=init, strength=1.0, steps=4))
    assert [g.image.size for g in weak] == [(64, 64), (64, 64)]
    assert weak[0].request.mode == "img2img"
    assert not np.array_equal(px(weak[0].image), px(strong[0].image))


def test_too_little_strength_for_the_steps_is_explained(
    engine: DiffusersEngine, images: tuple[Path, Path]
) -> None:
    with pytest.raises(InvalidRequest, match="no denoising step"):
        engine.generate(req(init_image=images[0], strength=0.1, steps=2))


def test_inpaint_repaints_inside_the_mask_only(
    engine: DiffusersEngine, images: tuple[Path, Path]
) -> None:
    init, mask = images
    [g] = engine.generate(req(init_image=init, mask_image=mask, strength=1.0, steps=3))
    assert g.image.size == (64, 64) and g.request.mode == "inpaint"
    original = px(Image.open(init).convert("RGB").resize((64, 64), Image.Resampling.LANCZOS))
    diff = np.abs(px(g.image) - original).mean(axis=2)
    assert diff[:, :32].max() == 0  # outside: the original, pasted back
    assert diff[:, 32:].mean() > 10


def test_inpainting_model_inpaints_but_refuses_txt2img(
    tmp_path: Path, tiny_models: TinyModels, images: tuple[Path, Path]
) -> None:
    eng = new_engine(tmp_path, tiny_models, image_model=str(tiny_models.inpaint_dir))
    [g] = eng.generate(req(init_image=images[0], mask_image=images[1]))
    assert g.image.size == (64, 64)
    with pytest.raises(InvalidRequest, match="inpainting model"):
        eng.generate(req())


def test_sdxl_runs_all_three_modes(
    tmp_path: Path, tiny_models: TinyModels, images: tuple[Path, Path]
) -> None:
    eng = new_engine(tmp_path, tiny_models, image_model=str(tiny_models.sdxl_dir))
    init, mask = images
    t2i = eng.generate(req(width=64, height=72))
    i2i = eng.generate(req(init_image=init, strength=1.0))
    inp = eng.generate(req(init_image=init, mask_image=mask, strength=1.0))
    assert [r[0].image.size for r in (t2i, i2i, inp)] == [(64, 72), (64, 64), (64, 64)]
    assert eng.cache.current is not None and eng.cache.current.family == "sdxl"
    # an SD1.5 LoRA on SDXL is refused clearly, and the model stays usable
    with pytest.raises(InvalidRequest, match="doesn't fit this model"):
        eng.generate(req(prompt="a cat <lora:tiny-style>"))
    assert eng.cache.current.loras.loaded == {} and len(eng.generate(req())) == 1


# --- samplers --------------------------------------------------------------------------


def test_sampler_swap_changes_output_and_keeps_original_config(engine: DiffusersEngine) -> None:
    euler = engine.generate(req(sampler="Euler"))[0].image
    ddim = engine.generate(req(sampler="DDIM"))[0].image
    assert not np.array_equal(px(euler), px(ddim))
    loaded = engine.cache.current
    assert loaded is not None and loaded.scheduler_config["_class_name"] == "PNDMScheduler"


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_runs_and_is_reproducible(engine: DiffusersEngine, sampler: str) -> None:
    a = engine.generate(req(sampler=sampler, batch_size=2))
    b = engine.generate(req(sampler=sampler, batch_size=2))
    assert a[0].request.sampler == sampler
    assert type(engine.cache.current.pipe.scheduler).__name__ == SAMPLERS[sampler].scheduler  # type: ignore[union-attr]
    assert all(np.array_equal(px(x.image), px(y.image)) for x, y in zip(a, b, strict=True))


# --- LoRA ------------------------------------------------------------------------------


def test_lora_tag_changes_output_and_adds_trigger_words(
    engine: DiffusersEngine, tiny_models: TinyModels
) -> None:
    plain = engine.generate(req())[0]
    styled = engine.generate(req(prompt="a red cat <lora:tiny-style:0.9>"))[0]
    assert not np.array_equal(px(plain.image), px(styled.image))
    # reported as A1111 writes it: trigger words in the prompt, the LoRA and its hash apart
    assert styled.request.prompt == f"a red cat, {TRIGGER}"
    assert [(lo.name, lo.weight) for lo in styled.request.loras] == [("tiny-style", 0.9)]
    assert styled.extra == {"Lora hashes": f"tiny-style: {lora_hash(tiny_models.lora, None)}"}
    # re-running the reported request gives the same picture (no trigger words twice)
    [again_styled] = engine.generate(styled.request)
    assert np.array_equal(px(styled.image), px(again_styled.image))
    # the next request without the LoRA gets the base weights back
    again = engine.generate(req())[0]
    assert np.array_equal(px(plain.image), px(again.image))
    assert engine.cache.current.loras.loaded == {}  # type: ignore[union-attr]


def test_lora_weight_zero_matches_no_lora_with_same_prompt(engine: DiffusersEngine) -> None:
    prompt = f"a red cat, {TRIGGER}"
    base = engine.generate(req(prompt=prompt))[0].image
    zero = engine.generate(req(prompt=prompt + " <lora:tiny-style:0>"))[0].image
    assert np.abs(px(base) - px(zero)).max() <= 1


@pytest.mark.parametrize(
    ("tag", "message"),
    [("<lora:tiny-styel>", r"no LoRA called 'tiny-styel'.*tiny-style"),
     ("<lora:../x>", "plain")],
)
def test_bad_lora_is_rejected_before_loading(
    tmp_path: Path, tiny_models: TinyModels, tag: str, message: str
) -> None:
    eng = new_engine(tmp_path, tiny_models)
    with pytest.raises(InvalidRequest, match=message):
        eng.generate(req(prompt=f"a cat {tag}"))
    assert eng.cache.current is None


# --- loading: folder, single file, hub cache, offline -----------------------------------


def test_single_file_by_name_matches_the_folder_model(
    tmp_path: Path, tiny_models: TinyModels, engine: DiffusersEngine, no_network: list[object]
) -> None:
    eng = new_engine(tmp_path, tiny_models, image_model="sub/tiny-sd")
    [names] = [m.name for m in eng.list_models()]
    [g] = eng.generate(req())
    assert (names, g.model_name, eng.cache.current.source.kind) == (  # type: ignore[union-attr]
        "sub/tiny-sd", "tiny-sd", "single_file"
    )
    [ref] = engine.generate(req())
    assert np.array_equal(px(g.image), px(ref.image))  # same weights, same pixels
    assert no_network == []


def test_request_can_pick_another_model_by_name(
    tmp_path: Path, tiny_models: TinyModels, no_network: list[object]
) -> None:
    eng = new_engine(tmp_path, tiny_models)
    [g] = eng.generate(req(model="tiny-sd"))
    assert g.model_name == "tiny-sd" and g.request.model == "tiny-sd"
    with pytest.raises(InvalidRequest, match="outside the models folder"):
        eng.generate(req(model=str(tiny_models.sdxl_dir)))


def test_hub_id_loads_offline_from_the_cache_without_network(
    tmp_path: Path, tiny_models: TinyModels, no_network: list[object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eng = new_engine(tmp_path, tiny_models, image_model="egaki-test/tiny-sd")
    [g] = eng.generate(req())
    assert g.model_name == "egaki-test/tiny-sd" and len(g.model_hash) == 10
    assert no_network == []

    def no_lookup(*_args: Any, **_kw: Any) -> Path:
        raise AssertionError("a resident hub model must not be looked up again")

    monkeypatch.setattr(pipeline_cache, "ensure_snapshot", no_lookup)
    assert len(eng.generate(req(seed=3))) == 1


def test_missing_models_raise_model_missing(
    tmp_path: Path, tiny_models: TinyModels, no_network: list[object]
) -> None:
    with pytest.raises(ModelMissing, match="No image model called 'nope'") as err:
        new_engine(tmp_path, tiny_models, image_model="nope").generate(req())
    assert "画像モデル 'nope' が見つかりません" in err.value.localized("ja")
    with pytest.raises(ModelMissing, match="hf download someone/absent"):
        new_engine(tmp_path, tiny_models, image_model="someone/absent").generate(req())
    assert no_network == []


def test_corrupt_checkpoint_is_reported_not_raised_raw(
    tmp_path: Path, tiny_models: TinyModels
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken.safetensors").write_bytes(b"{garbage")
    eng = new_engine(tmp_path, tiny_models, models_dir=models, image_model="broken")
    with pytest.raises(EngineError, match="damaged"):
        eng.generate(req())


# --- the pipeline cache ------------------------------------------------------------------


def test_pipeline_is_reused_and_freed_on_switch(tmp_path: Path, tiny_models: TinyModels) -> None:
    eng = new_engine(tmp_path, tiny_models)
    eng.generate(req())
    first = eng.cache.current
    assert first is not None
    pipe_ref = weakref.ref(first.pipe)
    unet_ref = weakref.ref(first.pipe.unet)
    eng.generate(req(init_image=None))
    assert eng.cache.current is first and eng.cache.current.pipe is pipe_ref()
    del first
    eng.generate(req(model="tiny-sd"))
    gc.collect()
    assert pipe_ref() is None and unet_ref() is None
    assert eng.cache.current is not None and eng.cache.current.source.name == "tiny-sd"
    eng.unload()
    assert eng.cache.current is None


def test_concurrent_loads_never_overlap(
    tmp_path: Path, tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    eng = new_engine(tmp_path, tiny_models)
    active, peak, loads = [0], [0], []
    real = eng.cache._load

    def slow_load(source: Any, *args: Any) -> Any:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        loads.append(source.name)
        time.sleep(0.05)  # widen the window in which a second load could start
        try:
            return real(source, *args)
        finally:
            active[0] -= 1

    monkeypatch.setattr(eng.cache, "_load", slow_load)
    specs = [None, None, "tiny-sd", None]
    threads = [threading.Thread(target=eng.cache.get, args=(eng.resolve_model(s),))
               for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1
    assert loads.count("tiny-sd15") <= 2 and loads.count("tiny-sd") == 1


def test_memory_savers_run_on_cpu(tmp_path: Path, tiny_models: TinyModels) -> None:
    eng = new_engine(tmp_path, tiny_models, attention_slicing=True, vae_tiling=True,
                     cpu_offload=True)
    [g] = eng.generate(req())
    loaded = eng.cache.current
    assert loaded is not None and loaded.device == "cpu" and not loaded.offload  # no GPU here
    assert loaded.pipe.vae.use_tiling and g.image.size == (64, 64)


def test_device_and_dtype_choices(tmp_path: Path, tiny_models: TinyModels) -> None:
    import torch

    from tools.engines.diffusers.pipeline_cache import pick_device, pick_dtype

    settings = make_tiny_settings(tmp_path, tiny_models)
    assert pick_dtype(settings, "cpu") == torch.float32
    assert pick_dtype(settings, "cuda") == torch.float16
    bf16 = make_tiny_settings(tmp_path, tiny_models, dtype="bfloat16")
    assert pick_dtype(bf16, "cpu") == torch.bfloat16
    with pytest.raises(ConfigError, match="float16 does not work on the CPU"):
        pick_dtype(make_tiny_settings(tmp_path, tiny_models, dtype="float16"), "cpu")
    if not torch.cuda.is_available():
        assert pick_device(settings) in ("cpu", "mps")
        with pytest.raises(ConfigError, match="no cuda device"):
            pick_device(make_tiny_settings(tmp_path, tiny_models, device="cuda"))


# --- progress, cancel, previews, fast mode ---------------------------------------------------


def test_cancel_during_a_step_stops_early(engine: DiffusersEngine) -> None:
    cancel = threading.Event()
    steps: list[int] = []

    def on_step(step: int, total: int, _preview: Image.Image | None) -> None:
        steps.append(step)
        if step == 2:
            cancel.set()

    with pytest.raises(GenerationCancelled) as err:
        engine.generate(req(steps=6, sampler="Euler"), on_step=on_step, cancel=cancel)
    assert steps == [1, 2] and err.value.localized("ja")
    assert len(engine.generate(req())) == 1  # the pipeline still works afterwards


def test_already_cancelled_job_never_loads(tmp_path: Path, tiny_models: TinyModels) -> None:
    eng = new_engine(tmp_path, tiny_models)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(GenerationCancelled):
        eng.generate(req(), cancel=cancel)
    assert eng.cache.current is None


def test_progress_and_previews_every_k_steps(tmp_path: Path, tiny_models: TinyModels) -> None:
    seen: list[tuple[int, int, tuple[int, int] | None]] = []
    eng = new_engine(tmp_path, tiny_models)
    eng.preview_every = 2
    eng.generate(req(steps=5, sampler="Euler"),
                 on_step=lambda s, t, p: seen.append((s, t, p.size if p else None)))
    assert seen == [(1, 5, None), (2, 5, (64, 64)), (3, 5, None), (4, 5, (64, 64)), (5, 5, None)]
    # without a tiny VAE the preview is the cheap latent→RGB map at latent size
    seen.clear()
    cheap = new_engine(tmp_path, tiny_models, tiny_vae_model="")
    cheap.preview_every = 2
    cheap.generate(req(steps=3, sampler="Euler"),
                   on_step=lambda s, t, p: seen.append((s, t, p.size if p else None)))
    assert seen == [(1, 3, None), (2, 3, (8, 8)), (3, 3, None)]


def test_fast_mode_uses_lcm_few_steps_and_tiny_vae(
    engine: DiffusersEngine, images: tuple[Path, Path]
) -> None:
    full = engine.generate(req(steps=4, sampler="LCM", cfg_scale=1.0))[0]
    [g] = engine.generate(req(steps=25, cfg_scale=7.0, fast=True))
    assert (g.request.sampler, g.request.steps, g.request.cfg_scale) == ("LCM", 4, 1.0)
    # the tiny model isn't distilled: fast mode adds the LCM LoRA (from the hub cache)
    assert g.extra["VAE"] == "tiny-taesd" and full.extra == {}
    assert g.extra["Lora hashes"].startswith("fast-lcm: ") and g.request.loras == []
    assert not np.array_equal(px(full.image), px(g.image))
    loaded = engine.cache.current
    assert loaded is not None and type(loaded.pipe.vae).__name__ == "AutoencoderKL"
    # img2img and inpaint decode with TAESD too; the mask overlay still applies
    init, mask = images
    i2i = engine.generate(req(fast=True, init_image=init, strength=1.0, batch_size=2))
    [inp] = engine.generate(req(fast=True, init_image=init, mask_image=mask, strength=1.0))
    assert [x.image.size for x in [*i2i, inp]] == [(64, 64)] * 3
    original = px(Image.open(init).convert("RGB").resize((64, 64), Image.Resampling.LANCZOS))
    assert np.abs(px(inp.image) - original)[:, :32].max() == 0


def test_fast_lora_is_added_only_where_needed_and_missing_one_says_what_to_do(
    tmp_path: Path, tiny_models: TinyModels, no_network: list[object]
) -> None:
    plain = new_engine(tmp_path / "a", tiny_models, fast_lora="off")
    [off] = plain.generate(req(fast=True))
    assert "Lora hashes" not in off.extra
    plain.unload()
    own = new_engine(tmp_path / "b", tiny_models, fast_lora=str(tiny_models.lora))
    [with_own] = own.generate(req(fast=True))
    assert with_own.extra["Lora hashes"].startswith("fast-lcm: ")
    assert not np.array_equal(px(off.image), px(with_own.image))
    [normal] = own.generate(req())  # full-quality requests never get it
    assert "Lora hashes" not in normal.extra
    own.unload()
    # a model named as distilled (LCM/Turbo/…) needs none
    lcm_dir = tmp_path / "dreamshaper-lcm"
    shutil.copytree(tiny_models.sd15_dir, lcm_dir)
    distilled = new_engine(tmp_path / "c", tiny_models, image_model=str(lcm_dir))
    assert "Lora hashes" not in distilled.generate(req(fast=True))[0].extra
    distilled.unload()
    # offline without the LoRA downloaded: a clear message, and the model stays usable
    missing = new_engine(tmp_path / "d", tiny_models, image_model=str(tiny_models.sdxl_dir))
    with pytest.raises(ModelMissing, match="EGAKI_FAST_LORA=off") as err:
        missing.generate(req(fast=True))
    assert "latent-consistency/lcm-lora-sdxl" in str(err.value)
    assert len(missing.generate(req())) == 1 and no_network == []


def test_fast_mode_falls_back_to_full_vae_when_tiny_is_missing(
    tmp_path: Path, tiny_models: TinyModels, no_network: list[object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    eng = new_engine(tmp_path, tiny_models, tiny_vae_model="madebyollin/taesd")
    [g] = eng.generate(req(fast=True))
    assert "VAE" not in g.extra and g.request.sampler == "LCM"
    assert "madebyollin/taesd is not in the local cache" in caplog.text
    assert g.image.size == (64, 64) and no_network == []


def test_decoder_tiny_setting_uses_tiny_vae_without_fast(
    tmp_path: Path, tiny_models: TinyModels
) -> None:
    eng = new_engine(tmp_path, tiny_models, decoder="tiny")
    [g] = eng.generate(req())
    assert g.extra == {"VAE": "tiny-taesd"} and g.request.sampler != "LCM"


def test_loading_is_reported_once_then_the_model_stays_resident(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    events: list[EngineEvent] = []
    engine = DiffusersEngine(make_tiny_settings(tmp_path, tiny_models),
                             on_download=events.append)
    req = ImageRequest(prompt="a bell", width=64, height=64, steps=1, seed=1)
    engine.generate(req)
    engine.generate(req)
    assert events == [ModelLoading("tiny-sd15"), ModelLoaded("tiny-sd15")]
    engine.unload()


def test_factory_routes_engine_progress_to_the_queue(tiny_models: TinyModels,
                                                    tmp_path: Path) -> None:
    from tools.engines.factory import build_queue

    queue = build_queue(make_tiny_settings(tmp_path, tiny_models))
    assert queue.engine.on_download == queue.report  # type: ignore[attr-defined]
    queue.close()


def test_fast_steps_setting_sets_preview_steps(tmp_path: Path, tiny_models: TinyModels) -> None:
    eng = new_engine(tmp_path, tiny_models, fast_steps=2)
    [g] = eng.generate(req(steps=25, cfg_scale=7.0, fast=True))
    assert (g.request.steps, g.request.cfg_scale) == (2, 1.0)
    [h] = eng.generate(req(steps=3, fast=True))  # a fast request's own 1-8 steps stay
    assert h.request.steps == 3
