"""tools.core and what sits just above it: settings, messages, prompt templates, infotext."""
