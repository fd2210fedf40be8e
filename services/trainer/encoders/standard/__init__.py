"""Standard video backbones in the zoo; importing this package registers them all.

Two routes (docs/ADDING_A_MODEL.md says why): the 3D CNNs are torchvision's definitions
vendored as plain torch code (``vendor/``, BSD-3-Clause), the video transformers are
``transformers``' models built from small configs. All start from random weights unless
a branch names a local weights file (``weights:``, ``services/trainer/encoders/weights.py``).
"""

from services.trainer.encoders.standard import hf_video, resnet3d, s3d

__all__ = ["hf_video", "resnet3d", "s3d"]
