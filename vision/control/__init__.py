"""Control maps from a reference picture: outlines (Canny), depth, human pose and line art.

:func:`~vision.control.maps.make_control_map` is the one entry point; Canny is pure numpy
(:mod:`.canny`), the others run annotator models found or fetched by :mod:`.annotators`.
"""
