"""deft-ray: device-edge cooperative fine-tuning of foundation models on Ray.

The package is split into layers (docs/architecture.md, "Layers"): ``planners``, ``edge``,
``config`` and ``experiments`` never import torch or Ray; ``learning`` and ``runtime`` use torch;
``actors`` is the only layer that imports Ray. Importing the package itself, or the ``deft-ray``
command's module, loads neither.
"""

__version__ = "0.1.0"
