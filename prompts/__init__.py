"""Prompts as data files and their loader."""
