"""VGG19-BN at 1/4 width on FER2013, sized for a 2-core CPU: the first shipped
model (v1; the shipped file is now v2, configs/uvgg_fer2013_cpu.py).

Run:      python -m fer_jax.data.prepare --dataset=fer2013 --manual_dir=PATH
          python launch.py --config=configs/vgg19_fer2013_cpu.py
          python -m fer_jax.export --workdir=runs/vgg19_fer2013_cpu \
              --output=fer_jax/pretrained/fer2013.msgpack
          (the last command writes fer_jax/pretrained/fer2013.msgpack, the
          model `python -m fer_jax.predict` uses by default).
Hardware: a 2-core x86 CPU (the shipped file: 48 min of training on one
          with a 106 GFLOP/s float32 matmul, sharing it part of the time).
Expect:   PublicTest (selection) and PrivateTest ten-crop accuracy of the
          shipped file (v1) in the README's results table
          (results/shipped_fer2013_v1.json; python -m fer_jax.pretrained
          --evaluate --record=... measures it).
Sources:  configs/vgg19_fer2013.py (the paper's recipe: SGD, momentum 0.9,
          weight decay 5e-4, clipping 0.1, crop 44, flip, Cutout 16, ten-crop
          test), scaled to the CPU: width 1/4 (1.3M parameters), 14 epochs
          with a cosine decay of lr 0.01 so that the short run ends
          converged (as configs/demo.py). Each epoch evaluates PublicTest
          only (the selection split; ten-crop evaluation costs about half an
          epoch of training here); PrivateTest is evaluated once, at the end:
          python launch.py --config=configs/vgg19_fer2013_cpu.py --mode=eval \
              --config.data.eval_splits="('validation', 'test')"
"""
from configs import vgg19_fer2013


def get_config():
  config = vgg19_fer2013.get_config()
  config.model.width = 0.25
  config.epochs = 14
  config.schedule.name = 'cosine'
  config.log_every = 100
  config.data.eval_splits = ('validation',)
  return config
