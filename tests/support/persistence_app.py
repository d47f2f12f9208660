"""A tiny Chainlit app for the resume test: Egaki's persistence wired the way the UI does.

Run it with ``AppProcess(env, app_file=PERSISTENCE_APP, app_root=...)``
(:mod:`tests.support.app_process`).

Every user message gets one reply carrying ``cl.Image(path=EGAKI_TEST_IMAGE)``. History
lives in ``EGAKI_TEST_CHAT_DIR``; the single local user logs in by header auth.
"""

from __future__ import annotations

import os
from pathlib import Path

import chainlit as cl
from chainlit.server import app
from chainlit.types import ThreadDict
from starlette.datastructures import Headers

from assistant.ui.persistence import local_user, make_data_layer, mount_files

CHAT_DIR = Path(os.environ["EGAKI_TEST_CHAT_DIR"])
IMAGE = Path(os.environ["EGAKI_TEST_IMAGE"])

mount_files(app, CHAT_DIR / "chat_files")


@cl.data_layer
def data_layer() -> cl.data.BaseDataLayer:
    return make_data_layer(CHAT_DIR / "chat.sqlite3", CHAT_DIR / "chat_files")


@cl.header_auth_callback
async def header_auth(headers: Headers) -> cl.User | None:
    return local_user(headers)


@cl.on_message
async def on_message(message: cl.Message) -> None:
    picture = cl.Image(path=str(IMAGE), name="picture", display="inline")
    await cl.Message(content=f"drew: {message.content}", elements=[picture]).send()


@cl.on_chat_resume
async def on_chat_resume(thread: ThreadDict) -> None:
    """Chainlit resumes a thread only when this callback exists."""
