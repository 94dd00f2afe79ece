"""VGG19-BN on FER2013: the baseline row of the U-VGG19 paper's ablation.

Run:      python -m fer_jax.data.prepare --dataset=fer2013 --manual_dir=PATH
          python launch.py --config=configs/vgg19_fer2013.py
Hardware: one NVIDIA GPU (250 epochs of 28,709 images); on a CPU only short
          runs: with --config.epochs=3 --config.model.width=0.25
          --config.data.cutout_holes=0, PublicTest ten-crop 49.8% (seed 0)
          in 8.6 minutes on a 2-core CPU (PyTorch on the same batches: 48.3%
          / 49.4% for seeds 0 / 1, about 5.3 minutes each).
Expect:   PrivateTest ten-crop about 72-73% (the ancestor repository reports
          72.1% for VGG19; the paper's ablation starts from this model),
          selected on PublicTest.
Sources:  the paper ("U-Net-based VGG19", Chinese J. Eng. 2025): SGD,
          cross-entropy, 250 epochs, random crop 44, Cutout, horizontal flip,
          ten-crop test. WuJie1010/Facial-Expression-Recognition.Pytorch
          (mainpro_FER.py), which the paper builds on: batch 128, lr 0.01,
          momentum 0.9, weight decay 5e-4, lr x0.9 every 5 epochs after epoch
          80, element-wise gradient clipping at 0.1, logits averaged over the
          ten crops. Cutout's size is not in the paper: 1 hole of 16x16 px is
          the reference setting of DeVries & Taylor (2017).
"""
import ml_collections
from ml_collections import config_dict


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.epochs = 250
  config.batch_size = 128  # global, over all devices
  config.eval_batch_size = 128  # images; ten crops of each are evaluated
  config.log_every = 50
  config.keep_checkpoints = 2
  # Checkpoint selection; the split itself is reported as well as the best
  # epoch on every other eval split (the papers' way, labelled so).
  config.selection_split = 'validation'  # FER2013's PublicTest

  config.data = ml_collections.ConfigDict()
  config.data.name = 'fer2013'
  config.data.data_dir = config_dict.placeholder(str)  # None: TFDS default
  config.data.train_split = 'train'
  config.data.holdout = 0  # >0: the first N train images form split 'holdout'
  config.data.eval_splits = ('validation', 'test')
  # 'crop': a random crop x crop window (the FER papers); 'resized_crop': a
  # random area crop_scale of the image resized to crop x crop, tested on
  # the whole image resized (torchvision's RandomResizedCrop, EfficientFace).
  config.data.augment = 'crop'
  config.data.crop = 44
  config.data.crop_scale = (0.08, 1.0)
  config.data.flip = True
  config.data.cutout_holes = 1
  config.data.cutout_length = 16
  config.data.eval_crop = 'ten'  # ten | centre
  # None: images in [0, 1]; else one value per channel, as tuples.
  config.data.mean = config_dict.placeholder(tuple)
  config.data.std = config_dict.placeholder(tuple)
  # 'inverse_frequency' weights each image's loss by N / (K n_class); the
  # papers train unweighted.
  config.data.class_weights = 'none'
  config.data.workers = 0  # grain worker processes; 0 reads in-process
  config.data.threads = 4

  config.model = ml_collections.ConfigDict()
  config.model.name = 'vgg19'
  config.model.width = 1.0

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'sgd'
  config.optimizer.lr = 0.01
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 5e-4
  config.optimizer.clip = 0.1

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = 'step'
  config.schedule.decay_start = 80
  config.schedule.decay_every = 5
  config.schedule.decay_rate = 0.9
  return config
