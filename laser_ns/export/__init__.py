"""Getting the segmentation out of a trained laser run: labelled point clouds, object extraction, localisation.

- :mod:`laser_ns.export.run`: load a training run (``config.yml``) with clear errors.
- :mod:`laser_ns.export.frames`: the dataparser frame and the original capture frame (``dataparser_transforms.json``).
- :mod:`laser_ns.export.point_cloud`: nerfstudio's point-cloud generator, with class and relevancy per point.
- :mod:`laser_ns.export.ply`: the binary PLY with its JSON legend.
- :mod:`laser_ns.export.objects`: one object per text query, with floating clusters removed; optional meshes.
- :mod:`laser_ns.export.locate`: the best point and the box of a text query.

The command lines are ``laser-export`` (:mod:`laser_ns.scripts.export`) and ``laser-locate``
(:mod:`laser_ns.scripts.locate`). open3d and plyfile are imported where used, never at plugin import.
"""
