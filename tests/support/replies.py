"""What the fake Ollama answers in the app-level tests (e2e and browser), shared by them.

Each is the structured output one model call returns: an interview step, a prompt spec,
a picture's description, a region's caption, an inpaint proposal.
"""

from __future__ import annotations

from typing import Any

INTERVIEW_JA: dict[str, Any] = {
    "slots": {"subject": "two women playing beach volleyball", "setting": "beach"},
    "questions": [{"slot": "lighting", "text": "時間帯や光はどうしますか？"}],
    "ready": False,
}
SPEC: dict[str, Any] = {
    "subject": "two women playing beach volleyball",
    "setting": "sunny beach, blue sea",
    "lighting": "bright midday sun",
    "style": "sports photography",
    "negative_extra": "extra people",
    "width": 512,
    "height": 512,
    "steps": 20,
    "cfg_scale": 7,
    "sampler": "Euler a",
}
DESCRIPTION: dict[str, Any] = {
    "subject": "a tabby cat sleeping on a windowsill", "environment": "cozy room",
    "lighting": "soft afternoon light", "style": "photo", "camera": "close-up",
    "negative": "blurry", "summary": "A cat naps by the window.",
}
REGION: dict[str, Any] = {"caption": "a potted plant", "summary": "a plant"}
PROPOSAL: dict[str, Any] = {"prompt": "a red ceramic mug", "negative": "plant",
                            "summary": "A mug instead."}
