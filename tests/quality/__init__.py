"""The quality loop: constraints, vision checks, fixes and the evaluation script."""
