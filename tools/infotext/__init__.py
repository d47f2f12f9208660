"""PNG metadata: the AUTOMATIC1111 ``parameters`` infotext and the PNGs that carry it.

:mod:`tools.infotext.text` writes and parses the infotext itself (and turns it into an
:class:`~tools.core.request.ImageRequest`); :mod:`tools.infotext.png` saves PNGs with
it and reads what a PNG says about how it was made (A1111, Fooocus, ComfyUI).
"""
