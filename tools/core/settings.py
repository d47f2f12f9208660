"""One typed settings object for the whole app.

Built once at start-up (``Settings()`` reads ``EGAKI_*`` environment variables and an
optional ``.env``) and passed down; nothing deeper in the code reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from platformdirs import user_data_path
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EngineName = Literal["diffusers", "a1111", "comfyui", "fake"]
DeviceName = Literal["auto", "cuda", "mps", "cpu"]
DtypeName = Literal["auto", "float16", "bfloat16", "float32"]
DecoderName = Literal["full", "tiny"]


def _default_data_dir() -> Path:
    return user_data_path("egaki", appauthor=False)


class Settings(BaseSettings):
    """Everything a user can configure. Each field maps to ``EGAKI_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="EGAKI_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- storage ---------------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where images, the ledger, chat history and caches live.",
    )
    chroma_url: str = Field(
        "",
        description="Chroma server for ledger search (e.g. http://127.0.0.1:8001); empty = "
        "a local index under data_dir/chroma.",
    )

    # --- language models: Ollama, or any OpenAI-compatible local server -------------------
    llm_api: Literal["ollama", "openai"] = Field(
        "ollama",
        description="How to talk to the chat/vision model: 'ollama' (its own API) or 'openai' "
        "(any OpenAI-compatible server: LM Studio, llama.cpp llama-server, vLLM, Jan...).",
    )
    openai_base_url: str = Field(
        "http://127.0.0.1:1234/v1",
        description="Base URL of the OpenAI-compatible server (LM Studio :1234/v1, "
        "llama-server :8080/v1); '/v1' is added when missing.",
    )
    openai_api_key: str = Field(
        "", description="API key for the OpenAI-compatible server; empty = none needed."
    )
    llm_tools: bool | None = Field(
        None, description="Declare tool calling (true/false); empty = ask the server."
    )
    llm_vision: bool | None = Field(
        None, description="Declare image input (true/false); empty = ask the server."
    )
    llm_json_schema: bool | None = Field(
        None,
        description="Declare JSON-schema structured output (true/false); empty = ask the server.",
    )
    ollama_host: str = Field(
        "http://127.0.0.1:11434", description="Base URL of the Ollama server."
    )
    chat_model: str = Field(
        "qwen3-vl:8b", description="Ollama model that chats and calls tools (vision+tools)."
    )
    vision_model: str = Field(
        "", description="Ollama model for image captions; empty means use chat_model."
    )
    embed_model: str = Field("nomic-embed-text", description="Ollama model for ledger search.")
    embedder: Literal["ollama", "openai", "hash"] = Field(
        "ollama",
        description="Ledger search embeddings: 'ollama' (embed_model), 'openai' (embed_model "
        "through /v1/embeddings) or 'hash' (offline, word-overlap only).",
    )
    ollama_timeout_s: float = Field(300.0, gt=0, description="Per-request timeout for Ollama.")
    auto_pull: bool = Field(
        False, description="Pull a missing model without asking (the chat still shows progress)."
    )

    # --- image engine ------------------------------------------------------------------
    image_engine: EngineName = Field("diffusers", description="Which image backend to use.")
    fake_step_s: float = Field(
        0.0, ge=0, le=5, description="The fake engine's seconds per step (tests: a slow job)."
    )
    image_model: str = Field(
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        description="Hugging Face id, local diffusers folder, or checkpoint name/path.",
    )
    models_dir: Path | None = Field(
        None,
        description="Folder of checkpoints (e.g. an A1111 'models/Stable-diffusion').",
    )
    lora_dir: Path | None = Field(None, description="Folder of LoRAs (e.g. A1111 'models/Lora').")
    embeddings_dir: Path | None = Field(
        None,
        description="Folder of textual-inversion embeddings (e.g. A1111 'embeddings'), used "
        "by name in prompts (easynegative); names without a file stay plain words.",
    )
    clip_skip: int = Field(
        1, ge=1, le=12,
        description="CLIP layers to skip, A1111 numbering (1 = none; 2 for many anime "
        "models); requests and infotexts may set their own. SDXL ignores it, as A1111 does.",
    )
    comma_padding_backtrack: int = Field(
        20, ge=0, le=74,
        description="A1111's long-prompt chunking: a 75-token chunk ends at its last comma "
        "when that is within this many tokens of the end (0 = cut anywhere).",
    )
    device: DeviceName = Field("auto", description="Torch device for diffusers.")
    dtype: DtypeName = Field("auto", description="Torch dtype; auto = fp16 on CUDA, fp32 on CPU.")
    attention_slicing: bool = Field(False, description="Lower memory, slightly slower.")
    vae_tiling: bool = Field(False, description="Always decode images in tiles.")
    vae_tile_above_px: int = Field(
        1536 * 1536, ge=0,
        description="Decode in tiles above this many pixels (memory stays flat); 0 = never.",
    )
    cpu_offload: bool = Field(False, description="Keep weights on CPU until used (small GPUs).")
    compile_unet: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Compile the UNet (CUDA graphs) in the background; auto = on for CUDA.",
    )
    compile_mode: str = Field(
        "reduce-overhead", description="torch.compile mode for the UNet (CUDA graphs)."
    )
    compile_sizes: list[str] = Field(
        default_factory=list,
        description="Sizes to compile ahead, e.g. ['512x512']; empty = the model's native sizes.",
    )
    cpu_runtime: Literal["auto", "torch", "openvino"] = Field(
        "auto",
        description="What runs the UNet and VAE decoder on the CPU; auto = OpenVINO for SD1.x "
        "when installed (converted once per model, cached), else torch.",
    )
    openvino_precision: Literal["auto", "bf16", "f32"] = Field(
        "auto", description="OpenVINO compute precision; auto = bf16 where the CPU has it."
    )
    openvino_int8: bool = Field(
        False,
        description="Quantize the OpenVINO UNet to int8: ~1.6x faster again, some loss of "
        "fidelity; calibrated once per model on sample prompts (several minutes).",
    )
    fast_mode: bool = Field(False, description="Few steps, LCM and tiny VAE for quick previews.")
    fast_steps: int = Field(
        0, ge=0, le=8,
        description="Steps in fast mode; 0 = the fewest clean steps of the model or its "
        "few-step LoRA (LCM 4, Hyper-SD 1-step 1, Turbo 1).",
    )
    fast_lora: str = Field(
        "auto",
        description="LoRA fast mode adds to models not distilled for few steps: auto = the "
        "family's LCM LoRA (downloaded once), a file/folder/hub id, or off.",
    )
    decoder: DecoderName = Field("full", description="VAE for final images: full or tiny.")
    tiny_vae_model: str = Field("madebyollin/taesd", description="Tiny autoencoder (TAESD).")
    hf_cache_dir: Path | None = Field(
        None, description="Hugging Face hub cache for image models; empty = the HF default."
    )
    unload_ollama_before_image: bool = Field(
        False, description="Ask Ollama to free GPU memory before each image job."
    )
    quality_mode: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Best-of-N with vision checks; auto = on where images are quick "
        "(CUDA or a remote engine), off on CPU.",
    )
    quality_candidates: int | None = Field(
        None, ge=1, le=8, description="Candidates per round; empty = by device speed."
    )
    quality_show: int = Field(1, ge=1, le=2, description="How many of the best to show.")
    quality_max_rounds: int = Field(2, ge=1, le=5, description="Rounds incl. the first.")
    quality_max_images: int = Field(12, ge=1, le=64, description="Images per request, max.")
    quality_max_seconds: float = Field(600.0, gt=0, description="Time budget per request.")
    quality_screen: Literal["off", "fast", "small"] = Field(
        "off", description="Screen cheap previews first, re-render winners (same seed)."
    )
    quality_clip_model: Path | None = Field(
        None, description="Local CLIP folder for tie-breaks (optional)."
    )
    a1111_url: str = Field("http://127.0.0.1:7860", description="AUTOMATIC1111 API base URL.")
    comfyui_url: str = Field("http://127.0.0.1:8188", description="ComfyUI base URL.")

    # --- privacy / serving ---------------------------------------------------------------
    offline: bool = Field(False, description="Never contact the model hub; local files only.")
    host: str = Field("127.0.0.1", description="Address the web chat binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port the web chat listens on.")
    auth_password: str = Field(
        "", description="Password for the chat; required when host is not loopback."
    )
    language: Literal["auto", "en", "ja"] = Field(
        "auto", description="UI language; auto follows the browser."
    )

    # --- hires fix, upscalers, inpaint area (issue 19) -------------------------------------
    upscalers_dir: Path | None = Field(
        None,
        description="Folder of upscaler models (.pth/.safetensors: Real-ESRGAN, 4x-UltraSharp"
        "...), or an A1111 'models' folder (its ESRGAN/ and RealESRGAN/ are searched).",
    )
    inpaint_area: Literal["auto", "masked", "whole"] = Field(
        "auto",
        description="Inpaint only the masked area at the model's own size ('masked'), the "
        "whole picture ('whole'), or auto = masked for pictures larger than the model's size.",
    )

    # --- closed tabs (a chat's page went away while its picture was queued) ------------
    closed_tab_jobs: Literal["finish", "cancel"] = Field(
        "finish",
        description="A picture whose tab was closed before it started: finish it (saved "
        "in its chat) or cancel it. A started one always finishes.",
    )

    # --- masks from words ("change the hat on the left to a red beret") -------------------
    segmenter: Literal["auto", "clipseg", "owl-sam", "fake"] = Field(
        "auto",
        description="Finds a region from words: auto = an OWL detector + SAM when in the "
        "segment models folder, else CLIPSeg; or 'fake' (a fixed box).",
    )
    segment_model: str = Field(
        "CIDAS/clipseg-rd64-refined", description="CLIPSeg model: a hub id or a folder."
    )
    segment_models_dir: Path | None = Field(
        None, description="Folder of segmentation models (<dir>/clipseg-rd64-refined, "
        "<dir>/owlv2-base-patch16-ensemble, <dir>/sam-vit-base).",
    )

    # --- ControlNet (pose / outlines / depth from a reference picture) -------------------
    controlnet_dir: Path | None = Field(
        None, description="Folder of ControlNet models (e.g. A1111 'models/ControlNet'): "
        "single .safetensors/.pth files or diffusers folders.",
    )
    controlnet_models: dict[str, str] = Field(
        default_factory=dict,
        description="ControlNet per control kind, e.g. {\"canny\": \"my_canny\", "
        "\"sdxl:depth\": \"diffusers/controlnet-depth-sdxl-1.0\"}: a hub id, a folder or a "
        "file in controlnet_dir; unset kinds use the built-in defaults.",
    )
    annotators_dir: Path | None = Field(
        None, description="Folder of preprocessor (annotator) weights: lllyasviel/Annotators "
        "files, or A1111's 'extensions/sd-webui-controlnet/annotator/downloads'.",
    )

    # --- CPU presets (issue #15): Quick / Balanced / Full chosen for this machine ---
    measure_machine: bool = Field(
        True, description="After the first picture on a CPU, time one UNet step (once per "
        "model, cached in the data dir) so the panel's preset fits this machine.",
    )

    @field_validator("ollama_host")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if "://" not in v:
            v = "http://" + v
        return v

    @field_validator("openai_base_url")
    @classmethod
    def _v1_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if "://" not in v:
            v = "http://" + v
        if not re.search(r"/v\d+$", v):
            v += "/v1"
        return v

    @property
    def effective_vision_model(self) -> str:
        return self.vision_model or self.chat_model

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.images_dir, self.cache_dir):
            d.mkdir(parents=True, exist_ok=True)
