"""The free-chat agent and its tools: the tool-calling loop (``agent``), the
``generate_image`` tool (``image_tool``), tool calls a model wrote as text
(``text_tool_calls``), whether a model takes native tools (``tool_mode``) and the honest
outcome shown for each call (``tool_outcome``)."""
