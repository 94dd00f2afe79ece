"""VGG19-BN at 1/8 width on FER2013, 10 CPU epochs: the student recipe of
the label distribution and stylisation comparisons, trained one-hot.

Run:      python launch.py --config=configs/vgg19_fer2013_small_cpu.py \
              --workdir=runs/small_onehot_s0 [--config.seed=1]
          then PrivateTest once, at the end:
          python launch.py --config=configs/vgg19_fer2013_small_cpu.py \
              --workdir=runs/small_onehot_s0 --mode=eval \
              --config.data.eval_splits="('validation', 'test')"
Hardware: a 2-core x86 CPU, about ten minutes.
Expect:   the one-hot rows of the README's results table
          (results/fer2013_onehot_seed*.json).
Sources:  configs/vgg19_fer2013_cpu.py (the shipped model's recipe: the
          paper's SGD, clipping, crop 44, flip, Cutout 16, ten-crop test,
          cosine decay of lr 0.01), halved in width (0.33M parameters) and
          shortened to 10 epochs, so that the student is clearly weaker than
          the shipped model that teaches it in configs/
          vgg19_fer2013_ldl_cpu.py, and four runs fit in an hour.
"""
from configs import vgg19_fer2013_cpu


def get_config():
  config = vgg19_fer2013_cpu.get_config()
  config.model.width = 0.125
  config.epochs = 10
  return config
