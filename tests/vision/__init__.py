"""Pictures in: captions, uploads, masks and the vision flow."""
