"""nerfstudio code that laser_ns repeats instead of calling, pinned: an upgrade that changes the original fails here,
naming what of ours to compare with it, instead of drifting silently.

- ``LaserPipeline.__init__`` repeats ``VanillaPipeline.__init__`` (which cannot hand the teacher to the datamanager
  and the model), and wraps the training step for DDP itself (laser_ns/distributed.py);
- ``LaserPipeline.get_train_loss_dict`` repeats ``VanillaPipeline.get_train_loss_dict`` with the language phase;
- ``LaserModel.get_outputs`` repeats the geometry half of ``NerfactoModel.get_outputs`` (proposal sampling, field,
  weights, RGB, depth), then renders language with detached geometry.

When a pin fails: read the new nerfstudio function, carry its change into ours where it applies, then update the
digest below.
"""

from __future__ import annotations

import hashlib
import inspect

import pytest
from nerfstudio.models.nerfacto import NerfactoModel
from nerfstudio.pipelines.base_pipeline import VanillaPipeline

PINS = {
    "VanillaPipeline.__init__": (
        VanillaPipeline.__init__,
        "2bbfb6e9ae7ce9a8",
        "laser_ns/pipeline.py LaserPipeline.__init__",
    ),
    "VanillaPipeline.get_train_loss_dict": (
        VanillaPipeline.get_train_loss_dict,
        "3fbe79085d1d9628",
        "laser_ns/pipeline.py LaserPipeline.get_train_loss_dict",
    ),
    "NerfactoModel.get_outputs": (
        NerfactoModel.get_outputs,
        "3b7c05bf7eb446aa",
        "laser_ns/model.py LaserModel.get_outputs",
    ),
}


@pytest.mark.parametrize("name", sorted(PINS))
def test_the_nerfstudio_code_we_repeat_has_not_changed(name):
    function, digest, ours = PINS[name]
    source = inspect.getsource(getattr(function, "__wrapped__", function))
    found = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert found == digest, (
        f"nerfstudio's {name} changed (digest {found}, pinned {digest}). {ours} repeats it: carry the change over "
        "where it applies, then update the digest in tests/test_nerfstudio_pins.py."
    )
