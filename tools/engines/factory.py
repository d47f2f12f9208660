"""Build the configured image engine and its job queue from Settings.

Heavy backends are imported only here and only when chosen, so the chat starts without
loading torch; the diffusers engine itself loads weights on the first job.
"""

from __future__ import annotations

from tools.core.engine import ImageEngine
from tools.core.settings import Settings
from tools.engines.jobs import JobQueue, ollama_unload_hook


def build_engine(settings: Settings) -> ImageEngine:
    """The engine named by ``settings.image_engine``."""
    if settings.image_engine == "a1111":
        from tools.engines.remote.a1111 import A1111Engine

        return A1111Engine(settings.a1111_url, inpaint_area=settings.inpaint_area,
                           upscalers_dir=settings.upscalers_dir)
    if settings.image_engine == "comfyui":
        from tools.engines.remote.comfyui import ComfyUIEngine

        return ComfyUIEngine(settings.comfyui_url, upscalers_dir=settings.upscalers_dir)
    if settings.image_engine == "fake":
        from tools.engines.fake import FakeEngine

        return FakeEngine(step_delay=settings.fake_step_s)
    from tools.engines.diffusers.engine import DiffusersEngine

    return DiffusersEngine(settings)


def build_queue(settings: Settings, engine: ImageEngine | None = None) -> JobQueue:
    """One queue per process: every chat submits here, so jobs never overlap.

    A diffusers engine's download/load events go to the chat whose job caused them.
    """
    engine = engine or build_engine(settings)
    queue = JobQueue(engine, before_job=ollama_unload_hook(settings))
    if getattr(engine, "name", "") == "diffusers" and getattr(engine, "on_download", 1) is None:
        engine.on_download = queue.report  # type: ignore[attr-defined]
    return queue
