"""ControlNet for the local engine: model lookup and loading, the control pipelines."""
