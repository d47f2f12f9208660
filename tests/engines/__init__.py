"""Image engines (tools.engines): diffusers on tiny pipelines, OpenVINO, remote, the job queue."""
