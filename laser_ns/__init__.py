"""laser_ns: Laser (T-PAMI 2025) as a nerfstudio method plugin.

Importing the package silences warnings that nerfstudio 1.1.5 and torch print on every run and that no user can act
on (deprecated indexing and AMP decorators inside nerfstudio, torch's DataLoader worker advice on small machines), so
that a run's own messages stay visible. Warnings from laser_ns itself are untouched.
"""

import warnings

for _message in (
    "Using a non-tuple sequence for multidimensional indexing",
    "This DataLoader will create",
    r"`torch\.cuda\.amp\.",
    r"`torch\.jit\.script` is deprecated",
):
    warnings.filterwarnings("ignore", message=_message)
