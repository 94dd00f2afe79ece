"""VGG19-BN on FER2013: the baseline row of the U-VGG19 paper's ablation.

Run:      python -m fer_jax.data.prepare --dataset=fer2013 --manual_dir=PATH
          python launch.py --config=configs/vgg19_fer2013.py
Hardware: one NVIDIA GPU (250 epochs of 28,709 images); on a CPU only short
          runs: with --config.epochs=3 --config.model.width=0.25
          --config.data.cutout_holes=0, PublicTest ten-crop 49.8% (seed 0)
          in 8.6 minutes on a 2-core CPU (PyTorch on the same batches: 48.3%
          / 49.4% for seeds 0 / 1, about 5.3 minutes each).
Expect:   paper: the ancestor repository reports PrivateTest ten-crop
          72.1% for VGG19 (the paper's ablation starts from this model); not
          run at this scale here. Selected on PublicTest.
Sources:  the paper ("U-Net-based VGG19", Chinese J. Eng. 2025): SGD,
          cross-entropy, 250 epochs, random crop 44, Cutout, horizontal flip,
          ten-crop test. WuJie1010/Facial-Expression-Recognition.Pytorch
          (mainpro_FER.py), which the paper builds on: batch 128, lr 0.01,
          momentum 0.9, weight decay 5e-4, lr x0.9 every 5 epochs after epoch
          80, element-wise gradient clipping at 0.1, logits averaged over the
          ten crops. Cutout's size is not in the paper: 1 hole of 16x16 px is
          the reference setting of DeVries & Taylor (2017).
"""
from configs import common


def get_config():
  config = common.get_config()
  config.epochs = 250
  config.batch_size = 128
  config.eval_batch_size = 128
  config.selection_split = 'validation'  # FER2013's PublicTest

  config.data.name = 'fer2013'
  config.data.eval_splits = ('validation', 'test')
  config.data.augment = 'crop'
  config.data.crop = 44
  config.data.flip = True
  config.data.cutout_holes = 1
  config.data.cutout_length = 16
  config.data.eval_crop = 'ten'

  config.model.name = 'vgg19'
  config.model.width = 1.0

  config.optimizer.name = 'sgd'
  config.optimizer.lr = 0.01
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  config.optimizer.clip = 0.1

  config.schedule.name = 'step'
  config.schedule.decay_start = 80
  config.schedule.decay_every = 5
  config.schedule.decay_rate = 0.9
  return config
