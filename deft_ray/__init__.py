"""deft-ray: device-edge cooperative fine-tuning of foundation models on Ray.

Importing the package is cheap: torch, transformers and Ray are imported only by the modules that
need them (``deft_ray.model``, ``deft_ray.actors``), never by the planners or the CLI entry point.
"""

__version__ = "0.1.0"
