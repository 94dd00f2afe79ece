"""EfficientNet-B0 on RAF-DB, one-hot labels: the EfficientFace study's baseline.

Run:      python -m fer_jax.data.prepare --dataset=rafdb --manual_dir=PATH
          python launch.py --config=configs/effnet_b0_rafdb.py
          From ImageNet weights (efficientnet-pytorch's file, or timm's /
          torchvision's with --config.model.padding=symmetric
          --config.model.bn_epsilon=1e-5 --config.model.bn_momentum=0.9):
          python -m fer_jax.convert --from=efficientnet-pytorch \
              --model=efficientnet_b0 --input=efficientnet-b0-355c32eb.pth \
              --output=weights/effnet_b0_imagenet
          python launch.py --config=configs/effnet_b0_rafdb.py \
              --config.model.init_from=weights/effnet_b0_imagenet
Hardware: one GPU (12,271 images at 224x224, 100 epochs); a 2-core CPU
          trains ~4 images/s, so on CPU only smoke runs.
Expect:   paper: RAF-DB test 81.52% (the study's one-hot row, from ImageNet
          weights); not run at this scale here (results/
          paper_effnet_b0_rafdb.json). Much lower from scratch.
Sources:  EfficientFace (Zhao et al., AAAI 2021) and its repository
          (zengqunzhao/EfficientFace), whose recipe the study follows: SGD
          lr 0.1, momentum 0.9, weight decay 1e-4, batch 128, lr x0.1 every
          30 epochs, 100 epochs; RandomResizedCrop 224 (torchvision's
          default scale 0.08-1) + horizontal flip; test on the image resized
          to 224, one crop; normalised with RAF-DB's own mean (0.575,
          0.449, 0.401) and std (0.207, 0.190, 0.181), as main.py does
          (not ImageNet's, although the weights start from ImageNet;
          fer_jax.convert's efficientface-ldg teacher expects the same).
          No gradient clipping (the
          FER2013 recipe's 0.1 clip is the VGG ancestor's). RAF-DB has no
          validation split: we report the last epoch, and the best test
          epoch (as the study reports) labelled optimistic.
"""
from ml_collections import config_dict

from configs import common


def get_config():
  config = common.get_config()
  config.epochs = 100
  config.batch_size = 128
  config.eval_batch_size = 128
  config.selection_split = ''  # no validation split: the last epoch
  config.data.name = 'rafdb'
  config.data.eval_splits = ('test',)
  config.data.augment = 'resized_crop'
  config.data.crop = 224
  config.data.crop_scale = (0.08, 1.0)
  config.data.flip = True
  config.data.cutout_holes = 0
  config.data.eval_crop = 'centre'
  config.data.mean = (0.57535914, 0.44928582, 0.40079932)
  config.data.std = (0.20735591, 0.18981615, 0.18132027)
  config.model.name = 'efficientnet_b0'
  # A fer_jax.convert output directory; None trains from scratch.
  config.model.init_from = config_dict.placeholder(str)
  config.optimizer.name = 'sgd'
  config.optimizer.lr = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4
  config.optimizer.clip = 0.0
  config.schedule.name = 'step'
  config.schedule.decay_start = 0
  config.schedule.decay_every = 30
  config.schedule.decay_rate = 0.1
  return config
