"""Image upscaler models (ESRGAN, Real-ESRGAN, 4x-UltraSharp, SPAN…) from a folder, loaded
with ``spandrel`` and run in overlapping tiles: :mod:`.folder` finds and ranks the files,
:mod:`.tiled` loads one and upscales a picture with flat memory on CPU or CUDA."""
