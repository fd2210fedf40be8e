"""The zoo's video encoders, one module each; importing this package registers them all
in :data:`services.trainer.registry.ENCODERS`: the seed's two here, the standard backbones in
``standard/``. The contract is in ``contract.py``."""

from services.trainer.encoders import dual_pathway, i3d, standard  # noqa: F401  (registers them)
from services.trainer.encoders.contract import TapSpec, VideoEncoder, VideoFeatures

__all__ = ["TapSpec", "VideoEncoder", "VideoFeatures"]
