"""Jobs that run the pipeline more than once or on part of the picture: inpainting only
the masked area at the model's own size (:mod:`.inpaint_area`), A1111's two-pass hires
fix (:mod:`.hires`), and the time a job will take, from this machine's own runs
(:mod:`.timing`)."""
