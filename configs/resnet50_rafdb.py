"""ResNet-50 on RAF-DB, one-hot labels: the EfficientFace study's baseline.

Run:      python -m fer_jax.convert --from=torchvision --model=resnet50 \
              --input=resnet50-0676ba61.pth --output=weights/resnet50_imagenet
          python launch.py --config=configs/resnet50_rafdb.py \
              --config.model.init_from=weights/resnet50_imagenet
Hardware: one GPU; CPU only for smoke runs (4.1 GMACs an image).
Expect:   paper: RAF-DB test 80.67% from ImageNet weights (the study's
          Table 2); not run at this scale here.
Sources:  as configs/effnet_b0_rafdb.py (the same recipe for both backbones
          in the study); only the model differs.
"""
from configs import effnet_b0_rafdb


def get_config():
  config = effnet_b0_rafdb.get_config()
  config.model.name = 'resnet50'
  return config
